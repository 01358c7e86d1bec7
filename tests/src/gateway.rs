//! An axum reverse proxy in the shape of axum's `examples/reverse-proxy`: a handler that
//! forwards the request to an upstream with a hyper-util `Client` and returns the
//! upstream's response as it came, labelled with the provider that served it. The tests
//! put the usage layer (and authentication, request ids…) around it as a user would.

use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use http::{StatusCode, Uri};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use usage_layer::{Format, Provider};

use crate::upstream::Upstream;

/// The proxy's state: the client, and where the upstream is.
#[derive(Clone, Debug)]
pub struct Gateway {
    client: Client<HttpConnector, Body>,
    upstream: String,
}

/// A gateway to `upstream`.
pub fn gateway(upstream: &Upstream) -> Gateway {
    Gateway {
        client: Client::builder(TokioExecutor::new()).build(HttpConnector::new()),
        upstream: upstream.url(),
    }
}

/// The reverse proxy's handler: forward, and say which provider served (`anthropic` for
/// the Messages API, `openai` for the others).
pub async fn proxy(
    State(gateway): State<Gateway>,
    mut request: Request,
) -> Result<Response, StatusCode> {
    let path = request.uri().path_and_query().map_or("/", |p| p.as_str());
    *request.uri_mut() = Uri::try_from(format!("{}{path}", gateway.upstream))
        .map_err(|_| StatusCode::BAD_REQUEST)?;
    let provider = match Format::from_path(request.uri().path()) {
        Some(Format::Anthropic) => Provider::new("anthropic"),
        _ => Provider::OPENAI,
    };
    let mut response = gateway
        .client
        .request(request)
        .await
        .map_err(|_| StatusCode::BAD_GATEWAY)?
        .into_response();
    response.extensions_mut().insert(provider);
    Ok(response)
}

/// The three model endpoints, each forwarded by [`proxy`].
pub fn model_routes() -> Router<Gateway> {
    Router::new()
        .route("/v1/messages", post(proxy))
        .route("/v1/chat/completions", post(proxy))
        .route("/v1/responses", post(proxy))
}

/// Serves `router` on a free loopback port; its base URL.
pub async fn serve(router: Router) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
    format!("http://{addr}")
}
