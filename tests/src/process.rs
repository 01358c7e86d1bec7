//! Processes the fault tests start and kill: the release-like `reference-server` binary,
//! and a Postgres cluster of their own ([`PgCluster`]) whose postmaster they can
//! `kill -9` — a real crash, not a relay that refuses connections at once.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use http::Request;
use http_body_util::Full;

use crate::proxy::client;

/// A free TCP port on loopback (free when asked; the caller binds it soon after).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .expect("a free port")
        .local_addr()
        .expect("its address")
        .port()
}

/// Sends `signal` (`TERM`, `KILL`, …) to process `pid`.
pub fn signal(pid: u32, signal: &str) {
    let status = std::process::Command::new("kill")
        .args([&format!("-{signal}"), &pid.to_string()])
        .status()
        .expect("kill runs");
    assert!(status.success(), "kill -{signal} {pid} failed");
}

/// The `reference-server` binary: `REFERENCE_SERVER_BIN` if set (e.g. a release build),
/// else the one built beside the running test.
pub fn server_binary() -> PathBuf {
    if let Some(binary) = std::env::var_os("REFERENCE_SERVER_BIN") {
        return PathBuf::from(binary);
    }
    let exe = std::env::current_exe().expect("the test's path");
    let binary = exe
        .parent()
        .and_then(Path::parent)
        .expect("the target directory")
        .join("reference-server");
    assert!(
        binary.is_file(),
        "{} is not built: run `cargo build -p reference-server` (nextest --workspace builds it)",
        binary.display()
    );
    binary
}

/// A new plan-first user named `name`, with a key, in the database at `database_url`
/// (migrated first) with the secrets of `state_dir`: the raw key, for the server the
/// test then starts on the same two.
pub async fn user_with_key(database_url: &str, state_dir: &Path, name: &str) -> String {
    let routing = reference_server::config::Routing::PlanFirst;
    user_with_key_as(database_url, state_dir, name, None, routing)
        .await
        .1
}

/// [`user_with_key`] with a monthly Bedrock budget (USD) and a routing: the user's id and
/// raw key.
pub async fn user_with_key_as(
    database_url: &str,
    state_dir: &Path,
    name: &str,
    budget_usd: Option<rust_decimal::Decimal>,
    routing: reference_server::config::Routing,
) -> (uuid::Uuid, String) {
    use clap::Parser;
    use reference_server::config::{Cli, Command};
    let args = [
        "reference-server".to_owned(),
        "serve".to_owned(),
        format!("--database-url={database_url}"),
        format!("--state-dir={}", state_dir.display()),
    ];
    let Command::Serve(serve) = Cli::parse_from(args).command else {
        unreachable!("a serve command")
    };
    let (db, hasher) = reference_server::server::open_state(&serve.state)
        .await
        .expect("the database and secrets");
    let user = reference_server::users::create(&db, name, budget_usd, routing)
        .await
        .expect("a user");
    let (_, key) = reference_server::keys::KeyStore::new(db.clone(), hasher)
        .issue(user, None)
        .await
        .expect("a key");
    db.close().await.expect("close");
    (user, key.expose().to_owned())
}

/// The files of a state directory the servers of one deployment share (the secrets), for
/// a second server's own state directory.
pub fn share_secrets(from: &Path, to: &Path) {
    for name in ["key-hasher-secret", "local-encryption-key", "admin-token"] {
        let source = from.join(name);
        if source.is_file() {
            std::fs::copy(&source, to.join(name)).expect("a secret copied");
        }
    }
}

/// A `reference-server ingest` process.
#[derive(Debug)]
pub struct IngestProcess {
    /// The process (killed when dropped).
    pub process: tokio::process::Child,
    /// Its `/health` URL.
    pub health_url: String,
}

