//! The layer around a real hyper server over loopback TCP: a stream read to its end, an
//! exact-length JSON body (hyper stops polling at `content-length`), and a client that
//! hangs up in the middle of a stream.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response};
use http_body::{Body, Frame};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tower::{ServiceBuilder, service_fn};
use usage_layer::sink::MemorySink;
use usage_layer::{Outcome, Provider, UsageLayer, UsageRecord};

const START: &str = "event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"id\":\"msg_1\",\"model\":\"claude-opus-4-5\",\"usage\":{\"input_tokens\":5000,\"cache_creation_input_tokens\":200,\"output_tokens\":1}}}\n\n";
const DELTA: &str = "event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":\"word \"}}\n\n";
const END: &str = "event: message_delta\ndata: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"end_turn\"},\"usage\":{\"output_tokens\":77}}\n\nevent: message_stop\ndata: {\"type\":\"message_stop\"}\n\n";

const JSON: &str = r#"{"type":"message","model":"claude-haiku-4-5","usage":{"input_tokens":31,"output_tokens":12}}"#;

/// A streaming body fed by a channel, like an upstream stream arriving piece by piece.
struct ChannelBody(mpsc::Receiver<Bytes>);

impl Body for ChannelBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        self.0
            .poll_recv(cx)
            .map(|piece| piece.map(|b| Ok(Frame::data(b))))
    }
}

/// Streams START, then `deltas` DELTAs 5 ms apart (endless if `None`), then END.
fn stream_response(deltas: Option<usize>) -> Response<ChannelBody> {
    let (tx, rx) = mpsc::channel(1);
    tokio::spawn(async move {
        let _ = tx.send(Bytes::from_static(START.as_bytes())).await;
        let mut sent = 0;
        while deltas.is_none_or(|n| sent < n) {
            tokio::time::sleep(Duration::from_millis(5)).await;
            if tx.send(Bytes::from_static(DELTA.as_bytes())).await.is_err() {
                return; // the body was dropped
            }
            sent += 1;
        }
        let _ = tx.send(Bytes::from_static(END.as_bytes())).await;
    });
    let mut response = Response::builder()
        .header("content-type", "text/event-stream")
        .body(ChannelBody(rx))
        .unwrap();
    response.extensions_mut().insert(Provider::PLAN);
    response
}

/// Serves the layer around a handler that picks its answer by path.
async fn serve(records: MemorySink) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let service = ServiceBuilder::new()
        .layer(UsageLayer::new(records))
        .service(service_fn(|request: Request<Incoming>| async move {
            let response = match request.uri().path() {
                "/json" => Response::builder()
                    .header("content-type", "application/json")
                    .header("content-length", JSON.len())
                    .body(EitherBody::Full(Full::new(Bytes::from_static(
                        JSON.as_bytes(),
                    ))))
                    .unwrap(),
                "/stream" => stream_response(Some(10)).map(EitherBody::Channel),
                _ => stream_response(None).map(EitherBody::Channel),
            };
            Ok::<_, Infallible>(response)
        }));
    tokio::spawn(async move {
        loop {
            let (stream, _) = listener.accept().await.unwrap();
            let service = TowerToHyperService::new(service.clone());
            tokio::spawn(async move {
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    addr
}

enum EitherBody {
    Full(Full<Bytes>),
    Channel(ChannelBody),
}

impl Body for EitherBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        match self.get_mut() {
            EitherBody::Full(body) => Pin::new(body).poll_frame(cx),
            EitherBody::Channel(body) => Pin::new(body).poll_frame(cx),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            EitherBody::Full(body) => body.is_end_stream(),
            EitherBody::Channel(body) => body.is_end_stream(),
        }
    }

    fn size_hint(&self) -> http_body::SizeHint {
        match self {
            EitherBody::Full(body) => body.size_hint(),
            EitherBody::Channel(body) => body.size_hint(),
        }
    }
}

async fn send(addr: SocketAddr, path: &str) -> TcpStream {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let request = format!(
        "POST {path} HTTP/1.1\r\nhost: {addr}\r\ncontent-length: 2\r\nconnection: close\r\n\r\n{{}}"
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    stream
}

/// The whole HTTP/1.1 response, read until the server closes the connection.
async fn fetch(addr: SocketAddr, path: &str) -> String {
    let mut response = Vec::new();
    send(addr, path)
        .await
        .read_to_end(&mut response)
        .await
        .unwrap();
    String::from_utf8(response).unwrap()
}

async fn one_record(records: &MemorySink) -> UsageRecord {
    for _ in 0..500 {
        if !records.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let mut all = records.take();
    assert_eq!(all.len(), 1, "exactly one record: {all:#?}");
    all.pop().unwrap()
}

#[tokio::test]
async fn stream_read_to_the_end_is_completed() {
    let records = MemorySink::new();
    let response = fetch(serve(records.clone()).await, "/stream").await;
    assert!(response.contains("message_stop"), "{response}");

    let record = one_record(&records).await;
    assert_eq!(record.outcome, Outcome::Completed);
    assert_eq!(record.provider, Some(Provider::PLAN));
    assert_eq!(record.usage.input_tokens, Some(5000));
    assert_eq!(record.usage.cache_creation_input_tokens, Some(200));
    assert_eq!(record.usage.output_tokens, Some(77));
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(records.is_empty(), "still exactly one");
}

#[tokio::test]
async fn exact_length_json_is_completed_although_hyper_stops_polling() {
    let records = MemorySink::new();
    let response = fetch(serve(records.clone()).await, "/json").await;
    assert!(response.contains(&format!("content-length: {}", JSON.len())));
    assert!(response.ends_with(JSON), "{response}");

    let record = one_record(&records).await;
    assert_eq!(record.outcome, Outcome::Completed);
    assert_eq!(record.usage.input_tokens, Some(31));
    assert_eq!(record.usage.output_tokens, Some(12));
    assert_eq!(record.response_bytes, JSON.len() as u64);
}

#[tokio::test]
async fn client_hanging_up_mid_stream_is_recorded_with_the_billed_input() {
    let records = MemorySink::new();
    let addr = serve(records.clone()).await;
    let mut stream = send(addr, "/endless").await;
    let mut seen = Vec::new();
    let mut buf = [0; 4096];
    while !String::from_utf8_lossy(&seen).contains("content_block_delta") {
        let n = stream.read(&mut buf).await.unwrap();
        assert!(n > 0, "the server closed early");
        seen.extend_from_slice(&buf[..n]);
    }
    drop(stream); // Esc in Claude Code

    let record = one_record(&records).await;
    assert_eq!(record.outcome, Outcome::ClientDisconnected);
    assert_eq!(record.usage.input_tokens, Some(5000), "input was billed");
    assert_eq!(record.usage.output_tokens, Some(1));
    assert_eq!(record.served_model.as_deref(), Some("claude-opus-4-5"));
}
