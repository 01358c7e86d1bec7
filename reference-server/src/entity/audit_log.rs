//! `audit_log`: every change made through the admin API or the console.

use sea_orm::entity::prelude::*;

/// One change, or one login attempt.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "audit_log")]
pub struct Model {
    /// Id (UUIDv7: ordered by time).
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    /// When.
    pub at: DateTimeUtc,
    /// Who: `admin:<name>`, `token` (the bearer admin token) or `anonymous`.
    pub actor: String,
    /// What: `POST /admin/users`, `login`, `logout`, …
    pub action: String,
    /// The resource's path, when there is one.
    pub target: Option<String>,
    /// The answer's status code.
    pub status: i32,
    /// More about it (a login's failure reason); never a secret.
    pub detail: Option<String>,
}

/// Relations: none declared.
#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
