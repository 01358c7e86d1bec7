//! The admin console in real Chromium (Debian's, driven by playwright-core from
//! `tests/console`): log in, the seeded dashboard, filters, a user and key made in the
//! browser, a request sent with that key and found on the dashboard and in the request
//! explorer, a viewer who cannot change anything, logout, and axe-core on every page.
//! Screenshots at 1280×800 go to `target/console-screenshots`.
//!
//! The browser's side (`tests/console/console.mjs`) compares every number it reads with
//! the admin API; this side compares both with the database.

use std::path::PathBuf;
use std::process::Stdio;

use bytes::Bytes;
use http::StatusCode;
use reference_server::admins::{self, Role};
use reference_server::standins::plan::PlanReply;
use sea_orm::{ColumnTrait, Database, EntityTrait, QueryFilter};
use serde_json::{Value, json};
use usage_layer::store::sea_orm::entity::token_usage;
use usage_tests::proxy::{Proxy, Setup};

const TOKEN: &str = "console-browser-admin-token-0123456789";
const ADMIN_PASSWORD: &str = "alice's console password";
const VIEWER_PASSWORD: &str = "victor's console password";
const MESSAGE: &str = r#"{"model":"claude-sonnet-4-5-20250929","max_tokens":1024,"stream":true,"messages":[{"role":"user","content":"Hello"}]}"#;

/// A Plan stream of claude-sonnet-4-5 with these usage numbers.
fn sonnet_stream(input: u64, cache_read: u64, cache_write: u64, output: u64) -> Bytes {
    let start = json!({"type": "message_start", "message": {
        "id": "msg_console", "type": "message", "role": "assistant",
        "model": "claude-sonnet-4-5-20250929", "content": [], "stop_reason": null, "stop_sequence": null,
        "usage": {"input_tokens": input, "cache_read_input_tokens": cache_read,
                  "cache_creation_input_tokens": cache_write, "output_tokens": 1}}});
    let delta = json!({"type": "message_delta", "delta": {"stop_reason": "end_turn", "stop_sequence": null},
                       "usage": {"output_tokens": output}});
    Bytes::from(format!(
        "event: message_start\ndata: {start}\n\n\
         event: content_block_start\ndata: {{\"type\":\"content_block_start\",\"index\":0,\"content_block\":{{\"type\":\"text\",\"text\":\"\"}}}}\n\n\
         event: content_block_delta\ndata: {{\"type\":\"content_block_delta\",\"index\":0,\"delta\":{{\"type\":\"text_delta\",\"text\":\"Hi\"}}}}\n\n\
         event: content_block_stop\ndata: {{\"type\":\"content_block_stop\",\"index\":0}}\n\n\
         event: message_delta\ndata: {delta}\n\n\
         event: message_stop\ndata: {{\"type\":\"message_stop\"}}\n\n"
    ))
}

