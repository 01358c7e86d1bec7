//! Secrets at rest — an access key's own Bedrock API key — sealed with AES-256-GCM
//! (a 12-byte random nonce, the 16-byte tag after the ciphertext, no associated data):
//!
//! * **local**: the key is SHA-256 of `PROXY_LOCAL_ENCRYPTION_KEY` (UTF-8); the blob is
//!   `nonce ‖ ciphertext ‖ tag`;
//! * **kms**: each secret gets its own data key from KMS `GenerateDataKey` (AES-256) under
//!   `PROXY_KMS_KEY_ID`; the blob is `len(encrypted data key)` (2 bytes, big-endian) ‖
//!   the encrypted data key ‖ `nonce ‖ ciphertext ‖ tag`; KMS `Decrypt` gives the data
//!   key back. The plaintext data key never leaves this process's memory.
//!
//! These are the original proxy's formats as well (see `ORIGINAL_SCHEMA.md`), so the
//! importer opens its blobs with this code and the original's key material.
//!
//! A secret that does not open — another key, a changed blob — is an error that says so
//! and shows neither the secret nor the key.

use aes_gcm::aead::{Aead, KeyInit};
use aes_gcm::{Aes256Gcm, Key, Nonce};
use rand::RngCore;
use sha2::{Digest, Sha256};

const NONCE_LEN: usize = 12;
const TAG_LEN: usize = 16;

/// How a blob was sealed: the `encryption` column's values.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scheme {
    /// With the server's local key.
    Local,
    /// With a KMS data key.
    Kms,
}

impl Scheme {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Local => "local",
            Self::Kms => "kms",
        }
    }

    /// From the stored name.
    pub fn from_stored(name: &str) -> Option<Self> {
        match name {
            "local" => Some(Self::Local),
            "kms" => Some(Self::Kms),
            _ => None,
        }
    }
}

/// Why a secret could not be sealed or opened.
#[derive(Debug, thiserror::Error)]
pub enum CryptoError {
    /// The blob is too short or its parts do not add up.
    #[error("the sealed secret is malformed")]
    Malformed,
    /// Authentication failed: another key sealed it, or it was changed.
    #[error(
        "the sealed secret does not open with this key (another key sealed it, or it was changed)"
    )]
    WrongKey,
    /// The scheme's key is not configured here.
    #[error("the secret is sealed with {0}, which this server is not configured for")]
    NotConfigured(&'static str),
    /// KMS refused or could not be reached.
    #[error("KMS: {0}")]
    Kms(String),
    /// What was opened is not UTF-8 text.
    #[error("the opened secret is not text")]
    NotText,
}

/// A secret in clear; its `Debug` does not show it.
#[derive(Clone, PartialEq, Eq)]
pub struct Plaintext(String);

impl Plaintext {
    /// The secret, for the one place that uses it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl From<String> for Plaintext {
    fn from(secret: String) -> Self {
        Self(secret)
    }
}

impl std::fmt::Debug for Plaintext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Plaintext(<redacted>)")
    }
}

/// The hex SHA-256 of a secret: stored beside it, to show that one is linked and which.
pub fn fingerprint(secret: &str) -> String {
    Sha256::digest(secret.as_bytes())
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect()
}

/// An AES-256 key held locally.
#[derive(Clone)]
pub struct LocalKey(Key<Aes256Gcm>);

impl std::fmt::Debug for LocalKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("LocalKey(<redacted>)")
    }
}

impl LocalKey {
    /// The key derived from a passphrase: SHA-256 of its UTF-8 bytes.
    pub fn from_passphrase(passphrase: &str) -> Self {
        Self(Sha256::digest(passphrase.as_bytes()))
    }

    /// `nonce ‖ ciphertext ‖ tag`.
    pub fn seal(&self, plaintext: &[u8]) -> Vec<u8> {
        seal_with(&self.0, plaintext)
    }

    /// The plaintext of [`seal`](Self::seal)'s blob.
    pub fn open(&self, blob: &[u8]) -> Result<Vec<u8>, CryptoError> {
        open_with(&self.0, blob)
    }
}

