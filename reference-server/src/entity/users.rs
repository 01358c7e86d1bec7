//! `users`.

use sea_orm::entity::prelude::*;

/// A user of the proxy.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel, serde::Serialize, serde::Deserialize)]
#[sea_orm(table_name = "users")]
pub struct Model {
    /// Id.
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    /// Display name.
    pub name: String,
    /// Inactive users' keys are refused.
    pub is_active: bool,
    /// Monthly Bedrock budget in micro-USD; `None` is unlimited.
    pub monthly_budget_micros: Option<i64>,
    /// `plan_first` or `bedrock_only`.
    pub routing_strategy: String,
    /// Created.
    pub created_at: DateTimeUtc,
    /// Last changed.
    pub updated_at: DateTimeUtc,
    /// What the user is for (free text).
    #[serde(default)]
    pub description: Option<String>,
    /// When the user was deleted: a deleted user is inactive for good, its keys are
    /// revoked, and its usage rows stay.
    #[serde(default)]
    pub deleted_at: Option<DateTimeUtc>,
}

/// Relations.
#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {
    /// A user has keys.
    #[sea_orm(has_many = "super::access_keys::Entity")]
    AccessKeys,
}

impl Related<super::access_keys::Entity> for Entity {
    fn to() -> RelationDef {
        Relation::AccessKeys.def()
    }
}

impl ActiveModelBehavior for ActiveModel {}
