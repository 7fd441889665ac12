//! The host capabilities of WIT 0.2, driven through the `steer` guest: a filter chooses the
//! upstream, request hooks add response headers, and a delay holds one request on a timer.

use std::time::{Duration, Instant};

use http::StatusCode;
use weft_tests::{Upstream, get, guests, start_proxy};

use crate::{filter, one_route};

/// `one_route` with the `steer` filter and a second upstream `other`.
fn steer_config(app: &Upstream, other: &Upstream) -> String {
    let mut yaml = one_route(app.addr(), &[filter("steer", guests::STEER, "")]);
    yaml.push_str(&format!(
        "  - name: other\n    endpoints: [\"{}\"]\n",
        other.addr()
    ));
    yaml
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_filter_chooses_the_upstream_and_an_unknown_one_is_a_503_naming_it() -> anyhow::Result<()>
{
    let app = Upstream::start().await?;
    let other = Upstream::start().await?;
    let proxy = start_proxy(&steer_config(&app, &other)).await?;

    let reply = get(proxy.addr(), "/x", &[("x-steer", "other")]).await?;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    assert_eq!(
        (app.requests(), other.requests()),
        (0, 1),
        "sent to the chosen upstream"
    );
    assert_eq!(
        reply.header("x-saw-upstream"),
        Some("app"),
        "before the choice the filter sees the route's upstream"
    );

    let reply = get(proxy.addr(), "/x", &[]).await?;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(
        (app.requests(), other.requests()),
        (1, 1),
        "no choice: the route's upstream"
    );

    let reply = get(proxy.addr(), "/x", &[("x-steer", "nowhere")]).await?;
    assert_eq!(reply.status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(
        reply.text().contains("\"nowhere\""),
        "the 503 names the unknown upstream: {:?}",
        reply.text()
    );
    assert_eq!(
        (app.requests(), other.requests()),
        (1, 1),
        "nothing was sent"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn response_headers_added_by_request_hooks_reach_every_kind_of_response() -> anyhow::Result<()>
{
    let app = Upstream::start().await?;
    let other = Upstream::start().await?;
    let proxy = start_proxy(&steer_config(&app, &other)).await?;

    let cases = [
        ("/from-upstream", vec![], StatusCode::OK),
        ("/local", vec![], StatusCode::OK),
        (
            "/x",
            vec![("x-steer", "nowhere")],
            StatusCode::SERVICE_UNAVAILABLE,
        ),
    ];
    for (path, mut headers, status) in cases {
        headers.push(("x-add-response", "yes"));
        let reply = get(proxy.addr(), path, &headers).await?;
        assert_eq!(reply.status, status, "{path}: {}", reply.text());
        assert_eq!(
            reply.header_values("x-added"),
            ["yes"],
            "{path}: the header is added exactly once, whoever answered"
        );
    }
    assert_eq!(
        get(proxy.addr(), "/local", &[]).await?.text(),
        "local",
        "the local reply is the filter's"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delay_holds_one_request_while_others_are_served() -> anyhow::Result<()> {
    let app = Upstream::start().await?;
    let other = Upstream::start().await?;
    let proxy = start_proxy(&steer_config(&app, &other)).await?;
    let addr = proxy.addr();

    let start = Instant::now();
    let delayed = tokio::spawn(async move {
        let reply = get(addr, "/slow", &[("x-delay-ms", "600")]).await;
        (reply, start.elapsed())
    });
    // Requests sent while the first is held are answered before it.
    for _ in 0..5 {
        let reply = get(addr, "/fast", &[]).await?;
        assert_eq!(reply.status, StatusCode::OK);
    }
    let fast_done = start.elapsed();
    let (reply, delayed_done) = delayed.await?;
    let reply = reply?;
    assert_eq!(
        reply.status,
        StatusCode::OK,
        "after the delay the request goes on"
    );
    assert!(
        delayed_done >= Duration::from_millis(600),
        "held for the delay: {delayed_done:?}"
    );
    assert!(
        fast_done < delayed_done,
        "undelayed requests finished ({fast_done:?}) before the delayed one ({delayed_done:?})"
    );
    assert_eq!(
        app.requests(),
        6,
        "the delayed request reached the upstream too"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delay_may_end_in_a_local_response_and_a_too_long_one_is_invalid() -> anyhow::Result<()> {
    let app = Upstream::start().await?;
    let other = Upstream::start().await?;
    let proxy = start_proxy(&steer_config(&app, &other)).await?;

    let start = Instant::now();
    let headers = [("x-delay-ms", "200"), ("x-delay-then", "418")];
    let reply = get(proxy.addr(), "/abort", &headers).await?;
    assert_eq!(reply.status, StatusCode::IM_A_TEAPOT);
    assert_eq!(reply.text(), "late\n");
    assert!(
        start.elapsed() >= Duration::from_millis(200),
        "the abort came after the delay"
    );
    assert_eq!(
        app.requests(),
        0,
        "a delayed abort never reaches the upstream"
    );

    // Eleven minutes is past the ten-minute maximum: a filter failure, fail_closed by default.
    let reply = get(proxy.addr(), "/x", &[("x-delay-ms", "660000")]).await?;
    assert_eq!(
        reply.status,
        StatusCode::INTERNAL_SERVER_ERROR,
        "{}",
        reply.text()
    );
    let scrape = weft_tests::scrape(proxy.admin()).await?;
    assert_eq!(
        scrape.value(
            "weft_filter_errors_total",
            &[("filter", "steer"), ("kind", "invalid_action")]
        ),
        Some(1.0)
    );
    Ok(())
}
