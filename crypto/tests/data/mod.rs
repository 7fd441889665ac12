//! Published test vectors, copied verbatim (as the source prints them) and never generated
//! at test time.
//!
//! - RFC 7515 (JWS) Appendix A.1 (HS256), A.2 (RS256), A.3 (ES256): the JWK members,
//!   the JWS Signing Input and the base64url signature of the compact serialization.
//! - RFC 8037 Appendix A.4 (Ed25519 / EdDSA).
//! - RFC 4231 test case 2 (HMAC-SHA-256/384/512).
//! - FIPS 180-2 Appendix B / C one-block "abc" (and the empty message) digests.
//! - ring's test files (`tests/rsa_pkcs1_verify_tests.txt`, `tests/rsa_pss_verify_tests.txt`,
//!   `tests/ecdsa_verify_fixed_tests.txt` of <https://github.com/briansmith/ring>; they
//!   are not in the published crate): NIST CAVP SigVer15 / SigVerPSS (FIPS 186-3) and
//!   ring's own edge cases. Keys are ring's DER `RSAPublicKey`; `MSG` is hex (empty for
//!   ring's `Msg = ""`); `RESULT` is ring's `Result` (P = valid, F = invalid).

#![allow(dead_code, reason = "each test target uses a different part")]

// ---------------------------------------------------------------------------------------
// RFC 7515 Appendix A: the payload shared by A.1, A.2 and A.3 is
// {"iss":"joe",\r\n "exp":1300819380,\r\n "http://example.com/is_root":true}.

/// RFC 7515 A.1.1: the JWK `k` of the HMAC key.
pub(crate) const RFC7515_A1_K: &str =
    "AyM1SysPpbyDfgZld3umj1qzKObwVMkoqQ-EstJQLr_T-1qS0gZH75aKtMN3Yj0iPS4hcgUuTwjAzZr1Z9CAow";
/// RFC 7515 A.1.1: the JWS Signing Input (ASCII).
pub(crate) const RFC7515_A1_SIGNING_INPUT: &str = "eyJ0eXAiOiJKV1QiLA0KICJhbGciOiJIUzI1NiJ9.eyJpc3MiOiJqb2UiLA0KICJleHAiOjEzMDA4MTkzODAsDQogImh0dHA6Ly9leGFtcGxlLmNvbS9pc19yb290Ijp0cnVlfQ";
/// RFC 7515 A.1.1: BASE64URL(JWS Signature).
pub(crate) const RFC7515_A1_SIGNATURE: &str = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";

/// RFC 7515 A.2.1: the JWK `n` of the RSA key (2048 bits).
pub(crate) const RFC7515_A2_N: &str = concat!(
    "ofgWCuLjybRlzo0tZWJjNiuSfb4p4fAkd_wWJcyQoTbji9k0l8W26mPddx",
    "HmfHQp-Vaw-4qPCJrcS2mJPMEzP1Pt0Bm4d4QlL-yRT-SFd2lZS-pCgNMs",
    "D1W_YpRPEwOWvG6b32690r2jZ47soMZo9wGzjb_7OMg0LOL-bSf63kpaSH",
    "SXndS5z5rexMdbBYUsLA9e-KXBdQOS-UTo7WTBEMa2R2CapHg665xsmtdV",
    "MTBQY4uDZlxvb3qCo5ZwKh9kG4LT6_I5IhlJH7aGhyxXFvUK-DWNmoudF8",
    "NAco9_h9iaGNj8q2ethFkMLs91kzk2PAcDTW9gb54h4FRWyuXpoQ",
);
/// RFC 7515 A.2.1: the JWK `e`.
pub(crate) const RFC7515_A2_E: &str = "AQAB";
/// RFC 7515 A.2.1: the JWS Signing Input (ASCII).
pub(crate) const RFC7515_A2_SIGNING_INPUT: &str = "eyJhbGciOiJSUzI1NiJ9.eyJpc3MiOiJqb2UiLA0KICJleHAiOjEzMDA4MTkzODAsDQogImh0dHA6Ly9leGFtcGxlLmNvbS9pc19yb290Ijp0cnVlfQ";
/// RFC 7515 A.2.1: BASE64URL(JWS Signature).
pub(crate) const RFC7515_A2_SIGNATURE: &str = concat!(
    "cC4hiUPoj9Eetdgtv3hF80EGrhuB__dzERat0XF9g2VtQgr9PJbu3XOiZj5RZ",
    "mh7AAuHIm4Bh-0Qc_lF5YKt_O8W2Fp5jujGbds9uJdbF9CUAr7t1dnZcAcQjb",
    "KBYNX4BAynRFdiuB--f_nZLgrnbyTyWzO75vRK5h6xBArLIARNPvkSjtQBMHl",
    "b1L07Qe7K0GarZRmB_eSN9383LcOLn6_dO--xi12jzDwusC-eOkHWEsqtFZES",
    "c6BfI7noOPqvhJ1phCnvWh6IeYI2w9QOYEUipUTI8np6LbgGY9Fs98rqVt5AX",
    "LIhWkWywlVmtVrBp0igcN_IoypGlUPQGe77Rw",
);

