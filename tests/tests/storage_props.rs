//! The seed's properties, as property tests against real SQLite and Postgres:
//!
//! * P1 — recorded Plan usage has provider `plan` and token fields equal to the input;
//! * P2 — Plan usage is costed with Plan prices (region `global`), never Bedrock's;
//! * P5 — Plan rows carry a Plan price snapshot (`global`, the Plan key);
//! * P6 — plan and bedrock usage never share an aggregate row;
//! * P8 — no provider given ⇒ `bedrock`, end to end.
//!
//! (P4, the price lookup itself, is a property test of `usage_layer::pricing`.)

use std::sync::Arc;

use chrono::{Duration, TimeZone, Utc};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};
use sea_orm::ConnectionTrait;
use usage_layer::pricing::{PriceCatalog, PriceEntry, normalize_model_id};
use usage_layer::sink::UsageStore;
use usage_layer::store::sea_orm::SeaOrmStore;
use usage_layer::store::sea_orm::entity::{token_usage, usage_aggregates};
use usage_layer::store::{BucketType, Buckets};
use usage_layer::{Caller, Fallback, Format, Outcome, Provider, RequestId, Usage, UsageRecord};
use usage_tests::{TestDb, aggregates, assert_aggregates_match_rows, rows};
use uuid::Uuid;

const CASES: u32 = 32;

/// Default prices, with Bedrock's made different from Plan's (×3), so that pricing a Plan
/// request with Bedrock's table could not go unnoticed.
fn catalog() -> PriceCatalog {
    let mut catalog = PriceCatalog::defaults();
    let bedrock: Vec<(String, String, PriceEntry)> = catalog
        .entries()
        .filter(|(provider, ..)| *provider == "bedrock")
        .map(|(_, region, model, entry)| (region.to_owned(), model.to_owned(), *entry))
        .collect();
    for (region, model, mut entry) in bedrock {
        let prices = &mut entry.prices;
        for price in [
            &mut prices.input,
            &mut prices.output,
            &mut prices.cache_write_5m,
            &mut prices.cache_write_1h,
            &mut prices.cache_read,
        ] {
            *price *= rust_decimal::Decimal::from(3);
        }
        catalog.insert(&Provider::BEDROCK, &region, &model, entry);
    }
    catalog
}

fn count() -> impl Strategy<Value = Option<u64>> {
    prop_oneof![1 => Just(None), 4 => (0u64..5_000_000).prop_map(Some)]
}

fn any_usage() -> impl Strategy<Value = Usage> {
    (count(), count(), count(), count(), count(), count()).prop_map(
        |(input, output, cache_write, cache_read, five_minutes, one_hour)| Usage {
            input_tokens: input,
            output_tokens: output,
            cache_creation_input_tokens: cache_write,
            cache_read_input_tokens: cache_read,
            ephemeral_5m_input_tokens: five_minutes,
            ephemeral_1h_input_tokens: one_hour,
            ..Usage::default()
        },
    )
}

/// A priced model, as Anthropic or Bedrock names it.
fn any_model() -> impl Strategy<Value = String> {
    let keys: Vec<String> = PriceCatalog::defaults()
        .entries()
        .filter(|(provider, ..)| *provider == "plan")
        .map(|(_, _, model, _)| model.to_owned())
        .collect();
    (prop::sample::select(keys), 0usize..3).prop_map(|(key, form)| match form {
        0 => key,
        1 => format!("{key}-20250929"),
        _ => format!("us.anthropic.{key}-20250929-v1:0"),
    })
}

/// Runs `check` for every generated input against each test database (shrinking on failure).
fn for_each_db<S: Strategy>(
    strategy: S,
    check: impl Fn(&TestDb, &SeaOrmStore, S::Value) -> Result<(), TestCaseError>,
) where
    S::Value: Clone,
{
    let runtime = tokio::runtime::Runtime::new().unwrap();
    for db in runtime.block_on(TestDb::all()) {
        let store = SeaOrmStore::new(db.db.clone(), Arc::new(catalog()), Buckets::default());
        let mut runner = TestRunner::new(Config {
            cases: CASES,
            failure_persistence: None,
            ..Config::default()
        });
        let _guard = runtime.enter();
        runner
            .run(&strategy, |input| check(&db, &store, input))
            .unwrap_or_else(|failure| panic!("{}: {failure}", db.backend));
        runtime.block_on(db.close());
    }
}

