//! The layer in a real tower stack: one record for each way a request can end.

mod common;

use std::convert::Infallible;
use std::io;
use std::time::Duration;

use bytes::{Buf, Bytes};
use futures::stream;
use http::{Request, Response, StatusCode};
use http_body::{Body, Frame};
use http_body_util::{BodyExt, Full, StreamBody};
use tower::{Service, ServiceBuilder, ServiceExt, service_fn};
use usage_layer::sink::MemorySink;
use usage_layer::{
    Caller, Fallback, Outcome, ParseIssue, Provider, Region, RequestId, RequestedModel, UsageLayer,
    UsageRecord,
};
use uuid::Uuid;

type Frames = Vec<Result<Frame<Bytes>, io::Error>>;
type SseBody = StreamBody<stream::Iter<std::vec::IntoIter<Result<Frame<Bytes>, io::Error>>>>;

const START: &str = "event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"id\":\"msg_1\",\"model\":\"claude-sonnet-4-5-20250929\",\"usage\":{\"input_tokens\":120,\"cache_read_input_tokens\":30,\"output_tokens\":1}}}\n\n";
const DELTA_TEXT: &str = "event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":\"Hi\"}}\n\n";
const PING: &str = "event: ping\ndata: {\"type\": \"ping\"}\n\n";
const MESSAGE_DELTA: &str = "event: message_delta\ndata: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"end_turn\"},\"usage\":{\"output_tokens\":42}}\n\n";
const STOP: &str = "event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n";

