//! Attempt records (`message_sent`) and dead letters (`failed_messages`).

use super::{MongoStore, map_err, names};
use crate::domain::*;
use crate::store::{
    AttemptsBegun, DeadLetterStore, DeliveryApplied, DeliveryCounts, DeliveryUpdate, FailedFilter,
    SentEntry, SentStore, Settled, Settlement, StoreError, StoreResult, UnansweredQuery,
};
use async_trait::async_trait;
use bson::{Bson, Document, doc};
use futures::TryStreamExt;
use std::collections::{BTreeMap, HashSet};

fn ts(t: Timestamp) -> bson::DateTime {
    bson::DateTime::from_chrono(t)
}

#[async_trait]
impl SentStore for MongoStore {
    async fn begin_attempts(
        &self,
        account: AccountId,
        records: Vec<MessageSent>,
    ) -> StoreResult<AttemptsBegun> {
        self.begin_attempts_txn(account, records).await
    }

    async fn settle(&self, items: Vec<Settlement>) -> StoreResult<Settled> {
        if items.is_empty() {
            return Ok(Settled::default());
        }
        self.settle_txn(items).await
    }

    async fn unanswered(&self, q: &UnansweredQuery) -> StoreResult<Vec<MessageSent>> {
        let mine = doc! {"owner": &q.me, "attempt_token": {"$nin": q.active_tokens.clone()}};
        let filter = if q.only_mine {
            let mut f = mine;
            f.insert("submitted", Bson::Null);
            f
        } else {
            doc! {
                "submitted": Bson::Null,
                "$or": [
                    {"owner": {"$nin": q.live_owners.clone()}},
                    mine,
                    {"attempted_at": {"$lt": ts(q.attempted_before)}},
                ],
            }
        };
        self.coll::<MessageSent>(names::SENT)
            .find(filter)
            .sort(doc! {"submitted": 1, "attempted_at": 1})
            .limit(q.limit as i64)
            .await
            .map_err(map_err)?
            .try_collect()
            .await
            .map_err(map_err)
    }

    async fn resolve_reported(&self, limit: usize, at: Timestamp) -> StoreResult<Vec<MessageId>> {
        self.resolve_by_report(None, limit, at).await
    }

    async fn attempt_owners(&self) -> StoreResult<Vec<String>> {
        let values = self
            .coll::<Document>(names::SENT)
            .distinct("owner", doc! {"submitted": Bson::Null})
            .await
            .map_err(map_err)?;
        let mut owners: Vec<String> = values
            .into_iter()
            .map(|v| match v {
                Bson::String(s) => s,
                _ => String::new(),
            })
            .collect();
        owners.sort();
        owners.dedup();
        Ok(owners)
    }

    async fn resolve_taken(
        &self,
        items: Vec<crate::store::LookupTaken>,
        at: Timestamp,
    ) -> StoreResult<Vec<MessageId>> {
        self.resolve_taken_impl(items, at).await
    }

    async fn resolve_not_taken(
        &self,
        item: crate::store::LookupNotTaken,
        at: Timestamp,
    ) -> StoreResult<bool> {
        self.resolve_not_taken_impl(item, at).await
    }

    async fn apply_delivery(&self, updates: Vec<DeliveryUpdate>) -> StoreResult<DeliveryApplied> {
        if updates.is_empty() {
            return Ok(DeliveryApplied::default());
        }
        let total = updates.len() as u64;
        let ids: Vec<MessageId> = updates.iter().map(|u| u.id).collect();
        let at = updates.iter().map(|u| u.at).max();
        // The guard mirrors `memory::delivery_applies`: a pending report only
        // lands on a record with no state; a final report on a record with no
        // state or a pending one. Ordered, so reports for one message within a
        // batch apply in arrival order.
        // Each call marks what it changed, to read back exactly those.
        let mark = bson::oid::ObjectId::new();
        let statements = updates
            .into_iter()
            .map(|u| {
                let guard = if u.state.is_final() {
                    doc! {"$in": [Bson::Null, DeliveryState::Pending.as_str()]}
                } else {
                    doc! {"$eq": Bson::Null}
                };
                doc! {
                    "q": {"_id": u.id, "delivery_state": guard},
                    "u": {"$set": {
                        "delivery_state": u.state.as_str(),
                        "delivered": u.state.delivered(),
                        "delivery_updated_at": ts(u.at),
                        "delivery_error_code": u.error_code,
                        "delivery_mark": mark,
                    }},
                }
            })
            .collect();
        let applied = self
            .bulk_update(names::SENT, statements, true, None)
            .await?;
        let mut unique = ids.clone();
        unique.sort();
        unique.dedup();
        let mut res = DeliveryApplied {
            // A server may count matches differently from updates (ordered
            // statements on one document): never more than were sent.
            applied: applied.min(total),
            ..Default::default()
        };
        if applied > 0 {
            #[derive(serde::Deserialize)]
            struct Changed {
                #[serde(rename = "_id")]
                id: MessageId,
                #[serde(default)]
                run: Option<ScheduleRunId>,
                delivery_state: Option<DeliveryState>,
            }
            let changed: Vec<Changed> = self
                .coll::<Changed>(names::SENT)
                .find(doc! {"_id": {"$in": unique.clone()}, "delivery_mark": mark})
                .projection(doc! {"run": 1, "delivery_state": 1})
                .await
                .map_err(map_err)?
                .try_collect()
                .await
                .map_err(map_err)?;
            res.changed = changed
                .into_iter()
                .filter_map(|c| {
                    c.delivery_state.map(|state| crate::store::DeliveryChange {
                        id: c.id,
                        run: c.run,
                        state,
                    })
                })
                .collect();
        }
        if let Some(at) = at {
            match self
                .resolve_by_report(Some(&unique), unique.len(), at)
                .await
            {
                Ok(r) => res.resolved = r,
                // The reports are applied; recovery finishes the resolution.
                Err(e) if e.is_transient() => {
                    tracing::warn!(error = %e, "in-doubt messages not resolved now; recovery will")
                }
                Err(e) => return Err(e),
            }
        }
        if res.applied < total {
            // Tell unknown ids from reports that changed nothing.
            let known: HashSet<MessageId> = self
                .coll::<Document>(names::SENT)
                .find(doc! {"_id": {"$in": unique.clone()}})
                .projection(doc! {"_id": 1})
                .await
                .map_err(map_err)?
                .try_collect::<Vec<Document>>()
                .await
                .map_err(map_err)?
                .into_iter()
                .filter_map(|d| d.get_object_id("_id").ok().map(MessageId))
                .collect();
            let unknown_reports = ids.iter().filter(|id| !known.contains(id)).count() as u64;
            res.unknown = unique
                .into_iter()
                .filter(|id| !known.contains(id))
                .collect();
            res.ignored = total
                .saturating_sub(res.applied)
                .saturating_sub(unknown_reports);
        }
        Ok(res)
    }

