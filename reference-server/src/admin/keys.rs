//! Access keys: issue and rotate (the only times a key is shown), list, revoke.
//!
//! A rotation issues a new key with the old one's owner, name, Bedrock region and
//! Bedrock credential, and keeps the old key accepted for a grace period (the server's
//! `--key-rotation-grace`, 300 s by default, or the request's), so that clients can
//! move over without a failed request.

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
use crate::keys::RotateError;

/// The routes of this module.
pub(super) fn routes() -> OpenApiRouter<Arc<AppState>> {
    OpenApiRouter::new()
        .routes(routes!(issue_key, list_keys))
        .routes(routes!(revoke_key))
        .routes(routes!(rotate_key))
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
    /// `active`; `rotating` (replaced, accepted until `expires_at`); `expired` (replaced,
    /// past it); `revoked`.
    #[schema(example = "active")]
    status: &'static str,
    /// Revoked keys are inactive.
    is_active: bool,
    /// Created.
    created_at: DateTime<Utc>,
    /// When it was revoked.
    revoked_at: Option<DateTime<Utc>>,
    /// Last use: not recorded yet (always null for now).
    last_used_at: Option<DateTime<Utc>>,
    /// A replaced key is accepted until then.
    expires_at: Option<DateTime<Utc>>,
    /// The key that replaced this one.
    replaced_by: Option<Uuid>,
    /// The key's Bedrock region (endpoint and prices); `null`: the server's.
    #[schema(example = "eu-central-1")]
    bedrock_region: Option<String>,
}

/// A key's state as lists show it.
fn status(key: &access_keys::Model, now: DateTime<Utc>) -> &'static str {
    match key.expires_at {
        _ if !key.is_active => "revoked",
        Some(end) if end <= now => "expired",
        Some(_) => "rotating",
        None => "active",
    }
}

impl From<access_keys::Model> for AccessKey {
    fn from(key: access_keys::Model) -> Self {
        Self {
            status: status(&key, Utc::now()),
            id: key.id,
            user_id: key.user_id,
            key_prefix: key.key_prefix,
            name: key.name,
            is_active: key.is_active,
            created_at: key.created_at,
            revoked_at: key.revoked_at,
            last_used_at: key.last_used_at,
            expires_at: key.expires_at,
            replaced_by: key.replaced_by,
            bedrock_region: key.bedrock_region,
        }
    }
}

/// A rotation's options (the body may be empty).
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct Rotation {
    /// How long the old key stays accepted, in seconds: 0 (refused at once) to 2,592,000
    /// (30 days). Default: the server's `--key-rotation-grace` (300).
    #[schema(example = 300, minimum = 0, maximum = 2592000)]
    grace_period_seconds: Option<u64>,
}

/// The longest grace period a rotation may ask for.
const MAX_GRACE_SECS: u64 = 30 * 24 * 3600;

/// A rotation's result: the new key (shown only this once) and the old one's end.
#[derive(Debug, Serialize, ToSchema)]
struct RotatedKey {
    /// The new key.
    #[serde(flatten)]
    new_key: IssuedKey,
    /// The key it replaces.
    replaces: Uuid,
    /// When the old key stops being accepted.
    old_key_expires_at: DateTime<Utc>,
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

/// Rotates an access key: a new key, shown only this once, with the old one's settings;
/// the old key stays accepted for the grace period, then is refused.
#[utoipa::path(
    post,
    path = "/admin/keys/{key_id}/rotate",
    tag = "keys",
    params(("key_id" = Uuid, Path, description = "the key's id")),
    request_body(content = Option<Rotation>, description = "the grace period (optional)"),
    responses(
        (status = 201, description = "the new key, shown only this once", body = RotatedKey),
        (status = 400, description = "a malformed `key_id` or body, or a grace period out of range", body = ErrorBody),
        (status = 401, description = "no or wrong admin token", body = ErrorBody),
        (status = 404, description = "no such key", body = ErrorBody),
        (status = 409, description = "the key is revoked or was rotated already", body = ErrorBody),
    )
)]
async fn rotate_key(
    State(state): State<Arc<AppState>>,
    Path(key_id): Path<String>,
    body: Bytes,
) -> Result<(StatusCode, Json<RotatedKey>), AdminError> {
    let id = parse_id("key_id", &key_id)?;
    let Rotation {
        grace_period_seconds,
    } = if body.trim_ascii().is_empty() {
        Rotation::default()
    } else {
        parse_json(&body)?
    };
    let grace = match grace_period_seconds {
        Some(seconds) if seconds > MAX_GRACE_SECS => {
            return Err(AdminError::bad(
                "grace_period_seconds",
                format!("must be at most {MAX_GRACE_SECS} (30 days)"),
            ));
        }
        Some(seconds) => std::time::Duration::from_secs(seconds),
        None => state.key_rotation_grace,
    };
    let rotated = state
        .keys
        .rotate(id, grace)
        .await
        .map_err(|error| match error {
            RotateError::NotFound => AdminError::NotFound(format!("no access key {id}")),
            RotateError::Database(error) => AdminError::from(error),
            conflict @ (RotateError::Revoked | RotateError::AlreadyRotated(_)) => {
                AdminError::Conflict(conflict.to_string())
            }
        })?;
    let key = access_keys::Entity::find_by_id(rotated.id)
        .one(&state.db)
        .await?
        .ok_or_else(|| AdminError::Internal(format!("rotated key {} is not stored", rotated.id)))?;
    tracing::info!(old = %id, new = %key.id, expires_at = %rotated.old_expires_at, "access key rotated");
    Ok((
        StatusCode::CREATED,
        Json(RotatedKey {
            new_key: IssuedKey {
                id: key.id,
                user_id: key.user_id,
                key: rotated.key.expose().to_owned(),
                key_prefix: key.key_prefix,
                name: key.name,
                created_at: key.created_at,
            },
            replaces: id,
            old_key_expires_at: rotated.old_expires_at,
        }),
    ))
}
