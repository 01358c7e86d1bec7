//! What the original system's admins have and ours lacked: user descriptions and soft
//! deletion, key rotation, per-key Bedrock regions and credentials, model mappings and
//! price overrides in the database.
//!
//! * `users`: `description`, `deleted_at` (a deleted user keeps its usage rows; its keys
//!   are revoked).
//! * `access_keys`: `expires_at` (a key replaced by a rotation is accepted until then),
//!   `replaced_by` (the key that replaced it), `bedrock_region` (`null`: the server's).
//! * `bedrock_credentials`: one per access key — its own Bedrock API key, encrypted
//!   (`encryption` says how: `local` AES-256-GCM or a `kms` envelope), and a hash of the
//!   plaintext to show that one is linked.
//! * `model_mappings`: requested model → Bedrock model id.
//! * `price_overrides`: prices per provider, region and model from an effective date, in
//!   micro-USD per million tokens (as `token_usage` keeps its price snapshots).

use sea_orm_migration::prelude::*;
use sea_orm_migration::schema::*;
use usage_layer::store::sea_orm::migration::rollback;

/// Adds the columns and creates the tables.
#[derive(Clone, Copy, Debug, DeriveMigrationName)]
pub struct Migration;

#[derive(Clone, Copy, DeriveIden)]
enum Users {
    Description,
    DeletedAt,
}

#[derive(Clone, Copy, DeriveIden)]
enum AccessKeys {
    Table,
    Id,
    ExpiresAt,
    ReplacedBy,
    BedrockRegion,
}

#[derive(DeriveIden)]
enum BedrockCredentials {
    Table,
    AccessKeyId,
    Encrypted,
    Encryption,
    KeyHash,
    CreatedAt,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum ModelMappings {
    Table,
    Id,
    ClaudeModel,
    BedrockModel,
    Description,
    IsActive,
    CreatedAt,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum PriceOverrides {
    Table,
    Id,
    Provider,
    Region,
    Model,
    EffectiveDate,
    InputPerMillionMicros,
    OutputPerMillionMicros,
    #[sea_orm(iden = "cache_write_5m_per_million_micros")]
    CacheWrite5mPerMillionMicros,
    #[sea_orm(iden = "cache_write_1h_per_million_micros")]
    CacheWrite1hPerMillionMicros,
    CacheReadPerMillionMicros,
    CreatedAt,
    UpdatedAt,
}

/// Where a rollback keeps the new `users` columns.
pub(crate) const USERS_ROLLBACK: &str = "users_parity_rollback";
/// Where a rollback keeps the new `access_keys` columns.
pub(crate) const ACCESS_KEYS_ROLLBACK: &str = "access_keys_parity_rollback";
/// `bedrock_credentials`, and where a rollback sets it aside.
pub(crate) const BEDROCK_CREDENTIALS: (&str, &str) =
    ("bedrock_credentials", "bedrock_credentials_rollback");
/// `model_mappings`, and where a rollback sets it aside.
pub(crate) const MODEL_MAPPINGS: (&str, &str) = ("model_mappings", "model_mappings_rollback");
/// `price_overrides`, and where a rollback sets it aside.
pub(crate) const PRICE_OVERRIDES: (&str, &str) = ("price_overrides", "price_overrides_rollback");

fn user_columns() -> Vec<ColumnDef> {
    vec![
        text_null(Users::Description),
        timestamp_with_time_zone_null(Users::DeletedAt),
    ]
}

fn key_columns() -> Vec<ColumnDef> {
    vec![
        timestamp_with_time_zone_null(AccessKeys::ExpiresAt),
        uuid_null(AccessKeys::ReplacedBy),
        string_len_null(AccessKeys::BedrockRegion, 32),
    ]
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        rollback::add_columns(manager, "users", "id", user_columns(), USERS_ROLLBACK).await?;
        rollback::add_columns(
            manager,
            "access_keys",
            "id",
            key_columns(),
            ACCESS_KEYS_ROLLBACK,
        )
        .await?;
        if !rollback::take_back_table(manager, BEDROCK_CREDENTIALS.0, BEDROCK_CREDENTIALS.1).await?
        {
            create_bedrock_credentials(manager).await?;
        }
        if !rollback::take_back_table(manager, MODEL_MAPPINGS.0, MODEL_MAPPINGS.1).await? {
            create_model_mappings(manager).await?;
        }
        if !rollback::take_back_table(manager, PRICE_OVERRIDES.0, PRICE_OVERRIDES.1).await? {
            create_price_overrides(manager).await?;
        }
        Ok(())
    }

    /// Sets the tables and the columns aside: rolling back deletes no data.
    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        rollback::set_aside_table(manager, PRICE_OVERRIDES.0, PRICE_OVERRIDES.1).await?;
        rollback::set_aside_table(manager, MODEL_MAPPINGS.0, MODEL_MAPPINGS.1).await?;
        rollback::set_aside_table(manager, BEDROCK_CREDENTIALS.0, BEDROCK_CREDENTIALS.1).await?;
        rollback::set_aside_columns(
            manager,
            "access_keys",
            "id",
            &key_columns(),
            ACCESS_KEYS_ROLLBACK,
        )
        .await?;
        rollback::set_aside_columns(manager, "users", "id", &user_columns(), USERS_ROLLBACK).await
    }

