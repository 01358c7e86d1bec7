//! Load: 200 concurrent streaming clients, 20,000 requests (`LOAD_REQUESTS`,
//! `LOAD_CONCURRENCY`) through the reference server on Postgres (SQLite when Postgres is not
//! there), four users, Plan answering streams, 529s (served by Bedrock) and 400s (passed
//! through). Afterwards: one row per request — none lost, none twice — the totals exactly
//! what was served, every aggregate equal to its rows, no error the upstream did not cause.
//! The server runs in its own process (the binary the fault tests run), the stand-ins count
//! instead of keeping, and the rows are read only after the last memory sample: the
//! server's RSS over the run is printed (and, with `LOAD_REPORT`, written for
//! `scripts/bench-load.sh`, whose longer, timer-flushed run goes to BENCHMARKS.md).

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Request, StatusCode};
use http_body_util::{BodyExt, Full};
use reference_server::standins::plan::{PlanReply, PlanStandIn};
use usage_layer::store::Buckets;
use usage_tests::process::{ServerProcess, user_with_key};
use usage_tests::proxy::{BEDROCK_API_KEY, bedrock_stand_in, client, fixture};
use usage_tests::{TestDb, assert_aggregates_match_rows, rows};

const REQUEST: &str = r#"{"model":"claude-sonnet-4-5-20250929","max_tokens":1024,"stream":true,"messages":[{"role":"user","content":"Hello"}]}"#;

