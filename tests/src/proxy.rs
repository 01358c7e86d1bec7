//! The reference server under test: started in-process on loopback with a Plan stand-in and
//! a Bedrock stand-in (that the real AWS SDK talks to) behind it, one user and one access
//! key, and the usage rows it wrote, read back after a clean stop.

use std::path::PathBuf;

use bytes::Bytes;
use clap::Parser;
use http::{Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use reference_server::config::{Cli, Command, Routing, StateArgs};
use reference_server::keys::{KeyHasher, KeyStore};
use reference_server::server::{Server, open_state, start};
use reference_server::standins::bedrock::{BedrockStandIn, Reply, stream_reply_for};
use reference_server::standins::plan::{PlanReply, PlanStandIn};
use sea_orm::{Database, EntityTrait, QueryOrder};
use usage_layer::store::sea_orm::entity::token_usage;
use uuid::Uuid;

/// The directory of the shared SSE fixtures (`USAGE_FIXTURES_DIR`, else `../shared/fixtures`
/// beside the repository).
pub fn fixtures_dir() -> PathBuf {
    std::env::var_os("USAGE_FIXTURES_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/fixtures"))
}

/// One of the official SDK's SSE fixtures, by file name.
pub fn fixture(name: &str) -> Bytes {
    let path = fixtures_dir().join("sse/anthropic-sdk-python").join(name);
    let bytes = std::fs::read(&path)
        .unwrap_or_else(|e| panic!("fixture {} cannot be read: {e}", path.display()));
    Bytes::from(bytes)
}

/// A fixture as the API sends it. The fixtures' last event (`message_stop`) lacks the blank
/// line that ends an SSE event; the API always sends it, and a client that follows the SSE
/// standard strictly (the TypeScript SDK) drops an unterminated event at the end of the
/// stream — and then reports "stream ended without producing a Message".
pub fn api_stream(name: &str) -> Bytes {
    let raw = fixture(name);
    Bytes::from([raw.trim_ascii_end(), b"\n\n"].concat())
}

/// `basic_response.txt` (as the API sends it) with `extra` more text deltas before its
/// block ends: a stream a client can leave in the middle (the Plan stand-in sends an
/// event a millisecond).
pub fn long_stream(extra: usize) -> Bytes {
    let mut long = api_stream("basic_response.txt").to_vec();
    let delta = b"event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":\" more\"}}\n\n";
    let marker = b"event: content_block_stop";
    let at = long
        .windows(marker.len())
        .position(|w| w == marker)
        .expect("a content_block_stop");
    for _ in 0..extra {
        long.splice(at..at, delta.iter().copied());
    }
    Bytes::from(long)
}

/// The file names of all SSE fixtures, sorted.
pub fn fixture_names() -> Vec<String> {
    let dir = fixtures_dir().join("sse/anthropic-sdk-python");
    let mut names: Vec<String> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("fixtures at {} cannot be listed: {e}", dir.display()))
        .map(|entry| {
            entry
                .expect("directory entry")
                .file_name()
                .to_string_lossy()
                .into_owned()
        })
        .filter(|name| name.ends_with(".txt"))
        .collect();
    names.sort();
    names
}

/// The Bedrock API key the server is given (a secret: it must never be logged).
pub const BEDROCK_API_KEY: &str = "bedrock-api-key-7Qz9XvK2mW4pL8nR";

/// The Anthropic API key [`Proxy::post`] sends as `x-api-key` (forwarded to Plan; a secret).
pub const CLIENT_API_KEY: &str = "sk-ant-api03-client-Jr5tYb3Nq8Hc1Fw6";

/// How to start the server.
#[derive(Debug)]
pub struct Setup {
    /// Plan's URL instead of the stand-in's (e.g. a port nobody listens on).
    pub plan_url: Option<String>,
    /// `--max-request-bytes`.
    pub max_request_bytes: usize,
    /// The test user's routing.
    pub routing: Routing,
    /// The test user's Bedrock budget.
    pub budget_usd: Option<rust_decimal::Decimal>,
    /// `--plan-header-timeout`, seconds.
    pub plan_header_timeout_secs: u64,
    /// More `serve` arguments (`--name=value`).
    pub extra_args: Vec<String>,
    /// The server's database (e.g. a [`TestDb`](crate::TestDb)'s); a new SQLite file when `None`.
    pub database_url: Option<String>,
    /// Appended to the Bedrock stand-in's URL for `--bedrock-endpoint-url` (`/{region}`:
    /// the stand-in sees each request's region in its path).
    pub bedrock_endpoint_suffix: &'static str,
    /// No `--bedrock-api-key`: the server signs Bedrock requests with SigV4 credentials
    /// from the AWS default chain.
    pub bedrock_sigv4: bool,
}

