//! A fleet: proxies (`serve --usage-transport nats://…`, each its own process) publishing
//! usage to one NATS server with JetStream, `reference-server ingest` processes writing it
//! to Postgres, and the state they share through JetStream KV — cooldowns and budgets.
//!
//! * 20,000 streaming requests from 200 clients over three proxies, while NATS is killed
//!   for 20 s and started again, one ingester is killed with SIGKILL and one proxy is
//!   stopped gracefully and started again: afterwards exactly one row per request, no
//!   duplicate, every aggregate equal to its rows, no spool holding anything.
//! * A key Plan rate-limits on one proxy is not sent to Plan by the other two until its
//!   `retry-after` has passed (counted at the Plan stand-in).
//! * A user with a $1 Bedrock budget, three proxies: overspent by at most the requests in
//!   flight when the limit was crossed.

use std::collections::HashSet;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Request, StatusCode};
use http_body_util::{BodyExt, Full};
use reference_server::config::Routing;
use reference_server::standins::bedrock::BedrockStandIn;
use reference_server::standins::plan::{PlanReply, PlanStandIn};
use rust_decimal::Decimal;
use usage_layer::store::Buckets;
use usage_tests::process::{
    IngestProcess, NatsServer, ServerProcess, share_secrets, user_with_key_as,
};
use usage_tests::proxy::{BEDROCK_API_KEY, bedrock_stand_in, client, fixture};
use usage_tests::{TestDb, assert_aggregates_match_rows, rows};

const REQUEST: &str = r#"{"model":"claude-sonnet-4-5-20250929","max_tokens":1024,"stream":true,"messages":[{"role":"user","content":"Hello"}]}"#;

/// The stand-ins, the database and the state directories of one fleet.
struct Fleet {
    nats: NatsServer,
    db: TestDb,
    plan: PlanStandIn,
    bedrock: BedrockStandIn,
    /// The first proxy's state directory: the deployment's secrets, made by the first user.
    states: Vec<tempfile::TempDir>,
}

impl Fleet {
    /// A NATS server, a fresh Postgres database, Plan streaming `plan_reply` and Bedrock
    /// streaming 1,200 in and 345 out; `None` when Postgres is not there (and not required).
    async fn start(plan_reply: PlanReply, proxies: usize) -> Option<Self> {
        let db = TestDb::postgres().await?;
        let nats = NatsServer::start().await;
        let plan = PlanStandIn::start(plan_reply).await;
        let bedrock = bedrock_stand_in().await;
        let states = (0..proxies)
            .map(|_| tempfile::tempdir().expect("a state directory"))
            .collect();
        Some(Self {
            nats,
            db,
            plan,
            bedrock,
            states,
        })
    }

    /// A user (and a key) in the fleet's database, with the fleet's secrets.
    async fn user(&self, name: &str, budget: Option<Decimal>, routing: Routing) -> String {
        let (_, key) =
            user_with_key_as(&self.db.url, self.states[0].path(), name, budget, routing).await;
        for state in &self.states[1..] {
            share_secrets(self.states[0].path(), state.path());
        }
        key
    }

    fn proxy_args(&self, index: usize) -> Vec<String> {
        vec![
            format!("--database-url={}", self.db.url),
            format!("--state-dir={}", self.states[index].path().display()),
            format!("--plan-api-url={}", self.plan.url()),
            format!("--bedrock-endpoint-url={}", self.bedrock.endpoint_url()),
            "--bedrock-region=us-east-1".to_owned(),
            format!("--bedrock-api-key={BEDROCK_API_KEY}"),
            "--plan-header-timeout=30".to_owned(),
            "--usage-flush-interval=1".to_owned(),
            format!("--usage-transport={}", self.nats.url()),
        ]
    }

    async fn proxy(&self, index: usize) -> ServerProcess {
        ServerProcess::spawn(&self.proxy_args(index)).await
    }

    async fn ingester(&self) -> IngestProcess {
        IngestProcess::spawn(
            &self.nats.url(),
            &self.db.url,
            self.states[0].path(),
            &["--max-batch=500".to_owned()],
        )
        .await
    }
}

