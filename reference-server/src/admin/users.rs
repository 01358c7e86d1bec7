//! Users, their access keys and monthly Bedrock budgets, and the price list.
//!
//! Money is integer micro-USD in the database and a decimal string with 6 places here. A
//! request may give an amount as a string or a number (`"50"`, `"50.5"`, `50`), ≥ 0 with at
//! most 6 decimals; `null` is unlimited. A string is exact at any size; a JSON number is
//! parsed by serde_json as a double first, so it is exact only up to about 15 significant
//! digits — send a string for more.
//!
//! Request bodies are strict: malformed JSON and unknown fields are a 400 in the admin
//! error shape, not axum's plain-text rejection.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, State};
use chrono::{DateTime, NaiveDate, Utc};
use http::StatusCode;
use rust_decimal::prelude::ToPrimitive;
use rust_decimal::{Decimal, RoundingStrategy};
use sea_orm::ActiveValue::Set;
use sea_orm::sea_query::Expr;
use sea_orm::{
    ActiveModelTrait, ColumnTrait, EntityTrait, IntoActiveModel, QueryFilter, QueryOrder,
};
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::Value;
use usage_layer::Provider;
use utoipa::openapi::RefOr;
use utoipa::openapi::schema::{ObjectBuilder, Schema, Type};
use utoipa::{IntoParams, PartialSchema, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use super::{AdminError, AdminQuery, ErrorBody, JsonBody, parse_json, usd};
use crate::app::AppState;
use crate::config::Routing;
use crate::entity::{access_keys, users};

/// The routes of this module.
pub(super) fn routes() -> OpenApiRouter<Arc<AppState>> {
    OpenApiRouter::new()
        .routes(routes!(create_user, list_users))
        .routes(routes!(get_user, update_user))
        .routes(routes!(deactivate_user))
        .routes(routes!(get_budget, set_budget))
        .routes(routes!(issue_key, list_keys))
        .routes(routes!(revoke_key))
        .routes(routes!(list_prices))
}

/// The longest user or key name, in characters.
const MAX_NAME_CHARS: usize = 200;

/// The routings the API accepts, by their stored names.
const ROUTINGS: [Routing; 2] = [Routing::PlanFirst, Routing::BedrockOnly];

// ---------------------------------------------------------------------------------------
// Request and response bodies.

/// The OpenAPI schema of a routing strategy: the stored name of one of [`ROUTINGS`].
struct RoutingStrategy;

impl PartialSchema for RoutingStrategy {
    fn schema() -> RefOr<Schema> {
        ObjectBuilder::new()
            .schema_type(Type::String)
            .enum_values(Some(ROUTINGS.map(Routing::as_str)))
            .description(Some(
                "How a user's requests are routed: `plan_first` (Plan, Bedrock when Plan is \
                 rate limited or failing) or `bedrock_only`.",
            ))
            .into()
    }
}

impl ToSchema for RoutingStrategy {}

/// The OpenAPI schema of an amount of USD in a request: a decimal string or a JSON number,
/// at least 0, at most 6 decimal places.
struct UsdInput;

impl PartialSchema for UsdInput {
    fn schema() -> RefOr<Schema> {
        utoipa::openapi::schema::OneOfBuilder::new()
            .item(
                ObjectBuilder::new()
                    .schema_type(Type::String)
                    .pattern(Some(r"^[0-9]+(\.[0-9]{1,6})?$")),
            )
            .item(
                ObjectBuilder::new()
                    .schema_type(Type::Number)
                    .minimum(Some(0)),
            )
            .description(Some(
                "USD: a decimal string or a number, at least 0, at most 6 decimal places",
            ))
            .into()
    }
}

impl ToSchema for UsdInput {}

/// A user of the proxy.
#[derive(Debug, Serialize, ToSchema)]
struct User {
    /// Id.
    id: Uuid,
    /// Display name.
    #[schema(example = "Ada Lovelace")]
    name: String,
    /// Inactive users' keys are refused.
    is_active: bool,
    /// Monthly Bedrock budget in USD; `null` is unlimited.
    #[schema(example = "50.000000")]
    monthly_budget_usd: Option<String>,
    /// How the user's requests are routed.
    #[schema(value_type = RoutingStrategy)]
    routing_strategy: &'static str,
    /// Created.
    created_at: DateTime<Utc>,
    /// Last changed.
    updated_at: DateTime<Utc>,
}

impl From<users::Model> for User {
    fn from(user: users::Model) -> Self {
        Self {
            id: user.id,
            name: user.name,
            is_active: user.is_active,
            monthly_budget_usd: user.monthly_budget_micros.map(usd),
            routing_strategy: Routing::from_stored(&user.routing_strategy).as_str(),
            created_at: user.created_at,
            updated_at: user.updated_at,
        }
    }
}

/// Users, in the order they were created.
#[derive(Debug, Serialize, ToSchema)]
struct UserList {
    /// The users.
    users: Vec<User>,
}

/// A new user.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct NewUser {
    /// Display name: 1 to 200 characters (surrounding spaces are dropped).
    #[schema(example = "Ada Lovelace", min_length = 1, max_length = 200)]
    name: String,
    /// Monthly Bedrock budget in USD: a decimal string or number, ≥ 0, at most 6
    /// decimals. `null` or absent is unlimited.
    #[serde(default)]
    #[schema(value_type = Option<UsdInput>, example = "50.00")]
    monthly_budget_usd: Option<Value>,
    /// How the user's requests are routed (default `plan_first`).
    #[schema(value_type = Option<RoutingStrategy>)]
    routing_strategy: Option<String>,
}

