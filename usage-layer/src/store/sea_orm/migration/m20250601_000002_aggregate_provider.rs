//! `provider` on `usage_aggregates`: Plan and Bedrock usage in separate buckets (R3).

use sea_orm_migration::prelude::*;
use sea_orm_migration::sea_orm::DbBackend;
use sea_orm_migration::sea_orm::prelude::Uuid;

use super::rollback;

/// Adds `provider` (existing rows: `bedrock`), makes the bucket key
/// (bucket_type, bucket_start, user_id, access_key_id, provider) unique, adds the lookup index.
#[derive(Clone, Copy, Debug, DeriveMigrationName)]
pub(super) struct Migration;

#[derive(DeriveIden)]
enum UsageAggregates {
    Table,
    AccessKeyId,
    Provider,
}

pub(super) const ROLLBACK: &str = "usage_aggregates_provider_rollback";
const LEGACY_KEY: &str = "ux_usage_aggregates_bucket";
const KEY: &str = "ux_usage_aggregates_bucket_provider";
const LOOKUP: &str = "ix_usage_aggregates_provider_lookup";

/// "No access key" in an aggregate key: NULLs are distinct in a unique index, so a NULL
/// would make every upsert of a key-less bucket insert a new row.
fn no_key() -> SimpleExpr {
    Expr::value(Uuid::nil())
}

async fn run(manager: &SchemaManager<'_>, sql: &str) -> Result<(), DbErr> {
    manager.get_connection().execute_unprepared(sql).await?;
    Ok(())
}

#[sea_orm_migration::async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter()
                    .table(UsageAggregates::Table)
                    .add_column(
                        ColumnDef::new(UsageAggregates::Provider)
                            .string_len(32)
                            .not_null()
                            .default("bedrock"),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .exec_stmt(
                Query::update()
                    .table(UsageAggregates::Table)
                    .value(UsageAggregates::AccessKeyId, no_key())
                    .and_where(Expr::col(UsageAggregates::AccessKeyId).is_null())
                    .to_owned(),
            )
            .await?;
        if manager.get_database_backend() == DbBackend::Postgres {
            // SQLite cannot change a column's nullability in place; the store never writes NULL.
            run(
                manager,
                "ALTER TABLE usage_aggregates ALTER COLUMN access_key_id SET NOT NULL",
            )
            .await?;
        }
        manager
            .drop_index(
                Index::drop()
                    .name(LEGACY_KEY)
                    .table(UsageAggregates::Table)
                    .to_owned(),
            )
            .await?;
        run(
            manager,
            &format!(
                "CREATE UNIQUE INDEX {KEY} ON usage_aggregates \
                 (bucket_type, bucket_start, user_id, access_key_id, provider)"
            ),
        )
        .await?;
        run(
            manager,
            &format!(
                "CREATE INDEX {LOOKUP} ON usage_aggregates (bucket_type, provider, bucket_start)"
            ),
        )
        .await?;
        rollback::take_back_rows(manager, "usage_aggregates", ROLLBACK).await
    }

    /// Plan (and any non-Bedrock) rows cannot live in the legacy table without merging
    /// into Bedrock's buckets: they are set aside and come back with the next `up`.
    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        rollback::set_aside_rows(
            manager,
            "usage_aggregates",
            "provider <> 'bedrock'",
            ROLLBACK,
        )
        .await?;
        manager
            .drop_index(
                Index::drop()
                    .name(LOOKUP)
                    .table(UsageAggregates::Table)
                    .to_owned(),
            )
            .await?;
        manager
            .drop_index(
                Index::drop()
                    .name(KEY)
                    .table(UsageAggregates::Table)
                    .to_owned(),
            )
            .await?;
        if manager.get_database_backend() == DbBackend::Postgres {
            run(
                manager,
                "ALTER TABLE usage_aggregates ALTER COLUMN access_key_id DROP NOT NULL",
            )
            .await?;
        }
        manager
            .exec_stmt(
                Query::update()
                    .table(UsageAggregates::Table)
                    .value(UsageAggregates::AccessKeyId, Option::<Uuid>::None)
                    .and_where(Expr::col(UsageAggregates::AccessKeyId).eq(no_key()))
                    .to_owned(),
            )
            .await?;
        manager
            .alter_table(
                Table::alter()
                    .table(UsageAggregates::Table)
                    .drop_column(UsageAggregates::Provider)
                    .to_owned(),
            )
            .await?;
        run(
            manager,
            &format!(
                "CREATE UNIQUE INDEX {LEGACY_KEY} ON usage_aggregates \
                 (bucket_type, bucket_start, user_id, access_key_id)"
            ),
        )
        .await
    }

    fn use_transaction(&self) -> Option<bool> {
        Some(true)
    }
}
