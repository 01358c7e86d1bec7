//! The sea-orm store: `token_usage` rows and `usage_aggregates` buckets, on Postgres or
//! SQLite (feature `sea-orm`; the application picks the sqlx driver features of sea-orm).
//!
//! A batch is **one transaction**: the rows are inserted with
//! `ON CONFLICT (request_id) DO NOTHING … RETURNING request_id`, then the aggregates of
//! **only the rows actually inserted** are added — summed per bucket key and upserted
//! in a fixed key order (so concurrent writers take row locks
//! in the same order and cannot deadlock). Writing a batch again changes nothing: a retry
//! after an ambiguous commit never counts twice.
//!
//! On Postgres a batch is one statement: the rows as one array per column (`INSERT …
//! SELECT … FROM UNNEST(…)`) in a CTE, and the upsert of the batch's sums, also as
//! arrays, applied only if that CTE inserted every row. Its text is the same for every
//! batch, so it is prepared once per connection, and the values travel as binary
//! arrays. When not every row was inserted (a retry of rows partly stored), the sums of
//! those that were follow as multi-row `VALUES` upserts, as on other databases, which
//! get multi-row `VALUES` lists cut into chunks of a few fixed sizes.
//!
//! The key order is `bucket_type` minute, hour, day, week, month, then start, user, key
//! and provider (bytewise). Builds before the one that added migration 7 ordered the
//! Postgres upserts by SQL text order instead: while writers of both run at once (a
//! rolling upgrade), Postgres may abort one of them as a deadlock; that batch rolls back
//! and is retried, and nothing is counted twice.
//!
//! Text is stored as given, with one exception on every backend alike: a NUL character
//! (which a Postgres `text` cannot hold — it would refuse the whole batch, again at every
//! retry) is stored as U+FFFD. Caller ids and providers longer than their columns are cut
//! (see [`UsageRecord::bound_ids`]).
//!
//! The schema comes from [`migration`]: [`SeaOrmStore::migrate`] creates or upgrades
//! these two tables (and touches no other), with their own tracking table.

pub mod entity;
pub mod migration;
mod queries;
mod rows;
mod unnest;

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use sea_orm::sea_query::{Expr, ExprTrait, OnConflict, Query};
use sea_orm::{
    ConnectionTrait, DatabaseConnection, DbBackend, DbErr, IdenStatic, TransactionTrait, Value,
};

use self::entity::{token_usage, usage_aggregates};
pub use self::queries::{
    BucketRange, FallbackCount, ModelCost, OutcomeCount, Outcomes, Totals, UnpricedModel,
    UsageFilter, UsageQueries, UserTotals,
};
use self::rows::{AggregateKey, UsageRow};
use super::buckets::{BucketType, Buckets};
use crate::pricing::Pricing;
use crate::record::UsageRecord;
use crate::sink::UsageStore;

/// A failure to write a batch; the batch is rolled back as a whole.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The database refused or could not be reached.
    #[error("usage store: {0}")]
    Database(#[from] DbErr),
}

/// What one batch did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct BatchOutcome {
    /// Rows inserted (and added to the aggregates).
    pub inserted: u64,
    /// Records whose `request_id` was already stored (or repeated in the batch): skipped.
    pub duplicates: u64,
    /// Inserted rows with usage but no known price (cost 0, flagged `unpriced`).
    pub unpriced: u64,
}

/// Counters over the store's life.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct StoreStats {
    /// Rows inserted.
    pub inserted: u64,
    /// Records skipped as already stored.
    pub duplicates: u64,
    /// Rows stored unpriced.
    pub unpriced: u64,
}

#[derive(Debug, Default)]
struct Counters {
    inserted: AtomicU64,
    duplicates: AtomicU64,
    unpriced: AtomicU64,
}

/// Writes usage records to `token_usage` and `usage_aggregates`; see the [module docs](self).
#[derive(Clone, Debug)]
pub struct SeaOrmStore {
    db: DatabaseConnection,
    pricing: Pricing,
    buckets: Buckets,
    counters: Arc<Counters>,
}

