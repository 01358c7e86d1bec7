//! Starting and stopping the proxy: database, secrets, prices, upstreams, the usage writer.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use sea_orm::DatabaseConnection;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use usage_layer::pricing::Pricing;
use usage_layer::sink::{BatchWriter, SpoolConfig, WriterConfig, WriterHandle};
use usage_layer::store::cloudwatch::CloudWatchStore;
use usage_layer::store::nats::{NatsConfig, NatsStore};
use usage_layer::store::sea_orm::SeaOrmStore;

use crate::app::{AppState, Limits, UpstreamBodies, app};
use crate::bedrock::{BEDROCK_BETAS, Bedrock, BedrockConfig, ModelMapping};
use crate::budget::{Budget, PendingSink, PendingSpend, SettlingStore};
use crate::config::{Secret, ServeArgs, StateArgs};
use crate::database::{self, DatabaseHealth};
use crate::keys::{KeyHasher, KeyStore};
use crate::listen::{self, ConnectionStats};
use crate::live::LiveConfig;
use crate::plan::PlanClient;
use crate::routing::Router;
use crate::secrets::load_or_generate;

/// The database (migrated up) and the key hasher; fails when the database cannot be
/// reached (the commands other than `serve` need it).
pub async fn open_state(state: &StateArgs) -> anyhow::Result<(DatabaseConnection, KeyHasher)> {
    let db = database::connect(&state.database_url()?, state.database_timeout(), false)
        .await
        .map_err(database::connect_error)?;
    // Its own tables and the usage tables, each with its own tracking table.
    migration::up(&db).await.context("running migrations")?;
    Ok((db, key_hasher(state)?))
}

/// The database for `serve`: connected lazily and migrated now if it answers, else as
/// soon as it does (in the background; `health` says which).
async fn open_for_serving(
    state: &StateArgs,
    health: &Arc<DatabaseHealth>,
) -> anyhow::Result<DatabaseConnection> {
    let db = database::connect(&state.database_url()?, state.database_timeout(), true)
        .await
        .context("the database URL (PROXY_DATABASE_URL)")?;
    match migration::up(&db).await {
        Ok(()) => health.migrated(),
        Err(error) if database::is_unreachable(&error) => {
            health.failed();
            tracing::warn!(
                %error,
                "database unreachable at start: serving without it (keys from the key cache, \
                 usage to the spool); migrating once it answers"
            );
            let (db, health) = (db.clone(), Arc::clone(health));
            tokio::spawn(async move {
                if let Err(error) = database::migrate_when_reachable(&db, &health, true).await {
                    tracing::error!(%error, "migrations failed once the database answered");
                }
            });
        }
        Err(error) if database::tls_failure(&error).is_some() => {
            return Err(database::connect_error(error));
        }
        Err(error) => return Err(anyhow::Error::new(error).context("running migrations")),
    }
    Ok(db)
}

/// `import-original`: see [`crate::import`].
pub async fn import_original(args: crate::config::ImportArgs) -> anyhow::Result<()> {
    use std::io::Write;
    if args.usage_timezone != chrono_tz::Asia::Seoul
        || args.usage_week_start != chrono::Weekday::Sun
    {
        anyhow::bail!(
            "the original's usage buckets are Asia/Seoul days with weeks from Sunday, and its \
             aggregates are brought as they are: run this server (and this command) with \
             PROXY_USAGE_TIMEZONE=Asia/Seoul PROXY_USAGE_WEEK_START=sunday (now {} / {})",
            args.usage_timezone,
            args.usage_week_start
        );
    }
    let Some(hasher_secret) = args.state.key_hasher_secret.clone() else {
        anyhow::bail!(
            "PROXY_KEY_HASHER_SECRET is required: give the original's, so that its access keys \
             keep working here"
        );
    };
    let from_url = database::connection_url(&args.from, None, None)?;
    let from = database::connect(&from_url, args.state.database_timeout(), false)
        .await
        .map_err(database::connect_error)
        .context("the original's database (--from)")?;
    let (to, _) = open_state(&args.state).await?;
    let vault = vault(&args.state).await?;
    let original = match &args.original_kms_key_id {
        Some(key_id) => crate::import::OriginalSealing::Kms(
            kms(key_id, args.original_kms_endpoint_url.as_deref()).await,
        ),
        None => {
            // The original's rule: its local key, else its hashing secret, else its JWT secret.
            let given = |secret: &Option<Secret>| {
                secret
                    .as_ref()
                    .map(|secret| secret.expose().to_owned())
                    .filter(|secret| !secret.is_empty())
            };
            let passphrase = given(&args.original_local_encryption_key)
                .or_else(|| given(&Some(hasher_secret.clone())))
                .or_else(|| given(&args.original_jwt_secret))
                .unwrap_or_default();
            crate::import::OriginalSealing::Local(crate::crypto::LocalKey::from_passphrase(
                &passphrase,
            ))
        }
    };
    let mut out = std::io::stdout().lock();
    crate::import::Import {
        from: &from,
        to: &to,
        original,
        vault: &vault,
        dry_run: args.dry_run,
    }
    .run(&mut out)
    .await?;
    out.flush()?;
    Ok(())
}

