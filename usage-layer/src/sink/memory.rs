//! An in-memory sink, for tests and examples.

use std::sync::{Arc, Mutex, MutexGuard};

use super::UsageSink;
use crate::record::UsageRecord;

/// Keeps every record in memory; clones share the same records.
#[derive(Clone, Debug, Default)]
pub struct MemorySink {
    records: Arc<Mutex<Vec<UsageRecord>>>,
}

impl MemorySink {
    /// An empty sink.
    pub fn new() -> Self {
        Self::default()
    }

    /// A copy of the records so far, in arrival order.
    pub fn records(&self) -> Vec<UsageRecord> {
        self.lock().clone()
    }

    /// Takes the records so far, leaving the sink empty.
    pub fn take(&self) -> Vec<UsageRecord> {
        std::mem::take(&mut *self.lock())
    }

    /// How many records arrived so far.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// Whether no record arrived yet.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    // A panic elsewhere while holding the lock must not make `record` panic (it runs in `Drop`).
    fn lock(&self) -> MutexGuard<'_, Vec<UsageRecord>> {
        self.records
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl UsageSink for MemorySink {
    fn record(&self, record: UsageRecord) {
        self.lock().push(record);
    }
}
