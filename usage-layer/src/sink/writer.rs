//! The background batching writer: an async [`UsageStore`] behind a non-blocking sink.

use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio::time::{Instant, sleep, sleep_until};

use super::UsageSink;
use crate::record::UsageRecord;

/// Durable storage for records, written a batch at a time (a database, a metrics API).
///
/// A batch may be written again after an error (the writer retries), so a store must be
/// idempotent by [`UsageRecord::request_id`].
pub trait UsageStore: Send + Sync + 'static {
    /// The store's error.
    type Error: std::error::Error + Send + Sync + 'static;

    /// Writes every record of `batch`, or fails as a whole.
    fn write_batch(
        &self,
        batch: &[UsageRecord],
    ) -> impl Future<Output = Result<(), Self::Error>> + Send;
}

/// How the [`BatchWriter`] queues, batches and retries.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct WriterConfig {
    /// Records the queue holds before new ones are dropped (and counted).
    pub queue_capacity: usize,
    /// A batch is written as soon as it has this many records.
    pub max_batch: usize,
    /// …or when its oldest record has waited this long.
    pub flush_interval: Duration,
    /// The first retry's delay; each next one doubles, up to `retry_max_delay`.
    pub retry_initial_delay: Duration,
    /// The longest delay between two attempts.
    pub retry_max_delay: Duration,
    /// Attempts per batch before its records are counted as failed.
    pub max_attempts: u32,
}

impl Default for WriterConfig {
    fn default() -> Self {
        Self {
            queue_capacity: 65_536,
            max_batch: 500,
            flush_interval: Duration::from_secs(1),
            retry_initial_delay: Duration::from_millis(100),
            retry_max_delay: Duration::from_secs(30),
            max_attempts: 10,
        }
    }
}

/// The writer's counters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct WriterStats {
    /// Records accepted into the queue.
    pub queued: u64,
    /// Records the store took.
    pub written: u64,
    /// Records of batches that failed every attempt.
    pub failed: u64,
    /// Records refused: the queue was full, or the writer had stopped.
    pub dropped: u64,
}

impl WriterStats {
    /// Records accepted but not yet written or failed.
    pub fn pending(&self) -> u64 {
        self.queued.saturating_sub(self.written + self.failed)
    }
}

#[derive(Debug, Default)]
struct Counters {
    queued: AtomicU64,
    written: AtomicU64,
    failed: AtomicU64,
    dropped: AtomicU64,
}

impl Counters {
    fn snapshot(&self) -> WriterStats {
        // `written`/`failed` first: a concurrent write can then never make `pending` negative.
        let written = self.written.load(Ordering::Acquire);
        let failed = self.failed.load(Ordering::Acquire);
        WriterStats {
            queued: self.queued.load(Ordering::Acquire),
            written,
            failed,
            dropped: self.dropped.load(Ordering::Acquire),
        }
    }
}

#[allow(
    clippy::large_enum_variant,
    reason = "records are nearly all the traffic: boxing them would allocate per record"
)]
enum Command {
    Record(UsageRecord),
    Flush(oneshot::Sender<()>),
    Shutdown(oneshot::Sender<()>),
}

/// The writer has stopped; nothing more can be flushed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("the usage writer has stopped")]
pub struct WriterClosed;

/// A [`UsageSink`] that queues records for a background task writing them to a
/// [`UsageStore`] in batches.
///
/// [`record`](UsageSink::record) never blocks: when the queue is full the record is
/// dropped and counted in [`WriterStats::dropped`]. Clones share one queue.
///
/// ```
/// use std::convert::Infallible;
/// use usage_layer::sink::{BatchWriter, UsageSink, UsageStore, WriterConfig};
/// use usage_layer::{RequestId, UsageRecord};
///
/// struct Stdout;
///
/// impl UsageStore for Stdout {
///     type Error = Infallible;
///
///     async fn write_batch(&self, batch: &[UsageRecord]) -> Result<(), Infallible> {
///         println!("{} records", batch.len());
///         Ok(())
///     }
/// }
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let (sink, writer) = BatchWriter::spawn(Stdout, WriterConfig::default());
/// sink.record(UsageRecord::new(RequestId::new(), chrono::Utc::now()));
/// let stats = writer.shutdown().await.unwrap(); // drains the queue
/// assert_eq!(stats.written, 1);
/// # }
/// ```
#[derive(Clone)]
pub struct BatchWriter {
    tx: mpsc::Sender<Command>,
    counters: Arc<Counters>,
}

/// Controls a running [`BatchWriter`]: flush, shut down, read the counters.
pub struct WriterHandle {
    tx: mpsc::Sender<Command>,
    counters: Arc<Counters>,
    task: JoinHandle<()>,
}

impl BatchWriter {
    /// Starts the background task (on the current tokio runtime).
    pub fn spawn<S: UsageStore>(store: S, config: WriterConfig) -> (BatchWriter, WriterHandle) {
        let (tx, rx) = mpsc::channel(config.queue_capacity.max(1));
        let counters = Arc::new(Counters::default());
        let task = tokio::spawn(
            Worker {
                store,
                config,
                counters: counters.clone(),
                batch: Vec::new(),
            }
            .run(rx),
        );
        let sink = BatchWriter {
            tx: tx.clone(),
            counters: counters.clone(),
        };
        (sink, WriterHandle { tx, counters, task })
    }

