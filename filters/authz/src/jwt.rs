//! Parsing and verifying JSON Web Tokens (RFC 7519) signed with RS256/384/512, PS256/384/512,
//! ES256, ES384, EdDSA (Ed25519) or HS256/384/512 (RFC 7515, RFC 7518, RFC 8037) against the
//! keys of a JWKS (RFC 7517).
//!
//! Signatures are checked by the host, natively, with ring ([`weft_sdk::crypto::verify`]);
//! everything else here is plain Rust. Natively (unit tests) the SDK runs the host's own crypto
//! code in process, so the module runs natively too, where a property test feeds it random and
//! mutated tokens. Everything a token can contain is input: every failure is a [`Rejection`],
//! never a panic.
//!
//! ```
//! use authz::jwt::{Rejection, Verifier};
//!
//! let verifier = Verifier::from_json(&serde_json::json!({
//!     "jwks": {"keys": [{"kty": "oct", "kid": "k1", "k": "c2VjcmV0LXNlY3JldC1zZWNyZXQtc2VjcmV0LXNlY3JldA"}]},
//!     "issuers": ["https://issuer.example"],
//! }))
//! .expect("valid config");
//! assert_eq!(verifier.verify("not.a.token", 0).unwrap_err(), Rejection::Malformed);
//! ```

use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::Deserialize;
use serde_json::{Map, Value};
use weft_sdk::crypto::{self, KeyError, VerifyingKey};

use crate::config::{self, JwtConfig};

/// Tokens longer than this are rejected as malformed before any parsing: a real JWT is a few
/// hundred bytes to a few KiB, and the proxy's header limits are larger than a token should be.
pub const MAX_TOKEN_BYTES: usize = 16 * 1024;

/// A signature algorithm this filter verifies: each is checked by the host
/// ([`weft_sdk::crypto`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Algorithm {
    /// RSASSA-PKCS1-v1_5 with SHA-256.
    Rs256,
    /// RSASSA-PKCS1-v1_5 with SHA-384.
    Rs384,
    /// RSASSA-PKCS1-v1_5 with SHA-512.
    Rs512,
    /// RSASSA-PSS with SHA-256 (MGF1 with SHA-256, a salt as long as the digest).
    Ps256,
    /// RSASSA-PSS with SHA-384.
    Ps384,
    /// RSASSA-PSS with SHA-512.
    Ps512,
    /// ECDSA on P-256 with SHA-256.
    Es256,
    /// ECDSA on P-384 with SHA-384.
    Es384,
    /// Ed25519 (RFC 8037).
    EdDsa,
    /// HMAC with SHA-256.
    Hs256,
    /// HMAC with SHA-384.
    Hs384,
    /// HMAC with SHA-512.
    Hs512,
}

impl Algorithm {
    /// Every supported algorithm.
    pub const ALL: [Algorithm; 12] = [
        Algorithm::Rs256,
        Algorithm::Rs384,
        Algorithm::Rs512,
        Algorithm::Ps256,
        Algorithm::Ps384,
        Algorithm::Ps512,
        Algorithm::Es256,
        Algorithm::Es384,
        Algorithm::EdDsa,
        Algorithm::Hs256,
        Algorithm::Hs384,
        Algorithm::Hs512,
    ];

