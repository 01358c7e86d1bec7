//! Body overhead: nanoseconds per frame to drain the same frames through the bare body,
//! a pass-through wrapper, and `UsageBody` with a no-op sink and with the batching writer.
//!
//! ```text
//! cargo bench -p usage-benches --bench body             # one run
//! scripts/bench-criterion.sh body                       # interleaved rounds → table
//! ```
//!
//! Every variant goes through a `tower` service call per stream, as in a server; the
//! `UsageBody` variants go through `UsageLayer`, so the per-request record (id, clock,
//! sink hand-off) is included, spread over the stream's frames. The writer variant's
//! store discards the batches: what is timed is the response path, not the database.

#![allow(
    missing_docs,
    reason = "criterion's macros generate undocumented items"
)]

mod common;

use std::convert::Infallible;
use std::future::{Ready, ready};
use std::hint::black_box;
use std::pin::pin;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};

use bytes::Bytes;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use http::{Request, Response, header};
use http_body::Body;
use http_body_util::BodyExt;
use tower::{Layer, Service, ServiceExt, service_fn};
use usage_benches::Discard;
use usage_benches::corpus::{self, Chunking, SEED};
use usage_benches::frames::Frames;
use usage_layer::UsageLayer;
use usage_layer::sink::{BatchWriter, NoopSink, WriterConfig};

/// The upstream: every call answers an SSE response of the prepared frames.
fn upstream(
    pieces: Arc<[Bytes]>,
) -> impl Service<
    Request<()>,
    Response = Response<Frames>,
    Error = Infallible,
    Future = Ready<Result<Response<Frames>, Infallible>>,
> + Clone {
    encoded_upstream(pieces, None)
}

/// The upstream, its frames sent with this `content-encoding`.
fn encoded_upstream(
    pieces: Arc<[Bytes]>,
    encoding: Option<&'static str>,
) -> impl Service<
    Request<()>,
    Response = Response<Frames>,
    Error = Infallible,
    Future = Ready<Result<Response<Frames>, Infallible>>,
> + Clone {
    service_fn(move |_request: Request<()>| {
        let mut response = Response::builder().header(header::CONTENT_TYPE, "text/event-stream");
        if let Some(encoding) = encoding {
            response = response.header(header::CONTENT_ENCODING, encoding);
        }
        let response = response
            .body(Frames::new(pieces.clone()))
            .expect("a valid response");
        ready(Ok(response))
    })
}

/// One stream: call the service (its future is ready at once), then drain the body;
/// returns the bytes drained.
fn drain<S, B>(service: &mut S) -> usize
where
    S: Service<Request<()>, Response = Response<B>>,
    B: Body<Data = Bytes>,
    B::Error: std::fmt::Debug,
{
    let mut cx = Context::from_waker(Waker::noop());
    let Poll::Ready(Ok(())) = service.poll_ready(&mut cx) else {
        unreachable!("the upstream is always ready")
    };
    let mut call = pin!(service.call(Request::new(())));
    let Poll::Ready(Ok(response)) = call.as_mut().poll(&mut cx) else {
        unreachable!("the upstream answers at once")
    };
    let mut body = pin!(response.into_body());
    let mut bytes = 0;
    loop {
        match body.as_mut().poll_frame(&mut cx) {
            Poll::Ready(Some(Ok(frame))) => {
                bytes += frame.data_ref().map_or(0, Bytes::len);
                black_box(frame);
            }
            Poll::Ready(None) => return bytes,
            Poll::Ready(Some(Err(error))) => panic!("body error: {error:?}"),
            Poll::Pending => unreachable!("every frame is ready"),
        }
    }
}

