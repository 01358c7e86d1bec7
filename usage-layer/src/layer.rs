//! [`UsageLayer`]: applies [`UsageService`] to a service.

use tower_layer::Layer;

use crate::anthropic::DEFAULT_MAX_JSON_BYTES;
use crate::service::UsageService;
use crate::sse::DEFAULT_MAX_EVENT_BYTES;

/// Caps on what the layer buffers for one response.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Limits {
    pub(crate) max_event_bytes: usize,
    pub(crate) max_json_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_event_bytes: DEFAULT_MAX_EVENT_BYTES,
            max_json_bytes: DEFAULT_MAX_JSON_BYTES,
        }
    }
}

/// A [`Layer`] that meters every response of the wrapped service into a
/// [`UsageSink`](crate::sink::UsageSink); see the [crate docs](crate).
#[derive(Clone, Debug)]
pub struct UsageLayer<K> {
    sink: K,
    limits: Limits,
}

impl<K> UsageLayer<K> {
    /// A layer that hands each request's record to `sink`.
    pub fn new(sink: K) -> Self {
        Self {
            sink,
            limits: Limits::default(),
        }
    }

    /// Caps the bytes one SSE event may buffer (default 1 MiB); a larger event is dropped
    /// and the record marked.
    pub fn max_event_bytes(mut self, max: usize) -> Self {
        self.limits.max_event_bytes = max;
        self
    }

    /// Caps the bytes of a non-streaming JSON body kept for parsing (default 16 MiB); a
    /// larger body passes unread and the record is marked.
    pub fn max_json_bytes(mut self, max: usize) -> Self {
        self.limits.max_json_bytes = max;
        self
    }
}

impl<S, K: Clone> Layer<S> for UsageLayer<K> {
    type Service = UsageService<S, K>;

    fn layer(&self, inner: S) -> Self::Service {
        UsageService::with_limits(inner, self.sink.clone(), self.limits)
    }
}
