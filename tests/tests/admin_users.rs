//! The admin API's users, keys, budgets and prices, against a running server over loopback
//! with its SQLite database.

use std::sync::Arc;

use bytes::Bytes;
use chrono::{DateTime, Datelike, Duration, TimeZone, Utc};
use clap::Parser;
use http::{Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use reference_server::config::{Cli, Command, ServeArgs};
use reference_server::keys::KeyStore;
use reference_server::server::{Server, open_state, start};
use serde_json::{Value, json};
use usage_layer::pricing::PriceCatalog;
use usage_layer::sink::UsageStore;
use usage_layer::store::Buckets;
use usage_layer::store::sea_orm::SeaOrmStore;
use usage_layer::{Caller, Provider};
use usage_tests::{record, usage};
use uuid::Uuid;

const TOKEN: &str = "test-admin-token-0123456789";

struct Admin {
    server: Server,
    serve: ServeArgs,
    _dir: tempfile::TempDir,
}

impl Admin {
    async fn start() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let args = [
            "reference-server".to_owned(),
            "serve".to_owned(),
            format!(
                "--database-url=sqlite://{}?mode=rwc",
                dir.path().join("admin.db").display()
            ),
            format!("--state-dir={}", dir.path().display()),
            "--bind=127.0.0.1:0".to_owned(),
            // Never called: these tests use the admin API only.
            "--plan-api-url=http://127.0.0.1:9".to_owned(),
            "--bedrock-enabled=false".to_owned(),
            format!("--admin-token={TOKEN}"),
        ];
        let Command::Serve(serve) = Cli::parse_from(args).command else {
            unreachable!()
        };
        let server = start((*serve).clone()).await.unwrap();
        Self {
            server,
            serve: *serve,
            _dir: dir,
        }
    }

    /// A request with `Authorization: Bearer <token>` when `token` is given.
    async fn send(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<&str>,
    ) -> (StatusCode, Value) {
        let mut request = Request::builder()
            .method(method)
            .uri(format!("http://{}{path}", self.server.addr));
        if let Some(token) = token {
            request = request.header("authorization", format!("Bearer {token}"));
        }
        if body.is_some() {
            request = request.header("content-type", "application/json");
        }
        let body = Full::new(Bytes::from(body.unwrap_or_default().to_owned()));
        let response = client().request(request.body(body).unwrap()).await.unwrap();
        let status = response.status();
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        let json = serde_json::from_slice(&bytes).unwrap_or_else(|_| {
            panic!("{status}: not JSON: {:?}", String::from_utf8_lossy(&bytes))
        });
        (status, json)
    }

    /// A request with the admin token.
    async fn call(&self, method: Method, path: &str, body: Option<&str>) -> (StatusCode, Value) {
        self.send(method, path, Some(TOKEN), body).await
    }

    /// A request that must succeed with `expected`.
    async fn ok(
        &self,
        method: Method,
        path: &str,
        body: Option<&str>,
        expected: StatusCode,
    ) -> Value {
        let (status, json) = self.call(method.clone(), path, body).await;
        assert_eq!(status, expected, "{method} {path} {body:?}: {json}");
        json
    }

    async fn create_user(&self, body: Value) -> Value {
        self.ok(
            Method::POST,
            "/admin/users",
            Some(&body.to_string()),
            StatusCode::CREATED,
        )
        .await
    }

    /// The server's keys, through a second connection to its database.
    async fn key_store(&self) -> KeyStore {
        let (db, hasher) = open_state(&self.serve.state).await.unwrap();
        KeyStore::new(db, hasher)
    }

    /// A usage store on the server's database, priced and bucketed as the server does.
    async fn usage_store(&self) -> SeaOrmStore {
        let (db, _) = open_state(&self.serve.state).await.unwrap();
        SeaOrmStore::new(db, Arc::new(PriceCatalog::defaults()), Buckets::default())
    }
}

fn client() -> Client<HttpConnector, Full<Bytes>> {
    Client::builder(TokioExecutor::new()).build_http()
}

fn id(json: &Value) -> &str {
    json["id"].as_str().unwrap()
}

fn time(json: &Value) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(json.as_str().unwrap())
        .unwrap()
        .with_timezone(&Utc)
}

fn names(list: &Value) -> Vec<&str> {
    list["users"]
        .as_array()
        .unwrap()
        .iter()
        .map(|user| user["name"].as_str().unwrap())
        .collect()
}

