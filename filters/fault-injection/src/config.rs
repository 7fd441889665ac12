//! The configuration as written ([`Config`]) and as used ([`Settings`]): validated once, when the
//! proxy configures an instance, so that the per-request path only compares numbers.

use std::time::Duration;

use serde::Deserialize;
use weft_sdk::facts::RequestFacts;
use weft_sdk::text;

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
    /// How long to hold a request, like `100ms`, `1.5s` or `1m30s`: whole milliseconds, at most
    /// `10m`.
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

impl Only {
    /// Whether no limit is given: every request can be faulted.
    pub fn is_empty(&self) -> bool {
        self.routes.is_none() && self.upstreams.is_none() && self.header.is_none()
    }

    /// Whether the request passes every limit given. The header is checked first: it is the
    /// usual way to aim faults at test traffic, and a miss saves the other look-ups. Each fact
    /// is read only when its limit is configured: a limit not configured costs no host call.
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
            && !request
                .route_name()
                .is_some_and(|route| routes.iter().any(|name| *name == route))
        {
            return false;
        }
        if let Some(upstreams) = &self.upstreams
            && !request
                .upstream()
                .is_some_and(|upstream| upstreams.iter().any(|name| *name == upstream))
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
                        if !text::is_header_name(&header.name) {
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

/// Parse a duration like `100ms`, `1.5s` or `1m30s` ([`text::parse_duration`], the syntax of
/// every weft config, the proxy's own included): more than zero, whole milliseconds (the unit
/// of the host's `delay`), at most `max`.
fn parse_duration(text: &str, max: Duration) -> Result<Duration, String> {
    let duration = text::parse_duration(text)?;
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
            text::format_duration(max)
        ));
    }
    Ok(duration)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "tests")]
mod tests {
    use weft_sdk::facts::FakeRequest;

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
                "delay.duration: invalid duration \"soon\": expected a number at byte 0; write a number and a unit, like 250ms, 1.5s or 1m30s",
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
                "max_delay: invalid duration \"100\": 100 needs a unit, as in 100s or 100ms; write a number and a unit, like 250ms, 1.5s or 1m30s",
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

    /// A request with these headers, route and upstream.
    fn facts(
        headers: Vec<(&str, &str)>,
        route: Option<&str>,
        upstream: Option<&str>,
    ) -> FakeRequest {
        let mut request = FakeRequest::get("/");
        for (name, value) in headers {
            request = request.with_header(name, value);
        }
        if let Some(route) = route {
            request = request.with_route(route);
        }
        if let Some(upstream) = upstream {
            request = request.with_upstream(upstream);
        }
        request
    }

    #[test]
    fn only_limits_must_all_hold() {
        let only = settings(
            r#"{"header_faults": true, "only": {"routes": ["checkout", "cart"],
                "upstreams": ["payments"], "header": {"name": "x-chaos", "value": "on"}}}"#,
        )
        .unwrap()
        .only;
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
    fn only_reads_what_its_limits_need() {
        let request = facts(vec![("x-chaos", "off")], Some("cart"), Some("payments"));
        assert!(Only::default().admits(&request));
        assert!(request.reads().is_empty());
        let only = settings(
            r#"{"header_faults": true, "only": {"routes": ["cart"],
                "header": {"name": "x-chaos", "value": "on"}}}"#,
        )
        .unwrap()
        .only;
        assert!(!only.admits(&request));
        assert_eq!(
            request.reads(),
            ["header x-chaos"],
            "the header miss decides"
        );
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
        assert!(
            parse_duration("1.5ms", max).is_err(),
            "not whole milliseconds"
        );
    }

    #[test]
    fn delays_take_the_shared_duration_syntax() {
        for (duration, expected) in [
            ("1m30s", Duration::from_secs(90)),
            ("1.5s", Duration::from_millis(1_500)),
            ("250ms", Duration::from_millis(250)),
            ("0.25s", Duration::from_millis(250)),
        ] {
            let s = settings(&format!(
                r#"{{"delay": {{"duration": "{duration}", "percentage": 1}}, "max_delay": "{duration}"}}"#
            ))
            .unwrap();
            assert_eq!(s.delay.map(|d| d.duration), Some(expected), "{duration}");
            assert_eq!(s.max_delay, expected, "{duration}");
        }
    }
}
