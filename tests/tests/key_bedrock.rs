//! An access key's own Bedrock: its region (the endpoint and the prices) and its Bedrock
//! API key, sealed at rest with the local key or a KMS envelope (moto's KMS, started by
//! the test script), linked, replaced and unlinked through the admin API — and checked at
//! the Bedrock stand-in, which sees each request's region in its path and its bearer token
//! in `authorization`.

use http::StatusCode;
use reference_server::standins::plan::PlanReply;
use sea_orm::{Database, EntityTrait};
use serde_json::Value;
use usage_tests::proxy::{BEDROCK_API_KEY, Proxy, Setup};

const ADMIN_TOKEN: &str = "key-bedrock-admin-token-0123456789";
const TEAM_KEY: &str = "ABSKdGVhbS1hLWJlZHJvY2sta2V5LTAwMQ==";
const NEW_TEAM_KEY: &str = "ABSKdGVhbS1hLWJlZHJvY2sta2V5LTAwMg==";

const STREAM: &str = r#"{"model":"claude-sonnet-4-5-20250929","max_tokens":64,"stream":true,"messages":[{"role":"user","content":"Hi"}]}"#;

async fn admin(proxy: &Proxy, method: &str, path: &str, body: &str) -> (StatusCode, Value) {
    let (status, json) = proxy.admin(ADMIN_TOKEN, method, path, body).await;
    let text = json.to_string();
    assert!(
        !text.contains(TEAM_KEY) && !text.contains(NEW_TEAM_KEY),
        "an admin answer shows a Bedrock key: {text}"
    );
    (status, json)
}

/// A stream request with `key`, answered by Bedrock (Plan answers 429): the stand-in's
/// view of it — the path's region and the bearer token.
async fn through_bedrock(proxy: &Proxy, key: &str) -> (String, String) {
    let before = proxy.bedrock.request_count();
    let (status, body) = proxy.post_as(key, STREAM).await;
    assert_eq!(status, StatusCode::OK, "{}", String::from_utf8_lossy(&body));
    let requests = proxy.bedrock.requests();
    assert_eq!(requests.len(), before + 1, "Bedrock served it");
    let sent = requests.last().unwrap();
    let region = sent
        .path
        .trim_start_matches('/')
        .split('/')
        .next()
        .unwrap()
        .to_owned();
    let token = sent.headers["authorization"]
        .to_str()
        .unwrap()
        .trim_start_matches("Bearer ")
        .to_owned();
    (region, token)
}