/// Changes to a user: a field that is absent stays as it is.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct UserChanges {
    /// Display name: 1 to 200 characters.
    #[serde(default, deserialize_with = "present")]
    // Optional, but never null: the schema says so (absent ≠ null here).
    #[schema(value_type = String, required = false, example = "Ada Lovelace", min_length = 1, max_length = 200)]
    name: Option<String>,
    /// Monthly Bedrock budget in USD: a decimal string or number, ≥ 0, at most 6
    /// decimals; `null` makes it unlimited.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<UsdInput>, example = "75.5")]
    monthly_budget_usd: Option<Value>,
    /// How the user's requests are routed.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = RoutingStrategy, required = false)]
    routing_strategy: Option<String>,
    /// `false` refuses the user's keys; `true` accepts them again.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = bool, required = false)]
    is_active: Option<bool>,
}

/// A field that may be absent (`None`, with `#[serde(default)]`) but, when present, is a
/// `T`: `null` is refused unless `T` takes it (a budget's `Value::Null` is "unlimited").
fn present<'de, D: Deserializer<'de>, T: Deserialize<'de>>(
    deserializer: D,
) -> Result<Option<T>, D::Error> {
    T::deserialize(deserializer).map(Some)
}

/// A new monthly budget.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct BudgetLimit {
    /// Monthly Bedrock budget in USD: a decimal string or number, ≥ 0, at most 6
    /// decimals; `null` is unlimited.
    #[schema(value_type = Option<UsdInput>, required = true, example = "50.00")]
    monthly_budget_usd: Value,
}

