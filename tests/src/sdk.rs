//! The official SDKs as clients: a driver process per SDK (`tests/sdk/python/driver.py`
//! with the pinned `anthropic` package, `tests/sdk/node/driver.mjs` with the locked
//! `@anthropic-ai/sdk`, `tests/sdk/python/openai_driver.py` with the pinned `openai`
//! package), spoken to one JSON line per call.
//!
//! `scripts/test.sh` installs them (a venv at `.venv`, `npm ci` in `tests/sdk/node`). When an
//! SDK is missing the test fails and says how to install it: these tests never skip.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, Lines};
use tokio::process::{Child, ChildStdin, ChildStdout, Command};

/// Which official SDK.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Sdk {
    /// PyPI `anthropic`.
    Python,
    /// npm `@anthropic-ai/sdk`.
    TypeScript,
    /// PyPI `openai` (`tests/sdk/python/openai_driver.py`).
    OpenAiPython,
}

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the workspace")
        .to_owned()
}

/// A running SDK driver.
#[derive(Debug)]
pub struct SdkClient {
    sdk: Sdk,
    /// The SDK's version, as it reports it.
    pub version: String,
    child: Child,
    stdin: ChildStdin,
    stdout: Lines<BufReader<ChildStdout>>,
}

impl SdkClient {
    /// Starts the driver for `sdk` with `base_url` (`http://ADDR/ak/KEY`); panics, saying how to
    /// install it, when the SDK is not there.
    pub async fn start(sdk: Sdk, base_url: &str) -> Self {
        let root = workspace_root();
        let (program, script, install) = match sdk {
            Sdk::Python | Sdk::OpenAiPython => {
                let python = std::env::var_os("SDK_PYTHON")
                    .map(PathBuf::from)
                    .unwrap_or_else(|| root.join(".venv/bin/python"));
                let driver = if sdk == Sdk::Python {
                    "driver.py"
                } else {
                    "openai_driver.py"
                };
                (
                    python,
                    root.join("tests/sdk/python").join(driver),
                    "python3 -m venv .venv && .venv/bin/pip install -r tests/sdk/python/requirements.txt",
                )
            }
            Sdk::TypeScript => {
                let modules = root.join("tests/sdk/node/node_modules/@anthropic-ai/sdk");
                assert!(
                    modules.is_dir(),
                    "the official TypeScript SDK is not installed at {}: run scripts/test.sh, \
                     or `npm ci` in tests/sdk/node",
                    modules.display()
                );
                (
                    PathBuf::from("node"),
                    root.join("tests/sdk/node/driver.mjs"),
                    "npm ci --prefix tests/sdk/node",
                )
            }
        };
        let mut child = Command::new(&program)
            .arg(&script)
            .arg(base_url)
            .current_dir(&root)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "cannot run {} for the {sdk:?} SDK ({e}): run scripts/test.sh, or: {install}",
                    program.display()
                )
            });
        let stdin = child.stdin.take().expect("stdin");
        let stdout = BufReader::new(child.stdout.take().expect("stdout")).lines();
        let mut client = Self {
            sdk,
            version: String::new(),
            child,
            stdin,
            stdout,
        };
        let hello = client.read().await.unwrap_or_else(|| {
            panic!("the {sdk:?} SDK driver did not start (is the SDK installed? run scripts/test.sh, or: {install})")
        });
        client.version = hello["version"].as_str().expect("a version").to_owned();
        client
    }

    async fn read(&mut self) -> Option<Value> {
        let line = tokio::time::timeout(Duration::from_secs(60), self.stdout.next_line())
            .await
            .unwrap_or_else(|_| panic!("the {:?} SDK driver did not answer in 60 s", self.sdk))
            .expect("the driver's stdout")?;
        Some(
            serde_json::from_str(&line)
                .unwrap_or_else(|e| panic!("the {:?} SDK driver wrote {line:?}: {e}", self.sdk)),
        )
    }

    /// Sends one command line to the driver: its answer.
    pub async fn call(&mut self, command: Value) -> Value {
        let mut line = command.to_string();
        line.push('\n');
        self.stdin
            .write_all(line.as_bytes())
            .await
            .expect("the driver's stdin");
        self.stdin.flush().await.expect("the driver's stdin");
        self.read()
            .await
            .unwrap_or_else(|| panic!("the {:?} SDK driver exited", self.sdk))
    }

    /// `messages.stream(params)`, read to the end: the SDK's answer.
    pub async fn stream(&mut self, params: &Value) -> Value {
        self.call(json!({"op": "stream", "params": params})).await
    }

    /// `messages.create(params)` (not streaming): the SDK's answer.
    pub async fn create(&mut self, params: &Value) -> Value {
        self.call(json!({"op": "create", "params": params})).await
    }

    /// A stream the client leaves after `events` events.
    pub async fn abort_after(&mut self, params: &Value, events: usize) -> Value {
        self.call(json!({"op": "abort", "params": params, "abort_after": events}))
            .await
    }

    /// Ends the driver.
    pub async fn close(mut self) {
        drop(self.stdin);
        let _ = tokio::time::timeout(Duration::from_secs(10), self.child.wait()).await;
    }
}
