//! Access keys' own Bedrock: the region and the Bedrock API key a key is billed under,
//! sealed in `bedrock_credentials` ([`crate::crypto`]) and opened only when Bedrock is
//! called — then kept in memory, by fingerprint, so a replaced credential is seen at the
//! next authentication and KMS is asked once per credential, not per request.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use chrono::Utc;
use sea_orm::ActiveValue::Set;
use sea_orm::sea_query::OnConflict;
use sea_orm::{DatabaseConnection, DbErr, EntityTrait};
use uuid::Uuid;

use crate::bedrock::Account;
use crate::crypto::{CryptoError, Plaintext, Scheme, Vault, fingerprint};
use crate::entity::bedrock_credentials;
use crate::keys::Authenticated;

/// Opened credentials kept at most (one per key that used Bedrock lately).
const CACHE_MAX: usize = 10_000;

/// Why a key's Bedrock credential could not be used.
#[derive(Debug, thiserror::Error)]
pub enum CredentialError {
    /// The database failed.
    #[error("the database: {0}")]
    Database(#[from] DbErr),
    /// It does not open.
    #[error(transparent)]
    Crypto(#[from] CryptoError),
    /// The row names a scheme this server does not know.
    #[error("unknown encryption {0:?}")]
    UnknownScheme(String),
}

/// The keys' Bedrock credentials.
#[derive(Clone, Debug)]
pub struct Credentials {
    db: DatabaseConnection,
    vault: Vault,
    opened: Arc<Mutex<HashMap<Uuid, (String, Plaintext)>>>,
}

impl Credentials {
    /// Credentials in `db`, sealed and opened with `vault`.
    pub fn new(db: DatabaseConnection, vault: Vault) -> Self {
        Self {
            db,
            vault,
            opened: Arc::default(),
        }
    }

    /// Whose Bedrock `caller`'s requests use: its region, and its API key opened.
    pub async fn account(&self, caller: &Authenticated) -> Result<Account, CredentialError> {
        let api_key = match &caller.bedrock_credential {
            None => None,
            Some(wanted) => Some(self.open(caller.key_id, wanted).await?),
        };
        Ok(Account {
            region: caller.bedrock_region.clone(),
            api_key,
        })
    }

    async fn open(&self, key_id: Uuid, wanted: &str) -> Result<Plaintext, CredentialError> {
        if let Some((hash, plaintext)) = self.lock().get(&key_id)
            && hash == wanted
        {
            return Ok(plaintext.clone());
        }
        let row = bedrock_credentials::Entity::find_by_id(key_id)
            .one(&self.db)
            .await?
            .ok_or_else(|| DbErr::RecordNotFound(format!("no Bedrock credential for {key_id}")))?;
        let scheme = Scheme::from_stored(&row.encryption)
            .ok_or_else(|| CredentialError::UnknownScheme(row.encryption.clone()))?;
        let plaintext = self.vault.open(&row.encrypted, scheme).await?;
        let mut opened = self.lock();
        if opened.len() >= CACHE_MAX {
            opened.clear();
        }
        opened.insert(key_id, (row.key_hash, plaintext.clone()));
        Ok(plaintext)
    }

    /// Links `api_key` to access key `key_id` (replacing any): sealed, with its
    /// fingerprint. The row as stored.
    pub async fn set(
        &self,
        key_id: Uuid,
        api_key: &str,
    ) -> Result<bedrock_credentials::Model, CredentialError> {
        let (encrypted, scheme) = self.vault.seal(api_key).await?;
        let now = Utc::now();
        let row = bedrock_credentials::ActiveModel {
            access_key_id: Set(key_id),
            encrypted: Set(encrypted),
            encryption: Set(scheme.as_str().to_owned()),
            key_hash: Set(fingerprint(api_key)),
            created_at: Set(now),
            updated_at: Set(now),
        };
        bedrock_credentials::Entity::insert(row)
            .on_conflict(
                OnConflict::column(bedrock_credentials::Column::AccessKeyId)
                    .update_columns([
                        bedrock_credentials::Column::Encrypted,
                        bedrock_credentials::Column::Encryption,
                        bedrock_credentials::Column::KeyHash,
                        bedrock_credentials::Column::UpdatedAt,
                    ])
                    .to_owned(),
            )
            .exec(&self.db)
            .await?;
        self.lock().remove(&key_id);
        Ok(bedrock_credentials::Entity::find_by_id(key_id)
            .one(&self.db)
            .await?
            .ok_or_else(|| DbErr::RecordNotFound(format!("the credential of {key_id}")))?)
    }

    /// Unlinks access key `key_id`'s credential; whether there was one.
    pub async fn remove(&self, key_id: Uuid) -> Result<bool, CredentialError> {
        let deleted = bedrock_credentials::Entity::delete_by_id(key_id)
            .exec(&self.db)
            .await?;
        self.lock().remove(&key_id);
        Ok(deleted.rows_affected > 0)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Uuid, (String, Plaintext)>> {
        self.opened.lock().unwrap_or_else(PoisonError::into_inner)
    }
}