    /// The JOSE name, e.g. `RS256`.
    pub fn as_str(self) -> &'static str {
        match self {
            Algorithm::Rs256 => "RS256",
            Algorithm::Rs384 => "RS384",
            Algorithm::Rs512 => "RS512",
            Algorithm::Ps256 => "PS256",
            Algorithm::Ps384 => "PS384",
            Algorithm::Ps512 => "PS512",
            Algorithm::Es256 => "ES256",
            Algorithm::Es384 => "ES384",
            Algorithm::EdDsa => "EdDSA",
            Algorithm::Hs256 => "HS256",
            Algorithm::Hs384 => "HS384",
            Algorithm::Hs512 => "HS512",
        }
    }

    /// The algorithm with this JOSE name (case-sensitive, as in RFC 7518), if supported. `none`
    /// is never supported.
    pub fn from_name(name: &str) -> Option<Algorithm> {
        Algorithm::ALL.into_iter().find(|alg| alg.as_str() == name)
    }

    /// The same algorithm, as the host's crypto interface names it.
    fn host(self) -> crypto::Algorithm {
        match self {
            Algorithm::Rs256 => crypto::Algorithm::Rs256,
            Algorithm::Rs384 => crypto::Algorithm::Rs384,
            Algorithm::Rs512 => crypto::Algorithm::Rs512,
            Algorithm::Ps256 => crypto::Algorithm::Ps256,
            Algorithm::Ps384 => crypto::Algorithm::Ps384,
            Algorithm::Ps512 => crypto::Algorithm::Ps512,
            Algorithm::Es256 => crypto::Algorithm::Es256,
            Algorithm::Es384 => crypto::Algorithm::Es384,
            Algorithm::EdDsa => crypto::Algorithm::EdDsa,
            Algorithm::Hs256 => crypto::Algorithm::Hs256,
            Algorithm::Hs384 => crypto::Algorithm::Hs384,
            Algorithm::Hs512 => crypto::Algorithm::Hs512,
        }
    }
}

/// The names of `algorithms`, comma-separated, for error messages.
pub(crate) fn names(algorithms: &[Algorithm]) -> String {
    algorithms
        .iter()
        .map(|alg| alg.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

impl fmt::Display for Algorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a token was not accepted. Each maps to a low-cardinality metric label
/// ([`Rejection::as_str`]) and a short description safe to send to the client.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Rejection {
    /// Not three base64url segments of JSON objects, too long, a `crit` header, or a claim of the
    /// wrong type.
    Malformed,
    /// The `alg` is `none`, unknown, or not among the configured algorithms.
    BadAlgorithm,
    /// No configured key has the token's `kid` and `alg`.
    UnknownKey,
    /// No candidate key verifies the signature.
    BadSignature,
    /// `exp` (plus the clock skew) is past.
    Expired,
    /// `nbf` (minus the clock skew) is in the future.
    NotYetValid,
    /// `iss` is missing or not a configured issuer.
    BadIssuer,
    /// `aud` is missing or names none of the configured audiences.
    BadAudience,
    /// `exp` is missing and `require_exp` is on.
    MissingExp,
}

impl Rejection {
    /// The metric label, e.g. `bad_signature`.
    pub fn as_str(self) -> &'static str {
        match self {
            Rejection::Malformed => "malformed",
            Rejection::BadAlgorithm => "bad_algorithm",
            Rejection::UnknownKey => "unknown_key",
            Rejection::BadSignature => "bad_signature",
            Rejection::Expired => "expired",
            Rejection::NotYetValid => "not_yet_valid",
            Rejection::BadIssuer => "bad_issuer",
            Rejection::BadAudience => "bad_audience",
            Rejection::MissingExp => "missing_exp",
        }
    }

    /// A short description for the client (`error_description`), free of key material.
    pub fn description(self) -> &'static str {
        match self {
            Rejection::Malformed => "malformed token",
            Rejection::BadAlgorithm => "signing algorithm not allowed",
            Rejection::UnknownKey => "unknown signing key",
            Rejection::BadSignature => "invalid signature",
            Rejection::Expired => "token expired",
            Rejection::NotYetValid => "token not yet valid",
            Rejection::BadIssuer => "issuer not allowed",
            Rejection::BadAudience => "audience not allowed",
            Rejection::MissingExp => "token has no expiry",
        }
    }
}

impl fmt::Display for Rejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.description())
    }
}

/// The claims of a verified token.
#[derive(Debug, Clone, PartialEq)]
pub struct Claims {
    map: Map<String, Value>,
    exp: Option<u64>,
    nbf: Option<u64>,
}

impl Claims {
    /// The claim at `path`: a top-level claim of that exact name if there is one (claim names
    /// may contain dots, e.g. `https://example.com/roles`), otherwise the dotted path through
    /// nested objects (`realm_access.roles`).
    pub fn get(&self, path: &str) -> Option<&Value> {
        if let Some(value) = self.map.get(path) {
            return Some(value);
        }
        let mut segments = path.split('.');
        let mut value = self.map.get(segments.next()?)?;
        for segment in segments {
            value = value.as_object()?.get(segment)?;
        }
        Some(value)
    }

