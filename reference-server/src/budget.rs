//! Monthly Bedrock budgets: what is stored, plus what is recorded but not yet written.
//!
//! Plan is a fixed subscription; only Bedrock usage counts. The writer keeps the database
//! off the response path, so the last second of usage may not be stored yet when the next
//! request is checked: [`PendingSpend`] counts a Bedrock record's cost from the moment it
//! is recorded until its batch is written ([`SettlingStore`]).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

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
}

#[derive(Debug, Default)]
struct Pending {
    by_user: HashMap<Uuid, i64>,
    by_request: HashMap<String, (Uuid, i64)>,
}

impl Pending {
    fn take(&mut self, request_id: &str) {
        if let Some((user, micros)) = self.by_request.remove(request_id)
            && let Some(pending) = self.by_user.get_mut(&user)
        {
            *pending -= micros;
            if *pending <= 0 {
                self.by_user.remove(&user);
            }
        }
    }
}

impl PendingSpend {
    /// Nothing pending.
    pub fn new(pricing: impl Into<Pricing>) -> Arc<Self> {
        Arc::new(Self {
            pricing: pricing.into(),
            pending: Mutex::default(),
        })
    }

    /// The pending micro-USD of a user.
    pub fn of(&self, user: Uuid) -> i64 {
        self.lock().by_user.get(&user).copied().unwrap_or(0)
    }

    /// A Bedrock record's user and cost (priced as the store prices it: `price_record`).
    fn cost(&self, record: &UsageRecord) -> Option<(Uuid, i64)> {
        // Bedrock's, by the stores' rule (a record naming no provider is Bedrock's).
        if *recorded_provider(record) != Provider::BEDROCK {
            return None;
        }
        let user = record.caller.user_id.as_deref()?.parse().ok()?;
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
        let mut pending = self.lock();
        pending.take(record.request_id.as_str());
        pending
            .by_request
            .insert(record.request_id.as_str().to_owned(), (user, micros));
        *pending.by_user.entry(user).or_insert(0) += micros;
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

/// The store half: once a batch is written, its records are no longer pending.
#[derive(Debug)]
pub struct SettlingStore<S> {
    inner: S,
    pending: Arc<PendingSpend>,
}

impl<S> SettlingStore<S> {
    /// Wraps `inner`.
    pub fn new(inner: S, pending: Arc<PendingSpend>) -> Self {
        Self { inner, pending }
    }
}

impl<S: UsageStore> UsageStore for SettlingStore<S> {
    type Error = S::Error;

    async fn write_batch(&self, batch: &[UsageRecord]) -> Result<(), S::Error> {
        self.inner.write_batch(batch).await?;
        self.pending.written(batch);
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
