//! The reference server end to end: a real client over loopback, the server, a Plan
//! stand-in and a Bedrock stand-in that the real AWS SDK talks to — and the usage rows the
//! server wrote to its (SQLite) database.

use std::time::Duration;

use bytes::Bytes;
use http::{Request, StatusCode};
use http_body_util::{BodyExt, Full};
use reference_server::config::Routing;
use reference_server::standins::bedrock::Reply;
use reference_server::standins::plan::PlanReply;
use sea_orm::{Database, EntityTrait};
use usage_layer::sse::Scanner;
use usage_tests::proxy::{CLIENT_API_KEY, Proxy, Setup, client, fixture, long_stream};

const STREAM_REQUEST: &str = r#"{"model":"claude-sonnet-4-5-20250929","max_tokens":1024,"stream":true,"messages":[{"role":"user","content":"Hello"}],"metadata":{"user_id":"u-1"},"future_field":{"kept":[1,2,3]}}"#;
const JSON_REQUEST: &str = r#"{"model":"claude-sonnet-4-5-20250929","max_tokens":64,"messages":[{"role":"user","content":"Hi"}]}"#;

fn usage_of(sse: &[u8]) -> usage_layer::anthropic::BodyUsage {
    let mut scanner = Scanner::new();
    scanner.feed(sse);
    scanner.finish()
}

#[tokio::test]
async fn plan_stream_is_proxied_faithfully_and_recorded_as_plan() {
    let stream = fixture("tool_use_response.txt");
    let mut proxy = Proxy::start(PlanReply::Stream(stream.clone()), Setup::default()).await;
    let (status, headers, body) = proxy.post("/v1/messages?beta=true", STREAM_REQUEST).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        headers["request-id"], "req_standin",
        "upstream headers come back"
    );
    assert_eq!(body, stream, "the stream comes back byte for byte");

    let sent = &proxy.plan.requests()[0];
    assert_eq!(
        sent.path_and_query, "/v1/messages?beta=true",
        "the query string is kept"
    );
    assert_eq!(
        sent.body,
        STREAM_REQUEST.as_bytes(),
        "the body goes out byte-identical"
    );
    assert_eq!(sent.headers["anthropic-version"], "2023-06-01");
    assert_eq!(
        sent.headers["anthropic-beta"],
        "interleaved-thinking-2025-05-14"
    );
    assert_eq!(sent.headers["x-api-key"], CLIENT_API_KEY);
    assert!(
        !sent.headers.contains_key("accept-encoding"),
        "the layer must see plain SSE"
    );
    assert!(proxy.bedrock.requests().is_empty());

    let rows = proxy.rows().await;
    assert_eq!(rows.len(), 1);
    let row = &rows[0];
    assert_eq!(row.provider, "plan");
    assert_eq!((row.input_tokens, row.output_tokens), (377, 65));
    assert_eq!(row.user_id, Some(proxy.user.to_string()));
    assert_eq!(
        row.requested_model.as_deref(),
        Some("claude-sonnet-4-5-20250929")
    );
    assert_eq!(
        row.served_model.as_deref(),
        Some("claude-sonnet-4-20250514")
    );
    assert_eq!(row.pricing_region.as_deref(), Some("global"));
    assert_eq!(row.outcome, "completed");
    assert!(row.streaming);
    assert_eq!(row.fallback_from, None);
}

