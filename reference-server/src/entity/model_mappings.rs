//! `model_mappings`: requested model → Bedrock model id, editable at run time.

use sea_orm::entity::prelude::*;

/// One mapping.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "model_mappings")]
pub struct Model {
    /// Id.
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    /// The model a client asks for (`claude-sonnet-4-5-20250929`).
    #[sea_orm(unique)]
    pub claude_model: String,
    /// The Bedrock model or inference profile id it is served by.
    pub bedrock_model: String,
    /// Free text.
    pub description: Option<String>,
    /// An inactive mapping is kept but not used.
    pub is_active: bool,
    /// Created.
    pub created_at: DateTimeUtc,
    /// Last changed.
    pub updated_at: DateTimeUtc,
}

/// Relations: none.
#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
