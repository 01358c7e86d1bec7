//! Operator prices from `PROXY_MODEL_PRICING` and `PROXY_PLAN_PRICING`, merged into a
//! catalog; the formats are the original Python proxy's.

use std::env::VarError;
use std::fmt::Display;

use chrono::NaiveDate;
use rust_decimal::Decimal;
use serde_json::{Map, Value};

use super::catalog::pinned_region;
use super::defaults::{LIST_PRICE_DATE, with_cache_multipliers};
use super::{PLAN_REGION, PriceCatalog, PriceEntry, Prices, PricingError, normalize_model_id};
use crate::record::Provider;

const MODEL_PRICING: &str = "PROXY_MODEL_PRICING";
const PLAN_PRICING: &str = "PROXY_PLAN_PRICING";

/// The providers the provider-keyed form of `PROXY_MODEL_PRICING` may name.
const KEYED_PROVIDERS: [Provider; 2] = [Provider::PLAN, Provider::BEDROCK];

/// The provider the legacy, region-keyed form of `PROXY_MODEL_PRICING` prices.
const LEGACY_PROVIDER: Provider = Provider::BEDROCK;

/// One price of an entry: its key, its short alias, and the price it sets.
struct PriceKey {
    name: &'static str,
    alias: &'static str,
    price: fn(&mut Prices) -> &mut Decimal,
}

/// An entry's price keys; [`INPUT`] and [`OUTPUT`] index the two a new model must give.
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

/// An entry's key for the date its prices apply from.
const EFFECTIVE_DATE: &str = "effective_date";

/// The prices an entry gives, parallel to [`PRICE_KEYS`].
type GivenPrices = [Option<Decimal>; PRICE_KEYS.len()];

impl PriceCatalog {
    /// The [defaults](Self::defaults) with the operator's prices from the environment
    /// variables `PROXY_MODEL_PRICING` and `PROXY_PLAN_PRICING` merged in (see
    /// [`with_overrides`](Self::with_overrides)).
    pub fn from_env() -> Result<Self, PricingError> {
        let model_pricing = env_var(MODEL_PRICING)?;
        let plan_pricing = env_var(PLAN_PRICING)?;
        Self::defaults().with_overrides(model_pricing.as_deref(), plan_pricing.as_deref())
    }

    /// Merges operator prices, given as the JSON of `PROXY_MODEL_PRICING` and
    /// `PROXY_PLAN_PRICING`, into this catalog; `None` or a blank string gives none.
    ///
    /// `model_pricing` is provider-keyed, `{"bedrock": {"us-east-1": {"<model>": entry}},
    /// "plan": {"global": {"<model>": entry}}}` — when every top-level key is `plan` or
    /// `bedrock` — or else the legacy region-keyed `{"us-east-1": {"<model>": entry}}`,
    /// which prices Bedrock. `plan_pricing` is `{"<model>": entry}` or
    /// `{"global": {"<model>": entry}}`, and is merged second. Plan prices live in region
    /// `global` only.
    ///
    /// An entry is `{"input_price_per_million": "3.00", "output_price_per_million": 15,
    /// "cache_write_price_per_million": "3.75", "cache_write_1h_price_per_million": "6",
    /// "cache_read_price_per_million": "0.30", "effective_date": "2025-01-01"}`; the short
    /// keys `input`, `output`, `cache_write` (5-minute), `cache_write_1h` and
    /// `cache_read` work too. A price is a non-negative decimal, as a string or a number
    /// (a number is read in its shortest exact form; write a string for more than 15
    /// significant digits). Model keys are normalised ([`normalize_model_id`]).
    ///
    /// An entry for a price the catalog has changes only the keys it gives. An entry for
    /// a new model must give input and output prices; a cache price it does not give is
    /// Anthropic's multiple of the input price (5-minute write 1.25×, 1-hour write 2×,
    /// read 0.1×), and without `effective_date` it dates from the list prices' date.
    ///
    /// Invalid JSON, an unknown key, a missing or bad value fail the whole call, with the
    /// variable and the path of the bad part in the message.
    ///
    /// ```
    /// use usage_layer::Provider;
    /// use usage_layer::pricing::PriceCatalog;
    ///
    /// let catalog = PriceCatalog::defaults().with_overrides(
    ///     Some(r#"{"bedrock": {"eu-west-1": {"claude-sonnet-4-5": {"input": "4", "output": 20}}}}"#),
    ///     Some(r#"{"claude-sonnet-4-5": {"input_price_per_million": "0"}}"#),
    /// )?;
    /// let eu = catalog.lookup(&Provider::BEDROCK, Some("eu-west-1"), "claude-sonnet-4-5").unwrap();
    /// assert_eq!(eu.prices.cache_write_5m.to_string(), "5"); // 1.25 × input
    /// let plan = catalog.lookup(&Provider::PLAN, None, "claude-sonnet-4-5").unwrap();
    /// assert!(plan.prices.input.is_zero());
    /// assert_eq!(plan.prices.output.to_string(), "15.00"); // not given: kept
    ///
    /// let error = PriceCatalog::defaults()
    ///     .with_overrides(None, Some(r#"{"claude-x": {"input": "1"}}"#))
    ///     .unwrap_err();
    /// assert_eq!(error.to_string(), "PROXY_PLAN_PRICING: claude-x.output_price_per_million: missing");
    /// # Ok::<(), usage_layer::pricing::PricingError>(())
    /// ```
    pub fn with_overrides(
        mut self,
        model_pricing: Option<&str>,
        plan_pricing: Option<&str>,
    ) -> Result<Self, PricingError> {
        if let Some(json) = given(model_pricing) {
            Merge::new(&mut self, MODEL_PRICING).model_pricing(json)?;
        }
        if let Some(json) = given(plan_pricing) {
            Merge::new(&mut self, PLAN_PRICING).plan_pricing(json)?;
        }
        Ok(self)
    }
}

