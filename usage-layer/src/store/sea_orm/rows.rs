//! From a record to a `token_usage` row and its aggregate keys.

use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use sea_orm::Value;

use super::entity::{token_usage, usage_aggregates};
use crate::pricing::{Cost, PriceCatalog, PriceSnapshot};
use crate::record::{Caller, Labels, Provider, UsageRecord, bounded_id};
use crate::store::buckets::BucketType;

use crate::pricing::to_micros as micros;

/// A count as stored (`BIGINT`); counts never come near `i64::MAX`.
fn count(value: Option<u64>) -> i64 {
    value.map_or(0, |n| i64::try_from(n).unwrap_or(i64::MAX))
}

fn optional_count(value: Option<u64>) -> Option<i64> {
    value.map(|n| i64::try_from(n).unwrap_or(i64::MAX))
}

/// Text as stored: a NUL character, which a Postgres `text` cannot hold (it refuses the
/// whole batch), becomes U+FFFD on every backend alike; all else is kept as it is.
fn text(text: &str) -> String {
    if text.contains('\0') {
        text.replace('\0', "\u{FFFD}")
    } else {
        text.to_owned()
    }
}

fn optional_text(value: Option<&str>) -> Option<String> {
    value.map(text)
}

/// An id as stored: [`text`], then cut to `max` bytes by [`bounded_id`].
fn id(id: &str, max: usize) -> String {
    let id = text(id);
    bounded_id(&id, max).into_owned()
}

/// A caller id as stored: an empty id is no id (the aggregates' "nobody" is `""`).
fn caller_id(caller: Option<&str>) -> Option<String> {
    caller
        .filter(|caller| !caller.is_empty())
        .map(|caller| id(caller, Caller::MAX_ID_LEN))
}

/// The labels as stored: a JSON object of strings, in key order; none when there are none.
fn labels_json(labels: &Labels) -> Option<String> {
    (!labels.is_empty()).then(|| {
        let object = labels
            .iter()
            .map(|(key, value)| (key.to_owned(), serde_json::Value::from(value)))
            .collect();
        serde_json::Value::Object(object).to_string()
    })
}

fn millis(duration: std::time::Duration) -> i64 {
    i64::try_from(duration.as_millis()).unwrap_or(i64::MAX)
}

/// What a row adds to each of its buckets.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Sums {
    requests: i64,
    input: i64,
    output: i64,
    total: i64,
    cache_read: i64,
    cache_write: i64,
    cost_micros: i64,
    cost_input: i64,
    cost_output: i64,
    cost_cache_write: i64,
    cost_cache_read: i64,
}

impl Sums {
    pub(crate) fn add(&mut self, other: &Sums) {
        self.requests += other.requests;
        self.input += other.input;
        self.output += other.output;
        self.total += other.total;
        self.cache_read += other.cache_read;
        self.cache_write += other.cache_write;
        self.cost_micros += other.cost_micros;
        self.cost_input += other.cost_input;
        self.cost_output += other.cost_output;
        self.cost_cache_write += other.cost_cache_write;
        self.cost_cache_read += other.cost_cache_read;
    }

    /// The aggregate columns these sums go to, in [`Sums::values`] order.
    pub(crate) fn columns() -> [usage_aggregates::Column; 11] {
        use usage_aggregates::Column::*;
        [
            TotalRequests,
            TotalInputTokens,
            TotalOutputTokens,
            TotalTokens,
            TotalCacheReadTokens,
            TotalCacheWriteTokens,
            TotalEstimatedCostMicros,
            TotalCostInputMicros,
            TotalCostOutputMicros,
            TotalCostCacheWriteMicros,
            TotalCostCacheReadMicros,
        ]
    }

    fn values(&self) -> [i64; 11] {
        [
            self.requests,
            self.input,
            self.output,
            self.total,
            self.cache_read,
            self.cache_write,
            self.cost_micros,
            self.cost_input,
            self.cost_output,
            self.cost_cache_write,
            self.cost_cache_read,
        ]
    }
}

/// The unique key of an aggregate row; ordered, so upserts lock rows in one order.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct AggregateKey {
    bucket_type: BucketType,
    bucket_start: DateTime<Utc>,
    user_id: String,
    access_key_id: String,
    provider: String,
}

impl AggregateKey {
    pub(crate) const COLUMNS: usize = 16;

    pub(crate) fn key_columns() -> [usage_aggregates::Column; 5] {
        use usage_aggregates::Column::*;
        [BucketType, BucketStart, UserId, AccessKeyId, Provider]
    }

