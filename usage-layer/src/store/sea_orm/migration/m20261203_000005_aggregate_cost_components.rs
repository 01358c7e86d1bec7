//! The cost components on `usage_aggregates` (input, output, cache write, cache read), so
//! a bucket's cost can be shown by component; filled from the rows for the buckets that
//! exist.
//!
//! The backfill needs no knowledge of the time zone the buckets were cut in: every row
//! was added to exactly one bucket of each type of its user, key and provider, and no row
//! lies between two buckets of a series (it would have made one), so a bucket's rows are
//! those from its start to the next bucket of the same series. Buckets without rows
//! (brought by `import-original` from a system that kept no components) keep zeros.

use sea_orm_migration::prelude::*;
use sea_orm_migration::schema::*;
use sea_orm_migration::sea_orm::ConnectionTrait;

use super::rollback;

/// Adds and fills the cost components of `usage_aggregates`.
#[derive(Clone, Copy, Debug, DeriveMigrationName)]
pub(super) struct Migration;

/// The new columns of `usage_aggregates`.
#[derive(Clone, Copy, DeriveIden)]
enum CostComponent {
    #[sea_orm(iden = "total_cost_input_micros")]
    Input,
    #[sea_orm(iden = "total_cost_output_micros")]
    Output,
    #[sea_orm(iden = "total_cost_cache_write_micros")]
    CacheWrite,
    #[sea_orm(iden = "total_cost_cache_read_micros")]
    CacheRead,
}

pub(super) const ROLLBACK: &str = "usage_aggregates_components_rollback";

fn columns() -> Vec<ColumnDef> {
    use CostComponent::*;
    [Input, Output, CacheWrite, CacheRead]
        .into_iter()
        .map(|column| big_integer(column).default(0).take())
        .collect()
}

/// The components, each summed from the bucket's rows.
const BACKFILL: &str = r#"
UPDATE usage_aggregates SET
    total_cost_input_micros = COALESCE((SELECT SUM(t.cost_input_micros) FROM token_usage t WHERE {rows}), 0),
    total_cost_output_micros = COALESCE((SELECT SUM(t.cost_output_micros) FROM token_usage t WHERE {rows}), 0),
    total_cost_cache_write_micros = COALESCE((SELECT SUM(t.cost_cache_write_micros) FROM token_usage t WHERE {rows}), 0),
    total_cost_cache_read_micros = COALESCE((SELECT SUM(t.cost_cache_read_micros) FROM token_usage t WHERE {rows}), 0)
"#;

/// The rows of the bucket being updated: of its series, from its start, and before any
/// later bucket of the series.
const BUCKET_ROWS: &str = "COALESCE(t.user_id, '') = usage_aggregates.user_id \
    AND COALESCE(t.access_key_id, '') = usage_aggregates.access_key_id \
    AND t.provider = usage_aggregates.provider \
    AND t.timestamp >= usage_aggregates.bucket_start \
    AND NOT EXISTS (SELECT 1 FROM usage_aggregates n \
        WHERE n.bucket_type = usage_aggregates.bucket_type \
        AND n.user_id = usage_aggregates.user_id \
        AND n.access_key_id = usage_aggregates.access_key_id \
        AND n.provider = usage_aggregates.provider \
        AND n.bucket_start > usage_aggregates.bucket_start \
        AND n.bucket_start <= t.timestamp)";

/// Sets every aggregate's cost components to the sums of its bucket's rows (the
/// migration's backfill; also for aggregates brought in without components, once their
/// rows are in).
pub async fn fill_cost_components<C: ConnectionTrait>(db: &C) -> Result<(), DbErr> {
    db.execute_unprepared(&BACKFILL.replace("{rows}", BUCKET_ROWS))
        .await
        .map(drop)
}

#[sea_orm_migration::async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        rollback::add_columns(manager, "usage_aggregates", "id", columns(), ROLLBACK).await?;
        fill_cost_components(manager.get_connection()).await
    }

    /// The components are kept aside (by `id`) and come back with the next `up` (which
    /// fills them from the rows again anyway).
    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        rollback::set_aside_columns(manager, "usage_aggregates", "id", &columns(), ROLLBACK).await
    }

    fn use_transaction(&self) -> Option<bool> {
        Some(true)
    }
}
