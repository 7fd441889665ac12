//! The glue between the generated `handler` exports and a [`Filter`]: used by
//! [`export_filter!`](crate::export_filter), not by filter authors.

use std::any::Any;
use std::cell::RefCell;

use crate::bindings::exports::weft::filter::handler;
use crate::bindings::weft::filter::http as raw;
use crate::filter::Filter;
use crate::http::{Body, Request, Response};

thread_local! {
    /// The instance's filter value. A wasm instance is single-threaded and calls come one at a
    /// time, so this is the instance's only filter. It is type-erased because a `static` cannot
    /// be generic; hooks downcast it to the exported type.
    static FILTER: RefCell<Option<Box<dyn Any>>> = const { RefCell::new(None) };
}

#[doc(hidden)]
pub mod __private {
    use std::marker::PhantomData;

    /// Implements the generated `handler` trait for `F`. The exported functions are generic over
    /// that trait, and `export_filter!` names this type through an alias.
    pub struct Exporter<F>(PhantomData<fn() -> F>);
}

use __private::Exporter;

impl<F: Filter> handler::Guest for Exporter<F> {
    fn configure(config: String) -> Result<raw::Hooks, String> {
        install_panic_hook();
        let config = crate::config::parse::<F::Config>(&config)?;
        let filter = F::new(config)?;
        FILTER.with(|slot| *slot.borrow_mut() = Some(Box::new(filter)));
        Ok(F::HOOKS.into_raw())
    }

    fn on_request_headers(request: &raw::Request) -> raw::Action {
        with_filter(|filter: &F| filter.on_request_headers(Request::from_raw(request)))
    }

    fn on_request_body(request: &raw::Request, body: &raw::Body) -> raw::Action {
        with_filter(|filter: &F| {
            filter.on_request_body(Request::from_raw(request), Body::from_raw(body))
        })
    }

    fn on_response_headers(request: &raw::Request, response: &raw::Response) -> raw::Action {
        with_filter(|filter: &F| {
            filter.on_response_headers(Request::from_raw(request), Response::from_raw(response))
        })
    }

    fn on_response_body(
        request: &raw::Request,
        response: &raw::Response,
        body: &raw::Body,
    ) -> raw::Action {
        with_filter(|filter: &F| {
            filter.on_response_body(
                Request::from_raw(request),
                Response::from_raw(response),
                Body::from_raw(body),
            )
        })
    }

    fn on_call_response(
        request: &raw::Request,
        result: Result<raw::CallResponse, raw::CallError>,
    ) -> raw::Action {
        let result = crate::call::from_raw(result);
        with_filter(|filter: &F| filter.on_call_response(Request::from_raw(request), result))
    }
}

fn with_filter<F: Filter>(hook: impl FnOnce(&F) -> crate::Action) -> raw::Action {
    FILTER.with(|slot| {
        let slot = slot.borrow();
        match slot
            .as_deref()
            .and_then(|filter| filter.downcast_ref::<F>())
        {
            Some(filter) => hook(filter).into_raw(),
            None => {
                install_panic_hook();
                panic!("weft-sdk: hook called on an instance that is not configured")
            }
        }
    })
}

/// Send panic messages to the host before the instance aborts.
///
/// With `panic = "abort"` nothing else would reach the proxy: std's default hook writes to
/// stderr, which the proxy does not capture. Only on wasm: natively the import is a stub.
fn install_panic_hook() {
    #[cfg(target_family = "wasm")]
    {
        static INSTALL: std::sync::Once = std::sync::Once::new();
        INSTALL.call_once(|| {
            std::panic::set_hook(Box::new(|info| {
                let message = panic_message(info.payload_as_str(), info.location());
                crate::bindings::weft::filter::log::report_panic(&message);
            }));
        });
    }
}

/// `panicked at src/lib.rs:10:5: the message`, like std's default hook.
#[cfg_attr(not(target_family = "wasm"), allow(dead_code))]
fn panic_message(payload: Option<&str>, location: Option<&std::panic::Location<'_>>) -> String {
    let payload = payload.unwrap_or("Box<dyn Any>");
    match location {
        Some(location) => format!("panicked at {location}: {payload}"),
        None => format!("panicked: {payload}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn panic_message_has_location_and_payload() {
        let location = std::panic::Location::caller();
        let message = panic_message(Some("boom"), Some(location));
        assert_eq!(
            message,
            format!(
                "panicked at {}:{}:{}: boom",
                location.file(),
                location.line(),
                location.column()
            )
        );
        assert_eq!(panic_message(None, None), "panicked: Box<dyn Any>");
    }
}
