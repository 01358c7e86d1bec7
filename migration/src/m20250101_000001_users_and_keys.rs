//! The reference server's users and access keys, as the original system had them.
//!
//! The original system created them in one migration with the usage tables
//! (`m20250101_000001_legacy_schema`, recorded in `seaql_migrations`); the usage tables
//! are the usage layer's own now.

use sea_orm_migration::prelude::*;
use sea_orm_migration::schema::*;
use usage_layer::store::sea_orm::migration::rollback;

/// Creates `users` and `access_keys`.
#[derive(Clone, Copy, Debug, DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum Users {
    Table,
    Id,
    Name,
    IsActive,
    MonthlyBudgetMicros,
    RoutingStrategy,
    CreatedAt,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum AccessKeys {
    Table,
    Id,
    UserId,
    KeyHash,
    KeyPrefix,
    Name,
    IsActive,
    CreatedAt,
    RevokedAt,
    LastUsedAt,
}

/// `users`, and where a rollback sets it aside.
pub(crate) const USERS: (&str, &str) = ("users", "users_rollback");
/// `access_keys`, and where a rollback sets it aside.
pub(crate) const ACCESS_KEYS: (&str, &str) = ("access_keys", "access_keys_rollback");

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        // Tables an earlier rollback set aside come back as they were.
        if !rollback::take_back_table(manager, USERS.0, USERS.1).await? {
            create_users(manager).await?;
        }
        if !rollback::take_back_table(manager, ACCESS_KEYS.0, ACCESS_KEYS.1).await? {
            create_access_keys(manager).await?;
        }
        Ok(())
    }

    /// Sets both tables aside (renamed to `*_rollback`): rolling back deletes no data.
    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        rollback::set_aside_table(manager, ACCESS_KEYS.0, ACCESS_KEYS.1).await?;
        rollback::set_aside_table(manager, USERS.0, USERS.1).await
    }

    fn use_transaction(&self) -> Option<bool> {
        Some(true)
    }
}

async fn create_users(manager: &SchemaManager<'_>) -> Result<(), DbErr> {
    manager
        .create_table(
            Table::create()
                .table(Users::Table)
                .col(uuid(Users::Id).primary_key())
                .col(text(Users::Name))
                .col(boolean(Users::IsActive).default(true))
                .col(big_integer_null(Users::MonthlyBudgetMicros))
                .col(string_len(Users::RoutingStrategy, 32).default("plan_first"))
                .col(timestamp_with_time_zone(Users::CreatedAt))
                .col(timestamp_with_time_zone(Users::UpdatedAt))
                .to_owned(),
        )
        .await
}

async fn create_access_keys(manager: &SchemaManager<'_>) -> Result<(), DbErr> {
    manager
        .create_table(
            Table::create()
                .table(AccessKeys::Table)
                .col(uuid(AccessKeys::Id).primary_key())
                .col(uuid(AccessKeys::UserId))
                .col(string_len_uniq(AccessKeys::KeyHash, 64))
                .col(string_len(AccessKeys::KeyPrefix, 16))
                .col(text_null(AccessKeys::Name))
                .col(boolean(AccessKeys::IsActive).default(true))
                .col(timestamp_with_time_zone(AccessKeys::CreatedAt))
                .col(timestamp_with_time_zone_null(AccessKeys::RevokedAt))
                .col(timestamp_with_time_zone_null(AccessKeys::LastUsedAt))
                .foreign_key(
                    ForeignKey::create()
                        .from(AccessKeys::Table, AccessKeys::UserId)
                        .to(Users::Table, Users::Id)
                        .on_delete(ForeignKeyAction::Cascade),
                )
                .to_owned(),
        )
        .await?;
    manager
        .create_index(
            Index::create()
                .name("ix_access_keys_user")
                .table(AccessKeys::Table)
                .col(AccessKeys::UserId)
                .to_owned(),
        )
        .await
}
