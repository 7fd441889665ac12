//! The configuration as the proxy YAML spells it, and its validation into a [`Plan`]: the
//! limits with their keys compiled, ready for the request path.
//!
//! Errors name the field the way the SDK names serde's (``config field `limits[1].capacity`:
//! ...``). Mistakes serde can see (a bad duration, an unknown descriptor, a bad name) are
//! reported during deserialization, so the SDK adds the field path; the checks that need the
//! whole config (duplicate names, cost above capacity) are done by [`Plan::new`].

use std::fmt;
use std::time::Duration;

use serde::Deserialize;
use serde::de::{self, Deserializer, MapAccess, Visitor};
use weft_sdk::text;

/// The filter's configuration:
///
/// ```yaml
/// config:
///   limits:
///     - name: per_client
///       key: [client_address]
///       capacity: 100
///       refill: { amount: 10, interval: 1s }
///   shadow: false
///   headers: false
///   on_key_overflow: allow
/// ```
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// The limits; a request is limited if any of them says no.
    pub limits: Vec<LimitConfig>,
    /// Count what would be limited, never block.
    #[serde(default)]
    pub shadow: bool,
    /// Quota headers on allowed responses too (429s always carry them). Off by default: the
    /// three headers cost three calls into the proxy on every request.
    #[serde(default)]
    pub headers: bool,
    /// What to do when a limit holds `max_keys` keys and a new key arrives.
    #[serde(default)]
    pub on_key_overflow: OnKeyOverflow,
}

/// One limit: a family of token buckets, one per key.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitConfig {
    /// `[a-z_][a-z0-9_]*`: names the bucket family and the `limit` metric label.
    pub name: LimitName,
    /// What the bucket key is made of; empty for one bucket shared by every request.
    pub key: Vec<Descriptor>,
    /// Tokens a full bucket holds (the burst).
    pub capacity: u64,
    /// How the bucket refills.
    pub refill: Refill,
    /// Tokens each request takes.
    #[serde(default = "default_cost")]
    pub cost: u64,
    /// The most keys held at once.
    #[serde(default = "default_max_keys")]
    pub max_keys: u32,
}

fn default_cost() -> u64 {
    1
}

fn default_max_keys() -> u32 {
    DEFAULT_MAX_KEYS
}

/// The default of `max_keys`.
pub const DEFAULT_MAX_KEYS: u32 = 100_000;

/// `amount` tokens every `interval`.
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Refill {
    /// Tokens added per interval, up to the capacity.
    pub amount: u64,
    /// Time between refills.
    pub interval: Interval,
}

/// What happens when a limit already holds `max_keys` keys and a request brings a new one.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OnKeyOverflow {
    /// The request is not subject to that limit (counted as `overflow`).
    #[default]
    Allow,
    /// The request gets a 429 (counted as `overflow`).
    Deny,
}

/// A validated limit name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LimitName(pub String);

impl<'de> Deserialize<'de> for LimitName {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let name = String::deserialize(deserializer)?;
        if valid_name(&name) {
            Ok(LimitName(name))
        } else {
            Err(de::Error::custom(format!(
                "{name:?} is not a valid limit name: it must match [a-z_][a-z0-9_]*"
            )))
        }
    }
}

fn valid_name(name: &str) -> bool {
    let mut bytes = name.bytes();
    bytes
        .next()
        .is_some_and(|b| b.is_ascii_lowercase() || b == b'_')
        && bytes.all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
}

/// A refill interval written as a duration: `100ms`, `1.5s`, `1m30s`, `1h`, `1d`
/// ([`text::parse_duration`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Interval(pub Duration);

/// The longest interval accepted, as the host does: ten years.
const MAX_INTERVAL_MS: u64 = 3650 * 86_400_000;

impl<'de> Deserialize<'de> for Interval {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct IntervalVisitor;

        impl Visitor<'_> for IntervalVisitor {
            type Value = Interval;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a duration such as 100ms, 1.5s, 1m30s or 1h")
            }

            fn visit_str<E: de::Error>(self, text: &str) -> Result<Interval, E> {
                parse_interval(text).map(Interval).map_err(E::custom)
            }
        }

        deserializer.deserialize_str(IntervalVisitor)
    }
}

