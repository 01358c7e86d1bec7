//! The original system's price variables, `PROXY_MODEL_PRICING` and `PROXY_PLAN_PRICING`,
//! read onto [`PriceCatalog::merge_json`].
//!
//! `PROXY_MODEL_PRICING` is keyed by provider then region when every top-level key is
//! `plan` or `bedrock`, else it is the legacy form keyed by region, which prices Bedrock.
//! `PROXY_PLAN_PRICING` is keyed by model, or wrapped in `{"global": …}`, and is merged
//! second. A blank variable is unset, as an empty one was in the original. Entries, their
//! validation and the prices a new model takes are the library's; errors name the variable
//! and the JSON path as the variable is written.
//!
//! ```
//! use reference_server::pricing_env;
//! use usage_layer::Provider;
//! use usage_layer::pricing::PriceCatalog;
//!
//! let catalog = pricing_env::merge(
//!     PriceCatalog::defaults(),
//!     Some(r#"{"eu-west-1": {"claude-sonnet-4-5": {"input": "4", "output": 20}}}"#),
//!     Some(r#"{"claude-sonnet-4-5": {"input_price_per_million": "0"}}"#),
//! )?;
//! let eu = catalog.lookup(&Provider::BEDROCK, Some("eu-west-1"), "claude-sonnet-4-5").unwrap();
//! assert_eq!(eu.prices.input.to_string(), "4");
//! assert!(catalog.lookup(&Provider::PLAN, None, "claude-sonnet-4-5").unwrap().prices.input.is_zero());
//!
//! let error = pricing_env::merge(PriceCatalog::defaults(), None, Some(r#"{"claude-x": {"input": "1"}}"#))
//!     .unwrap_err();
//! assert_eq!(error.to_string(), "PROXY_PLAN_PRICING: claude-x.output_price_per_million: missing");
//! # Ok::<(), usage_layer::pricing::PricingError>(())
//! ```

use serde_json::{Map, Value};
use usage_layer::Provider;
use usage_layer::pricing::{PLAN_REGION, PriceCatalog, PriceTable, PricingError};

/// The variable with prices by provider (or, legacy, by Bedrock region).
pub const MODEL_PRICING_ENV: &str = "PROXY_MODEL_PRICING";

/// The variable with Plan's prices by model.
pub const PLAN_PRICING_ENV: &str = "PROXY_PLAN_PRICING";

/// The providers the provider-keyed form of `PROXY_MODEL_PRICING` names; any other
/// top-level key makes it the legacy, region-keyed form.
const KEYED_PROVIDERS: [Provider; 2] = [Provider::PLAN, Provider::BEDROCK];

/// Merges the JSON of `PROXY_MODEL_PRICING`, then of `PROXY_PLAN_PRICING`, into
/// `catalog`; `None` or a blank value gives no prices.
pub fn merge(
    catalog: PriceCatalog,
    model_pricing: Option<&str>,
    plan_pricing: Option<&str>,
) -> Result<PriceCatalog, PricingError> {
    let mut catalog = catalog;
    if let Some(json) = given(model_pricing) {
        catalog = catalog.merge_json(model_pricing_table(json)?, MODEL_PRICING_ENV, json)?;
    }
    if let Some(json) = given(plan_pricing) {
        catalog = catalog.merge_json(plan_pricing_table(json)?, PLAN_PRICING_ENV, json)?;
    }
    Ok(catalog)
}

/// A blank variable counts as unset, as an empty one did in the original.
fn given(json: Option<&str>) -> Option<&str> {
    json.filter(|json| !json.trim().is_empty())
}

