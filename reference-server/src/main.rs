//! `reference-server`: `serve`, `users create`, `keys create`, `demo`. See the README.

use std::io::{IsTerminal, Write};
use std::process::ExitCode;

use clap::Parser;
use reference_server::config::{Cli, Command, KeysCommand, UsersCommand};
use reference_server::keys::KeyStore;
use reference_server::server::{open_state, start};
use reference_server::users;
use tracing_subscriber::EnvFilter;

#[tokio::main]
async fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
    match run(Cli::parse()).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("reference-server: {error:#}");
            ExitCode::FAILURE
        }
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
            monthly_budget_usd,
            routing,
        }) => {
            let (db, _) = open_state(&state).await?;
            let id = users::create(&db, &name, monthly_budget_usd, routing).await?;
            eprintln!("created user {name:?}");
            last_line(&id.to_string())
        }
        Command::Demo { dir } => reference_server::demo::run(&dir).await,
        Command::Keys(KeysCommand::Create { state, user, name }) => {
            let (db, hasher) = open_state(&state).await?;
            let (id, key) = KeyStore::new(db, hasher).issue(user, name).await?;
            eprintln!("created access key {id} for user {user}; it is shown only once:");
            last_line(key.expose())
        }
    }
}
