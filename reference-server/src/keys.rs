//! Access keys: `ak_` + 32 random bytes (base64url), stored only as HMAC-SHA256 with a
//! server secret, shown once.
//!
//! The secret can be rotated without re-issuing keys: given the previous secrets too, a
//! key that only matches under a previous one is accepted and its stored hash replaced with
//! the current secret's (re-hashed on first use).

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, Utc};
use hmac::{Hmac, Mac};
use rand::RngCore;
use sea_orm::sea_query::Expr;
use sea_orm::{ActiveValue::Set, ColumnTrait, DatabaseConnection, DbErr, EntityTrait, QueryFilter};
use sha2::Sha256;
use subtle::ConstantTimeEq;
use uuid::Uuid;

use crate::database::DatabaseHealth;
use crate::entity::{access_keys, bedrock_credentials, users};
use crate::throttle::Throttle;

const PREFIX: &str = "ak_";
/// `ak_` and 32 bytes in unpadded base64url: the keys this server issues.
const KEY_LEN: usize = 3 + 43;
/// The lengths of key accepted after `ak_`: this server's 43, and the other lengths an
/// imported deployment's keys may have (the original's are URL-safe text after `ak_` as
/// well); anything else is refused before a lookup.
const ACCEPTED_BODY_LEN: std::ops::RangeInclusive<usize> = 16..=128;
/// What lists show of a key: enough to recognise it, far too little to guess it.
const SHOWN: usize = 11;

/// A raw access key, as given to its owner once. Its `Debug` does not show it.
#[derive(Clone, PartialEq, Eq)]
pub struct RawKey(String);

impl RawKey {
    /// A new random key.
    pub fn generate() -> Self {
        let mut bytes = [0u8; 32];
        rand::rng().fill_bytes(&mut bytes);
        let key = format!("{PREFIX}{}", URL_SAFE_NO_PAD.encode(bytes));
        debug_assert_eq!(key.len(), KEY_LEN);
        Self(key)
    }

    /// Reads a presented key; `None` if it cannot be a key (checked before any lookup).
    pub fn parse(text: &str) -> Option<Self> {
        let body = text.strip_prefix(PREFIX)?;
        let well_formed = ACCEPTED_BODY_LEN.contains(&body.len())
            && body
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        well_formed.then(|| Self(text.to_owned()))
    }

    /// The key itself: show it to its owner once, nowhere else.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// The first characters, stored to recognise the key in lists.
    pub fn prefix(&self) -> &str {
        &self.0[..SHOWN.min(self.0.len())]
    }
}

impl fmt::Debug for RawKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "RawKey({}…)", self.prefix())
    }
}

/// Hashes keys with the server's secret (HMAC-SHA256): a leaked table reveals no key.
#[derive(Clone)]
pub struct KeyHasher {
    secret: Vec<u8>,
    /// Secrets being rotated out: still accepted, never used for new hashes.
    previous: Vec<Vec<u8>>,
}

impl fmt::Debug for KeyHasher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("KeyHasher(..)")
    }
}

impl KeyHasher {
    /// A hasher with this secret.
    pub fn new(secret: impl Into<Vec<u8>>) -> Self {
        Self {
            secret: secret.into(),
            previous: Vec::new(),
        }
    }

    /// Also accepts keys hashed with these earlier secrets (while rotating).
    pub fn with_previous(mut self, previous: impl IntoIterator<Item = Vec<u8>>) -> Self {
        self.previous = previous
            .into_iter()
            .filter(|old| !old.is_empty() && *old != self.secret)
            .collect();
        self
    }

    /// The stored form of a key: lowercase hex of its HMAC.
    pub fn hash(&self, key: &RawKey) -> String {
        hash_with(&self.secret, key)
    }

    /// The key's hashes under the previous secrets.
    fn previous_hashes(&self, key: &RawKey) -> Vec<String> {
        self.previous
            .iter()
            .map(|old| hash_with(old, key))
            .collect()
    }
}

