//! The Anthropic API ("Plan") upstream: one pooled HTTPS client, set up once.
//!
//! The request body goes out byte-identical; end-to-end headers go through (`x-api-key`,
//! `authorization`, `anthropic-version`, `anthropic-beta`, …), hop-by-hop ones and
//! `accept-encoding` do not (the usage layer must see plain SSE). The response comes back
//! as it is, streamed.

use std::time::Duration;

use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Method, Request, Response, Uri};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

/// Why Plan gave no response (so the request may fall back).
#[derive(Debug, thiserror::Error)]
pub enum PlanFailure {
    /// No connection, or it broke before the response headers.
    #[error("Plan unreachable: {0}")]
    Connect(String),
    /// No response headers in time.
    #[error("Plan sent no response headers within {0:?}")]
    Timeout(Duration),
}

impl PlanFailure {
    /// The answer when Plan gave none: 504 after a timeout, 502 otherwise.
    pub fn into_response(self) -> http::Response<axum::body::Body> {
        let status = match self {
            PlanFailure::Timeout(_) => http::StatusCode::GATEWAY_TIMEOUT,
            PlanFailure::Connect(_) => http::StatusCode::BAD_GATEWAY,
        };
        crate::error::anthropic_error(status, "api_error", &self.to_string())
    }
}

/// Headers that describe one connection, not the request: never forwarded.
const HOP_BY_HOP: [HeaderName; 8] = [
    header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    header::PROXY_AUTHENTICATE,
    header::PROXY_AUTHORIZATION,
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
];

/// Removes hop-by-hop headers, and those the `connection` header names.
pub fn strip_hop_by_hop(headers: &mut HeaderMap) {
    let named: Vec<HeaderName> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .filter_map(|name| HeaderName::from_bytes(name.trim().as_bytes()).ok())
        .collect();
    for name in HOP_BY_HOP.iter().chain(&named) {
        headers.remove(name);
    }
}

/// The Plan client.
#[derive(Clone, Debug)]
pub struct PlanClient {
    client: Client<HttpsConnector<HttpConnector>, Full<Bytes>>,
    base: String,
    api_key: Option<HeaderValue>,
    header_timeout: Duration,
}