/// Seeds the mappings and reads both tables once (a failure is logged: the built-in and
/// configured ones stay in force, and the poller tries again).
async fn live_start(live: &LiveConfig, defaults: &ModelMapping, configured: &ModelMapping) {
    if let Err(error) = live.seed(defaults, configured).await {
        tracing::warn!(%error, "model mappings not seeded");
    }
    if let Err(error) = live.reload().await {
        tracing::warn!(%error, "model mappings and prices not read: the configured ones stay in force");
    }
}

/// KMS key `key_id` through the AWS default chain (region, credentials), at
/// `endpoint_url` when given.
async fn kms(key_id: &str, endpoint_url: Option<&str>) -> crate::crypto::Kms {
    let shared = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .load()
        .await;
    let mut config = aws_sdk_kms::config::Builder::from(&shared);
    if let Some(url) = endpoint_url {
        config = config.endpoint_url(url);
    }
    crate::crypto::Kms::new(
        aws_sdk_kms::Client::from_conf(config.build()),
        key_id.to_owned(),
    )
}

/// What seals and opens access keys' Bedrock API keys: KMS when `--kms-key-id` is set
/// (the local key still opens what it sealed before), else the local key.
pub async fn vault(state: &StateArgs) -> anyhow::Result<crate::crypto::Vault> {
    let passphrase = load_or_generate(
        &state.state_dir,
        "local-encryption-key",
        state.local_encryption_key.as_ref().map(Secret::expose),
        "local encryption key",
    )?;
    let local = crate::crypto::LocalKey::from_passphrase(passphrase.trim());
    let kms = match &state.kms_key_id {
        None => None,
        Some(key_id) => {
            tracing::info!(key = %key_id, "Bedrock credentials sealed with KMS data keys");
            Some(kms(key_id, state.kms_endpoint_url.as_deref()).await)
        }
    };
    Ok(crate::crypto::Vault::new(Some(local), kms))
}

fn key_hasher(state: &StateArgs) -> anyhow::Result<KeyHasher> {
    let secret = load_or_generate(
        &state.state_dir,
        "key-hasher-secret",
        state.key_hasher_secret.as_ref().map(Secret::expose),
        "access-key hashing secret",
    )?;
    let previous = state
        .key_hasher_previous_secrets
        .iter()
        .map(|old| old.expose().trim().as_bytes().to_vec());
    Ok(KeyHasher::new(secret.into_bytes()).with_previous(previous))
}

/// A running proxy.
#[derive(Debug)]
pub struct Server {
    /// Where it listens.
    pub addr: SocketAddr,
    shutdown: oneshot::Sender<()>,
    task: JoinHandle<anyhow::Result<()>>,
}

impl Server {
    /// Stops taking connections, lets requests finish, writes all recorded usage.
    pub async fn stop(self) -> anyhow::Result<()> {
        let _ = self.shutdown.send(());
        self.task.await.context("the server task")?
    }

