//! CloudWatch metrics per provider (feature `cloudwatch`): a store for the
//! [`BatchWriter`](crate::sink::BatchWriter).
//!
//! Each batch (one flush interval of records) is aggregated into **statistic sets** per
//! metric and dimension values, so one `PutMetricData` call carries many requests: the
//! number of calls grows with flush intervals, not with traffic. Plan and Bedrock never
//! share a series — `Provider` is a dimension of every metric (R7). There is no per-user
//! dimension (cardinality); per-user numbers live in SQL.
//!
//! | metric | unit | dimensions |
//! |---|---|---|
//! | `proxy.requests` | Count | Provider, Model, Status, Stream |
//! | `proxy.latency`, `proxy.ttft` | Milliseconds | Provider, Model, Stream |
//! | `proxy.tokens` | Count | Provider, Model, TokenType (`input`, `output`, `cache_read`, `cache_write`) |
//! | `proxy.cost` | None (USD) | Provider, Model |
//! | `proxy.errors` | Count | Provider, Model, ErrorType |
//! | `proxy.fallbacks` | Count | FromProvider, ToProvider, Reason |
//!
//! `proxy.cost` is in US dollars with unit `None`: CloudWatch has no currency unit, and a
//! unit it does have (e.g. `Count`) would say something false. Metric values are doubles
//! in CloudWatch; the exact cost is in the database.
//!
//! Every request that ends counts, whatever its outcome: stream errors, disconnects,
//! refusals (as `proxy.errors` with the error type, or the outcome when there is none).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use aws_sdk_cloudwatch::Client;
use aws_sdk_cloudwatch::primitives::DateTime as AwsDateTime;
use aws_sdk_cloudwatch::types::{Dimension, MetricDatum, StandardUnit, StatisticSet};
use rust_decimal::prelude::ToPrimitive;

use crate::pricing::{PriceCatalog, Pricing, normalize_model_id};
use crate::record::{Outcome, UsageRecord};
use crate::sink::UsageStore;

/// Datums per `PutMetricData` call: the API takes 1,000 and 1 MB; a datum with its
/// dimensions is well under 1 KB, so 500 stays far from both limits.
const DATUMS_PER_CALL: usize = 500;

/// A failure to put a batch of metrics; the writer retries it.
#[derive(Debug, thiserror::Error)]
#[error("CloudWatch PutMetricData failed: {0}")]
pub struct CloudWatchError(String);

/// One series: a metric, its unit and its dimension values (sorted by name).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct Series {
    metric: &'static str,
    unit: Unit,
    dimensions: Vec<(&'static str, String)>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Unit {
    Count,
    Milliseconds,
    None,
}

impl Unit {
    fn standard(self) -> StandardUnit {
        match self {
            Unit::Count => StandardUnit::Count,
            Unit::Milliseconds => StandardUnit::Milliseconds,
            Unit::None => StandardUnit::None,
        }
    }
}

/// Sample count, sum, minimum and maximum of the values of one series.
#[derive(Clone, Copy, Debug)]
struct Stats {
    count: f64,
    sum: f64,
    min: f64,
    max: f64,
}

impl Stats {
    fn of(value: f64) -> Self {
        Self {
            count: 1.0,
            sum: value,
            min: value,
            max: value,
        }
    }

    fn add(&mut self, value: f64) {
        self.count += 1.0;
        self.sum += value;
        self.min = self.min.min(value);
        self.max = self.max.max(value);
    }
}

/// Aggregates records into statistic sets.
#[derive(Debug, Default)]
struct Aggregate {
    series: BTreeMap<Series, Stats>,
}

