//! Hostile input at the reference server's edges: bodies too large (announced or streamed),
//! malformed JSON (the proxy forwards it for Plan to judge; the admin API answers 400),
//! injection attempts in the key's path segment, and SQL-looking values, which are values.

use std::time::Duration;

use bytes::Bytes;
use http::StatusCode;
use reference_server::standins::plan::PlanReply;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use usage_tests::proxy::{Proxy, Setup, send};

const ADMIN_TOKEN: &str = "hostile-admin-token-0123456789";

fn admin_setup() -> Setup {
    Setup {
        max_request_bytes: 4096,
        extra_args: vec![format!("--admin-token={ADMIN_TOKEN}")],
        ..Setup::default()
    }
}

/// Writes `head` and `body` on a raw connection; the status line of the answer, which must
/// come within 5 s.
async fn raw_exchange(addr: std::net::SocketAddr, head: String, body: &[u8]) -> String {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream.write_all(head.as_bytes()).await.unwrap();
    // The server may answer and close before all of it is written.
    let _ = stream.write_all(body).await;
    let mut answer = vec![0u8; 1024];
    let n = tokio::time::timeout(Duration::from_secs(5), stream.read(&mut answer))
        .await
        .expect("an answer without the rest of the body")
        .unwrap();
    String::from_utf8_lossy(&answer[..n])
        .lines()
        .next()
        .unwrap_or_default()
        .to_owned()
}

#[tokio::test]
async fn too_large_bodies_get_413_without_being_read_whole() {
    let mut proxy = Proxy::start(PlanReply::Json(200, json!({})), admin_setup()).await;
    let addr = proxy.server.as_ref().unwrap().addr;
    let path = format!("/ak/{}/v1/messages", proxy.key);

    // Announced as 1 GiB, 16 bytes sent: refused at once, the rest never awaited.
    let head = format!(
        "POST {path} HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: 1073741824\r\n\r\n"
    );
    let status = raw_exchange(addr, head, b"{\"model\":\"claude").await;
    assert!(status.starts_with("HTTP/1.1 413"), "{status}");

    // Chunked, no length announced: refused once the limit is passed.
    let head = format!(
        "POST {path} HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ntransfer-encoding: chunked\r\n\r\n"
    );
    let chunk = format!("400\r\n{}\r\n", "a".repeat(0x400));
    let status = raw_exchange(addr, head, chunk.repeat(8).as_bytes()).await;
    assert!(status.starts_with("HTTP/1.1 413"), "{status}");

    // The admin API has its own, small, limit.
    let big = format!(r#"{{"name":"{}"}}"#, "n".repeat(2 << 20));
    let (status, _) = send(
        "POST",
        format!("http://{addr}/admin/users"),
        &[
            ("authorization", &format!("Bearer {ADMIN_TOKEN}")),
            ("content-type", "application/json"),
        ],
        &big,
    )
    .await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);

    assert!(proxy.plan.requests().is_empty(), "nothing reached Plan");
    let rows = proxy.rows().await;
    assert!(
        rows.iter()
            .all(|row| row.input_tokens == 0 && row.output_tokens == 0),
        "refusals carry no usage: {rows:#?}"
    );
    // A refusal before routing is the route's first provider's (Plan here), never Bedrock's.
    assert!(
        rows.iter()
            .all(|row| row.provider == "plan" && row.status_code == Some(413)),
        "{rows:#?}"
    );
}

#[tokio::test]
async fn malformed_json_is_forwarded_for_plan_to_judge() {
    let plan_says = PlanReply::error(400, "invalid_request_error", "messages: Field required");
    let mut proxy = Proxy::start(plan_says, admin_setup()).await;
    let bodies = [
        r#"{"model":"claude-sonnet-4-5","max_tokens":"#,
        "not json at all",
        r#"{"model":42,"stream":"yes"}"#,
        "\u{0}\u{1}binary",
    ];
    for body in bodies {
        let (status, answer) = send(
            "POST",
            proxy.url("/v1/messages"),
            &[("content-type", "application/json")],
            body,
        )
        .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body:?}");
        let answer: Value = serde_json::from_slice(&answer).unwrap();
        assert_eq!(
            answer["error"]["message"], "messages: Field required",
            "Plan's own answer"
        );
    }
    let sent: Vec<_> = proxy.plan.requests().into_iter().map(|r| r.body).collect();
    assert_eq!(
        sent,
        bodies.map(|b| Bytes::from(b.as_bytes())),
        "forwarded byte for byte"
    );
    assert!(
        proxy.bedrock.requests().is_empty(),
        "a 400 never falls back"
    );
    let rows = proxy.rows().await;
    assert_eq!(rows.len(), bodies.len(), "each is recorded once");
    for row in rows {
        assert_eq!(
            (row.provider.as_str(), row.outcome.as_str()),
            ("plan", "error_response")
        );
        assert_eq!(row.status_code, Some(400));
    }
}

