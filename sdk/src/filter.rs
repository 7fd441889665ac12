//! The [`Filter`] trait and what its hooks return.

use std::fmt;
use std::ops::{BitOr, BitOrAssign};

use serde::de::DeserializeOwned;

use crate::bindings::weft::filter::http as raw;
use crate::call::{CallError, CallRequest, CallResponse};
use crate::http::{Body, Request, Response};

/// A weft filter: a configuration type, a constructor and the hooks the proxy calls.
///
/// One value lives per wasm instance. It is built by [`Filter::new`] when the proxy configures the
/// instance, then serves hook calls for many requests, one call at a time, which is why hooks take
/// `&self`: keep per-instance state in a `Cell` or `RefCell`.
///
/// Every hook defaults to a no-op returning [`Action::Continue`]; only hooks listed in
/// [`Filter::HOOKS`] are called. Export the implementation with [`export_filter!`](crate::export_filter).
///
/// ```no_run
/// use std::cell::Cell;
/// use weft_sdk::{Action, Filter, Request};
///
/// /// Counts requests seen by this instance and tags them with the count.
/// struct Count {
///     seen: Cell<u64>,
/// }
///
/// impl Filter for Count {
///     type Config = ();
///
///     fn new(_config: ()) -> Result<Self, String> {
///         Ok(Count { seen: Cell::new(0) })
///     }
///
///     fn on_request_headers(&self, request: &Request) -> Action {
///         self.seen.set(self.seen.get() + 1);
///         // Errors only for invalid names or values, or in response hooks.
///         let _ = request.set_header("x-instance-count", self.seen.get().to_string());
///         Action::Continue
///     }
/// }
/// # weft_sdk::export_filter!(Count);
/// ```
pub trait Filter: Sized + 'static {
    /// The filter's configuration, deserialized from the `config` the proxy configuration gives
    /// the filter (JSON `null` when it gives none).
    ///
    /// Use `()` for a filter without configuration, and `#[serde(deny_unknown_fields)]` so that
    /// typos are errors. A `null` configuration deserializes into `()`, an `Option`, or a struct
    /// whose fields all have defaults; into a struct with required fields it fails with a
    /// `missing field` error.
    type Config: DeserializeOwned;

    /// The hooks the proxy should call. Hooks not listed are never called and cost nothing;
    /// listing a body hook makes the proxy buffer that body.
    ///
    /// Defaults to [`Hooks::REQUEST_HEADERS`] and [`Hooks::RESPONSE_HEADERS`].
    const HOOKS: Hooks = Hooks::REQUEST_HEADERS.union(Hooks::RESPONSE_HEADERS);

    /// Build the filter from its configuration.
    ///
    /// This is the place for validation that serde cannot express and for defining
    /// [`metrics`](crate::metrics). An `Err` rejects the configuration: its message reaches the
    /// operator, the proxy refuses to start (or, on a reload, keeps the previous version of the
    /// filter).
    ///
    /// It must be deterministic: the proxy calls it on every instance it creates.
    fn new(config: Self::Config) -> Result<Self, String>;

    /// The request head arrived. Runs in chain order.
    ///
    /// The request is mutable here. Defaults to [`Action::Continue`].
    fn on_request_headers(&self, request: &Request) -> Action {
        let _ = request;
        Action::Continue
    }

    /// The whole request body arrived. Called only if [`Filter::HOOKS`] contains
    /// [`Hooks::REQUEST_BODY`].
    ///
    /// Defaults to [`Action::Continue`].
    fn on_request_body(&self, request: &Request, body: &Body) -> Action {
        let _ = (request, body);
        Action::Continue
    }

    /// The upstream's response head arrived. Runs in reverse chain order.
    ///
    /// The request is read-only here: edits fail with
    /// [`EditError::ReadOnly`](crate::EditError::ReadOnly). Defaults to [`Action::Continue`].
    fn on_response_headers(&self, request: &Request, response: &Response) -> Action {
        let _ = (request, response);
        Action::Continue
    }

    /// The whole response body arrived. Called only if [`Filter::HOOKS`] contains
    /// [`Hooks::RESPONSE_BODY`].
    ///
    /// Defaults to [`Action::Continue`].
    fn on_response_body(&self, request: &Request, response: &Response, body: &Body) -> Action {
        let _ = (request, response, body);
        Action::Continue
    }

    /// The answer to the call a request hook (or this hook) asked for with [`Action::Call`], or
    /// why there is none. The request is editable, as in the hook that made the call, and the
    /// action returned takes that hook's place: [`Action::Continue`] goes on to the next
    /// filter, [`Action::Respond`] answers, another [`Action::Call`] makes one more call (at
    /// most 8 per filter per request).
    ///
    /// The instance that runs this hook is not necessarily the one that made the call: keep
    /// what it needs in the request's state ([`Request::set_state`]). Defaults to
    /// [`Action::Continue`].
    fn on_call_response(
        &self,
        request: &Request,
        result: Result<CallResponse, CallError>,
    ) -> Action {
        let _ = (request, result);
        Action::Continue
    }
}

