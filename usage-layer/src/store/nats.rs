//! The JetStream store and its ingester: usage through NATS JetStream instead of each
//! process's own database connection.
//!
//! * [`NatsStore`] is a [`UsageStore`]: each record of a batch is published to a stream,
//!   on `<prefix>.<provider>` (e.g. `usage.records.plan`), with `Nats-Msg-Id` = the
//!   request id, and the batch counts as written only once JetStream has acknowledged
//!   every message. Behind a [`BatchWriter`](crate::sink::BatchWriter) with a spool, a
//!   NATS server that cannot be reached costs nothing: the writer retries, then spools,
//!   and replays the spool in order once NATS is back. A record published twice (a retry
//!   whose first acknowledgement was lost) is dropped by the stream's duplicate window.
//! * [`Ingester`] is the other end: a durable pull consumer that writes what it fetches
//!   through any [`UsageStore`] (e.g. the sea-orm one) and acknowledges each message only
//!   after the store has taken its batch, fetching the next batch while one is
//!   written. Several ingesters may share one consumer; a
//!   message whose acknowledgement was lost is delivered again, which an idempotent store
//!   (as [`UsageStore`] requires) turns into nothing.
//!
//! **The message.** Subject `<prefix>.<provider>` (the provider as recorded, each
//! character that a subject token cannot hold — `.`, `*`, `>`, whitespace — as `_`);
//! headers `Nats-Msg-Id: <request id>` and `Usage-Record-Version: 2`; the payload is the
//! record in the versioned binary form of [`codec`] (its layout is
//! spelled out there, for consumers in other languages). A consumer must refuse a version
//! it does not know rather than guess.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use async_nats::HeaderMap;
use async_nats::jetstream::{self, Context, consumer, context::PublishAckFuture, stream};
use bytes::Bytes;
use futures::StreamExt;
use tokio::sync::OnceCell;

use super::{UsageStore, recorded_provider};
use crate::record::UsageRecord;
use crate::sink::codec;

/// The header that names the payload's [`codec`] version.
pub const VERSION_HEADER: &str = "Usage-Record-Version";

/// Where records go in JetStream, and the stream that holds them.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct NatsConfig {
    /// The stream (created when missing, with the settings below).
    pub stream: String,
    /// Records are published on `<subject_prefix>.<provider>`.
    pub subject_prefix: String,
    /// How long JetStream remembers a `Nats-Msg-Id` to drop a re-published record. The
    /// ingester's store drops any later duplicate too (it is idempotent on request ids).
    pub duplicate_window: Duration,
    /// How long a record stays in the stream (acknowledged or not).
    pub max_age: Duration,
    /// Replicas of the stream (1 for one server; 3 in a cluster).
    pub replicas: usize,
}

impl Default for NatsConfig {
    fn default() -> Self {
        Self {
            stream: "USAGE".to_owned(),
            subject_prefix: "usage.records".to_owned(),
            duplicate_window: Duration::from_secs(10 * 60),
            max_age: Duration::from_secs(7 * 24 * 3600),
            replicas: 1,
        }
    }
}

impl NatsConfig {
    /// The subject a record of `provider` is published on.
    pub fn subject(&self, provider: &str) -> String {
        let token: String = provider
            .chars()
            .map(|c| {
                if c == '.' || c == '*' || c == '>' || c.is_whitespace() {
                    '_'
                } else {
                    c
                }
            })
            .collect();
        let token = if token.is_empty() { "_" } else { &token };
        format!("{}.{token}", self.subject_prefix)
    }

    fn stream_config(&self) -> stream::Config {
        stream::Config {
            name: self.stream.clone(),
            subjects: vec![format!("{}.>", self.subject_prefix)],
            duplicate_window: self.duplicate_window,
            max_age: self.max_age,
            num_replicas: self.replicas,
            storage: stream::StorageType::File,
            ..Default::default()
        }
    }
}

