//! Command line and environment: every flag has a `PROXY_*` variable.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// A secret from the command line or environment; `Debug` never shows it.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// The secret itself, for the one place that uses it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

impl std::str::FromStr for Secret {
    type Err = std::convert::Infallible;

    fn from_str(value: &str) -> Result<Self, Self::Err> {
        Ok(Self(value.to_owned()))
    }
}

/// A Plan-first, Bedrock-fallback proxy for Claude Code with exact usage metering.
#[derive(Debug, Parser)]
#[command(name = "reference-server", version, about)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
    /// How log lines are written to stderr: `text` for people, `json` (one object per
    /// line: timestamp, level, target, message and fields) for log pipelines.
    #[arg(long, global = true, env = "PROXY_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
    /// What is logged: a level (`warn`, `info`, `debug`, …) or `RUST_LOG`-style
    /// directives (`info,reference_server=debug`). Over `RUST_LOG`; default `info`.
    #[arg(long, global = true, env = "PROXY_LOG_LEVEL")]
    pub log_level: Option<String>,
}

/// The log lines' form.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines (colored on a terminal).
    Text,
    /// One JSON object per line.
    Json,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the proxy.
    Serve(Box<ServeArgs>),
    /// Manage users.
    #[command(subcommand)]
    Users(UsersCommand),
    /// Manage access keys.
    #[command(subcommand)]
    Keys(KeysCommand),
    /// Manage the admin console's accounts.
    #[command(subcommand)]
    Admins(AdminsCommand),
    /// Bring an original proxy's database (Alembic revision 006 or 008) into this one:
    /// users, access keys (they keep working with the same PROXY_KEY_HASHER_SECRET),
    /// their Bedrock keys, model mappings, usage rows and aggregates. Idempotent.
    ImportOriginal(Box<ImportArgs>),
    /// Write the usage records a fleet of proxies publishes to NATS JetStream into the
    /// database: a durable pull consumer shared by every ingester, acknowledging after
    /// each commit. `/health` on `--bind` reports its progress and lag.
    Ingest(Box<IngestArgs>),
    /// See the whole flow locally: stand-ins for both upstreams, no credentials needed.
    Demo {
        /// Where the demo's database and secrets go.
        #[arg(long, default_value = "reference-server-demo")]
        dir: PathBuf,
        /// Keep the server running afterwards, with the admin console open: prints its
        /// URL and a one-time password for the account `admin`; Ctrl-C stops it.
        #[arg(long)]
        serve: bool,
        /// Where the demo's server listens (with `--serve`; otherwise a free port).
        #[arg(long, default_value = "127.0.0.1:8080")]
        bind: SocketAddr,
    },
}

/// `import-original`.
#[derive(Debug, Args)]
pub struct ImportArgs {
    /// This server's database and secrets (PROXY_KEY_HASHER_SECRET must be the
    /// original's, and is required here).
    #[command(flatten)]
    pub state: StateArgs,
    /// The original's database URL (`postgresql+asyncpg://…` is read too).
    #[arg(long = "from", env = "ORIGINAL_DATABASE_URL", hide_env_values = true)]
    pub from: String,
    /// Read and plan only: print what would be brought, and why anything is skipped.
    #[arg(long)]
    pub dry_run: bool,
    /// The original's PROXY_LOCAL_ENCRYPTION_KEY (its Bedrock keys, local mode).
    #[arg(long, env = "ORIGINAL_LOCAL_ENCRYPTION_KEY", hide_env_values = true)]
    pub original_local_encryption_key: Option<Secret>,
    /// The original's PROXY_JWT_SECRET (its local key when neither of the others is set).
    #[arg(long, env = "ORIGINAL_JWT_SECRET", hide_env_values = true)]
    pub original_jwt_secret: Option<Secret>,
    /// The original's PROXY_KMS_KEY_ID: its Bedrock keys are KMS envelopes.
    #[arg(long, env = "ORIGINAL_KMS_KEY_ID")]
    pub original_kms_key_id: Option<String>,
    /// A KMS endpoint URL for opening the original's envelopes.
    #[arg(long, env = "ORIGINAL_KMS_ENDPOINT_URL")]
    pub original_kms_endpoint_url: Option<String>,
    /// This server's usage time zone: it must be the original's (Asia/Seoul), since the
    /// aggregates are brought with their buckets.
    #[arg(long, env = "PROXY_USAGE_TIMEZONE", default_value = "UTC")]
    pub usage_timezone: chrono_tz::Tz,
    /// This server's first day of a week: it must be the original's (sunday).
    #[arg(long, env = "PROXY_USAGE_WEEK_START", default_value = "monday")]
    pub usage_week_start: chrono::Weekday,
}

