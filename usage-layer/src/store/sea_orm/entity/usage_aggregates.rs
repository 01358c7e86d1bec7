//! `usage_aggregates`: sums per bucket, user, access key and provider.

use sea_orm::entity::prelude::*;

/// The sums of one bucket for one (user, access key, provider).
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "usage_aggregates")]
pub struct Model {
    /// Row id.
    #[sea_orm(primary_key)]
    pub id: i64,
    /// `minute`, `hour`, `day`, `week` or `month`.
    pub bucket_type: String,
    /// The bucket's start (UTC instant of its local start).
    pub bucket_start: DateTimeUtc,
    /// The user; `""` for "no user".
    pub user_id: String,
    /// The access key; `""` for "no key" (a NULL would defeat the unique key).
    pub access_key_id: String,
    /// `plan`, `bedrock`, …
    pub provider: String,
    /// Requests.
    pub total_requests: i64,
    /// Uncached input tokens.
    pub total_input_tokens: i64,
    /// Output tokens.
    pub total_output_tokens: i64,
    /// Input + output tokens (no cache tokens).
    pub total_tokens: i64,
    /// Cache read tokens.
    pub total_cache_read_tokens: i64,
    /// Cache write tokens.
    pub total_cache_write_tokens: i64,
    /// Cost, micro-USD.
    pub total_estimated_cost_micros: i64,
    /// The uncached input tokens' part of the cost, micro-USD.
    pub total_cost_input_micros: i64,
    /// The output tokens' part.
    pub total_cost_output_micros: i64,
    /// The cache writes' part.
    pub total_cost_cache_write_micros: i64,
    /// The cache reads' part.
    pub total_cost_cache_read_micros: i64,
}

/// No relations.
#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
