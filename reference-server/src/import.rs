//! `import-original`: an original proxy's database (Alembic revision 006 or 008, see
//! `ORIGINAL_SCHEMA.md`) brought into ours — users, access keys, their Bedrock keys, model
//! mappings, every usage row and the aggregates.
//!
//! * **Keys keep working**: the original stores the same HMAC-SHA256 of each raw key that
//!   we do, so with the same `PROXY_KEY_HASHER_SECRET` every raw key authenticates here
//!   as it did there. A `rotating` key keeps its expiry; a `revoked` key stays revoked.
//! * **Bedrock keys** are opened the original's way (its local key — SHA-256 of its
//!   `PROXY_LOCAL_ENCRYPTION_KEY`, else of the key-hashing secret, else of its JWT secret —
//!   or its KMS envelope) and sealed ours ([`crate::crypto::Vault`]). All of them are
//!   opened before anything is written: one that does not open stops the import, since
//!   its key would otherwise be billed to the server's AWS account.
//! * **Usage** keeps its provider, fallback flag, costs, price snapshot and request id;
//!   the aggregates keep their buckets (provider `bedrock` at revision 006, which had
//!   none), and the original's duplicate key-less aggregates — its unique key let NULL
//!   keys repeat — are summed into one.
//! * **Idempotent**: rows are matched by id (users, keys, mappings), by request id (usage),
//!   by bucket key (aggregates), by access key (Bedrock keys), and a row present here is
//!   left as it is: a second run changes nothing. `--dry-run` reads and plans only.
//! * It ends by comparing, per provider and month (UTC), the request count and the token
//!   and cost totals of the original's rows with those of the same rows read back here.
//!
//! The original's buckets are Asia/Seoul days with weeks from Sunday; the aggregates are
//! brought as they are, so this server must bucket the same way
//! (`PROXY_USAGE_TIMEZONE=Asia/Seoul`, `PROXY_USAGE_WEEK_START=sunday`), which the
//! command checks.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::io::Write;

use anyhow::{Context, bail};
use chrono::{DateTime, Datelike, NaiveDate, Utc};
use rust_decimal::Decimal;
use sea_orm::ActiveValue::{NotSet, Set};
use sea_orm::sea_query::OnConflict;
use sea_orm::{
    ColumnTrait, ConnectionTrait, DatabaseConnection, EntityTrait, QueryFilter, QueryResult,
    Statement, TransactionTrait,
};
use usage_layer::pricing::{normalize_model_id, to_micros};
use usage_layer::store::sea_orm::entity::{token_usage, usage_aggregates};
use uuid::Uuid;

use crate::crypto::{Kms, LocalKey, Vault};
use crate::entity::{access_keys, bedrock_credentials, model_mappings, users};

/// The revisions this importer reads.
pub const REVISIONS: [&str; 2] = ["006", "008"];

/// Usage rows read at a time.
const PAGE: u64 = 5_000;

/// How the original sealed its Bedrock keys.
#[derive(Debug)]
pub enum OriginalSealing {
    /// AES-256-GCM with SHA-256 of this passphrase.
    Local(LocalKey),
    /// KMS envelopes.
    Kms(Kms),
}

/// What the import is given.
#[derive(Debug)]
pub struct Import<'a> {
    /// The original's database.
    pub from: &'a DatabaseConnection,
    /// Ours (migrated).
    pub to: &'a DatabaseConnection,
    /// How the original's Bedrock keys open.
    pub original: OriginalSealing,
    /// How ours are sealed.
    pub vault: &'a Vault,
    /// Plan only.
    pub dry_run: bool,
}

/// One table's plan.
#[derive(Debug, Default)]
struct Tally {
    read: u64,
    new: u64,
    present: u64,
    skipped: Vec<String>,
    /// What was done that the counts do not say.
    notes: Vec<String>,
}

