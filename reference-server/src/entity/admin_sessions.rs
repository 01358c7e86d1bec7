//! `admin_sessions`: the console's logged-in sessions.

use sea_orm::entity::prelude::*;

/// A session. The cookie holds a random token; only its SHA-256 is stored.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "admin_sessions")]
pub struct Model {
    /// SHA-256 of the session token, hex.
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: String,
    /// Whose session.
    pub admin_id: Uuid,
    /// What a change must carry in `X-CSRF-Token` (or the form's `csrf_token`).
    pub csrf_token: String,
    /// Logged in.
    pub created_at: DateTimeUtc,
    /// Not accepted from then on.
    pub expires_at: DateTimeUtc,
}

/// Relations: none declared.
#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
