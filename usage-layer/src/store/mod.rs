//! Durable stores for the [`BatchWriter`](crate::sink::BatchWriter), and the time buckets
//! they aggregate by.
//!
//! * [`sea_orm`] (feature `sea-orm`) — `token_usage` rows and `usage_aggregates` buckets
//!   on Postgres or SQLite.

mod buckets;
#[cfg(feature = "sea-orm")]
pub mod sea_orm;

pub use buckets::{BucketType, Buckets, UnknownBucketType};
