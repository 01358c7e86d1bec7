//! Model mappings: which Bedrock model serves a requested model, kept in the database and
//! applied without a restart (on this instance at once, on the others within
//! `PROXY_CONFIG_RELOAD_INTERVAL`; see [`crate::live`]).
//!
//! Models are matched normalised (`claude-sonnet-4-5-20250929`, `claude-sonnet-4.5` and
//! `claude-sonnet-4-5` are one model), so two mappings for one model are refused (409).

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, State};
use chrono::{DateTime, Utc};
use http::StatusCode;
use sea_orm::ActiveValue::Set;
use sea_orm::{ActiveModelTrait, EntityTrait, IntoActiveModel, QueryOrder};
use serde::{Deserialize, Serialize};
use usage_layer::pricing::normalize_model_id;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use super::input::{parse_description, parse_id, present};
use super::{AdminError, ErrorBody, JsonBody};
use crate::app::AppState;
use crate::entity::model_mappings;

/// The routes of this module.
pub(super) fn routes() -> OpenApiRouter<Arc<AppState>> {
    OpenApiRouter::new()
        .routes(routes!(list_mappings, create_mapping))
        .routes(routes!(get_mapping, update_mapping, delete_mapping))
}

/// A mapping.
#[derive(Debug, Serialize, ToSchema)]
struct Mapping {
    /// Id.
    id: Uuid,
    /// The model a client asks for.
    #[schema(example = "claude-sonnet-4-5-20250929")]
    claude_model: String,
    /// The Bedrock model or inference profile id serving it.
    #[schema(example = "global.anthropic.claude-sonnet-4-5-20250929-v1:0")]
    bedrock_model: String,
    /// Free text.
    description: Option<String>,
    /// An inactive mapping is kept but not used.
    is_active: bool,
    /// Created.
    created_at: DateTime<Utc>,
    /// Last changed.
    updated_at: DateTime<Utc>,
}

impl From<model_mappings::Model> for Mapping {
    fn from(row: model_mappings::Model) -> Self {
        Self {
            id: row.id,
            claude_model: row.claude_model,
            bedrock_model: row.bedrock_model,
            description: row.description,
            is_active: row.is_active,
            created_at: row.created_at,
            updated_at: row.updated_at,
        }
    }
}

/// Every mapping, by requested model.
#[derive(Debug, Serialize, ToSchema)]
struct MappingList {
    /// The mappings.
    mappings: Vec<Mapping>,
}

/// A new mapping.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct NewMapping {
    /// The model a client asks for: 1 to 128 of `A-Z a-z 0-9 . _ : -`.
    #[schema(
        example = "claude-sonnet-4-5-20250929",
        pattern = r"^[A-Za-z0-9._:-]{1,128}$"
    )]
    claude_model: String,
    /// The Bedrock model or inference profile id: 1 to 256 visible characters.
    #[schema(
        example = "global.anthropic.claude-sonnet-4-5-20250929-v1:0",
        min_length = 1,
        max_length = 256
    )]
    bedrock_model: String,
    /// Free text, at most 2,000 characters.
    #[schema(max_length = 2000)]
    description: Option<String>,
    /// Default `true`.
    is_active: Option<bool>,
}

/// Changes to a mapping: a field that is absent stays as it is.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct MappingChanges {
    /// The model a client asks for.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = String, required = false, min_length = 1, max_length = 128)]
    claude_model: Option<String>,
    /// The Bedrock model or inference profile id.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = String, required = false, min_length = 1, max_length = 256)]
    bedrock_model: Option<String>,
    /// Free text; `null` removes it.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>, required = false, max_length = 2000)]
    description: Option<Option<String>>,
    /// Whether it is used.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = bool, required = false)]
    is_active: Option<bool>,
}

/// A requested model's name as given (trimmed), if it can be one.
pub(super) fn parse_model(parameter: &'static str, text: &str) -> Result<String, AdminError> {
    let model = text.trim();
    let well_formed = (1..=128).contains(&model.len())
        && model
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b':' | b'-'))
        && !normalize_model_id(model).is_empty();
    if well_formed {
        Ok(model.to_owned())
    } else {
        Err(AdminError::bad(
            parameter,
            "must be 1 to 128 of A-Z a-z 0-9 . _ : -",
        ))
    }
}

