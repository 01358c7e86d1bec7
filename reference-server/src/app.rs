//! The HTTP application: routes, access-key authentication, the usage layer, tracing with
//! redacted paths.

use std::sync::Arc;

use axum::Router as Routes;
use axum::body::{Body, Bytes};
use axum::extract::{DefaultBodyLimit, FromRequest, Request, State};
use axum::http::{HeaderMap, HeaderValue, Response, StatusCode, Uri};
use axum::middleware::{self, Next};
use axum::response::IntoResponse;
use axum::routing::{get, post};
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::limit::RequestBodyLimitLayer;
use tower_http::request_id::{
    MakeRequestId, PropagateRequestIdLayer, RequestId as TowerRequestId, SetRequestIdLayer,
};
use tower_http::timeout::TimeoutLayer;
use tower_http::trace::TraceLayer;
use usage_layer::sink::UsageSink;
use usage_layer::{Caller, Provider, RequestId, UsageLayer};

use crate::config::Routing;
use crate::deadline::{BodyTimeout, RequestDeadline, Watched};
use crate::error::anthropic_error;

const X_REQUEST_ID: &str = "x-request-id";
use crate::keys::{Authenticated, KeyStore};
use crate::routing::Router;

/// Bounds on a request.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// The largest body accepted (413 before reading more).
    pub max_request_bytes: usize,
    /// Time to the response headers (504 after it).
    pub response_timeout: std::time::Duration,
    /// Time to receive a request's whole body (408 after it).
    pub client_body_timeout: std::time::Duration,
}

/// How much later than the Messages route's own 504 the outer timeout answers.
const RESPONSE_TIMEOUT_BACKSTOP: std::time::Duration = std::time::Duration::from_secs(5);

/// What upstream response bodies may do (see [`crate::deadline::Watched`]).
#[derive(Clone, Debug)]
pub struct UpstreamBodies {
    /// The longest silence of an upstream body before it is cut.
    pub idle_timeout: std::time::Duration,
    /// Cancelled when the shutdown deadline passes: every open upstream body is cut.
    pub shutdown: tokio_util::sync::CancellationToken,
}

impl UpstreamBodies {
    /// `response`, its body watched.
    fn watch(&self, response: Response<Body>) -> Response<Body> {
        let event_stream = response
            .headers()
            .get(http::header::CONTENT_TYPE)
            .and_then(|value| value.to_str().ok())
            .is_some_and(|value| value.starts_with("text/event-stream"));
        response.map(|body| {
            Body::new(Watched::new(
                body,
                self.idle_timeout,
                self.shutdown.clone(),
                event_stream,
            ))
        })
    }
}

/// What the handlers share.
#[derive(Debug)]
pub struct AppState {
    /// Access keys.
    pub keys: KeyStore,
    /// Plan and Bedrock.
    pub router: Router,
    /// The database (users, keys, usage).
    pub db: sea_orm::DatabaseConnection,
    /// Usage queries, in the configured buckets.
    pub queries: usage_layer::store::sea_orm::UsageQueries,
    /// The effective prices.
    pub pricing: usage_layer::pricing::Pricing,
    /// Model mappings and price overrides from the database.
    pub live: crate::live::LiveConfig,
    /// Monthly Bedrock budgets.
    pub budget: crate::budget::Budget,
    /// The admin API's bearer token.
    pub admin_token: crate::config::Secret,
    /// The usage writer (its backlog is reported by `/health`).
    pub usage_writer: usage_layer::sink::BatchWriter,
    /// This proxy's fleet, with `--usage-transport` (shown by `/health`).
    pub fleet: Option<crate::fleet::Fleet>,
    /// The Prometheus recorder `/metrics` renders; `None` when metrics are off.
    pub metrics: Option<metrics_exporter_prometheus::PrometheusHandle>,
    /// Whether the database answers, and whether it is migrated.
    pub database: Arc<crate::database::DatabaseHealth>,
    /// Idle timeout and shutdown cut of upstream bodies.
    pub upstream_bodies: UpstreamBodies,
    /// What the client connections' limits did (shown by `/health`).
    pub connections: Arc<crate::listen::ConnectionStats>,
    /// How long a rotated key stays accepted, unless a rotation asks otherwise.
    pub key_rotation_grace: std::time::Duration,
    /// Access keys' own Bedrock credentials.
    pub credentials: crate::credentials::Credentials,
    /// The console's logins and sessions.
    pub sessions: Arc<crate::sessions::Sessions>,
    /// Origins allowed to call the admin API from a browser (CORS); empty: none.
    pub cors_allowed_origins: Vec<http::HeaderValue>,
}

