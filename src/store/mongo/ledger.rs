//! The money-moving writes as MongoDB transactions, so that a charge exists
//! exactly when its attempt record does and a refund exactly when the
//! outcome that refunds it does, whatever crashes in between:
//!
//! - [`begin_attempts`](crate::store::SentStore::begin_attempts): the debit
//!   and the attempt records (hot path: `findAndModify` + `insert` +
//!   `commitTransaction`, three round trips);
//! - [`settle`](crate::store::SentStore::settle): outcomes; when a failure or
//!   an unsent attempt is among them, their dead letters and refunds in the
//!   same transaction (an all-accepted settlement is one plain bulk update).
//!
//! Transactions that lose to a concurrent writer (`TransientTransactionError`,
//! typically two daemons debiting one account) are retried with a jittered
//! backoff; a commit with an unknown result is retried as the driver
//! documents.

use super::{MongoStore, map_err, names};
use crate::domain::*;
use crate::store::{
    AttemptsBegun, Cause, LookupNotTaken, LookupTaken, Settled, Settlement, StoreError, StoreResult,
};
use bson::{Bson, Document, doc};
use mongodb::ClientSession;
use mongodb::options::ReturnDocument;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::Duration;

/// Tries of a conflicting transaction (jittered backoff up to 320 ms each,
/// about 4 s in all): nine daemons charging one account at once on the
/// test server ran out of 10 tries.
const TXN_TRIES: u32 = 20;

fn ts(t: Timestamp) -> bson::DateTime {
    bson::DateTime::from_chrono(t)
}

/// Why one transaction attempt stopped.
enum Stop {
    /// An attempt record already existed: find which, leave them out, retry.
    Duplicate,
    /// The balance did not cover the records: retry with what it covers.
    Short,
    Store(StoreError),
}

impl From<StoreError> for Stop {
    fn from(e: StoreError) -> Self {
        Stop::Store(e)
    }
}

impl From<mongodb::error::Error> for Stop {
    fn from(e: mongodb::error::Error) -> Self {
        if super::is_duplicate_key(&e) {
            Stop::Duplicate
        } else {
            Stop::Store(map_err(e))
        }
    }
}

/// A short, jittered pause before retrying a transaction that conflicted.
async fn backoff(attempt: u32) {
    let base = Duration::from_millis(5u64 << attempt.min(6));
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    let jitter = 0.5 + (nanos % 1000) as f64 / 2000.0;
    tokio::time::sleep(base.mul_f64(jitter)).await;
}

#[derive(serde::Deserialize)]
struct Balance {
    balance: Money,
}

/// What settling needs to know of an unanswered attempt.
#[derive(serde::Deserialize)]
struct Unanswered {
    #[serde(rename = "_id")]
    id: MessageId,
    account: AccountId,
    attempt_token: String,
    cost: Money,
    #[serde(default)]
    refunded: bool,
    #[serde(default)]
    delivery_state: Option<DeliveryState>,
}

impl MongoStore {
    pub(crate) async fn start_txn(&self) -> StoreResult<ClientSession> {
        let mut s = self.db.client().start_session().await.map_err(map_err)?;
        s.start_transaction().await.map_err(map_err)?;
        Ok(s)
    }

    /// Commit, retrying a commit whose result is unknown (the driver's rule).
    pub(crate) async fn commit(&self, s: &mut ClientSession) -> StoreResult<()> {
        let mut tries = 0;
        loop {
            match s.commit_transaction().await {
                Ok(()) => return Ok(()),
                Err(e)
                    if e.contains_label(mongodb::error::UNKNOWN_TRANSACTION_COMMIT_RESULT)
                        && tries < 3 =>
                {
                    tries += 1;
                }
                Err(e) => return Err(map_err(e)),
            }
        }
    }

    /// Ids among `ids` that already have an attempt record.
    async fn existing_attempts(&self, ids: &[MessageId]) -> StoreResult<HashSet<MessageId>> {
        Ok(self
            .find_by_ids::<Document>(names::SENT, ids)
            .await?
            .into_iter()
            .filter_map(|d| d.get_object_id("_id").ok().map(MessageId))
            .collect())
    }

