//! Model mappings and price overrides kept in the database, applied while the server
//! runs — on every instance, without a restart.
//!
//! **Polling, not LISTEN/NOTIFY**: each instance reads both tables every
//! `PROXY_CONFIG_RELOAD_INTERVAL` (5 s) and applies them when they changed; the instance
//! whose admin API made a change applies it at once. Polling works the same on SQLite and
//! Postgres, needs no connection held open (nor its reconnects), and costs two reads of
//! two small tables per interval.
//!
//! * **Mappings**: the active rows of `model_mappings` are the mapping (keys normalised as
//!   everywhere: `claude-sonnet-4-5-20250929` and `claude-sonnet-4-5` are one model). An
//!   empty table is seeded once with the built-in defaults and `PROXY_BEDROCK_MODEL_MAPPING`;
//!   later, entries of that variable that the table lacks are added at start (an admin's
//!   rows win over the variable). Until the table answers, the built-in and variable
//!   mapping serve.
//! * **Prices**: the built-in prices with `PROXY_MODEL_PRICING` / `PROXY_PLAN_PRICING`
//!   merged are the base; each `price_overrides` row replaces the base's price of its
//!   provider, region and model from its effective date (00:00 UTC) on — the latest date
//!   not in the future wins. Rows already written keep the price snapshot they were
//!   priced with.

use std::collections::BTreeMap;
use std::hash::{Hash, Hasher};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::Duration;

use chrono::{NaiveDate, Utc};
use rust_decimal::Decimal;
use sea_orm::ActiveValue::Set;
use sea_orm::sea_query::OnConflict;
use sea_orm::{DatabaseConnection, DbErr, EntityTrait, PaginatorTrait};
use usage_layer::Provider;
use usage_layer::pricing::{PriceCatalog, PriceEntry, Prices, Pricing, normalize_model_id};
use uuid::Uuid;

use crate::bedrock::ModelMapping;
use crate::entity::{model_mappings, price_overrides};

/// A value that is replaced whole while readers hold the one they took.
#[derive(Debug)]
pub struct Swap<T>(Arc<RwLock<Arc<T>>>);

impl<T> Clone for Swap<T> {
    fn clone(&self) -> Self {
        Self(Arc::clone(&self.0))
    }
}

impl<T> Swap<T> {
    /// Holding `value`.
    pub fn new(value: T) -> Self {
        Self(Arc::new(RwLock::new(Arc::new(value))))
    }

    /// The value now.
    pub fn current(&self) -> Arc<T> {
        Arc::clone(&self.0.read().unwrap_or_else(PoisonError::into_inner))
    }

    /// Replaces it for every holder.
    pub fn replace(&self, value: T) {
        *self.0.write().unwrap_or_else(PoisonError::into_inner) = Arc::new(value);
    }
}

/// How often every instance reads the tables, by default.
pub const RELOAD_INTERVAL: Duration = Duration::from_secs(5);

/// The mappings and prices in force, and where they come from.
#[derive(Clone, Debug)]
pub struct LiveConfig {
    db: DatabaseConnection,
    base_prices: Arc<PriceCatalog>,
    pricing: Pricing,
    mapping: Swap<ModelMapping>,
    applied: Arc<Mutex<Option<u64>>>,
}

impl LiveConfig {
    /// Prices from `base_prices` and the mapping `base_mapping` until the tables are read.
    pub fn new(
        db: DatabaseConnection,
        base_prices: PriceCatalog,
        base_mapping: ModelMapping,
    ) -> Self {
        Self {
            db,
            pricing: Pricing::new(base_prices.clone()),
            base_prices: Arc::new(base_prices),
            mapping: Swap::new(base_mapping),
            applied: Arc::default(),
        }
    }

    /// The prices in force (shared with the stores and sinks).
    pub fn pricing(&self) -> &Pricing {
        &self.pricing
    }

    /// The mapping in force (shared with Bedrock).
    pub fn mapping(&self) -> &Swap<ModelMapping> {
        &self.mapping
    }

