//! Reading an inline JWKS (RFC 7517) into verification keys, with errors that name the field
//! (`jwt.jwks.keys[1].n: ...`) and never quote key material.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Map, Value};

use crate::curve::Curve;
use crate::jwt::{self, Algorithm, Key, Material, build};

/// The algorithms an RSA key can be for; the first when the JWK has no `alg`.
const RSA_ALGORITHMS: [Algorithm; 6] = [
    Algorithm::Rs256,
    Algorithm::Rs384,
    Algorithm::Rs512,
    Algorithm::Ps256,
    Algorithm::Ps384,
    Algorithm::Ps512,
];
/// The algorithms an `oct` key can be for; the first when the JWK has no `alg`.
const HMAC_ALGORITHMS: [Algorithm; 3] = [Algorithm::Hs256, Algorithm::Hs384, Algorithm::Hs512];

/// The smallest RSA modulus accepted, in bits (NIST SP 800-131A, RFC 7518 §3.3).
const RSA_MIN_BITS: usize = 2048;
/// The largest: more only makes every verification slower. (The host takes up to 8192.)
const RSA_MAX_BITS: usize = 4096;

/// Parse `value` (the JWKS object `{"keys": [...]}`, or a JSON string holding it) found at
/// config path `field`.
pub(crate) fn parse(value: &Value, field: &str) -> Result<Vec<Key>, String> {
    let parsed;
    let value = match value {
        Value::String(text) => {
            parsed = serde_json::from_str::<Value>(text)
                .map_err(|err| format!("{field}: not a JSON document: {err}"))?;
            &parsed
        }
        other => other,
    };
    let Value::Object(jwks) = value else {
        return Err(format!(
            "{field}: expected a JWKS object {{\"keys\": [...]}} (or a JSON string of one)"
        ));
    };
    let keys = match jwks.get("keys") {
        Some(Value::Array(keys)) => keys,
        Some(_) => return Err(format!("{field}.keys: expected an array of JWKs")),
        None => return Err(format!("{field}: missing field `keys`")),
    };
    if keys.is_empty() {
        return Err(format!("{field}.keys: at least one key is required"));
    }
    let mut parsed = Vec::with_capacity(keys.len());
    for (i, jwk) in keys.iter().enumerate() {
        let at = format!("{field}.keys[{i}]");
        let key = parse_key(jwk, &at)?;
        if let Some(kid) = key.kid()
            && parsed
                .iter()
                .any(|other: &Key| other.kid() == Some(kid) && other.alg() == key.alg())
        {
            return Err(format!(
                "{at}.kid: another {} key already has kid `{kid}`",
                key.alg()
            ));
        }
        parsed.push(key);
    }
    Ok(parsed)
}

fn parse_key(jwk: &Value, at: &str) -> Result<Key, String> {
    let Value::Object(jwk) = jwk else {
        return Err(format!("{at}: expected a JWK object"));
    };
    let kty = string(jwk, at, "kty")?.ok_or_else(|| format!("{at}: missing field `kty`"))?;
    let kid = string(jwk, at, "kid")?.map(str::to_owned);
    if let Some(usage) = string(jwk, at, "use")?
        && usage != "sig"
    {
        return Err(format!(
            "{at}.use: `{usage}` keys do not verify signatures; remove the key or use `sig`"
        ));
    }
    let alg = string(jwk, at, "alg")?;
    // A key verifies tokens of one algorithm only: its `alg`, which must be one its type
    // allows, or without `alg` its type's first. A token's `alg` must be its key's
    // (`jwt.rs`), so no key ever serves two algorithms (no RSA key as an HMAC secret).
    let pick = |allowed: &[Algorithm], what: &str| match alg {
        None => Ok(allowed[0]),
        Some(name) => allowed
            .iter()
            .copied()
            .find(|wanted| wanted.as_str() == name)
            .ok_or_else(|| {
                format!(
                    "{at}.alg: `{name}` is not supported for a `{what}` key; supported: {}",
                    jwt::names(allowed)
                )
            }),
    };
    let host_refused = |field: &str, err| format!("{at}.{field}: {err}");
    match kty {
        "RSA" => {
            let alg = pick(&RSA_ALGORITHMS, kty)?;
            refuse_private(jwk, at, &["d", "p", "q", "dp", "dq", "qi", "oth"])?;
            let n = required_bytes(jwk, at, "n")?;
            let e = required_bytes(jwk, at, "e")?;
            let (n, e) = rsa_key(n, e, at)?;
            build::key(kid, alg, Material::Rsa { n, e }).map_err(|err| host_refused("n", err))
        }
        "EC" => {
            let (curve, crv) = match string(jwk, at, "crv")? {
                Some("P-256") => (Curve::P256, "P-256"),
                Some("P-384") => (Curve::P384, "P-384"),
                Some(other) => {
                    return Err(format!(
                        "{at}.crv: unsupported curve `{other}`; supported: P-256, P-384"
                    ));
                }
                None => return Err(format!("{at}: missing field `crv`")),
            };
            let alg = match curve {
                Curve::P256 => pick(&[Algorithm::Es256], "EC P-256")?,
                Curve::P384 => pick(&[Algorithm::Es384], "EC P-384")?,
            };
            refuse_private(jwk, at, &["d"])?;
            let x = coordinate(jwk, at, "x", crv, curve.coordinate_len())?;
            let y = coordinate(jwk, at, "y", crv, curve.coordinate_len())?;
            if !curve.contains(&x, &y) {
                return Err(format!("{at}: x and y are not a point on {crv}"));
            }
            // The uncompressed SEC1 encoding the host takes.
            let point = [&[0x04], x.as_slice(), y.as_slice()].concat();
            build::key(kid, alg, Material::EcPoint(point)).map_err(|err| host_refused("x", err))
        }
        "OKP" => {
            match string(jwk, at, "crv")? {
                Some("Ed25519") => {}
                Some(other) => {
                    return Err(format!(
                        "{at}.crv: unsupported curve `{other}`; supported: Ed25519"
                    ));
                }
                None => return Err(format!("{at}: missing field `crv`")),
            }
            let alg = pick(&[Algorithm::EdDsa], "OKP Ed25519")?;
            refuse_private(jwk, at, &["d"])?;
            let x = required_bytes(jwk, at, "x")?;
            if x.len() != 32 {
                return Err(format!(
                    "{at}.x: an Ed25519 public key is 32 bytes; this one has {}",
                    x.len()
                ));
            }
            // 32 bytes that are no curve point cannot be told from a valid key without the
            // point arithmetic this filter leaves to the host: such a key verifies nothing.
            build::key(kid, alg, Material::Ed25519(x)).map_err(|err| host_refused("x", err))
        }
        "oct" => {
            let alg = pick(&HMAC_ALGORITHMS, kty)?;
            let secret = required_bytes(jwk, at, "k")?;
            // RFC 7518 §3.2: a key at least as long as the hash output.
            let min = match alg {
                Algorithm::Hs384 => 48,
                Algorithm::Hs512 => 64,
                _ => 32,
            };
            if secret.len() < min {
                return Err(format!(
                    "{at}.k: {alg} secrets must be at least {min} bytes; this one has {}",
                    secret.len()
                ));
            }
            build::key(kid, alg, Material::Secret(secret)).map_err(|err| host_refused("k", err))
        }
        other => Err(format!(
            "{at}.kty: unsupported key type `{other}`; supported: RSA, EC (P-256, P-384), OKP (Ed25519), oct"
        )),
    }
}

