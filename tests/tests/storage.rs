//! The sea-orm store on real SQLite and Postgres: rows, price snapshots, provider-separated
//! aggregates, idempotency, queries that agree, and concurrent writers.

use std::sync::Arc;

use chrono::{DateTime, Duration, TimeZone, Utc};
use rust_decimal::Decimal;
use sea_orm::TransactionTrait;
use usage_layer::pricing::PriceCatalog;
use usage_layer::sink::UsageStore;
use usage_layer::store::sea_orm::{SeaOrmStore, UsageFilter};
use usage_layer::store::{BucketType, Buckets};
use usage_layer::{Caller, Fallback, Format, Outcome, Provider, RequestId, Usage, UsageRecord};
use usage_tests::{
    TestDb, aggregates, assert_aggregates_match_rows, caller, record, rows, store, usage,
};
use uuid::Uuid;

fn at(h: u32, m: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 27, h, m, 30).unwrap()
}

#[tokio::test]
async fn plan_and_bedrock_rows_are_priced_and_aggregated_apart() {
    for db in TestDb::all().await {
        let store = store(&db);
        let who = caller();
        let plan = record(
            Provider::PLAN,
            who.clone(),
            "claude-opus-4-5-20251101",
            usage(1_000_000, 500_000, 100_000, 200_000),
            at(10, 5),
        );
        let mut bedrock = record(
            Provider::BEDROCK,
            who.clone(),
            "us.anthropic.claude-opus-4-5-20251101-v1:0",
            usage(10, 20, 0, 0),
            at(10, 6),
        );
        bedrock.region = Some("eu-central-9".into()); // no table of its own: the default region
        bedrock.fallback = Some(Fallback {
            from: Provider::PLAN,
            reason: "rate_limited".into(),
        });
        store
            .write_batch(&[plan.clone(), bedrock.clone()])
            .await
            .unwrap();

        let rows = rows(&db).await;
        assert_eq!(rows.len(), 2, "{}", db.backend);
        let plan_row = &rows[0];
        assert_eq!(plan_row.request_id, plan.request_id.as_str());
        assert_eq!(plan_row.provider, "plan");
        assert_eq!(
            (
                plan_row.input_tokens,
                plan_row.output_tokens,
                plan_row.cache_creation_input_tokens,
                plan_row.cache_read_input_tokens
            ),
            (1_000_000, 500_000, 100_000, 200_000)
        );
        assert_eq!(plan_row.total_tokens, 1_500_000);
        // The original's test vector: Opus 5 / 25 / 6.25 / 0.50 ⇒ 18.225000 USD.
        assert_eq!(plan_row.estimated_cost_micros, 18_225_000);
        assert_eq!(
            plan_row.cost_input_micros
                + plan_row.cost_output_micros
                + plan_row.cost_cache_write_micros
                + plan_row.cost_cache_read_micros,
            plan_row.estimated_cost_micros
        );
        // R5: the Plan snapshot is global, with the Plan key.
        assert_eq!(plan_row.pricing_region.as_deref(), Some("global"));
        assert_eq!(
            plan_row.pricing_model_id.as_deref(),
            Some("claude-opus-4-5")
        );
        assert_eq!(
            plan_row.pricing_input_price_per_million_micros,
            Some(5_000_000)
        );
        assert!(plan_row.pricing_effective_date.is_some());
        assert!(!plan_row.unpriced);
        assert_eq!(plan_row.outcome, "completed");
        assert_eq!(plan_row.status_code, Some(200));

        let bedrock_row = &rows[1];
        assert_eq!(bedrock_row.provider, "bedrock");
        assert_eq!(
            bedrock_row.pricing_region.as_deref(),
            Some("us-east-1"),
            "the default region's price"
        );
        assert_eq!(bedrock_row.region.as_deref(), Some("eu-central-9"));
        assert_eq!(
            bedrock_row.model,
            "us.anthropic.claude-opus-4-5-20251101-v1:0"
        );
        assert_eq!(bedrock_row.fallback_from.as_deref(), Some("plan"));
        assert_eq!(bedrock_row.fallback_reason.as_deref(), Some("rate_limited"));

        // P6: one aggregate row per provider in every bucket type.
        for kind in BucketType::ALL {
            let buckets = aggregates(&db, kind).await;
            let providers: Vec<&str> = buckets.iter().map(|a| a.provider.as_str()).collect();
            assert_eq!(providers, ["bedrock", "plan"], "{} {kind}", db.backend);
        }
        assert_aggregates_match_rows(&db, &Buckets::default()).await;
        db.close().await;
    }
}

