//! The console's accounts: a name, a password kept as an argon2id hash (the `argon2`
//! crate's defaults: 19 MiB, 2 passes, 1 lane, a random 16-byte salt), and a role —
//! `admin` may change things, `viewer` only reads.
//!
//! `reference-server admins create --name N [--role viewer] [--password-stdin]` makes one
//! and, unless a password was given, prints a generated one, once.

use argon2::Argon2;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::Utc;
use rand::RngCore;
use sea_orm::ActiveValue::Set;
use sea_orm::{ColumnTrait, DatabaseConnection, EntityTrait, QueryFilter};
use uuid::Uuid;

use crate::entity::admins;

/// What an account may do.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Role {
    /// Everything.
    Admin,
    /// Read only.
    Viewer,
}

impl Role {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Admin => "admin",
            Self::Viewer => "viewer",
        }
    }

    /// From the stored name (anything unknown reads only).
    pub fn from_stored(name: &str) -> Self {
        if name == "admin" {
            Self::Admin
        } else {
            Self::Viewer
        }
    }
}

/// The shortest password accepted.
pub const MIN_PASSWORD_CHARS: usize = 12;

/// Why an account was not made.
#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    /// The name is taken.
    #[error("an admin named {0:?} exists already")]
    Taken(String),
    /// The name cannot be one.
    #[error("an admin name is 1 to 64 of a-z A-Z 0-9 . _ @ -")]
    BadName,
    /// The password is too short.
    #[error("a password has at least {MIN_PASSWORD_CHARS} characters")]
    ShortPassword,
    /// Hashing failed.
    #[error("hashing the password: {0}")]
    Hash(String),
    /// The database failed.
    #[error(transparent)]
    Database(#[from] sea_orm::DbErr),
}

/// A new random password: 24 characters of base64url (144 bits).
pub fn generate_password() -> String {
    let mut bytes = [0u8; 18];
    rand::rng().fill_bytes(&mut bytes);
    URL_SAFE_NO_PAD.encode(bytes)
}

/// The argon2id hash of `password` with a fresh salt, in PHC string format.
pub fn hash_password(password: &str) -> Result<String, AdminError> {
    let mut salt = [0u8; 16];
    rand::rng().fill_bytes(&mut salt);
    let salt =
        SaltString::encode_b64(&salt).map_err(|error| AdminError::Hash(error.to_string()))?;
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|hash| hash.to_string())
        .map_err(|error| AdminError::Hash(error.to_string()))
}

/// Whether `password` matches `hash` (a PHC string); a malformed hash matches nothing.
pub fn verify_password(hash: &str, password: &str) -> bool {
    PasswordHash::new(hash).is_ok_and(|hash| {
        Argon2::default()
            .verify_password(password.as_bytes(), &hash)
            .is_ok()
    })
}

/// Makes an account; its id.
pub async fn create(
    db: &DatabaseConnection,
    name: &str,
    role: Role,
    password: &str,
) -> Result<Uuid, AdminError> {
    let name = name.trim();
    let well_formed = (1..=64).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'@' | b'-'));
    if !well_formed {
        return Err(AdminError::BadName);
    }
    if password.chars().count() < MIN_PASSWORD_CHARS {
        return Err(AdminError::ShortPassword);
    }
    let taken = admins::Entity::find()
        .filter(admins::Column::Name.eq(name))
        .one(db)
        .await?;
    if taken.is_some() {
        return Err(AdminError::Taken(name.to_owned()));
    }
    let id = Uuid::now_v7();
    admins::Entity::insert(admins::ActiveModel {
        id: Set(id),
        name: Set(name.to_owned()),
        password_hash: Set(hash_password(password)?),
        role: Set(role.as_str().to_owned()),
        created_at: Set(Utc::now()),
        disabled_at: Set(None),
        last_login_at: Set(None),
    })
    .exec(db)
    .await?;
    Ok(id)
}

/// Makes the account `name` with `role` and `password`, or gives the existing one that
/// password and role (and enables it).
pub async fn set_password(
    db: &DatabaseConnection,
    name: &str,
    role: Role,
    password: &str,
) -> Result<(), AdminError> {
    let existing = admins::Entity::find()
        .filter(admins::Column::Name.eq(name.trim()))
        .one(db)
        .await?;
    let Some(existing) = existing else {
        return create(db, name, role, password).await.map(drop);
    };
    if password.chars().count() < MIN_PASSWORD_CHARS {
        return Err(AdminError::ShortPassword);
    }
    let mut account: admins::ActiveModel = existing.into();
    account.password_hash = Set(hash_password(password)?);
    account.role = Set(role.as_str().to_owned());
    account.disabled_at = Set(None);
    sea_orm::ActiveModelTrait::update(account, db).await?;
    Ok(())
}

/// The enabled account `name` if `password` is its password. An unknown name costs a
/// hash verification too, so the answer's time does not tell which names exist.
pub async fn verify(
    db: &DatabaseConnection,
    name: &str,
    password: &str,
) -> Result<Option<admins::Model>, sea_orm::DbErr> {
    let account = admins::Entity::find()
        .filter(admins::Column::Name.eq(name.trim()))
        .one(db)
        .await?;
    let hash = account
        .as_ref()
        .map_or_else(unknown_account_hash, |account| {
            account.password_hash.clone()
        });
    let matches = tokio::task::spawn_blocking({
        let password = password.to_owned();
        move || verify_password(&hash, &password)
    })
    .await
    .unwrap_or(false);
    Ok(account.filter(|account| matches && account.disabled_at.is_none()))
}

/// A hash no password matches, verified for unknown names.
fn unknown_account_hash() -> String {
    static HASH: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    HASH.get_or_init(|| hash_password(&generate_password()).unwrap_or_default())
        .clone()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_are_argon2id_hashes_with_their_own_salt() {
        let hash = hash_password("correct horse battery").unwrap();
        assert!(
            hash.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"),
            "{hash}"
        );
        assert!(verify_password(&hash, "correct horse battery"));
        assert!(!verify_password(&hash, "correct horse batterx"));
        assert_ne!(hash, hash_password("correct horse battery").unwrap());
        assert!(!verify_password("not a hash", "anything"));
    }

    #[test]
    fn generated_passwords_are_long_and_differ() {
        let password = generate_password();
        assert_eq!(password.len(), 24);
        assert!(password.len() >= MIN_PASSWORD_CHARS);
        assert_ne!(password, generate_password());
    }
}
