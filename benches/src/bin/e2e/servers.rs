//! The two servers of the run: the stand-in upstream and the proxy in its variants.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use bytes::Bytes;
use http::{Request, Response, StatusCode, Uri, header};
use http_body::Body;
use http_body_util::{Either, Empty};
use hyper::body::Incoming;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpListener;
use tower::{Layer, Service, ServiceExt};
use usage_benches::Discard;
use usage_benches::corpus::{self, SEED};
use usage_benches::frames::Frames;
use usage_layer::UsageLayer;
use usage_layer::pricing::PriceCatalog;
use usage_layer::sink::{BatchWriter, NoopSink, WriterConfig, WriterHandle};
use usage_layer::store::Buckets;
use usage_layer::store::nats::{NatsConfig, NatsStore};
use usage_layer::store::sea_orm::SeaOrmStore;

/// The proxy path that writes out every queued record before it answers (the driver
/// calls it before reading the proxy's CPU time, so that the store's work is counted).
pub(crate) const FLUSH_PATH: &str = "/__bench/flush";

/// What the proxy does around forwarding.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum Variant {
    /// Forwarding only: the baseline.
    Plain,
    /// The plain proxy again, in a process of its own: an A/A control. Its "vs plain" is
    /// what the comparison reads when nothing differs — the noise floor of the others'.
    Control,
    /// `UsageLayer` with a sink that drops every record.
    Noop,
    /// `UsageLayer` with the batching writer and a store that drops every batch: the
    /// writer's own cost, without the database.
    Writer,
    /// `UsageLayer` with the batching writer and the sea-orm store on Postgres.
    Store,
    /// `UsageLayer` with the batching writer and the JetStream store (`NatsStore`),
    /// publishing to a `nats-server` the driver starts: a fleet member's sink.
    Nats,
}

/// Where the batching writer's batches go.
#[derive(Debug)]
pub(crate) enum Target {
    /// Dropped ([`Discard`]).
    Discard,
    /// The sea-orm store, on the Postgres database at this URL.
    Postgres(String),
    /// The JetStream store, on the NATS server at this URL.
    Nats(String),
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Binds a loopback port and says where on stdout (the driver reads that line).
async fn listen() -> anyhow::Result<TcpListener> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    #[allow(
        clippy::print_stdout,
        reason = "the driver reads the address from stdout"
    )]
    {
        println!("listening {}", listener.local_addr()?);
    }
    Ok(listener)
}

/// Serves HTTP/1.1 on `listener` with `service`, one task per connection, until killed.
async fn serve<S, B>(listener: TcpListener, service: S) -> anyhow::Result<()>
where
    S: hyper::service::Service<Request<Incoming>, Response = Response<B>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Into<BoxError>,
    B: Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    loop {
        let (stream, _) = listener.accept().await?;
        stream.set_nodelay(true)?;
        let service = service.clone();
        tokio::spawn(async move {
            let served = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
            if let Err(error) = served {
                report(&error);
            }
        });
    }
}

fn report(error: &hyper::Error) {
    // A client closing its connection between streams is normal; anything else is said.
    if !error.is_incomplete_message() {
        eprintln!("e2e: connection error: {error}");
    }
}

/// The stand-in upstream: every request gets the small-delta corpus as an SSE response,
/// event by event (each frame written and flushed on its own).
pub(crate) async fn upstream() -> anyhow::Result<()> {
    let events: Arc<[Bytes]> = corpus::small_deltas(SEED).events.into();
    let listener = listen().await?;
    let service = hyper::service::service_fn(move |_request: Request<Incoming>| {
        let response = Response::builder()
            .header(header::CONTENT_TYPE, "text/event-stream")
            .header(header::CACHE_CONTROL, "no-cache")
            .body(Frames::yielding(events.clone()));
        async move { response }
    });
    serve(listener, service).await
}

