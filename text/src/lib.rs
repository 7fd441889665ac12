//! Reading request text and configuration text without trusting it: header names, the headers
//! the proxy manages, cookies, percent-escapes, hex, durations and client addresses.
//!
//! Pure Rust, no host calls and no dependencies: filters use it as `weft_sdk::text` (natively in
//! their unit tests, and in wasm), and the host side uses the same code where it reads the
//! same text (durations in the proxy's config and the control plane's definitions), so one
//! string means one thing everywhere. Nothing here panics, whatever the input (empty, huge, not
//! UTF-8, broken escapes, stray quotes).
//!
//! ```
//! use std::time::Duration;
//! use weft_text as text;
//!
//! assert!(text::is_header_name("X-Tenant"));
//! assert!(text::is_managed_header("Transfer-Encoding"));
//! assert_eq!(text::cookie_value(b"a=1; session=\"abc\"", "session"), Some(&b"abc"[..]));
//! assert_eq!(&*text::form_decode("caf%C3%A9+au+lait"), "café au lait".as_bytes());
//! assert_eq!(text::parse_duration("1m30s"), Ok(Duration::from_secs(90)));
//! assert_eq!(text::parse_duration("1.5s"), Ok(Duration::from_millis(1500)));
//! assert_eq!(text::address_without_port("[2001:db8::7]:443"), "2001:db8::7");
//! ```

use std::borrow::Cow;
use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

// ---------------------------------------------------------------------------------------------
// Header names and values

/// Whether `byte` is an RFC 9110 `tchar`: the characters of a token (header names, methods,
/// cookie names).
pub fn is_tchar(byte: u8) -> bool {
    byte.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&byte)
}

/// Whether `text` is an RFC 9110 token: one or more [`is_tchar`] characters. Methods and cookie
/// names are tokens too.
pub fn is_token(text: &str) -> bool {
    !text.is_empty() && text.bytes().all(is_tchar)
}

/// Whether `name` is a valid HTTP header name (an RFC 9110 token, any case). Pseudo-headers
/// (`:authority`) are not. The proxy stores names lower-cased: lower-case a name before
/// comparing it with the ones the request reports.
pub fn is_header_name(name: &str) -> bool {
    is_token(name)
}

/// Whether the proxy accepts `value` as a header value (`http::HeaderValue`): any byte but the
/// control characters, except horizontal tab (so no CR, LF, NUL or DEL). Bytes above 0x7f are
/// accepted.
pub fn is_header_value(value: &[u8]) -> bool {
    value
        .iter()
        .all(|&b| b == b'\t' || (b >= 0x20 && b != 0x7f))
}

/// Headers a filter may not set, add or remove, lower-case: the hop-by-hop headers the proxy
/// manages per connection (RFC 9110 §7.6.1 and the ones RFC 7230 listed: `connection`,
/// `keep-alive`, `proxy-authenticate`, `proxy-authorization`, `proxy-connection`, `te`,
/// `trailer`, `transfer-encoding`, `upgrade`), the request's authority (`host`, fixed when the
/// request arrived) and the framing the proxy computes itself (`content-length`).
///
/// The proxy refuses edits of the hop-by-hop headers and of `host` with
/// `read-only` (the SDK's `EditError::ReadOnly`), and `content-length` in
/// `add-response-header`; filters reject all of them when they are configured, so that a config
/// cannot ask for an edit that would fail (or corrupt framing) on every request.
pub const MANAGED_HEADERS: [&str; 11] = [
    "connection",
    "content-length",
    "host",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "proxy-connection",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
];

/// Whether `name` (any case) is one of the [`MANAGED_HEADERS`].
pub fn is_managed_header(name: &str) -> bool {
    MANAGED_HEADERS
        .iter()
        .any(|managed| managed.eq_ignore_ascii_case(name))
}

// ---------------------------------------------------------------------------------------------
// Cookies (RFC 6265 §4.2 `cookie` request header)

/// Whether `name` is a valid cookie name (RFC 6265: a token).
pub fn is_cookie_name(name: &str) -> bool {
    is_token(name)
}

/// The `(name, value)` pairs of one `cookie` header value (`a=1; b="2"`), in order.
///
/// Pairs are split on `;`; whitespace around names and values is ignored; a pair without `=` is
/// skipped; a value may hold `=` (`a=b=c` is `a` → `b=c`). Names are compared byte for byte
/// (case-sensitive). A value wrapped in double quotes is returned without them (RFC 6265
/// `cookie-value = *cookie-octet / ( DQUOTE *cookie-octet DQUOTE )`: the quotes are not part of
/// the value), so `s="abc"` and `s=abc` match the same way; a lone or unbalanced quote is kept.
/// Bytes that RFC 6265 forbids are not rejected: the values are returned as sent.
pub fn cookies(header: &[u8]) -> impl Iterator<Item = (&[u8], &[u8])> {
    header.split(|&b| b == b';').filter_map(|pair| {
        let equals = pair.iter().position(|&b| b == b'=')?;
        let (name, value) = pair.split_at(equals);
        let value = value.get(1..).unwrap_or_default();
        Some((name.trim_ascii(), unquote(value.trim_ascii())))
    })
}

/// The value of the first cookie named `name` in one `cookie` header value; see [`cookies`].
pub fn cookie_value<'h>(header: &'h [u8], name: &str) -> Option<&'h [u8]> {
    cookie_values(header, name).next()
}

