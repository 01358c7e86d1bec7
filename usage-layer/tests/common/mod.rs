//! Helpers shared by the integration tests.
#![allow(dead_code, unreachable_pub)] // each test binary uses a part

use std::path::PathBuf;

/// `../shared/fixtures` next to the repository, or `$USAGE_FIXTURES_DIR`.
pub fn fixtures_dir() -> PathBuf {
    let dir = std::env::var_os("USAGE_FIXTURES_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/fixtures"));
    assert!(
        dir.join("README.md").is_file(),
        "SSE fixtures not found at {} (set USAGE_FIXTURES_DIR to shared/fixtures)",
        dir.display()
    );
    dir
}

/// One row of the fixtures README's table: the usage the official SDK reports.
#[derive(Debug)]
pub struct Expected {
    pub file: String,
    pub input: Option<u64>,
    pub output: Option<u64>,
    pub cache_creation: Option<u64>,
    pub cache_read: Option<u64>,
}

/// The fixture files with the usage the README says the SDK reports for each.
pub fn sse_fixtures() -> Vec<(Expected, Vec<u8>)> {
    let dir = fixtures_dir();
    let readme = std::fs::read_to_string(dir.join("README.md")).unwrap();
    let cell = |text: &str| -> Option<u64> {
        match text.trim() {
            "null" => None,
            number => Some(
                number
                    .parse()
                    .unwrap_or_else(|_| panic!("bad cell {number:?}")),
            ),
        }
    };
    let rows: Vec<Expected> = readme
        .lines()
        .filter(|line| line.starts_with("| ") && line.contains(".txt"))
        .map(|line| {
            let cells: Vec<&str> = line.trim_matches('|').split('|').collect();
            assert_eq!(cells.len(), 5, "table row {line:?}");
            Expected {
                file: cells[0].trim().to_owned(),
                input: cell(cells[1]),
                output: cell(cells[2]),
                cache_creation: cell(cells[3]),
                cache_read: cell(cells[4]),
            }
        })
        .collect();
    assert!(
        rows.len() >= 7,
        "expected the fixture table, found {} rows",
        rows.len()
    );
    rows.into_iter()
        .map(|row| {
            let path = dir.join("sse/anthropic-sdk-python").join(&row.file);
            let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            (row, bytes)
        })
        .collect()
}

/// The same stream with every line end (LF, as the fixtures have) replaced by `ending`.
pub fn with_line_ending(lf_stream: &[u8], ending: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(lf_stream.len() * 2);
    for &byte in lf_stream {
        if byte == b'\n' {
            out.extend_from_slice(ending);
        } else {
            out.push(byte);
        }
    }
    out
}
