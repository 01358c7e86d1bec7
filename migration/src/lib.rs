//! The workspace's two schemas, each with its own migrations and tracking table, for
//! Postgres and SQLite:
//!
//! * [`Schema::Server`] — the reference server's `users`, `access_keys` and the tables
//!   beside them (Bedrock credentials, model mappings, price overrides, console accounts,
//!   sessions and the audit log)
//!   ([`ServerMigrator`], tracked in `reference_server_migrations`);
//! * [`Schema::Usage`] — the usage layer's `token_usage` and `usage_aggregates`
//!   ([`UsageMigrator`], tracked in `usage_layer_migrations`; it lives in
//!   `usage_layer::store::sea_orm::migration`, so an application that only uses the
//!   store needs neither this crate nor its command line).
//!
//! Neither touches a table of the other or of anyone else: an application's own tables
//! and sea-orm migrations (in `seaql_migrations`) stay as they are. [`up`] applies both,
//! the server's first (neither depends on the other; the order is only fixed).
//!
//! **Databases of the earlier single migrator**, which recorded all of these migrations in
//! `seaql_migrations`: on first use, each migrator takes over the versions recorded there
//! for its tables as applied (see `OwnedSchema::install`); once both have, [`up`] and the
//! command line delete those versions (and only those) from `seaql_migrations`, so an
//! application's own migrations may use that table without finding versions they do not
//! know.
//!
//! The command line: `migration [--only server|usage] up [-n N] | down [-n N] | status |
//! fresh`, with `DATABASE_URL` (see `src/main.rs`).

// `MigrationTrait` is an `async_trait`: its methods must elide `SchemaManager`'s lifetime.
#![allow(elided_lifetimes_in_paths)]

pub use sea_orm_migration::prelude::*;
use sea_orm_migration::sea_orm::{DatabaseConnection, EntityName};
use sea_orm_migration::{Migration, seaql_migrations};
use usage_layer::store::sea_orm::migration::OwnedSchema;
pub use usage_layer::store::sea_orm::migration::UsageMigrator;

pub mod m20250101_000001_users_and_keys;
pub mod m20261202_000002_keys_mappings_prices;
pub mod m20261202_000003_console;

/// The reference server's migrations, tracked in `reference_server_migrations`.
#[derive(Clone, Copy, Debug)]
pub struct ServerMigrator;

impl ServerMigrator {
    /// The tracking table, the version adopted from `seaql_migrations`, and every table
    /// these migrations may leave behind.
    pub const SCHEMA: OwnedSchema = OwnedSchema {
        tracking_table: "reference_server_migrations",
        adopts: &[(
            "m20250101_000001_legacy_schema",
            "m20250101_000001_users_and_keys",
        )],
        adopts_with: m20250101_000001_users_and_keys::USERS.0,
        // Each table before those it refers to.
        tables: &[
            m20261202_000003_console::AUDIT_LOG.0,
            m20261202_000003_console::AUDIT_LOG.1,
            m20261202_000003_console::ADMIN_SESSIONS.0,
            m20261202_000003_console::ADMIN_SESSIONS.1,
            m20261202_000003_console::ADMINS.0,
            m20261202_000003_console::ADMINS.1,
            m20261202_000002_keys_mappings_prices::PRICE_OVERRIDES.0,
            m20261202_000002_keys_mappings_prices::PRICE_OVERRIDES.1,
            m20261202_000002_keys_mappings_prices::MODEL_MAPPINGS.0,
            m20261202_000002_keys_mappings_prices::MODEL_MAPPINGS.1,
            m20261202_000002_keys_mappings_prices::BEDROCK_CREDENTIALS.0,
            m20261202_000002_keys_mappings_prices::BEDROCK_CREDENTIALS.1,
            m20261202_000002_keys_mappings_prices::ACCESS_KEYS_ROLLBACK,
            m20261202_000002_keys_mappings_prices::USERS_ROLLBACK,
            m20250101_000001_users_and_keys::ACCESS_KEYS.0,
            m20250101_000001_users_and_keys::ACCESS_KEYS.1,
            m20250101_000001_users_and_keys::USERS.0,
            m20250101_000001_users_and_keys::USERS.1,
        ],
    };
}

#[async_trait::async_trait]
impl MigratorTrait for ServerMigrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![
            Box::new(m20250101_000001_users_and_keys::Migration),
            Box::new(m20261202_000002_keys_mappings_prices::Migration),
            Box::new(m20261202_000003_console::Migration),
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

/// One of the two schemas.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Schema {
    /// The reference server's users and access keys.
    Server,
    /// The usage tables.
    Usage,
}

/// What to do to a schema.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Command {
    /// Apply pending migrations: all, or the first N.
    Up(Option<u32>),
    /// Roll back applied migrations: all, or the last N.
    Down(Option<u32>),
    /// Drop the schema's tables (its set-aside data and tracking table too), then
    /// apply every migration.
    Fresh,
    /// Change nothing.
    Status,
}

impl Schema {
    /// Both, in the order [`up`] applies them.
    pub const ALL: [Schema; 2] = [Schema::Server, Schema::Usage];

    /// `server` or `usage`.
    pub fn name(self) -> &'static str {
        match self {
            Schema::Server => "server",
            Schema::Usage => "usage",
        }
    }

    /// Its tables.
    pub fn owned(self) -> OwnedSchema {
        match self {
            Schema::Server => ServerMigrator::SCHEMA,
            Schema::Usage => UsageMigrator::SCHEMA,
        }
    }

    /// Runs `command` on this schema; returns its migrations and their status after it.
    pub async fn run(
        self,
        db: &DatabaseConnection,
        command: Command,
    ) -> Result<Vec<Migration>, DbErr> {
        let migrations = match self {
            Schema::Server => run::<ServerMigrator>(db, command).await?,
            Schema::Usage => run::<UsageMigrator>(db, command).await?,
        };
        if command != Command::Status {
            forget_legacy_versions(db).await?;
        }
        Ok(migrations)
    }
}

async fn run<M: MigratorTrait>(
    db: &DatabaseConnection,
    command: Command,
) -> Result<Vec<Migration>, DbErr> {
    match command {
        Command::Up(steps) => M::up(db, steps).await?,
        Command::Down(steps) => M::down(db, steps).await?,
        Command::Fresh => M::fresh(db).await?,
        Command::Status => {}
    }
    M::get_migration_with_status(db).await
}

/// Applies every pending migration of both schemas, the server's first.
pub async fn up(db: &DatabaseConnection) -> Result<(), DbErr> {
    for schema in Schema::ALL {
        schema.run(db, Command::Up(None)).await?;
    }
    Ok(())
}

/// Once both schemas have their own tracking table (and so have taken over what the
/// earlier single migrator recorded), deletes its versions from `seaql_migrations`;
/// other versions there are an application's and stay.
async fn forget_legacy_versions(db: &DatabaseConnection) -> Result<(), DbErr> {
    let manager = SchemaManager::new(db);
    let legacy = seaql_migrations::Entity.table_name();
    for schema in Schema::ALL {
        if !manager.has_table(schema.owned().tracking_table).await? {
            return Ok(());
        }
    }
    if !manager.has_table(legacy).await? {
        return Ok(());
    }
    let versions = Schema::ALL
        .into_iter()
        .flat_map(|schema| schema.owned().adopts.iter().map(|(old, _)| *old));
    let forget = Query::delete()
        .from_table(seaql_migrations::Entity)
        .and_where(Expr::col(seaql_migrations::Column::Version).is_in(versions))
        .to_owned();
    manager.exec_stmt(forget).await
}