fn hash_with(secret: &[u8], key: &RawKey) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("HMAC takes any key length");
    mac.update(key.0.as_bytes());
    mac.finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// An authenticated caller: the key and its active owner.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct Authenticated {
    /// The key's id.
    pub key_id: Uuid,
    /// The owner.
    pub user: users::Model,
    /// A key replaced by a rotation is accepted until then (from the key cache too).
    #[serde(default)]
    pub expires_at: Option<DateTime<Utc>>,
    /// The key's own Bedrock region; `None`: the server's.
    #[serde(default)]
    pub bedrock_region: Option<String>,
    /// The fingerprint of the key's own Bedrock API key, when it has one (the key itself
    /// stays sealed in the database until Bedrock is called).
    #[serde(default)]
    pub bedrock_credential: Option<String>,
}

impl Authenticated {
    /// Whether the key is past its rotation's grace period at `now`.
    pub fn is_expired(&self, now: DateTime<Utc>) -> bool {
        self.expires_at.is_some_and(|end| end <= now)
    }
}

/// How long the last successful lookup of a key stands in for the database while the
/// database cannot be reached.
pub const STALE_IF_ERROR: Duration = Duration::from_secs(15 * 60);

/// At most this many keys' last lookups are kept (one entry per key in use).
const LAST_KNOWN_MAX: usize = 100_000;

/// How often the key cache is saved while it changes.
const CACHE_SAVE_INTERVAL: Duration = Duration::from_secs(10);

/// A key the database confirmed, and when.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
struct Known {
    caller: Authenticated,
    confirmed_at: DateTime<Utc>,
}

impl Known {
    fn is_fresh(&self) -> bool {
        (Utc::now() - self.confirmed_at)
            .to_std()
            .is_ok_and(|age| age < STALE_IF_ERROR)
    }
}

/// The keys confirmed lately, by hash; `dirty` once changed since the last save.
#[derive(Debug, Default)]
struct LastKnown {
    keys: HashMap<String, Known>,
    dirty: bool,
}

/// Finds the owner of a presented key.
///
/// Every lookup goes to the database, so a revoked key is refused at once. When the
/// database cannot be reached — the lookup fails, or takes longer than the database
/// timeout, or failed a moment ago ([`DatabaseHealth::is_down`]) — a key that a lookup
/// accepted in the last [`STALE_IF_ERROR`] is accepted again: an outage of the database
/// does not take the proxy down with it, and no request waits on a dead database more
/// than once in [`DOWN_FOR`](crate::database::DOWN_FOR).
///
/// **The key cache on disk** ([`with_cache_file`](Self::with_cache_file)) keeps those
/// confirmations across a restart, so a proxy restarted during an outage still serves
/// the keys in use. It holds what the `access_keys` table holds — the keys' HMAC hashes,
/// never a key — with each key's owner and when the database last confirmed it, in a
/// file of mode 0600; entries older than [`STALE_IF_ERROR`] are never used, and a key
/// the database refuses leaves the cache at once. Chosen over an encrypted cache because
/// it holds no secret to protect: a leaked file reveals no key, as a leaked table does not.
#[derive(Clone, Debug)]
pub struct KeyStore {
    db: DatabaseConnection,
    hasher: KeyHasher,
    last_known: Arc<Mutex<LastKnown>>,
    health: Arc<DatabaseHealth>,
    timeout: Duration,
    cache_file: Option<PathBuf>,
    stale_warnings: Arc<Throttle>,
    fleet: Option<crate::fleet::Fleet>,
}

impl KeyStore {
    /// Keys in `db`, hashed with `hasher`.
    pub fn new(db: DatabaseConnection, hasher: KeyHasher) -> Self {
        Self {
            db,
            hasher,
            last_known: Arc::default(),
            health: Arc::default(),
            timeout: Duration::from_secs(2),
            cache_file: None,
            stale_warnings: Arc::default(),
            fleet: None,
        }
    }

    /// Refuses, from the cache, keys the fleet says were revoked (or whose user was
    /// deactivated) after the database last accepted them (see [`crate::fleet`]).
    pub fn with_fleet(mut self, fleet: Option<crate::fleet::Fleet>) -> Self {
        self.fleet = fleet;
        self
    }

    /// Shares `health` (the database's state) and gives up a lookup after `timeout`.
    pub fn with_health(mut self, health: Arc<DatabaseHealth>, timeout: Duration) -> Self {
        self.health = health;
        self.timeout = timeout;
        self
    }