impl IngestProcess {
    /// Starts `ingest` from `nats_url` into `database_url` (with `args` after) and waits
    /// (30 s at most) until its `/health` answers.
    pub async fn spawn(
        nats_url: &str,
        database_url: &str,
        state_dir: &Path,
        args: &[String],
    ) -> Self {
        let port = free_port();
        let process = tokio::process::Command::new(server_binary())
            .args([
                "ingest",
                &format!("--nats={nats_url}"),
                &format!("--database-url={database_url}"),
                &format!("--bind=127.0.0.1:{port}"),
            ])
            .args(args)
            .env("PROXY_STATE_DIR", state_dir)
            .kill_on_drop(true)
            .stdout(std::process::Stdio::null())
            .spawn()
            .expect("reference-server ingest starts");
        let ingest = Self {
            process,
            health_url: format!("http://127.0.0.1:{port}/health"),
        };
        let started = Instant::now();
        while ingest.health().await.is_err() {
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "the ingester did not come up"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        ingest
    }

    /// `/health`'s JSON (whatever its status), or why there was none.
    pub async fn health(&self) -> Result<serde_json::Value, String> {
        get_json(&self.health_url).await
    }
}

/// `GET url` as JSON, whatever the status.
pub async fn get_json(url: &str) -> Result<serde_json::Value, String> {
    use http_body_util::BodyExt;
    let request = Request::get(url).body(Full::default()).expect("request");
    let response = client()
        .request(request)
        .await
        .map_err(|error| error.to_string())?;
    let body = response
        .into_body()
        .collect()
        .await
        .map_err(|error| error.to_string())?
        .to_bytes();
    serde_json::from_slice(&body).map_err(|error| error.to_string())
}

/// A `reference-server serve` process.
#[derive(Debug)]
pub struct ServerProcess {
    /// The process (killed when dropped).
    pub process: tokio::process::Child,
    /// `http://127.0.0.1:PORT`.
    pub base: String,
}

impl ServerProcess {
    /// Starts `serve` on a free port with `args` and waits (30 s at most) until its
    /// `/health` answers.
    pub async fn spawn(args: &[String]) -> Self {
        let port = free_port();
        let process = tokio::process::Command::new(server_binary())
            .arg("serve")
            .arg(format!("--bind=127.0.0.1:{port}"))
            .args(args)
            .kill_on_drop(true)
            .stdout(std::process::Stdio::null())
            .spawn()
            .expect("the server starts");
        let server = Self {
            process,
            base: format!("http://127.0.0.1:{port}"),
        };
        let started = Instant::now();
        while server.health().await.is_none() {
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "the server did not come up"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        server
    }

    /// `/health`'s JSON, or `None` while it does not answer 200.
    pub async fn health(&self) -> Option<serde_json::Value> {
        use http_body_util::BodyExt;
        let request = Request::get(format!("{}/health", self.base))
            .body(Full::default())
            .expect("request");
        let response = client().request(request).await.ok()?;
        if !response.status().is_success() {
            return None;
        }
        let body = response.into_body().collect().await.ok()?.to_bytes();
        serde_json::from_slice(&body).ok()
    }

    /// SIGTERM, then waits for the process to exit; its exit status.
    pub async fn stop(mut self) -> std::process::ExitStatus {
        signal(self.process.id().expect("running"), "TERM");
        self.process.wait().await.expect("the server exits")
    }
}

/// A Postgres cluster in a temporary directory, on a free port, owned by the test.
///
/// As root (this project's machines) the server runs as the `postgres` user, through
/// `setpriv`, which execs it: the child's pid is the postmaster's.
#[derive(Debug)]
pub struct PgCluster {
    dir: tempfile::TempDir,
    bin: PathBuf,
    /// The port it listens on.
    pub port: u16,
    postmaster: Option<tokio::process::Child>,
    /// `-c` settings beyond the defaults (TLS).
    settings: Vec<String>,
}

/// A certificate authority made for one test, and a server certificate it signed.
#[derive(Debug)]
pub struct TestCa {
    /// The CA's certificate (PEM): what a client trusts.
    pub ca_pem: String,
    /// The server's certificate (PEM), for `hosts`.
    pub cert_pem: String,
    /// The server certificate's private key (PEM).
    pub key_pem: String,
}

impl TestCa {
    /// A new CA and a server certificate for the DNS names `hosts` (ECDSA P-256).
    pub fn new(hosts: &[&str]) -> Self {
        use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "usage-tests CA");
        let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate().expect("CA key"))
            .expect("the CA certificate");
        let key = KeyPair::generate().expect("server key");
        let hosts: Vec<String> = hosts.iter().map(|host| (*host).to_owned()).collect();
        let cert = CertificateParams::new(hosts)
            .expect("server params")
            .signed_by(&key, &ca)
            .expect("the server certificate");
        Self {
            ca_pem: ca.pem(),
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        }
    }
}

