//! Your prices, as JSON, merged into a catalog.

use std::fmt::Display;

use chrono::NaiveDate;
use rust_decimal::Decimal;
use serde_json::{Map, Value};

use super::catalog::pinned_region;
use super::defaults::{
    CachePricing, built_in_pricing, with_cache_multipliers, with_cache_writes_as_input,
};
use super::{PriceCatalog, PriceEntry, Prices, PricingError, normalize_model_id};
use crate::record::Provider;

/// How a JSON price table is keyed, from its top level down to the entries.
///
/// Provider names and regions are matched exactly, as [`PriceCatalog::lookup`] matches
/// them; model ids are normalised ([`normalize_model_id`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PriceTable<'a> {
    /// `{"<provider>": {"<region>": {"<model>": entry}}}`: any providers' prices.
    ByProvider,
    /// `{"<region>": {"<model>": entry}}`: one provider's prices.
    ByRegion(&'a Provider),
    /// `{"<model>": entry}`: one provider's prices in one region.
    ByModel(&'a Provider, &'a str),
}

/// One price of an entry: its key, its short alias, and the price it sets.
struct PriceKey {
    name: &'static str,
    alias: &'static str,
    price: fn(&mut Prices) -> &mut Decimal,
}

/// An entry's price keys, in [`Prices`]' order; the constants below index them.
const PRICE_KEYS: [PriceKey; 5] = [
    PriceKey {
        name: "input_price_per_million",
        alias: "input",
        price: |prices| &mut prices.input,
    },
    PriceKey {
        name: "output_price_per_million",
        alias: "output",
        price: |prices| &mut prices.output,
    },
    PriceKey {
        name: "cache_write_price_per_million",
        alias: "cache_write",
        price: |prices| &mut prices.cache_write_5m,
    },
    PriceKey {
        name: "cache_write_1h_price_per_million",
        alias: "cache_write_1h",
        price: |prices| &mut prices.cache_write_1h,
    },
    PriceKey {
        name: "cache_read_price_per_million",
        alias: "cache_read",
        price: |prices| &mut prices.cache_read,
    },
];
const INPUT: usize = 0;
const OUTPUT: usize = 1;
const CACHE_WRITE_5M: usize = 2;
const CACHE_WRITE_1H: usize = 3;
const CACHE_READ: usize = 4;

/// An entry's key for the date its prices apply from.
const EFFECTIVE_DATE: &str = "effective_date";

/// The prices an entry gives, parallel to [`PRICE_KEYS`].
type GivenPrices = [Option<Decimal>; PRICE_KEYS.len()];

