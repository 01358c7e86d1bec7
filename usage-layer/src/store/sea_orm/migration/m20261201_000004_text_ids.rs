//! Text ids, and what a record carries beyond the usage: its labels, API format and
//! reasoning tokens.
//!
//! Request, user and access key ids were UUIDs; they become text, so a caller can be a
//! team, a project or an API-key name, and a request id whatever its header carried.
//! Existing UUIDs become their lowercase hyphenated text (the form the store writes a
//! UUID in). On Postgres the columns change type; SQLite has no column types to change —
//! the columns were declared `uuid_text`, of text affinity, but sqlx wrote UUIDs as
//! 16-byte blobs — so each blob is replaced by its text in place (the table, its keys
//! and indexes stay as they are).
//!
//! In `usage_aggregates`, "no user" and "no key" become the empty string instead of the
//! nil UUID (the key columns are never NULL: NULLs are distinct in a unique key).

use sea_orm_migration::prelude::*;
use sea_orm_migration::schema::*;
use sea_orm_migration::sea_orm::DbBackend;

use super::rollback;

/// Makes the id columns text; adds `labels`, `format` and `reasoning_tokens`.
#[derive(Clone, Copy, Debug, DeriveMigrationName)]
pub(super) struct Migration;

#[derive(Clone, Copy, DeriveIden)]
enum TokenUsage {
    Labels,
    Format,
    ReasoningTokens,
}

/// Where `down` keeps the `token_usage` rows that have an id the old schema cannot hold.
pub(super) const ROWS_ROLLBACK: &str = "token_usage_text_ids_rollback";
/// Where `down` keeps the aggregates of such ids.
pub(super) const AGGREGATES_ROLLBACK: &str = "usage_aggregates_text_ids_rollback";
/// Where `down` keeps the new columns of the other rows.
pub(super) const COLUMNS_ROLLBACK: &str = "token_usage_labels_rollback";

/// The id columns of each table.
const IDS: [(&str, &[&str]); 2] = [
    ("token_usage", &["request_id", "user_id", "access_key_id"]),
    ("usage_aggregates", &["user_id", "access_key_id"]),
];

/// "Nobody" in an aggregate key, before and after.
const NIL_UUID: &str = "00000000-0000-0000-0000-000000000000";

fn columns() -> Vec<ColumnDef> {
    use TokenUsage::*;
    vec![
        text_null(Labels),
        string_len_null(Format, 32),
        big_integer_null(ReasoningTokens),
    ]
}

async fn run(manager: &SchemaManager<'_>, sql: &str) -> Result<(), DbErr> {
    manager.get_connection().execute_unprepared(sql).await?;
    Ok(())
}

/// SQL: `column` holds a UUID in the form this migration writes (lowercase, hyphenated),
/// which is the only text that goes back to a UUID and again to the same text.
fn is_uuid(backend: DbBackend, column: &str) -> String {
    let hex = |n| "[0-9a-f]".repeat(n);
    let groups = [8, 4, 4, 4, 12];
    match backend {
        DbBackend::Postgres => {
            let pattern: Vec<String> = groups.iter().map(|&n| format!("[0-9a-f]{{{n}}}")).collect();
            format!("{column} ~ '^{}$'", pattern.join("-"))
        }
        _ => {
            let pattern: Vec<String> = groups.iter().map(|&n| hex(n)).collect();
            format!("{column} GLOB '{}'", pattern.join("-"))
        }
    }
}

async fn to_text(manager: &SchemaManager<'_>, table: &str, column: &str) -> Result<(), DbErr> {
    let sql = match manager.get_database_backend() {
        DbBackend::Postgres => {
            format!("ALTER TABLE {table} ALTER COLUMN {column} TYPE text USING {column}::text")
        }
        _ => {
            let part = |from, len| format!("substr(hex({column}), {from}, {len})");
            let text = [
                part(1, 8),
                part(9, 4),
                part(13, 4),
                part(17, 4),
                part(21, 12),
            ]
            .join(" || '-' || ");
            format!(
                "UPDATE {table} SET {column} = lower({text}) \
                 WHERE typeof({column}) = 'blob' AND length({column}) = 16"
            )
        }
    };
    run(manager, &sql).await
}

async fn to_uuid(manager: &SchemaManager<'_>, table: &str, column: &str) -> Result<(), DbErr> {
    let sql = match manager.get_database_backend() {
        DbBackend::Postgres => {
            format!("ALTER TABLE {table} ALTER COLUMN {column} TYPE uuid USING {column}::uuid")
        }
        // As sqlx writes a UUID: its 16 bytes (`unhex`: SQLite 3.41 or later).
        _ => format!(
            "UPDATE {table} SET {column} = unhex(replace({column}, '-', '')) \
             WHERE typeof({column}) = 'text'"
        ),
    };
    run(manager, &sql).await
}

/// Sets every aggregate's "nobody" from `from` to `to`.
async fn nobody(manager: &SchemaManager<'_>, from: &str, to: &str) -> Result<(), DbErr> {
    for column in IDS[1].1 {
        run(
            manager,
            &format!("UPDATE usage_aggregates SET {column} = '{to}' WHERE {column} = '{from}'"),
        )
        .await?;
    }
    Ok(())
}

#[sea_orm_migration::async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for (table, ids) in IDS {
            for id in ids {
                to_text(manager, table, id).await?;
            }
        }
        nobody(manager, NIL_UUID, "").await?;
        rollback::add_columns(
            manager,
            "token_usage",
            "request_id",
            columns(),
            COLUMNS_ROLLBACK,
        )
        .await?;
        rollback::take_back_rows(manager, "token_usage", ROWS_ROLLBACK).await?;
        rollback::take_back_rows(manager, "usage_aggregates", AGGREGATES_ROLLBACK).await
    }

    /// The rows with an id that is not a UUID (and their aggregates) are set aside
    /// whole; the labels, format and reasoning tokens of the others by `request_id`. All
    /// come back with the next `up`.
    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let backend = manager.get_database_backend();
        for (table, ids) in IDS {
            // "Nobody" is NULL in the rows, '' in the aggregates.
            let (rollback, somebody) = if table == "token_usage" {
                (ROWS_ROLLBACK, "IS NOT NULL")
            } else {
                (AGGREGATES_ROLLBACK, "<> ''")
            };
            let foreign = ids
                .iter()
                .map(|id| format!("({id} {somebody} AND NOT ({}))", is_uuid(backend, id)))
                .collect::<Vec<_>>()
                .join(" OR ");
            rollback::set_aside_rows(manager, table, &foreign, rollback).await?;
        }
        rollback::set_aside_columns(
            manager,
            "token_usage",
            "request_id",
            &columns(),
            COLUMNS_ROLLBACK,
        )
        .await?;
        nobody(manager, "", NIL_UUID).await?;
        for (table, ids) in IDS {
            for id in ids {
                to_uuid(manager, table, id).await?;
            }
        }
        Ok(())
    }

    fn use_transaction(&self) -> Option<bool> {
        Some(true)
    }
}