#[tokio::test]
async fn plan_429_falls_back_to_bedrock_then_the_key_cools_down() {
    let mut proxy = Proxy::start(PlanReply::rate_limited(30), Setup::default()).await;
    let (status, headers, body) = proxy.post("/v1/messages", STREAM_REQUEST).await;
    assert_eq!(status, StatusCode::OK, "{}", String::from_utf8_lossy(&body));
    assert_eq!(headers["content-type"], "text/event-stream");
    let seen = usage_of(&body);
    assert_eq!(
        seen.usage.input_tokens,
        Some(1200),
        "a valid Anthropic stream"
    );
    assert_eq!(seen.usage.output_tokens, Some(345));
    assert!(seen.complete);

    // The next request skips Plan: the key is cooling down.
    let (status, _, _) = proxy.post("/v1/messages", STREAM_REQUEST).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        proxy.plan.requests().len(),
        1,
        "Plan was skipped during the cooldown"
    );
    assert_eq!(proxy.bedrock.requests().len(), 2);
    let sent = &proxy.bedrock.requests()[0];
    let path = sent.path.replace("%3A", ":");
    assert!(
        path.contains("/model/us.anthropic.claude-sonnet-4-5-20250929-v1:0/"),
        "{path}"
    );
    let sent: serde_json::Value = serde_json::from_slice(&sent.body).unwrap();
    assert_eq!(sent["anthropic_version"], "bedrock-2023-05-31");
    assert_eq!(sent["future_field"], serde_json::json!({"kept": [1, 2, 3]}));
    assert!(sent.get("model").is_none() && sent.get("stream").is_none());

    let rows = proxy.rows().await;
    assert_eq!(rows.len(), 2);
    for (row, reason) in rows.iter().zip(["rate_limited", "cooldown"]) {
        assert_eq!(row.provider, "bedrock");
        assert_eq!(row.fallback_from.as_deref(), Some("plan"));
        assert_eq!(row.fallback_reason.as_deref(), Some(reason));
        assert_eq!((row.input_tokens, row.output_tokens), (1200, 345));
        assert_eq!(row.region.as_deref(), Some("us-east-1"));
        assert_eq!(row.outcome, "completed");
    }
}

#[tokio::test]
async fn plan_client_errors_pass_through_untouched() {
    let error = PlanReply::error(400, "invalid_request_error", "max_tokens: Field required");
    let mut proxy = Proxy::start(error, Setup::default()).await;
    let (status, _, body) = proxy.post("/v1/messages", JSON_REQUEST).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let body: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(body["error"]["message"], "max_tokens: Field required");
    assert!(
        proxy.bedrock.requests().is_empty(),
        "a 4xx never falls back"
    );
    let rows = proxy.rows().await;
    assert_eq!(rows[0].provider, "plan");
    assert_eq!(rows[0].status_code, Some(400));
    assert_eq!(rows[0].outcome, "error_response");
    assert_eq!(rows[0].error_type.as_deref(), Some("invalid_request_error"));
}

#[tokio::test]
async fn plan_overload_errors_and_timeouts_fall_back_with_their_reason() {
    for (reply, reason) in [
        (
            PlanReply::error(529, "overloaded_error", "Overloaded"),
            "overloaded",
        ),
        (
            PlanReply::error(500, "api_error", "Internal"),
            "server_error",
        ),
        (PlanReply::Hang, "timeout"),
        (PlanReply::Hang, "connect_error"),
    ] {
        // A port that was just free: nothing listens there.
        let closed = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap();
        let setup = Setup {
            plan_header_timeout_secs: 1,
            plan_url: (reason == "connect_error").then(|| format!("http://{closed}")),
            ..Setup::default()
        };
        let mut proxy = Proxy::start(reply, setup).await;
        proxy.bedrock.respond_with(Reply::Message(serde_json::json!({
            "id": "msg_bdrk", "type": "message", "role": "assistant", "model": "claude-sonnet-4-5-20250929",
            "content": [{"type": "text", "text": "ok"}], "stop_reason": "end_turn",
            "usage": {"input_tokens": 21, "output_tokens": 4}
        })));
        let (status, _, body) = proxy.post("/v1/messages", JSON_REQUEST).await;
        assert_eq!(status, StatusCode::OK, "{reason}");
        let body: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(body["usage"]["input_tokens"], 21);
        let rows = proxy.rows().await;
        assert_eq!(rows[0].provider, "bedrock", "{reason}");
        assert_eq!(rows[0].fallback_reason.as_deref(), Some(reason));
        assert!(!rows[0].streaming);
    }
}

