//! The console's sessions: logging in with a name and password, the session cookie, and
//! the limit on login attempts.
//!
//! The cookie holds 256 random bits; the database keeps only their SHA-256, so a copy of
//! the table opens no session. A session lasts `PROXY_CONSOLE_SESSION_TTL` from login
//! (12 hours by default) and ends earlier at logout or when its account is disabled. The
//! cookie is `HttpOnly; SameSite=Strict; Path=/`, and `Secure` when the request came over
//! TLS (`X-Forwarded-Proto: https` from the proxy in front, or `PROXY_CONSOLE_SECURE_COOKIE`).
//! Every change a session makes carries its CSRF token (see the admin API's middleware).
//!
//! Login attempts are limited per client address and per account name, within a sliding
//! window: a guesser is slowed to a few attempts per quarter hour whichever it varies.

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, Utc};
use http::{HeaderMap, HeaderValue};
use rand::RngCore;
use sea_orm::ActiveValue::Set;
use sea_orm::{ActiveModelTrait, ColumnTrait, DatabaseConnection, EntityTrait, QueryFilter};
use sha2::{Digest, Sha256};
use uuid::Uuid;

use crate::admins::Role;
use crate::entity::{admin_sessions, admins};

/// The session cookie's name.
pub const COOKIE: &str = "proxy_console";

/// When the session cookie is marked `Secure`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum SecureCookie {
    /// When the request came over TLS, as the proxy in front says (`X-Forwarded-Proto`).
    #[default]
    Auto,
    /// Always (the console is only reached over TLS).
    Always,
    /// Never (plain HTTP on a trusted network).
    Never,
}

/// The console's settings.
#[derive(Clone, Debug)]
pub struct SessionConfig {
    /// How long a session lasts from login.
    pub ttl: Duration,
    /// Failed attempts allowed per account name (and client address) in `window`.
    pub attempts_per_name: usize,
    /// Failed attempts allowed per client address in `window`, whatever the names.
    pub attempts_per_address: usize,
    /// The window of the attempt limits.
    pub window: Duration,
    /// When the cookie is `Secure`.
    pub secure: SecureCookie,
}

impl Default for SessionConfig {
    fn default() -> Self {
        Self {
            ttl: Duration::from_secs(12 * 3600),
            attempts_per_name: 5,
            attempts_per_address: 20,
            window: Duration::from_secs(15 * 60),
            secure: SecureCookie::Auto,
        }
    }
}

/// Who is logged in.
#[derive(Clone, Debug)]
pub struct Session {
    /// The account.
    pub admin_id: Uuid,
    /// Its name.
    pub name: String,
    /// What it may do.
    pub role: Role,
    /// What its changes must carry.
    pub csrf_token: String,
    /// When it ends.
    pub expires_at: DateTime<Utc>,
}

/// Why a login did not succeed.
#[derive(Debug, thiserror::Error)]
pub enum LoginError {
    /// Too many failed attempts: wait this long.
    #[error("too many failed login attempts; try again in {} s", .0.as_secs().max(1))]
    Limited(Duration),
    /// Wrong name or password, or a disabled account (not told apart).
    #[error("wrong name or password")]
    Refused,
    /// The database failed.
    #[error(transparent)]
    Database(#[from] sea_orm::DbErr),
}

/// Logging in and out, and the session behind a request's cookie.
#[derive(Debug)]
pub struct Sessions {
    db: DatabaseConnection,
    config: SessionConfig,
    failures: Mutex<Failures>,
}

impl Sessions {
    /// Sessions kept in `db`.
    pub fn new(db: DatabaseConnection, config: SessionConfig) -> Self {
        Self {
            db,
            config,
            failures: Mutex::new(Failures::default()),
        }
    }