#[tokio::test]
async fn a_batch_written_twice_or_replayed_after_a_failed_commit_counts_once() {
    for db in TestDb::all().await {
        let store = store(&db);
        let who = caller();
        let batch: Vec<UsageRecord> = (0..50)
            .map(|i| {
                record(
                    Provider::PLAN,
                    who.clone(),
                    "claude-sonnet-4-5",
                    usage(100 + i, 10, 0, 5),
                    at(11, (i % 60) as u32),
                )
            })
            .collect();

        // The commit failed (rolled back): nothing was stored, the retry stores it all.
        let txn = db.db.begin().await.unwrap();
        let first = store.write_batch_in(&txn, &batch).await.unwrap();
        assert_eq!(first.inserted, 50);
        txn.rollback().await.unwrap();
        assert!(rows(&db).await.is_empty(), "{}", db.backend);

        store.write_batch(&batch).await.unwrap();
        // The commit succeeded but the writer did not hear back: the same batch again.
        store.write_batch(&batch).await.unwrap();
        // And once more, with a duplicate inside the batch.
        let mut again = batch[..10].to_vec();
        again.extend_from_slice(&batch[..10]);
        store.write_batch(&again).await.unwrap();

        assert_eq!(rows(&db).await.len(), 50, "{}", db.backend);
        let stats = store.stats();
        assert_eq!(
            (stats.inserted, stats.duplicates),
            (50, 70),
            "{}",
            db.backend
        );
        let month = aggregates(&db, BucketType::Month).await;
        assert_eq!(month.len(), 1);
        assert_eq!(month[0].total_requests, 50);
        assert_eq!(month[0].total_input_tokens, (100..150).sum::<i64>());
        assert_aggregates_match_rows(&db, &Buckets::default()).await;

        // A batch partly stored already (a writer retrying a batch it had grown): only
        // the new records count, in the buckets of both.
        let mut overlapping = batch[40..].to_vec();
        overlapping.extend((0..5).map(|i| {
            record(
                Provider::BEDROCK,
                who.clone(),
                "claude-sonnet-4-5",
                usage(1_000 + i, 1, 0, 0),
                at(12, i as u32),
            )
        }));
        let txn = db.db.begin().await.unwrap();
        let outcome = store.write_batch_in(&txn, &overlapping).await.unwrap();
        txn.commit().await.unwrap();
        assert_eq!(
            (outcome.inserted, outcome.duplicates),
            (5, 10),
            "{}",
            db.backend
        );
        assert_eq!(rows(&db).await.len(), 55, "{}", db.backend);
        let month = aggregates(&db, BucketType::Month).await;
        assert_eq!(
            month.iter().map(|m| m.total_requests).sum::<i64>(),
            55,
            "{}",
            db.backend
        );
        assert_aggregates_match_rows(&db, &Buckets::default()).await;
        db.close().await;
    }
}

