//! The console's accounts over HTTP against a running server: login and its limits, the
//! session cookie, CSRF on every change, roles, the audit log, logout, expiry, and the
//! admin API's optional CORS.

use http::StatusCode;
use reference_server::admins::{self, Role};
use reference_server::standins::plan::PlanReply;
use sea_orm::{ConnectionTrait, Database, DatabaseConnection};
use serde_json::Value;
use usage_tests::proxy::{Proxy, Setup, exchange, fixture};

const TOKEN: &str = "console-test-admin-token-0123456789";
const PASSWORD: &str = "correct horse battery staple";

async fn proxy(extra: &[&str]) -> (Proxy, DatabaseConnection) {
    let mut extra_args = vec![format!("--admin-token={TOKEN}")];
    extra_args.extend(extra.iter().map(|arg| (*arg).to_owned()));
    let proxy = Proxy::start(
        PlanReply::Stream(fixture("basic_response.txt")),
        Setup {
            extra_args,
            ..Setup::default()
        },
    )
    .await;
    let db = Database::connect(&proxy.database_url).await.unwrap();
    (proxy, db)
}

/// A console session: its cookie (`name=value`) and CSRF token.
struct Login {
    cookie: String,
    csrf: String,
}

fn form(pairs: &[(&str, &str)]) -> String {
    url::form_urlencoded::Serializer::new(String::new())
        .extend_pairs(pairs)
        .finish()
}

async fn try_login(
    proxy: &Proxy,
    name: &str,
    password: &str,
    extra: &[(&str, &str)],
) -> (StatusCode, http::HeaderMap, String) {
    let mut headers = vec![("content-type", "application/x-www-form-urlencoded")];
    headers.extend_from_slice(extra);
    let (status, headers, body) = exchange(
        "POST",
        format!("{}/console/login", proxy.origin()),
        &headers,
        &form(&[
            ("name", name),
            ("password", password),
            ("next", "/console/users"),
        ]),
    )
    .await;
    (status, headers, String::from_utf8_lossy(&body).into_owned())
}

async fn login(proxy: &Proxy, name: &str) -> Login {
    let (status, headers, _) = try_login(proxy, name, PASSWORD, &[]).await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    assert_eq!(headers["location"], "/console/users");
    let set_cookie = headers["set-cookie"].to_str().unwrap();
    let cookie = set_cookie.split(';').next().unwrap().to_owned();
    let (status, session) = call(proxy, "GET", "/admin/session", &[("cookie", &cookie)], "").await;
    assert_eq!(status, StatusCode::OK, "{session}");
    Login {
        cookie,
        csrf: session["csrf_token"].as_str().unwrap().to_owned(),
    }
}