/// Bind parameters per statement, under SQLite's default limit of 32,766 (Postgres: 65,535).
const MAX_BINDS: usize = 32_000;

/// The rows per multi-row statement: a batch is cut into chunks of these sizes only
/// (largest first), so the statements' texts do not depend on the batch's size. A
/// driver that caches prepared statements per connection (sqlx keeps 100 per
/// connection, each holding memory on both sides) then holds at most five texts per
/// statement kind, instead of one per batch size ever seen.
const CHUNK_SIZES: [usize; 5] = [256, 64, 16, 4, 1];

/// `items` in chunks of [`CHUNK_SIZES`] (those of at most `max` rows), largest first.
fn fixed_chunks<T>(items: &[T], max: usize) -> impl Iterator<Item = &[T]> {
    let mut rest = items;
    std::iter::from_fn(move || {
        let size = CHUNK_SIZES
            .into_iter()
            .find(|&size| size <= rest.len() && size <= max)?;
        let (chunk, after) = rest.split_at(size);
        rest = after;
        Some(chunk)
    })
}

impl SeaOrmStore {
    /// A store on `db`, pricing with `pricing` (a catalog, or a [`Pricing`] the
    /// application may replace while the store runs), bucketing with `buckets`.
    pub fn new(db: DatabaseConnection, pricing: impl Into<Pricing>, buckets: Buckets) -> Self {
        Self {
            db,
            pricing: pricing.into(),
            buckets,
            counters: Arc::default(),
        }
    }

    /// Applies every pending migration of the usage tables (see [`migration`]): creates
    /// `token_usage` and `usage_aggregates`, or brings them up to date. Other tables of
    /// the database, and an application's own migrations, are not touched.
    pub async fn migrate(db: &DatabaseConnection) -> Result<(), StoreError> {
        use self::migration::{MigratorTrait, UsageMigrator};
        Ok(UsageMigrator::up(db, None).await?)
    }

    /// The connection.
    pub fn connection(&self) -> &DatabaseConnection {
        &self.db
    }

    /// Queries over what this store wrote, with its buckets.
    pub fn queries(&self) -> UsageQueries {
        UsageQueries::new(self.db.clone(), self.buckets)
    }

    /// Counters over the store's life.
    pub fn stats(&self) -> StoreStats {
        StoreStats {
            inserted: self.counters.inserted.load(Ordering::Relaxed),
            duplicates: self.counters.duplicates.load(Ordering::Relaxed),
            unpriced: self.counters.unpriced.load(Ordering::Relaxed),
        }
    }

    /// Writes a batch inside a transaction (or connection) the caller controls: nothing is
    /// committed here. [`UsageStore::write_batch`] wraps this in its own transaction.
    pub async fn write_batch_in<C: ConnectionTrait>(
        &self,
        conn: &C,
        batch: &[UsageRecord],
    ) -> Result<BatchOutcome, StoreError> {
        // A request id repeated within the batch is stored once: its first record wins.
        let mut seen = HashSet::with_capacity(batch.len());
        let pricing = self.pricing.current();
        let rows: Vec<UsageRow> = batch
            .iter()
            .filter(|record| seen.insert(record.request_id.as_str()))
            .map(|record| UsageRow::new(record, &pricing))
            .collect();

        let postgres = conn.get_database_backend() == DbBackend::Postgres;
        let inserted_ids = if postgres {
            self.write_postgres(conn, &rows).await?
        } else {
            insert_rows(conn, &rows).await?
        };
        let inserted: Vec<&UsageRow> = rows
            .iter()
            .filter(|row| inserted_ids.contains(&row.request_id))
            .collect();
        if !postgres {
            self.add_to_aggregates(conn, inserted.iter().copied())
                .await?;
        }

        let outcome = BatchOutcome {
            inserted: inserted.len() as u64,
            duplicates: (batch.len() - inserted.len()) as u64,
            unpriced: inserted.iter().filter(|row| row.unpriced).count() as u64,
        };
        Ok(outcome)
    }