/// A user's Bedrock budget this month (Plan is a fixed subscription and does not count).
#[derive(Debug, Serialize, ToSchema)]
struct Budget {
    /// The user.
    user_id: Uuid,
    /// The monthly limit in USD; `null` is unlimited.
    #[schema(example = "50.000000")]
    monthly_budget_usd: Option<String>,
    /// Bedrock spend this calendar month (in the usage time zone), including usage
    /// recorded but not yet written.
    #[schema(example = "12.345678")]
    current_usage_usd: String,
    /// What is left this month, never negative; `null` when unlimited.
    #[schema(example = "37.654322")]
    remaining_usd: Option<String>,
    /// Spend as a percentage of the limit, 2 decimals (above 100 when overspent; 100 for a
    /// zero limit); `null` when unlimited.
    #[schema(example = 24.69)]
    percentage_used: Option<f64>,
    /// The month's first instant.
    period_start: DateTime<Utc>,
    /// The next month's first instant: when the budget resets.
    period_end: DateTime<Utc>,
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

/// `?include_inactive=`.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
struct ListParams {
    /// List inactive users too (default `false`).
    #[param(value_type = Option<bool>)]
    include_inactive: Option<String>,
}

// ---------------------------------------------------------------------------------------
// Reading requests.

fn parse_id(parameter: &'static str, text: &str) -> Result<Uuid, AdminError> {
    Uuid::parse_str(text.trim()).map_err(|_| AdminError::bad(parameter, "must be a UUID"))
}

/// A user or key name, without surrounding spaces.
fn parse_name(name: &str) -> Result<String, AdminError> {
    let name = name.trim();
    if name.is_empty() {
        return Err(AdminError::bad("name", "must not be empty"));
    }
    if name.chars().count() > MAX_NAME_CHARS {
        return Err(AdminError::bad(
            "name",
            format!("must be at most {MAX_NAME_CHARS} characters"),
        ));
    }
    // Postgres text cannot hold NUL; other control characters only break logs and lists.
    if name.chars().any(char::is_control) {
        return Err(AdminError::bad(
            "name",
            "must not contain control characters (NUL, line breaks, …)",
        ));
    }
    Ok(name.to_owned())
}

fn parse_routing(name: &str) -> Result<Routing, AdminError> {
    ROUTINGS
        .into_iter()
        .find(|routing| routing.as_str() == name)
        .ok_or_else(|| {
            AdminError::bad(
                "routing_strategy",
                format!("must be one of {:?}", ROUTINGS.map(Routing::as_str)),
            )
        })
}

/// An amount of USD in micro-USD; `null` is `None` (unlimited).
///
/// A JSON number is read from its text (`50.5`, or `1e-7` in exponent form), so no float
/// rounding enters; trailing zeros beyond 6 decimals are harmless (`"1.0000000"`).
fn parse_usd(parameter: &'static str, value: &Value) -> Result<Option<i64>, AdminError> {
    let amount = match value {
        Value::Null => return Ok(None),
        Value::String(text) => Decimal::from_str_exact(text),
        Value::Number(number) => {
            let text = number.to_string();
            if text.contains(['e', 'E']) {
                Decimal::from_scientific(&text)
            } else {
                Decimal::from_str_exact(&text)
            }
        }
        _ => {
            return Err(AdminError::bad(
                parameter,
                "must be an amount in USD (a decimal string or number) or null",
            ));
        }
    }
    .map_err(|_| AdminError::bad(parameter, "not a decimal amount in USD"))?;
    if amount.is_sign_negative() && !amount.is_zero() {
        return Err(AdminError::bad(parameter, "must not be negative"));
    }
    if amount.normalize().scale() > 6 {
        return Err(AdminError::bad(parameter, "at most 6 decimal places"));
    }
    amount
        .checked_mul(Decimal::from(1_000_000))
        .and_then(|micros| micros.to_i64())
        .map(Some)
        .ok_or_else(|| AdminError::bad(parameter, "too large"))
}

fn parse_flag(parameter: &'static str, value: Option<&str>) -> Result<bool, AdminError> {
    match value.map(str::trim) {
        None | Some("false") => Ok(false),
        Some("true") => Ok(true),
        Some(_) => Err(AdminError::bad(parameter, "must be true or false")),
    }
}

// ---------------------------------------------------------------------------------------
// The database.

async fn find_user(state: &AppState, id: Uuid) -> Result<users::Model, AdminError> {
    users::Entity::find_by_id(id)
        .one(&state.db)
        .await?
        .ok_or_else(|| AdminError::NotFound(format!("no user {id}")))
}

/// Applies `change` to `user`, with `updated_at` now.
async fn update(
    state: &AppState,
    user: users::Model,
    change: impl FnOnce(&mut users::ActiveModel),
) -> Result<users::Model, AdminError> {
    let mut active = user.into_active_model();
    change(&mut active);
    active.updated_at = Set(Utc::now());
    Ok(active.update(&state.db).await?)
}

/// `user`'s budget this month.
async fn budget_of(state: &AppState, user: &users::Model) -> Result<Budget, AdminError> {
    let status = state.budget.status(user).await?;
    let limit = status.limit_micros;
    Ok(Budget {
        user_id: user.id,
        monthly_budget_usd: limit.map(usd),
        current_usage_usd: usd(status.spent_micros),
        remaining_usd: limit.map(|limit| usd(limit.saturating_sub(status.spent_micros).max(0))),
        percentage_used: limit.map(|limit| percentage(status.spent_micros, limit)),
        period_start: status.period_start,
        period_end: status.period_end,
    })
}

/// `spent` as a percentage of `limit`, rounded half away from zero to 2 decimals. A zero
/// limit is used up from the start (Bedrock is refused), so it shows 100.
fn percentage(spent: i64, limit: i64) -> f64 {
    if limit <= 0 {
        return 100.0;
    }
    // i64 × 100 fits a Decimal; the float only carries the already-rounded result.
    (Decimal::from(spent) * Decimal::ONE_HUNDRED / Decimal::from(limit))
        .round_dp_with_strategy(2, RoundingStrategy::MidpointAwayFromZero)
        .to_f64()
        .unwrap_or(f64::MAX)
}

// ---------------------------------------------------------------------------------------
// Handlers.

/// Creates a user.
#[utoipa::path(
    post,
    path = "/admin/users",
    tag = "users",
    request_body(content = NewUser, description = "the new user"),
    responses(
        (status = 201, description = "the user", body = User),
        (status = 400, description = "a bad field or malformed JSON", body = ErrorBody),
        (status = 401, description = "no or wrong admin token", body = ErrorBody),
    )
)]
async fn create_user(
    State(state): State<Arc<AppState>>,
    JsonBody(new): JsonBody<NewUser>,
) -> Result<(StatusCode, Json<User>), AdminError> {
    let name = parse_name(&new.name)?;
    let budget = parse_usd(
        "monthly_budget_usd",
        new.monthly_budget_usd.as_ref().unwrap_or(&Value::Null),
    )?;
    let routing = new
        .routing_strategy
        .as_deref()
        .map(parse_routing)
        .transpose()?
        .unwrap_or(Routing::PlanFirst);
    let now = Utc::now();
    let user = users::Entity::insert(users::ActiveModel {
        id: Set(Uuid::now_v7()),
        name: Set(name),
        is_active: Set(true),
        monthly_budget_micros: Set(budget),
        routing_strategy: Set(routing.as_str().to_owned()),
        created_at: Set(now),
        updated_at: Set(now),
    })
    .exec_with_returning(&state.db)
    .await?;
    Ok((StatusCode::CREATED, Json(user.into())))
}