    /// Key columns, then the sums' columns.
    pub(crate) fn columns() -> [usage_aggregates::Column; Self::COLUMNS] {
        let [a, b, c, d, e] = Self::key_columns();
        let [f, g, h, i, j, k, l, m, n, o, p] = Sums::columns();
        [a, b, c, d, e, f, g, h, i, j, k, l, m, n, o, p]
    }

    /// The key's values, then the sums', in [`AggregateKey::columns`] order.
    pub(crate) fn values(&self, sums: &Sums) -> [Value; Self::COLUMNS] {
        let [a, b, c, d, e, f, g, h, i, j, k] = sums.values().map(Value::from);
        [
            self.bucket_type.as_str().into(),
            self.bucket_start.into(),
            self.user_id.as_str().into(),
            self.access_key_id.as_str().into(),
            self.provider.as_str().into(),
            a,
            b,
            c,
            d,
            e,
            f,
            g,
            h,
            i,
            j,
            k,
        ]
    }
}

/// One `token_usage` row, priced.
#[derive(Clone, Debug)]
pub(crate) struct UsageRow {
    pub(crate) request_id: String,
    pub(crate) timestamp: DateTime<Utc>,
    pub(crate) unpriced: bool,
    user_id: Option<String>,
    access_key_id: Option<String>,
    model: String,
    provider: String,
    input: i64,
    output: i64,
    cache_read: i64,
    cache_write: i64,
    cache_write_5m: Option<i64>,
    cache_write_1h: Option<i64>,
    snapshot: Option<PriceSnapshot>,
    cost: Cost,
    requested_model: Option<String>,
    served_model: Option<String>,
    region: Option<String>,
    outcome: &'static str,
    status_code: Option<i32>,
    streaming: bool,
    fallback_from: Option<String>,
    fallback_reason: Option<String>,
    error_type: Option<String>,
    stop_reason: Option<String>,
    time_to_first_byte_ms: Option<i64>,
    duration_ms: i64,
    response_bytes: i64,
    labels: Option<String>,
    format: Option<&'static str>,
    reasoning_tokens: Option<i64>,
}

impl UsageRow {
    pub(crate) const COLUMNS: usize = 43;

    /// Prices the record by the model that served, else the one asked for. A record with
    /// usage but no known price is stored unpriced (cost 0) — never priced as another model.
    pub(crate) fn new(record: &UsageRecord, pricing: &PriceCatalog) -> Self {
        let usage = &record.usage;
        let provider = crate::store::recorded_provider(record);
        let snapshot = pricing.price_record(provider, record);
        let cost = snapshot
            .as_ref()
            .map_or_else(Cost::default, |snapshot| snapshot.cost(usage));
        UsageRow {
            request_id: record.request_id.as_str().to_owned(),
            timestamp: record.started_at,
            unpriced: snapshot.is_none() && !usage.is_empty(),
            user_id: caller_id(record.caller.user_id.as_deref()),
            access_key_id: caller_id(record.caller.access_key_id.as_deref()),
            model: text(record.model().unwrap_or("unknown")),
            provider: id(provider.as_str(), Provider::MAX_LEN),
            input: count(usage.input_tokens),
            output: count(usage.output_tokens),
            cache_read: count(usage.cache_read_input_tokens),
            cache_write: count(usage.cache_creation_input_tokens),
            cache_write_5m: optional_count(usage.ephemeral_5m_input_tokens),
            cache_write_1h: optional_count(usage.ephemeral_1h_input_tokens),
            snapshot,
            cost,
            requested_model: optional_text(record.requested_model.as_deref()),
            served_model: optional_text(record.served_model.as_deref()),
            region: optional_text(record.region.as_deref()),
            outcome: record.outcome.as_str(),
            status_code: record.status.map(|status| i32::from(status.as_u16())),
            streaming: record.streaming,
            fallback_from: record
                .fallback
                .as_ref()
                .map(|f| id(f.from.as_str(), Provider::MAX_LEN)),
            fallback_reason: record.fallback.as_ref().map(|f| text(&f.reason)),
            error_type: optional_text(record.error_type.as_deref()),
            stop_reason: optional_text(record.stop_reason.as_deref()),
            time_to_first_byte_ms: record.time_to_first_byte.map(millis),
            duration_ms: millis(record.duration),
            response_bytes: i64::try_from(record.response_bytes).unwrap_or(i64::MAX),
            labels: labels_json(&record.labels),
            format: record.format.map(|format| format.as_str()),
            reasoning_tokens: optional_count(usage.reasoning_tokens),
        }
    }

