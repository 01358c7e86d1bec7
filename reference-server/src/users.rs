//! Users: create, and the budget in micro-USD.

use chrono::Utc;
use rust_decimal::Decimal;
use sea_orm::{ActiveValue::Set, DatabaseConnection, DbErr, EntityTrait};
use usage_layer::pricing::to_micros;
use uuid::Uuid;

use crate::config::Routing;
use crate::entity::users;

/// Creates an active user; returns the new id.
pub async fn create(
    db: &DatabaseConnection,
    name: &str,
    monthly_budget_usd: Option<Decimal>,
    routing: Routing,
) -> Result<Uuid, DbErr> {
    create_described(db, name, None, monthly_budget_usd, routing).await
}

/// [`create`] with a description.
pub async fn create_described(
    db: &DatabaseConnection,
    name: &str,
    description: Option<&str>,
    monthly_budget_usd: Option<Decimal>,
    routing: Routing,
) -> Result<Uuid, DbErr> {
    let id = Uuid::now_v7();
    let now = Utc::now();
    users::Entity::insert(users::ActiveModel {
        id: Set(id),
        name: Set(name.to_owned()),
        is_active: Set(true),
        monthly_budget_micros: Set(monthly_budget_usd.map(to_micros)),
        routing_strategy: Set(routing.as_str().to_owned()),
        created_at: Set(now),
        updated_at: Set(now),
        description: Set(description.map(str::to_owned)),
        deleted_at: Set(None),
    })
    .exec(db)
    .await?;
    Ok(id)
}
