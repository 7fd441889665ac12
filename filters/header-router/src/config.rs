//! The configuration as the proxy YAML spells it, and its validation into a `Router`: rules
//! with their regexes compiled, header names resolved to lookup slots and splits laid out, ready
//! for the request path.
//!
//! Errors name the field the way the SDK names serde's (``config field `rules[2].match.path`:
//! ...``). Serde reports unknown fields and wrong types; `Router::new` reports everything that
//! needs a look at the values (a bad regex, a split with no weight, two choices of upstream).

use std::collections::BTreeMap;

use regex::RegexBuilder;
use serde::Deserialize;
use weft_sdk::text;

use crate::route::{
    Action, HeaderEdits, HeaderMatch, Match, PathMatch, Pattern, QueryMatch, Router, Rule, Split,
    Sticky, Target, ValueTest,
};

/// The filter's configuration:
///
/// ```yaml
/// config:
///   rules:
///     - name: beta-users
///       match:
///         path: { prefix: /api/ }
///         methods: [GET, POST]
///         headers: [ { name: x-beta, exact: "true" } ]
///         query: [ { name: version, exact: "2" } ]
///       upstream: app-beta
///     - name: canary
///       split:
///         - { upstream: app, weight: 90 }
///         - { upstream: app-canary, weight: 10 }
///       sticky: { header: x-user }
///   default:
///     request_headers: { set: { x-routed-by: header-router } }
/// ```
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Tried in order; the first rule whose match holds decides.
    #[serde(default)]
    pub rules: Vec<RuleConfig>,
    /// What to do when no rule matches; without it the request keeps the route's upstream.
    pub default: Option<ActionConfig>,
    /// The most bytes one regex condition scans per request: a longer value does not match.
    #[serde(default = "default_max_regex_bytes")]
    pub max_regex_bytes: usize,
}

/// 4 KiB: a user agent or a path is far shorter, and the slowest pattern measured (README,
/// "Regular expressions") scans it in about half the default 50 ms budget.
pub const DEFAULT_MAX_REGEX_BYTES: usize = 4 << 10;
/// The largest `max_regex_bytes` accepted: 64 KiB, the proxy's default header limit.
pub const MAX_MAX_REGEX_BYTES: usize = 64 << 10;

fn default_max_regex_bytes() -> usize {
    DEFAULT_MAX_REGEX_BYTES
}

impl Default for Config {
    fn default() -> Self {
        Config {
            rules: Vec::new(),
            default: None,
            max_regex_bytes: DEFAULT_MAX_REGEX_BYTES,
        }
    }
}

/// One rule: a match and what to do with the requests it selects.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleConfig {
    /// Names the rule in metrics; `rules[<index>]` by default.
    pub name: Option<String>,
    /// What the request must look like; every condition given must hold. Empty matches all.
    #[serde(rename = "match", default)]
    pub matcher: MatchConfig,
    /// Send the request to this upstream.
    pub upstream: Option<String>,
    /// Or share requests between upstreams by weight.
    pub split: Option<Vec<SplitConfig>>,
    /// Keep a client on one side of the split.
    pub sticky: Option<StickyConfig>,
    /// Edits of the request sent upstream.
    #[serde(default)]
    pub request_headers: RequestHeadersConfig,
    /// Headers added to the response the client gets.
    #[serde(default)]
    pub response_headers: ResponseHeadersConfig,
}

/// The action of `default`: a rule without a name or a match.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ActionConfig {
    /// As [`RuleConfig::upstream`].
    pub upstream: Option<String>,
    /// As [`RuleConfig::split`].
    pub split: Option<Vec<SplitConfig>>,
    /// As [`RuleConfig::sticky`].
    pub sticky: Option<StickyConfig>,
    /// As [`RuleConfig::request_headers`].
    #[serde(default)]
    pub request_headers: RequestHeadersConfig,
    /// As [`RuleConfig::response_headers`].
    #[serde(default)]
    pub response_headers: ResponseHeadersConfig,
}

/// The conditions of a rule; all that are given must hold.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MatchConfig {
    /// The path, without the query.
    pub path: Option<PathConfig>,
    /// The method must be one of these.
    pub methods: Option<Vec<String>>,
    /// Every header condition must hold.
    #[serde(default)]
    pub headers: Vec<HeaderConfig>,
    /// Every query-parameter condition must hold.
    #[serde(default)]
    pub query: Vec<QueryConfig>,
}

