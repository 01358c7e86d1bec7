//! The catalog: provider → region → model → price, and the lookup rules.

use std::collections::BTreeMap;

use super::defaults::{
    LIST_PRICE_DATE, LIST_PRICE_REGIONS, LIST_PRICES, OPENAI_PRICE_DATE, OPENAI_PRICES,
};
use super::model_id::dated_alias;
use super::{PLAN_REGION, PriceEntry, PriceSnapshot, normalize_model_id};
use crate::record::Provider;

/// Prices by provider, region and model, with each provider's default region.
///
/// Plan is priced from region [`PLAN_REGION`] only; every other provider from the region
/// asked for, else from its default region; no provider is ever priced from another
/// provider's table (see [`lookup`](Self::lookup)).
#[derive(Clone, Debug, Default)]
pub struct PriceCatalog {
    // Ordered maps, so that `entries` lists prices in a stable order.
    providers: BTreeMap<Provider, ProviderPrices>,
}

/// One provider's prices.
#[derive(Clone, Debug, Default)]
struct ProviderPrices {
    default_region: Option<String>,
    /// Region → normalised model key → price.
    regions: BTreeMap<String, BTreeMap<String, PriceEntry>>,
}

impl PriceCatalog {
    /// A catalog with no prices and no default regions.
    pub fn empty() -> Self {
        Self::default()
    }

    /// The built-in prices: Anthropic's list prices, for Plan (region `global`) and for
    /// Bedrock (region `us-east-1`, Bedrock's default region), and OpenAI's for
    /// [`Provider::OPENAI`] (region `global`).
    pub fn defaults() -> Self {
        let mut catalog = Self::empty();
        for (provider, region) in &LIST_PRICE_REGIONS {
            catalog.set_default_region(provider, *region);
            for (models, prices) in &LIST_PRICES {
                let entry = PriceEntry {
                    prices: *prices,
                    effective_date: LIST_PRICE_DATE,
                };
                for model in *models {
                    catalog.insert(provider, region, model, entry);
                }
            }
        }
        catalog.set_default_region(&Provider::OPENAI, PLAN_REGION);
        for (models, prices) in &OPENAI_PRICES {
            let entry = PriceEntry {
                prices: *prices,
                effective_date: OPENAI_PRICE_DATE,
            };
            for model in *models {
                catalog.insert(&Provider::OPENAI, PLAN_REGION, model, entry);
            }
        }
        catalog
    }

    /// Sets the region whose prices apply when the region asked for has none.
    ///
    /// Plan's region is always [`PLAN_REGION`]; a default set for Plan is not used.
    pub fn set_default_region(&mut self, provider: &Provider, region: impl Into<String>) {
        self.providers
            .entry(provider.clone())
            .or_default()
            .default_region = Some(region.into());
    }

    /// The region whose prices apply when the region asked for has none, if any.
    pub fn default_region(&self, provider: &Provider) -> Option<&str> {
        pinned_region(provider).or_else(|| self.providers.get(provider)?.default_region.as_deref())
    }

    /// Sets the price of `model` (normalised with [`normalize_model_id`]) for a provider in a region.
    ///
    /// Plan is only ever priced from [`PLAN_REGION`], so that is the region to give for it.
    pub fn insert(&mut self, provider: &Provider, region: &str, model: &str, entry: PriceEntry) {
        self.providers
            .entry(provider.clone())
            .or_default()
            .regions
            .entry(region.to_owned())
            .or_default()
            .insert(normalize_model_id(model), entry);
    }

    /// The price of `model` for `provider`, and the region and key it was found under.
    ///
    /// The model id is normalised ([`normalize_model_id`]) and matched exactly; a dated
    /// OpenAI snapshot (`gpt-4o-2024-08-06`) without a price of its own takes its alias's
    /// (`gpt-4o`). Plan is
    /// priced from [`PLAN_REGION`] whatever `region` says; any other provider from
    /// `region`, else from its [default region](Self::default_region). Only `provider`'s
    /// own prices are considered: `None` means it has no price for the model.
    pub fn lookup(
        &self,
        provider: &Provider,
        region: Option<&str>,
        model: &str,
    ) -> Option<PriceSnapshot> {
        let prices = self.providers.get(provider)?;
        let key = normalize_model_id(model);
        let regions = match pinned_region(provider) {
            Some(pinned) => [Some(pinned), None],
            None => [region, prices.default_region.as_deref()],
        };
        [Some(key.as_str()), dated_alias(&key)]
            .into_iter()
            .flatten()
            .find_map(|key| {
                regions.into_iter().flatten().find_map(|region| {
                    let entry = prices.regions.get(region)?.get(key)?;
                    Some(PriceSnapshot {
                        provider: provider.clone(),
                        region: region.to_owned(),
                        model_id: key.to_owned(),
                        effective_date: entry.effective_date,
                        prices: entry.prices,
                    })
                })
            })
    }