/// A blank variable counts as unset, as an empty one did in the original.
fn given(json: Option<&str>) -> Option<&str> {
    json.filter(|json| !json.trim().is_empty())
}

fn env_var(variable: &'static str) -> Result<Option<String>, PricingError> {
    match std::env::var(variable) {
        Ok(value) => Ok(Some(value)),
        Err(VarError::NotPresent) => Ok(None),
        Err(VarError::NotUnicode(_)) => Err(PricingError::NotUnicode { variable }),
    }
}

/// Merges one variable's prices into a catalog; paths are dotted JSON keys, `""` the top.
struct Merge<'a> {
    catalog: &'a mut PriceCatalog,
    variable: &'static str,
}

impl<'a> Merge<'a> {
    fn new(catalog: &'a mut PriceCatalog, variable: &'static str) -> Self {
        Self { catalog, variable }
    }

    fn model_pricing(&mut self, json: &str) -> Result<(), PricingError> {
        let top = self.parse(json)?;
        let keyed: Option<Vec<(&Provider, &String, &Value)>> = self
            .object(&top, "")?
            .iter()
            .map(|(key, regions)| Some((keyed_provider(key)?, key, regions)))
            .collect();
        match keyed {
            Some(providers) => {
                for (provider, key, regions) in providers {
                    self.regions(provider, regions, key)?;
                }
                Ok(())
            }
            None => self.legacy_regions(&top),
        }
    }

    fn legacy_regions(&mut self, top: &Value) -> Result<(), PricingError> {
        let misplaced = self
            .object(top, "")?
            .keys()
            .find(|key| keyed_provider(key).is_some());
        if let Some(provider) = misplaced {
            // Read as a region, `plan` would silently become a Bedrock region named "plan".
            return Err(self.invalid(
                provider,
                "a provider next to region keys: nest every region under \"bedrock\"",
            ));
        }
        self.regions(&LEGACY_PROVIDER, top, "")
    }

    fn plan_pricing(&mut self, json: &str) -> Result<(), PricingError> {
        let top = self.parse(json)?;
        let models = self.object(&top, "")?;
        match models.get(PLAN_REGION) {
            Some(wrapped) if models.len() == 1 => {
                self.models(&Provider::PLAN, PLAN_REGION, wrapped, PLAN_REGION)
            }
            Some(_) => Err(self.invalid(
                PLAN_REGION,
                "\"global\" wraps the whole table, so it must be the only top-level key",
            )),
            None => self.models(&Provider::PLAN, PLAN_REGION, &top, ""),
        }
    }

    /// `{"<region>": {"<model>": entry}}` for `provider`.
    fn regions(
        &mut self,
        provider: &Provider,
        regions: &Value,
        path: &str,
    ) -> Result<(), PricingError> {
        for (region, models) in self.object(regions, path)? {
            let path = child(path, region);
            if region.trim().is_empty() {
                return Err(self.invalid(&path, "empty region"));
            }
            if let Some(pinned) = pinned_region(provider)
                && region != pinned
            {
                return Err(self.invalid(
                    &path,
                    format!("{provider} prices live in region \"{pinned}\" only"),
                ));
            }
            self.models(provider, region, models, &path)?;
        }
        Ok(())
    }

