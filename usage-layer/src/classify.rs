//! What the layer meters, and what it learns from a request before it is served.
//!
//! Both are closures (or types) the layer calls on each request, in the style of
//! tower-http's `MakeSpan` and `Predicate`:
//!
//! * a [`Filter`] decides whether a request is metered at all — `|request| bool`;
//! * an [`OnRequest`] labels the record from the request — `|request, record|`, setting
//!   any of its fields: the caller, the labels, the provider, the requested model…
//!
//! ```
//! use http::Request;
//! use usage_layer::sink::MemorySink;
//! use usage_layer::{Caller, Provider, UsageLayer, UsageRecord};
//!
//! let layer = UsageLayer::new(MemorySink::new())
//!     // Meter the model endpoints only: no record for `/health` or a 404.
//!     .filter(|request: &Request<()>| request.uri().path().starts_with("/v1/"))
//!     .on_request(|request: &Request<()>, record: &mut UsageRecord| {
//!         if let Some(team) = request.headers().get("x-team").and_then(|v| v.to_str().ok()) {
//!             record.caller = Caller::user(team);
//!             record.labels.insert("team", team);
//!         }
//!         record.provider = Some(Provider::OPENAI);
//!     });
//! # drop(layer);
//! ```

use http::Request;

use crate::record::UsageRecord;

/// Decides whether a request is metered; an unmetered request's body passes untouched
/// and no record is made.
pub trait Filter<B> {
    /// `true` to meter `request`.
    fn meter(&mut self, request: &Request<B>) -> bool;
}

impl<B, F> Filter<B> for F
where
    F: FnMut(&Request<B>) -> bool,
{
    fn meter(&mut self, request: &Request<B>) -> bool {
        self(request)
    }
}

/// The default [`Filter`]: every request is metered.
#[derive(Clone, Copy, Debug, Default)]
pub struct MeterAll;

impl<B> Filter<B> for MeterAll {
    fn meter(&mut self, _request: &Request<B>) -> bool {
        true
    }
}

/// Fills in a record from its request, after the request's extensions were read and
/// before the request is served (the response's extensions still win).
pub trait OnRequest<B> {
    /// Sets what `request` tells about `record`.
    fn on_request(&mut self, request: &Request<B>, record: &mut UsageRecord);
}

impl<B, F> OnRequest<B> for F
where
    F: FnMut(&Request<B>, &mut UsageRecord),
{
    fn on_request(&mut self, request: &Request<B>, record: &mut UsageRecord) {
        self(request, record)
    }
}

/// The default [`OnRequest`]: the request's extensions are all there is.
#[derive(Clone, Copy, Debug, Default)]
pub struct DefaultOnRequest;

impl<B> OnRequest<B> for DefaultOnRequest {
    fn on_request(&mut self, _request: &Request<B>, _record: &mut UsageRecord) {}
}
