//! Reads the usage of response body files, as the layer would, and prints one JSON line per
//! file.
//!
//! ```text
//! cargo run -p usage-layer --example sse-usage -- [--chunk-size N] [--format F] FILE...
//! ```
//!
//! A file is an SSE stream, or a non-streaming JSON body when its name ends in `.json`. It is
//! read in fixed-size reads of N bytes (default 64 KiB) and each read is fed to the reader
//! as it comes, so memory stays flat whatever the file's size and a timing shows the reader,
//! not the loading. The format (`anthropic`, `openai_chat`, `openai_responses`) is
//! recognised from the content unless `--format` names it. Counts have Anthropic's meaning
//! in every format (OpenAI's input counts exclude their cached tokens here);
//! `reasoning_tokens` is printed when the body reports it.

use std::fs::File;
use std::io::{ErrorKind, Read, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use serde::Serialize;
use usage_layer::Format;
use usage_layer::Outcome;
use usage_layer::anthropic::{BodyUsage, JsonReader};
use usage_layer::sse::Scanner;

/// One output line; fields in this order.
#[derive(Serialize)]
struct Line<'a> {
    file: String,
    input_tokens: Option<u64>,
    output_tokens: Option<u64>,
    cache_creation_input_tokens: Option<u64>,
    cache_read_input_tokens: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    reasoning_tokens: Option<u64>,
    model: Option<&'a str>,
    format: Option<&'static str>,
    outcome: &'static str,
}

const USAGE: &str =
    "usage: sse-usage [--chunk-size N] [--format anthropic|openai_chat|openai_responses] FILE...";

/// The default read size: large enough that reading costs little beside scanning.
const DEFAULT_READ: usize = 64 * 1024;

struct Args {
    chunk_size: usize,
    format: Option<Format>,
    files: Vec<PathBuf>,
}

/// Reads `path` in reads of `chunk_size` bytes into the reader its name calls for.
fn read_file(
    path: &Path,
    chunk_size: usize,
    format: Option<Format>,
) -> std::io::Result<(BodyUsage, bool)> {
    #[allow(
        clippy::large_enum_variant,
        reason = "one reader per file, on the stack: boxing the scanner gains nothing"
    )]
    enum Reader {
        Sse(Scanner),
        Json(JsonReader),
    }
    let streaming = path.extension().is_none_or(|extension| extension != "json");
    let mut reader = if streaming {
        Reader::Sse(Scanner::new().with_format(format))
    } else {
        Reader::Json(
            JsonReader::new(usage_layer::anthropic::DEFAULT_MAX_JSON_BYTES).with_format(format),
        )
    };
    let mut file = File::open(path)?;
    let mut buf = vec![0; chunk_size];
    loop {
        let n = match file.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(error) if error.kind() == ErrorKind::Interrupted => continue,
            Err(error) => return Err(error),
        };
        match &mut reader {
            Reader::Sse(scanner) => scanner.feed(&buf[..n]),
            Reader::Json(json) => json.feed(&buf[..n]),
        }
    }
    let body = match reader {
        Reader::Sse(scanner) => scanner.finish(),
        Reader::Json(json) => json.finish(),
    };
    Ok((body, streaming))
}

fn main() -> ExitCode {
    let Args {
        chunk_size,
        format,
        files,
    } = match parse_args(std::env::args().skip(1)) {
        Ok(args) => args,
        Err(message) => {
            eprintln!("sse-usage: {message}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    let mut stdout = std::io::stdout().lock();
    let mut status = ExitCode::SUCCESS;
    for file in files {
        let (body, streaming) = match read_file(&file, chunk_size, format) {
            Ok(read) => read,
            Err(error) => {
                eprintln!("sse-usage: {}: {error}", file.display());
                status = ExitCode::FAILURE;
                continue;
            }
        };
        let usage = body.billed_usage();
        let line = Line {
            file: file.display().to_string(),
            input_tokens: usage.input_tokens,
            output_tokens: usage.output_tokens,
            cache_creation_input_tokens: usage.cache_creation_input_tokens,
            cache_read_input_tokens: usage.cache_read_input_tokens,
            reasoning_tokens: usage.reasoning_tokens,
            model: body.model.as_deref(),
            format: body.format.map(Format::as_str),
            outcome: Outcome::of_ended_body(&body, streaming).as_str(),
        };
        let json = serde_json::to_string(&line).expect("a flat struct serialises");
        if writeln!(stdout, "{json}").is_err() {
            return ExitCode::FAILURE; // stdout closed
        }
    }
    status
}

fn parse_args(mut args: impl Iterator<Item = String>) -> Result<Args, String> {
    let mut chunk_size = DEFAULT_READ;
    let mut format = None;
    let mut files = Vec::new();
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--chunk-size" => {
                let value = args.next().ok_or("--chunk-size needs a value")?;
                match value.parse::<usize>() {
                    Ok(n) if n > 0 => chunk_size = n,
                    _ => return Err(format!("--chunk-size: not a positive integer: {value:?}")),
                }
            }
            "--format" => {
                let value = args.next().ok_or("--format needs a value")?;
                format = Some(
                    Format::from_name(&value)
                        .ok_or_else(|| format!("--format: unknown format {value:?}"))?,
                );
            }
            "-h" | "--help" => return Err("help".to_owned()),
            _ => files.push(PathBuf::from(arg)),
        }
    }
    if files.is_empty() {
        return Err("no FILE given".to_owned());
    }
    Ok(Args {
        chunk_size,
        format,
        files,
    })
}