    /// `exp`, in seconds since the Unix epoch.
    pub fn exp(&self) -> Option<u64> {
        self.exp
    }

    /// `nbf`, in seconds since the Unix epoch.
    pub fn nbf(&self) -> Option<u64> {
        self.nbf
    }
}

/// What verifies signatures, as owned bytes: the host parses it on every verification.
pub(crate) enum Material {
    /// An RSA public key: modulus and exponent, big-endian, without leading zeros.
    Rsa {
        /// The modulus.
        n: Vec<u8>,
        /// The public exponent.
        e: Vec<u8>,
    },
    /// An uncompressed EC point `0x04 || x || y` (65 bytes on P-256, 97 on P-384).
    EcPoint(Vec<u8>),
    /// A 32-byte Ed25519 public key.
    Ed25519(Vec<u8>),
    /// An HMAC secret.
    Secret(Vec<u8>),
}

impl Material {
    fn host(&self) -> VerifyingKey<'_> {
        match self {
            Material::Rsa { n, e } => VerifyingKey::Rsa { n, e },
            Material::EcPoint(point) => VerifyingKey::EcPoint(point),
            Material::Ed25519(key) => VerifyingKey::Ed25519(key),
            Material::Secret(secret) => VerifyingKey::Secret(secret),
        }
    }
}

/// One verification key from the JWKS.
pub(crate) struct Key {
    kid: Option<String>,
    alg: Algorithm,
    material: Material,
}

impl fmt::Debug for Key {
    // Never print key material, not even public keys: keep logs and errors short and safe.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Key")
            .field("kid", &self.kid)
            .field("alg", &self.alg)
            .finish_non_exhaustive()
    }
}

impl Key {
    pub(crate) fn alg(&self) -> Algorithm {
        self.alg
    }

    pub(crate) fn kid(&self) -> Option<&str> {
        self.kid.as_deref()
    }

    /// Whether `signature` is this key's signature of `signing_input`, by the host. A key the
    /// host refuses verifies nothing; none is refused, since each was tried when the
    /// configuration was loaded ([`build::key`]).
    fn verify(&self, signing_input: &[u8], signature: &[u8]) -> bool {
        crypto::verify(
            self.alg.host(),
            self.material.host(),
            signing_input,
            signature,
        ) == Ok(true)
    }
}

/// Checks tokens: structure, algorithm, key, signature, then issuer, audience and times.
pub struct Verifier {
    keys: Vec<Key>,
    algorithms: Vec<Algorithm>,
    issuers: Vec<String>,
    audiences: Vec<String>,
    require_exp: bool,
    clock_skew: u64,
}

impl fmt::Debug for Verifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Verifier")
            .field("keys", &self.keys)
            .field("algorithms", &self.algorithms)
            .field("issuers", &self.issuers)
            .field("audiences", &self.audiences)
            .field("require_exp", &self.require_exp)
            .field("clock_skew", &self.clock_skew)
            .finish()
    }
}

/// The JOSE header fields this filter reads.
#[derive(Deserialize)]
struct Header {
    alg: String,
    #[serde(default)]
    kid: Option<String>,
    /// Extensions the verifier must understand (RFC 7515 §4.1.11); this one understands none.
    #[serde(default)]
    crit: Option<serde::de::IgnoredAny>,
}

impl Verifier {
    /// Build a verifier from the filter's `jwt` configuration section (see the README), e.g.
    /// `{"jwks": {"keys": [...]}, "issuers": ["https://issuer.example"]}`. Errors name the field
    /// (`jwt.jwks.keys[1].n: ...`).
    pub fn from_json(jwt: &Value) -> Result<Verifier, String> {
        let config: JwtConfig = config::parse_section(jwt, "jwt")?;
        Verifier::from_config(&config)
    }

