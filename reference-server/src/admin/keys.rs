//! Access keys: issue and rotate (the only times a key is shown), list, revoke, and
//! their own Bedrock: a region (endpoint and prices) and a Bedrock API key, sealed at
//! rest (see [`crate::crypto`]), never shown again, never logged; lists show its
//! fingerprint (the first 16 hex digits of its SHA-256) to say that one is linked.
//!
//! A rotation issues a new key with the old one's owner, name, Bedrock region and
//! Bedrock credential, and keeps the old key accepted for a grace period (the server's
//! `--key-rotation-grace`, 300 s by default, or the request's), so that clients can
//! move over without a failed request.

use std::collections::HashMap;
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

use super::input::{parse_id, parse_name, present};
use super::users::find_user;
use super::{AdminError, ErrorBody, JsonBody, parse_json};
use crate::app::AppState;
use crate::entity::{access_keys, bedrock_credentials};
use crate::keys::RotateError;

/// The routes of this module.
pub(super) fn routes() -> OpenApiRouter<Arc<AppState>> {
    OpenApiRouter::new()
        .routes(routes!(issue_key, list_keys))
        .routes(routes!(get_key, update_key))
        .routes(routes!(revoke_key))
        .routes(routes!(rotate_key))
        .routes(routes!(set_bedrock_credential, remove_bedrock_credential))
}

/// The longest Bedrock API key accepted, in bytes.
const MAX_API_KEY_BYTES: usize = 4096;

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
    /// The key's own Bedrock API key, if one is linked (never the key itself); `null`:
    /// the server's credential.
    bedrock_credential: Option<LinkedCredential>,
}

/// A linked Bedrock API key, as far as it is shown.
#[derive(Debug, Serialize, ToSchema)]
struct LinkedCredential {
    /// The first 16 hex digits of the key's SHA-256: tells two keys apart.
    #[schema(example = "9f86d081884c7d65")]
    fingerprint: String,
    /// How it is sealed: `local` or `kms`.
    #[schema(example = "kms")]
    encryption: String,
    /// Linked.
    created_at: DateTime<Utc>,
    /// Last replaced.
    updated_at: DateTime<Utc>,
}

impl From<&bedrock_credentials::Model> for LinkedCredential {
    fn from(credential: &bedrock_credentials::Model) -> Self {
        Self {
            fingerprint: credential.key_hash.chars().take(16).collect(),
            encryption: credential.encryption.clone(),
            created_at: credential.created_at,
            updated_at: credential.updated_at,
        }
    }
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

impl AccessKey {
    fn new(key: access_keys::Model, credential: Option<&bedrock_credentials::Model>) -> Self {
        Self {
            bedrock_credential: credential.map(LinkedCredential::from),
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

/// `keys` as lists show them, with their credentials.
async fn described(
    state: &AppState,
    keys: Vec<access_keys::Model>,
) -> Result<Vec<AccessKey>, AdminError> {
    let ids: Vec<Uuid> = keys.iter().map(|key| key.id).collect();
    let credentials: HashMap<Uuid, bedrock_credentials::Model> =
        bedrock_credentials::Entity::find()
            .filter(bedrock_credentials::Column::AccessKeyId.is_in(ids))
            .all(&state.db)
            .await?
            .into_iter()
            .map(|credential| (credential.access_key_id, credential))
            .collect();
    Ok(keys
        .into_iter()
        .map(|key| {
            let credential = credentials.get(&key.id);
            AccessKey::new(key, credential)
        })
        .collect())
}

/// One key as lists show it.
async fn describe(state: &AppState, id: Uuid) -> Result<AccessKey, AdminError> {
    let key = access_keys::Entity::find_by_id(id)
        .one(&state.db)
        .await?
        .ok_or_else(|| AdminError::NotFound(format!("no access key {id}")))?;
    Ok(described(state, vec![key]).await?.remove(0))
}

/// Changes to a key: a field that is absent stays as it is.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct KeyChanges {
    /// A label: 1 to 200 characters, or `null` for none.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>, required = false, example = "laptop", max_length = 200)]
    name: Option<Option<String>>,
    /// The key's Bedrock region (`eu-central-1`), used for the Bedrock endpoint and for
    /// prices; `null`: the server's.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>, required = false, example = "eu-central-1", pattern = r"^[a-z]{2}(-[a-z]+)+-[0-9]+$")]
    bedrock_region: Option<Option<String>>,
}

/// A Bedrock API key to link.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct NewCredential {
    /// The Bedrock API key (a bearer token): 1 to 4,096 visible ASCII characters. Sealed
    /// at once; never shown again.
    #[schema(
        example = "ABSKQmVkcm9ja0FQSUtleS1...",
        min_length = 1,
        max_length = 4096,
        pattern = r"^[!-~]+$"
    )]
    api_key: String,
}

/// An AWS region name: `us-east-1`, `ap-northeast-2`, `us-gov-west-1`.
fn parse_region(text: &str) -> Result<String, AdminError> {
    let region = text.trim();
    let mut parts = region.split('-');
    let well_formed = region.len() <= 32
        && parts
            .next()
            .is_some_and(|first| first.len() == 2 && first.bytes().all(|b| b.is_ascii_lowercase()))
        && {
            let rest: Vec<&str> = parts.collect();
            rest.len() >= 2
                && rest[..rest.len() - 1]
                    .iter()
                    .all(|part| !part.is_empty() && part.bytes().all(|b| b.is_ascii_lowercase()))
                && rest[rest.len() - 1].parse::<u8>().is_ok()
        };
    if well_formed {
        Ok(region.to_owned())
    } else {
        Err(AdminError::bad(
            "bedrock_region",
            "must be an AWS region name like eu-central-1",
        ))
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
        (status = 404, description = "no such user, or it was deleted", body = ErrorBody),
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
        (status = 404, description = "no such user, or it was deleted", body = ErrorBody),
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
        keys: described(&state, keys).await?,
    }))
}