fn parse_bedrock_model(text: &str) -> Result<String, AdminError> {
    let model = text.trim();
    if (1..=256).contains(&model.len()) && model.bytes().all(|b| b.is_ascii_graphic()) {
        Ok(model.to_owned())
    } else {
        Err(AdminError::bad(
            "bedrock_model",
            "must be 1 to 256 visible ASCII characters",
        ))
    }
}

/// Refuses `claude_model` when another mapping (not `except`) is for the same model.
async fn ensure_unmapped(
    state: &AppState,
    claude_model: &str,
    except: Option<Uuid>,
) -> Result<(), AdminError> {
    let key = normalize_model_id(claude_model);
    let rows = model_mappings::Entity::find().all(&state.db).await?;
    match rows
        .iter()
        .find(|row| Some(row.id) != except && normalize_model_id(&row.claude_model) == key)
    {
        Some(existing) => Err(AdminError::Conflict(format!(
            "{claude_model} is mapped already, as {} (mapping {})",
            existing.claude_model, existing.id
        ))),
        None => Ok(()),
    }
}

async fn find_mapping(state: &AppState, id: Uuid) -> Result<model_mappings::Model, AdminError> {
    model_mappings::Entity::find_by_id(id)
        .one(&state.db)
        .await?
        .ok_or_else(|| AdminError::NotFound(format!("no model mapping {id}")))
}

/// Applies the tables here at once (the other instances poll).
pub(super) async fn apply(state: &AppState) {
    if let Err(error) = state.live.reload().await {
        tracing::warn!(%error, "the change is stored; it applies at the next reload");
    }
}

/// Every model mapping.
#[utoipa::path(
    get,
    path = "/admin/model-mappings",
    tag = "model mappings",
    responses(
        (status = 200, description = "the mappings", body = MappingList),
        (status = 401, description = "no or wrong admin token", body = ErrorBody),
    )
)]
async fn list_mappings(
    State(state): State<Arc<AppState>>,
) -> Result<Json<MappingList>, AdminError> {
    let rows = model_mappings::Entity::find()
        .order_by_asc(model_mappings::Column::ClaudeModel)
        .all(&state.db)
        .await?;
    Ok(Json(MappingList {
        mappings: rows.into_iter().map(Mapping::from).collect(),
    }))
}

/// Maps a model to Bedrock.
#[utoipa::path(
    post,
    path = "/admin/model-mappings",
    tag = "model mappings",
    request_body(content = NewMapping, description = "the mapping"),
    responses(
        (status = 201, description = "the mapping, in force", body = Mapping),
        (status = 400, description = "a bad field or malformed JSON", body = ErrorBody),
        (status = 401, description = "no or wrong admin token", body = ErrorBody),
        (status = 409, description = "the model is mapped already", body = ErrorBody),
    )
)]
async fn create_mapping(
    State(state): State<Arc<AppState>>,
    JsonBody(new): JsonBody<NewMapping>,
) -> Result<(StatusCode, Json<Mapping>), AdminError> {
    let claude_model = parse_model("claude_model", &new.claude_model)?;
    let bedrock_model = parse_bedrock_model(&new.bedrock_model)?;
    let description = parse_description(new.description.as_deref())?;
    ensure_unmapped(&state, &claude_model, None).await?;
    let now = Utc::now();
    let row = model_mappings::Entity::insert(model_mappings::ActiveModel {
        id: Set(Uuid::now_v7()),
        claude_model: Set(claude_model),
        bedrock_model: Set(bedrock_model),
        description: Set(description),
        is_active: Set(new.is_active.unwrap_or(true)),
        created_at: Set(now),
        updated_at: Set(now),
    })
    .exec_with_returning(&state.db)
    .await?;
    apply(&state).await;
    Ok((StatusCode::CREATED, Json(row.into())))
}

