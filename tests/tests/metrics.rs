//! `GET /metrics` after a mixed load through the reference server: Plan and Bedrock,
//! streams and JSON, completed and failed (refusals, resets, exceptions mid-stream). The
//! Prometheus counters, per provider, equal the `token_usage` rows the server wrote:
//! requests, every token type, and the cost to the micro-dollar.
//!
//! The `metrics` recorder is process-global: the load is measured as the difference of two
//! scrapes, so another server in the same process could not skew it.

use std::collections::BTreeMap;

use bytes::Bytes;
use http::{HeaderMap, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use reference_server::config::Routing;
use reference_server::standins::bedrock::{Reply, events_from_sse, stream_reply_for};
use reference_server::standins::plan::PlanReply;
use tokio::task::JoinSet;
use usage_tests::TestDb;
use usage_tests::proxy::{Proxy, Setup, client, fixture};

const STREAM_REQUEST: &str = r#"{"model":"claude-sonnet-4-5-20250929","max_tokens":64,"stream":true,"messages":[{"role":"user","content":"Hello"}]}"#;
const JSON_REQUEST: &str = r#"{"model":"claude-sonnet-4-5-20250929","max_tokens":64,"messages":[{"role":"user","content":"Hi"}]}"#;

/// Series of one metric, by their labels (sorted `name="value"` pairs, as rendered).
type Scrape = BTreeMap<(String, Vec<(String, String)>), f64>;

/// Sends `request`: the status, the headers and the body as far as it came (a reset
/// upstream reaches the client as a broken stream).
async fn fetch(
    request: http::request::Builder,
    body: &'static str,
) -> (StatusCode, HeaderMap, Bytes) {
    let request = request
        .body(Full::new(Bytes::from_static(body.as_bytes())))
        .expect("request");
    let response = client().request(request).await.expect("response");
    let (parts, body) = response.into_parts();
    let body = body.collect().await.map(|body| body.to_bytes());
    (parts.status, parts.headers, body.unwrap_or_default())
}

/// `GET /metrics` (no access key): the status, the content type and the parsed samples.
async fn scrape(proxy: &Proxy) -> (StatusCode, String, Scrape) {
    let addr = proxy.server.as_ref().expect("running").addr;
    let (status, headers, body) = fetch(Request::get(format!("http://{addr}/metrics")), "").await;
    let content_type = headers
        .get("content-type")
        .map(|value| value.to_str().expect("ASCII").to_owned())
        .unwrap_or_default();
    let text = std::str::from_utf8(&body).expect("UTF-8");
    let samples = if status == StatusCode::OK {
        parse(text)
    } else {
        Scrape::new()
    };
    (status, content_type, samples)
}

/// The samples of a Prometheus text exposition: `name{label="value",…} value` lines.
fn parse(text: &str) -> Scrape {
    let mut samples = Scrape::new();
    for line in text.lines() {
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (series, value) = line.rsplit_once(' ').expect("a sample line");
        let value: f64 = value.parse().expect("a sample value");
        let (name, labels) = match series.split_once('{') {
            Some((name, labels)) => (name, parse_labels(labels.strip_suffix('}').unwrap())),
            None => (series, Vec::new()),
        };
        samples.insert((name.to_owned(), labels), value);
    }
    samples
}

/// `a="x",b="y\"z"` as sorted pairs, escapes undone.
fn parse_labels(text: &str) -> Vec<(String, String)> {
    let mut labels = Vec::new();
    let mut rest = text;
    while let Some((name, after)) = rest.split_once("=\"") {
        let mut value = String::new();
        let mut chars = after.char_indices();
        let end = loop {
            match chars.next().expect("a closed label value") {
                (_, '\\') => match chars.next().expect("an escape").1 {
                    'n' => value.push('\n'),
                    escaped => value.push(escaped),
                },
                (at, '"') => break at,
                (_, c) => value.push(c),
            }
        };
        labels.push((name.trim_start_matches(',').to_owned(), value));
        rest = &after[end + 1..];
    }
    labels.sort();
    labels
}

/// `after - before`, summed by the values of `by` (a label name; `type` for tokens), for
/// one metric.
fn delta_by(
    before: &Scrape,
    after: &Scrape,
    metric: &str,
    by: &[&str],
) -> BTreeMap<Vec<String>, f64> {
    let mut sums = BTreeMap::new();
    for (key @ (name, labels), value) in after {
        if name != metric {
            continue;
        }
        let group: Vec<String> = by
            .iter()
            .map(|label| {
                labels
                    .iter()
                    .find(|(name, _)| name == label)
                    .map(|(_, value)| value.clone())
                    .unwrap_or_else(|| panic!("{metric} has no {label} label"))
            })
            .collect();
        let earlier = before.get(key).copied().unwrap_or(0.0);
        *sums.entry(group).or_default() += value - earlier;
    }
    sums
}

/// Sends `count` requests at once to `url`: how many got each status.
async fn burst(url: &str, body: &'static str, count: usize) -> BTreeMap<u16, usize> {
    let mut requests = JoinSet::new();
    for _ in 0..count {
        let request = Request::post(url)
            .header("content-type", "application/json")
            .header("anthropic-version", "2023-06-01");
        requests.spawn(async move { fetch(request, body).await.0.as_u16() });
    }
    let mut statuses = BTreeMap::new();
    while let Some(status) = requests.join_next().await {
        *statuses.entry(status.expect("a request task")).or_default() += 1;
    }
    statuses
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_after_a_mixed_load_equal_the_database_per_provider() {
    let db = match TestDb::postgres().await {
        Some(db) => db,
        None => TestDb::sqlite().await,
    };
    // The test user goes to Bedrock only; a second one goes Plan first.
    let setup = Setup {
        routing: Routing::BedrockOnly,
        database_url: Some(db.url.clone()),
        ..Setup::default()
    };
    let mut proxy = Proxy::start(PlanReply::error(500, "api_error", "unscripted"), setup).await;
    let addr = proxy.server.as_ref().unwrap().addr;
    let bedrock_only = format!("http://{addr}/ak/{}/v1/messages", proxy.key);
    let plan_first = format!("http://{addr}/ak/{}/v1/messages", proxy.new_user().await.1);

    let (status, content_type, before) = scrape(&proxy).await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        content_type.starts_with("text/plain; version=0.0.4"),
        "{content_type}"
    );

    let basic = fixture("basic_response.txt");
    let cut = basic
        .windows(b"event: content_block_stop".len())
        .position(|w| w == b"event: content_block_stop")
        .expect("a content_block_stop");
    let plan_json = PlanReply::Json(
        200,
        serde_json::json!({
            "id": "msg_plan", "type": "message", "role": "assistant",
            "model": "claude-sonnet-4-5-20250929",
            "content": [{"type": "text", "text": "ok"}], "stop_reason": "end_turn",
            "usage": {"input_tokens": 30, "output_tokens": 12,
                      "cache_read_input_tokens": 100, "cache_creation_input_tokens": 20}
        }),
    );
    let bedrock_message = Reply::Message(serde_json::json!({
        "id": "msg_bdrk", "type": "message", "role": "assistant",
        "model": "claude-sonnet-4-5-20250929",
        "content": [{"type": "text", "text": "ok"}], "stop_reason": "end_turn",
        "usage": {"input_tokens": 21, "output_tokens": 4}
    }));
    // (Plan's answer, Bedrock's answer, caller, request, how many): each phase's requests
    // get the same answers, so their order does not matter.
    let phases = [
        (
            PlanReply::Stream(fixture("tool_use_response.txt")),
            None,
            &plan_first,
            STREAM_REQUEST,
            120,
        ),
        (plan_json, None, &plan_first, JSON_REQUEST, 60),
        (
            PlanReply::error(400, "invalid_request_error", "bad"),
            None,
            &plan_first,
            JSON_REQUEST,
            20,
        ),
        (
            PlanReply::ResetAfter(basic.slice(..cut)),
            None,
            &plan_first,
            STREAM_REQUEST,
            10,
        ),
        (
            PlanReply::error(529, "overloaded_error", "Overloaded"),
            Some(Reply::Stream(stream_reply_for(
                "claude-sonnet-4-5",
                1200,
                345,
                "Hi from Bedrock",
            ))),
            &plan_first,
            STREAM_REQUEST,
            50,
        ),
        (
            PlanReply::error(500, "api_error", "unused"),
            Some(bedrock_message),
            &bedrock_only,
            JSON_REQUEST,
            40,
        ),
        (
            PlanReply::error(500, "api_error", "unused"),
            Some(Reply::StreamThenException {
                events: events_from_sse(&basic)[..3].to_vec(),
                exception: "modelStreamErrorException",
                message: "the model stream failed".to_owned(),
            }),
            &bedrock_only,
            STREAM_REQUEST,
            10,
        ),
        (
            PlanReply::error(500, "api_error", "unused"),
            Some(Reply::Error {
                status: 400,
                error_type: "ValidationException",
                message: "bad".to_owned(),
            }),
            &bedrock_only,
            JSON_REQUEST,
            10,
        ),
    ];
    let mut sent = 0;
    for (plan, bedrock, url, body, count) in phases {
        proxy.plan.answer_with(plan);
        if let Some(reply) = bedrock {
            proxy.bedrock.respond_with(reply);
        }
        let statuses = burst(url, body, count).await;
        assert_eq!(statuses.values().sum::<usize>(), count, "{statuses:?}");
        sent += count;
    }

    // A record is made as its body ends, which may be just after the client has read it.
    let mut after = scrape(&proxy).await.2;
    for _ in 0..100 {
        let requests: f64 = delta_by(&before, &after, "llm_usage_requests_total", &[])
            .values()
            .sum();
        if requests as usize == sent {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        after = scrape(&proxy).await.2;
    }

    let rows = proxy.rows().await;
    assert_eq!(rows.len(), sent, "one row per request");
    let mut stored: BTreeMap<(String, String), i64> = BTreeMap::new();
    for row in &rows {
        for (what, value) in [
            ("requests", 1),
            ("input", row.input_tokens),
            ("output", row.output_tokens),
            ("cache_read", row.cache_read_input_tokens),
            ("cache_write", row.cache_creation_input_tokens),
            ("cost", row.estimated_cost_micros),
        ] {
            *stored
                .entry((row.provider.clone(), what.to_owned()))
                .or_default() += value;
        }
    }

    let mut scraped: BTreeMap<(String, String), i64> = BTreeMap::new();
    // `what`: the name of the sum, else the second label (the token type).
    let mut add = |metric: &str, by: &[&str], what: Option<&str>| {
        for (group, value) in delta_by(&before, &after, metric, by) {
            assert_eq!(value.fract(), 0.0, "{metric} {group:?}: a whole number");
            let what = what.map_or_else(|| group[1].clone(), str::to_owned);
            // Counters fit f64's 53-bit mantissa exactly at these sizes.
            *scraped.entry((group[0].clone(), what)).or_default() += value as i64;
        }
    };
    add("llm_usage_requests_total", &["provider"], Some("requests"));
    add("llm_usage_tokens_total", &["provider", "type"], None);
    add(
        "llm_usage_cost_micro_usd_total",
        &["provider"],
        Some("cost"),
    );
    // A token type that was never reported has no series; the rows store it as 0.
    stored.retain(|key, value| *value != 0 || scraped.contains_key(key));
    assert_eq!(scraped, stored);

    // Both providers served, not only successfully, and every record named its provider.
    let providers: Vec<&str> = stored
        .keys()
        .map(|(provider, _)| provider.as_str())
        .collect();
    assert!(
        providers.contains(&"plan") && providers.contains(&"bedrock"),
        "{providers:?}"
    );
    let outcomes: std::collections::BTreeSet<&str> =
        rows.iter().map(|r| r.outcome.as_str()).collect();
    assert!(outcomes.len() >= 3, "{outcomes:?}");
    let durations = delta_by(
        &before,
        &after,
        "llm_usage_duration_seconds_count",
        &["provider"],
    );
    let requests = delta_by(&before, &after, "llm_usage_requests_total", &["provider"]);
    assert_eq!(durations, requests, "a duration sample per request");
    assert!(!requests.contains_key(&vec!["none".to_owned()]));
    db.close().await;
}

#[tokio::test]
async fn metrics_off_removes_the_route() {
    let setup = Setup {
        extra_args: vec!["--metrics=false".to_owned()],
        ..Setup::default()
    };
    let proxy = Proxy::start(PlanReply::error(500, "api_error", "unused"), setup).await;
    let (status, _, _) = scrape(&proxy).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}