impl Tally {
    fn line(&self, table: &str, dry_run: bool) -> String {
        let verb = if dry_run { "would bring" } else { "brought" };
        format!(
            "{table:<20} read {:>8}  {verb} {:>8}  already here {:>8}  skipped {:>6}",
            self.read,
            self.new,
            self.present,
            self.skipped.len()
        )
    }
}

/// Per provider and month: requests, input, output, cost (micro-USD).
type Totals = BTreeMap<(String, String), [i64; 4]>;

fn add(totals: &mut Totals, provider: &str, at: DateTime<Utc>, input: i64, output: i64, cost: i64) {
    let month = format!("{:04}-{:02}", at.year(), at.month());
    let entry = totals.entry((provider.to_owned(), month)).or_default();
    entry[0] += 1;
    entry[1] += input;
    entry[2] += output;
    entry[3] += cost;
}

fn uuid(row: &QueryResult, column: &str) -> anyhow::Result<Uuid> {
    row.try_get::<Uuid>("", column)
        .with_context(|| format!("reading {column}"))
}

fn get<T: sea_orm::TryGetable>(row: &QueryResult, column: &str) -> anyhow::Result<T> {
    row.try_get::<T>("", column)
        .with_context(|| format!("reading {column}"))
}

fn micros(value: Option<Decimal>) -> i64 {
    value.map(to_micros).unwrap_or(0)
}

/// The original's Alembic revision, if this importer reads it.
pub async fn revision(from: &DatabaseConnection) -> anyhow::Result<String> {
    let rows = from
        .query_all_raw(Statement::from_string(
            from.get_database_backend(),
            "SELECT version_num FROM alembic_version",
        ))
        .await
        .context("reading alembic_version: is this the original proxy's database?")?;
    let versions: Vec<String> = rows
        .iter()
        .map(|row| get::<String>(row, "version_num"))
        .collect::<anyhow::Result<_>>()?;
    match versions.as_slice() {
        [version] if REVISIONS.contains(&version.as_str()) => Ok(version.clone()),
        _ => bail!(
            "the original's database is at revision {versions:?}; this importer reads {REVISIONS:?} \
             (upgrade it with its own `alembic upgrade head` first)"
        ),
    }
}

async fn select(from: &DatabaseConnection, sql: &str) -> anyhow::Result<Vec<QueryResult>> {
    from.query_all_raw(Statement::from_string(from.get_database_backend(), sql))
        .await
        .with_context(|| format!("reading the original: {sql}"))
}

