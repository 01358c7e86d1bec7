//! The binary's logs: `--log-format json` writes one JSON object per stderr line — the
//! commands' own messages and a failure's reason included — and `--log-level` goes over
//! `RUST_LOG`.

use std::process::Output;

use usage_tests::process::server_binary;

fn run(args: &[&str], rust_log: Option<&str>) -> Output {
    let mut command = std::process::Command::new(server_binary());
    command.args(args).env_remove("RUST_LOG");
    if let Some(directives) = rust_log {
        command.env("RUST_LOG", directives);
    }
    command.output().expect("the command runs")
}

/// Every stderr line, parsed as JSON (a line that is not JSON fails the test).
fn json_lines(output: &Output) -> Vec<serde_json::Value> {
    String::from_utf8_lossy(&output.stderr)
        .lines()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|error| panic!("{error}: {line:?}")))
        .collect()
}

#[test]
fn json_logs_are_one_object_per_line_failures_included() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!(
        "--database-url=sqlite://{}/p.db?mode=rwc",
        dir.path().display()
    );
    let state = format!("--state-dir={}", dir.path().display());
    let created = run(
        &[
            "users",
            "create",
            "--name=ada",
            &url,
            &state,
            "--log-format=json",
        ],
        None,
    );
    assert!(created.status.success());
    let lines = json_lines(&created);
    assert!(lines.iter().all(|line| {
        line["timestamp"].is_string() && line["level"].is_string() && line["target"].is_string()
    }));
    let id = String::from_utf8(created.stdout).unwrap();
    let said = lines
        .iter()
        .find(|line| line["message"] == "created user")
        .expect("the command's own message is a log line");
    assert_eq!(said["name"], "ada");
    assert_eq!(said["id"], id.trim());

    let failed = run(
        &[
            "users",
            "create",
            "--name=ada",
            "--database-url=postgres://nobody@127.0.0.1:9/none",
            "--database-timeout=1",
            &state,
            "--log-format=json",
        ],
        None,
    );
    assert!(!failed.status.success());
    let lines = json_lines(&failed);
    let last = lines.last().expect("the failure is logged");
    assert_eq!(last["level"], "ERROR");
    assert!(
        last["error"]
            .as_str()
            .unwrap()
            .contains("connecting to the database"),
        "{last}"
    );
}

#[test]
fn the_log_level_flag_goes_over_rust_log_and_a_bad_one_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!(
        "--database-url=sqlite://{}/p.db?mode=rwc",
        dir.path().display()
    );
    let state = format!("--state-dir={}", dir.path().display());
    let quiet = run(
        &[
            "users",
            "create",
            "--name=a",
            &url,
            &state,
            "--log-level=warn",
        ],
        Some("info"),
    );
    assert!(quiet.status.success());
    let said = String::from_utf8_lossy(&quiet.stderr);
    assert!(!said.contains("created user"), "{said}");

    let chatty = run(&["users", "create", "--name=b", &url, &state], Some("info"));
    assert!(String::from_utf8_lossy(&chatty.stderr).contains("created user"));
    let default = run(&["users", "create", "--name=b", &url, &state], None);
    assert!(String::from_utf8_lossy(&default.stderr).contains("created user"));

    let typo = run(
        &[
            "users",
            "create",
            "--name=c",
            &url,
            &state,
            "--log-level=inf,x=[",
        ],
        None,
    );
    assert!(!typo.status.success());
    assert!(
        String::from_utf8_lossy(&typo.stderr).contains("--log-level"),
        "{}",
        String::from_utf8_lossy(&typo.stderr)
    );
}
