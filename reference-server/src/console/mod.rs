//! The admin console under `/console`: server-rendered pages over the admin API.
//!
//! Every number a page shows comes from the admin API — called in-process with the
//! page's own session, exactly as a browser or script would call it — so the console and
//! the API cannot disagree. Charts are SVG drawn on the server by `charts-rs`; the CSS and
//! the small script that sends changes (to the admin API, with the session's CSRF token)
//! are compiled into the binary. Nothing is fetched from anywhere else.

mod charts;
mod pages;

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{ConnectInfo, FromRequestParts, Query, State};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Form, Router};
use http::{HeaderMap, HeaderValue, StatusCode, header};
use maud::{DOCTYPE, Markup, PreEscaped, html};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use tower::ServiceExt;

use crate::app::AppState;
use crate::sessions::{LoginError, Session};

const CSS: &str = include_str!("console.css");
const JS: &str = include_str!("console.js");

/// The admin API (and `/health`), answered in-process for the pages.
#[derive(Clone)]
pub(crate) struct Api(Router);

/// The routes under `/console`.
pub fn routes(state: Arc<AppState>) -> Router<Arc<AppState>> {
    let api = Api(crate::admin::routes(state.clone())
        .route("/health", get(crate::app::health))
        .with_state(state));
    Router::new()
        .route("/console", get(|| async { Redirect::to("/console/") }))
        .route("/console/", get(pages::dashboard))
        .route("/console/requests", get(pages::requests))
        .route("/console/users", get(pages::users))
        .route("/console/users/{user_id}", get(pages::user))
        .route("/console/mappings", get(pages::mappings))
        .route("/console/prices", get(pages::prices))
        .route("/console/audit", get(pages::audit))
        .route("/console/login", get(login_page).post(login))
        .route("/console/logout", post(logout))
        .route(
            "/console/assets/console.css",
            get(|| asset(CSS, "text/css")),
        )
        .route(
            "/console/assets/console.js",
            get(|| asset(JS, "text/javascript")),
        )
        .layer(axum::Extension(api))
}

async fn asset(body: &'static str, content_type: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, HeaderValue::from_static(content_type)),
            (
                header::CACHE_CONTROL,
                HeaderValue::from_static("public, max-age=300"),
            ),
        ],
        body,
    )
        .into_response()
}

/// A page's light or dark look (the charts are drawn in it).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Theme {
    Light,
    Dark,
}

impl Theme {
    fn of(headers: &HeaderMap) -> Self {
        match crate::sessions::cookie(headers, "console_theme") {
            Some("dark") => Self::Dark,
            _ => Self::Light,
        }
    }

    fn as_str(self) -> &'static str {
        match self {
            Self::Light => "light",
            Self::Dark => "dark",
        }
    }
}

/// A page request from a logged-in account.
pub(crate) struct Page {
    pub(crate) session: Session,
    pub(crate) state: Arc<AppState>,
    pub(crate) theme: Theme,
    headers: HeaderMap,
    api: Api,
}

/// Why a page could not be shown.
#[derive(Debug)]
pub(crate) struct PageError {
    status: StatusCode,
    detail: String,
}

impl From<sea_orm::DbErr> for PageError {
    fn from(error: sea_orm::DbErr) -> Self {
        tracing::error!(%error, "console page failed");
        Self {
            status: StatusCode::INTERNAL_SERVER_ERROR,
            detail: "internal error".to_owned(),
        }
    }
}

/// A count as every console page writes it: `1234567` as `1,234,567`.
pub fn count(n: i64) -> String {
    let digits = n.unsigned_abs().to_string();
    let mut out = String::new();
    for (i, digit) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(digit);
    }
    if n < 0 { format!("-{out}") } else { out }
}

impl IntoResponse for PageError {
    fn into_response(self) -> Response {
        let body = html! {
            (DOCTYPE)
            html lang="en" {
                head { meta charset="utf-8"; title { "Error — console" } link rel="stylesheet" href="/console/assets/console.css"; }
                body { main class="narrow" {
                    h1 { "Error " (self.status.as_u16()) }
                    p role="alert" { (self.detail) }
                    p { a href="/console/" { "Back to the dashboard" } }
                } }
            }
        };
        with_headers(self.status, body)
    }
}

impl FromRequestParts<Arc<AppState>> for Page {
    type Rejection = Response;

    async fn from_request_parts(
        parts: &mut http::request::Parts,
        state: &Arc<AppState>,
    ) -> Result<Self, Response> {
        let api = parts
            .extensions
            .get::<Api>()
            .cloned()
            .expect("the console's routes carry the API");
        match state.sessions.current(&parts.headers).await {
            Ok(Some(session)) => Ok(Self {
                session,
                state: Arc::clone(state),
                theme: Theme::of(&parts.headers),
                headers: parts.headers.clone(),
                api,
            }),
            Ok(None) => {
                let next = parts
                    .uri
                    .path_and_query()
                    .map_or("/console/", |path| path.as_str());
                let next =
                    url::form_urlencoded::byte_serialize(next.as_bytes()).collect::<String>();
                Err(Redirect::to(&format!("/console/login?next={next}")).into_response())
            }
            Err(error) => Err(PageError::from(error).into_response()),
        }
    }
}

