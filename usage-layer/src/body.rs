//! [`UsageBody`]: observes every frame on its way, and records once at the end.

use std::pin::Pin;
use std::task::{Context, Poll};

use http_body::{Body, Frame, SizeHint};
use pin_project_lite::pin_project;

use crate::recorder::{End, Pending};
use crate::sink::UsageSink;

pin_project! {
    /// A response body that reads usage from the bytes passing through it.
    ///
    /// It has the inner body's `Data` and `Error`, forwards `size_hint` and
    /// `is_end_stream`, and never buffers, delays, reorders or fails a frame. It records
    /// exactly once, at whichever comes first: the end of the body, a body error,
    /// `is_end_stream()` turning true after a frame (a body with an exact length may
    /// never be polled again), or `Drop` (the client went away). The body of a request
    /// that is not metered passes through untouched.
    #[derive(Debug)]
    pub struct UsageBody<B, K>
    where
        K: UsageSink,
    {
        #[pin]
        inner: B,
        recorder: Pending<K>,
    }
}

impl<B, K: UsageSink> UsageBody<B, K> {
    pub(crate) fn new(inner: B, recorder: Pending<K>) -> Self {
        Self { inner, recorder }
    }

    /// The inner body.
    pub fn get_ref(&self) -> &B {
        &self.inner
    }

    /// The inner body, mutably (what is taken from it directly is not observed).
    pub fn get_mut(&mut self) -> &mut B {
        &mut self.inner
    }

    /// Unwraps the inner body. The request is recorded now, with what was seen so far,
    /// as if the body had been dropped here.
    pub fn into_inner(self) -> B {
        self.inner
    }
}

impl<B: Body, K: UsageSink> Body for UsageBody<B, K> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let mut this = self.project();
        match this.inner.as_mut().poll_frame(cx) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(None) => {
                this.recorder.finish(End::Eof);
                Poll::Ready(None)
            }
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(recorder) = this.recorder.get_mut() {
                    if let Some(data) = frame.data_ref() {
                        recorder.observe(data);
                    }
                    if this.inner.is_end_stream() {
                        this.recorder.finish(End::Eof);
                    }
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(error))) => {
                this.recorder.finish(End::BodyError);
                Poll::Ready(Some(Err(error)))
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
