//! The background batching writer: an async [`UsageStore`] behind a non-blocking sink.
//!
//! See [`BatchWriter`] for how records travel, and the spool.

use std::collections::VecDeque;
use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::sync::{Notify, oneshot};
use tokio::task::JoinHandle;
use tokio::time::{Instant, sleep, sleep_until};

use super::UsageSink;
use super::spool::{Spool, SpoolConfig, SpoolError};
use crate::record::UsageRecord;
use crate::store::UsageStore;

/// How the [`BatchWriter`] queues, batches, retries and spools.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct WriterConfig {
    /// Records the queue holds before new ones are dropped (and counted) — or, with a
    /// spool, spilled to it.
    pub queue_capacity: usize,
    /// A batch is written as soon as it has this many records.
    pub max_batch: usize,
    /// …or when its oldest record has waited this long.
    pub flush_interval: Duration,
    /// The first retry's delay; each next one doubles, up to `retry_max_delay`.
    pub retry_initial_delay: Duration,
    /// The longest delay between two attempts.
    pub retry_max_delay: Duration,
    /// Attempts per batch before its records are spooled (or, without a spool, counted
    /// as failed).
    pub max_attempts: u32,
    /// With a spool: a store call without an answer for this long is abandoned and its
    /// batch spooled at once — a store that hangs (a database host gone, packets dropped)
    /// would hang every retry too. `None`: no limit. An abandoned call may still land;
    /// the records are written again from the spool, which is harmless for a store that
    /// is idempotent on request ids, as [`UsageStore`] requires.
    pub attempt_timeout: Option<Duration>,
    /// Where records wait on disk while the store is down; `None`: they are not kept.
    pub spool: Option<SpoolConfig>,
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
            attempt_timeout: None,
            spool: None,
        }
    }
}

/// The writer's counters and gauges.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct WriterStats {
    /// Records accepted into the queue (and records found in the spool at start).
    pub queued: u64,
    /// Records the store took.
    pub written: u64,
    /// Records accepted but lost: their batch failed every attempt and there is no spool,
    /// or the spool refused them (full, or a disk error).
    pub failed: u64,
    /// Records refused: the queue was full (and there is no spool), or the writer had stopped.
    pub dropped: u64,
    /// Of `failed`: records the spool refused — it had reached its size cap, or its disk
    /// would not take them (full, read-only).
    pub spool_refused: u64,
    /// Records waiting in memory: the queue and the batch in hand.
    pub queue_depth: u64,
    /// Records waiting in the spool.
    pub spooled: u64,
    /// Bytes the spool takes on disk.
    pub spool_bytes: u64,
    /// When the oldest record not yet written started (the head of the spool, else of
    /// the batch, else of the queue); `None` when nothing waits.
    pub oldest_unwritten: Option<DateTime<Utc>>,
}

impl WriterStats {
    /// Records accepted but not yet written or failed (in memory or in the spool).
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
    spool_refused: AtomicU64,
    batch: AtomicU64,
    spooled: AtomicU64,
    spool_bytes: AtomicU64,
    /// The oldest record the task holds (in the spool or the batch); set only when that changes.
    oldest: Mutex<Option<DateTime<Utc>>>,
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

/// The queue between the sinks and the task.
#[derive(Default)]
struct Inbox {
    commands: VecDeque<Command>,
    /// Records among `commands`.
    records: usize,
    /// No more commands are taken: shut down, or every sender is gone.
    closed: bool,
    /// A shutdown is queued: the task stops waiting for the store.
    stopping: bool,
}

struct Shared {
    inbox: Mutex<Inbox>,
    wake: Notify,
    counters: Counters,
    capacity: usize,
    /// A spool is open: a full queue overflows instead of dropping.
    spill: AtomicBool,
}

impl Shared {
    // A panic elsewhere while holding the lock must not make `record` panic (it runs in `Drop`).
    fn inbox(&self) -> MutexGuard<'_, Inbox> {
        self.inbox
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn push(&self, command: Command) -> Result<(), WriterClosed> {
        let mut inbox = self.inbox();
        if inbox.closed {
            return Err(WriterClosed);
        }
        if let Command::Shutdown(_) = command {
            inbox.stopping = true;
        }
        inbox.commands.push_back(command);
        drop(inbox);
        self.wake.notify_one();
        Ok(())
    }