/// How `PROXY_MODEL_PRICING` is keyed, told by its top-level keys.
fn model_pricing_table(json: &str) -> Result<PriceTable<'static>, PricingError> {
    let Some(top) = top_level(json) else {
        return Ok(PriceTable::ByProvider);
    };
    if top.keys().all(|key| is_keyed_provider(key)) {
        return Ok(PriceTable::ByProvider);
    }
    if let Some(provider) = top.keys().find(|key| is_keyed_provider(key)) {
        // Read as a region, `plan` would silently become a Bedrock region named "plan".
        return Err(invalid(
            MODEL_PRICING_ENV,
            provider,
            "a provider next to region keys: nest every region under \"bedrock\"",
        ));
    }
    Ok(PriceTable::ByRegion(&Provider::BEDROCK))
}

fn is_keyed_provider(key: &str) -> bool {
    KEYED_PROVIDERS
        .iter()
        .any(|provider| provider.as_str() == key)
}

/// How `PROXY_PLAN_PRICING` is keyed: by model, or by region `global` alone.
fn plan_pricing_table(json: &str) -> Result<PriceTable<'static>, PricingError> {
    let by_model = PriceTable::ByModel(&Provider::PLAN, PLAN_REGION);
    let Some(top) = top_level(json) else {
        return Ok(by_model);
    };
    match (top.contains_key(PLAN_REGION), top.len()) {
        (false, _) => Ok(by_model),
        (true, 1) => Ok(PriceTable::ByRegion(&Provider::PLAN)),
        (true, _) => Err(invalid(
            PLAN_PRICING_ENV,
            PLAN_REGION,
            "\"global\" wraps the whole table, so it must be the only top-level key",
        )),
    }
}

/// The top-level object; `None` when the JSON is not one, which the library then reports.
fn top_level(json: &str) -> Option<Map<String, Value>> {
    serde_json::from_str(json).ok()
}

