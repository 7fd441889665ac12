//! Modules from `https://` URLs: one pooled client, no credentials kept, passwords in URLs
//! redacted from messages.

use bytes::Bytes;
use futures_util::StreamExt;

use super::error::{FetchError, chain, failure};
use super::trust::tls_hint;
use super::{Fetcher, read_limited};

impl Fetcher {
    pub(super) async fn fetch_url(&self, from: &str, url: &str) -> Result<Bytes, FetchError> {
        let parsed =
            reqwest::Url::parse(url).map_err(|e| failure(from, format!("not a valid URL: {e}")))?;
        if parsed.scheme() != "https" {
            return Err(failure(
                from,
                format!(
                    "only https:// URLs are fetched, not {}://; serve the module over HTTPS or \
                     push it to an OCI registry",
                    parsed.scheme()
                ),
            ));
        }
        // The URL is in `from` already, and may hold a password.
        let response = self.inner.https.get(parsed).send().await.map_err(|e| {
            let message = chain(&e.without_url());
            let hint = tls_hint(&message, false);
            failure(from, format!("{message}{hint}"))
        })?;
        let status = response.status();
        if !status.is_success() {
            return Err(failure(
                from,
                format!("the server answered {status}, not 2xx"),
            ));
        }
        let limit = self.inner.options.max_module_bytes;
        let announced = response.content_length();
        let body = response
            .bytes_stream()
            .map(|chunk| chunk.map_err(reqwest::Error::without_url));
        read_limited(announced, body, limit)
            .await
            .map_err(|e| failure(from, e))
    }
}

/// `url` with any password replaced, for messages and status conditions.
pub(super) fn redact_url(url: &str) -> String {
    match reqwest::Url::parse(url) {
        Ok(mut parsed) if parsed.password().is_some() => {
            let _ = parsed.set_password(Some("REDACTED"));
            parsed.to_string()
        }
        _ => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_in_urls_are_redacted() {
        assert_eq!(
            redact_url("https://user:secret@host/x.wasm"),
            "https://user:REDACTED@host/x.wasm"
        );
        assert_eq!(redact_url("https://host/x.wasm"), "https://host/x.wasm");
    }
}
