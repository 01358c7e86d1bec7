//! `reference-server ingest`: the records a fleet of proxies publishes to NATS JetStream,
//! written into the database through the sea-orm store (see
//! [`usage_layer::store::nats::Ingester`]).
//!
//! Once a batch has committed, the Bedrock spend of its records is deleted from the
//! fleet's pending spend ([`crate::fleet`]): the budgets read it from the database now.
//!
//! Prices are applied here, when a record is written (as the store does in a single
//! proxy): the ingester reads the same price overrides and the same `model_prices` table
//! as the proxies, reloaded every few seconds. `/health` on `--bind` answers JSON: the
//! records written, the batches, the undecodable messages, the consumer's lag (asked of
//! the server) and the records per second over the last interval; `503` while NATS does
//! not answer the lag.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use serde_json::{Value, json};
use usage_layer::store::nats::{IngestConfig, IngestHandle, Ingester, NatsConfig};
use usage_layer::store::sea_orm::SeaOrmStore;

use crate::bedrock::ModelMapping;
use crate::budget::SettlingStore;
use crate::config::IngestArgs;
use crate::database;
use crate::fleet::Fleet;
use crate::live::LiveConfig;

/// How often prices are read again, and the throughput is sampled.
const INTERVAL: Duration = Duration::from_secs(5);

struct Health {
    ingest: IngestHandle,
    /// The written count at the last sample, and when; the rate since the one before.
    sample: Mutex<(Instant, u64, f64)>,
}

/// Runs the ingester until SIGINT or SIGTERM (the batch in hand is finished first).
pub async fn run(args: IngestArgs) -> anyhow::Result<()> {
    let db = database::connect(
        &args.state.database_url()?,
        args.state.database_timeout(),
        false,
    )
    .await
    .map_err(database::connect_error)?;
    migration::up(&db).await.context("running migrations")?;
    let live = LiveConfig::new(db.clone(), args.usage.prices()?, ModelMapping::defaults());
    if let Err(error) = live.reload().await {
        tracing::warn!(%error, "prices not read from the database: the configured ones stay in force");
    }
    let store = SeaOrmStore::new(db, live.pricing().clone(), args.usage.buckets());
    let client = async_nats::ConnectOptions::new()
        .name("reference-server ingest")
        .retry_on_initial_connect()
        .connect(args.nats_url.as_str())
        .await
        .context("connecting to NATS (--nats)")?;
    let mut stream = NatsConfig::default();
    stream.stream = args.stream.clone();
    let mut config = IngestConfig::default();
    config.stream = stream;
    config.consumer = args.consumer.clone();
    config.max_batch = args.max_batch.max(1);
    // Once a batch commits, its Bedrock records' spend is no longer pending in the fleet.
    let store = SettlingStore::new(store, Fleet::new(client.clone()));
    let ingester = Ingester::new(client, store, config)
        .await
        .context("the JetStream stream and consumer")?;
    let health = Arc::new(Health {
        ingest: ingester.handle(),
        sample: Mutex::new((Instant::now(), 0, 0.0)),
    });
    let listener = tokio::net::TcpListener::bind(args.bind)
        .await
        .with_context(|| format!("binding {} (--bind)", args.bind))?;
    let address: SocketAddr = listener.local_addr()?;
    let app = axum::Router::new()
        .route("/health", get(health_json))
        .with_state(Arc::clone(&health));
    let server = tokio::spawn(async move { axum::serve(listener, app).await });
    let background = tokio::spawn(async move {
        let mut every = tokio::time::interval(INTERVAL);
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            every.tick().await;
            let _ = live.reload().await;
            let written = health.ingest.stats().written;
            let mut sample = health.sample.lock().expect("the sample lock");
            let (at, before, _) = *sample;
            let seconds = at.elapsed().as_secs_f64().max(f64::EPSILON);
            *sample = (Instant::now(), written, (written - before) as f64 / seconds);
        }
    });
    tracing::info!(%address, stream = %args.stream, consumer = %args.consumer, "ingesting usage from JetStream");
    let result = ingester.run(crate::server::shutdown_signal()).await;
    background.abort();
    server.abort();
    result.context("ingesting from JetStream")
}

async fn health_json(State(health): State<Arc<Health>>) -> (StatusCode, Json<Value>) {
    let stats = health.ingest.stats();
    let rate = health.sample.lock().expect("the sample lock").2;
    let lag = health.ingest.lag().await;
    let status = if lag.is_ok() {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    let body = json!({
        "status": if lag.is_ok() { "ok" } else { "nats_unreachable" },
        "written": stats.written,
        "batches": stats.batches,
        "failed_batches": stats.failed_batches,
        "undecodable": stats.undecodable,
        "records_per_second": (rate * 10.0).round() / 10.0,
        "lag": lag.as_ref().ok().map(|lag| json!({
            "pending": lag.pending,
            "unacknowledged": lag.unacknowledged,
            "redelivered": lag.redelivered,
        })),
        "error": lag.err().map(|error| error.to_string()),
    });
    (status, Json(body))
}
