//! An LLM API stand-in for the tests that build a service the way a user would: it
//! answers Anthropic's `/v1/messages`, OpenAI's `/v1/chat/completions` and `/v1/responses`,
//! streaming or not (the request body's `"stream"`), with fixture bodies whose usage is
//! known, in 97-byte frames; gzipped when the client accepts it and the stand-in is told
//! to, and with its own `x-request-id` when told to (as OpenAI sends one).

use std::convert::Infallible;
use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
use http::{Request, Response, StatusCode, header};
use http_body_util::{BodyExt, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto::Builder;
use tokio::net::TcpListener;

use crate::proxy::api_stream;

/// The usage a stand-in answer reports, in the record's (Anthropic's) meaning.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Known {
    /// Uncached input tokens.
    pub input: u64,
    /// Output tokens.
    pub output: u64,
    /// Cache reads; `None` when the answer does not report them.
    pub cache_read: Option<u64>,
    /// The served model.
    pub model: &'static str,
}

/// The answer the stand-in gives to `path`, streaming or not, and its known usage.
pub fn answer(path: &str, streaming: bool) -> Option<(&'static str, Bytes, Known)> {
    let openai = |name: &str| {
        let path = openai_fixtures_dir().join(name);
        Bytes::from(std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display())))
    };
    let sse = "text/event-stream; charset=utf-8";
    let json = "application/json";
    Some(match (path, streaming) {
        ("/v1/messages", true) => (
            sse,
            api_stream("basic_response.txt"),
            Known { input: 11, output: 6, cache_read: None, model: "claude-3-opus-latest" },
        ),
        ("/v1/messages", false) => (
            json,
            Bytes::from_static(
                br#"{"id":"msg_01","type":"message","role":"assistant","model":"claude-sonnet-4-5-20250929","content":[{"type":"text","text":"Hi."}],"stop_reason":"end_turn","stop_sequence":null,"usage":{"input_tokens":25,"cache_creation_input_tokens":0,"cache_read_input_tokens":3,"output_tokens":8}}"#,
            ),
            Known { input: 25, output: 8, cache_read: Some(3), model: "claude-sonnet-4-5-20250929" },
        ),
        ("/v1/chat/completions", true) => (
            sse,
            openai("chat_stream_usage_null_cached.sse"),
            Known { input: 176, output: 9, cache_read: Some(1024), model: "gpt-4.1-mini-2025-04-14" },
        ),
        ("/v1/chat/completions", false) => (
            json,
            openai("chat_completion.json"),
            Known { input: 120, output: 3, cache_read: Some(1280), model: "gpt-4.1-2025-04-14" },
        ),
        ("/v1/responses", true) => (
            sse,
            openai("responses_stream_completed.sse"),
            Known { input: 220, output: 140, cache_read: Some(1280), model: "gpt-5-mini-2025-08-07" },
        ),
        ("/v1/responses", false) => (
            json,
            openai("responses.json"),
            Known { input: 440, output: 330, cache_read: Some(2560), model: "gpt-5-2025-08-07" },
        ),
        _ => return None,
    })
}

/// `usage-layer/tests/fixtures/openai`.
pub fn openai_fixtures_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../usage-layer/tests/fixtures/openai")
}

/// How the stand-in answers.
#[derive(Clone, Copy, Debug, Default)]
pub struct Behaviour {
    /// Gzip the body when the request accepts gzip.
    pub gzip: bool,
    /// Send an `x-request-id` of its own on every answer.
    pub own_request_id: bool,
}

/// A running stand-in; it stops when dropped.
#[derive(Debug)]
pub struct Upstream {
    /// Where it listens.
    pub addr: SocketAddr,
    served: Arc<AtomicU64>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Upstream {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Upstream {
    /// Starts a stand-in on a free loopback port.
    pub async fn start(behaviour: Behaviour) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let served = Arc::new(AtomicU64::new(0));
        let counter = Arc::clone(&served);
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                let counter = Arc::clone(&counter);
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |request| {
                        let n = counter.fetch_add(1, Ordering::Relaxed);
                        respond(request, behaviour, n)
                    });
                    let _ = Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Self { addr, served, task }
    }

    /// The stand-in's base URL (`http://127.0.0.1:PORT`).
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// How many requests it answered.
    pub fn served(&self) -> u64 {
        self.served.load(Ordering::Relaxed)
    }
}

type Body = StreamBody<futures::stream::Iter<std::vec::IntoIter<Result<Frame<Bytes>, Infallible>>>>;

async fn respond(
    request: Request<Incoming>,
    behaviour: Behaviour,
    n: u64,
) -> Result<Response<Body>, Infallible> {
    let path = request.uri().path().to_owned();
    let gzip = behaviour.gzip
        && request
            .headers()
            .get_all(header::ACCEPT_ENCODING)
            .iter()
            .any(|value| value.to_str().is_ok_and(|value| value.contains("gzip")));
    let body = request
        .into_body()
        .collect()
        .await
        .map(|body| body.to_bytes())
        .unwrap_or_default();
    let streaming =
        serde_json::from_slice::<serde_json::Value>(&body).is_ok_and(|json| json["stream"] == true);
    let mut response = Response::builder();
    if behaviour.own_request_id {
        response = response.header("x-request-id", format!("req_upstream_{n}"));
    }
    let (content_type, bytes) = match answer(&path, streaming) {
        Some((content_type, bytes, _)) => {
            response = response.status(StatusCode::OK);
            (content_type, bytes)
        }
        None => {
            response = response.status(StatusCode::NOT_FOUND);
            (
                "application/json",
                Bytes::from_static(br#"{"type":"error","error":{"type":"not_found_error","message":"no such endpoint"}}"#),
            )
        }
    };
    let bytes = if gzip {
        response = response.header(header::CONTENT_ENCODING, "gzip");
        let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        encoder.write_all(&bytes).unwrap();
        Bytes::from(encoder.finish().unwrap())
    } else {
        bytes
    };
    let frames: Vec<Result<Frame<Bytes>, Infallible>> = bytes
        .chunks(97)
        .map(|piece| Ok(Frame::data(Bytes::copy_from_slice(piece))))
        .collect();
    let response = response
        .header(header::CONTENT_TYPE, content_type)
        .body(StreamBody::new(futures::stream::iter(frames)))
        .unwrap();
    Ok(response)
}