    fn stats(&self) -> WriterStats {
        let c = &self.counters;
        let (in_queue, queue_head) = {
            let inbox = self.inbox();
            let head = inbox.commands.iter().find_map(|command| match command {
                Command::Record(record) => Some(record.started_at),
                _ => None,
            });
            (inbox.records as u64, head)
        };
        // `written`/`failed` before `queued`: a concurrent write can then never make
        // `pending` negative.
        let written = c.written.load(Ordering::Acquire);
        let failed = c.failed.load(Ordering::Acquire);
        let oldest = *c
            .oldest
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        WriterStats {
            queued: c.queued.load(Ordering::Acquire),
            written,
            failed,
            dropped: c.dropped.load(Ordering::Acquire),
            spool_refused: c.spool_refused.load(Ordering::Acquire),
            queue_depth: in_queue + c.batch.load(Ordering::Acquire),
            spooled: c.spooled.load(Ordering::Acquire),
            spool_bytes: c.spool_bytes.load(Ordering::Acquire),
            oldest_unwritten: oldest.or(queue_head),
        }
    }
}

/// Closes the queue when the last sender ([`BatchWriter`] or [`WriterHandle`]) is dropped.
struct Senders(Arc<Shared>);

impl Drop for Senders {
    fn drop(&mut self) {
        self.0.inbox().closed = true;
        self.0.wake.notify_one();
    }
}

/// The writer has stopped; nothing more can be flushed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("the usage writer has stopped")]
pub struct WriterClosed;

/// A [`UsageSink`] that queues records for a background task writing them to a
/// [`UsageStore`] in batches.
///
/// [`record`](UsageSink::record) never blocks: when the queue is full the record is
/// dropped and counted in [`WriterStats::dropped`] — or, with a spool, kept for the task
/// to spill to disk. Clones share one queue.
///
/// # How a record travels
///
/// [`BatchWriter::record`](UsageSink::record) pushes the record onto an in-memory queue
/// under a short lock and wakes the writer task; nothing else happens on the response
/// path (no store call, no file I/O). The task takes records in queue order into a batch,
/// and writes the batch when it is full or its oldest record has waited
/// [`WriterConfig::flush_interval`], retrying failures with exponential backoff.
///
/// # The spool: no loss while the store is down
///
/// With [`WriterConfig::spool`] set, the records the store cannot take go to a
/// [`Spool`] on local disk instead of being lost:
///
/// * a batch that failed [`WriterConfig::max_attempts`] times is spooled;
/// * **queue full**: [`record`](UsageSink::record) still accepts the record (the queue
///   may then overflow its capacity), and the task stops waiting for the store — it
///   abandons the attempt in progress (the store is idempotent, so an abandoned write that
///   did commit is harmless) and spools its batch, then the queue. The overflow lives only
///   as long as the task needs to append it to disk.
/// * on [`shutdown`](WriterHandle::shutdown) (or when every sender is dropped), each batch
///   gets a single attempt and what fails is spooled; then the spool is replayed until the
///   store fails, for at most [`WriterConfig::retry_max_delay`]. So stopping takes bounded time
///   (each of these store calls is given up after `retry_max_delay` without an answer, and
///   its records spooled) and loses nothing: what is left
///   in the spool, the next writer on it replays.
///
/// **Order.** Records leave the queue in the order they were recorded. While the spool
/// holds records, every later batch is appended to it too, behind them; the task replays
/// the spool from its head, a batch at a time, probing the store with the same backoff.
/// Once the spool is empty, batches go straight to the store again. So records reach the
/// store in the order they were recorded, outage or not (a batch interrupted mid-write
/// may, in addition, be written once more: the store ignores the copy).
///
/// **Durability.** A spooled batch is synced to disk before the task lets go of it; see
/// the [`spool`](super::spool) module for the format and fsync policy. A process that is
/// killed loses only the records still in memory (at most the queue and one batch);
/// the next writer on the same spool directory replays the spool first.
///
/// Spool I/O runs on tokio's blocking pool, never on the runtime's threads.
///
/// # Examples
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
///
/// With a spool, open it first to see its errors ([`try_spawn`](Self::try_spawn)):
///
/// ```
/// # use std::convert::Infallible;
/// # use usage_layer::sink::{BatchWriter, UsageSink, UsageStore, WriterConfig, SpoolConfig};
/// # use usage_layer::{RequestId, UsageRecord};
/// # struct Stdout;
/// # impl UsageStore for Stdout {
/// #     type Error = Infallible;
/// #     async fn write_batch(&self, _: &[UsageRecord]) -> Result<(), Infallible> { Ok(()) }
/// # }
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// # let dir = tempfile::tempdir()?;
/// let mut config = WriterConfig::default();
/// config.spool = Some(SpoolConfig::new(dir.path().join("spool")));
/// let (sink, writer) = BatchWriter::try_spawn(Stdout, config).await?;
/// sink.record(UsageRecord::new(RequestId::new(), chrono::Utc::now()));
/// assert_eq!(writer.shutdown().await?.written, 1);
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct BatchWriter {
    shared: Arc<Shared>,
    _senders: Arc<Senders>,
}

/// Controls a running [`BatchWriter`]: flush, shut down, read the counters.
pub struct WriterHandle {
    shared: Arc<Shared>,
    _senders: Arc<Senders>,
    task: JoinHandle<()>,
}

impl BatchWriter {
    /// Starts the background task (on the current tokio runtime).
    ///
    /// A configured spool is opened by the task; if it cannot be, the error is logged
    /// and the writer runs without it. [`try_spawn`](Self::try_spawn) reports it instead.
    pub fn spawn<S: UsageStore>(store: S, config: WriterConfig) -> (BatchWriter, WriterHandle) {
        Self::start(store, config, None)
    }