/// One access key.
#[utoipa::path(
    get,
    path = "/admin/keys/{key_id}",
    tag = "keys",
    params(("key_id" = Uuid, Path, description = "the key's id")),
    responses(
        (status = 200, description = "the key", body = AccessKey),
        (status = 400, description = "`key_id` is not a UUID", body = ErrorBody),
        (status = 401, description = "no or wrong admin token", body = ErrorBody),
        (status = 404, description = "no such key", body = ErrorBody),
    )
)]
async fn get_key(
    State(state): State<Arc<AppState>>,
    Path(key_id): Path<String>,
) -> Result<Json<AccessKey>, AdminError> {
    Ok(Json(describe(&state, parse_id("key_id", &key_id)?).await?))
}

/// Changes a key's name or Bedrock region; absent fields stay as they are. Seen by the
/// key's next request.
#[utoipa::path(
    patch,
    path = "/admin/keys/{key_id}",
    tag = "keys",
    params(("key_id" = Uuid, Path, description = "the key's id")),
    request_body(content = KeyChanges, description = "the fields to change"),
    responses(
        (status = 200, description = "the changed key", body = AccessKey),
        (status = 400, description = "a bad field, malformed JSON or a malformed `key_id`", body = ErrorBody),
        (status = 401, description = "no or wrong admin token", body = ErrorBody),
        (status = 404, description = "no such key", body = ErrorBody),
    )
)]
async fn update_key(
    State(state): State<Arc<AppState>>,
    Path(key_id): Path<String>,
    JsonBody(changes): JsonBody<KeyChanges>,
) -> Result<Json<AccessKey>, AdminError> {
    let id = parse_id("key_id", &key_id)?;
    let name = changes
        .name
        .map(|name| name.as_deref().map(parse_name).transpose())
        .transpose()?;
    let region = changes
        .bedrock_region
        .map(|region| region.as_deref().map(parse_region).transpose())
        .transpose()?;
    let changes_something = name.is_some() || region.is_some();
    let mut update = access_keys::Entity::update_many().filter(access_keys::Column::Id.eq(id));
    if let Some(name) = name {
        update = update.col_expr(access_keys::Column::Name, Expr::value(name));
    }
    if let Some(region) = region {
        update = update.col_expr(access_keys::Column::BedrockRegion, Expr::value(region));
    }
    if changes_something {
        update.exec(&state.db).await?;
    }
    Ok(Json(describe(&state, id).await?))
}

/// Links a Bedrock API key to the access key, replacing any: its requests to Bedrock are
/// signed with it (billed to its AWS account) from its next request on.
#[utoipa::path(
    put,
    path = "/admin/keys/{key_id}/bedrock-credential",
    tag = "keys",
    params(("key_id" = Uuid, Path, description = "the key's id")),
    request_body(content = NewCredential, description = "the Bedrock API key"),
    responses(
        (status = 200, description = "the key, the credential linked", body = AccessKey),
        (status = 400, description = "a bad API key, malformed JSON or a malformed `key_id`", body = ErrorBody),
        (status = 401, description = "no or wrong admin token", body = ErrorBody),
        (status = 404, description = "no such key", body = ErrorBody),
    )
)]
async fn set_bedrock_credential(
    State(state): State<Arc<AppState>>,
    Path(key_id): Path<String>,
    JsonBody(credential): JsonBody<NewCredential>,
) -> Result<Json<AccessKey>, AdminError> {
    let id = parse_id("key_id", &key_id)?;
    let api_key = credential.api_key.trim();
    if api_key.is_empty()
        || api_key.len() > MAX_API_KEY_BYTES
        || !api_key.bytes().all(|byte| byte.is_ascii_graphic())
    {
        return Err(AdminError::bad(
            "api_key",
            format!("must be 1 to {MAX_API_KEY_BYTES} visible ASCII characters"),
        ));
    }
    describe(&state, id).await?;
    state.credentials.set(id, api_key).await.map_err(|error| {
        AdminError::Internal(format!("sealing the Bedrock credential of {id}: {error}"))
    })?;
    tracing::info!(key = %id, "Bedrock credential linked");
    Ok(Json(describe(&state, id).await?))
}

/// Unlinks the access key's Bedrock API key: the server's credential signs its requests
/// again. Unlinking twice changes nothing.
#[utoipa::path(
    delete,
    path = "/admin/keys/{key_id}/bedrock-credential",
    tag = "keys",
    params(("key_id" = Uuid, Path, description = "the key's id")),
    responses(
        (status = 200, description = "the key, without a credential", body = AccessKey),
        (status = 400, description = "`key_id` is not a UUID", body = ErrorBody),
        (status = 401, description = "no or wrong admin token", body = ErrorBody),
        (status = 404, description = "no such key", body = ErrorBody),
    )
)]
async fn remove_bedrock_credential(
    State(state): State<Arc<AppState>>,
    Path(key_id): Path<String>,
) -> Result<Json<AccessKey>, AdminError> {
    let id = parse_id("key_id", &key_id)?;
    describe(&state, id).await?;
    if state
        .credentials
        .remove(id)
        .await
        .map_err(|error| AdminError::Internal(error.to_string()))?
    {
        tracing::info!(key = %id, "Bedrock credential unlinked");
    }
    Ok(Json(describe(&state, id).await?))
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
    if let Some(fleet) = &state.fleet {
        fleet.key_revoked(id);
    }
    Ok(Json(describe(&state, id).await?))
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
