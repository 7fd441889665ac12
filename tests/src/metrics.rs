//! Reading the proxy's Prometheus endpoint.

use std::net::SocketAddr;

use http::StatusCode;
pub use weft_harness::Scrape;

/// GETs `/metrics` on the admin address; fails unless it answers 200.
pub async fn scrape(admin: SocketAddr) -> anyhow::Result<Scrape> {
    let reply = crate::get(admin, "/metrics", &[]).await?;
    anyhow::ensure!(
        reply.status == StatusCode::OK,
        "/metrics answered {}: {}",
        reply.status,
        reply.text()
    );
    Ok(Scrape { text: reply.text() })
}

/// The value of metric `name` with `labels` (summed over other labels) at the proxy's admin
/// address `admin`; `None` when no sample matches.
pub async fn metric(
    admin: SocketAddr,
    name: &str,
    labels: &[(&str, &str)],
) -> anyhow::Result<Option<f64>> {
    Ok(scrape(admin).await?.value(name, labels))
}