/// Waits (up to `limit`) until `done` holds, checking every 200 ms; panics with `what`
/// and the last state `done` reported otherwise.
async fn eventually<F, Fut>(limit: Duration, what: &str, mut done: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<(), String>>,
{
    let started = Instant::now();
    loop {
        match done().await {
            Ok(()) => return,
            Err(state) if started.elapsed() > limit => panic!("{what} within {limit:?}: {state}"),
            Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
        }
    }
}

/// A proxy's usage backlog (queue and spool) is empty and its fleet view shared.
async fn drained(proxy: &ServerProcess) -> Result<(), String> {
    let health = proxy.health().await.ok_or("no /health")?;
    let usage = &health["usage"];
    if usage["spooled"] == 0 && usage["queue_depth"] == 0 && health["fleet"]["view"] == "shared" {
        Ok(())
    } else {
        Err(health.to_string())
    }
}

/// One streaming request to `url`: its status, its `x-request-id`, its body; `Err` when
/// the proxy could not be reached (it was being stopped).
async fn stream_once(url: &str) -> Result<(StatusCode, String, Bytes), String> {
    let response = client()
        .request(
            Request::post(url)
                .header("content-type", "application/json")
                .body(Full::new(Bytes::from_static(REQUEST.as_bytes())))
                .unwrap(),
        )
        .await
        .map_err(|error| error.to_string())?;
    let status = response.status();
    let id = response
        .headers()
        .get("x-request-id")
        .and_then(|id| id.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let body = response
        .into_body()
        .collect()
        .await
        .map_err(|error| error.to_string())?
        .to_bytes();
    Ok((status, id, body))
}

fn env_or(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn spool_is_empty(dir: &Path) -> Result<(), String> {
    let spool = dir.join("spool");
    let Ok(entries) = std::fs::read_dir(&spool) else {
        return Ok(());
    };
    let bytes: u64 = entries
        .filter_map(Result::ok)
        .filter_map(|entry| entry.metadata().ok())
        .filter(|meta| meta.is_file())
        .map(|meta| meta.len())
        .sum();
    if bytes == 0 {
        Ok(())
    } else {
        Err(format!("{} holds {bytes} bytes", spool.display()))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_thousand_streams_over_three_proxies_survive_nats_ingester_and_proxy_faults() {
    let requests = env_or("FLEET_REQUESTS", 20_000);
    let clients = env_or("FLEET_CLIENTS", 200);
    let Some(mut fleet) =
        Fleet::start(PlanReply::Stream(fixture("tool_use_response.txt")), 3).await
    else {
        return;
    };
    fleet.plan.count_only();
    fleet.bedrock.count_only();
    let mut keys = Vec::new();
    for user in 0..4 {
        keys.push(
            fleet
                .user(&format!("fleet user {user}"), None, Routing::PlanFirst)
                .await,
        );
    }
    let mut proxies = Vec::new();
    for index in 0..3 {
        proxies.push(Some(fleet.proxy(index).await));
    }
    let mut ingesters = vec![fleet.ingester().await, fleet.ingester().await];
    // The proxies the clients may use: a base URL, or `None` while it is stopped.
    let bases: Arc<RwLock<Vec<Option<String>>>> = Arc::new(RwLock::new(
        proxies
            .iter()
            .map(|proxy| proxy.as_ref().map(|p| p.base.clone()))
            .collect(),
    ));
    let keys = Arc::new(keys);
    let next = Arc::new(AtomicUsize::new(0));
    let done = Arc::new(AtomicUsize::new(0));
    let unreachable = Arc::new(AtomicUsize::new(0));
    let ids = Arc::new(Mutex::new(Vec::with_capacity(requests)));
    let started = Instant::now();
    let workers: Vec<_> = (0..clients)
        .map(|_| {
            let (bases, keys, next, done, unreachable, ids) = (
                bases.clone(),
                keys.clone(),
                next.clone(),
                done.clone(),
                unreachable.clone(),
                ids.clone(),
            );
            tokio::spawn(async move {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= requests {
                        return;
                    }
                    let mut attempt = i;
                    let (status, id, body) = loop {
                        let base = {
                            let bases = bases.read().unwrap();
                            (0..bases.len())
                                .find_map(|step| bases[(attempt + step) % bases.len()].clone())
                                .expect("a proxy up")
                        };
                        let url = format!("{base}/ak/{}/v1/messages", keys[i % keys.len()]);
                        match stream_once(&url).await {
                            Ok(answer) => break answer,
                            Err(_) => {
                                // Stopped (it took no request): another proxy serves it.
                                unreachable.fetch_add(1, Ordering::Relaxed);
                                attempt += 1;
                                tokio::time::sleep(Duration::from_millis(20)).await;
                            }
                        }
                    };
                    assert_eq!(status, StatusCode::OK, "{}", String::from_utf8_lossy(&body));
                    assert!(
                        body.windows(12).any(|w| w == b"message_stop"),
                        "a complete stream"
                    );
                    ids.lock().unwrap().push(id);
                    done.fetch_add(1, Ordering::Relaxed);
                }
            })
        })
        .collect();

    let reached = |count: usize| {
        let done = done.clone();
        async move {
            while done.load(Ordering::Relaxed) < count {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    };
    // NATS down for 20 s: the proxies spool, then replay.
    reached(requests / 10).await;
    fleet.nats.kill().await;
    let nats_down_at = done.load(Ordering::Relaxed);
    tokio::time::sleep(Duration::from_secs(20)).await;
    let during_outage = done.load(Ordering::Relaxed) - nats_down_at;
    fleet.nats.restart().await;
    // One ingester crashes: the other takes its unacknowledged messages when they expire.
    reached(requests * 4 / 10).await;
    ingesters[0].process.start_kill().expect("SIGKILL");
    ingesters[0].process.wait().await.expect("it is gone");
    // One proxy is stopped gracefully and started again (same state directory and spool).
    reached(requests * 6 / 10).await;
    bases.write().unwrap()[1] = None;
    let stopped = proxies[1].take().expect("running").stop().await;
    assert!(stopped.success(), "a graceful stop: {stopped}");
    let again = fleet.proxy(1).await;
    bases.write().unwrap()[1] = Some(again.base.clone());
    proxies[1] = Some(again);

    for worker in workers {
        worker.await.expect("a client");
    }
    let elapsed = started.elapsed();
    let ids = ids.lock().unwrap().clone();
    assert_eq!(ids.len(), requests);
    let sent: HashSet<&str> = ids.iter().map(String::as_str).collect();
    assert_eq!(
        sent.len(),
        requests,
        "every response has its own request id"
    );

    // Everything published, everything ingested.
    for proxy in proxies.iter().flatten() {
        eventually(Duration::from_secs(180), "a proxy's backlog drains", || {
            drained(proxy)
        })
        .await;
    }
    let ingester = &ingesters[1];
    eventually(
        Duration::from_secs(180),
        "the ingester catches up",
        || async {
            let health = ingester.health().await?;
            let lag = &health["lag"];
            if lag["pending"] == 0 && lag["unacknowledged"] == 0 {
                Ok(())
            } else {
                Err(health.to_string())
            }
        },
    )
    .await;
    let db = &fleet.db;
    eventually(Duration::from_secs(60), "every row is stored", || async {
        let count = rows(db).await.len();
        if count >= requests {
            Ok(())
        } else {
            Err(format!("{count} rows"))
        }
    })
    .await;
    for proxy in proxies.into_iter().flatten() {
        assert!(proxy.stop().await.success(), "a clean stop");
    }
    for (index, state) in fleet.states.iter().enumerate() {
        spool_is_empty(state.path()).unwrap_or_else(|error| panic!("proxy {index}: {error}"));
    }

    let stored = rows(db).await;
    assert_eq!(stored.len(), requests, "exactly one row per request");
    let stored_ids: HashSet<&str> = stored.iter().map(|row| row.request_id.as_str()).collect();
    assert_eq!(stored_ids.len(), requests, "no request twice");
    assert_eq!(stored_ids, sent, "the rows are the requests answered");
    assert_eq!(
        stored.iter().map(|row| row.input_tokens).sum::<i64>(),
        requests as i64 * 377
    );
    assert_aggregates_match_rows(db, &Buckets::default()).await;
    assert_eq!(
        fleet.plan.request_count(),
        requests,
        "Plan answered them all"
    );
    eprintln!(
        "fleet: {requests} requests, {clients} clients, 3 proxies, {:.1} s ({:.0} req/s); \
         {during_outage} answered while NATS was down; {} attempts at the stopped proxy \
         served by another",
        elapsed.as_secs_f64(),
        requests as f64 / elapsed.as_secs_f64(),
        unreachable.load(Ordering::Relaxed),
    );
    let _ = ingesters;
    fleet.db.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_rate_limited_on_one_proxy_is_not_sent_to_plan_by_the_others_until_retry_after() {
    const RETRY_AFTER: u64 = 8;
    let stream = PlanReply::Stream(fixture("tool_use_response.txt"));
    let Some(fleet) = Fleet::start(stream, 3).await else {
        return;
    };
    let key = fleet.user("rate limited", None, Routing::PlanFirst).await;
    let mut proxies = Vec::new();
    for index in 0..3 {
        proxies.push(fleet.proxy(index).await);
    }
    for proxy in &proxies {
        eventually(
            Duration::from_secs(30),
            "the fleet view is shared",
            || async {
                let health = proxy.health().await.ok_or("no /health")?;
                (health["fleet"]["view"] == "shared")
                    .then_some(())
                    .ok_or(health.to_string())
            },
        )
        .await;
    }
    let url = |proxy: &ServerProcess| format!("{}/ak/{key}/v1/messages", proxy.base);

    fleet.plan.queue([PlanReply::rate_limited(RETRY_AFTER)]);
    let limited_at = Instant::now();
    let (status, _, _) = stream_once(&url(&proxies[0])).await.unwrap();
    assert_eq!(status, StatusCode::OK, "Bedrock served the 429");
    assert_eq!(fleet.plan.request_count(), 1);
    assert_eq!(fleet.bedrock.request_count(), 1);
    for proxy in &proxies[1..] {
        eventually(
            Duration::from_secs(5),
            "the cooldown reaches the others",
            || async {
                let health = proxy.health().await.ok_or("no /health")?;
                (health["fleet"]["cooldowns"] == 1)
                    .then_some(())
                    .ok_or(health.to_string())
            },
        )
        .await;
    }
    // Until retry-after has passed, the other proxies send the key to Bedrock.
    let mut skipped = 0;
    let deadline = limited_at + Duration::from_secs(RETRY_AFTER) - Duration::from_millis(500);
    'cooling: for _ in 0..10 {
        for proxy in &proxies[1..] {
            if Instant::now() >= deadline {
                break 'cooling;
            }
            let (status, _, _) = stream_once(&url(proxy)).await.unwrap();
            assert_eq!(status, StatusCode::OK);
            skipped += 1;
        }
    }
    assert!(skipped >= 2, "requests sent during the cooldown: {skipped}");
    assert_eq!(
        fleet.plan.request_count(),
        1,
        "no proxy sent the cooling key to Plan"
    );
    assert_eq!(fleet.bedrock.request_count(), 1 + skipped);
    // After it, Plan is asked again, by every proxy.
    tokio::time::sleep_until((limited_at + Duration::from_secs(RETRY_AFTER + 1)).into()).await;
    for proxy in &proxies {
        let (status, _, _) = stream_once(&url(proxy)).await.unwrap();
        assert_eq!(status, StatusCode::OK);
    }
    assert_eq!(fleet.plan.request_count(), 1 + proxies.len());
    eprintln!(
        "cooldown: {skipped} requests on the other proxies went to Bedrock during the {RETRY_AFTER} s retry-after"
    );
    for proxy in proxies {
        assert!(proxy.stop().await.success());
    }
    fleet.db.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_one_dollar_budget_holds_across_three_proxies() {
    const CLIENTS: usize = 12;
    let stream = PlanReply::Stream(fixture("tool_use_response.txt"));
    let Some(fleet) = Fleet::start(stream, 3).await else {
        return;
    };
    let limit = Decimal::ONE;
    let key = fleet
        .user("one dollar", Some(limit), Routing::BedrockOnly)
        .await;
    let mut proxies = Vec::new();
    for index in 0..3 {
        proxies.push(fleet.proxy(index).await);
    }
    let _ingester = fleet.ingester().await;
    let urls: Arc<Vec<String>> = Arc::new(
        proxies
            .iter()
            .map(|proxy| format!("{}/ak/{key}/v1/messages", proxy.base))
            .collect(),
    );
    // (completed successfully, in flight) — and, when the limit is crossed, how many
    // were in flight.
    let in_flight = Arc::new(AtomicUsize::new(0));
    let served = Arc::new(AtomicUsize::new(0));
    let refused = Arc::new(AtomicUsize::new(0));
    // The cost of one request, and the count that crosses the limit: learnt from the
    // first stored row.
    let crossing = Arc::new(Mutex::new(None::<(usize, usize)>));
    let per_request = {
        // One request first, stored, to learn its price.
        let (status, _, _) = stream_once(&urls[0]).await.unwrap();
        assert_eq!(status, StatusCode::OK);
        served.fetch_add(1, Ordering::Relaxed);
        let db = &fleet.db;
        eventually(Duration::from_secs(30), "the first row", || async {
            (rows(db).await.len() == 1)
                .then_some(())
                .ok_or("no row".to_owned())
        })
        .await;
        rows(db).await[0].estimated_cost_micros
    };
    assert!(per_request > 0);
    let limit_micros = 1_000_000_i64;
    let to_cross = usize::try_from((limit_micros + per_request - 1) / per_request).unwrap();
    let workers: Vec<_> = (0..CLIENTS)
        .map(|client| {
            let (urls, in_flight, served, refused, crossing) = (
                urls.clone(),
                in_flight.clone(),
                served.clone(),
                refused.clone(),
                crossing.clone(),
            );
            tokio::spawn(async move {
                for i in 0.. {
                    in_flight.fetch_add(1, Ordering::SeqCst);
                    let (status, _, body) =
                        stream_once(&urls[(client + i) % urls.len()]).await.unwrap();
                    let others = in_flight.fetch_sub(1, Ordering::SeqCst) - 1;
                    match status {
                        StatusCode::OK => {
                            let count = served.fetch_add(1, Ordering::SeqCst) + 1;
                            if count == to_cross {
                                *crossing.lock().unwrap() = Some((count, others));
                            }
                        }
                        StatusCode::TOO_MANY_REQUESTS => {
                            assert!(
                                String::from_utf8_lossy(&body).contains("budget"),
                                "{}",
                                String::from_utf8_lossy(&body)
                            );
                            refused.fetch_add(1, Ordering::SeqCst);
                            return;
                        }
                        other => panic!("{other}: {}", String::from_utf8_lossy(&body)),
                    }
                }
            })
        })
        .collect();
    for worker in workers {
        worker.await.expect("a client");
    }
    let in_flight_at_crossing = crossing
        .lock()
        .unwrap()
        .map_or(0, |(_, in_flight)| in_flight);
    let served = served.load(Ordering::SeqCst);
    let db = &fleet.db;
    // The refusals are recorded too (no cost): the served requests are the completed rows.
    let completed = |rows: Vec<usage_layer::store::sea_orm::entity::token_usage::Model>| {
        rows.into_iter()
            .filter(|row| row.outcome == "completed")
            .count()
    };
    eventually(
        Duration::from_secs(60),
        "every served request stored",
        || async {
            let count = completed(rows(db).await);
            (count == served)
                .then_some(())
                .ok_or(format!("{count} of {served}"))
        },
    )
    .await;
    let refusals = refused.load(Ordering::SeqCst);
    eventually(
        Duration::from_secs(60),
        "a row for each refusal too",
        || async {
            let count = rows(db).await.len();
            (count == served + refusals).then_some(()).ok_or(format!(
                "{count} rows, {served} served and {refusals} refused"
            ))
        },
    )
    .await;
    let spent: i64 = rows(db)
        .await
        .iter()
        .map(|row| row.estimated_cost_micros)
        .sum();
    let over = served.saturating_sub(to_cross);
    eprintln!(
        "budget: ${limit} across 3 proxies, {CLIENTS} clients; {per_request} µ$ a request, the \
         limit crossed by request {to_cross}; served {served} ({over} after the crossing, \
         {in_flight_at_crossing} others in flight then, as the clients saw it), spent {spent} µ$, \
         refused {}",
        refused.load(Ordering::SeqCst)
    );
    // The requests in flight when the limit was crossed had passed their check; the
    // others are refused. Each client has one request in flight at a time: at most
    // CLIENTS were in flight.
    assert!(
        over <= CLIENTS,
        "{over} requests served after the crossing; at most {CLIENTS} can have been in flight"
    );
    // Not refused early either, but for one ingest batch's window: between its commit
    // and the deletion of its pending entries, a spend counts twice (on the safe side).
    assert!(
        served + CLIENTS >= to_cross,
        "refused after {served} requests, {to_cross} reach the limit"
    );
    for proxy in proxies {
        assert!(proxy.stop().await.success());
    }
    fleet.db.close().await;
}