/// Why a batch did not reach JetStream, or an ingester could not go on.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum NatsError {
    /// The stream could not be found or created.
    #[error("JetStream stream {stream:?}: {source}")]
    Stream {
        /// The stream.
        stream: String,
        /// Why.
        source: async_nats::Error,
    },
    /// A record was not published, or its acknowledgement did not come.
    #[error("publishing usage record {request_id} to JetStream: {source}")]
    Publish {
        /// The record's request id.
        request_id: String,
        /// Why.
        source: async_nats::Error,
    },
    /// The consumer could not be created, read or answered.
    #[error("JetStream consumer {consumer:?}: {source}")]
    Consumer {
        /// The consumer.
        consumer: String,
        /// Why.
        source: async_nats::Error,
    },
}

/// Publishes records to JetStream; see the [module docs](self).
#[derive(Clone, Debug)]
pub struct NatsStore {
    jetstream: Context,
    config: Arc<NatsConfig>,
    /// Set once the stream is known to exist (made lazily: NATS may be down at start).
    stream_ready: Arc<OnceCell<()>>,
}

impl NatsStore {
    /// A store publishing through `client`. The stream is looked up (and created when
    /// missing) with the first batch, so a NATS server that is down when this process
    /// starts only delays the records: connect with
    /// [`retry_on_initial_connect`](async_nats::ConnectOptions::retry_on_initial_connect).
    pub fn new(client: async_nats::Client, config: NatsConfig) -> Self {
        Self {
            jetstream: jetstream::new(client),
            config: Arc::new(config),
            stream_ready: Arc::new(OnceCell::new()),
        }
    }

    /// The configuration.
    pub fn config(&self) -> &NatsConfig {
        &self.config
    }

    /// Finds or creates the stream now (e.g. to fail early in a health check).
    pub async fn ensure_stream(&self) -> Result<(), NatsError> {
        self.stream_ready
            .get_or_try_init(|| ensure_stream(&self.jetstream, &self.config))
            .await
            .map(|_| ())
    }
}

async fn ensure_stream(jetstream: &Context, config: &NatsConfig) -> Result<(), NatsError> {
    jetstream
        .get_or_create_stream(config.stream_config())
        .await
        .map(drop)
        .map_err(|error| NatsError::Stream {
            stream: config.stream.clone(),
            source: error.into(),
        })
}

impl UsageStore for NatsStore {
    type Error = NatsError;

    /// Publishes every record, then waits for every acknowledgement: the publishes are
    /// pipelined, so a batch costs about one round trip, not one per record.
    async fn write_batch(&self, batch: &[UsageRecord]) -> Result<(), NatsError> {
        self.ensure_stream().await?;
        let mut pending: Vec<(String, PublishAckFuture)> = Vec::with_capacity(batch.len());
        let mut headers = HeaderMap::new();
        headers.insert(VERSION_HEADER, codec::VERSION.to_string().as_str());
        for record in batch {
            let request_id = record.request_id.to_string();
            let mut payload = Vec::with_capacity(256);
            codec::encode(record, &mut payload);
            let message = jetstream::message::PublishMessage::build()
                .payload(Bytes::from(payload))
                .headers(headers.clone())
                .message_id(&request_id);
            let subject = self.config.subject(recorded_provider(record).as_str());
            let ack = self
                .jetstream
                .send_publish(subject, message)
                .await
                .map_err(|error| NatsError::Publish {
                    request_id: request_id.clone(),
                    source: error.into(),
                })?;
            pending.push((request_id, ack));
        }
        for (request_id, ack) in pending {
            ack.await.map_err(|error| NatsError::Publish {
                request_id,
                source: error.into(),
            })?;
        }
        Ok(())
    }
}

/// How an [`Ingester`] reads.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct IngestConfig {
    /// The stream (as [`NatsConfig::stream`]; created when missing with `stream`'s settings).
    pub stream: NatsConfig,
    /// The durable consumer every ingester of the fleet shares.
    pub consumer: String,
    /// Records fetched (and written) at most at once.
    pub max_batch: usize,
    /// How long a fetch waits for its first message.
    pub fetch_wait: Duration,
    /// How long JetStream waits for an acknowledgement before delivering again.
    pub ack_wait: Duration,
    /// After a failed store write, the batch is delivered again after this long.
    pub retry_delay: Duration,
}