impl PriceCatalog {
    /// Merges your prices, JSON keyed as `table` says, into this catalog.
    ///
    /// `origin` names the JSON in error messages (`"pricing.json"`, a variable's name).
    /// The catalog is taken by value, so that a refused table leaves no half-merged one.
    ///
    /// An entry is `{"input_price_per_million": "3.00", "output_price_per_million": 15,
    /// "cache_write_price_per_million": "3.75", "cache_write_1h_price_per_million": "6",
    /// "cache_read_price_per_million": "0.30", "effective_date": "2025-01-01"}`; the short
    /// keys `input`, `output`, `cache_write` (5-minute), `cache_write_1h` and
    /// `cache_read` work too. A price is a non-negative decimal, as a string or a number
    /// (a number is read in its shortest exact form; write a string for more than 15
    /// significant digits). Plan prices live in region [`PLAN_REGION`](super::PLAN_REGION)
    /// only.
    ///
    /// An entry for a price the catalog has changes only the keys it gives. An entry for
    /// a new model must give input and output prices; the cache prices and the date it
    /// does not give follow the provider's built-in prices, and nothing else — a price
    /// nobody stated would be recorded as billed, so none is made up:
    ///
    /// * **Plan** and **Bedrock** (Anthropic's list prices): Anthropic's multiples of the
    ///   input price (5-minute write 1.25×, 1-hour write 2×, read 0.1×), dated from the
    ///   list prices' date.
    /// * **OpenAI**: cache writes at the input price (OpenAI bills none); the cache read
    ///   must be given, since OpenAI's discount for it differs from model to model; dated
    ///   from the built-in OpenAI prices' date.
    /// * **Any other provider**: every price and `effective_date` must be given — the
    ///   library knows nothing of how that provider prices its cache.
    ///
    /// # Errors
    ///
    /// Invalid JSON, an unknown key, a missing or bad value fail the whole call, with
    /// `origin` and the path of the bad part in the message.
    ///
    /// ```
    /// use usage_layer::Provider;
    /// use usage_layer::pricing::{PriceCatalog, PriceTable};
    ///
    /// let catalog = PriceCatalog::defaults().merge_json(
    ///     PriceTable::ByProvider,
    ///     "pricing.json",
    ///     r#"{
    ///         "bedrock": {"eu-west-1": {"claude-sonnet-4-5": {"input": "4", "output": 20}}},
    ///         "plan": {"global": {"claude-sonnet-4-5": {"input_price_per_million": "0"}}},
    ///         "openai": {"global": {"gpt-next": {"input": 2, "output": 8, "cache_read": "0.5"}}}
    ///     }"#,
    /// )?;
    /// let eu = catalog.lookup(&Provider::BEDROCK, Some("eu-west-1"), "claude-sonnet-4-5").unwrap();
    /// assert_eq!(eu.prices.cache_write_5m.to_string(), "5"); // 1.25 × input
    /// let plan = catalog.lookup(&Provider::PLAN, None, "claude-sonnet-4-5").unwrap();
    /// assert!(plan.prices.input.is_zero());
    /// assert_eq!(plan.prices.output.to_string(), "15.00"); // not given: kept
    /// let next = catalog.lookup(&Provider::OPENAI, None, "gpt-next").unwrap();
    /// assert_eq!(next.prices.cache_write_5m.to_string(), "2"); // OpenAI bills no cache writes
    ///
    /// // A provider without built-in prices: nothing is made up.
    /// let vertex = Provider::new("vertex");
    /// let error = PriceCatalog::defaults()
    ///     .merge_json(
    ///         PriceTable::ByModel(&vertex, "us-east5"),
    ///         "vertex.json",
    ///         r#"{"claude-sonnet-4-5": {"input": 3, "output": 15}}"#,
    ///     )
    ///     .unwrap_err();
    /// assert_eq!(
    ///     error.to_string(),
    ///     "vertex.json: claude-sonnet-4-5.cache_write_price_per_million: \
    ///      missing (vertex has no built-in prices to follow)",
    /// );
    /// # Ok::<(), usage_layer::pricing::PricingError>(())
    /// ```
    pub fn merge_json(
        mut self,
        table: PriceTable<'_>,
        origin: &str,
        json: &str,
    ) -> Result<Self, PricingError> {
        let mut merge = Merge {
            catalog: &mut self,
            origin,
        };
        let top = merge.parse(json)?;
        match table {
            PriceTable::ByProvider => merge.providers(&top)?,
            PriceTable::ByRegion(provider) => merge.regions(provider, &top, "")?,
            PriceTable::ByModel(provider, region) => merge.region(provider, region, &top, "")?,
        }
        Ok(self)
    }
}

/// Merges one JSON table into a catalog; paths are dotted JSON keys, `""` the top.
struct Merge<'a> {
    catalog: &'a mut PriceCatalog,
    origin: &'a str,
}

