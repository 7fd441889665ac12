//! Label and field selectors, as LIST, WATCH and DELETE-collection take them.

use serde_json::Value;

/// A label selector: every requirement must hold.
#[derive(Debug, Clone, Default, PartialEq)]
pub(super) struct LabelSelector(Vec<(String, LabelOp)>);

#[derive(Debug, Clone, PartialEq)]
enum LabelOp {
    Equals(String),
    NotEquals(String),
    In(Vec<String>),
    NotIn(Vec<String>),
    Exists,
    DoesNotExist,
}

impl LabelSelector {
    /// Parses `app=demo,tier!=db,env in (a, b),!legacy,track`.
    pub(super) fn parse(text: &str) -> Result<Self, String> {
        let mut requirements = Vec::new();
        for term in split_top_level(text) {
            let term = term.trim();
            if term.is_empty() {
                continue;
            }
            requirements.push(parse_term(term)?);
        }
        Ok(Self(requirements))
    }

    /// Whether an object with these labels is selected.
    pub(super) fn matches(&self, object: &Value) -> bool {
        let labels = &object["metadata"]["labels"];
        let label = |key: &str| labels.get(key).and_then(Value::as_str);
        self.0.iter().all(|(key, op)| match op {
            LabelOp::Equals(v) => label(key) == Some(v.as_str()),
            LabelOp::NotEquals(v) => label(key) != Some(v.as_str()),
            LabelOp::In(set) => label(key).is_some_and(|l| set.iter().any(|v| v == l)),
            LabelOp::NotIn(set) => label(key).is_none_or(|l| set.iter().all(|v| v != l)),
            LabelOp::Exists => label(key).is_some(),
            LabelOp::DoesNotExist => label(key).is_none(),
        })
    }
}

/// Splits on commas outside parentheses.
fn split_top_level(text: &str) -> Vec<&str> {
    let mut terms = Vec::new();
    let (mut depth, mut start) = (0usize, 0);
    for (i, c) in text.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => depth = depth.saturating_sub(1),
            ',' if depth == 0 => {
                terms.push(&text[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    terms.push(&text[start..]);
    terms
}

fn parse_term(term: &str) -> Result<(String, LabelOp), String> {
    let unparsable = || format!("unable to parse requirement: {term:?}");
    if let Some(key) = term.strip_prefix('!') {
        return Ok((check_key(key.trim(), term)?, LabelOp::DoesNotExist));
    }
    for (word, negated) in [(" notin ", true), (" in ", false)] {
        if let Some((key, set)) = term.split_once(word) {
            let set = set
                .trim()
                .strip_prefix('(')
                .and_then(|s| s.strip_suffix(')'))
                .ok_or_else(unparsable)?;
            let values = set.split(',').map(|v| v.trim().to_owned()).collect();
            let op = if negated {
                LabelOp::NotIn(values)
            } else {
                LabelOp::In(values)
            };
            return Ok((check_key(key.trim(), term)?, op));
        }
    }
    if let Some((key, value)) = term.split_once("!=") {
        return Ok((
            check_key(key.trim(), term)?,
            LabelOp::NotEquals(value.trim().to_owned()),
        ));
    }
    if let Some((key, value)) = term.split_once('=') {
        let value = value.strip_prefix('=').unwrap_or(value);
        return Ok((
            check_key(key.trim(), term)?,
            LabelOp::Equals(value.trim().to_owned()),
        ));
    }
    if term.contains(['<', '>', '(', ')', ' ']) {
        return Err(unparsable());
    }
    Ok((check_key(term, term)?, LabelOp::Exists))
}

fn check_key(key: &str, term: &str) -> Result<String, String> {
    let valid = |c: char| c.is_ascii_alphanumeric() || "-_./".contains(c);
    if key.is_empty() || !key.chars().all(valid) {
        return Err(format!(
            "unable to parse requirement: {term:?}: invalid label key {key:?}"
        ));
    }
    Ok(key.to_owned())
}

/// A field selector over `metadata.name` and `metadata.namespace`, the fields every
/// resource supports.
#[derive(Debug, Clone, Default, PartialEq)]
pub(super) struct FieldSelector(Vec<(&'static str, bool, String)>);

impl FieldSelector {
    /// Parses `metadata.name=x,metadata.namespace!=y`.
    pub(super) fn parse(text: &str) -> Result<Self, String> {
        let mut terms = Vec::new();
        for term in text.split(',').map(str::trim).filter(|t| !t.is_empty()) {
            let (field, equal, value) = if let Some((f, v)) = term.split_once("!=") {
                (f, false, v)
            } else if let Some((f, v)) = term.split_once("==") {
                (f, true, v)
            } else if let Some((f, v)) = term.split_once('=') {
                (f, true, v)
            } else {
                return Err(format!("invalid selector: {term:?}; expected key=value"));
            };
            let field = match field.trim() {
                "metadata.name" => "name",
                "metadata.namespace" => "namespace",
                other => return Err(format!("field label not supported: {other}")),
            };
            terms.push((field, equal, value.trim().to_owned()));
        }
        Ok(Self(terms))
    }

    /// Whether the object is selected.
    pub(super) fn matches(&self, object: &Value) -> bool {
        self.0.iter().all(|(field, equal, value)| {
            let actual = object["metadata"][*field].as_str().unwrap_or("");
            (actual == value) == *equal
        })
    }
}
