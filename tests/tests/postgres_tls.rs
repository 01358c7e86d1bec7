//! Postgres over TLS: a cluster of the test's own with `ssl = on`, a CA the test makes,
//! and `pg_hba.conf` rejecting every connection that is not TLS — so a client that gets
//! in at all spoke TLS.
//!
//! The server runs its flow on it with `sslmode=verify-full` (users, keys, a stream
//! through Plan, a Plan 429 served by Bedrock, the usage rows and aggregates, the admin
//! API); `verify-full` against a host the certificate does not name, and `verify-ca`
//! with another CA, fail at once with an error that says why; the original proxy's
//! `postgresql+asyncpg://…?ssl=…` URL is read.

use std::path::{Path, PathBuf};
use std::process::Output;

use reference_server::standins::plan::PlanReply;
use sea_orm::{ConnectionTrait, Database};
use usage_layer::store::Buckets;
use usage_tests::process::{PgCluster, TestCa, server_binary};
use usage_tests::proxy::{Proxy, Setup, api_stream, send};

const ADMIN_TOKEN: &str = "tls-admin-token-0123456789";

const STREAM: &str = r#"{"model":"claude-sonnet-4-5-20250929","max_tokens":64,"stream":true,"messages":[{"role":"user","content":"Hi"}]}"#;

/// The CA's certificate, in a file for clients.
fn write_ca(dir: &Path, name: &str, ca: &TestCa) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, &ca.ca_pem).expect("the CA file");
    path
}

/// A TLS-only cluster whose certificate names `localhost`, and its CA's file.
async fn tls_cluster() -> Option<(PgCluster, PathBuf)> {
    let ca = TestCa::new(&["localhost"]);
    let cluster = PgCluster::start_tls(&ca).await?;
    let ca_file = write_ca(cluster.dir(), "ca.pem", &ca);
    Some((cluster, ca_file))
}

