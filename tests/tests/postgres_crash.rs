//! A real Postgres crash under load: the test's own cluster, its postmaster killed with
//! SIGKILL while 200 clients stream through the release-built proxy; the proxy restarted
//! in the middle of the outage; then Postgres started again.
//!
//! What must hold: no request waits on the dead database for long (sqlx's default was
//! 30 s per request, the bound is now `--database-timeout`, 1 s here; the assertion
//! allows 15 s so that a busy machine cannot break it, and the figures are printed);
//! `/health` says `degraded` during the outage; the restarted proxy comes up without the
//! database and serves the keys it had seen; and afterwards every request is in
//! `token_usage` exactly once, with the aggregates equal to the rows.

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::Request;
use http_body_util::{BodyExt, Full};
use reference_server::standins::plan::{PlanReply, PlanStandIn};
use sea_orm::{Database, EntityTrait};
use usage_layer::store::Buckets;
use usage_layer::store::sea_orm::entity::token_usage;
use usage_tests::process::{PgCluster, ServerProcess, user_with_key};
use usage_tests::proxy::{api_stream, client};

const CLIENTS: usize = 200;

const REQUEST: &str = r#"{"model":"claude-sonnet-4-5-20250929","max_tokens":64,"stream":true,"messages":[{"role":"user","content":"Hi"}]}"#;

/// What a load's clients saw.
#[derive(Debug, Default)]
struct Seen {
    ok: u64,
    failed: u64,
    slowest: Duration,
}

/// `CLIENTS` clients sending streaming requests to `url`, one after another each, until
/// stopped.
struct Load {
    stop: Arc<AtomicBool>,
    clients: tokio::task::JoinSet<Seen>,
}

impl Load {
    fn start(url: String) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let mut clients = tokio::task::JoinSet::new();
        for _ in 0..CLIENTS {
            let (stop, url) = (Arc::clone(&stop), url.clone());
            clients.spawn(async move {
                let client = client();
                let mut seen = Seen::default();
                while !stop.load(Ordering::Relaxed) {
                    let started = Instant::now();
                    let request = Request::post(&url)
                        .header("content-type", "application/json")
                        .header("anthropic-version", "2023-06-01")
                        .body(Full::new(Bytes::from_static(REQUEST.as_bytes())))
                        .expect("request");
                    let answered = match client.request(request).await {
                        Ok(response) if response.status() == 200 => {
                            response.into_body().collect().await.is_ok()
                        }
                        _ => false,
                    };
                    seen.slowest = seen.slowest.max(started.elapsed());
                    if answered {
                        seen.ok += 1;
                    } else {
                        seen.failed += 1;
                    }
                }
                seen
            });
        }
        Self { stop, clients }
    }

    async fn stop(self) -> Seen {
        self.stop.store(true, Ordering::Relaxed);
        let mut total = Seen::default();
        for seen in self.clients.join_all().await {
            total.ok += seen.ok;
            total.failed += seen.failed;
            total.slowest = total.slowest.max(seen.slowest);
        }
        total
    }
}

/// Waits (`limit` at most) until `/health` says `status`; the JSON.
async fn health_until(server: &ServerProcess, status: &str, limit: Duration) -> serde_json::Value {
    let started = Instant::now();
    loop {
        if let Some(health) = server.health().await
            && health["status"] == status
        {
            return health;
        }
        assert!(started.elapsed() < limit, "/health never said {status}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_postgres_crash_under_load_stalls_no_request_and_loses_nothing() {
    let Some(mut postgres) = PgCluster::start().await else {
        return;
    };
    let state = tempfile::tempdir().unwrap();
    let plan = PlanStandIn::start(PlanReply::Stream(api_stream("basic_response.txt"))).await;
    plan.count_only();
    let args = vec![
        format!("--database-url={}", postgres.url()),
        format!("--state-dir={}", state.path().display()),
        format!("--plan-api-url={}", plan.url()),
        "--bedrock-enabled=false".to_owned(),
        "--usage-flush-interval=1".to_owned(),
        "--database-timeout=1".to_owned(),
    ];
    let key = user_with_key(&postgres.url(), state.path(), "crash").await;

    let server = ServerProcess::spawn(&args).await;
    let url = |server: &ServerProcess| format!("{}/ak/{key}/v1/messages", server.base);
    let load = Load::start(url(&server));
    tokio::time::sleep(Duration::from_secs(2)).await;

    postgres.crash().await;
    let during = health_until(&server, "degraded", Duration::from_secs(60)).await;
    eprintln!("during the outage: {during}");
    tokio::time::sleep(Duration::from_secs(3)).await;
    let before_restart = load.stop().await;

    // A restart during the outage: the proxy comes up without its database and serves
    // the key it had seen (from the key cache it saved when it stopped).
    assert!(
        server.stop().await.success(),
        "a clean stop during the outage"
    );
    let server = ServerProcess::spawn(&args).await;
    let restarted = server.health().await.expect("/health answers");
    eprintln!("restarted during the outage: {restarted}");
    assert_eq!(restarted["status"], "degraded");
    assert_eq!(restarted["database"]["reachable"], false);
    let load = Load::start(url(&server));
    tokio::time::sleep(Duration::from_secs(3)).await;
    let after_restart = load.stop().await;

    postgres.restart().await;
    let expected = before_restart.ok + after_restart.ok;
    let db = Database::connect(postgres.url()).await.unwrap();
    let started = Instant::now();
    let rows = loop {
        let rows = token_usage::Entity::find()
            .all(&db)
            .await
            .unwrap_or_default();
        if rows.len() as u64 >= expected {
            break rows;
        }
        assert!(
            started.elapsed() < Duration::from_secs(90),
            "{} of {expected} rows after Postgres came back",
            rows.len()
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    assert!(server.stop().await.success());

    eprintln!(
        "before the restart: {before_restart:?}; after it: {after_restart:?}; {} rows",
        rows.len()
    );
    assert_eq!(
        before_restart.failed + after_restart.failed,
        0,
        "every request was served"
    );
    assert!(after_restart.ok > 0, "the restarted proxy served");
    let slowest = before_restart.slowest.max(after_restart.slowest);
    assert!(
        slowest < Duration::from_secs(15),
        "a request took {slowest:?}: it waited on the dead database"
    );
    let ids: HashSet<&str> = rows.iter().map(|row| row.request_id.as_str()).collect();
    assert_eq!(ids.len(), rows.len(), "no request is recorded twice");
    assert_eq!(rows.len() as u64, expected, "every request is recorded");
    assert!(rows.iter().all(|row| row.outcome == "completed"));
    let test_db = usage_tests::TestDb::attach(db, postgres.url());
    usage_tests::assert_aggregates_match_rows(&test_db, &Buckets::default()).await;
}