    /// Logs `name` in: the new session's token (for the cookie) and the session.
    pub async fn login(
        &self,
        name: &str,
        password: &str,
        peer: Option<IpAddr>,
    ) -> Result<(String, Session), LoginError> {
        let keys = attempt_keys(name, peer);
        self.check_limits(&keys)?;
        let Some(account) = crate::admins::verify(&self.db, name, password).await? else {
            self.lock_failures().record(&keys, Instant::now());
            return Err(LoginError::Refused);
        };
        self.lock_failures().forget(&keys[0]);
        let token = random_token();
        let now = Utc::now();
        let ttl = chrono::Duration::from_std(self.config.ttl).unwrap_or(chrono::Duration::MAX);
        let session = Session {
            admin_id: account.id,
            name: account.name.clone(),
            role: Role::from_stored(&account.role),
            csrf_token: random_token(),
            expires_at: now + ttl,
        };
        admin_sessions::Entity::insert(admin_sessions::ActiveModel {
            id: Set(token_id(&token)),
            admin_id: Set(account.id),
            csrf_token: Set(session.csrf_token.clone()),
            created_at: Set(now),
            expires_at: Set(session.expires_at),
        })
        .exec(&self.db)
        .await?;
        let mut account: admins::ActiveModel = account.into();
        account.last_login_at = Set(Some(now));
        account.update(&self.db).await?;
        // Expired sessions go when someone logs in; there are never many.
        admin_sessions::Entity::delete_many()
            .filter(admin_sessions::Column::ExpiresAt.lt(now))
            .exec(&self.db)
            .await?;
        Ok((token, session))
    }

    fn lock_failures(&self) -> std::sync::MutexGuard<'_, Failures> {
        self.failures
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn check_limits(&self, keys: &[String; 2]) -> Result<(), LoginError> {
        let now = Instant::now();
        let mut failures = self.lock_failures();
        let limits = [
            self.config.attempts_per_name,
            self.config.attempts_per_address,
        ];
        let wait = keys
            .iter()
            .zip(limits)
            .filter_map(|(key, limit)| failures.wait(key, limit, self.config.window, now))
            .max();
        wait.map_or(Ok(()), |wait| Err(LoginError::Limited(wait)))
    }

    /// The live session of the request's cookie, if any.
    pub async fn current(&self, headers: &HeaderMap) -> Result<Option<Session>, sea_orm::DbErr> {
        let Some(token) = cookie(headers, COOKIE) else {
            return Ok(None);
        };
        let Some(row) = admin_sessions::Entity::find_by_id(token_id(token))
            .one(&self.db)
            .await?
        else {
            return Ok(None);
        };
        if row.expires_at <= Utc::now() {
            return Ok(None);
        }
        let account = admins::Entity::find_by_id(row.admin_id)
            .one(&self.db)
            .await?
            .filter(|account| account.disabled_at.is_none());
        Ok(account.map(|account| Session {
            admin_id: account.id,
            role: Role::from_stored(&account.role),
            name: account.name,
            csrf_token: row.csrf_token,
            expires_at: row.expires_at,
        }))
    }

    /// Ends the request's session (nothing when there is none).
    pub async fn logout(&self, headers: &HeaderMap) -> Result<(), sea_orm::DbErr> {
        if let Some(token) = cookie(headers, COOKIE) {
            admin_sessions::Entity::delete_by_id(token_id(token))
                .exec(&self.db)
                .await?;
        }
        Ok(())
    }

    /// The `Set-Cookie` value that holds `token` for the session's life.
    pub fn set_cookie(&self, token: &str, headers: &HeaderMap) -> HeaderValue {
        let max_age = self.config.ttl.as_secs();
        self.cookie_value(&format!("{COOKIE}={token}; Max-Age={max_age}"), headers)
    }

    /// The `Set-Cookie` value that removes the cookie.
    pub fn clear_cookie(&self, headers: &HeaderMap) -> HeaderValue {
        self.cookie_value(&format!("{COOKIE}=; Max-Age=0"), headers)
    }