fn workspace_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// A user made through the admin API, and a key of theirs.
async fn user_with_key(proxy: &Proxy, name: &str) -> (String, String) {
    let (status, user) = proxy
        .admin(
            TOKEN,
            "POST",
            "/admin/users",
            &json!({"name": name}).to_string(),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{user}");
    let id = user["id"].as_str().unwrap().to_owned();
    let (status, key) = proxy
        .admin(TOKEN, "POST", &format!("/admin/users/{id}/keys"), "{}")
        .await;
    assert_eq!(status, StatusCode::CREATED, "{key}");
    (id, key["key"].as_str().unwrap().to_owned())
}

async fn send(proxy: &Proxy, key: &str) {
    let (status, body) = proxy.post_as(key, MESSAGE).await;
    assert_eq!(status, StatusCode::OK, "{}", String::from_utf8_lossy(&body));
}

/// Waits until the database holds `rows` usage rows.
async fn wait_for_rows(proxy: &Proxy, rows: usize) {
    for _ in 0..200 {
        let (_, found) = proxy
            .admin(TOKEN, "GET", "/admin/requests?limit=500", "")
            .await;
        if found["requests"].as_array().map_or(0, Vec::len) >= rows {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    panic!("the usage rows were not written");
}

/// The database's sums over a provider's rows in `[start, end)`.
fn sums(rows: &[token_usage::Model], provider: &str, start: &str, end: &str) -> Value {
    let start: chrono::DateTime<chrono::Utc> = start.parse().unwrap();
    let end: chrono::DateTime<chrono::Utc> = end.parse().unwrap();
    let rows: Vec<_> = rows
        .iter()
        .filter(|r| r.provider == provider && r.timestamp >= start && r.timestamp < end)
        .collect();
    let total = |f: fn(&token_usage::Model) -> i64| rows.iter().map(|r| f(r)).sum::<i64>();
    json!({
        "requests": reference_server::console::count(rows.len() as i64),
        "input_tokens": reference_server::console::count(total(|r| r.input_tokens)),
        "output_tokens": reference_server::console::count(total(|r| r.output_tokens)),
        "total_tokens": reference_server::console::count(total(|r| r.input_tokens + r.output_tokens)),
        "cache_read_tokens": reference_server::console::count(total(|r| r.cache_read_input_tokens)),
        "cache_write_tokens": reference_server::console::count(total(|r| r.cache_creation_input_tokens)),
        "cost": format!("${}", rust_decimal::Decimal::new(total(|r| r.estimated_cost_micros), 6)),
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_console_in_chromium_shows_what_the_api_and_the_database_hold() {
    let root = workspace_root();
    let modules = root.join("tests/console/node_modules/playwright-core");
    assert!(
        modules.is_dir(),
        "playwright-core is not installed at {}: run scripts/test.sh, or `npm ci --prefix tests/console`",
        modules.display()
    );
    let chromium = std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".to_owned());
    assert!(
        std::path::Path::new(&chromium).exists(),
        "Chromium is not at {chromium}: run scripts/test.sh, or `apt-get install chromium`"
    );

    let proxy = Proxy::start(
        PlanReply::Stream(sonnet_stream(2048, 12_000, 300, 512)),
        Setup {
            extra_args: vec![format!("--admin-token={TOKEN}")],
            ..Setup::default()
        },
    )
    .await;
    // The seed: Ada twice on Plan, Grace once on Plan and once on Bedrock (Plan 429).
    let (_, ada) = user_with_key(&proxy, "Ada").await;
    let (_, grace) = user_with_key(&proxy, "Grace").await;
    send(&proxy, &ada).await;
    send(&proxy, &ada).await;
    send(&proxy, &grace).await;
    proxy.plan.queue([PlanReply::rate_limited(1)]);
    send(&proxy, &grace).await;
    wait_for_rows(&proxy, 4).await;
    let db = Database::connect(&proxy.database_url).await.unwrap();
    admins::create(&db, "alice", Role::Admin, ADMIN_PASSWORD)
        .await
        .unwrap();
    admins::create(&db, "victor", Role::Viewer, VIEWER_PASSWORD)
        .await
        .unwrap();

    let screenshots = root.join("target/console-screenshots");
    let output = tokio::process::Command::new("node")
        .arg(root.join("tests/console/console.mjs"))
        .current_dir(root.join("tests/console"))
        .env("CONSOLE_ORIGIN", proxy.origin())
        .env("ADMIN_NAME", "alice")
        .env("ADMIN_PASSWORD", ADMIN_PASSWORD)
        .env("VIEWER_NAME", "victor")
        .env("VIEWER_PASSWORD", VIEWER_PASSWORD)
        .env("ADMIN_TOKEN", TOKEN)
        .env("MESSAGE_BODY", MESSAGE)
        .env("SCREENSHOTS", &screenshots)
        .env("CHROMIUM", &chromium)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .output()
        .await
        .expect("node runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    eprintln!("{stderr}");
    assert!(
        output.status.success(),
        "the browser test failed ({}): {stderr}\n{stdout}",
        output.status
    );
    let report: Value = serde_json::from_str(stdout.lines().last().unwrap()).unwrap();

    // The dashboard's cards are the database's sums over the API's range (as it was then:
    // before the browser's own request).
    let browser_user = report["request"]["user_id"].as_str().unwrap();
    let rows: Vec<_> = token_usage::Entity::find()
        .all(&db)
        .await
        .unwrap()
        .into_iter()
        .filter(|row| row.user_id.as_deref() != Some(browser_user))
        .collect();
    for provider in ["plan", "bedrock"] {
        let api = &report["api"][provider];
        let expected = sums(
            &rows,
            provider,
            api["start"].as_str().unwrap(),
            api["end"].as_str().unwrap(),
        );
        for (name, value) in expected.as_object().unwrap() {
            assert_eq!(
                report["dashboard"][format!("{provider}.{name}")],
                *value,
                "{provider}.{name}: the dashboard against the database"
            );
        }
    }
    // The cost components per bucket (the aggregates') add up to the rows' components and
    // to the cost, and the dashboard shows the same.
    for provider in ["plan", "bedrock"] {
        let api = &report["api"][provider];
        let usd = |v: &Value| {
            v.as_str()
                .unwrap()
                .parse::<rust_decimal::Decimal>()
                .unwrap()
        };
        let mut components = rust_decimal::Decimal::ZERO;
        for (key, row_micros) in [
            (
                "input_cost_usd",
                (|r: &token_usage::Model| r.cost_input_micros) as fn(&token_usage::Model) -> i64,
            ),
            ("output_cost_usd", |r| r.cost_output_micros),
            ("cache_write_cost_usd", |r| r.cost_cache_write_micros),
            ("cache_read_cost_usd", |r| r.cost_cache_read_micros),
        ] {
            let per_bucket: rust_decimal::Decimal = api["buckets"]
                .as_array()
                .unwrap()
                .iter()
                .map(|b| usd(&b[key]))
                .sum();
            let from_rows: i64 = rows
                .iter()
                .filter(|r| r.provider == provider)
                .map(row_micros)
                .sum();
            assert_eq!(
                per_bucket,
                usd(&api[key]),
                "{provider} {key}: buckets against totals"
            );
            assert_eq!(
                usd(&api[key]),
                rust_decimal::Decimal::new(from_rows, 6),
                "{provider} {key}: against the rows"
            );
            assert_eq!(
                report["dashboard"][format!("{provider}.{key}")],
                format!("${}", api[key].as_str().unwrap())
            );
            components += usd(&api[key]);
        }
        assert_eq!(
            components,
            usd(&api["estimated_cost_usd"]),
            "{provider}: components add up"
        );
    }
    assert_eq!(report["dashboard"]["plan.requests"], "3");
    assert_eq!(report["dashboard"]["bedrock.requests"], "1");

    // The request sent with the key issued in the browser: its row, as shown.
    let request = &report["request"]["api"];
    let row = token_usage::Entity::find()
        .filter(token_usage::Column::RequestId.eq(request["request_id"].as_str().unwrap()))
        .one(&db)
        .await
        .unwrap()
        .expect("the request's row");
    assert_eq!(
        row.user_id.as_deref(),
        report["request"]["user_id"].as_str()
    );
    assert_eq!((row.input_tokens, row.output_tokens), (2048, 512));
    assert_eq!(
        (row.cache_read_input_tokens, row.cache_creation_input_tokens),
        (12_000, 300)
    );
    let cost = format!(
        "${}",
        rust_decimal::Decimal::new(row.estimated_cost_micros, 6)
    );
    assert_eq!(report["request"]["dashboard"]["plan.cost"], cost.as_str());
    assert!(
        report["request"]["explorer"]["cost"]
            .as_str()
            .unwrap()
            .starts_with(&cost)
    );
    assert_eq!(report["request"]["explorer"]["input_tokens"], "2,048");
    assert_eq!(report["request"]["explorer"]["cache_read_tokens"], "12,000");
    assert!(row.estimated_cost_micros > 0);

    for page in [
        "login",
        "dashboard",
        "dashboard-dark",
        "requests",
        "users",
        "user",
        "mappings",
        "prices",
        "audit",
    ] {
        assert!(
            screenshots.join(format!("{page}.png")).is_file(),
            "{page}.png"
        );
    }
    eprintln!(
        "accessibility (no critical violations): {}",
        report["accessibility"]
    );
}
