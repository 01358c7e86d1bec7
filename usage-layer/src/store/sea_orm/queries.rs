//! Reading usage back: bucket series, totals, budgets, top users, cost breakdown.
//!
//! **The range rule.** Every query takes a [`BucketRange`]: whole buckets of one type.
//! Series and totals read the `usage_aggregates` rows whose `bucket_start` lies in
//! `[range.start, range.end)`; the cost breakdown reads the `token_usage` rows whose
//! `timestamp` lies in the same `[range.start, range.end)`. Because the range is made of
//! whole buckets and a row is counted in the bucket holding its `timestamp`, both select
//! exactly the same requests: totals and breakdown always agree.

use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use sea_orm::sea_query::{
    Alias, Expr, ExprTrait, Func, IntoColumnRef, Order, Query, SelectStatement,
};
use sea_orm::{ConnectionTrait, DatabaseConnection, FromQueryResult, QueryResult};

use super::StoreError;
use super::entity::{token_usage, usage_aggregates};
use crate::record::Provider;
use crate::store::buckets::{BucketType, Buckets};

/// Which usage to read; every field left `None` means "all".
///
/// Ids are compared as the records had them (exactly: a UUID as the text it was
/// recorded in). An empty id selects the usage recorded without one.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct UsageFilter {
    /// Only this provider's usage (R6); `None` sums all providers.
    pub provider: Option<Provider>,
    /// Only this user's usage.
    pub user_id: Option<String>,
    /// Only this access key's usage.
    pub access_key_id: Option<String>,
}

/// Whole buckets of one type: `[start, end)`, both bucket boundaries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BucketRange {
    kind: BucketType,
    start: DateTime<Utc>,
    end: DateTime<Utc>,
}

impl BucketRange {
    /// The `kind` buckets that overlap `[from, to)`: from the start of the bucket holding
    /// `from` to the end of the bucket holding the last instant before `to`.
    pub fn new(
        buckets: &Buckets,
        kind: BucketType,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> Self {
        let start = buckets.start(kind, from);
        let last = Ord::max(
            buckets.start(kind, to - chrono::Duration::nanoseconds(1)),
            start,
        );
        Self {
            kind,
            start,
            end: buckets.next(kind, last),
        }
    }

    /// The bucket type.
    pub fn kind(&self) -> BucketType {
        self.kind
    }

    /// The first bucket's start.
    pub fn start(&self) -> DateTime<Utc> {
        self.start
    }

    /// The end of the last bucket (exclusive).
    pub fn end(&self) -> DateTime<Utc> {
        self.end
    }
}

/// Sums over some requests.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Totals {
    /// Requests.
    pub requests: i64,
    /// Uncached input tokens.
    pub input_tokens: i64,
    /// Output tokens.
    pub output_tokens: i64,
    /// Input + output tokens (no cache tokens, as in the original system).
    pub total_tokens: i64,
    /// Cache read tokens.
    pub cache_read_tokens: i64,
    /// Cache write tokens.
    pub cache_write_tokens: i64,
    /// Cost, micro-USD.
    pub cost_micros: i64,
    /// The uncached input tokens' part of the cost, micro-USD.
    pub cost_input_micros: i64,
    /// The output tokens' part.
    pub cost_output_micros: i64,
    /// The cache writes' part.
    pub cost_cache_write_micros: i64,
    /// The cache reads' part.
    pub cost_cache_read_micros: i64,
}

impl Totals {
    /// The cost in USD, 6 decimal places.
    pub fn cost_usd(&self) -> Decimal {
        Decimal::new(self.cost_micros, 6)
    }

    fn add(&mut self, other: &Totals) {
        self.requests += other.requests;
        self.input_tokens += other.input_tokens;
        self.output_tokens += other.output_tokens;
        self.total_tokens += other.total_tokens;
        self.cache_read_tokens += other.cache_read_tokens;
        self.cache_write_tokens += other.cache_write_tokens;
        self.cost_micros += other.cost_micros;
        self.cost_input_micros += other.cost_input_micros;
        self.cost_output_micros += other.cost_output_micros;
        self.cost_cache_write_micros += other.cost_cache_write_micros;
        self.cost_cache_read_micros += other.cost_cache_read_micros;
    }

