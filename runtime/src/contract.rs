//! Which version of `weft:filter` a module was built against, and its exports in either.
//!
//! The proxy ships `weft:filter@0.3.0` and keeps loading 0.2.0 filters: their imports are served
//! by [`crate::host::v02`], and their hooks' results are converted to 0.3.0's here. A module
//! built against any other version is refused with a message that names both.

use wasmtime::component::{Component, InstancePre};
use wasmtime::{Engine, Store};

use crate::bindings::weft::filter::http as wit;
use crate::bindings::{self, v02, yielding};
use crate::host::HostState;

/// The contract the proxy ships.
pub const CURRENT: &str = "0.3.0";
/// The versions it loads, newest first.
pub const ACCEPTED: [&str; 2] = ["0.3.0", "0.2.0"];

/// A contract version a module was built against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Version {
    V03,
    V02,
}

/// What a component says about the contract it was built against, from the `handler`
/// interface it exports.
pub(crate) enum Found {
    Accepted(Version),
    /// It exports `weft:filter/handler` of another version.
    Other(String),
    /// It exports no `weft:filter/handler` at all.
    None,
}

/// The version of `weft:filter/handler` the component exports.
pub(crate) fn version(component: &Component, engine: &Engine) -> Found {
    let ty = component.component_type();
    let mut other = None;
    for (name, _) in ty.exports(engine) {
        let Some(version) = name.strip_prefix("weft:filter/handler@") else {
            continue;
        };
        match version {
            "0.3.0" => return Found::Accepted(Version::V03),
            "0.2.0" => return Found::Accepted(Version::V02),
            v => other = Some(v.to_owned()),
        }
    }
    other.map_or(Found::None, Found::Other)
}

/// Where a module's exports are, for plain calls and for calls on a fiber.
pub(crate) enum Indices {
    V03(bindings::FilterIndices, yielding::FilterIndices),
    V02(v02::FilterIndices, v02::yielding::FilterIndices),
}

impl Indices {
    pub(crate) fn new(pre: &InstancePre<HostState>, version: Version) -> wasmtime::Result<Self> {
        Ok(match version {
            Version::V03 => Indices::V03(
                bindings::FilterIndices::new(pre)?,
                yielding::FilterIndices::new(pre)?,
            ),
            Version::V02 => Indices::V02(
                v02::FilterIndices::new(pre)?,
                v02::yielding::FilterIndices::new(pre)?,
            ),
        })
    }

    pub(crate) fn load(
        &self,
        store: &mut Store<HostState>,
        instance: &wasmtime::component::Instance,
    ) -> wasmtime::Result<Exports> {
        Ok(match self {
            Indices::V03(i, _) => Exports::V03(i.load(store, instance)?),
            Indices::V02(i, _) => Exports::V02(i.load(store, instance)?),
        })
    }

    pub(crate) fn load_yielding(
        &self,
        store: &mut Store<HostState>,
        instance: &wasmtime::component::Instance,
    ) -> wasmtime::Result<YieldingExports> {
        Ok(match self {
            Indices::V03(_, i) => YieldingExports::V03(i.load(store, instance)?),
            Indices::V02(_, i) => YieldingExports::V02(i.load(store, instance)?),
        })
    }
}

/// An instance's exports, for plain calls.
pub(crate) enum Exports {
    V03(bindings::Filter),
    V02(v02::Filter),
}

/// An instance's exports, for calls on a fiber.
pub(crate) enum YieldingExports {
    V03(yielding::Filter),
    V02(v02::yielding::Filter),
}

impl Exports {
    /// Call `configure`.
    pub(crate) fn configure(
        &self,
        store: &mut Store<HostState>,
        config: &str,
    ) -> wasmtime::Result<Result<crate::Hooks, String>> {
        Ok(match self {
            Exports::V03(e) => e
                .weft_filter_handler()
                .call_configure(store, config)?
                .map(Into::into),
            Exports::V02(e) => e
                .weft_filter_handler()
                .call_configure(store, config)?
                .map(|h| {
                    use v02::weft::filter::http::Hooks as H;
                    crate::Hooks {
                        request_headers: h.contains(H::REQUEST_HEADERS),
                        request_body: h.contains(H::REQUEST_BODY),
                        response_headers: h.contains(H::RESPONSE_HEADERS),
                        response_body: h.contains(H::RESPONSE_BODY),
                    }
                }),
        })
    }
}

/// A 0.2.0 action is a 0.3.0 action without `call`.
impl From<v02::weft::filter::http::Action> for wit::Action {
    fn from(action: v02::weft::filter::http::Action) -> Self {
        use v02::weft::filter::http as old;
        let local = |r: old::LocalResponse| wit::LocalResponse {
            status: r.status,
            headers: r.headers,
            body: r.body,
        };
        match action {
            old::Action::Continue => wit::Action::Continue,
            old::Action::Respond(r) => wit::Action::Respond(local(r)),
            old::Action::Delay(d) => wit::Action::Delay(wit::Delay {
                milliseconds: d.milliseconds,
                then: d.then.map(local),
            }),
        }
    }
}
