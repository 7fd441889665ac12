//! The filter's logic without host calls: the check request built from what the request holds
//! ([`check_request`]), and what to do with the answer ([`decide`]), as a [`Decision`] whose
//! request edits ([`Edit`]) are applied with [`apply`]. All of it runs natively in unit tests on
//! a [`FakeRequest`](weft_sdk::facts::FakeRequest).

use weft_sdk::facts::{RequestEdits, RequestFacts};
use weft_sdk::text;
use weft_sdk::{Action, CallError, CallRequest, CallResponse, EditError, LocalResponse};

use crate::config::{Settings, any_matches};

/// The header added to a request let through by `failure_mode_allow` after a failed check
/// (Envoy's `x-envoy-auth-failure-mode-allowed`). Client-sent copies are removed from other
/// requests when `failure_mode_allow` is on, and the authorization service cannot set it.
pub const FAILURE_MODE_ALLOWED_HEADER: &str = "x-ext-authz-failure-mode-allowed";

/// The check for `request`: `<method> <path_prefix><path and query>` to the configured upstream,
/// with the allowed headers the request holds (every value, in order) and the fixed ones, no
/// body. Reads the method, the path and one header per allowed name, nothing else.
pub fn check_request(settings: &Settings, request: &impl RequestFacts) -> CallRequest {
    let path = format!("{}{}", settings.path_prefix, request.path());
    let mut call = CallRequest::new(&request.method(), &settings.upstream, &path)
        .timeout(settings.timeout)
        .max_response_bytes(settings.max_response_bytes);
    for name in &settings.allowed_headers {
        for value in request.header_values(name) {
            call = call.header(name, value);
        }
    }
    for (name, value) in &settings.headers_to_add {
        call = call.header(name, value);
    }
    call
}

/// An edit of the request sent upstream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Edit {
    /// Set the header, replacing every value.
    Set(String, Vec<u8>),
    /// Add one more value.
    Append(String, Vec<u8>),
    /// Remove every value.
    Remove(String),
}

/// Why a check has no usable answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// No upstream or service has the configured name.
    UnknownUpstream,
    /// The proxy refused to send the check.
    InvalidRequest,
    /// No whole answer within `timeout`.
    Timeout,
    /// The answer's body is over `max_response_bytes`.
    ResponseTooLarge,
    /// The filter has its maximum of calls in flight.
    TooManyCalls,
    /// The service could not be reached (refused, reset, no healthy endpoint, circuit open).
    Unavailable,
    /// The service answered 5xx: a failure, not a decision (as in Envoy).
    ServerError,
    /// A failure this version of the filter does not know.
    Other,
}

impl ErrorKind {
    /// The kind of a call error.
    pub fn of(error: &CallError) -> ErrorKind {
        match error {
            CallError::UnknownUpstream(_) => ErrorKind::UnknownUpstream,
            CallError::InvalidRequest(_) => ErrorKind::InvalidRequest,
            CallError::Timeout => ErrorKind::Timeout,
            CallError::ResponseTooLarge => ErrorKind::ResponseTooLarge,
            CallError::TooManyCalls => ErrorKind::TooManyCalls,
            CallError::Unavailable(_) => ErrorKind::Unavailable,
            _ => ErrorKind::Other,
        }
    }

    /// The label of `ext_authz_errors{kind}`.
    pub fn label(self) -> &'static str {
        match self {
            ErrorKind::UnknownUpstream => "unknown_upstream",
            ErrorKind::InvalidRequest => "invalid_request",
            ErrorKind::Timeout => "timeout",
            ErrorKind::ResponseTooLarge => "response_too_large",
            ErrorKind::TooManyCalls => "too_many_calls",
            ErrorKind::Unavailable => "unavailable",
            ErrorKind::ServerError => "server_error",
            ErrorKind::Other => "other",
        }
    }

    /// The body of the local response sent when the check fails: the kind, no details.
    pub fn body(self) -> &'static str {
        match self {
            ErrorKind::UnknownUpstream => "ext-authz: authorization service not found\n",
            ErrorKind::InvalidRequest => "ext-authz: authorization check could not be sent\n",
            ErrorKind::Timeout => "ext-authz: authorization service timed out\n",
            ErrorKind::ResponseTooLarge => "ext-authz: authorization answer too large\n",
            ErrorKind::TooManyCalls => "ext-authz: too many authorization checks in flight\n",
            ErrorKind::Unavailable => "ext-authz: authorization service unavailable\n",
            ErrorKind::ServerError => "ext-authz: authorization service failed\n",
            ErrorKind::Other => "ext-authz: authorization check failed\n",
        }
    }
}

/// What the answer to a check means for the request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// A 2xx answer: apply the edits and go on.
    Allowed(Vec<Edit>),
    /// Any other answer below 500 (3xx, 4xx): send this to the client (the answer's status,
    /// body and selected headers).
    Denied(LocalResponse),
    /// The check failed and `failure_mode_allow` is on: apply the edits (the marker header
    /// among them) and go on.
    ErrorAllowed(ErrorKind, Vec<Edit>),
    /// The check failed: send `status_on_error` with a short body naming the failure.
    ErrorDenied(ErrorKind, LocalResponse),
}

impl Decision {
    /// The label of `ext_authz_decisions{decision}`.
    pub fn label(&self) -> &'static str {
        match self {
            Decision::Allowed(_) => "allowed",
            Decision::Denied(_) => "denied",
            Decision::ErrorAllowed(..) => "error_allowed",
            Decision::ErrorDenied(..) => "error_denied",
        }
    }

    /// The hook's action, once the edits are applied.
    pub fn into_action(self) -> Action {
        match self {
            Decision::Allowed(_) | Decision::ErrorAllowed(..) => Action::Continue,
            Decision::Denied(response) | Decision::ErrorDenied(_, response) => {
                Action::Respond(response)
            }
        }
    }

    /// The edits to apply before going on (none for a response).
    pub fn edits(&self) -> &[Edit] {
        match self {
            Decision::Allowed(edits) | Decision::ErrorAllowed(_, edits) => edits,
            Decision::Denied(_) | Decision::ErrorDenied(..) => &[],
        }
    }
}