/// Ids of any kind — a team, an API-key name, a request id from a header — are stored as
/// the record had them and read back by the same strings; labels, format and reasoning
/// tokens are kept; a text request id keeps the store idempotent.
#[tokio::test]
async fn string_ids_labels_and_format_are_stored_as_recorded() {
    for db in TestDb::all().await {
        let store = store(&db);
        let team = Caller::user("team/infra").with_access_key("ci key ✓");
        let mut labelled = record(
            Provider::PLAN,
            team,
            "claude-sonnet-4-5",
            usage(100, 40, 0, 0),
            at(9, 0),
        );
        labelled.request_id = RequestId::parse("req_01JABC-x.y").unwrap();
        labelled.labels = [("team", "infra"), ("feature", "auto\"complete")]
            .into_iter()
            .collect();
        labelled.format = Some(Format::OpenAiResponses);
        labelled.usage.reasoning_tokens = Some(25);
        // A UUID in capitals is stored as given, not as another spelling of it.
        let shouted = Uuid::now_v7().to_string().to_uppercase();
        let mut anonymous = record(
            Provider::PLAN,
            Caller::default(),
            "claude-sonnet-4-5",
            usage(1, 1, 0, 0),
            at(9, 1),
        );
        anonymous.request_id = RequestId::parse(&shouted).unwrap();
        store
            .write_batch(&[labelled.clone(), anonymous])
            .await
            .unwrap();
        let aggregates_once = aggregates(&db, BucketType::Day).await;
        store.write_batch(&[labelled]).await.unwrap();
        assert_eq!(store.stats().duplicates, 1, "{}", db.backend);
        assert_eq!(aggregates(&db, BucketType::Day).await, aggregates_once);

        let rows = rows(&db).await;
        assert_eq!(rows.len(), 2, "{}", db.backend);
        let row = &rows[0];
        assert_eq!(row.request_id, "req_01JABC-x.y");
        assert_eq!(row.user_id.as_deref(), Some("team/infra"));
        assert_eq!(row.access_key_id.as_deref(), Some("ci key ✓"));
        let labels: serde_json::Value =
            serde_json::from_str(row.labels.as_deref().unwrap()).unwrap();
        assert_eq!(
            labels,
            serde_json::json!({"feature": "auto\"complete", "team": "infra"})
        );
        assert_eq!(row.format.as_deref(), Some("openai_responses"));
        assert_eq!(row.reasoning_tokens, Some(25));
        let row = &rows[1];
        assert_eq!(row.request_id, shouted);
        assert_eq!(
            (row.user_id.as_deref(), row.access_key_id.as_deref()),
            (None, None)
        );
        assert_eq!((row.labels.as_deref(), row.format.as_deref()), (None, None));
        assert_eq!(row.reasoning_tokens, None);
        assert_aggregates_match_rows(&db, &Buckets::default()).await;

        let queries = store.queries();
        let range = queries.range(BucketType::Day, at(0, 0), at(23, 59));
        let requests = async |filter: UsageFilter| {
            let totals = queries.totals(&range, &filter).await.unwrap();
            let breakdown = queries.cost_breakdown(&range, &filter).await.unwrap();
            let from_rows: i64 = breakdown.iter().map(|cost| cost.totals.requests).sum();
            assert_eq!(totals.requests, from_rows, "{} {filter:?}", db.backend);
            totals.requests
        };
        let user = |id: &str| UsageFilter {
            user_id: Some(id.to_owned()),
            ..UsageFilter::default()
        };
        assert_eq!(requests(user("team/infra")).await, 1);
        let key = UsageFilter {
            access_key_id: Some("ci key ✓".to_owned()),
            ..UsageFilter::default()
        };
        assert_eq!(requests(key).await, 1);
        // The empty id: the usage without one, in the aggregates and the rows alike.
        assert_eq!(requests(user("")).await, 1);
        let top = queries
            .top_users(&range, &UsageFilter::default(), 10)
            .await
            .unwrap();
        let mut users: Vec<Option<String>> = top.iter().map(|u| u.user_id.clone()).collect();
        users.sort();
        assert_eq!(users, [None, Some("team/infra".to_owned())]);
        let series = queries
            .user_series(&range, &UsageFilter::default(), &users)
            .await
            .unwrap();
        for (user, series) in series {
            let requests: i64 = series.iter().map(|(_, totals)| totals.requests).sum();
            assert_eq!(requests, 1, "{} {user:?}", db.backend);
        }
        db.close().await;
    }
}

