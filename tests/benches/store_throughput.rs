//! Sustained records/s into SQLite and Postgres through `SeaOrmStore`, with all five
//! bucket types maintained — against a baseline measured in the same run: the same
//! records written one request at a time (one transaction each), as a system that writes
//! on the response path does.
//!
//! ```text
//! TEST_DATABASE_URL=postgres://postgres@127.0.0.1:5432/test \
//!   cargo bench -p usage-tests --bench store_throughput
//! ```
//!
//! A second table (Postgres) takes the same records through the fleet's path: published
//! to JetStream by `NatsStore` (each batch acknowledged), fetched by one or two ingesters
//! sharing a consumer and written by `SeaOrmStore`, timed from the first publish to the
//! last batch written; beside it, the direct store path in the same rounds.
//!
//! Rounds are interleaved (batched, one-at-a-time, batched, …) on a fresh database each,
//! and the table gives medians. Under `cargo test` (no `--bench`) it runs one tiny round.
#![allow(clippy::print_stdout, reason = "a benchmark driver prints its table")]

use std::time::{Duration, Instant};

use chrono::{TimeZone, Utc};
use usage_layer::sink::UsageStore;
use usage_layer::store::nats::{IngestConfig, Ingester, NatsConfig, NatsStore};
use usage_layer::{Provider, UsageRecord};
use usage_tests::process::NatsServer;
use usage_tests::{TestDb, caller, record, rows, store, usage};

struct Plan {
    rounds: usize,
    batched_records: usize,
    single_records: usize,
    batch_size: usize,
}

/// A realistic mix: 50 users, both providers, 10 hours of traffic.
fn records(count: usize) -> Vec<UsageRecord> {
    let users: Vec<_> = (0..50).map(|_| caller()).collect();
    let start = Utc.with_ymd_and_hms(2026, 11, 27, 8, 0, 0).unwrap();
    (0..count)
        .map(|i| {
            let provider = if i % 3 == 0 {
                Provider::BEDROCK
            } else {
                Provider::PLAN
            };
            let when =
                start + chrono::Duration::milliseconds((i as i64 * 36_000_000) / count as i64);
            let n = i as u64;
            record(
                provider,
                users[i % users.len()].clone(),
                "claude-sonnet-4-5-20250929",
                usage(2_000 + n % 5_000, 300 + n % 4_000, n % 7 * 1_000, 18_000),
                when,
            )
        })
        .collect()
}