#[tokio::test]
async fn bedrock_only_users_skip_plan_and_a_spent_budget_stops_bedrock() {
    let setup = Setup {
        routing: Routing::BedrockOnly,
        budget_usd: Some(rust_decimal::Decimal::new(1, 2)),
        ..Setup::default()
    };
    let mut proxy = Proxy::start(PlanReply::error(500, "api_error", "unused"), setup).await;
    let (status, _, _) = proxy.post("/v1/messages", STREAM_REQUEST).await;
    assert_eq!(status, StatusCode::OK);
    // 1,200 in + 345 out of Sonnet 4.5 is about $0.0088: the next one still fits...
    let (status, _, _) = proxy.post("/v1/messages", STREAM_REQUEST).await;
    assert_eq!(status, StatusCode::OK);
    // ...and now $0.0176 > $0.01: refused before Bedrock is called (pending usage counts).
    let (status, _, body) = proxy.post("/v1/messages", STREAM_REQUEST).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
    let body: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(body["error"]["type"], "rate_limit_error");
    let message = body["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("budget") && message.contains("0.01"),
        "{message}"
    );
    assert!(
        proxy.plan.requests().is_empty(),
        "bedrock_only never calls Plan"
    );
    assert_eq!(
        proxy.bedrock.requests().len(),
        2,
        "Bedrock is not called over budget"
    );
    let rows = proxy.rows().await;
    assert_eq!(rows.len(), 3, "the refusal is recorded too");
    assert_eq!(rows[2].status_code, Some(429));
    assert!(rows.iter().all(|row| row.provider == "bedrock"));
}

#[tokio::test]
async fn client_disconnect_mid_stream_is_recorded_once() {
    let mut long = fixture("tool_use_response.txt").to_vec();
    // Many more events before the end, so the client can leave in the middle.
    let delta = b"event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":\" more\"}}\n\n";
    let at = long.windows(9).position(|w| w == b"event: pi").unwrap();
    for _ in 0..500 {
        long.splice(at..at, delta.iter().copied());
    }
    let mut proxy = Proxy::start(PlanReply::Stream(Bytes::from(long)), Setup::default()).await;
    let response = client()
        .request(
            Request::post(proxy.url("/v1/messages"))
                .body(Full::new(Bytes::from_static(STREAM_REQUEST.as_bytes())))
                .unwrap(),
        )
        .await
        .unwrap();
    let mut body = response.into_body();
    let first = body.frame().await.unwrap().unwrap();
    assert!(
        first
            .into_data()
            .unwrap()
            .starts_with(b"event: message_start")
    );
    drop(body);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let rows = proxy.rows().await;
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].outcome, "client_disconnected");
    assert_eq!(rows[0].input_tokens, 377, "the input tokens were billed");
}

#[tokio::test]
async fn unknown_and_malformed_keys_are_refused() {
    let mut proxy = Proxy::start(
        PlanReply::Json(200, serde_json::json!({})),
        Setup::default(),
    )
    .await;
    let addr = proxy.server.as_ref().unwrap().addr;
    for key in [
        "ak_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
        "nope",
        "ak_%2e%2e",
    ] {
        let response = client()
            .request(
                Request::post(format!("http://{addr}/ak/{key}/v1/messages"))
                    .body(Full::new(Bytes::from_static(JSON_REQUEST.as_bytes())))
                    .unwrap(),
            )
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED, "{key}");
        let body = response.into_body().collect().await.unwrap().to_bytes();
        let body: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(body["error"]["type"], "authentication_error");
    }
    assert!(proxy.plan.requests().is_empty());
    assert!(
        proxy.rows().await.is_empty(),
        "refused requests are not usage"
    );
}

#[tokio::test]
async fn plan_json_answers_are_recorded_with_their_usage() {
    let message = serde_json::json!({
        "id": "msg_plan", "type": "message", "role": "assistant", "model": "claude-haiku-4-5-20251001",
        "content": [{"type": "text", "text": "Hi"}], "stop_reason": "end_turn",
        "usage": {"input_tokens": 40, "output_tokens": 9, "cache_read_input_tokens": 1000, "cache_creation_input_tokens": 0}
    });
    let mut proxy = Proxy::start(PlanReply::Json(200, message.clone()), Setup::default()).await;
    let (status, _, body) = proxy.post("/v1/messages", JSON_REQUEST).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        serde_json::from_slice::<serde_json::Value>(&body).unwrap(),
        message
    );
    let rows = proxy.rows().await;
    assert_eq!(rows[0].provider, "plan");
    assert_eq!(
        (
            rows[0].input_tokens,
            rows[0].output_tokens,
            rows[0].cache_read_input_tokens
        ),
        (40, 9, 1000)
    );
    assert_eq!(
        rows[0].pricing_model_id.as_deref(),
        Some("claude-haiku-4-5")
    );
    assert!(!rows[0].streaming);
}