    pub(crate) async fn begin_attempts_txn(
        &self,
        account: AccountId,
        records: Vec<MessageSent>,
    ) -> StoreResult<AttemptsBegun> {
        let mut existing: HashSet<MessageId> = HashSet::new();
        let mut prefix: Option<usize> = None;
        for attempt in 0..TXN_TRIES {
            let mut s = self.start_txn().await?;
            match self
                .begin_attempts_once(&mut s, account, &records, &existing, prefix)
                .await
            {
                Ok(res) => match self.commit(&mut s).await {
                    Ok(()) => return Ok(res),
                    Err(StoreError::Conflict(_)) => backoff(attempt).await,
                    Err(e) => return Err(e),
                },
                Err(stop) => {
                    let _ = s.abort_transaction().await;
                    match stop {
                        Stop::Duplicate => {
                            // Someone attempted some of these meanwhile (rare:
                            // re-claimed messages are checked first).
                            let ids: Vec<MessageId> = records.iter().map(|r| r.id).collect();
                            existing = self.existing_attempts(&ids).await?;
                        }
                        Stop::Short => {
                            // Not enough for all: the longest prefix the
                            // balance covers (it may have moved: retried).
                            prefix =
                                Some(self.affordable_prefix(account, &records, &existing).await?);
                        }
                        Stop::Store(StoreError::Conflict(_)) => backoff(attempt).await,
                        Stop::Store(e) => return Err(e),
                    }
                }
            }
        }
        Err(StoreError::Conflict(Cause::msg(format!(
            "charging account {account} kept conflicting with concurrent writers"
        ))))
    }

    /// One try of the charge-and-record transaction. The attempt records go
    /// in first and the account is debited last, right before the commit:
    /// a transaction holds the documents it wrote until it ends, and a
    /// daemon killed inside one leaves it open until the server gives up on
    /// it (`transactionLifetimeLimitSeconds`); writing the account last keeps
    /// that window to the commit's round trip. `prefix`: when the balance
    /// was found short, how many records to take this time.
    async fn begin_attempts_once(
        &self,
        s: &mut ClientSession,
        account: AccountId,
        records: &[MessageSent],
        existing: &HashSet<MessageId>,
        prefix: Option<usize>,
    ) -> Result<AttemptsBegun, Stop> {
        let mut res = AttemptsBegun::default();
        let mut candidates = Vec::with_capacity(records.len());
        for r in records {
            if existing.contains(&r.id) {
                res.already_attempted.push(r.id);
            } else {
                candidates.push(r);
            }
        }
        let take = prefix.unwrap_or(candidates.len()).min(candidates.len());
        res.unaffordable = candidates[take..].iter().map(|r| r.id).collect();
        if take == 0 {
            return Ok(res);
        }
        let docs: Vec<&MessageSent> = candidates[..take].to_vec();
        let total: i64 = docs.iter().map(|r| r.cost.0).sum();
        self.coll::<MessageSent>(names::SENT)
            .insert_many(docs)
            .ordered(true)
            .session(&mut *s)
            .await?;
        // One conditional $inc that refuses to go below zero.
        let after = self
            .coll::<Balance>(names::ACCOUNTS)
            .find_one_and_update(
                doc! {"_id": account, "balance": {"$gte": total}},
                doc! {"$inc": {"balance": -total}},
            )
            .return_document(ReturnDocument::After)
            .projection(doc! {"balance": 1})
            .session(&mut *s)
            .await?
            .ok_or(Stop::Short)?;
        res.balance = Some(after.balance);
        res.recorded = candidates[..take].iter().map(|r| r.id).collect();
        Ok(res)
    }

