//! `import-original` against a database the test builds with the original proxy's DDL
//! (from `ORIGINAL_SCHEMA.md`), at revision 006 (Bedrock keys sealed with its local key)
//! and at 008 (sealed with KMS envelopes, moto's KMS), seeded with users (active,
//! inactive, deleted), keys (active, rotating, revoked), Bedrock keys, mappings, usage rows
//! and aggregates (the NULL-key duplicates its unique key allows included).
//!
//! The original's sealing and hashing are written here from the schema facts with the
//! crates directly (AES-256-GCM, HMAC-SHA256), not with the server's code. After the
//! import: an original raw key authenticates, a Claude-Code-shaped request goes through
//! Plan and, on a 429, through Bedrock with that key's own Bedrock key and region (seen
//! at the Bedrock stand-in); the totals are equal; a second import changes nothing; a
//! dry run writes nothing. The 006 deployment moves into SQLite (this server's default),
//! the 008 one into Postgres.

use std::process::Output;

use aes_gcm::aead::{Aead, KeyInit};
use aes_gcm::{Aes256Gcm, Nonce};
use chrono::{DateTime, Duration, TimeZone, Utc};
use hmac::{Hmac, Mac};
use http::StatusCode;
use rand::RngCore;
use reference_server::standins::plan::PlanReply;
use sea_orm::{ConnectionTrait, EntityTrait, PaginatorTrait};
use sha2::{Digest, Sha256};
use usage_layer::store::sea_orm::entity::{token_usage, usage_aggregates};
use usage_tests::TestDb;
use usage_tests::process::server_binary;
use usage_tests::proxy::{Proxy, Setup, api_stream, send};
use uuid::Uuid;

const HASHER_SECRET: &str = "the-original-hasher-secret-0123456789";
const ORIGINAL_LOCAL_KEY: &str = "the original's local encryption key";
const OUR_LOCAL_KEY: &str = "our own local encryption key";
const TEAM_BEDROCK_KEY: &str = "ABSKb3JpZ2luYWwtdGVhbS1iZWRyb2NrLWtleQ==";

/// `ak_` + 43 URL-safe characters, as the original issues them.
fn raw_key() -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut bytes = [0u8; 43];
    rand::rng().fill_bytes(&mut bytes);
    let body: String = bytes
        .iter()
        .map(|b| ALPHABET[usize::from(*b) % 64] as char)
        .collect();
    format!("ak_{body}")
}

