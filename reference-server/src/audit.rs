//! The audit log: who changed what, when — every change through the admin API (bearer
//! token or console session) and every console login and logout.

use chrono::Utc;
use sea_orm::ActiveValue::Set;
use sea_orm::{DatabaseConnection, EntityTrait};
use uuid::Uuid;

use crate::entity::audit_log;

/// One entry to write.
#[derive(Clone, Debug)]
pub struct Entry<'a> {
    /// `admin:<name>`, `token` or `anonymous`.
    pub actor: &'a str,
    /// `POST /admin/users/{user_id}/keys`, `login`, `logout`.
    pub action: &'a str,
    /// The path acted on.
    pub target: Option<&'a str>,
    /// The answer's status.
    pub status: u16,
    /// More about it; never a secret.
    pub detail: Option<&'a str>,
}

/// Writes `entry`. A failure is logged as an error with the entry: the change happened,
/// and its record must not vanish quietly.
pub async fn record(db: &DatabaseConnection, entry: Entry<'_>) {
    let row = audit_log::ActiveModel {
        id: Set(Uuid::now_v7()),
        at: Set(Utc::now()),
        actor: Set(entry.actor.to_owned()),
        action: Set(entry.action.to_owned()),
        target: Set(entry.target.map(str::to_owned)),
        status: Set(i32::from(entry.status)),
        detail: Set(entry.detail.map(str::to_owned)),
    };
    if let Err(error) = audit_log::Entity::insert(row).exec(db).await {
        tracing::error!(
            %error,
            actor = entry.actor,
            action = entry.action,
            target = entry.target,
            status = entry.status,
            "writing the audit log failed"
        );
    }
}