/// `/ak/{key}/rest` ⇒ `/ak/<redacted>/rest`: the key never reaches a log line.
///
/// A segment is redacted when it follows an `ak` segment (anywhere and in any case:
/// `//ak/…`, `/x/AK/…` reach the 404 handler, whose span logs the path too), or when it
/// looks like a key or a credential wherever it is: it starts with `ak_` or `sk-`, or it
/// is a long run of base64url characters (20 or more) — a key pasted in the wrong place,
/// `/ak_…` or `/x/<key>/ak`, is not logged either.
pub fn redact(path: &str) -> String {
    let mut redacted = Vec::new();
    let mut after_ak = false;
    for segment in path.split('/') {
        let secret = !segment.is_empty() && (after_ak || looks_like_a_key(segment));
        redacted.push(if secret { "<redacted>" } else { segment });
        after_ak = segment.eq_ignore_ascii_case("ak") || (after_ak && segment.is_empty());
    }
    redacted.join("/")
}

/// A path segment that may be a credential (see [`redact`]). Route names (`messages`,
/// `count_tokens`) are short; UUIDs have hyphens every few characters and are kept.
fn looks_like_a_key(segment: &str) -> bool {
    let lower = segment.to_ascii_lowercase();
    if lower.starts_with("ak_") || lower.starts_with("sk-") {
        return true;
    }
    let mut run = 0;
    for byte in segment.bytes() {
        if byte.is_ascii_alphanumeric() || byte == b'_' || byte == b'-' && run > 0 {
            run += 1;
            if run >= 20 && !is_uuid_like(segment) {
                return true;
            }
        } else {
            run = 0;
        }
    }
    false
}

fn is_uuid_like(segment: &str) -> bool {
    uuid::Uuid::parse_str(segment).is_ok()
}

/// The key in `/ak/{key}/…` and what follows it.
fn split_key(path: &str) -> Option<(&str, &str)> {
    let rest = path.strip_prefix("/ak/")?;
    Some(rest.split_at(rest.find('/').unwrap_or(rest.len())))
}

/// The application, with `sink` (and the `/metrics` sink, when metrics are on) receiving
/// a usage record per Messages request.
pub fn app<K>(state: Arc<AppState>, sink: K, limits: Limits) -> Routes
where
    K: UsageSink + Clone + Send + Sync + 'static,
{
    let sink = (sink, crate::metrics::sink(&state));
    let metered = Routes::new()
        .route("/ak/{key}/v1/messages", post(messages))
        .route_layer(UsageLayer::new(sink));
    let authenticated = Routes::new()
        .merge(metered)
        .route("/ak/{key}/v1/messages/count_tokens", post(count_tokens))
        .route_layer(middleware::from_fn_with_state(state.clone(), authenticate));
    Routes::new()
        .merge(authenticated)
        .merge(crate::admin::routes(state.clone()))
        .merge(crate::console::routes(state.clone()))
        .merge(crate::metrics::routes(&state))
        .route("/", get(probe).head(probe))
        .route("/ak/{key}", get(probe).head(probe))
        .route("/health", get(health))
        .fallback(not_found)
        .with_state(state)
        // One limit, enforced before the body is read (413), instead of axum's default.
        .layer(DefaultBodyLimit::disable())
        .layer(RequestBodyLimitLayer::new(limits.max_request_bytes))
        // The whole body within its time (408), however slowly it trickles in.
        .layer(middleware::map_request(move |request: Request| async move {
            request.map(|body| Body::new(RequestDeadline::new(body, limits.client_body_timeout)))
        }))
        // Up to the response headers only: a stream, once started, is never cut. The
        // Messages route answers its own 504 first, inside the usage layer (labelled with
        // the upstream it waited on, outcome `timeout`); this one is for every other
        // route, and a backstop.
        .layer(TimeoutLayer::with_status_code(
            StatusCode::GATEWAY_TIMEOUT,
            limits.response_timeout + RESPONSE_TIMEOUT_BACKSTOP,
        ))
        .layer(CatchPanicLayer::new())
        .layer(PropagateRequestIdLayer::x_request_id())
        .layer(
            TraceLayer::new_for_http().make_span_with(|request: &Request| {
                tracing::info_span!(
                    "request",
                    method = %request.method(),
                    path = %redact(request.uri().path()),
                    request_id = request.headers().get(X_REQUEST_ID).and_then(|v| v.to_str().ok()).unwrap_or("-"),
                )
            }),
        )
        .layer(SetRequestIdLayer::x_request_id(TimeOrderedId))
        // The id keys the usage record (stored once per id): the server makes it, always.
        .layer(middleware::map_request(|mut request: Request| async move {
            request.headers_mut().remove(X_REQUEST_ID);
            request
        }))
}

