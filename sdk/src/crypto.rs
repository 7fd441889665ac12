//! Cryptography run by the host, natively (ring): signature verification and SHA-2 digests,
//! many times faster than the same code compiled to wasm (an RS256 verification in wasm took
//! 0.6 ms; through the host, see the README's filter-cost section).
//!
//! ```no_run
//! use weft_sdk::crypto::{self, Algorithm, VerifyingKey};
//!
//! # let (n, e, signing_input, signature) = (vec![], vec![], vec![], vec![]);
//! let key = VerifyingKey::Rsa { n: &n, e: &e };
//! let valid = crypto::verify(Algorithm::Rs256, key, &signing_input, &signature);
//! ```
//!
//! When a filter's unit tests run natively, the same functions run the same ring code in the
//! test process, so the answers are the proxy's.

use std::fmt;

/// A signature algorithm, named as JWS (RFC 7518) names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Algorithm {
    /// RSASSA-PKCS1-v1_5 with SHA-256.
    Rs256,
    /// RSASSA-PKCS1-v1_5 with SHA-384.
    Rs384,
    /// RSASSA-PKCS1-v1_5 with SHA-512.
    Rs512,
    /// RSASSA-PSS with SHA-256.
    Ps256,
    /// RSASSA-PSS with SHA-384.
    Ps384,
    /// RSASSA-PSS with SHA-512.
    Ps512,
    /// ECDSA on P-256 with SHA-256; signatures are `r || s`, 64 bytes.
    Es256,
    /// ECDSA on P-384 with SHA-384; signatures are `r || s`, 96 bytes.
    Es384,
    /// Ed25519.
    EdDsa,
    /// HMAC with SHA-256.
    Hs256,
    /// HMAC with SHA-384.
    Hs384,
    /// HMAC with SHA-512.
    Hs512,
}

impl Algorithm {
    /// The algorithm a JWS `alg` names (`"RS256"`, `"EdDSA"`, ...), if supported.
    pub fn from_jws_name(name: &str) -> Option<Self> {
        Some(match name {
            "RS256" => Algorithm::Rs256,
            "RS384" => Algorithm::Rs384,
            "RS512" => Algorithm::Rs512,
            "PS256" => Algorithm::Ps256,
            "PS384" => Algorithm::Ps384,
            "PS512" => Algorithm::Ps512,
            "ES256" => Algorithm::Es256,
            "ES384" => Algorithm::Es384,
            "EdDSA" => Algorithm::EdDsa,
            "HS256" => Algorithm::Hs256,
            "HS384" => Algorithm::Hs384,
            "HS512" => Algorithm::Hs512,
            _ => return None,
        })
    }
}

/// The key a signature is checked with.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum VerifyingKey<'a> {
    /// For `Rs*` and `Ps*`: a JWK's `n` and `e`, base64url-decoded (2048 to 8192 bits).
    Rsa {
        /// The modulus, big-endian.
        n: &'a [u8],
        /// The public exponent, big-endian.
        e: &'a [u8],
    },
    /// For `Es256` and `Es384`: the uncompressed point `0x04 || x || y`.
    EcPoint(&'a [u8]),
    /// For `EdDsa`: the 32-byte public key (a JWK's `x`).
    Ed25519(&'a [u8]),
    /// For `Hs*`: the shared secret.
    Secret(&'a [u8]),
}

impl fmt::Debug for VerifyingKey<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            VerifyingKey::Rsa { n, .. } => write!(f, "Rsa({} bytes)", n.len()),
            VerifyingKey::EcPoint(p) => write!(f, "EcPoint({} bytes)", p.len()),
            VerifyingKey::Ed25519(k) => write!(f, "Ed25519({} bytes)", k.len()),
            VerifyingKey::Secret(s) => write!(f, "Secret({} bytes)", s.len()),
        }
    }
}

/// Why a signature could not be checked at all.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyError {
    /// The key is not of the kind the algorithm uses.
    WrongKeyType,
    /// The key is malformed or out of range; the message says which.
    InvalidKey(String),
}

impl fmt::Display for KeyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KeyError::WrongKeyType => f.write_str("the key is not of the algorithm's kind"),
            KeyError::InvalidKey(m) => write!(f, "invalid key: {m}"),
        }
    }
}

impl std::error::Error for KeyError {}

/// A SHA-2 digest algorithm.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DigestAlgorithm {
    /// SHA-256.
    Sha256,
    /// SHA-384.
    Sha384,
    /// SHA-512.
    Sha512,
}

/// Whether `signature` is a valid signature of `message` under `key`. A malformed signature
/// is `Ok(false)`; a key that is malformed or of the wrong kind is an error.
pub fn verify(
    algorithm: Algorithm,
    key: VerifyingKey<'_>,
    message: &[u8],
    signature: &[u8],
) -> Result<bool, KeyError> {
    imp::verify(algorithm, key, message, signature)
}

/// The digest of `data`.
pub fn digest(algorithm: DigestAlgorithm, data: &[u8]) -> Vec<u8> {
    imp::digest(algorithm, data)
}