    /// The price of a request served by `provider`: its region, and the model that served
    /// (else the one asked for). `None`: no price is known — never priced as another model.
    ///
    /// The provider is the caller's to say: a record may name none (see
    /// [`UsageRecord::provider`](crate::UsageRecord::provider)).
    pub fn price_record(
        &self,
        provider: &Provider,
        record: &crate::record::UsageRecord,
    ) -> Option<PriceSnapshot> {
        self.lookup(provider, record.region.as_deref(), record.model()?)
    }

    /// Every price, as `(provider, region, model key, entry)`, sorted in that order.
    pub fn entries(&self) -> impl Iterator<Item = (&str, &str, &str, &PriceEntry)> {
        self.providers.iter().flat_map(|(provider, prices)| {
            prices.regions.iter().flat_map(move |(region, models)| {
                models.iter().map(move |(model, entry)| {
                    (provider.as_str(), region.as_str(), model.as_str(), entry)
                })
            })
        })
    }

    /// The entry stored under exactly this provider, region and model key; no fallback.
    pub(super) fn get(&self, provider: &Provider, region: &str, key: &str) -> Option<&PriceEntry> {
        self.providers.get(provider)?.regions.get(region)?.get(key)
    }
}

/// The only region a provider is ever priced in, for a provider that has one (Plan).
pub(super) fn pinned_region(provider: &Provider) -> Option<&'static str> {
    (*provider == Provider::PLAN).then_some(PLAN_REGION)
}

#[cfg(test)]
mod tests {
    use chrono::NaiveDate;
    use proptest::prelude::*;
    use rust_decimal::Decimal;

    use super::*;
    use crate::pricing::Prices;

    fn flat(price: i64) -> PriceEntry {
        let price = Decimal::from(price);
        PriceEntry {
            prices: Prices {
                input: price,
                output: price,
                cache_write_5m: price,
                cache_write_1h: price,
                cache_read: price,
            },
            effective_date: NaiveDate::from_ymd_opt(2025, 1, 1).unwrap(),
        }
    }

    #[test]
    fn defaults_price_plan_and_bedrock_alike() {
        let catalog = PriceCatalog::defaults();
        let plan = catalog
            .lookup(&Provider::PLAN, None, "claude-opus-4-5")
            .unwrap();
        let bedrock = catalog
            .lookup(&Provider::BEDROCK, Some("us-east-1"), "claude-opus-4-5")
            .unwrap();
        assert_eq!(plan.prices, bedrock.prices);
        assert_eq!(plan.region, "global");
        assert_eq!(bedrock.region, "us-east-1");
        assert_eq!(plan.effective_date.to_string(), "2025-11-24");
        assert_eq!(
            catalog.default_region(&Provider::BEDROCK),
            Some("us-east-1")
        );
        assert_eq!(catalog.default_region(&Provider::PLAN), Some("global"));
        assert_eq!(
            catalog.entries().count(),
            2 * 11 + 14,
            "Anthropic twice, and OpenAI"
        );
    }

    #[test]
    fn plan_ignores_the_region_asked_for() {
        let catalog = PriceCatalog::defaults();
        let plan = catalog
            .lookup(&Provider::PLAN, Some("eu-west-1"), "claude-haiku-4-5")
            .unwrap();
        assert_eq!(plan.provider, Provider::PLAN);
        assert_eq!(plan.region, PLAN_REGION);
        assert_eq!(plan.model_id, "claude-haiku-4-5");
    }

    #[test]
    fn plan_never_falls_back_to_bedrock() {
        let mut catalog = PriceCatalog::defaults();
        catalog.insert(
            &Provider::BEDROCK,
            "us-east-1",
            "claude-bedrock-only",
            flat(1),
        );
        catalog.insert(
            &Provider::BEDROCK,
            PLAN_REGION,
            "claude-bedrock-only",
            flat(1),
        );
        assert!(
            catalog
                .lookup(&Provider::PLAN, None, "claude-bedrock-only")
                .is_none()
        );
        assert!(
            catalog
                .lookup(&Provider::PLAN, Some("us-east-1"), "claude-bedrock-only")
                .is_none()
        );

        // Nor does a Plan price filed under another region count.
        catalog.insert(&Provider::PLAN, "us-east-1", "claude-misfiled", flat(1));
        assert!(
            catalog
                .lookup(&Provider::PLAN, Some("us-east-1"), "claude-misfiled")
                .is_none()
        );
    }

