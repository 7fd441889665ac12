//! weft's data plane: a sidecar proxy that runs every request through a chain of WebAssembly
//! filters before routing it to an upstream.
//!
//! ```no_run
//! # async fn run() -> anyhow::Result<()> {
//! let config = weft_proxy::config::Config::load("weft.yaml".as_ref())?;
//! let proxy = weft_proxy::Proxy::start(config).await?;
//! println!("serving on {:?}", proxy.listener_addr("inbound"));
//! proxy.shutdown().await;
//! # Ok(())
//! # }
//! ```
//!
//! Where a request flows, one module per step:
//! `server` accepts the connection (and, on an mTLS listener, `mesh` runs the handshake and
//! learns the caller's identity) and reads the request → `normalize` settles its path and
//! authority → `route` picks the route → `exchange` runs the route's `chain` of filters
//! (request hooks), sends it `upstream` (over mesh mTLS when configured), and runs the
//! response hooks → `respond` writes
//! every response the proxy produces itself. The filters run on `weft-runtime`.
//!
//! Around it: `lifecycle` (load, bind, serve, shut down), `build` (compile modules,
//! configure filters, build route tables), `reload` (the config file and control plane
//! updates, swapped in without dropping a request), `control` (the control plane client),
//! `identity` (the workload certificate, asked of the control plane and renewed),
//! `admin` (`/metrics`, `/ready`), [`config`] and [`metrics`].

pub mod config;
pub mod metrics;
pub mod telemetry;

mod admin;
pub(crate) mod body;
mod build;
mod chain;
mod control;
mod discovery;
mod exchange;
mod identity;
mod lifecycle;
mod mesh;
mod normalize;
mod outbound;
mod reload;
mod respond;
mod route;
mod server;
mod upstream;

pub use crate::body::ProxyBody;
pub use crate::lifecycle::{Error, Loaded, Proxy, RunningProxy};
