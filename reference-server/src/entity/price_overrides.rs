//! `price_overrides`: prices set through the admin API, over the built-in ones.

use sea_orm::entity::prelude::*;

/// One model's prices for one provider and region, from a date on, in micro-USD per
/// million tokens.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "price_overrides")]
pub struct Model {
    /// Id.
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    /// `plan`, `bedrock`, …
    pub provider: String,
    /// The region (`global` for Plan).
    pub region: String,
    /// The normalised model id (`claude-sonnet-4-5`).
    pub model: String,
    /// The first day these prices apply.
    pub effective_date: Date,
    /// Uncached input.
    pub input_per_million_micros: i64,
    /// Output.
    pub output_per_million_micros: i64,
    /// Cache writes, 5-minute TTL.
    pub cache_write_5m_per_million_micros: i64,
    /// Cache writes, 1-hour TTL.
    pub cache_write_1h_per_million_micros: i64,
    /// Cache reads.
    pub cache_read_per_million_micros: i64,
    /// Created.
    pub created_at: DateTimeUtc,
    /// Last changed.
    pub updated_at: DateTimeUtc,
}

/// Relations: none.
#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