/// One model mapping.
#[utoipa::path(
    get,
    path = "/admin/model-mappings/{mapping_id}",
    tag = "model mappings",
    params(("mapping_id" = Uuid, Path, description = "the mapping's id")),
    responses(
        (status = 200, description = "the mapping", body = Mapping),
        (status = 400, description = "`mapping_id` is not a UUID", body = ErrorBody),
        (status = 401, description = "no or wrong admin token", body = ErrorBody),
        (status = 404, description = "no such mapping", body = ErrorBody),
    )
)]
async fn get_mapping(
    State(state): State<Arc<AppState>>,
    Path(mapping_id): Path<String>,
) -> Result<Json<Mapping>, AdminError> {
    let row = find_mapping(&state, parse_id("mapping_id", &mapping_id)?).await?;
    Ok(Json(row.into()))
}

/// Changes a model mapping; absent fields stay as they are.
#[utoipa::path(
    patch,
    path = "/admin/model-mappings/{mapping_id}",
    tag = "model mappings",
    params(("mapping_id" = Uuid, Path, description = "the mapping's id")),
    request_body(content = MappingChanges, description = "the fields to change"),
    responses(
        (status = 200, description = "the changed mapping, in force", body = Mapping),
        (status = 400, description = "a bad field, malformed JSON or a malformed `mapping_id`", body = ErrorBody),
        (status = 401, description = "no or wrong admin token", body = ErrorBody),
        (status = 404, description = "no such mapping", body = ErrorBody),
        (status = 409, description = "another mapping is for that model", body = ErrorBody),
    )
)]
async fn update_mapping(
    State(state): State<Arc<AppState>>,
    Path(mapping_id): Path<String>,
    JsonBody(changes): JsonBody<MappingChanges>,
) -> Result<Json<Mapping>, AdminError> {
    let id = parse_id("mapping_id", &mapping_id)?;
    let claude_model = changes
        .claude_model
        .as_deref()
        .map(|model| parse_model("claude_model", model))
        .transpose()?;
    let bedrock_model = changes
        .bedrock_model
        .as_deref()
        .map(parse_bedrock_model)
        .transpose()?;
    let description = changes
        .description
        .map(|text| parse_description(text.as_deref()))
        .transpose()?;
    let row = find_mapping(&state, id).await?;
    if let Some(model) = &claude_model {
        ensure_unmapped(&state, model, Some(id)).await?;
    }
    let mut active = row.into_active_model();
    if let Some(model) = claude_model {
        active.claude_model = Set(model);
    }
    if let Some(model) = bedrock_model {
        active.bedrock_model = Set(model);
    }
    if let Some(description) = description {
        active.description = Set(description);
    }
    if let Some(is_active) = changes.is_active {
        active.is_active = Set(is_active);
    }
    active.updated_at = Set(Utc::now());
    let row = active.update(&state.db).await?;
    apply(&state).await;
    Ok(Json(row.into()))
}

/// Deletes a model mapping: the model is no longer served by Bedrock. (A built-in
/// default comes back only into an empty table; deactivate to keep it off for good.)
#[utoipa::path(
    delete,
    path = "/admin/model-mappings/{mapping_id}",
    tag = "model mappings",
    params(("mapping_id" = Uuid, Path, description = "the mapping's id")),
    responses(
        (status = 200, description = "the deleted mapping", body = Mapping),
        (status = 400, description = "`mapping_id` is not a UUID", body = ErrorBody),
        (status = 401, description = "no or wrong admin token", body = ErrorBody),
        (status = 404, description = "no such mapping", body = ErrorBody),
    )
)]
async fn delete_mapping(
    State(state): State<Arc<AppState>>,
    Path(mapping_id): Path<String>,
) -> Result<Json<Mapping>, AdminError> {
    let id = parse_id("mapping_id", &mapping_id)?;
    let row = find_mapping(&state, id).await?;
    model_mappings::Entity::delete_by_id(id)
        .exec(&state.db)
        .await?;
    apply(&state).await;
    Ok(Json(row.into()))
}
