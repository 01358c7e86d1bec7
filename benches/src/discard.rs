//! A store that takes every batch and keeps nothing: the batching writer's own cost,
//! without a database behind it.

use std::convert::Infallible;

use usage_layer::UsageRecord;
use usage_layer::sink::UsageStore;

/// A [`UsageStore`] that accepts every batch and drops it.
#[derive(Clone, Copy, Debug, Default)]
pub struct Discard;

impl UsageStore for Discard {
    type Error = Infallible;

    async fn write_batch(&self, _batch: &[UsageRecord]) -> Result<(), Infallible> {
        Ok(())
    }
}