impl Default for IngestConfig {
    fn default() -> Self {
        Self {
            stream: NatsConfig::default(),
            consumer: "usage-ingest".to_owned(),
            max_batch: 500,
            fetch_wait: Duration::from_secs(1),
            ack_wait: Duration::from_secs(30),
            retry_delay: Duration::from_secs(1),
        }
    }
}

/// What an ingester has done.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct IngestStats {
    /// Records the store took (and that were then acknowledged).
    pub written: u64,
    /// Batches the store took.
    pub batches: u64,
    /// Batches the store refused (delivered again later).
    pub failed_batches: u64,
    /// Messages that did not decode (a version this code does not know, or damage):
    /// terminated, never written, logged at error level.
    pub undecodable: u64,
}

#[derive(Debug, Default)]
struct Counters {
    written: AtomicU64,
    batches: AtomicU64,
    failed_batches: AtomicU64,
    undecodable: AtomicU64,
}

/// A durable pull consumer writing JetStream's records through a store; see the
/// [module docs](self).
pub struct Ingester<S> {
    store: S,
    /// Flushed before [`Ingester::run`] returns: acknowledgements are publishes the
    /// client may still hold.
    client: async_nats::Client,
    consumer: consumer::Consumer<consumer::pull::Config>,
    config: IngestConfig,
    counters: Arc<Counters>,
}

impl<S> std::fmt::Debug for Ingester<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ingester")
            .field("config", &self.config)
            .field("consumer", &self.config.consumer)
            .finish_non_exhaustive()
    }
}

/// Reads an [`Ingester`]'s counters and its consumer's lag from another task.
#[derive(Clone, Debug)]
pub struct IngestHandle {
    counters: Arc<Counters>,
    consumer: consumer::Consumer<consumer::pull::Config>,
    name: String,
}

/// How far the consumer is behind the stream.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Lag {
    /// Messages in the stream not yet delivered to any ingester.
    pub pending: u64,
    /// Delivered, not yet acknowledged.
    pub unacknowledged: u64,
    /// Delivered more than once.
    pub redelivered: u64,
}

impl IngestHandle {
    /// The counters so far.
    pub fn stats(&self) -> IngestStats {
        IngestStats {
            written: self.counters.written.load(Ordering::Relaxed),
            batches: self.counters.batches.load(Ordering::Relaxed),
            failed_batches: self.counters.failed_batches.load(Ordering::Relaxed),
            undecodable: self.counters.undecodable.load(Ordering::Relaxed),
        }
    }

    /// The consumer's lag, asked of the server.
    pub async fn lag(&self) -> Result<Lag, NatsError> {
        let mut consumer = self.consumer.clone();
        let info = consumer
            .info()
            .await
            .map_err(|error| consumer_error(&self.name, error))?;
        Ok(Lag {
            pending: info.num_pending,
            unacknowledged: info.num_ack_pending as u64,
            redelivered: info.num_redelivered as u64,
        })
    }
}

impl<S: UsageStore> Ingester<S> {
    /// Finds or creates the stream and the durable consumer.
    pub async fn new(
        client: async_nats::Client,
        store: S,
        config: IngestConfig,
    ) -> Result<Self, NatsError> {
        let jetstream = jetstream::new(client.clone());
        ensure_stream(&jetstream, &config.stream).await?;
        let stream = jetstream
            .get_stream(&config.stream.stream)
            .await
            .map_err(|error| consumer_error(&config.consumer, error))?;
        let consumer = stream
            .get_or_create_consumer(
                &config.consumer,
                consumer::pull::Config {
                    durable_name: Some(config.consumer.clone()),
                    ack_policy: consumer::AckPolicy::Explicit,
                    ack_wait: config.ack_wait,
                    max_ack_pending: (config.max_batch * 4) as i64,
                    ..Default::default()
                },
            )
            .await
            .map_err(|error| consumer_error(&config.consumer, error))?;
        Ok(Self {
            store,
            client,
            consumer,
            config,
            counters: Arc::default(),
        })
    }