/// The values of every cookie named `name` in one `cookie` header value, in order; see
/// [`cookies`].
pub fn cookie_values<'h>(header: &'h [u8], name: &str) -> impl Iterator<Item = &'h [u8]> {
    cookies(header)
        .filter(move |(key, _)| *key == name.as_bytes())
        .map(|(_, value)| value)
}

/// The `cookie` header values `headers` without the cookies named `name`, joined into one value
/// (`a=1; b=2`); `None` when no cookie is left. Pairs are trimmed and empty ones dropped; the
/// other pairs are kept as sent (a pair without `=` included).
pub fn cookies_without(headers: &[impl AsRef<[u8]>], name: &str) -> Option<Vec<u8>> {
    let mut kept: Vec<&[u8]> = Vec::new();
    for header in headers {
        for pair in header.as_ref().split(|&b| b == b';') {
            let pair = pair.trim_ascii();
            if pair.is_empty() {
                continue;
            }
            let key = pair
                .split(|&b| b == b'=')
                .next()
                .unwrap_or(pair)
                .trim_ascii();
            if key != name.as_bytes() {
                kept.push(pair);
            }
        }
    }
    (!kept.is_empty()).then(|| kept.join(&b"; "[..]))
}

/// `value` without one pair of surrounding double quotes, if it has them.
fn unquote(value: &[u8]) -> &[u8] {
    match value {
        [b'"', inner @ .., b'"'] => inner,
        _ => value,
    }
}

// ---------------------------------------------------------------------------------------------
// Hex and percent-escapes

/// The value of one hex digit (`0-9`, `a-f`, `A-F`), or `None`.
pub fn hex_digit(byte: u8) -> Option<u8> {
    match byte {
        b'0'..=b'9' => Some(byte - b'0'),
        b'a'..=b'f' => Some(byte - b'a' + 10),
        b'A'..=b'F' => Some(byte - b'A' + 10),
        _ => None,
    }
}

/// The bytes written as hex digits in `text` (two per byte, either case, nothing else: no
/// prefix, separators or whitespace); `None` for an odd length or a non-hex character.
pub fn decode_hex(text: &str) -> Option<Vec<u8>> {
    let digits = text.as_bytes();
    if !digits.len().is_multiple_of(2) {
        return None;
    }
    digits
        .chunks_exact(2)
        .map(|pair| Some(hex_digit(pair[0])? << 4 | hex_digit(pair[1])?))
        .collect()
}

/// Decode RFC 3986 percent-escapes: `%XX` is the byte `0xXX`. A `%` not followed by two hex
/// digits stays as it is; `+` stays a `+`. The result may not be UTF-8. Borrows when there is
/// nothing to decode.
pub fn percent_decode(text: &str) -> Cow<'_, [u8]> {
    decode_escapes(text.as_bytes(), false, |_| true)
}

/// Decode a query name or value as `application/x-www-form-urlencoded` does (and browsers'
/// `URLSearchParams`): as [`percent_decode`], and `+` is a space. Borrows when there is nothing
/// to decode.
pub fn form_decode(text: &str) -> Cow<'_, [u8]> {
    decode_escapes(text.as_bytes(), true, |_| true)
}

/// Decode only the escapes of unreserved characters (RFC 3986 §2.3: letters, digits, `-`, `.`,
/// `_`, `~`), which mean the same escaped or not: `/%61dmin` is `/admin`, while `%2F` (`/`),
/// `%3F` (`?`) and escapes of non-ASCII bytes stay escaped. The result is still UTF-8. Borrows
/// when there is nothing to decode.
pub fn percent_decode_unreserved(text: &str) -> Cow<'_, str> {
    let unreserved = |byte: u8| byte.is_ascii_alphanumeric() || b"-._~".contains(&byte);
    match decode_escapes(text.as_bytes(), false, unreserved) {
        Cow::Borrowed(_) => Cow::Borrowed(text),
        // Only escapes of ASCII characters were replaced, by those characters: still UTF-8.
        Cow::Owned(bytes) => Cow::Owned(
            String::from_utf8(bytes)
                .unwrap_or_else(|err| String::from_utf8_lossy(err.as_bytes()).into_owned()),
        ),
    }
}

/// Replace each `%XX` whose byte `decode` accepts by that byte (and `+` by a space when
/// `plus_as_space`); everything else is copied.
fn decode_escapes(bytes: &[u8], plus_as_space: bool, decode: impl Fn(u8) -> bool) -> Cow<'_, [u8]> {
    if !bytes
        .iter()
        .any(|&b| b == b'%' || (plus_as_space && b == b'+'))
    {
        return Cow::Borrowed(bytes);
    }
    let mut decoded = Vec::with_capacity(bytes.len());
    let mut rest = bytes;
    while let Some((&byte, tail)) = rest.split_first() {
        rest = tail;
        match byte {
            b'+' if plus_as_space => decoded.push(b' '),
            b'%' => match tail {
                [high, low, after @ ..] => match (hex_digit(*high), hex_digit(*low)) {
                    (Some(high), Some(low)) if decode(high << 4 | low) => {
                        decoded.push(high << 4 | low);
                        rest = after;
                    }
                    _ => decoded.push(b'%'),
                },
                _ => decoded.push(b'%'),
            },
            other => decoded.push(other),
        }
    }
    Cow::Owned(decoded)
}

// ---------------------------------------------------------------------------------------------
// Request targets and addresses

/// The path of a request target, without the query (everything from the first `?`).
pub fn path_without_query(target: &str) -> &str {
    target.split_once('?').map_or(target, |(path, _)| path)
}