/// RFC 7515 A.3.1: the JWK `x` of the P-256 key.
pub(crate) const RFC7515_A3_X: &str = "f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU";
/// RFC 7515 A.3.1: the JWK `y`.
pub(crate) const RFC7515_A3_Y: &str = "x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0";
/// RFC 7515 A.3.1: the JWS Signing Input (ASCII).
pub(crate) const RFC7515_A3_SIGNING_INPUT: &str = "eyJhbGciOiJFUzI1NiJ9.eyJpc3MiOiJqb2UiLA0KICJleHAiOjEzMDA4MTkzODAsDQogImh0dHA6Ly9leGFtcGxlLmNvbS9pc19yb290Ijp0cnVlfQ";
/// RFC 7515 A.3.1: the octets of R.
pub(crate) const RFC7515_A3_R: [u8; 32] = [
    14, 209, 33, 83, 121, 99, 108, 72, 60, 47, 127, 21, 88, 7, 212, 2, 163, 178, 40, 3, 58, 249,
    124, 126, 23, 129, 154, 195, 22, 158, 166, 101,
];
/// RFC 7515 A.3.1: the octets of S.
pub(crate) const RFC7515_A3_S: [u8; 32] = [
    197, 10, 7, 211, 140, 60, 112, 229, 216, 241, 45, 175, 8, 74, 84, 128, 166, 101, 144, 197, 242,
    147, 80, 154, 143, 63, 127, 138, 131, 163, 84, 213,
];
/// RFC 7515 A.3.1: BASE64URL(JWS Signature), R || S.
pub(crate) const RFC7515_A3_SIGNATURE: &str =
    "DtEhU3ljbEg8L38VWAfUAqOyKAM6-Xx-F4GawxaepmXFCgfTjDxw5djxLa8ISlSApmWQxfKTUJqPP3-Kg6NU1Q";

// ---------------------------------------------------------------------------------------
// RFC 8037 Appendix A: Ed25519.

/// RFC 8037 A.2: the public key's JWK `x`.
pub(crate) const RFC8037_X: &str = "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo";
/// RFC 8037 A.4: the JWS Signing Input (ASCII) of {"alg":"EdDSA"} and "Example of Ed25519
/// signing".
pub(crate) const RFC8037_A4_SIGNING_INPUT: &str =
    "eyJhbGciOiJFZERTQSJ9.RXhhbXBsZSBvZiBFZDI1NTE5IHNpZ25pbmc";
/// RFC 8037 A.4: BASE64URL(JWS Signature).
pub(crate) const RFC8037_A4_SIGNATURE: &str =
    "hgyY0il_MGCjP0JzlnLWG1PPOt7-09PGcvMg3AIbQR6dWbhijcNR4ki4iylGjg5BhVsPt9g7sVvpAr_MuM0KAg";

// ---------------------------------------------------------------------------------------
// RFC 4231 Section 4.3, test case 2.

/// RFC 4231 test case 2: the key, "Jefe".
pub(crate) const RFC4231_TC2_KEY: &[u8] = b"Jefe";
/// RFC 4231 test case 2: the data.
pub(crate) const RFC4231_TC2_DATA: &[u8] = b"what do ya want for nothing?";
/// RFC 4231 test case 2: HMAC-SHA-256.
pub(crate) const RFC4231_TC2_SHA256: &str =
    "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843";
/// RFC 4231 test case 2: HMAC-SHA-384.
pub(crate) const RFC4231_TC2_SHA384: &str = concat!(
    "af45d2e376484031617f78d2b58a6b1b9c7ef464f5a01b47e42ec3736322445e",
    "8e2240ca5e69e2c78b3239ecfab21649",
);
/// RFC 4231 test case 2: HMAC-SHA-512.
pub(crate) const RFC4231_TC2_SHA512: &str = concat!(
    "164b7a7bfcf819e2e395fbe73b56e0a387bd64222e831fd610270cd7ea250554",
    "9758bf75c05a994a6d034f65f8f0e6fdcaeab1a34d4a6b4b636e070a38bce737",
);

