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
