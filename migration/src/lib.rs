//! The usage-metering schema, as sea-orm migrations, for Postgres and SQLite.
//!
//! 1. [`m20250101_000001_legacy_schema`] — the schema as the original system had it
//!    *before* providers: users, access keys, `token_usage` with its price snapshot,
//!    `usage_aggregates` without `provider`. Kept as it was, so the upgrade path is
//!    tested with real legacy rows.
//! 2. [`m20250601_000002_aggregate_provider`] — `provider` on `usage_aggregates` (existing
//!    rows become `bedrock`), the unique key with the provider, the lookup index.
//! 3. [`m20251201_000003_usage_details`] — what this system records beyond the original:
//!    1-hour cache writes and their price, cost components, outcome, timings, labels.
//!
//! Every `down` keeps the data it cannot represent aside (in a `*_rollback` table) and
//! the next `up` puts it back, so `up → down → up` loses nothing.
//!
//! Money is stored as integer **micro-USD** (`*_micros`, `BIGINT`): exact on every
//! backend (SQLite has no exact decimal type) and summed exactly in SQL.
//!
//! Ids of "nobody" in `usage_aggregates`: the aggregate key columns are never NULL
//! (NULLs are distinct in a unique key, which would defeat the upsert); the nil UUID
//! stands for "no access key" / "no user".

// `MigrationTrait` is an `async_trait`: its methods must elide `SchemaManager`'s lifetime.
#![allow(elided_lifetimes_in_paths)]

pub use sea_orm_migration::prelude::*;

mod rollback;

pub mod m20250101_000001_legacy_schema;
pub mod m20250601_000002_aggregate_provider;
pub mod m20251201_000003_usage_details;

/// All migrations, in order.
#[derive(Clone, Copy, Debug)]
pub struct Migrator;

#[async_trait::async_trait]
impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![
            Box::new(m20250101_000001_legacy_schema::Migration),
            Box::new(m20250601_000002_aggregate_provider::Migration),
            Box::new(m20251201_000003_usage_details::Migration),
        ]
    }
}
