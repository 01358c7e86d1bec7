//! `access_keys`: only an HMAC of each key is stored.

use sea_orm::entity::prelude::*;

/// An access key.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "access_keys")]
pub struct Model {
    /// Id.
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    /// Owner.
    pub user_id: Uuid,
    /// HMAC-SHA256 of the key with the server's secret, hex.
    #[sea_orm(unique)]
    pub key_hash: String,
    /// The key's first characters, to recognise it in lists.
    pub key_prefix: String,
    /// A label.
    pub name: Option<String>,
    /// Revoked keys are inactive.
    pub is_active: bool,
    /// Created.
    pub created_at: DateTimeUtc,
    /// When it was revoked.
    pub revoked_at: Option<DateTimeUtc>,
    /// Last use: not recorded yet (always null for now).
    pub last_used_at: Option<DateTimeUtc>,
    /// A key replaced by a rotation is accepted until then; `None`: no end.
    pub expires_at: Option<DateTimeUtc>,
    /// The key that replaced this one in a rotation.
    pub replaced_by: Option<Uuid>,
    /// The key's Bedrock region (endpoint and prices); `None`: the server's.
    pub bedrock_region: Option<String>,
}

/// Relations.
#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {
    /// The owner.
    #[sea_orm(
        belongs_to = "super::users::Entity",
        from = "Column::UserId",
        to = "super::users::Column::Id"
    )]
    User,
}

impl Related<super::users::Entity> for Entity {
    fn to() -> RelationDef {
        Relation::User.def()
    }
}

impl ActiveModelBehavior for ActiveModel {}
