//! Secrets never reach the logs: a full cycle through the reference server — Plan, a 429
//! that Bedrock serves with its API key, the admin API creating a user and a key and reading
//! usage, a wrong admin token, an unknown access key — with every log line of every crate
//! captured at TRACE, then searched for the known secrets and any 16-character piece of them.

use std::io::Write;
use std::sync::{Arc, Mutex};

use http::StatusCode;
use reference_server::standins::plan::PlanReply;
use serde_json::Value;
use usage_tests::proxy::{BEDROCK_API_KEY, CLIENT_API_KEY, Proxy, Setup, fixture, send};

const ADMIN_TOKEN: &str = "admin-token-Vb7Kp2Qx9Lm4Tz8Wc3";
const KEYS_OWN_BEDROCK_KEY: &str = "ABSK-keys-own-Hq4Zr8Mv3Xp6Tn2Wd7";

/// Everything the process logs.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test]
async fn no_secret_reaches_the_logs_or_an_error_message() {
    let captured = Captured::default();
    let writer = captured.clone();
    tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .init();

    let setup = Setup {
        extra_args: vec![format!("--admin-token={ADMIN_TOKEN}")],
        ..Setup::default()
    };
    let mut proxy = Proxy::start(PlanReply::Stream(fixture("basic_response.txt")), setup).await;
    let admin = format!("http://{}/admin", proxy.server.as_ref().unwrap().addr);
    let bearer = format!("Bearer {ADMIN_TOKEN}");
    let request = r#"{"model":"claude-sonnet-4-5","max_tokens":64,"stream":true,"messages":[{"role":"user","content":"Hi"}]}"#;

    // Plan, then a 429 that Bedrock serves (signed with its API key), with the client's key.
    let (status, _, _) = proxy.post("/v1/messages", request).await;
    assert_eq!(status, StatusCode::OK);
    proxy.plan.queue([PlanReply::rate_limited(1)]);
    let (status, _, _) = proxy.post("/v1/messages", request).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(proxy.bedrock.requests().len(), 1, "Bedrock served the 429");

    // The admin API: a user, a key for it (shown once), usage.
    let (status, body) = send(
        "POST",
        format!("{admin}/users"),
        &[
            ("authorization", &bearer),
            ("content-type", "application/json"),
        ],
        r#"{"name":"second"}"#,
    )
    .await;
    assert_eq!(
        status,
        StatusCode::CREATED,
        "{}",
        String::from_utf8_lossy(&body)
    );
    let user: Value = serde_json::from_slice(&body).unwrap();
    let (status, body) = send(
        "POST",
        format!("{admin}/users/{}/keys", user["id"].as_str().unwrap()),
        &[("authorization", &bearer)],
        "",
    )
    .await;
    assert_eq!(status, StatusCode::CREATED);
    let issued: Value = serde_json::from_slice(&body).unwrap();
    let new_key = issued["key"].as_str().unwrap().to_owned();
    // Its own Bedrock API key, sealed at rest, used below for a 429 that Bedrock serves.
    let (status, body) = send(
        "PUT",
        format!(
            "{admin}/keys/{}/bedrock-credential",
            issued["id"].as_str().unwrap()
        ),
        &[
            ("authorization", &bearer),
            ("content-type", "application/json"),
        ],
        &format!(r#"{{"api_key":"{KEYS_OWN_BEDROCK_KEY}"}}"#),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{}", String::from_utf8_lossy(&body));
    proxy.plan.queue([PlanReply::rate_limited(1)]);
    let (status, _) = send(
        "GET",
        format!("{admin}/usage/summary"),
        &[("authorization", &bearer)],
        "",
    )
    .await;
    assert!(
        status.is_success() || status == StatusCode::NOT_FOUND,
        "{status}"
    );

    // The new key in use, a wrong admin token, an unknown key that looks real.
    let (status, _) = send(
        "POST",
        format!(
            "http://{}/ak/{new_key}/v1/messages",
            proxy.server.as_ref().unwrap().addr
        ),
        &[("x-api-key", CLIENT_API_KEY)],
        request,
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let sent = proxy.bedrock.requests();
    assert_eq!(sent.len(), 2, "Bedrock served the new key's 429");
    assert_eq!(
        sent[1].headers["authorization"],
        format!("Bearer {KEYS_OWN_BEDROCK_KEY}").as_str()
    );
    let wrong_token = "admin-token-Wrong9Hq3Zr7Mv2Xp5";
    let (status, body) = send(
        "GET",
        format!("{admin}/users"),
        &[("authorization", &format!("Bearer {wrong_token}"))],
        "",
    )
    .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let mut error_bodies = vec![body];
    let unknown_key = "ak_Zk3nQ8vR2mT7xW4pL9cB6hJ1fD5gS0aY3eU8iO2rN7t";
    let (status, body) = send(
        "POST",
        format!(
            "http://{}/ak/{unknown_key}/v1/messages",
            proxy.server.as_ref().unwrap().addr
        ),
        &[],
        request,
    )
    .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    error_bodies.push(body);
    let rows = proxy.rows().await;
    assert_eq!(rows.len(), 3);

    let hasher_secret = std::fs::read_to_string(
        std::path::Path::new(
            proxy
                .database_url
                .trim_start_matches("sqlite://")
                .split('?')
                .next()
                .unwrap(),
        )
        .with_file_name("key-hasher-secret"),
    )
    .expect("the generated hashing secret");
    let encryption_key = std::fs::read_to_string(proxy.state_dir().join("local-encryption-key"))
        .expect("the generated local encryption key");
    let secrets = [
        ("the access key", proxy.key.as_str()),
        ("the issued key", new_key.as_str()),
        ("the unknown key", unknown_key),
        ("the admin token", ADMIN_TOKEN),
        ("the wrong admin token", wrong_token),
        ("the client's Anthropic API key", CLIENT_API_KEY),
        ("the Bedrock API key", BEDROCK_API_KEY),
        ("the key-hashing secret", hasher_secret.trim()),
        ("a key's own Bedrock API key", KEYS_OWN_BEDROCK_KEY),
        ("the local encryption key", encryption_key.trim()),
    ];
    let logs = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
    assert!(logs.lines().count() > 50, "the logs were captured: {logs}");
    assert!(
        logs.contains("/ak/<redacted>/v1/messages"),
        "request lines are logged, redacted"
    );
    for (what, secret) in secrets {
        assert!(secret.len() >= 16, "{what} is long enough to search for");
        for piece in secret.as_bytes().windows(16) {
            let piece = std::str::from_utf8(piece).unwrap();
            assert!(!logs.contains(piece), "{what} ({piece}…) is in the logs");
            for body in &error_bodies {
                assert!(
                    !String::from_utf8_lossy(body).contains(piece),
                    "{what} is in an error message"
                );
            }
        }
    }
}
