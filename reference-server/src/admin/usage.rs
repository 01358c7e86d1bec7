//! `GET /admin/usage`, `/admin/usage/top-users`, `/admin/usage/top-users/series`: usage by
//! bucket, totals and cost breakdown, with an optional provider (R6), user and key filter.
//!
//! Totals, series and breakdown read the same whole buckets (see the range rule of
//! `usage_layer::store::sea_orm::queries`), so they always agree.

use std::collections::HashMap;
use std::str::FromStr;
use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use chrono::{DateTime, NaiveDate, Utc};
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter};
use serde::{Deserialize, Serialize};
use usage_layer::Provider;
use usage_layer::store::sea_orm::{BucketRange, ModelCost, Totals, UsageFilter, UserTotals};
use usage_layer::store::{BucketType, Buckets};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use super::{AdminError, AdminQuery, ErrorBody, usd};
use crate::app::AppState;
use crate::entity::users;

/// The most buckets one answer may hold (a year of hours; a week of minutes).
const MAX_BUCKETS: usize = 10_000;

/// The query of every usage endpoint. Give one of: `period`; `start_date` and `end_date`;
/// `start_time` and `end_time`. None of them means `period=day`.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(super) struct UsageParams {
    /// `minute`, `hour` (default), `day`, `week` or `month`.
    #[param(value_type = Option<String>, pattern = "^(minute|hour|day|week|month)$")]
    bucket_type: Option<String>,
    /// `plan` or `bedrock`; absent sums both.
    #[param(value_type = Option<String>, pattern = "^(plan|bedrock)$")]
    provider: Option<String>,
    /// Only this user.
    #[param(value_type = Option<String>, format = Uuid)]
    user_id: Option<String>,
    /// Only this access key.
    #[param(value_type = Option<String>, format = Uuid)]
    access_key_id: Option<String>,
    /// The current `day`, `week` or `month`, in the usage time zone.
    #[param(value_type = Option<String>, pattern = "^(day|week|month)$")]
    period: Option<String>,
    /// First day (inclusive), `YYYY-MM-DD`, in the usage time zone.
    #[param(value_type = Option<String>, format = Date)]
    start_date: Option<String>,
    /// Last day (inclusive), `YYYY-MM-DD`.
    #[param(value_type = Option<String>, format = Date)]
    end_date: Option<String>,
    /// Start instant (RFC 3339).
    #[param(value_type = Option<String>, format = DateTime)]
    start_time: Option<String>,
    /// End instant (RFC 3339, exclusive).
    #[param(value_type = Option<String>, format = DateTime)]
    end_time: Option<String>,
    /// How many users (top users only; 1–1000, default 10).
    #[param(value_type = Option<u32>, minimum = 1, maximum = 1000)]
    limit: Option<String>,
}

/// A validated usage query.
pub(super) struct UsageQuery {
    pub(super) range: BucketRange,
    pub(super) filter: UsageFilter,
    limit: u64,
    /// Buckets in the range.
    buckets: usize,
}

pub(super) fn parse<T: FromStr>(
    parameter: &'static str,
    value: Option<&str>,
    what: &str,
) -> Result<Option<T>, AdminError> {
    value
        .map(|value| {
            value
                .trim()
                .parse()
                .map_err(|_| AdminError::bad(parameter, format!("not {what}: {value:?}")))
        })
        .transpose()
}