    #[test]
    fn a_region_without_the_model_falls_back_to_the_default_region() {
        let mut catalog = PriceCatalog::defaults();
        catalog.insert(
            &Provider::BEDROCK,
            "eu-west-1",
            "claude-sonnet-4-5",
            flat(7),
        );

        let own = catalog
            .lookup(&Provider::BEDROCK, Some("eu-west-1"), "claude-sonnet-4-5")
            .unwrap();
        assert_eq!(own.region, "eu-west-1");
        assert_eq!(own.prices, flat(7).prices);

        for region in [Some("eu-west-1"), Some("ap-south-1"), None] {
            let fallback = catalog
                .lookup(&Provider::BEDROCK, region, "claude-opus-4-5")
                .unwrap();
            assert_eq!(fallback.region, "us-east-1", "{region:?}");
        }
    }

    #[test]
    fn an_unknown_model_is_unknown() {
        let catalog = PriceCatalog::defaults();
        for model in [
            "claude-sonnet-4-6",
            "claude-sonnet",
            "claude-opus-4-5-extra",
            "gpt-4o",
            "",
        ] {
            assert!(
                catalog.lookup(&Provider::BEDROCK, None, model).is_none(),
                "{model}"
            );
            assert!(
                catalog.lookup(&Provider::PLAN, None, model).is_none(),
                "{model}"
            );
        }
    }

    #[test]
    fn without_a_default_region_only_the_asked_region_counts() {
        let mut catalog = PriceCatalog::empty();
        catalog.insert(&Provider::BEDROCK, "us-west-2", "claude-haiku-4-5", flat(1));
        assert!(catalog.default_region(&Provider::BEDROCK).is_none());
        assert!(
            catalog
                .lookup(&Provider::BEDROCK, None, "claude-haiku-4-5")
                .is_none()
        );
        assert!(
            catalog
                .lookup(&Provider::BEDROCK, Some("us-east-1"), "claude-haiku-4-5")
                .is_none()
        );
        assert!(
            catalog
                .lookup(&Provider::BEDROCK, Some("us-west-2"), "claude-haiku-4-5")
                .is_some()
        );
    }

    #[test]
    fn openai_snapshots_take_their_own_price_else_their_alias() {
        let catalog = PriceCatalog::defaults();
        let price = |model: &str| catalog.lookup(&Provider::OPENAI, Some("eu-west-1"), model);
        let dated = price("gpt-4.1-mini-2025-04-14").unwrap();
        assert_eq!(dated.model_id, "gpt-4-1-mini");
        assert_eq!(dated.region, "global");
        assert_eq!(dated.prices.input.to_string(), "0.400");
        assert_eq!(dated.prices.cache_read.to_string(), "0.100");
        // A snapshot with a price of its own is not priced as its alias.
        assert_eq!(
            price("gpt-4o-2024-05-13").unwrap().prices.input.to_string(),
            "5.000"
        );
        assert_eq!(
            price("gpt-4o-2024-08-06").unwrap().prices.input.to_string(),
            "2.500"
        );
        // Unknown models are unknown, and OpenAI's prices are OpenAI's only.
        assert!(price("gpt-5.2-2025-12-11").is_none());
        assert!(price("claude-sonnet-4-5").is_none());
        assert!(catalog.lookup(&Provider::BEDROCK, None, "gpt-4o").is_none());
    }

    #[test]
    fn other_providers_are_isolated() {
        let vertex = Provider::new("vertex");
        let mut catalog = PriceCatalog::defaults();
        assert!(
            catalog
                .lookup(&vertex, Some("us-east-1"), "claude-opus-4-5")
                .is_none()
        );

        catalog.set_default_region(&vertex, "us-east5");
        catalog.insert(&vertex, "us-east5", "claude-opus-4-5", flat(9));
        let price = catalog
            .lookup(&vertex, Some("us-east-1"), "claude-opus-4-5")
            .unwrap();
        assert_eq!(price.provider, vertex);
        assert_eq!(price.region, "us-east5");
        assert_eq!(price.prices, flat(9).prices);

        // Nobody else sees vertex's prices.
        let bedrock = catalog
            .lookup(&Provider::BEDROCK, Some("us-east5"), "claude-opus-4-5")
            .unwrap();
        assert_eq!(bedrock.region, "us-east-1");
        assert_ne!(bedrock.prices, flat(9).prices);
    }

    #[test]
    fn lookup_normalises_and_entries_are_sorted() {
        let catalog = PriceCatalog::defaults();
        let price = catalog
            .lookup(
                &Provider::BEDROCK,
                Some("us-east-1"),
                "us.anthropic.claude-3-5-haiku-20241022-v1:0",
            )
            .unwrap();
        assert_eq!(price.model_id, "claude-3-5-haiku");

        let keys: Vec<_> = catalog.entries().map(|(p, r, m, _)| (p, r, m)).collect();
        let mut sorted = keys.clone();
        sorted.sort_unstable();
        assert_eq!(keys, sorted);
        assert_eq!(keys[0], ("bedrock", "us-east-1", "claude-3-5-haiku"));
    }

