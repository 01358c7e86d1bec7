//! The console's dashboard on a big database: time to first paint in Chromium and the
//! admin API calls behind it, p50 / p95 — against baselines measured in the same run
//! (the login page's paint, which reads nothing; `GET /admin/session`, an admin call that
//! reads one row).
//!
//! ```text
//! cargo bench -p usage-tests --bench console_dashboard
//! ```
//!
//! The database: 1,000 users, 1,000,000 usage rows spread over a year (2025-12-01 to
//! 2026-12-01, one every 31.5 s; a third of them Bedrock, a tenth of those after a
//! fallback from Plan; about 1 % ended early, 1 in 1,000 unpriced), written through
//! `SeaOrmStore` so every bucket type is maintained (a year of hourly aggregates per user
//! and provider). On SQLite (the server's default; built once into `target/bench-data/` and
//! reused), then on a fresh Postgres database at `TEST_DATABASE_URL` when there is one.
//! Under `cargo test` (no `--bench`) a tiny database and three loads.
#![allow(clippy::print_stdout, reason = "a benchmark driver prints its table")]

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{TimeZone, Utc};
use reference_server::admins::{self, Role};
use reference_server::config::Routing;
use reference_server::standins::plan::PlanReply;
use sea_orm::{Database, DatabaseConnection, EntityTrait, PaginatorTrait};
use serde_json::Value;
use usage_layer::pricing::PriceCatalog;
use usage_layer::sink::UsageStore;
use usage_layer::store::Buckets;
use usage_layer::store::sea_orm::SeaOrmStore;
use usage_layer::store::sea_orm::entity::{token_usage, usage_aggregates};
use usage_layer::{Caller, Fallback, Outcome, Provider};
use usage_tests::proxy::{Proxy, Setup, exchange, fixture};
use usage_tests::{TestDb, record, usage};

const TOKEN: &str = "console-bench-admin-token-0123456789";
const PASSWORD: &str = "console bench password";

struct Plan {
    users: usize,
    rows: usize,
    loads: usize,
}

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Builds (or finds, from an earlier run) the SQLite database of `plan`.
async fn sqlite(plan: &Plan, dir: &Path) -> String {
    std::fs::create_dir_all(dir).unwrap();
    let file = dir.join(format!(
        "console-v2-{}-users-{}-rows.sqlite",
        plan.users, plan.rows
    ));
    let url = format!("sqlite://{}?mode=rwc", file.display());
    let done = file.with_extension("done");
    if done.exists() {
        println!("reusing {}", file.display());
        return url;
    }
    let _ = std::fs::remove_file(&file);
    let db = Database::connect(&url).await.unwrap();
    fill(&db, plan).await;
    db.close().await.unwrap();
    std::fs::write(&done, "").unwrap();
    url
}

/// Migrates `db` and writes `plan`'s users and rows into it.
async fn fill(db: &DatabaseConnection, plan: &Plan) {
    migration::up(db).await.unwrap();
    let mut callers = Vec::with_capacity(plan.users);
    for i in 0..plan.users {
        let user =
            reference_server::users::create(db, &format!("user {i:04}"), None, Routing::PlanFirst)
                .await
                .unwrap();
        callers.push(Caller::user(user).with_access_key(uuid::Uuid::now_v7()));
    }
    let store = SeaOrmStore::new(
        db.clone(),
        Arc::new(PriceCatalog::defaults()),
        Buckets::default(),
    );
    let start = Utc.with_ymd_and_hms(2025, 12, 1, 0, 0, 0).unwrap();
    let year = Duration::from_secs(365 * 24 * 3600);
    let started = Instant::now();
    let mut batch = Vec::with_capacity(1000);
    for i in 0..plan.rows {
        let at =
            start + chrono::Duration::from_std(year.mul_f64(i as f64 / plan.rows as f64)).unwrap();
        let provider = if i % 3 == 0 {
            Provider::BEDROCK
        } else {
            Provider::PLAN
        };
        let n = i as u64;
        // A model without a price now and then (1 in 1,000).
        let model = if i % 1_000 == 11 {
            "claude-mystery-1"
        } else {
            "claude-sonnet-4-5-20250929"
        };
        let mut row = record(
            provider,
            callers[i % plan.users].clone(),
            model,
            usage(2_000 + n % 5_000, 300 + n % 4_000, n % 7 * 1_000, 18_000),
            at,
        );
        // A tenth of Bedrock's requests fell back from Plan; some ended early.
        if i % 30 == 0 {
            row.fallback = Some(Fallback {
                from: Provider::PLAN,
                reason: if i % 60 == 0 {
                    "rate_limited"
                } else {
                    "overloaded"
                }
                .into(),
            });
        }
        if i % 97 == 5 {
            row.outcome = Outcome::ClientDisconnected;
        } else if i % 499 == 7 {
            row.outcome = Outcome::UpstreamError;
        }
        batch.push(row);
        if batch.len() == 1000 {
            store.write_batch(&batch).await.unwrap();
            batch.clear();
        }
    }
    store.write_batch(&batch).await.unwrap();
    println!(
        "built: {} users, {} rows, {} aggregates in {:.0} s",
        plan.users,
        token_usage::Entity::find().count(db).await.unwrap(),
        usage_aggregates::Entity::find().count(db).await.unwrap(),
        started.elapsed().as_secs_f64()
    );
}