impl UsageParams {
    pub(super) fn validate(&self, buckets: &Buckets) -> Result<UsageQuery, AdminError> {
        let kind =
            match self.bucket_type.as_deref() {
                None => BucketType::Hour,
                Some(name) => name.trim().parse().map_err(
                    |error: usage_layer::store::UnknownBucketType| {
                        AdminError::bad("bucket_type", error.to_string())
                    },
                )?,
            };
        let provider = match self.provider.as_deref().map(str::trim) {
            None => None,
            Some("plan") => Some(Provider::PLAN),
            Some("bedrock") => Some(Provider::BEDROCK),
            Some(other) => {
                return Err(AdminError::bad(
                    "provider",
                    format!("unknown provider {other:?} (expected plan or bedrock)"),
                ));
            }
        };
        // This server's users and keys have UUIDs, recorded as their text.
        let id = |parameter, value: Option<&str>| {
            parse::<Uuid>(parameter, value, "a UUID").map(|id| id.map(|id| id.to_string()))
        };
        let filter = UsageFilter {
            provider,
            user_id: id("user_id", self.user_id.as_deref())?,
            access_key_id: id("access_key_id", self.access_key_id.as_deref())?,
        };
        let (from, to) = self.span(buckets)?;
        let count = buckets.series(kind, from, to).take(MAX_BUCKETS + 1).count();
        if count > MAX_BUCKETS {
            return Err(AdminError::bad(
                "bucket_type",
                format!(
                    "the range holds more than {MAX_BUCKETS} {kind} buckets: choose a wider bucket type or a shorter range"
                ),
            ));
        }
        let limit = parse::<u64>("limit", self.limit.as_deref(), "a whole number")?.unwrap_or(10);
        if !(1..=1000).contains(&limit) {
            return Err(AdminError::bad("limit", "must be between 1 and 1000"));
        }
        Ok(UsageQuery {
            range: BucketRange::new(buckets, kind, from, to),
            filter,
            limit,
            buckets: count,
        })
    }

    /// The instants `[from, to)` the query asks about.
    fn span(&self, buckets: &Buckets) -> Result<(DateTime<Utc>, DateTime<Utc>), AdminError> {
        let dates = (self.start_date.as_deref(), self.end_date.as_deref());
        let times = (self.start_time.as_deref(), self.end_time.as_deref());
        let given = [
            self.period.is_some(),
            dates != (None, None),
            times != (None, None),
        ];
        if given.iter().filter(|&&g| g).count() > 1 {
            return Err(AdminError::bad(
                "period",
                "give one of: period; start_date and end_date; start_time and end_time",
            ));
        }
        match (self.period.as_deref(), dates, times) {
            (_, (Some(start), Some(end)), _) => {
                let start: NaiveDate =
                    parse("start_date", Some(start), "a date (YYYY-MM-DD)")?.expect("given");
                let end: NaiveDate =
                    parse("end_date", Some(end), "a date (YYYY-MM-DD)")?.expect("given");
                supported("start_date", start)?;
                supported("end_date", end)?;
                if start > end {
                    return Err(AdminError::bad("start_date", "is after end_date"));
                }
                let after_end = end
                    .succ_opt()
                    .ok_or_else(|| AdminError::bad("end_date", "is too far in the future"))?;
                Ok((buckets.day_start(start), buckets.day_start(after_end)))
            }
            (_, (Some(_), None), _) => {
                Err(AdminError::bad("end_date", "is required with start_date"))
            }
            (_, (None, Some(_)), _) => {
                Err(AdminError::bad("start_date", "is required with end_date"))
            }
            (_, _, (Some(start), Some(end))) => {
                let start = parse_time("start_time", start)?;
                let end = parse_time("end_time", end)?;
                supported("start_time", start.date_naive())?;
                supported("end_time", end.date_naive())?;
                if start >= end {
                    return Err(AdminError::bad("start_time", "is not before end_time"));
                }
                Ok((start, end))
            }
            (_, _, (Some(_), None)) => {
                Err(AdminError::bad("end_time", "is required with start_time"))
            }
            (_, _, (None, Some(_))) => {
                Err(AdminError::bad("start_time", "is required with end_time"))
            }
            (period, _, _) => {
                let kind = match period.map(str::trim) {
                    None | Some("day") => BucketType::Day,
                    Some("week") => BucketType::Week,
                    Some("month") => BucketType::Month,
                    Some(other) => {
                        return Err(AdminError::bad(
                            "period",
                            format!("unknown period {other:?} (expected day, week or month)"),
                        ));
                    }
                };
                let start = buckets.start(kind, Utc::now());
                Ok((start, buckets.next(kind, start)))
            }
        }
    }
}