impl Page {
    /// `GET path` on the admin API, as this session.
    pub(crate) async fn get<T: DeserializeOwned>(&self, path: &str) -> Result<T, PageError> {
        let mut request = http::Request::get(path)
            .body(Body::empty())
            .expect("a valid path");
        for name in [header::COOKIE, header::HOST] {
            if let Some(value) = self.headers.get(&name) {
                request.headers_mut().insert(name, value.clone());
            }
        }
        let response = self
            .api
            .0
            .clone()
            .oneshot(request)
            .await
            .unwrap_or_else(|never| match never {});
        let status = response.status();
        let bytes = axum::body::to_bytes(response.into_body(), 64 * 1024 * 1024)
            .await
            .map_err(|error| PageError {
                status: StatusCode::INTERNAL_SERVER_ERROR,
                detail: error.to_string(),
            })?;
        if !status.is_success() {
            let detail = serde_json::from_slice::<serde_json::Value>(&bytes)
                .ok()
                .and_then(|body| body.get("detail")?.as_str().map(str::to_owned))
                .unwrap_or_else(|| String::from_utf8_lossy(&bytes).into_owned());
            return Err(PageError { status, detail });
        }
        serde_json::from_slice(&bytes).map_err(|error| PageError {
            status: StatusCode::INTERNAL_SERVER_ERROR,
            detail: format!("reading {path}: {error}"),
        })
    }

    /// Whether this account may change things.
    pub(crate) fn may_change(&self) -> bool {
        self.session.role == crate::admins::Role::Admin
    }

    /// The page in the console's frame: navigation, account, time zone, theme.
    pub(crate) fn render(&self, current: &str, title: &str, body: Markup) -> Response {
        let zone = self.state.queries.buckets().zone();
        let nav = [
            ("/console/", "Dashboard"),
            ("/console/requests", "Requests"),
            ("/console/users", "Users"),
            ("/console/mappings", "Model mappings"),
            ("/console/prices", "Prices"),
            ("/console/audit", "Audit log"),
        ];
        let page = html! {
            (DOCTYPE)
            html lang="en" data-theme=(self.theme.as_str()) {
                head {
                    meta charset="utf-8";
                    meta name="viewport" content="width=device-width, initial-scale=1";
                    meta name="csrf-token" content=(self.session.csrf_token);
                    title { (title) " — reference-server console" }
                    link rel="stylesheet" href="/console/assets/console.css";
                    script src="/console/assets/console.js" defer {}
                }
                body {
                    header class="top" {
                        a class="brand" href="/console/" { "reference-server" }
                        nav aria-label="Console" {
                            ul {
                                @for (href, label) in nav {
                                    li { a href=(href) aria-current=[(href == current).then_some("page")] { (label) } }
                                }
                            }
                        }
                        div class="account" {
                            span class="zone" title="Usage buckets are days, weeks and months in this time zone (PROXY_USAGE_TIMEZONE)" {
                                "Time zone: " strong { (zone.name()) }
                            }
                            button type="button" class="theme" data-theme-toggle aria-label="Switch light or dark" { "◐" }
                            span { (self.session.name) " (" (self.session.role.as_str()) ")" }
                            form method="post" action="/console/logout" {
                                input type="hidden" name="csrf_token" value=(self.session.csrf_token);
                                button type="submit" { "Log out" }
                            }
                        }
                    }
                    main id="main" {
                        h1 { (title) }
                        div id="flash" role="status" aria-live="polite" {}
                        (body)
                    }
                }
            }
        };
        with_headers(StatusCode::OK, page)
    }
}

/// A page's answer, with the headers every console page has.
fn with_headers(status: StatusCode, page: Markup) -> Response {
    (
        status,
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CACHE_CONTROL, "no-store"),
            (header::X_FRAME_OPTIONS, "DENY"),
            (header::REFERRER_POLICY, "same-origin"),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
            (
                header::CONTENT_SECURITY_POLICY,
                "default-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; \
                 script-src 'self'; frame-ancestors 'none'; form-action 'self'; base-uri 'none'",
            ),
        ],
        page.into_string(),
    )
        .into_response()
}

#[derive(Debug, Default, Deserialize)]
struct LoginQuery {
    next: Option<String>,
    error: Option<String>,
}

/// Where to go after logging in: only a console path (never another site).
fn next_path(next: Option<&str>) -> &str {
    next.filter(|next| next.starts_with("/console") && !next.starts_with("//"))
        .unwrap_or("/console/")
}

