//! The price list in force, and price overrides: prices kept in the database over the
//! built-in (and `PROXY_MODEL_PRICING`) ones, each from an effective date, applied without
//! a restart (see [`crate::live`]). A usage row keeps the price snapshot it was priced
//! with: a change applies to the requests recorded after it.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, State};
use chrono::{DateTime, NaiveDate, Utc};
use http::StatusCode;
use rust_decimal::Decimal;
use sea_orm::ActiveValue::Set;
use sea_orm::{
    ActiveModelTrait, ColumnTrait, EntityTrait, IntoActiveModel, QueryFilter, QueryOrder,
};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use usage_layer::Provider;
use usage_layer::pricing::{PLAN_REGION, Prices, normalize_model_id};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use super::input::{UsdInput, parse_id, parse_usd, present};
use super::mappings::{apply, parse_model};
use super::{AdminError, ErrorBody, JsonBody, usd};
use crate::app::AppState;
use crate::entity::price_overrides;

/// The routes of this module.
pub(super) fn routes() -> OpenApiRouter<Arc<AppState>> {
    OpenApiRouter::new()
        .routes(routes!(list_prices))
        .routes(routes!(list_overrides, create_override))
        .routes(routes!(get_override, update_override, delete_override))
}

/// One model's prices for one provider in one region, in USD per million tokens.
#[derive(Debug, Serialize, ToSchema)]
struct Price {
    /// `plan`, `bedrock`, …
    #[schema(example = "bedrock")]
    provider: String,
    /// The region the prices are listed in (`global` for Plan).
    #[schema(example = "us-east-1")]
    region: String,
    /// The normalised model id.
    #[schema(example = "claude-sonnet-4-5")]
    model: String,
    /// Uncached input tokens.
    #[schema(example = "3.00")]
    input_price_per_million: String,
    /// Output tokens.
    #[schema(example = "15.00")]
    output_price_per_million: String,
    /// Prompt-cache writes with a 5-minute TTL.
    #[schema(example = "3.75")]
    cache_write_price_per_million: String,
    /// Prompt-cache writes with a 1-hour TTL.
    #[schema(example = "6.00")]
    cache_write_1h_price_per_million: String,
    /// Prompt-cache reads.
    #[schema(example = "0.30")]
    cache_read_price_per_million: String,
    /// The first day these prices applied.
    effective_date: NaiveDate,
}

/// The effective prices.
#[derive(Debug, Serialize, ToSchema)]
struct PriceList {
    /// Every price, by provider, region and model.
    prices: Vec<Price>,
    /// Each provider's default region: where a model is priced when the region asked for
    /// has no price for it.
    #[schema(example = json!({"plan": "global", "bedrock": "us-east-1"}))]
    default_regions: BTreeMap<String, String>,
}

/// The effective prices and each provider's default region.
#[utoipa::path(
    get,
    path = "/admin/pricing",
    tag = "pricing",
    responses(
        (status = 200, description = "the prices", body = PriceList),
        (status = 401, description = "no or wrong admin token", body = ErrorBody),
    )
)]
async fn list_prices(State(state): State<Arc<AppState>>) -> Json<PriceList> {
    let catalog = state.pricing.current();
    let prices = catalog
        .entries()
        .map(|(provider, region, model, entry)| Price {
            provider: provider.to_owned(),
            region: region.to_owned(),
            model: model.to_owned(),
            input_price_per_million: entry.prices.input.to_string(),
            output_price_per_million: entry.prices.output.to_string(),
            cache_write_price_per_million: entry.prices.cache_write_5m.to_string(),
            cache_write_1h_price_per_million: entry.prices.cache_write_1h.to_string(),
            cache_read_price_per_million: entry.prices.cache_read.to_string(),
            effective_date: entry.effective_date,
        })
        .collect();
    let providers: BTreeSet<&str> = catalog.entries().map(|(provider, ..)| provider).collect();
    let default_regions = providers
        .into_iter()
        .filter_map(|provider| {
            let region = catalog.default_region(&Provider::new(provider.to_owned()))?;
            Some((provider.to_owned(), region.to_owned()))
        })
        .collect();
    Json(PriceList {
        prices,
        default_regions,
    })
}

