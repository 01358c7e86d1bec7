//! A fleet of proxies: what one proxy learns that the others must know, shared through
//! NATS JetStream key-value buckets (`serve --usage-transport nats://…`).
//!
//! Two buckets, created by whichever proxy comes first:
//!
//! * [`STATE_BUCKET`] — deadlines and events, each value JSON:
//!   * `cooldown.<key id>` `{"until_ms":…}`: Plan answered this access key 429 with a
//!     `retry-after`; no proxy sends the key to Plan before `until_ms`.
//!   * `circuit.plan`, `circuit.<key id>` `{"until_ms":…}`: a circuit opened on one proxy
//!     (see [`crate::breaker`]); every proxy skips Plan (for everyone, or for the key)
//!     until `until_ms`. The proxy whose probe closes the circuit deletes the entry. The
//!     failures that open a circuit are counted by each proxy; the probes after
//!     `until_ms` are each proxy's own.
//!   * `revoked.key.<key id>`, `revoked.user.<user id>` `{"at_ms":…}`: an access key
//!     revoked, a user deactivated or deleted. Every lookup of a key asks the database,
//!     so this matters while a proxy cannot reach it and serves keys from its cache: a
//!     revoked key is refused from the cache as soon as the event arrives.
//! * [`PENDING_BUCKET`] — the fleet's Bedrock spend that is recorded but not yet in the
//!   database: `<request id, base64url>` `{"user":…,"micros":…}`, put by the proxy that
//!   recorded it, deleted by the ingester once the record's transaction has committed.
//!   A budget check adds the user's entries to the stored spend ([`crate::budget`]), so
//!   a budget holds across the fleet.
//!
//! Every proxy watches both buckets and keeps what it saw in memory: a request never
//! waits on NATS. Writes are sent without waiting. Deadlines are wall-clock
//! milliseconds (the proxies' clocks must agree to well under a second, as NTP keeps
//! them). When NATS cannot be reached each proxy goes on with its own view — its own
//! cooldowns, circuits and recorded spend, plus what it saw before — and `/health` says
//! `fleet_local_view`; on reconnection the watches start again from the buckets' current
//! values.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, RwLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_nats::jetstream::kv;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use bytes::Bytes;
use futures::StreamExt;
use serde::{Deserialize, Serialize};
use usage_layer::UsageRecord;
use uuid::Uuid;

use crate::budget::PendingSpend;
use crate::throttle::Throttle;

/// The bucket of cooldowns, open circuits and revocations.
pub const STATE_BUCKET: &str = "proxy_fleet";
/// The bucket of recorded, not yet stored Bedrock spend.
pub const PENDING_BUCKET: &str = "proxy_pending_spend";
/// How long the buckets keep a value. A deadline outlives no cooldown (capped at
/// `--max-cooldown`) and no open circuit; a revocation outlives the key cache's
/// stale-if-error window ([`crate::keys::STALE_IF_ERROR`]).
const STATE_MAX_AGE: Duration = Duration::from_secs(24 * 3600);
/// How long a pending spend entry counts at most: the ingester deletes it within seconds
/// of the record's commit; one that is never deleted (its record was lost) stops counting
/// after this.
pub const PENDING_MAX_AGE: Duration = Duration::from_secs(3600);
/// A write to a bucket given up after this (it is not retried: the local view has it).
const WRITE_TIMEOUT: Duration = Duration::from_secs(2);
/// How often the connection is checked while the watches run.
const CHECK_EVERY: Duration = Duration::from_secs(1);

/// A deadline value.
#[derive(Serialize, Deserialize)]
struct Until {
    until_ms: i64,
}

/// A revocation value.
#[derive(Serialize, Deserialize)]
struct At {
    at_ms: i64,
}

/// A pending spend value.
#[derive(Serialize, Deserialize)]
struct Spend {
    user: Uuid,
    micros: i64,
}

/// What the watches have seen.
#[derive(Debug, Default)]
struct Seen {
    /// `cooldown.…` and `circuit.…` ⇒ until (unix ms).
    deadlines: HashMap<String, i64>,
    /// `key.…` and `user.…` ⇒ when revoked (unix ms).
    revoked: HashMap<String, i64>,
}

#[derive(Clone)]
struct Buckets {
    state: kv::Store,
    pending: kv::Store,
}

struct Inner {
    client: async_nats::Client,
    buckets: RwLock<Option<Buckets>>,
    seen: Mutex<Seen>,
    /// The watches are running and have caught up.
    synced: AtomicBool,
    write_failures: Throttle,
}

/// This proxy's membership of the fleet: a NATS connection and what it has seen.
#[derive(Clone)]
pub struct Fleet(Arc<Inner>);

impl std::fmt::Debug for Fleet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Fleet")
            .field("synced", &self.is_synced())
            .finish_non_exhaustive()
    }
}