    /// A handle for the counters and the lag.
    pub fn handle(&self) -> IngestHandle {
        IngestHandle {
            counters: self.counters.clone(),
            consumer: self.consumer.clone(),
            name: self.config.consumer.clone(),
        }
    }

    /// Fetches, writes and acknowledges until `shutdown` resolves or the consumer fails.
    ///
    /// The next batch is fetched while one is written, so the store is not left idle
    /// while JetStream delivers. `shutdown` interrupts neither: the batch being written
    /// is finished (acknowledged, or refused and
    /// delivered again later), and the fetch beside it too, whose messages are then
    /// handed back unwritten (a `NAK` without delay: another ingester of the consumer
    /// gets them at once, instead of after [`IngestConfig::ack_wait`]), and the client is
    /// flushed, so the acknowledgements sent last leave before this returns. So an
    /// ingester stops within one write, one [`IngestConfig::fetch_wait`] and one round
    /// trip of `NAK`s (sent at once) of `shutdown`.
    pub async fn run(self, shutdown: impl Future<Output = ()>) -> Result<(), NatsError> {
        let mut shutdown = std::pin::pin!(shutdown);
        let mut stopping = false;
        let mut in_hand = Fetched::default();
        loop {
            let mut work =
                std::pin::pin!(async { tokio::join!(self.write(in_hand), self.fetch()) });
            // `shutdown` is polled beside the work from the start (a signal handler must
            // be installed before the signal comes); once it resolves, the work is
            // finished and this is the last round.
            let (written, fetched) = tokio::select! {
                biased;
                done = &mut work => done,
                () = &mut shutdown => {
                    stopping = true;
                    work.await
                }
            };
            match (written, fetched) {
                (Ok(_), Ok(fetched)) if !stopping => in_hand = fetched,
                (written, fetched) => return self.finish(written, fetched).await,
            }
        }
    }

    /// The last round's end, on shutdown or an error: what was fetched is handed back
    /// and the client flushed (the last batch's acknowledgements leave before `run`
    /// returns); the write's error first, else the fetch's or the hand-back's.
    async fn finish(
        &self,
        written: Result<usize, NatsError>,
        fetched: Result<Fetched, NatsError>,
    ) -> Result<(), NatsError> {
        let handed_back = match fetched {
            Ok(fetched) => self.hand_back(fetched).await,
            Err(error) => Err(error),
        };
        let flushed = self
            .client
            .flush()
            .await
            .map_err(|error| self.consumer_error(error));
        match (written, handed_back) {
            (Err(error), Err(also)) => {
                tracing::warn!(error = %also, "the fetch beside the failed write, or handing it back, failed too");
                Err(error)
            }
            (Err(error), Ok(())) | (Ok(_), Err(error)) => Err(error),
            (Ok(_), Ok(())) => flushed,
        }
    }

    /// Gives fetched messages back to the consumer unwritten, for immediate redelivery;
    /// each `NAK` is confirmed by the server, so none is lost when the process exits next.
    async fn hand_back(&self, fetched: Fetched) -> Result<(), NatsError> {
        let naks = fetched
            .messages
            .iter()
            .map(|message| message.double_ack_with(jetstream::AckKind::Nak(None)));
        for nak in futures::future::join_all(naks).await {
            nak.map_err(|error| self.consumer_error(error))?;
        }
        Ok(())
    }

    /// One fetch: its records written and acknowledged. Returns how many were written.
    pub async fn ingest_once(&self) -> Result<usize, NatsError> {
        let fetched = self.fetch().await?;
        self.write(fetched).await
    }

    fn consumer_error(&self, error: impl Into<async_nats::Error>) -> NatsError {
        consumer_error(&self.config.consumer, error)
    }

