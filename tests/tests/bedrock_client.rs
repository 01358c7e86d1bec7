//! The proxy's Bedrock client — the real AWS SDK inside
//! `reference_server::bedrock::Bedrock` — against the event-stream Bedrock stand-in.
//!
//! Credentials: most tests give the client a Bedrock API key (`api_key`), which the SDK
//! sends as `authorization: Bearer …` with no AWS credential chain at all, so nothing
//! but the stand-in is contacted. [`sigv4_with_static_keys_from_the_default_chain`]
//! covers the other path, the default chain: it re-runs itself as a child process
//! with static `AWS_ACCESS_KEY_ID` / `AWS_SECRET_ACCESS_KEY` in the child's environment
//! (the environment chain comes first, so it never reaches IMDS; the metadata service is
//! disabled anyway), because changing the environment of a running test is `unsafe`.

use std::process::Command;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, StatusCode};
use http_body_util::BodyExt;
use reference_server::bedrock::{Account, BEDROCK_BETAS, Bedrock, BedrockConfig, ModelMapping};
use reference_server::standins::bedrock::{
    BedrockStandIn, RecordedRequest, Reply, events_from_sse, stream_reply_for,
};
use serde_json::{Value, json};
use usage_layer::sse::Scanner;

const MODEL: &str = "us.anthropic.claude-sonnet-4-5-20250929-v1:0";
const API_KEY: &str = "test-bedrock-api-key";
const BETAS: &str = "interleaved-thinking-2025-05-14, context-1m-2025-08-07";

async fn bedrock(endpoint_url: String, api_key: Option<&str>) -> Bedrock {
    Bedrock::new(BedrockConfig {
        region: "us-east-1".to_owned(),
        endpoint_url: Some(endpoint_url),
        api_key: api_key.map(str::to_owned),
        mapping: ModelMapping::defaults(),
        connect_timeout: Duration::from_secs(2),
        read_timeout: Some(Duration::from_secs(10)),
        betas: BEDROCK_BETAS
            .iter()
            .map(|beta| (*beta).to_owned())
            .collect(),
    })
    .await
    .expect("a valid Bedrock configuration")
}

/// A Claude Code-like request, with fields Bedrock must get unchanged.
fn request(stream: bool) -> Value {
    json!({
        "model": "claude-sonnet-4-5-20250929",
        "max_tokens": 32000,
        "stream": stream,
        "temperature": 1,
        "system": [{"type": "text", "text": "You are Claude Code.", "cache_control": {"type": "ephemeral"}}],
        "messages": [{"role": "user", "content": [
            {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "iVBORw0KGgo="}},
            {"type": "text", "text": "Describe the picture."}
        ]}],
        "tools": [{"name": "Read", "description": "Reads a file", "input_schema": {"type": "object", "properties": {"path": {"type": "string"}}}}],
        "metadata": {"user_id": "user_1"},
        "a_future_field": {"kept": [1.5, null]}
    })
}

/// What Bedrock must receive for `request`: no `model` or `stream`, the Bedrock version
/// and the betas, every other field unchanged.
fn sent_to_bedrock(request: &Value) -> Value {
    let mut expected = request.clone();
    let fields = expected.as_object_mut().unwrap();
    fields.remove("model");
    fields.remove("stream");
    fields.insert("anthropic_version".into(), json!("bedrock-2023-05-31"));
    fields.insert(
        "anthropic_beta".into(),
        json!(["interleaved-thinking-2025-05-14", "context-1m-2025-08-07"]),
    );
    expected
}

async fn call(bedrock: &Bedrock, body: &Value) -> (StatusCode, HeaderMap, Bytes) {
    let beta = HeaderValue::from_static(BETAS);
    let body = Bytes::from(body.to_string());
    let response = bedrock
        .messages(&body, Some(&beta), MODEL, &Account::default())
        .await;
    let (parts, body) = response.into_parts();
    let body = body.collect().await.expect("the body").to_bytes();
    (parts.status, parts.headers, body)
}

/// The SSE the proxy must emit for these events.
fn sse(events: &[Value]) -> String {
    events
        .iter()
        .map(|event| {
            format!(
                "event: {}\ndata: {event}\n\n",
                event["type"].as_str().unwrap()
            )
        })
        .collect()
}

fn only_request(stand_in: &BedrockStandIn) -> RecordedRequest {
    let mut requests = stand_in.requests();
    assert_eq!(requests.len(), 1, "exactly one call, no retries");
    requests.remove(0)
}

fn header<'a>(headers: &'a HeaderMap, name: &str) -> &'a str {
    headers
        .get(name)
        .unwrap_or_else(|| panic!("no {name} header"))
        .to_str()
        .unwrap()
}

