//! Faults, bounded in time, on loopback: the usage database cut off under load (a TCP relay
//! the test cuts and restores), the server killed (SIGKILL) while records wait in its
//! spool, a storm of clients leaving mid-stream, Bedrock breaking a stream with an
//! exception frame. Afterwards every request is in `token_usage` exactly once, with the
//! right outcome, and the aggregates equal the rows. (Plan hanging before its headers, and
//! Plan streams reset or failing mid-way, are in `proxy.rs`.)

use std::collections::{BTreeMap, HashSet};
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Request, StatusCode};
use http_body_util::{BodyExt, Full};
use reference_server::config::Routing;
use reference_server::standins::plan::{PlanReply, PlanStandIn};
use sea_orm::{EntityTrait, PaginatorTrait};
use usage_layer::store::Buckets;
use usage_layer::store::sea_orm::entity::token_usage;
use usage_tests::process::{ServerProcess, user_with_key};
use usage_tests::proxy::{Proxy, Setup, client, fixture, long_stream, send};
use usage_tests::relay::Relay;
use usage_tests::{TestDb, assert_aggregates_match_rows, rows};

const REQUEST: &str = r#"{"model":"claude-sonnet-4-5-20250929","max_tokens":64,"stream":true,"messages":[{"role":"user","content":"Hi"}]}"#;

fn postgres_addr(url: &str) -> SocketAddr {
    let url = url::Url::parse(url).unwrap();
    let host = url.host_str().unwrap();
    let host = if host == "localhost" {
        "127.0.0.1"
    } else {
        host
    };
    format!("{host}:{}", url.port().unwrap_or(5432))
        .parse()
        .unwrap()
}

/// Bytes in the spool's segment files.
fn spool_bytes(dir: &Path) -> u64 {
    std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .filter(|e| e.path().extension().is_some_and(|x| x == "seg"))
                .filter_map(|e| e.metadata().ok())
                .map(|m| m.len())
                .sum()
        })
        .unwrap_or(0)
}

async fn post(url: &str) -> StatusCode {
    send(
        "POST",
        url,
        &[("content-type", "application/json")],
        REQUEST,
    )
    .await
    .0
}