    /// Opens the configured spool (if any), then starts the background task.
    pub async fn try_spawn<S: UsageStore>(
        store: S,
        config: WriterConfig,
    ) -> Result<(BatchWriter, WriterHandle), SpoolError> {
        let spool = match &config.spool {
            Some(spool) => Some(open_spool(spool.clone()).await?),
            None => None,
        };
        Ok(Self::start(store, config, spool))
    }

    fn start<S: UsageStore>(
        store: S,
        config: WriterConfig,
        spool: Option<Spool>,
    ) -> (BatchWriter, WriterHandle) {
        let shared = Arc::new(Shared {
            inbox: Mutex::default(),
            wake: Notify::new(),
            counters: Counters::default(),
            capacity: config.queue_capacity.max(1),
            spill: AtomicBool::new(false),
        });
        let senders = Arc::new(Senders(shared.clone()));
        let mut worker = Worker {
            store,
            shared: shared.clone(),
            batch: Vec::new(),
            spool,
            replay_at: Instant::now(),
            replay_delay: config.retry_initial_delay,
            config,
        };
        worker.adopt_spool();
        let task = tokio::spawn(worker.run());
        let sink = BatchWriter {
            shared: shared.clone(),
            _senders: senders.clone(),
        };
        let handle = WriterHandle {
            shared,
            _senders: senders,
            task,
        };
        (sink, handle)
    }

    /// The writer's counters.
    pub fn stats(&self) -> WriterStats {
        self.shared.stats()
    }
}

impl UsageSink for BatchWriter {
    fn record(&self, record: UsageRecord) {
        let shared = &self.shared;
        let refused = {
            let mut inbox = shared.inbox();
            if inbox.closed {
                Some("writer stopped")
            } else if inbox.records >= shared.capacity && !shared.spill.load(Ordering::Acquire) {
                Some("queue full")
            } else {
                // Counted under the lock, before the task can see it: `queued` never
                // trails `written`.
                shared.counters.queued.fetch_add(1, Ordering::AcqRel);
                inbox.commands.push_back(Command::Record(record));
                inbox.records += 1;
                None
            }
        };
        match refused {
            None => shared.wake.notify_one(),
            Some(reason) => {
                let dropped = shared.counters.dropped.fetch_add(1, Ordering::AcqRel) + 1;
                // Log the 1st, 2nd, 4th, 8th… drop: visible, but no flood.
                if dropped.is_power_of_two() {
                    tracing::error!(dropped, reason, "usage record dropped");
                }
            }
        }
    }
}

impl WriterHandle {
    /// Writes everything queued before this call, and replays the spool; returns once
    /// all of it is written, or failed, or (the store failing) safe in the spool.
    pub async fn flush(&self) -> Result<(), WriterClosed> {
        let (done, wait) = oneshot::channel();
        self.shared.push(Command::Flush(done))?;
        wait.await.map_err(|_| WriterClosed)
    }