/// The original's key hash: hex HMAC-SHA256 with its hashing secret.
fn key_hash(raw: &str) -> String {
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(HASHER_SECRET.as_bytes()).unwrap();
    mac.update(raw.as_bytes());
    mac.finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// AES-256-GCM, nonce first, tag last, no associated data.
fn seal(key: &[u8; 32], plaintext: &[u8]) -> Vec<u8> {
    let mut nonce = [0u8; 12];
    rand::rng().fill_bytes(&mut nonce);
    let sealed = Aes256Gcm::new(key.into())
        .encrypt(&Nonce::from(nonce), plaintext)
        .unwrap();
    [nonce.as_slice(), &sealed].concat()
}

/// The original's local mode: the key is SHA-256 of its passphrase.
fn sealed_locally(plaintext: &str) -> Vec<u8> {
    let key: [u8; 32] = Sha256::digest(ORIGINAL_LOCAL_KEY.as_bytes()).into();
    seal(&key, plaintext.as_bytes())
}

/// The original's KMS mode: a data key from `GenerateDataKey`, the envelope
/// `len ‖ encrypted data key ‖ nonce ‖ ciphertext ‖ tag`.
async fn sealed_with_kms(kms: &aws_sdk_kms::Client, key_id: &str, plaintext: &str) -> Vec<u8> {
    let generated = kms
        .generate_data_key()
        .key_id(key_id)
        .key_spec(aws_sdk_kms::types::DataKeySpec::Aes256)
        .send()
        .await
        .unwrap();
    let data_key: [u8; 32] = generated.plaintext().unwrap().as_ref().try_into().unwrap();
    let encrypted_key = generated.ciphertext_blob().unwrap().as_ref().to_vec();
    let length = u16::try_from(encrypted_key.len()).unwrap().to_be_bytes();
    [
        length.as_slice(),
        &encrypted_key,
        &seal(&data_key, plaintext.as_bytes()),
    ]
    .concat()
}

/// The original's tables at `revision` (006: aggregates without a provider).
fn ddl(revision: &str) -> String {
    let provider = if revision == "008" {
        "provider varchar(10) NOT NULL DEFAULT 'bedrock',"
    } else {
        ""
    };
    let unique = if revision == "008" {
        "CONSTRAINT uq_usage_agg_bucket_key_prov UNIQUE (bucket_type, bucket_start, user_id, access_key_id, provider)"
    } else {
        "CONSTRAINT uq_usage_agg_bucket_key UNIQUE (bucket_type, bucket_start, user_id, access_key_id)"
    };
    format!(
        "CREATE TABLE alembic_version (version_num varchar(32) PRIMARY KEY);
         INSERT INTO alembic_version VALUES ('{revision}');
         CREATE TABLE users (
           id uuid PRIMARY KEY, name varchar(255) NOT NULL, description text,
           status varchar(20) NOT NULL DEFAULT 'active',
           created_at timestamptz NOT NULL, updated_at timestamptz NOT NULL, deleted_at timestamptz,
           monthly_budget_usd numeric(12,2), routing_strategy varchar(20) NOT NULL DEFAULT 'plan_first');
         CREATE INDEX idx_users_budget ON users (monthly_budget_usd) WHERE monthly_budget_usd IS NOT NULL;
         CREATE TABLE access_keys (
           id uuid PRIMARY KEY, user_id uuid NOT NULL REFERENCES users(id),
           key_hash varchar(64) NOT NULL UNIQUE, key_prefix varchar(12) NOT NULL,
           status varchar(20) NOT NULL DEFAULT 'active', bedrock_region varchar(32) NOT NULL,
           bedrock_model varchar(128) NOT NULL, created_at timestamptz NOT NULL,
           revoked_at timestamptz, rotation_expires_at timestamptz);
         CREATE INDEX idx_access_keys_user_id ON access_keys (user_id);
         CREATE TABLE bedrock_keys (
           access_key_id uuid PRIMARY KEY REFERENCES access_keys(id), encrypted_key bytea NOT NULL,
           key_hash varchar(64) NOT NULL, created_at timestamptz NOT NULL, rotated_at timestamptz);
         CREATE TABLE token_usage (
           id uuid PRIMARY KEY, request_id varchar(64) NOT NULL UNIQUE, timestamp timestamptz NOT NULL,
           user_id uuid NOT NULL, access_key_id uuid NOT NULL, model varchar(128) NOT NULL,
           input_tokens integer NOT NULL, output_tokens integer NOT NULL,
           cache_read_input_tokens integer, cache_creation_input_tokens integer,
           total_tokens integer NOT NULL, provider varchar(10) NOT NULL DEFAULT 'bedrock',
           is_fallback boolean NOT NULL DEFAULT false, latency_ms integer NOT NULL,
           estimated_cost_usd numeric(12,6) NOT NULL DEFAULT 0, input_cost_usd numeric(12,6) NOT NULL DEFAULT 0,
           output_cost_usd numeric(12,6) NOT NULL DEFAULT 0, cache_write_cost_usd numeric(12,6) NOT NULL DEFAULT 0,
           cache_read_cost_usd numeric(12,6) NOT NULL DEFAULT 0,
           pricing_region varchar(32) NOT NULL DEFAULT 'ap-northeast-2',
           pricing_model_id varchar(64) NOT NULL DEFAULT '', pricing_effective_date date,
           pricing_input_price_per_million numeric(12,6) NOT NULL DEFAULT 0,
           pricing_output_price_per_million numeric(12,6) NOT NULL DEFAULT 0,
           pricing_cache_write_price_per_million numeric(12,6) NOT NULL DEFAULT 0,
           pricing_cache_read_price_per_million numeric(12,6) NOT NULL DEFAULT 0);
         CREATE INDEX ix_tu_ts ON token_usage (timestamp);
         CREATE TABLE usage_aggregates (
           id uuid PRIMARY KEY, bucket_type varchar(10) NOT NULL, bucket_start timestamptz NOT NULL,
           user_id uuid NOT NULL, access_key_id uuid, {provider}
           total_requests integer NOT NULL DEFAULT 0, total_input_tokens bigint NOT NULL DEFAULT 0,
           total_output_tokens bigint NOT NULL DEFAULT 0, total_tokens bigint NOT NULL DEFAULT 0,
           total_cache_write_tokens bigint NOT NULL DEFAULT 0, total_cache_read_tokens bigint NOT NULL DEFAULT 0,
           total_input_cost_usd numeric(15,6) NOT NULL DEFAULT 0, total_output_cost_usd numeric(15,6) NOT NULL DEFAULT 0,
           total_cache_write_cost_usd numeric(15,6) NOT NULL DEFAULT 0, total_cache_read_cost_usd numeric(15,6) NOT NULL DEFAULT 0,
           total_estimated_cost_usd numeric(15,6) NOT NULL DEFAULT 0,
           {unique});
         CREATE INDEX idx_usage_aggregates_lookup ON usage_aggregates (user_id, bucket_type, bucket_start);
         CREATE TABLE model_mappings (
           id uuid PRIMARY KEY, claude_model varchar(128) NOT NULL UNIQUE,
           bedrock_model varchar(128) NOT NULL, description text,
           is_active boolean NOT NULL DEFAULT true,
           created_at timestamptz NOT NULL, updated_at timestamptz NOT NULL);
         INSERT INTO model_mappings VALUES
           ('{}', 'claude-haiku-4-5-20251001', 'global.anthropic.claude-haiku-4-5-20251001-v1:0', 'Haiku 4.5 (default)', true, now(), now()),
           ('{}', 'claude-sonnet-4-5-20250929', 'global.anthropic.claude-sonnet-4-5-20250929-v1:0', 'Sonnet 4.5 (default)', true, now(), now()),
           ('{}', 'claude-opus-4-5-20251101', 'global.anthropic.claude-opus-4-5-20251101-v1:0', 'Opus 4.5 (default)', true, now(), now());",
        Uuid::now_v7(),
        Uuid::now_v7(),
        Uuid::now_v7(),
    )
}

/// What the test seeded, to check against.
struct Seeded {
    active_key: String,
    rotating_key: String,
    revoked_key: String,
    usage_rows: u64,
    cost_micros: i64,
}

async fn exec(db: &TestDb, sql: &str) {
    db.db
        .execute_unprepared(sql)
        .await
        .unwrap_or_else(|error| panic!("{error}: {sql}"));
}

fn at(day: u32, hour: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 10 + day / 31, 1 + day % 31, hour, 0, 0)
        .unwrap()
}