/// An RSA public key's `n` and `e`, without leading zeros, if this filter takes them: `n` odd
/// and 2048 to 4096 bits; `e` odd, at least 3 and below 2³² (real keys use 65537). The host
/// checks them again when the key is tried ([`build::key`]).
fn rsa_key(n: Vec<u8>, e: Vec<u8>, at: &str) -> Result<(Vec<u8>, Vec<u8>), String> {
    let n = strip_leading_zeros(n);
    let bits = n.first().map_or(0, |top| {
        (n.len() - 1) * 8 + (8 - top.leading_zeros() as usize)
    });
    if bits < RSA_MIN_BITS {
        return Err(format!(
            "{at}.n: RSA keys must have at least {RSA_MIN_BITS} bits; this one has {bits}"
        ));
    }
    if bits > RSA_MAX_BITS {
        return Err(format!(
            "{at}.n: RSA keys may have at most {RSA_MAX_BITS} bits; this one has {bits}"
        ));
    }
    if n.last().is_some_and(|low| low & 1 == 0) {
        return Err(format!("{at}.n: an RSA modulus is odd; this one is even"));
    }
    let e = strip_leading_zeros(e);
    let value = (e.len() <= 4).then(|| e.iter().fold(0u32, |acc, b| acc << 8 | u32::from(*b)));
    if !value.is_some_and(|e| e >= 3 && e & 1 == 1) {
        return Err(format!(
            "{at}.e: the exponent must be odd, at least 3 and below 2^32"
        ));
    }
    Ok((n, e))
}

fn strip_leading_zeros(mut bytes: Vec<u8>) -> Vec<u8> {
    let start = bytes.iter().position(|b| *b != 0).unwrap_or(bytes.len());
    bytes.drain(..start);
    bytes
}

fn string<'a>(
    jwk: &'a Map<String, Value>,
    at: &str,
    name: &str,
) -> Result<Option<&'a str>, String> {
    match jwk.get(name) {
        None => Ok(None),
        Some(Value::String(value)) => Ok(Some(value)),
        Some(_) => Err(format!("{at}.{name}: expected a string")),
    }
}

fn required_bytes(jwk: &Map<String, Value>, at: &str, name: &str) -> Result<Vec<u8>, String> {
    let text = string(jwk, at, name)?.ok_or_else(|| format!("{at}: missing field `{name}`"))?;
    // The decoder's own error would quote the offending character: keep key material out.
    let bytes = URL_SAFE_NO_PAD
        .decode(text)
        .map_err(|_| format!("{at}.{name}: not base64url without padding (RFC 7515 §2)"))?;
    if bytes.is_empty() {
        return Err(format!("{at}.{name}: must not be empty"));
    }
    Ok(bytes)
}

/// A coordinate (`x`, `y`) of `len` bytes on `curve`.
fn coordinate(
    jwk: &Map<String, Value>,
    at: &str,
    name: &str,
    curve: &str,
    len: usize,
) -> Result<Vec<u8>, String> {
    let bytes = required_bytes(jwk, at, name)?;
    if bytes.len() != len {
        return Err(format!(
            "{at}.{name}: a {curve} coordinate is {len} bytes; this one has {}",
            bytes.len()
        ));
    }
    Ok(bytes)
}

/// A JWK with private parameters is a secret pasted into the wrong place: refuse it rather than
/// keep a private key in the proxy configuration.
fn refuse_private(jwk: &Map<String, Value>, at: &str, fields: &[&str]) -> Result<(), String> {
    match fields.iter().find(|field| jwk.contains_key(**field)) {
        Some(field) => Err(format!(
            "{at}.{field}: this is a private key; give the public key only"
        )),
        None => Ok(()),
    }
}