    /// Keeps the cache of confirmed keys in `path`, starting from what it holds (an
    /// unreadable or corrupt file is logged and replaced).
    pub fn with_cache_file(mut self, path: PathBuf) -> Self {
        match read_cache(&path) {
            Ok(keys) => {
                let fresh: HashMap<String, Known> = keys
                    .into_iter()
                    .filter(|(_, known)| known.is_fresh())
                    .collect();
                if !fresh.is_empty() {
                    tracing::info!(keys = fresh.len(), "key cache loaded");
                }
                self.last_known().keys = fresh;
            }
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
            Err(error) => {
                tracing::warn!(%error, path = %path.display(), "key cache unreadable: starting empty");
            }
        }
        self.cache_file = Some(path);
        self
    }

    /// Saves the key cache every 10 s while it changes (none without
    /// a cache file).
    pub fn spawn_cache_saver(&self) -> Option<tokio::task::JoinHandle<()>> {
        self.cache_file.as_ref()?;
        let keys = self.clone();
        Some(tokio::spawn(async move {
            let mut every = tokio::time::interval(CACHE_SAVE_INTERVAL);
            loop {
                every.tick().await;
                keys.save_cache().await;
            }
        }))
    }

    /// Writes the key cache to its file if it changed (atomically: a new file renamed
    /// over the old).
    pub async fn save_cache(&self) {
        let Some(path) = self.cache_file.clone() else {
            return;
        };
        let keys = {
            let mut last_known = self.last_known();
            if !last_known.dirty {
                return;
            }
            last_known.dirty = false;
            last_known.keys.clone()
        };
        let written = tokio::task::spawn_blocking(move || write_cache(&path, &keys)).await;
        if let Ok(Err(error)) | Err(error) = written.map_err(std::io::Error::other) {
            self.last_known().dirty = true;
            tracing::warn!(%error, "key cache not saved");
        }
    }

    /// The active key and active user for `presented`, if any.
    pub async fn authenticate(&self, presented: &str) -> Result<Option<Authenticated>, DbErr> {
        let Some(key) = RawKey::parse(presented) else {
            return Ok(None);
        };
        let hash = self.hasher.hash(&key);
        let known = self
            .last_known()
            .keys
            .get(&hash)
            .filter(|known| known.is_fresh() && !known.caller.is_expired(Utc::now()))
            .filter(|known| {
                !self.fleet.as_ref().is_some_and(|fleet| {
                    fleet.revoked_since(
                        known.caller.key_id,
                        known.caller.user.id,
                        known.confirmed_at.timestamp_millis(),
                    )
                })
            })
            .map(|known| known.caller.clone());
        if self.health.is_down()
            && let Some(caller) = known
        {
            return Ok(Some(caller));
        }
        let looked_up = tokio::time::timeout(self.timeout, self.lookup(&key, &hash))
            .await
            .unwrap_or_else(|_| Err(DbErr::Custom("the key lookup timed out".to_owned())));
        let found = match looked_up {
            Ok(found) => found,
            Err(error) => {
                self.health.failed();
                return match known {
                    Some(caller) => {
                        if let Some(count) = self.stale_warnings.allow() {
                            tracing::warn!(
                                %error,
                                count,
                                "database unavailable: keys accepted from their last lookup \
                                 (logged once a minute)"
                            );
                        }
                        Ok(Some(caller))
                    }
                    None => Err(error),
                };
            }
        };
        self.health.answered();
        let mut last_known = self.last_known();
        match &found {
            Some(caller)
                if last_known.keys.len() < LAST_KNOWN_MAX
                    || last_known.keys.contains_key(&hash) =>
            {
                let known = Known {
                    caller: caller.clone(),
                    confirmed_at: Utc::now(),
                };
                last_known.keys.insert(hash, known);
                last_known.dirty = true;
            }
            Some(_) => {}
            None => {
                if last_known.keys.remove(&hash).is_some() {
                    last_known.dirty = true;
                }
            }
        }
        Ok(found)
    }

    fn last_known(&self) -> std::sync::MutexGuard<'_, LastKnown> {
        self.last_known
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The database's answer for `key` (hashed `hash` with the current secret).
    async fn lookup(&self, key: &RawKey, hash: &str) -> Result<Option<Authenticated>, DbErr> {
        if let Some((_, found)) = self.find(hash).await? {
            return Ok(found);
        }
        for old in self.hasher.previous_hashes(key) {
            if let Some((key_id, found)) = self.find(&old).await? {
                // Known under a secret being rotated out: store the current secret's hash.
                access_keys::Entity::update_many()
                    .col_expr(access_keys::Column::KeyHash, Expr::value(hash))
                    .filter(access_keys::Column::Id.eq(key_id))
                    .filter(access_keys::Column::KeyHash.eq(old.as_str()))
                    .exec(&self.db)
                    .await?;
                tracing::info!(
                    prefix = key.prefix(),
                    "access key re-hashed with the current secret"
                );
                return Ok(found);
            }
        }
        Ok(None)
    }

