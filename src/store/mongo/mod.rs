//! The MongoDB store, on the official `mongodb` driver (3.x).
//!
//! Shaped by how MongoDB-compatible servers behave under load (see
//! shared/spec/system.md): the queue is claimed by *ranges* of `_id` through
//! an index, never one `findAndModify` per message; per-message writes go as
//! one multi-statement `update`/`delete` command (one round trip per batch);
//! `_id: {$in: [...]}` is used only for reads and rare paths, because some
//! servers run it as a collection scan.
//!
//! Every command the driver sends is counted by name in the daemon's
//! metrics (the driver's command-started events), which is how the
//! benchmark reports round trips per 1,000 messages.

mod alerts;
mod campaigns;
mod entities;
mod ledger;
mod outbox;
mod queue;
mod records;

use super::{Cause, StoreError, StoreHealth, StoreResult};
use async_trait::async_trait;
use bson::{Document, doc};
use mongodb::error::ErrorKind;
use mongodb::event::EventHandler;
use mongodb::event::command::CommandEvent;
use mongodb::options::{ClientOptions, IndexOptions};
use mongodb::{Client, ClientSession, Collection, Database, IndexModel};
use std::sync::Arc;
use std::time::Duration;

/// Collection names.
pub mod names {
    pub const QUEUE: &str = "queued_text_messages";
    pub const SENT: &str = "message_sent";
    pub const FAILED: &str = "failed_messages";
    pub const CONTACTS: &str = "contacts";
    pub const AUDIENCES: &str = "audiences";
    pub const ACCOUNTS: &str = "accounts";
    pub const LISTS: &str = "sending_lists";
    pub const LINKS: &str = "message_short_links";
    pub const CLICKS: &str = "link_clicks";
    pub const CREATIVES: &str = "message_creatives";
    pub const SCHEDULES: &str = "schedules";
    pub const RUNS: &str = "schedule_runs";
    pub const LEASES: &str = "daemon_leases";
    pub const COOLDOWNS: &str = "contact_cooldowns";
    pub const VARIANT_CLICKS: &str = "variant_clicks";
    pub const CLICKED_MESSAGES: &str = "clicked_messages";
    pub const OUTBOX: &str = "webhook_outbox";
    pub const ALERT_WINDOWS: &str = "alert_windows";
    pub const ALERT_STATE: &str = "alert_state";
}

/// Largest number of statements put in one `update`/`delete` command.
pub(crate) const MAX_STATEMENTS: usize = 5_000;

#[derive(Clone)]
pub struct MongoStore {
    db: Database,
}

impl MongoStore {
    /// Build a client for `uri` and select `database`. Does not contact the
    /// server; call [`StoreHealth::ping`] / [`MongoStore::ensure_indexes`].
    /// With `metrics`, every command sent is counted there by name.
    pub async fn connect(
        uri: &str,
        database: &str,
        server_selection_timeout: Duration,
        metrics: Option<Arc<crate::metrics::Metrics>>,
    ) -> StoreResult<Self> {
        let mut opts = ClientOptions::parse(uri)
            .await
            .map_err(|e| StoreError::Config(format!("invalid MongoDB URI: {e}")))?;
        opts.app_name = Some("trackly".into());
        opts.server_selection_timeout = Some(server_selection_timeout);
        opts.connect_timeout = Some(server_selection_timeout);
        if let Some(m) = metrics {
            opts.command_event_handler = Some(EventHandler::callback(move |ev: CommandEvent| {
                match ev {
                    CommandEvent::Started(started) => {
                        m.mongo_command(&started.command_name);
                        // Which collection each round trip went to, for
                        // RUST_LOG=trackly::mongo_commands=trace (benchmarks).
                        tracing::trace!(
                            target: "trackly::mongo_commands",
                            request = started.request_id,
                            command = %started.command_name,
                            collection = ?started.command.get(&started.command_name),
                        );
                    }
                    // How long each took, matched by request id.
                    CommandEvent::Succeeded(done) => tracing::trace!(
                        target: "trackly::mongo_commands",
                        request = done.request_id,
                        took_ms = done.duration.as_secs_f64() * 1000.0,
                    ),
                    CommandEvent::Failed(done) => tracing::trace!(
                        target: "trackly::mongo_commands",
                        request = done.request_id,
                        took_ms = done.duration.as_secs_f64() * 1000.0,
                        failed = true,
                    ),
                    _ => {}
                }
            }));
        }
        let client = Client::with_options(opts).map_err(map_err)?;
        Ok(MongoStore {
            db: client.database(database),
        })
    }

    pub fn database(&self) -> &Database {
        &self.db
    }

