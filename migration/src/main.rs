//! `migration [--only server|usage] up [-n N] | down [-n N] | status | fresh`, with
//! `DATABASE_URL` set (or `--database-url`).
//!
//! Without `--only`, a command applies to both schemas: `up` and `fresh` take the
//! server's first, `down` the usage tables' first, and `-n N` counts migrations of each
//! schema apart. `fresh` drops only the tables of the schemas it applies to.

use std::io::Write;

use anyhow::Context;
use clap::{Parser, Subcommand, ValueEnum};
use migration::{Command, Schema};
use sea_orm_migration::sea_orm::Database;

/// Migrations of the reference server's tables and of the usage tables.
#[derive(Debug, Parser)]
#[command(version)]
struct Cli {
    /// The database, e.g. `postgres://user@host/db` or `sqlite://usage.db?mode=rwc`.
    #[arg(
        short = 'u',
        long,
        env = "DATABASE_URL",
        global = true,
        hide_env_values = true
    )]
    database_url: Option<String>,
    /// Only this schema (default: both).
    #[arg(long, value_enum, global = true)]
    only: Option<Only>,
    #[command(subcommand)]
    command: Action,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum Only {
    /// The reference server's users and access keys.
    Server,
    /// The usage tables (`token_usage`, `usage_aggregates`).
    Usage,
}

#[derive(Clone, Copy, Debug, Subcommand)]
enum Action {
    /// Apply pending migrations.
    Up {
        /// Only the first N pending migrations (of each schema).
        #[arg(short = 'n', long)]
        num: Option<u32>,
    },
    /// Roll back applied migrations (data the older schema cannot hold is kept aside).
    Down {
        /// How many of the last applied migrations (of each schema).
        #[arg(short = 'n', long, default_value_t = 1)]
        num: u32,
    },
    /// Show which migrations are applied.
    Status,
    /// Drop the schema's own tables (usage data included), then apply every migration.
    Fresh,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "sea_orm_migration=info,usage_layer=info".into()),
        )
        .init();
    let cli = Cli::parse();
    let url = cli
        .database_url
        .context("no database: set DATABASE_URL or pass --database-url")?;
    let db = Database::connect(&url)
        .await
        .context("connecting to the database")?;
    let (command, schemas) = match cli.command {
        Action::Up { num } => (Command::Up(num), Schema::ALL),
        Action::Down { num } => (Command::Down(Some(num)), [Schema::Usage, Schema::Server]),
        Action::Status => (Command::Status, Schema::ALL),
        Action::Fresh => (Command::Fresh, Schema::ALL),
    };
    let only = cli.only.map(|only| match only {
        Only::Server => Schema::Server,
        Only::Usage => Schema::Usage,
    });
    let mut out = std::io::stdout().lock();
    for schema in schemas
        .into_iter()
        .filter(|s| only.is_none_or(|only| only == *s))
    {
        let migrations = schema
            .run(&db, command)
            .await
            .with_context(|| format!("{} schema: {command:?}", schema.name()))?;
        if command == Command::Status {
            writeln!(
                out,
                "{} ({}):",
                schema.name(),
                schema.owned().tracking_table
            )?;
            for migration in migrations {
                writeln!(out, "  {:<8} {}", migration.status(), migration.name())?;
            }
        }
    }
    db.close().await?;
    Ok(())
}