/// `users …`
#[derive(Debug, Subcommand)]
pub enum UsersCommand {
    /// Create a user; prints the new user's id as the last line.
    Create {
        /// The database and secrets.
        #[command(flatten)]
        state: StateArgs,
        /// Display name.
        #[arg(long)]
        name: String,
        /// What the user is for.
        #[arg(long)]
        description: Option<String>,
        /// Monthly Bedrock budget in USD (unlimited when absent).
        #[arg(long)]
        monthly_budget_usd: Option<rust_decimal::Decimal>,
        /// How the user's requests are routed.
        #[arg(long, value_enum, default_value_t = Routing::PlanFirst)]
        routing: Routing,
    },
}

/// `admins …`
#[derive(Debug, Subcommand)]
pub enum AdminsCommand {
    /// Create a console account; without `--password-stdin`, prints a generated password
    /// (shown only this once) as the last line.
    Create {
        /// The database and secrets.
        #[command(flatten)]
        state: StateArgs,
        /// The name it logs in with (1 to 64 of a-z A-Z 0-9 . _ @ -).
        #[arg(long)]
        name: String,
        /// `admin` (may change things) or `viewer` (reads only).
        #[arg(long, value_enum, default_value_t = crate::admins::Role::Admin)]
        role: crate::admins::Role,
        /// Read the password (at least 12 characters) from the first line of stdin.
        #[arg(long)]
        password_stdin: bool,
    },
}

/// `keys …`
#[derive(Debug, Subcommand)]
pub enum KeysCommand {
    /// Issue an access key; prints the raw key (shown only this once) as the last line.
    Create {
        /// The database and secrets.
        #[command(flatten)]
        state: StateArgs,
        /// The owner's id.
        #[arg(long)]
        user: uuid::Uuid,
        /// A label for the key.
        #[arg(long)]
        name: Option<String>,
    },
}

/// How a user's requests are routed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Routing {
    /// Plan first, Bedrock when Plan is rate limited or failing.
    PlanFirst,
    /// Bedrock only.
    BedrockOnly,
}

impl Routing {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::PlanFirst => "plan_first",
            Self::BedrockOnly => "bedrock_only",
        }
    }

    /// From the stored name (unknown names route Plan first).
    pub fn from_stored(name: &str) -> Self {
        if name == Self::BedrockOnly.as_str() {
            Self::BedrockOnly
        } else {
            Self::PlanFirst
        }
    }
}