/// The proxy: forwards every request to `upstream` through a pooled hyper client and
/// streams the response back, with the layer of `variant` around the forwarding.
///
/// With `housekeeping`, a task wakes that often and does nothing, as a server's periodic
/// jobs do (the reference server reports its spool every 30 s). Without it the `plain`,
/// `control` and `noop` proxies never have a timer pending, while the batching writer's
/// flush timer (1 s) is pending whenever records wait — on the AMD machine of the earlier
/// runs the writer variants then measured ~1.6 points of CPU more against plain than with
/// it (why was not established; it does not show on the current machine: BENCHMARKS.md,
/// section 5). With `writer_thread` the writer runs on a thread of its own, so that its
/// timer is not on the runtime that serves the streams.
pub(crate) async fn proxy(
    variant: Variant,
    upstream: SocketAddr,
    target: Target,
    housekeeping: Option<Duration>,
    writer_thread: bool,
) -> anyhow::Result<()> {
    if let Some(period) = housekeeping {
        tokio::spawn(async move {
            let mut every = tokio::time::interval(period);
            loop {
                every.tick().await;
            }
        });
    }
    let mut connector = HttpConnector::new();
    connector.set_nodelay(true);
    let client: Client<HttpConnector, Incoming> =
        Client::builder(TokioExecutor::new()).build(connector);
    let forward = tower::service_fn(move |request: Request<Incoming>| {
        let client = client.clone();
        async move {
            let (mut parts, body) = request.into_parts();
            let path = parts.uri.path_and_query().map_or("/", |p| p.as_str());
            parts.uri = Uri::try_from(format!("http://{upstream}{path}"))
                .expect("a loopback address and a valid path make a valid URI");
            client.request(Request::from_parts(parts, body)).await
        }
    });
    let listener = listen().await?;
    match variant {
        Variant::Plain | Variant::Control => serve(listener, with_flush(forward, None)).await,
        Variant::Noop => {
            let service = UsageLayer::new(NoopSink).layer(forward);
            serve(listener, with_flush(service, None)).await
        }
        Variant::Writer | Variant::Store | Variant::Nats => {
            let (writer, handle) = if writer_thread {
                start_writer_on_own_thread(target).await?
            } else {
                start_writer(target).await?
            };
            let service = UsageLayer::new(writer).layer(forward);
            serve(listener, with_flush(service, Some(Arc::new(handle)))).await
        }
    }
}

/// The batching writer, with its store at `target`.
async fn start_writer(target: Target) -> anyhow::Result<(BatchWriter, WriterHandle)> {
    let config = WriterConfig::default();
    match target {
        Target::Discard => Ok(BatchWriter::spawn(Discard, config)),
        Target::Postgres(url) => {
            let db = sea_orm::Database::connect(url)
                .await
                .context("connect to the bench database")?;
            let store =
                SeaOrmStore::new(db, Arc::new(PriceCatalog::defaults()), Buckets::default());
            Ok(BatchWriter::spawn(store, config))
        }
        Target::Nats(url) => {
            let client = async_nats::connect(url)
                .await
                .context("connect to the bench's NATS server")?;
            let store = NatsStore::new(client, NatsConfig::default());
            store.ensure_stream().await?;
            Ok(BatchWriter::spawn(store, config))
        }
    }
}

/// [`start_writer`] on a thread of its own, with a current-thread runtime that runs the
/// writer's task (and the store's connections) until the process ends.
async fn start_writer_on_own_thread(target: Target) -> anyhow::Result<(BatchWriter, WriterHandle)> {
    let (started, writer) = tokio::sync::oneshot::channel();
    std::thread::Builder::new()
        .name("usage-writer".to_owned())
        .spawn(move || {
            let runtime = match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(runtime) => runtime,
                Err(error) => {
                    let _ = started.send(Err(error.into()));
                    return;
                }
            };
            runtime.block_on(async move {
                let writer = start_writer(target).await;
                let running = writer.is_ok();
                let _ = started.send(writer);
                if running {
                    std::future::pending::<()>().await;
                }
            });
        })?;
    writer.await.context("the writer's thread ended")?
}

/// `service`, plus [`FLUSH_PATH`], which flushes the writer (if any) and answers 204.
fn with_flush<S, B>(
    service: S,
    writer: Option<Arc<WriterHandle>>,
) -> impl hyper::service::Service<
    Request<Incoming>,
    Response = Response<Either<B, Empty<Bytes>>>,
    Error = S::Error,
    Future: Send + 'static,
> + Clone
+ Send
+ 'static
where
    S: Service<Request<Incoming>, Response = Response<B>> + Clone + Send + 'static,
    S::Future: Send,
    S::Error: std::error::Error + Send + Sync + 'static,
    B: Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    hyper::service::service_fn(move |request: Request<Incoming>| {
        let service = service.clone();
        let writer = writer.clone();
        async move {
            if request.uri().path() == FLUSH_PATH {
                if let Some(writer) = writer {
                    // A stopped writer would mean lost records: the driver's row count says so.
                    let _ = writer.flush().await;
                }
                let mut response = Response::new(Either::Right(Empty::new()));
                *response.status_mut() = StatusCode::NO_CONTENT;
                return Ok(response);
            }
            let response = service.oneshot(request).await?;
            Ok(response.map(Either::Left))
        }
    })
}