impl Aggregate {
    fn add(
        &mut self,
        metric: &'static str,
        unit: Unit,
        dimensions: &[(&'static str, &str)],
        value: f64,
    ) {
        let mut dimensions: Vec<(&'static str, String)> = dimensions
            .iter()
            .map(|(name, value)| (*name, (*value).to_owned()))
            .collect();
        dimensions.sort();
        let series = Series {
            metric,
            unit,
            dimensions,
        };
        self.series
            .entry(series)
            .and_modify(|stats| stats.add(value))
            .or_insert_with(|| Stats::of(value));
    }

    fn record(&mut self, record: &UsageRecord, pricing: &PriceCatalog) {
        let provider = super::recorded_provider(record).as_str();
        let model = record
            .model()
            .map_or_else(|| "unknown".to_owned(), normalize_model_id);
        let status = record
            .status
            .map_or_else(|| "none".to_owned(), |s| s.as_u16().to_string());
        let stream = if record.streaming { "true" } else { "false" };
        let base = [("Provider", provider), ("Model", model.as_str())];

        self.add(
            "proxy.requests",
            Unit::Count,
            &[base[0], base[1], ("Status", &status), ("Stream", stream)],
            1.0,
        );
        let millis = |d: std::time::Duration| d.as_secs_f64() * 1000.0;
        self.add(
            "proxy.latency",
            Unit::Milliseconds,
            &[base[0], base[1], ("Stream", stream)],
            millis(record.duration),
        );
        if let Some(ttfb) = record.time_to_first_byte {
            self.add(
                "proxy.ttft",
                Unit::Milliseconds,
                &[base[0], base[1], ("Stream", stream)],
                millis(ttfb),
            );
        }
        let usage = &record.usage;
        for (kind, tokens) in usage.billed_counts() {
            if let Some(tokens) = tokens {
                self.add(
                    "proxy.tokens",
                    Unit::Count,
                    &[base[0], base[1], ("TokenType", kind)],
                    tokens as f64,
                );
            }
        }
        if let Some(cost) = pricing
            .price_record(super::recorded_provider(record), record)
            .and_then(|price| price.cost(usage).total.to_f64())
        {
            self.add("proxy.cost", Unit::None, &base, cost);
        }
        if record.outcome != Outcome::Completed {
            let error = record
                .error_type
                .as_deref()
                .unwrap_or(record.outcome.as_str());
            self.add(
                "proxy.errors",
                Unit::Count,
                &[base[0], base[1], ("ErrorType", error)],
                1.0,
            );
        }
        if let Some(fallback) = &record.fallback {
            self.add(
                "proxy.fallbacks",
                Unit::Count,
                &[
                    ("FromProvider", fallback.from.as_str()),
                    ("ToProvider", provider),
                    ("Reason", &fallback.reason),
                ],
                1.0,
            );
        }
    }

    fn datums(self, timestamp: AwsDateTime) -> Vec<MetricDatum> {
        self.series
            .into_iter()
            .map(|(series, stats)| {
                let dimensions = series
                    .dimensions
                    .into_iter()
                    .map(|(name, value)| Dimension::builder().name(name).value(value).build())
                    .collect();
                MetricDatum::builder()
                    .metric_name(series.metric)
                    .unit(series.unit.standard())
                    .timestamp(timestamp)
                    .set_dimensions(Some(dimensions))
                    .statistic_values(
                        StatisticSet::builder()
                            .sample_count(stats.count)
                            .sum(stats.sum)
                            .minimum(stats.min)
                            .maximum(stats.max)
                            .build(),
                    )
                    .build()
            })
            .collect()
    }
}

/// Puts each batch's metrics to CloudWatch; see the [module docs](self).
#[derive(Clone, Debug)]
pub struct CloudWatchStore {
    client: Client,
    namespace: String,
    pricing: Pricing,
    calls: Arc<AtomicU64>,
}

impl CloudWatchStore {
    /// A store putting to `namespace` with `client`, costing with `pricing`.
    pub fn new(client: Client, namespace: impl Into<String>, pricing: impl Into<Pricing>) -> Self {
        Self {
            client,
            namespace: namespace.into(),
            pricing: pricing.into(),
            calls: Arc::default(),
        }
    }

    /// `PutMetricData` calls made so far (successful or not).
    pub fn put_calls(&self) -> u64 {
        self.calls.load(Ordering::Relaxed)
    }
}

impl UsageStore for CloudWatchStore {
    type Error = CloudWatchError;

    async fn write_batch(&self, batch: &[UsageRecord]) -> Result<(), CloudWatchError> {
        let mut aggregate = Aggregate::default();
        let pricing = self.pricing.current();
        for record in batch {
            aggregate.record(record, &pricing);
        }
        let datums = aggregate.datums(AwsDateTime::from(std::time::SystemTime::now()));
        for chunk in datums.chunks(DATUMS_PER_CALL) {
            self.calls.fetch_add(1, Ordering::Relaxed);
            self.client
                .put_metric_data()
                .namespace(&self.namespace)
                .set_metric_data(Some(chunk.to_vec()))
                .send()
                .await
                .map_err(|error| {
                    let error = aws_sdk_cloudwatch::error::DisplayErrorContext(error);
                    CloudWatchError(error.to_string())
                })?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::anthropic::Usage;
    use crate::record::{Fallback, Provider, RequestId};

    fn record(provider: Provider, input: u64, outcome: Outcome) -> UsageRecord {
        let mut record = UsageRecord::new(RequestId::new(), chrono::Utc::now());
        record.provider = Some(provider);
        record.served_model = Some("claude-sonnet-4-5-20250929".into());
        record.usage = Usage {
            input_tokens: Some(input),
            output_tokens: Some(10),
            ..Usage::default()
        };
        record.status = Some(http::StatusCode::OK);
        record.outcome = outcome;
        record
    }

    #[test]
    fn many_requests_make_one_datum_per_series_and_providers_never_mix() {
        let pricing = PriceCatalog::defaults();
        let mut aggregate = Aggregate::default();
        for i in 0..100 {
            let provider = if i % 2 == 0 {
                Provider::PLAN
            } else {
                Provider::BEDROCK
            };
            let mut record = record(provider, i, Outcome::Completed);
            if i % 10 == 1 {
                record.fallback = Some(Fallback {
                    from: Provider::PLAN,
                    reason: "rate_limited".into(),
                });
            }
            aggregate.record(&record, &pricing);
        }
        aggregate.record(
            &record(Provider::PLAN, 5, Outcome::ClientDisconnected),
            &pricing,
        );
        let input = |provider: &str| {
            aggregate
                .series
                .iter()
                .find(|(s, _)| {
                    s.metric == "proxy.tokens"
                        && s.dimensions.contains(&("Provider", provider.to_owned()))
                        && s.dimensions.contains(&("TokenType", "input".to_owned()))
                })
                .map(|(_, stats)| (stats.count, stats.sum))
                .unwrap()
        };
        assert_eq!(
            input("plan"),
            (51.0, (0..100).step_by(2).sum::<u64>() as f64 + 5.0)
        );
        assert_eq!(
            input("bedrock"),
            (50.0, (1..100).step_by(2).sum::<u64>() as f64)
        );
        let metrics: std::collections::BTreeSet<&str> =
            aggregate.series.keys().map(|s| s.metric).collect();
        assert_eq!(metrics.len(), 6, "{metrics:?}");
        assert!(aggregate.series.keys().all(|s| {
            s.dimensions
                .iter()
                .any(|(name, _)| *name == "Provider" || *name == "ToProvider")
        }));
        // 2 providers × (requests, latency, 2 token types, cost) + errors + fallbacks.
        assert_eq!(aggregate.datums(AwsDateTime::from_secs(0)).len(), 12);
    }
}
