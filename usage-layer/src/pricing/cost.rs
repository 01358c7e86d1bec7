//! What a request cost, at the prices a snapshot recorded.

use chrono::NaiveDate;
use rust_decimal::{Decimal, RoundingStrategy};

use super::Prices;
use crate::anthropic::Usage;
use crate::record::Provider;

/// The decimals of every cost component (millionths of a dollar).
const COST_SCALE: u32 = 6;

/// Prices are per this many tokens.
const TOKENS_PER_PRICE: Decimal = Decimal::from_parts(1_000_000, 0, 0, false, 0);

/// The prices a request was costed with, and where they came from — what a row stores (R5).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PriceSnapshot {
    /// The provider whose prices these are.
    pub provider: Provider,
    /// The region whose prices were used (for Plan always [`PLAN_REGION`](super::PLAN_REGION)).
    pub region: String,
    /// The catalog key the model was priced under (see [`normalize_model_id`](super::normalize_model_id)).
    pub model_id: String,
    /// The first day these prices applied.
    pub effective_date: NaiveDate,
    /// The prices, in USD per million tokens.
    pub prices: Prices,
}

impl PriceSnapshot {
    /// What `usage` costs at these prices; a count that was not reported costs nothing.
    pub fn cost(&self, usage: &Usage) -> Cost {
        let prices = &self.prices;
        let reported = |tokens: Option<u64>| tokens.unwrap_or(0);
        let (write_5m, write_1h) = cache_writes(usage);

        let input = usd(&[(reported(usage.input_tokens), prices.input)]);
        let output = usd(&[(reported(usage.output_tokens), prices.output)]);
        let cache_write = usd(&[
            (write_5m, prices.cache_write_5m),
            (write_1h, prices.cache_write_1h),
        ]);
        let cache_read = usd(&[(reported(usage.cache_read_input_tokens), prices.cache_read)]);
        let total = [input, output, cache_write, cache_read]
            .into_iter()
            .fold(Decimal::ZERO, Decimal::saturating_add);
        Cost {
            input,
            output,
            cache_write,
            cache_read,
            total,
        }
    }
}

/// What a request cost, in USD, by component; each component has 6 decimals.
///
/// Each component is rounded half away from zero to 6 decimals, and `total` is their
/// exact sum, so the stored components always add up to the stored total.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Cost {
    /// Uncached input tokens.
    pub input: Decimal,
    /// Output tokens.
    pub output: Decimal,
    /// Cache writes, 5-minute and 1-hour together.
    ///
    /// Rounded once, from the sum of both TTLs' exact costs: a row has one cache-write
    /// column, and rounding the sum keeps it within half a millionth of the exact cost
    /// (rounding each TTL first could be off by a whole millionth).
    pub cache_write: Decimal,
    /// Cache reads.
    pub cache_read: Decimal,
    /// The sum of the components.
    pub total: Decimal,
}

/// Cache-write tokens by TTL: `(5-minute, 1-hour)`.
///
/// The reported `ephemeral_5m` and `ephemeral_1h` counts, with any write beyond them at
/// the 5-minute TTL; with no breakdown, that is every write (Anthropic's default TTL).
fn cache_writes(usage: &Usage) -> (u64, u64) {
    let five_minutes = usage.ephemeral_5m_input_tokens.unwrap_or(0);
    let one_hour = usage.ephemeral_1h_input_tokens.unwrap_or(0);
    let unlabelled = usage
        .cache_creation_input_tokens
        .unwrap_or(0)
        .saturating_sub(five_minutes.saturating_add(one_hour));
    (five_minutes.saturating_add(unlabelled), one_hour)
}

/// The cost of `(tokens, price per million)` terms, rounded once to [`COST_SCALE`] decimals.
///
/// Saturates instead of panicking on an absurd price: a cost is computed on the
/// response path, where a panic would lose the record.
fn usd(terms: &[(u64, Decimal)]) -> Decimal {
    let exact = terms
        .iter()
        .map(|&(tokens, price)| Decimal::from(tokens).saturating_mul(price))
        .fold(Decimal::ZERO, Decimal::saturating_add)
        / TOKENS_PER_PRICE;
    let mut rounded =
        exact.round_dp_with_strategy(COST_SCALE, RoundingStrategy::MidpointAwayFromZero);
    // Every component carries the same scale, so stored values print alike ("5.000000").
    rounded.rescale(COST_SCALE);
    rounded
}