    /// Stops taking records, writes (or spools) everything queued, and waits for the
    /// task to end.
    pub async fn shutdown(self) -> Result<WriterStats, WriterClosed> {
        let (done, wait) = oneshot::channel();
        self.shared.push(Command::Shutdown(done))?;
        wait.await.map_err(|_| WriterClosed)?;
        self.task.await.map_err(|_| WriterClosed)?;
        Ok(self.shared.stats())
    }

    /// The writer's counters.
    pub fn stats(&self) -> WriterStats {
        self.shared.stats()
    }
}

async fn open_spool(config: SpoolConfig) -> Result<Spool, SpoolError> {
    let dir = config.dir.clone();
    tokio::task::spawn_blocking(move || Spool::open(config))
        .await
        .unwrap_or_else(|panicked| {
            Err(SpoolError::Io {
                path: dir,
                source: std::io::Error::other(panicked),
            })
        })
}

/// Counts `records` the spool refused (full, or its disk failing); the total so far.
fn lost_to_the_spool(counters: &Counters, records: u64) -> u64 {
    counters.spool_refused.fetch_add(records, Ordering::AcqRel) + records
}

/// Whether going from `total - added` to `total` passed a power of two: a loss worth a log
/// line (1, 2, 4, 8, …), so that a spool that stays full logs a few lines, not one per
/// request.
fn crossed_power_of_two(total: u64, added: u64) -> bool {
    let before = total - added;
    before == 0 || before.ilog2() != total.ilog2()
}

/// Sleeps for `limit`; never ends without one.
async fn sleep_or_never(limit: Option<Duration>) {
    match limit {
        Some(limit) => sleep(limit).await,
        None => std::future::pending().await,
    }
}

/// How hard to try a batch.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Patience {
    /// Up to `max_attempts`, with backoff; with a spool, give up as soon as the queue is
    /// full or the writer is stopping.
    Retry,
    /// One attempt, given up after `retry_max_delay` without an answer (stopping, with a
    /// spool to fall back on).
    Once,
}

struct Worker<S> {
    store: S,
    config: WriterConfig,
    shared: Arc<Shared>,
    batch: Vec<UsageRecord>,
    spool: Option<Spool>,
    /// While the spool has records: when to try the store with them next…
    replay_at: Instant,
    /// …and the wait after the next failure.
    replay_delay: Duration,
}

impl<S: UsageStore> Worker<S> {
    async fn run(mut self) {
        self.open_spool().await;
        // When the oldest record of the current batch must be written.
        let mut deadline: Option<Instant> = None;
        loop {
            let Some(command) = self.next_command() else {
                if self.shared.inbox().closed {
                    // Every sender is gone.
                    self.finish(Vec::new()).await;
                    return;
                }
                let replaying = self.replaying();
                let shared = self.shared.clone();
                tokio::select! {
                    () = shared.wake.notified() => {}
                    () = sleep_until(deadline.unwrap_or_else(Instant::now)), if deadline.is_some() => {
                        deadline = None;
                        self.commit(Patience::Retry).await;
                    }
                    () = sleep_until(self.replay_at), if replaying => {
                        self.replay_once(Patience::Retry).await;
                    }
                }
                continue;
            };
            match command {
                Command::Record(record) => {
                    deadline.get_or_insert_with(|| Instant::now() + self.config.flush_interval);
                    if self.push(record, Patience::Retry).await {
                        deadline = None;
                        // A steady stream of records must not starve the replay.
                        if self.replaying() && Instant::now() >= self.replay_at {
                            self.replay_once(Patience::Retry).await;
                        }
                    }
                }
                Command::Flush(done) => {
                    deadline = None;
                    self.commit(Patience::Retry).await;
                    self.replay_all(None).await;
                    let _ = done.send(());
                }
                Command::Shutdown(done) => {
                    self.finish(vec![done]).await;
                    return;
                }
            }
        }
    }

