//! The layer in an axum reverse proxy built the way axum's `examples/reverse-proxy` builds
//! one: a handler that forwards the request with a hyper-util `Client` and returns the
//! upstream's response. On the whole router and on the route; with authentication inside
//! and outside it; with tower-http's request ids; in front of an upstream that gzips.
//! Records of model calls are exact, the others say what they do not know, and the ids
//! are the `x-request-id` the client got.

use axum::body::Body;
use axum::extract::{Json, Request};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use bytes::Bytes;
use http::{HeaderName, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use tower::ServiceBuilder;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use usage_layer::sink::MemorySink;
use usage_layer::{Caller, Format, Outcome, Provider, UsageLayer, UsageRecord};
use usage_tests::gateway::{gateway, model_routes, serve};
use usage_tests::upstream::{Behaviour, Known, Upstream, answer};

/// A route with an extractor, to get axum's own rejections.
async fn echo(Json(value): Json<serde_json::Value>) -> Json<serde_json::Value> {
    Json(value)
}

/// What a client got back.
struct Got {
    status: StatusCode,
    request_id: Option<String>,
    encoding: Option<String>,
    body: Bytes,
}

async fn send(base: &str, path: &str, body: &str, headers: &[(&str, &str)]) -> Got {
    let client: Client<HttpConnector, Full<Bytes>> =
        Client::builder(TokioExecutor::new()).build(HttpConnector::new());
    let mut request = http::Request::post(format!("{base}{path}"));
    if !headers.iter().any(|(name, _)| *name == "content-type") {
        request = request.header("content-type", "application/json");
    }
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let request = request
        .body(Full::new(Bytes::from(body.to_owned())))
        .unwrap();
    let response = client.request(request).await.unwrap();
    let header = |name: &str| {
        response
            .headers()
            .get(name)
            .map(|value| value.to_str().unwrap().to_owned())
    };
    let (status, request_id, encoding) = (
        response.status(),
        header("x-request-id"),
        header("content-encoding"),
    );
    let body = response.into_body().collect().await.unwrap().to_bytes();
    Got {
        status,
        request_id,
        encoding,
        body,
    }
}

async fn get_path(base: &str, path: &str) -> StatusCode {
    let client: Client<HttpConnector, Full<Bytes>> =
        Client::builder(TokioExecutor::new()).build(HttpConnector::new());
    let response = client
        .get(format!("{base}{path}").parse().unwrap())
        .await
        .unwrap();
    let status = response.status();
    response.into_body().collect().await.unwrap();
    status
}

/// The records, once every body has ended (the server records when it drops a body, just
/// after the client has read its end); waits up to a minute for a busy machine.
async fn records(sink: &MemorySink, count: usize) -> Vec<UsageRecord> {
    for _ in 0..6000 {
        if sink.len() >= count {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    let records = sink.take();
    assert_eq!(records.len(), count, "{records:#?}");
    records
}

#[track_caller]
fn assert_exact(record: &UsageRecord, known: Known, provider: &Provider) {
    assert_eq!(record.provider.as_ref(), Some(provider), "{record:#?}");
    assert_eq!(record.usage.input_tokens, Some(known.input), "{record:#?}");
    assert_eq!(
        record.usage.output_tokens,
        Some(known.output),
        "{record:#?}"
    );
    assert_eq!(
        record.usage.cache_read_input_tokens, known.cache_read,
        "{record:#?}"
    );
    assert_eq!(
        record.served_model.as_deref(),
        Some(known.model),
        "{record:#?}"
    );
    assert_eq!(record.outcome, Outcome::Completed, "{record:#?}");
    assert_eq!(record.parse_issue, None, "{record:#?}");
}

fn known(path: &str, streaming: bool) -> Known {
    answer(path, streaming).expect("a model endpoint").2
}

const STREAM: &str = r#"{"model":"m","stream":true}"#;
const ONCE: &str = r#"{"model":"m"}"#;

#[tokio::test]
async fn on_the_whole_router_only_what_was_labelled_has_a_provider() {
    let upstream = Upstream::start(Behaviour::default()).await;
    let sink = MemorySink::new();
    let layer = UsageLayer::new(sink.clone());
    let diagnostics = layer.diagnostics();
    let router = model_routes()
        .route(
            "/health",
            get(|| async { Json(serde_json::json!({"status": "ok"})) }),
        )
        .route("/echo", post(echo))
        .route("/broken", post(|| async { StatusCode::BAD_GATEWAY }))
        .with_state(gateway(&upstream))
        .layer(layer);
    let base = serve(router).await;

    let chat = send(&base, "/v1/chat/completions", STREAM, &[]).await;
    assert_eq!(chat.status, StatusCode::OK);
    let messages = send(&base, "/v1/messages", ONCE, &[]).await;
    assert_eq!(messages.status, StatusCode::OK);
    assert_eq!(get_path(&base, "/health").await, StatusCode::OK);
    assert_eq!(get_path(&base, "/nowhere").await, StatusCode::NOT_FOUND);
    // axum's own rejections: not JSON, and JSON of no use.
    let rejected = send(&base, "/echo", "{", &[]).await;
    assert_eq!(rejected.status, StatusCode::BAD_REQUEST);
    let unsupported = send(&base, "/echo", "{}", &[("content-type", "text/plain")]).await;
    assert_eq!(unsupported.status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    let broken = send(&base, "/broken", "{}", &[]).await;
    assert_eq!(broken.status, StatusCode::BAD_GATEWAY);

    let records = records(&sink, 7).await;
    let (labelled, unlabelled): (Vec<_>, Vec<_>) =
        records.iter().partition(|record| record.provider.is_some());
    assert_eq!(labelled.len(), 2);
    for record in labelled {
        match record.format {
            Some(Format::OpenAiChat) => assert_exact(
                record,
                known("/v1/chat/completions", true),
                &Provider::OPENAI,
            ),
            Some(Format::Anthropic) => assert_exact(
                record,
                known("/v1/messages", false),
                &Provider::new("anthropic"),
            ),
            other => panic!("format {other:?}"),
        }
    }
    // Nobody said who served these: they are not Bedrock's, nor anyone's.
    let mut statuses: Vec<u16> = unlabelled
        .iter()
        .map(|record| record.status.unwrap().as_u16())
        .collect();
    statuses.sort_unstable();
    assert_eq!(statuses, [200, 400, 404, 415, 502]);
    for record in &unlabelled {
        assert!(record.usage.is_empty(), "{record:#?}");
        assert_eq!(record.format, None, "{record:#?}");
    }
    let gaps = diagnostics.gaps();
    assert_eq!(gaps.no_provider, 5);
    assert_eq!(gaps.no_caller, 7, "no authentication here");
    assert_eq!(gaps.no_usage, 1, "/health's 200 reported no usage");
}

#[tokio::test]
async fn as_a_route_layer_only_the_model_routes_are_metered() {
    let upstream = Upstream::start(Behaviour::default()).await;
    let sink = MemorySink::new();
    let router = model_routes()
        .route_layer(UsageLayer::new(sink.clone()))
        .route("/health", get(|| async { "ok" }))
        .with_state(gateway(&upstream));
    let base = serve(router).await;

    for path in ["/v1/messages", "/v1/chat/completions", "/v1/responses"] {
        for body in [STREAM, ONCE] {
            let got = send(&base, path, body, &[]).await;
            assert_eq!(got.status, StatusCode::OK, "{path}");
        }
    }
    assert_eq!(get_path(&base, "/health").await, StatusCode::OK);
    assert_eq!(get_path(&base, "/nowhere").await, StatusCode::NOT_FOUND);

    let records = records(&sink, 6).await;
    for record in &records {
        let path = match record.format {
            Some(Format::Anthropic) => "/v1/messages",
            Some(Format::OpenAiChat) => "/v1/chat/completions",
            Some(Format::OpenAiResponses) => "/v1/responses",
            other => panic!("format {other:?}"),
        };
        let provider = record.provider.clone().unwrap();
        assert_exact(record, known(path, record.streaming), &provider);
    }
    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    assert!(sink.is_empty(), "no record for /health or a 404");
}

/// The caller a bearer token stands for, if the request has one.
fn caller_of(headers: &http::HeaderMap) -> Option<Caller> {
    let token = headers
        .get("authorization")
        .and_then(|value| value.to_str().ok()?.strip_prefix("Bearer "))?;
    Some(Caller::user(format!("team-{token}")).with_access_key(format!("key-{token}")))
}

/// Authentication by a bearer token; labels the request with the caller, and the
/// response too when `label_response`.
async fn authenticate(label_response: bool, mut request: Request, next: Next) -> Response {
    let Some(caller) = caller_of(request.headers()) else {
        return StatusCode::UNAUTHORIZED.into_response();
    };
    request.extensions_mut().insert(caller.clone());
    let mut response = next.run(request).await;
    if label_response {
        response.extensions_mut().insert(caller);
    }
    response
}

#[tokio::test]
async fn authentication_before_or_after_the_layer() {
    let upstream = Upstream::start(Behaviour::default()).await;
    let expected = Caller::user("team-a1").with_access_key("key-a1");
    let auth = [("authorization", "Bearer a1")];

    // Outside the layer (the layer added first): the layer sees the caller on the request.
    let sink = MemorySink::new();
    let router = model_routes()
        .with_state(gateway(&upstream))
        .layer(UsageLayer::new(sink.clone()))
        .layer(middleware::from_fn(|request, next| {
            authenticate(false, request, next)
        }));
    let base = serve(router).await;
    send(&base, "/v1/chat/completions", STREAM, &auth).await;
    assert_eq!(records(&sink, 1).await[0].caller, expected);

    // Inside it (axum's natural `.layer(auth).layer(usage)`): the layer saw the request
    // before authentication did. Nothing is invented, and the diagnostics say so.
    let sink = MemorySink::new();
    let layer = UsageLayer::new(sink.clone());
    let diagnostics = layer.diagnostics();
    let router = model_routes()
        .with_state(gateway(&upstream))
        .layer(middleware::from_fn(|request, next| {
            authenticate(false, request, next)
        }))
        .layer(layer);
    let base = serve(router).await;
    send(&base, "/v1/chat/completions", STREAM, &auth).await;
    let [record] = records(&sink, 1).await.try_into().unwrap();
    assert_eq!(record.caller, Caller::default());
    assert_eq!(diagnostics.gaps().no_caller, 1);
    // Unauthenticated requests are metered too, as what they are: a 401 by nobody.
    let refused = send(&base, "/v1/chat/completions", STREAM, &[]).await;
    assert_eq!(refused.status, StatusCode::UNAUTHORIZED);
    let [refused] = records(&sink, 1).await.try_into().unwrap();
    assert_eq!(refused.outcome, Outcome::ErrorResponse);
    assert_eq!(refused.provider, None);

    // Inside it, labelling its response: the layer reads the caller from the response.
    let sink = MemorySink::new();
    let router = model_routes()
        .with_state(gateway(&upstream))
        .layer(middleware::from_fn(|request, next| {
            authenticate(true, request, next)
        }))
        .layer(UsageLayer::new(sink.clone()));
    let base = serve(router).await;
    send(&base, "/v1/chat/completions", STREAM, &auth).await;
    assert_eq!(records(&sink, 1).await[0].caller, expected);

    // Or the layer finds the caller itself, in any order, with a closure on the request.
    let sink = MemorySink::new();
    let layer = UsageLayer::new(sink.clone()).on_request(
        |request: &Request<Body>, record: &mut UsageRecord| {
            if let Some(caller) = caller_of(request.headers()) {
                let team = caller.user_id.clone().unwrap_or_default();
                record.caller = caller;
                record.labels.insert("team", team);
            }
        },
    );
    let router = model_routes()
        .with_state(gateway(&upstream))
        .layer(middleware::from_fn(|request, next| {
            authenticate(false, request, next)
        }))
        .layer(layer);
    let base = serve(router).await;
    send(&base, "/v1/chat/completions", STREAM, &auth).await;
    let [record] = records(&sink, 1).await.try_into().unwrap();
    assert_eq!(record.caller, expected);
    assert_eq!(record.labels.get("team"), Some("team-a1"));
}

#[tokio::test]
async fn record_ids_are_the_x_request_id_the_client_got() {
    let upstream = Upstream::start(Behaviour::default()).await;
    let x_request_id = HeaderName::from_static("x-request-id");

    // tower-http's request ids outside the layer, and inside it.
    for outside in [true, false] {
        let sink = MemorySink::new();
        let usage = UsageLayer::new(sink.clone());
        let ids = ServiceBuilder::new()
            .layer(SetRequestIdLayer::new(
                x_request_id.clone(),
                MakeRequestUuid,
            ))
            .layer(PropagateRequestIdLayer::new(x_request_id.clone()));
        let router = model_routes().with_state(gateway(&upstream));
        let router = if outside {
            router.layer(usage).layer(ids)
        } else {
            router.layer(ids).layer(usage)
        };
        let base = serve(router).await;
        let mut sent = Vec::new();
        for path in ["/v1/messages", "/v1/chat/completions", "/v1/responses"] {
            let got = send(&base, path, STREAM, &[]).await;
            sent.push(got.request_id.expect("a request id"));
        }
        // The client's own id is kept.
        let own = send(
            &base,
            "/v1/messages",
            ONCE,
            &[("x-request-id", "client-7f3a")],
        )
        .await;
        assert_eq!(own.request_id.as_deref(), Some("client-7f3a"));
        sent.push("client-7f3a".to_owned());

        let mut got: Vec<String> = records(&sink, 4)
            .await
            .iter()
            .map(|record| record.request_id.to_string())
            .collect();
        got.sort();
        sent.sort();
        assert_eq!(
            got,
            sent,
            "ids set {}",
            if outside { "outside" } else { "inside" }
        );
    }

    // An upstream that sends an id of its own (as OpenAI does): the client sees it, the
    // record keeps the gateway's and names the upstream's.
    let upstream = Upstream::start(Behaviour {
        own_request_id: true,
        ..Behaviour::default()
    })
    .await;
    let sink = MemorySink::new();
    let router = model_routes()
        .with_state(gateway(&upstream))
        .layer(UsageLayer::new(sink.clone()))
        .layer(SetRequestIdLayer::new(
            x_request_id.clone(),
            MakeRequestUuid,
        ))
        .layer(PropagateRequestIdLayer::new(x_request_id.clone()));
    let base = serve(router).await;
    let got = send(&base, "/v1/chat/completions", STREAM, &[]).await;
    let upstream_id = got.request_id.unwrap();
    assert!(upstream_id.starts_with("req_upstream_"), "{upstream_id}");
    let [record] = records(&sink, 1).await.try_into().unwrap();
    assert!(
        record.request_id.as_uuid().is_some(),
        "the gateway's own id"
    );
    assert_eq!(
        record.labels.get("upstream_request_id"),
        Some(upstream_id.as_str())
    );

    // Without request ids of its own, the gateway's records take the upstream's.
    let sink = MemorySink::new();
    let router = model_routes()
        .with_state(gateway(&upstream))
        .layer(UsageLayer::new(sink.clone()));
    let base = serve(router).await;
    let got = send(&base, "/v1/responses", STREAM, &[]).await;
    let [record] = records(&sink, 1).await.try_into().unwrap();
    assert_eq!(Some(record.request_id.to_string()), got.request_id);
}

#[tokio::test]
async fn an_upstream_that_gzips_is_read_and_the_client_gets_the_gzip() {
    let upstream = Upstream::start(Behaviour {
        gzip: true,
        ..Behaviour::default()
    })
    .await;
    let sink = MemorySink::new();
    let router = model_routes()
        .with_state(gateway(&upstream))
        .layer(UsageLayer::new(sink.clone()));
    let base = serve(router).await;
    // What the official SDKs send.
    let accept = [("accept-encoding", "gzip, deflate")];
    let mut expected = Vec::new();
    for path in ["/v1/messages", "/v1/chat/completions", "/v1/responses"] {
        for (body, streaming) in [(STREAM, true), (ONCE, false)] {
            let got = send(&base, path, body, &accept).await;
            assert_eq!(got.status, StatusCode::OK);
            assert_eq!(
                got.encoding.as_deref(),
                Some("gzip"),
                "the body passes as sent"
            );
            let mut plain = Vec::new();
            std::io::Read::read_to_end(
                &mut flate2::read::GzDecoder::new(&got.body[..]),
                &mut plain,
            )
            .unwrap();
            let (_, bytes, known) = answer(path, streaming).unwrap();
            assert_eq!(plain, bytes, "{path}");
            expected.push((path, streaming, known, got.body.len()));
        }
    }
    let records = records(&sink, 6).await;
    for (path, streaming, known, sent) in expected {
        let record = records
            .iter()
            .find(|record| {
                record.format == Format::from_path(path) && record.streaming == streaming
            })
            .unwrap_or_else(|| panic!("{path} {streaming}"));
        let provider = record.provider.clone().unwrap();
        assert_exact(record, known, &provider);
        assert_eq!(record.response_bytes, sent as u64, "the compressed bytes");
    }
}