impl PgCluster {
    /// `initdb` and start. `None` (with a loud line) when no Postgres binaries are
    /// installed — unless `CI` or `REQUIRE_POSTGRES` is set, where that is a failure.
    pub async fn start() -> Option<Self> {
        let mut cluster = Self::init().await?;
        cluster.restart().await;
        Some(cluster)
    }

    /// Like [`start`](Self::start), serving TLS only with `ca`'s server certificate:
    /// `hostssl` connections are trusted, any other is rejected (so a client that
    /// connects at all spoke TLS).
    pub async fn start_tls(ca: &TestCa) -> Option<Self> {
        let mut cluster = Self::init().await?;
        let data = cluster.dir.path().join("data");
        std::fs::write(data.join("server.crt"), &ca.cert_pem).expect("server.crt");
        std::fs::write(data.join("server.key"), &ca.key_pem).expect("server.key");
        std::fs::write(
            data.join("pg_hba.conf"),
            "local all all trust\nhostssl all all 127.0.0.1/32 trust\n\
             hostnossl all all 0.0.0.0/0 reject\n",
        )
        .expect("pg_hba.conf");
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(
                data.join("server.key"),
                std::fs::Permissions::from_mode(0o600),
            )
            .expect("server.key mode");
        }
        cluster.chown();
        cluster.settings = [
            "ssl=on",
            "ssl_cert_file=server.crt",
            "ssl_key_file=server.key",
        ]
        .map(String::from)
        .to_vec();
        cluster.restart().await;
        Some(cluster)
    }

    /// The cluster's directory (not its data directory): files a test hands to clients.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    fn chown(&self) {
        if is_root() {
            let status = std::process::Command::new("chown")
                .args(["-R", "postgres:postgres"])
                .arg(self.dir.path())
                .status()
                .expect("chown runs");
            assert!(status.success(), "chown failed");
        }
    }

    async fn init() -> Option<Self> {
        let Some(bin) = postgres_bin() else {
            let message = "no Postgres server binaries (initdb) found: set PG_BIN";
            assert!(
                std::env::var_os("CI").is_none() && std::env::var_os("REQUIRE_POSTGRES").is_none(),
                "{message}"
            );
            eprintln!("SKIPPED (a Postgres cluster of the test's own): {message}");
            return None;
        };
        let dir = tempfile::tempdir().expect("a temporary directory");
        let data = dir.path().join("data");
        std::fs::create_dir(&data).expect("the data directory");
        let cluster = Self {
            dir,
            bin,
            port: free_port(),
            postmaster: None,
            settings: Vec::new(),
        };
        cluster.chown();
        let status = as_postgres(&cluster.bin.join("initdb"))
            .args([
                "-A",
                "trust",
                "-U",
                "postgres",
                "--no-sync",
                "-E",
                "UTF8",
                "-D",
            ])
            .arg(&data)
            .stdout(std::process::Stdio::null())
            .status()
            .expect("initdb runs");
        assert!(status.success(), "initdb failed");
        Some(cluster)
    }

    /// The URL of its `postgres` database.
    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    /// `kill -9` on the postmaster: a crash. Its backends notice and exit on their own.
    pub async fn crash(&mut self) {
        let mut postmaster = self.postmaster.take().expect("running");
        signal(postmaster.id().expect("running"), "KILL");
        postmaster.wait().await.expect("the postmaster is reaped");
    }

    /// Starts the postmaster again (crash recovery included) and waits until it accepts
    /// connections.
    pub async fn restart(&mut self) {
        assert!(self.postmaster.is_none(), "already running");
        let started = Instant::now();
        loop {
            let mut postmaster =
                tokio::process::Command::from(as_postgres(&self.bin.join("postgres")))
                    .arg("-D")
                    .arg(self.dir.path().join("data"))
                    .args([
                        "-p",
                        &self.port.to_string(),
                        "-c",
                        "listen_addresses=127.0.0.1",
                        "-c",
                        "fsync=off",
                    ])
                    .arg("-c")
                    .arg(format!(
                        "unix_socket_directories={}",
                        self.dir.path().display()
                    ))
                    .args(self.settings.iter().flat_map(|setting| ["-c", setting]))
                    .kill_on_drop(true)
                    .stdout(std::process::Stdio::null())
                    .stderr(std::process::Stdio::null())
                    .spawn()
                    .expect("postgres starts");
            // Ready, or exited (the killed cluster's backends still held its memory).
            loop {
                if let Ok(Some(_)) = postmaster.try_wait() {
                    break;
                }
                if self.accepts().await {
                    self.postmaster = Some(postmaster);
                    return;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            assert!(
                started.elapsed() < Duration::from_secs(60),
                "postgres did not start again"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    async fn accepts(&self) -> bool {
        let status = tokio::process::Command::new(self.bin.join("pg_isready"))
            .args(["-q", "-h", "127.0.0.1", "-p", &self.port.to_string()])
            .status()
            .await;
        status.is_ok_and(|status| status.success())
    }
}

impl Drop for PgCluster {
    fn drop(&mut self) {
        if let Some(postmaster) = &mut self.postmaster {
            let _ = postmaster.start_kill();
        }
    }
}

/// `PG_BIN`, else the newest `/usr/lib/postgresql/*/bin` with an `initdb`.
fn postgres_bin() -> Option<PathBuf> {
    if let Some(bin) = std::env::var_os("PG_BIN") {
        return Some(PathBuf::from(bin));
    }
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .filter_map(Result::ok)
        .filter_map(|entry| {
            let version = entry.file_name().to_str()?.parse().ok()?;
            let bin = entry.path().join("bin");
            bin.join("initdb").is_file().then_some((version, bin))
        })
        .collect();
    versions.sort();
    versions.pop().map(|(_, bin)| bin)
}

fn is_root() -> bool {
    std::process::Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|out| out.stdout.trim_ascii() == b"0")
}

/// `program`, run as the `postgres` user when this is root (Postgres refuses root).
fn as_postgres(program: &Path) -> std::process::Command {
    if is_root() {
        let mut command = std::process::Command::new("setpriv");
        command
            .args([
                "--reuid=postgres",
                "--regid=postgres",
                "--init-groups",
                "--",
            ])
            .arg(program);
        command
    } else {
        std::process::Command::new(program)
    }
}

/// A NATS server with JetStream of one test's own, on a free port, storing in a
/// directory of its own: stopped (SIGKILL, as a crash) and started again on the same port
/// and store, as the fleet's faults need. `NATS_SERVER` names the binary (default
/// `/usr/sbin/nats-server`).
#[derive(Debug)]
pub struct NatsServer {
    dir: tempfile::TempDir,
    /// The port it listens on.
    pub port: u16,
    child: Option<tokio::process::Child>,
}

impl NatsServer {
    /// Starts a server and waits until it accepts connections.
    pub async fn start() -> Self {
        let mut server = Self {
            dir: tempfile::tempdir().expect("a directory for JetStream"),
            port: free_port(),
            child: None,
        };
        server.restart().await;
        server
    }

    /// `nats://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// A client of this server (one that reconnects if the server restarts).
    pub async fn client(&self) -> async_nats::Client {
        async_nats::ConnectOptions::new()
            .retry_on_initial_connect()
            .connect(self.url())
            .await
            .expect("a NATS client")
    }

    /// Kills the server (SIGKILL) and waits for it to be gone.
    pub async fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.start_kill();
            let _ = child.wait().await;
        }
    }

    /// Starts the server again (killing a running one first), on the same port and store.
    pub async fn restart(&mut self) {
        self.kill().await;
        let binary =
            std::env::var_os("NATS_SERVER").unwrap_or_else(|| "/usr/sbin/nats-server".into());
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join("nats.log"))
            .expect("the server's log");
        let child = tokio::process::Command::new(&binary)
            .args([
                "-js",
                "-a",
                "127.0.0.1",
                "-p",
                &self.port.to_string(),
                "-sd",
            ])
            .arg(self.dir.path().join("store"))
            .stdout(log.try_clone().expect("the log, twice"))
            .stderr(log)
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|error| {
                panic!("{} does not start: {error}", Path::new(&binary).display())
            });
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(30);
        while tokio::net::TcpStream::connect(("127.0.0.1", self.port))
            .await
            .is_err()
        {
            assert!(
                Instant::now() < deadline,
                "nats-server did not listen on {}",
                self.port
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}