    fn read(row: &QueryResult) -> Result<Self, StoreError> {
        let get = |name: &str| row.try_get::<i64>("", name);
        Ok(Totals {
            requests: get("requests")?,
            input_tokens: get("input_tokens")?,
            output_tokens: get("output_tokens")?,
            total_tokens: get("total_tokens")?,
            cache_read_tokens: get("cache_read_tokens")?,
            cache_write_tokens: get("cache_write_tokens")?,
            cost_micros: get("cost_micros")?,
            cost_input_micros: get("cost_input_micros")?,
            cost_output_micros: get("cost_output_micros")?,
            cost_cache_write_micros: get("cost_cache_write_micros")?,
            cost_cache_read_micros: get("cost_cache_read_micros")?,
        })
    }
}

/// One user's totals.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UserTotals {
    /// The user; `None` for the usage recorded without one.
    pub user_id: Option<String>,
    /// Their totals.
    pub totals: Totals,
}

/// The usage and cost of one pricing model (from `token_usage`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ModelCost {
    /// The provider.
    pub provider: String,
    /// The price catalog key; `None` for unpriced rows.
    pub pricing_model_id: Option<String>,
    /// Sums of the rows.
    pub totals: Totals,
    /// Input cost, micro-USD.
    pub cost_input_micros: i64,
    /// Output cost, micro-USD.
    pub cost_output_micros: i64,
    /// Cache write cost, micro-USD.
    pub cost_cache_write_micros: i64,
    /// Cache read cost, micro-USD.
    pub cost_cache_read_micros: i64,
}

/// How many requests of one provider ended one way.
/// Ordered by its fields, in their order.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, FromQueryResult)]
pub struct OutcomeCount {
    /// The provider.
    pub provider: String,
    /// How they ended: `completed`, `client_disconnected`, `upstream_error`, …
    pub outcome: String,
    /// Requests.
    pub requests: i64,
}

/// The requests one provider served after another failed, for one reason.
/// Ordered by its fields, in their order.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, FromQueryResult)]
pub struct FallbackCount {
    /// The provider that served.
    pub provider: String,
    /// The provider tried first.
    pub from: String,
    /// Why it was left (`rate_limited`, …); `None` where none was recorded.
    pub reason: Option<String>,
    /// Requests.
    pub requests: i64,
}

/// A model recorded without a price: its rows cost 0 until they are repriced.
/// Ordered by its fields, in their order.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, FromQueryResult)]
pub struct UnpricedModel {
    /// The provider.
    pub provider: String,
    /// The model as recorded.
    pub model: String,
    /// Requests.
    pub requests: i64,
    /// Uncached input tokens.
    pub input_tokens: i64,
    /// Output tokens.
    pub output_tokens: i64,
}

/// How the requests of a range ended (from the rows; see [`UsageQueries::outcomes`]).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Outcomes {
    /// Requests per provider and outcome, ordered by provider then outcome.
    pub outcomes: Vec<OutcomeCount>,
    /// Fallbacks per serving provider, first provider and reason (in that order).
    pub fallbacks: Vec<FallbackCount>,
    /// Models recorded without a price, ordered by provider then model.
    pub unpriced: Vec<UnpricedModel>,
}

/// `CAST(COALESCE(SUM(column), 0) AS BIGINT)`: Postgres sums `BIGINT` into `NUMERIC`.
fn sum(column: impl IntoColumnRef) -> Expr {
    Func::cast_as(
        Func::coalesce([Func::sum(Expr::col(column)).into(), Expr::val(0)]),
        Alias::new("BIGINT"),
    )
    .into()
}