#[tokio::test]
async fn usage_without_a_key_or_a_user_still_upserts_one_bucket() {
    for db in TestDb::all().await {
        let store = store(&db);
        let keyless = Caller::user(Uuid::now_v7());
        for minute in [1, 2, 3] {
            store
                .write_batch(&[
                    record(
                        Provider::BEDROCK,
                        keyless.clone(),
                        "claude-haiku-4-5",
                        usage(1, 1, 0, 0),
                        at(9, minute),
                    ),
                    record(
                        Provider::BEDROCK,
                        Caller::default(),
                        "claude-haiku-4-5",
                        usage(1, 1, 0, 0),
                        at(9, minute),
                    ),
                ])
                .await
                .unwrap();
        }
        let hours = aggregates(&db, BucketType::Hour).await;
        assert_eq!(
            hours.len(),
            2,
            "{}: one bucket per (user, no key)",
            db.backend
        );
        assert!(
            hours
                .iter()
                .all(|a| a.total_requests == 3 && a.access_key_id.is_empty())
        );
        assert_aggregates_match_rows(&db, &Buckets::default()).await;
        db.close().await;
    }
}

#[tokio::test]
async fn unknown_models_are_unpriced_and_long_ids_fit() {
    for db in TestDb::all().await {
        let store = store(&db);
        let long_model = format!("claude-experimental-{}", "x".repeat(2_000));
        let unknown = record(
            Provider::BEDROCK,
            caller(),
            &long_model,
            usage(1000, 1000, 0, 0),
            at(8, 0),
        );
        let mut no_usage = record(
            Provider::PLAN,
            caller(),
            "claude-nobody-knows",
            Usage::default(),
            at(8, 1),
        );
        no_usage.outcome = Outcome::ErrorResponse;
        no_usage.status = Some(http::StatusCode::TOO_MANY_REQUESTS);
        store.write_batch(&[unknown, no_usage]).await.unwrap();

        let rows = rows(&db).await;
        assert_eq!(rows[0].model, long_model);
        assert!(rows[0].unpriced, "usage without a price is flagged");
        assert_eq!(rows[0].estimated_cost_micros, 0);
        assert_eq!(
            rows[0].pricing_model_id, None,
            "never priced as another model"
        );
        assert!(!rows[1].unpriced, "nothing to price is not unpriced");
        assert_eq!(rows[1].outcome, "error_response");
        assert_eq!(rows[1].status_code, Some(429));
        assert_eq!(store.stats().unpriced, 1);
        db.close().await;
    }
}

/// Caller ids and provider names are indexed: Postgres refuses an index entry over ~2.7 kB,
/// and with it the whole batch, on every retry. The store cuts them as the layer does.
#[tokio::test]
async fn over_long_caller_ids_and_providers_are_cut_not_refused() {
    for db in TestDb::all().await {
        let store = store(&db);
        let long_user = format!("team-{}", "u".repeat(5_000));
        let long_key = "k".repeat(3_000);
        let long_provider = format!("provider-{}", "p".repeat(4_000));
        let mut first = record(
            Provider::new(long_provider.clone()),
            Caller::user(&long_user).with_access_key(&long_key),
            "claude-sonnet-4-5",
            usage(10, 5, 0, 0),
            at(7, 0),
        );
        first.fallback = Some(Fallback {
            from: Provider::new(long_provider),
            reason: "rate_limited".into(),
        });
        let mut second = first.clone();
        second.request_id = RequestId::new();
        let mut cut_by_the_layer = second.clone();
        cut_by_the_layer.request_id = RequestId::new();
        assert!(cut_by_the_layer.bound_ids());
        store
            .write_batch(&[first, second, cut_by_the_layer])
            .await
            .unwrap();

        let rows = rows(&db).await;
        assert_eq!(rows.len(), 3);
        for row in &rows {
            let user = row.user_id.as_deref().unwrap();
            assert_eq!(user.len(), Caller::MAX_ID_LEN);
            assert!(user.starts_with("team-uuu"));
            assert_eq!(
                row.access_key_id.as_deref().unwrap().len(),
                Caller::MAX_ID_LEN
            );
            assert_eq!(row.provider.len(), Provider::MAX_LEN);
            assert_eq!(row.fallback_from.as_ref(), Some(&row.provider));
            // The same ids, cut the same way, whoever cut them: one bucket.
            assert_eq!(row.user_id, rows[0].user_id);
            assert_eq!(row.provider, rows[0].provider);
        }
        for kind in BucketType::ALL {
            let buckets = aggregates(&db, kind).await;
            assert_eq!(
                buckets.len(),
                1,
                "one {kind:?} bucket for the three requests"
            );
            assert_eq!(buckets[0].total_requests, 3);
        }
        assert_aggregates_match_rows(&db, &Buckets::default()).await;
        db.close().await;
    }
}

