//! The decision for one request, free of host calls so that it is tested natively: percentages
//! as parts per million, the `x-weft-fault-*` header values, and which faults fire.

use std::time::Duration;

use crate::config::{AbortFault, Settings};

/// The longest delay the host accepts (`delay.milliseconds`, wit/filter.wit).
pub const MAX_HOST_DELAY: Duration = Duration::from_secs(600);

/// Parts per million in 100%.
const MILLION: u32 = 1_000_000;

/// How often a fault fires: a share of requests in parts per million (`0..=1_000_000`), the
/// resolution of Envoy's and Istio's percentages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Chance(u32);

impl Chance {
    /// Always.
    pub const ALWAYS: Chance = Chance(MILLION);

    /// `ppm` parts per million, at most a million.
    pub const fn from_ppm(ppm: u32) -> Chance {
        Chance(if ppm > MILLION { MILLION } else { ppm })
    }

    /// A percentage in `0..=100`, decimals allowed down to `0.0001`.
    pub fn from_percentage(percentage: f64) -> Result<Chance, String> {
        if !(0.0..=100.0).contains(&percentage) {
            // Also rejects NaN, which `contains` never holds.
            return Err(format!("must be in 0..=100, got {percentage}"));
        }
        // In range, so the product is within 0..=1e6 and the cast exact.
        let ppm = (percentage * 10_000.0).round() as u32;
        if ppm == 0 && percentage > 0.0 {
            return Err(format!("{percentage} is below the resolution of 0.0001"));
        }
        Ok(Chance(ppm))
    }

    /// Whether the fault fires, drawing a random number only when the answer is not fixed: 0%
    /// never fires and 100% always does, whatever `draw` would return.
    pub fn fires(self, draw: impl FnOnce() -> u64) -> bool {
        match self.0 {
            0 => false,
            MILLION => true,
            ppm => {
                // Maps the draw onto 0..1_000_000 by its high bits (no modulo bias worth naming).
                let scaled = (u128::from(draw()) * u128::from(MILLION)) >> 64;
                scaled < u128::from(ppm)
            }
        }
    }
}

/// A delay: how long and how often.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DelayFault {
    /// How long the request is held, whole milliseconds in `1ms..=10m`.
    pub duration: Duration,
    /// How often it fires.
    pub chance: Chance,
}

/// The request headers that ask for faults (read only with `header_faults: true`).
pub mod headers {
    /// The abort's status, `200..=599`.
    pub const ABORT: &str = "x-weft-fault-abort";
    /// The share of requests to abort, `0..=100`; 100 when absent.
    pub const ABORT_PERCENTAGE: &str = "x-weft-fault-abort-percentage";
    /// The delay in milliseconds, at least 1; cut to `max_delay`.
    pub const DELAY: &str = "x-weft-fault-delay";
    /// The share of requests to delay, `0..=100`; 100 when absent.
    pub const DELAY_PERCENTAGE: &str = "x-weft-fault-delay-percentage";

    /// All four, in the order of [`super::HeaderValues::values`].
    pub const ALL: [&str; 4] = [ABORT, ABORT_PERCENTAGE, DELAY, DELAY_PERCENTAGE];
}

/// The values of the four fault headers as the request carries them (the first value of each).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HeaderValues {
    /// By position in [`headers::ALL`].
    pub values: [Option<Vec<u8>>; 4],
}

impl HeaderValues {
    /// The value of `headers::ALL[i]`.
    fn get(&self, i: usize) -> Option<&[u8]> {
        self.values[i].as_deref()
    }

    /// Whether no fault header is present.
    pub fn is_empty(&self) -> bool {
        self.values.iter().all(Option::is_none)
    }
}

/// The faults a request asked for with headers, and which header values were invalid.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HeaderRequest {
    /// The requested abort, when `x-weft-fault-abort` and its percentage (if any) are valid.
    pub abort: Option<AbortFault>,
    /// The requested delay, when `x-weft-fault-delay` and its percentage (if any) are valid.
    pub delay: Option<DelayFault>,
    /// Whether the requested delay was longer than `max_delay` and cut to it.
    pub delay_capped: bool,
    /// The invalid values, by position in [`headers::ALL`].
    pub invalid: [bool; 4],
}

