//! Usage through NATS JetStream against a real `nats-server` of each test's own: the
//! JetStream store behind the batching writer, the ingester writing through the sea-orm
//! store on SQLite and Postgres, duplicates, a NATS server that dies and comes back, and
//! messages that do not decode.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use chrono::{TimeZone, Utc};
use usage_layer::sink::{BatchWriter, SpoolConfig, UsageSink, WriterConfig};
use usage_layer::store::nats::{IngestConfig, IngestHandle, Ingester, NatsConfig, NatsStore};
use usage_layer::store::{Buckets, UsageStore};
use usage_layer::{Provider, UsageRecord};
use usage_tests::process::{IngestProcess, NatsServer};
use usage_tests::{TestDb, assert_aggregates_match_rows, caller, record, rows, store, usage};

fn records(n: u32) -> Vec<UsageRecord> {
    let (alice, bob) = (caller(), caller());
    (0..n)
        .map(|i| {
            record(
                if i % 3 == 0 {
                    Provider::BEDROCK
                } else {
                    Provider::PLAN
                },
                if i % 2 == 0 { &alice } else { &bob }.clone(),
                "claude-sonnet-4-5",
                usage(100 + u64::from(i), 20, 0, 0),
                Utc.with_ymd_and_hms(2026, 11, 27, 10, i % 60, 0).unwrap(),
            )
        })
        .collect()
}

/// Starts `count` ingesters sharing one consumer into `db`'s store.
async fn ingesters(
    server: &NatsServer,
    db: &TestDb,
    count: usize,
) -> Vec<(IngestHandle, tokio::task::JoinHandle<()>)> {
    let mut started = Vec::new();
    for _ in 0..count {
        let ingester = Ingester::new(server.client().await, store(db), IngestConfig::default())
            .await
            .expect("an ingester");
        let handle = ingester.handle();
        let task = tokio::spawn(async move {
            ingester
                .run(std::future::pending())
                .await
                .expect("the ingester runs");
        });
        started.push((handle, task));
    }
    started
}