    pub(crate) fn from_config(config: &JwtConfig) -> Result<Verifier, String> {
        let keys = crate::jwks::parse(&config.jwks, "jwt.jwks")?;
        let algorithms = match &config.algorithms {
            Some(names) => {
                if names.is_empty() {
                    return Err("jwt.algorithms: must not be empty (omit it to allow the algorithms of the keys)".to_owned());
                }
                let mut algorithms = Vec::new();
                for (i, name) in names.iter().enumerate() {
                    let alg = Algorithm::from_name(name).ok_or_else(|| {
                        format!(
                            "jwt.algorithms[{i}]: unsupported algorithm `{name}`; supported: {}",
                            self::names(&Algorithm::ALL)
                        )
                    })?;
                    if !keys.iter().any(|key| key.alg == alg) {
                        return Err(format!(
                            "jwt.algorithms[{i}]: no key in jwt.jwks is for {alg}"
                        ));
                    }
                    if !algorithms.contains(&alg) {
                        algorithms.push(alg);
                    }
                }
                algorithms
            }
            None => {
                let mut algorithms = Vec::new();
                for key in &keys {
                    if !algorithms.contains(&key.alg) {
                        algorithms.push(key.alg);
                    }
                }
                algorithms
            }
        };
        if config.issuers.is_empty() {
            return Err("jwt.issuers: at least one issuer is required".to_owned());
        }
        for (i, issuer) in config.issuers.iter().enumerate() {
            if issuer.is_empty() {
                return Err(format!("jwt.issuers[{i}]: must not be empty"));
            }
        }
        for (i, audience) in config.audiences.iter().enumerate() {
            if audience.is_empty() {
                return Err(format!("jwt.audiences[{i}]: must not be empty"));
            }
        }
        Ok(Verifier {
            keys,
            algorithms,
            issuers: config.issuers.clone(),
            audiences: config.audiences.clone(),
            require_exp: config.require_exp,
            clock_skew: config.clock_skew.seconds("jwt.clock_skew")?,
        })
    }

    /// Verify `token` at `now` (seconds since the Unix epoch): everything
    /// [`Verifier::verify_untimed`] checks, then `exp` and `nbf`.
    pub fn verify(&self, token: &str, now: u64) -> Result<Claims, Rejection> {
        let claims = self.verify_untimed(token)?;
        self.check_time(&claims, now)?;
        Ok(claims)
    }

    /// Verify everything about `token` that does not depend on the time: structure, algorithm,
    /// key, signature, issuer, audience, and that `exp` is present if required. The result can
    /// be cached; [`Verifier::check_time`] must still run on every use.
    pub fn verify_untimed(&self, token: &str) -> Result<Claims, Rejection> {
        if token.is_empty() || token.len() > MAX_TOKEN_BYTES {
            return Err(Rejection::Malformed);
        }
        let (header_b64, rest) = token.split_once('.').ok_or(Rejection::Malformed)?;
        let (payload_b64, signature_b64) = rest.split_once('.').ok_or(Rejection::Malformed)?;
        if signature_b64.contains('.') {
            // Five segments: a JWE, or garbage. Neither is a signed token.
            return Err(Rejection::Malformed);
        }

        let header: Header =
            serde_json::from_slice(&decode(header_b64)?).map_err(|_| Rejection::Malformed)?;
        if header.crit.is_some() {
            return Err(Rejection::Malformed);
        }
        let alg = Algorithm::from_name(&header.alg).ok_or(Rejection::BadAlgorithm)?;
        if !self.algorithms.contains(&alg) {
            return Err(Rejection::BadAlgorithm);
        }
        let signature = decode(signature_b64)?;
        let signing_input = &token.as_bytes()[..header_b64.len() + 1 + payload_b64.len()];

        // A token naming a key may only use that key; keys without a `kid` stand in for any
        // name only when no key has it. A token naming none may use any key of its algorithm.
        // The algorithm always has to be the key's: no RSA public key used as an HMAC secret.
        let of_alg = self.keys.iter().filter(|key| key.alg == alg);
        let candidates: Vec<&Key> = match header.kid.as_deref() {
            Some(kid) => {
                let named: Vec<&Key> = of_alg
                    .clone()
                    .filter(|key| key.kid() == Some(kid))
                    .collect();
                if named.is_empty() {
                    of_alg.filter(|key| key.kid.is_none()).collect()
                } else {
                    named
                }
            }
            None => of_alg.collect(),
        };
        if candidates.is_empty() {
            return Err(Rejection::UnknownKey);
        }
        let verified = candidates
            .iter()
            .any(|key| key.verify(signing_input, &signature));
        if !verified {
            return Err(Rejection::BadSignature);
        }

        // Only now, with the signature checked, is the payload worth parsing.
        let map: Map<String, Value> =
            serde_json::from_slice(&decode(payload_b64)?).map_err(|_| Rejection::Malformed)?;
        let exp = numeric_date(map.get("exp"))?;
        let nbf = numeric_date(map.get("nbf"))?;
        if self.require_exp && exp.is_none() {
            return Err(Rejection::MissingExp);
        }
        match map.get("iss") {
            Some(Value::String(iss)) if self.issuers.iter().any(|known| known == iss) => {}
            _ => return Err(Rejection::BadIssuer),
        }
        if !self.audiences.is_empty() {
            let accepted = |aud: &str| self.audiences.iter().any(|known| known == aud);
            let ok = match map.get("aud") {
                Some(Value::String(aud)) => accepted(aud),
                Some(Value::Array(auds)) => auds.iter().filter_map(Value::as_str).any(accepted),
                _ => false,
            };
            if !ok {
                return Err(Rejection::BadAudience);
            }
        }
        Ok(Claims { map, exp, nbf })
    }

