//! `bedrock_credentials`: an access key's own Bedrock API key, encrypted at rest.

use sea_orm::entity::prelude::*;

/// One access key's Bedrock API key.
#[derive(Clone, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "bedrock_credentials")]
pub struct Model {
    /// The access key it belongs to.
    #[sea_orm(primary_key, auto_increment = false)]
    pub access_key_id: Uuid,
    /// The encrypted Bedrock API key (see [`crate::crypto`]).
    pub encrypted: Vec<u8>,
    /// How: `local` (AES-256-GCM with the server's key) or `kms` (a KMS data key).
    pub encryption: String,
    /// SHA-256 of the plaintext, hex: shows that a credential is linked (and which).
    pub key_hash: String,
    /// Created.
    pub created_at: DateTimeUtc,
    /// Last replaced.
    pub updated_at: DateTimeUtc,
}

// By hand: the ciphertext is not for logs either.
impl std::fmt::Debug for Model {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Model")
            .field("access_key_id", &self.access_key_id)
            .field("encryption", &self.encryption)
            .field("created_at", &self.created_at)
            .field("updated_at", &self.updated_at)
            .finish_non_exhaustive()
    }
}

/// Relations: none declared (the foreign key is the migration's).
#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