#[cfg(target_arch = "wasm32")]
mod imp {
    use super::{Algorithm, DigestAlgorithm, KeyError, VerifyingKey};
    use crate::bindings::weft::filter::crypto as raw;

    pub(super) fn verify(
        algorithm: Algorithm,
        key: VerifyingKey<'_>,
        message: &[u8],
        signature: &[u8],
    ) -> Result<bool, KeyError> {
        let algorithm = match algorithm {
            Algorithm::Rs256 => raw::SignatureAlgorithm::Rs256,
            Algorithm::Rs384 => raw::SignatureAlgorithm::Rs384,
            Algorithm::Rs512 => raw::SignatureAlgorithm::Rs512,
            Algorithm::Ps256 => raw::SignatureAlgorithm::Ps256,
            Algorithm::Ps384 => raw::SignatureAlgorithm::Ps384,
            Algorithm::Ps512 => raw::SignatureAlgorithm::Ps512,
            Algorithm::Es256 => raw::SignatureAlgorithm::Es256,
            Algorithm::Es384 => raw::SignatureAlgorithm::Es384,
            Algorithm::EdDsa => raw::SignatureAlgorithm::EdDsa,
            Algorithm::Hs256 => raw::SignatureAlgorithm::Hs256,
            Algorithm::Hs384 => raw::SignatureAlgorithm::Hs384,
            Algorithm::Hs512 => raw::SignatureAlgorithm::Hs512,
        };
        let key = match key {
            VerifyingKey::Rsa { n, e } => raw::VerifyingKey::Rsa(raw::RsaPublicKey { n, e }),
            VerifyingKey::EcPoint(p) => raw::VerifyingKey::EcPoint(p),
            VerifyingKey::Ed25519(k) => raw::VerifyingKey::Ed25519(k),
            VerifyingKey::Secret(s) => raw::VerifyingKey::Secret(s),
        };
        raw::verify(algorithm, key, message, signature).map_err(|e| match e {
            raw::KeyError::WrongKeyType => KeyError::WrongKeyType,
            raw::KeyError::InvalidKey(m) => KeyError::InvalidKey(m),
        })
    }

    pub(super) fn digest(algorithm: DigestAlgorithm, data: &[u8]) -> Vec<u8> {
        let algorithm = match algorithm {
            DigestAlgorithm::Sha256 => raw::DigestAlgorithm::Sha256,
            DigestAlgorithm::Sha384 => raw::DigestAlgorithm::Sha384,
            DigestAlgorithm::Sha512 => raw::DigestAlgorithm::Sha512,
        };
        raw::digest(algorithm, data)
    }
}

/// Natively (a filter's unit tests), the host's own implementation, in process.
#[cfg(not(target_arch = "wasm32"))]
mod imp {
    use super::{Algorithm, DigestAlgorithm, KeyError, VerifyingKey};
    use weft_crypto as native;

    pub(super) fn verify(
        algorithm: Algorithm,
        key: VerifyingKey<'_>,
        message: &[u8],
        signature: &[u8],
    ) -> Result<bool, KeyError> {
        let algorithm = match algorithm {
            Algorithm::Rs256 => native::Algorithm::Rs256,
            Algorithm::Rs384 => native::Algorithm::Rs384,
            Algorithm::Rs512 => native::Algorithm::Rs512,
            Algorithm::Ps256 => native::Algorithm::Ps256,
            Algorithm::Ps384 => native::Algorithm::Ps384,
            Algorithm::Ps512 => native::Algorithm::Ps512,
            Algorithm::Es256 => native::Algorithm::Es256,
            Algorithm::Es384 => native::Algorithm::Es384,
            Algorithm::EdDsa => native::Algorithm::EdDsa,
            Algorithm::Hs256 => native::Algorithm::Hs256,
            Algorithm::Hs384 => native::Algorithm::Hs384,
            Algorithm::Hs512 => native::Algorithm::Hs512,
        };
        let key = match key {
            VerifyingKey::Rsa { n, e } => native::Key::Rsa { n, e },
            VerifyingKey::EcPoint(p) => native::Key::EcPoint(p),
            VerifyingKey::Ed25519(k) => native::Key::Ed25519(k),
            VerifyingKey::Secret(s) => native::Key::Secret(s),
        };
        native::verify(algorithm, key, message, signature).map_err(|e| match e {
            native::KeyError::WrongKeyType => KeyError::WrongKeyType,
            native::KeyError::InvalidKey(m) => KeyError::InvalidKey(m),
        })
    }

    pub(super) fn digest(algorithm: DigestAlgorithm, data: &[u8]) -> Vec<u8> {
        let algorithm = match algorithm {
            DigestAlgorithm::Sha256 => native::DigestAlgorithm::Sha256,
            DigestAlgorithm::Sha384 => native::DigestAlgorithm::Sha384,
            DigestAlgorithm::Sha512 => native::DigestAlgorithm::Sha512,
        };
        native::digest(algorithm, data)
    }
}
