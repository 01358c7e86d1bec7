//! OpenAI's formats (Chat Completions and Responses, streaming and not): the fixtures give
//! their table's usage for every chunking and line ending, through the scanner and through
//! the layer (also compressed); for any generated stream, any split, any line ends and any
//! unknown events between, the usage is the one the counts give.

use std::convert::Infallible;
use std::io::Write;
use std::path::PathBuf;

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::BodyExt;
use proptest::prelude::*;
use tower::{ServiceBuilder, ServiceExt, service_fn};
use usage_layer::anthropic::{BodyUsage, JsonReader};
use usage_layer::sink::MemorySink;
use usage_layer::sse::Scanner;
use usage_layer::{Format, Outcome, UsageLayer, UsageRecord};

/// One row of the fixtures README's table.
#[derive(Debug)]
struct Expected {
    file: String,
    format: Option<Format>,
    input: Option<u64>,
    output: Option<u64>,
    cache_read: Option<u64>,
    reasoning: Option<u64>,
    model: Option<String>,
    outcome: String,
}

fn fixtures_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/openai")
}

fn fixtures() -> Vec<(Expected, Vec<u8>)> {
    let dir = fixtures_dir();
    let readme = std::fs::read_to_string(dir.join("README.md")).unwrap();
    let text = |cell: &str| (cell.trim() != "null").then(|| cell.trim().to_owned());
    let count = |cell: &str| text(cell).map(|n| n.parse::<u64>().expect("a count"));
    let rows: Vec<(Expected, Vec<u8>)> = readme
        .lines()
        .filter(|line| line.starts_with("| ") && (line.contains(".sse") || line.contains(".json")))
        .map(|line| {
            let cells: Vec<&str> = line.trim_matches('|').split('|').collect();
            assert_eq!(cells.len(), 8, "table row {line:?}");
            let expected = Expected {
                file: cells[0].trim().to_owned(),
                format: text(cells[1]).map(|name| Format::from_name(&name).expect("a format")),
                input: count(cells[2]),
                output: count(cells[3]),
                cache_read: count(cells[4]),
                reasoning: count(cells[5]),
                model: text(cells[6]),
                outcome: cells[7].trim().to_owned(),
            };
            let bytes = std::fs::read(dir.join(&expected.file)).unwrap();
            (expected, bytes)
        })
        .collect();
    let files = std::fs::read_dir(&dir).unwrap().count() - 1; // less the README
    assert_eq!(rows.len(), files, "every fixture has a row");
    rows
}

fn streaming(expected: &Expected) -> bool {
    expected.file.ends_with(".sse")
}

fn read(bytes: &[u8], streaming: bool, piece: usize) -> BodyUsage {
    if streaming {
        let mut scanner = Scanner::new();
        for piece in bytes.chunks(piece) {
            scanner.feed(piece);
        }
        scanner.finish()
    } else {
        let mut reader = JsonReader::new(1 << 20);
        for piece in bytes.chunks(piece) {
            reader.feed(piece);
        }
        reader.finish()
    }
}

#[track_caller]
fn assert_matches(body: &BodyUsage, expected: &Expected, streaming: bool, what: &str) {
    let usage = body.billed_usage();
    let file = &expected.file;
    assert_eq!(body.format, expected.format, "{file} {what}: format");
    assert_eq!(usage.input_tokens, expected.input, "{file} {what}: input");
    assert_eq!(
        usage.output_tokens, expected.output,
        "{file} {what}: output"
    );
    assert_eq!(
        usage.cache_read_input_tokens, expected.cache_read,
        "{file} {what}: cache read"
    );
    assert_eq!(usage.cache_creation_input_tokens, None, "{file} {what}");
    assert_eq!(
        usage.reasoning_tokens, expected.reasoning,
        "{file} {what}: reasoning"
    );
    assert_eq!(body.model, expected.model, "{file} {what}: model");
    assert_eq!(
        Outcome::of_ended_body(body, streaming).as_str(),
        expected.outcome,
        "{file} {what}: outcome"
    );
    assert_eq!(body.issue, None, "{file} {what}");
}

#[test]
fn fixtures_give_their_usage_for_every_chunking_and_line_ending() {
    for (expected, bytes) in fixtures() {
        let streaming = streaming(&expected);
        let mut variants = vec![("lf", bytes.clone())];
        if streaming {
            let text = String::from_utf8(bytes.clone()).unwrap();
            variants.push(("crlf", text.replace('\n', "\r\n").into_bytes()));
            variants.push(("cr", text.replace('\n', "\r").into_bytes()));
        }
        for (ending, bytes) in &variants {
            for piece in (1..=97).chain([1460, bytes.len()]) {
                let body = read(bytes, streaming, piece);
                assert_matches(&body, &expected, streaming, &format!("{ending}, {piece} B"));
            }
        }
        // Read as the format the path would name, the result is the same.
        if let Some(format) = expected.format {
            let body = if streaming {
                let mut scanner = Scanner::new().with_format(Some(format));
                scanner.feed(&bytes);
                scanner.finish()
            } else {
                let mut reader = JsonReader::new(1 << 20).with_format(Some(format));
                reader.feed(&bytes);
                reader.finish()
            };
            assert_matches(&body, &expected, streaming, "format given");
        }
    }
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    encoder.write_all(bytes).unwrap();
    encoder.finish().unwrap()
}

