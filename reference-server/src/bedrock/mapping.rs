//! Which Bedrock model serves a requested Anthropic model.

use std::collections::BTreeMap;

use serde_json::{Map, Value};
use usage_layer::pricing::normalize_model_id;

use super::BedrockConfigError;

/// The environment variable whose JSON object overrides [`ModelMapping::defaults`].
pub const MODEL_MAPPING_ENV: &str = "PROXY_BEDROCK_MODEL_MAPPING";

/// The default mapping: the current models through the `us.` cross-region inference
/// profiles.
const DEFAULT_MAPPING: [(&str, &str); 8] = [
    (
        "claude-opus-4-5",
        "us.anthropic.claude-opus-4-5-20251101-v1:0",
    ),
    (
        "claude-opus-4-1",
        "us.anthropic.claude-opus-4-1-20250805-v1:0",
    ),
    ("claude-opus-4", "us.anthropic.claude-opus-4-20250514-v1:0"),
    (
        "claude-sonnet-4-5",
        "us.anthropic.claude-sonnet-4-5-20250929-v1:0",
    ),
    (
        "claude-sonnet-4",
        "us.anthropic.claude-sonnet-4-20250514-v1:0",
    ),
    (
        "claude-3-7-sonnet",
        "us.anthropic.claude-3-7-sonnet-20250219-v1:0",
    ),
    (
        "claude-haiku-4-5",
        "us.anthropic.claude-haiku-4-5-20251001-v1:0",
    ),
    (
        "claude-3-5-haiku",
        "us.anthropic.claude-3-5-haiku-20241022-v1:0",
    ),
];

/// Which Bedrock model id serves a requested Anthropic model.
///
/// Keys are normalised model names ([`normalize_model_id`]: `claude-sonnet-4-5`, not
/// `claude-sonnet-4-5-20250929` or `claude-sonnet-4.5`). The [defaults](Self::defaults)
/// use the `us.` cross-region inference profiles; [`MODEL_MAPPING_ENV`]
/// (`PROXY_BEDROCK_MODEL_MAPPING`) changes them, e.g. to the `eu.` or `global.` profiles.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ModelMapping {
    models: BTreeMap<String, String>,
}

impl ModelMapping {
    /// The current Claude models on their `us.` cross-region inference profiles.
    pub fn defaults() -> Self {
        let models = DEFAULT_MAPPING
            .iter()
            .map(|&(model, bedrock)| (model.to_owned(), bedrock.to_owned()))
            .collect();
        Self { models }
    }

