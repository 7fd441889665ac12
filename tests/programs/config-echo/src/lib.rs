//! Test guest: echoes its configuration.
//!
//! Config: `{ greeting: String, status: Option<u16> }`, unknown fields rejected, and an empty
//! greeting rejected by `new` with `greeting must not be empty`. With `status`, every request gets
//! a local reply with that status and the greeting as body; without it, requests continue and
//! responses get `x-greeting: <greeting>`.

use serde::Deserialize;
use weft_sdk::{Action, Filter, LocalResponse, Request, Response};

/// The filter's configuration.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Echoed as body or header.
    pub greeting: String,
    /// Reply locally with this status.
    pub status: Option<u16>,
}

/// Echoes [`Config`].
pub struct ConfigEcho {
    config: Config,
}

impl Filter for ConfigEcho {
    type Config = Config;

    fn new(config: Config) -> Result<Self, String> {
        if config.greeting.is_empty() {
            return Err("greeting must not be empty".to_owned());
        }
        Ok(ConfigEcho { config })
    }

    fn on_request_headers(&self, _request: &Request) -> Action {
        match self.config.status {
            Some(status) => {
                Action::Respond(LocalResponse::new(status).body(self.config.greeting.as_str()))
            }
            None => Action::Continue,
        }
    }

    fn on_response_headers(&self, _request: &Request, response: &Response) -> Action {
        response
            .set_header("x-greeting", &self.config.greeting)
            .expect("set x-greeting");
        Action::Continue
    }
}

weft_sdk::export_filter!(ConfigEcho);
