//! `admins`: the console's accounts.

use sea_orm::entity::prelude::*;

/// A console account.
#[derive(Clone, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "admins")]
pub struct Model {
    /// Id.
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    /// The name it logs in with.
    #[sea_orm(unique)]
    pub name: String,
    /// The password's argon2id hash (PHC string format).
    pub password_hash: String,
    /// `admin` (may change things) or `viewer` (reads only).
    pub role: String,
    /// Created.
    pub created_at: DateTimeUtc,
    /// A disabled account cannot log in.
    pub disabled_at: Option<DateTimeUtc>,
    /// The last successful login.
    pub last_login_at: Option<DateTimeUtc>,
}

// By hand: the hash is not for logs.
impl std::fmt::Debug for Model {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Model")
            .field("id", &self.id)
            .field("name", &self.name)
            .field("role", &self.role)
            .finish_non_exhaustive()
    }
}

/// Relations: none declared.
#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
