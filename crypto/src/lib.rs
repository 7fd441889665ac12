//! Signature verification and SHA-2 digests for filters: the native side of the
//! `weft:filter/crypto` WIT interface.
//!
//! A filter that checks a JWT (or any signed message) calls `crypto.verify` and
//! `crypto.digest` instead of carrying its own cryptography compiled to wasm. Two callers
//! use this crate:
//!
//! - the proxy host, which converts the WIT values of a filter's call into [`Algorithm`],
//!   [`Key`] and [`DigestAlgorithm`], calls [`verify`] / [`digest`], and converts the
//!   result back;
//! - the guest SDK, which calls it directly when a filter's unit tests run natively
//!   (no wasm, no host), so a test sees the same answers the proxy gives.
//!
//! The crate therefore has plain Rust types of its own and depends on nothing but
//! [ring]: no wasmtime, no generated bindings.
//!
//! # Why ring
//!
//! ring is already linked into the proxy (rustls uses it as its crypto provider), so the
//! host gains no new C/assembly build and no second implementation of the same
//! primitives. Its verification code is constant-time where it matters (HMAC tag
//! comparison), checks RSA key sizes and exponents, and validates EC public points. And
//! it runs natively, outside the wasm sandbox, which is the point of the interface:
//! `benches/verify.rs` measures it.
//!
//! # Results
//!
//! [`verify`] separates a bad *key* from a bad *signature*:
//!
//! - `Err(`[`KeyError::WrongKeyType`]`)`: the key is not of the kind the algorithm uses
//!   (an EC point for RS256, an RSA key for HS256, ...).
//! - `Err(`[`KeyError::InvalidKey`]`)`: the key is of the right kind but malformed or out
//!   of range; the message says what is wrong. This crate checks the key itself before
//!   calling ring, because ring reports a bad key and a bad signature with the same
//!   opaque error.
//! - `Ok(false)`: the key passed those checks, and the signature does not verify, for
//!   whatever reason (wrong value, wrong length, empty, malformed encoding).
//! - `Ok(true)`: the signature is valid.
//!
//! Two key defects cannot be told from a bad signature with ring's public API and yield
//! `Ok(false)` rather than `InvalidKey`: an EC point of the right length and prefix that
//! is not on the curve (or has a coordinate out of range), and 32 bytes that do not
//! decode to an Ed25519 point. See [`Key::EcPoint`] and [`Key::Ed25519`].
//!
//! Nothing here panics, whatever the input.
//!
//! [ring]: https://docs.rs/ring/0.17

use std::fmt;

use ring::signature::{self, RsaParameters, UnparsedPublicKey, VerificationAlgorithm};
use ring::{digest as ring_digest, hmac};

/// A signature algorithm, named as JWS (RFC 7518, RFC 8037) names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Algorithm {
    /// RSASSA-PKCS1-v1_5 with SHA-256. Key: [`Key::Rsa`].
    Rs256,
    /// RSASSA-PKCS1-v1_5 with SHA-384. Key: [`Key::Rsa`].
    Rs384,
    /// RSASSA-PKCS1-v1_5 with SHA-512. Key: [`Key::Rsa`].
    Rs512,
    /// RSASSA-PSS with SHA-256, MGF1 with SHA-256, salt as long as the digest.
    /// Key: [`Key::Rsa`].
    Ps256,
    /// RSASSA-PSS with SHA-384, MGF1 with SHA-384, salt as long as the digest.
    /// Key: [`Key::Rsa`].
    Ps384,
    /// RSASSA-PSS with SHA-512, MGF1 with SHA-512, salt as long as the digest.
    /// Key: [`Key::Rsa`].
    Ps512,
    /// ECDSA on P-256 with SHA-256; the signature is `r || s` (64 bytes).
    /// Key: [`Key::EcPoint`] (65 bytes).
    Es256,
    /// ECDSA on P-384 with SHA-384; the signature is `r || s` (96 bytes).
    /// Key: [`Key::EcPoint`] (97 bytes).
    Es384,
    /// Ed25519 (JWS `EdDSA` with an `Ed25519` key); the signature is 64 bytes.
    /// Key: [`Key::Ed25519`].
    EdDsa,
    /// HMAC with SHA-256. Key: [`Key::Secret`].
    Hs256,
    /// HMAC with SHA-384. Key: [`Key::Secret`].
    Hs384,
    /// HMAC with SHA-512. Key: [`Key::Secret`].
    Hs512,
}

