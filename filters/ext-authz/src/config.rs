//! The configuration as written ([`Config`]) and as used ([`Settings`]): validated once, when the
//! proxy configures an instance, so that a bad config stops the proxy at startup (or keeps the
//! previous version on reload) rather than failing request by request.
//!
//! ```yaml
//! config:
//!   upstream: authz
//!   path_prefix: /check
//!   timeout: 200ms
//!   allowed_headers: [authorization, cookie, x-request-id]
//!   headers_to_add: { x-ext-authz: "1" }
//!   upstream_headers_from_auth: [x-user-id, x-auth-*]
//!   client_headers_from_auth: [www-authenticate, x-auth-*]
//!   failure_mode_allow: false
//!   status_on_error: 403
//!   max_response_bytes: 8192
//! ```

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Deserialize;
use weft_sdk::text;

/// The filter's configuration, as the proxy config gives it. Only `upstream` is required.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// The proxy upstream (or discovered service) the check is sent to.
    pub upstream: String,
    /// Put before the request's path and query in the check's path. Default `""`.
    #[serde(default)]
    pub path_prefix: String,
    /// How long to wait for the whole answer, like `200ms` or `1.5s`. Default `200ms`, at most
    /// `60s`.
    #[serde(default)]
    pub timeout: Option<String>,
    /// Request headers copied to the check (case-insensitive names). Default `[authorization]`.
    #[serde(default)]
    pub allowed_headers: Option<Vec<String>>,
    /// Fixed headers added to the check; they replace request headers of the same name.
    #[serde(default)]
    pub headers_to_add: BTreeMap<String, String>,
    /// Headers of an allowing (2xx) answer set on the request sent upstream: exact names or
    /// prefixes ending in `*`. Default none.
    #[serde(default)]
    pub upstream_headers_from_auth: Vec<String>,
    /// Headers of a denying answer sent to the client: exact names or prefixes ending in `*`.
    /// Default: all of the answer's headers but the ones the proxy manages.
    #[serde(default)]
    pub client_headers_from_auth: Option<Vec<String>>,
    /// Let requests go on when the check fails. Default false: they get `status_on_error`.
    #[serde(default)]
    pub failure_mode_allow: bool,
    /// The status sent when the check fails and `failure_mode_allow` is false. Default 403.
    #[serde(default)]
    pub status_on_error: Option<u16>,
    /// The largest answer body accepted. Default 8192, at most 4 MiB.
    #[serde(default)]
    pub max_response_bytes: Option<u32>,
}

/// The default of `timeout`.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_millis(200);
/// The largest `timeout`: the host's limit for a call.
pub const MAX_TIMEOUT: Duration = Duration::from_secs(60);
/// The default of `status_on_error`, as Envoy's.
pub const DEFAULT_STATUS_ON_ERROR: u16 = 403;
/// The default of `max_response_bytes`.
pub const DEFAULT_MAX_RESPONSE_BYTES: u32 = 8192;
/// The largest `max_response_bytes`: the host's limit for a call.
pub const MAX_RESPONSE_BYTES: u32 = 4 * 1024 * 1024;
/// The default of `allowed_headers`.
pub const DEFAULT_ALLOWED_HEADERS: [&str; 1] = ["authorization"];
/// Headers always sent to the client with a denial when `client_headers_from_auth` is given, as
/// Envoy does: without them a 401 has no challenge and a redirect goes nowhere.
pub const ALWAYS_CLIENT_HEADERS: [&str; 2] = ["www-authenticate", "location"];

/// A header name pattern of `upstream_headers_from_auth` and `client_headers_from_auth`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Pattern {
    /// This name, lower-case.
    Exact(String),
    /// Names starting with this, lower-case (written `x-auth-*`).
    Prefix(String),
}

impl Pattern {
    /// Whether the lower-case `name` matches.
    pub fn matches(&self, name: &str) -> bool {
        match self {
            Pattern::Exact(exact) => exact == name,
            Pattern::Prefix(prefix) => name.starts_with(prefix.as_str()),
        }
    }

    fn text(&self) -> String {
        match self {
            Pattern::Exact(exact) => exact.clone(),
            Pattern::Prefix(prefix) => format!("{prefix}*"),
        }
    }
}

