//! The built-in list prices: the one place they are written down.

use chrono::NaiveDate;
use rust_decimal::Decimal;

use super::{PLAN_REGION, Prices};
use crate::record::Provider;

/// The date the list prices below applied (the Claude Opus 4.5 launch).
pub(super) const LIST_PRICE_DATE: NaiveDate = match NaiveDate::from_ymd_opt(2025, 11, 24) {
    Some(date) => date,
    None => panic!("the list price date is a valid date"),
};

/// The providers that charge the list prices, each with the region they are listed in
/// (which becomes the provider's default region).
pub(super) const LIST_PRICE_REGIONS: [(Provider, &str); 2] = [
    (Provider::PLAN, PLAN_REGION),
    (Provider::BEDROCK, "us-east-1"),
];

/// Anthropic's list prices, in US cents per million tokens so the table is exact and
/// `const`: input, output, 5-minute cache write, 1-hour cache write, cache read.
///
/// Only models whose prices are published here; a model not listed is unknown, never
/// guessed.
pub(super) const LIST_PRICES: [(&[&str], Prices); 6] = [
    (&["claude-opus-4-5"], cents([500, 2500, 625, 1000, 50])),
    (
        &["claude-opus-4-1", "claude-opus-4", "claude-3-opus"],
        cents([1500, 7500, 1875, 3000, 150]),
    ),
    (
        &[
            "claude-sonnet-4-5",
            "claude-sonnet-4",
            "claude-3-7-sonnet",
            "claude-3-5-sonnet",
        ],
        cents([300, 1500, 375, 600, 30]),
    ),
    (&["claude-haiku-4-5"], cents([100, 500, 125, 200, 10])),
    (&["claude-3-5-haiku"], cents([80, 400, 100, 160, 8])),
    (&["claude-3-haiku"], cents([25, 125, 30, 50, 3])),
];

/// The date OpenAI's prices below are given for: the last launch they include (GPT-5.1).
///
/// They are OpenAI's standard-tier prices as its public price page lists them, read from
/// two independent copies of that page that agree on every value (litellm 1.110.2's
/// price table and genai-prices 0.2.3's); the page itself could not be read from where
/// this table was written.
pub(super) const OPENAI_PRICE_DATE: NaiveDate = match NaiveDate::from_ymd_opt(2025, 11, 13) {
    Some(date) => date,
    None => panic!("the OpenAI price date is a valid date"),
};

/// OpenAI's prices, in mills (tenths of a US cent) per million tokens: input, cached
/// input, output. OpenAI bills no cache writes (they are input), so a write is priced as
/// input; a dated snapshot takes its alias's price unless it has its own.
pub(super) const OPENAI_PRICES: [(&[&str], Prices); 13] = [
    (&["gpt-5", "gpt-5-1"], openai([1250, 125, 10_000])),
    (&["gpt-5-mini"], openai([250, 25, 2_000])),
    (&["gpt-5-nano"], openai([50, 5, 400])),
    (&["gpt-4-1"], openai([2_000, 500, 8_000])),
    (&["gpt-4-1-mini"], openai([400, 100, 1_600])),
    (&["gpt-4-1-nano"], openai([100, 25, 400])),
    (&["gpt-4o"], openai([2_500, 1_250, 10_000])),
    // The first GPT-4o snapshot kept its launch price (and had no cached-input price).
    (&["gpt-4o-2024-05-13"], openai([5_000, 5_000, 15_000])),
    (&["gpt-4o-mini"], openai([150, 75, 600])),
    (&["o3"], openai([2_000, 500, 8_000])),
    (&["o3-mini"], openai([1_100, 550, 4_400])),
    (&["o4-mini"], openai([1_100, 275, 4_400])),
    (&["o1"], openai([15_000, 7_500, 60_000])),
];

const fn openai([input, cached, output]: [u32; 3]) -> Prices {
    const fn usd(mills: u32) -> Decimal {
        Decimal::from_parts(mills, 0, 0, false, 3)
    }
    with_cache_writes_as_input(usd(input), usd(output), usd(cached))
}

/// How a provider's built-in prices set its cache prices: what a model added to that
/// provider takes for the cache prices it does not give.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum CachePricing {
    /// Anthropic's multiples of the input price ([`with_cache_multipliers`]).
    Multipliers,
    /// Cache writes at the input price ([`with_cache_writes_as_input`]); the read price
    /// differs from model to model, so there is none to take.
    WritesAsInput,
}

