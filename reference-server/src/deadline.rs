//! Time limits on bodies.
//!
//! * [`RequestDeadline`]: a client has a fixed time to send a request's whole body. Past
//!   it the body fails with [`BodyTimeout`], which the handlers answer with a 408.
//! * [`Watched`]: an upstream's response body may not go silent for longer than the idle
//!   timeout, and is cut when the server's shutdown deadline passes. A cut stream ends
//!   with an Anthropic-shaped `error` event (type `upstream_idle_timeout` or
//!   `proxy_shutdown`), so the client's SDK reports an error instead of a broken
//!   connection, and the usage record says why (`stream_error`, with that `error_type`).
//!   A cut JSON body fails instead (`upstream_error`): there is no way to end it well.

use std::fmt;
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use bytes::{Buf, Bytes};
use http_body::{Body, Frame, SizeHint};
use pin_project_lite::pin_project;
use tokio::time::{Instant, Sleep, sleep};
use tokio_util::sync::{CancellationToken, WaitForCancellationFutureOwned};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// A request body that was not received in time.
#[derive(Debug)]
pub struct BodyTimeout(pub Duration);

impl fmt::Display for BodyTimeout {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "the request body was not received within {:?}", self.0)
    }
}

impl std::error::Error for BodyTimeout {}

impl BodyTimeout {
    /// Whether `error` (or what it wraps) is a [`BodyTimeout`].
    pub fn is_in(error: &(dyn std::error::Error + 'static)) -> bool {
        let mut next = Some(error);
        while let Some(error) = next {
            if error.is::<BodyTimeout>() {
                return true;
            }
            next = error.source();
        }
        false
    }
}

pin_project! {
    /// A body that fails with [`BodyTimeout`] once its deadline passes.
    pub struct RequestDeadline<B> {
        #[pin]
        body: B,
        #[pin]
        deadline: Sleep,
        timeout: Duration,
    }
}

impl<B> RequestDeadline<B> {
    /// `body`, to be received in full within `timeout` from now.
    pub fn new(body: B, timeout: Duration) -> Self {
        Self {
            body,
            deadline: sleep(timeout),
            timeout,
        }
    }
}

impl<B> Body for RequestDeadline<B>
where
    B: Body,
    B::Error: Into<BoxError>,
{
    type Data = B::Data;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let this = self.project();
        if let Poll::Ready(frame) = this.body.poll_frame(cx) {
            return Poll::Ready(frame.map(|frame| frame.map_err(Into::into)));
        }
        ready!(this.deadline.poll(cx));
        Poll::Ready(Some(Err(Box::new(BodyTimeout(*this.timeout)))))
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

/// Why a [`Watched`] body was cut.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Cut {
    /// The upstream sent nothing for the idle timeout.
    UpstreamIdle(Duration),
    /// The server's shutdown deadline passed.
    Shutdown,
}

impl Cut {
    /// The `error.type` of the event that ends a cut stream.
    pub fn error_type(self) -> &'static str {
        match self {
            Self::UpstreamIdle(_) => "upstream_idle_timeout",
            Self::Shutdown => "proxy_shutdown",
        }
    }

    fn message(self) -> String {
        match self {
            Self::UpstreamIdle(idle) => {
                format!("the upstream sent nothing for {} s", idle.as_secs())
            }
            Self::Shutdown => "the proxy is shutting down".to_owned(),
        }
    }

    /// The SSE `error` event that ends a cut stream (Anthropic's shape).
    fn event(self) -> Bytes {
        let data = serde_json::json!({
            "type": "error",
            "error": { "type": self.error_type(), "message": self.message() },
        });
        Bytes::from(format!("event: error\ndata: {data}\n\n"))
    }
}

impl fmt::Display for Cut {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message())
    }
}

impl std::error::Error for Cut {}

pin_project! {
    /// An upstream response body with an idle timeout, cut at shutdown; see the
    /// [module docs](self).
    pub struct Watched<B> {
        #[pin]
        body: B,
        // Fires at the latest possible idle deadline; when it does, the deadline is the
        // last frame's time + `timeout`, and it is re-armed if that is later (one timer
        // operation per timeout period instead of one per frame).
        #[pin]
        idle: Sleep,
        last_frame: Instant,
        #[pin]
        shutdown: WaitForCancellationFutureOwned,
        timeout: Duration,
        event_stream: bool,
        // The last two bytes sent end an event (or nothing was sent): an `error` event
        // can follow as it is.
        at_event_end: bool,
        last_byte_newline: bool,
        done: bool,
    }
}

impl<B> Watched<B> {
    /// `body`, cut after `timeout` without a frame or when `shutdown` is cancelled;
    /// `event_stream` when it is `text/event-stream`.
    pub fn new(
        body: B,
        timeout: Duration,
        shutdown: CancellationToken,
        event_stream: bool,
    ) -> Self {
        Self {
            body,
            idle: sleep(timeout),
            last_frame: Instant::now(),
            shutdown: shutdown.cancelled_owned(),
            timeout,
            event_stream,
            at_event_end: true,
            last_byte_newline: true,
            done: false,
        }
    }
}

