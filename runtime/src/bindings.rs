//! Host bindings generated from `wit/filter.wit`. Nothing but `bindgen!` lives here.

wasmtime::component::bindgen!({
    path: "../wit",
    world: "weft:filter/filter",
    imports: { default: trappable },
    with: {
        "weft:filter/http.request": super::host::http::RequestSlot,
        "weft:filter/http.response": super::host::http::ResponseSlot,
        "weft:filter/http.body": super::host::http::BodySlot,
    },
});

/// The same exports, called on a fiber (`call_async`) so that a guest running past one epoch
/// tick can yield its thread. The imports are the ones above: one linker serves both.
pub(crate) mod yielding {
    wasmtime::component::bindgen!({
        path: "../wit",
        world: "weft:filter/filter",
        imports: { default: trappable },
        exports: { default: async },
        with: {
            "weft:filter/http": super::weft::filter::http,
            "weft:filter/log": super::weft::filter::log,
            "weft:filter/clock": super::weft::filter::clock,
            "weft:filter/random": super::weft::filter::random,
            "weft:filter/metrics": super::weft::filter::metrics,
            "weft:filter/token-bucket": super::weft::filter::token_bucket,
        },
    });
}