#[tokio::test]
async fn a_stream_is_re_emitted_as_anthropic_sse_in_order() {
    let stand_in = BedrockStandIn::start().await;
    let events = stream_reply_for(
        "claude-sonnet-4-5-20250929",
        25,
        42,
        "Hello from Bedrock, event by event.",
    );
    stand_in.respond_with(Reply::Stream(events.clone()));
    let bedrock = bedrock(stand_in.endpoint_url(), Some(API_KEY)).await;

    let request = request(true);
    let (status, headers, body) = call(&bedrock, &request).await;

    assert_eq!(status, StatusCode::OK);
    assert_eq!(header(&headers, "content-type"), "text/event-stream");
    assert_eq!(header(&headers, "cache-control"), "no-cache");
    assert_eq!(std::str::from_utf8(&body).unwrap(), sse(&events));
    assert_eq!(events_from_sse(&body), events);

    let mut scanner = Scanner::new();
    scanner.feed(&body);
    let read = scanner.finish();
    assert_eq!(read.usage.input_tokens, Some(25));
    assert_eq!(read.usage.output_tokens, Some(42));
    assert!(read.complete);
    let metrics = read.bedrock_metrics.expect("Bedrock's invocation metrics");
    assert_eq!(
        (metrics.input_token_count, metrics.output_token_count),
        (Some(25), Some(42))
    );

    let received = only_request(&stand_in);
    assert_eq!(
        received.path,
        "/model/us.anthropic.claude-sonnet-4-5-20250929-v1%3A0/invoke-with-response-stream"
    );
    assert_eq!(
        header(&received.headers, "authorization"),
        format!("Bearer {API_KEY}")
    );
    assert_eq!(
        header(&received.headers, "content-type"),
        "application/json"
    );
    assert_eq!(
        header(&received.headers, "x-amzn-bedrock-accept"),
        "application/json"
    );
    let sent: Value = serde_json::from_slice(&received.body).unwrap();
    assert_eq!(sent, sent_to_bedrock(&request));
}

