//! The schema as the original system had it before providers were separated.

use sea_orm_migration::prelude::*;
use sea_orm_migration::schema::*;

use crate::rollback;

/// Creates users, access keys, `token_usage` and `usage_aggregates` (without `provider`).
#[derive(Clone, Copy, Debug, DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum Users {
    Table,
    Id,
    Name,
    IsActive,
    MonthlyBudgetMicros,
    RoutingStrategy,
    CreatedAt,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum AccessKeys {
    Table,
    Id,
    UserId,
    KeyHash,
    KeyPrefix,
    Name,
    IsActive,
    CreatedAt,
    RevokedAt,
    LastUsedAt,
}

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

/// The tables of this migration, in creation order.
const TABLES: [&str; 4] = ["users", "access_keys", "token_usage", "usage_aggregates"];

fn rollback_name(table: &str) -> String {
    format!("{table}_rollback")
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for table in TABLES {
            // A table an earlier rollback set aside comes back as it was.
            if !rollback::take_back_table(manager, table, &rollback_name(table)).await? {
                create(manager, table).await?;
            }
        }
        Ok(())
    }

    /// Sets every table aside (renamed to `*_rollback`): rolling back never deletes usage.
    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for table in TABLES.iter().rev() {
            rollback::set_aside_table(manager, table, &rollback_name(table)).await?;
        }
        Ok(())
    }

    fn use_transaction(&self) -> Option<bool> {
        Some(true)
    }
}

async fn create(manager: &SchemaManager<'_>, table: &str) -> Result<(), DbErr> {
    match table {
        "users" => create_users(manager).await,
        "access_keys" => create_access_keys(manager).await,
        "token_usage" => create_token_usage(manager).await,
        _ => create_usage_aggregates(manager).await,
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

async fn create_users(manager: &SchemaManager<'_>) -> Result<(), DbErr> {
    manager
        .create_table(
            Table::create()
                .table(Users::Table)
                .col(uuid(Users::Id).primary_key())
                .col(text(Users::Name))
                .col(boolean(Users::IsActive).default(true))
                .col(big_integer_null(Users::MonthlyBudgetMicros))
                .col(string_len(Users::RoutingStrategy, 32).default("plan_first"))
                .col(timestamp_with_time_zone(Users::CreatedAt))
                .col(timestamp_with_time_zone(Users::UpdatedAt))
                .to_owned(),
        )
        .await
}

async fn create_access_keys(manager: &SchemaManager<'_>) -> Result<(), DbErr> {
    manager
        .create_table(
            Table::create()
                .table(AccessKeys::Table)
                .col(uuid(AccessKeys::Id).primary_key())
                .col(uuid(AccessKeys::UserId))
                .col(string_len_uniq(AccessKeys::KeyHash, 64))
                .col(string_len(AccessKeys::KeyPrefix, 16))
                .col(text_null(AccessKeys::Name))
                .col(boolean(AccessKeys::IsActive).default(true))
                .col(timestamp_with_time_zone(AccessKeys::CreatedAt))
                .col(timestamp_with_time_zone_null(AccessKeys::RevokedAt))
                .col(timestamp_with_time_zone_null(AccessKeys::LastUsedAt))
                .foreign_key(
                    ForeignKey::create()
                        .from(AccessKeys::Table, AccessKeys::UserId)
                        .to(Users::Table, Users::Id)
                        .on_delete(ForeignKeyAction::Cascade),
                )
                .to_owned(),
        )
        .await?;
    index(
        manager,
        "ix_access_keys_user",
        AccessKeys::Table,
        [AccessKeys::UserId],
        false,
    )
    .await
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
