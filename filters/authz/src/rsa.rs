//! RSASSA-PKCS1-v1_5 verification with SHA-256 (RS256, RFC 8017 §8.2.2), public keys only.
//!
//! Why not the `rsa` crate's `verify`: its modpow runs a fixed 4-bit window over every bit of
//! the exponent's 64-bit digit, ~100 modular multiplications for e = 65537 where
//! square-and-multiply needs 17, plus a Montgomery setup with a long division on every call.
//! That made one verification ~0.5 ms natively and ~3 ms in wasm. Here the Montgomery constants
//! are computed once per key and the exponentiation does 16 squarings and one multiplication,
//! on 32-bit limbs, which wasm multiplies natively (64-bit limbs would need a 128-bit product,
//! a library call in wasm). Verification handles only public data, so it need not be
//! constant-time.
//!
//! The check is the one RFC 8017 recommends: rebuild the whole expected encoding
//! `00 01 FF..FF 00 || DigestInfo(SHA-256) || hash` and compare bytes, so there is no ASN.1 to
//! parse and nothing lenient to exploit.

/// The DER `DigestInfo` prefix for SHA-256 (RFC 8017 §9.2, note 1).
const SHA256_DIGEST_INFO: [u8; 19] = [
    0x30, 0x31, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x01, 0x05,
    0x00, 0x04, 0x20,
];

/// The smallest modulus accepted, in bits (NIST SP 800-131A, RFC 7518 §3.3).
const MIN_BITS: usize = 2048;
/// The largest: more only makes every verification slower.
const MAX_BITS: usize = 4096;

/// An RSA public key, with its Montgomery constants.
#[derive(Debug, Clone)]
pub(crate) struct PublicKey {
    /// The modulus, little-endian 32-bit limbs.
    n: Vec<u32>,
    /// -n⁻¹ mod 2³².
    n0inv: u32,
    /// R² mod n, R = 2^(32·limbs): turns a number into Montgomery form.
    r2: Vec<u32>,
    e: u32,
    /// The modulus length in bytes: signatures have exactly this length.
    size: usize,
}

impl PublicKey {
    /// A key from big-endian `n` and `e`, or why it is unusable. The modulus must be odd and
    /// 2048 to 4096 bits long; the exponent odd, at least 3 and below 2³² (real keys use
    /// 65537).
    pub(crate) fn new(n: &[u8], e: &[u8]) -> Result<PublicKey, String> {
        let n = strip_leading_zeros(n);
        let bits = n.first().map_or(0, |top| {
            (n.len() - 1) * 8 + (8 - top.leading_zeros() as usize)
        });
        if bits < MIN_BITS {
            return Err(format!(
                "RSA keys must have at least {MIN_BITS} bits; this one has {bits}"
            ));
        }
        if bits > MAX_BITS {
            return Err(format!(
                "RSA keys may have at most {MAX_BITS} bits; this one has {bits}"
            ));
        }
        if n.last().is_some_and(|low| low & 1 == 0) {
            return Err("an RSA modulus is odd; this one is even".to_owned());
        }
        let e = strip_leading_zeros(e);
        let e = match <[u8; 4]>::try_from(e) {
            Ok(bytes) => Some(u32::from_be_bytes(bytes)),
            Err(_) if e.len() < 4 => Some(e.iter().fold(0u32, |acc, b| acc << 8 | u32::from(*b))),
            Err(_) => None,
        };
        let e = e
            .filter(|e| *e >= 3 && e & 1 == 1)
            .ok_or("the exponent must be odd, at least 3 and below 2^32")?;

        let size = n.len();
        let limbs = size.div_ceil(4);
        let n = to_limbs(n, limbs);
        // Newton's iteration doubles the correct low bits each step: 1 → 32 in five.
        let mut inverse: u32 = 1;
        for _ in 0..5 {
            inverse = inverse.wrapping_mul(2u32.wrapping_sub(n[0].wrapping_mul(inverse)));
        }
        // R² mod n by doubling 1, 2·32·limbs times, mod n.
        let mut r2 = vec![0u32; limbs];
        r2[0] = 1;
        for _ in 0..2 * 32 * limbs {
            let carry = shift_left_one(&mut r2);
            if carry || !less(&r2, &n) {
                subtract(&mut r2, &n);
            }
        }
        Ok(PublicKey {
            n,
            n0inv: inverse.wrapping_neg(),
            r2,
            e,
            size,
        })
    }

