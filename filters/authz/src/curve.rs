//! Whether a JWK's `x` and `y` are a point on its curve (P-256 or P-384), checked once when the
//! configuration is loaded, so that a mistyped key is a configuration error naming the key
//! rather than a key that silently verifies nothing: the host's `crypto.verify` checks the
//! point too, but cannot tell an off-curve key from a bad signature.
//!
//! This is not signature verification (the host does that) and handles only public data, so
//! plain variable-time arithmetic is fine. It is bit-serial and slow (a few thousand additions
//! per check), which does not matter once per key.

/// A curve a JWK can name in `crv` for ECDSA.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Curve {
    /// NIST P-256 (secp256r1).
    P256,
    /// NIST P-384 (secp384r1).
    P384,
}

impl Curve {
    /// The length of a coordinate in bytes.
    pub(crate) fn coordinate_len(self) -> usize {
        match self {
            Curve::P256 => 32,
            Curve::P384 => 48,
        }
    }

    /// The field prime p, big-endian (FIPS 186-4 D.1.2.3, D.1.2.4).
    fn prime(self) -> &'static [u8] {
        match self {
            Curve::P256 => &P256_P,
            Curve::P384 => &P384_P,
        }
    }

    /// The coefficient b of y² = x³ - 3x + b, big-endian.
    fn b(self) -> &'static [u8] {
        match self {
            Curve::P256 => &P256_B,
            Curve::P384 => &P384_B,
        }
    }

    /// Whether the big-endian coordinates `x` and `y` (each [`Curve::coordinate_len`] bytes)
    /// are below p and satisfy y² = x³ - 3x + b (mod p).
    pub(crate) fn contains(self, x: &[u8], y: &[u8]) -> bool {
        let len = self.coordinate_len();
        if x.len() != len || y.len() != len {
            return false;
        }
        let p = limbs(self.prime());
        let (x, y) = (limbs(x), limbs(y));
        if !less(&x, &p) || !less(&y, &p) {
            return false;
        }
        let mut three = vec![0; p.len()];
        three[0] = 3;
        let left = mul(&y, &y, &p);
        let x_squared_minus_3 = sub(&mul(&x, &x, &p), &three, &p);
        let right = add(&mul(&x_squared_minus_3, &x, &p), &limbs(self.b()), &p);
        left == right
    }
}

const P256_P: [u8; 32] = [
    0xff, 0xff, 0xff, 0xff, 0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
    0x00, 0x00, 0x00, 0x00, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
];
const P256_B: [u8; 32] = [
    0x5a, 0xc6, 0x35, 0xd8, 0xaa, 0x3a, 0x93, 0xe7, 0xb3, 0xeb, 0xbd, 0x55, 0x76, 0x98, 0x86, 0xbc,
    0x65, 0x1d, 0x06, 0xb0, 0xcc, 0x53, 0xb0, 0xf6, 0x3b, 0xce, 0x3c, 0x3e, 0x27, 0xd2, 0x60, 0x4b,
];
const P384_P: [u8; 48] = [
    0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
    0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xfe,
    0xff, 0xff, 0xff, 0xff, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0xff, 0xff, 0xff, 0xff,
];
const P384_B: [u8; 48] = [
    0xb3, 0x31, 0x2f, 0xa7, 0xe2, 0x3e, 0xe7, 0xe4, 0x98, 0x8e, 0x05, 0x6b, 0xe3, 0xf8, 0x2d, 0x19,
    0x18, 0x1d, 0x9c, 0x6e, 0xfe, 0x81, 0x41, 0x12, 0x03, 0x14, 0x08, 0x8f, 0x50, 0x13, 0x87, 0x5a,
    0xc6, 0x56, 0x39, 0x8d, 0x8a, 0x2e, 0xd1, 0x9d, 0x2a, 0x85, 0xc8, 0xed, 0xd3, 0xec, 0x2a, 0xef,
];

/// Big-endian bytes (a multiple of 8 long) as little-endian 64-bit limbs.
fn limbs(bytes: &[u8]) -> Vec<u64> {
    bytes
        .rchunks(8)
        .map(|chunk| chunk.iter().fold(0u64, |acc, &b| acc << 8 | u64::from(b)))
        .collect()
}

/// a < b, for equal lengths.
fn less(a: &[u64], b: &[u64]) -> bool {
    for (x, y) in a.iter().rev().zip(b.iter().rev()) {
        if x != y {
            return x < y;
        }
    }
    false
}

/// a - b mod 2^(64·len), and whether it borrowed.
fn sub_raw(a: &[u64], b: &[u64]) -> (Vec<u64>, bool) {
    let mut borrow = false;
    let difference = a
        .iter()
        .zip(b)
        .map(|(&x, &y)| {
            let (d, b1) = x.overflowing_sub(y);
            let (d, b2) = d.overflowing_sub(u64::from(borrow));
            borrow = b1 || b2;
            d
        })
        .collect();
    (difference, borrow)
}