fn block_on<F: std::future::Future>(future: F) -> F::Output {
    tokio::runtime::Handle::current().block_on(future)
}

#[test]
fn p1_p2_p5_plan_usage_is_stored_exactly_and_priced_as_plan() {
    for_each_db((any_usage(), any_model()), |db, store, (usage, model)| {
        let mut record = UsageRecord::new(RequestId::new(), Utc::now());
        record.provider = Some(Provider::PLAN);
        record.region = Some("us-west-2".into()); // Plan ignores regions
        record.served_model = Some(model.clone());
        record.usage = usage;
        block_on(store.write_batch(std::slice::from_ref(&record))).unwrap();

        let stored = block_on(rows(db));
        let row = stored
            .iter()
            .find(|row| row.request_id == record.request_id.as_str())
            .unwrap();
        // P1
        prop_assert_eq!(&row.provider, "plan");
        let n = |count: Option<u64>| count.map_or(0, |n| n as i64);
        prop_assert_eq!(row.input_tokens, n(usage.input_tokens));
        prop_assert_eq!(row.output_tokens, n(usage.output_tokens));
        prop_assert_eq!(
            row.cache_creation_input_tokens,
            n(usage.cache_creation_input_tokens)
        );
        prop_assert_eq!(
            row.cache_read_input_tokens,
            n(usage.cache_read_input_tokens)
        );
        // P5
        prop_assert_eq!(row.pricing_region.as_deref(), Some("global"));
        prop_assert_eq!(
            row.pricing_model_id.clone(),
            Some(normalize_model_id(&model))
        );
        // P2: Plan's cost, not Bedrock's (which is three times as much here).
        let catalog = catalog();
        let plan = catalog
            .lookup(&Provider::PLAN, None, &model)
            .unwrap()
            .cost(&usage);
        let bedrock = catalog
            .lookup(&Provider::BEDROCK, None, &model)
            .unwrap()
            .cost(&usage);
        prop_assert_eq!(
            rust_decimal::Decimal::new(row.estimated_cost_micros, 6),
            plan.total
        );
        if !plan.total.is_zero() {
            prop_assert_ne!(plan.total, bedrock.total);
        }
        prop_assert_eq!(
            row.pricing_input_price_per_million_micros,
            Some(
                (catalog
                    .lookup(&Provider::PLAN, None, &model)
                    .unwrap()
                    .prices
                    .input
                    * rust_decimal::Decimal::from(1_000_000))
                .try_into()
                .unwrap()
            )
        );
        Ok(())
    });
}

#[derive(Clone, Debug)]
struct Request {
    /// `None`: nobody said which provider.
    provider: Option<Provider>,
    user: usize,
    key: Option<usize>,
    minutes: i64,
    usage: Usage,
}

fn request() -> impl Strategy<Value = Request> {
    (
        prop::option::of(prop::sample::select(vec![
            Provider::PLAN,
            Provider::BEDROCK,
        ])),
        0usize..3,
        prop::option::of(0usize..2),
        0i64..(3 * 24 * 60),
        any_usage(),
    )
        .prop_map(|(provider, user, key, minutes, usage)| Request {
            provider,
            user,
            key,
            minutes,
            usage,
        })
}

