//! The configuration as written ([`Config`]) and as used ([`Settings`]): validated once, when the
//! proxy configures an instance, so that the per-request path only compares numbers.

use std::time::Duration;

use serde::Deserialize;

use crate::decide::{Chance, DelayFault, MAX_HOST_DELAY};

/// The filter's configuration, as the proxy config gives it:
///
/// ```yaml
/// config:
///   abort: { status: 503, percentage: 10 }
///   delay: { duration: 100ms, percentage: 50 }
///   only:
///     routes: [checkout]
///     upstreams: [payments]
///     header: { name: x-chaos, value: "on" }
///   header_faults: false
///   max_delay: 10s
/// ```
///
/// At least one of `abort`, `delay` and `header_faults: true` is required.
#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Answer some requests with a local error instead of forwarding them.
    pub abort: Option<AbortConfig>,
    /// Hold some requests for a while before they go on.
    pub delay: Option<DelayConfig>,
    /// Limits on which requests can be faulted; all that are given must hold.
    pub only: Option<OnlyConfig>,
    /// Let requests ask for faults with `x-weft-fault-*` headers. Off by default.
    pub header_faults: bool,
    /// The longest delay a header may ask for (longer ones are cut to it). Default `10s`.
    pub max_delay: Option<String>,
}

/// `abort: { status, percentage }`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AbortConfig {
    /// The status of the local response, `200..=599`.
    pub status: u16,
    /// The share of requests to abort, `0..=100`, decimals allowed.
    pub percentage: f64,
}

/// `delay: { duration, percentage }`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DelayConfig {
    /// How long to hold a request, like `100ms` or `2s`: whole milliseconds, at most `10m`.
    pub duration: String,
    /// The share of requests to delay, `0..=100`, decimals allowed.
    pub percentage: f64,
}

/// `only: { routes, upstreams, header }`.
#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct OnlyConfig {
    /// Route names (`routes[].name` in the proxy config).
    pub routes: Option<Vec<String>>,
    /// Upstream names, as `request.upstream()` reports them: the route's, or the one an earlier
    /// filter chose.
    pub upstreams: Option<Vec<String>>,
    /// A request header that must be present, or have this exact value.
    pub header: Option<HeaderConfig>,
}

/// `header: { name, value }`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HeaderConfig {
    /// The header name (case-insensitive).
    pub name: String,
    /// The exact value one of the header's values must have; without it, presence is enough.
    pub value: Option<String>,
}

/// The default of `max_delay`.
pub const DEFAULT_MAX_DELAY: Duration = Duration::from_secs(10);

/// The validated configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct Settings {
    /// The configured abort, if any.
    pub abort: Option<AbortFault>,
    /// The configured delay, if any.
    pub delay: Option<DelayFault>,
    /// Which requests can be faulted.
    pub only: Only,
    /// Whether `x-weft-fault-*` headers are read.
    pub header_faults: bool,
    /// The cap for header-requested delays.
    pub max_delay: Duration,
}

/// An abort: a status and how often.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AbortFault {
    /// The local response's status, `200..=599`.
    pub status: u16,
    /// How often it fires.
    pub chance: Chance,
}

/// The `only` limits, each `None` when not given.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Only {
    /// Allowed route names.
    pub routes: Option<Vec<String>>,
    /// Allowed upstream names.
    pub upstreams: Option<Vec<String>>,
    /// The required header: a lower-case name and an optional exact value.
    pub header: Option<(String, Option<Vec<u8>>)>,
}

/// What the `only` limits look at, read lazily: a limit not configured costs no host call.
pub trait RequestFacts {
    /// Every value of request header `name` (lower-case).
    fn header_values(&self, name: &str) -> Vec<Vec<u8>>;
    /// The matched route's name.
    fn route(&self) -> Option<String>;
    /// The upstream the request goes to (the route's, or one an earlier filter chose).
    fn upstream(&self) -> Option<String>;
}

