//! Attempt records (`message_sent`) and dead letters (`failed_messages`).

use super::{MongoStore, map_err, names};
use crate::domain::*;
use crate::store::{
    AttemptResult, DeadLetterStore, DeliveryApplied, DeliveryCounts, DeliveryUpdate, SendOutcome,
    SentStore, StoreResult,
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
    async fn record_attempts(&self, records: Vec<MessageSent>) -> StoreResult<AttemptResult> {
        let ids: Vec<MessageId> = records.iter().map(|r| r.id).collect();
        let existing: HashSet<usize> = self
            .insert_new(names::SENT, records)
            .await?
            .into_iter()
            .collect();
        let mut res = AttemptResult::default();
        for (i, id) in ids.into_iter().enumerate() {
            if existing.contains(&i) {
                res.already_attempted.push(id);
            } else {
                res.inserted.push(id);
            }
        }
        Ok(res)
    }

    async fn record_outcomes(&self, outcomes: Vec<SendOutcome>) -> StoreResult<u64> {
        if outcomes.is_empty() {
            return Ok(0);
        }
        let statements = outcomes
            .into_iter()
            .map(|o| {
                doc! {
                    "q": {"_id": o.id, "submitted": Bson::Null},
                    "u": {"$set": {
                        "submitted": o.submitted,
                        "submitted_at": ts(o.at),
                        "provider_message_id": o.provider_message_id,
                        "error_code": o.error_code,
                        "error_text": o.error_text,
                    }},
                }
            })
            .collect();
        self.bulk_update(names::SENT, statements, false).await
    }

    async fn discard_attempts(&self, token: &str, ids: Vec<MessageId>) -> StoreResult<u64> {
        if ids.is_empty() {
            return Ok(0);
        }
        let statements = ids
            .into_iter()
            .map(|id| {
                doc! {
                    "q": {"_id": id, "submitted": Bson::Null, "attempt_token": token},
                    "limit": 1,
                }
            })
            .collect();
        self.bulk_delete(names::SENT, statements).await
    }

    async fn in_doubt(
        &self,
        attempted_before: Timestamp,
        limit: usize,
    ) -> StoreResult<Vec<MessageSent>> {
        self.coll::<MessageSent>(names::SENT)
            .find(doc! {"submitted": Bson::Null, "attempted_at": {"$lt": ts(attempted_before)}})
            .sort(doc! {"submitted": 1, "attempted_at": 1})
            .limit(limit as i64)
            .await
            .map_err(map_err)?
            .try_collect()
            .await
            .map_err(map_err)
    }

    async fn apply_delivery(&self, updates: Vec<DeliveryUpdate>) -> StoreResult<DeliveryApplied> {
        if updates.is_empty() {
            return Ok(DeliveryApplied::default());
        }
        let total = updates.len() as u64;
        let ids: Vec<MessageId> = updates.iter().map(|u| u.id).collect();
        // The guard mirrors `memory::delivery_applies`: a pending report only
        // lands on a record with no state; a final report on a record with no
        // state or a pending one. Ordered, so reports for one message within a
        // batch apply in arrival order.
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
                    }},
                }
            })
            .collect();
        let applied = self.bulk_update(names::SENT, statements, true).await?;
        let mut res = DeliveryApplied {
            applied,
            ..Default::default()
        };
        if applied < total {
            // Tell unknown ids from reports that changed nothing.
            let mut unique = ids.clone();
            unique.sort();
            unique.dedup();
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
            res.ignored = total - applied - unknown_reports;
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
}