fn percentile(values: &[f64], p: f64) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let rank = ((p * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

/// Milliseconds of `samples` calls of `GET path` with the bearer token.
async fn time_calls(proxy: &Proxy, path: &str, samples: usize) -> Vec<f64> {
    let url = format!("{}{path}", proxy.origin());
    let auth = format!("Bearer {TOKEN}");
    let mut times = Vec::with_capacity(samples);
    for _ in 0..=samples {
        let started = Instant::now();
        let (status, _, body) = exchange("GET", &url, &[("authorization", &auth)], "").await;
        assert!(
            status.is_success(),
            "{path}: {status} {}",
            String::from_utf8_lossy(&body)
        );
        times.push(started.elapsed().as_secs_f64() * 1000.0);
    }
    times.remove(0); // the first warms the page cache
    times
}

/// The admin API calls the dashboard makes for `range` (see `console::pages::dashboard`).
fn dashboard_calls(range: &str) -> Vec<String> {
    let mut calls = vec!["/admin/users".to_owned()];
    for provider in ["plan", "bedrock"] {
        calls.push(format!("/admin/usage?{range}&provider={provider}"));
        calls.push(format!(
            "/admin/usage/top-users?{range}&provider={provider}&limit=1000"
        ));
        calls.push(format!(
            "/admin/usage/top-users/series?{range}&provider={provider}&limit=5"
        ));
    }
    calls.push(format!("/admin/usage/outcomes?{range}"));
    calls.push("/health".to_owned());
    calls
}

#[tokio::main]
async fn main() {
    let benchmarking = std::env::args().any(|arg| arg == "--bench");
    let plan = if benchmarking {
        Plan {
            users: 1_000,
            rows: 1_000_000,
            loads: 20,
        }
    } else {
        Plan {
            users: 20,
            rows: 2_000,
            loads: 3,
        }
    };
    let url = sqlite(&plan, &root().join("target/bench-data")).await;
    println!("\n### SQLite");
    measure(&plan, &url).await;
    if let Some(db) = TestDb::postgres_unmigrated().await {
        fill(&db.db, &plan).await;
        // As autovacuum leaves a table after a million inserts: statistics and the
        // visibility map (which index-only scans need) up to date.
        // (One statement per call: VACUUM refuses to run inside a transaction block.)
        for table in ["token_usage", "usage_aggregates"] {
            sea_orm::ConnectionTrait::execute_unprepared(
                &db.db,
                &format!("VACUUM ANALYZE {table}"),
            )
            .await
            .unwrap();
        }
        println!("\n### Postgres");
        measure(&plan, &db.url).await;
        db.close().await;
    }
}

/// Runs the server on `url` and prints the table.
async fn measure(plan: &Plan, url: &str) {
    let url = url.to_owned();
    let proxy = Proxy::start(
        PlanReply::Stream(fixture("basic_response.txt")),
        Setup {
            database_url: Some(url.clone()),
            extra_args: vec![format!("--admin-token={TOKEN}")],
            ..Setup::default()
        },
    )
    .await;
    let db: DatabaseConnection = Database::connect(&url).await.unwrap();
    admins::set_password(&db, "bench", Role::Admin, PASSWORD)
        .await
        .unwrap();

    // The dashboard's ranges at the database's "now" would be empty (the data ends on
    // 2026-12-01); the dates name the data's last week, month and the whole year.
    let ranges = [
        (
            "week (7 day buckets)",
            "range=custom&start_date=2026-11-24&end_date=2026-11-30",
            "start_date=2026-11-24&end_date=2026-11-30&bucket_type=day",
        ),
        (
            "month (30 day buckets)",
            "range=custom&start_date=2026-11-01&end_date=2026-11-30",
            "start_date=2026-11-01&end_date=2026-11-30&bucket_type=day",
        ),
        (
            "year (53 week buckets)",
            "range=custom&start_date=2025-12-01&end_date=2026-11-30",
            "start_date=2025-12-01&end_date=2026-11-30&bucket_type=week",
        ),
    ];
    let mut pages = vec!["/console/login".to_owned()];
    pages.extend(
        ranges
            .iter()
            .map(|(_, page, _)| format!("/console/?{page}")),
    );
    let output = tokio::process::Command::new("node")
        .arg(root().join("tests/console/paint.mjs"))
        .current_dir(root().join("tests/console"))
        .env("CONSOLE_ORIGIN", proxy.origin())
        .env("ADMIN_NAME", "bench")
        .env("ADMIN_PASSWORD", PASSWORD)
        .env("PAGES", pages.join(","))
        .env("LOADS", plan.loads.to_string())
        .output()
        .await
        .expect("node runs");
    assert!(
        output.status.success(),
        "paint.mjs: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let paints: Value = serde_json::from_slice(&output.stdout).unwrap();
    let series = |path: &str, field: &str| -> Vec<f64> {
        paints[path]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s[field].as_f64().unwrap_or(f64::NAN))
            .collect()
    };

    let baseline_paint = series("/console/login", "fcp");
    let baseline_call = time_calls(&proxy, "/admin/session", plan.loads).await;
    println!("\n| page or call | p50 ms | p95 ms | p50 ÷ baseline |");
    println!("|---|---:|---:|---:|");
    println!(
        "| baseline: login page, first contentful paint | {:.1} | {:.1} | 1.0× |",
        percentile(&baseline_paint, 0.5),
        percentile(&baseline_paint, 0.95)
    );
    println!(
        "| baseline: `GET /admin/session` | {:.1} | {:.1} | 1.0× |",
        percentile(&baseline_call, 0.5),
        percentile(&baseline_call, 0.95)
    );
    for (name, page, api) in ranges {
        let path = format!("/console/?{page}");
        let fcp = series(&path, "fcp");
        let response = series(&path, "response_end");
        println!(
            "| **dashboard, {name}: first contentful paint** | **{:.1}** | **{:.1}** | {:.1}× |",
            percentile(&fcp, 0.5),
            percentile(&fcp, 0.95),
            percentile(&fcp, 0.5) / percentile(&baseline_paint, 0.5)
        );
        println!(
            "| dashboard, {name}: HTML received (response end) | {:.1} | {:.1} | |",
            percentile(&response, 0.5),
            percentile(&response, 0.95)
        );
        let mut sum_p50 = 0.0;
        for call in dashboard_calls(api) {
            let times = time_calls(&proxy, &call, plan.loads).await;
            sum_p50 += percentile(&times, 0.5);
            let provider = ["plan", "bedrock"]
                .into_iter()
                .find(|p| call.contains(&format!("provider={p}")))
                .map_or_else(String::new, |p| format!(" ({p})"));
            println!(
                "| &nbsp;&nbsp;`{}`{provider} | {:.1} | {:.1} | {:.1}× |",
                call.split('?').next().unwrap(),
                percentile(&times, 0.5),
                percentile(&times, 0.95),
                percentile(&times, 0.5) / percentile(&baseline_call, 0.5)
            );
        }
        println!("| &nbsp;&nbsp;the calls' p50s added up | {sum_p50:.1} | | |");
    }
    drop(proxy);
}
