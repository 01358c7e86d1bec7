//! The admin usage API on a live server, on SQLite and Postgres: provider filters (R6, P7),
//! totals that agree with the breakdown, zero-filled series, and 400s naming the parameter.

use std::sync::Arc;

use bytes::Bytes;
use chrono::{DateTime, Duration, TimeZone, Utc};
use clap::Parser;
use http::{Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};
use reference_server::config::{Cli, Command};
use reference_server::server::{Server, start};
use sea_orm::ConnectionTrait;
use serde_json::Value;
use usage_layer::pricing::PriceCatalog;
use usage_layer::sink::UsageStore;
use usage_layer::store::Buckets;
use usage_layer::store::sea_orm::SeaOrmStore;
use usage_layer::{Caller, Provider, UsageRecord};
use usage_tests::{TestDb, record, usage};
use uuid::Uuid;

const TOKEN: &str = "admin-test-token-0123456789";

fn day() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 20, 0, 0, 0).unwrap()
}

async fn serve(db: &TestDb, state_dir: &std::path::Path) -> Server {
    let args = [
        "reference-server".to_owned(),
        "serve".to_owned(),
        format!("--database-url={}", db.url),
        format!("--state-dir={}", state_dir.display()),
        "--bind=127.0.0.1:0".to_owned(),
        format!("--admin-token={TOKEN}"),
        "--plan-api-url=http://127.0.0.1:9".to_owned(),
        "--bedrock-enabled=false".to_owned(),
    ];
    let Command::Serve(serve) = Cli::parse_from(args).command else {
        unreachable!()
    };
    start(*serve).await.unwrap()
}

async fn get(server: &Server, path_and_query: &str, token: Option<&str>) -> (StatusCode, Value) {
    let mut request = Request::get(format!("http://{}{path_and_query}", server.addr));
    if let Some(token) = token {
        request = request.header("authorization", format!("Bearer {token}"));
    }
    let response = Client::builder(TokioExecutor::new())
        .build_http::<Full<Bytes>>()
        .request(request.body(Full::default()).unwrap())
        .await
        .unwrap();
    let status = response.status();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    (status, serde_json::from_slice(&body).unwrap_or(Value::Null))
}

/// Writes records straight to the store, as the proxy's writer would.
async fn write(db: &TestDb, records: &[UsageRecord]) {
    let store = SeaOrmStore::new(
        db.db.clone(),
        Arc::new(PriceCatalog::defaults()),
        Buckets::default(),
    );
    store.write_batch(records).await.unwrap();
}

fn n(value: &Value, field: &str) -> i64 {
    value[field]
        .as_i64()
        .unwrap_or_else(|| panic!("{field} in {value}"))
}

fn money(value: &Value, field: &str) -> rust_decimal::Decimal {
    let text = value[field]
        .as_str()
        .unwrap_or_else(|| panic!("{field} in {value}"));
    assert_eq!(
        text.split('.').nth(1).map(str::len),
        Some(6),
        "6 places: {text}"
    );
    text.parse().unwrap()
}