/// What to do with the result of a check.
///
/// `request_header_names` lists the request's header names (lower-case); it is called only when
/// `upstream_headers_from_auth` has a prefix and the request may go on, to find client-sent
/// headers matching it.
pub fn decide(
    settings: &Settings,
    result: &Result<CallResponse, CallError>,
    request_header_names: impl FnOnce() -> Vec<String>,
) -> Decision {
    let error = match result {
        Ok(answer) if answer.is_success() => {
            return Decision::Allowed(allowed_edits(settings, answer, request_header_names));
        }
        Ok(answer) if answer.status >= 500 => ErrorKind::ServerError,
        Ok(answer) => return Decision::Denied(denial(settings, answer)),
        Err(error) => ErrorKind::of(error),
    };
    if settings.failure_mode_allow {
        let mut edits = client_copies_removed(settings, &[], request_header_names);
        edits.push(Edit::Set(
            FAILURE_MODE_ALLOWED_HEADER.to_owned(),
            b"true".to_vec(),
        ));
        Decision::ErrorAllowed(error, edits)
    } else {
        Decision::ErrorDenied(
            error,
            LocalResponse::new(settings.status_on_error)
                .header("content-type", "text/plain")
                .body(error.body()),
        )
    }
}

/// The edits of an allowed request: the answer's headers matching `upstream_headers_from_auth`
/// set (replacing the request's), client-sent headers matching it that the answer lacks
/// removed (so the upstream never mistakes a client's value for the service's), and a
/// client-sent failure-mode marker removed when `failure_mode_allow` is on.
fn allowed_edits(
    settings: &Settings,
    answer: &CallResponse,
    request_header_names: impl FnOnce() -> Vec<String>,
) -> Vec<Edit> {
    let mut set: Vec<(String, &[u8])> = Vec::new();
    for (name, value) in &answer.headers {
        let name = name.to_ascii_lowercase();
        if any_matches(&settings.upstream_headers, &name)
            && !text::is_managed_header(&name)
            && name != FAILURE_MODE_ALLOWED_HEADER
        {
            set.push((name, value));
        }
    }
    let names: Vec<&str> = set.iter().map(|(n, _)| n.as_str()).collect();
    let mut edits = client_copies_removed(settings, &names, request_header_names);
    for (i, (name, value)) in set.iter().enumerate() {
        let first = !set[..i].iter().any(|(n, _)| n == name);
        edits.push(if first {
            Edit::Set(name.clone(), value.to_vec())
        } else {
            Edit::Append(name.clone(), value.to_vec())
        });
    }
    if settings.failure_mode_allow {
        edits.push(Edit::Remove(FAILURE_MODE_ALLOWED_HEADER.to_owned()));
    }
    edits
}

/// Removals of the request headers matching `upstream_headers_from_auth`, but for `keep` (which
/// the answer sets): every exact name, and the request's names matching a prefix.
fn client_copies_removed(
    settings: &Settings,
    keep: &[&str],
    request_header_names: impl FnOnce() -> Vec<String>,
) -> Vec<Edit> {
    let mut removed: Vec<String> = Vec::new();
    let mut prefixes = false;
    for pattern in &settings.upstream_headers {
        match pattern {
            crate::config::Pattern::Exact(name) => removed.push(name.clone()),
            crate::config::Pattern::Prefix(_) => prefixes = true,
        }
    }
    if prefixes {
        for name in request_header_names() {
            let name = name.to_ascii_lowercase();
            if any_matches(&settings.upstream_headers, &name)
                && !text::is_managed_header(&name)
                && !removed.contains(&name)
            {
                removed.push(name);
            }
        }
    }
    removed
        .into_iter()
        .filter(|name| !keep.contains(&name.as_str()))
        .map(Edit::Remove)
        .collect()
}

/// The local response for a denying answer: its status, body and selected headers.
fn denial(settings: &Settings, answer: &CallResponse) -> LocalResponse {
    let mut response = LocalResponse::new(answer.status).body(answer.body.clone());
    for (name, value) in &answer.headers {
        let lower = name.to_ascii_lowercase();
        if text::is_managed_header(&lower) {
            continue;
        }
        let wanted = match &settings.client_headers {
            None => true,
            Some(patterns) => any_matches(patterns, &lower),
        };
        if wanted {
            response = response.header(lower, value);
        }
    }
    response
}

/// Apply `edits` to the request, in order. Every edit is tried; the first error is returned
/// with the header's name. A set that fails removes the header instead, so that a client's value
/// never stands in for the service's.
pub fn apply(edits: &[Edit], request: &impl RequestEdits) -> Result<(), (String, EditError)> {
    let mut first_error = None;
    for edit in edits {
        let (name, result) = match edit {
            // Not expected (the names and values came through the proxy), but a failed set must
            // not leave the client's value in place.
            Edit::Set(name, value) => (
                name,
                request.set_header(name, value).inspect_err(|_| {
                    let _ = request.remove_header(name);
                }),
            ),
            Edit::Append(name, value) => (name, request.append_header(name, value)),
            Edit::Remove(name) => (name, request.remove_header(name)),
        };
        if let Err(error) = result
            && first_error.is_none()
        {
            first_error = Some((name.clone(), error));
        }
    }
    first_error.map_or(Ok(()), Err)
}
