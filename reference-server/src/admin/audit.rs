//! `GET /admin/audit-log`: every change, newest first; `GET /admin/session`: who is asking.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Extension, State};
use chrono::{DateTime, Utc};
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter, QueryOrder, QuerySelect};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use super::input::parse_id;
use super::{Actor, AdminError, AdminQuery, ErrorBody};
use crate::app::AppState;
use crate::entity::audit_log;

pub(super) fn routes() -> OpenApiRouter<Arc<AppState>> {
    OpenApiRouter::new()
        .routes(routes!(list_audit_log))
        .routes(routes!(session))
}

/// The audit log's query.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
struct AuditParams {
    /// How many entries (1–500, default 100).
    #[param(value_type = Option<u32>, minimum = 1, maximum = 500)]
    limit: Option<String>,
    /// Only entries older than this entry (the previous page's last `id`).
    #[param(value_type = Option<String>, format = Uuid)]
    before: Option<String>,
    /// Only this actor (`admin:<name>`, `token`, `anonymous`).
    actor: Option<String>,
}

/// One entry.
#[derive(Debug, Serialize, ToSchema)]
struct AuditEntry {
    /// Id (ordered by time).
    id: Uuid,
    /// When.
    at: DateTime<Utc>,
    /// Who: `admin:<name>`, `token` (the bearer admin token) or `anonymous` (a failed login).
    #[schema(example = "admin:alice")]
    actor: String,
    /// What: the method and route, or `login`, `login failed`, `logout`.
    #[schema(example = "POST /admin/users/{user_id}/keys")]
    action: String,
    /// The path acted on.
    target: Option<String>,
    /// The answer's status code.
    status: i32,
    /// More about it.
    detail: Option<String>,
}

/// A page of the audit log.
#[derive(Debug, Serialize, ToSchema)]
struct AuditList {
    /// Newest first.
    entries: Vec<AuditEntry>,
}

/// Every change made through the admin API or the console, and every console login,
/// newest first.
#[utoipa::path(
    get,
    path = "/admin/audit-log",
    tag = "audit",
    params(AuditParams),
    responses(
        (status = 200, description = "the entries", body = AuditList),
        (status = 400, description = "a bad parameter", body = ErrorBody),
        (status = 401, description = "no or wrong admin token", body = ErrorBody),
    )
)]
async fn list_audit_log(
    State(state): State<Arc<AppState>>,
    AdminQuery(params): AdminQuery<AuditParams>,
) -> Result<Json<AuditList>, AdminError> {
    Ok(Json(AuditList {
        entries: entries(&state, &params).await?,
    }))
}

async fn entries(state: &AppState, params: &AuditParams) -> Result<Vec<AuditEntry>, AdminError> {
    let limit = match params.limit.as_deref() {
        None => 100,
        Some(limit) => limit
            .parse::<u64>()
            .ok()
            .filter(|limit| (1..=500).contains(limit))
            .ok_or_else(|| AdminError::bad("limit", "a whole number from 1 to 500"))?,
    };
    let mut query = audit_log::Entity::find()
        .order_by_desc(audit_log::Column::Id)
        .limit(limit);
    if let Some(before) = params.before.as_deref() {
        query = query.filter(audit_log::Column::Id.lt(parse_id("before", before)?));
    }
    if let Some(actor) = params.actor.as_deref().filter(|actor| !actor.is_empty()) {
        query = query.filter(audit_log::Column::Actor.eq(actor));
    }
    Ok(query
        .all(&state.db)
        .await?
        .into_iter()
        .map(|row| AuditEntry {
            id: row.id,
            at: row.at,
            actor: row.actor,
            action: row.action,
            target: row.target,
            status: row.status,
            detail: row.detail,
        })
        .collect())
}

/// Who is asking.
#[derive(Debug, Serialize, ToSchema)]
struct SessionInfo {
    /// `token` or `admin:<name>`.
    actor: String,
    /// `admin` or `viewer`.
    role: String,
    /// What a console session's changes carry in `X-CSRF-Token` (absent for the token).
    csrf_token: Option<String>,
    /// When a console session ends.
    expires_at: Option<DateTime<Utc>>,
}

/// Who the request's credentials are: the admin token, or a console session.
#[utoipa::path(
    get,
    path = "/admin/session",
    tag = "audit",
    responses(
        (status = 200, description = "the caller", body = SessionInfo),
        (status = 401, description = "no or wrong admin token", body = ErrorBody),
    )
)]
async fn session(Extension(actor): Extension<Actor>) -> Json<SessionInfo> {
    let role = if actor.may_change() {
        "admin"
    } else {
        "viewer"
    };
    let (csrf_token, expires_at) = match &actor {
        Actor::Token => (None, None),
        Actor::Console(session) => (Some(session.csrf_token.clone()), Some(session.expires_at)),
    };
    Json(SessionInfo {
        actor: actor.label(),
        role: role.to_owned(),
        csrf_token,
        expires_at,
    })
}