/// Lists users, oldest first.
#[utoipa::path(
    get,
    path = "/admin/users",
    tag = "users",
    params(ListParams),
    responses(
        (status = 200, description = "the users", body = UserList),
        (status = 400, description = "a bad parameter", body = ErrorBody),
        (status = 401, description = "no or wrong admin token", body = ErrorBody),
    )
)]
async fn list_users(
    State(state): State<Arc<AppState>>,
    AdminQuery(params): AdminQuery<ListParams>,
) -> Result<Json<UserList>, AdminError> {
    let mut query = users::Entity::find();
    if !parse_flag("include_inactive", params.include_inactive.as_deref())? {
        query = query.filter(users::Column::IsActive.eq(true));
    }
    let users = query
        .order_by_asc(users::Column::CreatedAt)
        .order_by_asc(users::Column::Id)
        .all(&state.db)
        .await?;
    Ok(Json(UserList {
        users: users.into_iter().map(User::from).collect(),
    }))
}

/// One user.
#[utoipa::path(
    get,
    path = "/admin/users/{user_id}",
    tag = "users",
    params(("user_id" = Uuid, Path, description = "the user's id")),
    responses(
        (status = 200, description = "the user", body = User),
        (status = 400, description = "`user_id` is not a UUID", body = ErrorBody),
        (status = 401, description = "no or wrong admin token", body = ErrorBody),
        (status = 404, description = "no such user", body = ErrorBody),
    )
)]
async fn get_user(
    State(state): State<Arc<AppState>>,
    Path(user_id): Path<String>,
) -> Result<Json<User>, AdminError> {
    let user = find_user(&state, parse_id("user_id", &user_id)?).await?;
    Ok(Json(user.into()))
}