    /// `{"<model>": entry}` for `provider` in `region`.
    fn models(
        &mut self,
        provider: &Provider,
        region: &str,
        models: &Value,
        path: &str,
    ) -> Result<(), PricingError> {
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
            None => self.new_model(&given, path)?,
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

    /// The entry a model the catalog has no price for starts from.
    fn new_model(&self, given: &GivenPrices, path: &str) -> Result<PriceEntry, PricingError> {
        let required = |index: usize| {
            given[index]
                .ok_or_else(|| self.invalid(&child(path, PRICE_KEYS[index].name), "missing"))
        };
        Ok(PriceEntry {
            prices: with_cache_multipliers(required(INPUT)?, required(OUTPUT)?),
            effective_date: LIST_PRICE_DATE,
        })
    }

    fn parse(&self, json: &str) -> Result<Value, PricingError> {
        serde_json::from_str(json).map_err(|error| {
            // serde_json ends its message with the position, which we show first.
            let message = error.to_string();
            let position = format!(" at line {} column {}", error.line(), error.column());
            PricingError::InvalidJson {
                variable: self.variable,
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
            variable: self.variable,
            path: if path.is_empty() { "top level" } else { path }.to_owned(),
            reason: reason.to_string(),
        }
    }
}

fn keyed_provider(key: &str) -> Option<&'static Provider> {
    KEYED_PROVIDERS
        .iter()
        .find(|provider| provider.as_str() == key)
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

    use super::*;

    fn dec(text: &str) -> Decimal {
        Decimal::from_str(text).unwrap()
    }

    fn prices(catalog: &PriceCatalog, provider: &Provider, region: &str, model: &str) -> Prices {
        let snapshot = catalog.lookup(provider, Some(region), model).unwrap();
        assert_eq!(snapshot.region, region);
        snapshot.prices
    }

    fn model_pricing(json: &str) -> Result<PriceCatalog, PricingError> {
        PriceCatalog::defaults().with_overrides(Some(json), None)
    }

    fn plan_pricing(json: &str) -> Result<PriceCatalog, PricingError> {
        PriceCatalog::defaults().with_overrides(None, Some(json))
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
            effective_date: NaiveDate::from_ymd_opt(2026, 1, 1).unwrap(),
        }
    }

    #[test]
    fn provider_keyed_model_pricing() {
        let catalog = model_pricing(&format!(
            r#"{{"bedrock": {{"us-west-2": {{"us.anthropic.claude-sonnet-4-5-20250929-v1:0": {FULL_ENTRY}}}}},
                "plan": {{"global": {{"claude-sonnet-4-5": {{"output": "14"}}}}}}}}"#
        ))
        .unwrap();

        let west = catalog
            .lookup(&Provider::BEDROCK, Some("us-west-2"), "claude-sonnet-4-5")
            .unwrap();
        assert_eq!(west.region, "us-west-2");
        assert_eq!(
            PriceEntry {
                prices: west.prices,
                effective_date: west.effective_date
            },
            full_entry()
        );
        assert_eq!(
            prices(&catalog, &Provider::PLAN, PLAN_REGION, "claude-sonnet-4-5").output,
            dec("14")
        );
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
    fn legacy_region_keyed_model_pricing_is_bedrock() {
        let catalog = model_pricing(&format!(
            r#"{{"eu-central-1": {{"claude-haiku-4-5": {FULL_ENTRY}}}}}"#
        ))
        .unwrap();
        assert_eq!(
            prices(
                &catalog,
                &Provider::BEDROCK,
                "eu-central-1",
                "claude-haiku-4-5"
            ),
            full_entry().prices
        );
        assert_eq!(
            prices(&catalog, &Provider::PLAN, PLAN_REGION, "claude-haiku-4-5").input,
            dec("1")
        );
    }

