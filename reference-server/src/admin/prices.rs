//! The price list.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use chrono::NaiveDate;
use serde::Serialize;
use usage_layer::Provider;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::ErrorBody;
use crate::app::AppState;

/// The routes of this module.
pub(super) fn routes() -> OpenApiRouter<Arc<AppState>> {
    OpenApiRouter::new().routes(routes!(list_prices))
}

/// One model's prices for one provider in one region, in USD per million tokens.
#[derive(Debug, Serialize, ToSchema)]
struct Price {
    /// `plan`, `bedrock`, …
    #[schema(example = "bedrock")]
    provider: String,
    /// The region the prices are listed in (`global` for Plan).
    #[schema(example = "us-east-1")]
    region: String,
    /// The normalised model id.
    #[schema(example = "claude-sonnet-4-5")]
    model: String,
    /// Uncached input tokens.
    #[schema(example = "3.00")]
    input_price_per_million: String,
    /// Output tokens.
    #[schema(example = "15.00")]
    output_price_per_million: String,
    /// Prompt-cache writes with a 5-minute TTL.
    #[schema(example = "3.75")]
    cache_write_price_per_million: String,
    /// Prompt-cache writes with a 1-hour TTL.
    #[schema(example = "6.00")]
    cache_write_1h_price_per_million: String,
    /// Prompt-cache reads.
    #[schema(example = "0.30")]
    cache_read_price_per_million: String,
    /// The first day these prices applied.
    effective_date: NaiveDate,
}

/// The effective prices.
#[derive(Debug, Serialize, ToSchema)]
struct PriceList {
    /// Every price, by provider, region and model.
    prices: Vec<Price>,
    /// Each provider's default region: where a model is priced when the region asked for
    /// has no price for it.
    #[schema(example = json!({"plan": "global", "bedrock": "us-east-1"}))]
    default_regions: BTreeMap<String, String>,
}

/// The effective prices and each provider's default region.
#[utoipa::path(
    get,
    path = "/admin/pricing",
    tag = "pricing",
    responses(
        (status = 200, description = "the prices", body = PriceList),
        (status = 401, description = "no or wrong admin token", body = ErrorBody),
    )
)]
async fn list_prices(State(state): State<Arc<AppState>>) -> Json<PriceList> {
    let catalog = &state.pricing;
    let prices = catalog
        .entries()
        .map(|(provider, region, model, entry)| Price {
            provider: provider.to_owned(),
            region: region.to_owned(),
            model: model.to_owned(),
            input_price_per_million: entry.prices.input.to_string(),
            output_price_per_million: entry.prices.output.to_string(),
            cache_write_price_per_million: entry.prices.cache_write_5m.to_string(),
            cache_write_1h_price_per_million: entry.prices.cache_write_1h.to_string(),
            cache_read_price_per_million: entry.prices.cache_read.to_string(),
            effective_date: entry.effective_date,
        })
        .collect();
    let providers: BTreeSet<&str> = catalog.entries().map(|(provider, ..)| provider).collect();
    let default_regions = providers
        .into_iter()
        .filter_map(|provider| {
            let region = catalog.default_region(&Provider::new(provider.to_owned()))?;
            Some((provider.to_owned(), region.to_owned()))
        })
        .collect();
    Json(PriceList {
        prices,
        default_regions,
    })
}