/// How `provider`'s built-in prices set cache prices, and their date; `None` for a
/// provider without built-in prices.
pub(super) fn built_in_pricing(provider: &Provider) -> Option<(CachePricing, NaiveDate)> {
    if LIST_PRICE_REGIONS
        .iter()
        .any(|(listed, _)| listed == provider)
    {
        Some((CachePricing::Multipliers, LIST_PRICE_DATE))
    } else if *provider == Provider::OPENAI {
        Some((CachePricing::WritesAsInput, OPENAI_PRICE_DATE))
    } else {
        None
    }
}

/// Prices of a model that bills no cache writes (they are input), as OpenAI's.
pub(super) const fn with_cache_writes_as_input(
    input: Decimal,
    output: Decimal,
    cache_read: Decimal,
) -> Prices {
    Prices {
        input,
        output,
        cache_write_5m: input,
        cache_write_1h: input,
        cache_read,
    }
}

/// Prices of a model listed with only input and output prices, by Anthropic's cache
/// multipliers: a 5-minute write is 1.25 × input, a 1-hour write 2 × input, a read 0.1 × input.
pub(super) fn with_cache_multipliers(input: Decimal, output: Decimal) -> Prices {
    Prices {
        input,
        output,
        cache_write_5m: input.saturating_mul(Decimal::new(125, 2)).normalize(),
        cache_write_1h: input.saturating_mul(Decimal::TWO).normalize(),
        cache_read: input.saturating_mul(Decimal::new(1, 1)).normalize(),
    }
}

const fn cents([input, output, cache_write_5m, cache_write_1h, cache_read]: [u32; 5]) -> Prices {
    const fn usd(cents: u32) -> Decimal {
        Decimal::from_parts(cents, 0, 0, false, 2)
    }
    Prices {
        input: usd(input),
        output: usd(output),
        cache_write_5m: usd(cache_write_5m),
        cache_write_1h: usd(cache_write_1h),
        cache_read: usd(cache_read),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pricing::normalize_model_id;

    #[test]
    fn list_prices_are_in_dollars() {
        let opus = LIST_PRICES[0].1;
        assert_eq!(opus.input.to_string(), "5.00");
        assert_eq!(opus.cache_write_5m.to_string(), "6.25");
        assert_eq!(opus.cache_read.to_string(), "0.50");
        assert_eq!(LIST_PRICE_DATE.to_string(), "2025-11-24");
    }

    #[test]
    fn list_keys_are_normalised_and_unique() {
        let keys: Vec<&str> = LIST_PRICES
            .iter()
            .flat_map(|(models, _)| models.iter().copied())
            .collect();
        for key in &keys {
            assert_eq!(normalize_model_id(key), *key);
        }
        let unique: std::collections::BTreeSet<_> = keys.iter().collect();
        assert_eq!(unique.len(), keys.len());
        assert_eq!(keys.len(), 11);
    }

    #[test]
    fn openai_prices_are_in_dollars_and_keys_normalised() {
        let prices: std::collections::BTreeMap<&str, Prices> = OPENAI_PRICES
            .iter()
            .flat_map(|(models, prices)| models.iter().map(move |model| (*model, *prices)))
            .collect();
        assert_eq!(prices.len(), 14, "unique keys");
        for key in prices.keys() {
            assert_eq!(normalize_model_id(key), *key);
        }
        let nano = prices["gpt-5-nano"];
        assert_eq!(
            [nano.input, nano.cache_read, nano.output].map(|p| p.to_string()),
            ["0.050", "0.005", "0.400"]
        );
        assert_eq!(prices["o4-mini"].cache_read.to_string(), "0.275");
        assert_eq!(OPENAI_PRICE_DATE.to_string(), "2025-11-13");
    }

    #[test]
    fn list_prices_follow_the_cache_multipliers() {
        for (models, prices) in LIST_PRICES {
            // Claude 3 Haiku's cache prices are rounded to the cent (0.30, 0.03).
            if models == ["claude-3-haiku"] {
                continue;
            }
            assert_eq!(
                with_cache_multipliers(prices.input, prices.output),
                prices,
                "{models:?}"
            );
        }
    }
}
