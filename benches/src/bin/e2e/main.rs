//! End to end on loopback: a stand-in upstream streams the small-delta corpus event by
//! event → a minimal hyper proxy in three variants → a load generator; the proxy's CPU
//! time per stream, streams/s, stream time and time to first byte, per variant.
//!
//! ```text
//! cargo run --profile bench -p usage-benches --bin e2e -- --rounds 5 --streams 1000
//! ```
//!
//! The driver pins itself and the upstream to `--load-cpu` and runs each proxy as a
//! child process pinned to `--proxy-cpu` (with `taskset`), a fresh process per variant
//! and round; variants are interleaved, their order rotating from round to round. The
//! proxy's CPU time is read from `/proc/PID/task/*/schedstat` (nanoseconds) before and
//! after each round's streams, once its writer has flushed, so the store's work is
//! counted. `scripts/bench-e2e.sh` runs it and prints the table for `BENCHMARKS.md`.
//!
//! Variants: `plain` (forwarding only), `noop` (+ `UsageLayer` with a no-op sink),
//! `store` (+ `UsageLayer` with the batching writer and the sea-orm store, on a fresh
//! Postgres database at `--database-url` that the driver creates, migrates and drops).

mod load;
mod servers;

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail, ensure};
use clap::{Parser, Subcommand};
use sea_orm::{ConnectionTrait, EntityTrait, PaginatorTrait};
use usage_benches::corpus::{self, SEED};
use usage_layer::store::sea_orm::entity::token_usage;

use crate::load::Timing;
use crate::servers::Variant;

#[derive(Debug, Parser)]
#[command(about = "End-to-end proxy benchmark on loopback")]
struct Cli {
    #[command(subcommand)]
    role: Option<Role>,
    #[command(flatten)]
    drive: Drive,
}

#[derive(Debug, Subcommand)]
enum Role {
    /// Serve the stand-in upstream (started by the driver).
    Upstream,
    /// Serve the proxy (started by the driver).
    Proxy {
        #[arg(long, value_enum)]
        variant: Variant,
        #[arg(long)]
        upstream: SocketAddr,
        #[arg(long)]
        database_url: Option<String>,
    },
}

#[derive(Debug, clap::Args)]
struct Drive {
    /// Interleaved rounds; every variant runs once per round.
    #[arg(long, default_value_t = 5)]
    rounds: usize,
    /// Streams per variant and round (measured).
    #[arg(long, default_value_t = 1000)]
    streams: usize,
    /// Streams per variant and round before measuring (connections, pool, caches).
    #[arg(long, default_value_t = 50)]
    warmup: usize,
    /// Concurrent keep-alive connections of the load generator.
    #[arg(long, default_value_t = 1)]
    concurrency: usize,
    /// Seconds a variant's round may take at most; the streams finished by then count.
    #[arg(long, default_value_t = 60)]
    max_seconds: u64,
    /// The core of the proxy.
    #[arg(long, default_value_t = 0)]
    proxy_cpu: usize,
    /// The core of the driver, load generator and upstream.
    #[arg(long, default_value_t = 1)]
    load_cpu: usize,
    /// The variants, in the first round's order.
    #[arg(
        long,
        value_enum,
        value_delimiter = ',',
        default_value = "plain,noop,store"
    )]
    variants: Vec<Variant>,
    /// The Postgres server for the `store` variant (a fresh database is made there).
    #[arg(
        long,
        env = "TEST_DATABASE_URL",
        default_value = "postgres://postgres@127.0.0.1:5432/test"
    )]
    database_url: String,
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.role {
        Some(Role::Upstream) => current_thread()?.block_on(servers::upstream()),
        Some(Role::Proxy {
            variant,
            upstream,
            database_url,
        }) => current_thread()?.block_on(servers::proxy(variant, upstream, database_url)),
        None => drive(&cli.drive),
    }
}