/// Whether one of `patterns` matches the lower-case `name`.
pub fn any_matches(patterns: &[Pattern], name: &str) -> bool {
    patterns.iter().any(|pattern| pattern.matches(name))
}

/// The validated configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    /// Where the check goes.
    pub upstream: String,
    /// Put before the request's path and query.
    pub path_prefix: String,
    /// The call's timeout: whole milliseconds, in `1ms..=60s`.
    pub timeout: Duration,
    /// Lower-case request header names copied to the check, without those `headers_to_add`
    /// replaces.
    pub allowed_headers: Vec<String>,
    /// Fixed headers of the check: lower-case names, in name order.
    pub headers_to_add: Vec<(String, Vec<u8>)>,
    /// Answer headers set on the request when allowed.
    pub upstream_headers: Vec<Pattern>,
    /// Answer headers sent with a denial; `None`: all but the managed ones.
    pub client_headers: Option<Vec<Pattern>>,
    /// Whether a failed check lets the request go on.
    pub failure_mode_allow: bool,
    /// The status of the local response when a check fails.
    pub status_on_error: u16,
    /// The largest answer body accepted.
    pub max_response_bytes: u32,
}

impl Settings {
    /// Validate `config`. Errors name the field, like `timeout: invalid duration "0s": must be
    /// more than 0` or `allowed_headers[2]: "host" is managed by the proxy ...`.
    pub fn from_config(config: Config) -> Result<Settings, String> {
        if config.upstream.trim().is_empty() {
            return Err("upstream: must not be empty".to_owned());
        }
        check_path_prefix(&config.path_prefix).map_err(|e| format!("path_prefix: {e}"))?;
        let timeout = match config.timeout {
            None => DEFAULT_TIMEOUT,
            Some(text) => parse_timeout(&text).map_err(|e| format!("timeout: {e}"))?,
        };

        let mut headers_to_add: Vec<(String, Vec<u8>)> = Vec::new();
        for (name, value) in config.headers_to_add {
            let field = format!("headers_to_add.{name}");
            let lower = header_name(&name).map_err(|e| format!("{field}: {e}"))?;
            if headers_to_add.iter().any(|(n, _)| *n == lower) {
                return Err(format!(
                    "{field}: given twice (header names are case-insensitive)"
                ));
            }
            if !text::is_header_value(value.as_bytes()) {
                return Err(format!(
                    "{field}: the value holds a control character (CR, LF, NUL, ...)"
                ));
            }
            headers_to_add.push((lower, value.into_bytes()));
        }
        headers_to_add.sort();

        let allowed = match config.allowed_headers {
            None => DEFAULT_ALLOWED_HEADERS.map(str::to_owned).to_vec(),
            Some(list) => list,
        };
        let mut allowed_headers: Vec<String> = Vec::new();
        for (i, name) in allowed.iter().enumerate() {
            let field = format!("allowed_headers[{i}]");
            if name.contains('*') {
                return Err(format!(
                    "{field}: {name:?}: list exact header names here (no `*` prefixes)"
                ));
            }
            let lower = header_name(name).map_err(|e| format!("{field}: {e}"))?;
            if allowed_headers.contains(&lower) {
                return Err(format!(
                    "{field}: {name:?} is listed twice (header names are case-insensitive)"
                ));
            }
            allowed_headers.push(lower);
        }
        // A fixed value replaces the request's, as Envoy's `headers_to_add` does: no need to
        // read the request's.
        allowed_headers.retain(|name| !headers_to_add.iter().any(|(n, _)| n == name));

        let upstream_headers = patterns(
            "upstream_headers_from_auth",
            &config.upstream_headers_from_auth,
        )?;
        let client_headers = match config.client_headers_from_auth {
            None => None,
            Some(list) => {
                let mut list = patterns("client_headers_from_auth", &list)?;
                for always in ALWAYS_CLIENT_HEADERS {
                    if !any_matches(&list, always) {
                        list.push(Pattern::Exact(always.to_owned()));
                    }
                }
                Some(list)
            }
        };

        let status_on_error = config.status_on_error.unwrap_or(DEFAULT_STATUS_ON_ERROR);
        if !(200..=599).contains(&status_on_error) {
            return Err(format!(
                "status_on_error: must be in 200..=599, got {status_on_error}"
            ));
        }
        let max_response_bytes = config
            .max_response_bytes
            .unwrap_or(DEFAULT_MAX_RESPONSE_BYTES);
        if !(1..=MAX_RESPONSE_BYTES).contains(&max_response_bytes) {
            return Err(format!(
                "max_response_bytes: must be in 1..={MAX_RESPONSE_BYTES} (4 MiB), got {max_response_bytes}"
            ));
        }

        Ok(Settings {
            upstream: config.upstream,
            path_prefix: config.path_prefix,
            timeout,
            allowed_headers,
            headers_to_add,
            upstream_headers,
            client_headers,
            failure_mode_allow: config.failure_mode_allow,
            status_on_error,
            max_response_bytes,
        })
    }
}