/// One of `exact`, `prefix` or `regex`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PathConfig {
    /// The path equals this.
    pub exact: Option<String>,
    /// The path starts with this.
    pub prefix: Option<String>,
    /// The whole path matches this regular expression.
    pub regex: Option<String>,
}

/// A header condition: `name` and one of `exact`, `prefix`, `regex` or `present`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HeaderConfig {
    /// The header name (case-insensitive).
    pub name: String,
    /// A value equals this.
    pub exact: Option<String>,
    /// A value starts with this.
    pub prefix: Option<String>,
    /// A whole value matches this regular expression.
    pub regex: Option<String>,
    /// `true`: the header is there (any value); `false`: it is not.
    pub present: Option<bool>,
}

/// A query-parameter condition: `name` and one of `exact`, `prefix`, `regex` or `present`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QueryConfig {
    /// The parameter name, compared after percent-decoding.
    pub name: String,
    /// A decoded value equals this.
    pub exact: Option<String>,
    /// A decoded value starts with this.
    pub prefix: Option<String>,
    /// A whole decoded value matches this regular expression.
    pub regex: Option<String>,
    /// `true`: the parameter is there (any value, even none); `false`: it is not.
    pub present: Option<bool>,
}

/// One side of a split.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SplitConfig {
    /// The upstream's name, as under the proxy's `upstreams`.
    pub upstream: String,
    /// Its share, relative to the other weights; 0 sends it nothing.
    pub weight: u32,
}

/// One of `header` or `cookie`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StickyConfig {
    /// Hash the first value of this request header.
    pub header: Option<String>,
    /// Hash the value of this cookie.
    pub cookie: Option<String>,
}

/// Request header edits, applied in the order remove, set, add.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RequestHeadersConfig {
    /// Append these values (keeping existing ones).
    #[serde(default)]
    pub add: BTreeMap<String, String>,
    /// Replace every value of these headers.
    #[serde(default)]
    pub set: BTreeMap<String, String>,
    /// Remove these headers.
    #[serde(default)]
    pub remove: Vec<String>,
}

/// Response headers to append.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ResponseHeadersConfig {
    /// Append these headers to the response.
    #[serde(default)]
    pub add: BTreeMap<String, String>,
}

/// Rule names the metrics use for "no rule matched" and for `default`.
const RESERVED_NAMES: [&str; 2] = ["none", "default"];

/// ``config field `<path>`: <message>``.
fn field_error(path: &str, message: impl std::fmt::Display) -> String {
    format!("config field `{path}`: {message}")
}

impl Router {
    /// Validate `config` and compile it.
    pub(crate) fn new(config: Config) -> Result<Router, String> {
        if config.rules.is_empty() && config.default.is_none() {
            return Err(field_error(
                "rules",
                "at least one rule (or a `default`) is required",
            ));
        }
        let max_regex_bytes = config.max_regex_bytes;
        if !(1..=MAX_MAX_REGEX_BYTES).contains(&max_regex_bytes) {
            return Err(field_error(
                "max_regex_bytes",
                format!("must be 1 to {MAX_MAX_REGEX_BYTES} (bytes), not {max_regex_bytes}"),
            ));
        }
        let mut slots = HeaderSlots::default();
        let mut rules = Vec::with_capacity(config.rules.len());
        for (index, rule) in config.rules.into_iter().enumerate() {
            let field = format!("rules[{index}]");
            let name = match rule.name {
                Some(name) => {
                    check_rule_name(&format!("{field}.name"), &name)?;
                    if let Some(earlier) = rules.iter().position(|r: &Rule| r.name == name) {
                        return Err(field_error(
                            &format!("{field}.name"),
                            format!("{name:?} is already the name of rules[{earlier}]"),
                        ));
                    }
                    name
                }
                None => field.clone(),
            };
            let matcher = compile_match(
                &format!("{field}.match"),
                rule.matcher,
                max_regex_bytes,
                &mut slots,
            )?;
            let action = compile_action(
                &field,
                ActionConfig {
                    upstream: rule.upstream,
                    split: rule.split,
                    sticky: rule.sticky,
                    request_headers: rule.request_headers,
                    response_headers: rule.response_headers,
                },
                &mut slots,
            )?;
            rules.push(Rule {
                name,
                matcher,
                action,
            });
        }
        let default = config
            .default
            .map(|action| compile_action("default", action, &mut slots))
            .transpose()?;
        Ok(Router {
            rules,
            default,
            header_names: slots.names,
        })
    }
}

