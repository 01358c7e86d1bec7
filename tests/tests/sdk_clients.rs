//! The official Anthropic SDKs (Python `anthropic`, TypeScript `@anthropic-ai/sdk`) as clients
//! of the reference server, with the Plan and Bedrock stand-ins behind it: a real client
//! cannot tell the proxy is there, and for every completed call the usage the SDK reports is
//! the usage recorded — the SDK is the oracle.

use std::collections::HashMap;
use std::time::Duration;

use reference_server::config::Routing;
use reference_server::standins::bedrock::{Reply, events_from_sse};
use reference_server::standins::plan::PlanReply;
use serde_json::{Value, json};
use usage_layer::store::sea_orm::entity::token_usage;
use usage_tests::proxy::{Proxy, Setup, api_stream, fixture, fixture_names, long_stream};
use usage_tests::sdk::{Sdk, SdkClient};

const MODEL: &str = "claude-haiku-4-5-20251001";

fn params(messages: &[Value]) -> Value {
    json!({"model": MODEL, "max_tokens": 1024, "messages": messages})
}

fn user(text: &str) -> Value {
    json!({"role": "user", "content": text})
}

/// The assistant turn an SDK answer adds to a conversation.
fn assistant(answer: &Value) -> Value {
    let content: Vec<Value> = answer["message"]["content"]
        .as_array()
        .expect("content")
        .iter()
        .filter(|block| block["type"] == "text")
        .map(|block| json!({"type": "text", "text": block["text"]}))
        .collect();
    json!({"role": "assistant", "content": content})
}

/// The SDK answered without an error; the answer.
#[track_caller]
fn ok(answer: Value, what: &str) -> Value {
    assert_eq!(answer["ok"], true, "{what}: the SDK failed: {answer:#}");
    answer
}

/// The rows by request id.
fn by_request_id(rows: Vec<token_usage::Model>) -> HashMap<String, token_usage::Model> {
    let count = rows.len();
    let rows: HashMap<_, _> = rows
        .into_iter()
        .map(|row| (row.request_id.clone(), row))
        .collect();
    assert_eq!(rows.len(), count, "one row per request");
    rows
}

/// The row of the call the SDK answered (found by the proxy's `x-request-id`).
#[track_caller]
fn row_of<'a>(
    rows: &'a HashMap<String, token_usage::Model>,
    answer: &Value,
    what: &str,
) -> &'a token_usage::Model {
    let id = answer["request_id"]
        .as_str()
        .unwrap_or_else(|| panic!("{what}: the SDK saw no x-request-id: {answer:#}"));
    rows.get(id)
        .unwrap_or_else(|| panic!("{what}: no token_usage row for request {id}"))
}

/// The SDK's final usage equals the recorded row's, field by field (the SDK's `null` cache
/// counts are 0 in the row), and the provider and served model are right.
#[track_caller]
fn assert_recorded_as_seen(
    rows: &HashMap<String, token_usage::Model>,
    answer: &Value,
    provider: &str,
    what: &str,
) {
    let row = row_of(rows, answer, what);
    let usage = &answer["message"]["usage"];
    let count = |name: &str| usage[name].as_i64().unwrap_or(0);
    assert_eq!(
        (
            row.input_tokens,
            row.output_tokens,
            row.cache_read_input_tokens,
            row.cache_creation_input_tokens
        ),
        (
            count("input_tokens"),
            count("output_tokens"),
            count("cache_read_input_tokens"),
            count("cache_creation_input_tokens")
        ),
        "{what}: recorded (input, output, cache read, cache creation) vs the SDK's usage {usage}"
    );
    assert_eq!(row.provider, provider, "{what}: provider");
    assert_eq!(row.outcome, "completed", "{what}: outcome");
    assert_eq!(
        row.served_model.as_deref(),
        answer["message"]["model"].as_str(),
        "{what}: served model"
    );
}