/// The client's IP address from a socket address as the proxy reports it
/// (`weft_sdk::facts::RequestFacts::client_address`: `1.2.3.4:5`,
/// `[::1]:5`) or a bare IP address; `None` for anything else.
pub fn client_ip(address: &str) -> Option<IpAddr> {
    address
        .parse::<SocketAddr>()
        .map(|socket| socket.ip())
        .or_else(|_| address.parse::<IpAddr>())
        .ok()
}

/// The address part of a socket address as the proxy writes it, without the port, as text:
/// `1.2.3.4:5` → `1.2.3.4`, `[::1]:5` → `::1`. Anything else (a bare IPv6 address, a broken
/// value) is returned whole. Unlike [`client_ip`] it does not parse the address, so the text is
/// exactly what the proxy sent.
pub fn address_without_port(address: &str) -> &str {
    if let Some(rest) = address.strip_prefix('[') {
        return rest.split_once(']').map_or(address, |(ip, _)| ip);
    }
    match address.split_once(':') {
        Some((ip, port)) if !port.contains(':') => ip,
        _ => address,
    }
}

// ---------------------------------------------------------------------------------------------
// Durations

/// Parse a duration written for people, the one syntax of every weft config: numbers each
/// followed by a unit, summed, with optional whitespace between them: `250ms`, `1.5s`, `1m30s`,
/// `2h 37min`, `1 day`. Surrounding whitespace is ignored; `0` alone is zero.
///
/// This is the grammar of `humantime::parse_duration` 2.4 (which the proxy uses for its own
/// config), and gives the same result for every string it accepts. Units: `ns` (`nsec`,
/// `nanos`), `us` (`µs`, `usec`), `ms` (`msec`, `millis`), `s` (`sec`, `secs`, `second`,
/// `seconds`), `m` (`min`, `mins`, `minute`, `minutes`), `h` (`hr`, `hrs`, `hour`, `hours`), `d`
/// (`day`, `days`), `w` (`wk`, `wks`, `week`, `weeks`), `M` (`month`, `months`: 30.44 days) and
/// `y` (`yr`, `yrs`, `year`, `years`: 365.25 days). A number may have a fractional part
/// (`1.5s`, `0.25h`) when its value is a whole number of nanoseconds (a whole number of seconds
/// for hours and longer units), as in humantime.
///
/// Unlike humantime, this never panics: humantime 2.4 panics on a sum that carries a whole
/// second of nanoseconds into `u64::MAX` seconds (`18446744073709551615s 1000000000ns`); this
/// reports that as too large. Callers check their own bounds (more than zero, whole
/// milliseconds, a maximum).
///
/// The error names the text: ``invalid duration "5x": unknown unit "x" ...``.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let trimmed = text.trim();
    if trimmed == "0" {
        return Ok(Duration::ZERO);
    }
    DurationParser {
        src: trimmed,
        chars: trimmed.chars(),
    }
    .parse()
    .map_err(|err| {
        format!(
            "invalid duration {text:?}: {err}; write a number and a unit, like 250ms, 1.5s or 1m30s"
        )
    })
}

/// `duration` in the syntax [`parse_duration`] reads, in days, hours, minutes, seconds,
/// milliseconds, microseconds and nanoseconds, largest first, zero parts left out: `10m`,
/// `1h 30m`, `1s 500ms`; `0s` for zero.
pub fn format_duration(duration: Duration) -> String {
    let secs = duration.as_secs();
    let nanos = duration.subsec_nanos();
    let parts = [
        (secs / 86_400, "d"),
        (secs % 86_400 / 3_600, "h"),
        (secs % 3_600 / 60, "m"),
        (secs % 60, "s"),
        (u64::from(nanos / 1_000_000), "ms"),
        (u64::from(nanos / 1_000 % 1_000), "us"),
        (u64::from(nanos % 1_000), "ns"),
    ];
    let mut out = String::new();
    for (value, unit) in parts {
        if value > 0 {
            if !out.is_empty() {
                out.push(' ');
            }
            out.push_str(&value.to_string());
            out.push_str(unit);
        }
    }
    if out.is_empty() {
        out.push_str("0s");
    }
    out
}

/// Why a duration did not parse.
#[derive(Debug, Clone, PartialEq, Eq)]
enum DurationError {
    Empty,
    /// Byte offset.
    NumberExpected(usize),
    /// Byte offset.
    InvalidCharacter(usize),
    /// A number without a unit.
    UnitNeeded(u64),
    UnknownUnit(String),
    /// Out of range, or not a whole number of nanoseconds.
    TooLarge,
}

impl fmt::Display for DurationError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DurationError::Empty => f.write_str("it is empty"),
            DurationError::NumberExpected(at) => write!(f, "expected a number at byte {at}"),
            DurationError::InvalidCharacter(at) => write!(f, "unexpected character at byte {at}"),
            DurationError::UnitNeeded(n) => write!(f, "{n} needs a unit, as in {n}s or {n}ms"),
            DurationError::UnknownUnit(unit) => write!(
                f,
                "unknown unit {unit:?} (units: ns, us, ms, s, m, h, d, w, M, y, or their long forms)"
            ),
            DurationError::TooLarge => f.write_str(
                "the value is too large, or finer than a nanosecond (a second for hours and longer)",
            ),
        }
    }
}

const NANOS_PER_SEC: u64 = 1_000_000_000;

/// A unit: its length in seconds, or in nanoseconds below a second.
#[derive(Debug, Clone, Copy)]
enum Unit {
    Nanos(u64),
    Secs(u64),
}