    fn use_transaction(&self) -> Option<bool> {
        Some(true)
    }
}

async fn create_bedrock_credentials(manager: &SchemaManager<'_>) -> Result<(), DbErr> {
    manager
        .create_table(
            Table::create()
                .table(BedrockCredentials::Table)
                .col(uuid(BedrockCredentials::AccessKeyId).primary_key())
                .col(blob(BedrockCredentials::Encrypted))
                .col(string_len(BedrockCredentials::Encryption, 16))
                .col(string_len(BedrockCredentials::KeyHash, 64))
                .col(timestamp_with_time_zone(BedrockCredentials::CreatedAt))
                .col(timestamp_with_time_zone(BedrockCredentials::UpdatedAt))
                .foreign_key(
                    ForeignKey::create()
                        .from(BedrockCredentials::Table, BedrockCredentials::AccessKeyId)
                        .to(AccessKeys::Table, AccessKeys::Id)
                        .on_delete(ForeignKeyAction::Cascade),
                )
                .to_owned(),
        )
        .await
}

async fn create_model_mappings(manager: &SchemaManager<'_>) -> Result<(), DbErr> {
    manager
        .create_table(
            Table::create()
                .table(ModelMappings::Table)
                .col(uuid(ModelMappings::Id).primary_key())
                .col(string_len_uniq(ModelMappings::ClaudeModel, 128))
                .col(string_len(ModelMappings::BedrockModel, 256))
                .col(text_null(ModelMappings::Description))
                .col(boolean(ModelMappings::IsActive).default(true))
                .col(timestamp_with_time_zone(ModelMappings::CreatedAt))
                .col(timestamp_with_time_zone(ModelMappings::UpdatedAt))
                .to_owned(),
        )
        .await
}

async fn create_price_overrides(manager: &SchemaManager<'_>) -> Result<(), DbErr> {
    manager
        .create_table(
            Table::create()
                .table(PriceOverrides::Table)
                .col(uuid(PriceOverrides::Id).primary_key())
                .col(string_len(PriceOverrides::Provider, 32))
                .col(string_len(PriceOverrides::Region, 64))
                .col(string_len(PriceOverrides::Model, 128))
                .col(date(PriceOverrides::EffectiveDate))
                .col(big_integer(PriceOverrides::InputPerMillionMicros))
                .col(big_integer(PriceOverrides::OutputPerMillionMicros))
                .col(big_integer(PriceOverrides::CacheWrite5mPerMillionMicros))
                .col(big_integer(PriceOverrides::CacheWrite1hPerMillionMicros))
                .col(big_integer(PriceOverrides::CacheReadPerMillionMicros))
                .col(timestamp_with_time_zone(PriceOverrides::CreatedAt))
                .col(timestamp_with_time_zone(PriceOverrides::UpdatedAt))
                .index(
                    Index::create()
                        .name("ux_price_overrides_key")
                        .col(PriceOverrides::Provider)
                        .col(PriceOverrides::Region)
                        .col(PriceOverrides::Model)
                        .col(PriceOverrides::EffectiveDate)
                        .unique(),
                )
                .to_owned(),
        )
        .await
}
