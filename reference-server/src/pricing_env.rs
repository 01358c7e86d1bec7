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

    use rust_decimal::Decimal;

    use super::*;

    fn defaults_with(
        model_pricing: Option<&str>,
        plan_pricing: Option<&str>,
    ) -> Result<PriceCatalog, PricingError> {
        merge(PriceCatalog::defaults(), model_pricing, plan_pricing)
    }

    /// Every form of the two variables prices what its provider-keyed equivalent prices,
    /// and nothing else.
    #[test]
    fn each_form_reads_as_its_provider_keyed_equivalent() {
        let entry =
            r#"{"input": "2", "output": 10, "cache_read": "0.2", "effective_date": "2026-01-01"}"#;
        let plan_and_bedrock = format!(
            r#"{{"bedrock": {{"us-west-2": {{"claude-x": {entry}}}}}, "plan": {{"global": {{"claude-x": {entry}}}}}}}"#
        );
        let bedrock_only = format!(r#"{{"bedrock": {{"eu-central-1": {{"claude-x": {entry}}}}}}}"#);
        let plan_only = format!(r#"{{"plan": {{"global": {{"claude-x": {entry}}}}}}}"#);
        for (model_pricing, plan_pricing, equivalent) in [
            (Some(plan_and_bedrock.clone()), None, &plan_and_bedrock),
            (
                Some(format!(r#"{{"eu-central-1": {{"claude-x": {entry}}}}}"#)),
                None,
                &bedrock_only,
            ),
            (
                None,
                Some(format!(r#"{{"claude-x": {entry}}}"#)),
                &plan_only,
            ),
            (
                None,
                Some(format!(r#"{{"global": {{"claude-x": {entry}}}}}"#)),
                &plan_only,
            ),
        ] {
            let read = defaults_with(model_pricing.as_deref(), plan_pricing.as_deref()).unwrap();
            let expected = PriceCatalog::defaults()
                .merge_json(PriceTable::ByProvider, "equivalent", equivalent)
                .unwrap();
            assert!(read.entries().eq(expected.entries()), "{equivalent}");
            assert!(
                !read.entries().eq(PriceCatalog::defaults().entries()),
                "{equivalent}"
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
        let plan = catalog
            .lookup(&Provider::PLAN, None, "claude-opus-4-5")
            .unwrap()
            .prices;
        assert_eq!(
            (plan.input, plan.output),
            (Decimal::from_str("3").unwrap(), Decimal::TWO)
        );
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
                Some(r#"{"bedrock": {"us-east-1": {"claude-x": {"input": 1}}}}"#),
                None,
                "PROXY_MODEL_PRICING: bedrock.us-east-1.claude-x.output_price_per_million: missing",
            ),
            (
                Some(r#"{"us-east-1": {"claude-opus-4-5": {"cache_read": "x"}}}"#),
                None,
                r#"PROXY_MODEL_PRICING: us-east-1.claude-opus-4-5.cache_read: not a decimal: "x""#,
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
                Some(r#"{"us-east-1": 5"#),
                None,
                "PROXY_MODEL_PRICING: invalid JSON at line 1 column 15: EOF while parsing an object",
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
