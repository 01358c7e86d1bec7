//! Client connections: what a connection may hold, and for how long.
//!
//! `axum::serve` gives hyper no timer, so a client that opens a connection and sends
//! nothing, or sends its headers a byte at a time, or keeps an idle keep-alive connection,
//! holds a socket and a task for ever. Here every accepted connection:
//!
//! * has `TCP_NODELAY` on (unless turned off): a stream's events leave as they come,
//!   instead of waiting for the client's delayed ACK (Nagle's algorithm held small writes
//!   up to ~40 ms);
//! * must send its first byte within the header timeout, and every request head in full
//!   within it (hyper's header-read timer, which hyper also runs while a keep-alive
//!   connection waits for its next request: the same bound is the idle timeout);
//! * counts against a cap on connections in all (the accept loop waits for a free slot,
//!   so file descriptors never run out) and per client address (over it, the connection
//!   is closed at once);
//!
//! and shutdown is graceful with a deadline: no new connections, idle ones closed,
//! requests in flight given [`ConnectionLimits::shutdown_timeout`] to finish; then the
//! rest are cut (the usage layer records each cut request as it drops).

use std::collections::HashMap;
use std::future::Future;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto::Builder;
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use crate::throttle::Throttle;

/// What client connections may hold; see the [module docs](self).
#[derive(Clone, Copy, Debug)]
pub struct ConnectionLimits {
    /// Time to a connection's first byte, to each request head in full, and between
    /// keep-alive requests.
    pub header_timeout: Duration,
    /// Open client connections in all.
    pub max_connections: usize,
    /// Open client connections from one address.
    pub max_connections_per_ip: usize,
    /// `TCP_NODELAY` on accepted sockets.
    pub nodelay: bool,
    /// How long shutdown waits for requests in flight before cutting them.
    pub shutdown_timeout: Duration,
}

impl Default for ConnectionLimits {
    fn default() -> Self {
        Self {
            header_timeout: Duration::from_secs(30),
            max_connections: 4096,
            max_connections_per_ip: 1024,
            nodelay: true,
            shutdown_timeout: Duration::from_secs(30),
        }
    }
}

/// Counts of what the limits did, for `/health` and the tests.
#[derive(Debug, Default)]
pub struct ConnectionStats {
    /// Connections accepted (and not refused).
    pub accepted: AtomicU64,
    /// Connections closed at once: their address had too many open.
    pub refused_per_ip: AtomicU64,
    /// Connections open now.
    pub open: AtomicU64,
}

/// File descriptors kept for everything but client connections: upstream connections
/// (one per request in flight, at most), the database pool, the spool, logs.
const RESERVED_DESCRIPTORS: u64 = 512;

impl ConnectionLimits {
    /// Raises the process's soft limit on open files to its hard limit, and lowers
    /// [`max_connections`](Self::max_connections) to what fits under it with room for
    /// the upstream connections of as many requests (and 512 more): so a
    /// flood of connections makes new ones wait, never fails an accept or a request's
    /// own upstream connection with "too many open files".
    pub fn fit_to_descriptor_limit(mut self) -> Self {
        use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};
        let limit = getrlimit(Resource::Nofile);
        let mut soft = limit.current;
        if limit.current < limit.maximum || limit.maximum.is_none() {
            let raised = Rlimit {
                current: limit.maximum,
                maximum: limit.maximum,
            };
            if setrlimit(Resource::Nofile, raised).is_ok() {
                soft = limit.maximum;
            }
        }
        if let Some(soft) = soft {
            let fits = usize::try_from(soft.saturating_sub(RESERVED_DESCRIPTORS) / 2)
                .unwrap_or(usize::MAX)
                .max(1);
            if self.max_connections > fits {
                tracing::warn!(
                    configured = self.max_connections,
                    open_files_limit = soft,
                    max_connections = fits,
                    "PROXY_MAX_CONNECTIONS lowered to fit the open files limit (each \
                     connection may need a second descriptor for its upstream)"
                );
                self.max_connections = fits;
            }
        }
        self
    }
}

/// How long cut streams have to send their last event before their connections close.
const CUT_GRACE: Duration = Duration::from_secs(2);

impl ConnectionStats {
    /// The counts, as `/health` shows them.
    pub fn json(&self) -> serde_json::Value {
        serde_json::json!({
            "open": self.open.load(Ordering::Relaxed),
            "accepted": self.accepted.load(Ordering::Relaxed),
            "refused_per_ip": self.refused_per_ip.load(Ordering::Relaxed),
        })
    }
}