/// The distinct header names rules read, each fetched at most once per request.
#[derive(Default)]
struct HeaderSlots {
    names: Vec<String>,
}

impl HeaderSlots {
    fn slot(&mut self, name: &str) -> usize {
        match self.names.iter().position(|known| known == name) {
            Some(slot) => slot,
            None => {
                self.names.push(name.to_owned());
                self.names.len() - 1
            }
        }
    }
}

fn check_rule_name(field: &str, name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err(field_error(field, "must not be empty"));
    }
    if RESERVED_NAMES.contains(&name) {
        return Err(field_error(
            field,
            format!("{name:?} is reserved: metrics use it for requests no rule matched"),
        ));
    }
    Ok(())
}

fn compile_match(
    field: &str,
    config: MatchConfig,
    max_regex_bytes: usize,
    slots: &mut HeaderSlots,
) -> Result<Match, String> {
    let path = config
        .path
        .map(|path| compile_path(&format!("{field}.path"), path, max_regex_bytes))
        .transpose()?;
    let methods = match config.methods {
        None => Vec::new(),
        Some(methods) if methods.is_empty() => {
            return Err(field_error(
                &format!("{field}.methods"),
                "must list at least one method (leave it out to match any)",
            ));
        }
        Some(methods) => {
            for (i, method) in methods.iter().enumerate() {
                check_method(&format!("{field}.methods[{i}]"), method)?;
            }
            methods
        }
    };
    let mut headers = Vec::with_capacity(config.headers.len());
    for (i, header) in config.headers.into_iter().enumerate() {
        let field = format!("{field}.headers[{i}]");
        let name = header_name(&format!("{field}.name"), &header.name)?;
        let test = compile_test(
            &field,
            header.exact,
            header.prefix,
            header.regex,
            header.present,
            max_regex_bytes,
        )?;
        headers.push(HeaderMatch {
            slot: slots.slot(&name),
            test,
        });
    }
    let mut query = Vec::with_capacity(config.query.len());
    for (i, param) in config.query.into_iter().enumerate() {
        let field = format!("{field}.query[{i}]");
        if param.name.is_empty() {
            return Err(field_error(&format!("{field}.name"), "must not be empty"));
        }
        let test = compile_test(
            &field,
            param.exact,
            param.prefix,
            param.regex,
            param.present,
            max_regex_bytes,
        )?;
        query.push(QueryMatch {
            name: param.name,
            test,
        });
    }
    Ok(Match {
        path,
        methods,
        headers,
        query,
    })
}

fn compile_path(
    field: &str,
    config: PathConfig,
    max_regex_bytes: usize,
) -> Result<PathMatch, String> {
    let path = match (config.exact, config.prefix, config.regex) {
        (Some(exact), None, None) => {
            check_path(&format!("{field}.exact"), &exact)?;
            PathMatch::Exact(exact)
        }
        (None, Some(prefix), None) => {
            check_path(&format!("{field}.prefix"), &prefix)?;
            PathMatch::Prefix(prefix)
        }
        (None, None, Some(regex)) => PathMatch::Regex(compile_regex(
            &format!("{field}.regex"),
            &regex,
            max_regex_bytes,
        )?),
        _ => {
            return Err(field_error(
                field,
                "give exactly one of `exact`, `prefix` or `regex`",
            ));
        }
    };
    Ok(path)
}

fn check_path(field: &str, path: &str) -> Result<(), String> {
    if !path.starts_with('/') {
        return Err(field_error(field, format!("{path:?} must start with `/`")));
    }
    if path.contains('?') {
        return Err(field_error(
            field,
            format!("{path:?}: paths are matched without the query; use `query` for parameters"),
        ));
    }
    Ok(())
}

fn compile_test(
    field: &str,
    exact: Option<String>,
    prefix: Option<String>,
    regex: Option<String>,
    present: Option<bool>,
    max_regex_bytes: usize,
) -> Result<ValueTest, String> {
    match (exact, prefix, regex, present) {
        (Some(exact), None, None, None) => Ok(ValueTest::Exact(exact)),
        (None, Some(prefix), None, None) => Ok(ValueTest::Prefix(prefix)),
        (None, None, Some(regex), None) => Ok(ValueTest::Regex(compile_regex(
            &format!("{field}.regex"),
            &regex,
            max_regex_bytes,
        )?)),
        (None, None, None, Some(present)) => Ok(ValueTest::Present(present)),
        _ => Err(field_error(
            field,
            "give exactly one of `exact`, `prefix`, `regex` or `present`",
        )),
    }
}