    /// Whether `signature` is this key's RS256 signature of a message whose SHA-256 is `hash`.
    pub(crate) fn verify_sha256(&self, hash: &[u8; 32], signature: &[u8]) -> bool {
        if signature.len() != self.size {
            return false;
        }
        let s = to_limbs(signature, self.n.len());
        if !less(&s, &self.n) {
            return false;
        }
        let encoded = self.public_op(&s);
        let em = from_limbs(&encoded, self.size);
        let tail = SHA256_DIGEST_INFO.len() + hash.len();
        let Some(ff_len) = self.size.checked_sub(3 + tail) else {
            return false;
        };
        em[0] == 0x00
            && em[1] == 0x01
            && em[2..2 + ff_len].iter().all(|b| *b == 0xff)
            && em[2 + ff_len] == 0x00
            && em[3 + ff_len..3 + ff_len + SHA256_DIGEST_INFO.len()] == SHA256_DIGEST_INFO
            && em[self.size - hash.len()..] == hash[..]
    }

    /// s^e mod n, by square-and-multiply in Montgomery form.
    fn public_op(&self, s: &[u32]) -> Vec<u32> {
        let limbs = self.n.len();
        let mut scratch = vec![0u32; limbs + 2];
        let mut base = vec![0u32; limbs];
        self.mont_mul(s, &self.r2, &mut base, &mut scratch);
        let mut acc = base.clone();
        let mut next = vec![0u32; limbs];
        let top = 31 - self.e.leading_zeros();
        for bit in (0..top).rev() {
            self.mont_mul(&acc, &acc, &mut next, &mut scratch);
            std::mem::swap(&mut acc, &mut next);
            if self.e >> bit & 1 == 1 {
                self.mont_mul(&acc, &base, &mut next, &mut scratch);
                std::mem::swap(&mut acc, &mut next);
            }
        }
        // Out of Montgomery form: multiply by 1.
        let mut one = vec![0u32; limbs];
        one[0] = 1;
        self.mont_mul(&acc, &one, &mut next, &mut scratch);
        next
    }

    /// out = a·b·R⁻¹ mod n (CIOS, Koç et al. 1996), for a, b < n.
    fn mont_mul(&self, a: &[u32], b: &[u32], out: &mut [u32], t: &mut [u32]) {
        let n = &self.n;
        let s = n.len();
        t.fill(0);
        for &b_i in b {
            let mut carry = 0u64;
            for j in 0..s {
                let sum = u64::from(t[j]) + u64::from(a[j]) * u64::from(b_i) + carry;
                t[j] = sum as u32;
                carry = sum >> 32;
            }
            let sum = u64::from(t[s]) + carry;
            t[s] = sum as u32;
            t[s + 1] = (sum >> 32) as u32;

            let m = t[0].wrapping_mul(self.n0inv);
            let sum = u64::from(t[0]) + u64::from(m) * u64::from(n[0]);
            let mut carry = sum >> 32;
            for j in 1..s {
                let sum = u64::from(t[j]) + u64::from(m) * u64::from(n[j]) + carry;
                t[j - 1] = sum as u32;
                carry = sum >> 32;
            }
            let sum = u64::from(t[s]) + carry;
            t[s - 1] = sum as u32;
            t[s] = t[s + 1] + (sum >> 32) as u32;
        }
        out.copy_from_slice(&t[..s]);
        if t[s] != 0 || !less(out, n) {
            subtract(out, n);
        }
    }
}

fn strip_leading_zeros(bytes: &[u8]) -> &[u8] {
    let start = bytes.iter().position(|b| *b != 0).unwrap_or(bytes.len());
    &bytes[start..]
}

/// Big-endian bytes (at most `limbs * 4` of them) as little-endian 32-bit limbs.
fn to_limbs(bytes: &[u8], limbs: usize) -> Vec<u32> {
    let mut out = vec![0u32; limbs];
    for (i, byte) in bytes.iter().rev().enumerate() {
        out[i / 4] |= u32::from(*byte) << (8 * (i % 4));
    }
    out
}