#[tokio::test]
async fn plan_stream_cut_or_failing_mid_way_is_recorded_with_its_outcome() {
    let stream = fixture("basic_response.txt");
    let marker = b"event: content_block_stop";
    let cut = stream
        .windows(marker.len())
        .position(|w| w == marker)
        .unwrap();
    let error = b"event: error\ndata: {\"type\":\"error\",\"error\":{\"type\":\"overloaded_error\",\"message\":\"Overloaded\"}}\n\n";
    let with_error = Bytes::from([&stream[..cut], &error[..]].concat());
    for (reply, outcome) in [
        (PlanReply::ResetAfter(stream.slice(..cut)), "upstream_error"),
        (PlanReply::Stream(with_error), "stream_error"),
    ] {
        let mut proxy = Proxy::start(reply, Setup::default()).await;
        let response = client()
            .request(
                Request::post(proxy.url("/v1/messages"))
                    .body(Full::new(Bytes::from_static(STREAM_REQUEST.as_bytes())))
                    .unwrap(),
            )
            .await
            .unwrap();
        assert_eq!(
            response.status(),
            StatusCode::OK,
            "the stream had started: no fallback"
        );
        let _ = response.into_body().collect().await; // an error for the reset one
        let rows = proxy.rows().await;
        assert_eq!(rows.len(), 1, "{outcome}");
        assert_eq!(rows[0].outcome, outcome);
        assert_eq!(
            rows[0].input_tokens, 11,
            "{outcome}: the input tokens were billed"
        );
        assert!(proxy.bedrock.requests().is_empty());
    }
}

#[tokio::test]
async fn oversized_bodies_are_refused_before_they_are_read() {
    let setup = Setup {
        max_request_bytes: 1024,
        ..Setup::default()
    };
    let mut proxy = Proxy::start(PlanReply::Json(200, serde_json::json!({})), setup).await;
    let big: &'static str = Box::leak(
        format!(
            r#"{{"model":"claude-sonnet-4-5","x":"{}"}}"#,
            "a".repeat(4096)
        )
        .into_boxed_str(),
    );
    let (status, _, _) = proxy.post("/v1/messages", big).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    assert!(proxy.plan.requests().is_empty());
    assert!(proxy.rows().await.is_empty());
}

/// The proxy's own 504 is recorded inside the usage layer: the upstream it waited on,
/// status 504, outcome `timeout` (not `bedrock` / `client_disconnected` / no status).
#[tokio::test]
async fn the_proxys_own_504_is_recorded_as_a_timeout_of_the_upstream_it_waited_on() {
    let setup = Setup {
        plan_header_timeout_secs: 30,
        extra_args: vec!["--response-timeout=1".to_owned()],
        ..Setup::default()
    };
    let mut proxy = Proxy::start(PlanReply::Hang, setup).await;
    let (status, _, body) = proxy.post("/v1/messages", JSON_REQUEST).await;
    assert_eq!(status, StatusCode::GATEWAY_TIMEOUT);
    let body: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(body["error"]["type"], "timeout_error", "{body}");
    let rows = proxy.rows().await;
    assert_eq!(rows.len(), 1, "{rows:#?}");
    assert_eq!(rows[0].provider, "plan");
    assert_eq!(rows[0].outcome, "timeout");
    assert_eq!(rows[0].status_code, Some(504));
    assert_eq!(rows[0].fallback_from, None);
}

#[tokio::test]
async fn count_tokens_goes_to_plan_only_and_probes_are_cheap() {
    let mut proxy = Proxy::start(
        PlanReply::Json(200, serde_json::json!({"input_tokens": 12})),
        Setup::default(),
    )
    .await;
    let (status, _, body) = proxy
        .post("/v1/messages/count_tokens?beta=true", JSON_REQUEST)
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        serde_json::from_slice::<serde_json::Value>(&body).unwrap()["input_tokens"],
        12
    );
    assert_eq!(
        proxy.plan.requests()[0].path_and_query,
        "/v1/messages/count_tokens?beta=true"
    );

    let addr = proxy.server.as_ref().unwrap().addr;
    for (method, path) in [
        ("HEAD", "/".to_owned()),
        ("GET", "/".to_owned()),
        ("HEAD", format!("/ak/{}", proxy.key)),
        ("GET", "/health".to_owned()),
    ] {
        let response = client()
            .request(
                Request::builder()
                    .method(method)
                    .uri(format!("http://{addr}{path}"))
                    .body(Full::default())
                    .unwrap(),
            )
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK, "{method} {path}");
    }
    assert_eq!(proxy.plan.requests().len(), 1, "probes never reach Plan");
    assert!(
        proxy.rows().await.is_empty(),
        "counting tokens is not usage"
    );
}