// ---------------------------------------------------------------------------------------
// FIPS 180-2 examples.

/// SHA-256("abc"), FIPS 180-2 Appendix B.1.
pub(crate) const FIPS180_ABC_SHA256: &str =
    "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";
/// SHA-384("abc"), FIPS 180-2 Appendix D.1.
pub(crate) const FIPS180_ABC_SHA384: &str = concat!(
    "cb00753f45a35e8bb5a03d699ac65007272c32ab0eded163",
    "1a8b605a43ff5bed8086072ba1e7cc2358baeca134c825a7",
);
/// SHA-512("abc"), FIPS 180-2 Appendix C.1.
pub(crate) const FIPS180_ABC_SHA512: &str = concat!(
    "ddaf35a193617abacc417349ae20413112e6fa4e89a97ea20a9eeee64b55d39a",
    "2192992a274fc1a836ba3c23a3feebbd454d4423643ce80e2a9ac94fa54ca49f",
);
/// SHA-256 of the empty message (the digest ring's `rsa_pkcs1_verify_tests.txt` embeds in
/// its forged `e = 1` signature).
pub(crate) const SHA256_EMPTY: &str =
    "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

// ---------------------------------------------------------------------------------------
// ring tests/rsa_pkcs1_verify_tests.txt

/// A ring RSA test case.
pub(crate) struct RsaCase {
    /// ring's comment for the case (or the NIST section).
    pub(crate) name: &'static str,
    /// DER `RSAPublicKey`, hex.
    pub(crate) key: &'static str,
    /// The message, hex.
    pub(crate) msg: &'static str,
    /// The signature, hex.
    pub(crate) sig: &'static str,
    /// ring's expected result: valid (P) or not (F).
    pub(crate) valid: bool,
}

/// The 2048-bit, e = 3 key of ring's edge cases ("e = 3, the smallest accepted exponent").
const RING_PKCS1_E3_KEY: &str = "308201080282010100be5b5613b7872a0cb3e0fc3908d0eca9fc9c37887d6262d315c7425f300c56413c18e033f2295671bb843525898d32177edd206543d4fb68ed726ce7c3ed26dbb7ab39caeda2fa51f1f168b10ae7627d25cfa51660e7d599c9f2e1683d184388caf55c20c1a9f691ec325f7a5f89bc3e9c8a5a8620abb73070226ffd24fca570c6c002f4deffa80e1620b131efb195094120ab9a518f0dc974ad4ef63e32ea5b1f95030d04e243a986bff7be7bf3e0c8d2f03b868844beb5fd040db42967d2c2ad873867d9fd6d26f129b7ca3afc4eeee783127dd5a2f3828ec4f123de16871927963e2b5626114fe9894e1ce6365c80d7e2ec7b50ee0d04952f055b3831e1fb020103";
/// Its SHA-256 signature of the empty message.
const RING_PKCS1_E3_SHA256_SIG: &str = "21f1d78d3d3d02eaa30886356f494fd4ce060e12cf4a808c3a4a8011164f948a1b15414f6fe0bafb174468e632b7b843059dcaa2d915028fc79e3252b79060801373a16b6d26e5bc399d66201357f284ac822544176f5d7bbcc402be5335d221deeb2c44ba1cc908e10340056b521a0f965b373cc042dd2b3e3bef68213cd526c78f0a5237a7c1aa74989d86420d0a0cb639362e2f49182e1c4c603e7dc1b494efbc581caebb03fb633720b643e72d524c8403e500f5a7be5caadf5ed0a9653a805df917d0dafc4e589e26373a84970ce6905359ae981bd3d56699132be04dd3ce02bdaa399737ef79c2f3352f4f4ab8ac1f0954111dfdd7fee5655aa408774e";
/// Its SHA-384 signature of the empty message.
const RING_PKCS1_E3_SHA384_SIG: &str = "2c8b7d5fc1db73df3bf806af732324c19c8374d486848aaf3f3e8f81a89f425987684d4af644d953046345b7ec65022c8658dc144aca59de421de359c54aac4f625f85a2f2092ca3cfff99fb179d5057415cea4b868fa047045071a75b9de26e9a09c69b2d545fa5f8a8d63486a17feab184f8a227a7628d5a3812b66da388fc20cd96df69a6a59da154c0726828588c7df9abdc64090e40a62c8396ceb84067f637680625732e9dd3b277a366977bb1bddeea2917bcdf259f3ace8162222c52d86e394364e28cc1c57d2feb5e9d9fa4a51b88555b9c40a1efbb6846bf6e9d56ce2a43d32ad767e732c81ec598a1f0217c03c7533099b50dc8d0bfbdabe9625c";