    async fn get(&self, id: MessageId) -> StoreResult<Option<MessageSent>> {
        self.coll::<MessageSent>(names::SENT)
            .find_one(doc! {"_id": id})
            .await
            .map_err(map_err)
    }

    async fn get_many(&self, ids: &[MessageId]) -> StoreResult<Vec<MessageSent>> {
        self.find_by_ids(names::SENT, ids).await
    }

    async fn count(&self) -> StoreResult<u64> {
        self.coll::<Document>(names::SENT)
            .count_documents(doc! {})
            .await
            .map_err(map_err)
    }

    async fn delivery_counts(&self, list: SendingListId) -> StoreResult<DeliveryCounts> {
        let mut cursor = self
            .coll::<Document>(names::SENT)
            .aggregate(vec![
                doc! {"$match": {"sending_list": list}},
                doc! {"$group": {"_id": {"s": "$submitted", "d": "$delivered"}, "n": {"$sum": 1}}},
            ])
            .await
            .map_err(map_err)?;
        let mut c = DeliveryCounts::default();
        while let Some(d) = cursor.try_next().await.map_err(map_err)? {
            let key = d.get_document("_id").cloned().unwrap_or_default();
            let flag = |k: &str| key.get(k).and_then(|b| b.as_bool());
            let n = match d.get("n") {
                Some(Bson::Int32(n)) => *n as u64,
                Some(Bson::Int64(n)) => *n as u64,
                _ => 0,
            };
            for _ in 0..n {
                c.add(flag("s"), flag("d"));
            }
        }
        Ok(c)
    }

    async fn scan(&self) -> StoreResult<Vec<SentEntry>> {
        #[derive(serde::Deserialize)]
        struct View {
            #[serde(rename = "_id")]
            id: MessageId,
            account: AccountId,
            #[serde(default)]
            owner: String,
            submitted: Option<bool>,
            #[serde(default)]
            error_code: Option<String>,
            cost: Money,
            #[serde(default)]
            refunded: bool,
            provider: ProviderKind,
            #[serde(default)]
            resolved_by: Option<String>,
        }
        let mut cursor = self
            .coll::<View>(names::SENT)
            .find(doc! {})
            .projection(
                doc! {"account": 1, "owner": 1, "submitted": 1, "error_code": 1, "cost": 1,
                "refunded": 1, "provider": 1, "resolved_by": 1},
            )
            .await
            .map_err(map_err)?;
        let mut out = Vec::new();
        while let Some(v) = cursor.try_next().await.map_err(map_err)? {
            out.push(SentEntry {
                id: v.id,
                account: v.account,
                owner: v.owner,
                submitted: v.submitted,
                in_doubt: v.submitted == Some(false)
                    && v.error_code.as_deref() == Some(crate::domain::sent::NO_RESPONSE),
                cost: v.cost,
                refunded: v.refunded,
                provider: v.provider,
                resolved_by: v.resolved_by,
                not_taken: v.error_code.as_deref() == Some(crate::domain::sent::NOT_TAKEN),
            });
        }
        Ok(out)
    }
}