/// `ingest`: from JetStream into the database.
#[derive(Clone, Debug, Args)]
pub struct IngestArgs {
    /// The database the records are written to.
    #[command(flatten)]
    pub state: StateArgs,
    /// The NATS server(s): `nats://host:port`, comma-separated.
    #[arg(long = "nats", env = "PROXY_NATS_URL", value_parser = nats_url)]
    pub nats_url: String,
    /// The JetStream stream the proxies publish to (created when missing).
    #[arg(long, env = "PROXY_NATS_STREAM", default_value = "USAGE")]
    pub stream: String,
    /// The durable consumer the ingesters share.
    #[arg(long, env = "PROXY_NATS_CONSUMER", default_value = "usage-ingest")]
    pub consumer: String,
    /// Records written at most per transaction.
    #[arg(long, env = "PROXY_INGEST_MAX_BATCH", default_value_t = 500)]
    pub max_batch: usize,
    /// Where `/health` is served (JSON: written, batches, lag).
    #[arg(long, env = "PROXY_INGEST_BIND", default_value = "127.0.0.1:9090")]
    pub bind: SocketAddr,
    /// Prices and usage buckets: the proxies' (the ingester prices and buckets what it
    /// writes).
    #[command(flatten)]
    pub usage: UsageArgs,
}

/// How usage is priced and bucketed: the same for `serve` and `ingest`.
#[derive(Clone, Debug, Args)]
pub struct UsageArgs {
    /// Price overrides (provider- or region-keyed JSON), merged into the built-in prices.
    #[arg(long, env = "PROXY_MODEL_PRICING")]
    pub model_pricing: Option<String>,
    /// Plan price overrides (model-keyed JSON).
    #[arg(long, env = "PROXY_PLAN_PRICING")]
    pub plan_pricing: Option<String>,
    /// IANA time zone of usage buckets and budget months.
    #[arg(long, env = "PROXY_USAGE_TIMEZONE", default_value = "UTC")]
    pub usage_timezone: chrono_tz::Tz,
    /// First day of a usage week.
    #[arg(long, env = "PROXY_USAGE_WEEK_START", default_value = "monday")]
    pub usage_week_start: chrono::Weekday,
}

impl UsageArgs {
    /// The built-in prices with the overrides merged in.
    pub fn prices(
        &self,
    ) -> Result<usage_layer::pricing::PriceCatalog, usage_layer::pricing::PricingError> {
        crate::pricing_env::merge(
            usage_layer::pricing::PriceCatalog::defaults(),
            self.model_pricing.as_deref(),
            self.plan_pricing.as_deref(),
        )
    }

    /// The usage buckets.
    pub fn buckets(&self) -> usage_layer::store::Buckets {
        usage_layer::store::Buckets::new(self.usage_timezone, self.usage_week_start)
    }
}

/// Where state lives: the database, and the directory for generated secrets.
#[derive(Clone, Debug, Args)]
pub struct StateArgs {
    /// Database URL: `sqlite://FILE?mode=rwc` or `postgres://…` (with `sslmode` and
    /// `sslrootcert` as libpq reads them; the original's `postgresql+asyncpg://…?ssl=…`
    /// is read too).
    #[arg(
        long,
        env = "PROXY_DATABASE_URL",
        default_value = "sqlite://reference-server.db?mode=rwc",
        hide_env_values = true
    )]
    pub database_url: String,
    /// TLS to Postgres, over the URL's `sslmode`: `disable`, `prefer` (sqlx's default),
    /// `require` (encrypted, server not verified), `verify-ca` (its certificate chains to
    /// `--database-sslrootcert`), `verify-full` (and names the URL's host).
    #[arg(long, env = "PROXY_DATABASE_SSLMODE", value_enum)]
    pub database_sslmode: Option<crate::database::SslMode>,
    /// The CA certificate(s) (PEM) the Postgres server's certificate must chain to, over
    /// the URL's `sslrootcert` (default: the web's root CAs, which RDS's are not).
    #[arg(long, env = "PROXY_DATABASE_SSLROOTCERT")]
    pub database_sslrootcert: Option<PathBuf>,
    /// Seconds to get a database connection (connecting included) or a key lookup's
    /// answer before the request path goes on without the database.
    #[arg(
        long = "database-timeout",
        env = "PROXY_DATABASE_TIMEOUT",
        default_value_t = 2
    )]
    pub database_timeout_secs: u64,
    /// The access-key hashing secret; generated and kept in the state directory when absent.
    #[arg(long, env = "PROXY_KEY_HASHER_SECRET", hide_env_values = true)]
    pub key_hasher_secret: Option<Secret>,
    /// Earlier hashing secrets, comma-separated, while rotating: keys hashed with them are
    /// still accepted and re-hashed with the current secret on first use.
    #[arg(
        long,
        env = "PROXY_KEY_HASHER_PREVIOUS_SECRETS",
        hide_env_values = true,
        value_delimiter = ','
    )]
    pub key_hasher_previous_secrets: Vec<Secret>,
    /// Where generated secrets are kept (files with mode 0600).
    #[arg(long, env = "PROXY_STATE_DIR", default_value = ".")]
    pub state_dir: PathBuf,
    /// The passphrase whose SHA-256 seals access keys' Bedrock API keys (AES-256-GCM)
    /// when KMS is not configured; generated and kept in the state directory when absent.
    #[arg(long, env = "PROXY_LOCAL_ENCRYPTION_KEY", hide_env_values = true)]
    pub local_encryption_key: Option<Secret>,
    /// A KMS key (id, ARN or alias): access keys' Bedrock API keys are sealed with a data
    /// key of its (envelope encryption). Region and credentials: the AWS default chain.
    #[arg(long, env = "PROXY_KMS_KEY_ID")]
    pub kms_key_id: Option<String>,
    /// A KMS endpoint URL (VPC endpoints, tests).
    #[arg(long, env = "PROXY_KMS_ENDPOINT_URL")]
    pub kms_endpoint_url: Option<String>,
}