/// The most memory a compiled regex may take: far above any routing pattern, and it turns a
/// pathological one (`(a{100}){100}`) into a config error rather than a slow filter.
const REGEX_SIZE_LIMIT: usize = 1 << 20;
/// The most memory each regex's lazy DFA may cache per instance; past it the cache is cleared
/// and matching goes on, slower, so memory stays bounded whatever the requests look like.
const REGEX_DFA_CACHE_LIMIT: usize = 256 << 10;

/// Compiled to match the whole value, as Envoy's `safe_regex` and Istio do: `beta` does not
/// match `not-beta`; write `.*beta.*` to search.
fn compile_regex(field: &str, pattern: &str, max_bytes: usize) -> Result<Pattern, String> {
    // Parsed alone first: the wrapping below must not make `a)|(b` valid, and the error should
    // describe the pattern as written.
    if let Err(error) = regex_syntax::Parser::new().parse(pattern) {
        return Err(field_error(
            field,
            format!(
                "invalid regex {pattern:?}: {}",
                describe_syntax_error(&error)
            ),
        ));
    }
    RegexBuilder::new(&format!("^(?:{pattern})$"))
        .size_limit(REGEX_SIZE_LIMIT)
        .dfa_size_limit(REGEX_DFA_CACHE_LIMIT)
        .build()
        .map(|regex| Pattern { regex, max_bytes })
        .map_err(|error| field_error(field, format!("invalid regex {pattern:?}: {error}")))
}

/// `unclosed group at column 6`: one line, where the error's own `Display` draws the pattern
/// with a caret under it over several.
fn describe_syntax_error(error: &regex_syntax::Error) -> String {
    let (kind, span) = match error {
        regex_syntax::Error::Parse(error) => (error.kind().to_string(), error.span()),
        regex_syntax::Error::Translate(error) => (error.kind().to_string(), error.span()),
        other => {
            return other
                .to_string()
                .split_whitespace()
                .collect::<Vec<_>>()
                .join(" ");
        }
    };
    format!("{kind} at column {}", span.start.column)
}

fn check_method(field: &str, method: &str) -> Result<(), String> {
    if !text::is_token(method) {
        return Err(field_error(field, format!("{method:?} is not a method")));
    }
    if method.bytes().any(|b| b.is_ascii_lowercase()) {
        return Err(field_error(
            field,
            format!(
                "{method:?}: methods are case-sensitive, write {:?}",
                method.to_ascii_uppercase()
            ),
        ));
    }
    Ok(())
}

/// A header name, lower-cased as the proxy stores them.
fn header_name(field: &str, name: &str) -> Result<String, String> {
    if !text::is_header_name(name) {
        return Err(field_error(field, format!("{name:?} is not a header name")));
    }
    Ok(name.to_ascii_lowercase())
}

/// A header name the filter will edit: valid, and not one the proxy manages
/// ([`text::MANAGED_HEADERS`]: edits of them would fail, or break framing, on every request).
fn editable_header(field: &str, name: &str) -> Result<String, String> {
    let name = header_name(field, name)?;
    if name == "content-length" {
        return Err(field_error(field, "the proxy sets `content-length` itself"));
    }
    if text::is_managed_header(&name) {
        return Err(field_error(
            field,
            format!("{name:?} is a header the proxy manages; filters cannot edit it"),
        ));
    }
    Ok(name)
}

fn header_value(field: &str, value: &str) -> Result<(), String> {
    // What the proxy accepts (`http::HeaderValue`): visible ASCII, space, tab and non-ASCII.
    if !text::is_header_value(value.as_bytes()) {
        return Err(field_error(
            field,
            format!("{value:?} holds control characters a header value cannot"),
        ));
    }
    Ok(())
}