impl Algorithm {
    /// Every algorithm, in the order of the WIT enum.
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

    /// The algorithm a JWS `alg` header value names: `"RS256"`, ..., `"EdDSA"`, ...,
    /// `"HS512"`. JWS algorithm names are case-sensitive, so is this; `None` for any
    /// other name (including `"none"`).
    pub fn from_jws_name(name: &str) -> Option<Self> {
        Self::ALL
            .into_iter()
            .find(|algorithm| algorithm.as_jws_name() == name)
    }

    /// The algorithm's JWS `alg` name: `"RS256"`, ..., `"EdDSA"`, ..., `"HS512"`.
    pub fn as_jws_name(self) -> &'static str {
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
}

impl fmt::Display for Algorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_jws_name())
    }
}

/// The key a signature is checked with; it borrows its bytes.
///
/// `Debug` does not print the bytes of a [`Key::Secret`], only its length.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Key<'a> {
    /// An RSA public key, for [`Algorithm::Rs256`] ... [`Algorithm::Ps512`]: a JWK's `n` and
    /// `e`, base64url-decoded.
    ///
    /// Both are big-endian unsigned integers; leading zero bytes are ignored. `n` must be
    /// odd and 2048 to 8192 bits long (counting from its highest set bit); `e` must be odd,
    /// at least 3 and at most 33 bits long (ring's limit, `2^33 - 1`).
    Rsa {
        /// The modulus, big-endian.
        n: &'a [u8],
        /// The public exponent, big-endian.
        e: &'a [u8],
    },
    /// An EC public key, for [`Algorithm::Es256`] (P-256) and [`Algorithm::Es384`]
    /// (P-384): the uncompressed SEC1 point `0x04 || x || y` (a JWK's `x` and `y`,
    /// base64url-decoded, after a `0x04` byte): 65 bytes for P-256, 97 for P-384.
    ///
    /// The length and the `0x04` prefix are checked here (`InvalidKey`). Whether the point
    /// is on the curve (and its coordinates below the field prime) is checked by ring
    /// during verification, but ring reports that failure exactly like a bad signature and
    /// offers no cheap separate check, so **a point of the right shape that is not on the
    /// curve yields `Ok(false)`, not `InvalidKey`**: no signature ever verifies with it.
    EcPoint(&'a [u8]),
    /// An Ed25519 public key, for [`Algorithm::EdDsa`]: 32 bytes (a JWK's `x`,
    /// base64url-decoded).
    ///
    /// The length is checked here (`InvalidKey`); 32 bytes that do not decode to a curve
    /// point yield `Ok(false)` (ring does not tell that apart from a bad signature).
    Ed25519(&'a [u8]),
    /// An HMAC secret, for [`Algorithm::Hs256`], [`Algorithm::Hs384`] and
    /// [`Algorithm::Hs512`]: any non-empty byte string (a JWK's `k`, base64url-decoded).
    Secret(&'a [u8]),
}

impl fmt::Debug for Key<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Key::Rsa { n, e } => f
                .debug_struct("Rsa")
                .field("n", &format_args!("<{} bytes>", n.len()))
                .field("e", e)
                .finish(),
            Key::EcPoint(point) => f.debug_tuple("EcPoint").field(point).finish(),
            Key::Ed25519(key) => f.debug_tuple("Ed25519").field(key).finish(),
            Key::Secret(secret) => f
                .debug_tuple("Secret")
                .field(&format_args!("<{} bytes>", secret.len()))
                .finish(),
        }
    }
}