    /// Seeds an empty `model_mappings` with `defaults` (the built-in mapping with the
    /// variable's entries merged), and adds the variable's `configured` entries the table
    /// lacks (by normalised model).
    pub async fn seed(
        &self,
        defaults: &ModelMapping,
        configured: &ModelMapping,
    ) -> Result<(), DbErr> {
        let empty = model_mappings::Entity::find().count(&self.db).await? == 0;
        let (entries, description): (Vec<(&str, &str)>, &str) = if empty {
            (defaults.entries().collect(), "(default)")
        } else {
            let rows = model_mappings::Entity::find().all(&self.db).await?;
            let known: std::collections::HashSet<String> = rows
                .iter()
                .map(|row| normalize_model_id(&row.claude_model))
                .collect();
            let missing = configured
                .entries()
                .filter(|(model, _)| !known.contains(*model))
                .collect();
            (missing, "(PROXY_BEDROCK_MODEL_MAPPING)")
        };
        if entries.is_empty() {
            return Ok(());
        }
        let now = Utc::now();
        let rows = entries
            .iter()
            .map(|(model, bedrock)| model_mappings::ActiveModel {
                id: Set(Uuid::now_v7()),
                claude_model: Set((*model).to_owned()),
                bedrock_model: Set((*bedrock).to_owned()),
                description: Set(Some(description.to_owned())),
                is_active: Set(true),
                created_at: Set(now),
                updated_at: Set(now),
            });
        model_mappings::Entity::insert_many(rows)
            .on_conflict(
                OnConflict::column(model_mappings::Column::ClaudeModel)
                    .do_nothing()
                    .to_owned(),
            )
            .exec_without_returning(&self.db)
            .await?;
        tracing::info!(
            mappings = entries.len(),
            seeded_empty_table = empty,
            "model mappings added to the database"
        );
        Ok(())
    }

    /// Reads both tables and applies them if they changed since the last read; whether
    /// they did.
    pub async fn reload(&self) -> Result<bool, DbErr> {
        let mappings = model_mappings::Entity::find().all(&self.db).await?;
        let overrides = price_overrides::Entity::find().all(&self.db).await?;
        let today = Utc::now().date_naive();
        let fingerprint = fingerprint(&mappings, &overrides, today);
        let mut applied = self.applied.lock().unwrap_or_else(PoisonError::into_inner);
        if *applied == Some(fingerprint) {
            return Ok(false);
        }
        let mapping = ModelMapping::from_entries(
            mappings
                .iter()
                .filter(|row| row.is_active)
                .map(|row| (row.claude_model.as_str(), row.bedrock_model.as_str())),
        );
        let (catalog, in_force) = prices_on(&self.base_prices, &overrides, today);
        tracing::info!(
            mappings = mapping.entries().count(),
            price_overrides = overrides.len(),
            price_overrides_in_force = in_force,
            "model mappings and prices applied from the database"
        );
        self.mapping.replace(mapping);
        self.pricing.replace(catalog);
        *applied = Some(fingerprint);
        Ok(true)
    }

    /// Reloads every `interval`, for ever (a failure is logged once, until a read
    /// succeeds again).
    pub async fn poll(&self, interval: Duration) {
        let mut every = tokio::time::interval(interval);
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut failing = false;
        loop {
            every.tick().await;
            match self.reload().await {
                Ok(_) if failing => {
                    failing = false;
                    tracing::info!("model mappings and prices readable again");
                }
                Ok(_) => {}
                Err(error) if !failing => {
                    failing = true;
                    tracing::warn!(%error, "model mappings and prices not read: the last ones stay in force");
                }
                Err(_) => {}
            }
        }
    }
}

/// What the applied state depends on: the rows, and the day (an override may start today).
fn fingerprint(
    mappings: &[model_mappings::Model],
    overrides: &[price_overrides::Model],
    today: NaiveDate,
) -> u64 {
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    today.hash(&mut hasher);
    let mut mappings: Vec<_> = mappings
        .iter()
        .map(|row| (&row.claude_model, &row.bedrock_model, row.is_active))
        .collect();
    mappings.sort();
    mappings.hash(&mut hasher);
    let mut overrides: Vec<_> = overrides
        .iter()
        .map(|row| {
            (
                &row.provider,
                &row.region,
                &row.model,
                row.effective_date,
                [
                    row.input_per_million_micros,
                    row.output_per_million_micros,
                    row.cache_write_5m_per_million_micros,
                    row.cache_write_1h_per_million_micros,
                    row.cache_read_per_million_micros,
                ],
            )
        })
        .collect();
    overrides.sort();
    overrides.hash(&mut hasher);
    hasher.finish()
}