fn frames(parts: &[&'static str]) -> Frames {
    parts
        .iter()
        .map(|part| Ok(Frame::data(Bytes::from_static(part.as_bytes()))))
        .collect()
}

fn sse_response(frames: Frames) -> Response<SseBody> {
    Response::builder()
        .header("content-type", "text/event-stream; charset=utf-8")
        .body(StreamBody::new(stream::iter(frames)))
        .unwrap()
}

/// A stack with the layer around a handler that answers every request with `respond()`.
fn stack<B, F>(
    records: &MemorySink,
    respond: F,
) -> impl Service<
    Request<()>,
    Response = Response<usage_layer::UsageBody<B, MemorySink>>,
    Error = io::Error,
>
where
    B: Body,
    F: Fn() -> Result<Response<B>, io::Error> + Clone,
{
    ServiceBuilder::new()
        .layer(UsageLayer::new(records.clone()))
        .service(service_fn(move |_request: Request<()>| {
            let respond = respond.clone();
            async move { respond() }
        }))
}

fn only(records: &MemorySink) -> UsageRecord {
    let mut all = records.take();
    assert_eq!(all.len(), 1, "exactly one record: {all:#?}");
    all.pop().unwrap()
}

async fn drain<B: Body>(body: B) -> Vec<u8>
where
    B::Error: std::fmt::Debug,
{
    body.collect().await.unwrap().to_bytes().to_vec()
}

#[tokio::test]
async fn completed_stream_is_recorded_once_with_labels_from_extensions() {
    let records = MemorySink::new();
    let parts = [START, PING, DELTA_TEXT, DELTA_TEXT, MESSAGE_DELTA, STOP];
    let service = ServiceBuilder::new()
        .layer(UsageLayer::new(records.clone()))
        .service(service_fn(move |_request: Request<()>| async move {
            let mut response = sse_response(frames(&parts));
            response.extensions_mut().insert(Provider::PLAN);
            Ok::<_, io::Error>(response)
        }));

    let user = Uuid::now_v7();
    let key = Uuid::now_v7();
    let id = RequestId::new();
    let mut request = Request::new(());
    request.extensions_mut().insert(id.clone());
    request
        .extensions_mut()
        .insert(Caller::user(user).with_access_key(key));
    request
        .extensions_mut()
        .insert(RequestedModel("claude-sonnet-4-5".into()));

    let response = service.oneshot(request).await.unwrap();
    assert!(records.is_empty(), "nothing recorded before the body ends");
    let bytes = drain(response.into_body()).await;
    assert_eq!(bytes, parts.concat().as_bytes(), "bytes pass unchanged");

    let record = only(&records);
    assert_eq!(record.request_id, id);
    assert_eq!(record.caller, Caller::user(user).with_access_key(key));
    assert_eq!(record.provider, Some(Provider::PLAN));
    assert_eq!(record.requested_model.as_deref(), Some("claude-sonnet-4-5"));
    assert_eq!(
        record.served_model.as_deref(),
        Some("claude-sonnet-4-5-20250929")
    );
    assert_eq!(record.model(), Some("claude-sonnet-4-5-20250929"));
    assert_eq!(record.status, Some(StatusCode::OK));
    assert!(record.streaming);
    assert_eq!(record.usage.input_tokens, Some(120));
    assert_eq!(record.usage.cache_read_input_tokens, Some(30));
    assert_eq!(record.usage.output_tokens, Some(42));
    assert_eq!(record.usage.cache_creation_input_tokens, None);
    assert_eq!(record.stop_reason.as_deref(), Some("end_turn"));
    assert_eq!(record.outcome, Outcome::Completed);
    assert_eq!(record.parse_issue, None);
    assert_eq!(record.response_bytes, bytes.len() as u64);
    assert!(record.time_to_first_byte.is_some());
    assert!(record.duration >= record.time_to_first_byte.unwrap());
}

#[tokio::test]
async fn every_fixture_through_the_layer_gives_the_sdk_usage() {
    for (expected, bytes) in common::sse_fixtures() {
        let records = MemorySink::new();
        let chunks: Vec<Bytes> = bytes.chunks(17).map(Bytes::copy_from_slice).collect();
        let service = stack(&records, move || {
            Ok(sse_response(
                chunks.iter().map(|c| Ok(Frame::data(c.clone()))).collect(),
            ))
        });
        let response = service.oneshot(Request::new(())).await.unwrap();
        drain(response.into_body()).await;
        let record = only(&records);
        assert_eq!(
            record.usage.input_tokens, expected.input,
            "{}",
            expected.file
        );
        assert_eq!(
            record.usage.output_tokens, expected.output,
            "{}",
            expected.file
        );
        assert_eq!(
            record.usage.cache_creation_input_tokens,
            expected.cache_creation
        );
        assert_eq!(record.usage.cache_read_input_tokens, expected.cache_read);
        assert_eq!(record.outcome, Outcome::Completed, "{}", expected.file);
        assert_eq!(record.provider, None, "nobody said: no provider");
    }
}

#[tokio::test]
async fn client_dropping_the_body_after_message_start_keeps_the_input_tokens() {
    let records = MemorySink::new();
    let service = stack(&records, || {
        Ok(sse_response(frames(&[
            START,
            DELTA_TEXT,
            DELTA_TEXT,
            MESSAGE_DELTA,
            STOP,
        ])))
    });
    let response = service.oneshot(Request::new(())).await.unwrap();
    let mut body = response.into_body();
    let first = body.frame().await.unwrap().unwrap();
    assert_eq!(first.into_data().unwrap(), START.as_bytes());
    assert!(records.is_empty());
    drop(body); // the client pressed Esc

    let record = only(&records);
    assert_eq!(record.outcome, Outcome::ClientDisconnected);
    assert_eq!(record.usage.input_tokens, Some(120));
    assert_eq!(record.usage.output_tokens, Some(1));
    assert_eq!(record.response_bytes, START.len() as u64);
}

#[tokio::test]
async fn upstream_body_error_is_recorded_and_passed_on() {
    let records = MemorySink::new();
    let service = stack(&records, || {
        let mut parts = frames(&[START, DELTA_TEXT]);
        parts.push(Err(io::Error::new(io::ErrorKind::ConnectionReset, "reset")));
        Ok(sse_response(parts))
    });
    let response = service.oneshot(Request::new(())).await.unwrap();
    let error = response.into_body().collect().await.unwrap_err();
    assert_eq!(
        error.kind(),
        io::ErrorKind::ConnectionReset,
        "the error is the inner one"
    );

    let record = only(&records);
    assert_eq!(record.outcome, Outcome::UpstreamError);
    assert_eq!(record.usage.input_tokens, Some(120));
}

#[tokio::test]
async fn stream_error_event_is_recorded_with_its_type() {
    let records = MemorySink::new();
    let service = stack(&records, || {
        Ok(sse_response(frames(&[
            START,
            DELTA_TEXT,
            "event: error\ndata: {\"type\":\"error\",\"error\":{\"type\":\"overloaded_error\",\"message\":\"Overloaded\"}}\n\n",
        ])))
    });
    let response = service.oneshot(Request::new(())).await.unwrap();
    drain(response.into_body()).await;

    let record = only(&records);
    assert_eq!(record.outcome, Outcome::StreamError);
    assert_eq!(record.error_type.as_deref(), Some("overloaded_error"));
    assert_eq!(record.usage.input_tokens, Some(120));
}

#[tokio::test]
async fn stream_ending_before_its_message_is_an_upstream_error() {
    let records = MemorySink::new();
    let service = stack(&records, || Ok(sse_response(frames(&[START, DELTA_TEXT]))));
    let response = service.oneshot(Request::new(())).await.unwrap();
    drain(response.into_body()).await;
    assert_eq!(only(&records).outcome, Outcome::UpstreamError);
}

/// A body with an exact length may never be polled again after its last frame (hyper
/// does not poll past `content-length`): the record must not wait for a `None`.
#[tokio::test]
async fn exact_length_json_body_records_right_after_its_last_frame() {
    let records = MemorySink::new();
    let json: &'static str = r#"{"id":"msg_2","type":"message","model":"claude-haiku-4-5","content":[{"type":"text","text":"ok"}],"stop_reason":"end_turn","usage":{"input_tokens":9,"output_tokens":3,"cache_creation_input_tokens":100,"cache_creation":{"ephemeral_5m_input_tokens":60,"ephemeral_1h_input_tokens":40}}}"#;
    let service = stack(&records, move || {
        Ok(Response::builder()
            .header("content-type", "application/json")
            .header("content-length", json.len())
            .body(Full::new(Bytes::from_static(json.as_bytes())))
            .unwrap())
    });
    let response = service.oneshot(Request::new(())).await.unwrap();
    let mut body = response.into_body();
    assert_eq!(
        body.size_hint().exact(),
        Some(json.len() as u64),
        "size hint forwarded"
    );
    let frame = body.frame().await.unwrap().unwrap();
    assert_eq!(frame.into_data().unwrap(), json.as_bytes());
    assert!(body.is_end_stream(), "is_end_stream forwarded");

    let record = only(&records);
    assert_eq!(record.outcome, Outcome::Completed);
    assert!(!record.streaming);
    assert_eq!(record.usage.input_tokens, Some(9));
    assert_eq!(record.usage.output_tokens, Some(3));
    assert_eq!(record.usage.cache_creation_input_tokens, Some(100));
    assert_eq!(record.usage.ephemeral_5m_input_tokens, Some(60));
    assert_eq!(record.usage.ephemeral_1h_input_tokens, Some(40));
    assert_eq!(record.served_model.as_deref(), Some("claude-haiku-4-5"));
    drop(body);
    assert!(
        records.is_empty(),
        "dropping it afterwards records nothing more"
    );
}

#[tokio::test]
async fn inner_service_error_is_recorded_without_status() {
    let records = MemorySink::new();
    let service = stack::<Full<Bytes>, _>(&records, || {
        Err(io::Error::new(io::ErrorKind::TimedOut, "connect timeout"))
    });
    let error = service.oneshot(Request::new(())).await.unwrap_err();
    assert_eq!(error.kind(), io::ErrorKind::TimedOut);

    let record = only(&records);
    assert_eq!(record.outcome, Outcome::ServiceError);
    assert_eq!(record.status, None);
    assert!(record.usage.is_empty());
}

#[tokio::test]
async fn rate_limited_response_is_recorded_with_status_and_error_type() {
    let records = MemorySink::new();
    let service = stack(&records, || {
        Ok(Response::builder()
            .status(StatusCode::TOO_MANY_REQUESTS)
            .header("content-type", "application/json")
            .header("retry-after", "30")
            .body(Full::new(Bytes::from_static(
                br#"{"type":"error","error":{"type":"rate_limit_error","message":"Number of request tokens has exceeded your per-minute rate limit"}}"#,
            )))
            .unwrap())
    });
    let response = service.oneshot(Request::new(())).await.unwrap();
    assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(response.headers()["retry-after"], "30");
    drain(response.into_body()).await;

    let record = only(&records);
    assert_eq!(record.outcome, Outcome::ErrorResponse);
    assert_eq!(record.status, Some(StatusCode::TOO_MANY_REQUESTS));
    assert_eq!(record.error_type.as_deref(), Some("rate_limit_error"));
    assert!(record.usage.is_empty());
}

#[tokio::test]
async fn a_504_the_service_made_itself_says_timeout_and_a_success_cannot_be_relabelled() {
    let records = MemorySink::new();
    let service = stack(&records, || {
        let mut response = Response::builder()
            .status(StatusCode::GATEWAY_TIMEOUT)
            .header("content-type", "application/json")
            .body(Full::new(Bytes::from_static(
                br#"{"type":"error","error":{"type":"timeout_error","message":"no answer"}}"#,
            )))
            .unwrap();
        response.extensions_mut().insert(Outcome::Timeout);
        response.extensions_mut().insert(Provider::PLAN);
        Ok(response)
    });
    let response = service.oneshot(Request::new(())).await.unwrap();
    drain(response.into_body()).await;
    let record = only(&records);
    assert_eq!(record.outcome, Outcome::Timeout);
    assert_eq!(record.status, Some(StatusCode::GATEWAY_TIMEOUT));
    assert_eq!(record.provider, Some(Provider::PLAN));

    // On a success the layer's own reading stands.
    let service = stack(&records, || {
        let mut response = sse_response(frames(&[START, DELTA_TEXT, MESSAGE_DELTA, STOP]));
        response.extensions_mut().insert(Outcome::Timeout);
        Ok(response)
    });
    let response = service.oneshot(Request::new(())).await.unwrap();
    drain(response.into_body()).await;
    assert_eq!(only(&records).outcome, Outcome::Completed);
}

#[tokio::test]
async fn encoded_body_passes_untouched_and_unparsed() {
    // A coding the layer does not read, and a gzip body that is not gzip.
    for (coding, issue) in [
        ("compress", ParseIssue::ContentEncoded),
        ("gzip", ParseIssue::Undecodable),
    ] {
        let records = MemorySink::new();
        let gzipped: &'static [u8] = b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\x03not really";
        let service = stack(&records, move || {
            Ok(Response::builder()
                .header("content-type", "text/event-stream")
                .header("content-encoding", coding)
                .body(Full::new(Bytes::from_static(gzipped)))
                .unwrap())
        });
        let response = service.oneshot(Request::new(())).await.unwrap();
        assert_eq!(drain(response.into_body()).await, gzipped);

        let record = only(&records);
        assert_eq!(record.outcome, Outcome::Unparsed, "{coding}");
        assert_eq!(record.parse_issue, Some(issue), "{coding}");
        assert!(record.usage.is_empty());
    }
}

#[tokio::test]
async fn oversized_json_body_passes_and_is_marked() {
    let records = MemorySink::new();
    let service = ServiceBuilder::new()
        .layer(UsageLayer::new(records.clone()).max_json_bytes(16))
        .service(service_fn(|_request: Request<()>| async {
            Ok::<_, Infallible>(
                Response::builder()
                    .header("content-type", "application/json")
                    .body(Full::new(Bytes::from_static(
                        br#"{"type":"message","usage":{"input_tokens":1}}"#,
                    )))
                    .unwrap(),
            )
        }));
    let response = service.oneshot(Request::new(())).await.unwrap();
    drain(response.into_body()).await;
    let record = only(&records);
    assert_eq!(record.outcome, Outcome::Unparsed);
    assert_eq!(record.parse_issue, Some(ParseIssue::OverCap));
}

#[tokio::test]
async fn response_future_dropped_before_the_response_is_a_disconnect() {
    let records = MemorySink::new();
    let mut service = ServiceBuilder::new()
        .layer(UsageLayer::new(records.clone()))
        .service(service_fn(|_request: Request<()>| async {
            tokio::time::sleep(Duration::from_secs(3600)).await;
            Ok::<_, Infallible>(Response::new(Full::<Bytes>::default()))
        }));
    let future = service.ready().await.unwrap().call(Request::new(()));
    let timed_out = tokio::time::timeout(Duration::from_millis(10), future).await;
    assert!(timed_out.is_err());

    let record = only(&records);
    assert_eq!(record.outcome, Outcome::ClientDisconnected);
    assert_eq!(record.status, None);
}

#[tokio::test]
async fn response_labels_override_request_labels() {
    let records = MemorySink::new();
    let service = ServiceBuilder::new()
        .layer(UsageLayer::new(records.clone()))
        .service(service_fn(|_request: Request<()>| async {
            let mut response = sse_response(frames(&[START, MESSAGE_DELTA, STOP]));
            response.extensions_mut().insert(Provider::BEDROCK);
            response.extensions_mut().insert(Region("eu-west-1".into()));
            response.extensions_mut().insert(Fallback {
                from: Provider::PLAN,
                reason: "rate_limited".into(),
            });
            Ok::<_, Infallible>(response)
        }));
    let mut request = Request::new(());
    request.extensions_mut().insert(Provider::PLAN);
    let response = service.oneshot(request).await.unwrap();
    drain(response.into_body()).await;

    let record = only(&records);
    assert_eq!(record.provider, Some(Provider::BEDROCK));
    assert_eq!(record.region.as_deref(), Some("eu-west-1"));
    let fallback = record.fallback.unwrap();
    assert_eq!(fallback.from, Provider::PLAN);
    assert_eq!(fallback.reason, "rate_limited");
}

#[tokio::test]
async fn empty_body_without_content_type_is_no_parse_issue() {
    let records = MemorySink::new();
    let service = stack(&records, || Ok(Response::new(Full::<Bytes>::default())));
    let response = service.oneshot(Request::new(())).await.unwrap();
    assert!(response.body().is_end_stream());
    drop(response); // never polled: it was empty anyway

    let record = only(&records);
    assert_eq!(record.outcome, Outcome::Completed);
    assert_eq!(record.parse_issue, None);
    assert_eq!(record.time_to_first_byte, None);
}

/// Data that is not one contiguous slice (a `Chain`) is read slice by slice.
#[tokio::test]
async fn non_contiguous_frames_are_read_in_full() {
    let records = MemorySink::new();
    let service = ServiceBuilder::new()
        .layer(UsageLayer::new(records.clone()))
        .service(service_fn(|_request: Request<()>| async {
            let split = START.len() / 2;
            let chained = Bytes::from_static(&START.as_bytes()[..split])
                .chain(Bytes::from_static(&START.as_bytes()[split..]));
            let body = StreamBody::new(stream::iter([Ok::<_, Infallible>(Frame::data(chained))]));
            Ok::<_, Infallible>(
                Response::builder()
                    .header("content-type", "text/event-stream")
                    .body(body)
                    .unwrap(),
            )
        }));
    let response = service.oneshot(Request::new(())).await.unwrap();
    drain(response.into_body()).await;
    let record = only(&records);
    assert_eq!(record.usage.input_tokens, Some(120));
    assert_eq!(record.parse_issue, None);
}

/// Around an upstream *client* (here a service that stands in for one), the layer sees the
/// upstream's response; the caller then labels it, the body goes on to whoever reads it.
#[tokio::test]
async fn layer_composes_around_a_client_and_the_fallback_sink_fans_out() {
    let first = MemorySink::new();
    let second = MemorySink::new();
    let client = ServiceBuilder::new()
        .layer(UsageLayer::new((first.clone(), second.clone())))
        .service(service_fn(|_request: Request<Full<Bytes>>| async {
            Ok::<_, Infallible>(sse_response(frames(&[START, MESSAGE_DELTA, STOP])))
        }));
    let response = client
        .oneshot(Request::new(Full::new(Bytes::from_static(b"{}"))))
        .await
        .unwrap();
    drain(response.into_body()).await;
    assert_eq!(first.records(), second.records());
    assert_eq!(only(&first).usage.output_tokens, Some(42));
}
