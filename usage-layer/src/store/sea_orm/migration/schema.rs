//! What a migrator owns: its tracking table and its tables.

use sea_orm_migration::sea_orm::sea_query::{
    Alias, Expr, ExprTrait, IntoIden, OnConflict, Query, Table,
};
use sea_orm_migration::sea_orm::{
    ConnectionTrait, DbErr, DynIden, Schema, TransactionSession, TransactionTrait,
};
use sea_orm_migration::seaql_migrations::{self, Column};
use sea_orm_migration::{IntoSchemaManagerConnection, MigratorTrait};

use super::has_table;

/// sea-orm's default tracking table, where the earlier single migrator recorded.
const DEFAULT_TRACKING_TABLE: &str = "seaql_migrations";

/// The tables of one migrator that shares its database with others: the tracking table
/// it records its migrations in, the versions it takes over from sea-orm's default
/// tracking table, and every table its migrations may leave behind.
///
/// A migrator overrides [`MigratorTrait`](super::MigratorTrait)'s
/// `migration_table_name` with [`tracking_table_iden`](Self::tracking_table_iden),
/// `install` with [`install`](Self::install), and `fresh` with [`fresh`](Self::fresh)
/// (as [`UsageMigrator`](super::UsageMigrator) does).
#[derive(Clone, Copy, Debug)]
pub struct OwnedSchema {
    /// The table its migrations are recorded in.
    pub tracking_table: &'static str,
    /// `(old, new)`: a version that an earlier migrator recorded in `seaql_migrations`
    /// for these tables, and the version of this migrator that stands for it.
    pub adopts: &'static [(&'static str, &'static str)],
    /// The table whose presence shows that an earlier migrator created these tables:
    /// without it, nothing is adopted (so `fresh` after dropping them starts afresh).
    pub adopts_with: &'static str,
    /// Every table its migrations may create or set aside (`*_rollback`), in an order
    /// they can be dropped in (the tracking table aside).
    pub tables: &'static [&'static str],
}

impl OwnedSchema {
    /// The tracking table's name.
    pub fn tracking_table_iden(&self) -> DynIden {
        Alias::new(self.tracking_table).into_iden()
    }

    /// Creates the tracking table if it is not there. When it creates it, and both
    /// `seaql_migrations` and [`adopts_with`](Self::adopts_with) exist, the versions of
    /// [`adopts`](Self::adopts) recorded there are recorded as applied (at their original
    /// time) in the new table: a database the earlier single migrator set up is not
    /// migrated again. `seaql_migrations` is only read.
    pub async fn install<C: ConnectionTrait>(&self, db: &C) -> Result<(), DbErr> {
        if has_table(db, self.tracking_table).await? {
            return Ok(());
        }
        let mut create = Schema::new(db.get_database_backend())
            .create_table_from_entity(seaql_migrations::Entity);
        create.table(self.tracking_table_iden()).if_not_exists();
        db.execute(&create).await?;
        if !has_table(db, DEFAULT_TRACKING_TABLE).await? || !has_table(db, self.adopts_with).await?
        {
            return Ok(());
        }
        let mut adopted = 0;
        for (old, new) in self.adopts {
            let recorded = Query::select()
                .expr(Expr::val(*new))
                .column(Column::AppliedAt)
                .from(seaql_migrations::Entity)
                .and_where(Expr::col(Column::Version).eq(*old))
                .to_owned();
            let adopt = Query::insert()
                .into_table(self.tracking_table_iden())
                .columns([Column::Version, Column::AppliedAt])
                .select_from(recorded)
                .expect("two columns, two values")
                // Another process may be adopting at the same time.
                .on_conflict(OnConflict::column(Column::Version).do_nothing().to_owned())
                .to_owned();
            adopted += db.execute(&adopt).await?.rows_affected();
        }
        if adopted > 0 {
            tracing::info!(
                adopted,
                tracking_table = self.tracking_table,
                "migrations recorded in {DEFAULT_TRACKING_TABLE} taken over as applied"
            );
        }
        Ok(())
    }

    /// Drops every table of this schema, set-aside data and tracking table included (in
    /// one transaction), then applies every migration of `M`. No other table is touched,
    /// unlike sea-orm's default `fresh`, which drops every table of the database.
    pub async fn fresh<'c, M: MigratorTrait>(
        &self,
        db: impl IntoSchemaManagerConnection<'c>,
    ) -> Result<(), DbErr> {
        let db = db.into_database_executor();
        self.drop_tables(&db).await?;
        M::up(db, None).await
    }

    /// Drops every table of this schema, set-aside data and tracking table included, in
    /// one transaction. No other table is touched.
    pub async fn drop_tables<C: ConnectionTrait + TransactionTrait>(
        &self,
        db: &C,
    ) -> Result<(), DbErr> {
        let txn = db.begin().await?;
        for table in self.tables.iter().chain([&self.tracking_table]) {
            let drop = Table::drop()
                .table(Alias::new(*table))
                .if_exists()
                .to_owned();
            txn.execute(&drop).await?;
        }
        txn.commit().await
    }
}