    /// Postgres: the rows, and the aggregates of those inserted, in **one statement** —
    /// the rows' `INSERT … ON CONFLICT DO NOTHING RETURNING request_id` as a CTE, and an
    /// upsert of each bucket key's sums over the whole batch, keys in order, which takes
    /// effect only if that CTE inserted every row (`(SELECT count(*) …) = n`). One
    /// statement is one round trip (with sqlx 0.9.0, which left Nagle on, also one wait
    /// for a delayed ACK: BENCHMARKS.md, sections 10 and 12). When some rows were stored already — a
    /// retry — the sums of those inserted are added by multi-row `VALUES` upserts in the
    /// same transaction. It returns the request ids inserted.
    async fn write_postgres<C: ConnectionTrait>(
        &self,
        conn: &C,
        rows: &[UsageRow],
    ) -> Result<HashSet<String>, StoreError> {
        if rows.is_empty() {
            return Ok(HashSet::new());
        }
        let rows_source = unnest::Arrays::new(
            "r",
            &UsageRow::columns().map(|column| column.as_str()),
            rows.iter().map(UsageRow::values),
            1,
        )?;
        // `$count`, the rows the batch holds, follows the rows' arrays; the sums' follow it.
        let count = rows_source.values.len() + 1;
        let sums = self.sums_by_key(rows.iter());
        let aggregates = unnest::Arrays::new(
            "a",
            &AggregateKey::columns().map(|column| column.as_str()),
            sums.iter().map(|(key, sums)| key.values(sums)),
            count + 1,
        )?;
        let table = unnest::quote(usage_aggregates::Entity.as_str());
        let added = rows::Sums::columns().map(|column| {
            let column = unnest::quote(column.as_str());
            format!("{column} = {table}.{column} + excluded.{column}")
        });
        let conflict = AggregateKey::key_columns().map(|column| unnest::quote(column.as_str()));
        let insert_rows = rows_source.insert_into(
            token_usage::Entity.as_str(),
            None,
            "ON CONFLICT (\"request_id\") DO NOTHING RETURNING \"request_id\"",
        );
        let add_sums = aggregates.insert_into(
            usage_aggregates::Entity.as_str(),
            Some(&format!("(SELECT count(*) FROM \"#inserted\") = ${count}")),
            &format!(
                "ON CONFLICT ({}) DO UPDATE SET {}",
                conflict.join(", "),
                added.join(", ")
            ),
        );
        let sql = format!(
            "WITH \"#inserted\" AS ({insert_rows}), \"#added\" AS ({add_sums}) \
             SELECT \"request_id\" FROM \"#inserted\""
        );
        let values = rows_source
            .values
            .into_iter()
            .chain([Value::BigInt(Some(rows.len() as i64))])
            .chain(aggregates.values);
        let statement = sea_orm::Statement::from_sql_and_values(DbBackend::Postgres, sql, values);
        let mut inserted = HashSet::with_capacity(rows.len());
        for row in conn.query_all_raw(statement).await? {
            inserted.insert(row.try_get::<String>("", "request_id")?);
        }
        if inserted.len() < rows.len() {
            // Some were stored already (a retry): the sums sent were not added; add those
            // of the rows inserted now, in the same transaction.
            let new = rows.iter().filter(|row| inserted.contains(&row.request_id));
            self.add_to_aggregates(conn, new).await?;
        }
        Ok(inserted)
    }