    /// A mapping of these (requested model, Bedrock model id) pairs, keys normalised (a
    /// later pair for the same model wins).
    pub fn from_entries<'a>(entries: impl IntoIterator<Item = (&'a str, &'a str)>) -> Self {
        let models = entries
            .into_iter()
            .map(|(model, bedrock)| (normalize_model_id(model), bedrock.trim().to_owned()))
            .filter(|(model, bedrock)| !model.is_empty() && !bedrock.is_empty())
            .collect();
        Self { models }
    }

    /// Merges `PROXY_BEDROCK_MODEL_MAPPING` JSON (`{"claude-sonnet-4-5": "eu.anthropic.claude-sonnet-4-5-20250929-v1:0", …}`) into the mapping; keys are normalised.
    ///
    /// `None` leaves the mapping as it is. Invalid JSON, an empty key or a value that is
    /// not a non-empty string is an error naming the variable (and the key).
    pub fn with_overrides(mut self, json: Option<&str>) -> Result<Self, BedrockConfigError> {
        let Some(json) = json else {
            return Ok(self);
        };
        let overrides: Map<String, Value> =
            serde_json::from_str(json).map_err(BedrockConfigError::MappingJson)?;
        for (key, value) in overrides {
            let model = normalize_model_id(&key);
            match value {
                Value::String(bedrock) if !model.is_empty() && !bedrock.trim().is_empty() => {
                    self.models.insert(model, bedrock.trim().to_owned());
                }
                _ => return Err(BedrockConfigError::MappingEntry { key }),
            }
        }
        Ok(self)
    }

    /// The Bedrock model id for a requested model (normalised lookup; exact, never a look-alike), or `None`: an unmapped model does not fall back.
    pub fn resolve(&self, requested_model: &str) -> Option<&str> {
        self.models
            .get(&normalize_model_id(requested_model))
            .map(String::as_str)
    }

    /// Every (normalised model name, Bedrock model id) pair, ordered by name.
    pub fn entries(&self) -> impl Iterator<Item = (&str, &str)> {
        self.models
            .iter()
            .map(|(model, bedrock)| (model.as_str(), bedrock.as_str()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_defaults_are_the_table_under_normalised_keys() {
        let mapping = ModelMapping::defaults();
        assert_eq!(mapping.entries().count(), DEFAULT_MAPPING.len());
        for (model, bedrock) in mapping.entries() {
            assert_eq!(normalize_model_id(model), model, "a normalised key");
            assert_eq!(
                normalize_model_id(bedrock),
                model,
                "{bedrock} serves {model}"
            );
        }
    }

    #[test]
    fn the_defaults_resolve_every_spelling_of_a_model() {
        let mapping = ModelMapping::defaults();
        for (requested, bedrock) in [
            (
                "claude-sonnet-4-5-20250929",
                "us.anthropic.claude-sonnet-4-5-20250929-v1:0",
            ),
            (
                "claude-sonnet-4.5",
                "us.anthropic.claude-sonnet-4-5-20250929-v1:0",
            ),
            (
                "Claude-Opus-4-1-20250805",
                "us.anthropic.claude-opus-4-1-20250805-v1:0",
            ),
            (
                "claude-opus-4-20250514",
                "us.anthropic.claude-opus-4-20250514-v1:0",
            ),
            (
                "claude-3-7-sonnet-latest",
                "us.anthropic.claude-3-7-sonnet-20250219-v1:0",
            ),
            (
                "eu.anthropic.claude-haiku-4-5-20251001-v1:0",
                "us.anthropic.claude-haiku-4-5-20251001-v1:0",
            ),
            (
                "claude-3-5-haiku-20241022",
                "us.anthropic.claude-3-5-haiku-20241022-v1:0",
            ),
        ] {
            assert_eq!(mapping.resolve(requested), Some(bedrock), "{requested}");
        }
    }

    #[test]
    fn an_unmapped_model_is_none_never_a_look_alike() {
        let mapping = ModelMapping::defaults();
        for requested in [
            "claude-sonnet-4-6",
            "claude-sonnet",
            "claude-sonnet-4-5-extra",
            "claude-3-5-sonnet-20241022",
            "claude-opus",
            "",
        ] {
            assert_eq!(mapping.resolve(requested), None, "{requested}");
        }
    }

    #[test]
    fn overrides_are_normalised_and_merged_into_the_defaults() {
        let mapping = ModelMapping::defaults()
            .with_overrides(Some(
                r#"{"claude-sonnet-4-5-20250929": "eu.anthropic.claude-sonnet-4-5-20250929-v1:0",
                    "Claude-Sonnet-4.6": " global.anthropic.claude-sonnet-4-6 "}"#,
            ))
            .unwrap();
        assert_eq!(
            mapping.resolve("claude-sonnet-4-5"),
            Some("eu.anthropic.claude-sonnet-4-5-20250929-v1:0")
        );
        assert_eq!(
            mapping.resolve("claude-sonnet-4-6"),
            Some("global.anthropic.claude-sonnet-4-6")
        );
        assert_eq!(
            mapping.resolve("claude-opus-4-5"),
            Some("us.anthropic.claude-opus-4-5-20251101-v1:0"),
            "the other defaults stay"
        );
        assert_eq!(
            ModelMapping::defaults().with_overrides(None).unwrap(),
            ModelMapping::defaults()
        );
    }

    #[test]
    fn bad_overrides_are_errors_naming_the_variable_and_the_key() {
        for json in ["{not json", r#"["claude-sonnet-4-5"]"#] {
            let error = ModelMapping::defaults()
                .with_overrides(Some(json))
                .unwrap_err();
            assert!(
                matches!(error, BedrockConfigError::MappingJson(_)),
                "{json}"
            );
            assert!(error.to_string().contains("PROXY_BEDROCK_MODEL_MAPPING"));
        }
        for json in [
            r#"{"claude-sonnet-4-5": 4}"#,
            r#"{"claude-sonnet-4-5": null}"#,
            r#"{"claude-sonnet-4-5": " "}"#,
        ] {
            let message = ModelMapping::defaults()
                .with_overrides(Some(json))
                .unwrap_err()
                .to_string();
            assert!(
                message.contains("PROXY_BEDROCK_MODEL_MAPPING")
                    && message.contains("\"claude-sonnet-4-5\""),
                "{message}"
            );
        }
        assert!(matches!(
            ModelMapping::defaults().with_overrides(Some(r#"{"": "x"}"#)),
            Err(BedrockConfigError::MappingEntry { .. })
        ));
    }
}