impl Unit {
    fn from_name(name: &str) -> Option<Unit> {
        Some(match name {
            "nanos" | "nsec" | "ns" => Unit::Nanos(1),
            "usec" | "us" | "µs" => Unit::Nanos(1_000),
            "millis" | "msec" | "ms" => Unit::Nanos(1_000_000),
            "seconds" | "second" | "secs" | "sec" | "s" => Unit::Secs(1),
            "minutes" | "minute" | "min" | "mins" | "m" => Unit::Secs(60),
            "hours" | "hour" | "hr" | "hrs" | "h" => Unit::Secs(3_600),
            "days" | "day" | "d" => Unit::Secs(86_400),
            "weeks" | "week" | "wk" | "wks" | "w" => Unit::Secs(604_800),
            "months" | "month" | "M" => Unit::Secs(2_630_016),
            "years" | "year" | "yr" | "yrs" | "y" => Unit::Secs(31_557_600),
            _ => return None,
        })
    }
}

/// `numerator / denominator`, the digits after a decimal point.
#[derive(Debug, Clone, Copy)]
struct Fraction {
    numerator: u64,
    denominator: u64,
}

fn is_unit_char(c: char) -> bool {
    c.is_ascii_alphabetic() || c == 'µ'
}

fn mul(a: u64, b: u64) -> Result<u64, DurationError> {
    a.checked_mul(b).ok_or(DurationError::TooLarge)
}

/// `a / b` when exact.
fn exact_div(a: u64, b: u64) -> Result<u64, DurationError> {
    match (a.checked_rem(b), a.checked_div(b)) {
        (Some(0), Some(quotient)) => Ok(quotient),
        _ => Err(DurationError::TooLarge),
    }
}

/// The state machine of humantime 2.4's parser, with the carry of whole seconds out of the
/// nanoseconds checked.
struct DurationParser<'a> {
    src: &'a str,
    chars: std::str::Chars<'a>,
}

impl DurationParser<'_> {
    fn parse(mut self) -> Result<Duration, DurationError> {
        let mut n = self.first_digit()?.ok_or(DurationError::Empty)?;
        let mut out = Duration::ZERO;
        'spans: loop {
            // The number: digits (whitespace between them ignored), maybe a fraction, up to the
            // first letter of the unit.
            let mut fraction = None;
            let mut off = self.off();
            while let Some(c) = self.chars.next() {
                match c {
                    '0'..='9' => {
                        n = n
                            .checked_mul(10)
                            .and_then(|n| n.checked_add(u64::from(c) - u64::from('0')))
                            .ok_or(DurationError::TooLarge)?;
                    }
                    c if c.is_whitespace() => {}
                    c if is_unit_char(c) => break,
                    '.' => {
                        fraction = Some(self.fraction(&mut off)?);
                        break;
                    }
                    _ => return Err(DurationError::InvalidCharacter(off)),
                }
                off = self.off();
            }
            // The unit: letters, up to whitespace, a digit (the next span) or the end.
            let start = off;
            let mut off = self.off();
            while let Some(c) = self.chars.next() {
                match c {
                    '0'..='9' => {
                        self.add_span(n, fraction, start, off, &mut out)?;
                        n = u64::from(c) - u64::from('0');
                        continue 'spans;
                    }
                    c if c.is_whitespace() => break,
                    c if is_unit_char(c) => {}
                    _ => return Err(DurationError::InvalidCharacter(off)),
                }
                off = self.off();
            }
            self.add_span(n, fraction, start, off, &mut out)?;
            n = match self.first_digit()? {
                Some(n) => n,
                None => return Ok(out),
            };
        }
    }

    /// The byte offset of the next character.
    fn off(&self) -> usize {
        self.src.len() - self.chars.as_str().len()
    }

    /// The first digit of the next span, after whitespace; `None` at the end.
    fn first_digit(&mut self) -> Result<Option<u64>, DurationError> {
        let off = self.off();
        for c in self.chars.by_ref() {
            match c {
                '0'..='9' => return Ok(Some(u64::from(c) - u64::from('0'))),
                c if c.is_whitespace() => {}
                _ => return Err(DurationError::NumberExpected(off)),
            }
        }
        Ok(None)
    }

    /// The digits after a decimal point, up to the unit's first letter.
    fn fraction(&mut self, off: &mut usize) -> Result<Fraction, DurationError> {
        let mut numerator = 0u64;
        let mut denominator = 1u64;
        while let Some(c) = self.chars.next() {
            match c {
                '0'..='9' => {
                    denominator = mul(denominator, 10)?;
                    numerator = mul(numerator, 10)?
                        .checked_add(u64::from(c) - u64::from('0'))
                        .ok_or(DurationError::TooLarge)?;
                }
                c if c.is_whitespace() => {}
                c if is_unit_char(c) => break,
                _ => return Err(DurationError::InvalidCharacter(*off)),
            }
            *off = self.off();
        }
        if denominator == 1 {
            // No digit after the point (`1.s`).
            return Err(DurationError::InvalidCharacter(*off));
        }
        Ok(Fraction {
            numerator,
            denominator,
        })
    }

    /// Add `n` (and `fraction`) of the unit at `start..end` to `out`.
    fn add_span(
        &self,
        n: u64,
        fraction: Option<Fraction>,
        start: usize,
        end: usize,
        out: &mut Duration,
    ) -> Result<(), DurationError> {
        let name = self.src.get(start..end).unwrap_or_default();
        let Some(unit) = Unit::from_name(name) else {
            return Err(if name.is_empty() {
                DurationError::UnitNeeded(n)
            } else {
                DurationError::UnknownUnit(name.to_owned())
            });
        };
        match unit {
            Unit::Nanos(per) => add(out, 0, mul(n, per)?)?,
            Unit::Secs(per) => add(out, mul(n, per)?, 0)?,
        }
        if let Some(Fraction {
            numerator,
            denominator,
        }) = fraction
        {
            // As humantime: fractions of sub-second units and of minutes in nanoseconds, of
            // hours and longer units in whole seconds; anything finer is an error.
            match unit {
                Unit::Nanos(1) => return Err(DurationError::TooLarge),
                Unit::Nanos(per) => add(out, 0, exact_div(mul(numerator, per)?, denominator)?)?,
                Unit::Secs(per) if per < 3_600 => add(
                    out,
                    0,
                    exact_div(mul(numerator, mul(per, NANOS_PER_SEC)?)?, denominator)?,
                )?,
                Unit::Secs(per) => add(out, exact_div(mul(numerator, per)?, denominator)?, 0)?,
            }
        }
        Ok(())
    }
}

