//! Usage as counters and histograms on the [`metrics`] facade (feature `metrics`), for
//! whatever exporter the application installs: Prometheus, OpenTelemetry, StatsD.
//!
//! [`MetricsSink`] is a plain [`UsageSink`]: each record turns into a few counter
//! increments and histogram samples, made synchronously through the facade — no queue, no
//! I/O (an exporter aggregates in memory and is scraped or flushes on its own). With the
//! default prefix `llm_usage`:
//!
//! | metric | kind | labels | value |
//! |---|---|---|---|
//! | `llm_usage_requests_total` | counter | base | one per request, whatever its outcome |
//! | `llm_usage_tokens_total` | counter | base, `type` | tokens by `type`: `input`, `output`, `cache_read`, `cache_write` |
//! | `llm_usage_reasoning_tokens_total` | counter | base | the part of `output` spent on reasoning |
//! | `llm_usage_cost_micro_usd_total` | counter | base | cost in millionths of a US dollar (with a [`PriceCatalog`]) |
//! | `llm_usage_unpriced_requests_total` | counter | base | requests with usage but no known price (with a catalog) |
//! | `llm_usage_time_to_first_byte_seconds` | histogram | base | start to the first body byte, when one came |
//! | `llm_usage_duration_seconds` | histogram | base | start to end, however it ended |
//!
//! The **base** labels are `provider`, `model` and `outcome` by default, and `format` on
//! request ([`MetricsConfig::labels`]). A token count is added only when the body reported
//! it, so a missing count never shows as zero. Reasoning tokens have a counter of their own
//! because they are already in `output`: summing `llm_usage_tokens_total` over `type` adds
//! up every token processed once.
//!
//! # Labels
//!
//! * `provider` — the record's [`Provider`], or `none` when nobody said.
//!   The stores record such a record under `bedrock` (the original system's rule, see
//!   `store::recorded_provider`), but that is a storage compatibility rule; here the sink
//!   shows what the layer knows, and the layer never invents a provider.
//! * `model` — the model that served, else the one asked for, as its price key
//!   ([`normalize_model_id`]: `us.anthropic.claude-sonnet-4-5-20250929-v1:0` and
//!   `claude-sonnet-4-5-20250929` are both `claude-sonnet-4-5`), or `unknown`. Each label
//!   value makes a series per metric, and a model the client asks for is any string it
//!   sends: an upstream that refuses a made-up model leaves that string as the record's
//!   only model. Normalising keeps the dated and regional ids of one model in one series;
//!   when untrusted clients can reach the service, leave `model` out of the labels.
//! * `outcome` — [`Outcome::as_str`](crate::Outcome::as_str).
//! * `format` — [`Format::as_str`](crate::Format::as_str), or `unknown`.
//!
//! No caller, key or free-form label ever becomes a metric label: user ids would make a
//! series per user (per-user numbers belong in a store), and a metrics endpoint is often
//! readable by more people than the usage database.
//!
//! # Cost
//!
//! The cost counter is an integer number of micro-USD, the same rounding as the stores'
//! `estimated_cost_micros` ([`to_micros`]): the facade's counters are `u64`, so the sum is
//! exact — a dashboard total equals the database's to the micro-dollar — where adding
//! dollars as `f64` would drift. A `u64` of micro-USD holds 18 trillion dollars.
//! A record is priced by its own provider only; one without a provider, or without a
//! known price for its model, counts as unpriced when it reported usage.
//!
//! ```
//! use std::sync::Arc;
//!
//! use metrics_util::debugging::{DebugValue, DebuggingRecorder};
//! use usage_layer::pricing::PriceCatalog;
//! use usage_layer::sink::UsageSink;
//! use usage_layer::sink::metrics::{MetricsConfig, MetricsSink};
//! use usage_layer::{Provider, RequestId, Usage, UsageRecord};
//!
//! let recorder = DebuggingRecorder::new();
//! let snapshotter = recorder.snapshotter();
//! metrics::with_local_recorder(&recorder, || {
//!     let sink = MetricsSink::new(MetricsConfig::default().pricing(Arc::new(PriceCatalog::defaults())));
//!     let mut record = UsageRecord::new(RequestId::new(), chrono::Utc::now());
//!     record.provider = Some(Provider::BEDROCK);
//!     record.served_model = Some("us.anthropic.claude-sonnet-4-5-20250929-v1:0".into());
//!     record.usage = Usage { input_tokens: Some(1_000), output_tokens: Some(200), ..Usage::default() };
//!     sink.record(record);
//! });
//!
//! let cost = snapshotter.snapshot().into_vec().into_iter().find_map(|(key, _, _, value)| {
//!     (key.key().name() == "llm_usage_cost_micro_usd_total").then_some(value)
//! });
//! assert_eq!(cost, Some(DebugValue::Counter(6_000))); // 1,000 × $3/M + 200 × $15/M
//! ```

