//! End to end on loopback: a stand-in upstream streams the small-delta corpus event by
//! event → a minimal hyper proxy in three variants → a load generator; the proxy's CPU
//! time per stream, streams/s, stream time and time to first byte, per variant.
//!
//! ```text
//! cargo run --profile bench -p usage-benches --bin e2e -- --rounds 5 --streams 1000
//! ```
//!
//! The driver pins itself and the upstream to `--load-cpu` and runs the proxies as child
//! processes pinned to `--proxy-cpu` (with `taskset`): every round starts a fresh process
//! per variant, all at once, and interleaves the variants stream by stream (one stream
//! through each in turn, in an order shuffled every cycle), so that whatever else the machine does
//! during a round falls on every variant alike. A proxy's CPU time is read from
//! `/proc/PID/task/*/schedstat` (nanoseconds) before and after the round's streams, once
//! its writer has flushed, so the store's work is counted. `scripts/bench-e2e.sh` runs it
//! and prints the table for `BENCHMARKS.md`.
//!
//! Variants: `plain` (forwarding only), `control` (the plain proxy again: an A/A control
//! whose "vs plain" shows the comparison's noise and bias), `noop` (+ `UsageLayer` with a no-op sink),
//! `writer` (+ `UsageLayer` with the batching writer and a store that drops the batches),
//! `store` (+ `UsageLayer` with the batching writer and the sea-orm store, on a fresh
//! Postgres database at `--database-url` that the driver creates, migrates and drops),
//! `nats` (+ `UsageLayer` with the batching writer and the JetStream store, publishing to
//! a `nats-server` of the driver's own, `--nats-server`, on a free port).
//! Every proxy runs a housekeeping timer, every 30 s unless `--housekeeping-ms` says
//! otherwise (0: none; see `servers::proxy` for why it matters).

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
use crate::servers::{Target, Variant};

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
        #[arg(long)]
        nats_url: Option<String>,
        /// The housekeeping timer's period in ms; 0: none (see `servers::proxy`).
        #[arg(long, default_value_t = HOUSEKEEPING_MS)]
        housekeeping_ms: u64,
        /// Run the batching writer on a thread of its own.
        #[arg(long)]
        writer_thread: bool,
    },
}

#[derive(Debug, clap::Args)]
struct Drive {
    /// Interleaved rounds; every variant runs once per round.
    #[arg(long, default_value_t = 5)]
    rounds: usize,
    /// Streams per variant and round (measured), interleaved with the other variants'.
    #[arg(long, default_value_t = 1000)]
    streams: usize,
    /// Streams per variant and round before measuring (connections, pool, caches).
    #[arg(long, default_value_t = 50)]
    warmup: usize,
    /// Concurrent keep-alive connections of the load generator.
    #[arg(long, default_value_t = 1)]
    concurrency: usize,
    /// Seconds a round's measured streams may take at most; the cycles finished by then count.
    #[arg(long, default_value_t = 120)]
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
        default_value = "plain,control,noop,writer,store,nats"
    )]
    variants: Vec<Variant>,
    /// The period of every proxy's housekeeping timer, in ms; 0: none (see `servers::proxy`).
    #[arg(long, default_value_t = HOUSEKEEPING_MS)]
    housekeeping_ms: u64,
    /// Run the batching writer of the `writer` and `store` proxies on a thread of its own
    /// (a current-thread runtime there), so that its flush timer is not on the runtime
    /// that serves the streams; its CPU time still counts (every thread of the process).
    #[arg(long)]
    writer_thread: bool,
    /// The Postgres server for the `store` variant (a fresh database is made there).
    #[arg(
        long,
        env = "TEST_DATABASE_URL",
        default_value = "postgres://postgres@127.0.0.1:5432/test"
    )]
    database_url: String,
    /// The `nats-server` program for the `nats` variant (started on a free port).
    #[arg(long, env = "NATS_SERVER", default_value = "/usr/sbin/nats-server")]
    nats_server: String,
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.role {
        Some(Role::Upstream) => current_thread()?.block_on(servers::upstream()),
        Some(Role::Proxy {
            variant,
            upstream,
            database_url,
            nats_url,
            housekeeping_ms,
            writer_thread,
        }) => current_thread()?.block_on(servers::proxy(
            variant,
            upstream,
            match variant {
                Variant::Store => Target::Postgres(
                    database_url.context("the store variant needs --database-url")?,
                ),
                Variant::Nats => {
                    Target::Nats(nats_url.context("the nats variant needs --nats-url")?)
                }
                _ => Target::Discard,
            },
            (housekeeping_ms > 0).then(|| Duration::from_millis(housekeeping_ms)),
            writer_thread,
        )),
        None => drive(&cli.drive),
    }
}

