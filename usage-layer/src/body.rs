//! [`UsageBody`]: observes every frame on its way, and records once at the end.

use std::pin::Pin;
use std::task::{Context, Poll};

use http_body::{Body, Frame, SizeHint};
use pin_project_lite::pin_project;

use crate::recorder::{End, Recorder};
use crate::sink::UsageSink;

pin_project! {
    /// A response body that reads usage from the bytes passing through it.
    ///
    /// It has the inner body's `Data` and `Error`, forwards `size_hint` and
    /// `is_end_stream`, and never buffers, delays, reorders or fails a frame. It records
    /// exactly once, at whichever comes first: the end of the body, a body error,
    /// `is_end_stream()` turning true after a frame (a body with an exact length may
    /// never be polled again), or `Drop` (the client went away).
    #[derive(Debug)]
    pub struct UsageBody<B, K>
    where
        B: Body,
        K: UsageSink,
    {
        #[pin]
        inner: B,
        recorder: Option<Recorder<K>>,
    }

    impl<B, K> PinnedDrop for UsageBody<B, K>
    where
        B: Body,
        K: UsageSink,
    {
        fn drop(this: Pin<&mut Self>) {
            let this = this.project();
            if let Some(recorder) = this.recorder.take() {
                // A body that was empty from the start was not cut short.
                let end = if this.inner.is_end_stream() { End::Eof } else { End::Dropped };
                recorder.finish(end);
            }
        }
    }
}

impl<B: Body, K: UsageSink> UsageBody<B, K> {
    pub(crate) fn new(inner: B, recorder: Recorder<K>) -> Self {
        Self {
            inner,
            recorder: Some(recorder),
        }
    }

    /// The inner body.
    pub fn get_ref(&self) -> &B {
        &self.inner
    }
}

fn finish<K: UsageSink>(recorder: &mut Option<Recorder<K>>, end: End) {
    if let Some(recorder) = recorder.take() {
        recorder.finish(end);
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
                finish(this.recorder, End::Eof);
                Poll::Ready(None)
            }
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(recorder) = this.recorder.as_mut() {
                    if let Some(data) = frame.data_ref() {
                        recorder.observe(data);
                    }
                    if this.inner.is_end_stream() {
                        finish(this.recorder, End::Eof);
                    }
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(error))) => {
                finish(this.recorder, End::BodyError);
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