use std::sync::Arc;

use metrics::{Label, SharedString, Unit};

use super::UsageSink;
use crate::pricing::{PriceCatalog, Pricing, normalize_model_id, to_micros};
use crate::record::{Format, Provider, UsageRecord};

/// The prefix of every metric name unless configured otherwise.
pub const DEFAULT_PREFIX: &str = "llm_usage";

/// A label a [`MetricsSink`] can put on its metrics.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum MetricLabel {
    /// `provider`: the provider that served, or `none`.
    Provider,
    /// `model`: the model's price key, or `unknown` (see the [module docs](self#labels)).
    Model,
    /// `outcome`: how the request ended.
    Outcome,
    /// `format`: the API format the body was read as, or `unknown`.
    Format,
}

impl MetricLabel {
    /// The labels a [`MetricsConfig`] starts with.
    pub const DEFAULT: [MetricLabel; 3] = [Self::Provider, Self::Model, Self::Outcome];

    /// The label's name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Provider => "provider",
            Self::Model => "model",
            Self::Outcome => "outcome",
            Self::Format => "format",
        }
    }

    fn value(self, record: &UsageRecord) -> SharedString {
        match self {
            Self::Provider => SharedString::from_owned(
                record
                    .provider
                    .as_ref()
                    .map_or("none", Provider::as_str)
                    .to_owned(),
            ),
            Self::Model => SharedString::from_owned(
                record
                    .model()
                    .map_or_else(|| "unknown".to_owned(), normalize_model_id),
            ),
            Self::Outcome => SharedString::const_str(record.outcome.as_str()),
            Self::Format => {
                SharedString::const_str(record.format.map_or("unknown", Format::as_str))
            }
        }
    }
}

/// What a [`MetricsSink`] reports: the name prefix, the labels, and the prices for cost.
#[derive(Clone, Debug)]
pub struct MetricsConfig {
    prefix: String,
    labels: Vec<MetricLabel>,
    pricing: Option<Pricing>,
}

impl Default for MetricsConfig {
    /// Prefix [`DEFAULT_PREFIX`], labels [`MetricLabel::DEFAULT`], no cost metrics.
    fn default() -> Self {
        Self {
            prefix: DEFAULT_PREFIX.to_owned(),
            labels: MetricLabel::DEFAULT.to_vec(),
            pricing: None,
        }
    }
}

impl MetricsConfig {
    /// Names every metric `<prefix>_<metric>` (exporters sanitise what their format refuses).
    pub fn prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = prefix.into();
        self
    }

    /// Puts these labels, in this order, on every metric (none at all is fine).
    pub fn labels(mut self, labels: impl IntoIterator<Item = MetricLabel>) -> Self {
        self.labels.clear();
        for label in labels {
            if !self.labels.contains(&label) {
                self.labels.push(label);
            }
        }
        self
    }

    /// Reports cost and unpriced requests, priced with `pricing` (the stores' prices, for
    /// totals that agree with theirs).
    pub fn pricing(mut self, pricing: impl Into<Pricing>) -> Self {
        self.pricing = Some(pricing.into());
        self
    }
}

/// The metrics, for their names, kinds, units and descriptions.
#[derive(Clone, Copy, Debug)]
enum Metric {
    Requests,
    Tokens,
    ReasoningTokens,
    CostMicroUsd,
    UnpricedRequests,
    TimeToFirstByte,
    Duration,
}

impl Metric {
    const ALL: [Metric; 7] = [
        Self::Requests,
        Self::Tokens,
        Self::ReasoningTokens,
        Self::CostMicroUsd,
        Self::UnpricedRequests,
        Self::TimeToFirstByte,
        Self::Duration,
    ];

