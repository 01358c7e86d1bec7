//! `GET /admin/requests`: the latest requests, one row each, with everything recorded
//! about them; `GET /admin/usage/outcomes`: how the requests of a range ended, their
//! fallbacks and the models without a price.
//!
//! Both read the usage rows (`token_usage`), not the aggregates: they answer what the
//! aggregates do not hold. An empty free-text filter (`?model=`) filters nothing, as an
//! empty form field means; an empty provider, time or row id is an error, as any other
//! malformed one.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use chrono::{DateTime, NaiveDate, Utc};
use sea_orm::{ColumnTrait, Condition, EntityTrait, QueryFilter, QueryOrder, QuerySelect};
use serde::{Deserialize, Serialize};
use usage_layer::store::sea_orm::entity::token_usage;
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::usage::{RangeJson, UsageParams, parse_time};
use super::{AdminError, AdminQuery, ErrorBody, usd};
use crate::app::AppState;

pub(super) fn routes() -> OpenApiRouter<Arc<AppState>> {
    OpenApiRouter::new()
        .routes(routes!(list_requests))
        .routes(routes!(outcomes))
}

/// The explorer's filters.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(super) struct RequestParams {
    /// Only this user's requests.
    user_id: Option<String>,
    /// Only this access key's requests.
    access_key_id: Option<String>,
    /// `plan` or `bedrock`.
    #[param(value_type = Option<String>, pattern = "^(plan|bedrock)$")]
    provider: Option<String>,
    /// Only this model (as recorded: the served model, or the requested one).
    model: Option<String>,
    /// Only requests that ended so: `completed`, `client_disconnected`,
    /// `upstream_error`, `stream_error`, `timeout`, …
    outcome: Option<String>,
    /// Requests at or after this instant (RFC 3339).
    #[param(value_type = Option<String>, format = DateTime)]
    start_time: Option<String>,
    /// Requests before this instant (RFC 3339).
    #[param(value_type = Option<String>, format = DateTime)]
    end_time: Option<String>,
    /// How many (1–500, default 50).
    #[param(value_type = Option<u32>, minimum = 1, maximum = 500)]
    limit: Option<String>,
    /// Only requests older than this row (the previous page's `next_before`).
    #[param(value_type = Option<i64>)]
    before: Option<String>,
}

/// What a request cost, by component (USD, 6 decimal places).
#[derive(Debug, Serialize, ToSchema)]
struct CostJson {
    input_usd: String,
    output_usd: String,
    cache_write_usd: String,
    cache_read_usd: String,
    total_usd: String,
}

/// The price a request was charged at (USD per million tokens), as it was then.
#[derive(Debug, Serialize, ToSchema)]
struct PriceJson {
    model_id: Option<String>,
    region: Option<String>,
    effective_date: Option<NaiveDate>,
    input_per_million_usd: Option<String>,
    output_per_million_usd: Option<String>,
    cache_write_per_million_usd: Option<String>,
    cache_write_1h_per_million_usd: Option<String>,
    cache_read_per_million_usd: Option<String>,
}

/// One request.
#[derive(Debug, Serialize, ToSchema)]
struct RequestJson {
    /// The row's id (ordered by writing).
    id: i64,
    request_id: String,
    timestamp: DateTime<Utc>,
    user_id: Option<String>,
    access_key_id: Option<String>,
    provider: String,
    /// The model the row is priced as.
    model: String,
    requested_model: Option<String>,
    served_model: Option<String>,
    region: Option<String>,
    /// How it ended.
    #[schema(example = "completed")]
    outcome: String,
    status_code: Option<i32>,
    streaming: bool,
    stop_reason: Option<String>,
    error_type: Option<String>,
    /// The provider tried first, when this one served a fallback.
    fallback_from: Option<String>,
    fallback_reason: Option<String>,
    input_tokens: i64,
    output_tokens: i64,
    cache_read_tokens: i64,
    cache_write_tokens: i64,
    cache_write_5m_tokens: Option<i64>,
    cache_write_1h_tokens: Option<i64>,
    total_tokens: i64,
    /// No price was known: the cost is 0 and the row is flagged.
    unpriced: bool,
    cost: CostJson,
    price: PriceJson,
    time_to_first_byte_ms: Option<i64>,
    duration_ms: i64,
    response_bytes: i64,
}

fn price(micros: Option<i64>) -> Option<String> {
    micros.map(usd)
}