/// Parse a refill interval: a duration ([`text::parse_duration`], the syntax of every weft
/// config: `100ms`, `1.5s`, `1m30s`, `1h`, `1d`) of whole milliseconds (the host's unit), at
/// least 1 ms, at most ten years.
pub fn parse_interval(text: &str) -> Result<Duration, String> {
    let duration = text::parse_duration(text)?;
    if duration.subsec_nanos() % 1_000_000 != 0 {
        return Err(format!(
            "invalid duration {text:?}: must be whole milliseconds"
        ));
    }
    if duration.is_zero() {
        return Err(format!("duration {text:?} is too short: at least 1ms"));
    }
    if duration > Duration::from_millis(MAX_INTERVAL_MS) {
        return Err(format!("duration {text:?} is too long: at most 3650d"));
    }
    Ok(duration)
}

/// One part of a bucket key: a fact about the request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Descriptor {
    /// The client's IP address, without the port.
    ClientAddress,
    /// The first value of a request header (name lower-cased).
    Header(String),
    /// The request path, without the query.
    Path,
    /// The name of the route the request matched.
    Route,
    /// The request method.
    Method,
}

impl Descriptor {
    /// How the descriptor appears in the config, for messages.
    pub fn describe(&self) -> String {
        match self {
            Descriptor::ClientAddress => "client_address".to_owned(),
            Descriptor::Header(name) => format!("{{ header: {name} }}"),
            Descriptor::Path => "path".to_owned(),
            Descriptor::Route => "route".to_owned(),
            Descriptor::Method => "method".to_owned(),
        }
    }
}

const DESCRIPTORS: &str = "client_address, path, route, method or { header: <name> }";

impl<'de> Deserialize<'de> for Descriptor {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct DescriptorVisitor;

        impl<'de> Visitor<'de> for DescriptorVisitor {
            type Value = Descriptor;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "a descriptor: {DESCRIPTORS}")
            }

            fn visit_str<E: de::Error>(self, text: &str) -> Result<Descriptor, E> {
                match text {
                    "client_address" => Ok(Descriptor::ClientAddress),
                    "path" => Ok(Descriptor::Path),
                    "route" => Ok(Descriptor::Route),
                    "method" => Ok(Descriptor::Method),
                    "header" => Err(E::custom(
                        "the header descriptor needs a name: { header: <name> }",
                    )),
                    other => Err(E::custom(format!(
                        "unknown descriptor {other:?}, expected {DESCRIPTORS}"
                    ))),
                }
            }

            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Descriptor, A::Error> {
                let Some(kind) = map.next_key::<String>()? else {
                    return Err(de::Error::custom(format!(
                        "empty descriptor, expected {DESCRIPTORS}"
                    )));
                };
                if kind != "header" {
                    return Err(de::Error::custom(format!(
                        "unknown descriptor {{ {kind}: ... }}, expected {DESCRIPTORS}"
                    )));
                }
                let HeaderName(name) = map.next_value()?;
                if map.next_key::<String>()?.is_some() {
                    return Err(de::Error::custom(
                        "a header descriptor has one field: { header: <name> }",
                    ));
                }
                Ok(Descriptor::Header(name))
            }
        }

        deserializer.deserialize_any(DescriptorVisitor)
    }
}

/// A header name: an RFC 9110 token, lower-cased.
struct HeaderName(String);

impl<'de> Deserialize<'de> for HeaderName {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let name = String::deserialize(deserializer)?;
        if text::is_header_name(&name) {
            Ok(HeaderName(name.to_ascii_lowercase()))
        } else {
            Err(de::Error::custom(format!(
                "{name:?} is not a valid header name"
            )))
        }
    }
}

/// A validated configuration: what the filter runs on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    /// The limits, in config order.
    pub limits: Vec<Limit>,
    /// The distinct header names the keys read; [`Part::Header`] indexes into it.
    pub headers: Vec<String>,
    /// Count what would be limited, never block.
    pub shadow: bool,
    /// Quota headers on allowed responses.
    pub headers_on_allowed: bool,
    /// What a new key beyond `max_keys` gets.
    pub on_key_overflow: OnKeyOverflow,
}