#[cfg(test)]
mod tests {
    use std::str::FromStr;

    use proptest::prelude::*;

    use super::*;
    use crate::pricing::PLAN_REGION;

    fn dec(text: &str) -> Decimal {
        Decimal::from_str(text).unwrap()
    }

    fn snapshot(prices: [&str; 5]) -> PriceSnapshot {
        let [input, output, cache_write_5m, cache_write_1h, cache_read] = prices.map(dec);
        PriceSnapshot {
            provider: Provider::PLAN,
            region: PLAN_REGION.to_owned(),
            model_id: "claude-opus-4-5".to_owned(),
            effective_date: NaiveDate::from_ymd_opt(2025, 11, 24).unwrap(),
            prices: Prices {
                input,
                output,
                cache_write_5m,
                cache_write_1h,
                cache_read,
            },
        }
    }

    #[test]
    fn the_original_test_vector() {
        let opus = snapshot(["5", "25", "6.25", "10", "0.50"]);
        let cost = opus.cost(&Usage {
            input_tokens: Some(1_000_000),
            output_tokens: Some(500_000),
            cache_creation_input_tokens: Some(100_000),
            cache_read_input_tokens: Some(200_000),
            ..Usage::default()
        });
        assert_eq!(cost.input, dec("5"));
        assert_eq!(cost.output, dec("12.5"));
        assert_eq!(cost.cache_write, dec("0.625"));
        assert_eq!(cost.cache_read, dec("0.1"));
        assert_eq!(cost.total, dec("18.225000"));
        assert_eq!(cost.total.scale(), 6);
        assert_eq!(cost.total.to_string(), "18.225000");
    }

    #[test]
    fn rounds_half_away_from_zero_at_the_seventh_decimal() {
        let half_a_millionth = snapshot(["0.5", "0.49", "0", "0", "2.5"]);
        let cost = half_a_millionth.cost(&Usage {
            // 1 × 0.5 / 1M = 0.0000005: up (banker's rounding would give 0).
            input_tokens: Some(1),
            // 1 × 0.49 / 1M = 0.00000049: down.
            output_tokens: Some(1),
            // 1 × 2.5 / 1M = 0.0000025: up to 3 (banker's rounding would give 2).
            cache_read_input_tokens: Some(1),
            ..Usage::default()
        });
        assert_eq!(cost.input.to_string(), "0.000001");
        assert_eq!(cost.output.to_string(), "0.000000");
        assert_eq!(cost.cache_read.to_string(), "0.000003");
        assert_eq!(cost.total.to_string(), "0.000004");
    }

    #[test]
    fn prices_5_minute_and_1_hour_writes_apart() {
        let opus = snapshot(["5", "25", "6.25", "10", "0.50"]);
        let cost = opus.cost(&Usage {
            cache_creation_input_tokens: Some(300_000),
            ephemeral_5m_input_tokens: Some(100_000),
            ephemeral_1h_input_tokens: Some(200_000),
            ..Usage::default()
        });
        // 100k × 6.25 + 200k × 10, per million.
        assert_eq!(cost.cache_write, dec("2.625"));
        assert_eq!(cost.total, dec("2.625"));
    }

    #[test]
    fn writes_beyond_the_breakdown_are_5_minute_writes() {
        let opus = snapshot(["5", "25", "6.25", "10", "0.50"]);
        let cost = opus.cost(&Usage {
            cache_creation_input_tokens: Some(400_000),
            ephemeral_1h_input_tokens: Some(100_000),
            ..Usage::default()
        });
        // 300k unlabelled × 6.25 + 100k × 10, per million.
        assert_eq!(cost.cache_write, dec("2.875"));
    }

    #[test]
    fn without_a_breakdown_every_write_is_a_5_minute_write() {
        let opus = snapshot(["5", "25", "6.25", "10", "0.50"]);
        let cost = opus.cost(&Usage {
            cache_creation_input_tokens: Some(100_000),
            ..Usage::default()
        });
        assert_eq!(cost.cache_write, dec("0.625"));
    }

    #[test]
    fn cache_writes_are_rounded_once() {
        let cheap = snapshot(["0", "0", "0.4", "0.4", "0"]);
        let cost = cheap.cost(&Usage {
            cache_creation_input_tokens: Some(2),
            ephemeral_5m_input_tokens: Some(1),
            ephemeral_1h_input_tokens: Some(1),
            ..Usage::default()
        });
        // 0.0000004 + 0.0000004 = 0.0000008 → 0.000001; rounding each first would give 0.
        assert_eq!(cost.cache_write.to_string(), "0.000001");
    }

