//! Test databases: a fresh, migrated database per test, on SQLite and on Postgres.
//!
//! Postgres comes from `TEST_DATABASE_URL` (e.g. `postgres://postgres@127.0.0.1:5432/test`):
//! each [`TestDb`] creates its own database there and drops it on [`TestDb::close`].
//! Without `TEST_DATABASE_URL` the Postgres half of a test is skipped with a loud line on
//! stderr — unless `CI` or `REQUIRE_POSTGRES` is set, where a missing or unreachable
//! Postgres fails the test.

use migration::{Migrator, MigratorTrait};
use sea_orm::{ConnectionTrait, Database, DatabaseConnection};
use uuid::Uuid;

/// A fresh database with the schema migrated up.
#[derive(Debug)]
pub struct TestDb {
    /// The connection.
    pub db: DatabaseConnection,
    /// `sqlite` or `postgres`.
    pub backend: &'static str,
    cleanup: Cleanup,
}

#[derive(Debug)]
enum Cleanup {
    Sqlite(#[allow(dead_code, reason = "deletes the directory when dropped")] tempfile::TempDir),
    Postgres {
        admin: DatabaseConnection,
        name: String,
    },
}

fn postgres_required() -> bool {
    let set = |name| std::env::var(name).is_ok_and(|v| !v.is_empty() && v != "0" && v != "false");
    set("CI") || set("REQUIRE_POSTGRES")
}

impl TestDb {
    /// A new SQLite database in a temporary directory, migrated up.
    pub async fn sqlite() -> Self {
        Self::sqlite_unmigrated().await.migrated().await
    }

    /// A new SQLite database, without the schema.
    pub async fn sqlite_unmigrated() -> Self {
        let dir = tempfile::tempdir().expect("temporary directory");
        let url = format!(
            "sqlite://{}?mode=rwc",
            dir.path().join("usage.db").display()
        );
        let db = Database::connect(&url).await.expect("open SQLite");
        TestDb {
            db,
            backend: "sqlite",
            cleanup: Cleanup::Sqlite(dir),
        }
    }

    /// A new database on the test Postgres, migrated up; `None` (said loudly) if there is
    /// no test Postgres and none is required.
    pub async fn postgres() -> Option<Self> {
        Some(Self::postgres_unmigrated().await?.migrated().await)
    }

    /// A new database on the test Postgres, without the schema.
    pub async fn postgres_unmigrated() -> Option<Self> {
        let Some(url) = std::env::var("TEST_DATABASE_URL")
            .ok()
            .filter(|u| !u.is_empty())
        else {
            assert!(
                !postgres_required(),
                "TEST_DATABASE_URL is not set, and Postgres is required here (CI / REQUIRE_POSTGRES)"
            );
            eprintln!("SKIPPED (Postgres): TEST_DATABASE_URL is not set — only SQLite was tested");
            return None;
        };
        let admin = Database::connect(&url).await.unwrap_or_else(|error| {
            panic!("the test Postgres (TEST_DATABASE_URL) is unreachable: {error}")
        });
        let name = format!("usage_test_{}", Uuid::now_v7().simple());
        admin
            .execute_unprepared(&format!("CREATE DATABASE \"{name}\""))
            .await
            .expect("create the test database");
        let mut own = url::Url::parse(&url).expect("TEST_DATABASE_URL is a URL");
        own.set_path(&name);
        let db = Database::connect(own.as_str())
            .await
            .expect("connect to the test database");
        Some(TestDb {
            db,
            backend: "postgres",
            cleanup: Cleanup::Postgres { admin, name },
        })
    }

    /// SQLite, and Postgres when there is one.
    pub async fn all() -> Vec<Self> {
        let mut all = vec![Self::sqlite().await];
        all.extend(Self::postgres().await);
        all
    }

    /// SQLite, and Postgres when there is one, both without the schema.
    pub async fn all_unmigrated() -> Vec<Self> {
        let mut all = vec![Self::sqlite_unmigrated().await];
        all.extend(Self::postgres_unmigrated().await);
        all
    }

    async fn migrated(self) -> Self {
        Migrator::up(&self.db, None).await.expect("migrate up");
        self
    }

    /// Closes the connection and removes the database.
    pub async fn close(self) {
        let TestDb { db, cleanup, .. } = self;
        db.close().await.expect("close the connection");
        if let Cleanup::Postgres { admin, name } = cleanup {
            admin
                .execute_unprepared(&format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"))
                .await
                .expect("drop the test database");
        }
    }
}