    /// Each bucket key's sums over `rows`, keys in order.
    fn sums_by_key<'r>(
        &self,
        rows: impl Iterator<Item = &'r UsageRow>,
    ) -> BTreeMap<AggregateKey, rows::Sums> {
        let mut sums: BTreeMap<AggregateKey, rows::Sums> = BTreeMap::new();
        for row in rows {
            let row_sums = row.sums();
            for kind in BucketType::ALL {
                let key = row.aggregate_key(kind, self.buckets.start(kind, row.timestamp));
                sums.entry(key).or_default().add(&row_sums);
            }
        }
        sums
    }

    /// Adds the rows to their buckets: one pre-summed upsert per key, keys in order.
    async fn add_to_aggregates<'r, C: ConnectionTrait>(
        &self,
        conn: &C,
        rows: impl Iterator<Item = &'r UsageRow>,
    ) -> Result<(), StoreError> {
        let sums: Vec<(AggregateKey, rows::Sums)> = self.sums_by_key(rows).into_iter().collect();
        if sums.is_empty() {
            return Ok(());
        }
        for chunk in fixed_chunks(&sums, MAX_BINDS / AggregateKey::COLUMNS) {
            let mut upsert = Query::insert();
            upsert
                .into_table(usage_aggregates::Entity)
                .columns(AggregateKey::columns())
                .on_conflict(
                    OnConflict::columns(AggregateKey::key_columns())
                        .values(rows::Sums::columns().map(|column| {
                            let added = Expr::col((usage_aggregates::Entity, column))
                                .add(Expr::cust(format!("excluded.\"{}\"", column.as_str())));
                            (column, added)
                        }))
                        .to_owned(),
                );
            for (key, sums) in chunk {
                upsert.values_panic(key.values(sums).map(Expr::val));
            }
            conn.execute(&upsert).await?;
        }
        Ok(())
    }
}

/// Inserts the rows that are not stored yet (`ON CONFLICT (request_id) DO NOTHING`), as
/// multi-row `VALUES` of fixed sizes, and returns the request ids of those it inserted.
async fn insert_rows<C: ConnectionTrait>(
    conn: &C,
    rows: &[UsageRow],
) -> Result<HashSet<String>, StoreError> {
    let mut inserted = HashSet::with_capacity(rows.len());
    let returned = |row: sea_orm::QueryResult| row.try_get::<String>("", "request_id");
    for chunk in fixed_chunks(rows, MAX_BINDS / UsageRow::COLUMNS) {
        let mut insert = Query::insert();
        insert
            .into_table(token_usage::Entity)
            .columns(UsageRow::columns())
            .on_conflict(
                OnConflict::column(token_usage::Column::RequestId)
                    .do_nothing()
                    .to_owned(),
            )
            .returning_col(token_usage::Column::RequestId);
        for row in chunk {
            insert.values_panic(row.values().map(Expr::val));
        }
        for row in conn.query_all(&insert).await? {
            inserted.insert(returned(row)?);
        }
    }
    Ok(inserted)
}

impl UsageStore for SeaOrmStore {
    type Error = StoreError;

    async fn write_batch(&self, batch: &[UsageRecord]) -> Result<(), StoreError> {
        let txn = self.db.begin().await?;
        let outcome = self.write_batch_in(&txn, batch).await?;
        txn.commit().await?;
        self.counters
            .inserted
            .fetch_add(outcome.inserted, Ordering::Relaxed);
        self.counters
            .duplicates
            .fetch_add(outcome.duplicates, Ordering::Relaxed);
        self.counters
            .unpriced
            .fetch_add(outcome.unpriced, Ordering::Relaxed);
        if outcome.unpriced > 0 {
            tracing::warn!(
                rows = outcome.unpriced,
                "usage stored without a price (unknown model): cost recorded as 0"
            );
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    proptest! {
        /// For any batch size: the chunks cover the batch in order, each has one of the
        /// fixed sizes (within the statement's limit), and no size below the largest that
        /// fits repeats more than three times — so a batch of `n` takes O(log n) statements.
        #[test]
        fn any_batch_is_cut_into_fixed_sizes(n in 0usize..3000, max in prop::sample::select(vec![1usize, 5, 100, 744, 2666])) {
            let items: Vec<usize> = (0..n).collect();
            let chunks: Vec<&[usize]> = fixed_chunks(&items, max).collect();
            prop_assert_eq!(chunks.concat(), items.clone());
            let largest = CHUNK_SIZES.into_iter().find(|&size| size <= max).unwrap();
            for size in CHUNK_SIZES {
                let count = chunks.iter().filter(|chunk| chunk.len() == size).count();
                prop_assert!(count == 0 || size <= max);
                if size < largest {
                    prop_assert!(count <= 3, "{} chunks of {}", count, size);
                }
            }
            prop_assert!(chunks.iter().all(|chunk| CHUNK_SIZES.contains(&chunk.len())));
        }
    }
}