    fn suffix(self) -> &'static str {
        match self {
            Self::Requests => "requests_total",
            Self::Tokens => "tokens_total",
            Self::ReasoningTokens => "reasoning_tokens_total",
            Self::CostMicroUsd => "cost_micro_usd_total",
            Self::UnpricedRequests => "unpriced_requests_total",
            Self::TimeToFirstByte => "time_to_first_byte_seconds",
            Self::Duration => "duration_seconds",
        }
    }

    fn is_histogram(self) -> bool {
        matches!(self, Self::TimeToFirstByte | Self::Duration)
    }

    fn unit(self) -> Unit {
        match self {
            // The facade has no currency unit; the name says micro-USD.
            Self::Requests
            | Self::Tokens
            | Self::ReasoningTokens
            | Self::CostMicroUsd
            | Self::UnpricedRequests => Unit::Count,
            Self::TimeToFirstByte | Self::Duration => Unit::Seconds,
        }
    }

    fn description(self) -> &'static str {
        match self {
            Self::Requests => "Metered requests, whatever their outcome.",
            Self::Tokens => {
                "Tokens the responses reported, by type (input, output, cache_read, cache_write)."
            }
            Self::ReasoningTokens => {
                "Output tokens spent on reasoning (already counted as output)."
            }
            Self::CostMicroUsd => "Estimated cost in millionths of a US dollar.",
            Self::UnpricedRequests => "Requests that reported usage but have no known price.",
            Self::TimeToFirstByte => "Time from the request to the first response body byte.",
            Self::Duration => "Time from the request to the end of the response.",
        }
    }
}

/// A [`UsageSink`] reporting each record to the [`metrics`] facade; see the
/// [module docs](self). Clones share one configuration.
#[derive(Clone, Debug)]
pub struct MetricsSink {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    /// By [`Metric`], in [`Metric::ALL`] order; shared strings, so a key clones cheaply.
    names: [SharedString; Metric::ALL.len()],
    labels: Vec<MetricLabel>,
    pricing: Option<Pricing>,
}

impl MetricsSink {
    /// A sink reporting as `config` says; it [describes](Self::describe) its metrics to
    /// the recorder installed now, so install the exporter first.
    pub fn new(config: MetricsConfig) -> Self {
        let MetricsConfig {
            prefix,
            labels,
            pricing,
        } = config;
        let names = Metric::ALL.map(|metric| {
            SharedString::from_shared(Arc::from(format!("{prefix}_{}", metric.suffix())))
        });
        let sink = Self {
            inner: Arc::new(Inner {
                names,
                labels,
                pricing,
            }),
        };
        sink.describe();
        sink
    }

    /// Gives the current recorder each metric's unit and description (exporters show
    /// them, e.g. as Prometheus `# HELP` lines).
    pub fn describe(&self) {
        metrics::with_recorder(|recorder| {
            for metric in Metric::ALL {
                let name = self.name(metric).into();
                let (unit, description) = (Some(metric.unit()), metric.description().into());
                if metric.is_histogram() {
                    recorder.describe_histogram(name, unit, description);
                } else {
                    recorder.describe_counter(name, unit, description);
                }
            }
        });
    }

    fn name(&self, metric: Metric) -> SharedString {
        self.inner.names[metric as usize].clone()
    }

    fn counter(&self, metric: Metric, labels: Vec<Label>) -> metrics::Counter {
        metrics::counter!(self.name(metric), labels)
    }

    fn histogram(&self, metric: Metric, labels: Vec<Label>) -> metrics::Histogram {
        metrics::histogram!(self.name(metric), labels)
    }

    /// The record's cost in micro-USD, at its own provider's prices; `None` when it has
    /// no provider, no model, or a model without a price.
    fn cost_micros(pricing: &PriceCatalog, record: &UsageRecord) -> Option<u64> {
        let price = pricing.price_record(record.provider.as_ref()?, record)?;
        // Prices are never negative (the catalog's overrides refuse them), and a counter
        // only goes up.
        Some(u64::try_from(to_micros(price.cost(&record.usage).total)).unwrap_or(0))
    }
}