impl From<token_usage::Model> for RequestJson {
    fn from(row: token_usage::Model) -> Self {
        Self {
            id: row.id,
            request_id: row.request_id,
            timestamp: row.timestamp,
            user_id: row.user_id,
            access_key_id: row.access_key_id,
            provider: row.provider,
            model: row.model,
            requested_model: row.requested_model,
            served_model: row.served_model,
            region: row.region,
            outcome: row.outcome,
            status_code: row.status_code,
            streaming: row.streaming,
            stop_reason: row.stop_reason,
            error_type: row.error_type,
            fallback_from: row.fallback_from,
            fallback_reason: row.fallback_reason,
            input_tokens: row.input_tokens,
            output_tokens: row.output_tokens,
            cache_read_tokens: row.cache_read_input_tokens,
            cache_write_tokens: row.cache_creation_input_tokens,
            cache_write_5m_tokens: row.cache_write_5m_tokens,
            cache_write_1h_tokens: row.cache_write_1h_tokens,
            total_tokens: row.total_tokens,
            unpriced: row.unpriced,
            cost: CostJson {
                input_usd: usd(row.cost_input_micros),
                output_usd: usd(row.cost_output_micros),
                cache_write_usd: usd(row.cost_cache_write_micros),
                cache_read_usd: usd(row.cost_cache_read_micros),
                total_usd: usd(row.estimated_cost_micros),
            },
            price: PriceJson {
                model_id: row.pricing_model_id,
                region: row.pricing_region,
                effective_date: row.pricing_effective_date,
                input_per_million_usd: price(row.pricing_input_price_per_million_micros),
                output_per_million_usd: price(row.pricing_output_price_per_million_micros),
                cache_write_per_million_usd: price(
                    row.pricing_cache_write_price_per_million_micros,
                ),
                cache_write_1h_per_million_usd: price(
                    row.pricing_cache_write_1h_price_per_million_micros,
                ),
                cache_read_per_million_usd: price(row.pricing_cache_read_price_per_million_micros),
            },
            time_to_first_byte_ms: row.time_to_first_byte_ms,
            duration_ms: row.duration_ms,
            response_bytes: row.response_bytes,
        }
    }
}

/// A page of requests.
#[derive(Debug, Serialize, ToSchema)]
struct RequestList {
    /// Newest first.
    requests: Vec<RequestJson>,
    /// `before` for the next page; null on the last.
    next_before: Option<i64>,
}

fn text_filter(value: Option<&str>) -> Option<&str> {
    value.map(str::trim).filter(|value| !value.is_empty())
}

/// The latest requests, newest first, with their tokens, cost, price snapshot, timings
/// and how they ended.
#[utoipa::path(
    get,
    path = "/admin/requests",
    tag = "usage",
    params(RequestParams),
    responses(
        (status = 200, description = "the requests", body = RequestList),
        (status = 400, description = "a bad parameter", body = ErrorBody),
        (status = 401, description = "no or wrong admin token", body = ErrorBody),
    )
)]
async fn list_requests(
    State(state): State<Arc<AppState>>,
    AdminQuery(params): AdminQuery<RequestParams>,
) -> Result<Json<RequestList>, AdminError> {
    let limit = match params.limit.as_deref() {
        None => 50,
        Some(limit) => limit
            .trim()
            .parse::<u64>()
            .ok()
            .filter(|limit| (1..=500).contains(limit))
            .ok_or_else(|| AdminError::bad("limit", "a whole number from 1 to 500"))?,
    };
    let mut condition = Condition::all();
    if let Some(user) = text_filter(params.user_id.as_deref()) {
        condition = condition.add(token_usage::Column::UserId.eq(user));
    }
    if let Some(key) = text_filter(params.access_key_id.as_deref()) {
        condition = condition.add(token_usage::Column::AccessKeyId.eq(key));
    }
    if let Some(provider) = params.provider.as_deref().map(str::trim) {
        if !matches!(provider, "plan" | "bedrock") {
            return Err(AdminError::bad("provider", "plan or bedrock"));
        }
        condition = condition.add(token_usage::Column::Provider.eq(provider));
    }
    if let Some(model) = text_filter(params.model.as_deref()) {
        condition = condition.add(
            Condition::any()
                .add(token_usage::Column::Model.eq(model))
                .add(token_usage::Column::ServedModel.eq(model))
                .add(token_usage::Column::RequestedModel.eq(model)),
        );
    }
    if let Some(outcome) = text_filter(params.outcome.as_deref()) {
        condition = condition.add(token_usage::Column::Outcome.eq(outcome));
    }
    if let Some(start) = params.start_time.as_deref() {
        condition =
            condition.add(token_usage::Column::Timestamp.gte(parse_time("start_time", start)?));
    }
    if let Some(end) = params.end_time.as_deref() {
        condition = condition.add(token_usage::Column::Timestamp.lt(parse_time("end_time", end)?));
    }
    if let Some(before) = params.before.as_deref().map(str::trim) {
        let before: i64 = before
            .parse()
            .map_err(|_| AdminError::bad("before", "a row id (the previous page's next_before)"))?;
        condition = condition.add(token_usage::Column::Id.lt(before));
    }
    let rows = token_usage::Entity::find()
        .filter(condition)
        .order_by_desc(token_usage::Column::Id)
        .limit(limit + 1)
        .all(&state.db)
        .await?;
    let more = rows.len() as u64 > limit;
    let requests: Vec<RequestJson> = rows
        .into_iter()
        .take(limit as usize)
        .map(Into::into)
        .collect();
    let next_before = more.then(|| requests.last().map(|last| last.id)).flatten();
    Ok(Json(RequestList {
        requests,
        next_before,
    }))
}

