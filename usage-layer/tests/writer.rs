//! The background batching writer: batching by size and interval, retries, flush,
//! shutdown, and the counters.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::Utc;
use usage_layer::sink::{BatchWriter, UsageSink, UsageStore, WriterConfig};
use usage_layer::{RequestId, UsageRecord};

#[derive(Debug, thiserror::Error)]
#[error("store unavailable")]
struct Unavailable;

/// A store that keeps batches in memory and fails its first `failures` writes.
#[derive(Clone, Default)]
struct TestStore {
    batches: Arc<Mutex<Vec<Vec<RequestId>>>>,
    failures: Arc<Mutex<u32>>,
    attempts: Arc<Mutex<u32>>,
}

impl TestStore {
    fn failing(times: u32) -> Self {
        let store = Self::default();
        *store.failures.lock().unwrap() = times;
        store
    }

    fn batch_sizes(&self) -> Vec<usize> {
        self.batches.lock().unwrap().iter().map(Vec::len).collect()
    }

    fn ids(&self) -> Vec<RequestId> {
        self.batches.lock().unwrap().concat()
    }
}

impl UsageStore for TestStore {
    type Error = Unavailable;

    async fn write_batch(&self, batch: &[UsageRecord]) -> Result<(), Unavailable> {
        *self.attempts.lock().unwrap() += 1;
        {
            let mut failures = self.failures.lock().unwrap();
            if *failures > 0 {
                *failures -= 1;
                return Err(Unavailable);
            }
        }
        let ids = batch.iter().map(|r| r.request_id.clone()).collect();
        self.batches.lock().unwrap().push(ids);
        Ok(())
    }
}

fn record() -> UsageRecord {
    UsageRecord::new(RequestId::new(), Utc::now())
}

fn config(max_batch: usize) -> WriterConfig {
    let mut config = WriterConfig::default();
    config.max_batch = max_batch;
    config.flush_interval = Duration::from_secs(5);
    config.retry_initial_delay = Duration::from_millis(100);
    config.retry_max_delay = Duration::from_secs(1);
    config
}

#[tokio::test(start_paused = true)]
async fn full_batches_are_written_at_once_and_the_rest_on_the_interval() {
    let store = TestStore::default();
    let (sink, writer) = BatchWriter::spawn(store.clone(), config(10));
    let sent: Vec<UsageRecord> = (0..25).map(|_| record()).collect();
    for r in &sent {
        sink.record(r.clone());
    }
    tokio::time::sleep(Duration::from_millis(1)).await;
    assert_eq!(
        store.batch_sizes(),
        [10, 10],
        "two full batches, no waiting"
    );

    tokio::time::sleep(Duration::from_secs(6)).await;
    assert_eq!(
        store.batch_sizes(),
        [10, 10, 5],
        "the rest after the flush interval"
    );
    let ids: Vec<RequestId> = sent.iter().map(|r| r.request_id.clone()).collect();
    assert_eq!(store.ids(), ids, "in order, each once");

    let stats = writer.shutdown().await.unwrap();
    assert_eq!(
        (stats.queued, stats.written, stats.failed, stats.dropped),
        (25, 25, 0, 0)
    );
    assert_eq!(stats.pending(), 0);
}

#[tokio::test(start_paused = true)]
async fn flush_writes_everything_queued_before_it() {
    let store = TestStore::default();
    let (sink, writer) = BatchWriter::spawn(store.clone(), config(100));
    for _ in 0..7 {
        sink.record(record());
    }
    writer.flush().await.unwrap();
    assert_eq!(store.batch_sizes(), [7]);
    assert_eq!(writer.stats().written, 7);
    writer.flush().await.unwrap();
    assert_eq!(store.batch_sizes(), [7], "an empty flush writes nothing");
}

#[tokio::test(start_paused = true)]
async fn failed_writes_are_retried_with_backoff() {
    let store = TestStore::failing(3);
    let (sink, writer) = BatchWriter::spawn(store.clone(), config(100));
    sink.record(record());
    sink.record(record());
    let started = tokio::time::Instant::now();
    writer.flush().await.unwrap();
    // 100 ms + 200 ms + 400 ms of backoff before the fourth attempt succeeds.
    assert_eq!(started.elapsed(), Duration::from_millis(700));
    assert_eq!(*store.attempts.lock().unwrap(), 4);
    assert_eq!(store.batch_sizes(), [2]);
    let stats = writer.stats();
    assert_eq!((stats.written, stats.failed), (2, 0));
}

#[tokio::test(start_paused = true)]
async fn a_batch_failing_every_attempt_is_counted_failed() {
    let store = TestStore::failing(u32::MAX);
    let mut config = config(100);
    config.max_attempts = 3;
    let (sink, writer) = BatchWriter::spawn(store.clone(), config);
    for _ in 0..4 {
        sink.record(record());
    }
    writer.flush().await.unwrap();
    assert_eq!(*store.attempts.lock().unwrap(), 3);
    let stats = writer.stats();
    assert_eq!((stats.queued, stats.written, stats.failed), (4, 0, 4));
    assert_eq!(stats.pending(), 0);
}

#[tokio::test(start_paused = true)]
async fn shutdown_drains_the_queue_and_later_records_are_dropped() {
    let store = TestStore::default();
    let (sink, writer) = BatchWriter::spawn(store.clone(), config(1000));
    for _ in 0..300 {
        sink.record(record());
    }
    let stats = writer.shutdown().await.unwrap();
    assert_eq!(stats.written, 300);
    assert_eq!(store.ids().len(), 300);

    sink.record(record());
    assert_eq!(
        sink.stats().dropped,
        1,
        "a stopped writer counts what it refuses"
    );
}

#[tokio::test(start_paused = true)]
async fn a_full_queue_drops_and_counts_but_never_blocks() {
    let store = TestStore::failing(u32::MAX); // the writer is stuck retrying
    let mut config = config(1);
    config.queue_capacity = 8;
    config.max_attempts = u32::MAX;
    let (sink, writer) = BatchWriter::spawn(store, config);
    sink.record(record());
    tokio::time::sleep(Duration::from_millis(1)).await; // the writer takes it and stalls
    for _ in 0..20 {
        sink.record(record());
    }
    let stats = writer.stats();
    assert_eq!(stats.queued, 9);
    assert_eq!(stats.dropped, 12);
    assert_eq!(stats.pending(), 9);
}

#[tokio::test(start_paused = true)]
async fn the_writer_ends_when_every_sender_is_gone() {
    let store = TestStore::default();
    let (sink, writer) = BatchWriter::spawn(store.clone(), config(100));
    sink.record(record());
    assert_eq!(writer.stats().queued, 1);
    drop(sink);
    drop(writer);
    // The task writes what it has once the channel closes.
    tokio::time::sleep(Duration::from_millis(1)).await;
    assert_eq!(store.ids().len(), 1);
}