impl PlanClient {
    /// A client for `base_url` (e.g. `https://api.anthropic.com`).
    pub fn new(
        base_url: &str,
        api_key: Option<&str>,
        connect_timeout: Duration,
        header_timeout: Duration,
    ) -> anyhow::Result<Self> {
        let base = base_url.trim_end_matches('/').to_owned();
        base.parse::<Uri>()
            .map_err(|error| anyhow::anyhow!("PROXY_PLAN_API_URL is not a URL: {error}"))?;
        let mut http = HttpConnector::new();
        http.enforce_http(false);
        http.set_connect_timeout(Some(connect_timeout));
        http.set_nodelay(true);
        let https = hyper_rustls::HttpsConnectorBuilder::new()
            .with_provider_and_webpki_roots(rustls::crypto::ring::default_provider())?
            .https_or_http()
            .enable_http1()
            .enable_http2()
            .wrap_connector(http);
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(90))
            .build(https);
        let api_key = api_key
            .map(HeaderValue::from_str)
            .transpose()
            .map_err(|_| anyhow::anyhow!("PROXY_PLAN_API_KEY is not a valid header value"))?
            .map(|mut value| {
                value.set_sensitive(true);
                value
            });
        Ok(Self {
            client,
            base,
            api_key,
            header_timeout,
        })
    }

    /// How long Plan may take to start answering.
    pub fn header_timeout(&self) -> Duration {
        self.header_timeout
    }

    /// Sends `body` to `path_and_query` (e.g. `/v1/messages?beta=true`) with the client's
    /// end-to-end headers; returns Plan's response as it comes, or why there is none.
    pub async fn send(
        &self,
        path_and_query: &str,
        client_headers: &HeaderMap,
        body: Bytes,
    ) -> Result<Response<Incoming>, PlanFailure> {
        let mut headers = client_headers.clone();
        strip_hop_by_hop(&mut headers);
        for name in [
            header::HOST,
            header::CONTENT_LENGTH,
            header::ACCEPT_ENCODING,
        ] {
            headers.remove(name);
        }
        let has_credentials =
            headers.contains_key("x-api-key") || headers.contains_key(header::AUTHORIZATION);
        if let (false, Some(key)) = (has_credentials, &self.api_key) {
            headers.insert("x-api-key", key.clone());
        }
        let mut request = Request::builder()
            .method(Method::POST)
            .uri(format!("{}{path_and_query}", self.base))
            .body(Full::new(body))
            .map_err(|error| PlanFailure::Connect(error.to_string()))?;
        *request.headers_mut() = headers;
        match tokio::time::timeout(self.header_timeout, self.client.request(request)).await {
            Err(_) => Err(PlanFailure::Timeout(self.header_timeout)),
            Ok(Err(error)) => Err(PlanFailure::Connect(error.to_string())),
            Ok(Ok(mut response)) => {
                strip_hop_by_hop(response.headers_mut());
                Ok(response)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hop_by_hop_headers_and_the_ones_connection_names_are_removed() {
        let mut headers = HeaderMap::new();
        headers.insert(
            header::CONNECTION,
            HeaderValue::from_static("keep-alive, x-secret-hop"),
        );
        headers.insert("keep-alive", HeaderValue::from_static("timeout=5"));
        headers.insert("x-secret-hop", HeaderValue::from_static("1"));
        headers.insert(
            header::TRANSFER_ENCODING,
            HeaderValue::from_static("chunked"),
        );
        headers.insert(
            "anthropic-beta",
            HeaderValue::from_static("prompt-caching-2024-07-31"),
        );
        headers.insert("x-api-key", HeaderValue::from_static("sk-test"));
        strip_hop_by_hop(&mut headers);
        let mut left: Vec<&str> = headers.keys().map(HeaderName::as_str).collect();
        left.sort_unstable();
        assert_eq!(left, ["anthropic-beta", "x-api-key"]);
    }
}

/// What the first event of a Plan stream said.
#[derive(Debug)]
pub enum Opening {
    /// A normal start: the response, its first bytes put back in front of the rest.
    Fine(Response<axum::body::Body>),
    /// The stream opened with an `error` event (e.g. `overloaded_error`), or broke before
    /// its first event: nothing has reached the client, so it can still fall back.
    Failed {
        /// The error event's type, or `stream_broken`.
        reason: String,
        /// Plan's answer as it came, for when there is no fallback.
        response: Response<axum::body::Body>,
    },
}

/// The most read ahead for the first event: a `message_start` is far smaller.
const OPENING_LIMIT: usize = 64 * 1024;

/// Reads a Plan stream up to its first complete event (at most 64 KiB, at most `wait`)
/// to see whether it opens with an `error` event — Anthropic answers 200 and then
/// `event: error` when it is overloaded mid-request. The bytes read are never lost: they
/// are sent first in the response either way.
pub async fn open_stream(response: Response<Incoming>, wait: Duration) -> Opening {
    use http_body_util::BodyExt;

    let (parts, mut body) = response.into_parts();
    let mut prefix = Vec::new();
    let mut scanner = usage_layer::sse::Scanner::new();
    let read = async {
        while prefix.len() < OPENING_LIMIT && scanner.usage().stats.events == 0 {
            match body.frame().await {
                Some(Ok(frame)) => {
                    if let Some(data) = frame.data_ref() {
                        scanner.feed(data);
                        prefix.extend_from_slice(data);
                    }
                }
                Some(Err(_)) => return false,
                None => break,
            }
        }
        true
    };
    let intact = tokio::time::timeout(wait, read).await.unwrap_or(true);
    let error = scanner.usage().error_type.clone();
    let response = Response::from_parts(
        parts,
        axum::body::Body::new(Prefixed::new(Bytes::from(prefix), body)),
    );
    match (intact, error) {
        (false, _) => Opening::Failed {
            reason: "stream_broken".to_owned(),
            response,
        },
        (true, Some(error)) => Opening::Failed {
            reason: error,
            response,
        },
        (true, None) => Opening::Fine(response),
    }
}

pin_project_lite::pin_project! {
    /// A body that yields `prefix` first, then the rest of `inner`.
    #[derive(Debug)]
    pub struct Prefixed<B> {
        prefix: Option<Bytes>,
        #[pin]
        inner: B,
    }
}

impl<B> Prefixed<B> {
    /// `prefix`, then `inner`.
    pub fn new(prefix: Bytes, inner: B) -> Self {
        Self {
            prefix: (!prefix.is_empty()).then_some(prefix),
            inner,
        }
    }
}

impl<B: http_body::Body<Data = Bytes>> http_body::Body for Prefixed<B> {
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<Bytes>, B::Error>>> {
        let this = self.project();
        match this.prefix.take() {
            Some(prefix) => std::task::Poll::Ready(Some(Ok(http_body::Frame::data(prefix)))),
            None => this.inner.poll_frame(cx),
        }
    }

    fn is_end_stream(&self) -> bool {
        self.prefix.is_none() && self.inner.is_end_stream()
    }
}