async fn call(
    proxy: &Proxy,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> (StatusCode, Value) {
    let mut all = vec![("content-type", "application/json")];
    all.extend_from_slice(headers);
    let (status, _, body) = exchange(method, format!("{}{path}", proxy.origin()), &all, body).await;
    (status, serde_json::from_slice(&body).unwrap_or(Value::Null))
}

async fn page(
    proxy: &Proxy,
    path: &str,
    cookie: Option<&str>,
) -> (StatusCode, http::HeaderMap, String) {
    let headers: Vec<(&str, &str)> = cookie.map(|c| vec![("cookie", c)]).unwrap_or_default();
    let (status, headers, body) =
        exchange("GET", format!("{}{path}", proxy.origin()), &headers, "").await;
    (status, headers, String::from_utf8_lossy(&body).into_owned())
}

async fn audit(proxy: &Proxy) -> Vec<Value> {
    let (status, log) = call(
        proxy,
        "GET",
        "/admin/audit-log",
        &[("authorization", &format!("Bearer {TOKEN}"))],
        "",
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    log["entries"].as_array().unwrap().clone()
}

/// What `/admin/session` answers the login's cookie.
async fn session_status(proxy: &Proxy, login: &Login) -> StatusCode {
    call(
        proxy,
        "GET",
        "/admin/session",
        &[("cookie", &login.cookie)],
        "",
    )
    .await
    .0
}

fn has_entry(entries: &[Value], actor: &str, action: &str, status: i64) -> bool {
    entries
        .iter()
        .any(|e| e["actor"] == actor && e["action"] == action && e["status"] == status)
}

#[tokio::test]
async fn a_session_reads_changes_with_its_csrf_token_and_ends_at_logout() {
    let (proxy, db) = proxy(&[]).await;
    admins::create(&db, "alice", Role::Admin, PASSWORD)
        .await
        .unwrap();

    // Not logged in: pages send to the login page, the API wants credentials.
    let (status, headers, _) = page(&proxy, "/console/requests?provider=plan", None).await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    assert_eq!(
        headers["location"],
        "/console/login?next=%2Fconsole%2Frequests%3Fprovider%3Dplan"
    );
    let (status, _) = call(
        &proxy,
        "GET",
        "/admin/users",
        &[("cookie", "proxy_console=forged")],
        "",
    )
    .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);

    let (status, _, body) = try_login(&proxy, "alice", "wrong password!", &[]).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(body.contains("Wrong name or password."), "{body}");
    let (status, _, _) = try_login(&proxy, "nobody", PASSWORD, &[]).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    // A login form posted from another site is refused (login CSRF).
    let (status, _, _) = try_login(
        &proxy,
        "alice",
        PASSWORD,
        &[("origin", "https://evil.example")],
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN);

    // The cookie: HttpOnly, SameSite=Strict, for the session's life; Secure behind TLS.
    let (_, headers, _) = try_login(&proxy, "alice", PASSWORD, &[]).await;
    let set_cookie = headers["set-cookie"].to_str().unwrap();
    assert!(set_cookie.starts_with("proxy_console="), "{set_cookie}");
    for part in ["HttpOnly", "SameSite=Strict", "Path=/", "Max-Age=43200"] {
        assert!(set_cookie.contains(part), "{set_cookie}");
    }
    assert!(!set_cookie.contains("Secure"), "{set_cookie}");
    let (_, headers, _) =
        try_login(&proxy, "alice", PASSWORD, &[("x-forwarded-proto", "https")]).await;
    assert!(
        headers["set-cookie"]
            .to_str()
            .unwrap()
            .ends_with("; Secure")
    );

    let alice = login(&proxy, "alice").await;
    let (_, session) = call(
        &proxy,
        "GET",
        "/admin/session",
        &[("cookie", &alice.cookie)],
        "",
    )
    .await;
    assert_eq!(session["actor"], "admin:alice");
    assert_eq!(session["role"], "admin");
    assert_eq!(alice.csrf.len(), 43);

    // Every page renders for the session.
    for path in [
        "/console/",
        "/console/requests",
        "/console/users",
        "/console/mappings",
        "/console/prices",
        "/console/audit",
    ] {
        let (status, headers, body) = page(&proxy, path, Some(&alice.cookie)).await;
        assert_eq!(status, StatusCode::OK, "{path}: {body}");
        assert!(
            headers["content-security-policy"]
                .to_str()
                .unwrap()
                .contains("default-src 'self'")
        );
        assert_eq!(headers["cache-control"], "no-store");
        assert!(
            body.contains(&alice.csrf),
            "{path}: the page carries its CSRF token"
        );
        assert!(body.contains("Time zone: <strong>UTC</strong>"), "{path}");
    }

    // A change needs the session's CSRF token, and no foreign Origin.
    let new_user = r#"{"name":"made in the console"}"#;
    let (status, body) = call(
        &proxy,
        "POST",
        "/admin/users",
        &[("cookie", &alice.cookie)],
        new_user,
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert!(body["detail"].as_str().unwrap().contains("CSRF"), "{body}");
    let (status, _) = call(
        &proxy,
        "POST",
        "/admin/users",
        &[("cookie", &alice.cookie), ("x-csrf-token", "wrong")],
        new_user,
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, _) = call(
        &proxy,
        "POST",
        "/admin/users",
        &[
            ("cookie", &alice.cookie),
            ("x-csrf-token", &alice.csrf),
            ("origin", "https://evil.example"),
        ],
        new_user,
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let origin = proxy.origin();
    let (status, created) = call(
        &proxy,
        "POST",
        "/admin/users",
        &[
            ("cookie", &alice.cookie),
            ("x-csrf-token", &alice.csrf),
            ("origin", &origin),
        ],
        new_user,
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let user_id = created["id"].as_str().unwrap().to_owned();
    // The bearer token keeps working, without any CSRF token.
    let (status, _) = call(
        &proxy,
        "POST",
        &format!("/admin/users/{user_id}/keys"),
        &[("authorization", &format!("Bearer {TOKEN}"))],
        "{}",
    )
    .await;
    assert_eq!(status, StatusCode::CREATED);
    let (status, _, body) = page(
        &proxy,
        &format!("/console/users/{user_id}"),
        Some(&alice.cookie),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        body.contains("made in the console") && body.contains("1 active of 1"),
        "{body}"
    );

    // The audit log has the changes, the refusals and the logins — never a password.
    let entries = audit(&proxy).await;
    assert!(
        has_entry(&entries, "admin:alice", "POST /admin/users", 201),
        "{entries:#?}"
    );
    assert!(
        has_entry(&entries, "admin:alice", "POST /admin/users", 403),
        "{entries:#?}"
    );
    assert!(
        has_entry(&entries, "token", "POST /admin/users/{user_id}/keys", 201),
        "{entries:#?}"
    );
    assert!(
        has_entry(&entries, "admin:alice", "login", 303),
        "{entries:#?}"
    );
    assert!(
        has_entry(&entries, "anonymous", "login failed", 401),
        "{entries:#?}"
    );
    let created_entry = entries
        .iter()
        .find(|e| e["action"] == "POST /admin/users" && e["status"] == 201)
        .unwrap();
    assert_eq!(created_entry["target"], "/admin/users");
    let text = serde_json::to_string(&entries).unwrap();
    assert!(!text.contains(PASSWORD) && !text.contains("wrong password!"));
    let (_, _, body) = page(&proxy, "/console/audit", Some(&alice.cookie)).await;
    assert!(body.contains("POST /admin/users/{user_id}/keys"), "{body}");

    // Logout needs the token too, then the session is gone everywhere.
    let (status, _, _) = exchange(
        "POST",
        format!("{}/console/logout", proxy.origin()),
        &[
            ("cookie", &alice.cookie),
            ("content-type", "application/x-www-form-urlencoded"),
        ],
        "csrf_token=wrong",
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, headers, _) = exchange(
        "POST",
        format!("{}/console/logout", proxy.origin()),
        &[
            ("cookie", &alice.cookie),
            ("content-type", "application/x-www-form-urlencoded"),
        ],
        &form(&[("csrf_token", &alice.csrf)]),
    )
    .await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    assert_eq!(headers["location"], "/console/login");
    assert!(
        headers["set-cookie"]
            .to_str()
            .unwrap()
            .starts_with("proxy_console=; Max-Age=0")
    );
    let status = session_status(&proxy, &alice).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, _, _) = page(&proxy, "/console/", Some(&alice.cookie)).await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    assert!(has_entry(
        &audit(&proxy).await,
        "admin:alice",
        "logout",
        303
    ));
}

#[tokio::test]
async fn a_viewer_reads_everything_and_changes_nothing() {
    let (proxy, db) = proxy(&[]).await;
    admins::create(&db, "victor", Role::Viewer, PASSWORD)
        .await
        .unwrap();
    let victor = login(&proxy, "victor").await;
    let user_page = format!("/console/users/{}", proxy.user);
    for path in [
        "/console/",
        "/console/requests",
        "/console/users",
        user_page.as_str(),
        "/console/mappings",
        "/console/prices",
        "/console/audit",
    ] {
        let (status, _, body) = page(&proxy, path, Some(&victor.cookie)).await;
        assert_eq!(status, StatusCode::OK, "{path}");
        assert!(
            !body.contains("data-api"),
            "{path}: a viewer's page offers no change"
        );
        assert!(body.contains("victor (viewer)"), "{path}");
    }
    let (status, body) = call(
        &proxy,
        "GET",
        "/admin/users",
        &[("cookie", &victor.cookie)],
        "",
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    for (method, path) in [
        ("POST", "/admin/users".to_owned()),
        ("DELETE", format!("/admin/users/{}", proxy.user)),
        ("POST", "/admin/model-mappings".to_owned()),
    ] {
        let (status, body) = call(
            &proxy,
            method,
            &path,
            &[("cookie", &victor.cookie), ("x-csrf-token", &victor.csrf)],
            r#"{"name":"x"}"#,
        )
        .await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{method} {path}: {body}");
        assert!(
            body["detail"].as_str().unwrap().contains("viewer"),
            "{body}"
        );
    }
    let (status, user) = call(
        &proxy,
        "GET",
        &format!("/admin/users/{}", proxy.user),
        &[("authorization", &format!("Bearer {TOKEN}"))],
        "",
    )
    .await;
    assert_eq!(
        (status, user["status"].as_str()),
        (StatusCode::OK, Some("active")),
        "nothing was deleted"
    );
    assert!(has_entry(
        &audit(&proxy).await,
        "admin:victor",
        "DELETE /admin/users/{user_id}",
        403
    ));
}

#[tokio::test]
async fn login_attempts_are_limited_per_name_and_address() {
    let (proxy, db) = proxy(&["--console-login-attempts=3"]).await;
    admins::create(&db, "alice", Role::Admin, PASSWORD)
        .await
        .unwrap();
    admins::create(&db, "bob", Role::Admin, PASSWORD)
        .await
        .unwrap();
    for _ in 0..3 {
        let (status, _, _) = try_login(&proxy, "alice", "not the password", &[]).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
    }
    // Now even the right password waits, and is told how long.
    let (status, headers, body) = try_login(&proxy, "Alice", PASSWORD, &[]).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{body}");
    let wait: u64 = headers["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=900).contains(&wait), "{wait}");
    assert!(body.contains("too many failed login attempts"), "{body}");
    // Another account from the same address is not locked out by alice's guesser…
    let bob = login(&proxy, "bob").await;
    assert!(!bob.cookie.is_empty());
    // …until the address's own limit (four times the name's) is used up.
    for i in 0..9 {
        let (status, _, _) = try_login(&proxy, &format!("guess{i}"), "nope", &[]).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{i}");
    }
    let (status, _, _) = try_login(&proxy, "bob", PASSWORD, &[]).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
    assert!(has_entry(
        &audit(&proxy).await,
        "anonymous",
        "login limited",
        429
    ));
}

#[tokio::test]
async fn sessions_end_when_they_expire_or_their_account_is_disabled() {
    let (proxy, db) = proxy(&[]).await;
    admins::create(&db, "alice", Role::Admin, PASSWORD)
        .await
        .unwrap();
    admins::create(&db, "bob", Role::Admin, PASSWORD)
        .await
        .unwrap();
    let alice = login(&proxy, "alice").await;
    let bob = login(&proxy, "bob").await;
    db.execute_unprepared("UPDATE admin_sessions SET expires_at = '2020-01-01 00:00:00+00:00' WHERE admin_id = (SELECT id FROM admins WHERE name = 'alice')")
        .await
        .unwrap();
    let status = session_status(&proxy, &alice).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let status = session_status(&proxy, &bob).await;
    assert_eq!(status, StatusCode::OK);
    db.execute_unprepared(
        "UPDATE admins SET disabled_at = '2026-01-01 00:00:00+00:00' WHERE name = 'bob'",
    )
    .await
    .unwrap();
    let status = session_status(&proxy, &bob).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, _, _) = try_login(&proxy, "bob", PASSWORD, &[]).await;
    assert_eq!(
        status,
        StatusCode::UNAUTHORIZED,
        "a disabled account cannot log in"
    );
}

#[tokio::test]
async fn cors_answers_only_the_listed_origins() {
    let (proxy, _db) =
        proxy(&["--cors-allowed-origins=https://dash.example.com,http://127.0.0.1:3000"]).await;
    let preflight = |origin: &'static str| {
        let url = format!("{}/admin/usage", proxy.origin());
        async move {
            exchange(
                "OPTIONS",
                url,
                &[
                    ("origin", origin),
                    ("access-control-request-method", "GET"),
                    ("access-control-request-headers", "authorization"),
                ],
                "",
            )
            .await
        }
    };
    let (status, headers, _) = preflight("https://dash.example.com").await;
    assert!(status.is_success(), "{status}");
    assert_eq!(
        headers["access-control-allow-origin"],
        "https://dash.example.com"
    );
    assert!(
        headers["access-control-allow-headers"]
            .to_str()
            .unwrap()
            .contains("authorization")
    );
    let (_, headers, _) = preflight("https://evil.example").await;
    assert!(headers.get("access-control-allow-origin").is_none());
    let (status, headers, _) = exchange(
        "GET",
        format!("{}/admin/usage", proxy.origin()),
        &[
            ("origin", "http://127.0.0.1:3000"),
            ("authorization", &format!("Bearer {TOKEN}")),
        ],
        "",
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        headers["access-control-allow-origin"],
        "http://127.0.0.1:3000"
    );
    assert!(headers.get("access-control-allow-credentials").is_none());

    // Without the setting: no CORS headers at all.
    let (plain, _db) = self::proxy(&[]).await;
    let (_, headers, _) = exchange(
        "GET",
        format!("{}/admin/usage", plain.origin()),
        &[
            ("origin", "https://dash.example.com"),
            ("authorization", &format!("Bearer {TOKEN}")),
        ],
        "",
    )
    .await;
    assert!(headers.get("access-control-allow-origin").is_none());
}

#[test]
fn a_malformed_cors_origin_is_refused_with_its_name() {
    use clap::Parser;
    use reference_server::config::{Cli, Command};
    for bad in [
        "dash.example.com",
        "https://dash.example.com/",
        "https://dash.example.com/path",
        "ftp://x.example",
    ] {
        let cli = Cli::parse_from([
            "reference-server",
            "serve",
            &format!("--cors-allowed-origins={bad}"),
        ]);
        let Command::Serve(serve) = cli.command else {
            unreachable!()
        };
        let error = serve.cors_origins().unwrap_err().to_string();
        assert!(
            error.contains("PROXY_CORS_ALLOWED_ORIGINS") && error.contains(bad),
            "{error}"
        );
    }
}