fn deflate(bytes: &[u8]) -> Vec<u8> {
    let mut encoder = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
    encoder.write_all(bytes).unwrap();
    encoder.finish().unwrap()
}

fn brotli(bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut encoder = brotli::CompressorWriter::new(&mut out, 4096, 5, 22);
    encoder.write_all(bytes).unwrap();
    drop(encoder);
    out
}

fn zstd(bytes: &[u8]) -> Vec<u8> {
    let mut out = vec![0; zstd_safe::compress_bound(bytes.len())];
    let written = zstd_safe::compress(&mut out[..], bytes, 3).expect("zstd compresses");
    out.truncate(written);
    out
}

/// Serves `body` with these headers through the layer, in 61-byte frames; the bytes the
/// client got, and the record.
async fn through_layer(
    body: Vec<u8>,
    content_type: &'static str,
    encoding: Option<&'static str>,
    path: &str,
) -> (Vec<u8>, UsageRecord) {
    let records = MemorySink::new();
    let service = ServiceBuilder::new()
        .layer(UsageLayer::new(records.clone()))
        .service(service_fn(move |_request: Request<()>| {
            let frames: Vec<Result<http_body::Frame<Bytes>, Infallible>> = body
                .chunks(61)
                .map(|piece| Ok(http_body::Frame::data(Bytes::copy_from_slice(piece))))
                .collect();
            let mut response = Response::builder().header("content-type", content_type);
            if let Some(encoding) = encoding {
                response = response.header("content-encoding", encoding);
            }
            let body = http_body_util::StreamBody::new(futures::stream::iter(frames));
            std::future::ready(Ok::<_, Infallible>(response.body(body).unwrap()))
        }));
    let request = Request::post(path).body(()).unwrap();
    let response = service.oneshot(request).await.unwrap();
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    let [record] = records.take().try_into().expect("one record");
    (bytes.to_vec(), record)
}