    /// How many of `records` (minus `existing`) the account's balance covers
    /// now, in order.
    async fn affordable_prefix(
        &self,
        account: AccountId,
        records: &[MessageSent],
        existing: &HashSet<MessageId>,
    ) -> StoreResult<usize> {
        let balance = self
            .coll::<Balance>(names::ACCOUNTS)
            .find_one(doc! {"_id": account})
            .projection(doc! {"balance": 1})
            .await
            .map_err(map_err)?
            .ok_or_else(|| StoreError::NotFound(format!("account {account}")))?
            .balance;
        let mut sum = 0i64;
        let mut k = 0;
        for r in records.iter().filter(|r| !existing.contains(&r.id)) {
            if sum + r.cost.0 > balance.0 {
                break;
            }
            sum += r.cost.0;
            k += 1;
        }
        Ok(k)
    }

    pub(crate) async fn settle_txn(&self, items: Vec<Settlement>) -> StoreResult<Settled> {
        if items.iter().all(|i| matches!(i, Settlement::Sent { .. })) {
            // Nothing to refund or dead-letter: one plain bulk update.
            let statements: Vec<Document> = items.iter().filter_map(sent_statement).collect();
            let sent = self
                .bulk_update(names::SENT, statements, false, None)
                .await?;
            return Ok(Settled {
                sent,
                ..Default::default()
            });
        }
        for attempt in 0..TXN_TRIES {
            let mut s = self.start_txn().await?;
            match self.settle_once(&mut s, &items).await {
                Ok(res) => match self.commit(&mut s).await {
                    Ok(()) => return Ok(res),
                    Err(StoreError::Conflict(_)) => backoff(attempt).await,
                    Err(e) => return Err(e),
                },
                Err(e) => {
                    let _ = s.abort_transaction().await;
                    match e {
                        StoreError::Conflict(_) => backoff(attempt).await,
                        e => return Err(e),
                    }
                }
            }
        }
        Err(StoreError::Conflict(Cause::msg(
            "recording outcomes kept conflicting with concurrent writers",
        )))
    }

    async fn settle_once(
        &self,
        s: &mut ClientSession,
        items: &[Settlement],
    ) -> StoreResult<Settled> {
        // The attempts the failures and unsent ones concern, still unanswered
        // now: only those change, are dead-lettered and are refunded. Read in
        // the transaction, so a concurrent answer makes the writes below
        // conflict rather than apply twice.
        let ids: Vec<MessageId> = items
            .iter()
            .filter(|i| !matches!(i, Settlement::Sent { .. }))
            .map(Settlement::id)
            .collect();
        let mut cursor = self
            .coll::<Unanswered>(names::SENT)
            .find(doc! {"_id": {"$in": ids}, "submitted": Bson::Null})
            .projection(doc! {"account": 1, "attempt_token": 1, "cost": 1, "refunded": 1, "delivery_state": 1})
            .session(&mut *s)
            .await
            .map_err(map_err)?;
        let mut open: HashMap<MessageId, Unanswered> = HashMap::new();
        while let Some(u) = cursor.next(&mut *s).await {
            let u = u.map_err(map_err)?;
            open.insert(u.id, u);
        }
        let mut res = Settled::default();
        let mut updates = Vec::new();
        let mut deletes = Vec::new();
        let mut dead_letters = Vec::new();
        let mut refunds: BTreeMap<AccountId, i64> = BTreeMap::new();
        let mut sent_items = 0u64;
        for item in items {
            match item {
                Settlement::Sent { .. } => {
                    if let Some(st) = sent_statement(item) {
                        updates.push(st);
                        sent_items += 1;
                    }
                }
                Settlement::Failed {
                    at,
                    code,
                    text,
                    refund,
                    dead_letter,
                } => {
                    let Some(u) = open.get(&dead_letter.id) else {
                        continue;
                    };
                    if code == crate::domain::sent::NO_RESPONSE && u.delivery_state.is_some() {
                        // A report already proved the provider took it.
                        updates.push(doc! {
                            "q": {"_id": u.id, "submitted": Bson::Null},
                            "u": {"$set": {
                                "submitted": true,
                                "submitted_at": ts(*at),
                                "resolved_by": crate::store::RESOLVED_BY_REPORT,
                            }},
                        });
                        sent_items += 1;
                        continue;
                    }
                    let refund = *refund && !u.refunded;
                    updates.push(doc! {
                        "q": {"_id": u.id, "submitted": Bson::Null},
                        "u": {"$set": {
                            "submitted": false,
                            "submitted_at": ts(*at),
                            "error_code": code,
                            "error_text": text,
                            "refunded": refund || u.refunded,
                        }},
                    });
                    if refund {
                        *refunds.entry(u.account).or_insert(0) += u.cost.0;
                    }
                    dead_letters.push((**dead_letter).clone());
                    res.failed.push(u.id);
                }
                Settlement::Unsent { id, token } => {
                    let Some(u) = open.get(id).filter(|u| &u.attempt_token == token) else {
                        continue;
                    };
                    deletes.push(doc! {
                        "q": {"_id": u.id, "submitted": Bson::Null, "attempt_token": token},
                        "limit": 1,
                    });
                    if !u.refunded {
                        *refunds.entry(u.account).or_insert(0) += u.cost.0;
                    }
                    res.unsent.push(u.id);
                }
            }
        }
        let matched = if updates.is_empty() {
            0
        } else {
            self.bulk_update(names::SENT, updates, false, Some(&mut *s))
                .await?
        };
        // Failed statements match exactly what the read found (in this
        // transaction); the rest of the matches are the sent ones.
        res.sent = matched
            .saturating_sub(res.failed.len() as u64)
            .min(sent_items);
        if !deletes.is_empty() {
            self.bulk_delete(names::SENT, deletes, Some(&mut *s))
                .await?;
        }
        self.upsert_dead_letters(dead_letters, Some(&mut *s))
            .await?;
        for (account, amount) in refunds {
            if amount == 0 {
                continue;
            }
            self.coll::<Document>(names::ACCOUNTS)
                .update_one(doc! {"_id": account}, doc! {"$inc": {"balance": amount}})
                .session(&mut *s)
                .await
                .map_err(map_err)?;
            res.refunded.0 += amount;
        }
        Ok(res)
    }