impl StateArgs {
    /// The URL to connect with: [`database::connection_url`](crate::database::connection_url)
    /// of the flags.
    pub fn database_url(&self) -> anyhow::Result<String> {
        crate::database::connection_url(
            &self.database_url,
            self.database_sslmode,
            self.database_sslrootcert.as_deref(),
        )
    }

    /// Time to a database connection or a key lookup's answer.
    pub fn database_timeout(&self) -> Duration {
        Duration::from_secs(self.database_timeout_secs.max(1))
    }
}

/// `serve`.
#[derive(Clone, Debug, Args)]
pub struct ServeArgs {
    /// The database and secrets.
    #[command(flatten)]
    pub state: StateArgs,
    /// Address to listen on.
    #[arg(long, env = "PROXY_BIND", default_value = "127.0.0.1:8080")]
    pub bind: SocketAddr,
    /// The Anthropic API ("Plan") base URL.
    #[arg(
        long,
        env = "PROXY_PLAN_API_URL",
        default_value = "https://api.anthropic.com"
    )]
    pub plan_api_url: String,
    /// An API key sent to Plan when the client sends no credentials of its own.
    #[arg(long, env = "PROXY_PLAN_API_KEY", hide_env_values = true)]
    pub plan_api_key: Option<Secret>,
    /// The admin API token; generated and kept in the state directory when absent.
    #[arg(long, env = "PROXY_ADMIN_TOKEN", hide_env_values = true)]
    pub admin_token: Option<Secret>,
    /// Bedrock fallback on or off.
    #[arg(long, env = "PROXY_BEDROCK_ENABLED", default_value_t = true, action = clap::ArgAction::Set)]
    pub bedrock_enabled: bool,
    /// Bedrock's AWS region.
    #[arg(long, env = "PROXY_BEDROCK_REGION", default_value = "us-east-1")]
    pub bedrock_region: String,
    /// A Bedrock Runtime endpoint URL (tests, VPC endpoints).
    #[arg(long, env = "PROXY_BEDROCK_ENDPOINT_URL")]
    pub bedrock_endpoint_url: Option<String>,
    /// A Bedrock API key (bearer token); else the AWS default credential chain.
    #[arg(long, env = "PROXY_BEDROCK_API_KEY", hide_env_values = true)]
    pub bedrock_api_key: Option<Secret>,
    /// The `anthropic-beta` values passed to Bedrock (comma-separated; others are dropped,
    /// since Bedrock refuses them). Default: the betas the AWS documentation lists.
    #[arg(long, env = "PROXY_BEDROCK_BETAS", value_delimiter = ',')]
    pub bedrock_betas: Option<Vec<String>>,
    /// JSON: requested model → Bedrock model id, merged into the defaults.
    #[arg(long, env = "PROXY_BEDROCK_MODEL_MAPPING")]
    pub bedrock_model_mapping: Option<String>,
    /// Prices and usage buckets.
    #[command(flatten)]
    pub usage: UsageArgs,
    /// Seconds to connect to Plan.
    #[arg(
        long = "plan-connect-timeout",
        env = "PROXY_PLAN_CONNECT_TIMEOUT",
        default_value_t = 10
    )]
    pub plan_connect_timeout_secs: u64,
    /// Seconds to wait for Plan's response headers before falling back.
    #[arg(
        long = "plan-header-timeout",
        env = "PROXY_PLAN_HEADER_TIMEOUT",
        default_value_t = 120
    )]
    pub plan_header_timeout_secs: u64,
    /// Seconds to the response headers (Plan, then Bedrock) before the client gets a 504.
    #[arg(
        long = "response-timeout",
        env = "PROXY_RESPONSE_TIMEOUT",
        default_value_t = 300
    )]
    pub response_timeout_secs: u64,
    /// The longest Plan cooldown a `retry-after` can set, in seconds.
    #[arg(
        long = "max-cooldown",
        env = "PROXY_MAX_COOLDOWN",
        default_value_t = 300
    )]
    pub max_cooldown_secs: u64,
    /// Retryable Plan failures (5xx, 529, timeouts, connection errors) of one access key
    /// within the breaker window that open the key's circuit: Plan is skipped for the key
    /// (Bedrock serves) until a probe succeeds. 0 turns the key breakers off.
    #[arg(long, env = "PROXY_BREAKER_KEY_FAILURES", default_value_t = 5)]
    pub breaker_key_failures: u32,
    /// The same over all keys, for Plan's own circuit (an outage of Plan). 0: off.
    #[arg(long, env = "PROXY_BREAKER_PLAN_FAILURES", default_value_t = 20)]
    pub breaker_plan_failures: u32,
    /// Seconds the breakers count failures over.
    #[arg(
        long = "breaker-window",
        env = "PROXY_BREAKER_WINDOW",
        default_value_t = 60
    )]
    pub breaker_window_secs: u64,
    /// Seconds an open circuit skips Plan before one request probes it.
    #[arg(
        long = "breaker-open",
        env = "PROXY_BREAKER_OPEN",
        default_value_t = 30
    )]
    pub breaker_open_secs: u64,
    /// Seconds a client has for its first byte, for each request's headers, and between
    /// requests on a keep-alive connection (one timer in hyper), before it is closed.
    #[arg(
        long = "client-header-timeout",
        env = "PROXY_CLIENT_HEADER_TIMEOUT",
        default_value_t = 30
    )]
    pub client_header_timeout_secs: u64,
    /// Seconds a client has to send a request's whole body (a 408 after it).
    #[arg(
        long = "client-body-timeout",
        env = "PROXY_CLIENT_BODY_TIMEOUT",
        default_value_t = 60
    )]
    pub client_body_timeout_secs: u64,
    /// Open client connections in all; the server stops accepting while this many are open
    /// (and lowers it to what the process's file descriptor limit allows).
    #[arg(long, env = "PROXY_MAX_CONNECTIONS", default_value_t = 4096)]
    pub max_connections: usize,
    /// Open client connections from one address; more are closed at once.
    #[arg(long, env = "PROXY_MAX_CONNECTIONS_PER_IP", default_value_t = 1024)]
    pub max_connections_per_ip: usize,
    /// `TCP_NODELAY` on client connections: each write leaves at once (a stream's events
    /// reach the client as they come), at the cost of more, smaller packets.
    #[arg(long, env = "PROXY_TCP_NODELAY", default_value_t = true, action = clap::ArgAction::Set)]
    pub tcp_nodelay: bool,
    /// Seconds an upstream stream may go without sending anything before it is cut (the
    /// record says `upstream_error`, `error_type` `upstream_idle_timeout`).
    #[arg(
        long = "upstream-idle-timeout",
        env = "PROXY_UPSTREAM_IDLE_TIMEOUT",
        default_value_t = 120
    )]
    pub upstream_idle_timeout_secs: u64,
    /// Seconds shutdown waits for requests in flight (streams included) before it cuts them.
    #[arg(
        long = "shutdown-timeout",
        env = "PROXY_SHUTDOWN_TIMEOUT",
        default_value_t = 30
    )]
    pub shutdown_timeout_secs: u64,
    /// Seconds between reads of the model mappings and price overrides in the database
    /// (changes made through another instance apply here within this).
    #[arg(
        long = "config-reload-interval",
        env = "PROXY_CONFIG_RELOAD_INTERVAL",
        default_value_t = 5
    )]
    pub config_reload_interval_secs: u64,
    /// Seconds a key replaced by `POST /admin/keys/{id}/rotate` stays accepted (a request
    /// may ask for another period).
    #[arg(
        long = "key-rotation-grace",
        env = "PROXY_KEY_ROTATION_GRACE",
        default_value_t = 300
    )]
    pub key_rotation_grace_secs: u64,
    /// Seconds a console session lasts from login.
    #[arg(
        long = "console-session-ttl",
        env = "PROXY_CONSOLE_SESSION_TTL",
        default_value_t = 12 * 3600
    )]
    pub console_session_ttl_secs: u64,
    /// Failed console logins allowed per account name and client address in 15 minutes
    /// (four times as many per address, whatever the names).
    #[arg(long, env = "PROXY_CONSOLE_LOGIN_ATTEMPTS", default_value_t = 5)]
    pub console_login_attempts: usize,
    /// When the console's session cookie is `Secure`: `auto` (when the proxy in front
    /// says `X-Forwarded-Proto: https`), `always` or `never`.
    #[arg(long, env = "PROXY_CONSOLE_SECURE_COOKIE", value_enum, default_value_t)]
    pub console_secure_cookie: crate::sessions::SecureCookie,
    /// Origins (`https://dash.example.com`, comma-separated) whose pages may call the
    /// admin API from a browser with the bearer token (CORS). None by default.
    #[arg(long, env = "PROXY_CORS_ALLOWED_ORIGINS", value_delimiter = ',')]
    pub cors_allowed_origins: Vec<String>,
    /// The largest request body accepted, in bytes.
    #[arg(long, env = "PROXY_MAX_REQUEST_BYTES", default_value_t = 32 * 1024 * 1024)]
    pub max_request_bytes: usize,
    /// Serve `GET /metrics` (Prometheus text format) without authentication: usage per
    /// provider, model and outcome — volumes, cost, latency; never users or keys.
    #[arg(long, env = "PROXY_METRICS", default_value_t = true, action = clap::ArgAction::Set)]
    pub metrics: bool,
    /// Put per-provider metrics to CloudWatch.
    #[arg(long, env = "PROXY_CLOUDWATCH_METRICS_ENABLED", default_value_t = false, action = clap::ArgAction::Set)]
    pub cloudwatch_metrics_enabled: bool,
    /// The CloudWatch namespace.
    #[arg(
        long,
        env = "PROXY_CLOUDWATCH_NAMESPACE",
        default_value = "ClaudeCodeProxy"
    )]
    pub cloudwatch_namespace: String,
    /// A CloudWatch endpoint URL (VPC endpoints, tests); region and credentials come from
    /// the AWS default chain.
    #[arg(long, env = "PROXY_CLOUDWATCH_ENDPOINT_URL")]
    pub cloudwatch_endpoint_url: Option<String>,
    /// Seconds between metric puts: one `PutMetricData` per interval, whatever the traffic.
    #[arg(
        long = "cloudwatch-flush-interval",
        env = "PROXY_CLOUDWATCH_FLUSH_INTERVAL",
        default_value_t = 60
    )]
    pub cloudwatch_flush_interval_secs: u64,
    /// Seconds between usage writes to the database.
    #[arg(
        long = "usage-flush-interval",
        env = "PROXY_USAGE_FLUSH_INTERVAL",
        default_value_t = 1
    )]
    pub usage_flush_interval_secs: u64,
    /// Where usage records wait on disk while the database is down, until they are
    /// replayed (default: `spool` in the state directory).
    #[arg(long, env = "PROXY_USAGE_SPOOL_DIR")]
    pub usage_spool_dir: Option<PathBuf>,
    /// The most bytes the usage spool may take; records beyond are lost (logged and counted).
    #[arg(long, env = "PROXY_USAGE_SPOOL_MAX_BYTES", default_value_t = 1 << 30)]
    pub usage_spool_max_bytes: u64,
    /// Makes this proxy a fleet member: `nats://host:port` (comma-separated for a
    /// cluster). Usage records are published to JetStream for `reference-server ingest`
    /// instead of being written to the database, and cooldowns, circuits, pending Bedrock
    /// spend and revocations are shared with the other proxies. Unset: one process, usage
    /// written by this proxy.
    #[arg(long, env = "PROXY_USAGE_TRANSPORT", value_parser = nats_url)]
    pub usage_transport: Option<String>,
    /// The JetStream stream usage records are published to (with `--usage-transport`).
    #[arg(long, env = "PROXY_NATS_STREAM", default_value = "USAGE")]
    pub nats_stream: String,
}