/// The original's database at `revision`, its Bedrock key sealed with `bedrock_blob`.
async fn seed(original: &TestDb, revision: &str, bedrock_blob: Vec<u8>) -> Seeded {
    exec(original, &ddl(revision)).await;
    let now = Utc::now();
    let (ada, bob, gone) = (Uuid::now_v7(), Uuid::now_v7(), Uuid::now_v7());
    exec(
        original,
        &format!(
            "INSERT INTO users (id, name, description, status, created_at, updated_at, deleted_at, monthly_budget_usd, routing_strategy) VALUES
             ('{ada}', 'Ada', 'platform team', 'active', '2026-09-01T00:00:00Z', '2026-09-02T00:00:00Z', NULL, 50.00, 'plan_first'),
             ('{bob}', 'Bob', NULL, 'inactive', '2026-09-01T00:00:00Z', '2026-09-01T00:00:00Z', NULL, NULL, 'bedrock_only'),
             ('{gone}', 'Gone', NULL, 'deleted', '2026-09-01T00:00:00Z', '2026-09-05T00:00:00Z', '2026-09-05T00:00:00Z', 10.50, 'plan_first')"
        ),
    )
    .await;
    let (active_key, rotating_key, revoked_key) = (raw_key(), raw_key(), raw_key());
    let (k1, k2, k3) = (Uuid::now_v7(), Uuid::now_v7(), Uuid::now_v7());
    let expires = (now + Duration::hours(1)).to_rfc3339();
    exec(
        original,
        &format!(
            "INSERT INTO access_keys (id, user_id, key_hash, key_prefix, status, bedrock_region, bedrock_model, created_at, revoked_at, rotation_expires_at) VALUES
             ('{k1}', '{ada}', '{}', '{}', 'active', 'eu-central-1', 'unused', '2026-09-01T00:00:00Z', NULL, NULL),
             ('{k2}', '{ada}', '{}', '{}', 'rotating', 'ap-northeast-2', 'unused', '2026-08-01T00:00:00Z', NULL, '{expires}'),
             ('{k3}', '{bob}', '{}', '{}', 'revoked', 'ap-northeast-2', 'unused', '2026-08-01T00:00:00Z', '2026-08-15T00:00:00Z', NULL)",
            key_hash(&active_key),
            &active_key[..9],
            key_hash(&rotating_key),
            &rotating_key[..9],
            key_hash(&revoked_key),
            &revoked_key[..9],
        ),
    )
    .await;
    let blob: String = bedrock_blob.iter().map(|b| format!("{b:02x}")).collect();
    let plain_hash: String = Sha256::digest(TEAM_BEDROCK_KEY.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    exec(
        original,
        &format!(
            "INSERT INTO bedrock_keys VALUES ('{k1}', '\\x{blob}', '{plain_hash}', now(), NULL)"
        ),
    )
    .await;
    exec(
        original,
        "INSERT INTO model_mappings VALUES (gen_random_uuid(), 'claude-sonnet-4-20250514', \
         'eu.anthropic.claude-sonnet-4-20250514-v1:0', 'ours', false, now(), now())",
    )
    .await;

    // Usage: two months, both providers, fallbacks; 25 rows.
    let mut cost_micros = 0;
    let mut values = Vec::new();
    for i in 0..25u32 {
        let provider = if i % 3 == 0 { "plan" } else { "bedrock" };
        let key = if i % 2 == 0 { k1 } else { k2 };
        let (input, output) = (1000 + i64::from(i), 100 + i64::from(i));
        let cost = if provider == "plan" {
            0
        } else {
            input * 3 + output * 15
        };
        cost_micros += cost;
        values.push(format!(
            "(gen_random_uuid(), 'req_{i:016x}', '{}', '{ada}', '{key}', 'claude-sonnet-4-5-20250929', {input}, {output}, {}, NULL, {}, '{provider}', {}, 900, {}, {}, {}, 0, 0, '{}', 'claude-sonnet-4-5', '2025-09-29', 3, 15, 3.75, 0.3)",
            at(i * 2, 10).to_rfc3339(),
            i,
            input + output,
            provider == "bedrock" && i % 2 == 0,
            rust_decimal::Decimal::new(cost, 6),
            rust_decimal::Decimal::new(input * 3, 6),
            rust_decimal::Decimal::new(output * 15, 6),
            if provider == "plan" { "global" } else { "eu-central-1" },
        ));
    }
    exec(
        original,
        &format!(
            "INSERT INTO token_usage (id, request_id, timestamp, user_id, access_key_id, model, input_tokens, output_tokens, cache_read_input_tokens, cache_creation_input_tokens, total_tokens, provider, is_fallback, latency_ms, estimated_cost_usd, input_cost_usd, output_cost_usd, cache_write_cost_usd, cache_read_cost_usd, pricing_region, pricing_model_id, pricing_effective_date, pricing_input_price_per_million, pricing_output_price_per_million, pricing_cache_write_price_per_million, pricing_cache_read_price_per_million) VALUES {}",
            values.join(",")
        ),
    )
    .await;

    // Aggregates: a key's day, and two key-less rows of one bucket (NULLs never conflict).
    let provider_column = if revision == "008" { ", provider" } else { "" };
    let provider_value = |p: &str| {
        if revision == "008" {
            format!(", '{p}'")
        } else {
            String::new()
        }
    };
    exec(
        original,
        &format!(
            "INSERT INTO usage_aggregates (id, bucket_type, bucket_start, user_id, access_key_id{provider_column}, total_requests, total_input_tokens, total_output_tokens, total_tokens, total_estimated_cost_usd) VALUES
             (gen_random_uuid(), 'day', '2026-10-01T15:00:00Z', '{ada}', '{k1}'{}, 3, 3000, 300, 3300, 0.013500),
             (gen_random_uuid(), 'day', '2026-10-01T15:00:00Z', '{ada}', NULL{}, 2, 2000, 200, 2200, 0.009000),
             (gen_random_uuid(), 'day', '2026-10-01T15:00:00Z', '{ada}', NULL{}, 1, 1000, 100, 1100, 0.004500)",
            provider_value("bedrock"),
            provider_value("bedrock"),
            provider_value("bedrock"),
        ),
    )
    .await;
    Seeded {
        active_key,
        rotating_key,
        revoked_key,
        usage_rows: 25,
        cost_micros,
    }
}

fn import(original: &TestDb, ours: &TestDb, state: &std::path::Path, extra: &[String]) -> Output {
    let output = std::process::Command::new(server_binary())
        .arg("import-original")
        .arg(format!("--from={}", original.url))
        .arg(format!("--database-url={}", ours.url))
        .arg(format!("--state-dir={}", state.display()))
        .arg(format!("--key-hasher-secret={HASHER_SECRET}"))
        .arg(format!("--local-encryption-key={OUR_LOCAL_KEY}"))
        .args(["--usage-timezone=Asia/Seoul", "--usage-week-start=sunday"])
        .args(extra)
        .output()
        .expect("import-original runs");
    eprintln!(
        "import {extra:?}:\n{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// Everything of the import's that the test checks, for one revision and one sealing.
async fn the_original_deployment_moves_over(
    revision: &str,
    sealing: Sealing,
    ours: Option<TestDb>,
) {
    let Some(original) = TestDb::postgres_unmigrated().await else {
        return;
    };
    let Some(ours) = ours else {
        return;
    };
    let (blob, original_args) = match &sealing {
        Sealing::Local => (
            sealed_locally(TEAM_BEDROCK_KEY),
            vec![format!(
                "--original-local-encryption-key={ORIGINAL_LOCAL_KEY}"
            )],
        ),
        Sealing::Kms {
            client,
            key_id,
            url,
        } => (
            sealed_with_kms(client, key_id, TEAM_BEDROCK_KEY).await,
            vec![
                format!("--original-kms-key-id={key_id}"),
                format!("--original-kms-endpoint-url={url}"),
            ],
        ),
    };
    let seeded = seed(&original, revision, blob).await;
    let state = tempfile::tempdir().unwrap();

    // A dry run reads, plans and writes nothing.
    let dry = import(
        &original,
        &ours,
        state.path(),
        &[original_args.clone(), vec!["--dry-run".into()]].concat(),
    );
    assert!(dry.status.success());
    assert!(stdout(&dry).contains("would bring"), "{}", stdout(&dry));
    assert_eq!(
        token_usage::Entity::find().count(&ours.db).await.unwrap(),
        0
    );

    // Without the original's secret, its Bedrock key does not open: nothing is written.
    let wrong = import(
        &original,
        &ours,
        state.path(),
        &["--original-local-encryption-key=wrong".to_owned()],
    );
    assert!(!wrong.status.success());
    assert!(String::from_utf8_lossy(&wrong.stderr).contains("does not open"));
    assert_eq!(
        token_usage::Entity::find().count(&ours.db).await.unwrap(),
        0
    );

    let first = import(&original, &ours, state.path(), &original_args);
    assert!(first.status.success(), "the import succeeds");
    let said = stdout(&first);
    assert!(said.contains("totals equal on both sides"), "{said}");
    assert!(said.contains(&format!("original database at revision {revision}")));
    assert!(said.contains("duplicate key-less aggregates"), "{said}");

    let rows = token_usage::Entity::find().all(&ours.db).await.unwrap();
    assert_eq!(rows.len() as u64, seeded.usage_rows);
    assert_eq!(
        rows.iter()
            .map(|row| row.estimated_cost_micros)
            .sum::<i64>(),
        seeded.cost_micros
    );
    assert!(
        rows.iter()
            .any(|row| row.fallback_from.as_deref() == Some("plan"))
    );
    assert!(
        rows.iter()
            .all(|row| row.pricing_input_price_per_million_micros == Some(3_000_000))
    );
    let aggregates = usage_aggregates::Entity::find()
        .all(&ours.db)
        .await
        .unwrap();
    assert_eq!(aggregates.len(), 2, "the key-less duplicates are one row");
    let keyless = aggregates
        .iter()
        .find(|a| a.access_key_id.is_empty())
        .unwrap();
    assert_eq!(
        (keyless.total_requests, keyless.total_estimated_cost_micros),
        (3, 13_500)
    );
    assert!(aggregates.iter().all(|a| a.provider == "bedrock"));

    // A second run changes nothing.
    let second = import(&original, &ours, state.path(), &original_args);
    assert!(second.status.success());
    let said = stdout(&second);
    for line in said.lines().filter(|line| line.contains("brought")) {
        assert!(line.contains("brought        0"), "{line}");
    }
    assert_eq!(
        token_usage::Entity::find().count(&ours.db).await.unwrap(),
        seeded.usage_rows
    );
    assert_eq!(
        usage_aggregates::Entity::find()
            .count(&ours.db)
            .await
            .unwrap(),
        2
    );

    // The server on the imported database: the original's keys work.
    let setup = Setup {
        database_url: Some(ours.url.clone()),
        bedrock_endpoint_suffix: "/{region}",
        extra_args: vec![
            format!("--key-hasher-secret={HASHER_SECRET}"),
            format!("--local-encryption-key={OUR_LOCAL_KEY}"),
            "--usage-timezone=Asia/Seoul".to_owned(),
            "--usage-week-start=sunday".to_owned(),
        ],
        ..Setup::default()
    };
    let proxy = Proxy::start(PlanReply::Stream(api_stream("basic_response.txt")), setup).await;
    let claude_code = |key: &str| {
        let url = format!("{}/ak/{key}/v1/messages?beta=true", proxy.origin());
        async move {
            send(
                "POST",
                url,
                &[
                    ("content-type", "application/json"),
                    ("anthropic-version", "2023-06-01"),
                    ("anthropic-beta", "claude-code-20250219,interleaved-thinking-2025-05-14"),
                    ("user-agent", "claude-cli/2.0.14 (external, cli)"),
                    ("x-app", "cli"),
                ],
                r#"{"model":"claude-sonnet-4-5-20250929","max_tokens":32000,"stream":true,"system":[{"type":"text","text":"You are Claude Code."}],"messages":[{"role":"user","content":[{"type":"text","text":"hi"}]}],"metadata":{"user_id":"user_abc_account__session_1"}}"#,
            )
            .await
        }
    };
    let (status, body) = claude_code(&seeded.active_key).await;
    assert_eq!(
        status,
        StatusCode::OK,
        "through Plan: {}",
        String::from_utf8_lossy(&body)
    );
    assert_eq!(proxy.plan.request_count(), 1);
    proxy.plan.answer_with(PlanReply::rate_limited(0));
    let (status, _) = claude_code(&seeded.active_key).await;
    assert_eq!(status, StatusCode::OK, "through Bedrock");
    let sent = proxy.bedrock.requests();
    let sent = sent.last().expect("Bedrock was called");
    assert!(
        sent.path.starts_with("/eu-central-1/model/"),
        "the key's region: {}",
        sent.path
    );
    assert_eq!(
        sent.headers["authorization"],
        format!("Bearer {TEAM_BEDROCK_KEY}").as_str(),
        "the key's own Bedrock key"
    );
    let (status, _) = claude_code(&seeded.rotating_key).await;
    assert_eq!(
        status,
        StatusCode::OK,
        "a rotating key works until its expiry"
    );
    let (status, _) = claude_code(&seeded.revoked_key).await;
    assert_eq!(
        status,
        StatusCode::UNAUTHORIZED,
        "a revoked key stays revoked"
    );
    drop(proxy);
    ours.close().await;
    original.close().await;
}

enum Sealing {
    Local,
    Kms {
        client: aws_sdk_kms::Client,
        key_id: String,
        url: String,
    },
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deployment_at_006_with_local_sealing_moves_over() {
    // Into this server's default database, SQLite.
    the_original_deployment_moves_over("006", Sealing::Local, Some(TestDb::sqlite().await)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deployment_at_008_with_kms_sealing_moves_over() {
    let Some(url) = usage_tests::moto_url("KMS") else {
        return;
    };
    let client = usage_tests::moto_kms(&url);
    let key_id = client
        .create_key()
        .send()
        .await
        .unwrap()
        .key_metadata()
        .unwrap()
        .key_id()
        .to_owned();
    the_original_deployment_moves_over(
        "008",
        Sealing::Kms {
            client,
            key_id,
            url,
        },
        TestDb::postgres().await,
    )
    .await;
}
