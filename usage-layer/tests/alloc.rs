//! No allocation per `content_block_delta` or `ping` frame once a stream is under way.
//!
//! Its own test binary, with one test: the counting allocator sees every thread of the
//! process, so nothing else may run beside it. Even so the test harness's main thread
//! allocates once when it first blocks waiting for the test, and on a busy machine that can
//! fall inside a measured window; so each loop is measured in several windows and the
//! quietest one must show no allocation. A per-frame allocation shows in every window.

use std::alloc::System;
use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, Waker};

use bytes::Bytes;
use futures::stream;
use http::{Request, Response};
use http_body::{Body, Frame};
use http_body_util::StreamBody;
use stats_alloc::{INSTRUMENTED_SYSTEM, Region, StatsAlloc};
use tower::{Service, ServiceBuilder, service_fn};
use usage_layer::UsageLayer;
use usage_layer::sink::NoopSink;
use usage_layer::sse::Scanner;

#[global_allocator]
static GLOBAL: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;

const START: &[u8] = b"event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"id\":\"msg_1\",\"model\":\"claude-sonnet-4-5\",\"usage\":{\"input_tokens\":120,\"output_tokens\":1}}}\n\n";
const DELTA: &[u8] = b"event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":\"Hello, world\"}}\n\n";
const PING: &[u8] = b"event: ping\ndata: {\"type\": \"ping\"}\n\n";
const UNNAMED_DELTA: &[u8] = b"data: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":\"Hi\"}}\n\n";
const FRAMES: usize = 2_000;

fn poll<B: Body + Unpin>(body: &mut B) -> Option<Frame<B::Data>> {
    let mut cx = Context::from_waker(Waker::noop());
    match Pin::new(body).poll_frame(&mut cx) {
        Poll::Ready(Some(Ok(frame))) => Some(frame),
        Poll::Ready(Some(Err(_))) => panic!("body error"),
        Poll::Ready(None) => None,
        Poll::Pending => panic!("the test body is always ready"),
    }
}

/// How many windows each measured loop is cut into.
const WINDOWS: usize = 5;

/// Runs `window` [`WINDOWS`] times; the fewest (allocations, reallocations) one run saw.
fn quietest_window(mut window: impl FnMut()) -> (usize, usize) {
    (0..WINDOWS)
        .map(|_| {
            let region = Region::new(GLOBAL);
            window();
            let change = region.change();
            (change.allocations, change.reallocations)
        })
        .min()
        .expect("at least one window")
}

#[test]
fn no_allocation_per_delta_or_ping_frame() {
    // Every frame the body will yield, built before counting.
    let mut parts = vec![Bytes::from_static(START)];
    for i in 0..FRAMES {
        parts.push(Bytes::from_static(if i % 10 == 9 { PING } else { DELTA }));
    }
    let frames: Vec<Result<Frame<Bytes>, Infallible>> =
        parts.into_iter().map(|b| Ok(Frame::data(b))).collect();

    let mut frames = Some(frames);
    let mut service = ServiceBuilder::new()
        .layer(UsageLayer::new(NoopSink))
        .service(service_fn(move |_request: Request<()>| {
            let body = StreamBody::new(stream::iter(frames.take().expect("one request")));
            let response = Response::builder()
                .header("content-type", "text/event-stream")
                .body(body)
                .unwrap();
            std::future::ready(Ok::<_, Infallible>(response))
        }));
    let mut cx = Context::from_waker(Waker::noop());
    let mut future = service.call(Request::new(()));
    let Poll::Ready(Ok(response)) = Pin::new(&mut future).poll(&mut cx) else {
        panic!("the service is ready at once");
    };
    let mut body = response.into_body();

    // Warm-up: message_start (parsed, allocates its model string) and a few deltas.
    for _ in 0..20 {
        poll(&mut body).unwrap();
    }
    let per_window = (FRAMES - 20) / WINDOWS;
    let quietest = quietest_window(|| {
        for _ in 0..per_window {
            poll(&mut body).unwrap();
        }
    });
    assert_eq!(
        quietest,
        (0, 0),
        "allocations over {per_window} delta/ping frames through UsageBody"
    );
    drop(body);

    // The scanner alone, also with an unnamed stream (the `"type"` sniffed).
    let mut scanner = Scanner::new();
    scanner.feed(START);
    for _ in 0..20 {
        scanner.feed(DELTA);
        scanner.feed(UNNAMED_DELTA);
    }
    let quietest = quietest_window(|| {
        for _ in 0..FRAMES / WINDOWS {
            scanner.feed(DELTA);
            scanner.feed(PING);
            scanner.feed(UNNAMED_DELTA);
            // Split mid-line too.
            scanner.feed(&DELTA[..40]);
            scanner.feed(&DELTA[40..]);
        }
    });
    assert_eq!(
        quietest,
        (0, 0),
        "allocations over {} scanner feeds",
        FRAMES / WINDOWS * 5
    );
    assert_eq!(scanner.finish().usage.input_tokens, Some(120));

    // The counter is live: a message_start is parsed, and its model string allocated.
    let region = Region::new(GLOBAL);
    let mut scanner = Scanner::new();
    scanner.feed(START);
    assert!(region.change().allocations > 0);
}