fn invalid(variable: &str, path: &str, reason: &str) -> PricingError {
    PricingError::InvalidEntry {
        origin: variable.to_owned(),
        path: path.to_owned(),
        reason: reason.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use std::str::FromStr;

    use chrono::NaiveDate;
    use rust_decimal::Decimal;
    use usage_layer::pricing::Prices;

    use super::*;

    fn dec(text: &str) -> Decimal {
        Decimal::from_str(text).unwrap()
    }

    fn prices(catalog: &PriceCatalog, provider: &Provider, region: &str, model: &str) -> Prices {
        let snapshot = catalog.lookup(provider, Some(region), model).unwrap();
        assert_eq!(snapshot.region, region);
        snapshot.prices
    }

    fn defaults_with(
        model_pricing: Option<&str>,
        plan_pricing: Option<&str>,
    ) -> Result<PriceCatalog, PricingError> {
        merge(PriceCatalog::defaults(), model_pricing, plan_pricing)
    }

    const FULL_ENTRY: &str = r#"{
        "input_price_per_million": "2.00",
        "output_price_per_million": 10,
        "cache_write_price_per_million": "2.5",
        "cache_write_1h_price_per_million": 4.0,
        "cache_read_price_per_million": "0.20",
        "effective_date": "2026-01-01"
    }"#;

    fn full_prices() -> Prices {
        Prices {
            input: dec("2"),
            output: dec("10"),
            cache_write_5m: dec("2.5"),
            cache_write_1h: dec("4"),
            cache_read: dec("0.2"),
        }
    }

    #[test]
    fn provider_keyed_model_pricing() {
        let catalog = defaults_with(
            Some(&format!(
                r#"{{"bedrock": {{"us-west-2": {{"us.anthropic.claude-sonnet-4-5-20250929-v1:0": {FULL_ENTRY}}}}},
                    "plan": {{"global": {{"claude-sonnet-4-5": {{"output": "14"}}}}}}}}"#
            )),
            None,
        )
        .unwrap();

        let west = catalog
            .lookup(&Provider::BEDROCK, Some("us-west-2"), "claude-sonnet-4-5")
            .unwrap();
        assert_eq!(west.region, "us-west-2");
        assert_eq!(west.prices, full_prices());
        assert_eq!(
            west.effective_date,
            NaiveDate::from_ymd_opt(2026, 1, 1).unwrap()
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
        let catalog = defaults_with(
            Some(&format!(
                r#"{{"eu-central-1": {{"claude-haiku-4-5": {FULL_ENTRY}}}}}"#
            )),
            None,
        )
        .unwrap();
        assert_eq!(
            prices(
                &catalog,
                &Provider::BEDROCK,
                "eu-central-1",
                "claude-haiku-4-5"
            ),
            full_prices()
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
            let catalog = defaults_with(None, Some(&json)).unwrap();
            let plan = catalog
                .lookup(&Provider::PLAN, None, "claude-3-haiku")
                .unwrap();
            assert_eq!(plan.prices, full_prices(), "{json}");
            assert_eq!(
                prices(&catalog, &Provider::BEDROCK, "us-east-1", "claude-3-haiku").input,
                dec("0.25"),
                "{json}"
            );
        }
    }

    #[test]
    fn plan_pricing_is_merged_after_model_pricing() {
        let catalog = defaults_with(
            Some(r#"{"plan": {"global": {"claude-opus-4-5": {"input": "1", "output": "2"}}}}"#),
            Some(r#"{"claude-opus-4-5": {"input": "3"}}"#),
        )
        .unwrap();
        let plan = prices(&catalog, &Provider::PLAN, PLAN_REGION, "claude-opus-4-5");
        assert_eq!((plan.input, plan.output), (dec("3"), dec("2")));
    }

    #[test]
    fn blank_variables_are_unset() {
        let defaults = PriceCatalog::defaults();
        for blank in [None, Some(""), Some("  \n\t")] {
            let catalog = defaults_with(blank, blank).unwrap();
            assert!(catalog.entries().eq(defaults.entries()));
        }
    }

    #[test]
    fn errors_name_the_variable_and_the_path_as_written() {
        for (model, plan, expected) in [
            (
                Some(
                    r#"{"bedrock": {"us-east-1": {"claude-sonnet-4-5": {"input_price_per_million": "abc"}}}}"#,
                ),
                None,
                r#"PROXY_MODEL_PRICING: bedrock.us-east-1.claude-sonnet-4-5.input_price_per_million: not a decimal: "abc""#,
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
                Some(r#"{"claude-x": {"input_price_per_million": "1"}}"#),
                "PROXY_PLAN_PRICING: claude-x.output_price_per_million: missing",
            ),
            (
                None,
                Some(r#"{"global": {"claude-x": {"output": 1}}}"#),
                "PROXY_PLAN_PRICING: global.claude-x.input_price_per_million: missing",
            ),
            (
                None,
                Some(r#"{"global": []}"#),
                "PROXY_PLAN_PRICING: global: expected an object, found an array",
            ),
            (
                None,
                Some("[]"),
                "PROXY_PLAN_PRICING: top level: expected an object, found an array",
            ),
            (
                Some("5"),
                None,
                "PROXY_MODEL_PRICING: top level: expected an object, found a number",
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
                Some(r#"{"": {}}"#),
                None,
                "PROXY_MODEL_PRICING: top level: empty region",
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
            assert_eq!(
                defaults_with(model, plan).unwrap_err().to_string(),
                expected
            );
        }
    }

    #[test]
    fn an_error_in_either_variable_fails_the_whole_merge() {
        let result = defaults_with(
            Some(r#"{"us-east-1": {"claude-opus-4-5": {"input": "1"}}}"#),
            Some(r#"{"claude-opus-4-5": {"input": "x"}}"#),
        );
        assert!(matches!(
            result,
            Err(PricingError::InvalidEntry { origin, .. }) if origin == PLAN_PRICING_ENV
        ));
    }

    #[test]
    fn invalid_json_reports_its_position_in_the_variable() {
        let Err(PricingError::InvalidJson {
            origin,
            line,
            column,
            ..
        }) = defaults_with(Some("{\n  \"a\": x}"), None)
        else {
            panic!("not an InvalidJson error");
        };
        assert_eq!((origin.as_str(), line, column), (MODEL_PRICING_ENV, 2, 8));
    }
}