fn compile_action(
    field: &str,
    config: ActionConfig,
    slots: &mut HeaderSlots,
) -> Result<Action, String> {
    let target = match (config.upstream, config.split) {
        (Some(_), Some(_)) => {
            return Err(field_error(
                field,
                "give either `upstream` or `split`, not both",
            ));
        }
        (Some(upstream), None) => {
            if upstream.is_empty() {
                return Err(field_error(
                    &format!("{field}.upstream"),
                    "must not be empty",
                ));
            }
            if config.sticky.is_some() {
                return Err(field_error(
                    &format!("{field}.sticky"),
                    "only applies to a `split`",
                ));
            }
            Target::Upstream(upstream)
        }
        (None, Some(split)) => Target::Split(compile_split(field, split, config.sticky, slots)?),
        (None, None) => {
            if config.sticky.is_some() {
                return Err(field_error(
                    &format!("{field}.sticky"),
                    "only applies to a `split`",
                ));
            }
            Target::Keep
        }
    };

    let mut request_headers = HeaderEdits::default();
    let edits = config.request_headers;
    for (i, name) in edits.remove.iter().enumerate() {
        let name = editable_header(&format!("{field}.request_headers.remove[{i}]"), name)?;
        request_headers.remove.push(name);
    }
    for (list, map, what) in [
        (&mut request_headers.set, edits.set, "set"),
        (&mut request_headers.add, edits.add, "add"),
    ] {
        for (name, value) in map {
            let field = format!("{field}.request_headers.{what}.{name}");
            let name = editable_header(&field, &name)?;
            header_value(&field, &value)?;
            list.push((name, value));
        }
    }

    let mut response_headers = Vec::new();
    for (name, value) in config.response_headers.add {
        let field = format!("{field}.response_headers.add.{name}");
        let name = editable_header(&field, &name)?;
        header_value(&field, &value)?;
        response_headers.push((name, value));
    }

    Ok(Action {
        target,
        request_headers,
        response_headers,
    })
}

