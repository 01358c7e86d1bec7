//! The console's accounts from the command line: `admins create` stores an argon2id hash
//! (never the password), prints a generated password once, reads one from stdin, and
//! refuses a taken name or a short password with a clear error.

use std::io::Write;
use std::process::{Output, Stdio};

use sea_orm::{Database, EntityTrait};
use usage_tests::process::server_binary;

fn create(url: &str, state: &std::path::Path, args: &[&str], stdin: Option<&str>) -> Output {
    let mut child = std::process::Command::new(server_binary())
        .args(["admins", "create"])
        .arg(format!("--database-url={url}"))
        .arg(format!("--state-dir={}", state.display()))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the command runs");
    if let Some(input) = stdin {
        child
            .stdin
            .take()
            .unwrap()
            .write_all(input.as_bytes())
            .unwrap();
    }
    child.wait_with_output().expect("it ends")
}

#[tokio::test]
async fn admins_are_created_with_argon2id_hashes() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!(
        "sqlite://{}?mode=rwc",
        dir.path().join("console.db").display()
    );

    let made = create(&url, dir.path(), &["--name=ada"], None);
    assert!(
        made.status.success(),
        "{}",
        String::from_utf8_lossy(&made.stderr)
    );
    let password = String::from_utf8(made.stdout).unwrap().trim().to_owned();
    assert_eq!(password.len(), 24, "a generated password, shown once");
    assert!(!String::from_utf8_lossy(&made.stderr).contains(&password));

    let given = create(
        &url,
        dir.path(),
        &["--name=viv", "--role=viewer", "--password-stdin"],
        Some("a long enough passphrase\n"),
    );
    assert!(
        given.status.success(),
        "{}",
        String::from_utf8_lossy(&given.stderr)
    );
    assert!(given.stdout.is_empty(), "a given password is not printed");

    let db = Database::connect(&url).await.unwrap();
    let accounts = reference_server::entity::admins::Entity::find()
        .all(&db)
        .await
        .unwrap();
    assert_eq!(accounts.len(), 2);
    for account in &accounts {
        assert!(
            account.password_hash.starts_with("$argon2id$"),
            "{}",
            account.password_hash
        );
        assert!(!account.password_hash.contains(&password));
    }
    let ada = reference_server::admins::verify(&db, "ada", &password)
        .await
        .unwrap();
    assert_eq!(ada.map(|a| a.role), Some("admin".to_owned()));
    let viv = reference_server::admins::verify(&db, "viv", "a long enough passphrase")
        .await
        .unwrap();
    assert_eq!(viv.map(|a| a.role), Some("viewer".to_owned()));
    assert!(
        reference_server::admins::verify(&db, "ada", "wrong")
            .await
            .unwrap()
            .is_none()
    );
    assert!(
        reference_server::admins::verify(&db, "nobody", &password)
            .await
            .unwrap()
            .is_none()
    );

    let taken = create(&url, dir.path(), &["--name=ada"], None);
    assert!(!taken.status.success());
    assert!(String::from_utf8_lossy(&taken.stderr).contains("exists already"));
    let short = create(
        &url,
        dir.path(),
        &["--name=bob", "--password-stdin"],
        Some("short\n"),
    );
    assert!(!short.status.success());
    assert!(String::from_utf8_lossy(&short.stderr).contains("at least 12 characters"));
    let bad = create(&url, dir.path(), &["--name=a b"], None);
    assert!(!bad.status.success());
}
