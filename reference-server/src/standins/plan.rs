//! An Anthropic API ("Plan") stand-in: a hyper server on 127.0.0.1 that answers
//! `POST /v1/messages` the way the API does on the wire — SSE streams sent event by event
//! (the official SDK's fixtures, or any bytes), JSON messages, errors with their status
//! and headers (`retry-after`, `request-id`) — and can hang before its headers or reset
//! the connection in the middle of a stream. It records every request exactly as received.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Request, Response, StatusCode};
use http_body_util::BodyExt;
use hyper::body::{Frame, Incoming};
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use std::pin::Pin;
use std::task::{Context, Poll};
use tokio::net::TcpListener;
use tokio::sync::mpsc;

/// One scripted answer.
#[derive(Clone, Debug)]
pub enum PlanReply {
    /// `200 text/event-stream`, the bytes sent one SSE event (blank-line separated) at a time.
    Stream(Bytes),
    /// A JSON answer with this status and body (a message, or an error).
    Json(u16, serde_json::Value),
    /// A JSON answer with extra headers (e.g. `retry-after`).
    JsonWithHeaders(u16, Vec<(&'static str, String)>, serde_json::Value),
    /// Never answers (the proxy must give up waiting for headers).
    Hang,
    /// Sends the headers and these bytes of a stream, then breaks the connection.
    ResetAfter(Bytes),
    /// Sends the headers and these bytes of a stream, then nothing, for as long as the
    /// proxy keeps the connection (a stalled upstream).
    StallAfter(Bytes),
}

impl PlanReply {
    /// A 429 `rate_limit_error`, with `retry-after` seconds.
    pub fn rate_limited(retry_after_secs: u64) -> Self {
        PlanReply::JsonWithHeaders(
            429,
            vec![("retry-after", retry_after_secs.to_string())],
            error_body(
                "rate_limit_error",
                "Number of requests has exceeded your rate limit",
            ),
        )
    }

    /// An error answer of the API's shape.
    pub fn error(status: u16, error_type: &str, message: &str) -> Self {
        PlanReply::Json(status, error_body(error_type, message))
    }
}

/// `{"type":"error","error":{"type":…,"message":…}}`.
pub fn error_body(error_type: &str, message: &str) -> serde_json::Value {
    serde_json::json!({"type": "error", "error": {"type": error_type, "message": message}})
}

/// A request as the stand-in received it.
#[derive(Clone, Debug)]
pub struct PlanRequest {
    /// Path and query.
    pub path_and_query: String,
    /// Headers.
    pub headers: HeaderMap,
    /// The body, byte for byte.
    pub body: Bytes,
}

#[derive(Debug, Default)]
struct Script {
    queued: VecDeque<PlanReply>,
    fallback: Option<PlanReply>,
    requests: Vec<PlanRequest>,
    /// Requests are counted, not kept (for load tests).
    count_only: bool,
    count: usize,
}

/// The running stand-in.
#[derive(Clone, Debug)]
pub struct PlanStandIn {
    addr: SocketAddr,
    script: Arc<Mutex<Script>>,
}

impl PlanStandIn {
    /// Starts on a free loopback port; answers `reply` until told otherwise.
    pub async fn start(reply: PlanReply) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("address");
        let script = Arc::new(Mutex::new(Script {
            fallback: Some(reply),
            ..Script::default()
        }));
        let shared = script.clone();
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                let script = shared.clone();
                tokio::spawn(async move {
                    let service = service_fn(move |request| answer(script.clone(), request));
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Self { addr, script }
    }

    /// The base URL to give the proxy.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The next requests get these answers, in order (then the standing one).
    pub fn queue(&self, replies: impl IntoIterator<Item = PlanReply>) {
        self.lock().queued.extend(replies);
    }

    /// The standing answer, once the queue is empty.
    pub fn answer_with(&self, reply: PlanReply) {
        self.lock().fallback = Some(reply);
    }

    /// Every request so far (none kept after [`count_only`](Self::count_only)).
    pub fn requests(&self) -> Vec<PlanRequest> {
        self.lock().requests.clone()
    }

    /// From now on, requests are counted but not kept: memory stays flat under load.
    pub fn count_only(&self) {
        self.lock().count_only = true;
    }

    /// How many requests were received.
    pub fn request_count(&self) -> usize {
        self.lock().count
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Script> {
        self.script.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// A response body fed by a task: frames arrive as the task sends them.
#[derive(Debug)]
pub struct ChannelBody(mpsc::Receiver<Result<Bytes, std::io::Error>>);

impl http_body::Body for ChannelBody {
    type Data = Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, std::io::Error>>> {
        self.0
            .poll_recv(cx)
            .map(|item| item.map(|result| result.map(Frame::data)))
    }
}

/// A body that sends `frames` with `pace` between them (stopping if the reader leaves).
fn paced(frames: Vec<Result<Bytes, std::io::Error>>, pace: Duration) -> ChannelBody {
    let (tx, rx) = mpsc::channel(1);
    tokio::spawn(async move {
        for (i, frame) in frames.into_iter().enumerate() {
            if i > 0 && !pace.is_zero() {
                tokio::time::sleep(pace).await;
            }
            if tx.send(frame).await.is_err() {
                return;
            }
        }
    });
    ChannelBody(rx)
}

async fn answer(
    script: Arc<Mutex<Script>>,
    request: Request<Incoming>,
) -> Result<Response<ChannelBody>, Infallible> {
    let (parts, body) = request.into_parts();
    let body = body
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    let reply = {
        let mut script = script.lock().unwrap_or_else(|p| p.into_inner());
        script.count += 1;
        if !script.count_only {
            let (headers, body) = super::detached(&parts.headers, &body);
            script.requests.push(PlanRequest {
                path_and_query: parts
                    .uri
                    .path_and_query()
                    .map(ToString::to_string)
                    .unwrap_or_default(),
                headers,
                body,
            });
        }
        let next = script.queued.pop_front();
        next.or_else(|| script.fallback.clone()).expect("a reply")
    };
    let json = |status: u16, headers: Vec<(&'static str, String)>, value: serde_json::Value| {
        let mut builder = Response::builder()
            .status(StatusCode::from_u16(status).expect("status"))
            .header("content-type", "application/json")
            .header("request-id", "req_standin");
        for (name, value) in headers {
            builder = builder.header(name, value);
        }
        builder
            .body(paced(
                vec![Ok(Bytes::from(value.to_string()))],
                Duration::ZERO,
            ))
            .expect("response")
    };
    Ok(match reply {
        PlanReply::Json(status, value) => json(status, Vec::new(), value),
        PlanReply::JsonWithHeaders(status, headers, value) => json(status, headers, value),
        PlanReply::Hang => std::future::pending().await,
        PlanReply::Stream(bytes) => sse(events(&bytes).into_iter().map(Ok).collect()),
        PlanReply::ResetAfter(bytes) => {
            let mut frames: Vec<_> = events(&bytes).into_iter().map(Ok).collect();
            frames.push(Err(std::io::Error::new(
                std::io::ErrorKind::ConnectionReset,
                "reset by the stand-in",
            )));
            sse(frames)
        }
        PlanReply::StallAfter(bytes) => {
            let frames = events(&bytes).into_iter().map(Ok).collect();
            sse_body(stalled(frames))
        }
    })
}

/// Sends `frames`, then holds the body open until the receiver goes away.
fn stalled(frames: Vec<Result<Bytes, std::io::Error>>) -> ChannelBody {
    let (tx, rx) = mpsc::channel(frames.len().max(1));
    tokio::spawn(async move {
        for frame in frames {
            if tx.send(frame).await.is_err() {
                return;
            }
        }
        tx.closed().await;
    });
    ChannelBody(rx)
}

fn sse(frames: Vec<Result<Bytes, std::io::Error>>) -> Response<ChannelBody> {
    sse_body(paced(frames, Duration::from_millis(1)))
}

fn sse_body(body: ChannelBody) -> Response<ChannelBody> {
    Response::builder()
        .header("content-type", "text/event-stream; charset=utf-8")
        .header("cache-control", "no-cache")
        .header("request-id", "req_standin")
        .body(body)
        .expect("response")
}

/// Splits an SSE stream after each blank line (LF, CRLF or CR endings), keeping every byte.
fn events(bytes: &[u8]) -> Vec<Bytes> {
    let mut events = Vec::new();
    let mut start = 0;
    let mut i = 0;
    while i < bytes.len() {
        let blank = [&b"\n\n"[..], b"\r\n\r\n", b"\r\r"]
            .into_iter()
            .find(|end| bytes[i..].starts_with(end));
        if let Some(end) = blank {
            i += end.len();
            events.push(Bytes::copy_from_slice(&bytes[start..i]));
            start = i;
        } else {
            i += 1;
        }
    }
    if start < bytes.len() {
        events.push(Bytes::copy_from_slice(&bytes[start..]));
    }
    events
}