/// RS256 (ring's `Digest = SHA256`) cases.
pub(crate) const RING_RS256: &[RsaCase] = &[
    RsaCase {
        name: "e = 3, the smallest accepted exponent",
        key: RING_PKCS1_E3_KEY,
        msg: "",
        sig: RING_PKCS1_E3_SHA256_SIG,
        valid: true,
    },
    RsaCase {
        name: "e = 2**33 - 1 (0x1ffffffff), the largest 33-bit number",
        key: "3082010c0282010100c2bf9ba415d7c612933ef42f350e621e12dc92cf9f1ab8c4697208e22643d96c0be81a3cb1e841a26b73d354756d3c00e83244b367ee63f171497bf1859841afd35edde7aafe6ceeae279b6762a726c67aaf19506590803c53a22f661496532c90d3969cd44f020290ca91ce9296120bc88d40d7be403e5e3ccc39ba177bfa5fa2f7828bec5e708cdaa1fc8cae1b26f63aa30178bb86ac25e1ee1877c17f37b1428d7125ffb6296098d4c72f4ff2460fd52cf8aa6988eb7447a638a9044969519c60b8ab25b56503708e450fb5af32248932730c261d0d76623c2dc4f75bbb77fe6c3576b2dbec3020d2c8433bef402e2172a243420163319a930997ef5a47e7020501ffffffff",
        msg: "",
        sig: "0a5ce0746f099812045cb79a4975cd1a5b60dabc7031cbb36395afb632c600db13aaba61b601219dba672d2dd100b06f270eccb41de0a22542222c05c9fc86f6ece18e25b287ce69fbd5544967a5eb2aa633b9f940fddfb3eb18d5de0966e74be2992db44ad80f96e86ac9c8d06e3d0d0fd7b02f61b706cb59f334a721b5bec83dd941dfd029208d1db617adee196af6f3f23bd46344c97be6697f92ba6bf72d5c404dfffb0d47093cace28b99a6733d442137eb7a4c50c9c4beec38520978743679618a4b8def94ba246bd31c96bc84837caedb2b282886fdb0a0173e2e15c850641de49149fcc2d965891f641f21d401fabda0a7e96f6e5565da4d979871fa",
        valid: true,
    },
    RsaCase {
        name: "The signature is a valid SHA-384 signature but the validation is for SHA-256",
        key: RING_PKCS1_E3_KEY,
        msg: "",
        sig: RING_PKCS1_E3_SHA384_SIG,
        valid: false,
    },
];

/// RS384 (ring's `Digest = SHA384`) cases.
pub(crate) const RING_RS384: &[RsaCase] = &[
    RsaCase {
        name: "The signature is a valid SHA-384 signature and the validation is for SHA-384",
        key: RING_PKCS1_E3_KEY,
        msg: "",
        sig: RING_PKCS1_E3_SHA384_SIG,
        valid: true,
    },
    RsaCase {
        name: "The signature is a valid SHA-256 signature but the validation is for SHA-384",
        key: RING_PKCS1_E3_KEY,
        msg: "",
        sig: RING_PKCS1_E3_SHA256_SIG,
        valid: false,
    },
];

