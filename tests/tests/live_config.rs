//! Model mappings and price overrides at run time: two servers on one Postgres database;
//! what the admin API of one changes, the other applies within its reload interval — no
//! restart — and the usage rows keep the price snapshot they were written with.

use std::time::{Duration, Instant};

use http::StatusCode;
use reference_server::standins::plan::PlanReply;
use serde_json::{Value, json};
use usage_tests::TestDb;
use usage_tests::proxy::{Proxy, Setup};

const ADMIN_TOKEN: &str = "live-admin-token-0123456789";

fn setup(db: &TestDb) -> Setup {
    Setup {
        database_url: Some(db.url.clone()),
        extra_args: vec![
            format!("--admin-token={ADMIN_TOKEN}"),
            "--config-reload-interval=1".to_owned(),
        ],
        ..Setup::default()
    }
}

async fn admin(proxy: &Proxy, method: &str, path: &str, body: Value) -> (StatusCode, Value) {
    let body = if body.is_null() {
        String::new()
    } else {
        body.to_string()
    };
    proxy.admin(ADMIN_TOKEN, method, path, &body).await
}

/// A stream request for `model` with the proxy's key; the status.
async fn ask(proxy: &Proxy, model: &str) -> StatusCode {
    let body = json!({"model": model, "max_tokens": 64, "stream": true,
        "messages": [{"role": "user", "content": "Hi"}]});
    proxy.post_as(&proxy.key, &body.to_string()).await.0
}