impl Import<'_> {
    /// Runs the import (or, with `dry_run`, its plan), writing the report to `out`.
    pub async fn run(self, out: &mut impl Write) -> anyhow::Result<()> {
        let revision = revision(self.from).await?;
        writeln!(
            out,
            "original database at revision {revision}{}",
            if self.dry_run {
                " (dry run: nothing is written)"
            } else {
                ""
            }
        )?;

        let (users, mut user_tally) = self.users().await?;
        let user_ids: HashSet<Uuid> = users.iter().map(|user| user.id).collect();
        let (keys, mut key_tally) = self.keys(&user_ids).await?;
        let key_ids: HashSet<Uuid> = keys.iter().map(|key| key.id).collect();
        let (credentials, mut credential_tally) = self.credentials(&key_ids).await?;
        let (mappings, mut mapping_tally) = self.mappings().await?;

        let present_users =
            present_ids::<users::Entity, _>(self.to, users::Column::Id, users.iter().map(|u| u.id))
                .await?;
        let present_keys = present_ids::<access_keys::Entity, _>(
            self.to,
            access_keys::Column::Id,
            keys.iter().map(|k| k.id),
        )
        .await?;
        let present_credentials = present_ids::<bedrock_credentials::Entity, _>(
            self.to,
            bedrock_credentials::Column::AccessKeyId,
            credentials.iter().map(|(id, _)| *id),
        )
        .await?;
        let ours_mappings = model_mappings::Entity::find().all(self.to).await?;
        let new_users: Vec<_> = users
            .into_iter()
            .filter(|u| !present_users.contains(&u.id))
            .collect();
        let new_keys: Vec<_> = keys
            .into_iter()
            .filter(|k| !present_keys.contains(&k.id))
            .collect();
        let new_credentials: Vec<_> = credentials
            .into_iter()
            .filter(|(id, _)| !present_credentials.contains(id))
            .collect();
        user_tally.present = user_tally.read - new_users.len() as u64;
        user_tally.new = new_users.len() as u64;
        key_tally.present = key_tally.read - key_tally.skipped.len() as u64 - new_keys.len() as u64;
        for key in &new_keys {
            if key.expires_at.is_some_and(|end| end <= Utc::now()) {
                key_tally.notes.push(format!(
                    "access key {}: its rotation ended at {}; it stays refused",
                    key.id,
                    key.expires_at.unwrap_or_default()
                ));
            }
        }
        key_tally.new = new_keys.len() as u64;
        credential_tally.present = present_credentials.len() as u64;
        credential_tally.new = new_credentials.len() as u64;

        // A mapping: new, already here (same model, same target), or replacing ours for
        // that model (the original's choice of Bedrock model wins).
        let mut new_mappings = Vec::new();
        let mut replaced = Vec::new();
        for mapping in mappings {
            let key = normalize_model_id(&mapping.claude_model);
            match ours_mappings
                .iter()
                .find(|ours| normalize_model_id(&ours.claude_model) == key)
            {
                Some(ours)
                    if ours.id == mapping.id || ours.bedrock_model == mapping.bedrock_model =>
                {
                    mapping_tally.present += 1;
                }
                Some(ours) => {
                    mapping_tally.notes.push(format!(
                        "{}: ours ({} → {}) is replaced by the original's ({} → {})",
                        mapping.claude_model,
                        ours.claude_model,
                        ours.bedrock_model,
                        mapping.claude_model,
                        mapping.bedrock_model
                    ));
                    replaced.push(ours.id);
                    new_mappings.push(mapping);
                }
                None => new_mappings.push(mapping),
            }
        }
        mapping_tally.new = new_mappings.len() as u64;

        if !self.dry_run {
            let txn = self.to.begin().await?;
            if !new_users.is_empty() {
                users::Entity::insert_many(new_users.into_iter().map(users::ActiveModel::from))
                    .exec_without_returning(&txn)
                    .await?;
            }
            if !new_keys.is_empty() {
                access_keys::Entity::insert_many(
                    new_keys.into_iter().map(access_keys::ActiveModel::from),
                )
                .exec_without_returning(&txn)
                .await?;
            }
            let now = Utc::now();
            for (key_id, plaintext) in &new_credentials {
                let (encrypted, scheme) = self.vault.seal(plaintext.expose()).await?;
                bedrock_credentials::Entity::insert(bedrock_credentials::ActiveModel {
                    access_key_id: Set(*key_id),
                    encrypted: Set(encrypted),
                    encryption: Set(scheme.as_str().to_owned()),
                    key_hash: Set(crate::crypto::fingerprint(plaintext.expose())),
                    created_at: Set(now),
                    updated_at: Set(now),
                })
                .exec_without_returning(&txn)
                .await?;
            }
            if !replaced.is_empty() {
                model_mappings::Entity::delete_many()
                    .filter(model_mappings::Column::Id.is_in(replaced))
                    .exec(&txn)
                    .await?;
            }
            if !new_mappings.is_empty() {
                model_mappings::Entity::insert_many(
                    new_mappings
                        .into_iter()
                        .map(model_mappings::ActiveModel::from),
                )
                .exec_without_returning(&txn)
                .await?;
            }
            txn.commit().await?;
        }
        for (table, tally) in [
            ("users", &user_tally),
            ("access_keys", &key_tally),
            ("bedrock_keys", &credential_tally),
            ("model_mappings", &mapping_tally),
        ] {
            writeln!(out, "{}", tally.line(table, self.dry_run))?;
            for why in &tally.skipped {
                writeln!(out, "  skipped: {why}")?;
            }
            for note in &tally.notes {
                writeln!(out, "  note: {note}")?;
            }
        }

        let (usage_tally, original_totals, request_ids) = self.usage().await?;
        writeln!(out, "{}", usage_tally.line("token_usage", self.dry_run))?;
        let aggregate_tally = self.aggregates(&revision).await?;
        writeln!(
            out,
            "{}",
            aggregate_tally.line("usage_aggregates", self.dry_run)
        )?;
        for note in &aggregate_tally.notes {
            writeln!(out, "  note: {note}")?;
        }
        if self.dry_run {
            return Ok(());
        }
        let ours = our_totals(self.to, &request_ids).await?;
        writeln!(
            out,
            "check, per provider and month (UTC): requests, input, output, cost"
        )?;
        let mut differs = false;
        for (key, original) in &original_totals {
            let here = ours.get(key).copied().unwrap_or_default();
            let mark = if here == *original {
                "equal"
            } else {
                differs = true;
                "DIFFERENT"
            };
            writeln!(
                out,
                "  {:<8} {}  original {:?}  here {:?}  {mark}",
                key.0, key.1, original, here
            )?;
        }
        if differs || ours.len() != original_totals.len() {
            bail!("the usage read back here does not equal the original's (see the check above)");
        }
        writeln!(out, "import done: totals equal on both sides")?;
        Ok(())
    }

    async fn users(&self) -> anyhow::Result<(Vec<users::Model>, Tally)> {
        let rows = select(
            self.from,
            "SELECT id, name, description, status, created_at, updated_at, deleted_at, \
             monthly_budget_usd, routing_strategy FROM users ORDER BY created_at, id",
        )
        .await?;
        let mut tally = Tally {
            read: rows.len() as u64,
            ..Tally::default()
        };
        let mut users = Vec::with_capacity(rows.len());
        for row in &rows {
            let status: String = get(row, "status")?;
            let updated_at: DateTime<Utc> = get(row, "updated_at")?;
            let deleted_at: Option<DateTime<Utc>> = get(row, "deleted_at")?;
            let deleted_at = match status.as_str() {
                "deleted" => Some(deleted_at.unwrap_or(updated_at)),
                _ => deleted_at,
            };
            let routing: String = get(row, "routing_strategy")?;
            if !matches!(routing.as_str(), "plan_first" | "bedrock_only") {
                tally.skipped.push(format!(
                    "user {}: routing {routing:?} read as plan_first",
                    uuid(row, "id")?
                ));
            }
            users.push(users::Model {
                id: uuid(row, "id")?,
                name: get(row, "name")?,
                is_active: status == "active",
                monthly_budget_micros: get::<Option<Decimal>>(row, "monthly_budget_usd")?
                    .map(to_micros),
                routing_strategy: crate::config::Routing::from_stored(&routing)
                    .as_str()
                    .to_owned(),
                created_at: get(row, "created_at")?,
                updated_at,
                description: get(row, "description")?,
                deleted_at,
            });
        }
        Ok((users, tally))
    }

    async fn keys(
        &self,
        users: &HashSet<Uuid>,
    ) -> anyhow::Result<(Vec<access_keys::Model>, Tally)> {
        let rows = select(
            self.from,
            "SELECT id, user_id, key_hash, key_prefix, status, bedrock_region, created_at, \
             revoked_at, rotation_expires_at FROM access_keys ORDER BY created_at, id",
        )
        .await?;
        let mut tally = Tally {
            read: rows.len() as u64,
            ..Tally::default()
        };
        let mut keys = Vec::with_capacity(rows.len());
        for row in &rows {
            let id = uuid(row, "id")?;
            let user_id = uuid(row, "user_id")?;
            if !users.contains(&user_id) {
                tally.skipped.push(format!(
                    "access key {id}: its user {user_id} is not in users"
                ));
                continue;
            }
            let status: String = get(row, "status")?;
            let region: String = get(row, "bedrock_region")?;
            keys.push(access_keys::Model {
                id,
                user_id,
                key_hash: get::<String>(row, "key_hash")?.to_ascii_lowercase(),
                key_prefix: get(row, "key_prefix")?,
                name: None,
                is_active: status != "revoked",
                created_at: get(row, "created_at")?,
                revoked_at: get(row, "revoked_at")?,
                last_used_at: None,
                expires_at: if status == "rotating" {
                    get(row, "rotation_expires_at")?
                } else {
                    None
                },
                replaced_by: None,
                bedrock_region: Some(region.trim().to_owned()).filter(|region| !region.is_empty()),
            });
        }
        Ok((keys, tally))
    }

    /// Every Bedrock key of an imported access key, opened; the first that does not open
    /// is an error.
    async fn credentials(
        &self,
        keys: &HashSet<Uuid>,
    ) -> anyhow::Result<(Vec<(Uuid, crate::crypto::Plaintext)>, Tally)> {
        let rows = select(
            self.from,
            "SELECT access_key_id, encrypted_key FROM bedrock_keys",
        )
        .await?;
        let mut tally = Tally {
            read: rows.len() as u64,
            ..Tally::default()
        };
        let mut opened = Vec::with_capacity(rows.len());
        for row in &rows {
            let id = uuid(row, "access_key_id")?;
            if !keys.contains(&id) {
                tally.skipped.push(format!(
                    "Bedrock key of {id}: the access key is not imported"
                ));
                continue;
            }
            let blob: Vec<u8> = get(row, "encrypted_key")?;
            let plaintext = match &self.original {
                OriginalSealing::Local(key) => key.open(&blob),
                OriginalSealing::Kms(kms) => kms.open(&blob).await,
            }
            .and_then(|bytes| {
                String::from_utf8(bytes).map_err(|_| crate::crypto::CryptoError::NotText)
            })
            .with_context(|| {
                format!(
                    "the Bedrock key of access key {id} does not open the original's way ({}): \
                     give the original's secrets (--original-local-encryption-key, or \
                     --original-kms-key-id); nothing was written",
                    match self.original {
                        OriginalSealing::Local(_) => "local key",
                        OriginalSealing::Kms(_) => "KMS",
                    }
                )
            })?;
            opened.push((id, crate::crypto::Plaintext::from(plaintext)));
        }
        Ok((opened, tally))
    }

    async fn mappings(&self) -> anyhow::Result<(Vec<model_mappings::Model>, Tally)> {
        let rows = select(
            self.from,
            "SELECT id, claude_model, bedrock_model, description, is_active, created_at, updated_at \
             FROM model_mappings ORDER BY claude_model",
        )
        .await?;
        let tally = Tally {
            read: rows.len() as u64,
            ..Tally::default()
        };
        let mappings = rows
            .iter()
            .map(|row| {
                Ok(model_mappings::Model {
                    id: uuid(row, "id")?,
                    claude_model: get(row, "claude_model")?,
                    bedrock_model: get(row, "bedrock_model")?,
                    description: get(row, "description")?,
                    is_active: get(row, "is_active")?,
                    created_at: get(row, "created_at")?,
                    updated_at: get(row, "updated_at")?,
                })
            })
            .collect::<anyhow::Result<_>>()?;
        Ok((mappings, tally))
    }

    /// Usage rows, a page at a time (keyset on the request id): the tally, the original's
    /// totals, and the request ids (for the check).
    async fn usage(&self) -> anyhow::Result<(Tally, Totals, Vec<String>)> {
        let mut tally = Tally::default();
        let mut totals = Totals::new();
        let mut request_ids = Vec::new();
        let mut after = String::new();
        loop {
            let rows = self
                .from
                .query_all_raw(Statement::from_sql_and_values(
                    self.from.get_database_backend(),
                    "SELECT request_id, timestamp, user_id, access_key_id, model, input_tokens, \
                     output_tokens, cache_read_input_tokens, cache_creation_input_tokens, \
                     total_tokens, provider, is_fallback, latency_ms, estimated_cost_usd, \
                     input_cost_usd, output_cost_usd, cache_write_cost_usd, cache_read_cost_usd, \
                     pricing_region, pricing_model_id, pricing_effective_date, \
                     pricing_input_price_per_million, pricing_output_price_per_million, \
                     pricing_cache_write_price_per_million, pricing_cache_read_price_per_million \
                     FROM token_usage WHERE request_id > $1 ORDER BY request_id LIMIT $2",
                    [after.clone().into(), (PAGE as i64).into()],
                ))
                .await
                .context("reading the original's token_usage")?;
            let Some(last) = rows.last() else { break };
            after = get(last, "request_id")?;
            let mut page = Vec::with_capacity(rows.len());
            for row in &rows {
                let usage = usage_row(row)?;
                add(
                    &mut totals,
                    &usage.provider,
                    usage.timestamp,
                    usage.input_tokens,
                    usage.output_tokens,
                    usage.estimated_cost_micros,
                );
                request_ids.push(usage.request_id.clone());
                page.push(usage);
            }
            tally.read += page.len() as u64;
            let present =
                present_requests(self.to, page.iter().map(|row| row.request_id.as_str())).await?;
            let new: Vec<token_usage::ActiveModel> = page
                .into_iter()
                .filter(|row| !present.contains(&row.request_id))
                .map(|row| {
                    let mut active = token_usage::ActiveModel::from(row);
                    active.id = NotSet;
                    active
                })
                .collect();
            tally.present += present.len() as u64;
            tally.new += new.len() as u64;
            if !self.dry_run {
                // Chunks within the bind limits of both databases (49 columns a row).
                for chunk in new.chunks(400) {
                    token_usage::Entity::insert_many(chunk.iter().cloned())
                        .on_conflict(
                            OnConflict::column(token_usage::Column::RequestId)
                                .do_nothing()
                                .to_owned(),
                        )
                        .exec_without_returning(self.to)
                        .await?;
                }
            }
        }
        Ok((tally, totals, request_ids))
    }

    /// The aggregates, duplicates (NULL keys) summed into one.
    async fn aggregates(&self, revision: &str) -> anyhow::Result<Tally> {
        let provider = if revision == "006" {
            "'bedrock' AS provider"
        } else {
            "provider"
        };
        let rows = select(
            self.from,
            &format!(
                "SELECT bucket_type, bucket_start, user_id, access_key_id, {provider}, \
                 total_requests, total_input_tokens, total_output_tokens, total_tokens, \
                 total_cache_write_tokens, total_cache_read_tokens, total_estimated_cost_usd \
                 FROM usage_aggregates"
            ),
        )
        .await?;
        let mut tally = Tally {
            read: rows.len() as u64,
            ..Tally::default()
        };
        let mut merged: HashMap<
            (String, DateTime<Utc>, String, String, String),
            usage_aggregates::Model,
        > = HashMap::new();
        let mut duplicates = 0;
        for row in &rows {
            let key = (
                get::<String>(row, "bucket_type")?,
                get::<DateTime<Utc>>(row, "bucket_start")?,
                uuid(row, "user_id")?.to_string(),
                get::<Option<Uuid>>(row, "access_key_id")?
                    .map(|id| id.to_string())
                    .unwrap_or_default(),
                get::<String>(row, "provider")?,
            );
            let sums = [
                i64::from(get::<i32>(row, "total_requests")?),
                get::<i64>(row, "total_input_tokens")?,
                get::<i64>(row, "total_output_tokens")?,
                get::<i64>(row, "total_tokens")?,
                get::<i64>(row, "total_cache_write_tokens")?,
                get::<i64>(row, "total_cache_read_tokens")?,
                micros(get(row, "total_estimated_cost_usd")?),
            ];
            let entry = merged
                .entry(key.clone())
                .or_insert_with(|| usage_aggregates::Model {
                    id: 0,
                    bucket_type: key.0.clone(),
                    bucket_start: key.1,
                    user_id: key.2.clone(),
                    access_key_id: key.3.clone(),
                    provider: key.4.clone(),
                    total_requests: 0,
                    total_input_tokens: 0,
                    total_output_tokens: 0,
                    total_tokens: 0,
                    total_cache_read_tokens: 0,
                    total_cache_write_tokens: 0,
                    total_estimated_cost_micros: 0,
                    // Filled from the imported rows once they are in (see `run`).
                    total_cost_input_micros: 0,
                    total_cost_output_micros: 0,
                    total_cost_cache_write_micros: 0,
                    total_cost_cache_read_micros: 0,
                });
            if entry.total_requests > 0 {
                duplicates += 1;
            }
            entry.total_requests += sums[0];
            entry.total_input_tokens += sums[1];
            entry.total_output_tokens += sums[2];
            entry.total_tokens += sums[3];
            entry.total_cache_write_tokens += sums[4];
            entry.total_cache_read_tokens += sums[5];
            entry.total_estimated_cost_micros += sums[6];
        }
        if duplicates > 0 {
            tally.notes.push(format!(
                "{duplicates} duplicate key-less aggregates (the original's NULL keys) summed into their bucket's row"
            ));
        }
        // Our bucket keys, read once (keys only), to leave the ones present as they are.
        let ours: HashSet<(String, DateTime<Utc>, String, String, String)> = {
            use sea_orm::QuerySelect;
            usage_aggregates::Entity::find()
                .select_only()
                .columns([
                    usage_aggregates::Column::BucketType,
                    usage_aggregates::Column::BucketStart,
                    usage_aggregates::Column::UserId,
                    usage_aggregates::Column::AccessKeyId,
                    usage_aggregates::Column::Provider,
                ])
                .into_tuple()
                .all(self.to)
                .await?
                .into_iter()
                .collect()
        };
        let mut present = 0;
        let mut new = Vec::new();
        for (key, aggregate) in merged {
            if ours.contains(&key) {
                present += 1;
            } else {
                let mut active = usage_aggregates::ActiveModel::from(aggregate);
                active.id = NotSet;
                new.push(active);
            }
        }
        tally.present = present;
        tally.new = new.len() as u64;
        if !self.dry_run {
            for chunk in new.chunks(1000) {
                usage_aggregates::Entity::insert_many(chunk.iter().cloned())
                    .exec_without_returning(self.to)
                    .await?;
            }
            if !new.is_empty() {
                // The original's aggregates have no cost components: from the rows.
                usage_layer::store::sea_orm::migration::fill_cost_components(self.to).await?;
            }
        }
        Ok(tally)
    }
}

