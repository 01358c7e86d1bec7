//! The writer's spool: an outage, a full queue, a kill and a restart lose no record, and
//! the store gets every record once, in the order it was recorded.

use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::Utc;
use usage_layer::sink::{
    BatchWriter, Spool, SpoolConfig, UsageSink, UsageStore, WriterConfig, WriterStats,
};
use usage_layer::{RequestId, UsageRecord};

#[derive(Debug, thiserror::Error)]
#[error("store unavailable")]
struct Unavailable;

/// A store that is down while `down` is set (or never answers while `hung` is), and keeps
/// what it takes.
#[derive(Clone, Default)]
struct Store {
    down: Arc<AtomicBool>,
    hung: Arc<AtomicBool>,
    attempts: Arc<AtomicU32>,
    written: Arc<Mutex<Vec<RequestId>>>,
}

impl Store {
    fn down() -> Self {
        let store = Self::default();
        store.set_down(true);
        store
    }

    fn set_down(&self, down: bool) {
        self.down.store(down, Ordering::SeqCst);
    }

    fn ids(&self) -> Vec<RequestId> {
        self.written.lock().unwrap().clone()
    }
}

impl UsageStore for Store {
    type Error = Unavailable;

    async fn write_batch(&self, batch: &[UsageRecord]) -> Result<(), Unavailable> {
        self.attempts.fetch_add(1, Ordering::SeqCst);
        if self.hung.load(Ordering::SeqCst) {
            std::future::pending::<()>().await;
        }
        if self.down.load(Ordering::SeqCst) {
            return Err(Unavailable);
        }
        let mut written = self.written.lock().unwrap();
        written.extend(batch.iter().map(|record| record.request_id.clone()));
        Ok(())
    }
}

fn records(n: usize) -> Vec<UsageRecord> {
    (0..n)
        .map(|_| UsageRecord::new(RequestId::new(), Utc::now()))
        .collect()
}

fn ids(records: &[UsageRecord]) -> Vec<RequestId> {
    records
        .iter()
        .map(|record| record.request_id.clone())
        .collect()
}

fn config(spool: &Path) -> WriterConfig {
    let mut config = WriterConfig::default();
    config.max_batch = 10;
    config.flush_interval = Duration::from_millis(50);
    config.retry_initial_delay = Duration::from_millis(10);
    config.retry_max_delay = Duration::from_millis(80);
    config.max_attempts = 3;
    config.spool = Some(SpoolConfig::new(spool));
    config
}

/// Waits (in paused time) until `done` holds for the writer's stats, for at most a minute.
async fn until(
    stats: impl Fn() -> WriterStats,
    done: impl Fn(&WriterStats) -> bool,
) -> WriterStats {
    for _ in 0..600 {
        let now = stats();
        if done(&now) {
            return now;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("not reached: {:?}", stats());
}

#[tokio::test(start_paused = true)]
async fn an_outage_is_spooled_and_replayed_in_order_once_the_store_is_back() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::down();
    let (sink, writer) = BatchWriter::try_spawn(store.clone(), config(dir.path()))
        .await
        .unwrap();
    let sent = records(95);
    for chunk in sent.chunks(7) {
        for record in chunk {
            sink.record(record.clone());
        }
        tokio::time::sleep(Duration::from_millis(30)).await;
    }
    let during = until(|| writer.stats(), |s| s.spooled == 95).await;
    assert_eq!((during.written, during.failed, during.dropped), (0, 0, 0));
    assert!(during.spool_bytes > 0);
    assert_eq!(during.oldest_unwritten, Some(sent[0].started_at));
    assert_eq!(during.pending(), 95);

    store.set_down(false);
    let after = until(|| writer.stats(), |s| s.written == 95).await;
    assert_eq!((after.spooled, after.spool_bytes, after.failed), (0, 0, 0));
    assert_eq!(after.oldest_unwritten, None);
    assert_eq!(store.ids(), ids(&sent), "every record once, in order");

    // Back to direct writes.
    let more = records(3);
    for record in &more {
        sink.record(record.clone());
    }
    writer.flush().await.unwrap();
    assert_eq!(store.ids(), ids(&[sent, more].concat()));
    assert_eq!(writer.shutdown().await.unwrap().pending(), 0);
    assert!(
        Spool::open(SpoolConfig::new(dir.path()))
            .unwrap()
            .is_empty()
    );
}

#[tokio::test(start_paused = true)]
async fn a_full_queue_spills_to_the_spool_and_drops_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::down();
    let mut config = config(dir.path());
    config.queue_capacity = 8;
    config.max_batch = 1;
    config.max_attempts = u32::MAX; // would retry for ever: the full queue cuts it short
    config.retry_initial_delay = Duration::from_secs(3600);
    config.retry_max_delay = Duration::from_secs(3600);
    let (sink, writer) = BatchWriter::try_spawn(store.clone(), config).await.unwrap();
    let sent = records(40);
    sink.record(sent[0].clone());
    tokio::time::sleep(Duration::from_millis(1)).await; // the writer takes it and stalls
    for record in &sent[1..] {
        sink.record(record.clone());
    }
    let queued = writer.stats();
    assert_eq!((queued.queued, queued.dropped), (40, 0));
    assert_eq!(
        queued.queue_depth, 40,
        "the queue overflows, in memory, for a moment"
    );

    let spilled = until(|| writer.stats(), |s| s.spooled == 40).await;
    assert_eq!(
        (spilled.queue_depth, spilled.dropped, spilled.failed),
        (0, 0, 0)
    );

    store.set_down(false);
    writer.flush().await.unwrap();
    assert_eq!(store.ids(), ids(&sent));
    assert_eq!(writer.shutdown().await.unwrap().written, 40);
}