fn login_form(next: &str, error: Option<&str>, status: StatusCode) -> Response {
    let page = html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { "Log in — reference-server console" }
                link rel="stylesheet" href="/console/assets/console.css";
                script src="/console/assets/console.js" defer {}
            }
            body {
                main class="narrow login" {
                    h1 { "reference-server console" }
                    @if let Some(error) = error {
                        p class="error" role="alert" { (error) }
                    }
                    form method="post" action="/console/login" {
                        input type="hidden" name="next" value=(next);
                        label for="name" { "Name" }
                        input id="name" name="name" autocomplete="username" required autofocus;
                        label for="password" { "Password" }
                        input id="password" name="password" type="password" autocomplete="current-password" required;
                        button type="submit" { "Log in" }
                    }
                    p class="hint" { "Accounts are made with " code { "reference-server admins create" } "." }
                }
            }
        }
    };
    with_headers(status, page)
}

async fn login_page(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    Query(query): Query<LoginQuery>,
) -> Response {
    let next = next_path(query.next.as_deref());
    if let Ok(Some(_)) = state.sessions.current(&headers).await {
        return Redirect::to(next).into_response();
    }
    login_form(next, query.error.as_deref(), StatusCode::OK)
}

#[derive(Deserialize)]
struct LoginForm {
    name: String,
    password: String,
    next: Option<String>,
}

async fn login(
    State(state): State<Arc<AppState>>,
    peer: Option<axum::Extension<ConnectInfo<std::net::SocketAddr>>>,
    headers: HeaderMap,
    Form(form): Form<LoginForm>,
) -> Response {
    let next = next_path(form.next.as_deref()).to_owned();
    if !crate::admin::same_origin(&headers) {
        return login_form(
            &next,
            Some("Log in from this server's own page."),
            StatusCode::FORBIDDEN,
        );
    }
    let peer = peer.map(|axum::Extension(ConnectInfo(peer))| peer.ip());
    let name = form.name.trim().to_owned();
    let result = state.sessions.login(&name, &form.password, peer).await;
    let (actor, action, status, detail) = match &result {
        Ok(_) => (format!("admin:{name}"), "login", 303, None),
        Err(LoginError::Refused) => (
            "anonymous".to_owned(),
            "login failed",
            401,
            Some(attempted(&name)),
        ),
        Err(LoginError::Limited(_)) => (
            "anonymous".to_owned(),
            "login limited",
            429,
            Some(attempted(&name)),
        ),
        Err(LoginError::Database(_)) => ("anonymous".to_owned(), "login failed", 500, None),
    };
    crate::audit::record(
        &state.db,
        crate::audit::Entry {
            actor: &actor,
            action,
            target: None,
            status,
            detail: detail.as_deref(),
        },
    )
    .await;
    match result {
        Ok((token, _)) => {
            let mut response = Redirect::to(&next).into_response();
            response.headers_mut().insert(
                header::SET_COOKIE,
                state.sessions.set_cookie(&token, &headers),
            );
            response
        }
        Err(LoginError::Limited(wait)) => {
            let mut response = login_form(
                &next,
                Some(&LoginError::Limited(wait).to_string()),
                StatusCode::TOO_MANY_REQUESTS,
            );
            response.headers_mut().insert(
                header::RETRY_AFTER,
                HeaderValue::from(wait.as_secs().max(1)),
            );
            response
        }
        Err(LoginError::Refused) => login_form(
            &next,
            Some("Wrong name or password."),
            StatusCode::UNAUTHORIZED,
        ),
        Err(LoginError::Database(error)) => PageError::from(error).into_response(),
    }
}

/// The audit log's note of a failed login: the name tried, cut to an account name's
/// length (a password typed into the name field goes no further than that).
fn attempted(name: &str) -> String {
    format!("name {:?}", name.chars().take(64).collect::<String>())
}

#[derive(Deserialize)]
struct LogoutForm {
    csrf_token: String,
}

async fn logout(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    Form(form): Form<LogoutForm>,
) -> Response {
    let session = match state.sessions.current(&headers).await {
        Ok(session) => session,
        Err(error) => return PageError::from(error).into_response(),
    };
    if let Some(session) = session {
        let matches: bool = subtle::ConstantTimeEq::ct_eq(
            form.csrf_token.as_bytes(),
            session.csrf_token.as_bytes(),
        )
        .into();
        if !matches || !crate::admin::same_origin(&headers) {
            return PageError {
                status: StatusCode::FORBIDDEN,
                detail: "logging out needs the page's CSRF token".to_owned(),
            }
            .into_response();
        }
        if let Err(error) = state.sessions.logout(&headers).await {
            return PageError::from(error).into_response();
        }
        crate::audit::record(
            &state.db,
            crate::audit::Entry {
                actor: &format!("admin:{}", session.name),
                action: "logout",
                target: None,
                status: 303,
                detail: None,
            },
        )
        .await;
    }
    let mut response = Redirect::to("/console/login").into_response();
    response
        .headers_mut()
        .insert(header::SET_COOKIE, state.sessions.clear_cookie(&headers));
    response
}

/// Text as it goes into a page unescaped — only for SVG made by `charts-rs` from our
/// numbers and escaped labels.
pub(crate) fn svg(markup: String) -> PreEscaped<String> {
    PreEscaped(markup)
}