/// Serves `app` on `listener` until `shutdown` completes; then stops as the
/// [module docs](self) say, cancelling `cut` when the requests in flight have had their
/// time (the application cuts its open streams on it).
pub async fn serve(
    listener: TcpListener,
    app: axum::Router,
    limits: ConnectionLimits,
    stats: Arc<ConnectionStats>,
    shutdown: impl Future<Output = ()>,
    cut: tokio_util::sync::CancellationToken,
) {
    let mut builder = Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout)
        .keep_alive(true);
    builder
        .http2()
        .timer(TokioTimer::new())
        // An HTTP/2 peer that stops answering pings is gone.
        .keep_alive_interval(limits.header_timeout)
        .keep_alive_timeout(limits.header_timeout);
    let builder = Arc::new(builder);
    let slots = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    let per_ip = PerIp::new(limits.max_connections_per_ip.max(1));
    let graceful = GracefulShutdown::new();
    let mut connections = JoinSet::new();
    let accept_errors = Throttle::default();
    tokio::pin!(shutdown);
    loop {
        // Finished connections' tasks, so the set holds only open ones.
        while connections.try_join_next().is_some() {}
        let slot = tokio::select! {
            slot = slots.clone().acquire_owned() => slot.expect("the semaphore is never closed"),
            () = &mut shutdown => break,
        };
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    // EMFILE and friends: wait a little instead of spinning; a connection
                    // that failed before it was accepted is the client's problem.
                    if !is_connection_error(&error) {
                        if let Some(count) = accept_errors.allow() {
                            tracing::warn!(%error, count, "accepting a connection failed");
                        }
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let Some(admitted) = per_ip.admit(peer.ip()) else {
            stats.refused_per_ip.fetch_add(1, Ordering::Relaxed);
            continue;
        };
        stats.accepted.fetch_add(1, Ordering::Relaxed);
        if limits.nodelay {
            let _ = stream.set_nodelay(true);
        }
        let connection = connection(
            stream,
            peer,
            app.clone(),
            Arc::clone(&builder),
            limits.header_timeout,
            graceful.watcher(),
        );
        let stats = Arc::clone(&stats);
        connections.spawn(async move {
            stats.open.fetch_add(1, Ordering::Relaxed);
            connection.await;
            stats.open.fetch_sub(1, Ordering::Relaxed);
            drop((admitted, slot));
        });
    }
    drop(listener);
    let open = graceful.count();
    if open > 0 {
        tracing::info!(open, "waiting for open connections' requests to finish");
    }
    let drained = graceful.shutdown();
    tokio::pin!(drained);
    if tokio::time::timeout(limits.shutdown_timeout, &mut drained)
        .await
        .is_err()
    {
        tracing::warn!(
            open = connections.len(),
            "requests still running after {:?}: cutting them (each is recorded as it ends)",
            limits.shutdown_timeout
        );
        cut.cancel();
        let _ = tokio::time::timeout(CUT_GRACE, drained).await;
    }
    // Whatever is left (connections cut, or still before their first byte) ends now.
    connections.shutdown().await;
}

/// One connection from `peer`: its first byte within `header_timeout`, then hyper,
/// watched for graceful shutdown.
async fn connection(
    stream: TcpStream,
    peer: std::net::SocketAddr,
    app: axum::Router,
    builder: Arc<Builder<TokioExecutor>>,
    header_timeout: Duration,
    watcher: hyper_util::server::graceful::Watcher,
) {
    // hyper's timer starts only once it has picked HTTP/1 or HTTP/2, which takes a byte.
    let mut first = [0; 1];
    match tokio::time::timeout(header_timeout, stream.peek(&mut first)).await {
        Ok(Ok(1..)) => {}
        // Closed, failed, or silent for the whole timeout.
        _ => return,
    }
    // The client's address, for whoever asks (`ConnectInfo`: the console's login limit).
    let app = tower::ServiceBuilder::new()
        .map_request(move |mut request: http::Request<hyper::body::Incoming>| {
            request
                .extensions_mut()
                .insert(axum::extract::ConnectInfo(peer));
            request
        })
        .service(app);
    let service = TowerToHyperService::new(app);
    let served = watcher
        .watch(
            builder
                .serve_connection_with_upgrades(TokioIo::new(stream), service)
                .into_owned(),
        )
        .await;
    if let Err(error) = served {
        tracing::debug!(error, "client connection ended with an error");
    }
}

/// Errors of one connection that failed before `accept` returned it.
fn is_connection_error(error: &std::io::Error) -> bool {
    use std::io::ErrorKind::{ConnectionAborted, ConnectionRefused, ConnectionReset};
    matches!(
        error.kind(),
        ConnectionRefused | ConnectionAborted | ConnectionReset
    )
}

/// Open connections per client address.
#[derive(Clone, Debug)]
struct PerIp {
    max: usize,
    open: Arc<Mutex<HashMap<IpAddr, usize>>>,
}

impl PerIp {
    fn new(max: usize) -> Self {
        Self {
            max,
            open: Arc::default(),
        }
    }

    /// A slot for one more connection from `ip`, or `None` when it has `max` open.
    fn admit(&self, ip: IpAddr) -> Option<Admitted> {
        let mut open = self
            .open
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let count = open.entry(ip).or_insert(0);
        if *count >= self.max {
            return None;
        }
        *count += 1;
        Some(Admitted {
            ip,
            per_ip: self.clone(),
        })
    }
}

/// One connection's place in [`PerIp`], given back when dropped.
#[derive(Debug)]
struct Admitted {
    ip: IpAddr,
    per_ip: PerIp,
}

impl Drop for Admitted {
    fn drop(&mut self) {
        let mut open = self
            .per_ip
            .open
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(count) = open.get_mut(&self.ip) {
            *count -= 1;
            if *count == 0 {
                open.remove(&self.ip);
            }
        }
    }
}