    pub async fn drop_database(&self) -> StoreResult<()> {
        self.db.drop().await.map_err(map_err)
    }

    fn coll<T: Send + Sync>(&self, name: &str) -> Collection<T> {
        self.db.collection::<T>(name)
    }

    /// Create every index the hot queries need. Idempotent: creating an index
    /// that exists with the same spec is a no-op.
    pub async fn ensure_indexes(&self) -> StoreResult<()> {
        let idx = |keys: Document, name: &str| {
            IndexModel::builder()
                .keys(keys)
                .options(IndexOptions::builder().name(name.to_string()).build())
                .build()
        };
        let unique = |keys: Document, name: &str| {
            IndexModel::builder()
                .keys(keys)
                .options(
                    IndexOptions::builder()
                        .name(name.to_string())
                        .unique(true)
                        .build(),
                )
                .build()
        };
        let sparse = |keys: Document, name: &str| {
            IndexModel::builder()
                .keys(keys)
                .options(
                    IndexOptions::builder()
                        .name(name.to_string())
                        .sparse(true)
                        .build(),
                )
                .build()
        };
        let plan: Vec<(&str, Vec<IndexModel>)> = vec![
            (
                names::QUEUE,
                vec![
                    // claim: ready messages of a list in FIFO order, and
                    // complete/release by (list, token).
                    idx(doc! {"sending_list": 1, "claimed_by": 1, "_id": 1}, "claim"),
                    // due_lists: which lists have ready, due messages. (Not
                    // extended with sending_list: SecantusDB 0.7.0b3 answers
                    // `{claimed_by: null, not_before: {$lte}}` wrongly through
                    // a three-field index with that prefix.)
                    idx(doc! {"claimed_by": 1, "not_before": 1}, "due"),
                    // recovery: claims held by instances whose lease expired.
                    sparse(doc! {"claim_owner": 1}, "claim_owner"),
                ],
            ),
            (
                names::SENT,
                vec![
                    idx(doc! {"submitted": 1, "attempted_at": 1}, "in_doubt"),
                    // in-doubt records a report may resolve.
                    idx(doc! {"error_code": 1, "submitted": 1}, "by_error"),
                    sparse(doc! {"provider_message_id": 1}, "provider_message_id"),
                    idx(doc! {"sending_list": 1, "attempted_at": 1}, "by_list"),
                    sparse(doc! {"schedule": 1}, "by_schedule"),
                ],
            ),
            (
                names::FAILED,
                vec![
                    idx(doc! {"reason": 1, "failed_at": 1}, "by_reason"),
                    idx(doc! {"sending_list": 1, "failed_at": 1}, "by_list"),
                ],
            ),
            (
                names::CONTACTS,
                vec![
                    unique(doc! {"account": 1, "phone": 1}, "account_phone"),
                    idx(doc! {"subscriptions.list": 1}, "by_list"),
                    // audience pages: an account's contacts in `_id` order.
                    idx(doc! {"account": 1, "_id": 1}, "pages"),
                ],
            ),
            (
                names::AUDIENCES,
                vec![idx(doc! {"account": 1}, "by_account")],
            ),
            (
                names::LISTS,
                vec![
                    idx(doc! {"account": 1}, "by_account"),
                    // inbound messages: the lists that send from a number.
                    idx(doc! {"from_numbers": 1}, "by_number"),
                ],
            ),
            (
                names::CREATIVES,
                vec![idx(doc! {"account": 1}, "by_account")],
            ),
            (names::LINKS, vec![unique(doc! {"code": 1}, "code")]),
            (
                names::CLICKS,
                vec![idx(doc! {"link": 1, "is_bot": 1}, "by_link")],
            ),
            (
                names::SCHEDULES,
                vec![idx(doc! {"status": 1, "next_run_at": 1}, "due")],
            ),
            (
                names::RUNS,
                vec![
                    unique(doc! {"schedule": 1, "occurrence": 1}, "occurrence"),
                    idx(doc! {"status": 1}, "by_status"),
                    idx(doc! {"creative": 1}, "by_creative"),
                ],
            ),
            (
                names::COOLDOWNS,
                // A reservation that ran out a day ago is dropped by the
                // server; one that ran out is ignored anyway.
                vec![
                    IndexModel::builder()
                        .keys(doc! {"until": 1})
                        .options(
                            IndexOptions::builder()
                                .name("expire".to_string())
                                .expire_after(Duration::from_secs(24 * 3600))
                                .build(),
                        )
                        .build(),
                ],
            ),
            (
                names::OUTBOX,
                vec![
                    // the sender's claim: due pending entries, earliest first.
                    idx(doc! {"status": 1, "next_attempt_at": 1}, "due"),
                    // status per account (admin API).
                    idx(doc! {"account": 1, "status": 1}, "by_account"),
                    // finished entries are dropped by the server after a
                    // week; pending ones have no `finished_at`.
                    IndexModel::builder()
                        .keys(doc! {"finished_at": 1})
                        .options(
                            IndexOptions::builder()
                                .name("expire".to_string())
                                .expire_after(Duration::from_secs(7 * 24 * 3600))
                                .build(),
                        )
                        .build(),
                ],
            ),
            (
                names::ALERT_WINDOWS,
                vec![
                    // the claim: unclaimed windows that closed, earliest first.
                    idx(doc! {"claimed_by": 1, "closes_at": 1}, "due"),
                    // the error rate's sliding window of a list.
                    idx(doc! {"list": 1, "window_start": 1}, "by_list"),
                    // windows are dropped by the server a day after they closed.
                    IndexModel::builder()
                        .keys(doc! {"closes_at": 1})
                        .options(
                            IndexOptions::builder()
                                .name("expire".to_string())
                                .expire_after(Duration::from_secs(24 * 3600))
                                .build(),
                        )
                        .build(),
                ],
            ),
            (
                names::ALERT_STATE,
                // counters (per-webhook budgets) go an hour after they ran
                // out; flags have no `expires_at` and stay.
                vec![
                    IndexModel::builder()
                        .keys(doc! {"expires_at": 1})
                        .options(
                            IndexOptions::builder()
                                .name("expire".to_string())
                                .expire_after(Duration::from_secs(3600))
                                .build(),
                        )
                        .build(),
                ],
            ),
            (
                names::VARIANT_CLICKS,
                vec![idx(doc! {"creative": 1}, "by_creative")],
            ),
            (
                names::LEASES,
                // Leases of instances gone for a week are dropped by the
                // server; a missing lease reads as expired anyway.
                vec![
                    IndexModel::builder()
                        .keys(doc! {"heartbeat_at": 1})
                        .options(
                            IndexOptions::builder()
                                .name("expire".to_string())
                                .expire_after(Duration::from_secs(7 * 24 * 3600))
                                .build(),
                        )
                        .build(),
                ],
            ),
        ];
        for (coll, models) in plan {
            self.coll::<Document>(coll)
                .create_indexes(models)
                .await
                .map_err(map_err)?;
        }
        Ok(())
    }