/// The housekeeping timer's default period: the reference server's spool report.
const HOUSEKEEPING_MS: u64 = 30_000;

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

    /// What the server's threads have used so far.
    fn counters(&self) -> anyhow::Result<Counters> {
        let pid = self.child.id();
        let mut counters = Counters::default();
        // schedstat: nanoseconds on a CPU, nanoseconds waiting to run, times run.
        for task in std::fs::read_dir(format!("/proc/{pid}/task"))? {
            let stat = std::fs::read_to_string(task?.path().join("schedstat"))?;
            let mut fields = stat.split_whitespace();
            let mut next = || -> anyhow::Result<u64> {
                Ok(fields.next().context("a short schedstat")?.parse()?)
            };
            counters.cpu_ns += next()?;
            next()?;
            counters.runs += next()?;
        }
        // utime and stime: fields 14 and 15 of the line, 12 and 13 after the name.
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
        let fields: Vec<&str> = stat
            .rsplit_once(')')
            .context("a /proc stat line")?
            .1
            .split_whitespace()
            .collect();
        counters.ticks = fields[11].parse::<u64>()? + fields[12].parse::<u64>()?;
        for line in std::fs::read_to_string(format!("/proc/{pid}/io"))?.lines() {
            if let Some(("syscw", n)) = line.split_once(": ") {
                counters.writes = n.trim().parse()?;
            }
        }
        Ok(counters)
    }
}

/// Cumulative counters of a server process, from `/proc`.
#[derive(Clone, Copy, Debug, Default)]
struct Counters {
    /// CPU time of all threads (`schedstat`, ns).
    cpu_ns: u64,
    /// User + system time from `stat` (10 ms ticks; also counts threads that have
    /// ended): the cross-check of `cpu_ns`.
    ticks: u64,
    /// Times a thread was put on a CPU (`schedstat`): wake-ups, roughly.
    runs: u64,
    /// Write-like system calls (`io`: `syscw`; `write` and `writev`, with which the
    /// proxy answers: `syscr` is left out because reads from a socket by `recv` are not
    /// counted there).
    writes: u64,
}

impl std::ops::Sub for Counters {
    type Output = Counters;

    fn sub(self, earlier: Counters) -> Counters {
        Counters {
            cpu_ns: self.cpu_ns - earlier.cpu_ns,
            ticks: self.ticks - earlier.ticks,
            runs: self.runs - earlier.runs,
            writes: self.writes - earlier.writes,
        }
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
    used: Counters,
    timings: Vec<Timing>,
    /// How long the round's measured streams took (all variants', interleaved).
    elapsed: Duration,
}

impl Round {
    fn cpu_per_1000(&self) -> f64 {
        self.used.cpu_ns as f64 / 1e6 * 1000.0 / self.streams as f64
    }

    /// Streams per second through this proxy, as measured: the variants take turns, so
    /// this is about the single-stream rate over the number of variants.
    fn streams_per_second(&self) -> f64 {
        self.streams as f64 / self.elapsed.as_secs_f64()
    }

    /// Streams per second of proxy CPU time: what one core kept busy would serve at this
    /// cost per stream (derived, not measured at saturation).
    fn streams_per_cpu_second(&self) -> f64 {
        self.streams as f64 / (self.used.cpu_ns as f64 / 1e9)
    }

