//! `reference-server demo --serve`: the demo's flow, then the server stays up with the
//! console open, prints its URL and a one-time password that logs in, and stops on Ctrl-C.

use std::process::Stdio;

use http::StatusCode;
use tokio::io::{AsyncBufReadExt, BufReader};
use usage_tests::process::server_binary;
use usage_tests::proxy::exchange;

#[tokio::test]
async fn demo_serve_leaves_the_console_open_with_a_one_time_password() {
    let dir = tempfile::tempdir().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut child = tokio::process::Command::new(server_binary())
        .args(["demo", "--serve", &format!("--bind=127.0.0.1:{port}")])
        .arg(format!("--dir={}", dir.path().display()))
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let (mut url, mut password, mut printed) = (None, None, Vec::new());
    while let Some(line) =
        tokio::time::timeout(std::time::Duration::from_secs(120), lines.next_line())
            .await
            .expect("the demo prints within two minutes")
            .unwrap()
    {
        if let Some(rest) = line.strip_prefix("the admin console: ") {
            url = Some(rest.to_owned());
        }
        if let Some(rest) = line.trim().strip_prefix("password: ") {
            password = rest.split_whitespace().next().map(str::to_owned);
        }
        let done = line.contains("Ctrl-C stops the server");
        printed.push(line);
        if done {
            break;
        }
    }
    let url = url.unwrap_or_else(|| panic!("no console URL in {printed:#?}"));
    let password = password.unwrap_or_else(|| panic!("no password in {printed:#?}"));
    assert_eq!(url, format!("http://127.0.0.1:{port}/console/"));
    assert_eq!(password.len(), 24);
    assert!(
        printed
            .iter()
            .any(|l| l.starts_with("bedrock ") && l.ends_with("rate_limited")),
        "{printed:#?}"
    );

    let origin = format!("http://127.0.0.1:{port}");
    let body = url::form_urlencoded::Serializer::new(String::new())
        .extend_pairs([("name", "admin"), ("password", password.as_str())])
        .finish();
    let (status, headers, _) = exchange(
        "POST",
        format!("{origin}/console/login"),
        &[("content-type", "application/x-www-form-urlencoded")],
        &body,
    )
    .await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    let cookie = headers["set-cookie"]
        .to_str()
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_owned();
    let (status, _, page) = exchange("GET", &url, &[("cookie", &cookie)], "").await;
    let page = String::from_utf8_lossy(&page);
    assert_eq!(status, StatusCode::OK);
    assert!(
        page.contains("demo user"),
        "the demo's usage is on the dashboard"
    );
    let pid = child.id().unwrap().to_string();
    assert!(
        std::process::Command::new("kill")
            .args(["-INT", &pid])
            .status()
            .unwrap()
            .success()
    );
    let status = tokio::time::timeout(std::time::Duration::from_secs(60), child.wait())
        .await
        .expect("Ctrl-C stops it")
        .unwrap();
    assert!(status.success(), "{status}");
}
