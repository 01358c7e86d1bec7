//! Users and their monthly Bedrock budgets.
//!
//! Request bodies are strict: malformed JSON and unknown fields are a 400 in the admin
//! error shape, not axum's plain-text rejection.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, State};
use chrono::{DateTime, Utc};
use http::StatusCode;
use rust_decimal::prelude::ToPrimitive;
use rust_decimal::{Decimal, RoundingStrategy};
use sea_orm::ActiveValue::Set;
use sea_orm::sea_query::Expr;
use sea_orm::{
    ActiveModelTrait, ColumnTrait, EntityTrait, IntoActiveModel, QueryFilter, QueryOrder,
};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::openapi::RefOr;
use utoipa::openapi::schema::{ObjectBuilder, Schema, Type};
use utoipa::{IntoParams, PartialSchema, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use super::input::{
    UsdInput, parse_description, parse_flag, parse_id, parse_name, parse_usd, present,
};
use super::{AdminError, AdminQuery, ErrorBody, JsonBody, usd};
use crate::app::AppState;
use crate::config::Routing;
use crate::entity::{access_keys, users};

/// The routes of this module.
pub(super) fn routes() -> OpenApiRouter<Arc<AppState>> {
    OpenApiRouter::new()
        .routes(routes!(create_user, list_users))
        .routes(routes!(get_user, update_user, delete_user))
        .routes(routes!(deactivate_user))
        .routes(routes!(get_budget, set_budget))
}

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

/// A user of the proxy.
#[derive(Debug, Serialize, ToSchema)]
struct User {
    /// Id.
    id: Uuid,
    /// Display name.
    #[schema(example = "Ada Lovelace")]
    name: String,
    /// What the user is for.
    #[schema(example = "platform team")]
    description: Option<String>,
    /// `active`, `inactive` (keys refused until reactivated) or `deleted` (for good).
    #[schema(example = "active")]
    status: &'static str,
    /// Inactive (and deleted) users' keys are refused.
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
    /// When the user was deleted.
    deleted_at: Option<DateTime<Utc>>,
}

impl From<users::Model> for User {
    fn from(user: users::Model) -> Self {
        Self {
            id: user.id,
            name: user.name,
            description: user.description,
            status: match (user.deleted_at, user.is_active) {
                (Some(_), _) => "deleted",
                (None, true) => "active",
                (None, false) => "inactive",
            },
            is_active: user.is_active,
            monthly_budget_usd: user.monthly_budget_micros.map(usd),
            routing_strategy: Routing::from_stored(&user.routing_strategy).as_str(),
            created_at: user.created_at,
            updated_at: user.updated_at,
            deleted_at: user.deleted_at,
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
    /// What the user is for: at most 2,000 characters; empty or `null` is none.
    #[schema(example = "platform team", max_length = 2000)]
    description: Option<String>,
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
    /// What the user is for: at most 2,000 characters; empty or `null` removes it.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>, required = false, max_length = 2000)]
    description: Option<Option<String>>,
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

/// `?include_inactive=&include_deleted=`.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
struct ListParams {
    /// List inactive users too (default `false`).
    #[param(value_type = Option<bool>)]
    include_inactive: Option<String>,
    /// List deleted users too (default `false`).
    #[param(value_type = Option<bool>)]
    include_deleted: Option<String>,
}

// ---------------------------------------------------------------------------------------
// Reading requests.

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

// ---------------------------------------------------------------------------------------
// The database.

/// The user `id`, unless it does not exist or was deleted: a deleted user is gone from
/// `/admin/users/{id}` and everything under it (404), and stays in the list with
/// `include_deleted=true`; its keys stay at `/admin/keys/{id}`, its usage in the usage
/// endpoints.
pub(super) async fn find_user(state: &AppState, id: Uuid) -> Result<users::Model, AdminError> {
    match users::Entity::find_by_id(id).one(&state.db).await? {
        Some(user) if user.deleted_at.is_none() => Ok(user),
        Some(_) => Err(AdminError::NotFound(format!("user {id} was deleted"))),
        None => Err(AdminError::NotFound(format!("no user {id}"))),
    }
}

/// Applies `change` to `user`, with `updated_at` now.
async fn update(
    state: &AppState,
    user: users::Model,
    change: impl FnOnce(&mut users::ActiveModel),
) -> Result<users::Model, AdminError> {
    let was_active = user.is_active;
    let mut active = user.into_active_model();
    change(&mut active);
    active.updated_at = Set(Utc::now());
    let user = active.update(&state.db).await?;
    announce(state, &user, was_active);
    Ok(user)
}

/// Tells the fleet a user's keys stopped (or started again) being accepted.
fn announce(state: &AppState, user: &users::Model, was_active: bool) {
    let Some(fleet) = &state.fleet else {
        return;
    };
    let active = user.is_active && user.deleted_at.is_none();
    if was_active && !active {
        fleet.user_revoked(user.id);
    } else if !was_active && active {
        fleet.user_restored(user.id);
    }
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
    let description = parse_description(new.description.as_deref())?;
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
        description: Set(description),
        deleted_at: Set(None),
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
    if !parse_flag("include_deleted", params.include_deleted.as_deref())? {
        query = query.filter(users::Column::DeletedAt.is_null());
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
        (status = 404, description = "no such user, or it was deleted", body = ErrorBody),
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
        (status = 404, description = "no such user, or it was deleted", body = ErrorBody),
    )
)]
async fn update_user(
    State(state): State<Arc<AppState>>,
    Path(user_id): Path<String>,
    JsonBody(changes): JsonBody<UserChanges>,
) -> Result<Json<User>, AdminError> {
    let id = parse_id("user_id", &user_id)?;
    let name = changes.name.as_deref().map(parse_name).transpose()?;
    let description = changes
        .description
        .map(|text| parse_description(text.as_deref()))
        .transpose()?;
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
        if let Some(description) = description {
            user.description = Set(description);
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
        (status = 404, description = "no such user, or it was deleted", body = ErrorBody),
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

/// Deletes a user: inactive for good, every key revoked; usage rows stay. From then on
/// `/admin/users/{user_id}` and what is under it answer 404; the list shows the user with
/// `include_deleted=true`. Deleting a deleted user changes nothing.
#[utoipa::path(
    delete,
    path = "/admin/users/{user_id}",
    tag = "users",
    params(("user_id" = Uuid, Path, description = "the user's id")),
    responses(
        (status = 200, description = "the deleted user", body = User),
        (status = 400, description = "`user_id` is not a UUID", body = ErrorBody),
        (status = 401, description = "no or wrong admin token", body = ErrorBody),
        (status = 404, description = "no such user, or it was deleted", body = ErrorBody),
    )
)]
async fn delete_user(
    State(state): State<Arc<AppState>>,
    Path(user_id): Path<String>,
) -> Result<Json<User>, AdminError> {
    use sea_orm::TransactionTrait;
    let id = parse_id("user_id", &user_id)?;
    let txn = state.db.begin().await?;
    let user = users::Entity::find_by_id(id)
        .one(&txn)
        .await?
        .ok_or_else(|| AdminError::NotFound(format!("no user {id}")))?;
    if user.deleted_at.is_some() {
        return Ok(Json(user.into()));
    }
    let now = Utc::now();
    access_keys::Entity::update_many()
        .col_expr(access_keys::Column::IsActive, Expr::value(false))
        .col_expr(access_keys::Column::RevokedAt, Expr::value(now))
        .filter(access_keys::Column::UserId.eq(id))
        .filter(access_keys::Column::IsActive.eq(true))
        .exec(&txn)
        .await?;
    let mut active = user.into_active_model();
    active.is_active = Set(false);
    active.deleted_at = Set(Some(now));
    active.updated_at = Set(now);
    let user = active.update(&txn).await?;
    txn.commit().await?;
    // Deleted: refused from the fleet's key caches too, whether it was active or not.
    announce(&state, &user, true);
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
        (status = 404, description = "no such user, or it was deleted", body = ErrorBody),
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
        (status = 404, description = "no such user, or it was deleted", body = ErrorBody),
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentages_round_half_away_from_zero() {
        assert_eq!(percentage(0, 10_000_000), 0.0);
        assert_eq!(percentage(1_234_500, 10_000_000), 12.35);
        assert_eq!(percentage(15_000_000, 10_000_000), 150.0);
        assert_eq!(percentage(1, 3), 33.33);
        assert_eq!(percentage(0, 0), 100.0);
    }

    #[test]
    fn routings_are_checked() {
        assert_eq!(parse_routing("bedrock_only").unwrap(), Routing::BedrockOnly);
        assert!(parse_routing("fastest").is_err());
        assert!(parse_routing("PLAN_FIRST").is_err());
    }
}