impl Merge<'_> {
    /// `{"<provider>": {"<region>": {"<model>": entry}}}`.
    fn providers(&mut self, providers: &Value) -> Result<(), PricingError> {
        for (name, regions) in self.object(providers, "")? {
            if name.trim().is_empty() {
                return Err(self.invalid(name, "empty provider"));
            }
            self.regions(&Provider::new(name.clone()), regions, name)?;
        }
        Ok(())
    }

    /// `{"<region>": {"<model>": entry}}` for `provider`.
    fn regions(
        &mut self,
        provider: &Provider,
        regions: &Value,
        path: &str,
    ) -> Result<(), PricingError> {
        for (region, models) in self.object(regions, path)? {
            self.region(provider, region, models, &child(path, region))?;
        }
        Ok(())
    }

    /// `{"<model>": entry}` for `provider` in `region`.
    fn region(
        &mut self,
        provider: &Provider,
        region: &str,
        models: &Value,
        path: &str,
    ) -> Result<(), PricingError> {
        if region.trim().is_empty() {
            return Err(self.invalid(path, "empty region"));
        }
        if let Some(pinned) = pinned_region(provider)
            && region != pinned
        {
            return Err(self.invalid(
                path,
                format!("{provider} prices live in region \"{pinned}\" only"),
            ));
        }
        for (model, entry) in self.object(models, path)? {
            self.entry(provider, region, model, entry, &child(path, model))?;
        }
        Ok(())
    }

    fn entry(
        &mut self,
        provider: &Provider,
        region: &str,
        model: &str,
        entry: &Value,
        path: &str,
    ) -> Result<(), PricingError> {
        let key = normalize_model_id(model);
        if key.is_empty() {
            return Err(self.invalid(path, "empty model id"));
        }
        let mut given: GivenPrices = Default::default();
        let mut effective_date = None;
        for (name, value) in self.object(entry, path)? {
            let path = child(path, name);
            if name == EFFECTIVE_DATE {
                effective_date = Some(date(value).map_err(|reason| self.invalid(&path, reason))?);
                continue;
            }
            let Some(index) = PRICE_KEYS
                .iter()
                .position(|key| name == key.name || name == key.alias)
            else {
                return Err(self.invalid(&path, unknown_key()));
            };
            let price = price(value).map_err(|reason| self.invalid(&path, reason))?;
            if given[index].replace(price).is_some() {
                let key = &PRICE_KEYS[index];
                return Err(self.invalid(
                    &path,
                    format!("given twice, as {} and {}", key.name, key.alias),
                ));
            }
        }

        let base = match self.catalog.get(provider, region, &key) {
            Some(existing) => *existing,
            None => self.new_model(provider, &given, effective_date, path)?,
        };
        let mut prices = base.prices;
        for (key, price) in PRICE_KEYS.iter().zip(given) {
            if let Some(price) = price {
                *(key.price)(&mut prices) = price;
            }
        }
        let entry = PriceEntry {
            prices,
            effective_date: effective_date.unwrap_or(base.effective_date),
        };
        self.catalog.insert(provider, region, &key, entry);
        Ok(())
    }

    /// The entry a model the catalog has no price for starts from: what it gives, and
    /// what its provider's built-in prices say of the rest (see
    /// [`PriceCatalog::merge_json`]).
    fn new_model(
        &self,
        provider: &Provider,
        given: &GivenPrices,
        effective_date: Option<NaiveDate>,
        path: &str,
    ) -> Result<PriceEntry, PricingError> {
        let missing = |key: &str, why: Option<&str>| {
            let reason = why.map_or_else(|| "missing".to_owned(), |why| format!("missing ({why})"));
            self.invalid(&child(path, key), reason)
        };
        let given_price = |index: usize, why: Option<&str>| {
            given[index].ok_or_else(|| missing(PRICE_KEYS[index].name, why))
        };
        let input = given_price(INPUT, None)?;
        let output = given_price(OUTPUT, None)?;
        match built_in_pricing(provider) {
            Some((CachePricing::Multipliers, date)) => Ok(PriceEntry {
                prices: with_cache_multipliers(input, output),
                effective_date: date,
            }),
            Some((CachePricing::WritesAsInput, date)) => {
                let why = format!("{provider}'s cache read price differs from model to model");
                let cache_read = given_price(CACHE_READ, Some(&why))?;
                Ok(PriceEntry {
                    prices: with_cache_writes_as_input(input, output, cache_read),
                    effective_date: date,
                })
            }
            None => {
                let why = format!("{provider} has no built-in prices to follow");
                let why = Some(why.as_str());
                let prices = Prices {
                    input,
                    output,
                    cache_write_5m: given_price(CACHE_WRITE_5M, why)?,
                    cache_write_1h: given_price(CACHE_WRITE_1H, why)?,
                    cache_read: given_price(CACHE_READ, why)?,
                };
                Ok(PriceEntry {
                    prices,
                    effective_date: effective_date.ok_or_else(|| missing(EFFECTIVE_DATE, why))?,
                })
            }
        }
    }

    fn parse(&self, json: &str) -> Result<Value, PricingError> {
        serde_json::from_str(json).map_err(|error| {
            // serde_json ends its message with the position, which we show first.
            let message = error.to_string();
            let position = format!(" at line {} column {}", error.line(), error.column());
            PricingError::InvalidJson {
                origin: self.origin.to_owned(),
                line: error.line(),
                column: error.column(),
                message: message
                    .strip_suffix(&position)
                    .unwrap_or(&message)
                    .to_owned(),
            }
        })
    }

    fn object<'v>(
        &self,
        value: &'v Value,
        path: &str,
    ) -> Result<&'v Map<String, Value>, PricingError> {
        value
            .as_object()
            .ok_or_else(|| self.invalid(path, format!("expected an object, found {}", kind(value))))
    }

    fn invalid(&self, path: &str, reason: impl Display) -> PricingError {
        PricingError::InvalidEntry {
            origin: self.origin.to_owned(),
            path: if path.is_empty() { "top level" } else { path }.to_owned(),
            reason: reason.to_string(),
        }
    }
}