fn seal_with(key: &Key<Aes256Gcm>, plaintext: &[u8]) -> Vec<u8> {
    let mut nonce = [0u8; NONCE_LEN];
    rand::rng().fill_bytes(&mut nonce);
    let sealed = Aes256Gcm::new(key)
        .encrypt(&Nonce::from(nonce), plaintext)
        .expect("AES-GCM encrypts any plaintext shorter than 64 GiB");
    let mut blob = Vec::with_capacity(NONCE_LEN + sealed.len());
    blob.extend_from_slice(&nonce);
    blob.extend_from_slice(&sealed);
    blob
}

fn open_with(key: &Key<Aes256Gcm>, blob: &[u8]) -> Result<Vec<u8>, CryptoError> {
    if blob.len() < NONCE_LEN + TAG_LEN {
        return Err(CryptoError::Malformed);
    }
    let (nonce, sealed) = blob.split_at(NONCE_LEN);
    let nonce: [u8; NONCE_LEN] = nonce.try_into().map_err(|_| CryptoError::Malformed)?;
    Aes256Gcm::new(key)
        .decrypt(&Nonce::from(nonce), sealed)
        .map_err(|_| CryptoError::WrongKey)
}

/// A KMS key that seals data keys.
#[derive(Clone, Debug)]
pub struct Kms {
    client: aws_sdk_kms::Client,
    key_id: String,
}

impl Kms {
    /// Data keys from `key_id` (an id, ARN or alias) through `client`.
    pub fn new(client: aws_sdk_kms::Client, key_id: String) -> Self {
        Self { client, key_id }
    }

    /// The envelope: `len ‖ encrypted data key ‖ nonce ‖ ciphertext ‖ tag`.
    pub async fn seal(&self, plaintext: &[u8]) -> Result<Vec<u8>, CryptoError> {
        let generated = self
            .client
            .generate_data_key()
            .key_id(&self.key_id)
            .key_spec(aws_sdk_kms::types::DataKeySpec::Aes256)
            .send()
            .await
            .map_err(kms_error)?;
        let (Some(data_key), Some(encrypted_key)) =
            (generated.plaintext(), generated.ciphertext_blob())
        else {
            return Err(CryptoError::Kms(
                "GenerateDataKey returned no key".to_owned(),
            ));
        };
        let data_key = data_key_of(data_key.as_ref())?;
        let encrypted_key = encrypted_key.as_ref();
        let length = u16::try_from(encrypted_key.len())
            .map_err(|_| CryptoError::Kms("the encrypted data key is too long".to_owned()))?;
        let mut blob = Vec::new();
        blob.extend_from_slice(&length.to_be_bytes());
        blob.extend_from_slice(encrypted_key);
        blob.extend_from_slice(&seal_with(&data_key, plaintext));
        Ok(blob)
    }

    /// The plaintext of [`seal`](Self::seal)'s envelope.
    pub async fn open(&self, blob: &[u8]) -> Result<Vec<u8>, CryptoError> {
        let (length, rest) = blob.split_at_checked(2).ok_or(CryptoError::Malformed)?;
        let length = usize::from(u16::from_be_bytes([length[0], length[1]]));
        let (encrypted_key, sealed) = rest
            .split_at_checked(length)
            .ok_or(CryptoError::Malformed)?;
        let decrypted = self
            .client
            .decrypt()
            .ciphertext_blob(aws_sdk_kms::primitives::Blob::new(encrypted_key))
            .send()
            .await
            .map_err(kms_error)?;
        let data_key = decrypted
            .plaintext()
            .ok_or_else(|| CryptoError::Kms("Decrypt returned no key".to_owned()))?;
        open_with(&data_key_of(data_key.as_ref())?, sealed)
    }
}

fn data_key_of(bytes: &[u8]) -> Result<Key<Aes256Gcm>, CryptoError> {
    let bytes: [u8; 32] = bytes
        .try_into()
        .map_err(|_| CryptoError::Kms("the data key is not 256 bits".to_owned()))?;
    Ok(bytes.into())
}