/// `out += secs + nanos`, or an error on overflow.
fn add(out: &mut Duration, secs: u64, nanos: u64) -> Result<(), DurationError> {
    let nanos = u64::from(out.subsec_nanos())
        .checked_add(nanos)
        .ok_or(DurationError::TooLarge)?;
    let secs = secs
        .checked_add(nanos / NANOS_PER_SEC)
        .and_then(|secs| secs.checked_add(out.as_secs()))
        .ok_or(DurationError::TooLarge)?;
    // Below a billion: fits, and `Duration::new` has nothing to carry.
    let nanos = u32::try_from(nanos % NANOS_PER_SEC).map_err(|_| DurationError::TooLarge)?;
    *out = Duration::new(secs, nanos);
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "tests")]
mod tests {
    use super::*;

    #[test]
    fn tokens_and_header_names() {
        for good in ["x-user", "X-Tenant", "a", "!#$%&'*+-.^_`|~09AZaz"] {
            assert!(is_header_name(good), "{good:?}");
            assert!(is_token(good), "{good:?}");
        }
        for bad in [
            "",
            " ",
            "bad name",
            ":authority",
            "x\0",
            "x\r\ny: 1",
            "é",
            "a,b",
            "a;b",
            "\"q\"",
            "a/b",
            "x\u{7f}",
        ] {
            assert!(!is_header_name(bad), "{bad:?}");
        }
        assert!(is_header_name(&"x".repeat(100_000)));
        assert!(is_cookie_name("session_id") && !is_cookie_name("a b") && !is_cookie_name(""));
        assert!((0..=255u8).filter(|&b| is_tchar(b)).count() == 77);
    }

    #[test]
    fn header_values() {
        assert!(is_header_value(b""));
        assert!(is_header_value(b"text/plain; q=0.5\tx"));
        assert!(is_header_value("café".as_bytes()));
        assert!(is_header_value(b"\xff\xfe"));
        for bad in [&b"a\nb"[..], b"a\rb", b"\0", b"\x7f", b"\x1b[0m"] {
            assert!(!is_header_value(bad), "{bad:?}");
        }
    }

    #[test]
    fn managed_headers() {
        for name in MANAGED_HEADERS {
            assert!(is_managed_header(name));
            assert!(is_header_name(name));
            assert_eq!(name, name.to_ascii_lowercase());
        }
        assert!(is_managed_header("Connection"));
        assert!(is_managed_header("TRANSFER-ENCODING"));
        assert!(is_managed_header("Host"));
        for free in [
            "x-connection",
            "connection ",
            "",
            "cookie",
            "authorization",
            "te2",
        ] {
            assert!(!is_managed_header(free), "{free:?}");
        }
    }

    fn all(header: &[u8]) -> Vec<(String, String)> {
        cookies(header)
            .map(|(n, v)| {
                (
                    String::from_utf8_lossy(n).into_owned(),
                    String::from_utf8_lossy(v).into_owned(),
                )
            })
            .collect()
    }

    #[test]
    fn cookie_pairs() {
        let header = b"theme=dark;  session=abc123 ; other=1; flag; empty=";
        assert_eq!(cookie_value(header, "session"), Some(&b"abc123"[..]));
        assert_eq!(cookie_value(header, "theme"), Some(&b"dark"[..]));
        assert_eq!(cookie_value(header, "empty"), Some(&b""[..]));
        assert_eq!(cookie_value(header, "flag"), None, "no `=`: no cookie");
        assert_eq!(cookie_value(header, "Session"), None, "case-sensitive");
        assert_eq!(cookie_value(header, "sess"), None);
        assert_eq!(cookie_value(b"a=b=c", "a"), Some(&b"b=c"[..]));
        assert_eq!(cookie_value(b"", "a"), None);
        assert_eq!(cookie_value(b";;=;", "a"), None);
        assert_eq!(cookie_value(b"=x", ""), Some(&b"x"[..]));
        assert_eq!(cookie_value(b"s=1; s=2", "s"), Some(&b"1"[..]));
        assert_eq!(
            cookie_values(b"s=1; t=0; s=\"2\"", "s").collect::<Vec<_>>(),
            [&b"1"[..], b"2"]
        );
        assert_eq!(
            all(b" a = 1 ;b=2;;c"),
            [("a".into(), "1".into()), ("b".into(), "2".into())]
        );
    }