    /// Run one command, inside `session`'s transaction when given.
    async fn command(
        &self,
        cmd: Document,
        session: Option<&mut ClientSession>,
    ) -> Result<Document, mongodb::error::Error> {
        match session {
            Some(s) => self.db.run_command(cmd).session(s).await,
            None => self.db.run_command(cmd).await,
        }
    }

    /// Run one `update` command with many statements (one round trip per
    /// `MAX_STATEMENTS`). Returns the number of documents matched.
    async fn bulk_update(
        &self,
        coll: &str,
        statements: Vec<Document>,
        ordered: bool,
        mut session: Option<&mut ClientSession>,
    ) -> StoreResult<u64> {
        let mut matched = 0;
        for chunk in statements.chunks(MAX_STATEMENTS) {
            let reply = self
                .command(
                    doc! {"update": coll, "updates": chunk.to_vec(), "ordered": ordered},
                    session.as_deref_mut(),
                )
                .await
                .map_err(map_err)?;
            check_write_errors(&reply)?;
            matched += reply_count(&reply, "n");
        }
        Ok(matched)
    }

    /// Run one `delete` command with many statements. Returns deleted count.
    async fn bulk_delete(
        &self,
        coll: &str,
        statements: Vec<Document>,
        mut session: Option<&mut ClientSession>,
    ) -> StoreResult<u64> {
        let mut deleted = 0;
        for chunk in statements.chunks(MAX_STATEMENTS) {
            let reply = self
                .command(
                    doc! {"delete": coll, "deletes": chunk.to_vec(), "ordered": false},
                    session.as_deref_mut(),
                )
                .await
                .map_err(map_err)?;
            check_write_errors(&reply)?;
            deleted += reply_count(&reply, "n");
        }
        Ok(deleted)
    }

    /// Insert dead letters that do not exist yet, as upserts (`$setOnInsert`)
    /// so that an existing one is no error, also inside a transaction, where
    /// a duplicate-key error would abort the whole transaction.
    pub(crate) async fn upsert_dead_letters(
        &self,
        failures: Vec<crate::domain::FailedMessage>,
        session: Option<&mut ClientSession>,
    ) -> StoreResult<u64> {
        if failures.is_empty() {
            return Ok(0);
        }
        let mut statements = Vec::with_capacity(failures.len());
        for f in failures {
            let id = f.id;
            let mut d = bson::to_document(&f).map_err(|e| StoreError::Corrupt(Cause::new(e)))?;
            d.remove("_id");
            statements.push(doc! {"q": {"_id": id}, "u": {"$setOnInsert": d}, "upsert": true});
        }
        self.bulk_update(names::FAILED, statements, false, session)
            .await
    }
}