/// Waits (60 s at most, so a busy machine cannot fail it) until `done`.
async fn eventually(what: &str, mut done: impl AsyncFnMut() -> bool) {
    let started = Instant::now();
    while !done().await {
        assert!(started.elapsed() < Duration::from_secs(60), "never: {what}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    eprintln!("{what}: after {:?}", started.elapsed());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mappings_and_prices_changed_on_one_server_apply_on_the_other() {
    let Some(db) = TestDb::postgres().await else {
        return;
    };
    let one = Proxy::start(PlanReply::rate_limited(0), setup(&db)).await;
    let mut other = Proxy::start(PlanReply::rate_limited(0), setup(&db)).await;

    // The empty table was seeded once, with the defaults.
    let (status, listed) = admin(&one, "GET", "/admin/model-mappings", Value::Null).await;
    assert_eq!(status, StatusCode::OK);
    let mappings = listed["mappings"].as_array().unwrap();
    assert_eq!(mappings.len(), 8, "{listed}");
    assert!(mappings.iter().all(|m| m["description"] == "(default)"));

    // A new model, mapped through the first server, is served by Bedrock on the second.
    assert_eq!(
        ask(&other, "claude-future-9").await,
        StatusCode::TOO_MANY_REQUESTS,
        "unmapped: Plan's own 429"
    );
    let (status, created) = admin(
        &one,
        "POST",
        "/admin/model-mappings",
        json!({"claude_model": "claude-future-9-20261201",
               "bedrock_model": "global.anthropic.claude-future-9-20261201-v1:0"}),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let (status, conflict) = admin(
        &one,
        "POST",
        "/admin/model-mappings",
        json!({"claude_model": "claude-future-9", "bedrock_model": "x"}),
    )
    .await;
    assert_eq!(
        status,
        StatusCode::CONFLICT,
        "one model, one mapping: {conflict}"
    );
    eventually("the other server maps the new model", async || {
        ask(&other, "claude-future-9").await == StatusCode::OK
    })
    .await;
    let sent = other.bedrock.requests();
    assert!(
        sent.last()
            .unwrap()
            .path
            .contains("global.anthropic.claude-future-9-20261201-v1"),
        "{}",
        sent.last().unwrap().path
    );

    // A price, before and after an override set through the first server. A record is
    // priced when it is written: the first one is in the database before the change.
    assert_eq!(ask(&other, "claude-sonnet-4-5").await, StatusCode::OK);
    eventually("the first Sonnet row is written", async || {
        use sea_orm::{ColumnTrait, EntityTrait, PaginatorTrait, QueryFilter};
        usage_layer::store::sea_orm::entity::token_usage::Entity::find()
            .filter(
                usage_layer::store::sea_orm::entity::token_usage::Column::RequestedModel
                    .eq("claude-sonnet-4-5"),
            )
            .count(&db.db)
            .await
            .unwrap()
            == 1
    })
    .await;
    let (status, price) = admin(
        &one,
        "POST",
        "/admin/pricing/overrides",
        json!({"provider": "bedrock", "region": "us-east-1", "model": "claude-sonnet-4-5-20250929",
               "input_price_per_million": "6", "output_price_per_million": 30}),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{price}");
    assert_eq!(price["model"], "claude-sonnet-4-5");
    assert_eq!(price["in_force"], true);
    assert_eq!(
        price["cache_write_price_per_million"], "7.500000",
        "1.25 × input"
    );
    assert_eq!(
        price["cache_read_price_per_million"], "0.600000",
        "0.1 × input"
    );
    eventually("the other server prices with the override", async || {
        let (_, prices) = admin(&other, "GET", "/admin/pricing", Value::Null).await;
        prices["prices"].as_array().unwrap().iter().any(|p| {
            p["provider"] == "bedrock"
                && p["region"] == "us-east-1"
                && p["model"] == "claude-sonnet-4-5"
                && p["input_price_per_million"] == "6"
        })
    })
    .await;
    assert_eq!(ask(&other, "claude-sonnet-4-5").await, StatusCode::OK);

    // Off again: the mapping deactivated, the override deleted.
    let (status, _) = admin(
        &one,
        "PATCH",
        &format!("/admin/model-mappings/{}", created["id"].as_str().unwrap()),
        json!({"is_active": false}),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    eventually("the other server stops mapping the model", async || {
        ask(&other, "claude-future-9").await == StatusCode::TOO_MANY_REQUESTS
    })
    .await;
    let (status, _) = admin(
        &one,
        "DELETE",
        &format!("/admin/pricing/overrides/{}", price["id"].as_str().unwrap()),
        Value::Null,
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let (_, listed) = admin(&one, "GET", "/admin/pricing/overrides", Value::Null).await;
    assert_eq!(listed["overrides"], json!([]));

    // Each row kept the prices it was written with: $3 / $15 before, $6 / $30 after.
    let rows = other.rows().await;
    let sonnet: Vec<_> = rows
        .iter()
        .filter(|row| row.requested_model.as_deref() == Some("claude-sonnet-4-5"))
        .collect();
    assert_eq!(sonnet.len(), 2);
    assert_eq!(
        sonnet[0].pricing_input_price_per_million_micros,
        Some(3_000_000)
    );
    assert_eq!(sonnet[0].estimated_cost_micros, 1200 * 3 + 345 * 15);
    assert_eq!(
        sonnet[1].pricing_input_price_per_million_micros,
        Some(6_000_000)
    );
    assert_eq!(sonnet[1].estimated_cost_micros, 1200 * 6 + 345 * 30);
    drop(one);
    db.close().await;
}

#[tokio::test]
async fn bad_mappings_and_prices_are_400_naming_the_field() {
    let proxy = Proxy::start(
        PlanReply::rate_limited(0),
        Setup {
            extra_args: vec![format!("--admin-token={ADMIN_TOKEN}")],
            ..Setup::default()
        },
    )
    .await;
    for (path, body, parameter) in [
        (
            "/admin/model-mappings",
            json!({"claude_model": "", "bedrock_model": "x"}),
            "claude_model",
        ),
        (
            "/admin/model-mappings",
            json!({"claude_model": "a b", "bedrock_model": "x"}),
            "claude_model",
        ),
        (
            "/admin/model-mappings",
            json!({"claude_model": "claude-x", "bedrock_model": " "}),
            "bedrock_model",
        ),
        (
            "/admin/model-mappings",
            json!({"claude_model": "claude-x"}),
            "body",
        ),
        (
            "/admin/pricing/overrides",
            json!({"provider": "Bedrock!", "region": "us-east-1", "model": "m",
            "input_price_per_million": 1, "output_price_per_million": 1}),
            "provider",
        ),
        (
            "/admin/pricing/overrides",
            json!({"provider": "plan", "region": "us-east-1", "model": "m",
            "input_price_per_million": 1, "output_price_per_million": 1}),
            "region",
        ),
        (
            "/admin/pricing/overrides",
            json!({"provider": "bedrock", "model": "m",
            "input_price_per_million": 1, "output_price_per_million": 1}),
            "region",
        ),
        (
            "/admin/pricing/overrides",
            json!({"provider": "bedrock", "region": "us-east-1", "model": "m",
            "input_price_per_million": "-1", "output_price_per_million": 1}),
            "input_price_per_million",
        ),
        (
            "/admin/pricing/overrides",
            json!({"provider": "bedrock", "region": "us-east-1", "model": "m",
            "input_price_per_million": null, "output_price_per_million": 1}),
            "input_price_per_million",
        ),
        (
            "/admin/pricing/overrides",
            json!({"provider": "openai", "region": "global", "model": "gpt-x",
            "input_price_per_million": 1, "output_price_per_million": 1}),
            "cache_write_price_per_million",
        ),
        (
            "/admin/pricing/overrides",
            json!({"provider": "bedrock", "region": "us-east-1", "model": "m",
            "effective_date": "yesterday", "input_price_per_million": 1, "output_price_per_million": 1}),
            "body",
        ),
    ] {
        let (status, json) = admin(&proxy, "POST", path, body.clone()).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}: {json}");
        assert_eq!(json["parameter"], parameter, "{body}: {json}");
    }
    let override_body = json!({"provider": "plan", "model": "claude-x", "effective_date": "2030-01-01",
        "input_price_per_million": 1, "output_price_per_million": 5});
    let (status, created) = admin(
        &proxy,
        "POST",
        "/admin/pricing/overrides",
        override_body.clone(),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    assert_eq!(created["region"], "global");
    assert_eq!(created["in_force"], false, "from 2030 on");
    let (status, _) = admin(&proxy, "POST", "/admin/pricing/overrides", override_body).await;
    assert_eq!(status, StatusCode::CONFLICT);
    let path = format!(
        "/admin/pricing/overrides/{}",
        created["id"].as_str().unwrap()
    );
    let (status, changed) = admin(
        &proxy,
        "PATCH",
        &path,
        json!({"effective_date": "2020-01-01", "output_price_per_million": "7.5"}),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{changed}");
    assert_eq!(changed["in_force"], true);
    assert_eq!(changed["output_price_per_million"], "7.500000");
    let (_, prices) = admin(&proxy, "GET", "/admin/pricing", Value::Null).await;
    assert!(
        prices["prices"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["provider"] == "plan" && p["model"] == "claude-x"),
        "in force on this server at once"
    );
    for (method, path) in [
        (
            "GET",
            format!("/admin/model-mappings/{}", uuid::Uuid::now_v7()),
        ),
        (
            "DELETE",
            format!("/admin/pricing/overrides/{}", uuid::Uuid::now_v7()),
        ),
    ] {
        let (status, _) = admin(&proxy, method, &path, Value::Null).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{method} {path}");
    }
}