#[tokio::test]
async fn injection_in_the_key_segment_never_authenticates() {
    let mut proxy = Proxy::start(PlanReply::Json(200, json!({})), admin_setup()).await;
    let addr = proxy.server.as_ref().unwrap().addr;
    let key = proxy.key.clone();
    let paths = [
        format!("/ak/{key}%00/v1/messages"),
        format!("/ak/{key}%20/v1/messages"),
        format!("/ak/{}/v1/messages", key.to_uppercase()),
        format!("/ak/{}/v1/messages", &key[..key.len() - 1]),
        format!("/ak/{key}x/v1/messages"),
        format!("/ak/{key}%2F..%2F..%2Fadmin%2Fusers/v1/messages"),
        "/ak/..%2F..%2Fadmin%2Fusers/v1/messages".to_owned(),
        "/ak/'%20OR%20'1'%3D'1/v1/messages".to_owned(),
        format!("/ak/{}/v1/messages", "a".repeat(10_000)),
    ];
    for path in &paths {
        let (status, body) = send("POST", format!("http://{addr}{path}"), &[], "{}").await;
        assert!(
            status == StatusCode::UNAUTHORIZED || status == StatusCode::NOT_FOUND,
            "{path}: {status}"
        );
        assert!(
            !String::from_utf8_lossy(&body).contains(&key[4..]),
            "{path}: the key is echoed"
        );
    }
    // The admin API takes its token from the Authorization header only.
    for (path, headers) in [
        (format!("/admin/users?token={ADMIN_TOKEN}"), vec![]),
        (
            "/admin/users".to_owned(),
            vec![("authorization", ADMIN_TOKEN.to_owned())],
        ),
        (
            "/admin/users".to_owned(),
            vec![("authorization", format!("Basic {ADMIN_TOKEN}"))],
        ),
        (
            "/admin/users".to_owned(),
            vec![("authorization", format!("Bearer {ADMIN_TOKEN}x"))],
        ),
        (
            "/admin/users".to_owned(),
            vec![("x-api-key", ADMIN_TOKEN.to_owned())],
        ),
    ] {
        let headers: Vec<(&str, &str)> = headers.iter().map(|(n, v)| (*n, v.as_str())).collect();
        let (status, _) = send("GET", format!("http://{addr}{path}"), &headers, "").await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{path} {headers:?}");
    }
    assert!(proxy.plan.requests().is_empty(), "nothing reached Plan");
    assert!(
        proxy.rows().await.is_empty(),
        "refused requests are not usage"
    );
}

#[tokio::test]
async fn sql_looking_values_are_just_values() {
    let mut proxy = Proxy::start(
        PlanReply::Json(200, json!({"type": "message", "model": "claude-haiku-4-5", "usage": {"input_tokens": 3, "output_tokens": 1}})),
        admin_setup(),
    )
    .await;
    let addr = proxy.server.as_ref().unwrap().addr;
    let bearer = format!("Bearer {ADMIN_TOKEN}");
    let auth = [
        ("authorization", bearer.as_str()),
        ("content-type", "application/json"),
    ];
    let (status, _, _) = proxy
        .post(
            "/v1/messages",
            r#"{"model":"claude-haiku-4-5","max_tokens":5,"messages":[]}"#,
        )
        .await;
    assert_eq!(status, StatusCode::OK);

    let name = "Robert'); DROP TABLE users; --";
    let (status, user) = send(
        "POST",
        format!("http://{addr}/admin/users"),
        &auth,
        &json!({"name": name}).to_string(),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED);
    let user: Value = serde_json::from_slice(&user).unwrap();
    assert_eq!(user["name"], name, "stored verbatim");

    for query in [
        "provider=plan'%20OR%20'1'%3D'1",
        "provider=plan%3B%20DELETE%20FROM%20token_usage",
        "user_id='%20OR%201%3D1%20--",
        "access_key_id=00000000-0000-0000-0000-000000000000'%20OR%20'x'%3D'x",
        "bucket_type=day'%20UNION%20SELECT%201",
    ] {
        let (status, body) = send(
            "GET",
            format!("http://{addr}/admin/usage?period=month&{query}"),
            &auth,
            "",
        )
        .await;
        let body: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(status, StatusCode::BAD_REQUEST, "{query}: {body}");
        assert!(
            body["parameter"].is_string(),
            "{query}: names the parameter: {body}"
        );
    }
    // Everything is still there.
    let (status, users) = send("GET", format!("http://{addr}/admin/users"), &auth, "").await;
    assert_eq!(status, StatusCode::OK);
    let users: Value = serde_json::from_slice(&users).unwrap();
    assert_eq!(users["users"].as_array().unwrap().len(), 2, "{users}");
    let rows = proxy.rows().await;
    assert_eq!(rows.len(), 1, "token_usage is intact");
}