    #[test]
    fn cookie_quotes_are_not_part_of_the_value() {
        assert_eq!(cookie_value(b"s=\"abc\"", "s"), Some(&b"abc"[..]));
        assert_eq!(cookie_value(b"s= \"abc\" ", "s"), Some(&b"abc"[..]));
        assert_eq!(cookie_value(b"s=\"\"", "s"), Some(&b""[..]));
        // One pair only, and only when balanced.
        assert_eq!(cookie_value(b"s=\"\"x\"\"", "s"), Some(&b"\"x\""[..]));
        assert_eq!(cookie_value(b"s=\"", "s"), Some(&b"\""[..]));
        assert_eq!(cookie_value(b"s=\"abc", "s"), Some(&b"\"abc"[..]));
        assert_eq!(cookie_value(b"s=abc\"", "s"), Some(&b"abc\""[..]));
        assert_eq!(cookie_value(b"s=a\"b\"c", "s"), Some(&b"a\"b\"c"[..]));
        // The quote is not a separator: a `;` inside quotes still ends the pair.
        assert_eq!(cookie_value(b"s=\"a;b\"", "s"), Some(&b"\"a"[..]));
    }

    #[test]
    fn cookie_parsing_survives_hostile_input() {
        assert_eq!(
            cookie_value(b"s=\xff\xfe; t=1", "s"),
            Some(&b"\xff\xfe"[..])
        );
        assert_eq!(cookie_value(b"\xff=1", "s"), None);
        let huge = [
            &b"a=1; "[..],
            &vec![b';'; 100_000],
            b"s=",
            &vec![b'x'; 100_000],
        ]
        .concat();
        assert_eq!(cookie_value(&huge, "s").map(<[u8]>::len), Some(100_000));
        assert_eq!(cookies(&vec![b'='; 10_000]).count(), 1);
        assert_eq!(cookies(b"\"\"\"").count(), 0);
        assert_eq!(cookie_value(b"s=\t\"x\"\t", "s"), Some(&b"x"[..]));
    }

    #[test]
    fn cookie_removal_keeps_the_others() {
        let headers = vec![b"a=1; session=x".to_vec(), b"b=2".to_vec()];
        assert_eq!(
            cookies_without(&headers, "session"),
            Some(b"a=1; b=2".to_vec())
        );
        assert_eq!(cookies_without(&[b"session=x"], "session"), None);
        assert_eq!(
            cookies_without(&[b"sessionx=1"], "session"),
            Some(b"sessionx=1".to_vec())
        );
        assert_eq!(
            cookies_without(&[&b" session=\"x\" ;; flag ; s=1;session"[..]], "session"),
            Some(b"flag; s=1".to_vec())
        );
        assert_eq!(cookies_without(&[b""; 0], "s"), None);
        assert_eq!(cookies_without(&[&b";;; ;"[..]], "s"), None);
        assert_eq!(
            cookies_without(&[&b"\xff=1; s=2"[..]], "s"),
            Some(b"\xff=1".to_vec())
        );
    }

    #[test]
    fn hex() {
        assert_eq!(hex_digit(b'0'), Some(0));
        assert_eq!(hex_digit(b'9'), Some(9));
        assert_eq!(hex_digit(b'a'), Some(10));
        assert_eq!(hex_digit(b'F'), Some(15));
        for bad in [b'g', b'G', b' ', b'x', 0xff, b'/', b':', b'@', b'`'] {
            assert_eq!(hex_digit(bad), None, "{bad}");
        }
        assert_eq!(decode_hex(""), Some(vec![]));
        assert_eq!(decode_hex("00ff7F"), Some(vec![0, 0xff, 0x7f]));
        for bad in ["0", "abc", "0x00", "zz", "0 ", " 00", "éé", "0\u{0}"] {
            assert_eq!(decode_hex(bad), None, "{bad:?}");
        }
        let long = "ab".repeat(50_000);
        assert_eq!(decode_hex(&long).map(|v| v.len()), Some(50_000));
    }

    #[test]
    fn percent_and_form_decoding() {
        assert!(matches!(form_decode("plain"), Cow::Borrowed(b"plain")));
        assert!(matches!(percent_decode("a+b"), Cow::Borrowed(b"a+b")));
        assert_eq!(&*form_decode("a%20b+c"), b"a b c");
        assert_eq!(&*percent_decode("a%20b+c"), b"a b+c");
        assert_eq!(&*form_decode("%7e%7E"), b"~~");
        assert_eq!(&*form_decode("caf%C3%A9"), "café".as_bytes());
        assert_eq!(&*percent_decode("%ff%00"), [0xff, 0]);
        // Malformed escapes stay literal, whatever comes after them.
        for (input, expected) in [
            ("%", "%"),
            ("%2", "%2"),
            ("%zz", "%zz"),
            ("%%41", "%A"),
            ("100%", "100%"),
            ("%4", "%4"),
            ("%é", "%é"),
            ("%2%41", "%2A"),
            ("%4%", "%4%"),
        ] {
            assert_eq!(&*form_decode(input), expected.as_bytes(), "{input:?}");
            assert_eq!(&*percent_decode(input), expected.as_bytes(), "{input:?}");
        }
        let huge = "%41".repeat(100_000);
        assert_eq!(percent_decode(&huge).len(), 100_000);
    }