    pub(crate) fn sums(&self) -> Sums {
        Sums {
            requests: 1,
            input: self.input,
            output: self.output,
            total: self.input.saturating_add(self.output),
            cache_read: self.cache_read,
            cache_write: self.cache_write,
            cost_micros: micros(self.cost.total),
            cost_input: micros(self.cost.input),
            cost_output: micros(self.cost.output),
            cost_cache_write: micros(self.cost.cache_write),
            cost_cache_read: micros(self.cost.cache_read),
        }
    }

    pub(crate) fn aggregate_key(
        &self,
        kind: BucketType,
        bucket_start: DateTime<Utc>,
    ) -> AggregateKey {
        AggregateKey {
            bucket_type: kind,
            bucket_start,
            user_id: self.user_id.clone().unwrap_or_default(),
            access_key_id: self.access_key_id.clone().unwrap_or_default(),
            provider: self.provider.clone(),
        }
    }

    /// Every column but `id`, in [`UsageRow::values`] order.
    pub(crate) fn columns() -> [token_usage::Column; Self::COLUMNS] {
        use token_usage::Column::*;
        [
            RequestId,
            Timestamp,
            UserId,
            AccessKeyId,
            Model,
            Provider,
            InputTokens,
            OutputTokens,
            CacheReadInputTokens,
            CacheCreationInputTokens,
            TotalTokens,
            EstimatedCostMicros,
            PricingRegion,
            PricingModelId,
            PricingEffectiveDate,
            PricingInputPricePerMillionMicros,
            PricingOutputPricePerMillionMicros,
            PricingCacheWritePricePerMillionMicros,
            PricingCacheReadPricePerMillionMicros,
            CacheWrite5mTokens,
            CacheWrite1hTokens,
            PricingCacheWrite1hPricePerMillionMicros,
            CostInputMicros,
            CostOutputMicros,
            CostCacheWriteMicros,
            CostCacheReadMicros,
            Unpriced,
            RequestedModel,
            ServedModel,
            Region,
            Outcome,
            StatusCode,
            Streaming,
            FallbackFrom,
            FallbackReason,
            ErrorType,
            StopReason,
            TimeToFirstByteMs,
            DurationMs,
            ResponseBytes,
            Labels,
            Format,
            ReasoningTokens,
        ]
    }

    /// The row's values, in [`UsageRow::columns`] order.
    pub(crate) fn values(&self) -> [Value; Self::COLUMNS] {
        let snapshot = self.snapshot.as_ref();
        let price = |pick: fn(&PriceSnapshot) -> Decimal| snapshot.map(|s| micros(pick(s)));
        [
            self.request_id.clone().into(),
            self.timestamp.into(),
            self.user_id.clone().into(),
            self.access_key_id.clone().into(),
            self.model.clone().into(),
            self.provider.clone().into(),
            self.input.into(),
            self.output.into(),
            self.cache_read.into(),
            self.cache_write.into(),
            self.input.saturating_add(self.output).into(),
            micros(self.cost.total).into(),
            snapshot.map(|s| s.region.clone()).into(),
            snapshot.map(|s| s.model_id.clone()).into(),
            snapshot.map(|s| s.effective_date).into(),
            price(|s| s.prices.input).into(),
            price(|s| s.prices.output).into(),
            price(|s| s.prices.cache_write_5m).into(),
            price(|s| s.prices.cache_read).into(),
            self.cache_write_5m.into(),
            self.cache_write_1h.into(),
            price(|s| s.prices.cache_write_1h).into(),
            micros(self.cost.input).into(),
            micros(self.cost.output).into(),
            micros(self.cost.cache_write).into(),
            micros(self.cost.cache_read).into(),
            self.unpriced.into(),
            self.requested_model.clone().into(),
            self.served_model.clone().into(),
            self.region.clone().into(),
            self.outcome.into(),
            self.status_code.into(),
            self.streaming.into(),
            self.fallback_from.clone().into(),
            self.fallback_reason.clone().into(),
            self.error_type.clone().into(),
            self.stop_reason.clone().into(),
            self.time_to_first_byte_ms.into(),
            self.duration_ms.into(),
            self.response_bytes.into(),
            self.labels.clone().into(),
            self.format.into(),
            self.reasoning_tokens.into(),
        ]
    }
}