/// Why a signature could not be checked at all (as opposed to checked and found invalid,
/// which is `Ok(false)`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyError {
    /// The key is not of the kind the algorithm uses (say an EC point for RS256).
    WrongKeyType,
    /// The key is of the right kind but malformed or out of range (an RSA modulus under
    /// 2048 or over 8192 bits, an EC point of the wrong length, an empty secret, ...); the
    /// message says which.
    InvalidKey(String),
}

impl fmt::Display for KeyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KeyError::WrongKeyType => f.write_str("the key is not of the kind the algorithm uses"),
            KeyError::InvalidKey(message) => write!(f, "invalid key: {message}"),
        }
    }
}

impl std::error::Error for KeyError {}

/// The smallest RSA modulus accepted, in bits.
const RSA_MIN_BITS: usize = 2048;
/// The largest RSA modulus accepted, in bits (ring's limit).
const RSA_MAX_BITS: usize = 8192;
/// The largest RSA public exponent accepted: ring's limit, the largest 33-bit number.
const RSA_MAX_E: u64 = (1 << 33) - 1;

/// Whether `signature` is a valid signature of `message` under `key` with `algorithm`.
///
/// - `Err(KeyError::WrongKeyType)` if `key` is not of the kind `algorithm` uses: an
///   [`Key::Rsa`] for `RS*`/`PS*`, an [`Key::EcPoint`] for `ES*`, an [`Key::Ed25519`] for
///   `EdDSA`, a [`Key::Secret`] for `HS*`.
/// - `Err(KeyError::InvalidKey(_))` if the key is of the right kind but unusable: see each
///   [`Key`] variant for what is checked.
/// - `Ok(false)` if the signature does not verify, including a signature of the wrong
///   length, empty, or otherwise malformed. (Also for the two key defects ring cannot tell
///   apart from a bad signature: see [`Key::EcPoint`] and [`Key::Ed25519`].)
/// - `Ok(true)` if it does.
///
/// HMAC tags are compared in constant time. Never panics.
pub fn verify(
    algorithm: Algorithm,
    key: Key<'_>,
    message: &[u8],
    signature: &[u8],
) -> Result<bool, KeyError> {
    match (algorithm, key) {
        (
            Algorithm::Rs256
            | Algorithm::Rs384
            | Algorithm::Rs512
            | Algorithm::Ps256
            | Algorithm::Ps384
            | Algorithm::Ps512,
            Key::Rsa { n, e },
        ) => {
            let params: &'static RsaParameters = match algorithm {
                Algorithm::Rs256 => &signature::RSA_PKCS1_2048_8192_SHA256,
                Algorithm::Rs384 => &signature::RSA_PKCS1_2048_8192_SHA384,
                Algorithm::Rs512 => &signature::RSA_PKCS1_2048_8192_SHA512,
                Algorithm::Ps256 => &signature::RSA_PSS_2048_8192_SHA256,
                Algorithm::Ps384 => &signature::RSA_PSS_2048_8192_SHA384,
                _ => &signature::RSA_PSS_2048_8192_SHA512,
            };
            verify_rsa(params, n, e, message, signature)
        }
        (Algorithm::Es256, Key::EcPoint(point)) => verify_ec(
            &signature::ECDSA_P256_SHA256_FIXED,
            "ES256",
            "P-256",
            65,
            point,
            message,
            signature,
        ),
        (Algorithm::Es384, Key::EcPoint(point)) => verify_ec(
            &signature::ECDSA_P384_SHA384_FIXED,
            "ES384",
            "P-384",
            97,
            point,
            message,
            signature,
        ),
        (Algorithm::EdDsa, Key::Ed25519(public_key)) => {
            if public_key.len() != 32 {
                return Err(KeyError::InvalidKey(format!(
                    "an Ed25519 public key is 32 bytes, got {}",
                    public_key.len()
                )));
            }
            Ok(UnparsedPublicKey::new(&signature::ED25519, public_key)
                .verify(message, signature)
                .is_ok())
        }
        (Algorithm::Hs256 | Algorithm::Hs384 | Algorithm::Hs512, Key::Secret(secret)) => {
            if secret.is_empty() {
                return Err(KeyError::InvalidKey("empty secret".to_owned()));
            }
            let hmac_algorithm = match algorithm {
                Algorithm::Hs256 => hmac::HMAC_SHA256,
                Algorithm::Hs384 => hmac::HMAC_SHA384,
                _ => hmac::HMAC_SHA512,
            };
            let key = hmac::Key::new(hmac_algorithm, secret);
            Ok(hmac::verify(&key, message, signature).is_ok())
        }
        _ => Err(KeyError::WrongKeyType),
    }
}