/// Waits until `db` holds `count` rows (or fails after a minute).
async fn wait_for_rows(db: &TestDb, count: usize) {
    for _ in 0..1200 {
        if rows(db).await.len() >= count {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("{} of {count} rows after a minute", rows(db).await.len());
}

fn assert_once_each(
    db_rows: &[usage_layer::store::sea_orm::entity::token_usage::Model],
    sent: &[UsageRecord],
) {
    let stored: Vec<&str> = db_rows.iter().map(|r| r.request_id.as_str()).collect();
    let unique: BTreeSet<&str> = stored.iter().copied().collect();
    assert_eq!(unique.len(), stored.len(), "no request stored twice");
    let expected: BTreeSet<String> = sent.iter().map(|r| r.request_id.to_string()).collect();
    assert_eq!(
        unique
            .into_iter()
            .map(str::to_owned)
            .collect::<BTreeSet<_>>(),
        expected,
        "every request stored"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_published_twice_are_stored_once_by_two_ingesters() {
    for db in TestDb::all().await {
        let server = NatsServer::start().await;
        let nats = NatsStore::new(server.client().await, NatsConfig::default());
        let sent = records(300);
        // Through the writer, then the same records again straight to the stream (as a
        // retry whose acknowledgements were lost would).
        let (writer, handle) = BatchWriter::spawn(nats.clone(), WriterConfig::default());
        for record in &sent {
            writer.record(record.clone());
        }
        handle.flush().await.unwrap();
        assert_eq!(writer.stats().written, 300);
        nats.write_batch(&sent[..100]).await.unwrap();

        let running = ingesters(&server, &db, 2).await;
        wait_for_rows(&db, sent.len()).await;
        // Whatever is still in flight (a redelivery) has had time to land.
        tokio::time::sleep(Duration::from_millis(500)).await;
        assert_once_each(&rows(&db).await, &sent);
        assert_aggregates_match_rows(&db, &Buckets::default()).await;
        let written: u64 = running.iter().map(|(h, _)| h.stats().written).sum();
        assert_eq!(written, 300, "JetStream dropped the re-published records");
        let lag = running[0].0.lag().await.unwrap();
        assert_eq!((lag.pending, lag.unacknowledged), (0, 0), "{lag:?}");
        let bedrock_rows = rows(&db)
            .await
            .iter()
            .filter(|r| r.provider == "bedrock")
            .count();
        assert_eq!(bedrock_rows, 100);
        for (_, task) in running {
            task.abort();
        }
        db.close().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn while_nats_is_down_records_wait_in_the_spool_and_arrive_in_full() {
    let db = TestDb::sqlite().await;
    let mut server = NatsServer::start().await;
    let spool = tempfile::tempdir().unwrap();
    let nats = NatsStore::new(server.client().await, NatsConfig::default());
    nats.ensure_stream().await.unwrap();
    let mut config = WriterConfig::default();
    config.max_attempts = 2;
    config.retry_initial_delay = Duration::from_millis(50);
    config.retry_max_delay = Duration::from_millis(200);
    config.attempt_timeout = Some(Duration::from_secs(2));
    config.spool = Some(SpoolConfig::new(spool.path()));
    let (writer, handle) = BatchWriter::try_spawn(nats, config).await.unwrap();

    server.kill().await;
    let sent = records(200);
    for record in &sent {
        writer.record(record.clone());
    }
    // Every record ends up in the spool: none is lost, none is dropped.
    for _ in 0..600 {
        if writer.stats().spooled == 200 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let down = writer.stats();
    assert_eq!(
        (down.spooled, down.written, down.failed, down.dropped),
        (200, 0, 0, 0),
        "{down:?}"
    );

    server.restart().await;
    for _ in 0..1200 {
        let stats = writer.stats();
        if stats.written == 200 && stats.spool_bytes == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let back = writer.stats();
    assert_eq!((back.written, back.spool_bytes), (200, 0), "{back:?}");

    let running = ingesters(&server, &db, 1).await;
    wait_for_rows(&db, sent.len()).await;
    assert_once_each(&rows(&db).await, &sent);
    assert_aggregates_match_rows(&db, &Buckets::default()).await;
    handle.shutdown().await.unwrap();
    for (_, task) in running {
        task.abort();
    }
    db.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_that_does_not_decode_is_terminated_and_counted_not_written() {
    let db = TestDb::sqlite().await;
    let server = NatsServer::start().await;
    let config = NatsConfig::default();
    let nats = NatsStore::new(server.client().await, config.clone());
    nats.ensure_stream().await.unwrap();
    let jetstream = async_nats::jetstream::new(server.client().await);
    // A newer version's record, and bytes that are no record at all.
    for (version, payload) in [("9", vec![9u8, 1, 2, 3]), ("2", vec![2u8, 0xff])] {
        let mut headers = async_nats::HeaderMap::new();
        headers.insert("Usage-Record-Version", version);
        jetstream
            .publish_with_headers(config.subject("plan"), headers, payload.into())
            .await
            .unwrap()
            .await
            .unwrap();
    }
    let sent = records(10);
    nats.write_batch(&sent).await.unwrap();

    let running = ingesters(&server, &db, 1).await;
    wait_for_rows(&db, sent.len()).await;
    assert_once_each(&rows(&db).await, &sent);
    let (handle, task) = &running[0];
    assert_eq!(handle.stats().undecodable, 2);
    let lag = handle.lag().await.unwrap();
    assert_eq!(
        (lag.pending, lag.unacknowledged),
        (0, 0),
        "terminated, not redelivered: {lag:?}"
    );
    task.abort();
    db.close().await;
}

/// A store whose first write waits until the test lets it go.
struct HeldStore {
    inner: usage_layer::store::sea_orm::SeaOrmStore,
    writing: Arc<tokio::sync::Notify>,
    release: Arc<tokio::sync::Semaphore>,
}

impl UsageStore for HeldStore {
    type Error = usage_layer::store::sea_orm::StoreError;

    async fn write_batch(&self, batch: &[UsageRecord]) -> Result<(), Self::Error> {
        self.writing.notify_one();
        self.release.acquire().await.expect("open").forget();
        self.inner.write_batch(batch).await
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopping_ingester_finishes_its_write_and_hands_back_what_it_fetched_beside_it() {
    let db = TestDb::sqlite().await;
    let server = NatsServer::start().await;
    let nats = NatsStore::new(server.client().await, NatsConfig::default());
    nats.ensure_stream().await.unwrap();
    let sent = records(150);
    nats.write_batch(&sent).await.unwrap();

    let mut config = IngestConfig::default();
    config.max_batch = 50;
    config.ack_wait = Duration::from_secs(3600);
    let (writing, release) = (
        Arc::new(tokio::sync::Notify::new()),
        Arc::new(tokio::sync::Semaphore::new(0)),
    );
    let held = HeldStore {
        inner: store(&db),
        writing: writing.clone(),
        release: release.clone(),
    };
    let ingester = Ingester::new(server.client().await, held, config.clone())
        .await
        .unwrap();
    let handle = ingester.handle();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let running = tokio::spawn(ingester.run(async {
        let _ = stopped.await;
    }));
    // The first batch is being written (and the second is fetched beside it) when the
    // ingester is told to stop; only then may the write go on.
    writing.notified().await;
    stop.send(()).unwrap();
    release.add_permits(1);
    running.await.unwrap().expect("stops cleanly");

    assert_eq!(handle.stats().written, 50, "the write in hand was finished");
    assert_eq!(rows(&db).await.len(), 50);
    // The second batch was fetched beside the write (only the third was never
    // delivered), and handed back: with an hour's `ack_wait`, another ingester of the
    // consumer gets it now or not in this test's minute.
    let lag = handle.lag().await.unwrap();
    assert_eq!(lag.pending, 50, "two batches were fetched: {lag:?}");
    let rest = Ingester::new(server.client().await, store(&db), config)
        .await
        .unwrap();
    let rest_handle = rest.handle();
    let task = tokio::spawn(rest.run(std::future::pending()));
    wait_for_rows(&db, sent.len()).await;
    assert_once_each(&rows(&db).await, &sent);
    assert_aggregates_match_rows(&db, &Buckets::default()).await;
    // Counted once acknowledged, just after the commit the rows showed.
    for _ in 0..1200 {
        if rest_handle.stats().written >= 100 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(rest_handle.stats().written, 100);
    task.abort();
    db.close().await;
}

#[test]
fn subjects_hold_any_provider_as_one_token() {
    let config = NatsConfig::default();
    assert_eq!(config.subject("plan"), "usage.records.plan");
    assert_eq!(config.subject("bedrock"), "usage.records.bedrock");
    assert_eq!(config.subject("a.b *>c"), "usage.records.a_b___c");
    assert_eq!(config.subject(""), "usage.records._");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_ingest_command_writes_what_the_proxies_publish_and_reports_it() {
    let server = NatsServer::start().await;
    let dir = tempfile::tempdir().unwrap();
    let database_url = format!(
        "sqlite://{}?mode=rwc",
        dir.path().join("usage.db").display()
    );
    let mut ingest = IngestProcess::spawn(&server.url(), &database_url, dir.path(), &[]).await;
    let sent = records(120);
    let nats = NatsStore::new(server.client().await, NatsConfig::default());
    nats.write_batch(&sent).await.unwrap();

    let mut health = serde_json::Value::Null;
    for _ in 0..1200 {
        if let Ok(response) = ingest.health().await {
            health = response;
            if health["written"] == 120 {
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(health["written"], 120, "{health}");
    assert_eq!(health["status"], "ok", "{health}");
    assert_eq!(health["lag"]["pending"], 0, "{health}");
    assert_eq!(health["undecodable"], 0, "{health}");

    let db = TestDb::attach(
        sea_orm::Database::connect(&database_url).await.unwrap(),
        database_url.clone(),
    );
    assert_once_each(&rows(&db).await, &sent);
    assert_aggregates_match_rows(&db, &Buckets::default()).await;
    // SIGTERM: it stops after the batch in hand.
    usage_tests::process::signal(ingest.process.id().unwrap(), "TERM");
    let status = ingest.process.wait().await.unwrap();
    assert!(status.success(), "{status}");
}
