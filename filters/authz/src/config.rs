//! The filter's configuration as it appears under `config:` in the proxy's YAML. `README.md` is
//! the reference; each field's doc comment here says the same in brief.
//!
//! ```yaml
//! config:
//!   mode: enforce            # or audit: evaluate, log and count, never block
//!   jwt:
//!     jwks: { keys: [ { kty: RSA, kid: k1, n: "...", e: AQAB } ] }
//!     issuers: [https://issuer.example]
//!     audiences: [orders]
//!     claims_to_headers: [ { claim: sub, header: x-user-id } ]
//!   rules:
//!     deny:  [ { paths: [ { prefix: /admin } ], client_cidrs: [0.0.0.0/0] } ]
//!     allow:
//!       - { claims: { scope: orders:read }, methods: [GET] }
//!       - { from: { principals: [cluster.local/ns/shop/sa/orders] }, paths: [ { exact: /charge } ] }
//! ```
//!
//! These types only describe the shape; `Policy::from_config` checks the values and names the
//! field of any error (`jwt.jwks.keys[1].n: ...`, `rules.allow[0].client_cidrs[2]: ...`).

use std::collections::BTreeMap;
use std::fmt;

use serde::de::{self, Deserializer, Visitor};
use serde::{Deserialize, de::DeserializeOwned};
use serde_json::Value;

/// The whole configuration. Give `jwt`, `api_keys` or both.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// `enforce` (default) answers 401/403; `audit` only logs and counts what it would do.
    #[serde(default)]
    pub mode: Mode,
    /// JWT authentication.
    #[serde(default)]
    pub jwt: Option<JwtConfig>,
    /// API-key authentication.
    #[serde(default)]
    pub api_keys: Option<ApiKeysConfig>,
    /// Let requests without credentials reach the rules as anonymous: they pass only if an allow
    /// rule matches them (and no deny rule does). Default false: they get 401 at once.
    #[serde(default)]
    pub allow_missing: bool,
    /// Deny and allow rules.
    #[serde(default)]
    pub rules: Rules,
    /// The realm in `www-authenticate` challenges. Default `weft`.
    #[serde(default = "default_realm")]
    pub realm: String,
}

/// Whether decisions are enforced.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    /// Reject what the policy rejects.
    #[default]
    Enforce,
    /// Dry run: every request continues; would-be rejections are logged and counted as
    /// `audit_denied` / `audit_unauthenticated`.
    Audit,
}

/// JWT authentication settings.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JwtConfig {
    /// The verification keys: a JWKS object `{keys: [...]}`, or a JSON string of one.
    pub jwks: Value,
    /// Accepted `iss` values; at least one.
    pub issuers: Vec<String>,
    /// Accepted `aud` values; when given, the token must name at least one.
    #[serde(default)]
    pub audiences: Vec<String>,
    /// Accepted `alg` values (`RS256`, `PS256`, `ES256`, `EdDSA`, `HS256`, ...: see
    /// [`crate::jwt::Algorithm`]). Default: those of the keys.
    #[serde(default)]
    pub algorithms: Option<Vec<String>>,
    /// Tolerance for `exp` and `nbf`: seconds as a number, or a duration in whole seconds
    /// (`"90s"`, `"1m30s"`, `"1.5m"`). Default 60 s.
    #[serde(default = "default_clock_skew")]
    pub clock_skew: Seconds,
    /// Reject tokens without `exp`. Default true.
    #[serde(default = "yes")]
    pub require_exp: bool,
    /// Where to look for the token, first found wins. Default: `Authorization: Bearer`.
    #[serde(default)]
    pub from: Option<Vec<TokenSource>>,
    /// Keep the token in the request sent upstream. Default false: it is removed.
    #[serde(default)]
    pub forward_token: bool,
    /// Claims to send upstream as request headers; client-sent copies are always removed.
    #[serde(default)]
    pub claims_to_headers: Vec<ClaimToHeader>,
    /// Verified tokens remembered per instance, so a repeated token skips the signature check
    /// (its times are still checked). 0 disables the cache. Default 256.
    #[serde(default = "default_cache_size")]
    pub cache_size: usize,
}

impl fmt::Debug for JwtConfig {
    // The JWKS may hold HMAC secrets: never print it.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JwtConfig")
            .field("jwks", &"<redacted>")
            .field("issuers", &self.issuers)
            .field("audiences", &self.audiences)
            .field("algorithms", &self.algorithms)
            .field("clock_skew", &self.clock_skew)
            .field("require_exp", &self.require_exp)
            .field("from", &self.from)
            .field("forward_token", &self.forward_token)
            .field("claims_to_headers", &self.claims_to_headers)
            .field("cache_size", &self.cache_size)
            .finish()
    }
}