/// RSA (PKCS#1 v1.5 or PSS, per `params`): checks the key, then lets ring verify.
fn verify_rsa(
    params: &'static RsaParameters,
    n: &[u8],
    e: &[u8],
    message: &[u8],
    signature: &[u8],
) -> Result<bool, KeyError> {
    // ring wants both without leading zeros (and rejects them otherwise).
    let n = strip_leading_zeros(n);
    let e = strip_leading_zeros(e);
    check_rsa_modulus(n)?;
    check_rsa_exponent(e)?;
    let key = signature::RsaPublicKeyComponents { n, e };
    // The key passed every check ring makes on it, so an error here is the signature's.
    Ok(key.verify(params, message, signature).is_ok())
}

/// `bytes` without its leading zero bytes (empty if all are zero).
fn strip_leading_zeros(bytes: &[u8]) -> &[u8] {
    let first_nonzero = bytes
        .iter()
        .position(|&byte| byte != 0)
        .unwrap_or(bytes.len());
    &bytes[first_nonzero..]
}

/// The bit length of a big-endian unsigned integer without leading zero bytes.
fn bit_length(minimal: &[u8]) -> usize {
    match minimal.first() {
        None => 0,
        Some(&top) => (minimal.len() - 1) * 8 + (8 - top.leading_zeros() as usize),
    }
}

/// The modulus (without leading zeros) must be 2048..=8192 bits and odd.
fn check_rsa_modulus(n: &[u8]) -> Result<(), KeyError> {
    let bits = bit_length(n);
    if !(RSA_MIN_BITS..=RSA_MAX_BITS).contains(&bits) {
        return Err(KeyError::InvalidKey(format!(
            "the RSA modulus is {bits} bits; allowed: {RSA_MIN_BITS} to {RSA_MAX_BITS} bits"
        )));
    }
    if n.last().is_some_and(|&low| low & 1 == 0) {
        return Err(KeyError::InvalidKey("the RSA modulus is even".to_owned()));
    }
    Ok(())
}

/// The public exponent (without leading zeros) must be odd, >= 3 and at most 33 bits.
fn check_rsa_exponent(e: &[u8]) -> Result<(), KeyError> {
    let bits = bit_length(e);
    if bits > 33 {
        return Err(KeyError::InvalidKey(format!(
            "the RSA public exponent is {bits} bits; allowed: at most 33 bits (up to {RSA_MAX_E})"
        )));
    }
    // At most 33 bits, so at most 5 bytes: fits a u64.
    let value = e
        .iter()
        .fold(0u64, |value, &byte| (value << 8) | u64::from(byte));
    if value < 3 {
        return Err(KeyError::InvalidKey(format!(
            "the RSA public exponent is {value}; it must be at least 3"
        )));
    }
    if value & 1 == 0 {
        return Err(KeyError::InvalidKey(format!(
            "the RSA public exponent is {value}; it must be odd"
        )));
    }
    Ok(())
}

