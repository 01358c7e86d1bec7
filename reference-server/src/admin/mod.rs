//! The admin API under `/admin`: usage by provider, users, keys, budgets, prices — behind
//! `Authorization: Bearer <admin token>` (or a console session: see [`crate::sessions`]),
//! described by the OpenAPI document it serves at
//! `GET /admin/openapi.json` (generated from these handlers).
//!
//! Errors are `{"detail": "…"}` (the original system's shape) with 400 for bad input (the
//! message names the parameter), 401 without the token, 404 for unknown ids.

mod audit;
mod input;
mod keys;
mod mappings;
mod prices;
mod requests;
mod usage;
mod users;

use std::sync::Arc;

use axum::Json;
use axum::extract::{Request, State};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use http::StatusCode;
use rust_decimal::Decimal;
use serde::Serialize;
use subtle::ConstantTimeEq;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi, ToSchema};
use utoipa_axum::router::OpenApiRouter;

use crate::app::AppState;

/// An admin request that cannot be answered.
#[derive(Debug)]
pub enum AdminError {
    /// A parameter is missing, malformed or inconsistent (400).
    BadRequest {
        /// The parameter at fault.
        parameter: &'static str,
        /// What is wrong with it.
        message: String,
    },
    /// The id names nothing (404).
    NotFound(String),
    /// The request does not fit the resource's state (409): rotating a revoked key.
    Conflict(String),
    /// Something failed on our side (500); the details go to the log only.
    Internal(String),
}

impl AdminError {
    /// A 400 about `parameter`.
    pub fn bad(parameter: &'static str, message: impl Into<String>) -> Self {
        Self::BadRequest {
            parameter,
            message: message.into(),
        }
    }
}

impl<E: std::error::Error> From<E> for AdminError {
    fn from(error: E) -> Self {
        Self::Internal(error.to_string())
    }
}

/// The body of every admin error.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorBody {
    /// What went wrong.
    pub detail: String,
    /// The parameter at fault, for a 400.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub parameter: Option<String>,
}

impl IntoResponse for AdminError {
    fn into_response(self) -> Response {
        let (status, detail, parameter) = match self {
            Self::BadRequest { parameter, message } => (
                StatusCode::BAD_REQUEST,
                format!("{parameter}: {message}"),
                Some(parameter.to_owned()),
            ),
            Self::NotFound(what) => (StatusCode::NOT_FOUND, what, None),
            Self::Conflict(what) => (StatusCode::CONFLICT, what, None),
            Self::Internal(error) => {
                tracing::error!(%error, "admin request failed");
                (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "internal error".to_owned(),
                    None,
                )
            }
        };
        (status, Json(ErrorBody { detail, parameter })).into_response()
    }
}

/// A query string, refused with our 400 (`{"detail": …}`) instead of axum's plain text.
#[derive(Debug)]
pub struct AdminQuery<T>(pub T);

impl<T, S> axum::extract::FromRequestParts<S> for AdminQuery<T>
where
    T: serde::de::DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = AdminError;

    async fn from_request_parts(
        parts: &mut http::request::Parts,
        state: &S,
    ) -> Result<Self, AdminError> {
        axum::extract::Query::<T>::from_request_parts(parts, state)
            .await
            .map(|axum::extract::Query(value)| Self(value))
            .map_err(|rejection| AdminError::bad("query", rejection.body_text()))
    }
}

/// A JSON request body; one that is not valid JSON for `T` is a 400 about `body` (our
/// shape, not axum's plain-text rejection).
#[derive(Debug)]
struct JsonBody<T>(T);

impl<S: Send + Sync, T: serde::de::DeserializeOwned> axum::extract::FromRequest<S> for JsonBody<T> {
    type Rejection = Response;

    async fn from_request(request: Request, state: &S) -> Result<Self, Response> {
        let bytes = bytes::Bytes::from_request(request, state)
            .await
            .map_err(IntoResponse::into_response)?;
        parse_json(&bytes)
            .map(Self)
            .map_err(IntoResponse::into_response)
    }
}

fn parse_json<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Result<T, AdminError> {
    serde_json::from_slice(bytes).map_err(|error| AdminError::bad("body", error.to_string()))
}

/// Money as the API shows it: a decimal string with 6 places.
pub fn usd(micros: i64) -> String {
    Decimal::new(micros, 6).to_string()
}

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "admin_token",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}

#[derive(OpenApi)]
#[openapi(
    info(title = "reference-server admin API", description = "Usage by provider, users, access keys, budgets and prices."),
    modifiers(&BearerAuth),
    security(("admin_token" = [])),
    components(schemas(ErrorBody))
)]
struct ApiDoc;

/// Every admin handler, with its OpenAPI description.
fn api() -> OpenApiRouter<Arc<AppState>> {
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .merge(usage::routes())
        .merge(users::routes())
        .merge(keys::routes())
        .merge(prices::routes())
        .merge(mappings::routes())
        .merge(audit::routes())
        .merge(requests::routes())
}

/// `/admin/…`: the admin routes behind the token, and the OpenAPI document.
pub fn routes(state: Arc<AppState>) -> axum::Router<Arc<AppState>> {
    let (router, api) = api().split_for_parts();
    let document = Arc::new(api);
    let cors = cors(&state.cors_allowed_origins);
    let protected = router.route_layer(middleware::from_fn_with_state(state, authenticate));
    let routes = protected.route(
        "/admin/openapi.json",
        axum::routing::get(move || {
            let document = document.clone();
            async move { Json(document.as_ref().clone()) }
        }),
    );
    match cors {
        Some(cors) => routes.layer(cors),
        None => routes,
    }
}

