//! The official OpenAI Python SDK (`openai`, pinned in tests/sdk/python/requirements.txt) as
//! the client of an axum gateway with the usage layer, in front of an upstream that speaks
//! OpenAI's formats and gzips (the SDK sends `Accept-Encoding: gzip, deflate`): Chat
//! Completions and Responses, streaming and not. The SDK is the oracle: for every call, the
//! usage the SDK parsed equals the record's, read in the record's meaning (OpenAI's input
//! counts include the cached tokens; the record's do not), and the record's id is the
//! `x-request-id` the SDK saw.

use http::HeaderName;
use serde_json::{Value, json};
use tower::ServiceBuilder;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use usage_layer::sink::MemorySink;
use usage_layer::{Format, Outcome, Provider, UsageLayer, UsageRecord};
use usage_tests::gateway::{gateway, model_routes, serve};
use usage_tests::sdk::{Sdk, SdkClient};
use usage_tests::upstream::{Behaviour, Upstream};

fn count(usage: &Value, path: &[&str]) -> Option<u64> {
    path.iter()
        .try_fold(usage, |value, key| value.get(key))
        .and_then(Value::as_u64)
}

#[track_caller]
fn assert_recorded_as_the_sdk_saw(record: &UsageRecord, answer: &Value, api: &str) {
    let usage = &answer["usage"];
    let (input, output, input_details, output_details) = if api == "chat" {
        (
            "prompt_tokens",
            "completion_tokens",
            "prompt_tokens_details",
            "completion_tokens_details",
        )
    } else {
        (
            "input_tokens",
            "output_tokens",
            "input_tokens_details",
            "output_tokens_details",
        )
    };
    let what = format!("{api}: {answer:#} vs {record:#?}");
    let cached = count(usage, &[input_details, "cached_tokens"]);
    let input = count(usage, &[input]).expect("the SDK's input count");
    assert_eq!(
        record.usage.input_tokens,
        Some(input - cached.unwrap_or(0)),
        "{what}"
    );
    assert_eq!(record.usage.cache_read_input_tokens, cached, "{what}");
    assert_eq!(
        record.usage.output_tokens,
        count(usage, &[output]),
        "{what}"
    );
    assert_eq!(
        record.usage.reasoning_tokens,
        count(usage, &[output_details, "reasoning_tokens"]),
        "{what}"
    );
    assert_eq!(record.usage.cache_creation_input_tokens, None, "{what}");
    assert_eq!(
        record.served_model.as_deref(),
        answer["model"].as_str(),
        "{what}"
    );
    assert_eq!(record.provider, Some(Provider::OPENAI), "{what}");
    assert_eq!(record.outcome, Outcome::Completed, "{what}");
    assert_eq!(record.parse_issue, None, "{what}");
}

#[tokio::test]
async fn the_sdks_usage_is_the_records_for_chat_and_responses_streaming_or_not() {
    let upstream = Upstream::start(Behaviour {
        gzip: true,
        ..Behaviour::default()
    })
    .await;
    let records = MemorySink::new();
    let x_request_id = HeaderName::from_static("x-request-id");
    let router = model_routes()
        .route_layer(UsageLayer::new(records.clone()))
        .with_state(gateway(&upstream))
        .layer(
            ServiceBuilder::new()
                .layer(SetRequestIdLayer::new(
                    x_request_id.clone(),
                    MakeRequestUuid,
                ))
                .layer(PropagateRequestIdLayer::new(x_request_id)),
        );
    let base = serve(router).await;
    let mut sdk = SdkClient::start(Sdk::OpenAiPython, &format!("{base}/v1")).await;
    eprintln!("openai (Python SDK) {}", sdk.version);

    let mut answers = Vec::new();
    for round in 0..3 {
        for api in ["chat", "responses"] {
            for stream in [true, false] {
                let answer = sdk.call(json!({"api": api, "stream": stream})).await;
                assert_eq!(answer["ok"], true, "round {round}: {answer:#}");
                answers.push((api, stream, answer));
            }
        }
    }
    sdk.close().await;

    // The gateway records as it drops each body, just after the SDK read its end.
    for _ in 0..6000 {
        if records.len() >= answers.len() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    let records = records.take();
    assert_eq!(records.len(), answers.len(), "one record per call");
    for (api, stream, answer) in &answers {
        let id = answer["request_id"]
            .as_str()
            .expect("the SDK saw an x-request-id");
        let record = records
            .iter()
            .find(|record| record.request_id.as_str() == id)
            .unwrap_or_else(|| panic!("no record for {id}"));
        assert_eq!(record.streaming, *stream, "{api}");
        let format = if *api == "chat" {
            Format::OpenAiChat
        } else {
            Format::OpenAiResponses
        };
        assert_eq!(record.format, Some(format));
        assert_recorded_as_the_sdk_saw(record, answer, api);
        assert!(
            record.usage.input_tokens.is_some(),
            "the SDK reported usage: {answer:#}"
        );
    }
    assert_eq!(upstream.served(), answers.len() as u64);
}