    /// Whether the spool holds records (so batches go behind them, and replay is due).
    fn replaying(&self) -> bool {
        self.spool.as_ref().is_some_and(|spool| !spool.is_empty())
    }

    /// Opens the configured spool, unless [`BatchWriter::try_spawn`] did.
    async fn open_spool(&mut self) {
        let Some(config) = self.config.spool.clone() else {
            return;
        };
        if self.spool.is_some() {
            return;
        }
        match open_spool(config).await {
            Ok(spool) => {
                self.spool = Some(spool);
                self.adopt_spool();
            }
            Err(error) => {
                tracing::error!(%error, "usage spool unavailable: running without one");
            }
        }
    }

    /// Starts using the open spool: overflow allowed, its records counted as queued.
    fn adopt_spool(&mut self) {
        let Some(spool) = &self.spool else { return };
        self.shared.spill.store(true, Ordering::Release);
        let left = spool.len();
        if left > 0 {
            tracing::warn!(
                records = left,
                bytes = spool.bytes(),
                dir = %spool.dir().display(),
                "usage spool holds records from an earlier run: replaying them first"
            );
            self.shared
                .counters
                .queued
                .fetch_add(left, Ordering::AcqRel);
        }
        self.publish();
    }

    fn next_command(&mut self) -> Option<Command> {
        let mut inbox = self.shared.inbox();
        let command = inbox.commands.pop_front()?;
        if let Command::Record(_) = command {
            inbox.records -= 1;
        }
        Some(command)
    }

    /// Adds a record; commits the batch when full. Returns whether it committed.
    async fn push(&mut self, record: UsageRecord, patience: Patience) -> bool {
        self.batch.push(record);
        self.shared
            .counters
            .batch
            .store(self.batch.len() as u64, Ordering::Release);
        if self.batch.len() == 1 {
            self.publish();
        }
        let full = self.batch.len() >= self.config.max_batch;
        if full {
            self.commit(patience).await;
        }
        full
    }

    /// Stops taking commands, writes or spools everything queued, tries the spool once.
    async fn finish(&mut self, mut waiting: Vec<oneshot::Sender<()>>) {
        let patience = if self.spool.is_some() {
            Patience::Once
        } else {
            Patience::Retry
        };
        self.shared.inbox().closed = true;
        while let Some(command) = self.next_command() {
            match command {
                Command::Record(record) => {
                    self.push(record, patience).await;
                }
                Command::Flush(done) | Command::Shutdown(done) => waiting.push(done),
            }
        }
        self.commit(patience).await;
        // The store may be back since its last failure (replays wait out a back-off): try
        // it once more, for `retry_max_delay` at most — stopping must not wait for a store
        // that is still down, and what is left stays in the spool for the next start.
        let deadline = Instant::now() + self.config.retry_max_delay;
        self.replay_all(Some(deadline)).await;
        if let Some(spool) = &self.spool
            && !spool.is_empty()
        {
            tracing::warn!(
                records = spool.len(),
                bytes = spool.bytes(),
                dir = %spool.dir().display(),
                "usage writer stopped with records in the spool: the next start replays them"
            );
        }
        for done in waiting {
            let _ = done.send(());
        }
    }

    /// Writes the current batch to the store — or appends it to the spool, when the spool
    /// already holds records (they go first) or the store keeps failing.
    async fn commit(&mut self, patience: Patience) {
        if self.batch.is_empty() {
            return;
        }
        if self.replaying() || !self.write(patience).await {
            if self.spool.is_some() {
                self.spill().await;
            } else {
                self.shared
                    .counters
                    .failed
                    .fetch_add(self.batch.len() as u64, Ordering::AcqRel);
            }
        }
        self.batch.clear();
        self.shared.counters.batch.store(0, Ordering::Release);
        self.publish();
    }

