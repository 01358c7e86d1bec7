//! Monthly Bedrock budgets: what is stored, plus what is recorded but not yet written.
//!
//! Plan is a fixed subscription; only Bedrock usage counts. The writer keeps the database
//! off the response path, so the last second of usage may not be stored yet when the next
//! request is checked: [`PendingSpend`] counts a Bedrock record's cost from the moment it
//! is recorded until its batch is written ([`SettlingStore`]). In a fleet
//! ([`crate::fleet`]) the pending spend is the fleet's: each proxy shares what it records,
//! and the ingester clears what it has stored.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use usage_layer::pricing::{Pricing, to_micros};
use usage_layer::sink::{UsageSink, UsageStore};
use usage_layer::store::sea_orm::{StoreError, UsageQueries};
use usage_layer::store::{BucketType, recorded_provider};
use usage_layer::{Provider, UsageRecord};
use uuid::Uuid;

use crate::entity::users;

/// Bedrock cost per user that is recorded but not yet in the database.
///
/// Each record's cost is kept by request id from the moment it is recorded, and that
/// same amount is taken off when its batch is written — so a price that changes in
/// between (prices are live: [`Pricing`]) cannot leave a remainder behind.
#[derive(Debug)]
pub struct PendingSpend {
    pricing: Pricing,
    pending: Mutex<Pending>,
    /// Where recorded spend is shared, in a fleet.
    fleet: OnceLock<crate::fleet::Fleet>,
}

/// One request's pending cost: whose, how much, since when.
#[derive(Debug)]
struct Entry {
    user: Uuid,
    micros: i64,
    since: Instant,
}

#[derive(Debug, Default)]
struct Pending {
    by_user: HashMap<Uuid, i64>,
    by_request: HashMap<String, Entry>,
}

impl Pending {
    fn take(&mut self, request_id: &str) {
        if let Some(entry) = self.by_request.remove(request_id) {
            self.subtract(entry.user, entry.micros);
        }
    }

    fn subtract(&mut self, user: Uuid, micros: i64) {
        if let Some(pending) = self.by_user.get_mut(&user) {
            *pending -= micros;
            if *pending <= 0 {
                self.by_user.remove(&user);
            }
        }
    }

    fn insert(&mut self, request_id: &str, user: Uuid, micros: i64) {
        self.take(request_id);
        let since = Instant::now();
        self.by_request.insert(
            request_id.to_owned(),
            Entry {
                user,
                micros,
                since,
            },
        );
        *self.by_user.entry(user).or_insert(0) += micros;
    }
}

/// The user a record's Bedrock cost counts against, if it is Bedrock's (by the stores'
/// rule: a record naming no provider is Bedrock's) and names a user.
pub fn bedrock_user(record: &UsageRecord) -> Option<Uuid> {
    if *recorded_provider(record) != Provider::BEDROCK {
        return None;
    }
    record.caller.user_id.as_deref()?.parse().ok()
}

impl PendingSpend {
    /// Nothing pending.
    pub fn new(pricing: impl Into<Pricing>) -> Arc<Self> {
        Arc::new(Self {
            pricing: pricing.into(),
            pending: Mutex::default(),
            fleet: OnceLock::new(),
        })
    }

    /// Shares what is recorded here with the fleet, and counts what the fleet shares
    /// ([`crate::fleet::Fleet::run`]); records are then settled by the ingester, not by a
    /// store here.
    pub fn share_with(&self, fleet: crate::fleet::Fleet) {
        let _ = self.fleet.set(fleet);
    }

    /// A request's pending cost, as shared by a proxy of the fleet (this one included).
    pub fn insert(&self, request_id: &str, user: Uuid, micros: i64) {
        self.lock().insert(request_id, user, micros);
    }

    /// A request's cost is no longer pending (stored, as the fleet says).
    pub fn take(&self, request_id: &str) {
        self.lock().take(request_id);
    }

    /// Forgets what has been pending longer than `max_age` (its record was lost, or its
    /// clearing was).
    pub fn prune(&self, max_age: Duration) {
        let mut pending = self.lock();
        let stale: Vec<String> = pending
            .by_request
            .iter()
            .filter(|(_, entry)| entry.since.elapsed() > max_age)
            .map(|(request_id, _)| request_id.clone())
            .collect();
        for request_id in stale {
            pending.take(&request_id);
        }
    }

    /// How many requests' costs are pending.
    pub fn requests(&self) -> usize {
        self.lock().by_request.len()
    }

    /// The pending micro-USD of a user.
    pub fn of(&self, user: Uuid) -> i64 {
        self.lock().by_user.get(&user).copied().unwrap_or(0)
    }

    /// A Bedrock record's user and cost (priced as the store prices it: `price_record`).
    fn cost(&self, record: &UsageRecord) -> Option<(Uuid, i64)> {
        let user = bedrock_user(record)?;
        let price = self
            .pricing
            .current()
            .price_record(&Provider::BEDROCK, record)?;
        Some((user, to_micros(price.cost(&record.usage).total)))
    }