/// One SDK through a whole session: streaming text, streaming tool use, a JSON answer, an
/// error, a stream the client leaves, then a Plan 429 in the middle of a conversation that
/// Bedrock finishes (streaming and not) while the key cools down.
async fn a_session_through_the_proxy(sdk: Sdk) {
    let mut proxy = Proxy::start(
        PlanReply::error(500, "api_error", "unscripted"),
        Setup::default(),
    )
    .await;
    let mut client = SdkClient::start(sdk, &proxy.base_url()).await;
    let version = client.version.clone();
    let what = |step: &str| format!("{sdk:?} SDK {version}: {step}");
    let mut answers = Vec::new();

    // 1. Streaming text from Plan.
    proxy
        .plan
        .queue([PlanReply::Stream(api_stream("basic_response.txt"))]);
    let mut conversation = vec![user("Hello")];
    let text = ok(
        client.stream(&params(&conversation)).await,
        &what("text stream"),
    );
    assert!(text["events"].as_u64().unwrap() > 3);
    answers.push((text.clone(), "plan", what("text stream")));

    // 2. Streaming tool use: the SDK assembles the tool input from `input_json_delta`s.
    proxy
        .plan
        .queue([PlanReply::Stream(api_stream("tool_use_response.txt"))]);
    let tool = ok(
        client.stream(&params(&[user("Weather?")])).await,
        &what("tool-use stream"),
    );
    let blocks = tool["message"]["content"].as_array().unwrap();
    let tool_use = blocks
        .iter()
        .find(|b| b["type"] == "tool_use")
        .expect("a tool_use block");
    assert!(tool_use["input"].is_object(), "{tool_use}");
    answers.push((tool.clone(), "plan", what("tool-use stream")));

    // 3. Not streaming, with cache reads and writes.
    let message = json!({
        "id": "msg_json", "type": "message", "role": "assistant", "model": "claude-haiku-4-5-20251001",
        "content": [{"type": "text", "text": "Hi"}], "stop_reason": "end_turn", "stop_sequence": null,
        "usage": {"input_tokens": 40, "output_tokens": 9, "cache_read_input_tokens": 1000, "cache_creation_input_tokens": 250}
    });
    proxy.plan.queue([PlanReply::Json(200, message)]);
    let created = ok(client.create(&params(&[user("Hi")])).await, &what("create"));
    assert_eq!(created["message"]["usage"]["cache_read_input_tokens"], 1000);
    answers.push((created.clone(), "plan", what("create")));

    // 4. An error response reaches the SDK as its own error type, untouched.
    proxy.plan.queue([PlanReply::error(
        400,
        "invalid_request_error",
        "max_tokens: too large",
    )]);
    let error = client.create(&params(&[user("Hi")])).await;
    assert_eq!(error["ok"], false, "{error:#}");
    assert_eq!(error["status"], 400, "{error:#}");
    assert_eq!(error["error"], "BadRequestError", "{error:#}");

    // 5. A client that leaves a stream half way.
    proxy.plan.queue([PlanReply::Stream(long_stream(2_000))]);
    let aborted = ok(
        client.abort_after(&params(&[user("Long")]), 5).await,
        &what("abort"),
    );
    assert_eq!(aborted["events"], 5);
    tokio::time::sleep(Duration::from_millis(300)).await;

    // 6. Mid-conversation, Plan is rate limited: Bedrock answers this turn (re-emitted as
    //    Anthropic SSE) and the next ones while the key cools down.
    conversation.push(assistant(&text));
    conversation.push(user("And then?"));
    proxy.plan.queue([PlanReply::rate_limited(30)]);
    let fallback = ok(
        client.stream(&params(&conversation)).await,
        &what("429 → Bedrock stream"),
    );
    assert_eq!(
        fallback["message"]["content"][0]["text"],
        "Hello from Bedrock"
    );
    answers.push((fallback.clone(), "bedrock", what("429 → Bedrock stream")));

    conversation.push(assistant(&fallback));
    conversation.push(user("Use a tool"));
    proxy
        .bedrock
        .respond_with(Reply::Stream(events_from_sse(&fixture(
            "tool_use_response.txt",
        ))));
    let bedrock_tool = ok(
        client.stream(&params(&conversation)).await,
        &what("Bedrock tool-use stream"),
    );
    assert_eq!(
        bedrock_tool["message"]["content"], tool["message"]["content"],
        "the same answer from either provider"
    );
    answers.push((bedrock_tool, "bedrock", what("Bedrock tool-use stream")));

    conversation.push(user("Briefly"));
    proxy.bedrock.respond_with(Reply::Message(json!({
        "id": "msg_bdrk", "type": "message", "role": "assistant", "model": MODEL,
        "content": [{"type": "text", "text": "ok"}], "stop_reason": "end_turn", "stop_sequence": null,
        "usage": {"input_tokens": 2100, "output_tokens": 4, "cache_read_input_tokens": 64, "cache_creation_input_tokens": 0}
    })));
    let bedrock_json = ok(
        client.create(&params(&conversation)).await,
        &what("Bedrock create"),
    );
    answers.push((bedrock_json, "bedrock", what("Bedrock create")));
    assert_eq!(
        proxy.plan.requests().len(),
        6,
        "Plan is skipped while the key cools down"
    );
    assert_eq!(proxy.bedrock.requests().len(), 3);
    client.close().await;

    let rows = by_request_id(proxy.rows().await);
    assert_eq!(
        rows.len(),
        8,
        "one row per call: six answers, the error and the abandoned stream"
    );
    for (answer, provider, what) in &answers {
        assert_recorded_as_seen(&rows, answer, provider, what);
    }
    let row = row_of(&rows, &error, "error");
    assert_eq!(
        (row.provider.as_str(), row.outcome.as_str(), row.status_code),
        ("plan", "error_response", Some(400))
    );
    assert_eq!(row.error_type.as_deref(), Some("invalid_request_error"));
    let row = row_of(&rows, &aborted, "abort");
    assert_eq!(row.outcome, "client_disconnected", "{row:#?}");
    assert_eq!(
        row.input_tokens, 11,
        "the input tokens of the abandoned stream are billed"
    );
    let row = row_of(&rows, &answers[3].0, "fallback");
    assert_eq!(
        (row.fallback_from.as_deref(), row.fallback_reason.as_deref()),
        (Some("plan"), Some("rate_limited"))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_sdk_session_usage_equals_what_is_recorded() {
    a_session_through_the_proxy(Sdk::Python).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn typescript_sdk_session_usage_equals_what_is_recorded() {
    a_session_through_the_proxy(Sdk::TypeScript).await;
}

/// Every SSE fixture, streamed through Plan and (re-emitted) through Bedrock, read by the SDK:
/// the usage recorded is the SDK's own accumulated usage.
async fn every_fixture_through_both_providers(sdk: Sdk) {
    for (provider, routing) in [
        ("plan", Routing::PlanFirst),
        ("bedrock", Routing::BedrockOnly),
    ] {
        let setup = Setup {
            routing,
            ..Setup::default()
        };
        let mut proxy = Proxy::start(PlanReply::error(500, "api_error", "unscripted"), setup).await;
        let mut client = SdkClient::start(sdk, &proxy.base_url()).await;
        let mut answers = Vec::new();
        for name in fixture_names() {
            let stream = api_stream(&name);
            match provider {
                "plan" => proxy.plan.queue([PlanReply::Stream(stream)]),
                _ => proxy
                    .bedrock
                    .respond_with(Reply::Stream(events_from_sse(&stream))),
            }
            let what = format!("{sdk:?} SDK {} via {provider}: {name}", client.version);
            let answer = ok(client.stream(&params(&[user("Hello")])).await, &what);
            answers.push((answer, what));
        }
        client.close().await;
        let rows = by_request_id(proxy.rows().await);
        assert_eq!(rows.len(), answers.len());
        for (answer, what) in &answers {
            assert_recorded_as_seen(&rows, answer, provider, what);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_sdk_is_the_oracle_for_every_fixture() {
    every_fixture_through_both_providers(Sdk::Python).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn typescript_sdk_is_the_oracle_for_every_fixture() {
    every_fixture_through_both_providers(Sdk::TypeScript).await;
}