/// One validated limit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limit {
    /// The family name and metric label.
    pub name: String,
    /// The key's parts, in order.
    pub parts: Vec<Part>,
    /// What every key of this limit starts with: the descriptors it is made of, so that
    /// limits of the same name and spec but different keys (per-route configs) never mix up
    /// their buckets.
    pub prefix: String,
    /// Tokens a full bucket holds.
    pub capacity: u64,
    /// Tokens added per interval.
    pub refill_amount: u64,
    /// Time between refills.
    pub interval: Duration,
    /// Tokens a request takes.
    pub cost: u64,
    /// The most keys held.
    pub max_keys: u32,
}

/// A key part, resolved: headers by their index in [`Plan::headers`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Part {
    /// The client's IP address.
    ClientAddress,
    /// The header at this index of [`Plan::headers`].
    Header(usize),
    /// The path without the query.
    Path,
    /// The route name.
    Route,
    /// The method.
    Method,
}

impl Plan {
    /// Validate `config`; the error names the field, like the SDK's parse errors.
    pub fn new(config: Config) -> Result<Plan, String> {
        if config.limits.is_empty() {
            return Err("config field `limits`: at least one limit is required".to_owned());
        }
        let mut headers: Vec<String> = Vec::new();
        let mut limits: Vec<Limit> = Vec::with_capacity(config.limits.len());
        for (i, limit) in config.limits.into_iter().enumerate() {
            let field = |name: &str| format!("config field `limits[{i}].{name}`");
            let name = limit.name.0;
            if let Some(first) = limits.iter().position(|l| l.name == name) {
                return Err(format!(
                    "{}: duplicate limit name {name:?} (also limits[{first}])",
                    field("name")
                ));
            }
            if limit.capacity == 0 {
                return Err(format!("{}: must be at least 1", field("capacity")));
            }
            if limit.refill.amount == 0 {
                return Err(format!("{}: must be at least 1", field("refill.amount")));
            }
            if limit.cost == 0 {
                return Err(format!("{}: must be at least 1", field("cost")));
            }
            if limit.cost > limit.capacity {
                return Err(format!(
                    "{}: {} is more than the capacity ({}): no request could ever pass",
                    field("cost"),
                    limit.cost,
                    limit.capacity
                ));
            }
            if limit.max_keys == 0 {
                return Err(format!("{}: must be at least 1", field("max_keys")));
            }
            let mut parts = Vec::with_capacity(limit.key.len());
            let mut prefix = String::new();
            for (j, descriptor) in limit.key.iter().enumerate() {
                if limit.key[..j].contains(descriptor) {
                    return Err(format!(
                        "{}: duplicate descriptor {}",
                        field(&format!("key[{j}]")),
                        descriptor.describe()
                    ));
                }
                // Header names are tokens, which never hold `,` or `;`: the prefix is
                // unambiguous.
                if j > 0 {
                    prefix.push(',');
                }
                parts.push(match descriptor {
                    Descriptor::ClientAddress => {
                        prefix.push('a');
                        Part::ClientAddress
                    }
                    Descriptor::Header(name) => {
                        prefix.push('h');
                        prefix.push_str(name);
                        let index = match headers.iter().position(|h| h == name) {
                            Some(index) => index,
                            None => {
                                headers.push(name.clone());
                                headers.len() - 1
                            }
                        };
                        Part::Header(index)
                    }
                    Descriptor::Path => {
                        prefix.push('p');
                        Part::Path
                    }
                    Descriptor::Route => {
                        prefix.push('r');
                        Part::Route
                    }
                    Descriptor::Method => {
                        prefix.push('m');
                        Part::Method
                    }
                });
            }
            prefix.push(';');
            limits.push(Limit {
                name,
                parts,
                prefix,
                capacity: limit.capacity,
                refill_amount: limit.refill.amount,
                interval: limit.refill.interval.0,
                cost: limit.cost,
                max_keys: limit.max_keys,
            });
        }
        Ok(Plan {
            limits,
            headers,
            shadow: config.shadow,
            headers_on_allowed: config.headers,
            on_key_overflow: config.on_key_overflow,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan(json: serde_json::Value) -> Result<Plan, String> {
        let config: Config = serde_json::from_value(json).map_err(|e| e.to_string())?;
        Plan::new(config)
    }

    fn limit(extra: serde_json::Value) -> serde_json::Value {
        let mut limit = serde_json::json!({
            "name": "per_client",
            "key": ["client_address"],
            "capacity": 10,
            "refill": { "amount": 1, "interval": "1s" },
        });
        if let (Some(limit), Some(extra)) = (limit.as_object_mut(), extra.as_object()) {
            for (k, v) in extra {
                limit.insert(k.clone(), v.clone());
            }
        }
        limit
    }

    #[test]
    fn durations() {
        let ms = Duration::from_millis;
        assert_eq!(parse_interval("100ms"), Ok(ms(100)));
        assert_eq!(parse_interval("1s"), Ok(ms(1_000)));
        assert_eq!(parse_interval("2m"), Ok(ms(120_000)));
        assert_eq!(parse_interval("1h"), Ok(ms(3_600_000)));
        assert_eq!(parse_interval("1d"), Ok(ms(86_400_000)));
        assert_eq!(parse_interval("3650d"), Ok(ms(MAX_INTERVAL_MS)));
        // The syntax every weft config shares (rejected before this filter used it).
        assert_eq!(parse_interval("1m30s"), Ok(ms(90_000)));
        assert_eq!(parse_interval("1.5s"), Ok(ms(1_500)));
        assert_eq!(parse_interval("1 s"), Ok(ms(1_000)));
        assert_eq!(parse_interval(" 1sec "), Ok(ms(1_000)));
        assert_eq!(parse_interval("2h 37min"), Ok(ms(9_420_000)));
        for bad in ["", "1", "s", "-1s", "1S", "1x", "1.5", "1,5s"] {
            let error = parse_interval(bad).expect_err(bad);
            assert!(error.contains("invalid duration"), "{bad:?}: {error}");
        }
        for (fine, error) in [
            ("1500us", "whole milliseconds"),
            ("0.5ms", "whole milliseconds"),
        ] {
            assert!(
                parse_interval(fine).expect_err(fine).contains(error),
                "{fine}"
            );
        }
        assert!(
            parse_interval("0s")
                .expect_err("zero")
                .contains("at least 1ms")
        );
        assert!(
            parse_interval("3651d")
                .expect_err("long")
                .contains("too long")
        );
        assert!(
            parse_interval("99999999999999999999ms")
                .expect_err("overflow")
                .contains("too large")
        );
    }

    #[test]
    fn refill_intervals_take_the_shared_duration_syntax() {
        for (interval, expected) in [
            ("1m30s", Duration::from_secs(90)),
            ("1.5s", Duration::from_millis(1_500)),
            ("250ms", Duration::from_millis(250)),
            ("1 day", Duration::from_secs(86_400)),
        ] {
            let plan = plan(serde_json::json!({ "limits": [limit(serde_json::json!({
                "refill": { "amount": 1, "interval": interval },
            }))] }))
            .expect(interval);
            assert_eq!(plan.limits[0].interval, expected, "{interval}");
        }
        let error = plan(serde_json::json!({ "limits": [limit(serde_json::json!({
            "refill": { "amount": 1, "interval": "1.5ms" },
        }))] }))
        .expect_err("sub-millisecond");
        assert!(
            error.contains("invalid duration \"1.5ms\": must be whole milliseconds"),
            "{error}"
        );
    }

    #[test]
    fn defaults() {
        let plan =
            plan(serde_json::json!({ "limits": [limit(serde_json::json!({}))] })).expect("valid");
        assert!(!plan.shadow);
        assert!(!plan.headers_on_allowed);
        assert_eq!(plan.on_key_overflow, OnKeyOverflow::Allow);
        let limit = &plan.limits[0];
        assert_eq!(limit.cost, 1);
        assert_eq!(limit.max_keys, DEFAULT_MAX_KEYS);
        assert_eq!(limit.interval, Duration::from_secs(1));
        assert_eq!(limit.parts, [Part::ClientAddress]);
        assert_eq!(limit.prefix, "a;");
    }

    #[test]
    fn descriptors_compile_to_parts_and_share_header_slots() {
        let plan = plan(serde_json::json!({ "limits": [
            limit(serde_json::json!({ "name": "a", "key": [{ "header": "X-Tenant" }, "path"] })),
            limit(serde_json::json!({
                "name": "b",
                "key": ["method", "route", { "header": "x-tenant" }, { "header": "x-user" }],
            })),
            limit(serde_json::json!({ "name": "global", "key": [] })),
        ]}))
        .expect("valid");
        assert_eq!(plan.headers, ["x-tenant", "x-user"]);
        assert_eq!(plan.limits[0].parts, [Part::Header(0), Part::Path]);
        assert_eq!(plan.limits[0].prefix, "hx-tenant,p;");
        assert_eq!(
            plan.limits[1].parts,
            [Part::Method, Part::Route, Part::Header(0), Part::Header(1)]
        );
        assert_eq!(plan.limits[1].prefix, "m,r,hx-tenant,hx-user;");
        assert_eq!(plan.limits[2].parts, []);
        assert_eq!(plan.limits[2].prefix, ";");
    }

    #[test]
    fn rejections_name_the_field() {
        let cases = [
            (
                serde_json::json!({ "limits": [] }),
                "`limits`: at least one",
            ),
            (
                serde_json::json!({ "limits": [limit(serde_json::json!({})), limit(serde_json::json!({}))] }),
                "`limits[1].name`: duplicate limit name \"per_client\" (also limits[0])",
            ),
            (
                serde_json::json!({ "limits": [limit(serde_json::json!({ "capacity": 0 }))] }),
                "`limits[0].capacity`: must be at least 1",
            ),
            (
                serde_json::json!({ "limits": [limit(serde_json::json!({ "refill": { "amount": 0, "interval": "1s" } }))] }),
                "`limits[0].refill.amount`: must be at least 1",
            ),
            (
                serde_json::json!({ "limits": [limit(serde_json::json!({ "cost": 0 }))] }),
                "`limits[0].cost`: must be at least 1",
            ),
            (
                serde_json::json!({ "limits": [limit(serde_json::json!({ "cost": 11 }))] }),
                "`limits[0].cost`: 11 is more than the capacity (10)",
            ),
            (
                serde_json::json!({ "limits": [limit(serde_json::json!({ "max_keys": 0 }))] }),
                "`limits[0].max_keys`: must be at least 1",
            ),
            (
                serde_json::json!({ "limits": [limit(serde_json::json!({ "key": ["path", "path"] }))] }),
                "`limits[0].key[1]`: duplicate descriptor path",
            ),
        ];
        for (json, expected) in cases {
            let error = plan(json.clone()).expect_err(&json.to_string());
            assert!(error.contains(expected), "{json}: {error}");
        }
    }

    #[test]
    fn deserialization_rejects_bad_values() {
        let cases = [
            (
                serde_json::json!({ "name": "Per-Client" }),
                "not a valid limit name",
            ),
            (serde_json::json!({ "name": "" }), "not a valid limit name"),
            (
                serde_json::json!({ "key": ["ip"] }),
                "unknown descriptor \"ip\"",
            ),
            (serde_json::json!({ "key": ["header"] }), "needs a name"),
            (
                serde_json::json!({ "key": [{ "cookie": "a" }] }),
                "unknown descriptor { cookie",
            ),
            (serde_json::json!({ "key": [{}] }), "empty descriptor"),
            (
                serde_json::json!({ "key": [{ "header": "bad name" }] }),
                "not a valid header name",
            ),
            (
                serde_json::json!({ "key": [{ "header": "a", "path": "b" }] }),
                "has one field",
            ),
            (serde_json::json!({ "key": [7] }), "expected a descriptor"),
            (
                serde_json::json!({ "refill": { "amount": 1, "interval": "1x" } }),
                "invalid duration \"1x\"",
            ),
            (
                serde_json::json!({ "refill": { "amount": 1, "interval": 5 } }),
                "expected a duration such as 100ms, 1.5s, 1m30s or 1h",
            ),
            (serde_json::json!({ "burst": 5 }), "unknown field `burst`"),
        ];
        for (extra, expected) in cases {
            let json = serde_json::json!({ "limits": [limit(extra.clone())] });
            let error = plan(json).expect_err(&extra.to_string());
            assert!(error.contains(expected), "{extra}: {error}");
        }
        let error = plan(serde_json::json!({
            "limits": [limit(serde_json::json!({}))],
            "on_key_overflow": "drop",
        }))
        .expect_err("unknown policy");
        assert!(error.contains("unknown variant `drop`"), "{error}");
    }
}