/// ECDSA with a fixed-length `r || s` signature: checks the point's shape, then lets ring
/// verify (ring also checks that the point is on the curve, indistinguishably from a bad
/// signature).
fn verify_ec(
    ring_algorithm: &'static dyn VerificationAlgorithm,
    jws_name: &str,
    curve: &str,
    point_len: usize,
    point: &[u8],
    message: &[u8],
    signature: &[u8],
) -> Result<bool, KeyError> {
    if point.len() != point_len {
        return Err(KeyError::InvalidKey(format!(
            "{jws_name} needs an uncompressed {curve} point (0x04 || x || y) of {point_len} bytes, got {} bytes",
            point.len()
        )));
    }
    if point.first() != Some(&0x04) {
        let prefix = point.first().copied().unwrap_or_default();
        return Err(KeyError::InvalidKey(format!(
            "{jws_name} needs an uncompressed {curve} point, starting with 0x04; this one starts with {prefix:#04x}"
        )));
    }
    Ok(UnparsedPublicKey::new(ring_algorithm, point)
        .verify(message, signature)
        .is_ok())
}

/// A SHA-2 digest algorithm.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DigestAlgorithm {
    /// SHA-256 (32-byte digest).
    Sha256,
    /// SHA-384 (48-byte digest).
    Sha384,
    /// SHA-512 (64-byte digest).
    Sha512,
}

impl DigestAlgorithm {
    /// The length of the algorithm's digest in bytes: 32, 48 or 64.
    pub fn output_len(self) -> usize {
        self.ring_algorithm().output_len()
    }

    fn ring_algorithm(self) -> &'static ring_digest::Algorithm {
        match self {
            DigestAlgorithm::Sha256 => &ring_digest::SHA256,
            DigestAlgorithm::Sha384 => &ring_digest::SHA384,
            DigestAlgorithm::Sha512 => &ring_digest::SHA512,
        }
    }
}