impl HeaderRequest {
    /// Parse the header values. An invalid value is ignored with the fault it belongs to (an
    /// abort with a garbled percentage does not fire at 100%), and reported in `invalid`.
    pub fn parse(values: &HeaderValues, max_delay: Duration) -> HeaderRequest {
        let mut request = HeaderRequest::default();
        let percentage = |i: usize, request: &mut HeaderRequest| match values.get(i) {
            None => Some(Chance::ALWAYS),
            Some(value) => {
                let chance = parse_percentage(value);
                request.invalid[i] = chance.is_none();
                chance
            }
        };
        let abort_chance = percentage(1, &mut request);
        let delay_chance = percentage(3, &mut request);
        if let Some(value) = values.get(0) {
            let status = parse_status(value);
            request.invalid[0] = status.is_none();
            request.abort = status
                .zip(abort_chance)
                .map(|(status, chance)| AbortFault { status, chance });
        }
        if let Some(value) = values.get(2) {
            let millis = parse_millis(value);
            request.invalid[2] = millis.is_none();
            if let Some((millis, chance)) = millis.zip(delay_chance) {
                let requested = Duration::from_millis(millis);
                request.delay_capped = requested > max_delay;
                request.delay = Some(DelayFault {
                    duration: requested.min(max_delay),
                    chance,
                });
            }
        }
        request
    }
}

/// `200..=599`, digits only.
fn parse_status(value: &[u8]) -> Option<u16> {
    let status = parse_digits(value)?;
    (200..=599)
        .contains(&status)
        .then(|| u16::try_from(status).ok())
        .flatten()
}

/// A positive number of milliseconds, digits only.
fn parse_millis(value: &[u8]) -> Option<u64> {
    parse_digits(value).filter(|&millis| millis > 0)
}

/// Decimal digits (surrounding spaces and tabs allowed), no sign, no overflow.
fn parse_digits(value: &[u8]) -> Option<u64> {
    let digits = value.trim_ascii();
    if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    digits.iter().try_fold(0u64, |n, d| {
        n.checked_mul(10)?.checked_add(u64::from(d - b'0'))
    })
}

/// A percentage `0..=100` like `25` or `0.5`: digits with at most one dot and four decimals
/// (the resolution of a [`Chance`]; more are accepted when they are zeros), nothing else: no
/// sign, exponent, `inf` or `NaN`.
fn parse_percentage(value: &[u8]) -> Option<Chance> {
    let text = value.trim_ascii();
    let (whole, fraction) = match text.iter().position(|&b| b == b'.') {
        Some(dot) if dot + 1 < text.len() => (&text[..dot], &text[dot + 1..]),
        Some(_) => return None,
        None => (text, &b""[..]),
    };
    if whole.is_empty() || !fraction.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let (kept, dropped) = fraction.split_at(fraction.len().min(4));
    if dropped.iter().any(|&d| d != b'0') {
        return None;
    }
    // `whole` is checked by `parse_digits`; `kept` holds 1 to 4 digits, or none.
    let mut ppm = parse_digits(whole)?.checked_mul(10_000)?;
    let mut scale = 1_000;
    for d in kept {
        ppm += u64::from(d - b'0') * scale;
        scale /= 10;
    }
    let ppm = u32::try_from(ppm).ok().filter(|&ppm| ppm <= MILLION)?;
    Some(Chance::from_ppm(ppm))
}

/// Where a fault came from, for the metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// The filter's configuration.
    Config,
    /// An `x-weft-fault-*` request header.
    Header,
}

impl Source {
    /// The `source` label value.
    pub fn label(self) -> &'static str {
        match self {
            Source::Config => "config",
            Source::Header => "header",
        }
    }
}

/// What to do with one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// No fault fired.
    Pass,
    /// Answer with this status now.
    Abort(u16, Source),
    /// Hold the request, then let it go on.
    Delay(Duration, Source),
    /// Hold the request, then answer with the status (Envoy's order: delay first, then abort).
    DelayedAbort {
        /// How long to hold it.
        delay: Duration,
        /// Where the delay came from.
        delay_source: Source,
        /// The status of the answer.
        status: u16,
        /// Where the abort came from.
        abort_source: Source,
    },
}

impl Decision {
    /// The `decision` label value.
    pub fn label(self) -> &'static str {
        match self {
            Decision::Pass => "passed",
            Decision::Abort(..) => "injected_abort",
            Decision::Delay(..) => "injected_delay",
            Decision::DelayedAbort { .. } => "injected_delayed_abort",
        }
    }
}

/// Decide for a request within the `only` limits. A fault a header asked for replaces the
/// configured one of the same kind; the delay is drawn before the abort, each with its own
/// number from `draw` (and none for 0% or 100%).
pub fn decide(
    settings: &Settings,
    asked: &HeaderRequest,
    mut draw: impl FnMut() -> u64,
) -> Decision {
    let delay = match asked.delay {
        Some(delay) => Some((delay, Source::Header)),
        None => settings.delay.map(|delay| (delay, Source::Config)),
    }
    .filter(|(delay, _)| delay.chance.fires(&mut draw));
    let abort = match asked.abort {
        Some(abort) => Some((abort, Source::Header)),
        None => settings.abort.map(|abort| (abort, Source::Config)),
    }
    .filter(|(abort, _)| abort.chance.fires(&mut draw));
    match (delay, abort) {
        (None, None) => Decision::Pass,
        (Some((delay, source)), None) => Decision::Delay(delay.duration, source),
        (None, Some((abort, source))) => Decision::Abort(abort.status, source),
        (Some((delay, delay_source)), Some((abort, abort_source))) => Decision::DelayedAbort {
            delay: delay.duration,
            delay_source,
            status: abort.status,
            abort_source,
        },
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "tests")]
mod tests {
    use super::*;
    use crate::config::Only;