/// A `nats://` (or `tls://`) server list.
fn nats_url(value: &str) -> Result<String, String> {
    let servers: Vec<&str> = value.split(',').map(str::trim).collect();
    let valid = servers.iter().all(|server| {
        ["nats://", "tls://"].iter().any(|scheme| {
            server
                .strip_prefix(scheme)
                .is_some_and(|rest| !rest.is_empty())
        })
    });
    if valid {
        Ok(servers.join(","))
    } else {
        Err("expected nats://host:port (or tls://host:port), comma-separated".to_owned())
    }
}

impl ServeArgs {
    /// Time to connect to Plan.
    pub fn plan_connect_timeout(&self) -> Duration {
        Duration::from_secs(self.plan_connect_timeout_secs)
    }

    /// Time to Plan's response headers.
    pub fn plan_header_timeout(&self) -> Duration {
        Duration::from_secs(self.plan_header_timeout_secs)
    }

    /// Time to the response headers.
    pub fn response_timeout(&self) -> Duration {
        Duration::from_secs(self.response_timeout_secs)
    }

    /// What client connections may hold.
    pub fn connection_limits(&self) -> crate::listen::ConnectionLimits {
        crate::listen::ConnectionLimits {
            header_timeout: Duration::from_secs(self.client_header_timeout_secs.max(1)),
            max_connections: self.max_connections.max(1),
            max_connections_per_ip: self.max_connections_per_ip.max(1),
            nodelay: self.tcp_nodelay,
            shutdown_timeout: Duration::from_secs(self.shutdown_timeout_secs),
        }
    }