impl<B> Body for Watched<B>
where
    B: Body<Data = Bytes>,
    B::Error: Into<BoxError>,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let mut this = self.project();
        if *this.done {
            return Poll::Ready(None);
        }
        let cut = if this.shutdown.as_mut().poll(cx).is_ready() {
            Cut::Shutdown
        } else {
            match this.body.poll_frame(cx) {
                Poll::Ready(Some(Ok(frame))) => {
                    if let Some(data) = frame.data_ref()
                        && data.has_remaining()
                    {
                        let ends_newline = data.ends_with(b"\n");
                        *this.at_event_end = data.ends_with(b"\n\n")
                            || (data.as_ref() == b"\n" && *this.last_byte_newline);
                        *this.last_byte_newline = ends_newline;
                    }
                    *this.last_frame = Instant::now();
                    return Poll::Ready(Some(Ok(frame)));
                }
                Poll::Ready(other) => {
                    return Poll::Ready(other.map(|frame| frame.map_err(Into::into)));
                }
                Poll::Pending => loop {
                    ready!(this.idle.as_mut().poll(cx));
                    let deadline = *this.last_frame + *this.timeout;
                    if deadline <= Instant::now() {
                        break Cut::UpstreamIdle(*this.timeout);
                    }
                    this.idle.as_mut().reset(deadline);
                },
            }
        };
        *this.done = true;
        tracing::warn!(reason = cut.error_type(), "upstream body cut: {cut}");
        if !*this.event_stream {
            return Poll::Ready(Some(Err(Box::new(cut))));
        }
        // End whatever event was cut off, then the error event.
        let mut event = Vec::new();
        if !*this.at_event_end {
            event.extend_from_slice(if *this.last_byte_newline {
                b"\n"
            } else {
                b"\n\n"
            });
        }
        event.extend_from_slice(&cut.event());
        Poll::Ready(Some(Ok(Frame::data(Bytes::from(event)))))
    }

    fn is_end_stream(&self) -> bool {
        self.done || self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        // A cut stream may end sooner, or carry the error event: no exact length.
        SizeHint::default()
    }
}

#[cfg(test)]
mod tests {
    use futures::StreamExt;
    use http_body_util::{BodyExt, StreamBody};

    use super::*;

    fn stalled_after(
        first: &'static [u8],
    ) -> impl Body<Data = Bytes, Error = std::convert::Infallible> {
        let frames = futures::stream::iter([Ok(Frame::data(Bytes::from_static(first)))])
            .chain(futures::stream::pending());
        StreamBody::new(frames)
    }

    async fn collect_text(body: impl Body<Data = Bytes, Error = BoxError>) -> String {
        let bytes = body.collect().await.unwrap().to_bytes();
        String::from_utf8(bytes.to_vec()).unwrap()
    }

    #[tokio::test(start_paused = true)]
    async fn a_silent_stream_ends_with_an_error_event_after_the_idle_timeout() {
        let started = b"event: message_start\ndata: {}\n\n";
        let body = Watched::new(
            stalled_after(started),
            Duration::from_secs(120),
            CancellationToken::new(),
            true,
        );
        let text = collect_text(body).await;
        assert!(text.starts_with("event: message_start\ndata: {}\n\nevent: error\n"));
        assert!(text.contains(r#""type":"upstream_idle_timeout""#), "{text}");
    }

    #[tokio::test(start_paused = true)]
    async fn a_slow_stream_that_never_goes_silent_for_the_timeout_is_not_cut() {
        // Five events a minute apart: five minutes in all, never two minutes of silence.
        let events = futures::stream::unfold(0, |sent| async move {
            (sent < 5).then_some(())?;
            tokio::time::sleep(Duration::from_secs(60)).await;
            let event = Bytes::from_static(b"event: ping\ndata: {}\n\n");
            Some((
                Ok::<_, std::convert::Infallible>(Frame::data(event)),
                sent + 1,
            ))
        });
        let body = Watched::new(
            StreamBody::new(events),
            Duration::from_secs(120),
            CancellationToken::new(),
            true,
        );
        let text = collect_text(body).await;
        assert_eq!(text.matches("event: ping").count(), 5);
        assert!(!text.contains("error"), "{text}");
    }

    #[tokio::test(start_paused = true)]
    async fn an_event_cut_in_the_middle_is_ended_before_the_error_event() {
        let body = Watched::new(
            stalled_after(b"event: content_block_delta\ndata: {\"ty"),
            Duration::from_secs(5),
            CancellationToken::new(),
            true,
        );
        let text = collect_text(body).await;
        assert!(text.contains("{\"ty\n\nevent: error\n"), "{text:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn shutdown_cuts_a_stream_and_a_json_body_fails() {
        let shutdown = CancellationToken::new();
        let body = Watched::new(
            stalled_after(b"{\"id\":"),
            Duration::from_secs(600),
            shutdown.clone(),
            false,
        );
        shutdown.cancel();
        let error = body.collect().await.expect_err("a cut JSON body fails");
        assert!(error.downcast_ref::<Cut>() == Some(&Cut::Shutdown));
    }

    #[tokio::test(start_paused = true)]
    async fn a_request_body_past_its_deadline_fails_with_body_timeout() {
        let body = RequestDeadline::new(stalled_after(b"{\"model\":"), Duration::from_secs(60));
        let error = body.collect().await.expect_err("times out");
        assert!(BodyTimeout::is_in(&*error));
    }
}
