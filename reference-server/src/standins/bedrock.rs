//! An Amazon Bedrock Runtime stand-in that the real AWS SDK talks to.
//!
//! [`BedrockStandIn`] is a hyper server on `127.0.0.1` with an ephemeral port. Point an
//! `aws-sdk-bedrockruntime` client at [`BedrockStandIn::endpoint_url`] (any region, any
//! credentials or bearer token: nothing is verified) and it answers in Bedrock's exact
//! wire format (restJson1 with the `vnd.amazon.eventstream` binary framing), so the
//! SDK's own deserializers do all the parsing:
//!
//! * `POST /model/{modelId}/invoke-with-response-stream` — `200`,
//!   `content-type: application/vnd.amazon.eventstream`,
//!   `x-amzn-bedrock-content-type: application/json`, and one event-stream frame per
//!   Anthropic event, encoded with `aws-smithy-eventstream` (prelude, headers, CRCs):
//!   headers `:event-type: chunk`, `:content-type: application/json`,
//!   `:message-type: event`; payload `{"bytes":"<base64 of the event JSON>"}`.
//!   A failure mid-stream is an exception frame: `:exception-type` (the camel-case
//!   member name the SDK matches, e.g. `throttlingException`), `:content-type`,
//!   `:message-type: exception`, payload `{"message":"…"}`.
//! * `POST /model/{modelId}/invoke` — `200`, `content-type: application/json`, the
//!   message JSON, and Bedrock's `x-amzn-bedrock-input-token-count`,
//!   `x-amzn-bedrock-output-token-count` and `x-amzn-bedrock-invocation-latency`.
//! * An error before any event — the status, `x-amzn-errortype: <Code>:<namespace URL>`
//!   (the SDK strips the URL) and a `{"message":"…"}` body, as Bedrock sends them.
//!
//! A path prefix before `/model/` is accepted (and recorded): an endpoint URL of
//! `{endpoint_url}/{region}` tells, at the stand-in, which region a request was for.
//!
//! Every response carries an `x-amzn-requestid`. What to answer is scripted per test
//! with [`BedrockStandIn::respond_with`]; what was asked is in
//! [`BedrockStandIn::requests`]. The server stops when the stand-in is dropped.

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex, MutexGuard};