    fn values(pairs: &[(&str, &str)]) -> HeaderValues {
        let mut values = HeaderValues::default();
        for (name, value) in pairs {
            let i = headers::ALL.iter().position(|h| h == name).unwrap();
            values.values[i] = Some(value.as_bytes().to_vec());
        }
        values
    }

    fn settings(abort: Option<(u16, u32)>, delay: Option<(u64, u32)>) -> Settings {
        Settings {
            abort: abort.map(|(status, ppm)| AbortFault {
                status,
                chance: Chance::from_ppm(ppm),
            }),
            delay: delay.map(|(ms, ppm)| DelayFault {
                duration: Duration::from_millis(ms),
                chance: Chance::from_ppm(ppm),
            }),
            only: Only::default(),
            header_faults: true,
            max_delay: Duration::from_secs(10),
        }
    }

    #[test]
    fn percentages_to_parts_per_million() {
        assert_eq!(Chance::from_percentage(0.0), Ok(Chance::from_ppm(0)));
        assert_eq!(Chance::from_percentage(100.0), Ok(Chance::ALWAYS));
        assert_eq!(Chance::from_percentage(0.5), Ok(Chance::from_ppm(5_000)));
        assert_eq!(Chance::from_percentage(0.0001), Ok(Chance::from_ppm(1)));
        assert_eq!(
            Chance::from_percentage(33.33333),
            Ok(Chance::from_ppm(333_333))
        );
        assert!(Chance::from_percentage(f64::NAN).is_err());
        assert!(Chance::from_percentage(f64::INFINITY).is_err());
        assert!(Chance::from_percentage(100.0001).is_err());
        assert!(Chance::from_percentage(0.00004).is_err());
    }

    #[test]
    fn zero_never_draws_nor_fires_and_hundred_always_fires() {
        let never_called = || -> u64 { panic!("no draw needed") };
        assert!(!Chance::from_ppm(0).fires(never_called));
        assert!(Chance::ALWAYS.fires(never_called));
    }

    #[test]
    fn a_draw_fires_below_the_share() {
        let half = Chance::from_ppm(500_000);
        assert!(half.fires(|| 0));
        assert!(half.fires(|| u64::MAX / 2 - 1_000_000_000_000));
        assert!(!half.fires(|| u64::MAX / 2 + 1_000_000_000_000));
        assert!(!half.fires(|| u64::MAX));
        let tiny = Chance::from_ppm(1);
        assert!(tiny.fires(|| 0));
        assert!(!tiny.fires(|| u64::MAX / 1_000_000 + 1));
        // The largest draw stays just below 100%.
        assert!(Chance::from_ppm(999_999).fires(|| u64::MAX / 1_000_000 * 999_998));
        assert!(!Chance::from_ppm(999_999).fires(|| u64::MAX));
    }

    #[test]
    fn header_values() {
        let max = Duration::from_secs(10);
        let asked = HeaderRequest::parse(
            &values(&[
                (headers::ABORT, "418"),
                (headers::ABORT_PERCENTAGE, "12.5"),
                (headers::DELAY, "250"),
            ]),
            max,
        );
        assert_eq!(
            asked,
            HeaderRequest {
                abort: Some(AbortFault {
                    status: 418,
                    chance: Chance::from_ppm(125_000)
                }),
                delay: Some(DelayFault {
                    duration: Duration::from_millis(250),
                    chance: Chance::ALWAYS
                }),
                delay_capped: false,
                invalid: [false; 4],
            }
        );
        let asked = HeaderRequest::parse(&values(&[(headers::DELAY, " 60000 ")]), max);
        assert_eq!(asked.delay.map(|d| d.duration), Some(max), "capped");
        assert!(asked.delay_capped);
        assert_eq!(
            HeaderRequest::parse(&values(&[]), max),
            HeaderRequest::default()
        );
    }