/// `reference-server users create` on `url` with `args`: what it printed, and how it ended.
fn users_create(url: &str, state: &Path, args: &[String]) -> Output {
    std::process::Command::new(server_binary())
        .args(["users", "create", "--name=tls"])
        .arg(format!("--database-url={url}"))
        .arg(format!("--state-dir={}", state.display()))
        .args(args)
        .env("RUST_LOG", "info")
        .output()
        .expect("the command runs")
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_whole_flow_runs_on_postgres_over_tls_with_verify_full() {
    let Some((cluster, ca_file)) = tls_cluster().await else {
        return;
    };
    let port = cluster.port;

    // Without TLS the cluster lets nobody in.
    let plain = format!("postgres://postgres@127.0.0.1:{port}/postgres?sslmode=disable");
    let refused = Database::connect(&plain)
        .await
        .expect_err("no TLS, no entry");
    assert!(
        refused.to_string().contains("no encryption") || refused.to_string().contains("pg_hba"),
        "{refused}"
    );

    let url = format!(
        "postgres://postgres@localhost:{port}/postgres?sslmode=verify-full&sslrootcert={}",
        ca_file.display()
    );
    let mut proxy = Proxy::start(
        PlanReply::Stream(api_stream("basic_response.txt")),
        Setup {
            database_url: Some(url.clone()),
            extra_args: vec![format!("--admin-token={ADMIN_TOKEN}")],
            ..Setup::default()
        },
    )
    .await;

    let (status, _, body) = proxy.post("/v1/messages", STREAM).await;
    assert_eq!(status, 200, "{body:?}");
    proxy.plan.answer_with(PlanReply::rate_limited(0));
    let (status, _, body) = proxy.post("/v1/messages", STREAM).await;
    assert_eq!(status, 200, "Bedrock served the Plan 429: {body:?}");
    assert_eq!(proxy.bedrock.request_count(), 1);

    let server = proxy.server.as_ref().expect("running").addr;
    let (status, users) = send(
        "GET",
        format!("http://{server}/admin/users"),
        &[("authorization", &format!("Bearer {ADMIN_TOKEN}"))],
        "",
    )
    .await;
    assert_eq!(status, 200, "{users:?}");
    let users: serde_json::Value = serde_json::from_slice(&users).unwrap();
    assert!(
        users.to_string().contains(&proxy.user.to_string()),
        "{users}"
    );

    let rows = proxy.rows().await;
    let providers: Vec<&str> = rows.iter().map(|row| row.provider.as_str()).collect();
    assert_eq!(providers, ["plan", "bedrock"]);
    assert!(rows.iter().all(|row| row.outcome == "completed"));
    assert_eq!(rows[1].fallback_reason.as_deref(), Some("rate_limited"));

    let db = Database::connect(&url)
        .await
        .expect("a verify-full connection");
    let ssl = db
        .query_one_raw(sea_orm::Statement::from_string(
            db.get_database_backend(),
            "SELECT ssl::text AS ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
        ))
        .await
        .unwrap()
        .expect("a row");
    assert_eq!(ssl.try_get::<String>("", "ssl").unwrap(), "true");
    let test_db = usage_tests::TestDb::attach(db, url);
    usage_tests::assert_aggregates_match_rows(&test_db, &Buckets::default()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_certificate_that_does_not_fit_fails_at_once_and_says_why() {
    let Some((cluster, ca_file)) = tls_cluster().await else {
        return;
    };
    let other_ca = write_ca(cluster.dir(), "other-ca.pem", &TestCa::new(&["localhost"]));
    let state = tempfile::tempdir().unwrap();
    let port = cluster.port;
    let flags = |mode: &str, root: &Path| {
        vec![
            format!("--database-sslmode={mode}"),
            format!("--database-sslrootcert={}", root.display()),
        ]
    };

    // The certificate names `localhost`, not 127.0.0.1.
    let by_address = format!("postgres://postgres@127.0.0.1:{port}/postgres");
    let wrong_host = users_create(&by_address, state.path(), &flags("verify-full", &ca_file));
    assert!(!wrong_host.status.success());
    let said = stderr(&wrong_host);
    eprintln!("verify-full against 127.0.0.1: {said}");
    assert!(
        said.contains("TLS") && said.contains("certificate") && said.contains("127.0.0.1"),
        "{said}"
    );

    // verify-ca checks the chain, not the name: the same address is fine.
    let chain_only = users_create(&by_address, state.path(), &flags("verify-ca", &ca_file));
    assert!(chain_only.status.success(), "{}", stderr(&chain_only));

    // Another CA: refused.
    let by_name = format!("postgres://postgres@localhost:{port}/postgres");
    let wrong_ca = users_create(&by_name, state.path(), &flags("verify-ca", &other_ca));
    assert!(!wrong_ca.status.success());
    let said = stderr(&wrong_ca);
    assert!(
        said.contains("TLS") && said.contains("certificate"),
        "{said}"
    );

    // `serve` stops too, rather than waiting for a database it will never trust.
    let serve = std::process::Command::new(server_binary())
        .args(["serve", "--bind=127.0.0.1:0", "--bedrock-enabled=false"])
        .arg(format!("--database-url={by_address}"))
        .arg(format!("--state-dir={}", state.path().display()))
        .args(flags("verify-full", &ca_file))
        .output()
        .expect("serve runs");
    assert!(!serve.status.success());
    assert!(stderr(&serve).contains("certificate"), "{}", stderr(&serve));

    // A root certificate file that is not there is said before connecting.
    let missing = users_create(
        &by_name,
        state.path(),
        &flags("verify-full", Path::new("/nonexistent/ca.pem")),
    );
    assert!(!missing.status.success());
    assert!(
        stderr(&missing).contains("/nonexistent/ca.pem"),
        "{}",
        stderr(&missing)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_original_proxys_asyncpg_url_is_read() {
    let Some((cluster, ca_file)) = tls_cluster().await else {
        return;
    };
    let state = tempfile::tempdir().unwrap();
    let url = format!(
        "postgresql+asyncpg://postgres@localhost:{}/postgres?ssl=verify-full&sslrootcert={}",
        cluster.port,
        ca_file.display()
    );
    let created = users_create(&url, state.path(), &[]);
    assert!(created.status.success(), "{}", stderr(&created));
    let said = stderr(&created);
    assert_eq!(
        said.matches("SQLAlchemy").count(),
        1,
        "one line says so: {said}"
    );
    assert!(!said.contains("ignoring unrecognized"), "{said}");
}