    #[test]
    fn unreserved_decoding() {
        assert!(matches!(
            percent_decode_unreserved("/a/b"),
            Cow::Borrowed("/a/b")
        ));
        for (raw, decoded) in [
            ("/%61dmin", "/admin"),
            ("/%2e%2E/x", "/../x"),
            ("/%7E%5f%2D%30", "/~_-0"),
            ("/a%2Fb", "/a%2Fb"),
            ("/a%3fb%23", "/a%3fb%23"),
            ("/%C3%A9", "/%C3%A9"),
            ("/x%zz%", "/x%zz%"),
            ("/é%41", "/éA"),
            ("+", "+"),
        ] {
            assert_eq!(percent_decode_unreserved(raw), decoded, "{raw:?}");
        }
    }

    #[test]
    fn targets_and_addresses() {
        assert_eq!(path_without_query("/a/b?x=1&y=2"), "/a/b");
        assert_eq!(path_without_query("/a/b"), "/a/b");
        assert_eq!(path_without_query("/?"), "/");
        assert_eq!(path_without_query("?"), "");
        assert_eq!(path_without_query(""), "");

        assert_eq!(address_without_port("1.2.3.4:5678"), "1.2.3.4");
        assert_eq!(address_without_port("[::1]:5678"), "::1");
        assert_eq!(address_without_port("[2001:db8::7]:1"), "2001:db8::7");
        assert_eq!(address_without_port("2001:db8::7"), "2001:db8::7");
        assert_eq!(address_without_port("1.2.3.4"), "1.2.3.4");
        assert_eq!(address_without_port("[broken"), "[broken");
        assert_eq!(address_without_port(""), "");

        let ip = |text: &str| text.parse::<IpAddr>().ok();
        assert_eq!(client_ip("10.1.2.3:40000"), ip("10.1.2.3"));
        assert_eq!(client_ip("[2001:db8::1]:443"), ip("2001:db8::1"));
        assert_eq!(client_ip("2001:db8::1"), ip("2001:db8::1"));
        assert_eq!(client_ip("10.1.2.3"), ip("10.1.2.3"));
        assert_eq!(client_ip("[::ffff:10.0.0.1]:1"), ip("::ffff:10.0.0.1"));
        for bad in [
            "",
            "host:80",
            "10.1.2.3:",
            "10.1.2.3:99999",
            "[::1]",
            "::1:x",
            "1.2.3.4.5",
        ] {
            assert_eq!(client_ip(bad), None, "{bad:?}");
        }
    }

    /// Every string here is accepted by humantime 2.4; `parse_duration` must give the same.
    const HUMANTIME_ACCEPTS: &[(&str, Duration)] = &[
        ("0", Duration::ZERO),
        (" 0 ", Duration::ZERO),
        ("0s", Duration::ZERO),
        ("1ns", Duration::from_nanos(1)),
        ("250ms", Duration::from_millis(250)),
        ("1s", Duration::from_secs(1)),
        ("1.5s", Duration::from_millis(1500)),
        ("0.5s", Duration::from_millis(500)),
        ("1m30s", Duration::from_secs(90)),
        ("1m 30s", Duration::from_secs(90)),
        ("1.5m", Duration::from_secs(90)),
        ("2h 37min", Duration::from_secs(9420)),
        ("2h37m", Duration::from_secs(9420)),
        ("0.25h", Duration::from_secs(900)),
        ("1.5h", Duration::from_secs(5400)),
        ("1d", Duration::from_secs(86_400)),
        ("1 day", Duration::from_secs(86_400)),
        ("2 days 3 hours", Duration::from_secs(183_600)),
        ("1w", Duration::from_secs(604_800)),
        ("1M", Duration::from_secs(2_630_016)),
        ("1y", Duration::from_secs(31_557_600)),
        ("3650d", Duration::from_secs(315_360_000)),
        ("10m", Duration::from_secs(600)),
        ("100ms", Duration::from_millis(100)),
        ("1500us", Duration::from_micros(1500)),
        ("1500µs", Duration::from_micros(1500)),
        ("1.5us", Duration::from_nanos(1500)),
        ("2.5ms", Duration::from_micros(2500)),
        ("32ms", Duration::from_millis(32)),
        ("4.2s", Duration::from_millis(4200)),
        ("1.05s", Duration::from_millis(1050)),
        ("1.000s", Duration::from_secs(1)),
        ("1sec", Duration::from_secs(1)),
        ("5 seconds", Duration::from_secs(5)),
        ("1 s", Duration::from_secs(1)),
        (" 1s ", Duration::from_secs(1)),
        ("\t1s\n", Duration::from_secs(1)),
        ("1 0s", Duration::from_secs(10)),
        ("1. 5s", Duration::from_millis(1500)),
        ("1s2ms", Duration::from_millis(1002)),
        ("1s 1s", Duration::from_secs(2)),
        ("500ms 500ms", Duration::from_secs(1)),
        ("999999999ns 1ns", Duration::from_secs(1)),
        ("1hr 2mins 3secs", Duration::from_secs(3723)),
        ("2 weeks", Duration::from_secs(1_209_600)),
        ("1year 1month", Duration::from_secs(34_187_616)),
        ("18446744073709551615s", Duration::from_secs(u64::MAX)),
        (
            "18446744073709551615s 999999999ns",
            Duration::new(u64::MAX, 999_999_999),
        ),
        ("0.000000001s", Duration::from_nanos(1)),
    ];

    /// Rejected by humantime 2.4 too.
    const HUMANTIME_REJECTS: &[&str] = &[
        "",
        "   ",
        "1",
        "15",
        "s",
        "ms",
        "-1s",
        "+1s",
        "1x",
        "5x",
        "soon",
        "an hour",
        "1S",
        "1 sec ond",
        "1.s",
        "1.",
        ".5s",
        "1.5",
        "1..5s",
        "1.5.5s",
        "1.5ns",
        "0.5ns",
        "1.0001h",
        "0.0000000001s",
        "1,5s",
        "1s,2s",
        "1s;",
        "1e3ms",
        "inf",
        "NaN",
        "1s 2",
        "18446744073709551616s",
        "18446744073709551615m",
        "18446744073709551615s 1s",
        "99999999999999999999ms",
        "1.00000000000000000000s",
        "１s",
        "1ｓ",
        "1s\u{0}",
        "é",
    ];

