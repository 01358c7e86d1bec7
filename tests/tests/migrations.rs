//! Migrations on real SQLite and Postgres: legacy rows upgrade (existing aggregates become
//! `bedrock`), every `down` followed by `up` gives back every row, and a database the
//! earlier single migrator set up is taken over by the two migrators.

use std::sync::Arc;

use chrono::{TimeZone, Utc};
use migration::{MigratorTrait, ServerMigrator, UsageMigrator};
use sea_orm::sea_query::{Alias, Expr, Query};
use sea_orm::{ConnectionTrait, EntityTrait, QueryOrder};
use usage_layer::pricing::PriceCatalog;
use usage_layer::sink::UsageStore;
use usage_layer::store::Buckets;
use usage_layer::store::sea_orm::SeaOrmStore;
use usage_layer::store::sea_orm::entity::{token_usage, usage_aggregates};
use usage_layer::{Caller, Format, Provider, RequestId, Usage, UsageRecord};
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

/// What the legacy system had written: a user, a key, a ledger row, two aggregates; the
/// row's request id.
async fn write_legacy_rows(db: &TestDb, user: Uuid, key: Uuid) -> Uuid {
    let request = Uuid::now_v7();
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
            request.into(),
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
    request
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

async fn has_table(db: &TestDb, table: &str) -> bool {
    migration::SchemaManager::new(&db.db)
        .has_table(table)
        .await
        .unwrap()
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

/// R3 / R8 and the text ids: the legacy aggregates are Bedrock's, the key-less one has the
/// "nobody" key; the ids are the UUIDs' text.
fn assert_legacy_rows_upgraded(
    db: &TestDb,
    upgraded: &Snapshot,
    request: Uuid,
    user: Uuid,
    key: Uuid,
) {
    let backend = db.backend;
    let row = &upgraded.token_usage[0];
    assert_eq!(row.request_id, request.to_string(), "{backend}");
    assert_eq!(row.user_id, Some(user.to_string()), "{backend}");
    assert_eq!(row.access_key_id, Some(key.to_string()), "{backend}");
    assert_eq!(row.provider, "bedrock");
    assert_eq!(row.outcome, "completed", "detail columns get defaults");
    assert_eq!((row.labels.as_deref(), row.format.as_deref()), (None, None));
    assert_eq!(upgraded.aggregates.len(), 2, "{backend}");
    assert!(upgraded.aggregates.iter().all(|a| a.provider == "bedrock"));
    assert!(
        upgraded
            .aggregates
            .iter()
            .all(|a| a.user_id == user.to_string())
    );
    assert_eq!(upgraded.aggregates[0].access_key_id, key.to_string());
    assert_eq!(upgraded.aggregates[1].access_key_id, "", "{backend}");
}

/// The usage migration that adds the aggregates' cost components.
const COMPONENTS: &str = "m20261203_000005_aggregate_cost_components";

/// How many `down` steps undo the usage migration `name` (it and every later one).
fn steps_to_undo(name: &str) -> u32 {
    let names: Vec<String> = UsageMigrator::migrations()
        .iter()
        .map(|migration| migration.name().to_owned())
        .collect();
    let at = names
        .iter()
        .position(|known| known == name)
        .unwrap_or_else(|| panic!("no usage migration {name}: {names:?}"));
    (names.len() - at) as u32
}

#[tokio::test]
async fn legacy_rows_upgrade_and_down_then_up_loses_nothing() {
    for db in TestDb::all_unmigrated().await {
        let (user, key) = (Uuid::now_v7(), Uuid::now_v7());
        ServerMigrator::up(&db.db, Some(1)).await.unwrap();
        UsageMigrator::up(&db.db, Some(1)).await.unwrap();
        let request = write_legacy_rows(&db, user, key).await;
        migration::up(&db.db).await.unwrap();
        let upgraded = snapshot(&db).await;
        assert_legacy_rows_upgraded(&db, &upgraded, request, user, key);

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
        // And what only text ids and labels can say: a Bedrock row the UUID schema cannot
        // hold (its aggregates neither), labels on a row it can.
        let mut named = UsageRecord::new(
            RequestId::parse("req_01J-named").unwrap(),
            Utc.with_ymd_and_hms(2025, 3, 1, 12, 30, 0).unwrap(),
        );
        named.provider = Some(Provider::BEDROCK);
        named.caller = Caller::user("team-infra").with_access_key(key);
        named.served_model = Some("claude-sonnet-4-5".into());
        named.usage = Usage {
            output_tokens: Some(9),
            reasoning_tokens: Some(4),
            ..Usage::default()
        };
        named.format = Some(Format::OpenAiChat);
        batch.push(named);
        batch[0].labels = [("team", "infra"), ("feature", "autocomplete")]
            .into_iter()
            .collect();
        store.write_batch(&batch).await.unwrap();
        let before = snapshot(&db).await;
        assert!(before.aggregates.iter().any(|a| a.provider == "plan"));
        let uuid_or_nobody = |id: &str| id.is_empty() || Uuid::try_parse(id).is_ok();

        let usage_migrations = UsageMigrator::migrations().len() as u32;
        for steps in 1..=usage_migrations {
            UsageMigrator::down(&db.db, Some(steps)).await.unwrap();
            if steps == steps_to_undo("m20261201_000004_text_ids") {
                // UUID columns again (16-byte blobs on SQLite, as sqlx writes a UUID),
                // without the row of text ids.
                let ids = select(&db, "token_usage", &["request_id", "user_id"]).await;
                assert_eq!(ids.len(), before.token_usage.len() - 1, "{}", db.backend);
                for row in &ids {
                    row.try_get::<Uuid>("", "request_id").unwrap();
                    row.try_get::<Uuid>("", "user_id").unwrap();
                }
            }
            if steps == usage_migrations - 1 {
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
                    .filter(|a| {
                        a.provider == "bedrock"
                            && uuid_or_nobody(&a.user_id)
                            && uuid_or_nobody(&a.access_key_id)
                    })
                    .count();
                assert_eq!(
                    legacy.len(),
                    bedrock_rows,
                    "{}: Plan rows were set aside",
                    db.backend
                );
            }
            UsageMigrator::up(&db.db, None).await.unwrap();
            assert_eq!(
                snapshot(&db).await,
                before,
                "{}: down {steps} then up",
                db.backend
            );
        }
        // The server's tables, set aside and back (the usage tables stay meanwhile).
        ServerMigrator::down(&db.db, None).await.unwrap();
        assert!(!has_table(&db, "users").await && has_table(&db, "token_usage").await);
        ServerMigrator::up(&db.db, None).await.unwrap();
        assert_eq!(
            snapshot(&db).await,
            before,
            "{}: server down, up",
            db.backend
        );

        // Data still set aside by an earlier rollback is never overwritten: the rollback
        // is refused (and, being one transaction, changes nothing).
        db.db
            .execute_unprepared("CREATE TABLE usage_aggregates_components_rollback (id INTEGER)")
            .await
            .unwrap();
        let refused = UsageMigrator::down(&db.db, Some(steps_to_undo(COMPONENTS)))
            .await
            .unwrap_err();
        assert!(
            refused.to_string().contains("already holds data"),
            "{refused}"
        );
        db.db
            .execute_unprepared("DROP TABLE usage_aggregates_components_rollback")
            .await
            .unwrap();
        assert_eq!(snapshot(&db).await, before, "{}", db.backend);
        db.close().await;
    }
}

/// Aggregates written before they had cost components get them from their rows, exactly,
/// whatever time zone and week start cut their buckets.
#[tokio::test]
async fn cost_components_are_filled_from_the_rows_of_each_bucket() {
    let buckets = Buckets::new(chrono_tz::Asia::Seoul, chrono::Weekday::Sun);
    for db in TestDb::all().await {
        let store = SeaOrmStore::new(db.db.clone(), Arc::new(PriceCatalog::defaults()), buckets);
        let (ada, grace) = (Uuid::now_v7(), Uuid::now_v7());
        let start = Utc.with_ymd_and_hms(2026, 2, 27, 14, 0, 0).unwrap();
        let mut batch = Vec::new();
        for i in 0..60u32 {
            // Across hours, days, a week's and a month's end in Seoul; two users, a key
            // or none, both providers, cache reads and writes.
            let at = start + chrono::Duration::minutes(i64::from(i) * 97);
            let caller = match i % 3 {
                0 => Caller::user(ada).with_access_key(Uuid::now_v7()),
                1 => Caller::user(grace),
                _ => Caller::default(),
            };
            let provider = if i % 2 == 0 {
                Provider::PLAN
            } else {
                Provider::BEDROCK
            };
            let usage = usage_tests::usage(
                100 + u64::from(i),
                7 * u64::from(i),
                u64::from(i % 4) * 50,
                u64::from(i % 5) * 900,
            );
            batch.push(usage_tests::record(
                provider,
                caller,
                "claude-sonnet-4-5",
                usage,
                at,
            ));
        }
        store.write_batch(&batch).await.unwrap();
        usage_tests::assert_aggregates_match_rows(&db, &buckets).await;

        // As a database before the migration: no components (down sets them aside; that
        // copy is dropped), then up fills them from the rows.
        UsageMigrator::down(&db.db, Some(steps_to_undo(COMPONENTS)))
            .await
            .unwrap();
        db.db
            .execute_unprepared("DROP TABLE usage_aggregates_components_rollback")
            .await
            .unwrap();
        UsageMigrator::up(&db.db, None).await.unwrap();
        let filled = usage_aggregates::Entity::find().all(&db.db).await.unwrap();
        assert!(
            filled.iter().any(|a| a.total_cost_cache_read_micros > 0),
            "{}",
            db.backend
        );
        usage_tests::assert_aggregates_match_rows(&db, &buckets).await;
        db.close().await;
    }
}

/// The usage migration that leaves room on the aggregates' pages.
const FILLFACTOR: &str = "m20261205_000007_aggregate_fillfactor";

/// `usage_aggregates`' storage parameters on Postgres (`pg_class.reloptions`).
async fn aggregate_options(db: &TestDb) -> Vec<String> {
    let row = db
        .db
        .query_one_raw(sea_orm::Statement::from_string(
            db.db.get_database_backend(),
            "SELECT coalesce(array_to_string(reloptions, ','), '') AS options FROM pg_class \
             WHERE oid = 'usage_aggregates'::regclass",
        ))
        .await
        .unwrap()
        .expect("usage_aggregates");
    let options: String = row.try_get("", "options").unwrap();
    options
        .split(',')
        .filter(|option| !option.is_empty())
        .map(str::to_owned)
        .collect()
}

#[tokio::test]
async fn aggregates_leave_room_on_their_pages_for_updates_on_postgres() {
    let Some(db) = TestDb::postgres().await else {
        return;
    };
    assert_eq!(aggregate_options(&db).await, ["fillfactor=70"]);
    // The effect (HOT updates, no index entries) is measured, not asserted: the
    // `store_throughput` benchmark and BENCHMARKS.md section 10.
    UsageMigrator::down(&db.db, Some(steps_to_undo(FILLFACTOR)))
        .await
        .unwrap();
    assert_eq!(aggregate_options(&db).await, Vec::<String>::new());
    UsageMigrator::up(&db.db, None).await.unwrap();
    assert_eq!(aggregate_options(&db).await, ["fillfactor=70"]);
    db.close().await;
}

/// The versions recorded in a tracking table, with their time.
async fn tracked(db: &TestDb, table: &str) -> Vec<(String, i64)> {
    let query = Query::select()
        .columns([alias("version"), alias("applied_at")])
        .from(alias(table))
        .order_by(alias("version"), sea_orm::Order::Asc)
        .to_owned();
    db.db
        .query_all(&query)
        .await
        .unwrap()
        .iter()
        .map(|row| {
            (
                row.try_get("", "version").unwrap(),
                row.try_get("", "applied_at").unwrap(),
            )
        })
        .collect()
}

/// A database the earlier single migrator set up — every table, its three versions in
/// `seaql_migrations` — keeps its data: each migrator takes over its versions as applied
/// (runs none of them again) and goes on; then the old versions leave `seaql_migrations`,
/// and an application's own version there stays.
#[tokio::test]
async fn the_single_migrators_databases_are_taken_over() {
    const OLD_VERSIONS: [&str; 3] = [
        "m20250101_000001_legacy_schema",
        "m20250601_000002_aggregate_provider",
        "m20251201_000003_usage_details",
    ];
    const APP_VERSION: &str = "m20240101_000001_the_apps_own";
    for db in TestDb::all_unmigrated().await {
        // The single migrator's schema is the two migrators' first migrations (the same
        // statements, split); its record is one table with the old names.
        let (user, key) = (Uuid::now_v7(), Uuid::now_v7());
        ServerMigrator::up(&db.db, Some(1)).await.unwrap();
        UsageMigrator::up(&db.db, Some(1)).await.unwrap();
        let request = write_legacy_rows(&db, user, key).await;
        UsageMigrator::up(&db.db, Some(OLD_VERSIONS.len() as u32 - 1))
            .await
            .unwrap();
        for table in ["reference_server_migrations", "usage_layer_migrations"] {
            db.db
                .execute_unprepared(&format!("DROP TABLE {table}"))
                .await
                .unwrap();
        }
        db.db
            .execute_unprepared(
                "CREATE TABLE seaql_migrations (version varchar NOT NULL PRIMARY KEY, applied_at bigint NOT NULL)",
            )
            .await
            .unwrap();
        for (i, version) in [APP_VERSION].iter().chain(&OLD_VERSIONS).enumerate() {
            insert(
                &db,
                "seaql_migrations",
                &["version", "applied_at"],
                vec![(*version).into(), (1_700_000_000 + i as i64).into()],
            )
            .await;
        }

        migration::up(&db.db).await.unwrap();

        // Had a migration run again, it would have failed (its tables exist).
        let after = snapshot(&db).await;
        assert_legacy_rows_upgraded(&db, &after, request, user, key);
        assert_eq!(
            (after.users[0].0, after.keys[0].0),
            (user, key),
            "{}",
            db.backend
        );
        let server = tracked(&db, "reference_server_migrations").await;
        assert_eq!(
            server[0],
            ("m20250101_000001_users_and_keys".to_owned(), 1_700_000_001),
            "{}",
            db.backend
        );
        assert_eq!(
            server.len(),
            ServerMigrator::migrations().len(),
            "{}: the later migrations ran",
            db.backend
        );
        let usage = tracked(&db, "usage_layer_migrations").await;
        let adopted: Vec<(String, i64)> = OLD_VERSIONS
            .iter()
            .enumerate()
            .map(|(i, version)| ((*version).to_owned(), 1_700_000_001 + i as i64))
            .collect();
        assert_eq!(usage[..OLD_VERSIONS.len()], adopted, "{}", db.backend);
        assert_eq!(
            usage.len(),
            UsageMigrator::migrations().len(),
            "{}: the later migrations ran",
            db.backend
        );
        assert_eq!(
            tracked(&db, "seaql_migrations").await,
            [(APP_VERSION.to_owned(), 1_700_000_000)],
            "{}: only the application's version is left",
            db.backend
        );
        db.close().await;
    }
}

/// The server's second and third migrations (descriptions, soft deletion, rotation,
/// per-key Bedrock, mappings and prices; the console's accounts): rolled back and applied
/// again, every value they hold is back.
#[tokio::test]
async fn the_servers_second_migration_rolls_back_and_forth_keeping_its_data() {
    use reference_server::entity::{
        access_keys, bedrock_credentials, model_mappings, price_overrides, users,
    };
    use sea_orm::ActiveValue::Set;
    for db in TestDb::all().await {
        let now = Utc.with_ymd_and_hms(2026, 12, 1, 9, 30, 0).unwrap();
        let user = users::Model {
            id: Uuid::now_v7(),
            name: "Ada".into(),
            is_active: false,
            monthly_budget_micros: Some(5_000_000),
            routing_strategy: "plan_first".into(),
            created_at: now,
            updated_at: now,
            description: Some("platform team".into()),
            deleted_at: Some(now),
        };
        users::Entity::insert(users::ActiveModel::from(user.clone()))
            .exec(&db.db)
            .await
            .unwrap();
        let key = access_keys::Model {
            id: Uuid::now_v7(),
            user_id: user.id,
            key_hash: "a".repeat(64),
            key_prefix: "ak_abcdef".into(),
            name: Some("laptop".into()),
            is_active: true,
            created_at: now,
            revoked_at: None,
            last_used_at: None,
            expires_at: Some(now),
            replaced_by: Some(Uuid::now_v7()),
            bedrock_region: Some("eu-central-1".into()),
        };
        access_keys::Entity::insert(access_keys::ActiveModel::from(key.clone()))
            .exec(&db.db)
            .await
            .unwrap();
        bedrock_credentials::Entity::insert(bedrock_credentials::ActiveModel {
            access_key_id: Set(key.id),
            encrypted: Set(vec![0, 1, 2, 255]),
            encryption: Set("local".into()),
            key_hash: Set("b".repeat(64)),
            created_at: Set(now),
            updated_at: Set(now),
        })
        .exec(&db.db)
        .await
        .unwrap();
        model_mappings::Entity::insert(model_mappings::ActiveModel {
            id: Set(Uuid::now_v7()),
            claude_model: Set("claude-x".into()),
            bedrock_model: Set("global.anthropic.claude-x-v1:0".into()),
            description: Set(None),
            is_active: Set(true),
            created_at: Set(now),
            updated_at: Set(now),
        })
        .exec(&db.db)
        .await
        .unwrap();
        price_overrides::Entity::insert(price_overrides::ActiveModel {
            id: Set(Uuid::now_v7()),
            provider: Set("bedrock".into()),
            region: Set("eu-central-1".into()),
            model: Set("claude-x".into()),
            effective_date: Set(now.date_naive()),
            input_per_million_micros: Set(3_000_000),
            output_per_million_micros: Set(15_000_000),
            cache_write_5m_per_million_micros: Set(3_750_000),
            cache_write_1h_per_million_micros: Set(6_000_000),
            cache_read_per_million_micros: Set(300_000),
            created_at: Set(now),
            updated_at: Set(now),
        })
        .exec(&db.db)
        .await
        .unwrap();
        let everything = || async {
            (
                users::Entity::find().all(&db.db).await.unwrap(),
                access_keys::Entity::find().all(&db.db).await.unwrap(),
                bedrock_credentials::Entity::find()
                    .all(&db.db)
                    .await
                    .unwrap(),
                model_mappings::Entity::find().all(&db.db).await.unwrap(),
                price_overrides::Entity::find().all(&db.db).await.unwrap(),
            )
        };
        let before = everything().await;
        assert_eq!(before.0, [user], "{}", db.backend);

        let admin = reference_server::admins::create(
            &db.db,
            "ada",
            reference_server::admins::Role::Viewer,
            "a long passphrase",
        )
        .await
        .unwrap();
        // The console's migration and this one, rolled back.
        ServerMigrator::down(&db.db, Some(2)).await.unwrap();
        assert!(!has_table(&db, "model_mappings").await, "{}", db.backend);
        assert!(!has_table(&db, "admins").await, "{}", db.backend);
        let names = select(&db, "users", &["id", "name"]).await;
        assert_eq!(names.len(), 1, "{}: the user stays", db.backend);
        ServerMigrator::up(&db.db, None).await.unwrap();
        assert_eq!(everything().await, before, "{}: down 2, up", db.backend);
        let admins = reference_server::entity::admins::Entity::find()
            .all(&db.db)
            .await
            .unwrap();
        assert_eq!(
            admins.iter().map(|a| a.id).collect::<Vec<_>>(),
            [admin],
            "{}",
            db.backend
        );
        db.close().await;
    }
}