impl Only {
    /// Whether no limit is given: every request can be faulted.
    pub fn is_empty(&self) -> bool {
        self.routes.is_none() && self.upstreams.is_none() && self.header.is_none()
    }

    /// Whether the request passes every limit given. The header is checked first: it is the
    /// usual way to aim faults at test traffic, and a miss saves the other look-ups.
    pub fn admits(&self, request: &impl RequestFacts) -> bool {
        if let Some((name, wanted)) = &self.header {
            let values = request.header_values(name);
            let found = match wanted {
                None => !values.is_empty(),
                Some(wanted) => values.iter().any(|value| value == wanted),
            };
            if !found {
                return false;
            }
        }
        if let Some(routes) = &self.routes
            && !request.route().is_some_and(|route| routes.contains(&route))
        {
            return false;
        }
        if let Some(upstreams) = &self.upstreams
            && !request
                .upstream()
                .is_some_and(|upstream| upstreams.contains(&upstream))
        {
            return false;
        }
        true
    }
}

impl Settings {
    /// Validate `config`. Errors name the field, like `abort.status: must be in 200..=599, got 42`.
    pub fn from_config(config: Config) -> Result<Settings, String> {
        let abort = match config.abort {
            None => None,
            Some(abort) => {
                if !(200..=599).contains(&abort.status) {
                    return Err(format!(
                        "abort.status: must be in 200..=599, got {}",
                        abort.status
                    ));
                }
                let chance = Chance::from_percentage(abort.percentage)
                    .map_err(|e| format!("abort.percentage: {e}"))?;
                Some(AbortFault {
                    status: abort.status,
                    chance,
                })
            }
        };
        let delay = match config.delay {
            None => None,
            Some(delay) => {
                let duration = parse_duration(&delay.duration, MAX_HOST_DELAY)
                    .map_err(|e| format!("delay.duration: {e}"))?;
                let chance = Chance::from_percentage(delay.percentage)
                    .map_err(|e| format!("delay.percentage: {e}"))?;
                Some(DelayFault { duration, chance })
            }
        };
        let max_delay = match config.max_delay {
            None => DEFAULT_MAX_DELAY,
            Some(text) => {
                parse_duration(&text, MAX_HOST_DELAY).map_err(|e| format!("max_delay: {e}"))?
            }
        };
        let only = match config.only {
            None => Only::default(),
            Some(only) => Only {
                routes: names("only.routes", only.routes)?,
                upstreams: names("only.upstreams", only.upstreams)?,
                header: match only.header {
                    None => None,
                    Some(header) => {
                        if !is_token(&header.name) {
                            return Err(format!(
                                "only.header.name: {:?} is not a valid header name",
                                header.name
                            ));
                        }
                        Some((
                            header.name.to_ascii_lowercase(),
                            header.value.map(String::into_bytes),
                        ))
                    }
                },
            },
        };
        if abort.is_none() && delay.is_none() && !config.header_faults {
            return Err(
                "nothing to inject: give `abort`, `delay` or `header_faults: true`".to_owned(),
            );
        }
        Ok(Settings {
            abort,
            delay,
            only,
            header_faults: config.header_faults,
            max_delay,
        })
    }
}

/// A list of names that, when given, must hold at least one non-empty name: an empty list would
/// silently switch the filter off.
fn names(field: &str, list: Option<Vec<String>>) -> Result<Option<Vec<String>>, String> {
    let Some(list) = list else {
        return Ok(None);
    };
    if list.is_empty() {
        return Err(format!(
            "{field}: must not be empty (leave it out to allow every name)"
        ));
    }
    if let Some(i) = list.iter().position(String::is_empty) {
        return Err(format!("{field}[{i}]: must not be empty"));
    }
    Ok(Some(list))
}

