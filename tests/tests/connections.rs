//! Client connections and bodies that take too long: the proxy closes them, and what it
//! cuts is recorded. Raw TCP clients play the slow and silent ones.
//!
//! The timeouts are 1-2 s; each test waits for the effect with a bound many times that
//! (a busy machine slows everything, and the assertion is that the connection *is*
//! closed, not how fast).

use std::time::Duration;

use bytes::Bytes;
use http_body_util::BodyExt;
use reference_server::standins::plan::PlanReply;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use usage_tests::proxy::{CLIENT_API_KEY, Proxy, Setup, api_stream, client};

/// Far longer than any timeout these tests set.
const PATIENCE: Duration = Duration::from_secs(60);

const MESSAGE: &str = r#"{"model":"claude-sonnet-4-5","max_tokens":64,"stream":true,"messages":[{"role":"user","content":"hi"}]}"#;

fn setup(extra: &[&str]) -> Setup {
    Setup {
        extra_args: extra.iter().map(|arg| (*arg).to_owned()).collect(),
        ..Setup::default()
    }
}

async fn connect(proxy: &Proxy) -> TcpStream {
    TcpStream::connect(proxy.server.as_ref().expect("running").addr)
        .await
        .expect("connect")
}

/// Reads until the server closes the connection; what it sent. Panics after [`PATIENCE`].
async fn read_to_close(stream: &mut TcpStream) -> Vec<u8> {
    let mut answer = Vec::new();
    let read = tokio::time::timeout(PATIENCE, async {
        let mut buf = [0; 4096];
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => answer.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await;
    assert!(read.is_ok(), "the server did not close the connection");
    answer
}

#[tokio::test]
async fn a_connection_that_sends_nothing_is_closed() {
    let proxy = Proxy::start(PlanReply::Hang, setup(&["--client-header-timeout=1"])).await;
    let mut silent = connect(&proxy).await;
    assert!(read_to_close(&mut silent).await.is_empty());
}

#[tokio::test]
async fn headers_sent_a_byte_at_a_time_are_cut_off() {
    let proxy = Proxy::start(PlanReply::Hang, setup(&["--client-header-timeout=1"])).await;
    let mut slow = connect(&proxy).await;
    let head = format!(
        "POST /ak/{}/v1/messages HTTP/1.1\r\nhost: proxy\r\nx-padding: {}\r\n",
        proxy.key,
        "a".repeat(4000)
    );
    // One byte every 100 ms would take 400 s; the server closes after its 1 s.
    let sent = tokio::time::timeout(PATIENCE, async {
        for byte in head.bytes() {
            if slow.write_all(&[byte]).await.is_err() {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
            let mut probe = [0; 512];
            if let Ok(Ok(0) | Err(_)) =
                tokio::time::timeout(Duration::ZERO, slow.read(&mut probe)).await
            {
                return true;
            }
        }
        false
    })
    .await;
    assert_eq!(sent, Ok(true), "the slow client was not cut off");
}

#[tokio::test]
async fn an_idle_keep_alive_connection_is_closed() {
    let proxy = Proxy::start(PlanReply::Hang, setup(&["--client-header-timeout=1"])).await;
    let mut idle = connect(&proxy).await;
    idle.write_all(b"GET /health HTTP/1.1\r\nhost: proxy\r\n\r\n")
        .await
        .unwrap();
    let answer = read_to_close(&mut idle).await;
    assert!(
        answer.starts_with(b"HTTP/1.1 200"),
        "{}",
        String::from_utf8_lossy(&answer)
    );
}

#[tokio::test]
async fn connections_over_the_per_address_cap_are_closed_at_once() {
    let proxy = Proxy::start(
        PlanReply::Hang,
        setup(&["--max-connections-per-ip=2", "--client-header-timeout=60"]),
    )
    .await;
    let held = [connect(&proxy).await, connect(&proxy).await];
    // The third from the same address is closed before it can send anything.
    let mut third = connect(&proxy).await;
    assert!(read_to_close(&mut third).await.is_empty());
    // A slot given back is a slot again.
    drop(held);
    let mut answered = None;
    for _ in 0..100 {
        let mut next = connect(&proxy).await;
        let _ = next
            .write_all(b"GET /health HTTP/1.1\r\nhost: proxy\r\nconnection: close\r\n\r\n")
            .await;
        let answer = read_to_close(&mut next).await;
        if answer.starts_with(b"HTTP/1.1 200") {
            answered = Some(answer);
            break;
        }
        // The server may not have seen the two close yet.
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let answer = answered.expect("a connection served after the held ones closed");
    // `/health` counts the refusals: the third, and any the loop met.
    let answer = String::from_utf8_lossy(&answer);
    let (_, body) = answer.split_once("\r\n\r\n").expect("a head and a body");
    let health: serde_json::Value = serde_json::from_str(body).expect("/health's JSON");
    let refused = health["connections"]["refused_per_ip"].as_u64();
    assert!(refused.is_some_and(|n| n >= 1), "{health}");
}

#[tokio::test]
async fn a_body_that_trickles_in_gets_a_408() {
    let proxy = Proxy::start(PlanReply::Hang, setup(&["--client-body-timeout=1"])).await;
    let mut slow = connect(&proxy).await;
    let head = format!(
        "POST /ak/{}/v1/messages HTTP/1.1\r\nhost: proxy\r\ncontent-type: application/json\r\nx-api-key: {CLIENT_API_KEY}\r\ncontent-length: {}\r\n\r\n",
        proxy.key,
        MESSAGE.len()
    );
    slow.write_all(head.as_bytes()).await.unwrap();
    slow.write_all(&MESSAGE.as_bytes()[..10]).await.unwrap();
    let answer = read_to_close(&mut slow).await;
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains("request_timeout"), "{answer}");
}

/// The first events of a stream: the message starts, a delta, then nothing.
fn stalled_stream() -> Bytes {
    let full = api_stream("basic_response.txt");
    let text = String::from_utf8(full.to_vec()).unwrap();
    let cut = text
        .find("event: content_block_stop")
        .expect("a block stop");
    Bytes::from(text[..cut].to_owned())
}

/// POSTs a streaming request; the status and the whole body (the proxy must end it).
async fn stream(proxy: &Proxy) -> (http::StatusCode, String) {
    let request = http::Request::post(proxy.url("/v1/messages"))
        .header("content-type", "application/json")
        .header("anthropic-version", "2023-06-01")
        .header("x-api-key", CLIENT_API_KEY)
        .body(http_body_util::Full::new(Bytes::from_static(
            MESSAGE.as_bytes(),
        )))
        .unwrap();
    let response = client().request(request).await.expect("response");
    let status = response.status();
    let body = tokio::time::timeout(PATIENCE, response.into_body().collect())
        .await
        .expect("the proxy ended the stream")
        .expect("the body ends with an event, not a broken connection")
        .to_bytes();
    (status, String::from_utf8(body.to_vec()).unwrap())
}

#[tokio::test]
async fn a_stalled_upstream_stream_is_cut_with_an_error_event_and_recorded() {
    let mut proxy = Proxy::start(
        PlanReply::StallAfter(stalled_stream()),
        setup(&["--upstream-idle-timeout=1"]),
    )
    .await;
    let (status, body) = stream(&proxy).await;
    assert_eq!(status, 200);
    assert!(body.starts_with("event: message_start"), "{body}");
    assert!(body.contains("\n\nevent: error\ndata: "), "{body}");
    assert!(body.contains(r#""upstream_idle_timeout""#), "{body}");

    let rows = proxy.rows().await;
    assert_eq!(rows.len(), 1);
    let row = &rows[0];
    assert_eq!(row.provider, "plan");
    assert_eq!(row.outcome, "stream_error");
    assert_eq!(row.error_type.as_deref(), Some("upstream_idle_timeout"));
    assert!(
        row.input_tokens > 0,
        "message_start's usage is kept: {row:?}"
    );
}

#[tokio::test]
async fn shutdown_cuts_open_streams_at_its_deadline_and_records_them() {
    let mut proxy = Proxy::start(
        PlanReply::StallAfter(stalled_stream()),
        setup(&["--upstream-idle-timeout=600", "--shutdown-timeout=1"]),
    )
    .await;
    let request = http::Request::post(proxy.url("/v1/messages"))
        .header("content-type", "application/json")
        .header("x-api-key", CLIENT_API_KEY)
        .body(http_body_util::Full::new(Bytes::from_static(
            MESSAGE.as_bytes(),
        )))
        .unwrap();
    let response = client().request(request).await.expect("response");
    assert_eq!(response.status(), 200);
    let reading = tokio::spawn(response.into_body().collect());

    // The stream never ends by itself: stopping must end it, after the 1 s deadline.
    let rows = tokio::time::timeout(PATIENCE, proxy.rows())
        .await
        .expect("shutdown has a deadline");
    let body = reading
        .await
        .unwrap()
        .expect("ended with an event")
        .to_bytes();
    let body = String::from_utf8(body.to_vec()).unwrap();
    assert!(body.contains(r#""proxy_shutdown""#), "{body}");
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].outcome, "stream_error");
    assert_eq!(rows[0].error_type.as_deref(), Some("proxy_shutdown"));
}
