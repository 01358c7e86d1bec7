//! Indexes for the breakdowns read from the rows of a range (see
//! [`UsageQueries::outcomes`](crate::store::sea_orm::UsageQueries::outcomes)): how the
//! requests ended, which fell back, which were recorded without a price.
//!
//! The last two are partial indexes: fallbacks and unpriced rows are few, so reading them
//! costs what they are, not what the range holds. A query uses a partial index only when
//! its `WHERE` holds the index's condition as written, so the queries take theirs from
//! here ([`FALLBACK`], [`UNPRICED`]).

use sea_orm_migration::prelude::*;

/// Requests per provider and outcome, read from the index alone; it serves every
/// search by time too, so it replaces the legacy schema's index on `timestamp`.
const OUTCOME: &str = "ix_token_usage_timestamp_provider_outcome";
const LEGACY_TIMESTAMP: &str = "ix_token_usage_timestamp";
const FALLBACK_INDEX: &str = "ix_token_usage_fallback";
const UNPRICED_INDEX: &str = "ix_token_usage_unpriced";

/// The rows that fell back: the condition of their index.
pub(crate) const FALLBACK: &str = "fallback_from IS NOT NULL";
/// The rows recorded without a price: the condition of their index.
pub(crate) const UNPRICED: &str = "unpriced";

#[derive(Clone, Copy, Debug, DeriveMigrationName)]
pub(super) struct Migration;

#[sea_orm_migration::async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for sql in [
            format!("CREATE INDEX {OUTCOME} ON token_usage (timestamp, provider, outcome)"),
            format!("CREATE INDEX {FALLBACK_INDEX} ON token_usage (timestamp) WHERE {FALLBACK}"),
            format!("CREATE INDEX {UNPRICED_INDEX} ON token_usage (timestamp) WHERE {UNPRICED}"),
            format!("DROP INDEX {LEGACY_TIMESTAMP}"),
        ] {
            manager.get_connection().execute_unprepared(&sql).await?;
        }
        Ok(())
    }

    /// Indexes hold nothing of their own: down drops them (and brings the legacy one back).
    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .get_connection()
            .execute_unprepared(&format!(
                "CREATE INDEX {LEGACY_TIMESTAMP} ON token_usage (timestamp)"
            ))
            .await?;
        for name in [UNPRICED_INDEX, FALLBACK_INDEX, OUTCOME] {
            manager
                .drop_index(
                    Index::drop()
                        .name(name)
                        .table(Alias::new("token_usage"))
                        .to_owned(),
                )
                .await?;
        }
        Ok(())
    }

    fn use_transaction(&self) -> Option<bool> {
        Some(true)
    }
}
