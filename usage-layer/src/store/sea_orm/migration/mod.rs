//! The usage tables' schema: sea-orm migrations that own `token_usage` and
//! `usage_aggregates`, and nothing else.
//!
//! [`UsageMigrator`] keeps its own tracking table, `usage_layer_migrations`, instead of
//! sea-orm's default `seaql_migrations`: it runs beside an application's own migrations
//! and tables, in the same database, and touches neither.
//!
//! ```no_run
//! use usage_layer::store::sea_orm::SeaOrmStore;
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let db = sea_orm::Database::connect(std::env::var("DATABASE_URL")?).await?;
//! SeaOrmStore::migrate(&db).await?; // every pending usage migration
//! # Ok(())
//! # }
//! ```
//!
//! Down and status go through the migrator (sea-orm-migration's [`MigratorTrait`]):
//!
//! ```no_run
//! use usage_layer::store::sea_orm::migration::{MigratorTrait, UsageMigrator};
//!
//! # async fn run(db: sea_orm::DatabaseConnection) -> Result<(), sea_orm::DbErr> {
//! UsageMigrator::down(&db, Some(1)).await?;
//! for migration in UsageMigrator::get_migration_with_status(&db).await? {
//!     tracing::info!(name = migration.name(), status = %migration.status());
//! }
//! # Ok(())
//! # }
//! ```
//!
//! The migrations:
//!
//! 1. `m20250101_000001_legacy_schema` — `token_usage` with its price snapshot and
//!    `usage_aggregates` without `provider`, as the original system had them before
//!    providers, so the upgrade path is tested with real legacy rows.
//! 2. `m20250601_000002_aggregate_provider` — `provider` on `usage_aggregates` (existing
//!    rows become `bedrock`), the unique key with the provider, the lookup index.
//! 3. `m20251201_000003_usage_details` — what this system records beyond the original:
//!    1-hour cache writes and their price, cost components, outcome, timings.
//! 4. `m20261201_000004_text_ids` — request, user and access key ids become text (any
//!    string: a UUID is stored as its lowercase hyphenated text); "nobody" in an aggregate
//!    key becomes `''` instead of the nil UUID; `labels` (a JSON object of strings, NULL
//!    when there are none), `format` and `reasoning_tokens` on `token_usage`.
//! 5. `m20261203_000005_aggregate_cost_components` — each aggregate's cost by component
//!    (`total_cost_input_micros`, `…_output_…`, `…_cache_write_…`, `…_cache_read_…`),
//!    filled from the rows of the buckets that exist.
//! 6. `m20261204_000006_breakdown_indexes` — indexes on `token_usage` for the breakdowns
//!    of a range's rows: `(timestamp, provider, outcome)`, and partial indexes on the rows
//!    that fell back and on the unpriced ones; the first replaces the index on `timestamp`. On Postgres `CREATE INDEX` holds writes to
//!    `token_usage` while it runs (seconds per million rows): migrate in a quiet moment.
//! 7. `m20261205_000007_aggregate_fillfactor` — on Postgres, `usage_aggregates` fills its
//!    pages to 70 %, so the updates of a bucket's row stay on its page (HOT updates, no
//!    index entries); pages filled before keep their rows until a `VACUUM FULL`.
//!
//! Every `down` keeps what the older schema cannot hold aside (in a `*_rollback` table,
//! see [`rollback`]) and the next `up` puts it back, so `up → down → up` loses nothing.
//! [`MigratorTrait::fresh`] drops this schema's tables only (see [`OwnedSchema::fresh`]),
//! not every table of the database as sea-orm's default does.
//!
//! Money is stored as integer **micro-USD** (`*_micros`, `BIGINT`): exact on every
//! backend (SQLite has no exact decimal type) and summed exactly in SQL.
//!
//! **Databases migrated by the earlier single migrator** (which recorded these
//! migrations in `seaql_migrations`, together with the reference server's tables): the
//! first time `usage_layer_migrations` is created, the versions recorded there are
//! recorded as applied in it, not run again (see [`OwnedSchema::install`]).
//! `seaql_migrations` itself is left as it is.

// `MigrationTrait` is an `async_trait`: its methods must elide `SchemaManager`'s lifetime.
#![allow(elided_lifetimes_in_paths)]

mod m20250101_000001_legacy_schema;
mod m20250601_000002_aggregate_provider;
mod m20251201_000003_usage_details;
mod m20261201_000004_text_ids;
mod m20261203_000005_aggregate_cost_components;
pub(crate) mod m20261204_000006_breakdown_indexes;
mod m20261205_000007_aggregate_fillfactor;
pub mod rollback;
mod schema;

