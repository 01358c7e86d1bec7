//! Prices: what a request cost, by the provider that served it.
//!
//! A [`PriceCatalog`] maps provider → region → model to a [`PriceEntry`] (USD per
//! million tokens). [`PriceCatalog::lookup`] returns a [`PriceSnapshot`] — the prices
//! actually used and where they came from, as a `token_usage` row stores them — and
//! [`PriceSnapshot::cost`] turns a [`Usage`](crate::Usage) into a [`Cost`].
//!
//! The rules:
//!
//! * **Plan** is priced from region [`PLAN_REGION`] (`global`) only, whatever region is
//!   asked for, and **never** from Bedrock's table: a model Plan has no price for is
//!   unknown (`None`), not priced as Bedrock.
//! * **Bedrock** (and any other provider) is priced from the region asked for; when that
//!   region has no price for the model, from the provider's default region
//!   (`us-east-1` for Bedrock). The snapshot says which region was used.
//! * Model ids are normalised ([`normalize_model_id`]) and matched **exactly**: an
//!   unknown model stays unknown, it is never priced as a look-alike.
//! * Each cost component is rounded half away from zero to 6 decimals, then summed.
//!
//! ```
//! use usage_layer::pricing::PriceCatalog;
//! use usage_layer::{Provider, Usage};
//!
//! let catalog = PriceCatalog::defaults();
//!
//! // Bedrock in a region without its own table: the default region's price, and it says so.
//! let price = catalog
//!     .lookup(&Provider::BEDROCK, Some("eu-west-1"), "eu.anthropic.claude-sonnet-4-5-20250929-v1:0")
//!     .unwrap();
//! assert_eq!(price.model_id, "claude-sonnet-4-5");
//! assert_eq!(price.region, "us-east-1");
//!
//! let usage = Usage { input_tokens: Some(1_000), output_tokens: Some(200), ..Usage::default() };
//! let cost = price.cost(&usage);
//! assert_eq!(cost.total.to_string(), "0.006000"); // 1,000 × $3/M + 200 × $15/M
//!
//! // Plan is priced in `global`, from Plan's own table only.
//! let plan = catalog.lookup(&Provider::PLAN, Some("us-east-1"), "claude-sonnet-4-5").unwrap();
//! assert_eq!(plan.region, "global");
//! assert!(catalog.lookup(&Provider::PLAN, None, "claude-unreleased-9").is_none());
//! ```
//!
//! [`PriceCatalog::merge_json`] adds your prices, a JSON table keyed as a [`PriceTable`]
//! says, to the built-in ones (or to an [empty](PriceCatalog::empty) catalog).
//! [`Pricing`] is what the stores and sinks price with: a catalog that may be replaced
//! while they run.

mod catalog;
mod cost;
mod defaults;
mod error;
mod live;
mod model_id;
mod overrides;

use chrono::NaiveDate;
use rust_decimal::Decimal;

pub use catalog::PriceCatalog;
pub use cost::{Cost, PriceSnapshot};
pub use error::PricingError;
pub use live::Pricing;
pub use model_id::normalize_model_id;
pub use overrides::PriceTable;

/// An amount in integer micro-USD (6 decimals, rounded half away from zero) — the
/// stored form of money. Saturates far beyond any real amount.
pub fn to_micros(amount: Decimal) -> i64 {
    use rust_decimal::prelude::ToPrimitive;
    (amount.saturating_mul(Decimal::from(1_000_000)))
        .round_dp_with_strategy(0, rust_decimal::RoundingStrategy::MidpointAwayFromZero)
        .to_i64()
        .unwrap_or(if amount.is_sign_negative() {
            i64::MIN
        } else {
            i64::MAX
        })
}

/// The only region Plan prices live in.
pub const PLAN_REGION: &str = "global";

/// Prices of one model, in USD per million tokens.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Prices {
    /// Uncached input tokens.
    pub input: Decimal,
    /// Output tokens.
    pub output: Decimal,
    /// Input tokens written to the prompt cache with a 5-minute TTL (Anthropic's default).
    pub cache_write_5m: Decimal,
    /// Input tokens written to the prompt cache with a 1-hour TTL.
    pub cache_write_1h: Decimal,
    /// Input tokens read from the prompt cache.
    pub cache_read: Decimal,
}

impl Prices {
    /// The prices of an Anthropic model given its input and output prices, by Anthropic's
    /// prompt-cache multipliers: a 5-minute write is 1.25 × input, a 1-hour write
    /// 2 × input, a read 0.1 × input.
    ///
    /// ```
    /// use rust_decimal::Decimal;
    /// use usage_layer::pricing::Prices;
    ///
    /// let prices = Prices::anthropic(Decimal::from(3), Decimal::from(15));
    /// assert_eq!(prices.cache_write_5m.to_string(), "3.75");
    /// assert_eq!(prices.cache_read.to_string(), "0.3");
    /// ```
    pub fn anthropic(input: Decimal, output: Decimal) -> Self {
        defaults::with_cache_multipliers(input, output)
    }
}

/// A model's prices and the date from which they apply.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PriceEntry {
    /// The prices.
    pub prices: Prices,
    /// The first day these prices applied.
    pub effective_date: NaiveDate,
}
