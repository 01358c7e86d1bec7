//! Routing beyond one request: the circuit breakers (a Plan answering 5xx, a Plan that
//! hangs), a `plan_first` fallback refused by a spent budget, and a key rotation — each
//! through the server with the Plan and Bedrock stand-ins, counted at the stand-ins.

use std::time::{Duration, Instant};

use http::StatusCode;
use reference_server::standins::plan::PlanReply;
use serde_json::Value;
use usage_tests::proxy::{Proxy, Setup, api_stream, send};

const ADMIN_TOKEN: &str = "routing-admin-token-0123456789";

const STREAM: &str = r#"{"model":"claude-sonnet-4-5-20250929","max_tokens":64,"stream":true,"messages":[{"role":"user","content":"Hi"}]}"#;

fn base(proxy: &Proxy) -> String {
    proxy.origin()
}

async fn health(proxy: &Proxy) -> Value {
    let (status, body) = send("GET", format!("{}/health", base(proxy)), &[], "").await;
    assert_eq!(status, StatusCode::OK);
    serde_json::from_slice(&body).unwrap()
}

async fn admin(proxy: &Proxy, method: &str, path: &str, body: &str) -> (StatusCode, Value) {
    proxy.admin(ADMIN_TOKEN, method, path, body).await
}

/// POSTs a stream request with `key`; the status.
async fn post_with(proxy: &Proxy, key: &str) -> StatusCode {
    proxy.post_as(key, STREAM).await.0
}