fn usage_row(row: &QueryResult) -> anyhow::Result<token_usage::Model> {
    let provider: String = get(row, "provider")?;
    let input: i64 = i64::from(get::<i32>(row, "input_tokens")?);
    let output: i64 = i64::from(get::<i32>(row, "output_tokens")?);
    let model: String = get(row, "model")?;
    let pricing_model: String = get(row, "pricing_model_id")?;
    let pricing_region: String = get(row, "pricing_region")?;
    let snapshot = |column: &str| -> anyhow::Result<Option<i64>> {
        Ok((!pricing_model.is_empty()).then(|| micros(get(row, column).ok().flatten())))
    };
    Ok(token_usage::Model {
        id: 0,
        request_id: get(row, "request_id")?,
        timestamp: get(row, "timestamp")?,
        user_id: Some(uuid(row, "user_id")?.to_string()),
        access_key_id: Some(uuid(row, "access_key_id")?.to_string()),
        model: model.clone(),
        provider: provider.clone(),
        input_tokens: input,
        output_tokens: output,
        cache_read_input_tokens: get::<Option<i32>>(row, "cache_read_input_tokens")?
            .map_or(0, i64::from),
        cache_creation_input_tokens: get::<Option<i32>>(row, "cache_creation_input_tokens")?
            .map_or(0, i64::from),
        total_tokens: i64::from(get::<i32>(row, "total_tokens")?),
        estimated_cost_micros: micros(get(row, "estimated_cost_usd")?),
        pricing_region: Some(pricing_region.clone()),
        pricing_model_id: Some(pricing_model.clone()).filter(|id| !id.is_empty()),
        pricing_effective_date: get::<Option<NaiveDate>>(row, "pricing_effective_date")?,
        pricing_input_price_per_million_micros: snapshot("pricing_input_price_per_million")?,
        pricing_output_price_per_million_micros: snapshot("pricing_output_price_per_million")?,
        pricing_cache_write_price_per_million_micros: snapshot(
            "pricing_cache_write_price_per_million",
        )?,
        pricing_cache_read_price_per_million_micros: snapshot(
            "pricing_cache_read_price_per_million",
        )?,
        cache_write_5m_tokens: None,
        cache_write_1h_tokens: None,
        pricing_cache_write_1h_price_per_million_micros: None,
        cost_input_micros: micros(get(row, "input_cost_usd")?),
        cost_output_micros: micros(get(row, "output_cost_usd")?),
        cost_cache_write_micros: micros(get(row, "cache_write_cost_usd")?),
        cost_cache_read_micros: micros(get(row, "cache_read_cost_usd")?),
        unpriced: pricing_model.is_empty() && input + output > 0,
        requested_model: None,
        served_model: Some(model),
        region: (provider == "bedrock").then_some(pricing_region),
        outcome: "completed".to_owned(),
        status_code: None,
        streaming: false,
        fallback_from: get::<bool>(row, "is_fallback")?.then(|| "plan".to_owned()),
        fallback_reason: get::<bool>(row, "is_fallback")?.then(|| "unrecorded".to_owned()),
        error_type: None,
        stop_reason: None,
        time_to_first_byte_ms: None,
        duration_ms: i64::from(get::<i32>(row, "latency_ms")?),
        response_bytes: 0,
        labels: None,
        format: None,
        reasoning_tokens: None,
    })
}