    /// Runs until the process is asked to stop (Ctrl-C or SIGTERM), then stops.
    pub async fn run_until_signal(self) -> anyhow::Result<()> {
        shutdown_signal().await;
        tracing::info!("shutting down: finishing requests and writing usage");
        self.stop().await
    }
}

pub(crate) async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .expect("installing the SIGTERM handler");
    tokio::select! {
        _ = ctrl_c => {}
        _ = term.recv() => {}
    }
}

/// How often the usage writer's backlog is logged while its spool is in use.
const SPOOL_REPORT_INTERVAL: Duration = Duration::from_secs(30);

/// Logs the usage writer's backlog while records wait in its spool (the database is
/// down or slow), and records lost since the last report, each interval. (The writer
/// itself logs its failed replays, and when the spool is empty again.)
async fn report_spool(writer: BatchWriter, store: &'static str) {
    let mut every = tokio::time::interval(SPOOL_REPORT_INTERVAL);
    let mut lost_before = 0;
    loop {
        every.tick().await;
        let stats = writer.stats();
        let lost = stats.failed + stats.dropped;
        if stats.spooled > 0 || lost > lost_before {
            let oldest_age_secs = stats
                .oldest_unwritten
                .map(|at| (chrono::Utc::now() - at).num_seconds());
            tracing::warn!(
                spooled = stats.spooled,
                spool_bytes = stats.spool_bytes,
                queue_depth = stats.queue_depth,
                oldest_age_secs,
                lost,
                lost_since_last_report = lost - lost_before,
                lost_spool_full = stats.spool_refused,
                "usage {store} unavailable or behind: records waiting in the spool, or lost"
            );
        }
        lost_before = lost;
    }
}

/// The CloudWatch metrics writer: batches of one flush interval, one `PutMetricData` each.
async fn cloudwatch_writer(args: &ServeArgs, pricing: Pricing) -> (BatchWriter, WriterHandle) {
    let shared = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .load()
        .await;
    let mut config = aws_sdk_cloudwatch::config::Builder::from(&shared);
    if let Some(url) = &args.cloudwatch_endpoint_url {
        config = config.endpoint_url(url);
    }
    let client = aws_sdk_cloudwatch::Client::from_conf(config.build());
    let store = CloudWatchStore::new(client, args.cloudwatch_namespace.clone(), pricing);
    let mut writer = WriterConfig::default();
    writer.flush_interval = Duration::from_secs(args.cloudwatch_flush_interval_secs.max(1));
    // A flush interval's records make one batch, however many there are.
    writer.max_batch = usize::MAX;
    // An outage loses nothing the queue can hold: retry until CloudWatch is back (the
    // queue, bounded, counts what it has to refuse meanwhile).
    writer.max_attempts = u32::MAX;
    tracing::info!(namespace = %args.cloudwatch_namespace, "CloudWatch metrics on");
    BatchWriter::spawn(store, writer)
}

/// Connects to NATS for `serve --usage-transport` (in the background when it does not
/// answer yet: records wait in the spool, the fleet's state in this proxy's own view).
async fn join_fleet(url: &str) -> anyhow::Result<crate::fleet::Fleet> {
    let client = async_nats::ConnectOptions::new()
        .name("reference-server serve")
        .retry_on_initial_connect()
        .connect(url)
        .await
        .context("connecting to NATS (--usage-transport)")?;
    tracing::info!("fleet member: usage published to JetStream, state shared through NATS");
    Ok(crate::fleet::Fleet::new(client))
}

