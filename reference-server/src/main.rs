//! `reference-server`: `serve`, `users create`, `keys create`, `demo`. See the README.

use std::io::{IsTerminal, Write};
use std::process::ExitCode;

use clap::Parser;
use reference_server::config::{AdminsCommand, Cli, Command, KeysCommand, LogFormat, UsersCommand};
use reference_server::keys::KeyStore;
use reference_server::server::{open_state, start};
use reference_server::users;
use tracing_subscriber::EnvFilter;

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let filter = match log_filter(cli.log_level.as_deref()) {
        Ok(filter) => filter,
        Err(error) => {
            eprintln!("reference-server: {error:#}");
            return ExitCode::FAILURE;
        }
    };
    let logs = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match cli.log_format {
        LogFormat::Text => logs.with_ansi(std::io::stderr().is_terminal()).init(),
        LogFormat::Json => logs.json().flatten_event(true).init(),
    }
    let format = cli.log_format;
    match run(cli).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            match format {
                LogFormat::Text => eprintln!("reference-server: {error:#}"),
                // A log pipeline gets the reason as one more JSON line.
                LogFormat::Json => tracing::error!(error = format!("{error:#}"), "failed"),
            }
            ExitCode::FAILURE
        }
    }
}

/// `--log-level` if given, else `RUST_LOG`, else `info`; directives that do not parse
/// are an error (a typo must not silently log nothing).
fn log_filter(flag: Option<&str>) -> anyhow::Result<EnvFilter> {
    use anyhow::Context;
    match flag {
        Some(directives) => EnvFilter::try_new(directives)
            .with_context(|| format!("--log-level / PROXY_LOG_LEVEL {directives:?}")),
        None => match std::env::var("RUST_LOG") {
            Ok(directives) if !directives.trim().is_empty() => {
                EnvFilter::try_new(&directives).with_context(|| format!("RUST_LOG {directives:?}"))
            }
            _ => Ok(EnvFilter::new("info")),
        },
    }
}

/// Prints the line a script reads (an id, a key) as the last line on stdout.
fn last_line(line: &str) -> anyhow::Result<()> {
    writeln!(std::io::stdout().lock(), "{line}")?;
    Ok(())
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Serve(args) => start(*args).await?.run_until_signal().await,
        Command::Users(UsersCommand::Create {
            state,
            name,
            description,
            monthly_budget_usd,
            routing,
        }) => {
            let (db, _) = open_state(&state).await?;
            let id = users::create_described(
                &db,
                &name,
                description.as_deref(),
                monthly_budget_usd,
                routing,
            )
            .await?;
            tracing::info!(%id, name, "created user");
            last_line(&id.to_string())
        }
        Command::Admins(AdminsCommand::Create {
            state,
            name,
            role,
            password_stdin,
        }) => {
            let password = if password_stdin {
                let mut line = String::new();
                std::io::stdin().read_line(&mut line)?;
                Some(line.trim_end_matches(['\r', '\n']).to_owned())
            } else {
                None
            };
            let (db, _) = open_state(&state).await?;
            let chosen = password
                .clone()
                .unwrap_or_else(reference_server::admins::generate_password);
            let id = reference_server::admins::create(&db, &name, role, &chosen).await?;
            tracing::info!(%id, name = name.trim(), role = role.as_str(), "created admin");
            match password {
                Some(_) => Ok(()),
                None => {
                    tracing::info!(
                        "the generated password follows on stdout; it is shown only once"
                    );
                    last_line(&chosen)
                }
            }
        }
        Command::Demo { dir, serve, bind } => {
            reference_server::demo::run(&dir, serve.then_some(bind)).await
        }
        Command::ImportOriginal(args) => reference_server::server::import_original(*args).await,
        Command::Ingest(args) => reference_server::ingest::run(*args).await,
        Command::Keys(KeysCommand::Create { state, user, name }) => {
            let (db, hasher) = open_state(&state).await?;
            let (id, key) = KeyStore::new(db, hasher).issue(user, name).await?;
            tracing::info!(%id, %user, "created access key; it is shown only once, on stdout");
            last_line(key.expose())
        }
    }
}
