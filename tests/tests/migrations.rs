//! Migrations on real SQLite and Postgres: legacy rows upgrade (existing aggregates become
//! `bedrock`), and every `down` followed by `up` gives back every row.

use std::sync::Arc;

use chrono::{TimeZone, Utc};
use migration::{Migrator, MigratorTrait};
use sea_orm::sea_query::{Alias, Expr, Query};
use sea_orm::{ConnectionTrait, EntityTrait, QueryOrder};
use usage_layer::pricing::PriceCatalog;
use usage_layer::sink::UsageStore;
use usage_layer::store::Buckets;
use usage_layer::store::sea_orm::SeaOrmStore;
use usage_layer::store::sea_orm::entity::{token_usage, usage_aggregates};
use usage_layer::{Caller, Provider, RequestId, Usage, UsageRecord};
use usage_tests::TestDb;
use uuid::Uuid;

fn alias(name: &str) -> Alias {
    Alias::new(name)
}

/// Inserts `values` into `table` through sea-query (so ids bind as each backend stores them).
async fn insert(db: &TestDb, table: &str, columns: &[&str], values: Vec<sea_orm::Value>) {
    let statement = Query::insert()
        .into_table(alias(table))
        .columns(columns.iter().map(|c| alias(c)))
        .values_panic(values.into_iter().map(Expr::val))
        .to_owned();
    db.db.execute(&statement).await.unwrap();
}

/// What the legacy system had written: a user, a key, a ledger row, two aggregates.
async fn write_legacy_rows(db: &TestDb, user: Uuid, key: Uuid) {
    let now = Utc.with_ymd_and_hms(2025, 3, 1, 12, 0, 0).unwrap();
    insert(
        db,
        "users",
        &["id", "name", "created_at", "updated_at"],
        vec![user.into(), "legacy user".into(), now.into(), now.into()],
    )
    .await;
    insert(
        db,
        "access_keys",
        &["id", "user_id", "key_hash", "key_prefix", "created_at"],
        vec![
            key.into(),
            user.into(),
            "0".repeat(64).into(),
            "ak_legacy".into(),
            now.into(),
        ],
    )
    .await;
    insert(
        db,
        "token_usage",
        &[
            "request_id",
            "timestamp",
            "user_id",
            "access_key_id",
            "model",
            "input_tokens",
            "output_tokens",
            "total_tokens",
            "estimated_cost_micros",
        ],
        vec![
            Uuid::now_v7().into(),
            now.into(),
            user.into(),
            key.into(),
            "claude-3-7-sonnet".into(),
            10i64.into(),
            20i64.into(),
            30i64.into(),
            330i64.into(),
        ],
    )
    .await;
    for access_key in [Some(key), None] {
        insert(
            db,
            "usage_aggregates",
            &[
                "bucket_type",
                "bucket_start",
                "user_id",
                "access_key_id",
                "total_requests",
                "total_input_tokens",
                "total_output_tokens",
                "total_tokens",
                "total_estimated_cost_micros",
            ],
            vec![
                "hour".into(),
                now.into(),
                user.into(),
                access_key.into(),
                1i64.into(),
                10i64.into(),
                20i64.into(),
                30i64.into(),
                330i64.into(),
            ],
        )
        .await;
    }
}

#[derive(Debug, PartialEq)]
struct Snapshot {
    token_usage: Vec<token_usage::Model>,
    aggregates: Vec<usage_aggregates::Model>,
    users: Vec<(Uuid, String)>,
    keys: Vec<(Uuid, Uuid, String)>,
}

/// `columns` of every row of `table`, by id.
async fn select(db: &TestDb, table: &str, columns: &[&str]) -> Vec<sea_orm::QueryResult> {
    let query = Query::select()
        .columns(columns.iter().map(|c| alias(c)))
        .from(alias(table))
        .order_by(alias("id"), sea_orm::Order::Asc)
        .to_owned();
    db.db.query_all(&query).await.unwrap()
}