    /// One store call for `records`. With a spool to fall back on it can be abandoned
    /// (`None`): while retrying, as soon as the queue is full or the writer is stopping, or
    /// after `attempt_timeout` without an answer; a last attempt, after `retry_max_delay`. An abandoned write may still
    /// land; its records stay with the writer, and writing them again is harmless.
    async fn attempt(
        &self,
        records: &[UsageRecord],
        patience: Patience,
    ) -> Option<Result<(), S::Error>> {
        if self.spool.is_none() {
            return Some(self.store.write_batch(records).await);
        }
        match patience {
            Patience::Retry => tokio::select! {
                result = self.store.write_batch(records) => Some(result),
                () = give_up(&self.shared) => None,
                () = sleep_or_never(self.config.attempt_timeout) => None,
            },
            Patience::Once => {
                tokio::time::timeout(self.config.retry_max_delay, self.store.write_batch(records))
                    .await
                    .ok()
            }
        }
    }

    /// Writes the batch, retrying with exponential backoff. Returns whether it was written.
    async fn write(&mut self, patience: Patience) -> bool {
        let count = self.batch.len() as u64;
        let spool = self.spool.is_some();
        let mut delay = self.config.retry_initial_delay;
        let mut attempt = 1;
        loop {
            let result = self.attempt(&self.batch, patience).await;
            let error = match result {
                Some(Ok(())) => {
                    self.shared
                        .counters
                        .written
                        .fetch_add(count, Ordering::AcqRel);
                    return true;
                }
                None => {
                    tracing::warn!(
                        records = count,
                        "usage store call abandoned (queue full, writer stopping, or no answer): spooling the batch"
                    );
                    return false;
                }
                Some(Err(error)) => error,
            };
            if attempt >= self.config.max_attempts || patience == Patience::Once {
                if spool {
                    tracing::warn!(%error, attempts = attempt, records = count, "usage batch not written: spooling it");
                } else {
                    tracing::error!(%error, attempts = attempt, records = count, "usage batch not written");
                }
                return false;
            }
            tracing::warn!(%error, attempt, records = count, retry_in = ?delay, "usage batch write failed");
            if spool {
                tokio::select! {
                    () = sleep(delay) => {}
                    () = give_up(&self.shared) => {
                        tracing::warn!(records = count, "usage queue full or writer stopping: spooling the batch");
                        return false;
                    }
                }
            } else {
                sleep(delay).await;
            }
            delay = (delay * 2).min(self.config.retry_max_delay);
            attempt += 1;
        }
    }

    /// Appends the batch to the spool; counts what it refuses as failed.
    async fn spill(&mut self) {
        let batch = std::mem::take(&mut self.batch);
        let count = batch.len();
        let was_empty = self.spool.as_ref().is_some_and(Spool::is_empty);
        let shared = self.shared.clone();
        let counters = &shared.counters;
        let appended = match self.on_spool(move |spool| spool.append(&batch)).await {
            Some(Ok(appended)) => {
                let refused = (count - appended) as u64;
                if refused > 0 {
                    let total = lost_to_the_spool(counters, refused);
                    if crossed_power_of_two(total, refused) {
                        tracing::error!(
                            records = refused,
                            total,
                            max_bytes = self.config.spool.as_ref().map(|spool| spool.max_bytes),
                            "usage spool full: records lost (logged at 1, 2, 4, 8, … lost)"
                        );
                    }
                }
                appended
            }
            Some(Err(error)) => {
                let total = lost_to_the_spool(counters, count as u64);
                if crossed_power_of_two(total, count as u64) {
                    tracing::error!(
                        %error,
                        records = count,
                        total,
                        "usage records lost: the spool could not write them (logged at 1, 2, 4, \
                         8, … lost)"
                    );
                }
                0
            }
            None => 0,
        };
        counters
            .failed
            .fetch_add((count - appended) as u64, Ordering::AcqRel);
        if was_empty && appended > 0 {
            tracing::warn!(
                records = appended,
                "usage store unavailable: spooling records to disk until it is back"
            );
            self.replay_delay = self.config.retry_initial_delay;
            self.replay_at = Instant::now() + self.replay_delay;
        }
        self.publish();
    }

