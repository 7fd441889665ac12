//! `weft:filter/crypto`: signature verification and digests, run natively by
//! [`weft_crypto`] (ring).

use weft_crypto::{Algorithm, DigestAlgorithm, Key, KeyError as Refused};

use super::HostState;
use crate::bindings::weft::filter::crypto::{
    DigestAlgorithm as WitDigest, Host, KeyError, SignatureAlgorithm, VerifyingKey,
};

fn algorithm(a: SignatureAlgorithm) -> Algorithm {
    match a {
        SignatureAlgorithm::Rs256 => Algorithm::Rs256,
        SignatureAlgorithm::Rs384 => Algorithm::Rs384,
        SignatureAlgorithm::Rs512 => Algorithm::Rs512,
        SignatureAlgorithm::Ps256 => Algorithm::Ps256,
        SignatureAlgorithm::Ps384 => Algorithm::Ps384,
        SignatureAlgorithm::Ps512 => Algorithm::Ps512,
        SignatureAlgorithm::Es256 => Algorithm::Es256,
        SignatureAlgorithm::Es384 => Algorithm::Es384,
        SignatureAlgorithm::EdDsa => Algorithm::EdDsa,
        SignatureAlgorithm::Hs256 => Algorithm::Hs256,
        SignatureAlgorithm::Hs384 => Algorithm::Hs384,
        SignatureAlgorithm::Hs512 => Algorithm::Hs512,
    }
}

impl Host for HostState {
    fn verify(
        &mut self,
        alg: SignatureAlgorithm,
        key: VerifyingKey,
        message: Vec<u8>,
        signature: Vec<u8>,
    ) -> wasmtime::Result<Result<bool, KeyError>> {
        let key = match &key {
            VerifyingKey::Rsa(k) => Key::Rsa { n: &k.n, e: &k.e },
            VerifyingKey::EcPoint(p) => Key::EcPoint(p),
            VerifyingKey::Ed25519(k) => Key::Ed25519(k),
            VerifyingKey::Secret(s) => Key::Secret(s),
        };
        Ok(
            weft_crypto::verify(algorithm(alg), key, &message, &signature).map_err(|e| match e {
                Refused::WrongKeyType => KeyError::WrongKeyType,
                Refused::InvalidKey(m) => KeyError::InvalidKey(m),
            }),
        )
    }

    fn digest(&mut self, alg: WitDigest, data: Vec<u8>) -> wasmtime::Result<Vec<u8>> {
        let alg = match alg {
            WitDigest::Sha256 => DigestAlgorithm::Sha256,
            WitDigest::Sha384 => DigestAlgorithm::Sha384,
            WitDigest::Sha512 => DigestAlgorithm::Sha512,
        };
        Ok(weft_crypto::digest(alg, &data))
    }
}