#[test]
fn p6_p8_providers_never_share_an_aggregate_and_unlabelled_means_bedrock() {
    let users: Vec<Uuid> = (0..3).map(|_| Uuid::now_v7()).collect();
    let keys: Vec<Uuid> = (0..2).map(|_| Uuid::now_v7()).collect();
    let strategy = (prop::collection::vec(request(), 1..40), 1usize..10);
    for_each_db(strategy, move |db, store, (requests, batch_size)| {
        block_on(async {
            db.db
                .execute_unprepared("DELETE FROM token_usage")
                .await
                .unwrap();
            db.db
                .execute_unprepared("DELETE FROM usage_aggregates")
                .await
                .unwrap();
        });
        let start = Utc.with_ymd_and_hms(2026, 2, 27, 22, 0, 0).unwrap();
        let records: Vec<UsageRecord> = requests
            .iter()
            .map(|request| {
                let mut record =
                    UsageRecord::new(RequestId::new(), start + Duration::minutes(request.minutes));
                record.provider = request.provider.clone();
                record.caller = Caller::user(users[request.user]);
                if let Some(key) = request.key {
                    record.caller = record.caller.with_access_key(keys[key]);
                }
                record.served_model = Some("claude-sonnet-4-5".into());
                record.usage = request.usage;
                record
            })
            .collect();
        for batch in records.chunks(batch_size) {
            block_on(store.write_batch(batch)).unwrap();
        }
        let stored = block_on(rows(db));
        prop_assert_eq!(stored.len(), records.len());
        for (request, record) in requests.iter().zip(&records) {
            let row = stored
                .iter()
                .find(|row| row.request_id == record.request_id.as_str())
                .unwrap();
            let expected = request.provider.clone().unwrap_or(Provider::BEDROCK);
            prop_assert_eq!(row.provider.as_str(), expected.as_str(), "P8");
        }
        // P6: every aggregate is the sum of the rows of its own provider (and key), exactly.
        block_on(assert_aggregates_match_rows(db, &Buckets::default()));
        Ok(())
    });
}

/// Text as hostile as a client or an upstream can make it: quotes, backslashes, braces,
/// commas (Postgres array syntax), control characters, multibyte characters, and lengths
/// on both sides of the stores' bounds.
fn hostile_text() -> impl Strategy<Value = String> {
    prop_oneof![
        "[a-z0-9._-]{1,12}",
        "\\PC{0,24}",
        r#"[\\"'{},()\[\] NULL\t\n\r\u{0}\u{1}é中😀]{0,16}"#,
        ("[a-zé中]{1,3}", 20usize..140).prop_map(|(unit, n)| unit.repeat(n)),
    ]
}

fn any_provider() -> impl Strategy<Value = Provider> {
    prop_oneof![
        Just(Provider::PLAN),
        Just(Provider::BEDROCK),
        Just(Provider::OPENAI),
        hostile_text().prop_map(Provider::new),
    ]
}

fn any_record() -> impl Strategy<Value = UsageRecord> {
    let who = (
        prop::option::of(hostile_text()),
        prop::option::of(hostile_text()),
        prop::option::of(any_provider()),
        prop::option::of(hostile_text()),
    );
    let models = (
        prop::option::of(prop_oneof![any_model(), hostile_text()]),
        prop::option::of(prop_oneof![any_model(), hostile_text()]),
        prop::option::of((any_provider(), hostile_text())),
        prop::collection::btree_map(hostile_text(), hostile_text(), 0..3),
    );
    let how = (
        prop::sample::select(Outcome::ALL.to_vec()),
        prop::option::of(prop::sample::select(vec![
            Format::Anthropic,
            Format::OpenAiChat,
            Format::OpenAiResponses,
        ])),
        prop::option::of(prop::sample::select(vec![200u16, 429, 500, 529])),
        any::<bool>(),
        prop::option::of(hostile_text()),
        prop::option::of(hostile_text()),
    );
    let when = (
        0i64..(40 * 24 * 3_600 * 1_000_000),
        prop::option::of(0u64..100_000),
        0u64..1_000_000,
        any::<u64>(),
        any_usage(),
        prop::option::of(0u64..100_000),
    );
    (who, models, how, when).prop_map(
        |(
            (user, key, provider, region),
            (requested, served, fallback, labels),
            (outcome, format, status, streaming, error_type, stop_reason),
            (micros, first_byte, duration, bytes, usage, reasoning),
        )| {
            let start = Utc.with_ymd_and_hms(2026, 2, 20, 0, 0, 0).unwrap();
            let mut record =
                UsageRecord::new(RequestId::new(), start + Duration::microseconds(micros));
            record.caller.user_id = user;
            record.caller.access_key_id = key;
            record.provider = provider;
            record.region = region;
            record.requested_model = requested;
            record.served_model = served;
            record.fallback = fallback.map(|(from, reason)| Fallback {
                from,
                reason: reason.into(),
            });
            for (name, value) in labels {
                record.labels.insert(name, value);
            }
            record.outcome = outcome;
            record.format = format;
            record.status = status.map(|code| http::StatusCode::from_u16(code).unwrap());
            record.streaming = streaming;
            record.error_type = error_type;
            record.stop_reason = stop_reason;
            record.time_to_first_byte = first_byte.map(std::time::Duration::from_millis);
            record.duration = std::time::Duration::from_millis(duration);
            record.response_bytes = bytes;
            record.usage = Usage {
                reasoning_tokens: reasoning,
                ..usage
            };
            record
        },
    )
}