#[cfg(feature = "decompress")]
#[tokio::test]
async fn fixtures_through_the_layer_compressed_or_not_give_their_usage() {
    type Encode = fn(&[u8]) -> Vec<u8>;
    let codings: [(Option<&'static str>, Encode); 5] = [
        (None, |bytes| bytes.to_vec()),
        (Some("gzip"), gzip),
        (Some("deflate"), deflate),
        (Some("br"), brotli),
        (Some("zstd"), zstd),
    ];
    for (expected, bytes) in fixtures() {
        let streaming = streaming(&expected);
        let content_type = if streaming {
            "text/event-stream; charset=utf-8"
        } else {
            "application/json"
        };
        let path = match expected.format {
            Some(Format::OpenAiResponses) => "/v1/responses",
            _ => "/v1/chat/completions",
        };
        for (coding, encode) in codings {
            let sent = encode(&bytes);
            let (received, record) = through_layer(sent.clone(), content_type, coding, path).await;
            let what = format!("{} {coding:?}", expected.file);
            assert_eq!(received, sent, "{what}: the client gets the bytes as sent");
            assert_eq!(record.response_bytes, sent.len() as u64, "{what}");
            assert_eq!(record.parse_issue, None, "{what}");
            assert_eq!(record.usage.input_tokens, expected.input, "{what}");
            assert_eq!(record.usage.output_tokens, expected.output, "{what}");
            assert_eq!(
                record.usage.cache_read_input_tokens, expected.cache_read,
                "{what}"
            );
            assert_eq!(record.usage.reasoning_tokens, expected.reasoning, "{what}");
            assert_eq!(record.served_model, expected.model, "{what}");
            assert_eq!(record.outcome.as_str(), expected.outcome, "{what}");
            // A format the path names is the format, even for a body with none of its own.
            assert_eq!(
                record.format,
                Format::from_path(path),
                "{what}: the path's format"
            );
        }
    }
}

#[cfg(feature = "decompress")]
#[tokio::test]
async fn a_compressed_bomb_is_cut_at_the_cap_and_marked() {
    // 64 MiB of one chunk's data line, gzipped to ~64 KiB, read with a 1 MiB event cap.
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    encoder
        .write_all(b"data: {\"choices\":[],\"x\":\"")
        .unwrap();
    let zeros = vec![b'0'; 1 << 20];
    for _ in 0..64 {
        encoder.write_all(&zeros).unwrap();
    }
    encoder.write_all(b"\"}\n\n").unwrap();
    let bomb = encoder.finish().unwrap();
    let (received, record) = through_layer(
        bomb.clone(),
        "text/event-stream",
        Some("gzip"),
        "/v1/chat/completions",
    )
    .await;
    assert_eq!(received, bomb);
    assert_eq!(record.outcome, Outcome::Unparsed);
    assert_eq!(record.parse_issue, Some(usage_layer::ParseIssue::OverCap));
}

/// A generated Chat Completions stream's usage chunk, as OpenAI counts.
#[derive(Clone, Debug)]
struct ChatUsage {
    prompt: u64,
    cached: Option<u64>,
    completion: u64,
    reasoning: Option<u64>,
}

fn chat_usage() -> impl Strategy<Value = ChatUsage> {
    (0..1_000_000u64, any::<bool>(), 0..100_000u64, any::<bool>()).prop_flat_map(
        |(prompt, details, completion, reasoning)| {
            (0..=prompt, 0..=completion).prop_map(move |(cached, reasoned)| ChatUsage {
                prompt,
                cached: details.then_some(cached),
                completion,
                reasoning: (details && reasoning).then_some(reasoned),
            })
        },
    )
}

/// Text a model might write, with what could fool a careless reader: quotes, keys.
fn tricky_text() -> impl Strategy<Value = String> {
    prop_oneof![
        "[a-zA-Z ,.]{0,12}",
        Just(r#""usage":{"prompt_tokens":999}"#.to_owned()),
        Just("data: [DONE]".to_owned()),
        Just("\n\nevent: response.completed\n".to_owned()),
        any::<String>(),
    ]
}

/// The SSE lines of one chat stream: chunks, noise, the usage chunk, `[DONE]`.
fn chat_stream(
    usage: &Option<ChatUsage>,
    texts: &[String],
    usage_null: bool,
    noise: &[bool],
) -> Vec<String> {
    let usage_field = if usage_null { r#","usage":null"# } else { "" };
    let chunk = |choices: String| {
        format!(
            r#"{{"id":"chatcmpl-1","object":"chat.completion.chunk","created":1,"model":"gpt-4o-2024-08-06","choices":{choices}{usage_field}}}"#
        )
    };
    let mut events = vec![format!(
        "data: {}",
        chunk(
            r#"[{"index":0,"delta":{"role":"assistant","content":""},"finish_reason":null}]"#
                .to_owned()
        )
    )];
    for (i, text) in texts.iter().enumerate() {
        if noise.get(i).copied().unwrap_or(false) {
            events.push(": keep-alive".to_owned());
            events.push(
                "id: 7\nretry: 10\nevent: future_event\ndata: {\"usage\":{\"prompt_tokens\":5}}"
                    .to_owned(),
            );
        }
        let text = serde_json::to_string(text).unwrap();
        events.push(format!(
            "data: {}",
            chunk(format!(
                r#"[{{"index":0,"delta":{{"content":{text}}},"finish_reason":null}}]"#
            ))
        ));
    }
    events.push(format!(
        "data: {}",
        chunk(r#"[{"index":0,"delta":{},"finish_reason":"stop"}]"#.to_owned())
    ));
    if let Some(usage) = usage {
        let details = match (usage.cached, usage.reasoning) {
            (None, _) => String::new(),
            (Some(cached), reasoning) => format!(
                r#","prompt_tokens_details":{{"cached_tokens":{cached}}}{}"#,
                reasoning.map_or(String::new(), |r| format!(
                    r#","completion_tokens_details":{{"reasoning_tokens":{r}}}"#
                ))
            ),
        };
        events.push(format!(
            r#"data: {{"id":"chatcmpl-1","object":"chat.completion.chunk","created":1,"model":"gpt-4o-2024-08-06","choices":[],"usage":{{"prompt_tokens":{},"completion_tokens":{},"total_tokens":{}{details}}}}}"#,
            usage.prompt,
            usage.completion,
            usage.prompt + usage.completion
        ));
    }
    events.push("data: [DONE]".to_owned());
    events
}

/// Events joined with blank lines, with line end `ending`, in pieces cut at `cuts`.
fn written(events: &[String], ending: &str, cuts: &[prop::sample::Index]) -> Vec<Vec<u8>> {
    let text: String = events
        .iter()
        .map(|event| format!("{event}\n\n"))
        .collect::<String>()
        .replace('\n', ending);
    let bytes = text.into_bytes();
    let mut points: Vec<usize> = cuts.iter().map(|cut| cut.index(bytes.len() + 1)).collect();
    points.sort_unstable();
    let mut pieces = Vec::new();
    let mut last = 0;
    for point in points.into_iter().chain([bytes.len()]) {
        pieces.push(bytes[last..point].to_vec());
        last = point;
    }
    pieces
}

fn scan(pieces: &[Vec<u8>]) -> BodyUsage {
    let mut scanner = Scanner::new();
    for piece in pieces {
        scanner.feed(piece);
    }
    scanner.finish()
}

fn ending() -> impl Strategy<Value = &'static str> {
    prop::sample::select(vec!["\n", "\r\n", "\r"])
}

proptest! {
    #[test]
    fn any_chat_stream_any_split_gives_its_usage(
        usage in proptest::option::of(chat_usage()),
        texts in proptest::collection::vec(tricky_text(), 0..8),
        usage_null in any::<bool>(),
        noise in proptest::collection::vec(any::<bool>(), 0..8),
        ending in ending(),
        cuts in proptest::collection::vec(any::<prop::sample::Index>(), 0..6),
    ) {
        let events = chat_stream(&usage, &texts, usage_null, &noise);
        let body = scan(&written(&events, ending, &cuts));
        let got = body.billed_usage();
        prop_assert_eq!(body.issue, None);
        prop_assert!(body.complete);
        prop_assert_eq!(body.format, Some(Format::OpenAiChat));
        prop_assert_eq!(body.model.as_deref(), Some("gpt-4o-2024-08-06"));
        prop_assert_eq!(body.stop_reason.as_deref(), Some("stop"));
        match usage {
            // No usage chunk: not reported, never 0.
            None => prop_assert!(got.is_empty(), "{:?}", got),
            Some(usage) => {
                prop_assert_eq!(got.input_tokens, Some(usage.prompt - usage.cached.unwrap_or(0)));
                prop_assert_eq!(got.cache_read_input_tokens, usage.cached);
                prop_assert_eq!(got.output_tokens, Some(usage.completion));
                prop_assert_eq!(got.reasoning_tokens, usage.reasoning);
                prop_assert_eq!(got.cache_creation_input_tokens, None);
            }
        }
    }

    #[test]
    fn any_responses_stream_any_split_gives_its_usage(
        usage in chat_usage(),
        end in prop::sample::select(vec!["response.completed", "response.incomplete", "response.failed"]),
        texts in proptest::collection::vec(tricky_text(), 0..6),
        unknown in proptest::collection::vec(any::<bool>(), 0..6),
        ending in ending(),
        cuts in proptest::collection::vec(any::<prop::sample::Index>(), 0..6),
    ) {
        let response = |status: &str, usage: &str| format!(
            r#"{{"id":"resp_1","object":"response","created_at":1,"status":"{status}","error":null,"incomplete_details":null,"model":"gpt-5-2025-08-07","output":[],"usage":{usage}}}"#
        );
        let mut events = vec![
            format!("event: response.created\ndata: {{\"type\":\"response.created\",\"sequence_number\":0,\"response\":{}}}", response("in_progress", "null")),
        ];
        for (i, text) in texts.iter().enumerate() {
            if unknown.get(i).copied().unwrap_or(false) {
                // An event this reader does not know, with a usage it must not take.
                events.push(r#"event: response.future_event
data: {"type":"response.future_event","usage":{"input_tokens":1}}"#.to_owned());
            }
            events.push(format!(
                "event: response.output_text.delta\ndata: {{\"type\":\"response.output_text.delta\",\"sequence_number\":{},\"delta\":{}}}",
                i + 1,
                serde_json::to_string(text).unwrap()
            ));
        }
        let details = format!(
            r#"{{"input_tokens":{},"input_tokens_details":{{"cached_tokens":{}}},"output_tokens":{},"output_tokens_details":{{"reasoning_tokens":{}}},"total_tokens":{}}}"#,
            usage.prompt,
            usage.cached.unwrap_or(0),
            usage.completion,
            usage.reasoning.unwrap_or(0),
            usage.prompt + usage.completion
        );
        let status = end.trim_start_matches("response.");
        events.push(format!(
            "event: {end}\ndata: {{\"type\":\"{end}\",\"sequence_number\":99,\"response\":{}}}",
            response(status, &details)
        ));
        let body = scan(&written(&events, ending, &cuts));
        let got = body.billed_usage();
        prop_assert_eq!(body.issue, None);
        prop_assert!(body.complete);
        prop_assert_eq!(body.format, Some(Format::OpenAiResponses));
        prop_assert_eq!(body.model.as_deref(), Some("gpt-5-2025-08-07"));
        prop_assert_eq!(got.input_tokens, Some(usage.prompt - usage.cached.unwrap_or(0)));
        prop_assert_eq!(got.cache_read_input_tokens, Some(usage.cached.unwrap_or(0)));
        prop_assert_eq!(got.output_tokens, Some(usage.completion));
        prop_assert_eq!(got.reasoning_tokens, Some(usage.reasoning.unwrap_or(0)));
    }
}