/// RS512 (ring's `Digest = SHA512`) cases.
pub(crate) const RING_RS512: &[RsaCase] = &[RsaCase {
    name: "4096-bit modulus, p < q",
    key: "3082020a0282020100cefe6a02d3b9919783aacc1e555888b6aecc45c76bf28f0efc673a4576d44db983f5669fa28bf31966d1124d01c0f1e9976796a4f7855115f74b59f65aa17d3e56b3a265ef91463a562fd2e770077cf7a0cfc4d0903c812622a141076046bd2b334e2072e21b9cd9d949cbaa010d73fc7c1f5337431a18fc93930509c713ee4e773818134912d7cfbaab4b57038d645cca237b2fc367f76b26200894e174d3c4265f58765ca0e81e2525db528afabc5d149e60ae2aae8e313138b27c4bc901f9612728ab7a32564d3d93aff6ba0033c9e8db84cbc1a2f0de32a275318836c07f07c51cf5ed43c5c727a4e2541a78c91e6a7609edf4c1c0cdfc59fd63621223ff297f63096f876cfa93449994597ef27e47371ae5c3ad575b6fda18fcbc314eda54411aaec457d52e1a44da6ea0d6f43ace949f6a6e9d5a917edca6cb38b217e9bef4279b8b98dcd603ca299dc3173fdb3978fa6926e8a0dacd58162e9337b9c5af7f7260b2c4f4cde6bc7a71f1a56974b72c721c57eb925860562b744d32a65cd2577e70e8e00cfc528d54186bfd6c3fb84a081ee7f5c8a8ff388296f021ca13b99e5ca6e773adfb6a6b7206a23078cdcfb57db1f1cd7d21e283bbd8a7c1e8d2eef46008ad2fd440d6959ed18bb84831d872d79e1ac4260caf481faa9bba227e15a1b61bff8249c9b60d44056118969242b004059f85c0125b1fbc47cfd4772f0203010001",
    msg: "5af283b1b76ab2a695d794c23b35ca7371fc779e92ebf589e304c7f923d8cf976304c19818fcd89d6f07c8d8e08bf371068bdf28ae6ee83b2e02328af8c0e2f96e528e16f852f1fc5455e4772e288a68f159ca6bdcf902b858a1f94789b3163823e2d0717ff56689eec7d0e54d93f520d96e1eb04515abc70ae90578ff38d31b",
    sig: "98a95ccad59ccd39b1da810b53c9c0ce7b4b0acd65c0ffb788c88c856ea3ecabbe7015d4bf36b7c3de7c4c7c18063428afc567b94d4396048cea1a3b56544928e28b15360f9f5be7e700eb3b4d64b47061df1c0e096015bdf1329ef7a8a507ef56fa9330df4b1f3f097968839a60d1a6f1bb5b247032dc60b2889085d1dea210cff53c444b3f614d051cb41d8f171df025712bf57497f57e3c3e424685a8858f431a90d689dc1f7b41f868f0e1a6ef612710f365ff2bf90f2db89d61d9ab9fffac16581daec6ae1ab9f49c8dfd33a55f7b1e431fdd413649070e0a915f25363d3ddc2091fbfbf0fbeafe49753038dfce6973458af66a3d318eb7caa44d3fea95c46f40976398299db270e04dd20e77360013fcca04874307590429b13301be5f47a9681af6a47e5eaa53dc7ea05cadeef4ac96bc2c8e14ec9d0966e035898525c92fe7f0bc3a8996246f42da5dc0fb14cd856fe5bc51c031b3d83870ae89e9cdb1cbb2605b3f8bf4a978435c80a0e99a1a60b4e1a45d77458ec39fbf0a65b9b5891738ddc44edede2614d96e62303f0138051ab899e67bdce065ac5ec8edc6b591220b2522f8f4920bd9b7d4084b30d9a79cc658de0260b6e76acd7efe0d5c38e7856a7dc22bfbe287fdf88ca393f6c575cc1db8f0d8e47b0456e5a392f27e9f2b0352da61e58d1c1ba23b32de9f82ed35cd862644d63ea6a3f09b3642347ce6",
    valid: true,
}];

/// ring's "e = 2**34 - 1 (0x200000001), the smallest odd 34-bit number" key (its result
/// is F: ring refuses the exponent; this crate says `InvalidKey`).
pub(crate) const RING_PKCS1_E_34_BITS_KEY: &str = "3082010c0282010100f29f6bb9c42e2025d15701b7278a301c92162928265ff63d08ec7c41467303159ca453cebc5709b524a76009203b7871464178497d6739d291e7367a1943f0d38b643fbb78e204c2afb99709b579f033e85e181dc6fc6c5ba20a65c5dee9ad7c44085f34fe13192f1be071fbeeabc743ef16b0e19bde382549090f200503c670a63c895b4a3a8f3fe6411b574d89d3b7b0e57f9922df070620421a1e55acc5557aa35671503ac0d21c64af1840fe4c0ffc9e21b3774f3583ac32c5481e3df8a85b79cadc5bac78bc0a37a08b0d51b147d31a6108af6c42a4738b3657b8fdfaa0a7f90f674771987c19d1be67f45ff14aff1adbaef2b9f78d546559cdc0b8d8c902050200000001";

/// The 1024-bit key (e = 0xfe3fa1) of the first NIST SigVer15 SHA1 cases in ring's file
/// (their result is F: ring's verifiers take 2048 bits and up; this crate says
/// `InvalidKey`).
pub(crate) const NIST_PKCS1_1024_KEY: &str = "30818a02818100dd07f43534adefb5407cc163aacc7abe9f93cb749643eaec22a3ef16e77813d77df20e84a755088872fde21d3d3192f9a78d726ef3d0daa9d6bc19daf6822eb834fbf837ed03d0f84a7fc7709be382e880e77ba3ce3d91ca1cbf567fc2e62169843489188a128ec853079e7942e6590508ea2faab1cf87b860b21b9546442455020400fe3fa1";