/// How many requests of one provider ended one way.
#[derive(Debug, Serialize, ToSchema)]
struct OutcomeCount {
    provider: String,
    outcome: String,
    requests: i64,
}

/// Fallbacks to one provider for one reason.
#[derive(Debug, Serialize, ToSchema)]
struct FallbackCount {
    /// The provider that served.
    provider: String,
    /// The provider tried first.
    from: String,
    #[schema(example = "rate_limited")]
    reason: String,
    requests: i64,
}

/// A model used without a price: its rows cost 0 until a price is set.
#[derive(Debug, Serialize, ToSchema)]
struct UnpricedModel {
    provider: String,
    model: String,
    requests: i64,
    input_tokens: i64,
    output_tokens: i64,
}

/// How a range's requests ended.
#[derive(Debug, Serialize, ToSchema)]
struct OutcomesJson {
    #[serde(flatten)]
    range: RangeJson,
    /// Requests per provider and outcome.
    outcomes: Vec<OutcomeCount>,
    /// Requests per provider.
    requests_by_provider: BTreeMap<String, i64>,
    /// Fallbacks per serving provider, first provider and reason.
    fallbacks: Vec<FallbackCount>,
    /// Models used without a price.
    unpriced_models: Vec<UnpricedModel>,
}

/// How the requests of the range ended (outcomes per provider), the fallbacks and their
/// reasons, and the models used without a price. The range is the usage endpoints' (whole
/// buckets); `bucket_type` only picks its granularity.
#[utoipa::path(
    get,
    path = "/admin/usage/outcomes",
    tag = "usage",
    params(UsageParams),
    responses(
        (status = 200, description = "outcomes, fallbacks, unpriced models", body = OutcomesJson),
        (status = 400, description = "a bad parameter", body = ErrorBody),
        (status = 401, description = "no or wrong admin token", body = ErrorBody),
    )
)]
async fn outcomes(
    State(state): State<Arc<AppState>>,
    AdminQuery(params): AdminQuery<UsageParams>,
) -> Result<Json<OutcomesJson>, AdminError> {
    let query = params.validate(state.queries.buckets())?;
    let found = state.queries.outcomes(&query.range, &query.filter).await?;
    let mut requests_by_provider = BTreeMap::new();
    for row in &found.outcomes {
        *requests_by_provider
            .entry(row.provider.clone())
            .or_insert(0) += row.requests;
    }
    Ok(Json(OutcomesJson {
        range: RangeJson::of(&query),
        requests_by_provider,
        outcomes: found
            .outcomes
            .into_iter()
            .map(|row| OutcomeCount {
                provider: row.provider,
                outcome: row.outcome,
                requests: row.requests,
            })
            .collect(),
        fallbacks: found
            .fallbacks
            .into_iter()
            .map(|row| FallbackCount {
                provider: row.provider,
                from: row.from,
                reason: row.reason.unwrap_or_else(|| "unrecorded".to_owned()),
                requests: row.requests,
            })
            .collect(),
        unpriced_models: found
            .unpriced
            .into_iter()
            .map(|row| UnpricedModel {
                provider: row.provider,
                model: row.model,
                requests: row.requests,
                input_tokens: row.input_tokens,
                output_tokens: row.output_tokens,
            })
            .collect(),
    }))
}