/// `base` with each provider, region and model's latest override effective by `today`;
/// and how many overrides that is.
pub fn prices_on(
    base: &PriceCatalog,
    overrides: &[price_overrides::Model],
    today: NaiveDate,
) -> (PriceCatalog, usize) {
    let mut latest: BTreeMap<(&str, &str, String), &price_overrides::Model> = BTreeMap::new();
    for row in overrides.iter().filter(|row| row.effective_date <= today) {
        let key = (
            row.provider.as_str(),
            row.region.as_str(),
            normalize_model_id(&row.model),
        );
        match latest.get(&key) {
            Some(kept) if kept.effective_date >= row.effective_date => {}
            _ => {
                latest.insert(key, row);
            }
        }
    }
    let mut catalog = base.clone();
    for ((provider, region, model), row) in &latest {
        let usd = |micros: i64| Decimal::new(micros, 6).normalize();
        catalog.insert(
            &Provider::new((*provider).to_owned()),
            region,
            model,
            PriceEntry {
                prices: Prices {
                    input: usd(row.input_per_million_micros),
                    output: usd(row.output_per_million_micros),
                    cache_write_5m: usd(row.cache_write_5m_per_million_micros),
                    cache_write_1h: usd(row.cache_write_1h_per_million_micros),
                    cache_read: usd(row.cache_read_per_million_micros),
                },
                effective_date: row.effective_date,
            },
        );
    }
    (catalog, latest.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(model: &str, date: (i32, u32, u32), input: i64) -> price_overrides::Model {
        let now = Utc::now();
        price_overrides::Model {
            id: Uuid::now_v7(),
            provider: "bedrock".into(),
            region: "eu-central-1".into(),
            model: model.into(),
            effective_date: NaiveDate::from_ymd_opt(date.0, date.1, date.2).unwrap(),
            input_per_million_micros: input,
            output_per_million_micros: 15_000_000,
            cache_write_5m_per_million_micros: 3_750_000,
            cache_write_1h_per_million_micros: 6_000_000,
            cache_read_per_million_micros: 300_000,
            created_at: now,
            updated_at: now,
        }
    }

    #[test]
    fn the_latest_override_in_force_wins_and_future_ones_wait() {
        let today = NaiveDate::from_ymd_opt(2026, 12, 2).unwrap();
        let overrides = [
            row("claude-sonnet-4-5", (2026, 1, 1), 3_100_000),
            row("claude-sonnet-4-5-20250929", (2026, 12, 2), 3_300_000),
            row("claude-sonnet-4-5", (2027, 1, 1), 9_000_000),
        ];
        let (catalog, in_force) = prices_on(&PriceCatalog::defaults(), &overrides, today);
        assert_eq!(in_force, 1);
        let price = catalog
            .lookup(
                &Provider::BEDROCK,
                Some("eu-central-1"),
                "claude-sonnet-4-5",
            )
            .unwrap();
        assert_eq!(price.prices.input.to_string(), "3.3");
        assert_eq!(price.effective_date, today);
        assert_eq!(price.region, "eu-central-1");
        // Other regions keep the base.
        let base = catalog
            .lookup(&Provider::BEDROCK, Some("us-east-1"), "claude-sonnet-4-5")
            .unwrap();
        assert_eq!(base.prices.input.to_string(), "3.00");
        let (catalog, _) = prices_on(
            &PriceCatalog::defaults(),
            &overrides,
            NaiveDate::from_ymd_opt(2027, 1, 1).unwrap(),
        );
        let later = catalog
            .lookup(
                &Provider::BEDROCK,
                Some("eu-central-1"),
                "claude-sonnet-4-5",
            )
            .unwrap();
        assert_eq!(later.prices.input.to_string(), "9");
    }

    #[test]
    fn the_fingerprint_sees_every_change_and_the_day() {
        let today = NaiveDate::from_ymd_opt(2026, 12, 2).unwrap();
        let rows = [row("claude-x", (2026, 1, 1), 1)];
        let base = fingerprint(&[], &rows, today);
        assert_eq!(base, fingerprint(&[], &rows, today));
        assert_ne!(
            base,
            fingerprint(&[], &[row("claude-x", (2026, 1, 1), 2)], today)
        );
        assert_ne!(base, fingerprint(&[], &[], today));
        assert_ne!(base, fingerprint(&[], &rows, today.succ_opt().unwrap()));
    }
}
