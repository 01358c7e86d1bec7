//! Exact usage metering for LLM APIs, as a [tower] layer.
//!
//! [`UsageLayer`] wraps any `Service<http::Request<_>, Response = http::Response<B>>`
//! whose body `B` is an [`http_body::Body`] — a server's handler or an upstream client
//! alike. It reads the usage out of SSE streams and JSON bodies as the bytes pass —
//! Anthropic's Messages API and OpenAI's Chat Completions and Responses APIs
//! ([`Format`]), compressed or not — without buffering, delaying or changing a frame, and
//! hands **exactly one** [`UsageRecord`] per request to a [`UsageSink`]: at the end of
//! the body, on a body error, or when the client goes away — whichever comes first.
//!
//! It invents nothing: a record says which provider served only if someone said so,
//! and what records lack is counted and logged once ([`diagnostics`]).
//!
//! ```
//! use bytes::Bytes;
//! use http::{Request, Response};
//! use http_body_util::{BodyExt, Full};
//! use tower::{ServiceBuilder, ServiceExt, service_fn};
//! use usage_layer::sink::MemorySink;
//! use usage_layer::{Outcome, Provider, UsageLayer};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! let records = MemorySink::new();
//! let service = ServiceBuilder::new()
//!     .layer(UsageLayer::new(records.clone()))
//!     .service(service_fn(|_request: Request<()>| async {
//!         let mut response = Response::builder()
//!             .header("content-type", "application/json")
//!             .body(Full::new(Bytes::from_static(
//!                 br#"{"type":"message","model":"claude-sonnet-4-5","usage":{"input_tokens":12,"output_tokens":30}}"#,
//!             )))
//!             .unwrap();
//!         // Whatever routed the request says which provider served it.
//!         response.extensions_mut().insert(Provider::PLAN);
//!         Ok::<_, std::convert::Infallible>(response)
//!     }));
//!
//! let response = service.oneshot(Request::new(())).await.unwrap();
//! let _bytes = response.into_body().collect().await.unwrap(); // the client reads the body
//!
//! let [record] = records.take().try_into().unwrap();
//! assert_eq!(record.provider, Some(Provider::PLAN));
//! assert_eq!(record.usage.input_tokens, Some(12));
//! assert_eq!(record.usage.output_tokens, Some(30));
//! assert_eq!(record.served_model.as_deref(), Some("claude-sonnet-4-5"));
//! assert_eq!(record.outcome, Outcome::Completed);
//! # }
//! ```
//!
//! # Layout
//!
//! * [`sse`] — the sans-IO SSE [`Scanner`](sse::Scanner); [`anthropic`] — the usage
//!   accumulator and the JSON body reader, for every [`Format`]. Neither knows about
//!   bodies or async; a compressed body is decoded for them, as sans-IO (feature
//!   `decompress`, on by default).
//! * [`UsageLayer`] → [`UsageService`] → [`ResponseFuture`] → [`UsageBody`]: the thin
//!   tower adapter around them; [`classify`] — which requests are metered and what a
//!   closure on the request tells; [`diagnostics`] — what records could not know.
//! * [`record`] — [`UsageRecord`] and the extensions that label it ([`Provider`],
//!   [`Caller`], [`Labels`], [`Region`], [`RequestedModel`], [`Fallback`], [`RequestId`]).
//! * [`pricing`] — the price catalog; [`store`] — the [`UsageStore`](store::UsageStore)
//!   trait and the sea-orm (feature `sea-orm`) and CloudWatch (feature `cloudwatch`) stores.
//! * [`sink`] — [`UsageSink`], its combinators, and the background
//!   [`BatchWriter`](sink::BatchWriter) for async stores (feature `writer`, on by default).
//!   `sink::metrics` (feature `metrics`) reports records to the `metrics` facade.
//!
//! [tower]: https://docs.rs/tower

#![cfg_attr(docsrs, feature(doc_cfg))]

pub mod anthropic;
mod body;
mod buffer;
pub mod classify;
#[cfg(feature = "decompress")]
mod decode;
pub mod diagnostics;
mod format;
mod future;
mod layer;
pub mod pricing;
pub mod record;
mod recorder;
mod service;
pub mod sink;
pub mod sse;
pub mod store;

pub use crate::anthropic::{ParseIssue, Usage};
pub use crate::body::UsageBody;
pub use crate::format::Format;
pub use crate::future::ResponseFuture;
pub use crate::layer::{DEFAULT_MAX_DECODED_BYTES, Limits, UsageLayer};
pub use crate::record::{
    Caller, Fallback, Labels, Outcome, Provider, Region, RequestId, RequestedModel, UsageRecord,
};
pub use crate::service::UsageService;
pub use crate::sink::UsageSink;

// The README's Rust examples are compiled and run as doctests (they use every feature).
#[cfg(all(doctest, feature = "sea-orm"))]
#[doc = include_str!("../../README.md")]
struct ReadmeDoctests;