/// The digest of `data` with `algorithm`: 32, 48 or 64 bytes.
pub fn digest(algorithm: DigestAlgorithm, data: &[u8]) -> Vec<u8> {
    ring_digest::digest(algorithm.ring_algorithm(), data)
        .as_ref()
        .to_vec()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jws_names_round_trip_and_are_case_sensitive() {
        let names = [
            "RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "EdDSA",
            "HS256", "HS384", "HS512",
        ];
        for (algorithm, name) in Algorithm::ALL.into_iter().zip(names) {
            assert_eq!(algorithm.as_jws_name(), name);
            assert_eq!(algorithm.to_string(), name);
            assert_eq!(Algorithm::from_jws_name(name), Some(algorithm));
        }
        for other in ["none", "rs256", "EDDSA", "Ed25519", "ES512", "HS1", ""] {
            assert_eq!(Algorithm::from_jws_name(other), None, "{other}");
        }
    }

    #[test]
    fn strips_leading_zeros() {
        assert_eq!(strip_leading_zeros(&[0, 0, 1, 0]), &[1, 0]);
        assert_eq!(strip_leading_zeros(&[0, 0]), &[] as &[u8]);
        assert_eq!(strip_leading_zeros(&[]), &[] as &[u8]);
        assert_eq!(strip_leading_zeros(&[7]), &[7]);
    }

    #[test]
    fn bit_lengths() {
        assert_eq!(bit_length(&[]), 0);
        assert_eq!(bit_length(&[1]), 1);
        assert_eq!(bit_length(&[0x80]), 8);
        assert_eq!(bit_length(&[1, 0]), 9);
        assert_eq!(bit_length(&[0x7f, 0xff, 0xff, 0xff, 0xff]), 39);
        assert_eq!(bit_length(&[1, 0xff, 0xff, 0xff, 0xff]), 33);
    }

    #[test]
    fn modulus_sizes_at_the_edges() {
        let odd = |bytes: usize, top: u8| {
            let mut n = vec![0xff; bytes];
            n[0] = top;
            n
        };
        // 2047 bits: 256 bytes (ring alone would accept it: it rounds up to bytes).
        assert_eq!(
            check_rsa_modulus(&odd(256, 0x7f)),
            Err(KeyError::InvalidKey(
                "the RSA modulus is 2047 bits; allowed: 2048 to 8192 bits".to_owned()
            ))
        );
        assert_eq!(check_rsa_modulus(&odd(256, 0x80)), Ok(()));
        assert_eq!(check_rsa_modulus(&odd(1024, 0xff)), Ok(()));
        assert_eq!(
            check_rsa_modulus(&odd(1025, 0x01)),
            Err(KeyError::InvalidKey(
                "the RSA modulus is 8193 bits; allowed: 2048 to 8192 bits".to_owned()
            ))
        );
        assert_eq!(
            check_rsa_modulus(&[]),
            Err(KeyError::InvalidKey(
                "the RSA modulus is 0 bits; allowed: 2048 to 8192 bits".to_owned()
            ))
        );
        let mut even = odd(256, 0xc0);
        even[255] = 0xfe;
        assert_eq!(
            check_rsa_modulus(&even),
            Err(KeyError::InvalidKey("the RSA modulus is even".to_owned()))
        );
    }

    #[test]
    fn exponents_at_the_edges() {
        assert_eq!(check_rsa_exponent(&[3]), Ok(()));
        assert_eq!(check_rsa_exponent(&[1, 0, 1]), Ok(()));
        assert_eq!(check_rsa_exponent(&[1, 0xff, 0xff, 0xff, 0xff]), Ok(()));
        assert_eq!(
            check_rsa_exponent(&[]),
            Err(KeyError::InvalidKey(
                "the RSA public exponent is 0; it must be at least 3".to_owned()
            ))
        );
        assert_eq!(
            check_rsa_exponent(&[1]),
            Err(KeyError::InvalidKey(
                "the RSA public exponent is 1; it must be at least 3".to_owned()
            ))
        );
        assert_eq!(
            check_rsa_exponent(&[1, 0, 0]),
            Err(KeyError::InvalidKey(
                "the RSA public exponent is 65536; it must be odd".to_owned()
            ))
        );
        assert_eq!(
            check_rsa_exponent(&[2, 0, 0, 0, 1]),
            Err(KeyError::InvalidKey(
                "the RSA public exponent is 34 bits; allowed: at most 33 bits (up to 8589934591)"
                    .to_owned()
            ))
        );
        assert!(matches!(
            check_rsa_exponent(&[0xff; 64]),
            Err(KeyError::InvalidKey(message)) if message.starts_with("the RSA public exponent is 512 bits")
        ));
    }

    #[test]
    fn key_error_display_and_debug_hide_secrets() {
        assert_eq!(
            KeyError::WrongKeyType.to_string(),
            "the key is not of the kind the algorithm uses"
        );
        assert_eq!(
            KeyError::InvalidKey("empty secret".to_owned()).to_string(),
            "invalid key: empty secret"
        );
        assert_eq!(
            format!("{:?}", Key::Secret(b"hunter2")),
            "Secret(<7 bytes>)"
        );
        assert_eq!(
            format!(
                "{:?}",
                Key::Rsa {
                    n: &[1; 256],
                    e: &[1, 0, 1]
                }
            ),
            "Rsa { n: <256 bytes>, e: [1, 0, 1] }"
        );
    }

    #[test]
    fn digest_lengths() {
        for (algorithm, len) in [
            (DigestAlgorithm::Sha256, 32),
            (DigestAlgorithm::Sha384, 48),
            (DigestAlgorithm::Sha512, 64),
        ] {
            assert_eq!(algorithm.output_len(), len);
            assert_eq!(digest(algorithm, b"").len(), len);
        }
    }
}