    /// The defaults, with Bedrock's prices made different from Plan's everywhere, and a
    /// second Bedrock region holding some of the models at prices of its own.
    fn diverged_catalog() -> PriceCatalog {
        let mut catalog = PriceCatalog::defaults();
        let bedrock: Vec<(String, PriceEntry)> = catalog
            .entries()
            .filter(|(provider, ..)| *provider == Provider::BEDROCK.as_str())
            .map(|(_, _, model, entry)| (model.to_owned(), *entry))
            .collect();
        for (index, (model, mut entry)) in bedrock.into_iter().enumerate() {
            entry.prices.input += Decimal::ONE;
            entry.prices.cache_read += Decimal::ONE;
            catalog.insert(&Provider::BEDROCK, "us-east-1", &model, entry);
            if index % 2 == 0 {
                entry.prices.output += Decimal::TEN;
                catalog.insert(&Provider::BEDROCK, "eu-west-1", &model, entry);
            }
        }
        catalog
    }

    proptest! {
        /// Any text as a model id (a response's `model` is whatever the upstream wrote):
        /// a lookup answers, priced or not, and never panics.
        #[test]
        fn a_lookup_of_any_model_id_answers(
            id in prop_oneof!["\\PC{0,40}", ("[é中😀a-]{1,4}", 1usize..30).prop_map(|(unit, n)| unit.repeat(n))],
            provider in prop::sample::select(vec![Provider::PLAN, Provider::BEDROCK, Provider::OPENAI]),
        ) {
            let catalog = PriceCatalog::defaults();
            let _ = catalog.lookup(&provider, None, &id);
            let _ = catalog.lookup(&provider, Some("us-east-1"), &format!("{id}-2024-08-06"));
        }

        /// P4: a lookup returns the price of the provider asked for, only.
        #[test]
        fn lookup_returns_the_asked_providers_price(
            plan in any::<bool>(),
            model in 0usize..11,
            region in prop_oneof![
                Just(None),
                Just(Some("us-east-1".to_owned())),
                Just(Some("eu-west-1".to_owned())),
                Just(Some(PLAN_REGION.to_owned())),
                "\\PC{0,16}".prop_map(Some),
            ],
            bedrock_style_id in any::<bool>(),
        ) {
            let catalog = diverged_catalog();
            let (asked, other) = if plan {
                (Provider::PLAN, Provider::BEDROCK)
            } else {
                (Provider::BEDROCK, Provider::PLAN)
            };
            let keys: Vec<&str> = catalog
                .entries()
                .filter(|(provider, ..)| *provider == asked.as_str())
                .map(|(_, _, model, _)| model)
                .collect::<std::collections::BTreeSet<_>>()
                .into_iter()
                .collect();
            prop_assert_eq!(keys.len(), 11);
            let key = keys[model];
            let id = if bedrock_style_id {
                format!("us.anthropic.{key}-20250101-v1:0")
            } else {
                key.to_owned()
            };

            let snapshot = catalog.lookup(&asked, region.as_deref(), &id).unwrap();
            prop_assert_eq!(&snapshot.provider, &asked);
            prop_assert_eq!(snapshot.model_id.as_str(), key);

            let expected_region = match (plan, region.as_deref()) {
                (true, _) => PLAN_REGION,
                (false, Some(region)) if catalog.get(&asked, region, key).is_some() => region,
                (false, _) => "us-east-1",
            };
            prop_assert_eq!(snapshot.region.as_str(), expected_region);
            let own = catalog.get(&asked, expected_region, key).unwrap();
            prop_assert_eq!(snapshot.prices, own.prices);
            prop_assert_eq!(snapshot.effective_date, own.effective_date);

            // Never the other provider's price, in any of its regions.
            for (provider, _, other_key, entry) in catalog.entries() {
                if provider == other.as_str() && other_key == key {
                    prop_assert_ne!(snapshot.prices, entry.prices);
                }
            }
        }

        /// An unknown model stays unknown: a look-alike of a priced model is never priced.
        #[test]
        fn a_look_alike_is_not_priced(
            model in 0usize..11,
            affix in "[a-z]{1,8}".prop_filter("stripped suffix", |affix| affix != "latest"),
            before in any::<bool>(),
        ) {
            let catalog = PriceCatalog::defaults();
            let keys: Vec<&str> = catalog.entries().map(|(_, _, model, _)| model).collect();
            let key = keys[model];
            let look_alike = if before { format!("{affix}{key}") } else { format!("{key}-{affix}") };
            for provider in [Provider::PLAN, Provider::BEDROCK] {
                prop_assert!(catalog.lookup(&provider, None, &look_alike).is_none(), "{}", look_alike);
            }
        }
    }
}
