//! The usage schema in an application's own database, on real SQLite and Postgres: the
//! application has a `users` table of its own and its own sea-orm migrations (tracked in
//! sea-orm's default `seaql_migrations`); the usage tables go up, down and up beside
//! them, and touch neither.

use std::collections::BTreeSet;

use chrono::{TimeZone, Utc};
use migration::{
    ConnectionTrait, DbErr, MigrationName, MigrationTrait, MigratorTrait, SchemaManager,
    UsageMigrator,
};
use sea_orm::{DbBackend, Statement};
use usage_layer::sink::UsageStore;
use usage_layer::store::sea_orm::SeaOrmStore;
use usage_layer::{Caller, Labels, Provider};
use usage_tests::{TestDb, record, rows, store, usage};

/// The application's migration: a `users` table unlike the reference server's.
struct AppUsers;

impl MigrationName for AppUsers {
    fn name(&self) -> &str {
        "m20240101_000001_app_users"
    }
}

#[migration::async_trait::async_trait]
impl MigrationTrait for AppUsers {
    #[allow(elided_lifetimes_in_paths, reason = "async_trait: the trait elides it")]
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .get_connection()
            .execute_unprepared(
                "CREATE TABLE users (id integer PRIMARY KEY, email text NOT NULL UNIQUE, plan text)",
            )
            .await?;
        manager
            .get_connection()
            .execute_unprepared(
                "INSERT INTO users (id, email, plan) VALUES (1, 'ada@example.com', 'pro'), (2, 'bob@example.com', NULL)",
            )
            .await?;
        Ok(())
    }
}

/// The application's migrator, with sea-orm's default tracking table.
struct AppMigrator;

impl MigratorTrait for AppMigrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![Box::new(AppUsers)]
    }
}

async fn strings(db: &TestDb, sql: &str) -> Vec<String> {
    db.db
        .query_all_raw(Statement::from_string(db.db.get_database_backend(), sql))
        .await
        .unwrap()
        .iter()
        .map(|row| row.try_get_by_index::<String>(0).unwrap())
        .collect()
}

/// Every table of the database.
async fn tables(db: &TestDb) -> BTreeSet<String> {
    let sql = match db.db.get_database_backend() {
        DbBackend::Postgres => {
            "SELECT table_name::text FROM information_schema.tables WHERE table_schema = current_schema()"
        }
        _ => "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'",
    };
    strings(db, sql).await.into_iter().collect()
}

/// The application's rows: its users and its tracking table.
async fn app_rows(db: &TestDb) -> Vec<String> {
    let mut rows = strings(
        db,
        "SELECT id || ' ' || email || ' ' || COALESCE(plan, '-') FROM users ORDER BY id",
    )
    .await;
    rows.extend(
        strings(
            db,
            "SELECT version || ' ' || applied_at FROM seaql_migrations ORDER BY version",
        )
        .await,
    );
    rows
}

fn set(names: &[&str]) -> BTreeSet<String> {
    names.iter().map(|name| (*name).to_owned()).collect()
}

#[tokio::test]
async fn the_usage_schema_goes_up_down_and_up_beside_an_apps_own_tables() {
    for db in TestDb::all_unmigrated().await {
        AppMigrator::up(&db.db, None).await.unwrap();
        let app = app_rows(&db).await;
        assert_eq!(app.len(), 3, "{}: two users, one version", db.backend);
        let app_tables = tables(&db).await;
        assert_eq!(app_tables, set(&["seaql_migrations", "users"]));

        SeaOrmStore::migrate(&db.db).await.unwrap();
        let usage_tables = set(&["token_usage", "usage_aggregates", "usage_layer_migrations"]);
        assert_eq!(
            tables(&db).await,
            &app_tables | &usage_tables,
            "{}: the usage tables and their tracking table, nothing else",
            db.backend
        );

        let mut labels = Labels::new();
        labels.insert("team", "infra");
        let mut batch = Vec::new();
        for (i, caller) in [
            Caller::user("team-infra").with_access_key("ci-key"),
            Caller::user("user 42"),
            Caller::default(),
        ]
        .into_iter()
        .enumerate()
        {
            let mut record = record(
                Provider::PLAN,
                caller,
                "claude-sonnet-4-5",
                usage(100, 10, 0, 0),
                Utc.with_ymd_and_hms(2026, 1, 2, 3, i as u32, 0).unwrap(),
            );
            record.labels = labels.clone();
            batch.push(record);
        }
        store(&db).write_batch(&batch).await.unwrap();
        let written = rows(&db).await;
        assert_eq!(written.len(), 3);

        UsageMigrator::down(&db.db, None).await.unwrap();
        let left = tables(&db).await;
        assert!(!left.contains("token_usage"), "{}: {left:?}", db.backend);
        let own: BTreeSet<String> = UsageMigrator::SCHEMA
            .tables
            .iter()
            .chain([&UsageMigrator::SCHEMA.tracking_table])
            .map(|table| (*table).to_owned())
            .collect();
        assert!(
            left.difference(&app_tables)
                .all(|table| own.contains(table)),
            "{}: only the usage schema's own tables besides the app's: {left:?}",
            db.backend
        );
        assert_eq!(app_rows(&db).await, app, "{}: after down", db.backend);

        SeaOrmStore::migrate(&db.db).await.unwrap();
        assert_eq!(tables(&db).await, &app_tables | &usage_tables);
        assert_eq!(rows(&db).await, written, "{}: usage back", db.backend);
        assert_eq!(app_rows(&db).await, app, "{}: after up", db.backend);

        // The application's migrator still knows every version in its table.
        assert!(
            AppMigrator::get_pending_migrations(&db.db)
                .await
                .unwrap()
                .is_empty()
        );
        AppMigrator::up(&db.db, None).await.unwrap();
        db.close().await;
    }
}