/// a + b mod 2^(64·len), and whether it carried.
fn add_raw(a: &[u64], b: &[u64]) -> (Vec<u64>, bool) {
    let mut carry = false;
    let sum = a
        .iter()
        .zip(b)
        .map(|(&x, &y)| {
            let (s, c1) = x.overflowing_add(y);
            let (s, c2) = s.overflowing_add(u64::from(carry));
            carry = c1 || c2;
            s
        })
        .collect();
    (sum, carry)
}

/// a + b mod p, for a, b < p.
fn add(a: &[u64], b: &[u64], p: &[u64]) -> Vec<u64> {
    let (sum, carry) = add_raw(a, b);
    if carry || !less(&sum, p) {
        sub_raw(&sum, p).0
    } else {
        sum
    }
}

/// a - b mod p, for a, b < p.
fn sub(a: &[u64], b: &[u64], p: &[u64]) -> Vec<u64> {
    let (difference, borrow) = sub_raw(a, b);
    if borrow {
        add_raw(&difference, p).0
    } else {
        difference
    }
}

/// a · b mod p, for a, b < p: double and add, from b's top bit.
fn mul(a: &[u64], b: &[u64], p: &[u64]) -> Vec<u64> {
    let mut product = vec![0; p.len()];
    for limb in b.iter().rev() {
        for bit in (0..64).rev() {
            product = add(&product, &product, p);
            if limb >> bit & 1 == 1 {
                product = add(&product, a, p);
            }
        }
    }
    product
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(text: &str) -> Vec<u8> {
        (0..text.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&text[i..i + 2], 16).expect("hex"))
            .collect()
    }

    /// The generators (FIPS 186-4 D.1.2.3, D.1.2.4).
    fn generator(curve: Curve) -> (Vec<u8>, Vec<u8>) {
        match curve {
            Curve::P256 => (
                hex("6b17d1f2e12c4247f8bce6e563a440f277037d812deb33a0f4a13945d898c296"),
                hex("4fe342e2fe1a7f9b8ee7eb4a7c0f9e162bce33576b315ececbb6406837bf51f5"),
            ),
            Curve::P384 => (
                hex(concat!(
                    "aa87ca22be8b05378eb1c71ef320ad746e1d3b628ba79b9859f741e082542a38",
                    "5502f25dbf55296c3a545e3872760ab7"
                )),
                hex(concat!(
                    "3617de4a96262c6f5d9e98bf9292dc29f8f41dbd289a147ce9da3113b5f0b8c0",
                    "0a60b1ce1d7e819d7a431d7c90ea0e5f"
                )),
            ),
        }
    }

    #[test]
    fn generators_are_on_their_curves_and_not_on_the_other() {
        for curve in [Curve::P256, Curve::P384] {
            let (x, y) = generator(curve);
            assert!(curve.contains(&x, &y), "{curve:?}");
            let mut y_plus_1 = y.clone();
            *y_plus_1.last_mut().expect("not empty") ^= 1;
            assert!(!curve.contains(&x, &y_plus_1), "{curve:?}");
            assert!(!curve.contains(&y, &x), "{curve:?}: swapped");
            // -G = (x, p - y) is on the curve; (x, p + ...) is out of range.
            let p = limbs(curve.prime());
            let minus_y = sub_raw(&p, &limbs(&y)).0;
            let to_bytes = |l: &[u64]| -> Vec<u8> {
                l.iter().rev().flat_map(|limb| limb.to_be_bytes()).collect()
            };
            assert!(curve.contains(&x, &to_bytes(&minus_y)), "{curve:?}: -G");
            assert!(
                !curve.contains(&x, curve.prime()),
                "{curve:?}: y = p is out of range"
            );
            assert!(!curve.contains(&x[1..], &y[1..]), "{curve:?}: short");
        }
        let (x, y) = generator(Curve::P256);
        assert!(!Curve::P384.contains(&x, &y), "wrong length");
    }

    #[test]
    fn agrees_with_the_p256_crate() {
        use p256::elliptic_curve::sec1::ToEncodedPoint as _;
        for scalar in 1u64..40 {
            let secret = p256::SecretKey::from_bytes(&{
                let mut bytes = [0u8; 32];
                bytes[24..].copy_from_slice(&(scalar * 0x9e37_79b9_7f4a_7c15).to_be_bytes());
                bytes.into()
            })
            .expect("non-zero scalar");
            let point = secret.public_key().to_encoded_point(false);
            let (x, y) = (point.x().expect("x"), point.y().expect("y"));
            assert!(Curve::P256.contains(x, y), "scalar {scalar}");
            let mut bad = y.to_vec();
            bad[scalar as usize % 32] ^= 1 << (scalar % 8);
            assert!(!Curve::P256.contains(x, &bad), "scalar {scalar}");
        }
    }
}