async fn snapshot(db: &TestDb) -> Snapshot {
    let get = |row: &sea_orm::QueryResult, column| row.try_get::<Uuid>("", column).unwrap();
    let text = |row: &sea_orm::QueryResult, column| row.try_get::<String>("", column).unwrap();
    let users = select(db, "users", &["id", "name"])
        .await
        .iter()
        .map(|row| (get(row, "id"), text(row, "name")))
        .collect();
    let keys = select(db, "access_keys", &["id", "user_id", "key_prefix"])
        .await
        .iter()
        .map(|row| (get(row, "id"), get(row, "user_id"), text(row, "key_prefix")))
        .collect();
    Snapshot {
        token_usage: token_usage::Entity::find()
            .order_by_asc(token_usage::Column::Id)
            .all(&db.db)
            .await
            .unwrap(),
        aggregates: usage_aggregates::Entity::find()
            .order_by_asc(usage_aggregates::Column::Id)
            .all(&db.db)
            .await
            .unwrap(),
        users,
        keys,
    }
}

#[tokio::test]
async fn legacy_rows_upgrade_and_down_then_up_loses_nothing() {
    for db in TestDb::all_unmigrated().await {
        let (user, key) = (Uuid::now_v7(), Uuid::now_v7());
        Migrator::up(&db.db, Some(1)).await.unwrap();
        write_legacy_rows(&db, user, key).await;
        Migrator::up(&db.db, None).await.unwrap();

        // R3 / R8: the legacy aggregates are Bedrock's; the key-less one uses the nil key.
        let upgraded = snapshot(&db).await;
        assert_eq!(upgraded.aggregates.len(), 2, "{}", db.backend);
        assert!(upgraded.aggregates.iter().all(|a| a.provider == "bedrock"));
        assert_eq!(upgraded.aggregates[1].access_key_id, Uuid::nil());
        assert_eq!(upgraded.token_usage[0].provider, "bedrock");
        assert_eq!(
            upgraded.token_usage[0].outcome, "completed",
            "detail columns get defaults"
        );

        // New data on top: both providers, in the legacy rows' buckets too.
        let store = SeaOrmStore::new(
            db.db.clone(),
            Arc::new(PriceCatalog::defaults()),
            Buckets::default(),
        );
        let mut batch = Vec::new();
        for (i, provider) in [Provider::PLAN, Provider::BEDROCK, Provider::PLAN]
            .into_iter()
            .enumerate()
        {
            let mut record = UsageRecord::new(
                RequestId::new(),
                Utc.with_ymd_and_hms(2025, 3, 1, 12, i as u32, 0).unwrap(),
            );
            record.provider = Some(provider);
            record.caller = Caller::user(user);
            if i != 2 {
                record.caller = record.caller.with_access_key(key);
            }
            record.served_model = Some("claude-sonnet-4-5".into());
            record.usage = Usage {
                input_tokens: Some(100),
                output_tokens: Some(5),
                ephemeral_1h_input_tokens: Some(7),
                cache_creation_input_tokens: Some(7),
                ..Usage::default()
            };
            record.time_to_first_byte = Some(std::time::Duration::from_millis(250));
            batch.push(record);
        }
        store.write_batch(&batch).await.unwrap();
        let before = snapshot(&db).await;
        assert!(before.aggregates.iter().any(|a| a.provider == "plan"));

        for steps in 1..=3 {
            Migrator::down(&db.db, Some(steps)).await.unwrap();
            if steps == 2 {
                // At the legacy schema: no Plan rows mixed into Bedrock's buckets.
                let legacy = db
                    .db
                    .query_all(
                        &Query::select()
                            .column(alias("total_requests"))
                            .from(alias("usage_aggregates"))
                            .to_owned(),
                    )
                    .await
                    .unwrap();
                let bedrock_rows = before
                    .aggregates
                    .iter()
                    .filter(|a| a.provider == "bedrock")
                    .count();
                assert_eq!(
                    legacy.len(),
                    bedrock_rows,
                    "{}: Plan rows were set aside",
                    db.backend
                );
            }
            Migrator::up(&db.db, None).await.unwrap();
            assert_eq!(
                snapshot(&db).await,
                before,
                "{}: down {steps} then up",
                db.backend
            );
        }

        // Data still set aside by an earlier rollback is never overwritten: the rollback
        // is refused (and, being one transaction, changes nothing).
        db.db
            .execute_unprepared("CREATE TABLE token_usage_details_rollback (request_id INTEGER)")
            .await
            .unwrap();
        let refused = Migrator::down(&db.db, Some(1)).await.unwrap_err();
        assert!(
            refused.to_string().contains("already holds data"),
            "{refused}"
        );
        db.db
            .execute_unprepared("DROP TABLE token_usage_details_rollback")
            .await
            .unwrap();
        assert_eq!(snapshot(&db).await, before, "{}", db.backend);
        db.close().await;
    }
}