/// A price override, in USD per million tokens (decimal strings, 6 places).
#[derive(Debug, Serialize, ToSchema)]
struct PriceOverride {
    /// Id.
    id: Uuid,
    /// `plan`, `bedrock`, …
    #[schema(example = "bedrock")]
    provider: String,
    /// The region (`global` for Plan).
    #[schema(example = "eu-central-1")]
    region: String,
    /// The normalised model id.
    #[schema(example = "claude-sonnet-4-5")]
    model: String,
    /// The first day (00:00 UTC) these prices apply.
    effective_date: NaiveDate,
    /// Whether it is the override in force today for its provider, region and model.
    in_force: bool,
    /// Uncached input tokens.
    #[schema(example = "3.300000")]
    input_price_per_million: String,
    /// Output tokens.
    #[schema(example = "16.500000")]
    output_price_per_million: String,
    /// Cache writes, 5-minute TTL.
    #[schema(example = "4.125000")]
    cache_write_price_per_million: String,
    /// Cache writes, 1-hour TTL.
    #[schema(example = "6.600000")]
    cache_write_1h_price_per_million: String,
    /// Cache reads.
    #[schema(example = "0.330000")]
    cache_read_price_per_million: String,
    /// Created.
    created_at: DateTime<Utc>,
    /// Last changed.
    updated_at: DateTime<Utc>,
}

impl PriceOverride {
    fn new(row: price_overrides::Model, in_force: bool) -> Self {
        Self {
            id: row.id,
            provider: row.provider,
            region: row.region,
            model: row.model,
            effective_date: row.effective_date,
            in_force,
            input_price_per_million: usd(row.input_per_million_micros),
            output_price_per_million: usd(row.output_per_million_micros),
            cache_write_price_per_million: usd(row.cache_write_5m_per_million_micros),
            cache_write_1h_price_per_million: usd(row.cache_write_1h_per_million_micros),
            cache_read_price_per_million: usd(row.cache_read_per_million_micros),
            created_at: row.created_at,
            updated_at: row.updated_at,
        }
    }
}

/// Every price override, by provider, region, model and date.
#[derive(Debug, Serialize, ToSchema)]
struct PriceOverrideList {
    /// The overrides.
    overrides: Vec<PriceOverride>,
}

/// A new price override. Prices are USD per million tokens: a decimal string or number,
/// ≥ 0, at most 6 decimals.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct NewPriceOverride {
    /// `plan`, `bedrock`, or another provider's name (lowercase, 1 to 32 of `a-z 0-9 _ -`).
    #[schema(example = "bedrock", pattern = r"^[a-z0-9_-]{1,32}$")]
    provider: String,
    /// The region: `global` for Plan (the default there), an AWS region for Bedrock.
    #[schema(example = "eu-central-1", pattern = r"^[a-z0-9-]{1,64}$")]
    region: Option<String>,
    /// The model (stored normalised: `claude-sonnet-4-5-20250929` → `claude-sonnet-4-5`).
    #[schema(example = "claude-sonnet-4-5", pattern = r"^[A-Za-z0-9._:-]{1,128}$")]
    model: String,
    /// The first day (00:00 UTC) these prices apply; default today.
    effective_date: Option<NaiveDate>,
    /// Uncached input.
    #[schema(value_type = UsdInput)]
    input_price_per_million: Value,
    /// Output.
    #[schema(value_type = UsdInput)]
    output_price_per_million: Value,
    /// Cache writes, 5-minute TTL. Default for Plan and Bedrock: 1.25 × input (Anthropic's
    /// multipliers); required for other providers.
    #[serde(default)]
    #[schema(value_type = Option<UsdInput>)]
    cache_write_price_per_million: Option<Value>,
    /// Cache writes, 1-hour TTL. Default for Plan and Bedrock: 2 × input.
    #[serde(default)]
    #[schema(value_type = Option<UsdInput>)]
    cache_write_1h_price_per_million: Option<Value>,
    /// Cache reads. Default for Plan and Bedrock: 0.1 × input.
    #[serde(default)]
    #[schema(value_type = Option<UsdInput>)]
    cache_read_price_per_million: Option<Value>,
}