#[tokio::test]
async fn the_admin_token_is_required() {
    let admin = Admin::start().await;
    for token in [None, Some("wrong-token"), Some("")] {
        for (method, path) in [
            (Method::GET, "/admin/users"),
            (Method::POST, "/admin/users"),
            (Method::GET, "/admin/pricing"),
            (
                Method::POST,
                "/admin/keys/0190b6b4-0000-7000-8000-000000000000/revoke",
            ),
        ] {
            let (status, json) = admin
                .send(method.clone(), path, token, Some(r#"{"name":"x"}"#))
                .await;
            assert_eq!(
                status,
                StatusCode::UNAUTHORIZED,
                "{method} {path} {token:?}"
            );
            assert!(json["detail"].as_str().unwrap().contains("admin token"));
        }
    }
    let list = admin
        .ok(Method::GET, "/admin/users", None, StatusCode::OK)
        .await;
    assert_eq!(
        list,
        json!({ "users": [] }),
        "nothing was created without the token"
    );
}

#[tokio::test]
async fn users_round_trip() {
    let admin = Admin::start().await;

    let ada = admin
        .create_user(json!({ "name": "  Ada  ", "monthly_budget_usd": "50" }))
        .await;
    assert_eq!(ada["name"], "Ada");
    assert_eq!(ada["is_active"], true);
    assert_eq!(ada["monthly_budget_usd"], "50.000000");
    assert_eq!(ada["routing_strategy"], "plan_first");
    assert_eq!(ada["created_at"], ada["updated_at"]);
    Uuid::parse_str(id(&ada)).unwrap();
    let fields: Vec<&String> = ada.as_object().unwrap().keys().collect();
    assert_eq!(
        fields,
        [
            "created_at",
            "deleted_at",
            "description",
            "id",
            "is_active",
            "monthly_budget_usd",
            "name",
            "routing_strategy",
            "status",
            "updated_at"
        ]
    );

    let bob = admin
        .create_user(json!({ "name": "Bob", "monthly_budget_usd": 12.5, "routing_strategy": "bedrock_only" }))
        .await;
    assert_eq!(bob["monthly_budget_usd"], "12.500000");
    assert_eq!(bob["routing_strategy"], "bedrock_only");
    let cy = admin
        .create_user(json!({ "name": "Cy", "monthly_budget_usd": null }))
        .await;
    assert_eq!(cy["monthly_budget_usd"], Value::Null);
    let di = admin.create_user(json!({ "name": "Di" })).await;
    assert_eq!(di["monthly_budget_usd"], Value::Null);

    let list = admin
        .ok(Method::GET, "/admin/users", None, StatusCode::OK)
        .await;
    assert_eq!(
        names(&list),
        ["Ada", "Bob", "Cy", "Di"],
        "in order of creation"
    );
    assert_eq!(list["users"][0], ada);

    let ada_path = format!("/admin/users/{}", id(&ada));
    assert_eq!(
        admin.ok(Method::GET, &ada_path, None, StatusCode::OK).await,
        ada
    );

    // Absent fields stay as they are.
    tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    let renamed = admin
        .ok(
            Method::PATCH,
            &ada_path,
            Some(r#"{"name":"Ada L."}"#),
            StatusCode::OK,
        )
        .await;
    assert_eq!(renamed["name"], "Ada L.");
    assert_eq!(renamed["monthly_budget_usd"], "50.000000");
    assert_eq!(renamed["routing_strategy"], "plan_first");
    assert_eq!(renamed["created_at"], ada["created_at"]);
    assert!(time(&renamed["updated_at"]) > time(&ada["updated_at"]));

    let changed = admin
        .ok(
            Method::PATCH,
            &ada_path,
            Some(r#"{"monthly_budget_usd":7.25,"routing_strategy":"bedrock_only"}"#),
            StatusCode::OK,
        )
        .await;
    assert_eq!(changed["monthly_budget_usd"], "7.250000");
    assert_eq!(changed["routing_strategy"], "bedrock_only");
    assert_eq!(changed["name"], "Ada L.");

    // `null` clears the budget.
    let unlimited = admin
        .ok(
            Method::PATCH,
            &ada_path,
            Some(r#"{"monthly_budget_usd":null}"#),
            StatusCode::OK,
        )
        .await;
    assert_eq!(unlimited["monthly_budget_usd"], Value::Null);
    assert_eq!(unlimited["routing_strategy"], "bedrock_only");
    let empty = admin
        .ok(Method::PATCH, &ada_path, Some("{}"), StatusCode::OK)
        .await;
    assert_eq!(empty["monthly_budget_usd"], Value::Null);
    assert_eq!(empty["name"], "Ada L.");

    let bob_path = format!("/admin/users/{}", id(&bob));
    let deactivated = admin
        .ok(
            Method::POST,
            &format!("{bob_path}/deactivate"),
            None,
            StatusCode::OK,
        )
        .await;
    assert_eq!(deactivated["is_active"], false);
    assert_eq!(deactivated["monthly_budget_usd"], "12.500000");
    assert!(time(&deactivated["updated_at"]) > time(&bob["updated_at"]));
    assert_eq!(
        admin.ok(Method::GET, &bob_path, None, StatusCode::OK).await,
        deactivated
    );

    let active = admin
        .ok(Method::GET, "/admin/users", None, StatusCode::OK)
        .await;
    assert_eq!(names(&active), ["Ada L.", "Cy", "Di"]);
    for query in ["include_inactive=true", "include_inactive=true&other=1"] {
        let all = admin
            .ok(
                Method::GET,
                &format!("/admin/users?{query}"),
                None,
                StatusCode::OK,
            )
            .await;
        assert_eq!(names(&all), ["Ada L.", "Bob", "Cy", "Di"], "{query}");
    }
    let explicit = admin
        .ok(
            Method::GET,
            "/admin/users?include_inactive=false",
            None,
            StatusCode::OK,
        )
        .await;
    assert_eq!(explicit, active);

    let reactivated = admin
        .ok(
            Method::PATCH,
            &bob_path,
            Some(r#"{"is_active":true}"#),
            StatusCode::OK,
        )
        .await;
    assert_eq!(reactivated["is_active"], true);
}

#[tokio::test]
async fn bad_requests_are_400_naming_the_parameter() {
    let admin = Admin::start().await;
    let user = admin
        .create_user(json!({ "name": "Ada", "monthly_budget_usd": "1" }))
        .await;
    let user_path = format!("/admin/users/{}", id(&user));
    let budget_path = format!("{user_path}/budget");
    let keys_path = format!("{user_path}/keys");
    let long_name = format!(r#"{{"name":"{}"}}"#, "n".repeat(201));

    let (get, post, patch, put) = (Method::GET, Method::POST, Method::PATCH, Method::PUT);
    let users = "/admin/users";
    let money = "monthly_budget_usd";
    // Method, path, body; then the parameter named and a fragment of the message.
    #[rustfmt::skip]
    let cases: Vec<(&Method, &str, Option<&str>, &str, &str)> = vec![
        (&get,   "/admin/users/not-a-uuid",      None, "user_id", "UUID"),
        (&patch, "/admin/users/123",             Some("{}"), "user_id", "UUID"),
        (&post,  "/admin/users/123/deactivate",  None, "user_id", "UUID"),
        (&get,   "/admin/users/123/budget",      None, "user_id", "UUID"),
        (&get,   "/admin/users/123/keys",        None, "user_id", "UUID"),
        (&post,  "/admin/users/123/keys",        None, "user_id", "UUID"),
        (&post,  "/admin/keys/123/revoke",       None, "key_id", "UUID"),
        (&get,   "/admin/users?include_inactive=maybe", None, "include_inactive", "true or false"),
        (&post,  users, Some(r#"{"name":"x","monthly_budget_usd":"-1"}"#), money, "negative"),
        (&post,  users, Some(r#"{"name":"x","monthly_budget_usd":-0.5}"#), money, "negative"),
        (&post,  users, Some(r#"{"name":"x","monthly_budget_usd":"1.1234567"}"#), money, "6 decimal places"),
        (&post,  users, Some(r#"{"name":"x","monthly_budget_usd":1.1234567}"#), money, "6 decimal places"),
        (&post,  users, Some(r#"{"name":"x","monthly_budget_usd":"lots"}"#), money, "decimal"),
        (&post,  users, Some(r#"{"name":"x","monthly_budget_usd":true}"#), money, "amount"),
        (&post,  users, Some(r#"{"name":"x","routing_strategy":"fastest"}"#), "routing_strategy", "bedrock_only"),
        (&post,  users, Some(r#"{"name":""}"#), "name", "empty"),
        (&post,  users, Some(r#"{"name":"   "}"#), "name", "empty"),
        (&post,  users, Some(&long_name), "name", "200"),
        (&post,  users, Some(r#"{"name":"nul\u0000name"}"#), "name", "control characters"),
        (&patch, &user_path, Some(r#"{"name":"two\nlines"}"#), "name", "control characters"),
        (&post,  &keys_path, Some(r#"{"name":"k\u0000"}"#), "name", "control characters"),
        (&post,  users, Some(r#"{"name":"x","colour":"red"}"#), "body", "unknown field `colour`"),
        (&post,  users, Some(r#"{"monthly_budget_usd":"1"}"#), "body", "missing field `name`"),
        (&post,  users, Some(r#"{"name":"x""#), "body", "EOF"),
        (&post,  users, Some("<user/>"), "body", "expected value"),
        (&post,  users, None, "body", "EOF"),
        (&patch, &user_path, Some(r#"{"name":""}"#), "name", "empty"),
        (&patch, &user_path, Some(r#"{"monthly_budget_usd":"0.0000001"}"#), money, "6 decimal places"),
        (&patch, &user_path, Some(r#"{"routing_strategy":"PLAN_FIRST"}"#), "routing_strategy", "plan_first"),
        (&patch, &user_path, Some(r#"{"is_active":"yes"}"#), "body", "invalid type"),
        (&patch, &user_path, Some(r#"{"id":"x"}"#), "body", "unknown field `id`"),
        (&patch, &user_path, Some(r#"{"name":null}"#), "body", "invalid type: null"),
        (&patch, &user_path, Some(r#"{"is_active":null}"#), "body", "invalid type: null"),
        (&patch, &user_path, Some("[}"), "body", "expected value"),
        (&put,   &budget_path, Some(r#"{"monthly_budget_usd":"-0.01"}"#), money, "negative"),
        (&put,   &budget_path, Some(r#"{"monthly_budget_usd":5.0000001}"#), money, "6 decimal places"),
        (&put,   &budget_path, Some("{}"), "body", "missing field `monthly_budget_usd`"),
        (&put,   &budget_path, Some(r#"{"monthly_budget_usd":1,"extra":1}"#), "body", "unknown field `extra`"),
        (&post,  &keys_path, Some(r#"{"name":""}"#), "name", "empty"),
        (&post,  &keys_path, Some(r#"{"label":"x"}"#), "body", "unknown field `label`"),
        (&post,  &keys_path, Some("nope"), "body", "expected"),
    ];
    for (method, path, body, parameter, fragment) in cases {
        let (status, json) = admin.call(method.clone(), path, body).await;
        let detail = json["detail"].as_str().unwrap_or_default();
        assert_eq!(
            status,
            StatusCode::BAD_REQUEST,
            "{method} {path} {body:?}: {json}"
        );
        assert_eq!(
            json["parameter"], parameter,
            "{method} {path} {body:?}: {json}"
        );
        assert!(
            detail.starts_with(&format!("{parameter}: ")) && detail.contains(fragment),
            "{method} {path} {body:?}: {detail:?} should name {parameter} and say {fragment:?}"
        );
    }

    // Nothing was changed by the refused requests.
    let after = admin
        .ok(Method::GET, &user_path, None, StatusCode::OK)
        .await;
    assert_eq!(after, user);
    let list = admin
        .ok(Method::GET, "/admin/users", None, StatusCode::OK)
        .await;
    assert_eq!(names(&list), ["Ada"]);
    let keys = admin
        .ok(Method::GET, &keys_path, None, StatusCode::OK)
        .await;
    assert_eq!(keys, json!({ "keys": [] }));
}

#[tokio::test]
async fn unknown_ids_are_404() {
    let admin = Admin::start().await;
    let nobody = Uuid::now_v7();
    let user = format!("/admin/users/{nobody}");
    let cases = [
        (Method::GET, user.clone(), None),
        (Method::PATCH, user.clone(), Some(r#"{"name":"x"}"#)),
        (Method::POST, format!("{user}/deactivate"), None),
        (Method::GET, format!("{user}/budget"), None),
        (
            Method::PUT,
            format!("{user}/budget"),
            Some(r#"{"monthly_budget_usd":"1"}"#),
        ),
        (Method::GET, format!("{user}/keys"), None),
        (Method::POST, format!("{user}/keys"), None),
        (Method::POST, format!("/admin/keys/{nobody}/revoke"), None),
    ];
    for (method, path, body) in cases {
        let (status, json) = admin.call(method.clone(), &path, body).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{method} {path}: {json}");
        assert!(
            json["detail"]
                .as_str()
                .unwrap()
                .contains(&nobody.to_string()),
            "{json}"
        );
    }
}

/// Rotating the hashing secret: started with the new secret and the old one as "previous",
/// keys issued under the old one still work and are re-hashed on first use; once the old
/// secret is dropped, re-hashed keys go on working and the old secret alone opens nothing.
#[tokio::test]
async fn the_hashing_secret_rotates_without_reissuing_keys() {
    let admin = Admin::start().await;
    let user = admin.create_user(json!({ "name": "Ada" })).await;
    let keys_path = format!("/admin/users/{}/keys", id(&user));
    let used = admin
        .ok(Method::POST, &keys_path, None, StatusCode::CREATED)
        .await;
    let unused = admin
        .ok(Method::POST, &keys_path, None, StatusCode::CREATED)
        .await;
    let revoked = admin
        .ok(Method::POST, &keys_path, None, StatusCode::CREATED)
        .await;
    admin
        .ok(
            Method::POST,
            &format!("/admin/keys/{}/revoke", id(&revoked)),
            None,
            StatusCode::OK,
        )
        .await;
    let old = std::fs::read_to_string(admin.serve.state.state_dir.join("key-hasher-secret"))
        .unwrap()
        .trim()
        .to_owned();
    let store_with = |secret: &str, previous: &[&str]| {
        let mut state = admin.serve.state.clone();
        state.key_hasher_secret = Some(secret.parse().unwrap());
        state.key_hasher_previous_secrets =
            previous.iter().map(|old| old.parse().unwrap()).collect();
        async move {
            let (db, hasher) = open_state(&state).await.unwrap();
            KeyStore::new(db, hasher)
        }
    };
    let key = |json: &Value| json["key"].as_str().unwrap().to_owned();

    let rotating = store_with("the-new-secret-0123456789abcdef", &[&old]).await;
    let found = rotating.authenticate(&key(&used)).await.unwrap();
    assert_eq!(
        found.map(|a| a.key_id.to_string()),
        Some(id(&used).to_owned())
    );
    assert!(
        rotating
            .authenticate(&key(&revoked))
            .await
            .unwrap()
            .is_none(),
        "still revoked"
    );

    let rotated = store_with("the-new-secret-0123456789abcdef", &[]).await;
    assert!(
        rotated.authenticate(&key(&used)).await.unwrap().is_some(),
        "re-hashed on use"
    );
    assert!(
        rotated.authenticate(&key(&unused)).await.unwrap().is_none(),
        "a key not used during the rotation needs the old secret"
    );
    let old_only = store_with(&old, &[]).await;
    assert!(old_only.authenticate(&key(&used)).await.unwrap().is_none());
    assert!(
        old_only
            .authenticate(&key(&unused))
            .await
            .unwrap()
            .is_some()
    );

    // From the environment: comma-separated, never shown.
    let args = [
        "reference-server",
        "serve",
        "--key-hasher-previous-secrets=one,two",
    ];
    let Command::Serve(serve) = Cli::parse_from(args).command else {
        unreachable!()
    };
    assert_eq!(serve.state.key_hasher_previous_secrets.len(), 2);
    assert!(!format!("{serve:?}").contains("one,two"));
}

#[tokio::test]
async fn keys_are_shown_once_and_revocation_is_idempotent() {
    let admin = Admin::start().await;
    let keys = admin.key_store().await;
    let user = admin.create_user(json!({ "name": "Ada" })).await;
    let keys_path = format!("/admin/users/{}/keys", id(&user));

    let laptop = admin
        .ok(
            Method::POST,
            &keys_path,
            Some(r#"{"name":"laptop"}"#),
            StatusCode::CREATED,
        )
        .await;
    let unnamed = admin
        .ok(Method::POST, &keys_path, None, StatusCode::CREATED)
        .await;
    let null_name = admin
        .ok(
            Method::POST,
            &keys_path,
            Some(r#"{"name":null}"#),
            StatusCode::CREATED,
        )
        .await;
    assert_eq!(laptop["name"], "laptop");
    assert_eq!(unnamed["name"], Value::Null);
    assert_eq!(null_name["name"], Value::Null);
    assert_eq!(laptop["user_id"], user["id"]);

    let raw: Vec<&str> = [&laptop, &unnamed, &null_name]
        .iter()
        .map(|issued| issued["key"].as_str().unwrap())
        .collect();
    for (issued, key) in [&laptop, &unnamed, &null_name].iter().zip(&raw) {
        assert!(key.starts_with("ak_"));
        assert!(key.starts_with(issued["key_prefix"].as_str().unwrap()));
        assert!(issued["key_prefix"].as_str().unwrap().len() < key.len());
        let caller = keys
            .authenticate(key)
            .await
            .unwrap()
            .expect("the raw key works");
        assert_eq!(caller.key_id.to_string(), id(issued));
        assert_eq!(caller.user.id.to_string(), id(&user));
    }

    let list = admin
        .ok(Method::GET, &keys_path, None, StatusCode::OK)
        .await;
    let listed = list["keys"].as_array().unwrap();
    assert_eq!(listed.len(), 3);
    assert_eq!(listed[0]["id"], laptop["id"], "oldest first");
    let fields: Vec<&String> = listed[0].as_object().unwrap().keys().collect();
    assert_eq!(
        fields,
        [
            "bedrock_credential",
            "bedrock_region",
            "created_at",
            "expires_at",
            "id",
            "is_active",
            "key_prefix",
            "last_used_at",
            "name",
            "replaced_by",
            "revoked_at",
            "status",
            "user_id"
        ]
    );
    for key in &raw {
        let text = list.to_string();
        assert!(!text.contains(key), "a list never shows a key");
        assert!(!text.contains(&key[12..]), "nor more than its prefix");
    }
    assert_eq!(listed[0]["is_active"], true);
    assert_eq!(listed[0]["status"], "active");
    assert_eq!(listed[0]["revoked_at"], Value::Null);
    assert_eq!(listed[0]["key_prefix"], laptop["key_prefix"]);
    assert_eq!(listed[0]["created_at"], laptop["created_at"]);

    let revoke = format!("/admin/keys/{}/revoke", id(&laptop));
    let revoked = admin.ok(Method::POST, &revoke, None, StatusCode::OK).await;
    assert_eq!(revoked["is_active"], false);
    assert_eq!(revoked["status"], "revoked");
    let revoked_at = time(&revoked["revoked_at"]);
    assert!(revoked_at >= time(&laptop["created_at"]));
    assert!(
        keys.authenticate(raw[0]).await.unwrap().is_none(),
        "revoked"
    );
    assert!(
        keys.authenticate(raw[1]).await.unwrap().is_some(),
        "the others still work"
    );

    tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    let again = admin.ok(Method::POST, &revoke, None, StatusCode::OK).await;
    assert_eq!(again, revoked, "revoking twice keeps the first revocation");
    let list = admin
        .ok(Method::GET, &keys_path, None, StatusCode::OK)
        .await;
    assert_eq!(list["keys"][0], revoked);
    assert_eq!(list["keys"][1]["is_active"], true);

    // Deactivating the user stops all their keys; an inactive user gets no new ones.
    admin
        .ok(
            Method::POST,
            &format!("/admin/users/{}/deactivate", id(&user)),
            None,
            StatusCode::OK,
        )
        .await;
    for key in &raw {
        assert!(keys.authenticate(key).await.unwrap().is_none());
    }
    let (status, json) = admin.call(Method::POST, &keys_path, None).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{json}");
    assert_eq!(json["parameter"], "user_id");
    assert!(json["detail"].as_str().unwrap().contains("inactive"));
}

#[tokio::test]
async fn the_budget_counts_this_months_bedrock_usage() {
    let admin = Admin::start().await;
    let user = admin
        .create_user(json!({ "name": "Ada", "monthly_budget_usd": "12.5" }))
        .await;
    let user_id = Uuid::parse_str(id(&user)).unwrap();
    let budget_path = format!("/admin/users/{user_id}/budget");

    let fresh = admin
        .ok(Method::GET, &budget_path, None, StatusCode::OK)
        .await;
    let now = Utc::now();
    let month_start = Utc
        .with_ymd_and_hms(now.year(), now.month(), 1, 0, 0, 0)
        .unwrap();
    let next_month = if now.month() == 12 {
        Utc.with_ymd_and_hms(now.year() + 1, 1, 1, 0, 0, 0).unwrap()
    } else {
        Utc.with_ymd_and_hms(now.year(), now.month() + 1, 1, 0, 0, 0)
            .unwrap()
    };
    assert_eq!(time(&fresh["period_start"]), month_start);
    assert_eq!(time(&fresh["period_end"]), next_month);
    assert_eq!(
        fresh,
        json!({
            "user_id": user_id.to_string(),
            "monthly_budget_usd": "12.500000",
            "current_usage_usd": "0.000000",
            "remaining_usd": "12.500000",
            "percentage_used": 0.0,
            "period_start": fresh["period_start"],
            "period_end": fresh["period_end"],
        })
    );

    let ada = Caller::user(user_id).with_access_key(Uuid::now_v7());
    let someone_else = Caller::user(Uuid::now_v7()).with_access_key(Uuid::now_v7());
    let sonnet = "us.anthropic.claude-sonnet-4-5-20250929-v1:0";
    // 1M input × $3/M + 100k output × $15/M + 20k cache reads × $0.30/M = $4.506.
    let counted = record(
        Provider::BEDROCK,
        ada.clone(),
        sonnet,
        usage(1_000_000, 100_000, 0, 20_000),
        now,
    );
    let ignored = [
        // Plan is a subscription: it never counts.
        record(
            Provider::PLAN,
            ada.clone(),
            "claude-sonnet-4-5",
            usage(2_000_000, 0, 0, 0),
            now,
        ),
        // Last month's spend is behind the reset (any date minus 32 days is in an earlier month).
        record(
            Provider::BEDROCK,
            ada.clone(),
            sonnet,
            usage(3_000_000, 0, 0, 0),
            now - Duration::days(32),
        ),
        record(
            Provider::BEDROCK,
            someone_else,
            sonnet,
            usage(4_000_000, 0, 0, 0),
            now,
        ),
    ];
    let store = admin.usage_store().await;
    store.write_batch(&[counted]).await.unwrap();
    store.write_batch(&ignored).await.unwrap();

    let spent = admin
        .ok(Method::GET, &budget_path, None, StatusCode::OK)
        .await;
    assert_eq!(spent["current_usage_usd"], "4.506000");
    assert_eq!(spent["remaining_usd"], "7.994000");
    assert_eq!(spent["percentage_used"], json!(36.05), "36.048 rounded");

    // Over the limit: nothing remains, the percentage goes past 100.
    let over = admin
        .ok(
            Method::PUT,
            &budget_path,
            Some(r#"{"monthly_budget_usd":4}"#),
            StatusCode::OK,
        )
        .await;
    assert_eq!(over["monthly_budget_usd"], "4.000000");
    assert_eq!(over["current_usage_usd"], "4.506000");
    assert_eq!(over["remaining_usd"], "0.000000");
    assert_eq!(over["percentage_used"], json!(112.65));
    let shown = admin
        .ok(
            Method::GET,
            &format!("/admin/users/{user_id}"),
            None,
            StatusCode::OK,
        )
        .await;
    assert_eq!(shown["monthly_budget_usd"], "4.000000");
    assert!(time(&shown["updated_at"]) > time(&user["updated_at"]));

    let exact = admin
        .ok(
            Method::PUT,
            &budget_path,
            Some(r#"{"monthly_budget_usd":"4.506"}"#),
            StatusCode::OK,
        )
        .await;
    assert_eq!(exact["remaining_usd"], "0.000000");
    assert_eq!(exact["percentage_used"], json!(100.0));

    let unlimited = admin
        .ok(
            Method::PUT,
            &budget_path,
            Some(r#"{"monthly_budget_usd":null}"#),
            StatusCode::OK,
        )
        .await;
    assert_eq!(unlimited["monthly_budget_usd"], Value::Null);
    assert_eq!(unlimited["current_usage_usd"], "4.506000");
    assert_eq!(unlimited["remaining_usd"], Value::Null);
    assert_eq!(unlimited["percentage_used"], Value::Null);
    let shown = admin
        .ok(
            Method::GET,
            &format!("/admin/users/{user_id}"),
            None,
            StatusCode::OK,
        )
        .await;
    assert_eq!(shown["monthly_budget_usd"], Value::Null);
}

#[tokio::test]
async fn pricing_lists_plan_and_bedrock_prices() {
    let admin = Admin::start().await;
    let pricing = admin
        .ok(Method::GET, "/admin/pricing", None, StatusCode::OK)
        .await;
    assert_eq!(
        pricing["default_regions"],
        json!({ "bedrock": "us-east-1", "openai": "global", "plan": "global" })
    );
    let prices = pricing["prices"].as_array().unwrap();
    assert_eq!(
        prices.len(),
        2 * 11 + 14,
        "the built-in list prices for both providers, and the library's OpenAI prices"
    );
    for (provider, region) in [("plan", "global"), ("bedrock", "us-east-1")] {
        let sonnet: Vec<&Value> = prices
            .iter()
            .filter(|price| price["provider"] == provider && price["model"] == "claude-sonnet-4-5")
            .collect();
        assert_eq!(
            sonnet,
            [&json!({
                "provider": provider,
                "region": region,
                "model": "claude-sonnet-4-5",
                "input_price_per_million": "3.00",
                "output_price_per_million": "15.00",
                "cache_write_price_per_million": "3.75",
                "cache_write_1h_price_per_million": "6.00",
                "cache_read_price_per_million": "0.30",
                "effective_date": "2025-11-24",
            })]
        );
    }
}

#[tokio::test]
async fn the_openapi_document_describes_the_endpoints() {
    let admin = Admin::start().await;
    let (status, document) = admin
        .send(Method::GET, "/admin/openapi.json", None, None)
        .await;
    assert_eq!(status, StatusCode::OK);
    let paths = &document["paths"];
    for (path, method, tag) in [
        ("/admin/users", "post", "users"),
        ("/admin/users", "get", "users"),
        ("/admin/users/{user_id}", "get", "users"),
        ("/admin/users/{user_id}", "patch", "users"),
        ("/admin/users/{user_id}/deactivate", "post", "users"),
        ("/admin/users/{user_id}/budget", "get", "users"),
        ("/admin/users/{user_id}/budget", "put", "users"),
        ("/admin/users/{user_id}/keys", "post", "keys"),
        ("/admin/users/{user_id}/keys", "get", "keys"),
        ("/admin/users/{user_id}", "delete", "users"),
        ("/admin/keys/{key_id}/revoke", "post", "keys"),
        ("/admin/keys/{key_id}/rotate", "post", "keys"),
        ("/admin/keys/{key_id}", "get", "keys"),
        ("/admin/keys/{key_id}", "patch", "keys"),
        ("/admin/keys/{key_id}/bedrock-credential", "put", "keys"),
        ("/admin/keys/{key_id}/bedrock-credential", "delete", "keys"),
        ("/admin/model-mappings", "get", "model mappings"),
        ("/admin/model-mappings", "post", "model mappings"),
        (
            "/admin/model-mappings/{mapping_id}",
            "get",
            "model mappings",
        ),
        (
            "/admin/model-mappings/{mapping_id}",
            "patch",
            "model mappings",
        ),
        (
            "/admin/model-mappings/{mapping_id}",
            "delete",
            "model mappings",
        ),
        ("/admin/pricing/overrides", "get", "pricing"),
        ("/admin/pricing/overrides", "post", "pricing"),
        ("/admin/pricing/overrides/{override_id}", "get", "pricing"),
        ("/admin/pricing/overrides/{override_id}", "patch", "pricing"),
        (
            "/admin/pricing/overrides/{override_id}",
            "delete",
            "pricing",
        ),
        ("/admin/pricing", "get", "pricing"),
    ] {
        let operation = &paths[path][method];
        assert_eq!(operation["tags"], json!([tag]), "{method} {path}");
        assert_eq!(
            operation["responses"]["401"]["content"]["application/json"]["schema"]["$ref"],
            "#/components/schemas/ErrorBody",
            "{method} {path}"
        );
    }
    let create = &paths["/admin/users"]["post"];
    assert_eq!(
        create["requestBody"]["content"]["application/json"]["schema"]["$ref"],
        "#/components/schemas/NewUser"
    );
    assert_eq!(
        create["responses"]["201"]["content"]["application/json"]["schema"]["$ref"],
        "#/components/schemas/User"
    );
    assert_eq!(
        paths["/admin/users/{user_id}/keys"]["post"]["requestBody"]["required"],
        Value::Null,
        "the key's body is optional"
    );

    let schemas = &document["components"]["schemas"];
    for name in [
        "User",
        "UserList",
        "NewUser",
        "UserChanges",
        "BudgetLimit",
        "Budget",
        "NewKey",
        "IssuedKey",
        "AccessKey",
        "AccessKeyList",
        "Rotation",
        "RotatedKey",
        "KeyChanges",
        "NewCredential",
        "LinkedCredential",
        "Price",
        "PriceList",
        "RoutingStrategy",
    ] {
        assert!(schemas[name].is_object(), "{name} is described");
    }
    assert_eq!(
        schemas["RoutingStrategy"]["enum"],
        json!(["plan_first", "bedrock_only"])
    );
    assert_eq!(
        schemas["BudgetLimit"]["required"],
        json!(["monthly_budget_usd"])
    );
    assert_eq!(schemas["NewUser"]["required"], json!(["name"]));
    let user_fields: Vec<&String> = schemas["User"]["properties"]
        .as_object()
        .unwrap()
        .keys()
        .collect();
    assert_eq!(user_fields.len(), 10);
    assert!(
        !schemas["AccessKey"]["properties"]
            .as_object()
            .unwrap()
            .contains_key("key")
    );
}

#[tokio::test]
async fn a_rotated_key_works_for_its_grace_period_and_its_successor_inherits_it() {
    let admin = Admin::start().await;
    let keys = admin.key_store().await;
    let user = admin.create_user(json!({ "name": "Ada" })).await;
    let keys_path = format!("/admin/users/{}/keys", id(&user));
    let old = admin
        .ok(
            Method::POST,
            &keys_path,
            Some(r#"{"name":"laptop"}"#),
            StatusCode::CREATED,
        )
        .await;
    let rotate = |key: &Value| format!("/admin/keys/{}/rotate", id(key));

    let rotated = admin
        .ok(Method::POST, &rotate(&old), None, StatusCode::CREATED)
        .await;
    assert_eq!(rotated["replaces"], old["id"]);
    assert_eq!(rotated["name"], "laptop", "the name is inherited");
    assert_eq!(rotated["user_id"], user["id"]);
    let new_key = rotated["key"].as_str().unwrap();
    let grace = time(&rotated["old_key_expires_at"]) - time(&rotated["created_at"]);
    assert!(
        (Duration::seconds(299)..=Duration::seconds(300)).contains(&grace),
        "the default grace period is 300 s: {grace}"
    );
    let old_raw = old["key"].as_str().unwrap();
    for key in [old_raw, new_key] {
        assert!(keys.authenticate(key).await.unwrap().is_some(), "both work");
    }
    let list = admin
        .ok(Method::GET, &keys_path, None, StatusCode::OK)
        .await;
    assert_eq!(list["keys"][0]["status"], "rotating");
    assert_eq!(list["keys"][0]["replaced_by"], rotated["id"]);
    assert_eq!(list["keys"][0]["expires_at"], rotated["old_key_expires_at"]);
    assert_eq!(list["keys"][1]["status"], "active");
    assert!(
        !list.to_string().contains(&new_key[12..]),
        "never shown again"
    );

    // A key is rotated once: the successor is what rotates next.
    let (status, json) = admin.call(Method::POST, &rotate(&old), None).await;
    assert_eq!(status, StatusCode::CONFLICT, "{json}");
    assert!(json["detail"].as_str().unwrap().contains("rotated already"));

    // A zero grace period refuses the old key at once.
    let next = admin
        .ok(
            Method::POST,
            &rotate(&rotated),
            Some(r#"{"grace_period_seconds":0}"#),
            StatusCode::CREATED,
        )
        .await;
    assert!(keys.authenticate(new_key).await.unwrap().is_none());
    assert!(
        keys.authenticate(next["key"].as_str().unwrap())
            .await
            .unwrap()
            .is_some()
    );
    let list = admin
        .ok(Method::GET, &keys_path, None, StatusCode::OK)
        .await;
    assert_eq!(list["keys"][1]["status"], "expired");

    // A short grace period ends on time.
    let short = admin
        .ok(
            Method::POST,
            &rotate(&next),
            Some(r#"{"grace_period_seconds":1}"#),
            StatusCode::CREATED,
        )
        .await;
    let next_raw = next["key"].as_str().unwrap();
    assert!(keys.authenticate(next_raw).await.unwrap().is_some());
    while Utc::now() <= time(&short["old_key_expires_at"]) {
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(keys.authenticate(next_raw).await.unwrap().is_none());

    for (body, parameter) in [
        (
            r#"{"grace_period_seconds":2592001}"#,
            "grace_period_seconds",
        ),
        (r#"{"grace_period_seconds":-1}"#, "body"),
        (r#"{"grace":1}"#, "body"),
    ] {
        let (status, json) = admin.call(Method::POST, &rotate(&short), Some(body)).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}: {json}");
        assert_eq!(json["parameter"], parameter, "{body}: {json}");
    }
    let revoked = admin
        .ok(
            Method::POST,
            &format!("/admin/keys/{}/revoke", id(&short)),
            None,
            StatusCode::OK,
        )
        .await;
    let (status, _) = admin.call(Method::POST, &rotate(&revoked), None).await;
    assert_eq!(status, StatusCode::CONFLICT, "a revoked key is not rotated");
    let (status, _) = admin
        .call(
            Method::POST,
            &format!("/admin/keys/{}/rotate", Uuid::now_v7()),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn deleting_a_user_revokes_its_keys_and_keeps_it_listed_as_deleted_only() {
    let admin = Admin::start().await;
    let keys = admin.key_store().await;
    let user = admin
        .create_user(json!({ "name": "Ada", "description": "  platform team  " }))
        .await;
    assert_eq!(user["description"], "platform team");
    assert_eq!(user["status"], "active");
    let user_path = format!("/admin/users/{}", id(&user));
    let changed = admin
        .ok(
            Method::PATCH,
            &user_path,
            Some(r#"{"description":"infra\nteam"}"#),
            StatusCode::OK,
        )
        .await;
    assert_eq!(changed["description"], "infra\nteam");
    let cleared = admin
        .ok(
            Method::PATCH,
            &user_path,
            Some(r#"{"description":null}"#),
            StatusCode::OK,
        )
        .await;
    assert_eq!(cleared["description"], Value::Null);
    let (status, json) = admin
        .call(
            Method::PATCH,
            &user_path,
            Some(&json!({ "description": "x".repeat(2001) }).to_string()),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(json["parameter"], "description");

    let keys_path = format!("{user_path}/keys");
    let key = admin
        .ok(Method::POST, &keys_path, None, StatusCode::CREATED)
        .await;
    let raw = key["key"].as_str().unwrap();
    assert!(keys.authenticate(raw).await.unwrap().is_some());

    let deleted = admin
        .ok(Method::DELETE, &user_path, None, StatusCode::OK)
        .await;
    assert_eq!(deleted["status"], "deleted");
    assert_eq!(deleted["is_active"], false);
    let deleted_at = time(&deleted["deleted_at"]);
    assert!(keys.authenticate(raw).await.unwrap().is_none());
    let revoked = admin
        .ok(
            Method::GET,
            &format!("/admin/keys/{}", key["id"].as_str().unwrap()),
            None,
            StatusCode::OK,
        )
        .await;
    assert_eq!(revoked["status"], "revoked");
    // A deleted user is gone from its own paths (as a REST client expects after DELETE).
    for (method, path, body) in [
        (Method::GET, user_path.clone(), None),
        (Method::GET, keys_path.clone(), None),
        (Method::GET, format!("{user_path}/budget"), None),
        (
            Method::PATCH,
            user_path.clone(),
            Some(r#"{"is_active":true}"#),
        ),
    ] {
        let (status, json) = admin.call(method, &path, body).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{path}: {json}");
        assert!(
            json["detail"].as_str().unwrap().contains("was deleted"),
            "{json}"
        );
    }

    let again = admin
        .ok(Method::DELETE, &user_path, None, StatusCode::OK)
        .await;
    assert_eq!(
        time(&again["deleted_at"]),
        deleted_at,
        "deleting twice changes nothing"
    );

    let everyone = admin
        .ok(
            Method::GET,
            "/admin/users?include_inactive=true",
            None,
            StatusCode::OK,
        )
        .await;
    assert!(
        everyone["users"].as_array().unwrap().is_empty(),
        "{everyone}"
    );
    let with_deleted = admin
        .ok(
            Method::GET,
            "/admin/users?include_inactive=true&include_deleted=true",
            None,
            StatusCode::OK,
        )
        .await;
    assert_eq!(with_deleted["users"][0]["id"], user["id"]);
    let (status, _) = admin
        .call(
            Method::DELETE,
            &format!("/admin/users/{}", Uuid::now_v7()),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}