#[tokio::test]
async fn a_failing_plan_opens_the_keys_circuit_and_a_probe_closes_it() {
    let setup = Setup {
        extra_args: vec![
            "--breaker-key-failures=3".to_owned(),
            "--breaker-plan-failures=0".to_owned(),
            "--breaker-open=1".to_owned(),
        ],
        ..Setup::default()
    };
    let mut proxy = Proxy::start(PlanReply::error(503, "api_error", "down"), setup).await;
    for _ in 0..3 {
        let (status, _, _) = proxy.post("/v1/messages", STREAM).await;
        assert_eq!(status, StatusCode::OK, "Bedrock serves Plan's 503");
    }
    assert_eq!(proxy.plan.request_count(), 3);
    let (status, _, _) = proxy.post("/v1/messages", STREAM).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(proxy.plan.request_count(), 3, "the open circuit skips Plan");
    let during = health(&proxy).await;
    assert_eq!(during["plan"]["keys_circuit_open"], 1, "{during}");
    assert_eq!(
        during["plan"]["circuit"], "closed",
        "Plan's own is off here"
    );

    // Plan is back; once the circuit is half-open, one probe finds it and closes it.
    proxy
        .plan
        .answer_with(PlanReply::Stream(api_stream("basic_response.txt")));
    let started = Instant::now();
    while proxy.plan.request_count() == 3 {
        assert!(started.elapsed() < Duration::from_secs(60), "no probe");
        tokio::time::sleep(Duration::from_millis(200)).await;
        let (status, _, _) = proxy.post("/v1/messages", STREAM).await;
        assert_eq!(status, StatusCode::OK);
    }
    let (status, _, _) = proxy.post("/v1/messages", STREAM).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(proxy.plan.request_count(), 5, "closed again: Plan is asked");
    let after = health(&proxy).await;
    assert_eq!(after["plan"]["keys_circuit_open"], 0, "{after}");
    let (_, metrics) = send("GET", format!("{}/metrics", base(&proxy)), &[], "").await;
    let metrics = String::from_utf8_lossy(&metrics);
    assert!(
        metrics.contains(r#"proxy_circuit_opened_total{scope="key"}"#),
        "{metrics}"
    );

    let rows = proxy.rows().await;
    let reasons: Vec<Option<&str>> = rows
        .iter()
        .map(|row| row.fallback_reason.as_deref())
        .collect();
    assert_eq!(
        &reasons[..4],
        [Some("server_error"); 3]
            .iter()
            .copied()
            .chain([Some("key_circuit_open")])
            .collect::<Vec<_>>()
    );
    assert_eq!(rows.last().unwrap().provider, "plan");
}

#[tokio::test]
async fn when_plan_hangs_the_open_circuit_sends_requests_to_bedrock_without_waiting() {
    let setup = Setup {
        plan_header_timeout_secs: 1,
        extra_args: vec![
            "--breaker-key-failures=2".to_owned(),
            "--breaker-plan-failures=0".to_owned(),
            "--breaker-open=600".to_owned(),
        ],
        ..Setup::default()
    };
    let mut proxy = Proxy::start(PlanReply::Hang, setup).await;
    for _ in 0..2 {
        let (status, _, _) = proxy.post("/v1/messages", STREAM).await;
        assert_eq!(status, StatusCode::OK, "Bedrock after the header timeout");
    }
    assert_eq!(proxy.plan.request_count(), 2);
    for _ in 0..3 {
        let started = Instant::now();
        let (status, _, _) = proxy.post("/v1/messages", STREAM).await;
        assert_eq!(status, StatusCode::OK);
        eprintln!("with the circuit open: answered in {:?}", started.elapsed());
    }
    assert_eq!(
        proxy.plan.request_count(),
        2,
        "nothing more reached the hanging Plan: no request waited for its timeout"
    );
    assert_eq!(proxy.bedrock.request_count(), 5);
    let rows = proxy.rows().await;
    let reasons: Vec<&str> = rows
        .iter()
        .map(|row| row.fallback_reason.as_deref().unwrap())
        .collect();
    assert_eq!(
        reasons,
        [
            "timeout",
            "timeout",
            "key_circuit_open",
            "key_circuit_open",
            "key_circuit_open"
        ]
    );
}

#[tokio::test]
async fn plans_own_circuit_opens_for_every_key() {
    let setup = Setup {
        extra_args: vec![
            "--breaker-key-failures=0".to_owned(),
            "--breaker-plan-failures=2".to_owned(),
            "--breaker-open=600".to_owned(),
        ],
        ..Setup::default()
    };
    let proxy = Proxy::start(PlanReply::error(529, "overloaded_error", "busy"), setup).await;
    let (_, other_key) = proxy.new_user().await;
    assert_eq!(post_with(&proxy, &proxy.key).await, StatusCode::OK);
    assert_eq!(post_with(&proxy, &other_key).await, StatusCode::OK);
    assert_eq!(proxy.plan.request_count(), 2);
    let (_, third_key) = proxy.new_user().await;
    assert_eq!(post_with(&proxy, &third_key).await, StatusCode::OK);
    assert_eq!(
        proxy.plan.request_count(),
        2,
        "a key that never failed skips Plan too"
    );
    let health = health(&proxy).await;
    assert_eq!(health["plan"]["circuit"], "open", "{health}");
    assert!(
        health["reasons"]
            .as_array()
            .unwrap()
            .contains(&Value::from("plan_circuit_open")),
        "{health}"
    );
}

#[tokio::test]
async fn a_plan_first_fallback_refused_by_the_budget_says_so() {
    let setup = Setup {
        budget_usd: Some(rust_decimal::Decimal::ZERO),
        ..Setup::default()
    };
    let mut proxy = Proxy::start(PlanReply::rate_limited(0), setup).await;
    let (status, headers, body) = proxy.post("/v1/messages", STREAM).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(headers["content-type"], "application/json");
    let body: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(body["type"], "error");
    assert_eq!(body["error"]["type"], "rate_limit_error");
    let message = body["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("Plan is unavailable (rate_limited)")
            && message.contains("monthly Bedrock budget exhausted: used $0")
            && message.contains("of $0")
            && message.contains("resets at"),
        "{message}"
    );
    assert_eq!(proxy.bedrock.request_count(), 0, "Bedrock is not called");
    assert_eq!(proxy.plan.request_count(), 1);

    // A Plan that answers is still used: the budget counts Bedrock only.
    proxy
        .plan
        .answer_with(PlanReply::Stream(api_stream("basic_response.txt")));
    let (status, _, _) = proxy.post("/v1/messages", STREAM).await;
    assert_eq!(status, StatusCode::OK);

    let rows = proxy.rows().await;
    assert_eq!(rows.len(), 2);
    assert_eq!(rows[0].provider, "bedrock");
    assert_eq!(rows[0].status_code, Some(429));
    assert_eq!(rows[0].fallback_from.as_deref(), Some("plan"));
    assert_eq!(rows[0].fallback_reason.as_deref(), Some("rate_limited"));
    assert_eq!(rows[1].provider, "plan");
}

#[tokio::test]
async fn a_rotated_key_serves_through_its_grace_period_then_is_refused() {
    let setup = Setup {
        extra_args: vec![format!("--admin-token={ADMIN_TOKEN}")],
        ..Setup::default()
    };
    let mut proxy = Proxy::start(PlanReply::Stream(api_stream("basic_response.txt")), setup).await;
    let (status, keys) = admin(
        &proxy,
        "GET",
        &format!("/admin/users/{}/keys", proxy.user),
        "",
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let old_id = keys["keys"][0]["id"].as_str().unwrap().to_owned();
    let (status, rotated) = admin(
        &proxy,
        "POST",
        &format!("/admin/keys/{old_id}/rotate"),
        r#"{"grace_period_seconds":2}"#,
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{rotated}");
    let new_key = rotated["key"].as_str().unwrap().to_owned();
    let old_key = proxy.key.clone();
    assert_eq!(
        post_with(&proxy, &old_key).await,
        StatusCode::OK,
        "in grace"
    );
    assert_eq!(post_with(&proxy, &new_key).await, StatusCode::OK);
    let ends =
        chrono::DateTime::parse_from_rfc3339(rotated["old_key_expires_at"].as_str().unwrap())
            .unwrap();
    while chrono::Utc::now() <= ends {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(post_with(&proxy, &old_key).await, StatusCode::UNAUTHORIZED);
    assert_eq!(post_with(&proxy, &new_key).await, StatusCode::OK);

    let rows = proxy.rows().await;
    let keys: Vec<&str> = rows
        .iter()
        .map(|row| row.access_key_id.as_deref().unwrap())
        .collect();
    let new_id = rotated["id"].as_str().unwrap();
    assert_eq!(keys, [old_id.as_str(), new_id, new_id]);
}