/// Every process of the run is one thread (one core each): a current-thread runtime.
fn current_thread() -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
}

/// A child server; killed when dropped, so no run leaves one behind.
#[derive(Debug)]
struct Server {
    child: Child,
    addr: SocketAddr,
}

impl Server {
    /// Starts this program in `role_args` on `cpu`, and waits for its address.
    fn start(cpu: usize, role_args: &[String]) -> anyhow::Result<Self> {
        let exe = std::env::current_exe()?;
        let mut child = Command::new("taskset")
            .arg("-c")
            .arg(cpu.to_string())
            .arg(exe)
            .args(role_args)
            .stdout(Stdio::piped())
            .spawn()
            .context("start a server under taskset")?;
        let stdout = child.stdout.take().context("the server's stdout")?;
        let mut line = String::new();
        BufReader::new(stdout).read_line(&mut line)?;
        let addr = line
            .strip_prefix("listening ")
            .and_then(|addr| addr.trim().parse().ok());
        let Some(addr) = addr else {
            let _ = child.kill();
            bail!("the server said {line:?}, not its address");
        };
        Ok(Server { child, addr })
    }

    /// CPU time of all the server's threads so far (`/proc/PID/task/*/schedstat`).
    fn cpu_time(&self) -> anyhow::Result<Duration> {
        let mut nanos: u64 = 0;
        for task in std::fs::read_dir(format!("/proc/{}/task", self.child.id()))? {
            let stat = std::fs::read_to_string(task?.path().join("schedstat"))?;
            let on_cpu = stat
                .split_whitespace()
                .next()
                .context("an empty schedstat")?;
            nanos += on_cpu.parse::<u64>()?;
        }
        Ok(Duration::from_nanos(nanos))
    }

    /// User + system CPU time from `/proc/PID/stat` (10 ms ticks; also counts threads
    /// that have ended): the cross-check of [`cpu_time`](Self::cpu_time).
    fn cpu_ticks(&self) -> anyhow::Result<u64> {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.child.id()))?;
        let fields: Vec<&str> = stat
            .rsplit_once(')')
            .context("a /proc stat line")?
            .1
            .split_whitespace()
            .collect();
        // utime and stime: fields 14 and 15 of the line, 12 and 13 after the name.
        Ok(fields[11].parse::<u64>()? + fields[12].parse::<u64>()?)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One variant's measured round.
#[derive(Debug)]
struct Round {
    variant: Variant,
    streams: usize,
    cpu: Duration,
    ticks: u64,
    elapsed: Duration,
    timings: Vec<Timing>,
}

impl Round {
    fn cpu_per_1000(&self) -> f64 {
        self.cpu.as_secs_f64() * 1e3 * 1000.0 / self.streams as f64
    }

    /// Body frames per stream at the client, on average.
    fn frames_per_stream(&self) -> f64 {
        self.timings.iter().map(|t| t.frames).sum::<usize>() as f64 / self.timings.len() as f64
    }

    fn streams_per_second(&self) -> f64 {
        self.streams as f64 / self.elapsed.as_secs_f64()
    }

    /// The `q` quantile of stream time and of time to first byte, in µs.
    fn quantiles(&self, q: f64) -> (f64, f64) {
        let at = |mut values: Vec<Duration>| {
            values.sort();
            let i = ((values.len() as f64 * q) as usize).min(values.len() - 1);
            values[i].as_secs_f64() * 1e6
        };
        (
            at(self.timings.iter().map(|t| t.total).collect()),
            at(self.timings.iter().map(|t| t.ttfb).collect()),
        )
    }
}