// ---------------------------------------------------------------------------------------
// ring tests/rsa_pss_verify_tests.txt (NIST CAVP SigVerPSS_186-3, 2048-bit keys; the salt is
// as long as the digest, which is what JWS PS256/384/512 use).

/// PS256 cases.
pub(crate) const RING_PS256: &[RsaCase] = &[
    RsaCase {
        name: "SigVerPSS SHA256, Result = P",
        key: "3082010a0282010100a47d04e7cacdba4ea26eca8a4c6e14563c2ce03b623b768c0d49868a57121301dbf783d82f4c055e73960e70550187d0af62ac3496f0a3d9103c2eb7919a72752fa7ce8c688d81e3aee99468887a15288afbb7acb845b7c522b5c64e678fcd3d22feb84b44272700be527d2b2025a3f83c2383bf6a39cf5b4e48b3cf2f56eef0dfff18555e31037b915248694876f3047814415164f2c660881e694b58c28038a032ad25634aad7b39171dee368e3d59bfb7299e4601d4587e68caaf8db457b75af42fc0cf1ae7caced286d77fac6cedb03ad94f1433d2c94d08e60bc1fdef0543cd2951e765b38230fdd18de5d2ca627ddc032fe05bbd2ff21e2db1c2f94d8b020310e43f",
        msg: "e002377affb04f0fe4598de9d92d31d6c786040d5776976556a2cfc55e54a1dcb3cb1b126bd6a4bed2a184990ccea773fcc79d246553e6c64f686d21ad4152673cafec22aeb40f6a084e8a5b4991f4c64cf8a927effd0fd775e71e8329e41fdd4457b3911173187b4f09a817d79ea2397fc12dfe3d9c9a0290c8ead31b6690a6",
        sig: "4f9b425c2058460e4ab2f5c96384da2327fd29150f01955a76b4efe956af06dc08779a374ee4607eab61a93adc5608f4ec36e47f2a0f754e8ff839a8a19b1db1e884ea4cf348cd455069eb87afd53645b44e28a0a56808f5031da5ba9112768dfbfca44ebe63a0c0572b731d66122fb71609be1480faa4e4f75e43955159d70f081e2a32fbb19a48b9f162cf6b2fb445d2d6994bc58910a26b5943477803cdaaa1bd74b0da0a5d053d8b1dc593091db5388383c26079f344e2aea600d0e324164b450f7b9b465111b7265f3b1b063089ae7e2623fc0fda8052cf4bf3379102fbf71d7c98e8258664ceed637d20f95ff0111881e650ce61f251d9c3a629ef222d",
        valid: true,
    },
    RsaCase {
        name: "SigVerPSS SHA256, Result = F (1 - Message changed)",
        key: "3082010a0282010100a47d04e7cacdba4ea26eca8a4c6e14563c2ce03b623b768c0d49868a57121301dbf783d82f4c055e73960e70550187d0af62ac3496f0a3d9103c2eb7919a72752fa7ce8c688d81e3aee99468887a15288afbb7acb845b7c522b5c64e678fcd3d22feb84b44272700be527d2b2025a3f83c2383bf6a39cf5b4e48b3cf2f56eef0dfff18555e31037b915248694876f3047814415164f2c660881e694b58c28038a032ad25634aad7b39171dee368e3d59bfb7299e4601d4587e68caaf8db457b75af42fc0cf1ae7caced286d77fac6cedb03ad94f1433d2c94d08e60bc1fdef0543cd2951e765b38230fdd18de5d2ca627ddc032fe05bbd2ff21e2db1c2f94d8b020310e43f",
        msg: "a3bf44cae8aa8347fd07d84a33eec5dbbdd7b6431368887c988c4be779c5473dd8c33ec82a35f1d3dddfe55f3eed67179b87ce86a4a50088172538fe9d1b06c6ef6897eb3c8e3618cfc21353ed4343e7fceb09a2eb035441cd5c8829c79b81582dd5d69ae85c5a001bd8e98e069961342a2bee00ad2b8b91015ac5cfc1f0c2d9",
        sig: "877f20eed60f8ce286108a5dde9b6828b37e3fbdb08fe153e591513897440f21f81214598fba08ea077394ba8c2a44aa4f0d8f3a5fbaec3dc69b3bddfbe28397c90adf35d08ea771c7aaa31eb06413c1c62b77618af940f4c71859fa4384d29b48e5cfc941d69bf0a3804d2008e758742b8ed68754bc71d231623d181347c36833a7d7160f742a37ce7d432d748e514aa7d8156b50c532151390d086cdcf9d59f122c6d97f4ccb737289f7b00a237cb6b4aae6ba79d41ff73d019a26b59ade04c967356e2aad52f115357ffb7676f190db38dcfc98666e5b258559c8c85fa32942cbcb99d757e8847e56a1687b3302415698708191b136d923349b02fe38b6be",
        valid: false,
    },
];

