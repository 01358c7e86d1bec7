//! `GET /metrics`: usage in the Prometheus text format, on by default (`--metrics=false`,
//! `PROXY_METRICS=false` removes the route: a 404).
//!
//! Every usage record also goes to a [`MetricsSink`] — requests, tokens, cost, time to
//! first byte and duration per provider, model and outcome (see
//! [`usage_layer::sink::metrics`]) — and the process's Prometheus recorder renders them.
//!
//! The endpoint asks for no token, as Prometheus scrapers expect. It shows which models
//! are used, how much, at what cost and latency; never a user, a key or a request label
//! (those are not metric labels at all). Where those volumes are confidential, keep the
//! port behind the network boundary or turn the endpoint off.
//!
//! The `metrics` facade has one recorder per process: it is installed once, and every
//! server the process starts (tests start several) shares it and its counters.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use anyhow::Context;
use axum::Router as Routes;
use axum::extract::State;
use axum::http::header::CONTENT_TYPE;
use axum::response::IntoResponse;
use axum::routing::get;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use usage_layer::sink::{MetricsConfig, MetricsSink};

use crate::app::AppState;

/// The Prometheus text exposition format, version 0.0.4.
const TEXT_FORMAT: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Bucket bounds of the `_seconds` histograms: a refusal takes milliseconds, a long
/// stream many minutes. (Without buckets the exporter renders summaries, whose quantiles
/// cannot be added up across servers.)
const SECONDS_BUCKETS: [f64; 15] = [
    0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0,
];

/// How often histogram samples are folded into their buckets between scrapes, so memory
/// stays flat when nobody scrapes (the exporter's own default interval).
const UPKEEP_INTERVAL: Duration = Duration::from_secs(5);

/// The process's Prometheus recorder: installed as the global `metrics` recorder on the
/// first call, the same handle after that.
pub fn prometheus() -> anyhow::Result<PrometheusHandle> {
    static INSTALLED: Mutex<Option<PrometheusHandle>> = Mutex::new(None);
    let mut installed = INSTALLED.lock().unwrap_or_else(PoisonError::into_inner);
    if let Some(handle) = &*installed {
        return Ok(handle.clone());
    }
    let handle = PrometheusBuilder::new()
        .set_buckets_for_metric(Matcher::Suffix("_seconds".to_owned()), &SECONDS_BUCKETS)?
        .install_recorder()
        .context("installing the Prometheus recorder (is another metrics recorder installed?)")?;
    *installed = Some(handle.clone());
    let upkeep = handle.clone();
    // A thread, not a task: the recorder outlives any one server's runtime.
    std::thread::Builder::new()
        .name("metrics-upkeep".to_owned())
        .spawn(move || {
            loop {
                std::thread::sleep(UPKEEP_INTERVAL);
                upkeep.run_upkeep();
            }
        })
        .context("starting the metrics upkeep thread")?;
    Ok(handle)
}

/// The sink feeding `/metrics`, priced like the usage rows; `None` when metrics are off.
pub fn sink(state: &AppState) -> Option<MetricsSink> {
    state
        .metrics
        .as_ref()
        .map(|_| MetricsSink::new(MetricsConfig::default().pricing(state.pricing.clone())))
}

/// `GET /metrics` when metrics are on; no route otherwise.
pub fn routes(state: &AppState) -> Routes<Arc<AppState>> {
    match &state.metrics {
        Some(handle) => Routes::new()
            .route("/metrics", get(scrape))
            .with_state(handle.clone()),
        None => Routes::new(),
    }
}

async fn scrape(State(handle): State<PrometheusHandle>) -> impl IntoResponse {
    ([(CONTENT_TYPE, TEXT_FORMAT)], handle.render())
}
