//! YAML diagnostics for weft's files: errors that say which file, line, column and field is
//! wrong, for the proxy's config, the control plane's filter definitions and the harness's test
//! cases alike.
//!
//! ```
//! #[derive(serde::Deserialize, Debug)]
//! struct Listener { address: String }
//! let err = weft_yaml::parse_yaml::<Listener>("address: [1]\n", "weft.yaml".as_ref())
//!     .expect_err("a sequence is not a string");
//! assert_eq!(err.line, Some(1));
//! assert_eq!(err.field, "address");
//! ```

use std::cell::OnceCell;
use std::fmt;
use std::path::{Path, PathBuf};

pub mod locate;
mod values;

pub use self::locate::{FieldPath, Locator, Mark, Segment};
pub use self::values::{format_size, parse_duration, parse_size};

/// A configuration file that could not be read or is not valid.
///
/// Displays as `file:line:column: field: message`; the line and column are left out when
/// unknown, and the field when the problem is with the file as a whole.
#[derive(Debug, Clone, thiserror::Error)]
pub struct ConfigError {
    /// The file the text came from (`<inline>` for text without one).
    pub file: PathBuf,
    /// 1-based line of the offending value.
    pub line: Option<usize>,
    /// 1-based column of the offending value, in characters.
    pub column: Option<usize>,
    /// Path to the offending field, like `listeners[0].routes[1].upstream`; empty for the
    /// document itself.
    pub field: String,
    /// What is wrong, and how to fix it.
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file.display())?;
        if let Some(line) = self.line {
            write!(f, ":{line}")?;
            if let Some(column) = self.column {
                write!(f, ":{column}")?;
            }
        }
        f.write_str(": ")?;
        if !self.field.is_empty() {
            write!(f, "{}: ", self.field)?;
        }
        f.write_str(&self.message)
    }
}

/// One YAML text being turned into typed values: knows its file and finds positions in it on
/// demand (a valid file is parsed once, by serde; positions are looked up only for errors).
#[derive(Debug)]
pub struct Document<'a> {
    file: &'a Path,
    src: &'a str,
    locator: OnceCell<Locator>,
}

impl<'a> Document<'a> {
    /// The text `src`, read from `file`.
    pub fn new(src: &'a str, file: &'a Path) -> Self {
        Self {
            file,
            src,
            locator: OnceCell::new(),
        }
    }

    /// The file the text came from.
    pub fn file(&self) -> &'a Path {
        self.file
    }

    /// Positions of the values in the text.
    pub fn locator(&self) -> &Locator {
        self.locator.get_or_init(|| Locator::new(self.src))
    }

    /// Deserialize the whole text into `T`.
    pub fn parse<T: serde::de::DeserializeOwned>(&self) -> Result<T, ConfigError> {
        serde_path_to_error::deserialize(serde_norway::Deserializer::from_str(self.src))
            .map_err(|err| self.serde_error(err))
    }

    /// An error at `mark` about the value at `field`.
    pub fn error_at(&self, mark: Option<Mark>, field: &FieldPath, message: String) -> ConfigError {
        ConfigError {
            file: self.file.to_owned(),
            line: mark.map(|m| m.line),
            column: mark.map(|m| m.column),
            field: field.to_string(),
            message,
        }
    }

    /// An error about the value at `field`, located in the source (or at its nearest parent
    /// present).
    pub fn error(&self, field: &FieldPath, message: impl Into<String>) -> ConfigError {
        self.error_at(self.locator().nearest(field), field, message.into())
    }

    /// serde's error, with its position and field path as fields of the error rather than
    /// text in its message.
    pub fn serde_error(&self, err: serde_path_to_error::Error<serde_norway::Error>) -> ConfigError {
        let path = FieldPath::from(err.path());
        let err = err.into_inner();
        let location = err.location();
        let mut message = err.to_string();
        // serde_norway appends the position, which the error carries as fields anyway.
        if let Some(location) = &location {
            let suffix = format!(" at line {} column {}", location.line(), location.column());
            if let Some(at) = message.find(&suffix) {
                message.replace_range(at..at + suffix.len(), "");
            }
        }
        // It also prefixes the path of the value it was reading, which is `path` or, for an
        // unknown or duplicate key, its parent. At the root there is no prefix.
        let mut field = FieldPath::root();
        for len in (1..=path.segments().len()).rev() {
            let prefix = path.prefix(len);
            if let Some(rest) = message.strip_prefix(&format!("{prefix}: ")) {
                message = rest.to_owned();
                field = prefix;
                break;
            }
        }
        let mut mark = location.map(|l| Mark {
            line: l.line(),
            column: l.column(),
        });
        // serde_norway places a duplicate key at the start of its mapping; point at the key.
        if let Some(key) = message
            .strip_prefix("duplicate field `")
            .and_then(|rest| rest.split('`').next())
        {
            mark = self.locator().key(&field.key(key)).or(mark);
        }
        if mark.is_none() {
            mark = self.locator().nearest(&path);
        }
        self.error_at(mark, &field, message)
    }
}

/// Parse YAML text from `origin` into `T`, with errors that name the file, line, column and
/// field.
pub fn parse_yaml<T: serde::de::DeserializeOwned>(
    src: &str,
    origin: &Path,
) -> Result<T, ConfigError> {
    Document::new(src, origin).parse()
}

/// An error about the value at `keys` (mapping keys from the document's root) in the YAML
/// text `src` from `origin`, located at that value's line and column (or the nearest parent
/// present). For checks made after [`parse_yaml`] succeeded.
pub fn error_at(
    src: &str,
    origin: &Path,
    keys: &[&str],
    message: impl Into<String>,
) -> ConfigError {
    let field = keys
        .iter()
        .fold(FieldPath::root(), |path, key| path.key(key));
    Document::new(src, origin).error(&field, message)
}