/// PS384 cases.
pub(crate) const RING_PS384: &[RsaCase] = &[RsaCase {
    name: "SigVerPSS SHA384, Result = P",
    key: "3082010a0282010100cb59aae30883db678ea7b2a5e7009799066f060757525166030714a25e808482e752f04f78611b3509d6005b411530c9ada4d8fbddc85f9db3d209eccc6cf0cae9aeb902e96688d2547974b7eb3323eeaa2257cf8d5c7c97f5176e2cfd29e19d0487380e3e64338c73bd592d52e9dbcc9606ed5835758c1a112c6a004256b5c4338322695df2ba573be0e79a7b9f9afd497dd38eed39f05f88d7d399d1e984d048067596ad1847ce51221babf51873bad2d81fa91cf3d9fd307e3ebd41fc49a8b3252ed7a71fd2357330bef2f1f89f2c80f740567e2ae8d168e56f007e8fefa33d2eb92b7d830a4f978ffe842ef0697db50602b19642afc50ac1f837e476c0fd020324f1bf",
    msg: "f991a40a6c3cda01f1a2fed01ca0cf425588a071205eb997a147fa205f3ec10448090e53f56be512309cf445b3f6764d33f157749d5199c7a09ef6246bd5c793b85d24d9093c4d4b318b48e11727cc8bb7aa5ec8699aba7466e074e1887bdf2a51752ec42f16d956fe5943cbcf9c99a5e89bfd940c9fe447fcf3bc823d98d371",
    sig: "6b42514e88d93079d158336897dc34b450e424d61f6ddcf86fe8c9a368ae8a22c4ee4084c978b5169379da10ae6a6ae8cd80028e198cd0a8db532cd78a409f53baf7d231b545835b0dc06d594d76868d986889419a959268fd321bbc8bad5e800e452fe1a1a2a5a851d542494473deb425171a2f37ffc4cf0600a8d561b20f777407bbef1b596f92e518c0929e8bd52b015c2718d14443a56056f65015515673deef32ae5399ae71f97873ec1508f8c41d6a66a13017685134e5425c4b580a7f6986c26fb272f0ed215d6698dcec9e7c5258173b295b3611869254a538945de952dedf291837df0d7a205e1b76b01140df4edce3afe7245d46ee3b292bb117b1",
    valid: true,
}];

/// PS512 cases.
pub(crate) const RING_PS512: &[RsaCase] = &[RsaCase {
    name: "SigVerPSS SHA512, Result = P",
    key: "3082010a0282010100a93cbcd5c69a8e24b6be4f078652e6c8bf6d516b1316e842d5c8e757e387243c4905b37a66a30967ebc6ed6da56f690f60bec090652ee1926526a78317d41cdff392111fba8a6a91109953fe102c8a51e56b3b6f8087dc53e38d57ac31cd7bbc46f6d14bdf488852db296de27200d11dcd067d776af73c10cd044636aa4d9ea5609c75691aa164eb8abe0f187c0286dfa4d1f5f4332e7664c3c572671b757667e221cc2f0a3944926331ef73bcfc58d1ef8595a2bffd240f2397c4bcb69826ec26fadb3a154e58e86fea883d516d21cde6c162ab55fad9c52df547ef0e6b946d368daa97585084e43a32e029908910c6f99b4131c3961d0543fd583608e8a3e30203452b3f",
    msg: "25e9e6c39ee6f5c455d81f868713362929cd68ae87300aac2bae94440095ec56b7e3e7f56a5b0d197fd89c94d0e2d048087f6296504b4e1a2ccbda959fffd42a96361bce842661fa493c2ea25831286b19de93198c5114463020ba5a23fd3eb78a8b8a34337179cd79acde996829c7fc2293031d816ae19afe553b7bd2b9b365",
    sig: "2e0b30ae35777c9f951b22740fccb88fdfa94e7d139c9eb105be1a1ce542f6efdf4eb3d1ab0b2342f8e354a0878e31f0bdec1eb67ed19491a086065af7e5188ed0b95e0dc88812f66d6c726fd672e03652432f85a9fe4766a7c315c0c695fc37c45ff5441d3177c4181f01c243ad3c9614e4c6f4f8b879ca8167a7790aca6b34c74936cba58e64cc4e32ffc8ad6c09c48ac59f1eb18dd11871ffccae98c465abd5885bddf59dcec5ddb31ce4ecd86bf6af207373a912b2717e726ce9ff555f3502e8cb83e287cf0f7c938cd4b26f075fd50e4127555ade94c974a4cf604ea5c5d9e94ce91fcb9a2bfc8743c06e69ca41ef029881c3d64078cc6311c694dee627",
    valid: true,
}];