    /// Time to read a request's body.
    pub fn client_body_timeout(&self) -> Duration {
        Duration::from_secs(self.client_body_timeout_secs.max(1))
    }

    /// Time an upstream stream may stay silent.
    pub fn upstream_idle_timeout(&self) -> Duration {
        Duration::from_secs(self.upstream_idle_timeout_secs.max(1))
    }

    /// Time between reads of the mappings and prices.
    pub fn config_reload_interval(&self) -> Duration {
        Duration::from_secs(self.config_reload_interval_secs.max(1))
    }

    /// The circuit breakers' settings.
    pub fn breaker_config(&self) -> crate::breaker::BreakerConfig {
        crate::breaker::BreakerConfig {
            key_failures: self.breaker_key_failures,
            plan_failures: self.breaker_plan_failures,
            window: Duration::from_secs(self.breaker_window_secs.max(1)),
            open_for: Duration::from_secs(self.breaker_open_secs),
        }
    }

    /// The console's session settings.
    pub fn session_config(&self) -> crate::sessions::SessionConfig {
        crate::sessions::SessionConfig {
            ttl: Duration::from_secs(self.console_session_ttl_secs.max(60)),
            attempts_per_name: self.console_login_attempts.max(1),
            attempts_per_address: self.console_login_attempts.max(1) * 4,
            secure: self.console_secure_cookie,
            ..crate::sessions::SessionConfig::default()
        }
    }

