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
use usage_layer::store::Buckets;
use usage_layer::store::sea_orm::SeaOrmStore;
use usage_layer::{Caller, Provider, RequestId, Usage, UsageRecord};
use usage_tests::{TestDb, assert_aggregates_match_rows, rows};
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