// ---------------------------------------------------------------------------------------
// ring tests/ecdsa_verify_fixed_tests.txt (signatures are r || s; `Msg = ""` in all).

/// A ring ECDSA (fixed-length signature) test case; the message is empty.
pub(crate) struct EcCase {
    /// ring's comment for the case.
    pub(crate) name: &'static str,
    /// The uncompressed public point, hex.
    pub(crate) q: &'static str,
    /// The signature r || s, hex.
    pub(crate) sig: &'static str,
    /// ring's expected result: valid (P) or not (F).
    pub(crate) valid: bool,
}

/// ES256 (`Curve = P-256`, `Digest = SHA256`) cases.
pub(crate) const RING_ES256: &[EcCase] = &[
    EcCase {
        name: "s == n - 1 (maximum allowed)",
        q: "04d78f14b53bf825c9f7146193f775458ef5ee46500cd44b18488cb4115c3f00f04b11fc7c6aa1045dc83e4f3e8a14d4a017db8415b5fe3f1a32afba4b8c707ab4",
        sig: "0000000000000000000000000000000000000000000000000000000000000006ffffffff00000000ffffffffffffffffbce6faada7179e84f3b9cac2fc632550",
        valid: true,
    },
    EcCase {
        name: "s == n - 1 (maximum allowed), missing first zero byte",
        q: "04d78f14b53bf825c9f7146193f775458ef5ee46500cd44b18488cb4115c3f00f04b11fc7c6aa1045dc83e4f3e8a14d4a017db8415b5fe3f1a32afba4b8c707ab4",
        sig: "00000000000000000000000000000000000000000000000000000000000006ffffffff00000000ffffffffffffffffbce6faada7179e84f3b9cac2fc632550",
        valid: false,
    },
    EcCase {
        name: "s == n (out of range)",
        q: "0471db746fd153cf5c5a7c7210f9008c0e99c3a936ef0e720b202b304771431a230af53931e70cbe279ca47ce819616ed1db6604490f70abbcef3036732426eb6d",
        sig: "0000000000000000000000000000000000000000000000000000000000000006ffffffff00000000ffffffffffffffffbce6faada7179e84f3b9cac2fc632551",
        valid: false,
    },
];

/// ES384 (`Curve = P-384`, `Digest = SHA384`) cases.
pub(crate) const RING_ES384: &[EcCase] = &[
    EcCase {
        name: "S is the maximum length",
        q: "045c5e788a805c77d34128b8401cb59b2373b8b468336c9318252bf39fd31d2507557987a5180a9435f9fb8eb971c426f1c485170dcb18fb688a257f89387a09fc4c5b8bd4b320616b54a0a7b1d1d7c6a0c59f6dff78c78ad4e3d6fca9c9a17b96",
        sig: "85ac708d4b0126bac1f5eeebdf911409070a286fdde5649582611b60046de353761660dd03903f58b44148f25142eef8183475ec1f1392f3d6838abc0c01724709c446888bed7f2ce4642c6839dc18044a2a6ab9ddc960bfac79f6988e62d452",
        valid: true,
    },
    EcCase {
        name: "r > q - n, the public key recovered from r (control case)",
        q: "04a93588bffb32417bd2b0fa03a6a30d2cf90034e6070b9333d4e7a42fe88bce5a03e8be7f2a84fbc25ec84dc34915c53fd975cfd0db77ec2b5c548994dc9f62756e018882a31d883471b0bbbd8588d9a2acab1aeaaa1eb217f8e528e7114162df",
        sig: "000000000000000000000000000000000000000000000000389cb27e0bc8d21fa7e5f24cb74f58851313e696333ad68e000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000004",
        valid: true,
    },
    EcCase {
        name: "r > q - n, the public key recovered from r + n (mod q): must fail",
        q: "04576270f9571c9e99b9c71be1a1a705e5155e46b8c6dd920c14e2aaf0f9f96ed30754e2c8f8464d015a9bc779495ea568ac39c555c3b03de021e8167a27425588d6a82b68cf7a0f6ae389a202d8663ed32b5e1782c0377a8f0dc309ae28143961",
        sig: "000000000000000000000000000000000000000000000000389cb27e0bc8d21fa7e5f24cb74f58851313e696333ad68e000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000004",
        valid: false,
    },
];
