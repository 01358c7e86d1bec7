//! The database as the proxy sees it: a pool whose waits are short, a view of whether the
//! database answers, and migrations that wait for it.
//!
//! A request never waits on a dead database longer than the acquire timeout
//! (`PROXY_DATABASE_TIMEOUT`, 2 s by default): sqlx would otherwise keep retrying a
//! refused connection for its 30 s default, on every request. After a failure the
//! [`DatabaseHealth`] is `down` for a few seconds, and the request path goes to what it
//! knows without asking again (the key cache, the spool). `serve` starts without the
//! database: the pool connects lazily, and the migrations run as soon as it answers.

use std::path::Path;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use sea_orm::{ConnectOptions, Database, DatabaseConnection, DbErr};

/// After a failure, how long the request path trusts it instead of asking again.
pub const DOWN_FOR: Duration = Duration::from_secs(5);

/// Connections in the pool.
const MAX_CONNECTIONS: u32 = 10;

/// How a Postgres connection is secured (libpq's `sslmode`, which sqlx reads).
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum SslMode {
    /// No TLS.
    Disable,
    /// TLS if the server offers it, else none (neither verified).
    Allow,
    /// TLS if the server offers it, else none: sqlx's default.
    Prefer,
    /// TLS or no connection; the server's certificate is not verified.
    Require,
    /// TLS, and the server's certificate chains to the root certificate(s).
    VerifyCa,
    /// `verify-ca`, and the certificate names the host connected to.
    VerifyFull,
}

impl SslMode {
    /// The URL parameter's value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Disable => "disable",
            Self::Allow => "allow",
            Self::Prefer => "prefer",
            Self::Require => "require",
            Self::VerifyCa => "verify-ca",
            Self::VerifyFull => "verify-full",
        }
    }
}

/// The URL sqlx connects with, from the one configured:
///
/// * the original proxy's SQLAlchemy URLs (`postgresql+asyncpg://…`, any `+driver`) lose
///   the driver, and asyncpg's `ssl=` parameter becomes libpq's `sslmode=` (logged once);
/// * `sslmode` and `sslrootcert` given as flags replace the URL's own.
///
/// TLS options on a SQLite URL are an error, as is a root certificate that cannot be read
/// (said now, not at the first connection).
pub fn connection_url(
    url: &str,
    sslmode: Option<SslMode>,
    sslrootcert: Option<&Path>,
) -> anyhow::Result<String> {
    use anyhow::Context;
    let (scheme, _) = url
        .split_once("://")
        .context("the database URL has no scheme (sqlite://… or postgres://…)")?;
    let scheme = scheme.to_ascii_lowercase();
    let postgres = matches!(scheme.split('+').next(), Some("postgres" | "postgresql"));
    if !postgres {
        anyhow::ensure!(
            sslmode.is_none() && sslrootcert.is_none(),
            "--database-sslmode and --database-sslrootcert apply to Postgres URLs only"
        );
        return Ok(url.to_owned());
    }
    let mut parsed = url::Url::parse(url).context("the database URL is not a valid URL")?;
    let mut pairs: Vec<(String, String)> = parsed
        .query_pairs()
        .map(|(key, value)| (key.into_owned(), value.into_owned()))
        .collect();
    if let Some((_, driver)) = scheme.split_once('+') {
        parsed
            .set_scheme("postgres")
            .map_err(|()| anyhow::anyhow!("the database URL's scheme cannot be rewritten"))?;
        for (key, value) in &mut pairs {
            if key == "ssl" {
                *key = "sslmode".to_owned();
                *value = match value.as_str() {
                    "true" | "1" => "require".to_owned(),
                    "false" | "0" => "disable".to_owned(),
                    other => other.to_owned(),
                };
            }
        }
        tracing::info!(
            driver,
            "database URL in SQLAlchemy form: read as postgres:// (asyncpg's ssl= as sslmode=)"
        );
    }
    if let Some(mode) = sslmode {
        pairs.retain(|(key, _)| key != "sslmode" && key != "ssl-mode");
        pairs.push(("sslmode".to_owned(), mode.as_str().to_owned()));
    }
    if let Some(root) = sslrootcert {
        pairs
            .retain(|(key, _)| !matches!(key.as_str(), "sslrootcert" | "ssl-root-cert" | "ssl-ca"));
        pairs.push(("sslrootcert".to_owned(), root.display().to_string()));
    }
    for (key, value) in &pairs {
        if matches!(key.as_str(), "sslrootcert" | "ssl-root-cert" | "ssl-ca") {
            std::fs::metadata(value)
                .with_context(|| format!("the database's root certificate {value:?}"))?;
        }
    }
    if pairs.is_empty() {
        parsed.set_query(None);
    } else {
        parsed.query_pairs_mut().clear().extend_pairs(&pairs);
    }
    Ok(parsed.into())
}

/// A pool for `url` whose acquires (connecting included) give up after `timeout`;
/// `lazy`: it connects on first use instead of now.
pub async fn connect(
    url: &str,
    timeout: Duration,
    lazy: bool,
) -> Result<DatabaseConnection, DbErr> {
    // sqlx's TLS takes rustls's process-wide provider, which is ambiguous in this build
    // (the AWS SDK brings aws-lc-rs, the rest ring): ring, as everywhere else here. Once
    // per process; an application that chose one first keeps its own.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let mut options = ConnectOptions::new(url.to_owned());
    options
        .sqlx_logging(false)
        .max_connections(MAX_CONNECTIONS)
        .acquire_timeout(timeout)
        .connect_timeout(timeout)
        .connect_lazy(lazy);
    Database::connect(options).await
}