    /// In-doubt (NO_RESPONSE) messages among `ids` that a delivery report has
    /// just proved sent: `submitted = true` and their dead letters resolved,
    /// in one transaction. One read when there are none (the usual case).
    pub(crate) async fn resolve_by_report(
        &self,
        ids: Option<&[MessageId]>,
        limit: usize,
        at: Timestamp,
    ) -> StoreResult<Vec<MessageId>> {
        if ids.is_some_and(|i| i.is_empty()) {
            return Ok(vec![]);
        }
        let mut filter = doc! {
            "error_code": crate::domain::sent::NO_RESPONSE,
            "submitted": false,
        };
        match ids {
            Some(ids) => {
                filter.insert("_id", doc! {"$in": ids.to_vec()});
            }
            None => {
                filter.insert("delivery_state", doc! {"$ne": Bson::Null});
            }
        }
        let doubtful: Vec<MessageId> = {
            use futures::TryStreamExt;
            self.coll::<Document>(names::SENT)
                .find(filter)
                .projection(doc! {"_id": 1})
                .limit(limit as i64)
                .await
                .map_err(map_err)?
                .try_collect::<Vec<Document>>()
                .await
                .map_err(map_err)?
                .into_iter()
                .filter_map(|d| d.get_object_id("_id").ok().map(MessageId))
                .collect()
        };
        if doubtful.is_empty() {
            return Ok(vec![]);
        }
        let by = crate::store::RESOLVED_BY_REPORT;
        for attempt in 0..TXN_TRIES {
            let mut s = self.start_txn().await?;
            let body = async {
                self.coll::<Document>(names::SENT)
                    .update_many(
                        doc! {"_id": {"$in": doubtful.clone()}, "submitted": false,
                        "error_code": crate::domain::sent::NO_RESPONSE},
                        doc! {"$set": {"submitted": true, "resolved_by": by}},
                    )
                    .session(&mut s)
                    .await
                    .map_err(map_err)?;
                self.coll::<Document>(names::FAILED)
                    .update_many(
                        doc! {"_id": {"$in": doubtful.clone()}, "resolved": Bson::Null},
                        doc! {"$set": {"resolved": {"at": ts(at), "by": by}}},
                    )
                    .session(&mut s)
                    .await
                    .map_err(map_err)?;
                Ok::<(), StoreError>(())
            }
            .await;
            let done = match body {
                Ok(()) => self.commit(&mut s).await,
                Err(e) => {
                    let _ = s.abort_transaction().await;
                    Err(e)
                }
            };
            match done {
                Ok(()) => return Ok(doubtful),
                Err(StoreError::Conflict(_)) => backoff(attempt).await,
                Err(e) => return Err(e),
            }
        }
        Err(StoreError::Conflict(Cause::msg(
            "resolving in-doubt messages kept conflicting",
        )))
    }
}