/// A header name the filter may set or send: valid, not managed by the proxy; lower-cased.
fn header_name(name: &str) -> Result<String, String> {
    if !text::is_header_name(name) {
        return Err(format!("{name:?} is not a valid header name"));
    }
    if text::is_managed_header(name) {
        return Err(format!(
            "{name:?} is managed by the proxy and cannot be copied or set"
        ));
    }
    Ok(name.to_ascii_lowercase())
}

/// The patterns of `field`: exact names, or prefixes ending in `*`.
fn patterns(field: &str, list: &[String]) -> Result<Vec<Pattern>, String> {
    let mut out: Vec<Pattern> = Vec::new();
    for (i, text) in list.iter().enumerate() {
        let field = format!("{field}[{i}]");
        let pattern = match text.strip_suffix('*') {
            Some(prefix) => {
                if prefix.is_empty() {
                    return Err(format!(
                        "{field}: `*` alone matches every header; give a prefix, like `x-auth-*`"
                    ));
                }
                if prefix.contains('*') || !text::is_header_name(prefix) {
                    return Err(format!(
                        "{field}: {text:?} is neither a header name nor a prefix ending in `*`"
                    ));
                }
                Pattern::Prefix(prefix.to_ascii_lowercase())
            }
            None => {
                if text.contains('*') {
                    return Err(format!(
                        "{field}: {text:?}: `*` may only end a prefix, like `x-auth-*`"
                    ));
                }
                Pattern::Exact(header_name(text).map_err(|e| format!("{field}: {e}"))?)
            }
        };
        if out.contains(&pattern) {
            return Err(format!(
                "{field}: {:?} is listed twice (header names are case-insensitive)",
                pattern.text()
            ));
        }
        out.push(pattern);
    }
    Ok(out)
}

/// A path prefix: empty, or starting with `/`, without a trailing `/` (the request's path,
/// which starts with one, follows it), and only characters a path may hold unescaped.
fn check_path_prefix(prefix: &str) -> Result<(), String> {
    if prefix.is_empty() {
        return Ok(());
    }
    if !prefix.starts_with('/') {
        return Err(format!("{prefix:?} must start with `/`"));
    }
    if prefix.ends_with('/') {
        return Err(format!(
            "{prefix:?} must not end with `/`: the request's path, which starts with `/`, follows it"
        ));
    }
    if let Some(bad) = prefix
        .chars()
        .find(|&c| !c.is_ascii_graphic() || c == '?' || c == '#')
    {
        return Err(format!(
            "{prefix:?} holds {bad:?}: only printable ASCII without `?` and `#` (percent-encode others)"
        ));
    }
    Ok(())
}

/// Parse `timeout` ([`text::parse_duration`], the syntax of every weft config): more than zero,
/// whole milliseconds (the unit of the host's call timeout), at most [`MAX_TIMEOUT`].
fn parse_timeout(text: &str) -> Result<Duration, String> {
    let duration = text::parse_duration(text)?;
    if duration.is_zero() {
        return Err(format!("invalid duration {text:?}: must be more than 0"));
    }
    if duration.subsec_nanos() % 1_000_000 != 0 {
        return Err(format!(
            "invalid duration {text:?}: must be whole milliseconds"
        ));
    }
    if duration > MAX_TIMEOUT {
        return Err(format!(
            "invalid duration {text:?}: must be at most {}",
            text::format_duration(MAX_TIMEOUT)
        ));
    }
    Ok(duration)
}