/// Unix milliseconds now.
fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |since| since.as_millis() as i64)
}

/// `duration` from now, unix milliseconds.
fn ms_after(duration: Duration) -> i64 {
    now_ms().saturating_add(duration.as_millis().min(i64::MAX as u128) as i64)
}

/// The key of a request's pending spend: its id in unpadded base64url (any request id
/// becomes a valid key).
pub fn pending_key(request_id: &str) -> String {
    URL_SAFE_NO_PAD.encode(request_id)
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Fleet {
    /// Joins through `client` (connected, or connecting in the background): the buckets
    /// are opened or created as soon as NATS answers ([`run`](Self::run) for a proxy,
    /// [`open`](Self::open) for an ingester).
    pub fn new(client: async_nats::Client) -> Self {
        Self(Arc::new(Inner {
            client,
            buckets: RwLock::default(),
            seen: Mutex::default(),
            synced: AtomicBool::new(false),
            write_failures: Throttle::default(),
        }))
    }

    /// The NATS connection (the usage records are published through it too, after the
    /// pending spend of each: one connection keeps that order).
    pub fn client(&self) -> &async_nats::Client {
        &self.0.client
    }

    /// Whether the watches run and have caught up: the shared view, not the local one.
    pub fn is_synced(&self) -> bool {
        self.0.synced.load(Ordering::Relaxed)
            && self.0.client.connection_state() == async_nats::connection::State::Connected
    }

    /// Opens (or creates) both buckets.
    pub async fn open(&self) -> anyhow::Result<()> {
        let jetstream = async_nats::jetstream::new(self.0.client.clone());
        let state = open_bucket(&jetstream, STATE_BUCKET, STATE_MAX_AGE).await?;
        let pending = open_bucket(&jetstream, PENDING_BUCKET, PENDING_MAX_AGE).await?;
        *self
            .0
            .buckets
            .write()
            .unwrap_or_else(PoisonError::into_inner) = Some(Buckets { state, pending });
        Ok(())
    }

    fn buckets(&self) -> Option<Buckets> {
        self.0
            .buckets
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Watches both buckets for ever, into this proxy's view and `pending`: again after
    /// every loss of NATS, from the buckets' current values.
    pub async fn run(self, pending: Arc<PendingSpend>) {
        let mut logged_down = false;
        loop {
            let result = self.watch(&pending, &mut logged_down).await;
            self.0.synced.store(false, Ordering::Relaxed);
            match result {
                Err(error) if !logged_down => {
                    tracing::warn!(
                        error = %format!("{error:#}"),
                        "fleet state unavailable through NATS: cooldowns, circuits and budgets \
                         from this proxy's own view"
                    );
                    logged_down = true;
                }
                _ => {}
            }
            tokio::time::sleep(CHECK_EVERY).await;
        }
    }

    fn is_connected(&self) -> bool {
        self.0.client.connection_state() == async_nats::connection::State::Connected
    }

    /// One run of the watches: until NATS goes away.
    async fn watch(&self, pending: &PendingSpend, logged_down: &mut bool) -> anyhow::Result<()> {
        if !self.is_connected() {
            // Still connecting (the client tries again on its own): the loss itself was
            // reported when it happened.
            return Ok(());
        }
        if self.buckets().is_none() {
            self.open().await?;
        }
        let buckets = self.buckets().expect("opened");
        let state = buckets.state.watch_all().await?.map(|entry| (true, entry));
        let spend = buckets
            .pending
            .watch_all()
            .await?
            .map(|entry| (false, entry));
        let mut entries = futures::stream::select(state, spend);
        // Each watch says when it has delivered the bucket's current values (an empty
        // bucket delivers none: it is current at once, once its status is read).
        let mut current = [
            buckets.state.status().await?.values() == 0,
            buckets.pending.status().await?.values() == 0,
        ];
        self.0
            .synced
            .store(current == [true, true], Ordering::Relaxed);
        if current == [true, true] {
            tracing::info!("fleet state in sync through NATS");
            *logged_down = false;
        }
        let mut check = tokio::time::interval(CHECK_EVERY);
        loop {
            tokio::select! {
                entry = entries.next() => {
                    let Some((is_state, entry)) = entry else {
                        anyhow::bail!("the watch ended");
                    };
                    let entry = entry?;
                    let caught_up = entry.delta == 0 || entry.seen_current;
                    if is_state {
                        self.apply_state(&entry);
                    } else {
                        apply_pending(pending, &entry);
                    }
                    let index = usize::from(!is_state);
                    if caught_up && !current[index] {
                        current[index] = true;
                        if current == [true, true] {
                            self.0.synced.store(true, Ordering::Relaxed);
                            tracing::info!("fleet state in sync through NATS");
                            *logged_down = false;
                        }
                    }
                }
                _ = check.tick() => {
                    if !self.is_connected() {
                        anyhow::bail!("the NATS connection was lost");
                    }
                    pending.prune(PENDING_MAX_AGE);
                }
            }
        }
    }

    fn apply_state(&self, entry: &kv::Entry) {
        let mut seen = lock(&self.0.seen);
        let removed = matches!(
            entry.operation,
            kv::Operation::Delete | kv::Operation::Purge
        );
        if let Some(name) = entry.key.strip_prefix("revoked.") {
            match serde_json::from_slice::<At>(&entry.value) {
                Ok(at) if !removed => {
                    seen.revoked.insert(name.to_owned(), at.at_ms);
                }
                _ => {
                    seen.revoked.remove(name);
                }
            }
        } else {
            match serde_json::from_slice::<Until>(&entry.value) {
                Ok(until) if !removed => {
                    seen.deadlines.insert(entry.key.clone(), until.until_ms);
                }
                _ => {
                    seen.deadlines.remove(&entry.key);
                }
            }
        }
    }

    /// Sends `value` for `key` to a bucket, without waiting (a failure is logged, at most
    /// once a minute).
    fn put(&self, bucket: fn(&Buckets) -> &kv::Store, key: String, value: Option<Vec<u8>>) {
        let Some(buckets) = self.buckets() else {
            return;
        };
        let fleet = self.clone();
        tokio::spawn(async move {
            let store = bucket(&buckets);
            let written = match value {
                Some(value) => {
                    tokio::time::timeout(WRITE_TIMEOUT, async {
                        store
                            .put(&key, Bytes::from(value))
                            .await
                            .map(drop)
                            .map_err(anyhow::Error::from)
                    })
                    .await
                }
                None => {
                    tokio::time::timeout(WRITE_TIMEOUT, async {
                        store.delete(&key).await.map_err(anyhow::Error::from)
                    })
                    .await
                }
            };
            let error = match written {
                Ok(Ok(())) => return,
                Ok(Err(error)) => format!("{error:#}"),
                Err(_) => "timed out".to_owned(),
            };
            if let Some(count) = fleet.0.write_failures.allow() {
                tracing::warn!(%error, count, "fleet state not shared through NATS (logged once a minute)");
            }
        });
    }

    /// Shares a deadline: `name` (`cooldown.<key>`, `circuit.plan`, …) until `until`
    /// from now.
    fn share_deadline(&self, name: String, until: Duration) {
        let until_ms = ms_after(until);
        lock(&self.0.seen).deadlines.insert(name.clone(), until_ms);
        let value = serde_json::to_vec(&Until { until_ms }).expect("JSON");
        self.put(|buckets| &buckets.state, name, Some(value));
    }

    fn clear_deadline(&self, name: String) {
        lock(&self.0.seen).deadlines.remove(&name);
        self.put(|buckets| &buckets.state, name, None);
    }

    /// Whether a deadline `name` has not passed yet.
    fn before_deadline(&self, name: &str) -> bool {
        let mut seen = lock(&self.0.seen);
        match seen.deadlines.get(name) {
            Some(&until) if until > now_ms() => true,
            Some(_) => {
                seen.deadlines.remove(name);
                false
            }
            None => false,
        }
    }

    /// Plan answered `key` with a `retry-after` of `wait`.
    pub fn cooldown(&self, key: Uuid, wait: Duration) {
        self.share_deadline(format!("cooldown.{key}"), wait);
    }

    /// Whether `key` cools down somewhere in the fleet.
    pub fn cooling_down(&self, key: Uuid) -> bool {
        self.before_deadline(&format!("cooldown.{key}"))
    }

    /// A circuit (`None`: Plan's, else the key's) opened here for `open_for`.
    pub fn circuit_opened(&self, key: Option<Uuid>, open_for: Duration) {
        self.share_deadline(circuit_name(key), open_for);
    }

    /// A circuit closed here (its probe was answered).
    pub fn circuit_closed(&self, key: Option<Uuid>) {
        self.clear_deadline(circuit_name(key));
    }

    /// Whether a circuit (`None`: Plan's) is open somewhere in the fleet.
    pub fn circuit_open(&self, key: Option<Uuid>) -> bool {
        self.before_deadline(&circuit_name(key))
    }

    /// An access key was revoked.
    pub fn key_revoked(&self, key: Uuid) {
        self.revoke(format!("key.{key}"));
    }

    /// A user was deactivated or deleted: their keys are refused.
    pub fn user_revoked(&self, user: Uuid) {
        self.revoke(format!("user.{user}"));
    }

    /// A user was activated again (their keys count from the database again).
    pub fn user_restored(&self, user: Uuid) {
        let name = format!("user.{user}");
        lock(&self.0.seen).revoked.remove(&name);
        self.put(|buckets| &buckets.state, format!("revoked.{name}"), None);
    }

    fn revoke(&self, name: String) {
        let at_ms = now_ms();
        lock(&self.0.seen).revoked.insert(name.clone(), at_ms);
        let value = serde_json::to_vec(&At { at_ms }).expect("JSON");
        self.put(
            |buckets| &buckets.state,
            format!("revoked.{name}"),
            Some(value),
        );
    }

    /// Whether `key` or its `user` was revoked after `confirmed_ms` (when the database
    /// last accepted the key).
    pub fn revoked_since(&self, key: Uuid, user: Uuid, confirmed_ms: i64) -> bool {
        let seen = lock(&self.0.seen);
        [format!("key.{key}"), format!("user.{user}")]
            .iter()
            .any(|name| seen.revoked.get(name).is_some_and(|&at| at >= confirmed_ms))
    }

    /// Shares a Bedrock record's pending spend.
    pub fn spend_recorded(&self, request_id: &str, user: Uuid, micros: i64) {
        let value = serde_json::to_vec(&Spend { user, micros }).expect("JSON");
        self.put(
            |buckets| &buckets.pending,
            pending_key(request_id),
            Some(value),
        );
    }

    /// The ingester's half: these records are in the database, their spend no longer
    /// pending (waits for NATS's answers; a failure is logged — the entries then stop
    /// counting after [`PENDING_MAX_AGE`]).
    pub async fn spend_stored(&self, records: &[UsageRecord]) {
        let buckets = match self.buckets() {
            Some(buckets) => buckets,
            None => match self.open().await {
                Ok(()) => self.buckets().expect("opened"),
                Err(error) => {
                    tracing::warn!(error = %format!("{error:#}"), "pending spend not cleared");
                    return;
                }
            },
        };
        let deletes = records
            .iter()
            .filter(|record| crate::budget::bedrock_user(record).is_some())
            .map(|record| {
                let key = pending_key(record.request_id.as_str());
                let store = &buckets.pending;
                async move { tokio::time::timeout(WRITE_TIMEOUT, store.delete(key)).await }
            });
        let failed = futures::future::join_all(deletes)
            .await
            .into_iter()
            .filter(|deleted| !matches!(deleted, Ok(Ok(()))))
            .count();
        if failed > 0
            && let Some(count) = self.0.write_failures.allow()
        {
            tracing::warn!(
                failed,
                count,
                "pending spend not cleared in NATS (logged once a minute)"
            );
        }
    }

    /// What `/health` shows.
    pub fn json(&self) -> serde_json::Value {
        let now = now_ms();
        let seen = lock(&self.0.seen);
        let active = |prefix: &str| {
            seen.deadlines
                .iter()
                .filter(|(name, until)| name.starts_with(prefix) && **until > now)
                .count()
        };
        serde_json::json!({
            "nats": if self.is_connected() { "connected" } else { "unreachable" },
            "view": if self.is_synced() { "shared" } else { "local" },
            "cooldowns": active("cooldown."),
            "circuits_open": active("circuit."),
            "revoked": seen.revoked.len(),
        })
    }
}

fn circuit_name(key: Option<Uuid>) -> String {
    match key {
        None => "circuit.plan".to_owned(),
        Some(key) => format!("circuit.{key}"),
    }
}

fn apply_pending(pending: &PendingSpend, entry: &kv::Entry) {
    let Ok(request_id) = URL_SAFE_NO_PAD
        .decode(&entry.key)
        .map_err(drop)
        .and_then(|bytes| String::from_utf8(bytes).map_err(drop))
    else {
        return;
    };
    match (
        entry.operation,
        serde_json::from_slice::<Spend>(&entry.value),
    ) {
        (kv::Operation::Put, Ok(spend)) => pending.insert(&request_id, spend.user, spend.micros),
        _ => pending.take(&request_id),
    }
}

/// The bucket `bucket`, its stream created when missing. The stream is the one a KV
/// bucket is, made here field by field: async-nats's own creation speaks a newer server's
/// API than the 2.9 servers this project runs.
async fn open_bucket(
    jetstream: &async_nats::jetstream::Context,
    bucket: &str,
    max_age: Duration,
) -> anyhow::Result<kv::Store> {
    use async_nats::jetstream::stream;
    jetstream
        .get_or_create_stream(stream::Config {
            name: format!("KV_{bucket}"),
            subjects: vec![format!("$KV.{bucket}.>")],
            max_messages_per_subject: 1,
            max_age,
            discard: stream::DiscardPolicy::New,
            allow_rollup: true,
            deny_delete: true,
            allow_direct: true,
            duplicate_window: max_age.min(Duration::from_secs(120)),
            storage: stream::StorageType::File,
            ..Default::default()
        })
        .await
        .map_err(|error| anyhow::Error::new(error).context(format!("creating bucket {bucket}")))?;
    Ok(jetstream.get_key_value(bucket).await?)
}