async fn rate(db: &TestDb, records: &[UsageRecord], batch_size: usize) -> f64 {
    let store = store(db);
    let started = Instant::now();
    for batch in records.chunks(batch_size) {
        store.write_batch(batch).await.unwrap();
    }
    records.len() as f64 / started.elapsed().as_secs_f64()
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

async fn fresh(backend: &str) -> Option<TestDb> {
    match backend {
        "sqlite" => Some(TestDb::sqlite().await),
        _ => TestDb::postgres().await,
    }
}

#[tokio::main]
async fn main() {
    let benchmarking = std::env::args().any(|arg| arg == "--bench");
    let plan = if benchmarking {
        Plan {
            rounds: 5,
            batched_records: 20_000,
            single_records: 2_000,
            batch_size: 500,
        }
    } else {
        Plan {
            rounds: 1,
            batched_records: 500,
            single_records: 50,
            batch_size: 100,
        }
    };
    println!(
        "| backend | batched ({} records/batch), records/s | one at a time, records/s | ratio |",
        plan.batch_size
    );
    println!("|---|---:|---:|---:|");
    for backend in ["sqlite", "postgres"] {
        let (mut batched, mut single) = (Vec::new(), Vec::new());
        for _ in 0..plan.rounds {
            let Some(db) = fresh(backend).await else {
                break;
            };
            batched.push(rate(&db, &records(plan.batched_records), plan.batch_size).await);
            db.close().await;
            let Some(db) = fresh(backend).await else {
                break;
            };
            single.push(rate(&db, &records(plan.single_records), 1).await);
            db.close().await;
        }
        if batched.is_empty() || single.is_empty() {
            println!("| {backend} | not measured (no database) | | |");
            continue;
        }
        let (batched, single) = (median(batched), median(single));
        println!(
            "| {backend} | {batched:.0} | {single:.0} | {:.1}× |",
            batched / single
        );
    }
    nats_table(&plan).await;
    // Keep the process from exiting before pools close their connections.
    tokio::time::sleep(Duration::from_millis(10)).await;
}

/// What one round through NATS measured, in records/s.
#[derive(Clone, Copy)]
struct NatsRound {
    direct: f64,
    published: f64,
    through: f64,
}

/// Publishes `records` and ingests them with `ingesters` ingesters into a fresh database.
async fn through_nats(
    records: &[UsageRecord],
    batch_size: usize,
    ingesters: usize,
) -> Option<(f64, f64)> {
    let db = TestDb::postgres().await?;
    let server = NatsServer::start().await;
    let publisher = NatsStore::new(server.client().await, NatsConfig::default());
    publisher.ensure_stream().await.expect("the stream");
    let mut config = IngestConfig::default();
    config.max_batch = batch_size;
    let mut handles = Vec::new();
    let mut tasks = Vec::new();
    for _ in 0..ingesters {
        let ingester = Ingester::new(server.client().await, store(&db), config.clone())
            .await
            .expect("an ingester");
        handles.push(ingester.handle());
        tasks.push(tokio::spawn(ingester.run(std::future::pending())));
    }
    let started = Instant::now();
    for batch in records.chunks(batch_size) {
        publisher.write_batch(batch).await.expect("published");
    }
    let published = records.len() as f64 / started.elapsed().as_secs_f64();
    while handles
        .iter()
        .map(|handle| handle.stats().written)
        .sum::<u64>()
        < records.len() as u64
    {
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let through = records.len() as f64 / started.elapsed().as_secs_f64();
    tasks.iter().for_each(tokio::task::JoinHandle::abort);
    let stored = rows(&db).await.len();
    assert_eq!(stored, records.len(), "one row per record through NATS");
    db.close().await;
    Some((published, through))
}

async fn nats_table(plan: &Plan) {
    println!();
    println!(
        "| Postgres, {} records/batch | records/s (median of {}) | against direct |",
        plan.batch_size, plan.rounds
    );
    println!("|---|---:|---:|");
    let mut rounds: Vec<Vec<NatsRound>> = vec![Vec::new(), Vec::new()];
    for _ in 0..plan.rounds {
        for (ingesters, round) in rounds.iter_mut().enumerate() {
            let records = records(plan.batched_records);
            let Some(db) = fresh("postgres").await else {
                println!("| not measured (no database) | | |");
                return;
            };
            let direct = rate(&db, &records, plan.batch_size).await;
            db.close().await;
            let Some((published, through)) =
                through_nats(&records, plan.batch_size, ingesters + 1).await
            else {
                return;
            };
            round.push(NatsRound {
                direct,
                published,
                through,
            });
        }
    }
    let column =
        |round: &[NatsRound], pick: fn(&NatsRound) -> f64| median(round.iter().map(pick).collect());
    let direct = column(&rounds.concat(), |r| r.direct);
    println!("| direct: `SeaOrmStore` | {direct:.0} | 1.00× |");
    for (ingesters, round) in rounds.iter().enumerate() {
        let through = column(round, |r| r.through);
        let published = column(round, |r| r.published);
        let s = if ingesters == 0 { "" } else { "s" };
        println!(
            "| publish → NATS → {} ingester{s} → Postgres | {through:.0} | {:.2}× |",
            ingesters + 1,
            through / direct
        );
        println!(
            "| … publishing alone (acknowledged), {} ingester{s} reading | {published:.0} | {:.2}× |",
            ingesters + 1,
            published / direct
        );
    }
}