/// The dates the usage endpoints take: from the Unix epoch to the end of year 9999 (the
/// bucket arithmetic and the databases' timestamps are exact there, and no usage is
/// recorded outside it).
const SUPPORTED_DATES: (NaiveDate, NaiveDate) = (
    NaiveDate::from_ymd_opt(1970, 1, 1).expect("a date"),
    NaiveDate::from_ymd_opt(9999, 12, 31).expect("a date"),
);

fn supported(parameter: &'static str, date: NaiveDate) -> Result<(), AdminError> {
    let (first, last) = SUPPORTED_DATES;
    if (first..=last).contains(&date) {
        Ok(())
    } else {
        Err(AdminError::bad(
            parameter,
            format!("must be between {first} and {last}"),
        ))
    }
}

pub(super) fn parse_time(
    parameter: &'static str,
    value: &str,
) -> Result<DateTime<Utc>, AdminError> {
    DateTime::parse_from_rfc3339(value.trim())
        .map(|time| time.with_timezone(&Utc))
        .map_err(|_| AdminError::bad(parameter, format!("not an RFC 3339 time: {value:?}")))
}

/// Sums over some requests.
#[derive(Debug, Serialize, ToSchema)]
pub(super) struct TotalsJson {
    total_requests: i64,
    total_input_tokens: i64,
    total_output_tokens: i64,
    /// Input + output (cache tokens are not included).
    total_tokens: i64,
    total_cache_read_tokens: i64,
    total_cache_write_tokens: i64,
    /// USD, 6 decimal places.
    #[schema(example = "12.345678")]
    estimated_cost_usd: String,
    /// The uncached input tokens' part of the cost (the four parts add up to the cost).
    #[schema(example = "3.000000")]
    input_cost_usd: String,
    /// The output tokens' part.
    output_cost_usd: String,
    /// The cache writes' part.
    cache_write_cost_usd: String,
    /// The cache reads' part.
    cache_read_cost_usd: String,
}

impl From<Totals> for TotalsJson {
    fn from(totals: Totals) -> Self {
        Self {
            total_requests: totals.requests,
            total_input_tokens: totals.input_tokens,
            total_output_tokens: totals.output_tokens,
            total_tokens: totals.total_tokens,
            total_cache_read_tokens: totals.cache_read_tokens,
            total_cache_write_tokens: totals.cache_write_tokens,
            estimated_cost_usd: usd(totals.cost_micros),
            input_cost_usd: usd(totals.cost_input_micros),
            output_cost_usd: usd(totals.cost_output_micros),
            cache_write_cost_usd: usd(totals.cost_cache_write_micros),
            cache_read_cost_usd: usd(totals.cost_cache_read_micros),
        }
    }
}

/// One bucket's sums.
#[derive(Debug, Serialize, ToSchema)]
pub(super) struct BucketJson {
    bucket_start: DateTime<Utc>,
    #[serde(flatten)]
    totals: TotalsJson,
}

/// The usage and cost of one pricing model.
#[derive(Debug, Serialize, ToSchema)]
pub(super) struct BreakdownJson {
    provider: String,
    /// The price catalog key; null for unpriced usage.
    pricing_model_id: Option<String>,
    requests: i64,
    input_tokens: i64,
    output_tokens: i64,
    cache_read_tokens: i64,
    cache_write_tokens: i64,
    input_cost_usd: String,
    output_cost_usd: String,
    cache_write_cost_usd: String,
    cache_read_cost_usd: String,
    total_cost_usd: String,
}

impl From<ModelCost> for BreakdownJson {
    fn from(cost: ModelCost) -> Self {
        Self {
            provider: cost.provider,
            pricing_model_id: cost.pricing_model_id,
            requests: cost.totals.requests,
            input_tokens: cost.totals.input_tokens,
            output_tokens: cost.totals.output_tokens,
            cache_read_tokens: cost.totals.cache_read_tokens,
            cache_write_tokens: cost.totals.cache_write_tokens,
            input_cost_usd: usd(cost.cost_input_micros),
            output_cost_usd: usd(cost.cost_output_micros),
            cache_write_cost_usd: usd(cost.cost_cache_write_micros),
            cache_read_cost_usd: usd(cost.cost_cache_read_micros),
            total_cost_usd: usd(cost.totals.cost_micros),
        }
    }
}