    #[test]
    fn plan_pricing_model_keyed_and_wrapped_in_global() {
        for json in [
            format!(r#"{{"claude-3-haiku": {FULL_ENTRY}}}"#),
            format!(r#"{{"global": {{"claude-3-haiku": {FULL_ENTRY}}}}}"#),
        ] {
            let catalog = plan_pricing(&json).unwrap();
            let plan = catalog
                .lookup(&Provider::PLAN, None, "claude-3-haiku")
                .unwrap();
            assert_eq!(plan.prices, full_entry().prices, "{json}");
            assert_eq!(plan.effective_date, full_entry().effective_date);
            assert_eq!(
                prices(&catalog, &Provider::BEDROCK, "us-east-1", "claude-3-haiku").input,
                dec("0.25"),
                "{json}"
            );
        }
    }

    #[test]
    fn plan_pricing_is_merged_after_model_pricing() {
        let catalog = PriceCatalog::defaults()
            .with_overrides(
                Some(r#"{"plan": {"global": {"claude-opus-4-5": {"input": "1", "output": "2"}}}}"#),
                Some(r#"{"claude-opus-4-5": {"input": "3"}}"#),
            )
            .unwrap();
        let plan = prices(&catalog, &Provider::PLAN, PLAN_REGION, "claude-opus-4-5");
        assert_eq!((plan.input, plan.output), (dec("3"), dec("2")));
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
            let catalog = plan_pricing(&format!(
                r#"{{"claude-opus-4-5": {{"cache_read": {json}}}}}"#
            ))
            .unwrap();
            let read = prices(&catalog, &Provider::PLAN, PLAN_REGION, "claude-opus-4-5").cache_read;
            assert_eq!(read, dec(expected), "{json}");
        }
    }

    #[test]
    fn an_override_changes_only_the_keys_it_gives() {
        let before = PriceCatalog::defaults()
            .lookup(&Provider::BEDROCK, None, "claude-opus-4-1")
            .unwrap();
        let catalog = model_pricing(
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
    fn a_new_model_takes_cache_prices_from_the_multipliers() {
        let catalog =
            plan_pricing(r#"{"claude-future-1": {"input": "4", "output": "20"}}"#).unwrap();
        let future = catalog
            .lookup(&Provider::PLAN, None, "claude-future-1")
            .unwrap();
        assert_eq!(
            future.prices,
            Prices {
                input: dec("4"),
                output: dec("20"),
                cache_write_5m: dec("5"),
                cache_write_1h: dec("8"),
                cache_read: dec("0.4"),
            }
        );
        assert_eq!(future.effective_date, LIST_PRICE_DATE);
        // Only where it was given.
        assert!(
            catalog
                .lookup(&Provider::BEDROCK, None, "claude-future-1")
                .is_none()
        );

        let explicit = plan_pricing(
            r#"{"claude-future-1": {"input": "4", "output": "20", "cache_read": "1"}}"#,
        )
        .unwrap();
        let future = explicit
            .lookup(&Provider::PLAN, None, "claude-future-1")
            .unwrap();
        assert_eq!(future.prices.cache_read, dec("1"));
        assert_eq!(future.prices.cache_write_5m, dec("5"));
    }

    #[test]
    fn blank_variables_are_unset() {
        let defaults = PriceCatalog::defaults();
        for blank in [None, Some(""), Some("  \n\t")] {
            let catalog = PriceCatalog::defaults()
                .with_overrides(blank, blank)
                .unwrap();
            assert!(catalog.entries().eq(defaults.entries()));
        }
    }

    fn error(model: Option<&str>, plan: Option<&str>) -> String {
        PriceCatalog::defaults()
            .with_overrides(model, plan)
            .unwrap_err()
            .to_string()
    }

    #[test]
    fn errors_name_the_variable_and_the_path() {
        for (model, plan, expected) in [
            (
                Some(
                    r#"{"bedrock": {"us-east-1": {"claude-sonnet-4-5": {"input_price_per_million": "abc"}}}}"#,
                ),
                None,
                r#"PROXY_MODEL_PRICING: bedrock.us-east-1.claude-sonnet-4-5.input_price_per_million: not a decimal: "abc""#,
            ),
            (
                None,
                Some(r#"{"claude-x": {"input_price_per_million": "1"}}"#),
                "PROXY_PLAN_PRICING: claude-x.output_price_per_million: missing",
            ),
            (
                None,
                Some(r#"{"global": {"claude-x": {"output": 1}}}"#),
                "PROXY_PLAN_PRICING: global.claude-x.input_price_per_million: missing",
            ),
            (
                Some(r#"{"us-east-1": {"claude-opus-4-5": {"cache_raed": "1"}}}"#),
                None,
                "PROXY_MODEL_PRICING: us-east-1.claude-opus-4-5.cache_raed: unknown key; expected one of \
                 input_price_per_million (input), output_price_per_million (output), \
                 cache_write_price_per_million (cache_write), cache_write_1h_price_per_million (cache_write_1h), \
                 cache_read_price_per_million (cache_read), effective_date",
            ),
            (
                None,
                Some(r#"{"claude-opus-4-5": {"output": -1}}"#),
                "PROXY_PLAN_PRICING: claude-opus-4-5.output: negative: -1",
            ),
            (
                None,
                Some(r#"{"claude-opus-4-5": {"output": "-0.5"}}"#),
                r#"PROXY_PLAN_PRICING: claude-opus-4-5.output: negative: "-0.5""#,
            ),
            (
                None,
                Some(r#"{"claude-opus-4-5": {"output": null}}"#),
                "PROXY_PLAN_PRICING: claude-opus-4-5.output: expected a decimal string or number, found null",
            ),
            (
                None,
                Some(r#"{"claude-opus-4-5": {"input": "1", "input_price_per_million": "2"}}"#),
                "PROXY_PLAN_PRICING: claude-opus-4-5.input_price_per_million: given twice, as input_price_per_million and input",
            ),
            (
                None,
                Some(r#"{"claude-opus-4-5": {"effective_date": "2025-13-01"}}"#),
                r#"PROXY_PLAN_PRICING: claude-opus-4-5.effective_date: not a date (YYYY-MM-DD): "2025-13-01""#,
            ),
            (
                None,
                Some(r#"{"claude-opus-4-5": "5"}"#),
                "PROXY_PLAN_PRICING: claude-opus-4-5: expected an object, found a string",
            ),
            (
                None,
                Some("[]"),
                "PROXY_PLAN_PRICING: top level: expected an object, found an array",
            ),
            (
                None,
                Some(r#"{"global": {}, "claude-opus-4-5": {}}"#),
                r#"PROXY_PLAN_PRICING: global: "global" wraps the whole table, so it must be the only top-level key"#,
            ),
            (
                None,
                Some(r#"{" us. ": {"input": "1"}}"#),
                "PROXY_PLAN_PRICING:  us. : empty model id",
            ),
            (
                Some(r#"{"plan": {"us-east-1": {"claude-opus-4-5": {"input": "1"}}}}"#),
                None,
                r#"PROXY_MODEL_PRICING: plan.us-east-1: plan prices live in region "global" only"#,
            ),
            (
                Some(r#"{"bedrock": {"": {}}}"#),
                None,
                "PROXY_MODEL_PRICING: bedrock.: empty region",
            ),
            (
                Some(r#"{"bedrock": {"us-east-1": []}}"#),
                None,
                "PROXY_MODEL_PRICING: bedrock.us-east-1: expected an object, found an array",
            ),
            (
                Some(r#"{"plan": {}, "us-east-1": {}}"#),
                None,
                r#"PROXY_MODEL_PRICING: plan: a provider next to region keys: nest every region under "bedrock""#,
            ),
            (
                Some(r#"{"bedrock": {"us-east-1": {}}}"#),
                Some("{"),
                "PROXY_PLAN_PRICING: invalid JSON at line 1 column 1: EOF while parsing an object",
            ),
            (
                Some(r#"{"us-east-1" 5}"#),
                None,
                "PROXY_MODEL_PRICING: invalid JSON at line 1 column 14: expected `:`",
            ),
        ] {
            assert_eq!(error(model, plan), expected);
        }
    }

    #[test]
    fn an_error_fails_the_whole_merge() {
        let result = PriceCatalog::defaults().with_overrides(
            Some(r#"{"us-east-1": {"claude-opus-4-5": {"input": "1"}}}"#),
            Some(r#"{"claude-opus-4-5": {"input": "x"}}"#),
        );
        assert!(matches!(
            result,
            Err(PricingError::InvalidEntry {
                variable: PLAN_PRICING,
                ..
            })
        ));
    }

    #[test]
    fn invalid_json_reports_its_position() {
        let Err(PricingError::InvalidJson {
            variable,
            line,
            column,
            ..
        }) = PriceCatalog::defaults().with_overrides(Some("{\n  \"a\": x}"), None)
        else {
            panic!("not an InvalidJson error");
        };
        assert_eq!((variable, line, column), (MODEL_PRICING, 2, 8));
    }
}