/// Parse a duration like `100ms` as the proxy parses its own: more than zero, whole
/// milliseconds (the unit of the host's `delay`), at most `max`.
fn parse_duration(text: &str, max: Duration) -> Result<Duration, String> {
    let duration = humantime::parse_duration(text.trim()).map_err(|_| {
        format!("invalid duration {text:?}: expected a number followed by a unit, like 100ms")
    })?;
    if duration.is_zero() {
        return Err(format!("invalid duration {text:?}: must be more than 0"));
    }
    if duration.subsec_nanos() % 1_000_000 != 0 {
        return Err(format!(
            "invalid duration {text:?}: must be whole milliseconds"
        ));
    }
    if duration > max {
        return Err(format!(
            "invalid duration {text:?}: must be at most {}",
            humantime::format_duration(max)
        ));
    }
    Ok(duration)
}

/// Whether `name` is an HTTP header name (an RFC 9110 token).
fn is_token(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "tests")]
mod tests {
    use super::*;

    fn settings(json: &str) -> Result<Settings, String> {
        let config: Config = serde_json::from_str(json).map_err(|e| e.to_string())?;
        Settings::from_config(config)
    }

    #[test]
    fn full_config() {
        let s = settings(
            r#"{
                "abort": {"status": 503, "percentage": 10},
                "delay": {"duration": "100ms", "percentage": 0.5},
                "only": {"routes": ["checkout"], "upstreams": ["payments"],
                         "header": {"name": "X-Chaos", "value": "on"}},
                "header_faults": true,
                "max_delay": "2s"
            }"#,
        )
        .unwrap();
        assert_eq!(
            s.abort,
            Some(AbortFault {
                status: 503,
                chance: Chance::from_ppm(100_000)
            })
        );
        assert_eq!(
            s.delay,
            Some(DelayFault {
                duration: Duration::from_millis(100),
                chance: Chance::from_ppm(5_000)
            })
        );
        assert_eq!(s.only.routes.as_deref(), Some(&["checkout".to_owned()][..]));
        assert_eq!(
            s.only.upstreams.as_deref(),
            Some(&["payments".to_owned()][..])
        );
        assert_eq!(
            s.only.header,
            Some(("x-chaos".to_owned(), Some(b"on".to_vec())))
        );
        assert!(s.header_faults);
        assert_eq!(s.max_delay, Duration::from_secs(2));
    }

    #[test]
    fn defaults() {
        let s = settings(r#"{"header_faults": true}"#).unwrap();
        assert_eq!(s.abort, None);
        assert_eq!(s.delay, None);
        assert!(s.only.is_empty());
        assert_eq!(s.max_delay, DEFAULT_MAX_DELAY);
        let s = settings(r#"{"abort": {"status": 500, "percentage": 1}}"#).unwrap();
        assert!(!s.header_faults);
    }

    #[test]
    fn rejected_values_name_their_field() {
        let cases = [
            (
                r#"{"abort": {"status": 199, "percentage": 1}}"#,
                "abort.status: must be in 200..=599, got 199",
            ),
            (
                r#"{"abort": {"status": 600, "percentage": 1}}"#,
                "abort.status: must be in 200..=599, got 600",
            ),
            (
                r#"{"abort": {"status": 503, "percentage": 100.5}}"#,
                "abort.percentage: must be in 0..=100, got 100.5",
            ),
            (
                r#"{"abort": {"status": 503, "percentage": -1}}"#,
                "abort.percentage: must be in 0..=100, got -1",
            ),
            (
                r#"{"delay": {"duration": "100ms", "percentage": 0.00001}}"#,
                "delay.percentage: 0.00001 is below the resolution of 0.0001",
            ),
            (
                r#"{"delay": {"duration": "soon", "percentage": 1}}"#,
                "delay.duration: invalid duration \"soon\": expected a number followed by a unit, like 100ms",
            ),
            (
                r#"{"delay": {"duration": "0s", "percentage": 1}}"#,
                "delay.duration: invalid duration \"0s\": must be more than 0",
            ),
            (
                r#"{"delay": {"duration": "1500us", "percentage": 1}}"#,
                "delay.duration: invalid duration \"1500us\": must be whole milliseconds",
            ),
            (
                r#"{"delay": {"duration": "11m", "percentage": 1}}"#,
                "delay.duration: invalid duration \"11m\": must be at most 10m",
            ),
            (
                r#"{"header_faults": true, "max_delay": "100"}"#,
                "max_delay: invalid duration \"100\": expected a number followed by a unit, like 100ms",
            ),
            (
                r#"{"header_faults": true, "only": {"routes": []}}"#,
                "only.routes: must not be empty (leave it out to allow every name)",
            ),
            (
                r#"{"header_faults": true, "only": {"upstreams": ["a", ""]}}"#,
                "only.upstreams[1]: must not be empty",
            ),
            (
                r#"{"header_faults": true, "only": {"header": {"name": "x chaos"}}}"#,
                "only.header.name: \"x chaos\" is not a valid header name",
            ),
            (
                "{}",
                "nothing to inject: give `abort`, `delay` or `header_faults: true`",
            ),
        ];
        for (json, expected) in cases {
            assert_eq!(settings(json).unwrap_err(), expected, "{json}");
        }
    }

    struct Facts {
        headers: Vec<(&'static str, &'static str)>,
        route: Option<&'static str>,
        upstream: Option<&'static str>,
    }

    impl RequestFacts for Facts {
        fn header_values(&self, name: &str) -> Vec<Vec<u8>> {
            self.headers
                .iter()
                .filter(|(n, _)| *n == name)
                .map(|(_, v)| v.as_bytes().to_vec())
                .collect()
        }
        fn route(&self) -> Option<String> {
            self.route.map(str::to_owned)
        }
        fn upstream(&self) -> Option<String> {
            self.upstream.map(str::to_owned)
        }
    }

    #[test]
    fn only_limits_must_all_hold() {
        let only = settings(
            r#"{"header_faults": true, "only": {"routes": ["checkout", "cart"],
                "upstreams": ["payments"], "header": {"name": "x-chaos", "value": "on"}}}"#,
        )
        .unwrap()
        .only;
        let facts = |headers, route, upstream| Facts {
            headers,
            route,
            upstream,
        };
        let chaos = vec![("x-chaos", "off"), ("x-chaos", "on")];
        assert!(only.admits(&facts(chaos.clone(), Some("cart"), Some("payments"))));
        assert!(!only.admits(&facts(chaos.clone(), Some("home"), Some("payments"))));
        assert!(!only.admits(&facts(chaos.clone(), None, Some("payments"))));
        assert!(!only.admits(&facts(chaos.clone(), Some("cart"), Some("ledger"))));
        assert!(!only.admits(&facts(chaos, Some("cart"), None)));
        assert!(!only.admits(&facts(
            vec![("x-chaos", "ON")],
            Some("cart"),
            Some("payments")
        )));
        assert!(!only.admits(&facts(vec![], Some("cart"), Some("payments"))));

        let present =
            settings(r#"{"header_faults": true, "only": {"header": {"name": "x-chaos"}}}"#)
                .unwrap()
                .only;
        assert!(present.admits(&facts(vec![("x-chaos", "")], None, None)));
        assert!(!present.admits(&facts(vec![("x-other", "1")], None, None)));
        assert!(Only::default().admits(&facts(vec![], None, None)));
    }

    #[test]
    fn durations() {
        let max = MAX_HOST_DELAY;
        assert_eq!(parse_duration("1ms", max), Ok(Duration::from_millis(1)));
        assert_eq!(parse_duration(" 2s ", max), Ok(Duration::from_secs(2)));
        assert_eq!(parse_duration("1m 30s", max), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("10m", max), Ok(MAX_HOST_DELAY));
        assert!(parse_duration("", max).is_err());
        assert!(parse_duration("-1s", max).is_err());
    }
}