/// Changes to a price override: a field that is absent stays as it is.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct PriceOverrideChanges {
    /// The first day these prices apply.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = NaiveDate, required = false)]
    effective_date: Option<NaiveDate>,
    /// Uncached input.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = UsdInput, required = false)]
    input_price_per_million: Option<Value>,
    /// Output.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = UsdInput, required = false)]
    output_price_per_million: Option<Value>,
    /// Cache writes, 5-minute TTL.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = UsdInput, required = false)]
    cache_write_price_per_million: Option<Value>,
    /// Cache writes, 1-hour TTL.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = UsdInput, required = false)]
    cache_write_1h_price_per_million: Option<Value>,
    /// Cache reads.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = UsdInput, required = false)]
    cache_read_price_per_million: Option<Value>,
}

/// A price: an amount, not `null`.
fn price(parameter: &'static str, value: &Value) -> Result<i64, AdminError> {
    parse_usd(parameter, value)?
        .ok_or_else(|| AdminError::bad(parameter, "must be an amount, not null"))
}

fn parse_provider(text: &str) -> Result<Provider, AdminError> {
    let name = text.trim();
    let well_formed = (1..=Provider::MAX_LEN.min(32)).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'_' | b'-'));
    if well_formed {
        Ok(Provider::new(name.to_owned()))
    } else {
        Err(AdminError::bad(
            "provider",
            "must be 1 to 32 of a-z 0-9 _ - (plan, bedrock, …)",
        ))
    }
}

/// The region for `provider`: Plan's is `global`; others name one (`global` too, or an
/// AWS-style name).
fn parse_price_region(provider: &Provider, text: Option<&str>) -> Result<String, AdminError> {
    let region = text.map(str::trim);
    if *provider == Provider::PLAN {
        return match region {
            None | Some(PLAN_REGION) => Ok(PLAN_REGION.to_owned()),
            Some(_) => Err(AdminError::bad(
                "region",
                "Plan is priced in region global only",
            )),
        };
    }
    let region = region.ok_or_else(|| AdminError::bad("region", "missing"))?;
    let well_formed = (1..=64).contains(&region.len())
        && region
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    if well_formed {
        Ok(region.to_owned())
    } else {
        Err(AdminError::bad(
            "region",
            "must be a region name like eu-central-1, or global",
        ))
    }
}

async fn find_override(state: &AppState, id: Uuid) -> Result<price_overrides::Model, AdminError> {
    price_overrides::Entity::find_by_id(id)
        .one(&state.db)
        .await?
        .ok_or_else(|| AdminError::NotFound(format!("no price override {id}")))
}

/// The override of this provider, region and model from `date`, if there is one.
async fn find_at(
    state: &AppState,
    provider: &str,
    region: &str,
    model: &str,
    date: NaiveDate,
) -> Result<Option<price_overrides::Model>, AdminError> {
    Ok(price_overrides::Entity::find()
        .filter(price_overrides::Column::Provider.eq(provider))
        .filter(price_overrides::Column::Region.eq(region))
        .filter(price_overrides::Column::Model.eq(model))
        .filter(price_overrides::Column::EffectiveDate.eq(date))
        .one(&state.db)
        .await?)
}

/// The ids of the overrides in force today.
async fn in_force(state: &AppState) -> Result<BTreeSet<Uuid>, AdminError> {
    let rows = price_overrides::Entity::find().all(&state.db).await?;
    let today = Utc::now().date_naive();
    let mut latest: BTreeMap<(String, String, String), &price_overrides::Model> = BTreeMap::new();
    for row in rows.iter().filter(|row| row.effective_date <= today) {
        let key = (row.provider.clone(), row.region.clone(), row.model.clone());
        if latest
            .get(&key)
            .is_none_or(|kept| kept.effective_date < row.effective_date)
        {
            latest.insert(key, row);
        }
    }
    Ok(latest.values().map(|row| row.id).collect())
}

async fn described(
    state: &AppState,
    row: price_overrides::Model,
) -> Result<PriceOverride, AdminError> {
    let in_force = in_force(state).await?.contains(&row.id);
    Ok(PriceOverride::new(row, in_force))
}