#[tokio::test]
async fn a_revoked_key_is_refused() {
    use reference_server::entity::access_keys;
    use sea_orm::{ActiveModelTrait, ActiveValue::Set, ColumnTrait, QueryFilter};
    let mut proxy = Proxy::start(
        PlanReply::Json(200, serde_json::json!({})),
        Setup::default(),
    )
    .await;
    let db = Database::connect(&proxy.database_url).await.unwrap();
    let key = access_keys::Entity::find()
        .filter(access_keys::Column::UserId.eq(proxy.user))
        .one(&db)
        .await
        .unwrap()
        .unwrap();
    let mut revoked: access_keys::ActiveModel = key.into();
    revoked.is_active = Set(false);
    revoked.update(&db).await.unwrap();
    let (status, _, _) = proxy.post("/v1/messages", JSON_REQUEST).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(proxy.rows().await.is_empty());
}

/// Stopping the server lets a stream in flight finish, and writes its usage.
#[tokio::test]
async fn graceful_shutdown_finishes_streams_and_writes_their_usage() {
    let long = long_stream(200);
    let mut proxy = Proxy::start(PlanReply::Stream(long.clone()), Setup::default()).await;
    let response = client()
        .request(
            Request::post(proxy.url("/v1/messages"))
                .body(Full::new(Bytes::from_static(STREAM_REQUEST.as_bytes())))
                .unwrap(),
        )
        .await
        .unwrap();
    let reading =
        tokio::spawn(async move { response.into_body().collect().await.unwrap().to_bytes() });
    tokio::time::sleep(Duration::from_millis(50)).await;
    let rows = proxy.rows().await; // stops the server while the stream is still going
    assert_eq!(
        reading.await.unwrap(),
        long,
        "the client got the whole stream"
    );
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].outcome, "completed");
    assert_eq!((rows[0].input_tokens, rows[0].output_tokens), (11, 6));
}

/// The record's key is the server's: a client repeating an `x-request-id` cannot make the
/// store drop its later requests as duplicates (and so escape metering and budgets).
#[tokio::test]
async fn a_client_request_id_never_becomes_the_record_key() {
    let message = serde_json::json!({"type": "message", "model": "claude-haiku-4-5", "usage": {"input_tokens": 3, "output_tokens": 1}});
    let mut proxy = Proxy::start(PlanReply::Json(200, message), Setup::default()).await;
    let repeated = "0195f3c1-0000-7000-8000-000000000001";
    for _ in 0..3 {
        let response = client()
            .request(
                Request::post(proxy.url("/v1/messages"))
                    .header("x-request-id", repeated)
                    .body(Full::new(Bytes::from_static(JSON_REQUEST.as_bytes())))
                    .unwrap(),
            )
            .await
            .unwrap();
        assert_ne!(
            response.headers()["x-request-id"],
            repeated,
            "the server's own id"
        );
        let _ = response.into_body().collect().await.unwrap();
    }
    let rows = proxy.rows().await;
    assert_eq!(rows.len(), 3, "every request is metered");
}

/// Anthropic may answer 200 and open the stream with `event: error` when overloaded:
/// nothing has reached the client yet, so Bedrock serves it.
#[tokio::test]
async fn a_plan_stream_that_opens_with_an_error_falls_back() {
    let overloaded = Bytes::from_static(
        b"event: error\ndata: {\"type\":\"error\",\"error\":{\"type\":\"overloaded_error\",\"message\":\"Overloaded\"}}\n\n",
    );
    let mut proxy = Proxy::start(PlanReply::Stream(overloaded), Setup::default()).await;
    let (status, _, body) = proxy.post("/v1/messages", STREAM_REQUEST).await;
    assert_eq!(status, StatusCode::OK);
    let seen = usage_of(&body);
    assert_eq!(seen.error_type, None, "the client never sees Plan's error");
    assert_eq!(seen.usage.input_tokens, Some(1200), "Bedrock's stream");
    let rows = proxy.rows().await;
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].provider, "bedrock");
    assert_eq!(rows[0].fallback_reason.as_deref(), Some("overloaded_error"));
}