/// The columns a [`Totals`] is summed from, for each table.
fn select_totals(query: &mut SelectStatement, table: Table) {
    match table {
        Table::Aggregates => {
            use usage_aggregates::Column::*;
            query
                .expr_as(sum(TotalRequests), "requests")
                .expr_as(sum(TotalInputTokens), "input_tokens")
                .expr_as(sum(TotalOutputTokens), "output_tokens")
                .expr_as(sum(TotalTokens), "total_tokens")
                .expr_as(sum(TotalCacheReadTokens), "cache_read_tokens")
                .expr_as(sum(TotalCacheWriteTokens), "cache_write_tokens")
                .expr_as(sum(TotalEstimatedCostMicros), "cost_micros")
                .expr_as(sum(TotalCostInputMicros), "cost_input_micros")
                .expr_as(sum(TotalCostOutputMicros), "cost_output_micros")
                .expr_as(sum(TotalCostCacheWriteMicros), "cost_cache_write_micros")
                .expr_as(sum(TotalCostCacheReadMicros), "cost_cache_read_micros");
        }
        Table::Rows => {
            use token_usage::Column::*;
            query
                .expr_as(
                    Func::cast_as(Func::count(Expr::col(Id)), Alias::new("BIGINT")),
                    "requests",
                )
                .expr_as(sum(InputTokens), "input_tokens")
                .expr_as(sum(OutputTokens), "output_tokens")
                .expr_as(sum(TotalTokens), "total_tokens")
                .expr_as(sum(CacheReadInputTokens), "cache_read_tokens")
                .expr_as(sum(CacheCreationInputTokens), "cache_write_tokens")
                .expr_as(sum(EstimatedCostMicros), "cost_micros")
                .expr_as(sum(CostInputMicros), "cost_input_micros")
                .expr_as(sum(CostOutputMicros), "cost_output_micros")
                .expr_as(sum(CostCacheWriteMicros), "cost_cache_write_micros")
                .expr_as(sum(CostCacheReadMicros), "cost_cache_read_micros");
        }
    }
}

#[derive(Clone, Copy)]
enum Table {
    Aggregates,
    Rows,
}

/// Reads what a [`SeaOrmStore`](super::SeaOrmStore) wrote.
#[derive(Clone, Debug)]
pub struct UsageQueries {
    db: DatabaseConnection,
    buckets: Buckets,
}

impl UsageQueries {
    /// Queries on `db`, with the buckets the data was written with.
    pub fn new(db: DatabaseConnection, buckets: Buckets) -> Self {
        Self { db, buckets }
    }

    /// The buckets.
    pub fn buckets(&self) -> &Buckets {
        &self.buckets
    }

    /// A range of whole `kind` buckets overlapping `[from, to)` (see [`BucketRange::new`]).
    pub fn range(&self, kind: BucketType, from: DateTime<Utc>, to: DateTime<Utc>) -> BucketRange {
        BucketRange::new(&self.buckets, kind, from, to)
    }

    /// The aggregates of the range and filter, before any grouping or summing.
    fn aggregates(range: &BucketRange, filter: &UsageFilter) -> SelectStatement {
        use usage_aggregates::Column::*;
        let mut query = Query::select();
        query
            .from(usage_aggregates::Entity)
            .and_where(Expr::col(BucketType).eq(range.kind.as_str()))
            .and_where(Expr::col(BucketStart).gte(range.start))
            .and_where(Expr::col(BucketStart).lt(range.end));
        apply_filter(
            &mut query,
            filter,
            Table::Aggregates,
            [Provider, UserId, AccessKeyId],
        );
        select_totals(&mut query, Table::Aggregates);
        query
    }

    /// Sums per bucket, one entry for **every** bucket of the range (zeros included).
    pub async fn series(
        &self,
        range: &BucketRange,
        filter: &UsageFilter,
    ) -> Result<Vec<(DateTime<Utc>, Totals)>, StoreError> {
        let mut query = Self::aggregates(range, filter);
        query
            .column(usage_aggregates::Column::BucketStart)
            .group_by_col(usage_aggregates::Column::BucketStart);
        let mut found = std::collections::HashMap::new();
        for row in self.db.query_all(&query).await? {
            let start: DateTime<Utc> = row.try_get("", "bucket_start")?;
            found.insert(start, Totals::read(&row)?);
        }
        Ok(self
            .buckets
            .series(range.kind, range.start, range.end)
            .map(|start| (start, found.remove(&start).unwrap_or_default()))
            .collect())
    }

    /// Sums over the whole range.
    pub async fn totals(
        &self,
        range: &BucketRange,
        filter: &UsageFilter,
    ) -> Result<Totals, StoreError> {
        let query = Self::aggregates(range, filter);
        match self.db.query_one(&query).await? {
            Some(row) => Totals::read(&row),
            None => Ok(Totals::default()),
        }
    }