fn child(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_owned()
    } else {
        format!("{path}.{key}")
    }
}

fn unknown_key() -> String {
    let names: Vec<String> = PRICE_KEYS
        .iter()
        .map(|key| format!("{} ({})", key.name, key.alias))
        .chain([EFFECTIVE_DATE.to_owned()])
        .collect();
    format!("unknown key; expected one of {}", names.join(", "))
}

/// A price: a non-negative decimal, as a JSON string or number.
fn price(value: &Value) -> Result<Decimal, String> {
    let text = match value {
        Value::String(text) => text.trim().to_owned(),
        // serde_json holds a fraction as an f64 and writes it in its shortest round-trip
        // form, which is the number as written (up to 15 significant digits); parsing
        // that text is exact, where converting the f64 would carry its binary error.
        Value::Number(number) => number.to_string(),
        other => {
            return Err(format!(
                "expected a decimal string or number, found {}",
                kind(other)
            ));
        }
    };
    let price = if text.contains(['e', 'E']) {
        Decimal::from_scientific(&text)
    } else {
        Decimal::from_str_exact(&text)
    }
    .map_err(|_| format!("not a decimal: {value}"))?;
    if price < Decimal::ZERO {
        return Err(format!("negative: {value}"));
    }
    Ok(price)
}

fn date(value: &Value) -> Result<NaiveDate, String> {
    value
        .as_str()
        .and_then(|text| NaiveDate::parse_from_str(text, "%Y-%m-%d").ok())
        .ok_or_else(|| format!("not a date (YYYY-MM-DD): {value}"))
}