async fn key_id(proxy: &Proxy) -> String {
    let (status, keys) = admin(
        proxy,
        "GET",
        &format!("/admin/users/{}/keys", proxy.user),
        "",
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    keys["keys"][0]["id"].as_str().unwrap().to_owned()
}

/// The flow, for either way of sealing: returns the sealed rows' `encryption`.
async fn a_keys_own_bedrock_region_and_credential(extra_args: Vec<String>) -> Vec<String> {
    let mut args = vec![format!("--admin-token={ADMIN_TOKEN}")];
    args.extend(extra_args);
    let setup = Setup {
        bedrock_endpoint_suffix: "/{region}",
        extra_args: args,
        ..Setup::default()
    };
    let mut proxy = Proxy::start(PlanReply::rate_limited(0), setup).await;
    let (_, other_key) = proxy.new_user().await;
    let id = key_id(&proxy).await;
    let key = proxy.key.clone();

    // The server's own first.
    assert_eq!(
        through_bedrock(&proxy, &key).await,
        ("us-east-1".to_owned(), BEDROCK_API_KEY.to_owned())
    );

    let (status, changed) = admin(
        &proxy,
        "PATCH",
        &format!("/admin/keys/{id}"),
        r#"{"bedrock_region":"eu-central-1"}"#,
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{changed}");
    assert_eq!(changed["bedrock_region"], "eu-central-1");
    assert_eq!(changed["bedrock_credential"], Value::Null);
    let (status, linked) = admin(
        &proxy,
        "PUT",
        &format!("/admin/keys/{id}/bedrock-credential"),
        &format!(r#"{{"api_key":"{TEAM_KEY}"}}"#),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{linked}");
    let fingerprint = linked["bedrock_credential"]["fingerprint"]
        .as_str()
        .unwrap();
    assert_eq!(
        fingerprint,
        &reference_server::crypto::fingerprint(TEAM_KEY)[..16]
    );

    assert_eq!(
        through_bedrock(&proxy, &key).await,
        ("eu-central-1".to_owned(), TEAM_KEY.to_owned()),
        "the key's own region and Bedrock key"
    );
    assert_eq!(
        through_bedrock(&proxy, &other_key).await,
        ("us-east-1".to_owned(), BEDROCK_API_KEY.to_owned()),
        "another key keeps the server's"
    );

    // Replaced: the next request uses the new one.
    let (status, replaced) = admin(
        &proxy,
        "PUT",
        &format!("/admin/keys/{id}/bedrock-credential"),
        &format!(r#"{{"api_key":"{NEW_TEAM_KEY}"}}"#),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_ne!(replaced["bedrock_credential"]["fingerprint"], fingerprint);
    assert_eq!(through_bedrock(&proxy, &key).await.1, NEW_TEAM_KEY);

    // A rotation's key inherits both.
    let (status, rotated) = admin(&proxy, "POST", &format!("/admin/keys/{id}/rotate"), "").await;
    assert_eq!(status, StatusCode::CREATED, "{rotated}");
    let new_key = rotated["key"].as_str().unwrap();
    assert_eq!(
        through_bedrock(&proxy, new_key).await,
        ("eu-central-1".to_owned(), NEW_TEAM_KEY.to_owned())
    );

    // At rest, only ciphertext.
    let db = Database::connect(&proxy.database_url).await.unwrap();
    let rows = reference_server::entity::bedrock_credentials::Entity::find()
        .all(&db)
        .await
        .unwrap();
    assert_eq!(rows.len(), 2, "the old key's and its successor's");
    for row in &rows {
        let blob = String::from_utf8_lossy(&row.encrypted);
        assert!(!blob.contains(NEW_TEAM_KEY) && !blob.contains("ABSK"));
    }
    let encryption = rows.iter().map(|row| row.encryption.clone()).collect();

    // Unlinked: the server's credential again, in the key's region.
    let (status, unlinked) = admin(
        &proxy,
        "DELETE",
        &format!("/admin/keys/{id}/bedrock-credential"),
        "",
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(unlinked["bedrock_credential"], Value::Null);
    assert_eq!(
        through_bedrock(&proxy, &key).await,
        ("eu-central-1".to_owned(), BEDROCK_API_KEY.to_owned())
    );

    for (body, parameter) in [
        (r#"{"bedrock_region":"Europe"}"#, "bedrock_region"),
        (r#"{"bedrock_region":"eu-central"}"#, "bedrock_region"),
        (r#"{"region":"eu-central-1"}"#, "body"),
    ] {
        let (status, json) = admin(&proxy, "PATCH", &format!("/admin/keys/{id}"), body).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}: {json}");
        assert_eq!(json["parameter"], parameter);
    }
    let (status, json) = admin(
        &proxy,
        "PUT",
        &format!("/admin/keys/{id}/bedrock-credential"),
        r#"{"api_key":"two words"}"#,
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(json["parameter"], "api_key");

    // The rows are priced in the key's region.
    let rows = proxy.rows().await;
    let regions: Vec<&str> = rows
        .iter()
        .map(|row| row.region.as_deref().unwrap())
        .collect();
    assert_eq!(
        regions,
        [
            "us-east-1",
            "eu-central-1",
            "us-east-1",
            "eu-central-1",
            "eu-central-1",
            "eu-central-1"
        ]
    );
    encryption
}

#[tokio::test]
async fn a_keys_own_bedrock_sealed_with_the_local_key() {
    let sealed = a_keys_own_bedrock_region_and_credential(vec![
        "--local-encryption-key=a test passphrase".to_owned(),
    ])
    .await;
    assert_eq!(sealed, ["local", "local"]);
}

#[tokio::test]
async fn a_keys_own_bedrock_sealed_with_a_kms_envelope() {
    let Some(moto) = usage_tests::moto_url("KMS") else {
        return;
    };
    let kms = usage_tests::moto_kms(&moto);
    let created = kms.create_key().send().await.expect("a KMS key at moto");
    let key_id = created.key_metadata().unwrap().key_id().to_owned();
    let sealed = a_keys_own_bedrock_region_and_credential(vec![
        format!("--kms-key-id={key_id}"),
        format!("--kms-endpoint-url={moto}"),
    ])
    .await;
    assert_eq!(sealed, ["kms", "kms"]);
}

/// The server signs with SigV4 (credentials from the default chain): a key's own bearer
/// token is preferred for its requests, and the others' signatures name their region.
#[tokio::test]
async fn a_keys_bearer_token_goes_over_the_servers_sigv4_credentials() {
    if std::env::var_os("AWS_ACCESS_KEY_ID").is_none() {
        assert!(
            std::env::var_os("CI").is_none(),
            "AWS_ACCESS_KEY_ID is not set (the test script sets a dummy one)"
        );
        eprintln!("SKIPPED (SigV4): AWS_ACCESS_KEY_ID is not set");
        return;
    }
    let setup = Setup {
        bedrock_endpoint_suffix: "/{region}",
        bedrock_sigv4: true,
        extra_args: vec![format!("--admin-token={ADMIN_TOKEN}")],
        ..Setup::default()
    };
    let proxy = Proxy::start(PlanReply::rate_limited(0), setup).await;
    let id = key_id(&proxy).await;
    let key = proxy.key.clone();
    let (region, signature) = through_bedrock(&proxy, &key).await;
    assert_eq!(region, "us-east-1");
    assert!(
        signature.starts_with("AWS4-HMAC-SHA256 ")
            && signature.contains("/us-east-1/bedrock/aws4_request"),
        "{signature}"
    );
    admin(
        &proxy,
        "PATCH",
        &format!("/admin/keys/{id}"),
        r#"{"bedrock_region":"ap-northeast-2"}"#,
    )
    .await;
    let (region, signature) = through_bedrock(&proxy, &key).await;
    assert_eq!(region, "ap-northeast-2");
    assert!(
        signature.contains("/ap-northeast-2/bedrock/aws4_request"),
        "signed for the key's region: {signature}"
    );
    admin(
        &proxy,
        "PUT",
        &format!("/admin/keys/{id}/bedrock-credential"),
        &format!(r#"{{"api_key":"{TEAM_KEY}"}}"#),
    )
    .await;
    assert_eq!(
        through_bedrock(&proxy, &key).await,
        ("ap-northeast-2".to_owned(), TEAM_KEY.to_owned())
    );
}