/// What the proxy does after a hook returns.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Action {
    /// Go on with the next filter, then the upstream (or the downstream, in response hooks).
    #[default]
    Continue,
    /// Stop the chain and send this response downstream. In response hooks it replaces the
    /// upstream's response.
    ///
    /// An invalid response (a status outside `100..=999`, a malformed header) is a filter
    /// failure, handled by the filter's failure policy.
    Respond(LocalResponse),
    /// Hold this request for `duration`, then go on as with [`Action::Continue`] or, when `then`
    /// is a response, send it as with [`Action::Respond`] (a delayed abort). The proxy waits on a
    /// timer: nothing else is blocked, not even this filter's other instances. Whole
    /// milliseconds, at most ten minutes; a longer delay is a filter failure.
    Delay {
        /// How long to hold the request.
        duration: std::time::Duration,
        /// What to send afterwards instead of going on, if anything.
        then: Option<LocalResponse>,
    },
    /// Send this request to an upstream through the proxy and hold this request, without
    /// holding a thread or an instance, until the answer comes or the call times out; then
    /// [`Filter::on_call_response`] gets the result. Only from request hooks and
    /// `on_call_response`: from a response hook it is a filter failure.
    Call(CallRequest),
}

impl Action {
    /// Hold the request for `duration`, then go on.
    pub fn delay(duration: std::time::Duration) -> Action {
        Action::Delay {
            duration,
            then: None,
        }
    }

    /// Hold the request for `duration`, then send `response`.
    pub fn delay_then(duration: std::time::Duration, response: LocalResponse) -> Action {
        Action::Delay {
            duration,
            then: Some(response),
        }
    }
}

impl Action {
    pub(crate) fn into_raw(self) -> raw::Action {
        match self {
            Action::Continue => raw::Action::Continue,
            Action::Respond(response) => raw::Action::Respond(response.into_raw()),
            Action::Delay { duration, then } => raw::Action::Delay(raw::Delay {
                // Over `u32::MAX` ms is far over the proxy's maximum: let it reject the action.
                milliseconds: u32::try_from(duration.as_millis()).unwrap_or(u32::MAX),
                then: then.map(LocalResponse::into_raw),
            }),
            Action::Call(call) => raw::Action::Call(call.into_raw()),
        }
    }
}

/// A response produced by the filter instead of the upstream's, built with
/// [`LocalResponse::new`]:
///
/// ```
/// use weft_sdk::{Action, LocalResponse};
///
/// let action = Action::Respond(
///     LocalResponse::new(403)
///         .header("content-type", "text/plain")
///         .body("forbidden\n"),
/// );
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct LocalResponse {
    /// The status code; the proxy accepts `100..=999`.
    pub status: u16,
    /// Header fields, in order. The proxy sets `content-length` itself.
    pub headers: Vec<(String, Vec<u8>)>,
    /// The body, sent as is.
    pub body: Vec<u8>,
}

impl LocalResponse {
    fn into_raw(self) -> raw::LocalResponse {
        raw::LocalResponse {
            status: self.status,
            headers: self.headers,
            body: self.body,
        }
    }

    /// A response with this status, no headers and an empty body.
    pub fn new(status: u16) -> Self {
        LocalResponse {
            status,
            headers: Vec::new(),
            body: Vec::new(),
        }
    }

    /// Add a header field (after any added before, so a name may repeat).
    #[must_use]
    pub fn header(mut self, name: impl Into<String>, value: impl AsRef<[u8]>) -> Self {
        self.headers.push((name.into(), value.as_ref().to_vec()));
        self
    }

    /// Set the body, replacing any previous one.
    #[must_use]
    pub fn body(mut self, body: impl Into<Vec<u8>>) -> Self {
        self.body = body.into();
        self
    }
}

/// A set of hooks, for [`Filter::HOOKS`].
///
/// ```
/// use weft_sdk::Hooks;
///
/// const HOOKS: Hooks = Hooks::REQUEST_HEADERS.union(Hooks::REQUEST_BODY);
/// assert!(HOOKS.contains(Hooks::REQUEST_BODY));
/// assert!(!HOOKS.contains(Hooks::RESPONSE_HEADERS));
/// assert_eq!(Hooks::all(), HOOKS | Hooks::RESPONSE_HEADERS | Hooks::RESPONSE_BODY);
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Hooks(u8);

