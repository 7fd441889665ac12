//! Turning the JSON configuration the proxy passes to `configure` into the filter's config type.

use serde::de::DeserializeOwned;
use serde_path_to_error::Segment;

/// Deserialize `json` into `T`, with errors an operator can act on: they name the field
/// (``config field `limits[0].capacity`: invalid type: string "x", expected u32``) and leave out
/// the position in the JSON text, which the proxy generated from its own configuration file.
///
/// `null` (no configuration given) is also tried as `{}`, so that a struct whose fields all have
/// defaults accepts it and a struct with required fields reports the first missing one.
pub(crate) fn parse<T: DeserializeOwned>(json: &str) -> Result<T, String> {
    match deserialize(json) {
        Ok(value) => Ok(value),
        Err(null_error) if json.trim() == "null" => match deserialize("{}") {
            Ok(value) => Ok(value),
            Err(object_error) if object_error.starts_with("missing field") => Err(object_error),
            Err(_) => Err(null_error),
        },
        Err(error) => Err(error),
    }
}

fn deserialize<T: DeserializeOwned>(json: &str) -> Result<T, String> {
    let mut deserializer = serde_json::Deserializer::from_str(json);
    let value = serde_path_to_error::deserialize(&mut deserializer).map_err(|error| {
        let message = describe(error.inner());
        let mut segments: Vec<_> = error.path().iter().collect();
        // The path of an unknown field ends with that field, which the message already names:
        // point at the object holding it instead, as for a missing field.
        if message.starts_with("unknown field") {
            segments.pop();
        }
        match field_path(&segments) {
            Some(path) => format!("config field `{path}`: {message}"),
            None => message,
        }
    })?;
    deserializer.end().map_err(|error| describe(&error))?;
    Ok(value)
}

/// `limits[0].capacity`, or `None` for the root.
fn field_path(segments: &[&Segment]) -> Option<String> {
    let (first, rest) = segments.split_first()?;
    let mut path = first.to_string();
    for segment in rest {
        if !matches!(segment, Segment::Seq { .. }) {
            path.push('.');
        }
        path.push_str(&segment.to_string());
    }
    Some(path)
}

/// The error's message, without the position for errors about the data (as opposed to the JSON
/// syntax), where the field path says more.
fn describe(error: &serde_json::Error) -> String {
    let message = error.to_string();
    if !error.is_data() || error.line() == 0 {
        return message;
    }
    let position = format!(" at line {} column {}", error.line(), error.column());
    match message.strip_suffix(&position) {
        Some(stripped) => stripped.to_owned(),
        None => message,
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "tests")]
mod tests {
    use std::collections::BTreeMap;

    use serde::Deserialize;

    use super::*;

    #[derive(Debug, Deserialize, PartialEq)]
    #[serde(deny_unknown_fields)]
    struct Limits {
        limits: Vec<Limit>,
    }

    #[derive(Debug, Deserialize, PartialEq)]
    #[serde(deny_unknown_fields)]
    struct Limit {
        capacity: u32,
    }

    #[derive(Debug, Default, Deserialize, PartialEq)]
    #[serde(default, deny_unknown_fields)]
    struct Optional {
        name: Option<String>,
        count: u32,
    }

    #[test]
    fn nested_error_names_the_field_path() {
        let error = parse::<Limits>(r#"{"limits": [{"capacity": "x"}]}"#).unwrap_err();
        assert_eq!(
            error,
            r#"config field `limits[0].capacity`: invalid type: string "x", expected u32"#
        );
    }

    #[test]
    fn root_error_is_the_serde_message() {
        let error = parse::<u32>(r#""x""#).unwrap_err();
        assert_eq!(error, r#"invalid type: string "x", expected u32"#);
    }

    #[test]
    fn unknown_field_is_rejected() {
        let error = parse::<Optional>(r#"{"nmae": "a"}"#).unwrap_err();
        assert_eq!(error, "unknown field `nmae`, expected `name` or `count`");
        let error = parse::<Limits>(r#"{"limits": [{"capacity": 1}, {"cap": 1}]}"#).unwrap_err();
        assert_eq!(
            error,
            "config field `limits[1]`: unknown field `cap`, expected `capacity`"
        );
    }

    #[test]
    fn null_is_accepted_by_unit_option_and_all_default_structs() {
        parse::<()>("null").unwrap();
        assert_eq!(parse::<Option<Limits>>("null").unwrap(), None);
        assert_eq!(parse::<Optional>("null").unwrap(), Optional::default());
        assert_eq!(
            parse::<BTreeMap<String, u32>>("null").unwrap(),
            BTreeMap::new()
        );
    }

    #[test]
    fn null_for_required_fields_says_which_is_missing() {
        assert_eq!(
            parse::<Limits>("null").unwrap_err(),
            "missing field `limits`"
        );
        assert_eq!(
            parse::<u32>("null").unwrap_err(),
            "invalid type: null, expected u32"
        );
    }

    #[test]
    fn missing_nested_field() {
        assert_eq!(
            parse::<Limits>(r#"{"limits": [{}]}"#).unwrap_err(),
            "config field `limits[0]`: missing field `capacity`"
        );
    }

    #[test]
    fn syntax_errors_keep_their_position() {
        let error = parse::<Limits>("{").unwrap_err();
        assert!(error.contains("line 1 column 1"), "{error}");
        let error = parse::<u32>("1 2").unwrap_err();
        assert!(error.starts_with("trailing characters"), "{error}");
    }

    #[test]
    fn valid_config() {
        assert_eq!(
            parse::<Limits>(r#"{"limits": [{"capacity": 3}]}"#).unwrap(),
            Limits {
                limits: vec![Limit { capacity: 3 }]
            }
        );
    }
}
