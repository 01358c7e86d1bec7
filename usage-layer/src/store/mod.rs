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