/// Changes a user's name, budget, routing or activity; absent fields stay as they are.
#[utoipa::path(
    patch,
    path = "/admin/users/{user_id}",
    tag = "users",
    params(("user_id" = Uuid, Path, description = "the user's id")),
    request_body(content = UserChanges, description = "the fields to change"),
    responses(
        (status = 200, description = "the changed user", body = User),
        (status = 400, description = "a bad field, malformed JSON or a malformed `user_id`", body = ErrorBody),
        (status = 401, description = "no or wrong admin token", body = ErrorBody),
        (status = 404, description = "no such user", body = ErrorBody),
    )
)]
async fn update_user(
    State(state): State<Arc<AppState>>,
    Path(user_id): Path<String>,
    JsonBody(changes): JsonBody<UserChanges>,
) -> Result<Json<User>, AdminError> {
    let id = parse_id("user_id", &user_id)?;
    let name = changes.name.as_deref().map(parse_name).transpose()?;
    let budget = changes
        .monthly_budget_usd
        .as_ref()
        .map(|value| parse_usd("monthly_budget_usd", value))
        .transpose()?;
    let routing = changes
        .routing_strategy
        .as_deref()
        .map(parse_routing)
        .transpose()?;
    let user = find_user(&state, id).await?;
    let user = update(&state, user, |user| {
        if let Some(name) = name {
            user.name = Set(name);
        }
        if let Some(budget) = budget {
            user.monthly_budget_micros = Set(budget);
        }
        if let Some(routing) = routing {
            user.routing_strategy = Set(routing.as_str().to_owned());
        }
        if let Some(is_active) = changes.is_active {
            user.is_active = Set(is_active);
        }
    })
    .await?;
    Ok(Json(user.into()))
}

/// Deactivates a user: their keys are refused from now on.
#[utoipa::path(
    post,
    path = "/admin/users/{user_id}/deactivate",
    tag = "users",
    params(("user_id" = Uuid, Path, description = "the user's id")),
    responses(
        (status = 200, description = "the deactivated user", body = User),
        (status = 400, description = "`user_id` is not a UUID", body = ErrorBody),
        (status = 401, description = "no or wrong admin token", body = ErrorBody),
        (status = 404, description = "no such user", body = ErrorBody),
    )
)]
async fn deactivate_user(
    State(state): State<Arc<AppState>>,
    Path(user_id): Path<String>,
) -> Result<Json<User>, AdminError> {
    let user = find_user(&state, parse_id("user_id", &user_id)?).await?;
    let user = update(&state, user, |user| user.is_active = Set(false)).await?;
    Ok(Json(user.into()))
}

/// A user's Bedrock budget and spend this month.
#[utoipa::path(
    get,
    path = "/admin/users/{user_id}/budget",
    tag = "users",
    params(("user_id" = Uuid, Path, description = "the user's id")),
    responses(
        (status = 200, description = "the budget this month", body = Budget),
        (status = 400, description = "`user_id` is not a UUID", body = ErrorBody),
        (status = 401, description = "no or wrong admin token", body = ErrorBody),
        (status = 404, description = "no such user", body = ErrorBody),
    )
)]
async fn get_budget(
    State(state): State<Arc<AppState>>,
    Path(user_id): Path<String>,
) -> Result<Json<Budget>, AdminError> {
    let user = find_user(&state, parse_id("user_id", &user_id)?).await?;
    Ok(Json(budget_of(&state, &user).await?))
}

