//! The layer around a hyper-util `Client` used as a tower `Service`: metering on the
//! client side of a service that calls an LLM API itself. Against an upstream that gzips
//! (the client asks for it, as the official SDKs do): the caller reads the gzip, the
//! records are exact, the format comes from the request path, the id from the request's
//! `x-request-id`, the provider and labels from a closure on the request.

use bytes::Bytes;
use http::{Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use tower::{Service, ServiceBuilder, ServiceExt};
use usage_layer::sink::MemorySink;
use usage_layer::{Format, Outcome, Provider, UsageLayer, UsageRecord};
use usage_tests::upstream::{Behaviour, Upstream, answer};

#[tokio::test]
async fn a_metered_client_records_each_call_exactly() {
    let upstream = Upstream::start(Behaviour {
        gzip: true,
        own_request_id: true,
    })
    .await;
    let records = MemorySink::new();
    let client: Client<HttpConnector, Full<Bytes>> =
        Client::builder(TokioExecutor::new()).build(HttpConnector::new());
    let mut service = ServiceBuilder::new()
        .layer(UsageLayer::new(records.clone()).on_request(
            |request: &Request<Full<Bytes>>, record: &mut UsageRecord| {
                // This client calls one provider; the path says which API.
                record.provider = Some(match Format::from_path(request.uri().path()) {
                    Some(Format::Anthropic) => Provider::new("anthropic"),
                    _ => Provider::OPENAI,
                });
                record.labels.insert("feature", "autocomplete");
            },
        ))
        .service(client);

    let mut calls = Vec::new();
    for (n, path) in ["/v1/messages", "/v1/chat/completions", "/v1/responses"]
        .into_iter()
        .enumerate()
    {
        for streaming in [true, false] {
            let id = format!("call-{n}-{streaming}");
            let body = format!(r#"{{"model":"m","stream":{streaming}}}"#);
            let request = Request::post(format!("{}{path}", upstream.url()))
                .header("content-type", "application/json")
                .header("accept-encoding", "gzip, deflate")
                .header("x-request-id", &id)
                .body(Full::new(Bytes::from(body)))
                .unwrap();
            let response = service.ready().await.unwrap().call(request).await.unwrap();
            assert_eq!(response.status(), StatusCode::OK);
            assert_eq!(response.headers()["content-encoding"], "gzip");
            let upstream_id = response.headers()["x-request-id"]
                .to_str()
                .unwrap()
                .to_owned();
            let gzipped = response.into_body().collect().await.unwrap().to_bytes();
            let mut plain = Vec::new();
            std::io::Read::read_to_end(&mut flate2::read::GzDecoder::new(&gzipped[..]), &mut plain)
                .unwrap();
            assert_eq!(
                plain,
                answer(path, streaming).unwrap().1,
                "the caller reads the body"
            );
            calls.push((id, path, streaming, upstream_id, gzipped.len()));
        }
    }

    let records = records.take();
    assert_eq!(
        records.len(),
        calls.len(),
        "one record per call, made as each body ended"
    );
    for (record, (id, path, streaming, upstream_id, sent)) in records.iter().zip(calls) {
        let known = answer(path, streaming).unwrap().2;
        assert_eq!(record.request_id.as_str(), id);
        assert_eq!(
            record.labels.get("upstream_request_id"),
            Some(upstream_id.as_str())
        );
        assert_eq!(record.labels.get("feature"), Some("autocomplete"));
        assert_eq!(record.format, Format::from_path(path));
        assert_eq!(record.streaming, streaming);
        assert_eq!(record.outcome, Outcome::Completed, "{record:#?}");
        assert_eq!(record.parse_issue, None);
        assert_eq!(
            record.usage.input_tokens,
            Some(known.input),
            "{path} {streaming}"
        );
        assert_eq!(
            record.usage.output_tokens,
            Some(known.output),
            "{path} {streaming}"
        );
        assert_eq!(record.usage.cache_read_input_tokens, known.cache_read);
        assert_eq!(record.served_model.as_deref(), Some(known.model));
        assert_eq!(record.response_bytes, sent as u64);
        let expected = if path == "/v1/messages" {
            Provider::new("anthropic")
        } else {
            Provider::OPENAI
        };
        assert_eq!(record.provider, Some(expected));
    }
    assert_eq!(upstream.served(), 6);
}