/// CORS for `origins` (none: no CORS headers at all). Cross-origin callers use the bearer
/// token: cookies are not sent cross-site (`SameSite=Strict`), nor allowed here.
fn cors(origins: &[http::HeaderValue]) -> Option<tower_http::cors::CorsLayer> {
    use tower_http::cors::{AllowOrigin, CorsLayer};
    (!origins.is_empty()).then(|| {
        CorsLayer::new()
            .allow_origin(AllowOrigin::list(origins.iter().cloned()))
            .allow_methods([
                http::Method::GET,
                http::Method::POST,
                http::Method::PUT,
                http::Method::PATCH,
                http::Method::DELETE,
            ])
            .allow_headers([http::header::AUTHORIZATION, http::header::CONTENT_TYPE])
            .max_age(std::time::Duration::from_secs(600))
    })
}

/// The OpenAPI document of the admin API (for tooling and tests).
pub fn openapi() -> utoipa::openapi::OpenApi {
    api().split_for_parts().1
}

/// Who makes an admin request.
#[derive(Clone, Debug)]
pub enum Actor {
    /// The bearer admin token (may do everything).
    Token,
    /// A console session.
    Console(crate::sessions::Session),
}

impl Actor {
    /// How the audit log names it.
    pub fn label(&self) -> String {
        match self {
            Self::Token => "token".to_owned(),
            Self::Console(session) => format!("admin:{}", session.name),
        }
    }

    /// Whether it may change things.
    pub fn may_change(&self) -> bool {
        match self {
            Self::Token => true,
            Self::Console(session) => session.role == crate::admins::Role::Admin,
        }
    }
}

/// Whether a request changes something (everything but reads).
pub fn is_change(method: &http::Method) -> bool {
    !matches!(
        *method,
        http::Method::GET | http::Method::HEAD | http::Method::OPTIONS
    )
}

fn refuse(status: StatusCode, detail: &str) -> Response {
    let mut response = (
        status,
        Json(ErrorBody {
            detail: detail.to_owned(),
            parameter: None,
        }),
    )
        .into_response();
    if status == StatusCode::UNAUTHORIZED {
        response.headers_mut().insert(
            http::header::WWW_AUTHENTICATE,
            http::HeaderValue::from_static("Bearer"),
        );
    }
    response
}

/// Whether the bearer token presented is the admin token (compared in constant time).
fn bearer_matches(state: &AppState, headers: &http::HeaderMap) -> bool {
    let presented = headers
        .get(http::header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.strip_prefix("Bearer "))
        .unwrap_or_default();
    let expected = state.admin_token.expose();
    let matches: bool = presented.as_bytes().ct_eq(expected.as_bytes()).into();
    matches && !expected.is_empty()
}

/// Whether the request's `Origin`, if it has one, is the server's own (its `Host`).
pub(crate) fn same_origin(headers: &http::HeaderMap) -> bool {
    let Some(origin) = headers.get(http::header::ORIGIN) else {
        return true;
    };
    let host = headers
        .get(http::header::HOST)
        .and_then(|host| host.to_str().ok());
    let origin_host = origin
        .to_str()
        .ok()
        .and_then(|origin| url::Url::parse(origin).ok())
        .and_then(|url| {
            let host = url.host_str()?.to_owned();
            Some(match url.port() {
                Some(port) => format!("{host}:{port}"),
                None => host,
            })
        });
    host.is_some() && origin_host.as_deref() == host
}

/// Whether a change carried by a session comes from the console's own pages: the
/// session's CSRF token in `X-CSRF-Token`, and no foreign `Origin`.
fn same_site_change(headers: &http::HeaderMap, session: &crate::sessions::Session) -> bool {
    let token = headers
        .get("x-csrf-token")
        .and_then(|value| value.to_str().ok())
        .unwrap_or_default();
    let token_matches: bool = token.as_bytes().ct_eq(session.csrf_token.as_bytes()).into();
    token_matches && same_origin(headers)
}

/// Who is asking: `Authorization: Bearer <admin token>`, or a console session's cookie —
/// whose changes must carry its CSRF token, and only an `admin` account's changes are
/// accepted. Every change is written to the audit log with its answer's status.
async fn authenticate(
    State(state): State<Arc<AppState>>,
    mut request: Request,
    next: Next,
) -> Response {
    let change = is_change(request.method());
    let (actor, refused) = if bearer_matches(&state, request.headers()) {
        (Actor::Token, None)
    } else {
        match state.sessions.current(request.headers()).await {
            Ok(Some(session)) => {
                let refused = if change && !same_site_change(request.headers(), &session) {
                    Some("a change from a console session needs its CSRF token in X-CSRF-Token")
                } else if change && !Actor::Console(session.clone()).may_change() {
                    Some("this console account is a viewer: it cannot change anything")
                } else {
                    None
                };
                (Actor::Console(session), refused)
            }
            Ok(None) => {
                return refuse(
                    StatusCode::UNAUTHORIZED,
                    "admin token required: Authorization: Bearer <token> (or a console session)",
                );
            }
            Err(error) => return AdminError::from(error).into_response(),
        }
    };
    let action = format!(
        "{} {}",
        request.method(),
        request
            .extensions()
            .get::<axum::extract::MatchedPath>()
            .map_or_else(|| request.uri().path(), |path| path.as_str())
    );
    let target = request.uri().path().to_owned();
    let response = match refused {
        Some(why) => refuse(StatusCode::FORBIDDEN, why),
        None => {
            request.extensions_mut().insert(actor.clone());
            next.run(request).await
        }
    };
    // Changes, and refused attempts at one, are audited.
    if change {
        crate::audit::record(
            &state.db,
            crate::audit::Entry {
                actor: &actor.label(),
                action: &action,
                target: Some(&target),
                status: response.status().as_u16(),
                detail: refused,
            },
        )
        .await;
    }
    response
}