    /// The CORS origins, checked: each is `scheme://host[:port]` and nothing more.
    pub fn cors_origins(&self) -> anyhow::Result<Vec<http::HeaderValue>> {
        self.cors_allowed_origins
            .iter()
            .map(|origin| origin.trim())
            .filter(|origin| !origin.is_empty())
            .map(|origin| {
                let parsed = url::Url::parse(origin).ok().filter(|url| {
                    matches!(url.scheme(), "http" | "https")
                        && url.host().is_some()
                        && url.path() == "/"
                        && url.query().is_none()
                        && !origin.ends_with('/')
                });
                match parsed {
                    Some(_) => Ok(http::HeaderValue::from_str(origin)?),
                    None => anyhow::bail!(
                        "PROXY_CORS_ALLOWED_ORIGINS: {origin:?} is not an origin (scheme://host[:port], no path)"
                    ),
                }
            })
            .collect()
    }

    /// The longest cooldown.
    pub fn max_cooldown(&self) -> Duration {
        Duration::from_secs(self.max_cooldown_secs)
    }

    /// The usage spool's directory.
    pub fn usage_spool_dir(&self) -> PathBuf {
        self.usage_spool_dir
            .clone()
            .unwrap_or_else(|| self.state.state_dir.join("spool"))
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[test]
    fn secrets_never_show_in_debug_output() {
        let cli = Cli::parse_from([
            "reference-server",
            "serve",
            "--key-hasher-secret=hasher-s3cret",
            "--plan-api-key=sk-ant-s3cret",
            "--admin-token=admin-s3cret",
            "--bedrock-api-key=bedrock-s3cret",
        ]);
        let shown = format!("{cli:?}");
        assert!(!shown.contains("s3cret"), "{shown}");
        let Command::Serve(args) = cli.command else {
            unreachable!()
        };
        assert_eq!(args.plan_api_key.unwrap().expose(), "sk-ant-s3cret");
    }

    #[test]
    fn the_usage_spool_lives_in_the_state_directory_unless_told() {
        let serve = |extra: &[&str]| {
            let mut argv = vec!["reference-server", "serve", "--state-dir=/var/lib/proxy"];
            argv.extend_from_slice(extra);
            let Command::Serve(args) = Cli::parse_from(argv).command else {
                unreachable!()
            };
            args
        };
        let default = serve(&[]);
        assert_eq!(
            default.usage_spool_dir(),
            PathBuf::from("/var/lib/proxy/spool")
        );
        assert_eq!(default.usage_spool_max_bytes, 1 << 30);
        let chosen = serve(&[
            "--usage-spool-dir=/tmp/spool",
            "--usage-spool-max-bytes=4096",
        ]);
        assert_eq!(chosen.usage_spool_dir(), PathBuf::from("/tmp/spool"));
        assert_eq!(chosen.usage_spool_max_bytes, 4096);
    }
}
