//! The gRPC test service (`proto/echo.proto`) and a client for it.

use std::net::SocketAddr;
use std::pin::Pin;

use futures_util::Stream;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_stream::wrappers::TcpListenerStream;
use tonic::metadata::{MetadataMap, MetadataValue};
use tonic::transport::{Channel, Server};
use tonic::{Code, Request, Response, Status};

/// Code generated from `proto/echo.proto` by `build/proto.rs`.
#[allow(missing_docs, unreachable_pub, clippy::all, clippy::pedantic)]
pub mod pb {
    tonic::include_proto!("weft.test.echo");
}

pub use pb::echo_client::EchoClient;
pub use pb::{EchoReply, EchoRequest};

/// Unary message that makes the service fail with [`FAIL_CODE`] and [`FAIL_MESSAGE`].
pub const FAIL: &str = "fail";
/// Status code of a [`FAIL`]ed unary call.
pub const FAIL_CODE: Code = Code::NotFound;
/// Status message of a [`FAIL`]ed unary call.
pub const FAIL_MESSAGE: &str = "no such thing";
/// Custom metadata (name, value) attached to a [`FAIL`]ed unary call.
pub const FAIL_METADATA: (&str, &str) = ("x-detail", "missing");

/// Stream message that makes the service end the stream, after all its replies, with
/// [`FAIL_LATE_CODE`] and [`FAIL_LATE_MESSAGE`]: the status travels in trailers after data.
pub const FAIL_LATE: &str = "fail-late";
/// Status code ending a [`FAIL_LATE`] stream.
pub const FAIL_LATE_CODE: Code = Code::Aborted;
/// Status message ending a [`FAIL_LATE`] stream.
pub const FAIL_LATE_MESSAGE: &str = "stopped late";

/// A tonic server for `weft.test.echo.Echo` on `127.0.0.1:0`, speaking h2c.
///
/// `Unary` echoes the message (or fails on [`FAIL`]); `ServerStream` sends `count` replies
/// `"<message> <i>"` (then fails on [`FAIL_LATE`]). Stops when dropped.
#[derive(Debug)]
pub struct EchoService {
    addr: SocketAddr,
    serve: JoinHandle<()>,
}

impl EchoService {
    /// Binds `127.0.0.1:0` and starts serving; the server is ready when this returns.
    pub async fn start() -> anyhow::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let serve = tokio::spawn(async move {
            let served = Server::builder()
                .add_service(pb::echo_server::EchoServer::new(Echoer))
                .serve_with_incoming(TcpListenerStream::new(listener))
                .await;
            if let Err(e) = served {
                // Visible in the failing test's output; there is nobody else to tell.
                eprintln!("echo service stopped: {e}");
            }
        });
        Ok(Self { addr, serve })
    }

    /// Where the service listens.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }
}

impl Drop for EchoService {
    fn drop(&mut self) {
        self.serve.abort();
    }
}

/// A client for the echo service at `addr` (the service itself, or a proxy in front of it),
/// over h2c.
pub async fn echo_client(addr: SocketAddr) -> anyhow::Result<EchoClient<Channel>> {
    let channel = Channel::from_shared(format!("http://{addr}"))?
        .connect_timeout(crate::REQUEST_TIMEOUT)
        .timeout(crate::REQUEST_TIMEOUT)
        .connect()
        .await?;
    Ok(EchoClient::new(channel))
}

struct Echoer;

type ReplyStream = Pin<Box<dyn Stream<Item = Result<EchoReply, Status>> + Send>>;

#[tonic::async_trait]
impl pb::echo_server::Echo for Echoer {
    async fn unary(&self, request: Request<EchoRequest>) -> Result<Response<EchoReply>, Status> {
        let EchoRequest { message, .. } = request.into_inner();
        if message == FAIL {
            let mut metadata = MetadataMap::new();
            metadata.insert(FAIL_METADATA.0, MetadataValue::from_static(FAIL_METADATA.1));
            return Err(Status::with_metadata(FAIL_CODE, FAIL_MESSAGE, metadata));
        }
        Ok(Response::new(EchoReply { message, count: 0 }))
    }

    type ServerStreamStream = ReplyStream;

    async fn server_stream(
        &self,
        request: Request<EchoRequest>,
    ) -> Result<Response<ReplyStream>, Status> {
        let EchoRequest { message, count } = request.into_inner();
        let mut replies: Vec<Result<EchoReply, Status>> = (0..count)
            .map(|i| {
                Ok(EchoReply {
                    message: format!("{message} {i}"),
                    count: i,
                })
            })
            .collect();
        if message == FAIL_LATE {
            replies.push(Err(Status::new(FAIL_LATE_CODE, FAIL_LATE_MESSAGE)));
        }
        Ok(Response::new(Box::pin(futures_util::stream::iter(replies))))
    }
}