#[tokio::test]
async fn usage_by_provider_agrees_with_its_breakdown_and_rejects_bad_input() {
    for db in TestDb::all().await {
        let dir = tempfile::tempdir().unwrap();
        let (alice, bob) = (
            Caller::user(Uuid::now_v7()).with_access_key(Uuid::now_v7()),
            Caller::user(Uuid::now_v7()),
        );
        let mut records = Vec::new();
        for i in 0..30u32 {
            let provider = if i % 3 == 0 {
                Provider::BEDROCK
            } else {
                Provider::PLAN
            };
            let who = if i % 2 == 0 { &alice } else { &bob }.clone();
            let model =
                ["claude-sonnet-4-5", "claude-opus-4-5", "claude-haiku-4-5"][i as usize % 3];
            records.push(record(
                provider,
                who,
                model,
                usage(1000 + u64::from(i), 50, 10, 200),
                day() + Duration::minutes(i64::from(i) * 37),
            ));
        }
        write(&db, &records).await;
        let server = serve(&db, dir.path()).await;

        assert_eq!(
            get(&server, "/admin/usage", None).await.0,
            StatusCode::UNAUTHORIZED
        );
        assert_eq!(
            get(&server, "/admin/usage", Some("wrong")).await.0,
            StatusCode::UNAUTHORIZED
        );

        let range = "start_date=2026-11-20&end_date=2026-11-20";
        let (status, all) = get(
            &server,
            &format!("/admin/usage?bucket_type=hour&{range}"),
            Some(TOKEN),
        )
        .await;
        assert_eq!(status, StatusCode::OK, "{all}");
        assert_eq!(
            all["buckets"].as_array().unwrap().len(),
            24,
            "every hour, zeros included"
        );
        assert_eq!(n(&all, "total_requests"), 30);
        let breakdown = all["cost_breakdown"].as_array().unwrap();
        let breakdown_cost: rust_decimal::Decimal =
            breakdown.iter().map(|m| money(m, "total_cost_usd")).sum();
        assert_eq!(
            breakdown_cost,
            money(&all, "estimated_cost_usd"),
            "totals equal the breakdown's sum"
        );
        assert_eq!(breakdown.iter().map(|m| n(m, "requests")).sum::<i64>(), 30);

        let (_, plan) = get(
            &server,
            &format!("/admin/usage?bucket_type=hour&provider=plan&{range}"),
            Some(TOKEN),
        )
        .await;
        let (_, bedrock) = get(
            &server,
            &format!("/admin/usage?bucket_type=hour&provider=bedrock&{range}"),
            Some(TOKEN),
        )
        .await;
        assert_eq!(n(&plan, "total_requests"), 20);
        assert_eq!(n(&bedrock, "total_requests"), 10);
        assert!(
            plan["cost_breakdown"]
                .as_array()
                .unwrap()
                .iter()
                .all(|m| m["provider"] == "plan")
        );
        for field in [
            "total_requests",
            "total_input_tokens",
            "total_output_tokens",
            "total_cache_read_tokens",
        ] {
            for i in 0..24 {
                let bucket = |v: &Value| n(&v["buckets"][i], field);
                assert_eq!(
                    bucket(&all),
                    bucket(&plan) + bucket(&bedrock),
                    "{} {field} bucket {i}",
                    db.backend
                );
            }
        }
        assert_eq!(
            money(&all, "estimated_cost_usd"),
            money(&plan, "estimated_cost_usd") + money(&bedrock, "estimated_cost_usd")
        );

        let (status, top) = get(
            &server,
            &format!("/admin/usage/top-users?bucket_type=day&limit=1&{range}"),
            Some(TOKEN),
        )
        .await;
        assert_eq!(status, StatusCode::OK, "{top}");
        assert_eq!(top["users"].as_array().unwrap().len(), 1);
        let (status, series) = get(
            &server,
            &format!("/admin/usage/top-users/series?bucket_type=hour&{range}"),
            Some(TOKEN),
        )
        .await;
        assert_eq!(status, StatusCode::OK, "{series}");
        let series = series["series"].as_array().unwrap();
        assert_eq!(series.len(), 2);
        assert!(
            series
                .iter()
                .all(|user| user["buckets"].as_array().unwrap().len() == 24)
        );
        // Users × buckets is capped as buckets are: 1,000 users × 1,440 minutes is not
        // an answer, and the 400 says how far to lower the limit.
        let (status, body) = get(
            &server,
            &format!("/admin/usage/top-users/series?bucket_type=minute&limit=1000&{range}"),
            Some(TOKEN),
        )
        .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
        assert_eq!(body["parameter"], "limit", "{body}");
        assert!(
            body["detail"].as_str().unwrap().contains("at most 6"),
            "{body}"
        );

        for (query, parameter) in [
            ("provider=vertex", "provider"),
            ("bucket_type=fortnight", "bucket_type"),
            ("start_date=2026-13-01&end_date=2026-12-01", "start_date"),
            ("start_date=2026-11-21&end_date=2026-11-20", "start_date"),
            ("start_date=2026-11-21", "end_date"),
            (
                "start_time=2026-11-20T10:00:00Z&end_time=2026-11-20T09:00:00Z",
                "start_time",
            ),
            (
                "bucket_type=minute&start_date=2026-01-01&end_date=2026-11-20",
                "bucket_type",
            ),
            ("user_id=not-a-uuid", "user_id"),
            ("period=decade", "period"),
            (
                "period=day&start_date=2026-11-20&end_date=2026-11-20",
                "period",
            ),
            ("limit=0", "limit"),
            ("user_id=1%27%20OR%20%271%27=%271", "user_id"),
            ("start_date=0001-01-01&end_date=2026-01-01", "start_date"),
            ("start_date=2026-01-01&end_date=%2B262142-12-31", "end_date"),
            (
                "start_time=-262143-01-01T00:00:00Z&end_time=2026-01-01T00:00:00Z",
                "start_time",
            ),
            (
                "start_time=2026-01-01T00:00:00Z&end_time=%2B262142-12-31T23:59:59Z",
                "end_time",
            ),
        ] {
            let (status, body) = get(
                &server,
                &format!("/admin/usage/top-users?{query}"),
                Some(TOKEN),
            )
            .await;
            assert_eq!(status, StatusCode::BAD_REQUEST, "{query}: {body}");
            assert_eq!(body["parameter"], parameter, "{query}: {body}");
            assert!(
                body["detail"].as_str().unwrap().starts_with(parameter),
                "{body}"
            );
        }
        let (status, document) = get(&server, "/admin/openapi.json", None).await;
        assert_eq!(status, StatusCode::OK);
        assert!(
            document["paths"]["/admin/usage"]["get"].is_object(),
            "{document}"
        );
        server.stop().await.unwrap();
        db.close().await;
    }
}