    /// The key stored with `hash`: its id, and the caller if it and its user are active.
    async fn find(&self, hash: &str) -> Result<Option<(Uuid, Option<Authenticated>)>, DbErr> {
        let found = access_keys::Entity::find()
            .filter(access_keys::Column::KeyHash.eq(hash))
            .find_also_related(users::Entity)
            .one(&self.db)
            .await?;
        let Some((key, user)) = found else {
            return Ok(None);
        };
        // The fingerprint only: the sealed key is read when Bedrock is called.
        let credential = if key.is_active {
            use sea_orm::QuerySelect;
            bedrock_credentials::Entity::find_by_id(key.id)
                .select_only()
                .column(bedrock_credentials::Column::KeyHash)
                .into_tuple::<String>()
                .one(&self.db)
                .await?
        } else {
            None
        };
        Ok(Some({
            let caller = match user {
                // The lookup matched by hash; compare again in constant time all the same.
                Some(user)
                    if bool::from(key.key_hash.as_bytes().ct_eq(hash.as_bytes()))
                        && key.is_active
                        && user.is_active
                        && user.deleted_at.is_none() =>
                {
                    Some(Authenticated {
                        key_id: key.id,
                        user,
                        expires_at: key.expires_at,
                        bedrock_region: key.bedrock_region,
                        bedrock_credential: credential,
                    })
                    .filter(|caller| !caller.is_expired(Utc::now()))
                }
                _ => None,
            };
            (key.id, caller)
        }))
    }

    /// Issues a new key for `user_id`; returns its id and the raw key (shown once).
    pub async fn issue(
        &self,
        user_id: Uuid,
        name: Option<String>,
    ) -> Result<(Uuid, RawKey), DbErr> {
        let key = RawKey::generate();
        let id = Uuid::now_v7();
        access_keys::Entity::insert(access_keys::ActiveModel {
            id: Set(id),
            user_id: Set(user_id),
            key_hash: Set(self.hasher.hash(&key)),
            key_prefix: Set(key.prefix().to_owned()),
            name: Set(name),
            is_active: Set(true),
            created_at: Set(Utc::now()),
            revoked_at: Set(None),
            last_used_at: Set(None),
            expires_at: Set(None),
            replaced_by: Set(None),
            bedrock_region: Set(None),
        })
        .exec(&self.db)
        .await?;
        Ok((id, key))
    }

    /// Replaces key `old` with a new one that inherits its owner, name, Bedrock region
    /// and Bedrock credential; `old` stays accepted for `grace`, then is refused. All in
    /// one transaction: a rotation that fails leaves the old key as it was.
    pub async fn rotate(&self, old: Uuid, grace: Duration) -> Result<Rotated, RotateError> {
        use sea_orm::TransactionTrait;
        let txn = self.db.begin().await?;
        let current = access_keys::Entity::find_by_id(old)
            .one(&txn)
            .await?
            .ok_or(RotateError::NotFound)?;
        let now = Utc::now();
        if !current.is_active {
            return Err(RotateError::Revoked);
        }
        if current.replaced_by.is_some() {
            return Err(RotateError::AlreadyRotated(current.expires_at));
        }
        let key = RawKey::generate();
        let id = Uuid::now_v7();
        let expires_at = chrono::Duration::from_std(grace)
            .ok()
            .and_then(|grace| now.checked_add_signed(grace))
            .unwrap_or(DateTime::<Utc>::MAX_UTC);
        access_keys::Entity::insert(access_keys::ActiveModel {
            id: Set(id),
            user_id: Set(current.user_id),
            key_hash: Set(self.hasher.hash(&key)),
            key_prefix: Set(key.prefix().to_owned()),
            name: Set(current.name.clone()),
            is_active: Set(true),
            created_at: Set(now),
            revoked_at: Set(None),
            last_used_at: Set(None),
            expires_at: Set(None),
            replaced_by: Set(None),
            bedrock_region: Set(current.bedrock_region.clone()),
        })
        .exec(&txn)
        .await?;
        if let Some(credential) = bedrock_credentials::Entity::find_by_id(old)
            .one(&txn)
            .await?
        {
            let mut copy: bedrock_credentials::ActiveModel = credential.into();
            copy.access_key_id = Set(id);
            copy.created_at = Set(now);
            copy.updated_at = Set(now);
            bedrock_credentials::Entity::insert(copy).exec(&txn).await?;
        }
        // Only a key not rotated meanwhile changes: two rotations at once make one new key.
        let changed = access_keys::Entity::update_many()
            .col_expr(access_keys::Column::ExpiresAt, Expr::value(expires_at))
            .col_expr(access_keys::Column::ReplacedBy, Expr::value(id))
            .filter(access_keys::Column::Id.eq(old))
            .filter(access_keys::Column::ReplacedBy.is_null())
            .filter(access_keys::Column::IsActive.eq(true))
            .exec(&txn)
            .await?;
        if changed.rows_affected != 1 {
            return Err(RotateError::AlreadyRotated(None));
        }
        txn.commit().await?;
        Ok(Rotated {
            id,
            key,
            old_expires_at: expires_at,
        })
    }
}