impl Default for Setup {
    fn default() -> Self {
        Self {
            plan_url: None,
            max_request_bytes: 1 << 20,
            routing: Routing::PlanFirst,
            budget_usd: None,
            plan_header_timeout_secs: 5,
            extra_args: Vec::new(),
            database_url: None,
            bedrock_endpoint_suffix: "",
            bedrock_sigv4: false,
        }
    }
}

/// A running reference server with its stand-ins, on a SQLite file of its own.
#[derive(Debug)]
pub struct Proxy {
    /// The server; `None` once stopped.
    pub server: Option<Server>,
    /// The Plan stand-in behind it.
    pub plan: PlanStandIn,
    /// The Bedrock stand-in behind it.
    pub bedrock: BedrockStandIn,
    /// The server's database.
    pub database_url: String,
    /// The test user's access key, in clear.
    pub key: String,
    /// The test user.
    pub user: Uuid,
    state: StateArgs,
    _dir: tempfile::TempDir,
}

async fn new_user(
    state: &StateArgs,
    budget_usd: Option<rust_decimal::Decimal>,
    routing: Routing,
) -> (Uuid, String) {
    let (db, hasher): (_, KeyHasher) = open_state(state).await.expect("state");
    let user = reference_server::users::create(&db, "test user", budget_usd, routing)
        .await
        .expect("user");
    let (_, key) = KeyStore::new(db.clone(), hasher)
        .issue(user, None)
        .await
        .expect("key");
    db.close().await.expect("close");
    (user, key.expose().to_owned())
}

/// The Bedrock stand-in the tests use: it streams a message of 1,200 input and 345 output
/// tokens.
pub async fn bedrock_stand_in() -> BedrockStandIn {
    let bedrock = BedrockStandIn::start().await;
    bedrock.respond_with(Reply::Stream(stream_reply_for(
        "claude-sonnet-4-5",
        1200,
        345,
        "Hello from Bedrock",
    )));
    bedrock
}

impl Proxy {
    /// Starts the stand-ins (Plan answering `plan_reply`, Bedrock streaming 1,200 in and 345
    /// out) and the server, and issues the test user a key.
    pub async fn start(plan_reply: PlanReply, setup: Setup) -> Self {
        let plan = PlanStandIn::start(plan_reply).await;
        let bedrock = bedrock_stand_in().await;
        let dir = tempfile::tempdir().expect("temporary directory");
        let database_url = setup.database_url.clone().unwrap_or_else(|| {
            format!(
                "sqlite://{}?mode=rwc",
                dir.path().join("proxy.db").display()
            )
        });
        let args = vec![
            "reference-server".to_owned(),
            "serve".to_owned(),
            format!("--database-url={database_url}"),
            format!("--state-dir={}", dir.path().display()),
            "--bind=127.0.0.1:0".to_owned(),
            format!(
                "--plan-api-url={}",
                setup.plan_url.clone().unwrap_or_else(|| plan.url())
            ),
            format!(
                "--bedrock-endpoint-url={}{}",
                bedrock.endpoint_url(),
                setup.bedrock_endpoint_suffix
            ),
            "--bedrock-region=us-east-1".to_owned(),
            format!("--plan-header-timeout={}", setup.plan_header_timeout_secs),
            "--usage-flush-interval=1".to_owned(),
            format!("--max-request-bytes={}", setup.max_request_bytes),
        ];
        let server_key =
            (!setup.bedrock_sigv4).then(|| format!("--bedrock-api-key={BEDROCK_API_KEY}"));
        let args = args.into_iter().chain(server_key).chain(setup.extra_args);
        let Command::Serve(serve) = Cli::parse_from(args).command else {
            unreachable!("a serve command")
        };
        let state = serve.state.clone();
        let (user, key) = new_user(&state, setup.budget_usd, setup.routing).await;
        let server = start(*serve).await.expect("server");
        Self {
            server: Some(server),
            plan,
            bedrock,
            database_url,
            key,
            user,
            state,
            _dir: dir,
        }
    }

