//! The usage tables as the original system had them before providers were separated.
//!
//! The original system's first migration also created its users and access keys; those
//! are the reference server's tables, created by its own migrations.

use sea_orm_migration::prelude::*;
use sea_orm_migration::schema::*;

use super::rollback;

/// Creates `token_usage` and `usage_aggregates` (without `provider`).
#[derive(Clone, Copy, Debug, DeriveMigrationName)]
pub(super) struct Migration;

#[derive(DeriveIden)]
enum TokenUsage {
    Table,
    Id,
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
}

#[derive(DeriveIden)]
enum UsageAggregates {
    Table,
    Id,
    BucketType,
    BucketStart,
    UserId,
    AccessKeyId,
    TotalRequests,
    TotalInputTokens,
    TotalOutputTokens,
    TotalTokens,
    TotalCacheReadTokens,
    TotalCacheWriteTokens,
    TotalEstimatedCostMicros,
}

fn count<T: IntoIden>(column: T) -> ColumnDef {
    big_integer(column).default(0).take()
}

/// `token_usage`, and where a rollback sets it aside.
pub(super) const TOKEN_USAGE: (&str, &str) = ("token_usage", "token_usage_rollback");
/// `usage_aggregates`, and where a rollback sets it aside.
pub(super) const USAGE_AGGREGATES: (&str, &str) = ("usage_aggregates", "usage_aggregates_rollback");

/// The tables of this migration, in creation order.
const TABLES: [(&str, &str); 2] = [TOKEN_USAGE, USAGE_AGGREGATES];

#[sea_orm_migration::async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for (table, rollback) in TABLES {
            // A table an earlier rollback set aside comes back as it was.
            if !rollback::take_back_table(manager, table, rollback).await? {
                create(manager, table).await?;
            }
        }
        Ok(())
    }

    /// Sets every table aside (renamed to `*_rollback`): rolling back never deletes usage.
    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for (table, rollback) in TABLES.into_iter().rev() {
            rollback::set_aside_table(manager, table, rollback).await?;
        }
        Ok(())
    }

    fn use_transaction(&self) -> Option<bool> {
        Some(true)
    }
}

async fn create(manager: &SchemaManager<'_>, table: &str) -> Result<(), DbErr> {
    if table == TOKEN_USAGE.0 {
        create_token_usage(manager).await
    } else {
        create_usage_aggregates(manager).await
    }
}

async fn index<C: IntoIden + 'static>(
    manager: &SchemaManager<'_>,
    name: &str,
    table: impl IntoIden,
    columns: impl IntoIterator<Item = C>,
    unique: bool,
) -> Result<(), DbErr> {
    let mut index = Index::create();
    index.name(name).table(table);
    for column in columns {
        index.col(column);
    }
    if unique {
        index.unique();
    }
    manager.create_index(index.to_owned()).await
}

/// The ledger: one row per request. No foreign keys: usage outlives users and keys.
async fn create_token_usage(manager: &SchemaManager<'_>) -> Result<(), DbErr> {
    manager
        .create_table(
            Table::create()
                .table(TokenUsage::Table)
                .col(big_pk_auto(TokenUsage::Id))
                .col(uuid_uniq(TokenUsage::RequestId))
                .col(timestamp_with_time_zone(TokenUsage::Timestamp))
                .col(uuid_null(TokenUsage::UserId))
                .col(uuid_null(TokenUsage::AccessKeyId))
                .col(text(TokenUsage::Model))
                .col(string_len(TokenUsage::Provider, 32).default("bedrock"))
                .col(count(TokenUsage::InputTokens))
                .col(count(TokenUsage::OutputTokens))
                .col(count(TokenUsage::CacheReadInputTokens))
                .col(count(TokenUsage::CacheCreationInputTokens))
                .col(count(TokenUsage::TotalTokens))
                .col(count(TokenUsage::EstimatedCostMicros))
                .col(text_null(TokenUsage::PricingRegion))
                .col(text_null(TokenUsage::PricingModelId))
                .col(date_null(TokenUsage::PricingEffectiveDate))
                .col(big_integer_null(
                    TokenUsage::PricingInputPricePerMillionMicros,
                ))
                .col(big_integer_null(
                    TokenUsage::PricingOutputPricePerMillionMicros,
                ))
                .col(big_integer_null(
                    TokenUsage::PricingCacheWritePricePerMillionMicros,
                ))
                .col(big_integer_null(
                    TokenUsage::PricingCacheReadPricePerMillionMicros,
                ))
                .to_owned(),
        )
        .await?;
    index(
        manager,
        "ix_token_usage_timestamp",
        TokenUsage::Table,
        [TokenUsage::Timestamp],
        false,
    )
    .await?;
    index(
        manager,
        "ix_token_usage_user_timestamp",
        TokenUsage::Table,
        [TokenUsage::UserId, TokenUsage::Timestamp],
        false,
    )
    .await
}

async fn create_usage_aggregates(manager: &SchemaManager<'_>) -> Result<(), DbErr> {
    manager
        .create_table(
            Table::create()
                .table(UsageAggregates::Table)
                .col(big_pk_auto(UsageAggregates::Id))
                .col(string_len(UsageAggregates::BucketType, 8))
                .col(timestamp_with_time_zone(UsageAggregates::BucketStart))
                .col(uuid(UsageAggregates::UserId))
                .col(uuid_null(UsageAggregates::AccessKeyId))
                .col(count(UsageAggregates::TotalRequests))
                .col(count(UsageAggregates::TotalInputTokens))
                .col(count(UsageAggregates::TotalOutputTokens))
                .col(count(UsageAggregates::TotalTokens))
                .col(count(UsageAggregates::TotalCacheReadTokens))
                .col(count(UsageAggregates::TotalCacheWriteTokens))
                .col(count(UsageAggregates::TotalEstimatedCostMicros))
                .to_owned(),
        )
        .await?;
    index(
        manager,
        "ux_usage_aggregates_bucket",
        UsageAggregates::Table,
        [
            UsageAggregates::BucketType,
            UsageAggregates::BucketStart,
            UsageAggregates::UserId,
            UsageAggregates::AccessKeyId,
        ],
        true,
    )
    .await?;
    index(
        manager,
        "ix_usage_aggregates_user",
        UsageAggregates::Table,
        [
            UsageAggregates::UserId,
            UsageAggregates::BucketType,
            UsageAggregates::BucketStart,
        ],
        false,
    )
    .await
}