fn compile_split(
    field: &str,
    config: Vec<SplitConfig>,
    sticky: Option<StickyConfig>,
    slots: &mut HeaderSlots,
) -> Result<Split, String> {
    if config.is_empty() {
        return Err(field_error(
            &format!("{field}.split"),
            "must list at least one upstream",
        ));
    }
    let mut buckets = Vec::with_capacity(config.len());
    let mut total: u64 = 0;
    for (i, side) in config.into_iter().enumerate() {
        if side.upstream.is_empty() {
            return Err(field_error(
                &format!("{field}.split[{i}].upstream"),
                "must not be empty",
            ));
        }
        total += u64::from(side.weight);
        buckets.push((side.upstream, total));
    }
    if total == 0 {
        return Err(field_error(
            &format!("{field}.split"),
            "the weights add up to 0: give at least one upstream a weight above 0",
        ));
    }
    let sticky = match sticky {
        None => None,
        Some(StickyConfig {
            header: Some(header),
            cookie: None,
        }) => {
            let name = header_name(&format!("{field}.sticky.header"), &header)?;
            Some(Sticky::Header(slots.slot(&name)))
        }
        Some(StickyConfig {
            header: None,
            cookie: Some(cookie),
        }) => {
            if !text::is_cookie_name(&cookie) {
                return Err(field_error(
                    &format!("{field}.sticky.cookie"),
                    format!("{cookie:?} is not a cookie name"),
                ));
            }
            Some(Sticky::Cookie {
                slot: slots.slot("cookie"),
                name: cookie,
            })
        }
        Some(_) => {
            return Err(field_error(
                &format!("{field}.sticky"),
                "give exactly one of `header` or `cookie`",
            ));
        }
    };
    let mut weighted = buckets
        .iter()
        .zip(std::iter::once(0).chain(buckets.iter().map(|(_, end)| *end)))
        .filter(|((_, end), start)| end > start)
        .map(|((upstream, _), _)| upstream);
    let only = match (weighted.next(), weighted.next()) {
        (Some(upstream), None) => Some(upstream.clone()),
        _ => None,
    };
    Ok(Split {
        buckets,
        total,
        sticky,
        only,
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "tests")]
mod tests {
    use super::*;

    /// Parse `json` as the SDK would (serde only) and compile it.
    fn load(json: serde_json::Value) -> Result<Router, String> {
        let config: Config = serde_json::from_value(json).map_err(|e| e.to_string())?;
        Router::new(config)
    }

    fn error(json: serde_json::Value) -> String {
        match load(json) {
            Ok(_) => panic!("config accepted"),
            Err(error) => error,
        }
    }

    #[test]
    fn max_regex_bytes_is_bounded() {
        let config = |max: u64| serde_json::json!({ "rules": [{ "upstream": "a" }], "max_regex_bytes": max });
        assert!(load(config(1)).is_ok());
        assert!(load(config(65536)).is_ok());
        for max in [0, 65537] {
            assert_eq!(
                error(config(max)),
                format!("config field `max_regex_bytes`: must be 1 to 65536 (bytes), not {max}")
            );
        }
        assert_eq!(Config::default().max_regex_bytes, 4096);
    }

    #[test]
    fn a_full_config_compiles() {
        let router = load(serde_json::json!({
            "rules": [
                {
                    "name": "beta-users",
                    "match": {
                        "path": { "prefix": "/api/" },
                        "methods": ["GET", "POST"],
                        "headers": [
                            { "name": "X-Beta", "exact": "true" },
                            { "name": "x-tenant", "regex": "acme-[0-9]+" },
                            { "name": "x-debug", "present": false }
                        ],
                        "query": [{ "name": "version", "exact": "2" }]
                    },
                    "upstream": "app-beta",
                    "request_headers": {
                        "add": { "x-routed-by": "header-router" },
                        "set": { "x-env": "beta" },
                        "remove": ["x-internal"]
                    },
                    "response_headers": { "add": { "x-upstream-choice": "beta" } }
                },
                {
                    "match": { "headers": [{ "name": "x-beta", "present": true }] },
                    "split": [
                        { "upstream": "app", "weight": 90 },
                        { "upstream": "app-canary", "weight": 10 }
                    ],
                    "sticky": { "cookie": "session" }
                }
            ],
            "default": { "upstream": "app" }
        }))
        .unwrap();
        assert_eq!(router.rules.len(), 2);
        assert_eq!(router.rules[0].name, "beta-users");
        assert_eq!(router.rules[1].name, "rules[1]");
        // x-beta is read once for both rules (names are lower-cased), then x-tenant, x-debug,
        // and the cookie header for the sticky split.
        assert_eq!(
            router.header_names,
            ["x-beta", "x-tenant", "x-debug", "cookie"]
        );
        let Target::Split(split) = &router.rules[1].action.target else {
            panic!("rules[1] is a split");
        };
        assert_eq!(split.total, 100);
        assert_eq!(
            split.buckets,
            [("app".to_owned(), 90), ("app-canary".to_owned(), 100)]
        );
        assert!(router.default.is_some());
    }

    #[test]
    fn empty_config_is_rejected() {
        assert_eq!(
            error(serde_json::json!({})),
            "config field `rules`: at least one rule (or a `default`) is required"
        );
        load(serde_json::json!({ "default": { "upstream": "app" } })).unwrap();
    }

    #[test]
    fn regex_errors_name_the_field() {
        let message = error(serde_json::json!({ "rules": [
            { "upstream": "a" },
            { "upstream": "a" },
            { "match": { "path": { "regex": "/api/(v1" } }, "upstream": "a" }
        ]}));
        assert!(
            message.starts_with("config field `rules[2].match.path.regex`: invalid regex "),
            "{message}"
        );
        let message = error(serde_json::json!({ "rules": [
            { "match": { "headers": [{ "name": "x", "regex": "[" }] }, "upstream": "a" }
        ]}));
        assert!(
            message.starts_with("config field `rules[0].match.headers[0].regex`: invalid regex "),
            "{message}"
        );
        let message = error(serde_json::json!({ "rules": [
            { "match": { "query": [{ "name": "q", "regex": "a{2,1}" }] }, "upstream": "a" }
        ]}));
        assert!(
            message.starts_with("config field `rules[0].match.query[0].regex`: invalid regex "),
            "{message}"
        );
    }

    #[test]
    fn regex_errors_are_one_line_and_the_wrapping_hides_nothing() {
        let regex_error = |pattern: &str| {
            error(serde_json::json!({ "rules": [
                { "match": { "path": { "regex": pattern } }, "upstream": "a" }
            ]}))
        };
        assert_eq!(
            regex_error("/api/(v1"),
            "config field `rules[0].match.path.regex`: invalid regex \"/api/(v1\": unclosed group at column 6"
        );
        // Valid only once wrapped in `^(?:...)$`: still rejected.
        assert_eq!(
            regex_error("a)|(b"),
            "config field `rules[0].match.path.regex`: invalid regex \"a)|(b\": unopened group at column 2"
        );
        let message = regex_error("(\\w{100}){100}");
        assert!(
            message.starts_with(
                "config field `rules[0].match.path.regex`: invalid regex \"(\\\\w{100}){100}\": "
            ) && message.contains("size limit"),
            "{message}"
        );
        assert!(!message.contains('\n'), "{message}");
        // Unicode classes and case folding are available.
        load(serde_json::json!({ "rules": [
            { "match": { "path": { "regex": "(?i)/caf\\w+/\\d+" } }, "upstream": "a" }
        ]}))
        .unwrap();
    }

    #[test]
    fn split_errors_name_the_field() {
        assert_eq!(
            error(serde_json::json!({ "rules": [{ "split": [] }] })),
            "config field `rules[0].split`: must list at least one upstream"
        );
        assert_eq!(
            error(serde_json::json!({ "rules": [{ "split": [
                { "upstream": "a", "weight": 0 }, { "upstream": "b", "weight": 0 }
            ] }] })),
            "config field `rules[0].split`: the weights add up to 0: give at least one upstream a weight above 0"
        );
        assert_eq!(
            error(serde_json::json!({ "rules": [{ "upstream": "a", "split": [
                { "upstream": "b", "weight": 1 }
            ] }] })),
            "config field `rules[0]`: give either `upstream` or `split`, not both"
        );
        assert_eq!(
            error(serde_json::json!({ "rules": [{ "split": [
                { "upstream": "", "weight": 1 }
            ] }] })),
            "config field `rules[0].split[0].upstream`: must not be empty"
        );
        assert_eq!(
            error(
                serde_json::json!({ "rules": [{ "upstream": "a", "sticky": { "header": "x-user" } }] })
            ),
            "config field `rules[0].sticky`: only applies to a `split`"
        );
        assert_eq!(
            error(serde_json::json!({ "default": { "sticky": { "header": "x-user" } } })),
            "config field `default.sticky`: only applies to a `split`"
        );
        assert_eq!(
            error(serde_json::json!({ "rules": [{
                "split": [{ "upstream": "b", "weight": 1 }],
                "sticky": { "header": "x-user", "cookie": "s" }
            }] })),
            "config field `rules[0].sticky`: give exactly one of `header` or `cookie`"
        );
        assert_eq!(
            error(serde_json::json!({ "rules": [{
                "split": [{ "upstream": "b", "weight": 1 }],
                "sticky": { "cookie": "a b" }
            }] })),
            "config field `rules[0].sticky.cookie`: \"a b\" is not a cookie name"
        );
        // One zero weight is fine: a drained side.
        load(serde_json::json!({ "rules": [{ "split": [
            { "upstream": "a", "weight": 0 }, { "upstream": "b", "weight": 1 }
        ] }] }))
        .unwrap();
    }

    #[test]
    fn match_errors_name_the_field() {
        let cases = [
            (
                serde_json::json!({ "path": { "exact": "/a", "prefix": "/b" } }),
                "config field `rules[0].match.path`: give exactly one of `exact`, `prefix` or `regex`",
            ),
            (
                serde_json::json!({ "path": {} }),
                "config field `rules[0].match.path`: give exactly one of `exact`, `prefix` or `regex`",
            ),
            (
                serde_json::json!({ "path": { "prefix": "api" } }),
                "config field `rules[0].match.path.prefix`: \"api\" must start with `/`",
            ),
            (
                serde_json::json!({ "path": { "exact": "/a?b=1" } }),
                "config field `rules[0].match.path.exact`: \"/a?b=1\": paths are matched without the query; use `query` for parameters",
            ),
            (
                serde_json::json!({ "methods": [] }),
                "config field `rules[0].match.methods`: must list at least one method (leave it out to match any)",
            ),
            (
                serde_json::json!({ "methods": ["GET", "post"] }),
                "config field `rules[0].match.methods[1]`: \"post\": methods are case-sensitive, write \"POST\"",
            ),
            (
                serde_json::json!({ "methods": ["GE T"] }),
                "config field `rules[0].match.methods[0]`: \"GE T\" is not a method",
            ),
            (
                serde_json::json!({ "headers": [{ "name": "x", "exact": "1", "present": true }] }),
                "config field `rules[0].match.headers[0]`: give exactly one of `exact`, `prefix`, `regex` or `present`",
            ),
            (
                serde_json::json!({ "headers": [{ "name": "x" }] }),
                "config field `rules[0].match.headers[0]`: give exactly one of `exact`, `prefix`, `regex` or `present`",
            ),
            (
                serde_json::json!({ "headers": [{ "name": ":authority", "exact": "a" }] }),
                "config field `rules[0].match.headers[0].name`: \":authority\" is not a header name",
            ),
            (
                serde_json::json!({ "query": [{ "name": "", "present": true }] }),
                "config field `rules[0].match.query[0].name`: must not be empty",
            ),
        ];
        for (matcher, expected) in cases {
            let config = serde_json::json!({ "rules": [{ "match": matcher, "upstream": "a" }] });
            assert_eq!(error(config), expected);
        }
    }

    #[test]
    fn unknown_fields_are_serde_errors() {
        let message = error(serde_json::json!({ "rules": [
            { "match": { "pth": { "prefix": "/" } }, "upstream": "a" }
        ]}));
        assert!(message.starts_with("unknown field `pth`"), "{message}");
        let message = error(serde_json::json!({ "rules": [{ "upstrem": "a" }] }));
        assert!(message.starts_with("unknown field `upstrem`"), "{message}");
    }

    #[test]
    fn names_and_edits_are_checked() {
        assert_eq!(
            error(
                serde_json::json!({ "rules": [{ "name": "a", "upstream": "x" }, { "name": "a", "upstream": "y" }] })
            ),
            "config field `rules[1].name`: \"a\" is already the name of rules[0]"
        );
        assert_eq!(
            error(serde_json::json!({ "rules": [{ "name": "none", "upstream": "x" }] })),
            "config field `rules[0].name`: \"none\" is reserved: metrics use it for requests no rule matched"
        );
        assert_eq!(
            error(serde_json::json!({ "rules": [{ "upstream": "" }] })),
            "config field `rules[0].upstream`: must not be empty"
        );
        assert_eq!(
            error(
                serde_json::json!({ "rules": [{ "request_headers": { "set": { "x-a": "1\n2" } } }] })
            ),
            "config field `rules[0].request_headers.set.x-a`: \"1\\n2\" holds control characters a header value cannot"
        );
        assert_eq!(
            error(
                serde_json::json!({ "rules": [{ "request_headers": { "remove": ["connection"] } }] })
            ),
            "config field `rules[0].request_headers.remove[0]`: \"connection\" is a header the proxy manages; filters cannot edit it"
        );
        for (edits, field, name) in [
            (
                serde_json::json!({ "set": { "Host": "evil" } }),
                "set.Host",
                "host",
            ),
            (
                serde_json::json!({ "add": { "trailer": "x" } }),
                "add.trailer",
                "trailer",
            ),
            (
                serde_json::json!({ "remove": ["Proxy-Authorization"] }),
                "remove[0]",
                "proxy-authorization",
            ),
        ] {
            assert_eq!(
                error(serde_json::json!({ "rules": [{ "request_headers": edits }] })),
                format!(
                    "config field `rules[0].request_headers.{field}`: {name:?} is a header the proxy manages; filters cannot edit it"
                )
            );
        }
        assert_eq!(
            error(
                serde_json::json!({ "rules": [{ "request_headers": { "set": { "content-length": "1" } } }] })
            ),
            "config field `rules[0].request_headers.set.content-length`: the proxy sets `content-length` itself"
        );
        assert_eq!(
            error(
                serde_json::json!({ "rules": [{ "request_headers": { "add": { "bad name": "1" } } }] })
            ),
            "config field `rules[0].request_headers.add.bad name`: \"bad name\" is not a header name"
        );
        assert_eq!(
            error(
                serde_json::json!({ "default": { "response_headers": { "add": { "Content-Length": "1" } } } })
            ),
            "config field `default.response_headers.add.Content-Length`: the proxy sets `content-length` itself"
        );
    }

    #[test]
    fn edit_names_are_lower_cased() {
        let router = load(serde_json::json!({ "default": {
            "request_headers": {
                "add": { "X-B": "2", "x-a": "1" },
                "set": { "X-Env": "beta" },
                "remove": ["X-Internal"]
            },
            "response_headers": { "add": { "X-Choice": "beta" } }
        } }))
        .unwrap();
        let action = router.default.unwrap();
        assert_eq!(action.request_headers.remove, ["x-internal"]);
        assert_eq!(
            action.request_headers.set,
            [("x-env".to_owned(), "beta".to_owned())]
        );
        assert_eq!(
            action.request_headers.add,
            [
                ("x-b".to_owned(), "2".to_owned()),
                ("x-a".to_owned(), "1".to_owned())
            ]
        );
        assert_eq!(
            action.response_headers,
            [("x-choice".to_owned(), "beta".to_owned())]
        );
        assert!(matches!(action.target, Target::Keep));
    }
}