#[tokio::test]
async fn a_record_without_a_provider_is_stored_as_bedrock() {
    for db in TestDb::all().await {
        let store = store(&db);
        let mut unlabelled = UsageRecord::new(RequestId::new(), at(7, 0));
        unlabelled.usage = usage(5, 5, 0, 0);
        unlabelled.requested_model = Some("claude-sonnet-4-5".into());
        store.write_batch(&[unlabelled]).await.unwrap();
        let rows = rows(&db).await;
        assert_eq!(rows[0].provider, "bedrock", "P8");
        assert_eq!(
            rows[0].model, "claude-sonnet-4-5",
            "the requested model when none served"
        );
        assert_eq!(rows[0].pricing_region.as_deref(), Some("us-east-1"));
        let hour = aggregates(&db, BucketType::Hour).await;
        assert_eq!(hour[0].provider, "bedrock");
        db.close().await;
    }
}

#[tokio::test]
async fn totals_series_and_breakdown_agree_under_every_filter() {
    for db in TestDb::all().await {
        let store = store(&db);
        // Ids of any kind: a UUID, a team's name.
        let (alice, bob) = (
            caller(),
            Caller::user("team bob").with_access_key("bob's key"),
        );
        let mut batch = Vec::new();
        for i in 0..40u32 {
            let who = if i % 3 == 0 { &bob } else { &alice }.clone();
            let provider = if i % 2 == 0 {
                Provider::PLAN
            } else {
                Provider::BEDROCK
            };
            let model = [
                "claude-sonnet-4-5",
                "claude-haiku-4-5",
                "claude-opus-4-5",
                "mystery-model",
            ][i as usize % 4];
            batch.push(record(
                provider,
                who.clone(),
                model,
                usage(100 * u64::from(i), 7, 3, 11),
                at(i % 24, i),
            ));
        }
        store.write_batch(&batch).await.unwrap();
        let queries = store.queries();
        let range = queries.range(BucketType::Hour, at(0, 0), at(23, 59));
        for provider in [None, Some(Provider::PLAN), Some(Provider::BEDROCK)] {
            for user in [None, alice.user_id.clone(), bob.user_id.clone()] {
                let filter = UsageFilter {
                    provider: provider.clone(),
                    user_id: user,
                    access_key_id: None,
                };
                let totals = queries.totals(&range, &filter).await.unwrap();
                let series = queries.series(&range, &filter).await.unwrap();
                let breakdown = queries.cost_breakdown(&range, &filter).await.unwrap();
                assert_eq!(series.len(), 24, "every bucket, zeros included");
                assert_eq!(
                    series
                        .iter()
                        .map(|(_, t)| t)
                        .sum::<usage_layer::store::sea_orm::Totals>(),
                    totals
                );
                assert_eq!(
                    breakdown
                        .iter()
                        .map(|m| &m.totals)
                        .sum::<usage_layer::store::sea_orm::Totals>(),
                    totals,
                    "{} {filter:?}",
                    db.backend
                );
                if let Some(provider) = &provider {
                    assert!(breakdown.iter().all(|m| m.provider == provider.as_str()));
                }
            }
        }
        // Unfiltered = plan + bedrock, bucket by bucket.
        let all = queries
            .series(&range, &UsageFilter::default())
            .await
            .unwrap();
        let plan = queries
            .series(
                &range,
                &UsageFilter {
                    provider: Some(Provider::PLAN),
                    ..Default::default()
                },
            )
            .await
            .unwrap();
        let bedrock = queries
            .series(
                &range,
                &UsageFilter {
                    provider: Some(Provider::BEDROCK),
                    ..Default::default()
                },
            )
            .await
            .unwrap();
        for ((all, plan), bedrock) in all.iter().zip(&plan).zip(&bedrock) {
            assert_eq!(all.1, [plan.1, bedrock.1].iter().sum());
        }
        let top = queries
            .top_users(&range, &UsageFilter::default(), 10)
            .await
            .unwrap();
        assert_eq!(top.len(), 2);
        assert!(top[0].totals.cost_micros >= top[1].totals.cost_micros);
        assert_eq!(
            top.iter()
                .map(|u| &u.totals)
                .sum::<usage_layer::store::sea_orm::Totals>(),
            queries
                .totals(&range, &UsageFilter::default())
                .await
                .unwrap()
        );
        // The budget reads Bedrock only.
        let month = queries
            .monthly_total(
                alice.user_id.as_deref().unwrap(),
                &Provider::BEDROCK,
                at(12, 0),
            )
            .await
            .unwrap();
        let expected: i64 = rows(&db)
            .await
            .iter()
            .filter(|r| r.user_id == alice.user_id && r.provider == "bedrock")
            .map(|r| r.estimated_cost_micros)
            .sum();
        assert_eq!(month.cost_micros, expected);
        assert_eq!(month.cost_usd(), Decimal::new(expected, 6));
        db.close().await;
    }
}