/// Request ids are time-ordered UUIDs (v7): the same id is the usage record's key.
#[derive(Clone, Copy, Debug)]
struct TimeOrderedId;

impl MakeRequestId for TimeOrderedId {
    fn make_request_id<B>(&mut self, _: &http::Request<B>) -> Option<TowerRequestId> {
        HeaderValue::from_str(&uuid::Uuid::now_v7().to_string())
            .ok()
            .map(TowerRequestId::new)
    }
}

/// The request's id: the `x-request-id` the server set (a client's own was removed).
fn request_id(request: &Request) -> RequestId {
    request
        .headers()
        .get(X_REQUEST_ID)
        .and_then(RequestId::from_header)
        .unwrap_or_default()
}

/// Checks the access key in the path; labels the request with its caller and an id.
async fn authenticate(
    State(state): State<Arc<AppState>>,
    mut request: Request,
    next: Next,
) -> Response<Body> {
    let presented = split_key(request.uri().path())
        .map(|(key, _)| key)
        .unwrap_or_default();
    match state.keys.authenticate(presented).await {
        Ok(Some(caller)) => {
            let id = request_id(&request);
            let extensions = request.extensions_mut();
            extensions.insert(id);
            extensions.insert(Caller::user(caller.user.id).with_access_key(caller.key_id));
            // The provider the routing tries first: what a request that ends before any
            // response (the client left, or the body was refused: 413, 408) is recorded
            // under. The router's response says who really answered.
            extensions.insert(match Routing::from_stored(&caller.user.routing_strategy) {
                Routing::PlanFirst => Provider::PLAN,
                Routing::BedrockOnly => Provider::BEDROCK,
            });
            extensions.insert(caller);
            next.run(request).await
        }
        Ok(None) => anthropic_error(
            StatusCode::UNAUTHORIZED,
            "authentication_error",
            "invalid access key",
        ),
        Err(error) => {
            tracing::error!(%error, "access key lookup failed");
            anthropic_error(
                StatusCode::SERVICE_UNAVAILABLE,
                "api_error",
                "the access key could not be checked; try again",
            )
        }
    }
}

/// The path and query Plan sees: the `/ak/{key}` prefix removed, the query (Claude Code's
/// `?beta=true`) kept.
fn upstream_path(uri: &Uri) -> String {
    let rest = split_key(uri.path()).map(|(_, rest)| rest).unwrap_or("/");
    match uri.query() {
        Some(query) => format!("{rest}?{query}"),
        None => rest.to_owned(),
    }
}

async fn messages(
    State(state): State<Arc<AppState>>,
    axum::Extension(caller): axum::Extension<Authenticated>,
    uri: Uri,
    headers: HeaderMap,
    FullBody(body): FullBody,
) -> Response<Body> {
    let response = state
        .router
        .messages(&caller, &upstream_path(&uri), &headers, body)
        .await;
    state.upstream_bodies.watch(response)
}

/// Plan only, no usage (counting tokens is free).
async fn count_tokens(
    State(state): State<Arc<AppState>>,
    uri: Uri,
    headers: HeaderMap,
    FullBody(body): FullBody,
) -> Response<Body> {
    match state
        .router
        .plan()
        .send(&upstream_path(&uri), &headers, body)
        .await
    {
        Ok(response) => state.upstream_bodies.watch(response.map(Body::new)),
        Err(failure) => failure.into_response(),
    }
}

/// A request's whole body: 413 over the size limit, 408 when it does not arrive within
/// the client body timeout (and the connection is closed: the rest of the body is never
/// read).
#[derive(Debug)]
struct FullBody(Bytes);

impl<S: Send + Sync> FromRequest<S> for FullBody {
    type Rejection = Response<Body>;

    async fn from_request(request: Request, state: &S) -> Result<Self, Self::Rejection> {
        match Bytes::from_request(request, state).await {
            Ok(body) => Ok(Self(body)),
            Err(rejection) if BodyTimeout::is_in(&rejection) => {
                let mut response = anthropic_error(
                    StatusCode::REQUEST_TIMEOUT,
                    "request_timeout",
                    "the request body did not arrive in time",
                );
                response
                    .headers_mut()
                    .insert(http::header::CONNECTION, HeaderValue::from_static("close"));
                Err(response)
            }
            Err(rejection) => Err(rejection.into_response()),
        }
    }
}

/// Claude Code probes the base URL: answer cheaply.
async fn probe() -> StatusCode {
    StatusCode::OK
}