    /// The writer's counters.
    pub fn stats(&self) -> WriterStats {
        self.counters.snapshot()
    }
}

impl UsageSink for BatchWriter {
    fn record(&self, record: UsageRecord) {
        // Counted before sending, so `queued` never trails `written`.
        self.counters.queued.fetch_add(1, Ordering::AcqRel);
        if let Err(error) = self.tx.try_send(Command::Record(record)) {
            self.counters.queued.fetch_sub(1, Ordering::AcqRel);
            let dropped = self.counters.dropped.fetch_add(1, Ordering::AcqRel) + 1;
            // Log the 1st, 2nd, 4th, 8th… drop: visible, but no flood.
            if dropped.is_power_of_two() {
                let reason = match error {
                    mpsc::error::TrySendError::Full(_) => "queue full",
                    mpsc::error::TrySendError::Closed(_) => "writer stopped",
                };
                tracing::error!(dropped, reason, "usage record dropped");
            }
        }
    }
}

impl WriterHandle {
    /// Writes everything queued before this call; returns once it is written (or failed).
    pub async fn flush(&self) -> Result<(), WriterClosed> {
        let (done, wait) = oneshot::channel();
        self.tx
            .send(Command::Flush(done))
            .await
            .map_err(|_| WriterClosed)?;
        wait.await.map_err(|_| WriterClosed)
    }

    /// Stops taking records, writes everything queued, and waits for the task to end.
    pub async fn shutdown(self) -> Result<WriterStats, WriterClosed> {
        let (done, wait) = oneshot::channel();
        self.tx
            .send(Command::Shutdown(done))
            .await
            .map_err(|_| WriterClosed)?;
        wait.await.map_err(|_| WriterClosed)?;
        self.task.await.map_err(|_| WriterClosed)?;
        Ok(self.counters.snapshot())
    }

    /// The writer's counters.
    pub fn stats(&self) -> WriterStats {
        self.counters.snapshot()
    }
}

struct Worker<S> {
    store: S,
    config: WriterConfig,
    counters: Arc<Counters>,
    batch: Vec<UsageRecord>,
}

impl<S: UsageStore> Worker<S> {
    async fn run(mut self, mut rx: mpsc::Receiver<Command>) {
        // When the oldest record of the current batch must be written.
        let mut deadline: Option<Instant> = None;
        loop {
            let command = tokio::select! {
                command = rx.recv() => command,
                () = sleep_until(deadline.unwrap_or_else(Instant::now)), if deadline.is_some() => {
                    deadline = None;
                    self.write().await;
                    continue;
                }
            };
            match command {
                Some(Command::Record(record)) => {
                    deadline.get_or_insert_with(|| Instant::now() + self.config.flush_interval);
                    if self.push(record).await {
                        deadline = None;
                    }
                }
                Some(Command::Flush(done)) => {
                    deadline = None;
                    self.write().await;
                    let _ = done.send(());
                }
                Some(Command::Shutdown(done)) => {
                    self.drain(rx).await;
                    let _ = done.send(());
                    return;
                }
                None => {
                    self.write().await;
                    return;
                }
            }
        }
    }

    /// Adds a record; writes the batch when full. Returns whether it wrote.
    async fn push(&mut self, record: UsageRecord) -> bool {
        self.batch.push(record);
        let full = self.batch.len() >= self.config.max_batch;
        if full {
            self.write().await;
        }
        full
    }

    /// Takes no new records, and writes all that were queued.
    async fn drain(&mut self, mut rx: mpsc::Receiver<Command>) {
        rx.close();
        let mut waiting = Vec::new();
        while let Some(command) = rx.recv().await {
            match command {
                Command::Record(record) => {
                    self.push(record).await;
                }
                Command::Flush(done) | Command::Shutdown(done) => waiting.push(done),
            }
        }
        self.write().await;
        for done in waiting {
            let _ = done.send(());
        }
    }

    /// Writes the current batch, retrying with exponential backoff.
    async fn write(&mut self) {
        if self.batch.is_empty() {
            return;
        }
        let count = self.batch.len() as u64;
        let mut delay = self.config.retry_initial_delay;
        let mut attempt = 1;
        loop {
            match self.store.write_batch(&self.batch).await {
                Ok(()) => {
                    self.counters.written.fetch_add(count, Ordering::AcqRel);
                    break;
                }
                Err(error) if attempt < self.config.max_attempts => {
                    tracing::warn!(%error, attempt, records = count, retry_in = ?delay, "usage batch write failed");
                    sleep(delay).await;
                    delay = (delay * 2).min(self.config.retry_max_delay);
                    attempt += 1;
                }
                Err(error) => {
                    tracing::error!(%error, attempts = attempt, records = count, "usage batch not written");
                    self.counters.failed.fetch_add(count, Ordering::AcqRel);
                    break;
                }
            }
        }
        self.batch.clear();
    }
}

impl fmt::Debug for BatchWriter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BatchWriter")
            .field("stats", &self.stats())
            .finish_non_exhaustive()
    }
}

impl fmt::Debug for WriterHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WriterHandle")
            .field("stats", &self.stats())
            .finish_non_exhaustive()
    }
}
