//! [`UsageService`]: the middleware itself.

use std::sync::Arc;
use std::task::{Context, Poll};

use http::{Request, Response};
use tower_service::Service;

use crate::classify::{DefaultOnRequest, Filter, MeterAll, OnRequest};
use crate::future::ResponseFuture;
use crate::layer::{Limits, Settings, UsageLayer};
use crate::recorder::Recorder;
use crate::sink::UsageSink;

/// Middleware that wraps each response body in a [`UsageBody`](crate::UsageBody) and
/// records one [`UsageRecord`](crate::UsageRecord) per metered request.
#[derive(Clone, Debug)]
pub struct UsageService<S, K, F = MeterAll, C = DefaultOnRequest> {
    inner: S,
    sink: K,
    filter: F,
    on_request: C,
    settings: Arc<Settings>,
}

impl<S, K> UsageService<S, K> {
    /// Wraps `inner`, handing each request's record to `sink`.
    pub fn new(inner: S, sink: K) -> Self {
        Self::with_limits(inner, sink, Limits::default())
    }

    /// Wraps `inner` with these buffering caps.
    pub fn with_limits(inner: S, sink: K, limits: Limits) -> Self {
        let settings = Settings {
            limits,
            ..Settings::default()
        };
        Self::from_parts(inner, sink, MeterAll, DefaultOnRequest, Arc::new(settings))
    }

    /// A [`UsageLayer`] with this sink.
    pub fn layer(sink: K) -> UsageLayer<K> {
        UsageLayer::new(sink)
    }
}

impl<S, K, F, C> UsageService<S, K, F, C> {
    pub(crate) fn from_parts(
        inner: S,
        sink: K,
        filter: F,
        on_request: C,
        settings: Arc<Settings>,
    ) -> Self {
        Self {
            inner,
            sink,
            filter,
            on_request,
            settings,
        }
    }

    /// The inner service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The inner service, mutably.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// Unwraps the inner service.
    pub fn into_inner(self) -> S {
        self.inner
    }
}

impl<S, K, F, C, ReqBody, ResBody> Service<Request<ReqBody>> for UsageService<S, K, F, C>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
    ResBody: http_body::Body,
    K: UsageSink + Clone,
    F: Filter<ReqBody>,
    C: OnRequest<ReqBody>,
{
    type Response = Response<crate::UsageBody<ResBody, K>>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future, K>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<ReqBody>) -> Self::Future {
        let recorder = self.filter.meter(&request).then(|| {
            let mut recorder = Recorder::start(&request, self.sink.clone(), &self.settings);
            self.on_request.on_request(&request, recorder.record_mut());
            recorder
        });
        ResponseFuture::new(self.inner.call(request), recorder)
    }
}
