//! Access keys: issue (the only time a key is shown), list, revoke.

use std::sync::Arc;

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, State};
use chrono::{DateTime, Utc};
use http::StatusCode;
use sea_orm::sea_query::Expr;
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter, QueryOrder};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use super::input::{parse_id, parse_name};
use super::users::find_user;
use super::{AdminError, ErrorBody, parse_json};
use crate::app::AppState;
use crate::entity::access_keys;

/// The routes of this module.
pub(super) fn routes() -> OpenApiRouter<Arc<AppState>> {
    OpenApiRouter::new()
        .routes(routes!(issue_key, list_keys))
        .routes(routes!(revoke_key))
}

/// A new access key.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct NewKey {
    /// A label: 1 to 200 characters, or `null`.
    #[schema(example = "laptop", min_length = 1, max_length = 200)]
    name: Option<String>,
}

/// A key just issued: the only time the key itself is shown.
#[derive(Debug, Serialize, ToSchema)]
struct IssuedKey {
    /// The key's id.
    id: Uuid,
    /// The owner.
    user_id: Uuid,
    /// The key: give it to its owner now, it cannot be shown again.
    #[schema(example = "ak_4mQx…")]
    key: String,
    /// The key's first characters, as lists show them.
    #[schema(example = "ak_4mQx9bZ1")]
    key_prefix: String,
    /// The label.
    name: Option<String>,
    /// Created.
    created_at: DateTime<Utc>,
}

/// An access key, as lists show it: never the key or its hash.
#[derive(Debug, Serialize, ToSchema)]
struct AccessKey {
    /// The key's id.
    id: Uuid,
    /// The owner.
    user_id: Uuid,
    /// The key's first characters.
    #[schema(example = "ak_4mQx9bZ1")]
    key_prefix: String,
    /// The label.
    name: Option<String>,
    /// Revoked keys are inactive.
    is_active: bool,
    /// Created.
    created_at: DateTime<Utc>,
    /// When it was revoked.
    revoked_at: Option<DateTime<Utc>>,
    /// Last use: not recorded yet (always null for now).
    last_used_at: Option<DateTime<Utc>>,
}

impl From<access_keys::Model> for AccessKey {
    fn from(key: access_keys::Model) -> Self {
        Self {
            id: key.id,
            user_id: key.user_id,
            key_prefix: key.key_prefix,
            name: key.name,
            is_active: key.is_active,
            created_at: key.created_at,
            revoked_at: key.revoked_at,
            last_used_at: key.last_used_at,
        }
    }
}

/// A user's access keys, oldest first.
#[derive(Debug, Serialize, ToSchema)]
struct AccessKeyList {
    /// The keys.
    keys: Vec<AccessKey>,
}

/// Issues an access key for an active user; the response is the only place the key is shown.
#[utoipa::path(
    post,
    path = "/admin/users/{user_id}/keys",
    tag = "keys",
    params(("user_id" = Uuid, Path, description = "the owner's id")),
    request_body(content = Option<NewKey>, description = "a label (optional)"),
    responses(
        (status = 201, description = "the key, shown only this once", body = IssuedKey),
        (status = 400, description = "a bad name, malformed JSON, a malformed `user_id` or an inactive user", body = ErrorBody),
        (status = 401, description = "no or wrong admin token", body = ErrorBody),
        (status = 404, description = "no such user", body = ErrorBody),
    )
)]
async fn issue_key(
    State(state): State<Arc<AppState>>,
    Path(user_id): Path<String>,
    body: Bytes,
) -> Result<(StatusCode, Json<IssuedKey>), AdminError> {
    let id = parse_id("user_id", &user_id)?;
    let NewKey { name } = if body.trim_ascii().is_empty() {
        NewKey::default()
    } else {
        parse_json(&body)?
    };
    let name = name.as_deref().map(parse_name).transpose()?;
    let user = find_user(&state, id).await?;
    if !user.is_active {
        return Err(AdminError::bad("user_id", "the user is inactive"));
    }
    let (key_id, raw) = state.keys.issue(user.id, name).await?;
    let key = access_keys::Entity::find_by_id(key_id)
        .one(&state.db)
        .await?
        .ok_or_else(|| AdminError::Internal(format!("issued key {key_id} is not stored")))?;
    Ok((
        StatusCode::CREATED,
        Json(IssuedKey {
            id: key.id,
            user_id: key.user_id,
            key: raw.expose().to_owned(),
            key_prefix: key.key_prefix,
            name: key.name,
            created_at: key.created_at,
        }),
    ))
}

/// A user's access keys, oldest first (prefixes only).
#[utoipa::path(
    get,
    path = "/admin/users/{user_id}/keys",
    tag = "keys",
    params(("user_id" = Uuid, Path, description = "the owner's id")),
    responses(
        (status = 200, description = "the keys", body = AccessKeyList),
        (status = 400, description = "`user_id` is not a UUID", body = ErrorBody),
        (status = 401, description = "no or wrong admin token", body = ErrorBody),
        (status = 404, description = "no such user", body = ErrorBody),
    )
)]
async fn list_keys(
    State(state): State<Arc<AppState>>,
    Path(user_id): Path<String>,
) -> Result<Json<AccessKeyList>, AdminError> {
    let user = find_user(&state, parse_id("user_id", &user_id)?).await?;
    let keys = access_keys::Entity::find()
        .filter(access_keys::Column::UserId.eq(user.id))
        .order_by_asc(access_keys::Column::CreatedAt)
        .order_by_asc(access_keys::Column::Id)
        .all(&state.db)
        .await?;
    Ok(Json(AccessKeyList {
        keys: keys.into_iter().map(AccessKey::from).collect(),
    }))
}

/// Revokes an access key; revoking it again changes nothing.
#[utoipa::path(
    post,
    path = "/admin/keys/{key_id}/revoke",
    tag = "keys",
    params(("key_id" = Uuid, Path, description = "the key's id")),
    responses(
        (status = 200, description = "the revoked key", body = AccessKey),
        (status = 400, description = "`key_id` is not a UUID", body = ErrorBody),
        (status = 401, description = "no or wrong admin token", body = ErrorBody),
        (status = 404, description = "no such key", body = ErrorBody),
    )
)]
async fn revoke_key(
    State(state): State<Arc<AppState>>,
    Path(key_id): Path<String>,
) -> Result<Json<AccessKey>, AdminError> {
    let id = parse_id("key_id", &key_id)?;
    // Only an active key changes, so the first revocation's time is kept, even under races.
    access_keys::Entity::update_many()
        .col_expr(access_keys::Column::IsActive, Expr::value(false))
        .col_expr(access_keys::Column::RevokedAt, Expr::value(Utc::now()))
        .filter(access_keys::Column::Id.eq(id))
        .filter(access_keys::Column::IsActive.eq(true))
        .exec(&state.db)
        .await?;
    let key = access_keys::Entity::find_by_id(id)
        .one(&state.db)
        .await?
        .ok_or_else(|| AdminError::NotFound(format!("no access key {id}")))?;
    Ok(Json(key.into()))
}