    fn writes_per_stream(&self) -> f64 {
        self.used.writes as f64 / self.streams as f64
    }

    fn runs_per_stream(&self) -> f64 {
        self.used.runs as f64 / self.streams as f64
    }

    /// Body frames per stream at the client, on average.
    fn frames_per_stream(&self) -> f64 {
        self.timings.iter().map(|t| t.frames).sum::<usize>() as f64 / self.timings.len() as f64
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
    let nats = if args.variants.contains(&Variant::Nats) {
        Some(runtime.block_on(BenchNats::start(&args.nats_server))?)
    } else {
        None
    };
    let result = run_rounds(args, &runtime, database.as_ref(), nats.as_ref());
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
    nats: Option<&BenchNats>,
) -> anyhow::Result<Vec<Round>> {
    let expect_bytes = corpus::small_deltas(SEED).len();
    let upstream = Server::start(args.load_cpu, &["upstream".to_owned()])?;
    let mut rounds = Vec::new();
    let mut stored_expected = 0;
    let mut published_expected = 0;
    let n = args.variants.len();
    for round in 0..args.rounds {
        let order: Vec<Variant> = (0..n).map(|i| args.variants[(i + round) % n]).collect();
        let proxies = order
            .iter()
            .map(|&variant| {
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
                if let (Variant::Nats, Some(nats)) = (variant, nats) {
                    role.extend(["--nats-url".to_owned(), nats.url()]);
                }
                role.push(format!("--housekeeping-ms={}", args.housekeeping_ms));
                if args.writer_thread {
                    role.push("--writer-thread".to_owned());
                }
                Server::start(args.proxy_cpu, &role)
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        let addrs: Vec<SocketAddr> = proxies.iter().map(|proxy| proxy.addr).collect();
        let (warm, measured, elapsed) = runtime.block_on(async {
            let deadline = Instant::now() + Duration::from_secs(args.max_seconds);
            let warm = load::run(
                &addrs,
                args.warmup,
                args.concurrency,
                deadline,
                expect_bytes,
            )
            .await?;
            let before = flushed_counters(&proxies).await?;
            let deadline = Instant::now() + Duration::from_secs(args.max_seconds);
            let started = Instant::now();
            let timings = load::run(
                &addrs,
                args.streams,
                args.concurrency,
                deadline,
                expect_bytes,
            )
            .await?;
            let elapsed = started.elapsed();
            let after = flushed_counters(&proxies).await?;
            let measured: Vec<Round> = order
                .iter()
                .zip(timings)
                .zip(after.into_iter().zip(before))
                .map(|((&variant, timings), (after, before))| Round {
                    variant,
                    streams: timings.len(),
                    used: after - before,
                    timings,
                    elapsed,
                })
                .collect();
            anyhow::Ok((warm[0].len(), measured, elapsed))
        })?;
        let streams = measured[0].streams;
        ensure!(streams > 0, "no stream finished before the deadline");
        eprintln!(
            "round {}/{}: {streams} streams per variant in {:.1} s",
            round + 1,
            args.rounds,
            elapsed.as_secs_f64()
        );
        for round in measured {
            match round.variant {
                Variant::Store => stored_expected += warm + round.streams,
                Variant::Nats => published_expected += warm + round.streams,
                _ => {}
            }
            let (p50, ttfb50) = round.quantiles(0.5);
            eprintln!(
                "  {:?}: {:.1} ms CPU/1000 streams (stat: {} ticks), {:.0} writes and {:.0} runs per stream, p50 {:.0} µs, TTFB p50 {:.0} µs, {:.0} frames/stream",
                round.variant,
                round.cpu_per_1000(),
                round.used.ticks,
                round.writes_per_stream(),
                round.runs_per_stream(),
                p50,
                ttfb50,
                round.frames_per_stream(),
            );
            rounds.push(round);
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
    if let Some(nats) = nats {
        let published = runtime.block_on(nats.messages())?;
        eprintln!(
            "nats: {published} messages in the stream, {published_expected} streams through the nats variant"
        );
        ensure!(
            published == published_expected as u64,
            "the JetStream store lost records: {published} messages for {published_expected} streams"
        );
    }
    Ok(rounds)
}

/// Flushes every proxy's writer, then reads every proxy's counters.
async fn flushed_counters(proxies: &[Server]) -> anyhow::Result<Vec<Counters>> {
    for proxy in proxies {
        load::flush(proxy.addr).await?;
    }
    proxies.iter().map(Server::counters).collect()
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

/// Which order statistics bound the median of `n` values, and how surely: how many of n
/// values fall below the median is Binomial(n, ½), so the k-th smallest and the k-th
/// largest value bound it with probability 1 − 2·P(X < k). Returns the largest k whose
/// coverage is still ≥ 95 %, and that coverage (15 values: the 4th and 12th, 96.5 %;
/// under 6 values no k reaches 95 %, and k = 1 gives the range, with its own lower
/// coverage).
fn median_rank(n: usize) -> (usize, f64) {
    // P(X <= j) for X ~ Binomial(n, 1/2).
    let below = |j: usize| -> f64 {
        let (mut choose, mut sum) = (1.0, 1.0);
        for i in 1..=j {
            choose = choose * (n + 1 - i) as f64 / i as f64;
            sum += choose;
        }
        sum / 2f64.powi(n as i32)
    };
    let mut k = 1;
    while 2 * (k + 1) <= n + 1 && below(k) <= 0.025 {
        k += 1;
    }
    (k, 1.0 - 2.0 * below(k - 1))
}

/// The distribution-free confidence interval for the median of `values` (see
/// [`median_rank`]), and its coverage.
fn median_interval(values: &[f64]) -> (f64, f64, f64) {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let (k, coverage) = median_rank(sorted.len());
    (sorted[k - 1], sorted[sorted.len() - k], coverage)
}

/// Prints the Markdown table: medians over rounds, and each variant's CPU and TTFB
/// against the `plain` proxy of the same round (median, and range, of the per-round
/// comparisons).
#[allow(clippy::print_stdout, reason = "the table is the program's output")]
fn report(args: &Drive, rounds: &[Round]) {
    println!(
        "{} rounds × {} streams per variant (+{} warm-up), variants interleaved stream by stream, concurrency {}, proxies on CPU {}, load + upstream on CPU {}, housekeeping timer {}, writer on {}; medians over rounds.\n",
        args.rounds,
        args.streams,
        args.warmup,
        args.concurrency,
        args.proxy_cpu,
        args.load_cpu,
        match args.housekeeping_ms {
            0 => "none".to_owned(),
            ms => format!("every {ms} ms"),
        },
        if args.writer_thread {
            "a thread of its own"
        } else {
            "the proxy's runtime"
        },
    );
    let (_, coverage) = median_rank(args.rounds);
    println!(
        "\"vs plain\": the median over rounds of each round's ratio to the plain proxy of the same round; \"interval\": its distribution-free {:.1} % confidence interval (order statistics of the rounds).\n",
        coverage * 100.0
    );
    println!(
        "| variant | proxy CPU per 1,000 streams | vs plain (CPU) | interval | per-round range | streams/s (measured) | streams per CPU-second | write syscalls per stream | runs per stream | stream p50 | stream p99 | TTFB p50 | TTFB p99 | TTFB p50 − plain | frames per stream at the client |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    let plain: Vec<&Round> = rounds
        .iter()
        .filter(|r| r.variant == Variant::Plain)
        .collect();
    for &variant in &args.variants {
        let mine: Vec<&Round> = rounds.iter().filter(|r| r.variant == variant).collect();
        let of = |f: &dyn Fn(&Round) -> f64| median(mine.iter().map(|r| f(r)).collect());
        let versus = |f: &dyn Fn(&Round, &Round) -> f64| -> Option<Vec<f64>> {
            (plain.len() == mine.len())
                .then(|| mine.iter().zip(&plain).map(|(m, p)| f(m, p)).collect())
        };
        let cpu_ratios = versus(&|m, p| (m.cpu_per_1000() / p.cpu_per_1000() - 1.0) * 100.0);
        let (cpu_ratio, cpu_interval, cpu_range) = match cpu_ratios {
            Some(ratios) => {
                let (low, high) = ratios
                    .iter()
                    .fold((f64::INFINITY, f64::NEG_INFINITY), |(l, h), &r| {
                        (l.min(r), h.max(r))
                    });
                let (from, to, _) = median_interval(&ratios);
                (
                    format!("{:+.2} %", median(ratios)),
                    format!("{from:+.2} … {to:+.2} %"),
                    format!("{low:+.1} … {high:+.1} %"),
                )
            }
            None => ("–".to_owned(), "–".to_owned(), "–".to_owned()),
        };
        let ttfb_delta = versus(&|m, p| m.quantiles(0.5).1 - p.quantiles(0.5).1)
            .map_or("–".to_owned(), |d| format!("{:+.0} µs", median(d)));
        println!(
            "| {variant:?} | {:.1} ms | {cpu_ratio} | {cpu_interval} | {cpu_range} | {:.1} | {:.0} | {:.0} | {:.0} | {:.0} µs | {:.0} µs | {:.0} µs | {:.0} µs | {ttfb_delta} | {:.0} |",
            of(&Round::cpu_per_1000),
            of(&Round::streams_per_second),
            of(&Round::streams_per_cpu_second),
            of(&Round::writes_per_stream),
            of(&Round::runs_per_stream),
            of(&|r| r.quantiles(0.5).0),
            of(&|r| r.quantiles(0.99).0),
            of(&|r| r.quantiles(0.5).1),
            of(&|r| r.quantiles(0.99).1),
            of(&Round::frames_per_stream),
        );
    }
}

/// A `nats-server` with JetStream for the `nats` variant, on a free port, its storage in
/// a directory of its own; killed (and the directory removed) when dropped.
#[derive(Debug)]
struct BenchNats {
    child: Child,
    port: u16,
    dir: std::path::PathBuf,
}

impl BenchNats {
    async fn start(program: &str) -> anyhow::Result<Self> {
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let dir = std::env::temp_dir().join(format!("usage-bench-nats-{}", std::process::id()));
        std::fs::create_dir_all(&dir)?;
        let child = Command::new(program)
            .args(["-a", "127.0.0.1", "-p", &port.to_string(), "-js", "-sd"])
            .arg(&dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .with_context(|| format!("start {program} (set NATS_SERVER or --nats-server)"))?;
        let nats = BenchNats { child, port, dir };
        let deadline = Instant::now() + Duration::from_secs(30);
        while tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_err()
        {
            ensure!(
                Instant::now() < deadline,
                "{program} did not listen within 30 s"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Ok(nats)
    }

    fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// The messages in the usage stream.
    async fn messages(&self) -> anyhow::Result<u64> {
        let client = async_nats::connect(self.url()).await?;
        let jetstream = async_nats::jetstream::new(client);
        let mut stream = jetstream
            .get_stream(&usage_layer::store::nats::NatsConfig::default().stream)
            .await?;
        Ok(stream.info().await?.state.messages)
    }
}

impl Drop for BenchNats {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
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
        migration::up(&db).await?;
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

#[cfg(test)]
mod tests {
    use super::median_interval;

    #[test]
    fn median_interval_takes_the_order_statistics_of_the_binomial() {
        let fifteen: Vec<f64> = (1..=15).rev().map(f64::from).collect();
        let (low, high, coverage) = median_interval(&fifteen);
        assert_eq!((low, high), (4.0, 12.0));
        // 1 - 2 * (1 + 15 + 105 + 455) / 2^15
        assert!((coverage - 0.964_843_75).abs() < 1e-9, "{coverage}");

        let five = [3.0, 1.0, 5.0, 2.0, 4.0];
        assert_eq!(median_interval(&five), (1.0, 5.0, 1.0 - 2.0 / 32.0));

        let (low, high, coverage) = median_interval(&[7.0]);
        assert_eq!((low, high), (7.0, 7.0));
        assert!(coverage.abs() < 1e-12);
    }
}