fn kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests {
    use std::str::FromStr;

    use proptest::prelude::*;

    use super::*;
    use crate::pricing::PLAN_REGION;
    use crate::pricing::defaults::{LIST_PRICE_DATE, OPENAI_PRICE_DATE};

    const ORIGIN: &str = "pricing.json";

    fn dec(text: &str) -> Decimal {
        Decimal::from_str(text).unwrap()
    }

    fn day(text: &str) -> NaiveDate {
        NaiveDate::from_str(text).unwrap()
    }

    fn prices(catalog: &PriceCatalog, provider: &Provider, region: &str, model: &str) -> Prices {
        let snapshot = catalog.lookup(provider, Some(region), model).unwrap();
        assert_eq!(snapshot.region, region);
        snapshot.prices
    }

    fn merge(table: PriceTable<'_>, json: &str) -> Result<PriceCatalog, PricingError> {
        PriceCatalog::defaults().merge_json(table, ORIGIN, json)
    }

    fn plan_models(json: &str) -> Result<PriceCatalog, PricingError> {
        merge(PriceTable::ByModel(&Provider::PLAN, PLAN_REGION), json)
    }

    const FULL_ENTRY: &str = r#"{
        "input_price_per_million": "2.00",
        "output_price_per_million": 10,
        "cache_write_price_per_million": "2.5",
        "cache_write_1h_price_per_million": 4.0,
        "cache_read_price_per_million": "0.20",
        "effective_date": "2026-01-01"
    }"#;

    fn full_entry() -> PriceEntry {
        PriceEntry {
            prices: Prices {
                input: dec("2"),
                output: dec("10"),
                cache_write_5m: dec("2.5"),
                cache_write_1h: dec("4"),
                cache_read: dec("0.2"),
            },
            effective_date: day("2026-01-01"),
        }
    }

    fn entry(catalog: &PriceCatalog, provider: &Provider, region: &str, model: &str) -> PriceEntry {
        let snapshot = catalog.lookup(provider, Some(region), model).unwrap();
        assert_eq!(snapshot.region, region);
        PriceEntry {
            prices: snapshot.prices,
            effective_date: snapshot.effective_date,
        }
    }

    #[test]
    fn a_table_keyed_by_provider_prices_any_provider() {
        let vertex = Provider::new("vertex");
        let catalog = merge(
            PriceTable::ByProvider,
            &format!(
                r#"{{"bedrock": {{"us-west-2": {{"us.anthropic.claude-sonnet-4-5-20250929-v1:0": {FULL_ENTRY}}}}},
                    "plan": {{"global": {{"claude-sonnet-4-5": {{"output": "14"}}}}}},
                    "openai": {{"global": {{"gpt-4o": {{"cache_read": "1"}}}}}},
                    "vertex": {{"us-east5": {{"claude-sonnet-4-5": {FULL_ENTRY}}}}}}}"#
            ),
        )
        .unwrap();

        assert_eq!(
            entry(
                &catalog,
                &Provider::BEDROCK,
                "us-west-2",
                "claude-sonnet-4-5"
            ),
            full_entry()
        );
        assert_eq!(
            entry(&catalog, &vertex, "us-east5", "claude-sonnet-4-5"),
            full_entry()
        );
        assert_eq!(
            prices(&catalog, &Provider::PLAN, PLAN_REGION, "claude-sonnet-4-5").output,
            dec("14")
        );
        let gpt = prices(&catalog, &Provider::OPENAI, PLAN_REGION, "gpt-4o");
        assert_eq!((gpt.input, gpt.cache_read), (dec("2.5"), dec("1")));
        // Bedrock's default region is untouched.
        assert_eq!(
            prices(
                &catalog,
                &Provider::BEDROCK,
                "us-east-1",
                "claude-sonnet-4-5"
            )
            .output,
            dec("15")
        );
    }

    #[test]
    fn tables_keyed_by_region_or_model_price_one_provider() {
        let by_region = merge(
            PriceTable::ByRegion(&Provider::BEDROCK),
            &format!(r#"{{"eu-central-1": {{"claude-haiku-4-5": {FULL_ENTRY}}}}}"#),
        )
        .unwrap();
        assert_eq!(
            entry(
                &by_region,
                &Provider::BEDROCK,
                "eu-central-1",
                "claude-haiku-4-5"
            ),
            full_entry()
        );
        assert_eq!(
            prices(&by_region, &Provider::PLAN, PLAN_REGION, "claude-haiku-4-5").input,
            dec("1")
        );

        let by_model = plan_models(&format!(r#"{{"claude-3-haiku": {FULL_ENTRY}}}"#)).unwrap();
        assert_eq!(
            entry(&by_model, &Provider::PLAN, PLAN_REGION, "claude-3-haiku"),
            full_entry()
        );
        assert_eq!(
            prices(&by_model, &Provider::BEDROCK, "us-east-1", "claude-3-haiku").input,
            dec("0.25")
        );
    }

    #[test]
    fn string_and_number_prices_are_exact() {
        for (json, expected) in [
            (r#""0.30""#, "0.30"),
            ("0.3", "0.3"),
            ("0.1", "0.1"),
            ("3", "3"),
            ("1e-7", "0.0000001"),
            ("1.5E2", "150"),
            (r#"" 2.5 ""#, "2.5"),
            (r#""2.5e-1""#, "0.25"),
            ("0.123456789012345", "0.123456789012345"),
            ("-0", "0"),
        ] {
            let catalog = plan_models(&format!(
                r#"{{"claude-opus-4-5": {{"cache_read": {json}}}}}"#
            ))
            .unwrap();
            let read = prices(&catalog, &Provider::PLAN, PLAN_REGION, "claude-opus-4-5").cache_read;
            assert_eq!(read, dec(expected), "{json}");
        }
    }

    #[test]
    fn an_entry_changes_only_the_keys_it_gives() {
        let before = PriceCatalog::defaults()
            .lookup(&Provider::BEDROCK, None, "claude-opus-4-1")
            .unwrap();
        let catalog = merge(
            PriceTable::ByRegion(&Provider::BEDROCK),
            r#"{"us-east-1": {"claude-opus-4-1": {"cache_read_price_per_million": "1"}}}"#,
        )
        .unwrap();
        let after = catalog
            .lookup(&Provider::BEDROCK, None, "claude-opus-4-1")
            .unwrap();
        assert_eq!(
            after.prices,
            Prices {
                cache_read: dec("1"),
                ..before.prices
            }
        );
        assert_eq!(after.effective_date, before.effective_date);
    }

    #[test]
    fn a_new_plan_or_bedrock_model_takes_anthropics_multipliers() {
        let catalog = merge(
            PriceTable::ByProvider,
            r#"{"plan": {"global": {"claude-future-1": {"input": "4", "output": "20"}}},
                "bedrock": {"eu-west-1": {"claude-future-1": {"input": "4", "output": "20", "cache_read": "1"}}}}"#,
        )
        .unwrap();
        let plan = entry(&catalog, &Provider::PLAN, PLAN_REGION, "claude-future-1");
        assert_eq!(
            plan,
            PriceEntry {
                prices: Prices {
                    input: dec("4"),
                    output: dec("20"),
                    cache_write_5m: dec("5"),
                    cache_write_1h: dec("8"),
                    cache_read: dec("0.4"),
                },
                effective_date: LIST_PRICE_DATE,
            }
        );
        let bedrock = prices(&catalog, &Provider::BEDROCK, "eu-west-1", "claude-future-1");
        assert_eq!(
            bedrock,
            Prices {
                cache_read: dec("1"),
                ..plan.prices
            }
        );
        // Only where it was given.
        assert!(
            catalog
                .lookup(&Provider::BEDROCK, Some("us-east-1"), "claude-future-1")
                .is_none()
        );
    }

    #[test]
    fn a_new_openai_model_writes_at_input_and_gives_its_read_price() {
        let openai = PriceTable::ByModel(&Provider::OPENAI, PLAN_REGION);
        let catalog = merge(
            openai,
            r#"{"gpt-next": {"input": 2, "output": 8, "cache_read": "0.5"}}"#,
        )
        .unwrap();
        assert_eq!(
            entry(&catalog, &Provider::OPENAI, PLAN_REGION, "gpt-next"),
            PriceEntry {
                prices: with_cache_writes_as_input(dec("2"), dec("8"), dec("0.5")),
                effective_date: OPENAI_PRICE_DATE,
            }
        );
        assert_eq!(
            merge(openai, r#"{"gpt-next": {"input": 2, "output": 8}}"#)
                .unwrap_err()
                .to_string(),
            "pricing.json: gpt-next.cache_read_price_per_million: \
             missing (openai's cache read price differs from model to model)"
        );
    }

    #[test]
    fn a_new_model_of_another_provider_gives_every_price_and_its_date() {
        let vertex = Provider::new("vertex");
        let table = PriceTable::ByModel(&vertex, "us-east5");
        for (json, expected) in [
            (
                r#"{"claude-x": {"input": 3, "output": 15}}"#,
                "claude-x.cache_write_price_per_million",
            ),
            (
                r#"{"claude-x": {"input": 3, "output": 15, "cache_write": 3, "cache_write_1h": 3}}"#,
                "claude-x.cache_read_price_per_million",
            ),
            (
                r#"{"claude-x": {"input": 3, "output": 15, "cache_write": 3, "cache_write_1h": 3, "cache_read": 0}}"#,
                "claude-x.effective_date",
            ),
        ] {
            assert_eq!(
                merge(table, json).unwrap_err().to_string(),
                format!(
                    "pricing.json: {expected}: missing (vertex has no built-in prices to follow)"
                ),
            );
        }

        let catalog = merge(table, &format!(r#"{{"claude-x": {FULL_ENTRY}}}"#))
            .unwrap()
            .merge_json(table, ORIGIN, r#"{"claude-x": {"output": 11}}"#)
            .unwrap();
        assert_eq!(
            entry(&catalog, &vertex, "us-east5", "claude-x"),
            PriceEntry {
                prices: Prices {
                    output: dec("11"),
                    ..full_entry().prices
                },
                ..full_entry()
            }
        );
    }

    #[test]
    fn plan_prices_live_in_global_in_every_table() {
        for (table, json, path) in [
            (
                PriceTable::ByProvider,
                r#"{"plan": {"us-east-1": {}}}"#,
                "plan.us-east-1",
            ),
            (
                PriceTable::ByRegion(&Provider::PLAN),
                r#"{"us-east-1": {}}"#,
                "us-east-1",
            ),
            (
                PriceTable::ByModel(&Provider::PLAN, "us-east-1"),
                "{}",
                "top level",
            ),
        ] {
            assert_eq!(
                merge(table, json).unwrap_err().to_string(),
                format!(r#"pricing.json: {path}: plan prices live in region "global" only"#)
            );
        }
    }

    #[test]
    fn errors_name_the_origin_and_the_path() {
        let bedrock = PriceTable::ByRegion(&Provider::BEDROCK);
        let plan = PriceTable::ByModel(&Provider::PLAN, PLAN_REGION);
        for (table, json, expected) in [
            (
                PriceTable::ByProvider,
                r#"{"bedrock": {"us-east-1": {"claude-sonnet-4-5": {"input_price_per_million": "abc"}}}}"#,
                r#"bedrock.us-east-1.claude-sonnet-4-5.input_price_per_million: not a decimal: "abc""#,
            ),
            (
                plan,
                r#"{"claude-x": {"input_price_per_million": "1"}}"#,
                "claude-x.output_price_per_million: missing",
            ),
            (
                bedrock,
                r#"{"us-east-1": {"claude-opus-4-5": {"cache_raed": "1"}}}"#,
                "us-east-1.claude-opus-4-5.cache_raed: unknown key; expected one of \
                 input_price_per_million (input), output_price_per_million (output), \
                 cache_write_price_per_million (cache_write), cache_write_1h_price_per_million (cache_write_1h), \
                 cache_read_price_per_million (cache_read), effective_date",
            ),
            (
                plan,
                r#"{"claude-opus-4-5": {"output": -1}}"#,
                "claude-opus-4-5.output: negative: -1",
            ),
            (
                plan,
                r#"{"claude-opus-4-5": {"output": "-0.5"}}"#,
                r#"claude-opus-4-5.output: negative: "-0.5""#,
            ),
            (
                plan,
                r#"{"claude-opus-4-5": {"output": null}}"#,
                "claude-opus-4-5.output: expected a decimal string or number, found null",
            ),
            (
                plan,
                r#"{"claude-opus-4-5": {"input": "1", "input_price_per_million": "2"}}"#,
                "claude-opus-4-5.input_price_per_million: given twice, as input_price_per_million and input",
            ),
            (
                plan,
                r#"{"claude-opus-4-5": {"effective_date": "2025-13-01"}}"#,
                r#"claude-opus-4-5.effective_date: not a date (YYYY-MM-DD): "2025-13-01""#,
            ),
            (
                plan,
                r#"{"claude-opus-4-5": "5"}"#,
                "claude-opus-4-5: expected an object, found a string",
            ),
            (
                PriceTable::ByProvider,
                "[]",
                "top level: expected an object, found an array",
            ),
            (
                plan,
                r#"{" us. ": {"input": "1"}}"#,
                " us. : empty model id",
            ),
            (
                PriceTable::ByProvider,
                r#"{"bedrock": {"": {}}}"#,
                "bedrock.: empty region",
            ),
            (
                PriceTable::ByProvider,
                r#"{" ": {"us-east-1": {}}}"#,
                " : empty provider",
            ),
            (
                PriceTable::ByProvider,
                r#"{"bedrock": {"us-east-1": []}}"#,
                "bedrock.us-east-1: expected an object, found an array",
            ),
            (
                bedrock,
                r#"{"us-east-1" 5}"#,
                "invalid JSON at line 1 column 14: expected `:`",
            ),
            (
                plan,
                "",
                "invalid JSON at line 1 column 0: EOF while parsing a value",
            ),
        ] {
            assert_eq!(
                merge(table, json).unwrap_err().to_string(),
                format!("{ORIGIN}: {expected}"),
                "{json}"
            );
        }
    }

    #[test]
    fn invalid_json_reports_its_position() {
        let Err(PricingError::InvalidJson {
            origin,
            line,
            column,
            ..
        }) = merge(PriceTable::ByProvider, "{\n  \"a\": x}")
        else {
            panic!("not an InvalidJson error");
        };
        assert_eq!((origin.as_str(), line, column), (ORIGIN, 2, 8));
    }

    /// A price as a JSON string or number, and its exact value.
    fn any_price() -> impl Strategy<Value = (String, Decimal)> {
        // A JSON number is read exactly up to 15 significant digits; a string, always.
        const EXACT_AS_NUMBER: i64 = 10_i64.pow(15);
        (0..EXACT_AS_NUMBER * 1_000, 0u32..=12, any::<bool>()).prop_map(
            |(mantissa, scale, as_string)| {
                let price = Decimal::new(mantissa, scale);
                if as_string || mantissa >= EXACT_AS_NUMBER {
                    (format!(r#""{price}""#), price)
                } else {
                    (price.to_string(), price)
                }
            },
        )
    }

    proptest! {
        /// Any provider's prices, in any region, are merged exactly as written.
        #[test]
        fn any_providers_prices_are_merged_exactly(
            provider in prop_oneof![
                Just(Provider::PLAN),
                Just(Provider::BEDROCK),
                Just(Provider::OPENAI),
                "[a-z][a-z0-9 ._-]{0,15}".prop_map(Provider::new),
            ],
            region in "[a-z0-9][a-z0-9 ._-]{0,15}",
            model in "[a-z][a-z0-9.-]{0,23}"
                .prop_filter("a model id", |model| !normalize_model_id(model).is_empty()),
            given in proptest::array::uniform5(any_price()),
            date in (0u64..3_000).prop_map(|days| LIST_PRICE_DATE + chrono::Days::new(days)),
        ) {
            let region = pinned_region(&provider).map_or(region, str::to_owned);
            let entry: Map<String, Value> = PRICE_KEYS
                .iter()
                .zip(&given)
                .map(|(key, (json, _))| (key.alias.to_owned(), serde_json::from_str(json).unwrap()))
                .chain([(EFFECTIVE_DATE.to_owned(), Value::from(date.to_string()))])
                .collect();
            let table = serde_json::json!({ provider.as_str(): { &region: { &model: entry } } });

            let catalog = PriceCatalog::defaults()
                .merge_json(PriceTable::ByProvider, ORIGIN, &table.to_string())
                .unwrap();
            let snapshot = catalog.lookup(&provider, Some(&region), &model).unwrap();
            prop_assert_eq!(&snapshot.region, &region);
            prop_assert_eq!(snapshot.model_id, normalize_model_id(&model));
            prop_assert_eq!(snapshot.effective_date, date);
            let [input, output, cache_write_5m, cache_write_1h, cache_read] = given.map(|(_, price)| price);
            prop_assert_eq!(snapshot.prices, Prices { input, output, cache_write_5m, cache_write_1h, cache_read });
        }
    }
}
