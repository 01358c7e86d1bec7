//! What this system records beyond the original: 1-hour cache writes, cost components,
//! the unpriced flag, outcome, timings and routing details.

use sea_orm_migration::prelude::*;
use sea_orm_migration::schema::*;

use super::rollback;

/// Adds the detail columns to `token_usage`.
#[derive(Clone, Copy, Debug, DeriveMigrationName)]
pub(super) struct Migration;

#[derive(Clone, Copy, DeriveIden)]
enum TokenUsage {
    #[sea_orm(iden = "cache_write_5m_tokens")]
    CacheWrite5mTokens,
    #[sea_orm(iden = "cache_write_1h_tokens")]
    CacheWrite1hTokens,
    #[sea_orm(iden = "pricing_cache_write_1h_price_per_million_micros")]
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
}

pub(super) const ROLLBACK: &str = "token_usage_details_rollback";

fn columns() -> Vec<ColumnDef> {
    use TokenUsage::*;
    let zero = |column| big_integer(column).default(0).take();
    vec![
        big_integer_null(CacheWrite5mTokens),
        big_integer_null(CacheWrite1hTokens),
        big_integer_null(PricingCacheWrite1hPricePerMillionMicros),
        zero(CostInputMicros),
        zero(CostOutputMicros),
        zero(CostCacheWriteMicros),
        zero(CostCacheReadMicros),
        boolean(Unpriced).default(false).take(),
        text_null(RequestedModel),
        text_null(ServedModel),
        text_null(Region),
        string_len(Outcome, 32).default("completed").take(),
        integer_null(StatusCode),
        boolean(Streaming).default(false).take(),
        string_len_null(FallbackFrom, 32),
        text_null(FallbackReason),
        text_null(ErrorType),
        text_null(StopReason),
        big_integer_null(TimeToFirstByteMs),
        zero(DurationMs),
        zero(ResponseBytes),
    ]
}

#[sea_orm_migration::async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        rollback::add_columns(manager, "token_usage", "request_id", columns(), ROLLBACK).await
    }

    /// The detail columns are kept aside (by `request_id`) and come back with the next `up`.
    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        rollback::set_aside_columns(manager, "token_usage", "request_id", &columns(), ROLLBACK)
            .await
    }

    fn use_transaction(&self) -> Option<bool> {
        Some(true)
    }
}