    /// Another user (plan-first, no budget) with a key of its own: the user and the key.
    pub async fn new_user(&self) -> (Uuid, String) {
        new_user(&self.state, None, Routing::PlanFirst).await
    }

    /// The base URL a client is given: `http://ADDR/ak/KEY`.
    pub fn base_url(&self) -> String {
        format!(
            "http://{}/ak/{}",
            self.server.as_ref().expect("running").addr,
            self.key
        )
    }

    /// `http://ADDR`: the server itself.
    pub fn origin(&self) -> String {
        format!("http://{}", self.server.as_ref().expect("running").addr)
    }

    /// POSTs a Messages `body` with access key `key` and the headers an Anthropic client
    /// sends: the status and the whole answer.
    pub async fn post_as(&self, key: &str, body: &str) -> (StatusCode, Bytes) {
        send(
            "POST",
            format!("{}/ak/{key}/v1/messages", self.origin()),
            &[
                ("content-type", "application/json"),
                ("anthropic-version", "2023-06-01"),
            ],
            body,
        )
        .await
    }

    /// An admin API call with `token`: the status and the JSON answer (`null` if none).
    pub async fn admin(
        &self,
        token: &str,
        method: &str,
        path: &str,
        body: &str,
    ) -> (StatusCode, serde_json::Value) {
        let (status, body) = send(
            method,
            format!("{}{path}", self.origin()),
            &[
                ("authorization", &format!("Bearer {token}")),
                ("content-type", "application/json"),
            ],
            body,
        )
        .await;
        (
            status,
            serde_json::from_slice(&body).unwrap_or(serde_json::Value::Null),
        )
    }

    /// The server's state directory (generated secrets, the usage spool).
    pub fn state_dir(&self) -> &std::path::Path {
        &self.state.state_dir
    }

    /// `base_url()` + `path`.
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base_url())
    }

    /// POSTs `body` with the headers an Anthropic client sends; the whole answer.
    pub async fn post(
        &self,
        path: &str,
        body: &'static str,
    ) -> (StatusCode, http::HeaderMap, Bytes) {
        let response = client()
            .request(
                Request::post(self.url(path))
                    .header("content-type", "application/json")
                    .header("anthropic-version", "2023-06-01")
                    .header("anthropic-beta", "interleaved-thinking-2025-05-14")
                    .header("x-api-key", CLIENT_API_KEY)
                    .header("accept-encoding", "gzip")
                    .body(Full::new(Bytes::from_static(body.as_bytes())))
                    .expect("request"),
            )
            .await
            .expect("response");
        let (parts, body) = response.into_parts();
        (
            parts.status,
            parts.headers,
            body.collect().await.expect("body").to_bytes(),
        )
    }

    /// Stops the server (writing all usage) and reads the rows, in insertion order.
    pub async fn rows(&mut self) -> Vec<token_usage::Model> {
        self.server
            .take()
            .expect("running")
            .stop()
            .await
            .expect("clean stop");
        let db = Database::connect(&self.database_url)
            .await
            .expect("database");
        token_usage::Entity::find()
            .order_by_asc(token_usage::Column::Id)
            .all(&db)
            .await
            .expect("rows")
    }
}

/// Sends `method url` with `headers` and `body`: the status and the whole answer.
pub async fn send(
    method: &str,
    url: impl AsRef<str>,
    headers: &[(&str, &str)],
    body: &str,
) -> (StatusCode, Bytes) {
    let (status, _, body) = exchange(method, url, headers, body).await;
    (status, body)
}

/// Sends `method url` with `headers` and `body`: the status, headers and whole answer.
pub async fn exchange(
    method: &str,
    url: impl AsRef<str>,
    headers: &[(&str, &str)],
    body: &str,
) -> (StatusCode, http::HeaderMap, Bytes) {
    let mut request = Request::builder().method(method).uri(url.as_ref());
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let response = client()
        .request(
            request
                .body(Full::new(Bytes::from(body.to_owned())))
                .expect("request"),
        )
        .await
        .expect("response");
    let (parts, body) = response.into_parts();
    let body = body.collect().await.expect("body").to_bytes();
    (parts.status, parts.headers, body)
}

/// A plain HTTP/1 client.
pub fn client() -> Client<HttpConnector, Full<Bytes>> {
    Client::builder(TokioExecutor::new()).build_http()
}