/// P7: under a provider filter, only that provider; unfiltered = plan + bedrock, bucket by
/// bucket, in totals and in the breakdown — for any mix of usage.
#[test]
fn p7_provider_filters_partition_the_usage() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let dbs = runtime.block_on(TestDb::all());
    for db in &dbs {
        let dir = tempfile::tempdir().unwrap();
        let server = runtime.block_on(serve(db, dir.path()));
        let mut runner = TestRunner::new(Config {
            cases: 12,
            failure_persistence: None,
            ..Config::default()
        });
        let request = (
            any::<bool>(),
            0u64..100_000,
            0u64..5_000,
            0i64..(2 * 24 * 60),
            0usize..3,
        );
        runner
            .run(&prop::collection::vec(request, 1..30), |requests| {
                runtime.block_on(async {
                    db.db
                        .execute_unprepared("DELETE FROM token_usage")
                        .await
                        .unwrap();
                    db.db
                        .execute_unprepared("DELETE FROM usage_aggregates")
                        .await
                        .unwrap();
                    let users: Vec<Caller> = (0..3).map(|_| Caller::user(Uuid::now_v7())).collect();
                    let records: Vec<UsageRecord> = requests
                        .iter()
                        .map(|&(plan, input, output, minutes, who)| {
                            let provider = if plan {
                                Provider::PLAN
                            } else {
                                Provider::BEDROCK
                            };
                            record(
                                provider,
                                users[who].clone(),
                                "claude-sonnet-4-5",
                                usage(input, output, 0, 0),
                                day() + Duration::minutes(minutes),
                            )
                        })
                        .collect();
                    write(db, &records).await;
                    let range = "bucket_type=day&start_date=2026-11-20&end_date=2026-11-21";
                    let (_, all) =
                        get(&server, &format!("/admin/usage?{range}"), Some(TOKEN)).await;
                    let (_, plan) = get(
                        &server,
                        &format!("/admin/usage?{range}&provider=plan"),
                        Some(TOKEN),
                    )
                    .await;
                    let (_, bedrock) = get(
                        &server,
                        &format!("/admin/usage?{range}&provider=bedrock"),
                        Some(TOKEN),
                    )
                    .await;
                    let plans = requests.iter().filter(|r| r.0).count() as i64;
                    prop_assert_eq!(n(&plan, "total_requests"), plans);
                    prop_assert_eq!(n(&bedrock, "total_requests"), requests.len() as i64 - plans);
                    for (filtered, name) in [(&plan, "plan"), (&bedrock, "bedrock")] {
                        prop_assert!(
                            filtered["cost_breakdown"]
                                .as_array()
                                .unwrap()
                                .iter()
                                .all(|m| m["provider"] == name)
                        );
                    }
                    for i in 0..2 {
                        for field in [
                            "total_requests",
                            "total_input_tokens",
                            "total_output_tokens",
                        ] {
                            let bucket = |v: &Value| n(&v["buckets"][i], field);
                            prop_assert_eq!(bucket(&all), bucket(&plan) + bucket(&bedrock));
                        }
                    }
                    prop_assert_eq!(
                        money(&all, "estimated_cost_usd"),
                        money(&plan, "estimated_cost_usd") + money(&bedrock, "estimated_cost_usd")
                    );
                    let breakdown: rust_decimal::Decimal = all["cost_breakdown"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .map(|m| money(m, "total_cost_usd"))
                        .sum();
                    prop_assert_eq!(breakdown, money(&all, "estimated_cost_usd"));
                    Ok(())
                })
            })
            .unwrap_or_else(|failure| panic!("{}: {failure}", db.backend));
        runtime.block_on(server.stop()).unwrap();
    }
    for db in dbs {
        runtime.block_on(db.close());
    }
}
