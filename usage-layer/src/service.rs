//! [`UsageService`]: the middleware itself.

use std::task::{Context, Poll};

use http::{Request, Response};
use tower_service::Service;

use crate::future::ResponseFuture;
use crate::layer::{Limits, UsageLayer};
use crate::recorder::Recorder;
use crate::sink::UsageSink;

/// Middleware that wraps each response body in a [`UsageBody`](crate::UsageBody) and
/// records one [`UsageRecord`](crate::UsageRecord) per request.
#[derive(Clone, Debug)]
pub struct UsageService<S, K> {
    inner: S,
    sink: K,
    limits: Limits,
}

impl<S, K> UsageService<S, K> {
    /// Wraps `inner`, handing each request's record to `sink`.
    pub fn new(inner: S, sink: K) -> Self {
        Self::with_limits(inner, sink, Limits::default())
    }

    pub(crate) fn with_limits(inner: S, sink: K, limits: Limits) -> Self {
        Self {
            inner,
            sink,
            limits,
        }
    }

    /// A [`UsageLayer`] with this sink.
    pub fn layer(sink: K) -> UsageLayer<K> {
        UsageLayer::new(sink)
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

impl<S, K, ReqBody, ResBody> Service<Request<ReqBody>> for UsageService<S, K>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
    ResBody: http_body::Body,
    K: UsageSink + Clone,
{
    type Response = Response<crate::UsageBody<ResBody, K>>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future, K>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<ReqBody>) -> Self::Future {
        let recorder = Recorder::start(&request, self.sink.clone(), self.limits);
        ResponseFuture::new(self.inner.call(request), recorder)
    }
}
