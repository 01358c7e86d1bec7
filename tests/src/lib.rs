//! Test databases: a fresh, migrated database per test, on SQLite and on Postgres.
//!
//! Postgres comes from `TEST_DATABASE_URL` (e.g. `postgres://postgres@127.0.0.1:5432/test`):
//! each [`TestDb`] creates its own database there and drops it on [`TestDb::close`].
//! Without `TEST_DATABASE_URL` the Postgres half of a test is skipped with a loud line on
//! stderr — unless `CI` or `REQUIRE_POSTGRES` is set, where a missing or unreachable
//! Postgres fails the test.

pub mod gateway;
pub mod process;
pub mod proxy;
pub mod relay;
pub mod sdk;
pub mod upstream;

use std::collections::BTreeMap;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use sea_orm::{
    ColumnTrait, ConnectionTrait, Database, DatabaseConnection, EntityTrait, QueryFilter,
    QueryOrder,
};
use usage_layer::pricing::PriceCatalog;
use usage_layer::store::sea_orm::SeaOrmStore;
use usage_layer::store::sea_orm::entity::{token_usage, usage_aggregates};
use usage_layer::store::{BucketType, Buckets};
use usage_layer::{Caller, Provider, RequestId, Usage, UsageRecord};
use uuid::Uuid;

/// A fresh database with the schema migrated up.
#[derive(Debug)]
pub struct TestDb {
    /// The connection.
    pub db: DatabaseConnection,
    /// `sqlite` or `postgres`.
    pub backend: &'static str,
    /// The database's URL (to hand to a server under test).
    pub url: String,
    cleanup: Cleanup,
}