/// The low `len` bytes of `limbs`, big-endian.
fn from_limbs(limbs: &[u32], len: usize) -> Vec<u8> {
    let mut out = vec![0u8; len];
    for (i, byte) in out.iter_mut().rev().enumerate() {
        *byte = (limbs[i / 4] >> (8 * (i % 4))) as u8;
    }
    out
}

/// a < b, for equal lengths.
fn less(a: &[u32], b: &[u32]) -> bool {
    for (x, y) in a.iter().rev().zip(b.iter().rev()) {
        if x != y {
            return x < y;
        }
    }
    false
}

/// a -= b (mod 2^(32·len)).
fn subtract(a: &mut [u32], b: &[u32]) {
    let mut borrow = 0u64;
    for (x, y) in a.iter_mut().zip(b) {
        let diff = u64::from(*x)
            .wrapping_sub(u64::from(*y))
            .wrapping_sub(borrow);
        *x = diff as u32;
        borrow = diff >> 63;
    }
}

/// a <<= 1; returns the bit shifted out.
fn shift_left_one(a: &mut [u32]) -> bool {
    let mut carry = 0u32;
    for limb in a.iter_mut() {
        let next = *limb >> 31;
        *limb = *limb << 1 | carry;
        carry = next;
    }
    carry == 1
}

#[cfg(test)]
mod tests {
    use num_bigint_dig::BigUint;

    use super::*;

    /// A 2048-bit odd modulus (not a real key: the arithmetic does not care).
    fn modulus() -> Vec<u8> {
        let mut n: Vec<u8> = (0..256u32).map(|i| (i * 167 + 13) as u8).collect();
        n[0] |= 0x80;
        n[255] |= 1;
        n
    }

    #[test]
    fn public_op_matches_a_bignum_library() {
        let n_bytes = modulus();
        let n = BigUint::from_bytes_be(&n_bytes);
        for e in [3u32, 17, 65_537, 0xffff_ffff] {
            let key = PublicKey::new(&n_bytes, &e.to_be_bytes()).expect("valid key");
            for seed in 1..6u32 {
                let s_bytes: Vec<u8> = (0..256u32).map(|i| (i * seed + seed) as u8).collect();
                let s = BigUint::from_bytes_be(&s_bytes) % &n;
                let limbs = to_limbs(&s.to_bytes_be(), key.n.len());
                let ours = from_limbs(&key.public_op(&limbs), 256);
                let theirs = s.modpow(&BigUint::from(e), &n);
                assert_eq!(
                    BigUint::from_bytes_be(&ours),
                    theirs,
                    "e = {e}, seed {seed}"
                );
            }
        }
    }

    #[test]
    fn limb_conversions_round_trip() {
        let bytes: Vec<u8> = (1..=255u8).collect();
        assert_eq!(from_limbs(&to_limbs(&bytes, 64), 255), bytes);
    }

    #[test]
    fn key_checks() {
        let mut n = modulus();
        let e = [1u8, 0, 1];
        assert!(PublicKey::new(&n, &e).is_ok());
        assert!(PublicKey::new(&[&[0u8, 0][..], &n].concat(), &[0, 0, 1, 0, 1]).is_ok());
        n[255] &= 0xfe;
        assert!(PublicKey::new(&n, &e).expect_err("even").contains("odd"));
        n[255] |= 1;
        for bad_e in [&[2u8][..], &[1], &[], &[1, 0, 0, 0, 1]] {
            let err = PublicKey::new(&n, bad_e).expect_err("bad exponent");
            assert!(err.contains("exponent"), "{bad_e:?}: {err}");
        }
        let err = PublicKey::new(&n[..128], &e).expect_err("1024 bits");
        assert!(
            err.contains("at least 2048 bits; this one has 1024"),
            "{err}"
        );
        let err = PublicKey::new(&[0xff; 513], &e).expect_err("4104 bits");
        assert!(err.contains("at most 4096"), "{err}");
    }
}