    /// Replays the spool until it is empty, or the store fails, or `deadline` has passed.
    async fn replay_all(&mut self, deadline: Option<Instant>) {
        while self.replaying() && deadline.is_none_or(|deadline| Instant::now() < deadline) {
            if !self.replay_once(Patience::Once).await {
                break;
            }
        }
    }

    /// Writes the spool's next batch to the store. Returns whether it was written.
    async fn replay_once(&mut self, patience: Patience) -> bool {
        let max = self.config.max_batch.max(1);
        let records = match self.on_spool(move |spool| spool.peek(max)).await {
            Some(Ok(records)) => records,
            Some(Err(error)) => {
                tracing::error!(%error, "usage spool unreadable");
                self.back_off();
                return false;
            }
            None => return false,
        };
        if records.is_empty() {
            // Nothing readable left (corruption was cut away): not a reason to spin.
            self.back_off();
            self.publish();
            return false;
        }
        let result = self.attempt(&records, patience).await;
        match result {
            Some(Ok(())) => {
                let count = records.len() as u64;
                if let Some(Err(error)) = self.on_spool(Spool::pop).await {
                    // Written but still spooled: written again on the next replay (harmless).
                    tracing::error!(%error, "usage spool: could not remove replayed records");
                }
                self.shared
                    .counters
                    .written
                    .fetch_add(count, Ordering::AcqRel);
                self.replay_delay = self.config.retry_initial_delay;
                self.replay_at = Instant::now();
                if let Some(spool) = &self.spool
                    && spool.is_empty()
                {
                    tracing::info!("usage spool replayed: writing to the store directly again");
                }
                self.publish();
                true
            }
            Some(Err(error)) => {
                tracing::warn!(%error, spooled = self.spool.as_ref().map(Spool::len), retry_in = ?self.replay_delay, "usage spool replay failed");
                self.back_off();
                false
            }
            None => false,
        }
    }

    fn back_off(&mut self) {
        self.replay_at = Instant::now() + self.replay_delay;
        self.replay_delay = (self.replay_delay * 2).min(self.config.retry_max_delay);
    }

    /// Runs blocking spool I/O on the blocking pool. `None`: no spool (or it was lost to
    /// a panic, which is logged and turns spooling off).
    async fn on_spool<T: Send + 'static>(
        &mut self,
        op: impl FnOnce(&mut Spool) -> T + Send + 'static,
    ) -> Option<T> {
        let mut spool = self.spool.take()?;
        match tokio::task::spawn_blocking(move || {
            let out = op(&mut spool);
            (spool, out)
        })
        .await
        {
            Ok((spool, out)) => {
                self.spool = Some(spool);
                Some(out)
            }
            Err(error) => {
                tracing::error!(%error, "usage spool failed: spooling is off");
                self.shared.spill.store(false, Ordering::Release);
                None
            }
        }
    }

    /// Updates the spool gauges and the oldest record's time.
    fn publish(&self) {
        let counters = &self.shared.counters;
        let (spooled, bytes, spool_head) = match &self.spool {
            Some(spool) => (spool.len(), spool.bytes(), spool.oldest()),
            None => (0, 0, None),
        };
        counters.spooled.store(spooled, Ordering::Release);
        counters.spool_bytes.store(bytes, Ordering::Release);
        let oldest = spool_head.or_else(|| self.batch.first().map(|record| record.started_at));
        *counters
            .oldest
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = oldest;
    }
}

// However the task ends (also by a panic, or with its runtime), `record` then refuses
// and counts instead of queueing for nobody.
impl<S> Drop for Worker<S> {
    fn drop(&mut self) {
        self.shared.inbox().closed = true;
    }
}

/// Resolves once the task should stop waiting for the store: the queue is full (with a
/// spool to spill it to), or the writer is stopping.
async fn give_up(shared: &Shared) {
    loop {
        let notified = shared.wake.notified();
        {
            let inbox = shared.inbox();
            if inbox.records >= shared.capacity || inbox.stopping || inbox.closed {
                return;
            }
        }
        notified.await;
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