fn drive(args: &Drive) -> anyhow::Result<()> {
    ensure!(args.rounds > 0 && args.streams > 0 && args.concurrency > 0);
    // Pin the driver (load generator) before its runtime makes any thread.
    let pinned = Command::new("taskset")
        .args([
            "-cp",
            &args.load_cpu.to_string(),
            &std::process::id().to_string(),
        ])
        .stdout(Stdio::null())
        .status()?;
    ensure!(pinned.success(), "taskset could not pin the driver");
    let runtime = current_thread()?;
    let database = if args.variants.contains(&Variant::Store) {
        Some(runtime.block_on(BenchDb::create(&args.database_url))?)
    } else {
        None
    };
    let result = run_rounds(args, &runtime, database.as_ref());
    if let Some(database) = database {
        runtime.block_on(database.drop())?;
    }
    let rounds = result?;
    report(args, &rounds);
    Ok(())
}

fn run_rounds(
    args: &Drive,
    runtime: &tokio::runtime::Runtime,
    database: Option<&BenchDb>,
) -> anyhow::Result<Vec<Round>> {
    let expect_bytes = corpus::small_deltas(SEED).len();
    let upstream = Server::start(args.load_cpu, &["upstream".to_owned()])?;
    let mut rounds = Vec::new();
    let mut stored_expected = 0;
    for round in 0..args.rounds {
        for i in 0..args.variants.len() {
            let variant = args.variants[(i + round) % args.variants.len()];
            let mut role = vec![
                "proxy".to_owned(),
                "--variant".to_owned(),
                format!("{variant:?}").to_lowercase(),
                "--upstream".to_owned(),
                upstream.addr.to_string(),
            ];
            if let (Variant::Store, Some(database)) = (variant, database) {
                role.extend(["--database-url".to_owned(), database.url.clone()]);
            }
            let proxy = Server::start(args.proxy_cpu, &role)?;
            let deadline = Instant::now() + Duration::from_secs(args.max_seconds);
            let (warm, measured) = runtime.block_on(async {
                let warm = load::run(
                    proxy.addr,
                    args.warmup,
                    args.concurrency,
                    deadline,
                    expect_bytes,
                )
                .await?;
                load::flush(proxy.addr).await?;
                let (cpu, ticks) = (proxy.cpu_time()?, proxy.cpu_ticks()?);
                let started = Instant::now();
                let timings = load::run(
                    proxy.addr,
                    args.streams,
                    args.concurrency,
                    deadline,
                    expect_bytes,
                )
                .await?;
                let elapsed = started.elapsed();
                load::flush(proxy.addr).await?;
                let round = Round {
                    variant,
                    streams: timings.len(),
                    cpu: proxy.cpu_time()? - cpu,
                    ticks: proxy.cpu_ticks()? - ticks,
                    elapsed,
                    timings,
                };
                anyhow::Ok((warm.len(), round))
            })?;
            ensure!(
                measured.streams > 0,
                "no stream finished in {variant:?} before the deadline"
            );
            if variant == Variant::Store {
                stored_expected += warm + measured.streams;
            }
            let (p50, ttfb50) = measured.quantiles(0.5);
            eprintln!(
                "round {}/{} {variant:?}: {} streams, {:.1} ms CPU/1000 streams (stat: {} ticks), {:.1} streams/s, p50 {:.0} µs, TTFB p50 {:.0} µs, {:.0} frames/stream",
                round + 1,
                args.rounds,
                measured.streams,
                measured.cpu_per_1000(),
                measured.ticks,
                measured.streams_per_second(),
                p50,
                ttfb50,
                measured.frames_per_stream(),
            );
            rounds.push(measured);
        }
    }
    if let Some(database) = database {
        let stored = runtime.block_on(database.count())?;
        eprintln!(
            "store: {stored} token_usage rows, {stored_expected} streams through the store variant"
        );
        ensure!(
            stored == stored_expected as u64,
            "the store lost records: {stored} rows for {stored_expected} streams"
        );
    }
    Ok(rounds)
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    let n = values.len();
    if n % 2 == 1 {
        values[n / 2]
    } else {
        (values[n / 2 - 1] + values[n / 2]) / 2.0
    }
}