/// What a store holds, without the ids the database picked.
async fn contents(db: &TestDb) -> (Vec<token_usage::Model>, Vec<usage_aggregates::Model>) {
    let mut stored = rows(db).await;
    stored.iter_mut().for_each(|row| row.id = 0);
    stored.sort_by(|a, b| a.request_id.cmp(&b.request_id));
    let mut buckets = Vec::new();
    for kind in BucketType::ALL {
        buckets.extend(aggregates(db, kind).await);
    }
    buckets.iter_mut().for_each(|bucket| bucket.id = 0);
    buckets.sort_by(|a, b| {
        let key = |m: &usage_aggregates::Model| {
            (
                m.bucket_type.clone(),
                m.bucket_start,
                m.user_id.clone(),
                m.access_key_id.clone(),
                m.provider.clone(),
            )
        };
        key(a).cmp(&key(b))
    });
    (stored, buckets)
}

/// The two write paths (Postgres: one `UNNEST` array per column; SQLite: multi-row
/// `VALUES`) store any record alike: every column of every row, and every aggregate —
/// text exactly as given (NUL, which Postgres cannot hold, as U+FFFD on both), and a
/// batch written again changes nothing.
#[test]
fn postgres_and_sqlite_store_any_record_alike() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let dbs = runtime.block_on(TestDb::all());
    if dbs.len() < 2 {
        eprintln!(
            "SKIPPED postgres_and_sqlite_store_any_record_alike: no Postgres (TEST_DATABASE_URL)"
        );
        return;
    }
    let stores: Vec<SeaOrmStore> = dbs
        .iter()
        .map(|db| SeaOrmStore::new(db.db.clone(), Arc::new(catalog()), Buckets::default()))
        .collect();
    let mut runner = TestRunner::new(Config {
        cases: CASES,
        failure_persistence: None,
        ..Config::default()
    });
    let strategy = (prop::collection::vec(any_record(), 1..30), 1usize..12);
    runner
        .run(&strategy, |(records, batch_size)| {
            let stored: Vec<_> = runtime.block_on(async {
                let mut stored = Vec::new();
                for (db, store) in dbs.iter().zip(&stores) {
                    for table in ["token_usage", "usage_aggregates"] {
                        db.db
                            .execute_unprepared(&format!("DELETE FROM {table}"))
                            .await
                            .unwrap();
                    }
                    for batch in records.chunks(batch_size) {
                        store.write_batch(batch).await.unwrap();
                    }
                    // Written again: nothing changes.
                    store.write_batch(&records).await.unwrap();
                    stored.push(contents(db).await);
                }
                stored
            });
            prop_assert_eq!(stored[0].0.len(), records.len());
            // Text is kept exactly, but for NUL (which Postgres cannot hold): U+FFFD.
            let stored_text = |text: &str| text.replace('\0', "\u{FFFD}");
            for record in &records {
                let row = stored[0]
                    .0
                    .iter()
                    .find(|row| row.request_id == record.request_id.as_str())
                    .unwrap();
                prop_assert_eq!(
                    &row.model,
                    &stored_text(record.model().unwrap_or("unknown"))
                );
                prop_assert_eq!(
                    row.stop_reason.clone(),
                    record.stop_reason.as_deref().map(stored_text)
                );
                prop_assert_eq!(
                    row.error_type.clone(),
                    record.error_type.as_deref().map(stored_text)
                );
                prop_assert_eq!(
                    row.region.clone(),
                    record.region.as_deref().map(stored_text)
                );
            }
            prop_assert_eq!(
                &stored[0],
                &stored[1],
                "{} and {} differ",
                dbs[0].backend,
                dbs[1].backend
            );
            Ok(())
        })
        .unwrap_or_else(|failure| panic!("{failure}"));
    for db in dbs {
        runtime.block_on(db.close());
    }
}