    /// One user's usage of `provider` in the calendar month (in the buckets' zone)
    /// holding `at` — the budget reads `bedrock` only.
    pub async fn monthly_total(
        &self,
        user_id: &str,
        provider: &Provider,
        at: DateTime<Utc>,
    ) -> Result<Totals, StoreError> {
        let range = self.range(BucketType::Month, at, at + chrono::Duration::nanoseconds(1));
        let filter = UsageFilter {
            provider: Some(provider.clone()),
            user_id: Some(user_id.to_owned()),
            access_key_id: None,
        };
        self.totals(&range, &filter).await
    }

    /// The users with the highest cost (then most tokens) over the range.
    pub async fn top_users(
        &self,
        range: &BucketRange,
        filter: &UsageFilter,
        limit: u64,
    ) -> Result<Vec<UserTotals>, StoreError> {
        let mut query = Self::aggregates(range, filter);
        query
            .column(usage_aggregates::Column::UserId)
            .group_by_col(usage_aggregates::Column::UserId)
            .order_by_expr(
                sum(usage_aggregates::Column::TotalEstimatedCostMicros),
                Order::Desc,
            )
            .order_by_expr(sum(usage_aggregates::Column::TotalTokens), Order::Desc)
            .order_by(usage_aggregates::Column::UserId, Order::Asc)
            .limit(limit);
        self.db
            .query_all(&query)
            .await?
            .iter()
            .map(|row| {
                let user_id: String = row.try_get("", "user_id")?;
                Ok(UserTotals {
                    user_id: (!user_id.is_empty()).then_some(user_id),
                    totals: Totals::read(row)?,
                })
            })
            .collect()
    }

    /// A zero-filled series for each of `users` (`None`: the usage without a user), in
    /// the order given.
    pub async fn user_series(
        &self,
        range: &BucketRange,
        filter: &UsageFilter,
        users: &[Option<String>],
    ) -> Result<Vec<(Option<String>, Vec<(DateTime<Utc>, Totals)>)>, StoreError> {
        let mut series = Vec::with_capacity(users.len());
        for user in users {
            let filter = UsageFilter {
                user_id: Some(user.clone().unwrap_or_default()),
                ..filter.clone()
            };
            series.push((user.clone(), self.series(range, &filter).await?));
        }
        Ok(series)
    }

    /// Usage and cost per (provider, pricing model), from the rows (see the range rule).
    pub async fn cost_breakdown(
        &self,
        range: &BucketRange,
        filter: &UsageFilter,
    ) -> Result<Vec<ModelCost>, StoreError> {
        use token_usage::Column::*;
        let mut query = Query::select();
        query
            .from(token_usage::Entity)
            .column(Provider)
            .column(PricingModelId)
            .expr_as(sum(CostInputMicros), "cost_input_micros")
            .expr_as(sum(CostOutputMicros), "cost_output_micros")
            .expr_as(sum(CostCacheWriteMicros), "cost_cache_write_micros")
            .expr_as(sum(CostCacheReadMicros), "cost_cache_read_micros")
            .and_where(Expr::col(Timestamp).gte(range.start))
            .and_where(Expr::col(Timestamp).lt(range.end))
            .group_by_col(Provider)
            .group_by_col(PricingModelId)
            .order_by(Provider, Order::Asc)
            .order_by(PricingModelId, Order::Asc);
        select_totals(&mut query, Table::Rows);
        apply_filter(
            &mut query,
            filter,
            Table::Rows,
            [Provider, UserId, AccessKeyId],
        );
        self.db
            .query_all(&query)
            .await?
            .iter()
            .map(|row| {
                Ok(ModelCost {
                    provider: row.try_get("", "provider")?,
                    pricing_model_id: row.try_get("", "pricing_model_id")?,
                    totals: Totals::read(row)?,
                    cost_input_micros: row.try_get("", "cost_input_micros")?,
                    cost_output_micros: row.try_get("", "cost_output_micros")?,
                    cost_cache_write_micros: row.try_get("", "cost_cache_write_micros")?,
                    cost_cache_read_micros: row.try_get("", "cost_cache_read_micros")?,
                })
            })
            .collect::<Result<Vec<_>, StoreError>>()
            // One order on every backend (they sort NULLs differently): unpriced last.
            .map(|mut costs| {
                costs.sort_by(|a, b| {
                    (
                        &a.provider,
                        a.pricing_model_id.is_none(),
                        &a.pricing_model_id,
                    )
                        .cmp(&(
                            &b.provider,
                            b.pricing_model_id.is_none(),
                            &b.pricing_model_id,
                        ))
                });
                costs
            })
    }
}