/// Every price override (the prices in force are `GET /admin/pricing`).
#[utoipa::path(
    get,
    path = "/admin/pricing/overrides",
    tag = "pricing",
    responses(
        (status = 200, description = "the overrides", body = PriceOverrideList),
        (status = 401, description = "no or wrong admin token", body = ErrorBody),
    )
)]
async fn list_overrides(
    State(state): State<Arc<AppState>>,
) -> Result<Json<PriceOverrideList>, AdminError> {
    let rows = price_overrides::Entity::find()
        .order_by_asc(price_overrides::Column::Provider)
        .order_by_asc(price_overrides::Column::Region)
        .order_by_asc(price_overrides::Column::Model)
        .order_by_asc(price_overrides::Column::EffectiveDate)
        .all(&state.db)
        .await?;
    let in_force = in_force(&state).await?;
    Ok(Json(PriceOverrideList {
        overrides: rows
            .into_iter()
            .map(|row| {
                let current = in_force.contains(&row.id);
                PriceOverride::new(row, current)
            })
            .collect(),
    }))
}

/// Sets a model's prices for a provider and region from a date on.
#[utoipa::path(
    post,
    path = "/admin/pricing/overrides",
    tag = "pricing",
    request_body(content = NewPriceOverride, description = "the prices"),
    responses(
        (status = 201, description = "the override (in force from its date)", body = PriceOverride),
        (status = 400, description = "a bad field or malformed JSON", body = ErrorBody),
        (status = 401, description = "no or wrong admin token", body = ErrorBody),
        (status = 409, description = "an override for that provider, region, model and date exists", body = ErrorBody),
    )
)]
async fn create_override(
    State(state): State<Arc<AppState>>,
    JsonBody(new): JsonBody<NewPriceOverride>,
) -> Result<(StatusCode, Json<PriceOverride>), AdminError> {
    let provider = parse_provider(&new.provider)?;
    let region = parse_price_region(&provider, new.region.as_deref())?;
    let model = normalize_model_id(&parse_model("model", &new.model)?);
    let effective_date = new
        .effective_date
        .unwrap_or_else(|| Utc::now().date_naive());
    let input = price("input_price_per_million", &new.input_price_per_million)?;
    let output = price("output_price_per_million", &new.output_price_per_million)?;
    let anthropic = provider == Provider::PLAN || provider == Provider::BEDROCK;
    let defaults = Prices::anthropic(Decimal::new(input, 6), Decimal::new(output, 6));
    let cache = |parameter, given: &Option<Value>, default: Decimal| match given {
        Some(value) => price(parameter, value),
        None if anthropic => Ok(usage_layer::pricing::to_micros(default)),
        None => Err(AdminError::bad(
            parameter,
            format!("missing ({} has no default)", provider.as_str()),
        )),
    };
    let cache_write = cache(
        "cache_write_price_per_million",
        &new.cache_write_price_per_million,
        defaults.cache_write_5m,
    )?;
    let cache_write_1h = cache(
        "cache_write_1h_price_per_million",
        &new.cache_write_1h_price_per_million,
        defaults.cache_write_1h,
    )?;
    let cache_read = cache(
        "cache_read_price_per_million",
        &new.cache_read_price_per_million,
        defaults.cache_read,
    )?;
    if let Some(taken) = find_at(&state, provider.as_str(), &region, &model, effective_date).await?
    {
        return Err(AdminError::Conflict(format!(
            "{} {region} {model} has an override from {effective_date} already ({}); change that one",
            provider.as_str(),
            taken.id
        )));
    }
    let now = Utc::now();
    let row = price_overrides::Entity::insert(price_overrides::ActiveModel {
        id: Set(Uuid::now_v7()),
        provider: Set(provider.as_str().to_owned()),
        region: Set(region),
        model: Set(model),
        effective_date: Set(effective_date),
        input_per_million_micros: Set(input),
        output_per_million_micros: Set(output),
        cache_write_5m_per_million_micros: Set(cache_write),
        cache_write_1h_per_million_micros: Set(cache_write_1h),
        cache_read_per_million_micros: Set(cache_read),
        created_at: Set(now),
        updated_at: Set(now),
    })
    .exec_with_returning(&state.db)
    .await?;
    apply(&state).await;
    Ok((StatusCode::CREATED, Json(described(&state, row).await?)))
}