#[tokio::test(start_paused = true)]
async fn shutdown_with_the_store_down_spools_the_rest_and_the_next_writer_replays_it() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::down();
    let mut config = config(dir.path());
    config.max_attempts = u32::MAX;
    config.flush_interval = Duration::from_secs(3600);
    let (sink, writer) = BatchWriter::try_spawn(store.clone(), config.clone())
        .await
        .unwrap();
    let sent = records(25);
    for record in &sent {
        sink.record(record.clone());
    }
    tokio::time::sleep(Duration::from_millis(1)).await; // a batch is in its retries
    let started = tokio::time::Instant::now();
    let stats = writer.shutdown().await.unwrap();
    assert!(started.elapsed() < Duration::from_secs(1), "bounded");
    assert_eq!((stats.spooled, stats.written, stats.failed), (25, 0, 0));
    assert!(store.ids().is_empty());

    store.set_down(false);
    let (_sink, writer) = BatchWriter::try_spawn(store.clone(), config).await.unwrap();
    assert_eq!(writer.stats().queued, 25, "the spool counts as queued");
    writer.flush().await.unwrap();
    assert_eq!(store.ids(), ids(&sent));
    let stats = writer.shutdown().await.unwrap();
    assert_eq!((stats.written, stats.spooled, stats.pending()), (25, 0, 0));
}

#[test]
fn a_killed_writer_leaves_a_spool_that_the_next_one_writes() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::down();
    let sent = records(30);
    let config = config(dir.path());

    // A process that spools during an outage, then dies: its runtime goes away with the
    // writer task in the middle of its work, no shutdown.
    let doomed = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .unwrap();
    doomed.block_on(async {
        let (sink, writer) = BatchWriter::try_spawn(store.clone(), config.clone())
            .await
            .unwrap();
        for record in &sent {
            sink.record(record.clone());
        }
        until(|| writer.stats(), |s| s.spooled == 30).await;
        std::mem::forget((sink, writer)); // no drop, no shutdown: killed
    });
    drop(doomed);

    store.set_down(false);
    let restarted = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .unwrap();
    restarted.block_on(async {
        let (_sink, writer) = BatchWriter::try_spawn(store.clone(), config).await.unwrap();
        until(|| writer.stats(), |s| s.written == 30).await;
        assert_eq!(store.ids(), ids(&sent));
        writer.shutdown().await.unwrap();
    });
}