    fn cookie_value(&self, start: &str, headers: &HeaderMap) -> HeaderValue {
        let secure = match self.config.secure {
            SecureCookie::Always => true,
            SecureCookie::Never => false,
            SecureCookie::Auto => headers
                .get("x-forwarded-proto")
                .and_then(|value| value.to_str().ok())
                .is_some_and(|proto| proto.trim().eq_ignore_ascii_case("https")),
        };
        let secure = if secure { "; Secure" } else { "" };
        HeaderValue::try_from(format!(
            "{start}; Path=/; HttpOnly; SameSite=Strict{secure}"
        ))
        .expect("a token is base64url")
    }
}

/// The attempt-limit keys of a login: per name and address, and per address.
fn attempt_keys(name: &str, peer: Option<IpAddr>) -> [String; 2] {
    let peer = peer.map_or_else(|| "unknown".to_owned(), |peer| peer.to_string());
    [format!("{peer} {}", name.trim().to_lowercase()), peer]
}

/// Failed attempts per key, the oldest first.
#[derive(Debug, Default)]
struct Failures {
    by_key: HashMap<String, VecDeque<Instant>>,
}

/// Keys remembered at most (an attacker varying names cannot grow the map without end).
const MAX_KEYS: usize = 100_000;

impl Failures {
    fn record(&mut self, keys: &[String], now: Instant) {
        if self.by_key.len() >= MAX_KEYS {
            self.by_key.clear();
        }
        for key in keys {
            self.by_key.entry(key.clone()).or_default().push_back(now);
        }
    }

    fn forget(&mut self, key: &str) {
        self.by_key.remove(key);
    }

    /// How long until `key` may try again, if it has used up `limit` in `window`.
    fn wait(
        &mut self,
        key: &str,
        limit: usize,
        window: Duration,
        now: Instant,
    ) -> Option<Duration> {
        let times = self.by_key.get_mut(key)?;
        while times
            .front()
            .is_some_and(|first| now.duration_since(*first) >= window)
        {
            times.pop_front();
        }
        if times.is_empty() {
            self.by_key.remove(key);
            return None;
        }
        (times.len() >= limit).then(|| {
            let first = times[times.len() - limit];
            window.saturating_sub(now.duration_since(first))
        })
    }
}

/// 256 random bits, base64url.
fn random_token() -> String {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    URL_SAFE_NO_PAD.encode(bytes)
}

/// What the table keeps of a token.
fn token_id(token: &str) -> String {
    Sha256::digest(token.as_bytes())
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect()
}

/// The value of cookie `name` in the request's `Cookie` headers.
pub fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(http::header::COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find_map(|(key, value)| (key == name && !value.is_empty()).then_some(value))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failures_limit_within_the_window_then_age_out() {
        let mut failures = Failures::default();
        let window = Duration::from_secs(900);
        let start = Instant::now();
        let keys = attempt_keys("Alice", Some([10, 0, 0, 1].into()));
        for i in 0..5 {
            assert_eq!(failures.wait(&keys[0], 5, window, start), None, "{i}");
            failures.record(&keys, start + Duration::from_secs(i));
        }
        let later = start + Duration::from_secs(10);
        assert_eq!(
            failures.wait(&keys[0], 5, window, later),
            Some(Duration::from_secs(890))
        );
        // The same name from another address is its own count; the address's is shared.
        let other = attempt_keys("alice", Some([10, 0, 0, 2].into()));
        assert_eq!(failures.wait(&other[0], 5, window, later), None);
        assert_eq!(failures.wait(&keys[1], 20, window, later), None);
        assert_eq!(failures.wait(&keys[0], 5, window, start + window), None);
    }

    #[test]
    fn cookies_are_read_among_others() {
        let mut headers = HeaderMap::new();
        headers.append(
            http::header::COOKIE,
            HeaderValue::from_static("a=1; proxy_console=tok"),
        );
        assert_eq!(cookie(&headers, COOKIE), Some("tok"));
        assert_eq!(cookie(&headers, "a"), Some("1"));
        assert_eq!(cookie(&headers, "b"), None);
        assert_eq!(token_id("tok").len(), 64);
    }
}
