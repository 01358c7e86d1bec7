//! Durable stores for the [`BatchWriter`](crate::sink::BatchWriter), and the time buckets
//! they aggregate by.
//!
//! * [`sea_orm`] (feature `sea-orm`) — `token_usage` rows and `usage_aggregates` buckets
//!   on Postgres or SQLite.
//! * [`cloudwatch`] (feature `cloudwatch`) — per-provider CloudWatch metrics.

#[cfg(feature = "sea-orm")]
mod buckets;
#[cfg(feature = "cloudwatch")]
pub mod cloudwatch;
#[cfg(feature = "sea-orm")]
pub mod sea_orm;

#[cfg(feature = "sea-orm")]
pub use buckets::{BucketType, Buckets, UnknownBucketType};

use crate::record::{Provider, UsageRecord};

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