#[tokio::test]
async fn a_message_is_answered_as_json() {
    let stand_in = BedrockStandIn::start().await;
    let message = json!({
        "id": "msg_bdrk_01",
        "type": "message",
        "role": "assistant",
        "model": "claude-sonnet-4-5-20250929",
        "content": [{"type": "text", "text": "A red square."}],
        "stop_reason": "end_turn",
        "stop_sequence": null,
        "usage": {"input_tokens": 31, "output_tokens": 7, "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0}
    });
    stand_in.respond_with(Reply::Message(message.clone()));
    let bedrock = bedrock(stand_in.endpoint_url(), Some(API_KEY)).await;

    let request = request(false);
    let (status, headers, body) = call(&bedrock, &request).await;

    assert_eq!(status, StatusCode::OK);
    assert_eq!(header(&headers, "content-type"), "application/json");
    assert_eq!(serde_json::from_slice::<Value>(&body).unwrap(), message);
    let received = only_request(&stand_in);
    assert_eq!(
        received.path,
        "/model/us.anthropic.claude-sonnet-4-5-20250929-v1%3A0/invoke"
    );
    assert_eq!(header(&received.headers, "accept"), "application/json");
    let sent: Value = serde_json::from_slice(&received.body).unwrap();
    assert_eq!(sent, sent_to_bedrock(&request));
}

fn anthropic_error(error_type: &str, message: &str) -> Value {
    json!({"type": "error", "error": {"type": error_type, "message": message}})
}

#[tokio::test]
async fn errors_before_the_stream_get_the_anthropic_status_and_body() {
    let stand_in = BedrockStandIn::start().await;
    let bedrock = bedrock(stand_in.endpoint_url(), Some(API_KEY)).await;
    let throttled = "Too many requests, please wait before trying again.";
    for (stream, reply, status, error_type, message) in [
        (
            true,
            Reply::Error {
                status: 429,
                error_type: "ThrottlingException",
                message: throttled.to_owned(),
            },
            429,
            "rate_limit_error",
            throttled,
        ),
        (
            false,
            Reply::Error {
                status: 400,
                error_type: "ValidationException",
                message: "max_tokens: must be at most 64000".to_owned(),
            },
            400,
            "invalid_request_error",
            "max_tokens: must be at most 64000",
        ),
        // An exception as the very first frame is answered like a refusal, not a stream.
        (
            true,
            Reply::StreamThenException {
                events: Vec::new(),
                exception: "modelStreamErrorException",
                message: "the model failed".to_owned(),
            },
            500,
            "api_error",
            "the model failed",
        ),
    ] {
        stand_in.respond_with(reply);
        let (got, headers, body) = call(&bedrock, &request(stream)).await;
        assert_eq!(got.as_u16(), status, "{error_type}");
        assert_eq!(header(&headers, "content-type"), "application/json");
        assert_eq!(
            serde_json::from_slice::<Value>(&body).unwrap(),
            anthropic_error(error_type, message)
        );
    }
    assert_eq!(stand_in.requests().len(), 3, "no retries");
}

#[tokio::test]
async fn an_exception_mid_stream_ends_it_with_an_error_event() {
    let stand_in = BedrockStandIn::start().await;
    let events = stream_reply_for("claude-sonnet-4-5-20250929", 25, 42, "Cut short here");
    let before = events[..3].to_vec();
    stand_in.respond_with(Reply::StreamThenException {
        events: before.clone(),
        exception: "throttlingException",
        message: "Too many tokens, please wait before trying again.".to_owned(),
    });
    let bedrock = bedrock(stand_in.endpoint_url(), Some(API_KEY)).await;

    let (status, _, body) = call(&bedrock, &request(true)).await;

    assert_eq!(status, StatusCode::OK);
    let error = anthropic_error(
        "rate_limit_error",
        "Too many tokens, please wait before trying again.",
    );
    let mut expected = sse(&before);
    expected.push_str(&format!("event: error\ndata: {error}\n\n"));
    assert_eq!(std::str::from_utf8(&body).unwrap(), expected);

    let mut scanner = Scanner::new();
    scanner.feed(&body);
    let read = scanner.finish();
    assert_eq!(read.error_type.as_deref(), Some("rate_limit_error"));
    assert_eq!(read.usage.input_tokens, Some(25));
    assert!(!read.complete);
}

#[tokio::test]
async fn an_invalid_body_is_refused_without_calling_bedrock() {
    let stand_in = BedrockStandIn::start().await;
    let bedrock = bedrock(stand_in.endpoint_url(), Some(API_KEY)).await;
    let response = bedrock
        .messages(
            &Bytes::from_static(b"{\"model\":"),
            None,
            MODEL,
            &Account::default(),
        )
        .await;
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    let body = response.into_body().collect().await.unwrap().to_bytes();
    let body: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(body["error"]["type"], "invalid_request_error");
    assert!(stand_in.requests().is_empty());
}

#[tokio::test]
async fn an_unreachable_bedrock_is_a_500_api_error() {
    // A port that was just free: nothing listens there.
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let bedrock = bedrock(format!("http://{closed}"), Some(API_KEY)).await;
    let (status, _, body) = call(&bedrock, &request(true)).await;
    assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
    let body: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(body["error"]["type"], "api_error");
    assert!(!body.to_string().contains(API_KEY));
}

#[tokio::test]
async fn an_unmapped_model_does_not_resolve() {
    let stand_in = BedrockStandIn::start().await;
    let bedrock = bedrock(stand_in.endpoint_url(), Some(API_KEY)).await;
    assert_eq!(bedrock.region(), "us-east-1");
    assert_eq!(bedrock.mapping().resolve("claude-2.1"), None);
    assert_eq!(bedrock.mapping().resolve("claude-sonnet-4-6"), None);
    assert_eq!(
        bedrock.mapping().resolve("claude-sonnet-4-5-20250929"),
        Some(MODEL)
    );
}

#[test]
fn events_from_sse_reads_a_fixture() {
    let fixture = b"event: message_start\ndata: {\"type\":\"message_start\"}\n\n\
: a comment\nevent: ping\ndata: {\"type\":\n\
data: \"ping\"}\n\n";
    assert_eq!(
        events_from_sse(fixture),
        [json!({"type": "message_start"}), json!({"type": "ping"})]
    );
}

const SIGV4_CHILD: &str = "BEDROCK_CLIENT_SIGV4_CHILD";
const ACCESS_KEY_ID: &str = "AKIDSTANDINTEST";

#[test]
fn sigv4_with_static_keys_from_the_default_chain() {
    if std::env::var_os(SIGV4_CHILD).is_some() {
        tokio::runtime::Runtime::new()
            .unwrap()
            .block_on(signs_with_the_default_chain());
        return;
    }
    let child = Command::new(std::env::current_exe().unwrap())
        .args([
            "sigv4_with_static_keys_from_the_default_chain",
            "--exact",
            "--test-threads=1",
        ])
        .env(SIGV4_CHILD, "1")
        .env("AWS_ACCESS_KEY_ID", ACCESS_KEY_ID)
        .env("AWS_SECRET_ACCESS_KEY", "stand-in-secret-access-key")
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env_remove("AWS_SESSION_TOKEN")
        .env_remove("AWS_BEARER_TOKEN_BEDROCK")
        .output()
        .expect("run the test again in a child process");
    let stdout = String::from_utf8_lossy(&child.stdout);
    assert!(
        child.status.success() && stdout.contains("1 passed"),
        "the child failed or ran nothing:\n{stdout}\n{}",
        String::from_utf8_lossy(&child.stderr)
    );
}

async fn signs_with_the_default_chain() {
    let stand_in = BedrockStandIn::start().await;
    let events = stream_reply_for("claude-sonnet-4-5-20250929", 3, 2, "Signed.");
    stand_in.respond_with(Reply::Stream(events.clone()));
    let bedrock = bedrock(stand_in.endpoint_url(), None).await;

    let (status, _, body) = call(&bedrock, &request(true)).await;

    assert_eq!(status, StatusCode::OK);
    assert_eq!(events_from_sse(&body), events);
    let received = only_request(&stand_in);
    let authorization = header(&received.headers, "authorization");
    assert!(
        authorization.starts_with(&format!("AWS4-HMAC-SHA256 Credential={ACCESS_KEY_ID}/"))
            && authorization.contains("/us-east-1/bedrock/aws4_request"),
        "{authorization}"
    );
    assert!(received.headers.contains_key("x-amz-date"));
}