/// KMS's error code and message (they name keys and operations, never plaintext).
fn kms_error<E, R>(error: aws_sdk_kms::error::SdkError<E, R>) -> CryptoError
where
    E: aws_sdk_kms::error::ProvideErrorMetadata + std::error::Error + 'static,
    R: std::fmt::Debug,
{
    let text = match error.as_service_error() {
        Some(service) => format!(
            "{}: {}",
            service.code().unwrap_or("error"),
            service.message().unwrap_or("")
        ),
        None => aws_smithy_types::error::display::DisplayErrorContext(&error).to_string(),
    };
    CryptoError::Kms(text)
}

/// Where this server seals secrets (KMS when configured, else the local key) and what it
/// can open (either, if it has the key for it).
#[derive(Clone, Debug)]
pub struct Vault {
    local: Option<LocalKey>,
    kms: Option<Kms>,
}

impl Vault {
    /// With these keys; `kms` seals when given.
    pub fn new(local: Option<LocalKey>, kms: Option<Kms>) -> Self {
        Self { local, kms }
    }

    /// Seals `secret`: the blob and how it was sealed.
    pub async fn seal(&self, secret: &str) -> Result<(Vec<u8>, Scheme), CryptoError> {
        match (&self.kms, &self.local) {
            (Some(kms), _) => Ok((kms.seal(secret.as_bytes()).await?, Scheme::Kms)),
            (None, Some(local)) => Ok((local.seal(secret.as_bytes()), Scheme::Local)),
            (None, None) => Err(CryptoError::NotConfigured("any key")),
        }
    }

    /// Opens a blob sealed with `scheme`.
    pub async fn open(&self, blob: &[u8], scheme: Scheme) -> Result<Plaintext, CryptoError> {
        let opened = match scheme {
            Scheme::Local => self
                .local
                .as_ref()
                .ok_or(CryptoError::NotConfigured("a local key"))?
                .open(blob)?,
            Scheme::Kms => {
                self.kms
                    .as_ref()
                    .ok_or(CryptoError::NotConfigured("KMS (PROXY_KMS_KEY_ID)"))?
                    .open(blob)
                    .await?
            }
        };
        String::from_utf8(opened)
            .map(Plaintext)
            .map_err(|_| CryptoError::NotText)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn local_blobs_open_with_their_key_only() {
        let key = LocalKey::from_passphrase("correct horse");
        let blob = key.seal(b"ABSK-secret");
        assert_eq!(blob.len(), NONCE_LEN + b"ABSK-secret".len() + TAG_LEN);
        assert_eq!(key.open(&blob).unwrap(), b"ABSK-secret");
        assert_ne!(key.seal(b"ABSK-secret"), blob, "a fresh nonce each time");
        let other = LocalKey::from_passphrase("battery staple");
        assert!(matches!(other.open(&blob), Err(CryptoError::WrongKey)));
        let mut changed = blob.clone();
        *changed.last_mut().unwrap() ^= 1;
        assert!(matches!(key.open(&changed), Err(CryptoError::WrongKey)));
        assert!(matches!(key.open(&blob[..20]), Err(CryptoError::Malformed)));
        assert!(!format!("{key:?}").contains("horse"));
    }

    #[test]
    fn the_local_key_is_the_sha256_of_the_passphrase() {
        // An independent AES-256-GCM with that key opens the blob: the format is the
        // one documented (nonce first, tag last, no associated data).
        let blob = LocalKey::from_passphrase("p").seal(b"x");
        let key = Sha256::digest(b"p");
        let cipher = Aes256Gcm::new(&key);
        let nonce: [u8; 12] = blob[..12].try_into().unwrap();
        let opened = cipher.decrypt(&Nonce::from(nonce), &blob[12..]).unwrap();
        assert_eq!(opened, b"x");
    }

    #[test]
    fn fingerprints_are_hex_sha256() {
        assert_eq!(
            fingerprint("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn plaintext_hides_in_debug() {
        assert_eq!(
            format!("{:?}", Plaintext("ABSK".into())),
            "Plaintext(<redacted>)"
        );
    }
}
