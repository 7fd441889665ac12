//! gRPC through the proxy: unary and server-streaming calls, error statuses carried in trailers,
//! custom metadata.

use std::net::SocketAddr;

use anyhow::{Context as _, bail};
use weft_tests::grpc::{
    FAIL, FAIL_CODE, FAIL_LATE, FAIL_LATE_CODE, FAIL_LATE_MESSAGE, FAIL_MESSAGE, FAIL_METADATA,
};
use weft_tests::{EchoRequest, EchoService, REQUEST_TIMEOUT, echo_client, guests, start_proxy};

use crate::{filter, one_route_with};

fn echo(message: &str, count: u32) -> EchoRequest {
    EchoRequest {
        message: message.to_owned(),
        count,
    }
}

/// A successful unary call through `addr`.
async fn check_unary(addr: SocketAddr) -> anyhow::Result<()> {
    let mut client = echo_client(addr).await?;
    let reply = client.unary(echo("hello", 0)).await.context("unary call")?;
    assert_eq!(reply.into_inner().message, "hello");
    Ok(())
}

/// A failed unary call through `addr`: code, message and custom metadata must all arrive.
async fn check_unary_error(addr: SocketAddr) -> anyhow::Result<()> {
    let mut client = echo_client(addr).await?;
    let status = match client.unary(echo(FAIL, 0)).await {
        Ok(reply) => bail!("{FAIL:?} must fail, got {reply:?}"),
        Err(status) => status,
    };
    assert_eq!(status.code(), FAIL_CODE, "{status:?}");
    assert_eq!(status.message(), FAIL_MESSAGE, "{status:?}");
    let detail = status
        .metadata()
        .get(FAIL_METADATA.0)
        .and_then(|v| v.to_str().ok());
    assert_eq!(
        detail,
        Some(FAIL_METADATA.1),
        "custom error metadata: {status:?}"
    );
    Ok(())
}

/// A server stream through `addr`: all replies, then either a clean end or (for [`FAIL_LATE`])
/// the error status from the trailers that follow the data.
async fn check_stream(addr: SocketAddr, message: &str) -> anyhow::Result<()> {
    let mut client = echo_client(addr).await?;
    let mut stream = client
        .server_stream(echo(message, 3))
        .await
        .context("starting the stream")?
        .into_inner();
    let mut got = Vec::new();
    let end = loop {
        match stream.message().await {
            Ok(Some(reply)) => got.push(reply.message),
            Ok(None) => break None,
            Err(status) => break Some(status),
        }
    };
    let expected: Vec<String> = (0..3).map(|i| format!("{message} {i}")).collect();
    assert_eq!(got, expected, "stream replies");
    match (message == FAIL_LATE, end) {
        (false, None) => {}
        (false, Some(status)) => bail!("stream ended with an error: {status:?}"),
        (true, None) => bail!("the trailing error status was lost: the stream ended cleanly"),
        (true, Some(status)) => {
            assert_eq!(status.code(), FAIL_LATE_CODE, "{status:?}");
            assert_eq!(status.message(), FAIL_LATE_MESSAGE, "{status:?}");
        }
    }
    Ok(())
}

/// Every check above against `addr`, each bounded so a hang fails instead of blocking.
async fn check_all(addr: SocketAddr) -> anyhow::Result<()> {
    let all = async {
        check_unary(addr).await.context("unary")?;
        check_unary_error(addr).await.context("unary error")?;
        check_stream(addr, "tick").await.context("server stream")?;
        check_stream(addr, FAIL_LATE)
            .await
            .context("server stream ending in an error")
    };
    tokio::time::timeout(REQUEST_TIMEOUT * 2, all)
        .await
        .context("gRPC calls did not finish in time")?
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn echo_service_works_directly() -> anyhow::Result<()> {
    let service = EchoService::start().await?;
    check_all(service.addr()).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_through_proxy_with_http2_upstream() -> anyhow::Result<()> {
    let service = EchoService::start().await?;
    let proxy = start_proxy(&one_route_with(service.addr(), &[], &["protocol: http2"])).await?;
    check_all(proxy.addr()).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_through_proxy_with_auto_upstream() -> anyhow::Result<()> {
    let service = EchoService::start().await?;
    let proxy = start_proxy(&one_route_with(service.addr(), &[], &["protocol: auto"])).await?;
    check_all(proxy.addr()).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_through_a_header_filter_keeps_trailers() -> anyhow::Result<()> {
    let service = EchoService::start().await?;
    let filters = [filter("hdr", guests::HEADERS, "")];
    let proxy = start_proxy(&one_route_with(
        service.addr(),
        &filters,
        &["protocol: http2"],
    ))
    .await?;
    check_all(proxy.addr()).await?;

    // The filter's response hook ran on the gRPC response: its header is response metadata.
    let mut client = echo_client(proxy.addr()).await?;
    let reply = client.unary(echo("hello", 0)).await?;
    let marker = reply
        .metadata()
        .get("x-weft-response")
        .and_then(|v| v.to_str().ok());
    assert_eq!(marker, Some("1"), "metadata: {:?}", reply.metadata());
    Ok(())
}
