//! The database as the proxy sees it: a pool whose waits are short, a view of whether the
//! database answers, and migrations that wait for it.
//!
//! A request never waits on a dead database longer than the acquire timeout
//! (`PROXY_DATABASE_TIMEOUT`, 2 s by default): sqlx would otherwise keep retrying a
//! refused connection for its 30 s default, on every request. After a failure the
//! [`DatabaseHealth`] is `down` for a few seconds, and the request path goes to what it
//! knows without asking again (the key cache, the spool). `serve` starts without the
//! database: the pool connects lazily, and the migrations run as soon as it answers.

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use sea_orm::{ConnectOptions, Database, DatabaseConnection, DbErr};

/// After a failure, how long the request path trusts it instead of asking again.
pub const DOWN_FOR: Duration = Duration::from_secs(5);

/// Connections in the pool.
const MAX_CONNECTIONS: u32 = 10;

/// A pool for `url` whose acquires (connecting included) give up after `timeout`;
/// `lazy`: it connects on first use instead of now.
pub async fn connect(
    url: &str,
    timeout: Duration,
    lazy: bool,
) -> Result<DatabaseConnection, DbErr> {
    let mut options = ConnectOptions::new(url.to_owned());
    options
        .sqlx_logging(false)
        .max_connections(MAX_CONNECTIONS)
        .acquire_timeout(timeout)
        .connect_timeout(timeout)
        .connect_lazy(lazy);
    Database::connect(options).await
}

/// Whether `error` says the database could not be reached (as opposed to refusing a
/// statement): the errors to wait out rather than to stop for.
pub fn is_unreachable(error: &DbErr) -> bool {
    use sea_orm::{RuntimeErr, sqlx};
    match error {
        DbErr::ConnectionAcquire(_) | DbErr::Conn(_) => true,
        DbErr::Exec(RuntimeErr::SqlxError(error)) | DbErr::Query(RuntimeErr::SqlxError(error)) => {
            match &**error {
                sqlx::Error::Io(_)
                | sqlx::Error::Tls(_)
                | sqlx::Error::PoolTimedOut
                | sqlx::Error::PoolClosed
                | sqlx::Error::WorkerCrashed => true,
                // Class 08 (connection exception), 57P01-03 (the server shutting down,
                // crashed, or not yet accepting connections).
                sqlx::Error::Database(error) => error
                    .code()
                    .is_some_and(|code| code.starts_with("08") || code.starts_with("57P")),
                _ => false,
            }
        }
        _ => false,
    }
}

/// What the proxy knows of the database's state, shared by the request path, the
/// migrations and `/health`.
#[derive(Debug, Default)]
pub struct DatabaseHealth {
    failed_at: Mutex<Option<Instant>>,
    migrated: AtomicBool,
}

impl DatabaseHealth {
    /// A failure now.
    pub fn failed(&self) {
        *self.lock() = Some(Instant::now());
    }

    /// A success now: the database answers.
    pub fn answered(&self) {
        *self.lock() = None;
    }

    /// Whether a failure was seen in the last [`DOWN_FOR`] (and no success since).
    pub fn is_down(&self) -> bool {
        self.lock().is_some_and(|at| at.elapsed() < DOWN_FOR)
    }

    /// Whether the last call failed, however long ago.
    pub fn last_failed(&self) -> bool {
        self.lock().is_some()
    }

    /// The migrations ran: the database answers and has its tables.
    pub fn migrated(&self) {
        self.answered();
        self.migrated.store(true, Ordering::Release);
    }

    /// Whether the migrations have run since start.
    pub fn is_migrated(&self) -> bool {
        self.migrated.load(Ordering::Acquire)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<Instant>> {
        self.failed_at
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// Runs the migrations; while the database cannot be reached, tries again (1 s, doubling
/// to 30 s) until it can. A migration that the database refuses is an error. `logged`:
/// the caller has already said that the database is unreachable.
pub async fn migrate_when_reachable(
    db: &DatabaseConnection,
    health: &DatabaseHealth,
    mut logged: bool,
) -> Result<(), DbErr> {
    let mut delay = Duration::from_secs(1);
    loop {
        match migration::up(db).await {
            Ok(()) => {
                health.migrated();
                if logged {
                    tracing::info!("database reachable again: migrations done");
                }
                return Ok(());
            }
            Err(error) if is_unreachable(&error) => {
                health.failed();
                if !logged {
                    tracing::warn!(
                        %error,
                        "database unreachable: serving without it (keys from the key cache, \
                         usage to the spool); migrating once it answers"
                    );
                    logged = true;
                }
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(30));
            }
            Err(error) => return Err(error),
        }
    }
}