impl Hooks {
    /// [`Filter::on_request_headers`].
    pub const REQUEST_HEADERS: Hooks = Hooks(1 << 0);
    /// [`Filter::on_request_body`]: the proxy buffers the request body.
    pub const REQUEST_BODY: Hooks = Hooks(1 << 1);
    /// [`Filter::on_response_headers`].
    pub const RESPONSE_HEADERS: Hooks = Hooks(1 << 2);
    /// [`Filter::on_response_body`]: the proxy buffers the response body.
    pub const RESPONSE_BODY: Hooks = Hooks(1 << 3);

    const NAMES: [(Hooks, &'static str); 4] = [
        (Hooks::REQUEST_HEADERS, "REQUEST_HEADERS"),
        (Hooks::REQUEST_BODY, "REQUEST_BODY"),
        (Hooks::RESPONSE_HEADERS, "RESPONSE_HEADERS"),
        (Hooks::RESPONSE_BODY, "RESPONSE_BODY"),
    ];

    /// No hooks: the filter is never called after `configure`.
    pub const fn empty() -> Hooks {
        Hooks(0)
    }

    /// All four hooks.
    pub const fn all() -> Hooks {
        Hooks(0b1111)
    }

    /// The hooks in `self` or in `other`.
    #[must_use]
    pub const fn union(self, other: Hooks) -> Hooks {
        Hooks(self.0 | other.0)
    }

    /// Whether every hook in `other` is in `self`.
    pub const fn contains(self, other: Hooks) -> bool {
        self.0 & other.0 == other.0
    }

    /// Whether the set is empty.
    pub const fn is_empty(self) -> bool {
        self.0 == 0
    }

    pub(crate) fn into_raw(self) -> raw::Hooks {
        // Built flag by flag rather than from the bits so that the two orders cannot drift.
        let pairs = [
            (Hooks::REQUEST_HEADERS, raw::Hooks::REQUEST_HEADERS),
            (Hooks::REQUEST_BODY, raw::Hooks::REQUEST_BODY),
            (Hooks::RESPONSE_HEADERS, raw::Hooks::RESPONSE_HEADERS),
            (Hooks::RESPONSE_BODY, raw::Hooks::RESPONSE_BODY),
        ];
        pairs
            .into_iter()
            .filter(|(ours, _)| self.contains(*ours))
            .fold(raw::Hooks::empty(), |set, (_, theirs)| set | theirs)
    }
}

impl BitOr for Hooks {
    type Output = Hooks;

    fn bitor(self, rhs: Hooks) -> Hooks {
        self.union(rhs)
    }
}

impl BitOrAssign for Hooks {
    fn bitor_assign(&mut self, rhs: Hooks) {
        *self = self.union(rhs);
    }
}

impl fmt::Debug for Hooks {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Hooks(")?;
        let mut separator = "";
        for (hook, name) in Hooks::NAMES {
            if self.contains(hook) {
                write!(f, "{separator}{name}")?;
                separator = " | ";
            }
        }
        f.write_str(")")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hooks_map_to_the_wit_flags() {
        assert_eq!(Hooks::empty().into_raw(), raw::Hooks::empty());
        assert_eq!(
            (Hooks::REQUEST_HEADERS | Hooks::RESPONSE_BODY).into_raw(),
            raw::Hooks::REQUEST_HEADERS | raw::Hooks::RESPONSE_BODY
        );
        assert_eq!(
            Hooks::all().into_raw(),
            raw::Hooks::REQUEST_HEADERS
                | raw::Hooks::REQUEST_BODY
                | raw::Hooks::RESPONSE_HEADERS
                | raw::Hooks::RESPONSE_BODY
        );
    }

    #[test]
    fn hooks_debug_lists_names() {
        assert_eq!(format!("{:?}", Hooks::empty()), "Hooks()");
        assert_eq!(
            format!("{:?}", Hooks::REQUEST_HEADERS | Hooks::RESPONSE_HEADERS),
            "Hooks(REQUEST_HEADERS | RESPONSE_HEADERS)"
        );
    }

    #[test]
    fn local_response_builder() {
        let response = LocalResponse::new(400)
            .header("content-type", "text/plain")
            .header("x-a", b"1".as_slice())
            .body("no\n");
        assert_eq!(response.status, 400);
        assert_eq!(
            response.headers,
            [
                ("content-type".to_owned(), b"text/plain".to_vec()),
                ("x-a".to_owned(), b"1".to_vec())
            ]
        );
        assert_eq!(response.body, b"no\n");
    }
}
