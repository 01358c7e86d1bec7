//! Durable stores: the [`UsageStore`] trait, the stores this crate ships, and the time
//! buckets they aggregate by.
//!
//! * `sea_orm` (feature `sea-orm`) — `token_usage` rows and `usage_aggregates` buckets
//!   on Postgres or SQLite.
//! * `cloudwatch` (feature `cloudwatch`) — per-provider CloudWatch metrics.
//! * `nats` (feature `nats`) — records published to NATS JetStream, and the ingester that
//!   writes them from there through another store.

#[cfg(feature = "sea-orm")]
mod buckets;
#[cfg(feature = "cloudwatch")]
pub mod cloudwatch;
#[cfg(feature = "nats")]
pub mod nats;
#[cfg(feature = "sea-orm")]
pub mod sea_orm;

#[cfg(feature = "sea-orm")]
pub use buckets::{BucketType, Buckets, UnknownBucketType};

use std::future::Future;

use crate::record::{Provider, UsageRecord};

/// Durable storage for records, written a batch at a time (a database, a metrics API).
///
/// A batch may be written again after an error (a writer retries, and the
/// [`BatchWriter`](crate::sink::BatchWriter) of feature `writer` replays its spool), so a
/// store must be idempotent by [`UsageRecord::request_id`]. The trait needs no runtime:
/// a store can be driven by any writer.
pub trait UsageStore: Send + Sync + 'static {
    /// The store's error.
    type Error: std::error::Error + Send + Sync + 'static;

    /// Writes every record of `batch`, or fails as a whole.
    fn write_batch(
        &self,
        batch: &[UsageRecord],
    ) -> impl Future<Output = Result<(), Self::Error>> + Send;
}

/// The provider the stores record a record under: the one it names, else `bedrock`.
///
/// This is the original system's rule, which its requirements keep for compatibility: "a
/// recording call that names no provider means `bedrock`" (so rows written before there
/// were providers, and callers that never say, stay Bedrock's). It applies here, where a
/// record is stored, and nowhere before: the layer never invents a provider, and its
/// [`Diagnostics`](crate::diagnostics::Diagnostics) count the records that lack one.
pub fn recorded_provider(record: &UsageRecord) -> &Provider {
    record.provider.as_ref().unwrap_or(&Provider::BEDROCK)
}