/// What TLS said when it is why a connection failed: a certificate that does not chain to
/// the root certificate or does not name the host (rustls's error, which sqlx passes on
/// inside an I/O error), or a server that does not speak TLS when it must.
pub fn tls_failure(error: &DbErr) -> Option<String> {
    use sea_orm::RuntimeErr;
    // sea-orm's `RuntimeErr` does not give its sqlx error as its source: start there.
    let (DbErr::Conn(RuntimeErr::SqlxError(error))
    | DbErr::Exec(RuntimeErr::SqlxError(error))
    | DbErr::Query(RuntimeErr::SqlxError(error))) = error
    else {
        return None;
    };
    let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(&**error);
    while let Some(error) = cause {
        if let Some(sea_orm::sqlx::Error::Tls(tls)) = error.downcast_ref::<sea_orm::sqlx::Error>() {
            return Some(tls.to_string());
        }
        let rustls = error.downcast_ref::<rustls::Error>().or_else(|| {
            error
                .downcast_ref::<std::io::Error>()?
                .get_ref()?
                .downcast_ref::<rustls::Error>()
        });
        if let Some(rustls) = rustls {
            return Some(rustls.to_string());
        }
        cause = error.source();
    }
    None
}

/// A failed connection as the operator should read it: a TLS failure says so and where
/// the TLS settings are; anything else names the setting that holds the URL.
pub fn connect_error(error: DbErr) -> anyhow::Error {
    match tls_failure(&error) {
        Some(tls) => anyhow::anyhow!(
            "TLS to the database failed: {tls} (the TLS settings: sslmode and sslrootcert in \
             the URL, or --database-sslmode and --database-sslrootcert)"
        ),
        None => {
            anyhow::Error::new(error).context("connecting to the database (PROXY_DATABASE_URL)")
        }
    }
}

/// Whether `error` says the database could not be reached (as opposed to refusing a
/// statement): the errors to wait out rather than to stop for. A TLS failure is not one
/// of them: a certificate that is not trusted now will not be trusted in a minute.
pub fn is_unreachable(error: &DbErr) -> bool {
    use sea_orm::{RuntimeErr, sqlx};
    if tls_failure(error).is_some() {
        return false;
    }
    match error {
        DbErr::ConnectionAcquire(_) | DbErr::Conn(_) => true,
        DbErr::Exec(RuntimeErr::SqlxError(error)) | DbErr::Query(RuntimeErr::SqlxError(error)) => {
            match &**error {
                sqlx::Error::Io(_)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sqlalchemy_urls_lose_their_driver_and_asyncpg_ssl_becomes_sslmode() {
        let url = connection_url(
            "postgresql+asyncpg://proxy:pw@db.internal:5432/proxy?ssl=require",
            None,
            None,
        )
        .unwrap();
        assert_eq!(
            url,
            "postgres://proxy:pw@db.internal:5432/proxy?sslmode=require"
        );
        let url = connection_url("postgresql+asyncpg://db/proxy?ssl=true", None, None).unwrap();
        assert_eq!(url, "postgres://db/proxy?sslmode=require");
        let url = connection_url("postgresql+psycopg2://db/proxy", None, None).unwrap();
        assert_eq!(url, "postgres://db/proxy");
        // Ours are left as they are.
        let ours = "postgres://db/proxy?sslmode=verify-full&application_name=proxy";
        assert_eq!(connection_url(ours, None, None).unwrap(), ours);
    }

    #[test]
    fn tls_flags_replace_the_urls_own() {
        let root = tempfile::NamedTempFile::new().unwrap();
        let url = connection_url(
            "postgres://db/proxy?sslmode=disable&sslrootcert=/old.pem&application_name=p",
            Some(SslMode::VerifyFull),
            Some(root.path()),
        )
        .unwrap();
        let parsed = url::Url::parse(&url).unwrap();
        let pairs: Vec<(String, String)> = parsed.query_pairs().into_owned().collect();
        assert_eq!(
            pairs,
            [
                ("application_name".to_owned(), "p".to_owned()),
                ("sslmode".to_owned(), "verify-full".to_owned()),
                ("sslrootcert".to_owned(), root.path().display().to_string()),
            ]
        );
    }

    #[test]
    fn tls_settings_that_cannot_work_are_said_before_connecting() {
        let error =
            connection_url("sqlite://proxy.db?mode=rwc", Some(SslMode::Require), None).unwrap_err();
        assert!(error.to_string().contains("Postgres URLs only"), "{error}");
        let error = connection_url(
            "postgres://db/proxy?sslmode=verify-ca&sslrootcert=/nonexistent/ca.pem",
            None,
            None,
        )
        .unwrap_err();
        assert!(
            format!("{error:#}").contains("/nonexistent/ca.pem"),
            "{error:#}"
        );
        assert!(connection_url("no scheme", None, None).is_err());
        assert_eq!(
            connection_url("sqlite://proxy.db?mode=rwc", None, None).unwrap(),
            "sqlite://proxy.db?mode=rwc"
        );
    }
}
