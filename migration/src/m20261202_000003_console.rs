//! The admin console's tables: its accounts (argon2id password hashes and a role), their
//! sessions, and the audit log of every change made through the admin API.

use sea_orm_migration::prelude::*;
use sea_orm_migration::schema::*;
use usage_layer::store::sea_orm::migration::rollback;

/// Creates `admins`, `admin_sessions` and `audit_log`.
#[derive(Clone, Copy, Debug, DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum Admins {
    Table,
    Id,
    Name,
    PasswordHash,
    Role,
    CreatedAt,
    DisabledAt,
    LastLoginAt,
}

#[derive(DeriveIden)]
enum AdminSessions {
    Table,
    Id,
    AdminId,
    CsrfToken,
    CreatedAt,
    ExpiresAt,
}

#[derive(DeriveIden)]
enum AuditLog {
    Table,
    Id,
    At,
    Actor,
    Action,
    Target,
    Status,
    Detail,
}

/// `admins`, and where a rollback sets it aside.
pub(crate) const ADMINS: (&str, &str) = ("admins", "admins_rollback");
/// `admin_sessions`, and where a rollback sets it aside.
pub(crate) const ADMIN_SESSIONS: (&str, &str) = ("admin_sessions", "admin_sessions_rollback");
/// `audit_log`, and where a rollback sets it aside.
pub(crate) const AUDIT_LOG: (&str, &str) = ("audit_log", "audit_log_rollback");

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        if !rollback::take_back_table(manager, ADMINS.0, ADMINS.1).await? {
            manager
                .create_table(
                    Table::create()
                        .table(Admins::Table)
                        .col(uuid(Admins::Id).primary_key())
                        .col(string_len_uniq(Admins::Name, 64))
                        .col(text(Admins::PasswordHash))
                        .col(string_len(Admins::Role, 16))
                        .col(timestamp_with_time_zone(Admins::CreatedAt))
                        .col(timestamp_with_time_zone_null(Admins::DisabledAt))
                        .col(timestamp_with_time_zone_null(Admins::LastLoginAt))
                        .to_owned(),
                )
                .await?;
        }
        if !rollback::take_back_table(manager, ADMIN_SESSIONS.0, ADMIN_SESSIONS.1).await? {
            manager
                .create_table(
                    Table::create()
                        .table(AdminSessions::Table)
                        .col(string_len(AdminSessions::Id, 64).primary_key())
                        .col(uuid(AdminSessions::AdminId))
                        .col(string_len(AdminSessions::CsrfToken, 64))
                        .col(timestamp_with_time_zone(AdminSessions::CreatedAt))
                        .col(timestamp_with_time_zone(AdminSessions::ExpiresAt))
                        .foreign_key(
                            ForeignKey::create()
                                .from(AdminSessions::Table, AdminSessions::AdminId)
                                .to(Admins::Table, Admins::Id)
                                .on_delete(ForeignKeyAction::Cascade),
                        )
                        .to_owned(),
                )
                .await?;
        }
        if !rollback::take_back_table(manager, AUDIT_LOG.0, AUDIT_LOG.1).await? {
            manager
                .create_table(
                    Table::create()
                        .table(AuditLog::Table)
                        .col(uuid(AuditLog::Id).primary_key())
                        .col(timestamp_with_time_zone(AuditLog::At))
                        .col(string_len(AuditLog::Actor, 96))
                        .col(string_len(AuditLog::Action, 256))
                        .col(text_null(AuditLog::Target))
                        .col(integer(AuditLog::Status))
                        .col(text_null(AuditLog::Detail))
                        .to_owned(),
                )
                .await?;
            manager
                .create_index(
                    Index::create()
                        .name("ix_audit_log_at")
                        .table(AuditLog::Table)
                        .col(AuditLog::At)
                        .to_owned(),
                )
                .await?;
        }
        Ok(())
    }

    /// Sets the tables aside: rolling back deletes no data.
    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        rollback::set_aside_table(manager, AUDIT_LOG.0, AUDIT_LOG.1).await?;
        rollback::set_aside_table(manager, ADMIN_SESSIONS.0, ADMIN_SESSIONS.1).await?;
        rollback::set_aside_table(manager, ADMINS.0, ADMINS.1).await
    }

    fn use_transaction(&self) -> Option<bool> {
        Some(true)
    }
}