pub(crate) fn reply_count(reply: &Document, key: &str) -> u64 {
    match reply.get(key) {
        Some(bson::Bson::Int32(n)) => *n as u64,
        Some(bson::Bson::Int64(n)) => *n as u64,
        Some(bson::Bson::Double(n)) => *n as u64,
        _ => 0,
    }
}

fn check_write_errors(reply: &Document) -> StoreResult<()> {
    if let Ok(errs) = reply.get_array("writeErrors")
        && let Some(first) = errs.first()
    {
        return Err(StoreError::Rejected(Cause::msg(format!(
            "{} write error(s), first: {first}",
            errs.len()
        ))));
    }
    Ok(())
}

/// Map a driver error onto the store's error kinds.
pub(crate) fn map_err(e: mongodb::error::Error) -> StoreError {
    if e.contains_label(mongodb::error::TRANSIENT_TRANSACTION_ERROR) {
        return StoreError::Conflict(Cause::new(e));
    }
    match e.kind.as_ref() {
        ErrorKind::Io(_)
        | ErrorKind::ServerSelection { .. }
        | ErrorKind::ConnectionPoolCleared { .. }
        | ErrorKind::DnsResolve { .. } => StoreError::Unavailable(Cause::new(e)),
        ErrorKind::BsonDeserialization(_) => StoreError::Corrupt(Cause::new(e)),
        _ if is_duplicate_key(&e) => StoreError::Duplicate(e.to_string()),
        _ => StoreError::Rejected(Cause::new(e)),
    }
}

/// E11000 duplicate key, however the driver wraps it.
pub(crate) fn is_duplicate_key(e: &mongodb::error::Error) -> bool {
    match e.kind.as_ref() {
        ErrorKind::Write(mongodb::error::WriteFailure::WriteError(we)) => we.code == 11000,
        ErrorKind::InsertMany(im) => im
            .write_errors
            .as_ref()
            .is_some_and(|v| !v.is_empty() && v.iter().all(|w| w.code == 11000)),
        ErrorKind::Command(c) => c.code == 11000,
        _ => false,
    }
}

impl MongoStore {
    /// Unordered bulk insert in which an existing `_id` (or other unique
    /// key) is not an error: returns the input indexes that already existed.
    pub(crate) async fn insert_new<T>(&self, coll: &str, docs: Vec<T>) -> StoreResult<Vec<usize>>
    where
        T: serde::Serialize + Send + Sync,
    {
        if docs.is_empty() {
            return Ok(vec![]);
        }
        match self.coll::<T>(coll).insert_many(docs).ordered(false).await {
            Ok(_) => Ok(vec![]),
            Err(e) => duplicate_indexes(e),
        }
    }
}

impl MongoStore {
    /// Documents with these ids, in one reply: a limit as well as a batch
    /// size, so no getMore round trip follows.
    pub(crate) async fn find_by_ids<T>(
        &self,
        coll: &str,
        ids: &[crate::domain::MessageId],
    ) -> StoreResult<Vec<T>>
    where
        T: serde::de::DeserializeOwned + Send + Sync,
    {
        use futures::TryStreamExt;
        if ids.is_empty() {
            return Ok(vec![]);
        }
        self.coll::<T>(coll)
            .find(doc! {"_id": {"$in": ids.to_vec()}})
            .limit(ids.len() as i64)
            .batch_size(ids.len().min(u32::MAX as usize) as u32)
            .await
            .map_err(map_err)?
            .try_collect()
            .await
            .map_err(map_err)
    }
}

/// For an unordered `insert_many` that failed: the input indexes that failed
/// only because the key existed. Any other failure is returned as an error.
pub(crate) fn duplicate_indexes(e: mongodb::error::Error) -> StoreResult<Vec<usize>> {
    if let ErrorKind::InsertMany(im) = e.kind.as_ref()
        && im.write_concern_error.is_none()
        && let Some(errs) = &im.write_errors
        && errs.iter().all(|w| w.code == 11000)
    {
        return Ok(errs.iter().map(|w| w.index).collect());
    }
    Err(map_err(e))
}

#[async_trait]
impl StoreHealth for MongoStore {
    async fn ping(&self) -> StoreResult<()> {
        self.db
            .run_command(doc! {"ping": 1})
            .await
            .map(|_| ())
            .map_err(map_err)
    }
}