#[derive(Debug)]
enum Cleanup {
    Sqlite(#[allow(dead_code, reason = "deletes the directory when dropped")] tempfile::TempDir),
    Postgres {
        admin: DatabaseConnection,
        name: String,
    },
    /// A database someone else owns (and removes).
    Nothing,
}

/// moto server's URL (`TEST_MOTO_URL`, started by the test script) for `what`; `None`
/// (said loudly) without it — unless `CI` or `REQUIRE_MOTO` is set, where that fails.
pub fn moto_url(what: &str) -> Option<String> {
    let url = std::env::var("TEST_MOTO_URL")
        .ok()
        .filter(|u| !u.is_empty());
    if url.is_none() {
        let required = ["CI", "REQUIRE_MOTO"]
            .iter()
            .any(|v| std::env::var(v).is_ok_and(|v| !v.is_empty() && v != "0" && v != "false"));
        assert!(
            !required,
            "TEST_MOTO_URL is not set, and moto is required here (CI / REQUIRE_MOTO)"
        );
        eprintln!("SKIPPED ({what}): TEST_MOTO_URL is not set — start moto_server and set it");
    }
    url
}

/// A KMS client for moto at `url` (any credentials do).
pub fn moto_kms(url: &str) -> aws_sdk_kms::Client {
    aws_sdk_kms::Client::from_conf(
        aws_sdk_kms::Config::builder()
            .behavior_version(aws_sdk_kms::config::BehaviorVersion::latest())
            .endpoint_url(url)
            .region(aws_sdk_kms::config::Region::new("us-east-1"))
            .credentials_provider(aws_sdk_kms::config::Credentials::new(
                "testing", "testing", None, None, "moto",
            ))
            .build(),
    )
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
            url,
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
            url: own.to_string(),
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

    /// `db` at `url`, a database the caller owns (e.g. a [`PgCluster`](crate::process::PgCluster)'s):
    /// [`close`](Self::close) only closes the connection.
    pub fn attach(db: DatabaseConnection, url: String) -> Self {
        let backend = if url.starts_with("sqlite") {
            "sqlite"
        } else {
            "postgres"
        };
        Self {
            db,
            backend,
            url,
            cleanup: Cleanup::Nothing,
        }
    }

    async fn migrated(self) -> Self {
        migration::up(&self.db).await.expect("migrate up");
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

// Records and checks shared by the storage tests.

/// Usage with the four main counts reported.
pub fn usage(input: u64, output: u64, cache_write: u64, cache_read: u64) -> Usage {
    Usage {
        input_tokens: Some(input),
        output_tokens: Some(output),
        cache_creation_input_tokens: Some(cache_write),
        cache_read_input_tokens: Some(cache_read),
        ..Usage::default()
    }
}

/// A completed streaming record served by `model`.
pub fn record(
    provider: Provider,
    caller: Caller,
    model: &str,
    usage: Usage,
    started_at: DateTime<Utc>,
) -> UsageRecord {
    let mut record = UsageRecord::new(RequestId::new(), started_at);
    record.provider = Some(provider);
    record.caller = caller;
    record.served_model = Some(model.to_owned());
    record.usage = usage;
    record.streaming = true;
    record.status = Some(http::StatusCode::OK);
    record
}

/// A caller with a new user and a new key.
pub fn caller() -> Caller {
    Caller::user(Uuid::now_v7()).with_access_key(Uuid::now_v7())
}

/// A store on the database with the default prices and UTC buckets.
pub fn store(db: &TestDb) -> SeaOrmStore {
    SeaOrmStore::new(
        db.db.clone(),
        Arc::new(PriceCatalog::defaults()),
        Buckets::default(),
    )
}

/// Every `token_usage` row, by id.
pub async fn rows(db: &TestDb) -> Vec<token_usage::Model> {
    token_usage::Entity::find()
        .order_by_asc(token_usage::Column::Id)
        .all(&db.db)
        .await
        .unwrap()
}

/// The aggregates of one bucket type, by provider then bucket.
pub async fn aggregates(db: &TestDb, kind: BucketType) -> Vec<usage_aggregates::Model> {
    usage_aggregates::Entity::find()
        .filter(usage_aggregates::Column::BucketType.eq(kind.as_str()))
        .order_by_asc(usage_aggregates::Column::Provider)
        .order_by_asc(usage_aggregates::Column::BucketStart)
        .all(&db.db)
        .await
        .unwrap()
}

/// Every aggregate equals the sum of the rows of its key (P6 and the store's contract).
pub async fn assert_aggregates_match_rows(db: &TestDb, buckets: &Buckets) {
    let rows = rows(db).await;
    for kind in BucketType::ALL {
        let stored = aggregates(db, kind).await;
        let mut expected = BTreeMap::new();
        for row in &rows {
            let key = (
                buckets.start(kind, row.timestamp),
                row.user_id.clone().unwrap_or_default(),
                row.access_key_id.clone().unwrap_or_default(),
                row.provider.clone(),
            );
            let sums: &mut [i64; 10] = expected.entry(key).or_default();
            sums[0] += 1;
            sums[1] += row.input_tokens;
            sums[2] += row.output_tokens;
            sums[3] += row.cache_read_input_tokens;
            sums[4] += row.cache_creation_input_tokens;
            sums[5] += row.estimated_cost_micros;
            sums[6] += row.cost_input_micros;
            sums[7] += row.cost_output_micros;
            sums[8] += row.cost_cache_write_micros;
            sums[9] += row.cost_cache_read_micros;
        }
        assert_eq!(
            stored.len(),
            expected.len(),
            "{} {kind}: one row per key",
            db.backend
        );
        for aggregate in stored {
            let key = (
                aggregate.bucket_start,
                aggregate.user_id.clone(),
                aggregate.access_key_id.clone(),
                aggregate.provider.clone(),
            );
            let sums = expected[&key];
            assert_eq!(
                [
                    aggregate.total_requests,
                    aggregate.total_input_tokens,
                    aggregate.total_output_tokens,
                    aggregate.total_cache_read_tokens,
                    aggregate.total_cache_write_tokens,
                    aggregate.total_estimated_cost_micros,
                    aggregate.total_cost_input_micros,
                    aggregate.total_cost_output_micros,
                    aggregate.total_cost_cache_write_micros,
                    aggregate.total_cost_cache_read_micros,
                ],
                sums,
                "{} {kind} {key:?}",
                db.backend
            );
            assert_eq!(
                aggregate.total_tokens,
                aggregate.total_input_tokens + aggregate.total_output_tokens,
                "total_tokens excludes cache tokens"
            );
            assert_eq!(
                aggregate.total_estimated_cost_micros,
                aggregate.total_cost_input_micros
                    + aggregate.total_cost_output_micros
                    + aggregate.total_cost_cache_write_micros
                    + aggregate.total_cost_cache_read_micros,
                "the components add up to the cost"
            );
        }
    }
}
