//! Decoding helpers for the test vectors: hex, base64 / base64url, and the DER
//! `RSAPublicKey` (`SEQUENCE { INTEGER n, INTEGER e }`) of ring's test files.
//!
//! They panic on malformed input: the input is the checked-in test data.

#![allow(dead_code, reason = "each test target uses a different part")]

/// Bytes from hex (whitespace ignored).
pub(crate) fn hex(text: &str) -> Vec<u8> {
    let digits: Vec<u8> = text
        .bytes()
        .filter(|byte| !byte.is_ascii_whitespace())
        .map(|byte| match byte {
            b'0'..=b'9' => byte - b'0',
            b'a'..=b'f' => byte - b'a' + 10,
            b'A'..=b'F' => byte - b'A' + 10,
            _ => panic!("not a hex digit: {:?}", char::from(byte)),
        })
        .collect();
    assert!(digits.len().is_multiple_of(2), "odd number of hex digits");
    digits
        .chunks(2)
        .map(|pair| (pair[0] << 4) | pair[1])
        .collect()
}

/// Bytes from base64 or base64url, padded or not (whitespace ignored).
pub(crate) fn b64(text: &str) -> Vec<u8> {
    let mut bits = 0u32;
    let mut nbits = 0;
    let mut out = Vec::new();
    for byte in text.bytes() {
        let value = match byte {
            b'A'..=b'Z' => byte - b'A',
            b'a'..=b'z' => byte - b'a' + 26,
            b'0'..=b'9' => byte - b'0' + 52,
            b'+' | b'-' => 62,
            b'/' | b'_' => 63,
            b'=' => continue,
            _ if byte.is_ascii_whitespace() => continue,
            _ => panic!("not base64: {:?}", char::from(byte)),
        };
        bits = (bits << 6) | u32::from(value);
        nbits += 6;
        if nbits >= 8 {
            nbits -= 8;
            out.push((bits >> nbits) as u8);
            bits &= (1 << nbits) - 1;
        }
    }
    assert!(bits == 0, "base64 with nonzero trailing bits");
    out
}

/// The DER of a PEM block (the base64 between the BEGIN and END lines).
pub(crate) fn pem(text: &str) -> Vec<u8> {
    let body: String = text
        .lines()
        .filter(|line| !line.starts_with("-----"))
        .collect();
    b64(&body)
}

/// `(n, e)` from a DER `RSAPublicKey`, as ring's test files give keys; the INTEGERs are
/// returned as encoded (so `n` keeps its leading 0x00 byte).
pub(crate) fn rsa_public_key_der(der: &[u8]) -> (Vec<u8>, Vec<u8>) {
    let (tag, sequence, rest) = der_element(der);
    assert_eq!(tag, 0x30, "not a SEQUENCE");
    assert!(rest.is_empty(), "trailing bytes after the SEQUENCE");
    let (tag, n, rest) = der_element(sequence);
    assert_eq!(tag, 0x02, "n is not an INTEGER");
    let (tag, e, rest) = der_element(rest);
    assert_eq!(tag, 0x02, "e is not an INTEGER");
    assert!(rest.is_empty(), "trailing bytes in the SEQUENCE");
    (n.to_vec(), e.to_vec())
}

/// One DER element: (tag, contents, what follows).
fn der_element(der: &[u8]) -> (u8, &[u8], &[u8]) {
    let tag = der[0];
    let (len, header) = match der[1] {
        short @ 0..=0x7f => (usize::from(short), 2),
        0x81 => (usize::from(der[2]), 3),
        0x82 => (usize::from(der[2]) << 8 | usize::from(der[3]), 4),
        other => panic!("unsupported DER length byte {other:#04x}"),
    };
    (tag, &der[header..header + len], &der[header + len..])
}

/// A copy of `bytes` with bit `bit` (0 = least significant) of byte `index` flipped.
pub(crate) fn flip(bytes: &[u8], index: usize, bit: u8) -> Vec<u8> {
    let mut flipped = bytes.to_vec();
    flipped[index] ^= 1 << bit;
    flipped
}