impl UsageQueries {
    /// How the range's requests ended, which fell back and which were recorded without
    /// a price — from the rows (the aggregates hold none of it), by the range rule.
    ///
    /// Each reads an index of usage migration 6: the outcomes the
    /// `(timestamp, provider, outcome)` index alone, the fallbacks and the unpriced rows
    /// their partial indexes, so a long range costs one pass over an index and the few
    /// rows that fell back or have no price.
    pub async fn outcomes(
        &self,
        range: &BucketRange,
        filter: &UsageFilter,
    ) -> Result<Outcomes, StoreError> {
        use super::migration::m20261204_000006_breakdown_indexes::{FALLBACK, UNPRICED};
        use token_usage::Column::*;
        // The range's rows (narrowed by `only`, a partial index's condition), per provider.
        let per_provider = |only: Option<&str>| {
            let mut query = Query::select();
            query
                .from(token_usage::Entity)
                .column(Provider)
                .expr_as(count_rows(), "requests")
                .and_where(Expr::col(Timestamp).gte(range.start))
                .and_where(Expr::col(Timestamp).lt(range.end))
                .group_by_col(Provider);
            if let Some(condition) = only {
                query.and_where(Expr::cust(condition.to_owned()));
            }
            apply_filter(
                &mut query,
                filter,
                Table::Rows,
                [Provider, UserId, AccessKeyId],
            );
            query
        };
        let mut outcomes = per_provider(None);
        outcomes.column(Outcome).group_by_col(Outcome);
        let mut fallbacks = per_provider(Some(FALLBACK));
        fallbacks
            .expr_as(Expr::col(FallbackFrom), "from")
            .expr_as(Expr::col(FallbackReason), "reason")
            .group_by_columns([FallbackFrom, FallbackReason]);
        let mut unpriced = per_provider(Some(UNPRICED));
        unpriced
            .column(Model)
            .expr_as(sum(InputTokens), "input_tokens")
            .expr_as(sum(OutputTokens), "output_tokens")
            .group_by_col(Model);
        // Sorted here (by their fields' order), not in SQL: one order on every backend,
        // whose collations differ.
        Ok(Outcomes {
            outcomes: self.read_sorted(&outcomes).await?,
            fallbacks: self.read_sorted(&fallbacks).await?,
            unpriced: self.read_sorted(&unpriced).await?,
        })
    }

    async fn read_sorted<T: FromQueryResult + Ord>(
        &self,
        query: &SelectStatement,
    ) -> Result<Vec<T>, StoreError> {
        let mut found = self
            .db
            .query_all(query)
            .await?
            .iter()
            .map(|row| T::from_query_result(row, ""))
            .collect::<Result<Vec<T>, _>>()?;
        found.sort();
        Ok(found)
    }
}

impl<'a> std::iter::Sum<&'a Totals> for Totals {
    fn sum<I: Iterator<Item = &'a Totals>>(all: I) -> Totals {
        let mut sum = Totals::default();
        for totals in all {
            sum.add(totals);
        }
        sum
    }
}

/// `CAST(COUNT(*) AS BIGINT)` (SQLite and Postgres count in different integer types).
fn count_rows() -> Expr {
    Func::cast_as(Func::count(Expr::cust("*")), Alias::new("BIGINT")).into()
}

/// Narrows `query` by `filter`, on the given columns of its table.
fn apply_filter<C: IntoColumnRef + Copy>(
    query: &mut SelectStatement,
    filter: &UsageFilter,
    table: Table,
    [provider, user, key]: [C; 3],
) {
    if let Some(value) = &filter.provider {
        query.and_where(Expr::col(provider).eq(value.as_str()));
    }
    for (column, id) in [(user, &filter.user_id), (key, &filter.access_key_id)] {
        match (id.as_deref(), table) {
            (None, _) => {}
            // Nobody: NULL in the rows, `''` in the aggregates' key (never NULL).
            (Some(""), Table::Rows) => {
                query.and_where(Expr::col(column).is_null());
            }
            (Some(id), _) => {
                query.and_where(Expr::col(column).eq(id));
            }
        }
    }
}