fn env_or(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// `VmRSS` and `VmHWM` of process `pid`, KiB.
fn memory_kib(pid: u32) -> (u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|line| line.strip_prefix(name))
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|n| n.parse().ok())
            .unwrap_or(0)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_thousand_streams_are_each_recorded_once_and_add_up() {
    let requests = env_or("LOAD_REQUESTS", 20_000);
    let concurrency = env_or("LOAD_CONCURRENCY", 200);
    // Requests per second in all; 0: as fast as the clients go. Below ~500/s the writer's
    // batches are flushed by its timer, not filled.
    let rate = env_or("LOAD_RATE", 0);
    let sample_every = env_or("LOAD_SAMPLE_EVERY", (requests / 10).max(1));
    let db = match TestDb::postgres().await {
        Some(db) => db,
        None => TestDb::sqlite().await,
    };
    let plan_stream = fixture("tool_use_response.txt");
    // Every 10th Plan answer is a 529 (Bedrock serves it), every 50th a 400 (passed through).
    let replies: Vec<PlanReply> = (0..requests)
        .map(|i| match i {
            i if i % 10 == 3 => PlanReply::error(529, "overloaded_error", "Overloaded"),
            i if i % 50 == 7 => PlanReply::error(400, "invalid_request_error", "bad"),
            _ => PlanReply::Stream(plan_stream.clone()),
        })
        .collect();
    let overloaded = (0..requests).filter(|i| i % 10 == 3).count();
    let rejected = (0..requests).filter(|i| i % 10 != 3 && i % 50 == 7).count();
    let streamed = requests - overloaded - rejected;

    // The stand-ins count and do not keep; the server runs in its own process, so its
    // memory is its own (`REFERENCE_SERVER_BIN` picks the binary, e.g. a release build).
    let plan = PlanStandIn::start(PlanReply::error(500, "api_error", "unscripted")).await;
    plan.queue(replies);
    plan.count_only();
    let bedrock = bedrock_stand_in().await;
    bedrock.count_only();
    let state = tempfile::tempdir().unwrap();
    let mut keys = Vec::new();
    for user in 0..4 {
        keys.push(user_with_key(&db.url, state.path(), &format!("load user {user}")).await);
    }
    let server = ServerProcess::spawn(&[
        format!("--database-url={}", db.url),
        format!("--state-dir={}", state.path().display()),
        format!("--plan-api-url={}", plan.url()),
        format!("--bedrock-endpoint-url={}", bedrock.endpoint_url()),
        "--bedrock-region=us-east-1".to_owned(),
        format!("--bedrock-api-key={BEDROCK_API_KEY}"),
        "--plan-header-timeout=30".to_owned(),
        "--usage-flush-interval=1".to_owned(),
    ])
    .await;
    let pid = server.process.id().expect("running");
    let urls: Arc<Vec<String>> = Arc::new(
        keys.iter()
            .map(|key| format!("{}/ak/{key}/v1/messages", server.base))
            .collect(),
    );

    let next = Arc::new(AtomicUsize::new(0));
    let statuses = Arc::new(std::sync::Mutex::new(std::collections::BTreeMap::<
        u16,
        usize,
    >::new()));
    let (rss_start, _) = memory_kib(pid);
    // (requests sent, the server's RSS in MiB) every `sample_every` requests.
    let samples = Arc::new(std::sync::Mutex::new(Vec::new()));
    let started = Instant::now();
    let http = client();
    let workers: Vec<_> = (0..concurrency)
        .map(|_| {
            let (next, statuses, urls, http, samples) = (
                next.clone(),
                statuses.clone(),
                urls.clone(),
                http.clone(),
                samples.clone(),
            );
            tokio::spawn(async move {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= requests {
                        return;
                    }
                    if rate > 0 {
                        let due = started + Duration::from_secs_f64(i as f64 / rate as f64);
                        tokio::time::sleep_until(due.into()).await;
                    }
                    if i % sample_every == 0 {
                        samples.lock().unwrap().push((i, memory_kib(pid).0 / 1024));
                    }
                    let response = http
                        .request(
                            Request::post(&urls[i % urls.len()])
                                .header("content-type", "application/json")
                                .body(Full::new(Bytes::from_static(REQUEST.as_bytes())))
                                .unwrap(),
                        )
                        .await
                        .expect("a response");
                    let status = response.status();
                    let body = response
                        .into_body()
                        .collect()
                        .await
                        .expect("a whole body")
                        .to_bytes();
                    if status == StatusCode::OK {
                        assert!(
                            body.windows(12).any(|w| w == b"message_stop"),
                            "a complete stream"
                        );
                    }
                    *statuses.lock().unwrap().entry(status.as_u16()).or_default() += 1;
                }
            })
        })
        .collect();
    for worker in workers {
        worker.await.unwrap();
    }
    let elapsed = started.elapsed();
    let (rss_end, peak) = memory_kib(pid);
    let samples = samples.lock().unwrap().clone();

    let statuses = statuses.lock().unwrap().clone();
    let expected_statuses =
        std::collections::BTreeMap::from([(200, streamed + overloaded), (400, rejected)]);
    assert_eq!(statuses, expected_statuses, "only the errors Plan sent");
    assert_eq!(plan.request_count(), requests, "Plan saw every request");
    assert_eq!(
        bedrock.request_count(),
        overloaded,
        "Bedrock served every 529"
    );

    // Stopped (writing all usage) before the rows are read into this process.
    assert!(server.stop().await.success(), "a clean stop");
    let rows = rows(&db).await;
    assert_eq!(rows.len(), requests, "one row per request");
    let ids: std::collections::HashSet<_> = rows.iter().map(|r| r.request_id.as_str()).collect();
    assert_eq!(ids.len(), requests, "no request twice");
    let count = |provider: &str, outcome: &str| {
        rows.iter()
            .filter(|r| r.provider == provider && r.outcome == outcome)
            .count()
    };
    assert_eq!(count("plan", "completed"), streamed);
    assert_eq!(count("bedrock", "completed"), overloaded);
    assert_eq!(count("plan", "error_response"), rejected);
    let total = |pick: fn(&usage_layer::store::sea_orm::entity::token_usage::Model) -> i64| {
        rows.iter().map(pick).sum::<i64>()
    };
    let (streamed, overloaded) = (streamed as i64, overloaded as i64);
    assert_eq!(
        total(|r| r.input_tokens),
        streamed * 377 + overloaded * 1200
    );
    assert_eq!(total(|r| r.output_tokens), streamed * 65 + overloaded * 345);
    assert_aggregates_match_rows(&db, &Buckets::default()).await;

    let report = format!(
        "load ({}): {requests} requests, {concurrency} clients, rate {}, {:.1} s ({:.0} req/s); the server's RSS (MiB) after each {sample_every} requests {samples:?}; at start {}, at the end {}, peak {}",
        db.backend,
        if rate > 0 {
            format!("{rate}/s")
        } else {
            "unlimited".to_owned()
        },
        elapsed.as_secs_f64(),
        requests as f64 / elapsed.as_secs_f64(),
        rss_start / 1024,
        rss_end / 1024,
        peak / 1024
    );
    eprintln!("{report}");
    // The memory figures are measured, not asserted (a busy machine moves RSS): the
    // long run of `scripts/bench-load.sh` writes them to BENCHMARKS.md.
    if let Ok(path) = std::env::var("LOAD_REPORT") {
        let lines: String = samples
            .iter()
            .map(|(sent, rss)| format!("{sent} {rss}\n"))
            .chain([format!(
                "end {}\npeak {}\nseconds {:.1}\n",
                rss_end / 1024,
                peak / 1024,
                elapsed.as_secs_f64()
            )])
            .collect();
        std::fs::write(path, lines).expect("the load report");
    }
    db.close().await;
}
