//! Secrets given by configuration, or generated once and kept in the state directory.

use std::fs::OpenOptions;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use anyhow::Context;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rand::RngCore;

/// The secret given, else the one kept in `dir/file`, else a new one written there (mode
/// 0600). Says where a generated secret went — never the secret itself.
pub fn load_or_generate(
    dir: &Path,
    file: &str,
    given: Option<&str>,
    what: &str,
) -> anyhow::Result<String> {
    if let Some(secret) = given.filter(|s| !s.trim().is_empty()) {
        return Ok(secret.trim().to_owned());
    }
    let path = dir.join(file);
    match std::fs::read_to_string(&path) {
        Ok(kept) if !kept.trim().is_empty() => return Ok(kept.trim().to_owned()),
        Ok(_) => anyhow::bail!(
            "{} is empty: remove it, or put the {what} in it",
            path.display()
        ),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
        Err(error) => return Err(error).with_context(|| format!("reading {}", path.display())),
    }
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    let secret = URL_SAFE_NO_PAD.encode(bytes);
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&path)
        .with_context(|| format!("creating {}", path.display()))?;
    writeln!(file, "{secret}").with_context(|| format!("writing {}", path.display()))?;
    tracing::warn!(path = %path.display(), "generated a new {what} and stored it (mode 0600); keep this file, or set it in the environment");
    Ok(secret)
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    #[test]
    fn generated_once_then_kept_with_owner_only_permissions() {
        let dir = tempfile_dir();
        let first = load_or_generate(&dir, "secret", None, "test secret").unwrap();
        let second = load_or_generate(&dir, "secret", None, "test secret").unwrap();
        assert_eq!(first, second);
        assert_eq!(first.len(), 43);
        let mode = std::fs::metadata(dir.join("secret"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        assert_eq!(
            load_or_generate(&dir, "secret", Some(" given "), "test secret").unwrap(),
            "given"
        );
        std::fs::remove_dir_all(dir).unwrap();
    }

    fn tempfile_dir() -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!("secrets-test-{}", uuid::Uuid::now_v7()));
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }
}