/// A rotation's result.
#[derive(Debug)]
pub struct Rotated {
    /// The new key's id.
    pub id: Uuid,
    /// The new key: shown once.
    pub key: RawKey,
    /// When the old key stops being accepted.
    pub old_expires_at: DateTime<Utc>,
}

/// Why a key was not rotated.
#[derive(Debug, thiserror::Error)]
pub enum RotateError {
    /// No such key.
    #[error("no such access key")]
    NotFound,
    /// The key is revoked.
    #[error("the key is revoked")]
    Revoked,
    /// The key was rotated already (a key is rotated once; rotate its replacement).
    #[error("the key was rotated already; rotate the key that replaced it")]
    AlreadyRotated(Option<DateTime<Utc>>),
    /// The database failed.
    #[error(transparent)]
    Database(#[from] DbErr),
}

/// The saved cache: JSON, hash → the caller and when the database confirmed it.
fn read_cache(path: &Path) -> std::io::Result<HashMap<String, Known>> {
    let bytes = std::fs::read(path)?;
    serde_json::from_slice(&bytes).map_err(std::io::Error::other)
}

fn write_cache(path: &Path, keys: &HashMap<String, Known>) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let json = serde_json::to_vec(keys).map_err(std::io::Error::other)?;
    let partial = path.with_extension("partial");
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&partial)?;
    file.write_all(&json)?;
    file.sync_all()?;
    std::fs::rename(&partial, path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_keys_parse_and_hide_in_debug() {
        let key = RawKey::generate();
        assert_eq!(key.expose().len(), KEY_LEN);
        assert_eq!(RawKey::parse(key.expose()), Some(key.clone()));
        assert!(!format!("{key:?}").contains(&key.expose()[SHOWN..]));
        assert_ne!(RawKey::generate(), key);
    }

    #[test]
    fn malformed_keys_are_refused_before_any_lookup() {
        for bad in [
            "",
            "ak_",
            "sk-ant-xyz",
            "ak_../../etc/passwd",
            &format!("ak_{}", "a".repeat(15)),
            &format!("ak_{}", "a".repeat(129)),
            &format!("ak_{}%", "a".repeat(42)),
            &format!("ak_{} ", "a".repeat(42)),
        ] {
            assert_eq!(RawKey::parse(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn keys_of_other_lengths_are_read_for_imported_deployments() {
        for body in ["a".repeat(16), "Zx-_9".repeat(8), "f".repeat(128)] {
            let text = format!("ak_{body}");
            let key = RawKey::parse(&text).expect("a key");
            assert_eq!(key.expose(), text);
        }
    }

    #[test]
    fn hash_depends_on_the_secret() {
        let key = RawKey::generate();
        let one = KeyHasher::new(b"one".to_vec()).hash(&key);
        assert_eq!(one.len(), 64);
        assert_ne!(one, KeyHasher::new(b"two".to_vec()).hash(&key));
        assert_eq!(one, KeyHasher::new(b"one".to_vec()).hash(&key));
    }
}