use aws_smithy_eventstream::frame::write_message_to;
use aws_smithy_types::event_stream::{Header, HeaderValue, Message};
use bytes::Bytes;
use http::{HeaderMap, Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::task::AbortHandle;

/// The `invocationLatency` the stand-in reports, in milliseconds.
const INVOCATION_LATENCY_MS: u64 = 812;
/// The `firstByteLatency` the stand-in reports, in milliseconds.
const FIRST_BYTE_LATENCY_MS: u64 = 305;

/// What the stand-in answers; it applies to every following request until changed.
///
/// A stream asked of `invoke`, or a message of `invoke-with-response-stream`, is
/// answered with a 500 `InternalServerException` saying so.
#[derive(Clone, Debug)]
pub enum Reply {
    /// A stream of these Anthropic events, one chunk frame each.
    Stream(Vec<Value>),
    /// A stream of these events, then an exception frame.
    StreamThenException {
        /// The events before the exception.
        events: Vec<Value>,
        /// The `:exception-type` on the wire, e.g. `throttlingException` or `modelStreamErrorException`.
        exception: &'static str,
        /// The exception's message.
        message: String,
    },
    /// A non-streaming answer: this message JSON.
    Message(Value),
    /// An error before any event, to either operation.
    Error {
        /// The HTTP status, e.g. 429.
        status: u16,
        /// The error code, e.g. `ThrottlingException` or `ValidationException`.
        error_type: &'static str,
        /// The error's message.
        message: String,
    },
}

/// One request the stand-in received.
#[derive(Clone, Debug)]
pub struct RecordedRequest {
    /// The path as received (percent-encoded, e.g. `/model/us.anthropic.claude-sonnet-4-5-20250929-v1%3A0/invoke`).
    pub path: String,
    /// The request headers.
    pub headers: HeaderMap,
    /// The body, exactly as received.
    pub body: Bytes,
}

#[derive(Debug)]
struct State {
    reply: Reply,
    requests: Vec<RecordedRequest>,
    /// Requests received, kept or not.
    count: usize,
    /// Count requests without keeping them (memory stays flat under load).
    count_only: bool,
}

/// A Bedrock Runtime stand-in on `127.0.0.1`; see the [module docs](self).
#[derive(Debug)]
pub struct BedrockStandIn {
    address: SocketAddr,
    state: Arc<Mutex<State>>,
    server: AbortHandle,
}

impl BedrockStandIn {
    /// Starts the stand-in; until [`respond_with`](Self::respond_with), it answers 500.
    pub async fn start() -> Self {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
            .await
            .expect("bind the Bedrock stand-in");
        let address = listener.local_addr().expect("the stand-in's address");
        let state = Arc::new(Mutex::new(State {
            reply: Reply::Error {
                status: 500,
                error_type: "InternalServerException",
                message: "the stand-in has no reply scripted".to_owned(),
            },
            requests: Vec::new(),
            count: 0,
            count_only: false,
        }));
        let server = tokio::spawn(serve(listener, Arc::clone(&state))).abort_handle();
        Self {
            address,
            state,
            server,
        }
    }

    /// The URL to give the SDK as its endpoint URL.
    pub fn endpoint_url(&self) -> String {
        format!("http://{}", self.address)
    }

    /// Answers the following requests with `reply`.
    pub fn respond_with(&self, reply: Reply) {
        lock(&self.state).reply = reply;
    }

    /// The requests received so far, oldest first (none kept after
    /// [`count_only`](Self::count_only)).
    pub fn requests(&self) -> Vec<RecordedRequest> {
        lock(&self.state).requests.clone()
    }

    /// From now on, requests are counted but not kept: memory stays flat under load.
    pub fn count_only(&self) {
        lock(&self.state).count_only = true;
    }

    /// How many requests were received.
    pub fn request_count(&self) -> usize {
        lock(&self.state).count
    }
}

impl Drop for BedrockStandIn {
    fn drop(&mut self) {
        self.server.abort();
    }
}

fn lock(state: &Mutex<State>) -> MutexGuard<'_, State> {
    // A test that panicked while holding the lock has failed already; its state is still readable.
    state
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

async fn serve(listener: TcpListener, state: Arc<Mutex<State>>) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let state = Arc::clone(&state);
        tokio::spawn(async move {
            let service = service_fn(move |request| answer(request, Arc::clone(&state)));
            // A client that hangs up mid-answer is no concern of the stand-in.
            let _ = http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

async fn answer(
    request: Request<Incoming>,
    state: Arc<Mutex<State>>,
) -> Result<Response<Full<Bytes>>, hyper::Error> {
    let (parts, body) = request.into_parts();
    let body = body.collect().await?.to_bytes();
    let path = parts.uri.path().to_owned();
    let operation = path
        .find("/model/")
        .map(|at| &path[at + "/model/".len()..])
        .and_then(|rest| rest.rsplit_once('/'))
        .map(|(_, operation)| operation.to_owned());
    let reply = {
        let mut state = lock(&state);
        state.count += 1;
        if !state.count_only {
            let (headers, body) = super::detached(&parts.headers, &body);
            state.requests.push(RecordedRequest {
                path,
                headers,
                body,
            });
        }
        state.reply.clone()
    };
    Ok(match (parts.method, operation.as_deref()) {
        (Method::POST, Some("invoke-with-response-stream")) => reply.streamed(),
        (Method::POST, Some("invoke")) => reply.invoked(),
        _ => error(404, "UnknownOperationException", "no such operation"),
    })
}

impl Reply {
    /// The answer to `InvokeModelWithResponseStream`.
    fn streamed(self) -> Response<Full<Bytes>> {
        let (events, exception) = match self {
            Reply::Stream(events) => (events, None),
            Reply::StreamThenException {
                events,
                exception,
                message,
            } => (events, Some((exception, message))),
            Reply::Error {
                status,
                error_type,
                message,
            } => return error(status, error_type, &message),
            Reply::Message(_) => {
                return error(
                    500,
                    "InternalServerException",
                    "the stand-in was scripted with a message, not a stream",
                );
            }
        };
        let mut body = Vec::new();
        for event in &events {
            body.extend(chunk_frame(event));
        }
        if let Some((exception, message)) = exception {
            body.extend(exception_frame(exception, &message));
        }
        let mut response = reply(StatusCode::OK, "application/vnd.amazon.eventstream", body);
        response.headers_mut().insert(
            "x-amzn-bedrock-content-type",
            http::HeaderValue::from_static("application/json"),
        );
        response
    }

    /// The answer to `InvokeModel`.
    fn invoked(self) -> Response<Full<Bytes>> {
        let message = match self {
            Reply::Message(message) => message,
            Reply::Error {
                status,
                error_type,
                message,
            } => return error(status, error_type, &message),
            Reply::Stream(_) | Reply::StreamThenException { .. } => {
                return error(
                    500,
                    "InternalServerException",
                    "the stand-in was scripted with a stream, not a message",
                );
            }
        };
        let count = |field: &str| message["usage"][field].as_u64().unwrap_or(0).to_string();
        let counts = [
            ("x-amzn-bedrock-input-token-count", count("input_tokens")),
            ("x-amzn-bedrock-output-token-count", count("output_tokens")),
            (
                "x-amzn-bedrock-invocation-latency",
                INVOCATION_LATENCY_MS.to_string(),
            ),
        ];
        let mut response = reply(StatusCode::OK, "application/json", message.to_string());
        for (name, value) in counts {
            response
                .headers_mut()
                .insert(name, value.parse().expect("a number is a header value"));
        }
        response
    }
}

fn reply(status: StatusCode, content_type: &str, body: impl Into<Bytes>) -> Response<Full<Bytes>> {
    Response::builder()
        .status(status)
        .header("content-type", content_type)
        .header("x-amzn-requestid", uuid::Uuid::now_v7().to_string())
        .body(Full::new(body.into()))
        .expect("a well-formed response")
}

/// An error before any event, as Bedrock sends it.
fn error(status: u16, error_type: &str, message: &str) -> Response<Full<Bytes>> {
    let status = StatusCode::from_u16(status).expect("a valid HTTP status");
    let mut response = reply(
        status,
        "application/json",
        json!({ "message": message }).to_string(),
    );
    let code = format!("{error_type}:http://internal.amazon.com/coral/com.amazon.bedrock/");
    response.headers_mut().insert(
        "x-amzn-errortype",
        code.parse().expect("an error code is a header value"),
    );
    response
}

/// One `chunk` event frame carrying an Anthropic event.
fn chunk_frame(event: &Value) -> Vec<u8> {
    let bytes = aws_smithy_types::base64::encode(event.to_string());
    frame(
        [
            (":event-type", "chunk"),
            (":content-type", "application/json"),
            (":message-type", "event"),
        ],
        json!({ "bytes": bytes }),
    )
}

/// One exception frame.
fn exception_frame(exception: &'static str, message: &str) -> Vec<u8> {
    frame(
        [
            (":exception-type", exception),
            (":content-type", "application/json"),
            (":message-type", "exception"),
        ],
        json!({ "message": message }),
    )
}

fn frame(headers: [(&'static str, &'static str); 3], payload: Value) -> Vec<u8> {
    let headers = headers
        .into_iter()
        .map(|(name, value)| Header::new(name, HeaderValue::String(value.into())))
        .collect();
    let message = Message::new_from_parts(headers, payload.to_string());
    let mut frame = Vec::new();
    write_message_to(&message, &mut frame).expect("encode an event-stream frame");
    frame
}

/// The event JSON values of an SSE fixture (LF line ends, events separated by blank lines).
pub fn events_from_sse(sse: &[u8]) -> Vec<Value> {
    let sse = std::str::from_utf8(sse).expect("an SSE fixture is UTF-8");
    sse.split("\n\n")
        .filter_map(|event| {
            let data: Vec<&str> = event
                .lines()
                .filter_map(|line| line.strip_prefix("data:"))
                .map(|data| data.strip_prefix(' ').unwrap_or(data))
                .collect();
            (!data.is_empty())
                .then(|| serde_json::from_str(&data.join("\n")).expect("an event's data is JSON"))
        })
        .collect()
}

/// The events Bedrock streams for a one-text-block answer from `model`, with its usage and invocation metrics.
pub fn stream_reply_for(
    model: &str,
    input_tokens: u64,
    output_tokens: u64,
    text: &str,
) -> Vec<Value> {
    let mut events = vec![
        json!({
            "type": "message_start",
            "message": {
                "id": "msg_bdrk_01StandIn",
                "type": "message",
                "role": "assistant",
                "model": model,
                "content": [],
                "stop_reason": null,
                "stop_sequence": null,
                "usage": {
                    "input_tokens": input_tokens,
                    "cache_creation_input_tokens": 0,
                    "cache_read_input_tokens": 0,
                    "output_tokens": 1
                }
            }
        }),
        json!({
            "type": "content_block_start",
            "index": 0,
            "content_block": { "type": "text", "text": "" }
        }),
    ];
    events.extend(text.split_inclusive(' ').map(|piece| {
        json!({
            "type": "content_block_delta",
            "index": 0,
            "delta": { "type": "text_delta", "text": piece }
        })
    }));
    events.extend([
        json!({ "type": "content_block_stop", "index": 0 }),
        json!({
            "type": "message_delta",
            "delta": { "stop_reason": "end_turn", "stop_sequence": null },
            "usage": { "output_tokens": output_tokens }
        }),
        json!({
            "type": "message_stop",
            "amazon-bedrock-invocationMetrics": {
                "inputTokenCount": input_tokens,
                "outputTokenCount": output_tokens,
                "invocationLatency": INVOCATION_LATENCY_MS,
                "firstByteLatency": FIRST_BYTE_LATENCY_MS
            }
        }),
    ]);
    events
}