fn assert_once_each(rows: &[token_usage::Model], expected: usize) {
    assert_eq!(rows.len(), expected, "one row per request served");
    let ids: HashSet<_> = rows.iter().map(|r| r.request_id.as_str()).collect();
    assert_eq!(ids.len(), expected, "no request twice");
    assert!(
        rows.iter()
            .all(|r| r.outcome == "completed" && (r.input_tokens, r.output_tokens) == (377, 65)),
        "every row complete"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_outage_under_load_loses_nothing_and_writes_nothing_twice() {
    let Some(db) = TestDb::postgres().await else {
        return; // said loudly by TestDb; a failure under CI
    };
    let relay = Relay::start(postgres_addr(&db.url)).await;
    let setup = Setup {
        database_url: Some(relay.url_through(&db.url)),
        ..Setup::default()
    };
    let mut proxy = Proxy::start(PlanReply::Stream(fixture("tool_use_response.txt")), setup).await;
    let url: Arc<str> = proxy.url("/v1/messages").into();
    let stop = Arc::new(AtomicBool::new(false));
    let workers: Vec<_> = (0..16)
        .map(|_| {
            let (url, stop) = (url.clone(), stop.clone());
            tokio::spawn(async move {
                let mut statuses = BTreeMap::<u16, usize>::new();
                while !stop.load(Ordering::Relaxed) {
                    *statuses.entry(post(&url).await.as_u16()).or_default() += 1;
                }
                statuses
            })
        })
        .collect();

    tokio::time::sleep(Duration::from_secs(1)).await;
    relay.cut();
    // Long enough for the writer to give up retrying and spool.
    let spool = proxy.state_dir().join("spool");
    let cut_at = Instant::now();
    let health = format!("http://{}/health", proxy.server.as_ref().unwrap().addr);
    let (mut spooled, mut degraded) = (0, None);
    while cut_at.elapsed() < Duration::from_secs(5) {
        spooled = spooled.max(spool_bytes(&spool));
        let response = client()
            .request(Request::get(&health).body(Full::default()).unwrap())
            .await
            .unwrap();
        let body = response.into_body().collect().await.unwrap().to_bytes();
        let report: serde_json::Value = serde_json::from_slice(&body).unwrap();
        if report["status"] == "degraded" {
            degraded = Some(report);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let degraded = degraded.expect("/health reported the backlog during the outage");
    assert!(
        degraded["usage"]["spooled"].as_u64().unwrap() > 0,
        "{degraded}"
    );
    assert!(
        degraded["usage"]["oldest_unwritten"].is_string(),
        "{degraded}"
    );
    relay.restore();
    tokio::time::sleep(Duration::from_secs(2)).await;
    stop.store(true, Ordering::Relaxed);
    let mut statuses = BTreeMap::<u16, usize>::new();
    for worker in workers {
        for (status, n) in worker.await.unwrap() {
            *statuses.entry(status).or_default() += n;
        }
    }
    let served = statuses.get(&200).copied().unwrap_or(0);
    assert_eq!(
        statuses.len(),
        1,
        "every request served through the outage: {statuses:?}"
    );
    assert!(
        spooled > 0,
        "records were spooled while the database was away"
    );

    let stored = proxy.rows().await; // stops the server: the spool is replayed first
    assert_once_each(&stored, served);
    assert_eq!(rows(&db).await.len(), served);
    assert_aggregates_match_rows(&db, &Buckets::default()).await;
    eprintln!("outage: {served} requests served, up to {spooled} spool bytes, all written once");
    db.close().await;
}

async fn spawn_server(database_url: &str, state_dir: &Path, plan: &PlanStandIn) -> ServerProcess {
    ServerProcess::spawn(&[
        format!("--database-url={database_url}"),
        format!("--state-dir={}", state_dir.display()),
        format!("--plan-api-url={}", plan.url()),
        "--bedrock-enabled=false".to_owned(),
        "--usage-flush-interval=1".to_owned(),
    ])
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_spooled_when_the_process_is_killed_are_written_after_a_restart() {
    let Some(db) = TestDb::postgres().await else {
        return;
    };
    let relay = Relay::start(postgres_addr(&db.url)).await;
    let through_relay = relay.url_through(&db.url);
    let state = tempfile::tempdir().unwrap();
    let plan = PlanStandIn::start(PlanReply::Stream(fixture("tool_use_response.txt"))).await;
    let key = user_with_key(&db.url, state.path(), "killed").await;

    let mut server = spawn_server(&through_relay, state.path(), &plan).await;
    let url = format!("{}/ak/{key}/v1/messages", server.base);
    assert_eq!(post(&url).await, StatusCode::OK); // the key is known before the outage
    tokio::time::sleep(Duration::from_millis(1500)).await; // and its record written
    relay.cut();
    let during = 40;
    for _ in 0..during {
        assert_eq!(post(&url).await, StatusCode::OK, "served during the outage");
    }
    // Wait until the writer has spooled them all (the spool stops growing).
    let spool = state.path().join("spool");
    let (mut last, mut steady_since) = (0, Instant::now());
    let waiting = Instant::now();
    while steady_since.elapsed() < Duration::from_secs(2) || last == 0 {
        let now = spool_bytes(&spool);
        if now != last {
            (last, steady_since) = (now, Instant::now());
        }
        assert!(
            waiting.elapsed() < Duration::from_secs(30),
            "nothing was spooled"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    server.process.start_kill().unwrap(); // SIGKILL: no shutdown, no flush
    server.process.wait().await.unwrap();
    let before = token_usage::Entity::find().count(&db.db).await.unwrap();
    assert_eq!(
        before, 1,
        "only the record from before the outage is in the database"
    );

    relay.restore();
    let restarted = spawn_server(&db.url, state.path(), &plan).await;
    let started = Instant::now();
    while token_usage::Entity::find().count(&db.db).await.unwrap() < (during + 1) as u64 {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "the spool was not replayed after the restart"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    drop(restarted);
    assert_once_each(&rows(&db).await, during + 1);
    assert_aggregates_match_rows(&db, &Buckets::default()).await;
    db.close().await;
}

/// 100 clients open a stream at once and 60 of them leave after its first frame: every
/// request is recorded once, the leavers as `client_disconnected` with their input billed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_storm_of_disconnecting_clients_is_recorded_once_each() {
    let mut proxy = Proxy::start(PlanReply::Stream(long_stream(1_000)), Setup::default()).await;
    let url: Arc<str> = proxy.url("/v1/messages").into();
    let clients: Vec<_> = (0..100)
        .map(|i| {
            let url = url.clone();
            tokio::spawn(async move {
                let response = client()
                    .request(
                        Request::post(&*url)
                            .body(Full::new(Bytes::from_static(REQUEST.as_bytes())))
                            .unwrap(),
                    )
                    .await
                    .unwrap();
                let mut body = response.into_body();
                if i % 5 < 3 {
                    let _first = body.frame().await;
                    drop(body); // gone mid-stream
                } else {
                    let _ = body.collect().await.unwrap();
                }
            })
        })
        .collect();
    for client in clients {
        client.await.unwrap();
    }
    let rows = proxy.rows().await;
    assert_eq!(rows.len(), 100, "one row per request");
    let ids: HashSet<_> = rows.iter().map(|r| r.request_id.as_str()).collect();
    assert_eq!(ids.len(), 100, "no request twice");
    let outcomes = rows
        .iter()
        .fold(BTreeMap::<&str, usize>::new(), |mut n, r| {
            *n.entry(r.outcome.as_str()).or_default() += 1;
            n
        });
    assert_eq!(
        outcomes,
        BTreeMap::from([("client_disconnected", 60), ("completed", 40)])
    );
    assert!(
        rows.iter().all(|r| r.input_tokens == 11),
        "input billed either way"
    );
}

/// Bedrock breaks a stream with an exception frame after its first events: the request is
/// recorded once, as an upstream failure, with the input already reported.
#[tokio::test]
async fn a_bedrock_exception_mid_stream_is_recorded_once_with_its_outcome() {
    use reference_server::standins::bedrock::{Reply, events_from_sse};
    let setup = Setup {
        routing: Routing::BedrockOnly,
        ..Setup::default()
    };
    let mut proxy = Proxy::start(PlanReply::error(500, "api_error", "unused"), setup).await;
    let events = events_from_sse(&fixture("basic_response.txt"));
    proxy.bedrock.respond_with(Reply::StreamThenException {
        events: events[..3].to_vec(),
        exception: "modelStreamErrorException",
        message: "the model stream failed".to_owned(),
    });
    let (status, _, body) = proxy.post("/v1/messages", REQUEST).await;
    assert_eq!(status, StatusCode::OK, "the stream had started");
    let body = String::from_utf8_lossy(&body);
    assert!(body.contains("event: error"), "the client is told: {body}");
    let rows = proxy.rows().await;
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].provider, "bedrock");
    assert_eq!(rows[0].outcome, "stream_error", "{:#?}", rows[0]);
    assert_eq!(rows[0].input_tokens, 11);
}