    /// Check `exp` and `nbf` of verified claims at `now`, allowing the configured clock skew.
    pub fn check_time(&self, claims: &Claims, now: u64) -> Result<(), Rejection> {
        if let Some(exp) = claims.exp
            && now >= exp.saturating_add(self.clock_skew)
        {
            return Err(Rejection::Expired);
        }
        if let Some(nbf) = claims.nbf
            && nbf > now.saturating_add(self.clock_skew)
        {
            return Err(Rejection::NotYetValid);
        }
        Ok(())
    }

    /// The algorithms tokens may use.
    pub fn algorithms(&self) -> &[Algorithm] {
        &self.algorithms
    }

    /// The configured clock skew, in seconds.
    pub fn clock_skew(&self) -> u64 {
        self.clock_skew
    }
}

/// Strict base64url: the URL-safe alphabet, no padding, no non-zero trailing bits. Strictness
/// matters: a lenient decoder maps several spellings to the same bytes, so an altered token
/// could verify.
fn decode(segment: &str) -> Result<Vec<u8>, Rejection> {
    URL_SAFE_NO_PAD
        .decode(segment)
        .map_err(|_| Rejection::Malformed)
}

/// A NumericDate claim (RFC 7519 §2): seconds since the epoch, possibly fractional. Negative
/// values become 0 (long past); other types are malformed.
fn numeric_date(value: Option<&Value>) -> Result<Option<u64>, Rejection> {
    let Some(value) = value else {
        return Ok(None);
    };
    let Value::Number(number) = value else {
        return Err(Rejection::Malformed);
    };
    if let Some(seconds) = number.as_u64() {
        return Ok(Some(seconds));
    }
    match number.as_f64() {
        // `as` saturates: huge dates become u64::MAX, negative ones 0.
        Some(seconds) if seconds.is_finite() => Ok(Some(seconds.floor() as u64)),
        _ => Err(Rejection::Malformed),
    }
}

pub(crate) mod build {
    //! Making [`Key`]s from validated JWK fields, for `jwks.rs`.

    use super::*;

    /// A key for `alg`, once the host accepts `material` for it: a trial verification with an
    /// empty signature must say "invalid signature", not "unusable key". This catches a key of
    /// the wrong kind for the algorithm ([`KeyError::WrongKeyType`]) and anything the host's
    /// own key checks refuse ([`KeyError::InvalidKey`]), when the configuration is loaded
    /// rather than on every request.
    pub(crate) fn key(
        kid: Option<String>,
        alg: Algorithm,
        material: Material,
    ) -> Result<Key, KeyError> {
        crypto::verify(alg.host(), material.host(), b"", b"")?;
        Ok(Key { kid, alg, material })
    }
}
