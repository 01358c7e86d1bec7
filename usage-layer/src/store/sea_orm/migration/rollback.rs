//! Keeping data aside on `down`, and taking it back on the next `up`.
//!
//! A rollback must never lose usage data (it is what bills are made of). What a `down`
//! cannot represent in the older schema goes to a `*_rollback` table; the next `up`
//! restores it and drops that table. A rollback table that is already there is an
//! error, never overwritten.
//!
//! For migrations on Postgres or SQLite; table and column names are quoted.

use sea_orm_migration::prelude::*;
use sea_orm_migration::sea_orm::{ConnectionTrait, DbBackend, Statement};

use super::has_table;

fn quote(identifier: &str) -> String {
    format!("\"{}\"", identifier.replace('"', "\"\""))
}

fn list(columns: &[impl AsRef<str>]) -> String {
    columns
        .iter()
        .map(|c| quote(c.as_ref()))
        .collect::<Vec<_>>()
        .join(", ")
}

async fn run(manager: &SchemaManager<'_>, sql: &str) -> Result<(), DbErr> {
    manager.get_connection().execute_unprepared(sql).await?;
    Ok(())
}

async fn exists(manager: &SchemaManager<'_>, table: &str) -> Result<bool, DbErr> {
    has_table(manager.get_connection(), table).await
}

/// The columns of `table`, in their order.
async fn columns_of(manager: &SchemaManager<'_>, table: &str) -> Result<Vec<String>, DbErr> {
    let backend = manager.get_database_backend();
    let sql = match backend {
        DbBackend::Postgres => {
            "SELECT column_name AS name FROM information_schema.columns \
             WHERE table_schema = current_schema() AND table_name = $1 ORDER BY ordinal_position"
        }
        _ => "SELECT name FROM pragma_table_info(?) ORDER BY cid",
    };
    manager
        .get_connection()
        .query_all_raw(Statement::from_sql_and_values(backend, sql, [table.into()]))
        .await?
        .iter()
        .map(|row| row.try_get("", "name"))
        .collect()
}

async fn ensure_free(manager: &SchemaManager<'_>, rollback: &str) -> Result<(), DbErr> {
    if exists(manager, rollback).await? {
        return Err(DbErr::Migration(format!(
            "table {rollback} already holds data set aside by an earlier rollback; \
             run the migration up to restore it, or move it away, before rolling back again"
        )));
    }
    Ok(())
}

/// Renames `table` to `rollback` (a whole table the older schema does not have).
pub async fn set_aside_table(
    manager: &SchemaManager<'_>,
    table: &str,
    rollback: &str,
) -> Result<(), DbErr> {
    ensure_free(manager, rollback).await?;
    run(
        manager,
        &format!("ALTER TABLE {} RENAME TO {}", quote(table), quote(rollback)),
    )
    .await
}

/// Renames `rollback` back to `table` if it exists; returns whether it did.
pub async fn take_back_table(
    manager: &SchemaManager<'_>,
    table: &str,
    rollback: &str,
) -> Result<bool, DbErr> {
    if !exists(manager, rollback).await? {
        return Ok(false);
    }
    run(
        manager,
        &format!("ALTER TABLE {} RENAME TO {}", quote(rollback), quote(table)),
    )
    .await?;
    Ok(true)
}

/// Moves the rows of `table` matching `condition` (SQL) into `rollback`.
pub async fn set_aside_rows(
    manager: &SchemaManager<'_>,
    table: &str,
    condition: &str,
    rollback: &str,
) -> Result<(), DbErr> {
    ensure_free(manager, rollback).await?;
    let (table, rollback) = (quote(table), quote(rollback));
    run(
        manager,
        &format!("CREATE TABLE {rollback} AS SELECT * FROM {table} WHERE {condition}"),
    )
    .await?;
    run(manager, &format!("DELETE FROM {table} WHERE {condition}")).await
}

/// Moves the rows kept in `rollback` back into `table` (every column `rollback` has,
/// which `table` must have again) and drops it.
pub async fn take_back_rows(
    manager: &SchemaManager<'_>,
    table: &str,
    rollback: &str,
) -> Result<(), DbErr> {
    if !exists(manager, rollback).await? {
        return Ok(());
    }
    let columns = columns_of(manager, rollback).await?;
    let columns = list(&columns);
    let (table, rollback) = (quote(table), quote(rollback));
    run(
        manager,
        &format!("INSERT INTO {table} ({columns}) SELECT {columns} FROM {rollback}"),
    )
    .await?;
    run(manager, &format!("DROP TABLE {rollback}")).await
}

fn names(columns: &[ColumnDef]) -> Vec<String> {
    columns.iter().map(ColumnDef::get_column_name).collect()
}

/// Copies `key` and `columns` of every row into `rollback`, then drops the columns.
pub async fn set_aside_columns(
    manager: &SchemaManager<'_>,
    table: &str,
    key: &str,
    columns: &[ColumnDef],
    rollback: &str,
) -> Result<(), DbErr> {
    ensure_free(manager, rollback).await?;
    let columns = names(columns);
    run(
        manager,
        &format!(
            "CREATE TABLE {} AS SELECT {}, {} FROM {}",
            quote(rollback),
            quote(key),
            list(&columns),
            quote(table)
        ),
    )
    .await?;
    for column in &columns {
        // One column a statement: SQLite alters one thing at a time.
        run(
            manager,
            &format!("ALTER TABLE {} DROP COLUMN {}", quote(table), quote(column)),
        )
        .await?;
    }
    Ok(())
}

/// Adds `columns` to `table`, then puts back the values an earlier
/// [`set_aside_columns`] kept in `rollback` (matching rows by `key`), and drops it.
pub async fn add_columns(
    manager: &SchemaManager<'_>,
    table: &str,
    key: &str,
    columns: Vec<ColumnDef>,
    rollback: &str,
) -> Result<(), DbErr> {
    let names = names(&columns);
    for mut column in columns {
        // One column a statement: SQLite alters one thing at a time.
        manager
            .alter_table(
                Table::alter()
                    .table(Alias::new(table))
                    .add_column(&mut column)
                    .to_owned(),
            )
            .await?;
    }
    if !exists(manager, rollback).await? {
        return Ok(());
    }
    let (table_q, rollback_q, key_q) = (quote(table), quote(rollback), quote(key));
    let assignments = names
        .iter()
        .map(|column| {
            let column = quote(column);
            format!(
                "{column} = (SELECT r.{column} FROM {rollback_q} r WHERE r.{key_q} = {table_q}.{key_q})"
            )
        })
        .collect::<Vec<_>>()
        .join(", ");
    run(
        manager,
        &format!(
            "UPDATE {table_q} SET {assignments} WHERE {key_q} IN (SELECT {key_q} FROM {rollback_q})"
        ),
    )
    .await?;
    run(manager, &format!("DROP TABLE {rollback_q}")).await
}