#[tokio::test(start_paused = true)]
async fn a_spool_written_before_start_is_replayed_first() {
    let dir = tempfile::tempdir().unwrap();
    let earlier = records(12);
    let mut spool = Spool::open(SpoolConfig::new(dir.path())).unwrap();
    assert_eq!(spool.append(&earlier).unwrap(), 12);
    drop(spool);

    let store = Store::default();
    let (sink, writer) = BatchWriter::try_spawn(store.clone(), config(dir.path()))
        .await
        .unwrap();
    let later = records(4);
    for record in &later {
        sink.record(record.clone());
    }
    writer.flush().await.unwrap();
    assert_eq!(
        store.ids(),
        ids(&[earlier, later].concat()),
        "the spool first"
    );
    assert_eq!(writer.shutdown().await.unwrap().pending(), 0);
}

#[tokio::test(start_paused = true)]
async fn a_spool_torn_by_a_crash_replays_every_whole_record() {
    let dir = tempfile::tempdir().unwrap();
    let earlier = records(5);
    let mut spool = Spool::open(SpoolConfig::new(dir.path())).unwrap();
    spool.append(&earlier).unwrap();
    drop(spool);
    // The crash came in the middle of the last frame.
    let segment = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .find(|path| path.extension().is_some_and(|ext| ext == "seg"))
        .unwrap();
    let len = std::fs::metadata(&segment).unwrap().len();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&segment)
        .unwrap()
        .set_len(len - 7)
        .unwrap();

    let store = Store::default();
    let (_sink, writer) = BatchWriter::try_spawn(store.clone(), config(dir.path()))
        .await
        .unwrap();
    writer.flush().await.unwrap();
    assert_eq!(store.ids(), ids(&earlier[..4]));
    writer.shutdown().await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn a_full_spool_counts_what_it_loses() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::down();
    let mut config = config(dir.path());
    let mut spool = SpoolConfig::new(dir.path());
    spool.max_bytes = 1_000; // room for a few records only
    config.spool = Some(spool);
    config.max_attempts = 1;
    let (sink, writer) = BatchWriter::try_spawn(store.clone(), config).await.unwrap();
    for record in records(30) {
        sink.record(record);
    }
    writer.flush().await.unwrap();
    let stats = writer.stats();
    assert!(stats.spooled > 0 && stats.spooled < 30, "{stats:?}");
    assert_eq!(stats.spool_refused, 30 - stats.spooled);
    assert_eq!(stats.failed, stats.spool_refused);
    assert_eq!(stats.pending(), stats.spooled);
}

#[tokio::test]
async fn a_spool_directory_in_use_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (_sink, writer) = BatchWriter::try_spawn(Store::default(), config(dir.path()))
        .await
        .unwrap();
    let second = BatchWriter::try_spawn(Store::default(), config(dir.path())).await;
    assert!(second.is_err());
    writer.shutdown().await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn spawn_opens_the_spool_in_the_task_and_replays_it() {
    let dir = tempfile::tempdir().unwrap();
    let earlier = records(3);
    Spool::open(SpoolConfig::new(dir.path()))
        .unwrap()
        .append(&earlier)
        .unwrap();

    let store = Store::default();
    let (_sink, writer) = BatchWriter::spawn(store.clone(), config(dir.path()));
    writer.flush().await.unwrap();
    assert_eq!(store.ids(), ids(&earlier));
    let stats = writer.shutdown().await.unwrap();
    assert_eq!((stats.queued, stats.written), (3, 3));
}

