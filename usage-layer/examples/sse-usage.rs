//! Reads the usage of SSE stream files, as the layer would, and prints one JSON line per file.
//!
//! ```text
//! cargo run -p usage-layer --example sse-usage -- [--chunk-size N] FILE...
//! ```
//!
//! Each file is fed to the scanner in pieces of N bytes (default: the whole file at once).

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use serde::Serialize;
use usage_layer::Outcome;
use usage_layer::sse::Scanner;

/// One output line; fields in this order.
#[derive(Serialize)]
struct Line<'a> {
    file: String,
    input_tokens: Option<u64>,
    output_tokens: Option<u64>,
    cache_creation_input_tokens: Option<u64>,
    cache_read_input_tokens: Option<u64>,
    model: Option<&'a str>,
    outcome: &'static str,
}

const USAGE: &str = "usage: sse-usage [--chunk-size N] FILE...";

fn main() -> ExitCode {
    let (chunk_size, files) = match parse_args(std::env::args().skip(1)) {
        Ok(args) => args,
        Err(message) => {
            eprintln!("sse-usage: {message}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    let mut stdout = std::io::stdout().lock();
    let mut status = ExitCode::SUCCESS;
    for file in files {
        let bytes = match std::fs::read(&file) {
            Ok(bytes) => bytes,
            Err(error) => {
                eprintln!("sse-usage: {}: {error}", file.display());
                status = ExitCode::FAILURE;
                continue;
            }
        };
        let mut scanner = Scanner::new();
        for piece in bytes.chunks(chunk_size.unwrap_or(bytes.len()).max(1)) {
            scanner.feed(piece);
        }
        let body = scanner.finish();
        let usage = body.billed_usage();
        let line = Line {
            file: file.display().to_string(),
            input_tokens: usage.input_tokens,
            output_tokens: usage.output_tokens,
            cache_creation_input_tokens: usage.cache_creation_input_tokens,
            cache_read_input_tokens: usage.cache_read_input_tokens,
            model: body.model.as_deref(),
            outcome: Outcome::of_ended_body(&body, true).as_str(),
        };
        let json = serde_json::to_string(&line).expect("a flat struct serialises");
        if writeln!(stdout, "{json}").is_err() {
            return ExitCode::FAILURE; // stdout closed
        }
    }
    status
}

fn parse_args(
    mut args: impl Iterator<Item = String>,
) -> Result<(Option<usize>, Vec<PathBuf>), String> {
    let mut chunk_size = None;
    let mut files = Vec::new();
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--chunk-size" => {
                let value = args.next().ok_or("--chunk-size needs a value")?;
                match value.parse::<usize>() {
                    Ok(n) if n > 0 => chunk_size = Some(n),
                    _ => return Err(format!("--chunk-size: not a positive integer: {value:?}")),
                }
            }
            "-h" | "--help" => return Err("help".to_owned()),
            _ => files.push(PathBuf::from(arg)),
        }
    }
    if files.is_empty() {
        return Err("no FILE given".to_owned());
    }
    Ok((chunk_size, files))
}
