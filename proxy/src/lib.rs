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

pub mod config;
pub mod harness;
pub mod metrics;
mod proxy;
pub mod runtime;
pub mod scaffold;
pub mod telemetry;

pub use crate::proxy::{Error, Loaded, Proxy, ProxyBody, RunningProxy};