    #[test]
    fn invalid_header_values_drop_their_fault() {
        let max = Duration::from_secs(10);
        let bad_statuses = [
            "",
            "abc",
            "199",
            "600",
            "-503",
            "+503",
            "5O3",
            "503.0",
            "99999999999999999999999",
        ];
        for bad in bad_statuses {
            let asked = HeaderRequest::parse(&values(&[(headers::ABORT, bad)]), max);
            assert_eq!(asked.abort, None, "{bad:?}");
            assert_eq!(asked.invalid, [true, false, false, false], "{bad:?}");
        }
        for bad in ["0", "-5", "1.5", "1s", "18446744073709551616"] {
            let asked = HeaderRequest::parse(&values(&[(headers::DELAY, bad)]), max);
            assert_eq!(asked.delay, None, "{bad:?}");
            assert_eq!(asked.invalid, [false, false, true, false], "{bad:?}");
        }
        let bad_percentages = [
            "", "x", "101", "-1", "1e2", "inf", "NaN", "5.", ".5", "1.2.3", "50%", "0.00001",
        ];
        for bad in bad_percentages {
            let asked = HeaderRequest::parse(
                &values(&[
                    (headers::ABORT, "503"),
                    (headers::ABORT_PERCENTAGE, bad),
                    (headers::DELAY, "10"),
                    (headers::DELAY_PERCENTAGE, bad),
                ]),
                max,
            );
            assert_eq!((asked.abort, asked.delay), (None, None), "{bad:?}");
            assert_eq!(asked.invalid, [false, true, false, true], "{bad:?}");
        }
    }

    #[test]
    fn percentage_header_syntax() {
        assert_eq!(parse_percentage(b"0"), Some(Chance::from_ppm(0)));
        assert_eq!(parse_percentage(b"100"), Some(Chance::ALWAYS));
        assert_eq!(parse_percentage(b"100.0"), Some(Chance::ALWAYS));
        assert_eq!(parse_percentage(b"0.25"), Some(Chance::from_ppm(2_500)));
        assert_eq!(parse_percentage(b" 7 "), Some(Chance::from_ppm(70_000)));
        assert_eq!(parse_percentage(b"0.0001"), Some(Chance::from_ppm(1)));
        assert_eq!(
            parse_percentage(b"12.345600"),
            Some(Chance::from_ppm(123_456))
        );
        assert_eq!(
            parse_percentage(b"99.9999"),
            Some(Chance::from_ppm(999_999))
        );
        assert_eq!(parse_percentage(b"100.00001"), None);
        assert_eq!(parse_percentage(b"0.00001"), None);
        assert_eq!(parse_percentage(b"100.0001"), None);
    }

    #[test]
    fn decisions() {
        let no_headers = HeaderRequest::default();
        let draw = || 0;
        assert_eq!(
            decide(&settings(None, None), &no_headers, draw),
            Decision::Pass
        );
        assert_eq!(
            decide(&settings(Some((503, MILLION)), None), &no_headers, draw),
            Decision::Abort(503, Source::Config)
        );
        assert_eq!(
            decide(&settings(None, Some((100, MILLION))), &no_headers, draw),
            Decision::Delay(Duration::from_millis(100), Source::Config)
        );
        assert_eq!(
            decide(
                &settings(Some((503, MILLION)), Some((100, MILLION))),
                &no_headers,
                draw
            ),
            Decision::DelayedAbort {
                delay: Duration::from_millis(100),
                delay_source: Source::Config,
                status: 503,
                abort_source: Source::Config
            }
        );
        assert_eq!(
            decide(&settings(Some((503, 0)), Some((100, 0))), &no_headers, draw),
            Decision::Pass
        );
    }

    #[test]
    fn header_faults_replace_configured_ones_of_their_kind() {
        let s = settings(Some((503, MILLION)), Some((100, MILLION)));
        let asked = HeaderRequest {
            abort: Some(AbortFault {
                status: 418,
                chance: Chance::ALWAYS,
            }),
            ..HeaderRequest::default()
        };
        assert_eq!(
            decide(&s, &asked, || 0),
            Decision::DelayedAbort {
                delay: Duration::from_millis(100),
                delay_source: Source::Config,
                status: 418,
                abort_source: Source::Header
            }
        );
        let asked = HeaderRequest {
            delay: Some(DelayFault {
                duration: Duration::from_millis(7),
                chance: Chance::from_ppm(0),
            }),
            ..HeaderRequest::default()
        };
        assert_eq!(
            decide(&s, &asked, || 0),
            Decision::Abort(503, Source::Config),
            "a header delay at 0% replaces the configured delay"
        );
    }

    #[test]
    fn delay_is_drawn_before_abort_with_one_number_each() {
        let s = settings(Some((503, 500_000)), Some((100, 500_000)));
        let mut draws = [0, u64::MAX].into_iter();
        assert_eq!(
            decide(&s, &HeaderRequest::default(), || draws.next().unwrap()),
            Decision::Delay(Duration::from_millis(100), Source::Config)
        );
        let mut draws = [u64::MAX, 0].into_iter();
        assert_eq!(
            decide(&s, &HeaderRequest::default(), || draws.next().unwrap()),
            Decision::Abort(503, Source::Config)
        );
    }
}
