//! Example weft filter: rejects requests that lack a required header with a local `400`, and adds
//! a header to every upstream response.
//!
//! Build with `cargo build --profile guest --target wasm32-wasip2 -p header-filter`, then run the
//! proxy with `cargo run --release -p weft-proxy -- --config examples/header-filter/weft.yaml`
//! (see `README.md` for the curls to try).
//!
//! Configuration, every field optional:
//!
//! ```yaml
//! config:
//!   required_header: x-user        # default x-user
//!   response_header:               # default {name: x-filtered-by, value: weft}
//!     name: x-filtered-by
//!     value: weft
//! ```

use serde::Deserialize;
use weft_sdk::{Action, Filter, LocalResponse, Request, Response};

/// The filter's configuration.
#[derive(Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Requests without this header get a `400` from the proxy.
    pub required_header: String,
    /// Added to every upstream response.
    pub response_header: ResponseHeader,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            required_header: "x-user".to_owned(),
            response_header: ResponseHeader::default(),
        }
    }
}

/// A header to add to responses.
#[derive(Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ResponseHeader {
    /// The header name.
    pub name: String,
    /// The header value.
    pub value: String,
}

impl Default for ResponseHeader {
    fn default() -> Self {
        ResponseHeader {
            name: "x-filtered-by".to_owned(),
            value: "weft".to_owned(),
        }
    }
}

/// Requires a request header and tags responses.
pub struct HeaderFilter {
    config: Config,
}

impl Filter for HeaderFilter {
    type Config = Config;

    fn new(config: Config) -> Result<Self, String> {
        // The proxy would reject these names on every request; better to refuse the config once.
        if config.required_header.is_empty() {
            return Err("required_header must not be empty".to_owned());
        }
        if config.response_header.name.is_empty() {
            return Err("response_header.name must not be empty".to_owned());
        }
        Ok(HeaderFilter { config })
    }

    fn on_request_headers(&self, request: &Request) -> Action {
        let required = &self.config.required_header;
        if request.header_bytes(required).is_some() {
            return Action::Continue;
        }
        Action::Respond(
            LocalResponse::new(400)
                .header("content-type", "text/plain")
                .body(format!("missing required header: {required}\n")),
        )
    }

    fn on_response_headers(&self, _request: &Request, response: &Response) -> Action {
        let header = &self.config.response_header;
        if let Err(err) = response.append_header(&header.name, &header.value) {
            weft_sdk::warn!("cannot add response header {}: {err}", header.name);
        }
        Action::Continue
    }
}

weft_sdk::export_filter!(HeaderFilter);