    fn recorded(&self, record: &UsageRecord) {
        let Some((user, micros)) = self.cost(record) else {
            return;
        };
        self.insert(record.request_id.as_str(), user, micros);
        if let Some(fleet) = self.fleet.get() {
            fleet.spend_recorded(record.request_id.as_str(), user, micros);
        }
    }

    fn written(&self, records: &[UsageRecord]) {
        let mut pending = self.lock();
        for record in records {
            pending.take(record.request_id.as_str());
        }
    }

    // A poisoned lock must not make a sink panic (it runs in `Drop`).
    fn lock(&self) -> MutexGuard<'_, Pending> {
        self.pending
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// The sink half: counts each Bedrock record as it is recorded.
#[derive(Clone, Debug)]
pub struct PendingSink(pub Arc<PendingSpend>);

impl UsageSink for PendingSink {
    fn record(&self, record: UsageRecord) {
        self.0.recorded(&record);
    }
}

/// What learns that records are in the database: a proxy's own [`PendingSpend`], or, in
/// a fleet's ingester, the fleet's pending spend ([`crate::fleet::Fleet`]).
pub trait Settle: Send + Sync + 'static {
    /// `records` were written.
    fn settle(&self, records: &[UsageRecord]) -> impl Future<Output = ()> + Send;
}

impl Settle for Arc<PendingSpend> {
    async fn settle(&self, records: &[UsageRecord]) {
        self.written(records);
    }
}

impl Settle for crate::fleet::Fleet {
    async fn settle(&self, records: &[UsageRecord]) {
        self.spend_stored(records).await;
    }
}

/// The store half: once a batch is written, its records are no longer pending.
#[derive(Debug)]
pub struct SettlingStore<S, T = Arc<PendingSpend>> {
    inner: S,
    pending: T,
}

impl<S, T> SettlingStore<S, T> {
    /// Wraps `inner`.
    pub fn new(inner: S, pending: T) -> Self {
        Self { inner, pending }
    }
}

impl<S: UsageStore, T: Settle> UsageStore for SettlingStore<S, T> {
    type Error = S::Error;

    async fn write_batch(&self, batch: &[UsageRecord]) -> Result<(), S::Error> {
        self.inner.write_batch(batch).await?;
        self.pending.settle(batch).await;
        Ok(())
    }
}

/// The answer of a budget check.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BudgetCheck {
    /// Bedrock may be called.
    Allowed,
    /// The month's Bedrock spend has reached the limit.
    Exceeded {
        /// Spent this month, micro-USD (stored + pending).
        spent_micros: i64,
        /// The limit, micro-USD.
        limit_micros: i64,
        /// When the month (and the budget) resets.
        resets_at: DateTime<Utc>,
    },
}

/// A user's budget this month.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BudgetStatus {
    /// The monthly limit, micro-USD; `None` is unlimited.
    pub limit_micros: Option<i64>,
    /// Bedrock spend this month, micro-USD (stored + recorded but not yet written).
    pub spent_micros: i64,
    /// The month's first instant (in the usage time zone).
    pub period_start: DateTime<Utc>,
    /// The next month's first instant: when the budget resets.
    pub period_end: DateTime<Utc>,
}

/// Checks users' monthly Bedrock budgets.
#[derive(Clone, Debug)]
pub struct Budget {
    queries: UsageQueries,
    pending: Arc<PendingSpend>,
}

impl Budget {
    /// Budgets read from `queries`, plus `pending`.
    pub fn new(queries: UsageQueries, pending: Arc<PendingSpend>) -> Self {
        Self { queries, pending }
    }

    /// How many requests' Bedrock costs are pending (recorded, not yet stored).
    pub fn pending_requests(&self) -> usize {
        self.pending.requests()
    }

    /// `user`'s Bedrock spend this month (stored + pending) against their limit.
    pub async fn status(&self, user: &users::Model) -> Result<BudgetStatus, StoreError> {
        let now = Utc::now();
        let stored = self
            .queries
            .monthly_total(&user.id.to_string(), &Provider::BEDROCK, now)
            .await?;
        let buckets = self.queries.buckets();
        let period_start = buckets.start(BucketType::Month, now);
        Ok(BudgetStatus {
            limit_micros: user.monthly_budget_micros,
            spent_micros: stored.cost_micros + self.pending.of(user.id),
            period_start,
            period_end: buckets.next(BucketType::Month, period_start),
        })
    }

    /// Whether `user` may spend more on Bedrock now.
    pub async fn check(&self, user: &users::Model) -> Result<BudgetCheck, StoreError> {
        if user.monthly_budget_micros.is_none() {
            return Ok(BudgetCheck::Allowed);
        }
        let status = self.status(user).await?;
        match status.limit_micros {
            Some(limit_micros) if status.spent_micros >= limit_micros => {
                Ok(BudgetCheck::Exceeded {
                    spent_micros: status.spent_micros,
                    limit_micros,
                    resets_at: status.period_end,
                })
            }
            _ => Ok(BudgetCheck::Allowed),
        }
    }
}