impl UsageSink for MetricsSink {
    fn record(&self, record: UsageRecord) {
        let labels: Vec<Label> = self
            .inner
            .labels
            .iter()
            .map(|label| Label::new(label.as_str(), label.value(&record)))
            .collect();
        self.counter(Metric::Requests, labels.clone()).increment(1);

        let usage = &record.usage;
        for (kind, tokens) in usage.billed_counts() {
            if let Some(tokens) = tokens {
                let mut labels = labels.clone();
                labels.push(Label::from_static_parts("type", kind));
                self.counter(Metric::Tokens, labels).increment(tokens);
            }
        }
        if let Some(reasoning) = usage.reasoning_tokens {
            self.counter(Metric::ReasoningTokens, labels.clone())
                .increment(reasoning);
        }

        if let Some(pricing) = &self.inner.pricing {
            match Self::cost_micros(&pricing.current(), &record) {
                Some(micros) => self
                    .counter(Metric::CostMicroUsd, labels.clone())
                    .increment(micros),
                // As the stores flag a row: unpriced only when there was usage to price.
                None if !usage.is_empty() => self
                    .counter(Metric::UnpricedRequests, labels.clone())
                    .increment(1),
                None => {}
            }
        }

        if let Some(ttfb) = record.time_to_first_byte {
            self.histogram(Metric::TimeToFirstByte, labels.clone())
                .record(ttfb.as_secs_f64());
        }
        self.histogram(Metric::Duration, labels)
            .record(record.duration.as_secs_f64());
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::time::Duration;

    use metrics_util::debugging::{DebugValue, DebuggingRecorder};
    use proptest::prelude::*;

    use super::*;
    use crate::anthropic::Usage;
    use crate::record::{Outcome, RequestId};

    /// Series name and sorted `label=value` pairs.
    type Series = (String, Vec<String>);
    /// Each series' value.
    type Values = BTreeMap<Series, DebugValue>;
    /// Each metric's unit and description, by name.
    type Descriptions = BTreeMap<String, (Option<Unit>, String)>;

    /// Records `records` through a sink made from `config`, with a recorder of their own:
    /// every series and its value, and each metric's unit and description.
    fn report(config: MetricsConfig, records: Vec<UsageRecord>) -> (Values, Descriptions) {
        let recorder = DebuggingRecorder::new();
        let snapshotter = recorder.snapshotter();
        metrics::with_local_recorder(&recorder, || {
            let sink = MetricsSink::new(config);
            for record in records {
                sink.record(record);
            }
        });
        let mut series = BTreeMap::new();
        let mut described = BTreeMap::new();
        for (key, unit, description, value) in snapshotter.snapshot().into_vec() {
            let key = key.key();
            let mut labels: Vec<String> = key
                .labels()
                .map(|label| format!("{}={}", label.key(), label.value()))
                .collect();
            labels.sort();
            if let Some(description) = description {
                described.insert(key.name().to_owned(), (unit, description.into_owned()));
            }
            series.insert((key.name().to_owned(), labels), value);
        }
        (series, described)
    }

    fn labels(pairs: &[&str]) -> Vec<String> {
        let mut labels: Vec<String> = pairs.iter().map(|pair| (*pair).to_owned()).collect();
        labels.sort();
        labels
    }

    fn record(provider: Option<Provider>, model: &str, usage: Usage) -> UsageRecord {
        let mut record = UsageRecord::new(RequestId::new(), chrono::Utc::now());
        record.provider = provider;
        record.served_model = Some(model.to_owned());
        record.usage = usage;
        record.duration = Duration::from_millis(1500);
        record
    }

    fn counter(value: u64) -> DebugValue {
        DebugValue::Counter(value)
    }

    fn samples(values: &[f64]) -> DebugValue {
        DebugValue::Histogram(values.iter().map(|v| (*v).into()).collect())
    }

    #[test]
    fn every_count_reported_lands_in_its_series_with_exact_values() {
        let tokens = Usage {
            input_tokens: Some(1_000),
            output_tokens: Some(200),
            cache_read_input_tokens: Some(50),
            cache_creation_input_tokens: Some(0),
            reasoning_tokens: Some(30),
            ..Usage::default()
        };
        let mut streamed = record(
            Some(Provider::BEDROCK),
            "us.anthropic.claude-sonnet-4-5-20250929-v1:0",
            tokens,
        );
        streamed.time_to_first_byte = Some(Duration::from_millis(250));
        let again = record(
            Some(Provider::BEDROCK),
            "claude-sonnet-4-5-20250929",
            Usage {
                input_tokens: Some(10),
                ..Usage::default()
            },
        );
        let mut refused = record(Some(Provider::PLAN), "claude-sonnet-4-5", Usage::default());
        refused.outcome = Outcome::ErrorResponse;
        let unpriced = record(
            Some(Provider::PLAN),
            "claude-unreleased-9",
            Usage {
                output_tokens: Some(7),
                ..Usage::default()
            },
        );
        // Nobody said who served: `none`, and not priced as anyone's.
        let anonymous = record(
            None,
            "claude-sonnet-4-5",
            Usage {
                input_tokens: Some(5),
                ..Usage::default()
            },
        );
        let config = MetricsConfig::default().pricing(Arc::new(PriceCatalog::defaults()));
        let (series, described) =
            report(config, vec![streamed, again, refused, unpriced, anonymous]);

        let bedrock = [
            "provider=bedrock",
            "model=claude-sonnet-4-5",
            "outcome=completed",
        ];
        let with = |base: &[&str], extra: &str| {
            let mut pairs = base.to_vec();
            pairs.push(extra);
            labels(&pairs)
        };
        let plan_refused = [
            "provider=plan",
            "model=claude-sonnet-4-5",
            "outcome=error_response",
        ];
        let plan_unknown = [
            "provider=plan",
            "model=claude-unreleased-9",
            "outcome=completed",
        ];
        let none = [
            "provider=none",
            "model=claude-sonnet-4-5",
            "outcome=completed",
        ];
        let expected: Values = [
            ("llm_usage_requests_total", labels(&bedrock), counter(2)),
            (
                "llm_usage_requests_total",
                labels(&plan_refused),
                counter(1),
            ),
            (
                "llm_usage_requests_total",
                labels(&plan_unknown),
                counter(1),
            ),
            ("llm_usage_requests_total", labels(&none), counter(1)),
            (
                "llm_usage_tokens_total",
                with(&bedrock, "type=input"),
                counter(1_010),
            ),
            (
                "llm_usage_tokens_total",
                with(&bedrock, "type=output"),
                counter(200),
            ),
            (
                "llm_usage_tokens_total",
                with(&bedrock, "type=cache_read"),
                counter(50),
            ),
            (
                "llm_usage_tokens_total",
                with(&bedrock, "type=cache_write"),
                counter(0),
            ),
            (
                "llm_usage_tokens_total",
                with(&plan_unknown, "type=output"),
                counter(7),
            ),
            (
                "llm_usage_tokens_total",
                with(&none, "type=input"),
                counter(5),
            ),
            (
                "llm_usage_reasoning_tokens_total",
                labels(&bedrock),
                counter(30),
            ),
            // 1,000 × $3/M + 200 × $15/M + 50 × $0.30/M, and 10 × $3/M.
            (
                "llm_usage_cost_micro_usd_total",
                labels(&bedrock),
                counter(6_015 + 30),
            ),
            // Priced, at no usage: zero, but a price was found.
            (
                "llm_usage_cost_micro_usd_total",
                labels(&plan_refused),
                counter(0),
            ),
            (
                "llm_usage_unpriced_requests_total",
                labels(&plan_unknown),
                counter(1),
            ),
            (
                "llm_usage_unpriced_requests_total",
                labels(&none),
                counter(1),
            ),
            (
                "llm_usage_time_to_first_byte_seconds",
                labels(&bedrock),
                samples(&[0.25]),
            ),
            (
                "llm_usage_duration_seconds",
                labels(&bedrock),
                samples(&[1.5, 1.5]),
            ),
            (
                "llm_usage_duration_seconds",
                labels(&plan_refused),
                samples(&[1.5]),
            ),
            (
                "llm_usage_duration_seconds",
                labels(&plan_unknown),
                samples(&[1.5]),
            ),
            ("llm_usage_duration_seconds", labels(&none), samples(&[1.5])),
        ]
        .into_iter()
        .map(|(name, labels, value)| ((name.to_owned(), labels), value))
        .collect();
        assert_eq!(series, expected);

        assert_eq!(described.len(), Metric::ALL.len());
        assert_eq!(
            described["llm_usage_duration_seconds"].0,
            Some(Unit::Seconds)
        );
        assert_eq!(
            described["llm_usage_cost_micro_usd_total"].1,
            "Estimated cost in millionths of a US dollar."
        );
    }

    #[test]
    fn the_prefix_and_labels_are_configurable_and_without_prices_there_is_no_cost() {
        let mut openai = record(
            Some(Provider::OPENAI),
            "gpt-4o",
            Usage {
                input_tokens: Some(3),
                ..Usage::default()
            },
        );
        openai.format = Some(Format::OpenAiChat);
        let mut unread = record(Some(Provider::PLAN), "claude-sonnet-4-5", Usage::default());
        unread.outcome = Outcome::ClientDisconnected;
        let config = MetricsConfig::default()
            .prefix("proxy")
            .labels([MetricLabel::Format, MetricLabel::Format]);
        let (series, _) = report(config, vec![openai, unread]);
        let names: Vec<(&str, Vec<String>, &DebugValue)> = series
            .iter()
            .map(|((name, labels), value)| (name.as_str(), labels.clone(), value))
            .collect();
        assert_eq!(
            names,
            [
                (
                    "proxy_duration_seconds",
                    labels(&["format=openai_chat"]),
                    &samples(&[1.5])
                ),
                (
                    "proxy_duration_seconds",
                    labels(&["format=unknown"]),
                    &samples(&[1.5])
                ),
                (
                    "proxy_requests_total",
                    labels(&["format=openai_chat"]),
                    &counter(1)
                ),
                (
                    "proxy_requests_total",
                    labels(&["format=unknown"]),
                    &counter(1)
                ),
                (
                    "proxy_tokens_total",
                    labels(&["format=openai_chat", "type=input"]),
                    &counter(3)
                ),
            ]
        );

        let (series, _) = report(
            MetricsConfig::default().labels([]),
            vec![record(None, "m", Usage::default())],
        );
        assert_eq!(
            series[&("llm_usage_requests_total".to_owned(), vec![])],
            counter(1)
        );
    }

    fn any_record() -> impl Strategy<Value = UsageRecord> {
        let provider = prop_oneof![
            Just(Some(Provider::PLAN)),
            Just(Some(Provider::BEDROCK)),
            Just(None)
        ];
        let model = prop_oneof![
            Just("claude-sonnet-4-5-20250929"),
            Just("us.anthropic.claude-haiku-4-5-20251001-v1:0"),
            Just("claude-unreleased-9"),
        ];
        let count = proptest::option::of(0u64..1_000_000);
        (
            provider,
            model,
            count.clone(),
            count.clone(),
            count.clone(),
            count,
        )
            .prop_map(
                |(provider, model, input, output, cache_read, cache_write)| {
                    record(
                        provider,
                        model,
                        Usage {
                            input_tokens: input,
                            output_tokens: output,
                            cache_read_input_tokens: cache_read,
                            cache_creation_input_tokens: cache_write,
                            ..Usage::default()
                        },
                    )
                },
            )
    }

    proptest! {
        /// Per provider, the counters add up to the records: requests, each token type,
        /// and the cost the stores would store, to the micro-dollar.
        #[test]
        fn counters_sum_to_the_records_per_provider(records in proptest::collection::vec(any_record(), 0..40)) {
            let pricing = Arc::new(PriceCatalog::defaults());
            let mut expected: BTreeMap<(String, &str), u64> = BTreeMap::new();
            for record in &records {
                let provider = record.provider.as_ref().map_or("none", Provider::as_str);
                let mut add = |what, value| *expected.entry((provider.to_owned(), what)).or_default() += value;
                add("requests", 1);
                let usage = &record.usage;
                for (kind, tokens) in usage.billed_counts() {
                    if let Some(tokens) = tokens {
                        add(kind, tokens);
                    }
                }
                if let Some(price) = record.provider.as_ref().and_then(|p| pricing.price_record(p, record)) {
                    add("cost", u64::try_from(to_micros(price.cost(usage).total)).unwrap());
                }
            }

            let (series, _) = report(MetricsConfig::default().pricing(pricing), records);
            let mut summed: BTreeMap<(String, &str), u64> = BTreeMap::new();
            for ((name, labels), value) in &series {
                let DebugValue::Counter(value) = value else { continue };
                let label = |key: &str| {
                    labels.iter().find_map(|pair| pair.strip_prefix(key)?.strip_prefix('='))
                };
                let what = match name.as_str() {
                    "llm_usage_requests_total" => "requests",
                    "llm_usage_tokens_total" => label("type").unwrap(),
                    "llm_usage_cost_micro_usd_total" => "cost",
                    _ => continue,
                };
                *summed.entry((label("provider").unwrap().to_owned(), what)).or_default() += value;
            }
            prop_assert_eq!(summed, expected);
        }
    }
}
