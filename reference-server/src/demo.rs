//! `reference-server demo`: the whole flow on one machine, with no credentials.
//!
//! Starts local stand-ins for the Anthropic API and Bedrock (speaking their real wire
//! formats), the proxy on a SQLite file, a user and a key; sends a Plan stream, a request
//! that Plan rate-limits (so it falls back to Bedrock), and one more during the key's
//! cooldown; then prints the usage the proxy recorded.

use std::io::Write;
use std::path::Path;

use anyhow::Context;
use bytes::Bytes;
use clap::Parser;
use http::Request;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter, QueryOrder};
use usage_layer::store::sea_orm::entity::token_usage;

use crate::config::{Cli, Command, Routing};
use crate::keys::KeyStore;
use crate::server::{open_state, start};
use crate::standins::bedrock::{BedrockStandIn, Reply, stream_reply_for};
use crate::standins::plan::{PlanReply, PlanStandIn};

const PLAN_STREAM: &str = concat!(
    "event: message_start\n",
    "data: {\"type\":\"message_start\",\"message\":{\"id\":\"msg_demo\",\"type\":\"message\",\"role\":\"assistant\",\"model\":\"claude-sonnet-4-5-20250929\",\"content\":[],\"stop_reason\":null,\"stop_sequence\":null,\"usage\":{\"input_tokens\":2048,\"cache_read_input_tokens\":12000,\"cache_creation_input_tokens\":0,\"output_tokens\":1}}}\n\n",
    "event: content_block_start\n",
    "data: {\"type\":\"content_block_start\",\"index\":0,\"content_block\":{\"type\":\"text\",\"text\":\"\"}}\n\n",
    "event: content_block_delta\n",
    "data: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":\"Hello from Plan\"}}\n\n",
    "event: content_block_stop\n",
    "data: {\"type\":\"content_block_stop\",\"index\":0}\n\n",
    "event: message_delta\n",
    "data: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"end_turn\",\"stop_sequence\":null},\"usage\":{\"output_tokens\":512}}\n\n",
    "event: message_stop\n",
    "data: {\"type\":\"message_stop\"}\n\n",
);

const REQUEST: &str = r#"{"model":"claude-sonnet-4-5-20250929","max_tokens":1024,"stream":true,"messages":[{"role":"user","content":"Hello"}]}"#;

/// Runs the demo with its state (database, secrets) in `dir`; with `serve`, the server
/// stays up on that address afterwards, console open, until Ctrl-C.
pub async fn run(dir: &Path, keep_serving: Option<std::net::SocketAddr>) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let plan = PlanStandIn::start(PlanReply::Stream(Bytes::from_static(
        PLAN_STREAM.as_bytes(),
    )))
    .await;
    plan.queue([
        PlanReply::Stream(Bytes::from_static(PLAN_STREAM.as_bytes())),
        PlanReply::rate_limited(60),
    ]);
    let bedrock = BedrockStandIn::start().await;
    bedrock.respond_with(Reply::Stream(stream_reply_for(
        "claude-sonnet-4-5",
        1800,
        240,
        "Hello from Bedrock",
    )));

    let database_url = format!("sqlite://{}?mode=rwc", dir.join("demo.db").display());
    let args = [
        "reference-server".to_owned(),
        "serve".to_owned(),
        format!("--database-url={database_url}"),
        format!("--state-dir={}", dir.display()),
        format!(
            "--bind={}",
            keep_serving.map_or_else(|| "127.0.0.1:0".to_owned(), |addr| addr.to_string())
        ),
        format!("--plan-api-url={}", plan.url()),
        format!("--bedrock-endpoint-url={}", bedrock.endpoint_url()),
        "--bedrock-api-key=demo-only-not-a-real-key".to_owned(),
    ];
    let Command::Serve(serve) = Cli::try_parse_from(args)?.command else {
        unreachable!("the arguments above name `serve`")
    };
    let (db, hasher) = open_state(&serve.state).await?;
    let user = crate::users::create(&db, "demo user", None, Routing::PlanFirst).await?;
    let (_, key) = KeyStore::new(db.clone(), hasher)
        .issue(user, Some("demo".into()))
        .await?;
    let server = start(*serve).await?;
    let url = format!(
        "http://{}/ak/{}/v1/messages?beta=true",
        server.addr,
        key.expose()
    );

    let mut out = std::io::stdout().lock();
    let client = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
    for step in [
        "Plan answers",
        "Plan rate-limits: Bedrock answers",
        "the key cools down: Bedrock answers",
    ] {
        let response = client
            .request(
                Request::post(&url)
                    .header("content-type", "application/json")
                    .header("anthropic-version", "2023-06-01")
                    .body(Full::new(Bytes::from_static(REQUEST.as_bytes())))?,
            )
            .await?;
        let status = response.status();
        let body = response.into_body().collect().await?.to_bytes();
        writeln!(out, "{step}: HTTP {status}, {} bytes of SSE", body.len())?;
    }
    let server = if keep_serving.is_some() {
        // The records reach the database within the writer's flush interval.
        wait_for_rows(&db, &user.to_string(), 3).await;
        Some(server)
    } else {
        server.stop().await?;
        None
    };

    writeln!(
        out,
        "\nusage recorded in {}:",
        dir.join("demo.db").display()
    )?;
    writeln!(
        out,
        "{:<8} {:<30} {:>7} {:>7} {:>10} {:<10} fallback",
        "provider", "model", "input", "output", "cost $", "outcome"
    )?;
    // This run's user only: the directory may hold earlier runs.
    let rows = token_usage::Entity::find()
        .filter(token_usage::Column::UserId.eq(user.to_string()))
        .order_by_asc(token_usage::Column::Id)
        .all(&db)
        .await?;
    for row in rows {
        writeln!(
            out,
            "{:<8} {:<30} {:>7} {:>7} {:>10} {:<10} {}",
            row.provider,
            row.model,
            row.input_tokens,
            row.output_tokens,
            rust_decimal::Decimal::new(row.estimated_cost_micros, 6),
            row.outcome,
            row.fallback_reason.as_deref().unwrap_or("-"),
        )?;
    }
    let Some(server) = server else {
        return Ok(());
    };
    let password = crate::admins::generate_password();
    crate::admins::set_password(&db, DEMO_ADMIN, crate::admins::Role::Admin, &password).await?;
    writeln!(
        out,
        "\nthe admin console: http://{}/console/\n  name:     {DEMO_ADMIN}\n  password: {password}  (new at every run)\n\
         the proxy, for Claude Code: ANTHROPIC_BASE_URL=http://{}/ak/{}\n\
         Ctrl-C stops the server.",
        server.addr,
        server.addr,
        key.expose(),
    )?;
    out.flush()?;
    drop(out);
    tokio::signal::ctrl_c().await?;
    server.stop().await?;
    drop((plan, bedrock));
    Ok(())
}

/// The console account the demo makes.
const DEMO_ADMIN: &str = "admin";

/// Waits (a few seconds at most) until `user` has `rows` usage rows.
async fn wait_for_rows(db: &sea_orm::DatabaseConnection, user: &str, rows: u64) {
    use sea_orm::PaginatorTrait;
    for _ in 0..100 {
        let written = token_usage::Entity::find()
            .filter(token_usage::Column::UserId.eq(user))
            .count(db)
            .await
            .unwrap_or_default();
        if written >= rows {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}