/// One place a token may be: a header (with an optional scheme prefix) or a cookie.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenSource {
    /// A request header name.
    #[serde(default)]
    pub header: Option<String>,
    /// With `header`: a prefix to strip, matched case-insensitively, e.g. `"Bearer "`. A value
    /// without it does not count as found. Default: `"Bearer "` for `authorization`, none
    /// otherwise.
    #[serde(default)]
    pub prefix: Option<String>,
    /// A cookie name.
    #[serde(default)]
    pub cookie: Option<String>,
}

/// A claim forwarded as a header.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClaimToHeader {
    /// The claim name, or a dotted path into nested objects (`realm_access.roles`).
    pub claim: String,
    /// The request header to set.
    pub header: String,
}

/// API-key authentication settings.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApiKeysConfig {
    /// The request header carrying the key. Default `x-api-key`.
    #[serde(default = "default_api_key_header")]
    pub header: String,
    /// The accepted keys, by SHA-256 hash.
    pub keys: Vec<ApiKey>,
    /// Keep the key header in the request sent upstream. Default false: it is removed.
    #[serde(default)]
    pub forward_key: bool,
    /// A request header to set to the key's name; client-sent copies are always removed.
    #[serde(default)]
    pub name_header: Option<String>,
}

/// One accepted API key.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApiKey {
    /// The identity the key stands for; rules match it with `identities`.
    pub name: String,
    /// The SHA-256 of the key, 64 hex digits (`printf %s "$KEY" | sha256sum`).
    pub sha256: String,
}

/// The rules, evaluated deny first, then allow.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rules {
    /// Any match: 403.
    #[serde(default)]
    pub deny: Vec<Rule>,
    /// Any match: allowed. When there are allow rules, a request matching none gets 403.
    #[serde(default)]
    pub allow: Vec<Rule>,
}

/// A rule matches when every condition it gives matches; a condition listing several values
/// matches when any of them does.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rule {
    /// Path matches (`{exact: /x}` or `{prefix: /x/}`), against the normalized path without
    /// the query.
    #[serde(default)]
    pub paths: Vec<StringMatch>,
    /// Methods, e.g. `[GET, HEAD]`.
    #[serde(default)]
    pub methods: Vec<String>,
    /// Header conditions.
    #[serde(default)]
    pub headers: Vec<HeaderMatch>,
    /// Claim conditions, all of which must hold: claim path → value, or list of values (any).
    #[serde(default)]
    pub claims: BTreeMap<String, Value>,
    /// Client address ranges, IPv4 or IPv6 CIDR (`10.0.0.0/8`, `2001:db8::/32`) or addresses.
    #[serde(default)]
    pub client_cidrs: Vec<String>,
    /// mTLS peer identities (SPIFFE IDs), `{exact: ...}` or `{prefix: ...}`.
    #[serde(default)]
    pub peer_identities: Vec<StringMatch>,
    /// API key names.
    #[serde(default)]
    pub identities: Vec<String>,
    /// Who the caller is by its mTLS identity (Istio's `from.source`).
    #[serde(default)]
    pub from: Option<Source>,
}

/// A rule's `from` condition: the mesh principal (SPIFFE workload ID) of the mTLS peer. Every
/// list given must match; a list given must not be empty.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Source {
    /// Any of these principals: `spiffe://<trust-domain>/ns/<namespace>/sa/<service-account>`,
    /// the same without `spiffe://`, with `*` for a segment or at the start or end, or `*` alone
    /// for any mTLS peer.
    #[serde(default)]
    pub principals: Option<Vec<String>>,
    /// None of these principals (a plaintext caller is none of them).
    #[serde(default)]
    pub not_principals: Option<Vec<String>>,
    /// The peer's namespace is one of these (`shop`, `shop-*`, `*-prod`, `*`).
    #[serde(default)]
    pub namespaces: Option<Vec<String>>,
    /// The peer's namespace is none of these (a plaintext caller has none).
    #[serde(default)]
    pub not_namespaces: Option<Vec<String>>,
}

/// `{exact: value}` or `{prefix: value}`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StringMatch {
    /// The whole value.
    #[serde(default)]
    pub exact: Option<String>,
    /// The start of the value.
    #[serde(default)]
    pub prefix: Option<String>,
}

/// A header condition: `name` plus one of `exact`, `prefix` or `present`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HeaderMatch {
    /// The header name.
    pub name: String,
    /// Some value equals this.
    #[serde(default)]
    pub exact: Option<String>,
    /// Some value starts with this.
    #[serde(default)]
    pub prefix: Option<String>,
    /// `true`: the header is present; `false`: it is absent.
    #[serde(default)]
    pub present: Option<bool>,
}