/// Sets a user's monthly Bedrock budget (`null`: unlimited).
#[utoipa::path(
    put,
    path = "/admin/users/{user_id}/budget",
    tag = "users",
    params(("user_id" = Uuid, Path, description = "the user's id")),
    request_body(content = BudgetLimit, description = "the new limit"),
    responses(
        (status = 200, description = "the budget this month", body = Budget),
        (status = 400, description = "a bad amount, malformed JSON or a malformed `user_id`", body = ErrorBody),
        (status = 401, description = "no or wrong admin token", body = ErrorBody),
        (status = 404, description = "no such user", body = ErrorBody),
    )
)]
async fn set_budget(
    State(state): State<Arc<AppState>>,
    Path(user_id): Path<String>,
    JsonBody(limit): JsonBody<BudgetLimit>,
) -> Result<Json<Budget>, AdminError> {
    let id = parse_id("user_id", &user_id)?;
    let budget = parse_usd("monthly_budget_usd", &limit.monthly_budget_usd)?;
    let user = find_user(&state, id).await?;
    let user = update(&state, user, |user| {
        user.monthly_budget_micros = Set(budget)
    })
    .await?;
    Ok(Json(budget_of(&state, &user).await?))
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
    let catalog = &state.pricing;
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

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn micros(value: Value) -> Result<Option<i64>, String> {
        parse_usd("monthly_budget_usd", &value).map_err(|error| match error {
            AdminError::BadRequest { parameter, message } => format!("{parameter}: {message}"),
            other => panic!("{other:?}"),
        })
    }

    #[test]
    fn amounts_are_read_exactly_from_strings_and_numbers() {
        assert_eq!(micros(json!("50")), Ok(Some(50_000_000)));
        assert_eq!(micros(json!("50.5")), Ok(Some(50_500_000)));
        assert_eq!(micros(json!(50)), Ok(Some(50_000_000)));
        assert_eq!(micros(json!(50.5)), Ok(Some(50_500_000)));
        assert_eq!(micros(json!(0.000001)), Ok(Some(1)));
        assert_eq!(micros(json!("0.1234560")), Ok(Some(123_456)));
        assert_eq!(micros(json!("0")), Ok(Some(0)));
        assert_eq!(micros(json!("-0")), Ok(Some(0)));
        assert_eq!(micros(json!(null)), Ok(None));
        // A float would make this 19999999.999999998.
        assert_eq!(
            micros(json!("19999999.999999")),
            Ok(Some(19_999_999_999_999))
        );
    }

    #[test]
    fn bad_amounts_name_the_parameter() {
        for (value, message) in [
            (json!("-1"), "must not be negative"),
            (json!(-0.5), "must not be negative"),
            (json!("0.0000001"), "at most 6 decimal places"),
            (json!(0.0000001), "at most 6 decimal places"),
            (json!("fifty"), "not a decimal amount in USD"),
            (json!(""), "not a decimal amount in USD"),
            (json!(true), "must be an amount in USD"),
            (json!({"usd": 1}), "must be an amount in USD"),
            (json!("100000000000000"), "too large"),
            (json!(1e300), "not a decimal amount in USD"),
        ] {
            let error = micros(value.clone()).unwrap_err();
            assert!(
                error.starts_with("monthly_budget_usd: ") && error.contains(message),
                "{value}: {error}"
            );
        }
    }

    #[test]
    fn percentages_round_half_away_from_zero() {
        assert_eq!(percentage(0, 10_000_000), 0.0);
        assert_eq!(percentage(1_234_500, 10_000_000), 12.35);
        assert_eq!(percentage(15_000_000, 10_000_000), 150.0);
        assert_eq!(percentage(1, 3), 33.33);
        assert_eq!(percentage(0, 0), 100.0);
    }

    #[test]
    fn names_and_routings_are_checked() {
        assert_eq!(parse_name("  Ada ").unwrap(), "Ada");
        assert!(parse_name("   ").is_err());
        assert!(parse_name(&"é".repeat(MAX_NAME_CHARS)).is_ok());
        assert!(parse_name(&"é".repeat(MAX_NAME_CHARS + 1)).is_err());
        assert_eq!(parse_routing("bedrock_only").unwrap(), Routing::BedrockOnly);
        assert!(parse_routing("fastest").is_err());
        assert!(parse_routing("PLAN_FIRST").is_err());
    }
}
