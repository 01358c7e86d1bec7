//! The CloudWatch store against a real CloudWatch API: moto server (`TEST_MOTO_URL`,
//! started by the test script). Without it the test says so loudly and stops — unless `CI`
//! or `REQUIRE_MOTO` is set, where that is a failure.

use std::sync::Arc;

use aws_sdk_cloudwatch::config::{BehaviorVersion, Credentials, Region};
use aws_sdk_cloudwatch::primitives::DateTime as AwsDateTime;
use aws_sdk_cloudwatch::types::{Dimension, Statistic};
use chrono::Utc;
use usage_layer::pricing::PriceCatalog;
use usage_layer::sink::UsageStore;
use usage_layer::store::cloudwatch::CloudWatchStore;
use usage_layer::{Caller, Outcome, Provider, UsageRecord};
use usage_tests::{record, usage};

fn moto() -> Option<aws_sdk_cloudwatch::Client> {
    let url = usage_tests::moto_url("CloudWatch")?;
    let config = aws_sdk_cloudwatch::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .endpoint_url(url)
        .region(Region::new("us-east-1"))
        .credentials_provider(Credentials::new("testing", "testing", None, None, "moto"))
        .build();
    Some(aws_sdk_cloudwatch::Client::from_conf(config))
}

async fn sum(
    client: &aws_sdk_cloudwatch::Client,
    namespace: &str,
    metric: &str,
    dimensions: &[(&str, &str)],
) -> f64 {
    let now = Utc::now().timestamp();
    let answer = client
        .get_metric_statistics()
        .namespace(namespace)
        .metric_name(metric)
        .set_dimensions(Some(
            dimensions
                .iter()
                .map(|(n, v)| Dimension::builder().name(*n).value(*v).build())
                .collect(),
        ))
        .start_time(AwsDateTime::from_secs(now - 3600))
        .end_time(AwsDateTime::from_secs(now + 3600))
        .period(7200)
        .statistics(Statistic::Sum)
        .send()
        .await
        .unwrap();
    answer
        .datapoints()
        .iter()
        .filter_map(|point| point.sum())
        .sum()
}

#[tokio::test]
async fn per_provider_series_sum_to_the_records_and_calls_follow_flushes() {
    let Some(client) = moto() else { return };
    let namespace = format!("UsageTest{}", uuid::Uuid::now_v7().simple());
    let store = CloudWatchStore::new(
        client.clone(),
        &namespace,
        Arc::new(PriceCatalog::defaults()),
    );
    let caller = Caller::default();
    let mut expected = [(0u64, 0u64); 2];
    let mut batches = Vec::new();
    for batch in 0..3u64 {
        let records: Vec<UsageRecord> = (0..200u64)
            .map(|i| {
                let plan = i % 3 != 0;
                let input = batch * 1000 + i;
                expected[usize::from(plan)].0 += 1;
                expected[usize::from(plan)].1 += input;
                let provider = if plan {
                    Provider::PLAN
                } else {
                    Provider::BEDROCK
                };
                let mut record = record(
                    provider,
                    caller.clone(),
                    "claude-sonnet-4-5-20250929",
                    usage(input, 7, 0, 0),
                    Utc::now(),
                );
                if i % 50 == 0 {
                    record.outcome = Outcome::ClientDisconnected;
                }
                record
            })
            .collect();
        batches.push(records);
    }
    for batch in &batches {
        store.write_batch(batch).await.unwrap();
    }
    assert_eq!(
        store.put_calls(),
        3,
        "one PutMetricData per flush, not per request"
    );

    for (provider, (requests, input)) in [("bedrock", expected[0]), ("plan", expected[1])] {
        let model = ("Model", "claude-sonnet-4-5");
        let tokens = sum(
            &client,
            &namespace,
            "proxy.tokens",
            &[("Provider", provider), model, ("TokenType", "input")],
        )
        .await;
        assert_eq!(tokens, input as f64, "{provider} input tokens");
        let counted = sum(
            &client,
            &namespace,
            "proxy.requests",
            &[
                ("Provider", provider),
                model,
                ("Status", "200"),
                ("Stream", "true"),
            ],
        )
        .await;
        assert_eq!(counted, requests as f64, "{provider} requests");
    }
    let metrics = client
        .list_metrics()
        .namespace(&namespace)
        .send()
        .await
        .unwrap();
    let providers: std::collections::BTreeSet<String> = metrics
        .metrics()
        .iter()
        .flat_map(|m| m.dimensions())
        .filter(|d| d.name() == Some("Provider"))
        .filter_map(|d| d.value().map(str::to_owned))
        .collect();
    assert_eq!(
        providers.into_iter().collect::<Vec<_>>(),
        ["bedrock", "plan"]
    );
}