/// What a range covers.
#[derive(Debug, Serialize, ToSchema)]
pub(super) struct RangeJson {
    bucket_type: String,
    /// `plan`, `bedrock`, or null for both.
    provider: Option<String>,
    /// The first bucket's start.
    start: DateTime<Utc>,
    /// The end of the last bucket (exclusive).
    end: DateTime<Utc>,
}

impl RangeJson {
    pub(super) fn of(query: &UsageQuery) -> Self {
        Self {
            bucket_type: query.range.kind().as_str().to_owned(),
            provider: query
                .filter
                .provider
                .as_ref()
                .map(|p| p.as_str().to_owned()),
            start: query.range.start(),
            end: query.range.end(),
        }
    }
}

/// Usage by bucket, totals and cost breakdown.
#[derive(Debug, Serialize, ToSchema)]
pub(super) struct UsageJson {
    #[serde(flatten)]
    range: RangeJson,
    /// Every bucket of the range, zeros included.
    buckets: Vec<BucketJson>,
    #[serde(flatten)]
    totals: TotalsJson,
    cost_breakdown: Vec<BreakdownJson>,
}

fn buckets_json(series: Vec<(DateTime<Utc>, Totals)>) -> Vec<BucketJson> {
    series
        .into_iter()
        .map(|(bucket_start, totals)| BucketJson {
            bucket_start,
            totals: totals.into(),
        })
        .collect()
}

/// Usage by bucket, totals and cost breakdown.
#[utoipa::path(
    get,
    path = "/admin/usage",
    tag = "usage",
    params(UsageParams),
    responses(
        (status = 200, description = "usage of the range", body = UsageJson),
        (status = 400, description = "a bad parameter", body = ErrorBody),
        (status = 401, description = "no or wrong admin token", body = ErrorBody),
    )
)]
async fn usage(
    State(state): State<Arc<AppState>>,
    AdminQuery(params): AdminQuery<UsageParams>,
) -> Result<Json<UsageJson>, AdminError> {
    let query = params.validate(state.queries.buckets())?;
    let series = state.queries.series(&query.range, &query.filter).await?;
    let totals = state.queries.totals(&query.range, &query.filter).await?;
    let breakdown = state
        .queries
        .cost_breakdown(&query.range, &query.filter)
        .await?;
    Ok(Json(UsageJson {
        range: RangeJson::of(&query),
        buckets: buckets_json(series),
        totals: totals.into(),
        cost_breakdown: breakdown.into_iter().map(Into::into).collect(),
    }))
}

/// One user's totals.
#[derive(Debug, Serialize, ToSchema)]
pub(super) struct UserJson {
    /// The user's id as recorded (this server records its users' UUIDs); null for the
    /// usage recorded without a user.
    user_id: Option<String>,
    /// The user's name, if the user exists.
    name: Option<String>,
    #[serde(flatten)]
    totals: TotalsJson,
}

/// The users with the highest cost.
#[derive(Debug, Serialize, ToSchema)]
pub(super) struct TopUsersJson {
    #[serde(flatten)]
    range: RangeJson,
    users: Vec<UserJson>,
}

/// The names of the users among `top`, by the id recorded (ids that are not one of this
/// server's users have none).
async fn names(
    state: &AppState,
    top: &[UserTotals],
) -> Result<HashMap<String, String>, AdminError> {
    let ids = top
        .iter()
        .filter_map(|user| user.user_id.as_deref()?.parse::<Uuid>().ok());
    Ok(users::Entity::find()
        .filter(users::Column::Id.is_in(ids))
        .all(&state.db)
        .await?
        .into_iter()
        .map(|user| (user.id.to_string(), user.name))
        .collect())
}

