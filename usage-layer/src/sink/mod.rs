//! Where records go: the [`UsageSink`] trait and its building blocks.
//!
//! A sink is called once per request, possibly from a body's `Drop`, on the response
//! path. So [`UsageSink::record`] is synchronous, must return quickly, and must not
//! panic; anything slow (a database, a metrics API) sits behind the
//! [`BatchWriter`], which queues records and writes them in the background.
//!
//! Sinks compose like `metrics` recorders: closures are sinks, `Arc<T>` shares one, and a
//! tuple fans each record out to every member. The `metrics` module's `MetricsSink`
//! (feature `metrics`) reports records as counters and histograms to any `metrics` exporter.
//!
//! ```
//! use usage_layer::sink::{MemorySink, UsageSink};
//! use usage_layer::{RequestId, UsageRecord};
//!
//! let memory = MemorySink::new();
//! let logged = |record: UsageRecord| eprintln!("{} {}", record.request_id, record.outcome);
//! let both = (memory.clone(), logged);
//! both.record(UsageRecord::new(RequestId::new(), chrono::Utc::now()));
//! assert_eq!(memory.records().len(), 1);
//! ```
#![cfg_attr(
    not(feature = "writer"),
    doc = "\n[`BatchWriter`]: the `BatchWriter` of the `writer` feature"
)]

#[cfg(feature = "writer")]
pub mod codec;
mod memory;
#[cfg(feature = "metrics")]
pub mod metrics;
#[cfg(feature = "writer")]
pub mod spool;
#[cfg(feature = "writer")]
mod writer;

use std::sync::Arc;

pub use memory::MemorySink;
// `self::`: the module shares its name with the `metrics` crate.
#[cfg(feature = "metrics")]
pub use self::metrics::{MetricLabel, MetricsConfig, MetricsSink};
#[cfg(feature = "writer")]
pub use spool::{Spool, SpoolConfig, SpoolError};
#[cfg(feature = "writer")]
pub use writer::{BatchWriter, WriterClosed, WriterConfig, WriterHandle, WriterStats};

pub use crate::store::UsageStore;

use crate::record::UsageRecord;

/// Receives one [`UsageRecord`] per request.
///
/// Implementations must be non-blocking and must not panic: `record` may run inside a
/// response body's `Drop`.
pub trait UsageSink {
    /// Takes the record of one finished request.
    fn record(&self, record: UsageRecord);
}

impl<F> UsageSink for F
where
    F: Fn(UsageRecord),
{
    fn record(&self, record: UsageRecord) {
        self(record)
    }
}

impl<T: UsageSink + ?Sized> UsageSink for Arc<T> {
    fn record(&self, record: UsageRecord) {
        (**self).record(record)
    }
}

/// `None` drops every record: a sink that is configured off.
impl<T: UsageSink> UsageSink for Option<T> {
    fn record(&self, record: UsageRecord) {
        if let Some(sink) = self {
            sink.record(record);
        }
    }
}

/// A sink that drops every record.
#[derive(Clone, Copy, Debug, Default)]
pub struct NoopSink;

impl UsageSink for NoopSink {
    fn record(&self, _record: UsageRecord) {}
}

macro_rules! fan_out {
    ($($name:ident)+ ; $last:ident) => {
        impl<$($name: UsageSink,)+ $last: UsageSink> UsageSink for ($($name,)+ $last) {
            #[allow(non_snake_case)]
            fn record(&self, record: UsageRecord) {
                let ($($name,)+ $last) = self;
                $($name.record(record.clone());)+
                $last.record(record);
            }
        }
    };
}

fan_out!(A; B);
fan_out!(A B; C);
fan_out!(A B C; D);
