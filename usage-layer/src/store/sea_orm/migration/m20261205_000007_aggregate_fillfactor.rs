//! Room on `usage_aggregates`' pages for the updates of their own rows (Postgres only).
//!
//! Every batch adds to the same few rows again — a user's hour, day, week and month — and
//! an update writes a new version of the row. With the default `fillfactor` of 100 the
//! page is full, so the new version goes to another page and every index of the table
//! gets an entry for it. With room left on the page, Postgres keeps the new version there
//! as a heap-only tuple (a *HOT* update: no column of an index changes), writes no index
//! entry, and prunes the dead versions of the page when it next needs the room.
//!
//! The setting applies to pages filled from now on; the pages a database already has keep
//! their rows until a `VACUUM FULL` (or `CLUSTER`) rewrites them, which this migration
//! does not do (it would lock the table for as long as the rewrite takes). SQLite has no
//! such setting: there the migration does nothing.

use sea_orm_migration::prelude::*;
use sea_orm_migration::sea_orm::DbBackend;

/// The share of each page that inserts fill, in percent; the rest is for updates.
pub(crate) const FILLFACTOR: u8 = 70;

#[derive(Clone, Copy, Debug, DeriveMigrationName)]
pub(super) struct Migration;

#[sea_orm_migration::async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        set(manager, &format!("SET (fillfactor = {FILLFACTOR})")).await
    }

    /// A storage parameter holds no data: down resets it to Postgres's default.
    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        set(manager, "RESET (fillfactor)").await
    }

    fn use_transaction(&self) -> Option<bool> {
        Some(true)
    }
}

async fn set(manager: &SchemaManager<'_>, action: &str) -> Result<(), DbErr> {
    if manager.get_database_backend() != DbBackend::Postgres {
        return Ok(());
    }
    manager
        .get_connection()
        .execute_unprepared(&format!("ALTER TABLE usage_aggregates {action}"))
        .await
        .map(drop)
}