    #[test]
    fn durations_match_humantime() {
        for &(text, expected) in HUMANTIME_ACCEPTS {
            assert_eq!(parse_duration(text), Ok(expected), "{text:?}");
            assert_eq!(
                humantime::parse_duration(text.trim()),
                Ok(expected),
                "humantime on {text:?}"
            );
        }
        for &text in HUMANTIME_REJECTS {
            let err = parse_duration(text).expect_err(text);
            assert!(
                err.starts_with(&format!("invalid duration {text:?}: ")),
                "{err}"
            );
            assert!(
                humantime::parse_duration(text.trim()).is_err(),
                "humantime accepts {text:?}"
            );
        }
    }

    #[test]
    fn duration_errors_say_what_is_wrong() {
        let err = |text: &str| parse_duration(text).expect_err(text);
        assert_eq!(
            err("5x"),
            "invalid duration \"5x\": unknown unit \"x\" (units: ns, us, ms, s, m, h, d, w, M, \
             y, or their long forms); write a number and a unit, like 250ms, 1.5s or 1m30s"
        );
        assert!(err("15").contains("15 needs a unit, as in 15s or 15ms"));
        assert!(err("").contains("it is empty"));
        assert!(err("-1s").contains("expected a number at byte 0"));
        assert!(err("1s,").contains("unexpected character at byte 2"));
        assert!(err("1.5ns").contains("finer than a nanosecond"));
        assert!(err("18446744073709551616s").contains("too large"));
    }

    /// humantime 2.4 panics here (`Duration::new` carrying a second into `u64::MAX` seconds):
    /// the one place the two differ.
    #[test]
    fn durations_overflowing_by_a_carry_are_errors_not_panics() {
        for text in [
            "18446744073709551615s 1000000000ns",
            "18446744073709551615s 500ms 500ms",
            "18446744073709551615s 0.5s 0.5s",
        ] {
            let err = parse_duration(text).expect_err(text);
            assert!(err.contains("too large"), "{err}");
            let humantime = std::panic::catch_unwind(|| humantime::parse_duration(text));
            assert!(humantime.is_err(), "humantime no longer panics on {text:?}");
        }
    }

    /// Random strings over the duration alphabet: the same answer as humantime every time (or
    /// an error where humantime panics).
    #[test]
    fn durations_agree_with_humantime_on_random_input() {
        const PIECES: &[&str] = &[
            "0",
            "1",
            "2",
            "5",
            "9",
            "00",
            "18446744073709551615",
            "1000000000",
            ".",
            " ",
            "\t",
            "s",
            "ms",
            "m",
            "h",
            "d",
            "ns",
            "us",
            "µs",
            "min",
            "M",
            "y",
            "w",
            "sec",
            "x",
            "-",
            ",",
            "é",
            "hours",
        ];
        let mut state = 0x9e37_79b9_7f4a_7c15_u64;
        let mut next = move || {
            // xorshift64*
            state ^= state >> 12;
            state ^= state << 25;
            state ^= state >> 27;
            state.wrapping_mul(0x2545_f491_4f6c_dd1d)
        };
        let mut accepted = 0;
        for _ in 0..20_000 {
            let len = next() % 8;
            let text: String = (0..len)
                .map(|_| PIECES[usize::try_from(next() % PIECES.len() as u64).unwrap_or(0)])
                .collect();
            let ours = parse_duration(&text);
            let theirs = std::panic::catch_unwind(|| humantime::parse_duration(text.trim()));
            match theirs {
                Ok(Ok(expected)) => {
                    accepted += 1;
                    assert_eq!(ours, Ok(expected), "{text:?}");
                }
                Ok(Err(_)) | Err(_) => assert!(ours.is_err(), "{text:?}: {ours:?}"),
            }
        }
        assert!(accepted > 500, "only {accepted} accepted strings");
    }

    #[test]
    fn durations_survive_hostile_input() {
        for text in [
            "9".repeat(100_000),
            "1s".repeat(100_000),
            " ".repeat(100_000),
            format!("1.{}s", "0".repeat(100_000)),
            format!("1{}", "µ".repeat(10_000)),
            "\u{feff}1s".to_owned(),
            "1\u{a0}s".to_owned(),
        ] {
            let _ = parse_duration(&text);
        }
        assert_eq!(
            parse_duration(&"1s".repeat(100_000)),
            Ok(Duration::from_secs(100_000))
        );
    }

    #[test]
    fn formatted_durations_parse_back() {
        for (duration, text) in [
            (Duration::ZERO, "0s"),
            (Duration::from_secs(600), "10m"),
            (Duration::from_millis(1500), "1s 500ms"),
            (Duration::from_secs(90_061), "1d 1h 1m 1s"),
            (Duration::new(1, 2_003_004), "1s 2ms 3us 4ns"),
            (
                Duration::new(u64::MAX, 999_999_999),
                "213503982334601d 7h 15s 999ms 999us 999ns",
            ),
        ] {
            assert_eq!(format_duration(duration), text);
            assert_eq!(parse_duration(text), Ok(duration), "{text}");
        }
    }
}