fn body(c: &mut Criterion) {
    let small = corpus::small_deltas(SEED);
    // The writer's background task runs on its own runtime thread, as in a server.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("a runtime");
    let (writer, handle) = {
        let _entered = runtime.enter();
        BatchWriter::spawn(Discard, WriterConfig::default())
    };

    for chunking in [Chunking::EventAligned, Chunking::Fixed(1460)] {
        let pieces: Arc<[Bytes]> = small.chunked(chunking).into();
        eprintln!(
            "frames {} {} frames={} bytes={}",
            small.name,
            chunking.name(),
            pieces.len(),
            small.len()
        );
        let mut group = c.benchmark_group(format!("body-{}", small.name));
        group.throughput(Throughput::Elements(pieces.len() as u64));
        let name = |variant: &str| format!("{variant}/{}", chunking.name());

        let mut bare = upstream(pieces.clone());
        let mut pass_through = upstream(pieces.clone())
            .map_response(|response: Response<Frames>| response.map(|b| b.map_frame(|f| f)));
        let mut noop = UsageLayer::new(NoopSink).layer(upstream(pieces.clone()));
        let mut batched = UsageLayer::new(writer.clone()).layer(upstream(pieces.clone()));
        for bytes in [
            drain(&mut bare),
            drain(&mut pass_through),
            drain(&mut noop),
            drain(&mut batched),
        ] {
            assert_eq!(bytes, small.len());
        }

        group.bench_function(name("bare"), |b| b.iter(|| drain(&mut bare)));
        group.bench_function(name("pass_through"), |b| {
            b.iter(|| drain(&mut pass_through))
        });
        group.bench_function(name("usage_noop_sink"), |b| b.iter(|| drain(&mut noop)));
        group.bench_function(name("usage_batch_writer"), |b| {
            b.iter(|| drain(&mut batched))
        });
        group.finish();
    }

    gzip(c, &small);

    let stats = runtime
        .block_on(handle.shutdown())
        .expect("the writer drains");
    assert_eq!(stats.dropped, 0, "the writer kept up: {stats:?}");
}

/// The cost of reading a gzipped stream: the layer on the stream as gzip sends it (in
/// TCP-segment frames), against the layer on the same stream uncompressed and against
/// the compressed frames passing with no layer, in the same run.
fn gzip(c: &mut Criterion, plain: &corpus::Corpus) {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    std::io::Write::write_all(&mut encoder, &plain.whole()).expect("in memory");
    let gzipped = Bytes::from(encoder.finish().expect("in memory"));
    let frames = |bytes: &Bytes| -> Arc<[Bytes]> {
        bytes
            .chunks(1460)
            .map(Bytes::copy_from_slice)
            .collect::<Vec<_>>()
            .into()
    };
    let (compressed, uncompressed) = (frames(&gzipped), frames(&plain.whole()));
    eprintln!(
        "gzip {} plain_bytes={} gzip_bytes={} frames={}",
        plain.name,
        plain.len(),
        gzipped.len(),
        compressed.len()
    );
    let records = usage_layer::sink::MemorySink::new();
    let mut group = c.benchmark_group(format!("gzip-{}", plain.name));
    // Throughput in the stream's decoded bytes, so MB/s compare with the plain reading.
    group.throughput(Throughput::Bytes(plain.len() as u64));
    let mut bare = encoded_upstream(compressed.clone(), Some("gzip"));
    let mut plain_layer = UsageLayer::new(NoopSink).layer(upstream(uncompressed));
    let mut gzip_layer =
        UsageLayer::new(records.clone()).layer(encoded_upstream(compressed, Some("gzip")));
    // The layer reads the gzip stream in full: the same usage as the plain one.
    drain(&mut gzip_layer);
    let record = records.take().pop().expect("one record");
    assert_eq!(record.usage.output_tokens, plain.output_tokens);
    assert_eq!(record.parse_issue, None);
    let mut gzip_layer =
        UsageLayer::new(NoopSink).layer(encoded_upstream(frames(&gzipped), Some("gzip")));
    group.bench_function("bare_gzip_frames", |b| b.iter(|| drain(&mut bare)));
    group.bench_function("usage_noop_sink/plain", |b| {
        b.iter(|| drain(&mut plain_layer))
    });
    group.bench_function("usage_noop_sink/gzip", |b| {
        b.iter(|| drain(&mut gzip_layer))
    });
    group.finish();
}

criterion_group! {
    name = benches;
    config = common::config();
    targets = body
}
criterion_main!(benches);
