//! [`UsageLayer`]: applies [`UsageService`] to a service.

use std::sync::Arc;

use http::HeaderName;
use tower_layer::Layer;

use crate::anthropic::DEFAULT_MAX_JSON_BYTES;
use crate::classify::{DefaultOnRequest, MeterAll};
use crate::diagnostics::Diagnostics;
use crate::format::Format;
use crate::service::UsageService;
use crate::sse::DEFAULT_MAX_EVENT_BYTES;

/// Caps on what the layer buffers for one response; over a cap, the event or body is
/// dropped and the record marked, never an out-of-memory.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    pub(crate) max_event_bytes: usize,
    pub(crate) max_json_bytes: usize,
    pub(crate) max_decoded_bytes: u64,
}

/// The default cap on the bytes decompressed from one body, for reading: 256 MiB.
pub const DEFAULT_MAX_DECODED_BYTES: u64 = 256 << 20;

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_event_bytes: DEFAULT_MAX_EVENT_BYTES,
            max_json_bytes: DEFAULT_MAX_JSON_BYTES,
            max_decoded_bytes: DEFAULT_MAX_DECODED_BYTES,
        }
    }
}

impl Limits {
    /// Caps the bytes one SSE event may buffer (default 1 MiB).
    pub fn max_event_bytes(mut self, max: usize) -> Self {
        self.max_event_bytes = max;
        self
    }

    /// Caps the bytes of a non-streaming JSON body kept for parsing (default 16 MiB).
    pub fn max_json_bytes(mut self, max: usize) -> Self {
        self.max_json_bytes = max;
        self
    }

    /// Caps the bytes decompressed from one compressed body for reading (default
    /// 256 MiB); past it the rest of the body passes unread (a decompression bomb costs
    /// no more than this).
    pub fn max_decoded_bytes(mut self, max: u64) -> Self {
        self.max_decoded_bytes = max;
        self
    }
}

/// What every service of one layer shares.
#[derive(Clone, Debug)]
pub(crate) struct Settings {
    pub(crate) limits: Limits,
    pub(crate) format: Option<Format>,
    pub(crate) request_id_header: Option<HeaderName>,
    pub(crate) diagnostics: Diagnostics,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            limits: Limits::default(),
            format: None,
            request_id_header: Some(HeaderName::from_static("x-request-id")),
            diagnostics: Diagnostics::default(),
        }
    }
}

/// A [`Layer`] that meters every response of the wrapped service into a
/// [`UsageSink`](crate::sink::UsageSink); see the [crate docs](crate).
///
/// `F` decides which requests are metered ([`filter`](Self::filter)); `C` labels a
/// record from its request ([`on_request`](Self::on_request)).
#[derive(Clone, Debug)]
pub struct UsageLayer<K, F = MeterAll, C = DefaultOnRequest> {
    sink: K,
    filter: F,
    on_request: C,
    settings: Settings,
}

impl<K> UsageLayer<K> {
    /// A layer that hands each request's record to `sink`.
    pub fn new(sink: K) -> Self {
        Self {
            sink,
            filter: MeterAll,
            on_request: DefaultOnRequest,
            settings: Settings::default(),
        }
    }
}

impl<K, F, C> UsageLayer<K, F, C> {
    /// Meters only the requests `filter` accepts (a [`Filter`](crate::classify::Filter),
    /// such as `|request: &Request<_>| -> bool`); the others pass untouched, unrecorded.
    pub fn filter<F2>(self, filter: F2) -> UsageLayer<K, F2, C> {
        UsageLayer {
            sink: self.sink,
            filter,
            on_request: self.on_request,
            settings: self.settings,
        }
    }

    /// Calls `on_request` (an [`OnRequest`](crate::classify::OnRequest), such as
    /// `|request: &Request<_>, record: &mut UsageRecord|`) on each metered request, to
    /// set the caller, labels, provider… from it.
    pub fn on_request<C2>(self, on_request: C2) -> UsageLayer<K, F, C2> {
        UsageLayer {
            sink: self.sink,
            filter: self.filter,
            on_request,
            settings: self.settings,
        }
    }

    /// Sets the buffering caps.
    pub fn limits(mut self, limits: Limits) -> Self {
        self.settings.limits = limits;
        self
    }

    /// Caps the bytes one SSE event may buffer (default 1 MiB); a larger event is dropped
    /// and the record marked.
    pub fn max_event_bytes(mut self, max: usize) -> Self {
        self.settings.limits = self.settings.limits.max_event_bytes(max);
        self
    }

    /// Caps the bytes of a non-streaming JSON body kept for parsing (default 16 MiB); a
    /// larger body passes unread and the record is marked.
    pub fn max_json_bytes(mut self, max: usize) -> Self {
        self.settings.limits = self.settings.limits.max_json_bytes(max);
        self
    }

    /// Reads every body as `format`, whatever the request path and content say (a
    /// [`Format`] in a request's extensions still wins).
    pub fn format(mut self, format: Format) -> Self {
        self.settings.format = Some(format);
        self
    }

    /// The header the request id is taken from, on the request or else on the response
    /// (default `x-request-id`, the one tower-http's `SetRequestId` sets); `None` to take
    /// ids only from [`RequestId`](crate::RequestId) extensions.
    ///
    /// When the request had an id and the response carries a different one (an upstream
    /// that sends its own, as OpenAI does), the record keeps the request's and labels the
    /// other as `upstream_request_id`. The store keeps one record per id: a client that
    /// sends the same id twice gets one record.
    pub fn request_id_header(mut self, header: Option<HeaderName>) -> Self {
        self.settings.request_id_header = header;
        self
    }

    /// The counters of what this layer's records lacked (see
    /// [`Diagnostics`](crate::diagnostics::Diagnostics)).
    pub fn diagnostics(&self) -> Diagnostics {
        self.settings.diagnostics.clone()
    }
}

impl<S, K: Clone, F: Clone, C: Clone> Layer<S> for UsageLayer<K, F, C> {
    type Service = UsageService<S, K, F, C>;

    fn layer(&self, inner: S) -> Self::Service {
        UsageService::from_parts(
            inner,
            self.sink.clone(),
            self.filter.clone(),
            self.on_request.clone(),
            Arc::new(self.settings.clone()),
        )
    }
}
