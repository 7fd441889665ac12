//! Why a fetch failed ([`FetchError`]), and the helpers that turn underlying errors into the
//! one-line messages a status condition carries.

use std::fmt;

/// Why a module could not be had. [`FetchError::reason`] is the reason of the `Ready`
/// condition; the Display text is its message.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    /// The bytes arrived but their digest is not `spec.sha256`.
    #[error(
        "the module from {from} has sha256 {actual}, but spec.sha256 is {expected}; if the module \
         was changed on purpose, set spec.sha256 to {actual}, otherwise find out who replaced it"
    )]
    DigestMismatch {
        /// Where the module came from, like `oci://registry.example.com/filters/authz:1.0`.
        from: String,
        /// `spec.sha256`.
        expected: String,
        /// The digest of the bytes that arrived.
        actual: String,
    },
    /// Anything else: network, TLS, HTTP status, registry error, missing ConfigMap, key or
    /// Secret, a module too large, a malformed URL or reference, a timeout. Also what
    /// [`push`](fn@super::push) and [`Fetcher::new`](super::Fetcher::new) return, with `from`
    /// naming the destination or the bad option.
    #[error("{from}: {message}")]
    Fetch {
        /// Where the module was to come from, like `https://host/authz.wasm`.
        from: String,
        /// What went wrong, with the underlying causes.
        message: String,
    },
    /// The spec names no source the cluster can serve (`file`, none, or several), or its
    /// `sha256` is not a digest.
    #[error("{message}")]
    Source {
        /// What is wrong and what to write instead.
        message: String,
    },
}

impl FetchError {
    /// `DigestMismatch`, `FetchFailed` or `InvalidSource`: the reason of the status condition.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::DigestMismatch { .. } => "DigestMismatch",
            Self::Fetch { .. } => "FetchFailed",
            Self::Source { .. } => "InvalidSource",
        }
    }
}

pub(super) fn failure(from: &str, message: impl Into<String>) -> FetchError {
    FetchError::Fetch {
        from: from.to_owned(),
        message: message.into(),
    }
}

// An error and its causes, as one line. reqwest's own message is "error sending request";
// what went wrong (a refused connection, an unknown certificate issuer) is in the sources.
// Registries' error bodies end in newlines; a status condition reads best as one line.
pub(super) use weft_runtime::error_chain as chain;

pub(super) fn kube_message(
    doing: &str,
    resource: &str,
    namespace: &str,
    error: &kube::Error,
) -> String {
    let hint = match error {
        kube::Error::Api(status) if status.code == 403 => format!(
            "; the control plane's service account needs `get` on {resource} in namespace \
             {namespace}"
        ),
        _ => String::new(),
    };
    format!("{doing}: {}{hint}", chain(error))
}

pub(super) fn list<T: fmt::Display>(items: impl IntoIterator<Item = T>) -> String {
    let items: Vec<String> = items.into_iter().map(|item| item.to_string()).collect();
    if items.is_empty() {
        "none".to_owned()
    } else {
        items.join(", ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_chains_read_as_one_line() {
        let inner = std::io::Error::other("{\"errors\":[]}\n");
        let outer = std::io::Error::other(Wrapped(inner));
        assert_eq!(chain(&outer), "request failed: {\"errors\":[]}");
    }

    #[derive(Debug)]
    struct Wrapped(std::io::Error);

    impl fmt::Display for Wrapped {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("request failed")
        }
    }

    impl std::error::Error for Wrapped {
        fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
            Some(&self.0)
        }
    }

    #[test]
    fn reasons() {
        let mismatch = FetchError::DigestMismatch {
            from: "https://h/x.wasm".to_owned(),
            expected: "a".repeat(64),
            actual: "b".repeat(64),
        };
        assert_eq!(mismatch.reason(), "DigestMismatch");
        let text = mismatch.to_string();
        assert!(
            text.contains("https://h/x.wasm")
                && text.contains(&"a".repeat(64))
                && text.contains(&"b".repeat(64))
        );
        assert_eq!(failure("x", "y").reason(), "FetchFailed");
    }
}