/// The query's top users (by cost, then tokens) and their names.
async fn top(
    state: &AppState,
    query: &UsageQuery,
) -> Result<(Vec<UserTotals>, HashMap<String, String>), AdminError> {
    let top = state
        .queries
        .top_users(&query.range, &query.filter, query.limit)
        .await?;
    let names = names(state, &top).await?;
    Ok((top, names))
}

/// The users with the highest cost (then most tokens) in the range.
#[utoipa::path(
    get,
    path = "/admin/usage/top-users",
    tag = "usage",
    params(UsageParams),
    responses(
        (status = 200, description = "top users", body = TopUsersJson),
        (status = 400, description = "a bad parameter", body = ErrorBody),
        (status = 401, description = "no or wrong admin token", body = ErrorBody),
    )
)]
async fn top_users(
    State(state): State<Arc<AppState>>,
    AdminQuery(params): AdminQuery<UsageParams>,
) -> Result<Json<TopUsersJson>, AdminError> {
    let query = params.validate(state.queries.buckets())?;
    let (top, mut names) = top(&state, &query).await?;
    Ok(Json(TopUsersJson {
        range: RangeJson::of(&query),
        users: top
            .into_iter()
            .map(|user| UserJson {
                name: user.user_id.as_ref().and_then(|id| names.remove(id)),
                user_id: user.user_id,
                totals: user.totals.into(),
            })
            .collect(),
    }))
}

/// One user's series.
#[derive(Debug, Serialize, ToSchema)]
pub(super) struct UserSeriesJson {
    /// As in the top users.
    user_id: Option<String>,
    name: Option<String>,
    /// Every bucket of the range, zeros included.
    buckets: Vec<BucketJson>,
}

/// The top users' series.
#[derive(Debug, Serialize, ToSchema)]
pub(super) struct TopUsersSeriesJson {
    #[serde(flatten)]
    range: RangeJson,
    series: Vec<UserSeriesJson>,
}

/// A bucket series for each of the top users of the range (every bucket, zeros included).
#[utoipa::path(
    get,
    path = "/admin/usage/top-users/series",
    tag = "usage",
    params(UsageParams),
    responses(
        (status = 200, description = "the top users' series", body = TopUsersSeriesJson),
        (status = 400, description = "a bad parameter", body = ErrorBody),
        (status = 401, description = "no or wrong admin token", body = ErrorBody),
    )
)]
async fn top_users_series(
    State(state): State<Arc<AppState>>,
    AdminQuery(params): AdminQuery<UsageParams>,
) -> Result<Json<TopUsersSeriesJson>, AdminError> {
    let query = params.validate(state.queries.buckets())?;
    // One answer holds at most MAX_BUCKETS buckets, whichever way they are split.
    let most = u64::try_from(MAX_BUCKETS / query.buckets.max(1)).unwrap_or(u64::MAX);
    if query.limit > most {
        return Err(AdminError::bad(
            "limit",
            format!(
                "{} users × {} buckets is more than the {MAX_BUCKETS} buckets an answer may \
                 hold: set limit to at most {most}, or choose a wider bucket type or a \
                 shorter range",
                query.limit, query.buckets
            ),
        ));
    }
    let (top, mut names) = top(&state, &query).await?;
    let ids: Vec<Option<String>> = top.into_iter().map(|user| user.user_id).collect();
    let series = state
        .queries
        .user_series(&query.range, &query.filter, &ids)
        .await?;
    Ok(Json(TopUsersSeriesJson {
        range: RangeJson::of(&query),
        series: series
            .into_iter()
            .map(|(user_id, series)| UserSeriesJson {
                name: user_id.as_ref().and_then(|id| names.remove(id)),
                user_id,
                buckets: buckets_json(series),
            })
            .collect(),
    }))
}

/// The routes of this module.
pub(super) fn routes() -> OpenApiRouter<Arc<AppState>> {
    OpenApiRouter::new()
        .routes(routes!(usage))
        .routes(routes!(top_users))
        .routes(routes!(top_users_series))
}
