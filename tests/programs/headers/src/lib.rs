//! Test guest: edits request and response headers and echoes the request's properties.
//!
//! Request headers: sets `x-weft-added: 1`, removes `x-weft-remove`, appends `x-weft-multi: b`
//! (keeping existing values), and if `x-weft-rewrite` is present sets the path to its value (a
//! refused path is reported in the request header `x-weft-rewrite-error`).
//!
//! Response headers: sets `x-weft-response: 1`, `x-weft-saw-path: <request path>`,
//! `x-weft-readonly: ok` when editing the request fails with `ReadOnly` (otherwise a description
//! of what happened), `x-weft-route: <route name or none>`, `x-weft-listener: <listener name>`,
//! `x-weft-direction: inbound|outbound`, `x-weft-client: yes|no` (client address known),
//! `x-weft-saw-authority: <request authority or none>` and `x-weft-peer: <the caller's
//! SPIFFE ID (mTLS) or plaintext>`.

use weft_sdk::{Action, EditError, Filter, Request, Response};

/// Edits headers; see the crate docs.
pub struct Headers;

impl Filter for Headers {
    type Config = ();

    fn new(_config: ()) -> Result<Self, String> {
        Ok(Headers)
    }

    fn on_request_headers(&self, request: &Request) -> Action {
        // These edits are valid in a request hook: a refusal is a host bug, so make it loud.
        request
            .set_header("x-weft-added", "1")
            .expect("set x-weft-added");
        request
            .remove_header("x-weft-remove")
            .expect("remove x-weft-remove");
        request
            .append_header("x-weft-multi", "b")
            .expect("append x-weft-multi");
        if let Some(path) = request.header("x-weft-rewrite")
            && let Err(err) = request.set_path(&path)
        {
            request
                .set_header("x-weft-rewrite-error", err.to_string())
                .expect("set x-weft-rewrite-error");
        }
        Action::Continue
    }

    fn on_response_headers(&self, request: &Request, response: &Response) -> Action {
        let readonly = match request.set_header("x-late", "1") {
            Err(EditError::ReadOnly) => "ok".to_owned(),
            Err(err) => format!("unexpected error: {err}"),
            Ok(()) => "unexpectedly accepted".to_owned(),
        };
        let route = request.route_name().unwrap_or_else(|| "none".to_owned());
        let client = if request.client_address().is_some() {
            "yes"
        } else {
            "no"
        };
        let fields = [
            ("x-weft-response", "1".to_owned()),
            ("x-weft-saw-path", request.path()),
            ("x-weft-readonly", readonly),
            ("x-weft-route", route),
            ("x-weft-listener", request.listener_name()),
            ("x-weft-direction", request.direction().as_str().to_owned()),
            ("x-weft-client", client.to_owned()),
            (
                "x-weft-saw-authority",
                request.authority().unwrap_or_else(|| "none".to_owned()),
            ),
            (
                "x-weft-peer",
                request
                    .peer_identity()
                    .unwrap_or_else(|| "plaintext".to_owned()),
            ),
        ];
        for (name, value) in fields {
            response.set_header(name, value).expect(name);
        }
        Action::Continue
    }
}

weft_sdk::export_filter!(Headers);