#[tokio::test(start_paused = true)]
async fn a_store_that_never_answers_is_abandoned_for_the_spool() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::default();
    store.hung.store(true, Ordering::SeqCst);
    let mut config = config(dir.path());
    config.queue_capacity = 4;
    config.max_batch = 1;
    let (sink, writer) = BatchWriter::try_spawn(store.clone(), config.clone())
        .await
        .unwrap();
    let sent = records(12);
    sink.record(sent[0].clone());
    tokio::time::sleep(Duration::from_millis(1)).await; // the writer waits on the store
    for record in &sent[1..] {
        sink.record(record.clone());
    }
    let spilled = until(|| writer.stats(), |s| s.spooled == 12).await;
    assert_eq!((spilled.dropped, spilled.failed), (0, 0));

    // Stopping does not wait for the store either.
    let more = records(3);
    for record in &more {
        sink.record(record.clone());
    }
    let stopped = writer.shutdown().await.unwrap();
    assert_eq!((stopped.spooled, stopped.written), (15, 0));

    store.hung.store(false, Ordering::SeqCst);
    let (_sink, writer) = BatchWriter::try_spawn(store.clone(), config).await.unwrap();
    writer.flush().await.unwrap();
    assert_eq!(store.ids(), ids(&[sent, more].concat()));
    writer.shutdown().await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn a_hung_store_call_is_given_up_after_the_attempt_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::default();
    store.hung.store(true, Ordering::SeqCst);
    let mut config = config(dir.path());
    // A roomy queue: nothing but the timeout gives up on the store.
    config.queue_capacity = 1_000;
    config.attempt_timeout = Some(Duration::from_secs(2));
    let (sink, writer) = BatchWriter::try_spawn(store.clone(), config.clone())
        .await
        .unwrap();
    let sent = records(5);
    for record in &sent {
        sink.record(record.clone());
    }
    let started = tokio::time::Instant::now();
    let spooled = until(|| writer.stats(), |s| s.spooled == 5).await;
    assert_eq!((spooled.dropped, spooled.failed), (0, 0));
    // Paused time, so exact: one flush interval and one abandoned call, not retries.
    let waited = started.elapsed();
    assert!(waited >= Duration::from_secs(2), "{waited:?}");
    assert!(waited < Duration::from_secs(3), "{waited:?}");

    store.hung.store(false, Ordering::SeqCst);
    writer.flush().await.unwrap();
    assert_eq!(store.ids(), ids(&sent));
    writer.shutdown().await.unwrap();
}

/// A tmpfs of `size` mounted on a temporary directory, unmounted when dropped; `None` when
/// this process may not mount (not root, or no `mount` in the sandbox).
struct TinyDisk {
    dir: tempfile::TempDir,
}

impl TinyDisk {
    fn mount(size: &str) -> Option<Self> {
        let dir = tempfile::tempdir().unwrap();
        let mounted = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir.path())
            .stderr(std::process::Stdio::null())
            .status()
            .is_ok_and(|status| status.success());
        mounted.then_some(Self { dir })
    }
}

impl Drop for TinyDisk {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg(self.dir.path())
            .status();
    }
}

/// The spool's disk fills up (a 64 KiB tmpfs) while the store is down: what it cannot
/// write is counted as refused, no empty segment files pile up, and what it did write is
/// replayed once the store is back.
#[tokio::test]
async fn a_full_spool_disk_counts_what_it_loses_and_leaves_no_empty_segments() {
    let Some(disk) = TinyDisk::mount("64k") else {
        eprintln!("SKIPPED: a full disk needs a tmpfs, and this process may not mount one");
        return;
    };
    let store = Store::down();
    let mut config = config(disk.dir.path());
    config.max_attempts = 1;
    let mut spool = SpoolConfig::new(disk.dir.path());
    // The disk, not the cap, is what refuses; small segments, so that appends go on
    // starting new ones once it is full.
    spool.segment_bytes = 4 << 10;
    config.spool = Some(spool);
    let (sink, writer) = BatchWriter::try_spawn(store.clone(), config.clone())
        .await
        .unwrap();
    let sent = records(2_000);
    for chunk in sent.chunks(50) {
        for record in chunk {
            sink.record(record.clone());
        }
        writer.flush().await.unwrap();
    }
    let stats = writer.stats();
    assert!(stats.spooled > 0, "{stats:?}");
    assert!(stats.spool_refused > 0, "the disk filled up: {stats:?}");
    assert_eq!(
        stats.failed, stats.spool_refused,
        "every loss is the spool's"
    );
    assert_eq!(stats.spooled + stats.spool_refused, 2_000, "{stats:?}");
    let empty: Vec<_> = std::fs::read_dir(disk.dir.path())
        .unwrap()
        .filter_map(Result::ok)
        .filter(|entry| entry.path().extension().is_some_and(|ext| ext == "seg"))
        .filter(|entry| entry.metadata().is_ok_and(|meta| meta.len() == 0))
        .map(|entry| entry.file_name())
        .collect();
    assert!(empty.is_empty(), "empty segments left behind: {empty:?}");

    store.set_down(false);
    writer.flush().await.unwrap();
    let after = writer.stats();
    assert_eq!(after.spooled, 0, "{after:?}");
    assert_eq!(store.ids().len() as u64, stats.spooled);
    writer.shutdown().await.unwrap();
}