    /// Up to [`IngestConfig::max_batch`] messages, waiting at most
    /// [`IngestConfig::fetch_wait`] for the first; those that do not decode are
    /// terminated here.
    async fn fetch(&self) -> Result<Fetched, NatsError> {
        let mut fetched = self
            .consumer
            .fetch()
            .max_messages(self.config.max_batch)
            .expires(self.config.fetch_wait)
            .messages()
            .await
            .map_err(|error| self.consumer_error(error))?;
        let mut batch = Fetched {
            messages: Vec::with_capacity(self.config.max_batch),
            records: Vec::with_capacity(self.config.max_batch),
        };
        while let Some(message) = fetched.next().await {
            let message = message.map_err(|error| self.consumer_error(error))?;
            match decode(&message) {
                Ok(record) => {
                    batch.records.push(record);
                    batch.messages.push(message);
                }
                Err(why) => {
                    self.counters.undecodable.fetch_add(1, Ordering::Relaxed);
                    tracing::error!(
                        subject = %message.subject,
                        error = %why,
                        "a usage message does not decode: terminated, not written"
                    );
                    message
                        .ack_with(jetstream::AckKind::Term)
                        .await
                        .map_err(|error| self.consumer_error(error))?;
                }
            }
        }
        Ok(batch)
    }

    /// Writes a fetched batch through the store and acknowledges its messages, or, when
    /// the store refuses it, asks for them again after [`IngestConfig::retry_delay`].
    /// Returns how many records were written.
    async fn write(&self, batch: Fetched) -> Result<usize, NatsError> {
        let Fetched { messages, records } = batch;
        if records.is_empty() {
            return Ok(0);
        }
        match self.store.write_batch(&records).await {
            Ok(()) => {
                // Acknowledged only now: a crash before this line delivers them again.
                for message in &messages {
                    message
                        .ack()
                        .await
                        .map_err(|error| self.consumer_error(error))?;
                }
                self.counters
                    .written
                    .fetch_add(records.len() as u64, Ordering::Relaxed);
                self.counters.batches.fetch_add(1, Ordering::Relaxed);
                Ok(records.len())
            }
            Err(error) => {
                self.counters.failed_batches.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(
                    records = records.len(),
                    error = %error,
                    "the store refused a batch from JetStream: it is delivered again"
                );
                for message in &messages {
                    message
                        .ack_with(jetstream::AckKind::Nak(Some(self.config.retry_delay)))
                        .await
                        .map_err(|error| self.consumer_error(error))?;
                }
                Ok(0)
            }
        }
    }
}

/// A consumer's failure, naming the consumer.
fn consumer_error(consumer: &str, error: impl Into<async_nats::Error>) -> NatsError {
    NatsError::Consumer {
        consumer: consumer.to_owned(),
        source: error.into(),
    }
}

/// Messages fetched and not yet written: each decoded record beside its message.
#[derive(Default)]
struct Fetched {
    messages: Vec<jetstream::Message>,
    records: Vec<UsageRecord>,
}

/// Why a message is not a record this code can read.
#[derive(Debug, thiserror::Error)]
enum MessageError {
    #[error("header {VERSION_HEADER} says {header:?}, the payload is version {payload}")]
    Version { header: String, payload: u8 },
    #[error("{0}")]
    Payload(codec::DecodeError),
}

/// The record of `message`: its payload decoded (which refuses a version this code does
/// not know), once the version header, if any, agrees with the payload's.
fn decode(message: &jetstream::Message) -> Result<UsageRecord, MessageError> {
    let payload_version = message.payload.first().copied().unwrap_or_default();
    if let Some(header) = message
        .headers
        .as_ref()
        .and_then(|headers| headers.get(VERSION_HEADER))
        && header.as_str().trim().parse::<u8>() != Ok(payload_version)
    {
        return Err(MessageError::Version {
            header: header.as_str().to_owned(),
            payload: payload_version,
        });
    }
    codec::decode(&message.payload).map_err(MessageError::Payload)
}