/// Starts the proxy.
pub async fn start(args: ServeArgs) -> anyhow::Result<Server> {
    let database_health = Arc::new(DatabaseHealth::default());
    let db = open_for_serving(&args.state, &database_health).await?;
    let hasher = key_hasher(&args.state)?;
    let admin_token: Secret = load_or_generate(
        &args.state.state_dir,
        "admin-token",
        args.admin_token.as_ref().map(Secret::expose),
        "admin token",
    )?
    .parse()?;
    let base_prices = args.usage.prices()?;
    let configured_mapping =
        ModelMapping::from_entries([]).with_overrides(args.bedrock_model_mapping.as_deref())?;
    let base_mapping =
        ModelMapping::defaults().with_overrides(args.bedrock_model_mapping.as_deref())?;
    let live = LiveConfig::new(db.clone(), base_prices, base_mapping.clone());
    let live_now = database_health.is_migrated();
    if live_now {
        live_start(&live, &base_mapping, &configured_mapping).await;
    }
    let pricing = live.pricing().clone();
    let buckets = args.usage.buckets();
    let store = SeaOrmStore::new(db.clone(), pricing.clone(), buckets);
    let queries = store.queries();
    let pending = PendingSpend::new(pricing.clone());
    let mut writer_config = WriterConfig::default();
    writer_config.flush_interval = Duration::from_secs(args.usage_flush_interval_secs.max(1));
    // A few quick retries, each given up after a few seconds without an answer, then the
    // records wait on disk, not in memory: a crashed database has them spooled within
    // seconds. The spool is probed again at most 5 s apart, so replay starts within
    // seconds of the database's return.
    writer_config.max_attempts = 3;
    writer_config.attempt_timeout = Some(args.state.database_timeout() * 3);
    writer_config.retry_max_delay = Duration::from_secs(5);
    let mut spool = SpoolConfig::new(args.usage_spool_dir());
    spool.max_bytes = args.usage_spool_max_bytes;
    writer_config.spool = Some(spool);
    let fleet = match &args.usage_transport {
        Some(url) => Some(join_fleet(url).await?),
        None => None,
    };
    let (writer, writer_handle) = match &fleet {
        // In a fleet the records go to JetStream; the ingester stores them and clears
        // their pending spend (not the acknowledgement here: they are not stored yet).
        Some(fleet) => {
            pending.share_with(fleet.clone());
            let mut stream = NatsConfig::default();
            stream.stream = args.nats_stream.clone();
            BatchWriter::try_spawn(
                NatsStore::new(fleet.client().clone(), stream),
                writer_config,
            )
            .await
        }
        None => {
            BatchWriter::try_spawn(SettlingStore::new(store, pending.clone()), writer_config).await
        }
    }
    .context("opening the usage spool (PROXY_USAGE_SPOOL_DIR)")?;
    let fleet_watch = fleet
        .clone()
        .map(|fleet| tokio::spawn(fleet.run(pending.clone())));
    let store_name = if fleet.is_some() {
        "transport (NATS)"
    } else {
        "database"
    };
    let spool_reporter = tokio::spawn(report_spool(writer.clone(), store_name));
    let (metrics, metrics_handle) = if args.cloudwatch_metrics_enabled {
        let (sink, handle) = cloudwatch_writer(&args, pricing.clone()).await;
        (Some(sink), Some(handle))
    } else {
        (None, None)
    };
    let sink = (PendingSink(pending.clone()), writer.clone(), metrics);

    let bedrock = if args.bedrock_enabled {
        let mapping = base_mapping.clone();
        Some(
            Bedrock::new(BedrockConfig {
                region: args.bedrock_region.clone(),
                endpoint_url: args.bedrock_endpoint_url.clone(),
                api_key: args
                    .bedrock_api_key
                    .as_ref()
                    .map(|key| key.expose().to_owned()),
                mapping,
                connect_timeout: args.plan_connect_timeout(),
                read_timeout: None,
                betas: args.bedrock_betas.clone().unwrap_or_else(|| {
                    BEDROCK_BETAS
                        .iter()
                        .map(|beta| (*beta).to_owned())
                        .collect()
                }),
            })
            .await?
            .with_mapping(live.mapping().clone()),
        )
    } else {
        None
    };
    let live_poller = {
        let (live, base, configured) = (live.clone(), base_mapping, configured_mapping);
        let migrated = Arc::clone(&database_health);
        let interval = args.config_reload_interval();
        tokio::spawn(async move {
            if !live_now {
                // A database that was down at start is seeded once it is migrated.
                while !migrated.is_migrated() {
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
                live_start(&live, &base, &configured).await;
            }
            live.poll(interval).await;
        })
    };
    let plan = PlanClient::new(
        &args.plan_api_url,
        args.plan_api_key.as_ref().map(Secret::expose),
        args.plan_connect_timeout(),
        args.plan_header_timeout(),
    )?;
    let budget = Budget::new(queries.clone(), pending);
    let router = Router::new(
        plan,
        bedrock,
        budget.clone(),
        args.max_cooldown(),
        args.response_timeout(),
    )
    .with_breakers(crate::breaker::Breakers::new(args.breaker_config()));
    let router = match &fleet {
        Some(fleet) => router.with_fleet(fleet.clone()),
        None => router,
    };
    let credentials = crate::credentials::Credentials::new(db.clone(), vault(&args.state).await?);
    let router = router.with_credentials(credentials.clone());
    let keys = KeyStore::new(db.clone(), hasher)
        .with_health(Arc::clone(&database_health), args.state.database_timeout())
        .with_cache_file(args.state.state_dir.join("key-cache.json"))
        .with_fleet(fleet.clone());
    let key_cache_saver = keys.spawn_cache_saver();
    let connections = Arc::new(ConnectionStats::default());
    // Cancelled at the shutdown deadline: the streams still open are cut.
    let cut = CancellationToken::new();
    let db_for_sessions = db.clone();
    let state = Arc::new(AppState {
        keys: keys.clone(),
        router,
        db,
        queries,
        pricing,
        live: live.clone(),
        budget,
        admin_token,
        usage_writer: writer.clone(),
        fleet,
        metrics: args.metrics.then(crate::metrics::prometheus).transpose()?,
        database: Arc::clone(&database_health),
        connections: Arc::clone(&connections),
        key_rotation_grace: Duration::from_secs(args.key_rotation_grace_secs),
        credentials,
        sessions: Arc::new(crate::sessions::Sessions::new(
            db_for_sessions,
            args.session_config(),
        )),
        cors_allowed_origins: args.cors_origins()?,
        upstream_bodies: UpstreamBodies {
            idle_timeout: args.upstream_idle_timeout(),
            shutdown: cut.clone(),
        },
    });

    let listener = tokio::net::TcpListener::bind(args.bind)
        .await
        .with_context(|| format!("binding {}", args.bind))?;
    let addr = listener.local_addr()?;
    let (shutdown, stopped) = oneshot::channel::<()>();
    let limits = Limits {
        max_request_bytes: args.max_request_bytes,
        response_timeout: args.response_timeout(),
        client_body_timeout: args.client_body_timeout(),
    };
    let service = app(state, sink, limits);
    let connection_limits = args.connection_limits().fit_to_descriptor_limit();
    let task = tokio::spawn(async move {
        let stop = async {
            let _ = stopped.await;
        };
        listen::serve(listener, service, connection_limits, connections, stop, cut).await;
        spool_reporter.abort();
        if let Some(watch) = fleet_watch {
            watch.abort();
        }
        live_poller.abort();
        if let Some(saver) = key_cache_saver {
            saver.abort();
        }
        keys.save_cache().await;
        // Every response is finished: write what they recorded (usage: or spool it, which
        // takes bounded time). Metrics retry for ever: during an outage, stopping must
        // still end.
        let writers = [
            (Some(writer_handle), "usage", Duration::MAX),
            (metrics_handle, "metrics", Duration::from_secs(15)),
        ];
        for (writer, name, limit) in writers {
            if let Some(writer) = writer {
                let Ok(stopped) = tokio::time::timeout(limit, writer.shutdown()).await else {
                    tracing::warn!(
                        "{name} writer not drained within {limit:?}: stopping without it"
                    );
                    continue;
                };
                let stats = stopped?;
                tracing::info!(
                    written = stats.written,
                    failed = stats.failed,
                    dropped = stats.dropped,
                    spooled = stats.spooled,
                    "{name} writer stopped"
                );
            }
        }
        Ok(())
    });
    tracing::info!(%addr, "listening");
    Ok(Server {
        addr,
        shutdown,
        task,
    })
}