/// Prints the Markdown table: medians over rounds, and each variant's CPU and TTFB
/// against the `plain` round run next to it (median of the per-round differences).
#[allow(clippy::print_stdout, reason = "the table is the program's output")]
fn report(args: &Drive, rounds: &[Round]) {
    println!(
        "{} rounds × {} streams per variant (+{} warm-up), concurrency {}, proxy on CPU {}, load + upstream on CPU {}; medians over rounds.\n",
        args.rounds, args.streams, args.warmup, args.concurrency, args.proxy_cpu, args.load_cpu
    );
    println!(
        "| variant | proxy CPU per 1,000 streams | vs plain (CPU) | streams/s | stream p50 | stream p99 | TTFB p50 | TTFB p99 | TTFB p50 − plain | frames per stream at the client |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    let plain: Vec<&Round> = rounds
        .iter()
        .filter(|r| r.variant == Variant::Plain)
        .collect();
    for &variant in &args.variants {
        let mine: Vec<&Round> = rounds.iter().filter(|r| r.variant == variant).collect();
        let of = |f: &dyn Fn(&Round) -> f64| median(mine.iter().map(|r| f(r)).collect());
        let versus = |f: &dyn Fn(&Round, &Round) -> f64| {
            if plain.len() == mine.len() {
                Some(median(
                    mine.iter().zip(&plain).map(|(m, p)| f(m, p)).collect(),
                ))
            } else {
                None
            }
        };
        let cpu_ratio = versus(&|m, p| m.cpu_per_1000() / p.cpu_per_1000() - 1.0)
            .map_or("–".to_owned(), |r| format!("{:+.2} %", r * 100.0));
        let ttfb_delta = versus(&|m, p| m.quantiles(0.5).1 - p.quantiles(0.5).1)
            .map_or("–".to_owned(), |d| format!("{d:+.0} µs"));
        println!(
            "| {variant:?} | {:.1} ms | {cpu_ratio} | {:.1} | {:.0} µs | {:.0} µs | {:.0} µs | {:.0} µs | {ttfb_delta} | {:.0} |",
            of(&Round::cpu_per_1000),
            of(&Round::streams_per_second),
            of(&|r| r.quantiles(0.5).0),
            of(&|r| r.quantiles(0.99).0),
            of(&|r| r.quantiles(0.5).1),
            of(&|r| r.quantiles(0.99).1),
            of(&Round::frames_per_stream),
        );
    }
}

/// A fresh, migrated Postgres database for the `store` variant.
#[derive(Debug)]
struct BenchDb {
    admin: sea_orm::DatabaseConnection,
    name: String,
    url: String,
}

impl BenchDb {
    async fn create(admin_url: &str) -> anyhow::Result<Self> {
        use migration::MigratorTrait;

        let admin = sea_orm::Database::connect(admin_url)
            .await
            .with_context(|| "connect to Postgres (set TEST_DATABASE_URL or --database-url)")?;
        let name = format!("usage_bench_{}", std::process::id());
        admin
            .execute_unprepared(&format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"))
            .await?;
        admin
            .execute_unprepared(&format!("CREATE DATABASE \"{name}\""))
            .await?;
        let mut url = url::Url::parse(admin_url)?;
        url.set_path(&name);
        let db = sea_orm::Database::connect(url.as_str()).await?;
        migration::Migrator::up(&db, None).await?;
        db.close().await?;
        Ok(BenchDb {
            admin,
            name,
            url: url.to_string(),
        })
    }

    async fn count(&self) -> anyhow::Result<u64> {
        let db = sea_orm::Database::connect(&self.url).await?;
        let rows = token_usage::Entity::find().count(&db).await?;
        db.close().await?;
        Ok(rows)
    }

    async fn drop(self) -> anyhow::Result<()> {
        self.admin
            .execute_unprepared(&format!(
                "DROP DATABASE IF EXISTS \"{}\" WITH (FORCE)",
                self.name
            ))
            .await?;
        Ok(())
    }
}
