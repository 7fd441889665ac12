//! Host bindings generated from `wit/filter.wit` (`weft:filter@0.3.0`) and, for filters built
//! last version, from `wit-0.2/filter.wit`. Nothing but `bindgen!` lives here.

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
            "weft:filter/store": super::weft::filter::store,
            "weft:filter/crypto": super::weft::filter::crypto,
        },
    });
}

/// `weft:filter@0.2.0`: filters built against the previous contract. Its imports are served by
/// [`crate::host::v02`], which forwards to the 0.3.0 implementations.
pub(crate) mod v02 {
    wasmtime::component::bindgen!({
        path: "wit-0.2",
        world: "weft:filter/filter",
        imports: { default: trappable },
        with: {
            "weft:filter/http.request": crate::host::http::RequestSlot,
            "weft:filter/http.response": crate::host::http::ResponseSlot,
            "weft:filter/http.body": crate::host::http::BodySlot,
        },
    });

    /// The 0.2.0 exports on a fiber.
    pub(crate) mod yielding {
        wasmtime::component::bindgen!({
            path: "wit-0.2",
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
}