    #[test]
    fn nothing_reported_costs_zero_with_six_decimals() {
        let cost = snapshot(["5", "25", "6.25", "10", "0.50"]).cost(&Usage::default());
        assert_eq!(cost, Cost::default());
        for component in [
            cost.input,
            cost.output,
            cost.cache_write,
            cost.cache_read,
            cost.total,
        ] {
            assert_eq!(component.to_string(), "0.000000");
        }
    }

    #[test]
    fn absurd_prices_saturate_instead_of_panicking() {
        let max = Decimal::MAX.to_string();
        let absurd = snapshot([&max, &max, &max, &max, &max]);
        let cost = absurd.cost(&Usage {
            input_tokens: Some(u64::MAX),
            output_tokens: Some(u64::MAX),
            cache_creation_input_tokens: Some(u64::MAX),
            cache_read_input_tokens: Some(u64::MAX),
            ephemeral_5m_input_tokens: Some(u64::MAX),
            ephemeral_1h_input_tokens: Some(u64::MAX),
            ..Usage::default()
        });
        assert!(cost.total > Decimal::ZERO);
    }

    /// A price per million tokens: up to $100,000, with up to 4 decimals.
    fn price() -> impl Strategy<Value = Decimal> {
        (0u32..=4).prop_flat_map(|scale| {
            let units_per_dollar = 10i64.pow(scale);
            (0..=100_000 * units_per_dollar).prop_map(move |units| Decimal::new(units, scale))
        })
    }

    /// Prices as they are in practice: a 1-hour write costs at least a 5-minute one.
    fn prices() -> impl Strategy<Value = Prices> {
        (price(), price(), price(), price(), price()).prop_map(
            |(input, output, cache_write_5m, extra_for_1h, cache_read)| Prices {
                input,
                output,
                cache_write_5m,
                cache_write_1h: cache_write_5m + extra_for_1h,
                cache_read,
            },
        )
    }

    fn usage() -> impl Strategy<Value = Usage> {
        let count = || proptest::option::of(any::<u64>());
        (count(), count(), count(), count(), count(), count()).prop_map(
            |(input, output, creation, read, five_minutes, one_hour)| Usage {
                input_tokens: input,
                output_tokens: output,
                cache_creation_input_tokens: creation,
                cache_read_input_tokens: read,
                ephemeral_5m_input_tokens: five_minutes,
                ephemeral_1h_input_tokens: one_hour,
                ..Usage::default()
            },
        )
    }

    fn priced(prices: Prices) -> PriceSnapshot {
        PriceSnapshot {
            prices,
            ..snapshot(["0", "0", "0", "0", "0"])
        }
    }

    fn components(cost: &Cost) -> [Decimal; 5] {
        [
            cost.input,
            cost.output,
            cost.cache_write,
            cost.cache_read,
            cost.total,
        ]
    }

    proptest! {
        #[test]
        fn components_have_six_decimals_and_add_up(prices in prices(), usage in usage()) {
            let cost = priced(prices).cost(&usage);
            for component in components(&cost) {
                prop_assert_eq!(component.scale(), COST_SCALE);
                prop_assert!(component >= Decimal::ZERO);
            }
            prop_assert_eq!(cost.total, cost.input + cost.output + cost.cache_write + cost.cache_read);
        }

        #[test]
        fn cost_is_monotone_in_every_count(
            prices in prices(),
            usage in usage(),
            field in 0usize..6,
            more in 0u64..=u64::from(u32::MAX),
        ) {
            let mut bigger = usage;
            let count = [
                &mut bigger.input_tokens,
                &mut bigger.output_tokens,
                &mut bigger.cache_creation_input_tokens,
                &mut bigger.cache_read_input_tokens,
                &mut bigger.ephemeral_5m_input_tokens,
                &mut bigger.ephemeral_1h_input_tokens,
            ]
            .into_iter()
            .nth(field)
            .unwrap();
            *count = Some(count.unwrap_or(0).saturating_add(more));

            let snapshot = priced(prices);
            let (before, after) = (snapshot.cost(&usage), snapshot.cost(&bigger));
            for (before, after) in components(&before).into_iter().zip(components(&after)) {
                prop_assert!(before <= after, "{} > {}", before, after);
            }
        }
    }
}