#[tokio::test]
async fn outcomes_fallbacks_and_unpriced_models_equal_the_rows_under_every_filter() {
    use std::collections::BTreeMap;
    for db in TestDb::all().await {
        let store = store(&db);
        let (alice, bob) = (caller(), caller());
        let mut batch = Vec::new();
        for i in 0..60u32 {
            let who = if i % 3 == 0 { &bob } else { &alice };
            let provider = if i % 2 == 0 {
                Provider::PLAN
            } else {
                Provider::BEDROCK
            };
            let model = ["claude-sonnet-4-5", "mystery-model", "claude-haiku-4-5"][i as usize % 3];
            // An hour outside the range: at(23, _) is in the next day.
            let started = if i == 59 {
                at(0, 0) + Duration::days(1)
            } else {
                at(i % 23, i % 60)
            };
            let mut row = record(
                provider,
                who.clone(),
                model,
                usage(u64::from(i), 5, 0, 0),
                started,
            );
            row.outcome = Outcome::ALL[(i / 2) as usize % Outcome::ALL.len()];
            if i % 4 == 1 {
                row.fallback = Some(Fallback {
                    from: Provider::PLAN,
                    reason: ["rate_limited", "overloaded"][i as usize % 2].into(),
                });
            }
            batch.push(row);
        }
        store.write_batch(&batch).await.unwrap();
        let written = rows(&db).await;
        let queries = store.queries();
        let range = queries.range(BucketType::Day, at(0, 0), at(1, 0));
        for provider in [None, Some(Provider::PLAN), Some(Provider::BEDROCK)] {
            for user in [None, alice.user_id.clone(), bob.user_id.clone()] {
                let filter = UsageFilter {
                    provider: provider.clone(),
                    user_id: user.clone(),
                    access_key_id: None,
                };
                let picked: Vec<_> = written
                    .iter()
                    .filter(|r| r.timestamp >= range.start() && r.timestamp < range.end())
                    .filter(|r| provider.as_ref().is_none_or(|p| r.provider == p.as_str()))
                    .filter(|r| user.is_none() || r.user_id == user)
                    .collect();
                let found = queries.outcomes(&range, &filter).await.unwrap();
                let mut outcomes = BTreeMap::new();
                let mut fallbacks = BTreeMap::new();
                let mut unpriced = BTreeMap::new();
                for row in &picked {
                    *outcomes
                        .entry((row.provider.clone(), row.outcome.clone()))
                        .or_insert(0) += 1;
                    if let Some(from) = &row.fallback_from {
                        *fallbacks
                            .entry((
                                row.provider.clone(),
                                from.clone(),
                                row.fallback_reason.clone(),
                            ))
                            .or_insert(0) += 1;
                    }
                    if row.unpriced {
                        let entry = unpriced
                            .entry((row.provider.clone(), row.model.clone()))
                            .or_insert((0, 0, 0));
                        entry.0 += 1;
                        entry.1 += row.input_tokens;
                        entry.2 += row.output_tokens;
                    }
                }
                let label = format!("{} {filter:?}", db.backend);
                assert_eq!(
                    found
                        .outcomes
                        .iter()
                        .map(|o| ((o.provider.clone(), o.outcome.clone()), o.requests))
                        .collect::<Vec<_>>(),
                    outcomes.into_iter().collect::<Vec<_>>(),
                    "{label}"
                );
                assert_eq!(
                    found
                        .fallbacks
                        .iter()
                        .map(|f| (
                            (f.provider.clone(), f.from.clone(), f.reason.clone()),
                            f.requests
                        ))
                        .collect::<Vec<_>>(),
                    fallbacks.into_iter().collect::<Vec<_>>(),
                    "{label}"
                );
                assert_eq!(
                    found
                        .unpriced
                        .iter()
                        .map(|u| (
                            (u.provider.clone(), u.model.clone()),
                            (u.requests, u.input_tokens, u.output_tokens)
                        ))
                        .collect::<Vec<_>>(),
                    unpriced.into_iter().collect::<Vec<_>>(),
                    "{label}"
                );
                if filter == UsageFilter::default() {
                    assert!(
                        !found.unpriced.is_empty() && !found.fallbacks.is_empty(),
                        "{label}"
                    );
                    assert_eq!(found.outcomes.len(), 2 * Outcome::ALL.len(), "{label}");
                }
            }
        }
        db.close().await;
    }
}

