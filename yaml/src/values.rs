//! Values that YAML gives as strings: sizes and durations, with errors that say what is wrong
//! without repeating the value.

use std::time::Duration;

const KIB: u64 = 1 << 10;
const MIB: u64 = 1 << 20;
const GIB: u64 = 1 << 30;

/// Parses `123`, `123B`, `64KiB`, `16MiB`, `1GiB` (powers of 1024).
pub fn parse_size(text: &str) -> Result<u64, String> {
    let text = text.trim();
    let digits = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(digits);
    let unit = unit.trim_start();
    if number.is_empty() {
        return Err(
            "expected a number of bytes, or a number followed by B, KiB, MiB or GiB, like 16MiB"
                .to_owned(),
        );
    }
    if unit.starts_with('.') {
        return Err("use a whole number, like 1536MiB rather than 1.5GiB".to_owned());
    }
    let multiplier = match unit {
        "" | "B" => 1,
        "KiB" => KIB,
        "MiB" => MIB,
        "GiB" => GIB,
        "TiB" => 1 << 40,
        _ => {
            return Err(format!(
                "unknown unit {unit:?}; use B, KiB, MiB or GiB (powers of 1024)"
            ));
        }
    };
    number
        .parse::<u64>()
        .ok()
        .and_then(|n| n.checked_mul(multiplier))
        .ok_or_else(|| "too large".to_owned())
}

/// The largest unit that divides `bytes` exactly, for messages.
pub fn format_size(bytes: u64) -> String {
    for (unit, size) in [("GiB", GIB), ("MiB", MIB), ("KiB", KIB)] {
        if bytes >= size && bytes.is_multiple_of(size) {
            return format!("{}{unit}", bytes / size);
        }
    }
    format!("{bytes}B")
}

/// Parses a duration as filters do ([`weft_text::parse_duration`]): `250ms`, `1.5s`, `1m30s`,
/// `2h 37min`; surrounding whitespace is ignored. The error names the text.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    weft_text::parse_duration(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_sizes() {
        for (text, bytes) in [
            ("0", 0),
            ("1024", 1024),
            ("7B", 7),
            ("64KiB", 64 << 10),
            ("16 MiB", 16 << 20),
            ("1GiB", 1 << 30),
            ("2TiB", 2 << 40),
        ] {
            assert_eq!(parse_size(text), Ok(bytes), "{text}");
        }
        for text in ["", "MiB", "1 MB", "1mib", "1.5GiB", "99999999999TiB", "-1"] {
            assert!(parse_size(text).is_err(), "{text}");
        }
        assert_eq!(format_size(32 << 20), "32MiB");
        assert_eq!(format_size(1536), "1536B");
    }
}