/// The guarded update for a `Sent` settlement.
fn sent_statement(item: &Settlement) -> Option<Document> {
    let Settlement::Sent {
        id,
        at,
        provider_message_id,
        resolved_by,
    } = item
    else {
        return None;
    };
    let mut set = doc! {
        "submitted": true,
        "submitted_at": ts(*at),
        "provider_message_id": provider_message_id.clone(),
    };
    if let Some(by) = resolved_by {
        set.insert("resolved_by", *by);
    }
    Some(doc! {"q": {"_id": *id, "submitted": Bson::Null}, "u": {"$set": set}})
}

impl MongoStore {
    /// Runs `body` in a transaction, retried on conflicts.
    async fn in_txn<T, F>(&self, what: &str, body: F) -> StoreResult<T>
    where
        F: for<'s> Fn(
            &'s Self,
            &'s mut ClientSession,
        ) -> futures::future::BoxFuture<'s, StoreResult<Option<T>>>,
    {
        for attempt in 0..TXN_TRIES {
            let mut s = self.start_txn().await?;
            let res = body(self, &mut s).await;
            let done = match res {
                Ok(Some(v)) => self.commit(&mut s).await.map(|()| Some(v)),
                Ok(None) => {
                    let _ = s.abort_transaction().await;
                    Ok(None)
                }
                Err(e) => {
                    let _ = s.abort_transaction().await;
                    Err(e)
                }
            };
            match done {
                Ok(Some(v)) => return Ok(v),
                Ok(None) => return Err(StoreError::NotFound(what.to_string())),
                Err(StoreError::Conflict(_)) => backoff(attempt).await,
                Err(e) => return Err(e),
            }
        }
        Err(StoreError::Conflict(Cause::msg(format!(
            "{what} kept conflicting with concurrent writers"
        ))))
    }

    pub(crate) async fn resolve_taken_impl(
        &self,
        items: Vec<LookupTaken>,
        at: Timestamp,
    ) -> StoreResult<Vec<MessageId>> {
        if items.is_empty() {
            return Ok(vec![]);
        }
        let items = std::sync::Arc::new(items);
        self.in_txn("resolving taken messages", move |st, s| {
            let items = items.clone();
            Box::pin(async move {
                use futures::TryStreamExt as _;
                let ids: Vec<MessageId> = items.iter().map(|i| i.id).collect();
                let open: HashSet<MessageId> = st
                    .coll::<Document>(names::SENT)
                    .find(doc! {"_id": {"$in": ids}, "submitted": false,
                    "error_code": crate::domain::sent::NO_RESPONSE})
                    .projection(doc! {"_id": 1})
                    .session(&mut *s)
                    .await
                    .map_err(map_err)?
                    .stream(&mut *s)
                    .try_collect::<Vec<Document>>()
                    .await
                    .map_err(map_err)?
                    .into_iter()
                    .filter_map(|d| d.get_object_id("_id").ok().map(MessageId))
                    .collect();
                let by = crate::store::RESOLVED_BY_LOOKUP;
                let mut updates = vec![];
                for it in items.iter().filter(|i| open.contains(&i.id)) {
                    let mut set = doc! {"submitted": true, "resolved_by": by};
                    if let Some(p) = &it.provider_message_id {
                        set.insert("provider_message_id", p);
                    }
                    updates.push(doc! {"q": {"_id": it.id}, "u": {"$set": set}});
                    if let Some(d) = it.delivery {
                        updates.push(doc! {
                            "q": {"_id": it.id, "delivery_state": Bson::Null},
                            "u": {"$set": {
                                "delivery_state": d.as_str(),
                                "delivered": d.delivered(),
                                "delivery_updated_at": ts(at),
                                "delivery_error_code": it.error_code.clone(),
                            }},
                        });
                    }
                }
                if updates.is_empty() {
                    return Ok(Some(vec![]));
                }
                st.bulk_update(names::SENT, updates, true, Some(&mut *s))
                    .await?;
                let done: Vec<MessageId> = open.into_iter().collect();
                st.coll::<Document>(names::FAILED)
                    .update_many(
                        doc! {"_id": {"$in": done.clone()}, "resolved": Bson::Null},
                        doc! {"$set": {"resolved": {"at": ts(at), "by": by}}},
                    )
                    .session(&mut *s)
                    .await
                    .map_err(map_err)?;
                Ok(Some(done))
            })
        })
        .await
    }

    pub(crate) async fn resolve_not_taken_impl(
        &self,
        item: LookupNotTaken,
        at: Timestamp,
    ) -> StoreResult<bool> {
        let item = std::sync::Arc::new(item);
        self.in_txn("resolving a message not taken", move |st, s| {
                let item = item.clone();
                Box::pin(async move {
                    #[derive(serde::Deserialize)]
                    struct Open {
                        account: AccountId,
                        cost: Money,
                        #[serde(default)]
                        refunded: bool,
                    }
                    let Some(open) = st
                        .coll::<Open>(names::SENT)
                        .find_one(doc! {"_id": item.id, "submitted": false,
                            "error_code": crate::domain::sent::NO_RESPONSE})
                        .projection(doc! {"account": 1, "cost": 1, "refunded": 1})
                        .session(&mut *s)
                        .await
                        .map_err(map_err)?
                    else {
                        return Ok(Some(false));
                    };
                    st.coll::<Document>(names::SENT)
                        .update_one(
                            doc! {"_id": item.id},
                            doc! {"$set": {
                                "error_code": crate::domain::sent::NOT_TAKEN,
                                "error_text": "the provider has no record of it",
                                "resolved_by": crate::store::RESOLVED_BY_LOOKUP,
                                "refunded": true,
                            }},
                        )
                        .session(&mut *s)
                        .await
                        .map_err(map_err)?;
                    let dead_letter = match &item.resend {
                        Some(m) => doc! {"$set": {"requeued": {"message": m.id, "at": ts(at)}}},
                        None => doc! {"$set": {
                            "reason": FailureReason::Stale.as_str(),
                            "detail": "in doubt; the provider has no record of it, and it is too old to send",
                        }},
                    };
                    // An operator's requeue of the same dead letter wins: no
                    // second copy.
                    let marked = st
                        .coll::<Document>(names::FAILED)
                        .update_one(doc! {"_id": item.id, "requeued": Bson::Null}, dead_letter)
                        .session(&mut *s)
                        .await
                        .map_err(map_err)?;
                    if let Some(m) = item.resend.as_ref().filter(|_| marked.matched_count > 0) {
                        st.coll::<QueuedTextMessage>(names::QUEUE)
                            .insert_one(m)
                            .session(&mut *s)
                            .await
                            .map_err(|e| {
                                if super::is_duplicate_key(&e) {
                                    StoreError::Duplicate(format!("queued message {}", m.id))
                                } else {
                                    map_err(e)
                                }
                            })?;
                    }
                    if !open.refunded && open.cost.0 != 0 {
                        st.coll::<Document>(names::ACCOUNTS)
                            .update_one(
                                doc! {"_id": open.account},
                                doc! {"$inc": {"balance": open.cost.0}},
                            )
                            .session(&mut *s)
                            .await
                            .map_err(map_err)?;
                    }
                    Ok(Some(true))
                })
            })
            .await
    }
}