/// `200` while the server serves. `degraded` (with the reasons) while the database does
/// not answer or is not migrated yet, while usage waits in the spool or has been lost, or
/// while the usage queue is deep or its oldest record old; the writer's backlog with it.
pub(crate) async fn health(State(state): State<Arc<AppState>>) -> axum::Json<serde_json::Value> {
    let usage = state.usage_writer.stats();
    let lost = usage.failed + usage.dropped;
    let oldest_age_secs = usage
        .oldest_unwritten
        .map(|at| (chrono::Utc::now() - at).num_seconds().max(0));
    let database_down = state.database.last_failed();
    let mut reasons = Vec::new();
    if database_down {
        reasons.push("database_unreachable");
    }
    if !state.database.is_migrated() {
        reasons.push("database_not_migrated");
    }
    if usage.spooled > 0 {
        reasons.push("usage_spooled");
    }
    if lost > 0 {
        reasons.push("usage_lost");
    }
    if usage.queue_depth >= HEALTH_QUEUE_DEPTH {
        reasons.push("usage_queue_deep");
    }
    if oldest_age_secs.is_some_and(|age| age >= HEALTH_OLDEST_SECS) {
        reasons.push("usage_behind");
    }
    let breakers = state.router.breakers();
    let plan_circuit = breakers.plan_state();
    if plan_circuit != "closed" {
        reasons.push("plan_circuit_open");
    }
    if state.fleet.as_ref().is_some_and(|fleet| !fleet.is_synced()) {
        reasons.push("fleet_local_view");
    }
    axum::Json(serde_json::json!({
        "status": if reasons.is_empty() { "ok" } else { "degraded" },
        "reasons": reasons,
        "database": {
            "reachable": !database_down,
            "migrated": state.database.is_migrated(),
        },
        "connections": state.connections.json(),
        "fleet": state.fleet.as_ref().map(|fleet| {
            let mut json = fleet.json();
            json["pending_spend_requests"] = state.budget.pending_requests().into();
            json
        }),
        "plan": {
            "circuit": plan_circuit,
            "keys_circuit_open": breakers.keys_open(),
            "breaker": {
                "key_failures": breakers.config().key_failures,
                "plan_failures": breakers.config().plan_failures,
                "window_secs": breakers.config().window.as_secs(),
                "open_secs": breakers.config().open_for.as_secs(),
            },
        },
        "usage": {
            "queue_depth": usage.queue_depth,
            "spooled": usage.spooled,
            "spool_bytes": usage.spool_bytes,
            "oldest_unwritten": usage.oldest_unwritten,
            "oldest_unwritten_age_secs": oldest_age_secs,
            "written": usage.written,
            "lost": lost,
            "lost_spool_full": usage.spool_refused,
        },
    }))
}

/// Usage records waiting in memory from which `/health` says `degraded`.
const HEALTH_QUEUE_DEPTH: u64 = 10_000;
/// The age in seconds of the oldest unwritten record from which `/health` says `degraded`.
const HEALTH_OLDEST_SECS: i64 = 30;

async fn not_found() -> Response<Body> {
    anthropic_error(StatusCode::NOT_FOUND, "not_found_error", "no such route")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_redacted_from_paths() {
        assert_eq!(
            redact("/ak/ak_secret123/v1/messages"),
            "/ak/<redacted>/v1/messages"
        );
        assert_eq!(redact("/ak/ak_secret123"), "/ak/<redacted>");
        assert_eq!(redact("/health"), "/health");
        // A key anywhere else.
        assert_eq!(
            redact("/ak_secret123/v1/messages"),
            "/<redacted>/v1/messages"
        );
        let key = "ak_Zm9vYmFyYmF6cXV4cXV1eGNvcmdlZ3JhdWx0Z2Fy";
        assert_eq!(redact(&format!("/x/{key}/ak")), "/x/<redacted>/ak");
        assert_eq!(redact("/v1/sk-ant-api03-abc"), "/v1/<redacted>");
        assert_eq!(
            redact("/x/Zm9vYmFyYmF6cXV4cXV1eGNv/y"),
            "/x/<redacted>/y",
            "a long base64url run"
        );
        // Route names and ids stay readable.
        let id = "01a2340a-9914-712b-b606-39d3316df1ce";
        let admin = format!("/admin/users/{id}/keys");
        assert_eq!(redact(&admin), admin);
        assert_eq!(
            redact("/v1/messages/count_tokens"),
            "/v1/messages/count_tokens"
        );
    }

    #[test]
    fn upstream_path_keeps_the_query() {
        let uri: Uri = "/ak/ak_x/v1/messages?beta=true".parse().unwrap();
        assert_eq!(upstream_path(&uri), "/v1/messages?beta=true");
        let uri: Uri = "/ak/ak_x/v1/messages/count_tokens".parse().unwrap();
        assert_eq!(upstream_path(&uri), "/v1/messages/count_tokens");
    }
}