/// A number of seconds, written as a number, or as a string: digits alone (seconds) or a
/// duration of whole seconds (`"90s"`, `"1m30s"`, `"1.5m"`, [`weft_sdk::text::parse_duration`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Seconds(u64);

/// The most clock skew accepted: more would make `exp` meaningless.
const MAX_CLOCK_SKEW: u64 = 3600;

impl Seconds {
    pub(crate) fn seconds(self, field: &str) -> Result<u64, String> {
        if self.0 > MAX_CLOCK_SKEW {
            return Err(format!(
                "{field}: at most {MAX_CLOCK_SKEW} seconds; got {}",
                self.0
            ));
        }
        Ok(self.0)
    }
}

impl<'de> Deserialize<'de> for Seconds {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct SecondsVisitor;

        impl Visitor<'_> for SecondsVisitor {
            type Value = Seconds;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("seconds as a number, or a string like \"90s\" or \"1m30s\"")
            }

            fn visit_u64<E: de::Error>(self, value: u64) -> Result<Seconds, E> {
                Ok(Seconds(value))
            }

            fn visit_i64<E: de::Error>(self, value: i64) -> Result<Seconds, E> {
                u64::try_from(value)
                    .map(Seconds)
                    .map_err(|_| E::invalid_value(de::Unexpected::Signed(value), &self))
            }

            fn visit_str<E: de::Error>(self, value: &str) -> Result<Seconds, E> {
                parse_seconds(value).map(Seconds).map_err(E::custom)
            }
        }

        deserializer.deserialize_any(SecondsVisitor)
    }
}

/// `"90"` (seconds), or a duration of whole seconds: `"90s"`, `"1m30s"`, `"1.5m"`, `"1h"`.
fn parse_seconds(text: &str) -> Result<u64, String> {
    let digits = text.trim();
    if !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()) {
        return digits
            .parse()
            .map_err(|_| format!("{text:?} is too many seconds"));
    }
    let duration = weft_sdk::text::parse_duration(text)?;
    if duration.subsec_nanos() != 0 {
        return Err(format!("invalid duration {text:?}: must be whole seconds"));
    }
    Ok(duration.as_secs())
}

fn default_realm() -> String {
    "weft".to_owned()
}

fn default_clock_skew() -> Seconds {
    Seconds(60)
}

fn default_cache_size() -> usize {
    256
}

fn default_api_key_header() -> String {
    "x-api-key".to_owned()
}

fn yes() -> bool {
    true
}

/// Deserialize one section of the configuration given as JSON (for [`crate::jwt::Verifier::from_json`]).
pub(crate) fn parse_section<T: DeserializeOwned>(
    value: &Value,
    section: &str,
) -> Result<T, String> {
    T::deserialize(value).map_err(|err| format!("{section}: {err}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seconds_accept_numbers_and_durations() {
        assert_eq!(parse_seconds("90"), Ok(90));
        assert_eq!(parse_seconds(" 90 "), Ok(90));
        assert_eq!(parse_seconds("90s"), Ok(90));
        assert_eq!(parse_seconds("2m"), Ok(120));
        assert_eq!(parse_seconds("1h"), Ok(3600));
        assert_eq!(parse_seconds("1m30s"), Ok(90));
        assert_eq!(parse_seconds("1m 30s"), Ok(90));
        assert_eq!(parse_seconds("1.5m"), Ok(90));
        assert_eq!(
            parse_seconds("2.5s").map_err(|e| e.contains("whole seconds")),
            Err(true)
        );
        assert_eq!(
            parse_seconds("250ms").map_err(|e| e.contains("whole seconds")),
            Err(true)
        );
        // Bounded later (`Seconds::seconds`), not here.
        assert_eq!(parse_seconds("1d"), Ok(86_400));
        for bad in ["", "s", "-1s", "1x", "99999999999999999999"] {
            assert!(parse_seconds(bad).is_err(), "{bad:?}");
        }
        let parsed: Seconds = serde_json::from_str("30").expect("number");
        assert_eq!(parsed, Seconds(30));
        let parsed: Seconds = serde_json::from_str("\"2m\"").expect("string");
        assert_eq!(parsed, Seconds(120));
        let err = serde_json::from_str::<Seconds>("-5").expect_err("negative");
        assert!(err.to_string().contains("seconds as a number"), "{err}");
        let err = serde_json::from_str::<Seconds>("\"soon\"").expect_err("not a duration");
        assert!(
            err.to_string().starts_with("invalid duration \"soon\""),
            "{err}"
        );
    }

    #[test]
    fn skew_is_bounded() {
        assert_eq!(Seconds(60).seconds("jwt.clock_skew"), Ok(60));
        let err = Seconds(7200)
            .seconds("jwt.clock_skew")
            .expect_err("too large");
        assert!(err.starts_with("jwt.clock_skew: at most 3600"), "{err}");
    }
}
