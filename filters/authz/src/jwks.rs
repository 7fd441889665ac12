//! Reading an inline JWKS (RFC 7517) into verification keys, with errors that name the field
//! (`jwt.jwks.keys[1].n: ...`) and never quote key material.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Map, Value};

use crate::jwt::{Algorithm, Key, build};

/// RFC 7518 §3.2: an HS256 key must be at least as long as the hash output.
const MIN_HMAC_BYTES: usize = 32;

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
    let expect_alg = |wanted: Algorithm| match alg {
        None => Ok(()),
        Some(name) if name == wanted.as_str() => Ok(()),
        Some(name) => Err(format!(
            "{at}.alg: `{name}` is not supported for a `{kty}` key; supported: {wanted}"
        )),
    };
    match kty {
        "RSA" => {
            expect_alg(Algorithm::Rs256)?;
            refuse_private(jwk, at, &["d", "p", "q", "dp", "dq", "qi"])?;
            // Below 2048 bits is refused (NIST SP 800-131A, RFC 7518 §3.3); above 4096 only
            // makes every verification slower.
            let n = required_bytes(jwk, at, "n")?;
            let e = required_bytes(jwk, at, "e")?;
            let key = crate::rsa::PublicKey::new(&n, &e).map_err(|err| {
                let field = if err.contains("exponent") { "e" } else { "n" };
                format!("{at}.{field}: {err}")
            })?;
            Ok(build::rsa(kid, key))
        }
        "EC" => {
            expect_alg(Algorithm::Es256)?;
            refuse_private(jwk, at, &["d"])?;
            match string(jwk, at, "crv")? {
                Some("P-256") => {}
                Some(other) => {
                    return Err(format!(
                        "{at}.crv: unsupported curve `{other}`; supported: P-256"
                    ));
                }
                None => return Err(format!("{at}: missing field `crv`")),
            }
            let x = coordinate(jwk, at, "x")?;
            let y = coordinate(jwk, at, "y")?;
            let point = p256::EncodedPoint::from_affine_coordinates(&x.into(), &y.into(), false);
            let key = p256::ecdsa::VerifyingKey::from_encoded_point(&point)
                .map_err(|_| format!("{at}: x and y are not a point on P-256"))?;
            Ok(build::ec(kid, key))
        }
        "oct" => {
            expect_alg(Algorithm::Hs256)?;
            let secret = required_bytes(jwk, at, "k")?;
            if secret.len() < MIN_HMAC_BYTES {
                return Err(format!(
                    "{at}.k: HS256 secrets must be at least {MIN_HMAC_BYTES} bytes; this one has {}",
                    secret.len()
                ));
            }
            build::hmac(kid, &secret).ok_or_else(|| format!("{at}.k: unusable HMAC secret"))
        }
        other => Err(format!(
            "{at}.kty: unsupported key type `{other}`; supported: RSA, EC (P-256), oct"
        )),
    }
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

fn coordinate(jwk: &Map<String, Value>, at: &str, name: &str) -> Result<[u8; 32], String> {
    let bytes = required_bytes(jwk, at, name)?;
    <[u8; 32]>::try_from(bytes.as_slice()).map_err(|_| {
        format!(
            "{at}.{name}: a P-256 coordinate is 32 bytes; this one has {}",
            bytes.len()
        )
    })
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