/// Sums of a metric over every series with these dimension values (whatever the others).
async fn sum_over_series(
    client: &aws_sdk_cloudwatch::Client,
    namespace: &str,
    metric: &str,
    wanted: &[(&str, &str)],
) -> f64 {
    let listed = client
        .list_metrics()
        .namespace(namespace)
        .metric_name(metric)
        .send()
        .await
        .unwrap();
    let mut total = 0.0;
    for series in listed.metrics() {
        let dims: Vec<(&str, &str)> = series
            .dimensions()
            .iter()
            .map(|d| (d.name().unwrap_or_default(), d.value().unwrap_or_default()))
            .collect();
        if wanted.iter().all(|w| dims.contains(w)) {
            total += sum(client, namespace, metric, &dims).await;
        }
    }
    total
}

/// A mixed Plan/Bedrock load through the reference server: per-provider CloudWatch series
/// sum to the database's totals.
#[tokio::test]
async fn the_servers_metrics_per_provider_equal_its_database_totals() {
    use reference_server::standins::plan::PlanReply;
    use usage_layer::store::sea_orm::entity::token_usage;
    use usage_tests::proxy::{Proxy, Setup, fixture};

    let Some(client) = moto() else { return };
    if std::env::var_os("AWS_ACCESS_KEY_ID").is_none() {
        // The server takes credentials from the AWS default chain, like in production.
        assert!(
            std::env::var_os("CI").is_none(),
            "the test script exports moto's credentials"
        );
        eprintln!("SKIPPED (CloudWatch, server): AWS_ACCESS_KEY_ID is not set for moto");
        return;
    }
    let namespace = format!("UsageServerTest{}", uuid::Uuid::now_v7().simple());
    let setup = Setup {
        extra_args: vec![
            "--cloudwatch-metrics-enabled=true".to_owned(),
            format!("--cloudwatch-namespace={namespace}"),
            format!(
                "--cloudwatch-endpoint-url={}",
                std::env::var("TEST_MOTO_URL").unwrap()
            ),
            "--cloudwatch-flush-interval=1".to_owned(),
        ],
        ..Setup::default()
    };
    let mut proxy = Proxy::start(PlanReply::Stream(fixture("tool_use_response.txt")), setup).await;
    proxy.plan.queue([
        PlanReply::error(529, "overloaded_error", "Overloaded"),
        PlanReply::Stream(bytes::Bytes::new()),
        PlanReply::error(529, "overloaded_error", "Overloaded"),
    ]);
    for _ in 0..6 {
        let response = usage_tests::proxy::client()
            .request(
                http::Request::post(proxy.url("/v1/messages"))
                    .body(http_body_util::Full::new(bytes::Bytes::from_static(
                        br#"{"model":"claude-sonnet-4-5","max_tokens":10,"stream":true,"messages":[]}"#,
                    )))
                    .unwrap(),
            )
            .await
            .unwrap();
        use http_body_util::BodyExt;
        let _ = response.into_body().collect().await;
    }
    // Stopping the server writes the database and puts the last metrics.
    let rows = proxy.rows().await;
    assert_eq!(rows.len(), 6);
    for provider in ["plan", "bedrock"] {
        let of = |pick: fn(&token_usage::Model) -> i64| -> f64 {
            rows.iter()
                .filter(|r| r.provider == provider)
                .map(pick)
                .sum::<i64>() as f64
        };
        let requests = rows.iter().filter(|r| r.provider == provider).count() as f64;
        assert!(requests > 0.0, "{provider} served some");
        let metric = |name, extra: &'static [(&'static str, &'static str)]| {
            let client = client.clone();
            let namespace = namespace.clone();
            async move {
                let mut wanted = vec![("Provider", provider)];
                wanted.extend_from_slice(extra);
                sum_over_series(&client, &namespace, name, &wanted).await
            }
        };
        assert_eq!(
            metric("proxy.requests", &[]).await,
            requests,
            "{provider} requests"
        );
        assert_eq!(
            metric("proxy.tokens", &[("TokenType", "input")]).await,
            of(|r| r.input_tokens),
            "{provider} input"
        );
        assert_eq!(
            metric("proxy.tokens", &[("TokenType", "output")]).await,
            of(|r| r.output_tokens),
            "{provider} output"
        );
    }
}