#[async_trait]
impl DeadLetterStore for MongoStore {
    async fn record(&self, failures: Vec<FailedMessage>) -> StoreResult<u64> {
        let total = failures.len() as u64;
        let existing = self.insert_new(names::FAILED, failures).await?;
        Ok(total - existing.len() as u64)
    }

    async fn get(&self, id: MessageId) -> StoreResult<Option<FailedMessage>> {
        self.coll::<FailedMessage>(names::FAILED)
            .find_one(doc! {"_id": id})
            .await
            .map_err(map_err)
    }

    async fn list_failed(
        &self,
        filter: &FailedFilter,
        limit: usize,
    ) -> StoreResult<Vec<FailedMessage>> {
        let q = failed_query(filter);
        let limit = i64::try_from(limit.max(1)).unwrap_or(i64::MAX);
        self.coll::<FailedMessage>(names::FAILED)
            .find(q)
            .sort(doc! {"failed_at": -1, "_id": -1})
            .limit(limit)
            .await
            .map_err(map_err)?
            .try_collect()
            .await
            .map_err(map_err)
    }

    async fn count_failed(&self, filter: &FailedFilter) -> StoreResult<u64> {
        self.coll::<Document>(names::FAILED)
            .count_documents(failed_query(filter))
            .await
            .map_err(map_err)
    }

    async fn requeue(
        &self,
        id: MessageId,
        message: QueuedTextMessage,
        at: Timestamp,
    ) -> StoreResult<bool> {
        let mut s = self.start_txn().await?;
        let marked = self
            .coll::<Document>(names::FAILED)
            .update_one(
                doc! {"_id": id, "requeued": Bson::Null},
                doc! {"$set": {"requeued": {"message": message.id, "at": ts(at)}}},
            )
            .session(&mut s)
            .await
            .map_err(map_err)?;
        if marked.matched_count == 0 {
            let _ = s.abort_transaction().await;
            return Ok(false);
        }
        self.coll::<QueuedTextMessage>(names::QUEUE)
            .insert_one(&message)
            .session(&mut s)
            .await
            .map_err(|e| {
                if super::is_duplicate_key(&e) {
                    StoreError::Duplicate(format!("queued message {}", message.id))
                } else {
                    map_err(e)
                }
            })?;
        self.commit(&mut s).await?;
        Ok(true)
    }

    async fn get_many(&self, ids: &[MessageId]) -> StoreResult<Vec<FailedMessage>> {
        self.find_by_ids(names::FAILED, ids).await
    }

    async fn count_by_reason(&self) -> StoreResult<BTreeMap<FailureReason, u64>> {
        let mut out = BTreeMap::new();
        let mut cursor = self
            .coll::<Document>(names::FAILED)
            .aggregate(vec![doc! {"$group": {"_id": "$reason", "n": {"$sum": 1}}}])
            .await
            .map_err(map_err)?;
        while let Some(d) = cursor.try_next().await.map_err(map_err)? {
            let reason: Option<FailureReason> =
                d.get("_id").cloned().and_then(|b| bson::from_bson(b).ok());
            let n = match d.get("n") {
                Some(Bson::Int32(n)) => *n as u64,
                Some(Bson::Int64(n)) => *n as u64,
                _ => 0,
            };
            if let Some(r) = reason {
                out.insert(r, n);
            }
        }
        Ok(out)
    }

    async fn scan(&self) -> StoreResult<Vec<(MessageId, FailureReason, bool)>> {
        #[derive(serde::Deserialize)]
        struct View {
            #[serde(rename = "_id")]
            id: MessageId,
            reason: FailureReason,
            #[serde(default)]
            resolved: Option<Resolution>,
        }
        let mut cursor = self
            .coll::<View>(names::FAILED)
            .find(doc! {})
            .projection(doc! {"reason": 1, "resolved": 1})
            .await
            .map_err(map_err)?;
        let mut out = Vec::new();
        while let Some(v) = cursor.try_next().await.map_err(map_err)? {
            out.push((v.id, v.reason, v.resolved.is_some()));
        }
        Ok(out)
    }
}

/// The dead letters `filter` selects, as a MongoDB query.
fn failed_query(filter: &FailedFilter) -> Document {
    let mut q = Document::new();
    if let Some(r) = filter.reason {
        q.insert("reason", r.as_str());
    }
    if let Some(l) = filter.list {
        q.insert("sending_list", l);
    }
    if let Some(sc) = filter.schedule {
        q.insert("original.schedule", sc);
    }
    let mut at = Document::new();
    if let Some(t) = filter.since {
        at.insert("$gte", ts(t));
    }
    if let Some(t) = filter.until {
        at.insert("$lt", ts(t));
    }
    if !at.is_empty() {
        q.insert("failed_at", at);
    }
    if filter.open_only {
        q.insert("requeued", Bson::Null);
        q.insert("resolved", Bson::Null);
    }
    match filter.settled_as_sent {
        Some(true) => {
            q.insert("resolved", doc! {"$ne": Bson::Null});
        }
        Some(false) => {
            q.insert("requeued", doc! {"$ne": Bson::Null});
        }
        None => {}
    }
    q
}