/// Which of `ids` are in our table already.
async fn present_ids<E, C>(
    to: &DatabaseConnection,
    column: C,
    ids: impl Iterator<Item = Uuid>,
) -> anyhow::Result<HashSet<Uuid>>
where
    E: EntityTrait,
    C: ColumnTrait,
{
    use sea_orm::{QuerySelect, sea_query::Expr};
    let ids: Vec<Uuid> = ids.collect();
    let mut present = HashSet::new();
    for chunk in ids.chunks(500) {
        let found: Vec<Uuid> = E::find()
            .select_only()
            .column_as(Expr::col(column), "id")
            .filter(column.is_in(chunk.iter().copied()))
            .into_tuple()
            .all(to)
            .await?;
        present.extend(found);
    }
    Ok(present)
}

/// Which of these request ids are in our `token_usage` already.
async fn present_requests<'a>(
    to: &DatabaseConnection,
    ids: impl Iterator<Item = &'a str>,
) -> anyhow::Result<HashSet<String>> {
    use sea_orm::QuerySelect;
    let ids: Vec<&str> = ids.collect();
    let mut present = HashSet::new();
    for chunk in ids.chunks(500) {
        let found: Vec<String> = token_usage::Entity::find()
            .select_only()
            .column(token_usage::Column::RequestId)
            .filter(token_usage::Column::RequestId.is_in(chunk.iter().copied()))
            .into_tuple()
            .all(to)
            .await?;
        present.extend(found);
    }
    Ok(present)
}

/// Our totals over these request ids, as read back.
async fn our_totals(to: &DatabaseConnection, ids: &[String]) -> anyhow::Result<Totals> {
    let mut totals = Totals::new();
    for chunk in ids.chunks(500) {
        let rows = token_usage::Entity::find()
            .filter(token_usage::Column::RequestId.is_in(chunk.iter().map(String::as_str)))
            .all(to)
            .await?;
        for row in rows {
            add(
                &mut totals,
                &row.provider,
                row.timestamp,
                row.input_tokens,
                row.output_tokens,
                row.estimated_cost_micros,
            );
        }
    }
    Ok(totals)
}
