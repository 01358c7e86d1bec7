//! The sea-orm entities of the two usage tables (created by [`migration`](super::migration)).
//!
//! Money columns are integer micro-USD (`*_micros`): exact on every backend.

pub mod token_usage;
pub mod usage_aggregates;