pub use sea_orm_migration::MigratorTrait;
use sea_orm_migration::sea_orm::{ConnectionTrait, DbErr, DynIden};
use sea_orm_migration::{IntoSchemaManagerConnection, MigrationTrait};

pub use self::m20261203_000005_aggregate_cost_components::fill_cost_components;
pub use self::schema::OwnedSchema;

/// The usage tables' migrations, tracked in `usage_layer_migrations`; see the
/// [module docs](self).
#[derive(Clone, Copy, Debug)]
pub struct UsageMigrator;

impl UsageMigrator {
    /// The tracking table, the versions adopted from `seaql_migrations`, and every table
    /// these migrations may leave behind.
    pub const SCHEMA: OwnedSchema = OwnedSchema {
        tracking_table: "usage_layer_migrations",
        adopts: &[
            (
                "m20250101_000001_legacy_schema",
                "m20250101_000001_legacy_schema",
            ),
            (
                "m20250601_000002_aggregate_provider",
                "m20250601_000002_aggregate_provider",
            ),
            (
                "m20251201_000003_usage_details",
                "m20251201_000003_usage_details",
            ),
        ],
        adopts_with: m20250101_000001_legacy_schema::TOKEN_USAGE.0,
        tables: &[
            m20250101_000001_legacy_schema::TOKEN_USAGE.0,
            m20250101_000001_legacy_schema::TOKEN_USAGE.1,
            m20250101_000001_legacy_schema::USAGE_AGGREGATES.0,
            m20250101_000001_legacy_schema::USAGE_AGGREGATES.1,
            m20250601_000002_aggregate_provider::ROLLBACK,
            m20251201_000003_usage_details::ROLLBACK,
            m20261201_000004_text_ids::ROWS_ROLLBACK,
            m20261201_000004_text_ids::AGGREGATES_ROLLBACK,
            m20261201_000004_text_ids::COLUMNS_ROLLBACK,
            m20261203_000005_aggregate_cost_components::ROLLBACK,
        ],
    };
}

#[sea_orm_migration::async_trait::async_trait]
impl MigratorTrait for UsageMigrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![
            Box::new(m20250101_000001_legacy_schema::Migration),
            Box::new(m20250601_000002_aggregate_provider::Migration),
            Box::new(m20251201_000003_usage_details::Migration),
            Box::new(m20261201_000004_text_ids::Migration),
            Box::new(m20261203_000005_aggregate_cost_components::Migration),
            Box::new(m20261204_000006_breakdown_indexes::Migration),
            Box::new(m20261205_000007_aggregate_fillfactor::Migration),
        ]
    }

    fn migration_table_name() -> DynIden {
        Self::SCHEMA.tracking_table_iden()
    }

    async fn install<C>(db: &C) -> Result<(), DbErr>
    where
        C: ConnectionTrait,
    {
        Self::SCHEMA.install(db).await
    }

    async fn fresh<'c, C>(db: C) -> Result<(), DbErr>
    where
        C: IntoSchemaManagerConnection<'c>,
    {
        Self::SCHEMA.fresh::<Self>(db).await
    }
}

/// Whether `table` exists (in the current schema, on Postgres).
pub(crate) async fn has_table<C: ConnectionTrait>(db: &C, table: &str) -> Result<bool, DbErr> {
    use sea_orm_migration::sea_orm::{DbBackend, Statement};
    let backend = db.get_database_backend();
    let sql = match backend {
        DbBackend::Postgres => {
            "SELECT COUNT(*) AS n FROM information_schema.tables \
             WHERE table_schema = current_schema() AND table_name = $1"
        }
        DbBackend::Sqlite => {
            "SELECT COUNT(*) AS n FROM sqlite_master WHERE type = 'table' AND name = ?"
        }
        other => {
            return Err(DbErr::BackendNotSupported {
                db: other.as_str(),
                ctx: "the usage migrations (Postgres and SQLite)",
            });
        }
    };
    let row = db
        .query_one_raw(Statement::from_sql_and_values(backend, sql, [table.into()]))
        .await?
        .ok_or_else(|| DbErr::Custom(format!("no answer to whether table {table} exists")))?;
    Ok(row.try_get::<i64>("", "n")? > 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn adopts_only_versions_of_its_own() {
        let names: Vec<String> = UsageMigrator::migrations()
            .iter()
            .map(|migration| migration.name().to_owned())
            .collect();
        for (_, new) in UsageMigrator::SCHEMA.adopts {
            assert!(names.iter().any(|name| name == new), "{new}");
        }
    }
}