/// Eight writers into overlapping buckets: exact aggregates, no deadlock.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_writers_keep_aggregates_exact() {
    let Some(db) = TestDb::postgres().await else {
        return;
    };
    let buckets = Buckets::default();
    let users: Vec<Caller> = (0..4).map(|_| caller()).collect();
    let mut writers = Vec::new();
    for writer in 0..8u64 {
        let store = store(&db);
        let users = users.clone();
        writers.push(tokio::spawn(async move {
            for batch in 0..20u64 {
                let records: Vec<UsageRecord> = (0..100u64)
                    .map(|i| {
                        let n = writer * 10_000 + batch * 100 + i;
                        let provider = if n % 2 == 0 {
                            Provider::PLAN
                        } else {
                            Provider::BEDROCK
                        };
                        let when = at(10, 0) + Duration::seconds((n % 600) as i64);
                        record(
                            provider,
                            users[(n % 4) as usize].clone(),
                            "claude-sonnet-4-5",
                            usage(n % 1000, n % 77, n % 5, n % 13),
                            when,
                        )
                    })
                    .collect();
                store.write_batch(&records).await.unwrap();
            }
        }));
    }
    let all = async {
        for writer in writers {
            writer.await.unwrap();
        }
    };
    tokio::time::timeout(std::time::Duration::from_secs(120), all)
        .await
        .expect("8 writers finished (no deadlock)");
    assert_eq!(rows(&db).await.len(), 16_000);
    assert_aggregates_match_rows(&db, &buckets).await;
    db.close().await;
}

#[tokio::test]
async fn buckets_follow_the_configured_zone() {
    for db in TestDb::all().await {
        let seoul = Buckets::new(chrono_tz::Asia::Seoul, chrono::Weekday::Sun);
        let store = SeaOrmStore::new(db.db.clone(), Arc::new(PriceCatalog::defaults()), seoul);
        // 16:30 UTC on the 27th is 01:30 on the 28th in Seoul.
        let late = record(
            Provider::PLAN,
            caller(),
            "claude-haiku-4-5",
            usage(1, 1, 0, 0),
            at(16, 30),
        );
        store.write_batch(&[late]).await.unwrap();
        let day = aggregates(&db, BucketType::Day).await;
        assert_eq!(
            day[0].bucket_start,
            Utc.with_ymd_and_hms(2026, 11, 27, 15, 0, 0).unwrap()
        );
        assert_aggregates_match_rows(&db, &seoul).await;
        db.close().await;
    }
}
