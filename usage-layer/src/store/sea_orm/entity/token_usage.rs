//! `token_usage`: one row per request, the source of truth.

use sea_orm::entity::prelude::*;

/// One request's usage, cost and price snapshot.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "token_usage")]
pub struct Model {
    /// Row id.
    #[sea_orm(primary_key)]
    pub id: i64,
    /// The request's id, as the record had it; unique, so writing a record twice stores
    /// it once.
    #[sea_orm(unique)]
    pub request_id: String,
    /// When the request started.
    pub timestamp: DateTimeUtc,
    /// The user (or team, project…), if known.
    pub user_id: Option<String>,
    /// The access key (or API-key name), if known.
    pub access_key_id: Option<String>,
    /// The model the usage is attributed to: the one that served, else the one asked for.
    pub model: String,
    /// `plan`, `bedrock`, …
    pub provider: String,
    /// Uncached input tokens.
    pub input_tokens: i64,
    /// Output tokens.
    pub output_tokens: i64,
    /// Input tokens read from the cache.
    pub cache_read_input_tokens: i64,
    /// Input tokens written to the cache (5-minute and 1-hour together).
    pub cache_creation_input_tokens: i64,
    /// Input + output tokens; cache tokens are not included (as in the original system).
    pub total_tokens: i64,
    /// The cost, micro-USD.
    pub estimated_cost_micros: i64,
    /// The region whose prices were used (`global` for Plan).
    pub pricing_region: Option<String>,
    /// The price catalog key used.
    pub pricing_model_id: Option<String>,
    /// The prices' effective date.
    pub pricing_effective_date: Option<Date>,
    /// Input price, micro-USD per million tokens.
    pub pricing_input_price_per_million_micros: Option<i64>,
    /// Output price, micro-USD per million tokens.
    pub pricing_output_price_per_million_micros: Option<i64>,
    /// 5-minute cache write price, micro-USD per million tokens.
    pub pricing_cache_write_price_per_million_micros: Option<i64>,
    /// Cache read price, micro-USD per million tokens.
    pub pricing_cache_read_price_per_million_micros: Option<i64>,
    /// Cache writes with a 5-minute TTL, when reported apart.
    #[sea_orm(column_name = "cache_write_5m_tokens")]
    pub cache_write_5m_tokens: Option<i64>,
    /// Cache writes with a 1-hour TTL, when reported apart.
    #[sea_orm(column_name = "cache_write_1h_tokens")]
    pub cache_write_1h_tokens: Option<i64>,
    /// 1-hour cache write price, micro-USD per million tokens.
    #[sea_orm(column_name = "pricing_cache_write_1h_price_per_million_micros")]
    pub pricing_cache_write_1h_price_per_million_micros: Option<i64>,
    /// Input cost, micro-USD.
    pub cost_input_micros: i64,
    /// Output cost, micro-USD.
    pub cost_output_micros: i64,
    /// Cache write cost, micro-USD.
    pub cost_cache_write_micros: i64,
    /// Cache read cost, micro-USD.
    pub cost_cache_read_micros: i64,
    /// No price was known for the model: the cost is 0 and must not be trusted.
    pub unpriced: bool,
    /// The model the client asked for.
    pub requested_model: Option<String>,
    /// The model that served, from the response.
    pub served_model: Option<String>,
    /// The provider region the request went to.
    pub region: Option<String>,
    /// How the request ended (`completed`, `client_disconnected`, …).
    pub outcome: String,
    /// The HTTP status of the response, if there was one.
    pub status_code: Option<i32>,
    /// The response was a stream.
    pub streaming: bool,
    /// The provider that was tried first, when a fallback served.
    pub fallback_from: Option<String>,
    /// Why the fallback happened.
    pub fallback_reason: Option<String>,
    /// The `error.type` of an error event or body.
    pub error_type: Option<String>,
    /// The message's `stop_reason`.
    pub stop_reason: Option<String>,
    /// Time to the first body byte, milliseconds.
    pub time_to_first_byte_ms: Option<i64>,
    /// Time to the end, milliseconds.
    pub duration_ms: i64,
    /// Body bytes sent.
    pub response_bytes: i64,
    /// The record's labels, a JSON object of strings (keys in order); NULL when it had none.
    pub labels: Option<String>,
    /// The API format the body was read as (`anthropic`, `openai_chat`, `openai_responses`).
    pub format: Option<String>,
    /// The part of `output_tokens` spent on reasoning, when reported.
    pub reasoning_tokens: Option<i64>,
}

/// No relations: usage rows outlive users and keys.
#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