/// One price override.
#[utoipa::path(
    get,
    path = "/admin/pricing/overrides/{override_id}",
    tag = "pricing",
    params(("override_id" = Uuid, Path, description = "the override's id")),
    responses(
        (status = 200, description = "the override", body = PriceOverride),
        (status = 400, description = "`override_id` is not a UUID", body = ErrorBody),
        (status = 401, description = "no or wrong admin token", body = ErrorBody),
        (status = 404, description = "no such override", body = ErrorBody),
    )
)]
async fn get_override(
    State(state): State<Arc<AppState>>,
    Path(override_id): Path<String>,
) -> Result<Json<PriceOverride>, AdminError> {
    let row = find_override(&state, parse_id("override_id", &override_id)?).await?;
    Ok(Json(described(&state, row).await?))
}

/// Changes a price override's prices or date; absent fields stay as they are.
#[utoipa::path(
    patch,
    path = "/admin/pricing/overrides/{override_id}",
    tag = "pricing",
    params(("override_id" = Uuid, Path, description = "the override's id")),
    request_body(content = PriceOverrideChanges, description = "the fields to change"),
    responses(
        (status = 200, description = "the changed override", body = PriceOverride),
        (status = 400, description = "a bad field, malformed JSON or a malformed `override_id`", body = ErrorBody),
        (status = 401, description = "no or wrong admin token", body = ErrorBody),
        (status = 404, description = "no such override", body = ErrorBody),
        (status = 409, description = "another override has that date", body = ErrorBody),
    )
)]
async fn update_override(
    State(state): State<Arc<AppState>>,
    Path(override_id): Path<String>,
    JsonBody(changes): JsonBody<PriceOverrideChanges>,
) -> Result<Json<PriceOverride>, AdminError> {
    let id = parse_id("override_id", &override_id)?;
    let read = |parameter, value: &Option<Value>| {
        value
            .as_ref()
            .map(|value| price(parameter, value))
            .transpose()
    };
    let input = read("input_price_per_million", &changes.input_price_per_million)?;
    let output = read(
        "output_price_per_million",
        &changes.output_price_per_million,
    )?;
    let cache_write = read(
        "cache_write_price_per_million",
        &changes.cache_write_price_per_million,
    )?;
    let cache_write_1h = read(
        "cache_write_1h_price_per_million",
        &changes.cache_write_1h_price_per_million,
    )?;
    let cache_read = read(
        "cache_read_price_per_million",
        &changes.cache_read_price_per_million,
    )?;
    let row = find_override(&state, id).await?;
    if let Some(date) = changes.effective_date
        && date != row.effective_date
        && let Some(taken) = find_at(&state, &row.provider, &row.region, &row.model, date).await?
    {
        return Err(AdminError::Conflict(format!(
            "override {} has that date already",
            taken.id
        )));
    }
    let mut active = row.into_active_model();
    if let Some(date) = changes.effective_date {
        active.effective_date = Set(date);
    }
    for (value, column) in [
        (input, &mut active.input_per_million_micros),
        (output, &mut active.output_per_million_micros),
        (cache_write, &mut active.cache_write_5m_per_million_micros),
        (
            cache_write_1h,
            &mut active.cache_write_1h_per_million_micros,
        ),
        (cache_read, &mut active.cache_read_per_million_micros),
    ] {
        if let Some(micros) = value {
            *column = Set(micros);
        }
    }
    active.updated_at = Set(Utc::now());
    let row = active.update(&state.db).await?;
    apply(&state).await;
    Ok(Json(described(&state, row).await?))
}

/// Deletes a price override: the price it replaced (an earlier override, or the base)
/// applies again from the next request.
#[utoipa::path(
    delete,
    path = "/admin/pricing/overrides/{override_id}",
    tag = "pricing",
    params(("override_id" = Uuid, Path, description = "the override's id")),
    responses(
        (status = 200, description = "the deleted override", body = PriceOverride),
        (status = 400, description = "`override_id` is not a UUID", body = ErrorBody),
        (status = 401, description = "no or wrong admin token", body = ErrorBody),
        (status = 404, description = "no such override", body = ErrorBody),
    )
)]
async fn delete_override(
    State(state): State<Arc<AppState>>,
    Path(override_id): Path<String>,
) -> Result<Json<PriceOverride>, AdminError> {
    let id = parse_id("override_id", &override_id)?;
    let row = find_override(&state, id).await?;
    price_overrides::Entity::delete_by_id(id)
        .exec(&state.db)
        .await?;
    apply(&state).await;
    Ok(Json(PriceOverride::new(row, false)))
}
