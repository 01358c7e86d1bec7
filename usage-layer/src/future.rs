//! [`ResponseFuture`]: wraps the response body once the response arrives.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use http::Response;
use pin_project_lite::pin_project;

use crate::body::UsageBody;
use crate::record::Outcome;
use crate::recorder::{End, Pending, Recorder};
use crate::sink::UsageSink;

pin_project! {
    /// The response future of [`UsageService`](crate::UsageService).
    ///
    /// If the inner service fails, the record is made here (outcome
    /// [`ServiceError`](Outcome::ServiceError)); if the future is dropped before the
    /// response arrives, too ([`ClientDisconnected`](Outcome::ClientDisconnected)).
    #[derive(Debug)]
    pub struct ResponseFuture<F, K>
    where
        K: UsageSink,
    {
        #[pin]
        inner: F,
        recorder: Pending<K>,
    }
}

impl<F, K: UsageSink> ResponseFuture<F, K> {
    pub(crate) fn new(inner: F, recorder: Option<Recorder<K>>) -> Self {
        Self {
            inner,
            recorder: Pending::without_response(recorder),
        }
    }
}

impl<F, K, B, E> Future for ResponseFuture<F, K>
where
    F: Future<Output = Result<Response<B>, E>>,
    B: http_body::Body,
    K: UsageSink,
{
    type Output = Result<Response<UsageBody<B, K>>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let result = ready!(this.inner.poll(cx));
        let recorder = this.recorder.take();
        Poll::Ready(match result {
            Ok(response) => {
                let mut recorder = recorder.map(|mut recorder| {
                    recorder.on_response(&response);
                    Pending::of_body(recorder)
                });
                // A body that is empty from the start has nothing more to show.
                if response.body().is_end_stream()
                    && let Some(recorder) = recorder.as_mut()
                {
                    recorder.finish(End::Eof);
                }
                let recorder = recorder.unwrap_or_default();
                Ok(response.map(|body| UsageBody::new(body, recorder)))
            }
            Err(error) => {
                if let Some(recorder) = recorder {
                    recorder.finish_without_response(Outcome::ServiceError);
                }
                Err(error)
            }
        })
    }
}
