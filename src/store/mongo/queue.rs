//! The queue on MongoDB. A claim is three round trips however large the
//! batch: read the ids of the next `max` ready messages, stamp every
//! message still ready from the first to the last of them with the token
//! and owner in one `update_many` on an `_id` range whose filter re-checks
//! `claimed_by: null` (so two claimers never share one), then read back
//! what this token holds. No `$in`: the test server scans once per listed
//! id, which made a 5,000-message claim take most of a minute.
//!
//! Documents are read raw and decoded one by one: a document that does not
//! decode is quarantined (dead-lettered MALFORMED with its raw content, then
//! removed) instead of failing the whole claim and blocking its list.

use super::{MongoStore, map_err, names};
use crate::domain::*;
use crate::store::{Claimant, Claimed, QueueEntry, QueueStore, Requeue, StoreResult};
use async_trait::async_trait;
use bson::{Bson, Document, doc};
use futures::TryStreamExt;
use std::collections::BTreeMap;

fn ts(t: Timestamp) -> bson::DateTime {
    bson::DateTime::from_chrono(t)
}

fn ready_filter(list: SendingListId, now: Timestamp) -> Document {
    doc! {"sending_list": list, "claimed_by": Bson::Null, "not_before": {"$lte": ts(now)}}
}

/// `claim_owner` values to match for `owners` ("" stands for claims that
/// carry no owner, made before owners were recorded).
fn owner_values(owners: &[String]) -> Vec<Bson> {
    owners
        .iter()
        .map(|o| {
            if o.is_empty() {
                Bson::Null
            } else {
                Bson::String(o.clone())
            }
        })
        .collect()
}

enum Claim {
    /// What this token holds, and whether the read found fewer than `max`
    /// ready messages (nothing more was ready).
    Got(Vec<QueuedTextMessage>, bool),
    /// Nothing ready.
    Empty,
    /// Messages were ready, but another claimer took every one of them.
    LostRace,
}

impl MongoStore {
    async fn claim_once(
        &self,
        list: SendingListId,
        max: usize,
        claimant: &Claimant,
        now: Timestamp,
        skip: u64,
        quarantined: &mut u64,
    ) -> StoreResult<Claim> {
        if max == 0 {
            return Ok(Claim::Empty);
        }
        // 1. Where the next `max` ready messages begin and end (after a
        // lost race, past the range the winner is taking): ids only.
        let ids: Vec<Document> = self
            .coll::<Document>(names::QUEUE)
            .find(ready_filter(list, now))
            .sort(doc! {"_id": 1})
            .skip(skip)
            .limit(max as i64)
            .projection(doc! {"_id": 1})
            .batch_size(max.min(u32::MAX as usize) as u32)
            .await
            .map_err(map_err)?
            .try_collect()
            .await
            .map_err(map_err)?;
        let exhausted = ids.len() < max;
        let (Some(first), Some(last)) = (
            ids.first().and_then(|d| d.get("_id")).cloned(),
            ids.last().and_then(|d| d.get("_id")).cloned(),
        ) else {
            return Ok(Claim::Empty);
        };
        // 2. Stamp every message still ready up to there: an `_id` range on
        // the claim index, never `$in` (which some servers scan for, once
        // per listed id). A message that became ready inside the range
        // since the read is taken too, so a claim can hold a few more than
        // `max`; what it holds is read back, never assumed.
        let mut filter = ready_filter(list, now);
        filter.insert("_id", doc! {"$gte": first, "$lte": last});
        let res = self
            .coll::<Document>(names::QUEUE)
            .update_many(
                filter,
                doc! {
                    "$set": {"claimed_by": &claimant.token, "claim_owner": &claimant.owner, "claimed_at": ts(now)},
                    "$inc": {"claim_count": 1},
                },
            )
            .await
            .map_err(map_err)?;
        if res.modified_count == 0 {
            return Ok(Claim::LostRace);
        }
        // 3. What this token holds, oldest first, in one reply.
        let raw: Vec<Document> = self
            .coll::<Document>(names::QUEUE)
            .find(doc! {"sending_list": list, "claimed_by": &claimant.token})
            .sort(doc! {"_id": 1})
            // A limit as well as a batch size: one reply, no getMore. The
            // update took exactly `modified_count` for this token.
            .limit(res.modified_count as i64)
            .batch_size((res.modified_count as usize).clamp(1, u32::MAX as usize) as u32)
            .await
            .map_err(map_err)?
            .try_collect()
            .await
            .map_err(map_err)?;
        let mut mine = Vec::with_capacity(raw.len());
        for d in raw {
            match bson::from_document::<QueuedTextMessage>(d.clone()) {
                Ok(m) => mine.push(m),
                Err(e) => {
                    self.quarantine(list, d, &e.to_string(), now).await?;
                    *quarantined += 1;
                }
            }
        }
        if mine.is_empty() {
            // Everything taken was quarantined: look again.
            return Ok(Claim::LostRace);
        }
        Ok(Claim::Got(mine, exhausted))
    }

    /// Dead-letter an undecodable queue document with its raw content, then
    /// remove it. Both steps are idempotent (an upsert, then a delete by
    /// `_id`), so a crash in between only repeats them on the next claim.
    async fn quarantine(
        &self,
        list: SendingListId,
        raw: Document,
        error: &str,
        now: Timestamp,
    ) -> StoreResult<()> {
        let Some(id) = raw.get_object_id("_id").ok().map(MessageId) else {
            // Without an ObjectId `_id` it cannot be keyed like a message:
            // remove it by its own `_id` after logging what it was.
            tracing::error!(list = %list, error, "queue document without an ObjectId _id removed");
            if let Some(idv) = raw.get("_id") {
                self.coll::<Document>(names::QUEUE)
                    .delete_one(doc! {"_id": idv.clone()})
                    .await
                    .map_err(map_err)?;
            }
            return Ok(());
        };
        let account = match raw.get_object_id("account") {
            Ok(a) => AccountId(a),
            Err(_) => self
                .coll::<Document>(names::LISTS)
                .find_one(doc! {"_id": list})
                .projection(doc! {"account": 1})
                .await
                .map_err(map_err)?
                .and_then(|d| d.get_object_id("account").ok())
                .map(AccountId)
                .unwrap_or_else(crate::domain::failed::unknown_account),
        };
        let text = Bson::Document(raw).into_relaxed_extjson().to_string();
        let failure = FailedMessage {
            id,
            account,
            sending_list: list,
            reason: FailureReason::Malformed,
            detail: format!("queued document does not decode: {error}"),
            provider_code: None,
            provider_text: None,
            failed_at: now,
            original: None,
            raw: Some(text),
            resolved: None,
            requeued: None,
        };
        tracing::error!(message_id = %id, list = %list, error, "quarantined an undecodable queue document");
        self.upsert_dead_letters(vec![failure], None).await?;
        self.coll::<Document>(names::QUEUE)
            .delete_one(doc! {"_id": id})
            .await
            .map_err(map_err)?;
        Ok(())
    }
}

#[async_trait]
impl QueueStore for MongoStore {
    async fn enqueue(&self, msgs: Vec<QueuedTextMessage>) -> StoreResult<u64> {
        let total = msgs.len() as u64;
        let msgs = msgs
            .into_iter()
            .map(|mut m| {
                m.claimed_by = None;
                m.claimed_at = None;
                m.claim_owner = None;
                m
            })
            .collect();
        let existing = self.insert_new(names::QUEUE, msgs).await?;
        Ok(total - existing.len() as u64)
    }

    async fn due_lists(&self, now: Timestamp, limit: usize) -> StoreResult<Vec<SendingListId>> {
        let values = self
            .coll::<Document>(names::QUEUE)
            .distinct(
                "sending_list",
                doc! {"claimed_by": Bson::Null, "not_before": {"$lte": ts(now)}},
            )
            .await
            .map_err(map_err)?;
        let mut lists: Vec<SendingListId> = values
            .into_iter()
            .filter_map(|v| match v {
                Bson::ObjectId(o) => Some(SendingListId(o)),
                _ => None,
            })
            .collect();
        lists.sort();
        lists.truncate(limit);
        Ok(lists)
    }

    async fn next_due(&self, now: Timestamp) -> StoreResult<Option<Timestamp>> {
        // On the `due` index: unclaimed, in `not_before` order.
        let next = self
            .coll::<Document>(names::QUEUE)
            .find_one(doc! {"claimed_by": Bson::Null, "not_before": {"$gt": ts(now)}})
            .sort(doc! {"not_before": 1})
            .projection(doc! {"not_before": 1, "_id": 0})
            .await
            .map_err(map_err)?;
        Ok(next
            .as_ref()
            .and_then(|d| d.get_datetime("not_before").ok())
            .map(|d| d.to_chrono()))
    }

    async fn claim(
        &self,
        list: SendingListId,
        max: usize,
        claimant: &Claimant,
        now: Timestamp,
    ) -> StoreResult<Claimed> {
        // Claimers on other daemons read the same head of the queue; the one
        // whose update lands second gets nothing and tries again further
        // along (a few times) instead of reporting "no work". Under such
        // contention FIFO holds per claim, not strictly across daemons.
        let mut quarantined = 0;
        for attempt in 0..4u64 {
            // After a lost race, look past the range the winner is taking
            // (its update may not have landed yet).
            let skip = attempt * max as u64;
            match self
                .claim_once(list, max, claimant, now, skip, &mut quarantined)
                .await?
            {
                Claim::Got(messages, exhausted) => {
                    return Ok(Claimed {
                        messages,
                        quarantined,
                        exhausted,
                    });
                }
                Claim::Empty if skip == 0 => break,
                Claim::Empty | Claim::LostRace => continue,
            }
        }
        Ok(Claimed {
            messages: vec![],
            quarantined,
            exhausted: true,
        })
    }

    async fn requeue(&self, token: &str, items: Vec<Requeue>) -> StoreResult<u64> {
        if items.is_empty() {
            return Ok(0);
        }
        let statements = items
            .into_iter()
            .map(|r| {
                let mut set = doc! {
                    "claimed_by": Bson::Null,
                    "claimed_at": Bson::Null,
                    "claim_owner": Bson::Null,
                    "not_before": ts(r.not_before),
                    "attempts": r.attempts as i64,
                    "billing_blocked_since": r.billing_blocked_since.map(ts),
                    "last_error": r.last_error,
                };
                if let Some(at) = r.send_at {
                    set.insert("send_at", ts(at));
                }
                doc! {"q": {"_id": r.id, "claimed_by": token}, "u": {"$set": set}}
            })
            .collect();
        self.bulk_update(names::QUEUE, statements, false, None)
            .await
    }

    async fn release(&self, list: SendingListId, token: &str) -> StoreResult<u64> {
        let res = self
            .coll::<Document>(names::QUEUE)
            .update_many(
                doc! {"sending_list": list, "claimed_by": token},
                doc! {"$set": {"claimed_by": Bson::Null, "claimed_at": Bson::Null, "claim_owner": Bson::Null}},
            )
            .await
            .map_err(map_err)?;
        Ok(res.modified_count)
    }

    async fn claim_owners(&self) -> StoreResult<Vec<String>> {
        let values = self
            .coll::<Document>(names::QUEUE)
            .distinct("claim_owner", doc! {"claimed_by": {"$ne": Bson::Null}})
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

    async fn release_owners(&self, owners: &[String]) -> StoreResult<u64> {
        if owners.is_empty() {
            return Ok(0);
        }
        let res = self
            .coll::<Document>(names::QUEUE)
            .update_many(
                doc! {"claimed_by": {"$ne": Bson::Null}, "claim_owner": {"$in": owner_values(owners)}},
                doc! {"$set": {"claimed_by": Bson::Null, "claimed_at": Bson::Null, "claim_owner": Bson::Null}},
            )
            .await
            .map_err(map_err)?;
        Ok(res.modified_count)
    }

    async fn complete(&self, list: SendingListId, token: &str) -> StoreResult<u64> {
        let res = self
            .coll::<Document>(names::QUEUE)
            .delete_many(doc! {"sending_list": list, "claimed_by": token})
            .await
            .map_err(map_err)?;
        Ok(res.deleted_count)
    }

    async fn remove(&self, ids: &[MessageId]) -> StoreResult<u64> {
        if ids.is_empty() {
            return Ok(0);
        }
        let statements = ids
            .iter()
            .map(|id| doc! {"q": {"_id": *id}, "limit": 1})
            .collect();
        self.bulk_delete(names::QUEUE, statements, None).await
    }

    async fn get(&self, id: MessageId) -> StoreResult<Option<QueuedTextMessage>> {
        self.coll::<QueuedTextMessage>(names::QUEUE)
            .find_one(doc! {"_id": id})
            .await
            .map_err(map_err)
    }

    async fn depth(&self) -> StoreResult<u64> {
        self.coll::<Document>(names::QUEUE)
            .count_documents(doc! {})
            .await
            .map_err(map_err)
    }

    async fn depth_by_list(&self) -> StoreResult<BTreeMap<SendingListId, u64>> {
        let mut cursor = self
            .coll::<Document>(names::QUEUE)
            .aggregate(vec![
                doc! {"$group": {"_id": "$sending_list", "n": {"$sum": 1}}},
            ])
            .await
            .map_err(map_err)?;
        let mut out = BTreeMap::new();
        while let Some(d) = cursor.try_next().await.map_err(map_err)? {
            if let Ok(list) = d.get_object_id("_id") {
                out.insert(SendingListId(list), super::reply_count(&d, "n"));
            }
        }
        Ok(out)
    }

    async fn list_depth(&self, list: SendingListId) -> StoreResult<u64> {
        self.coll::<Document>(names::QUEUE)
            .count_documents(doc! {"sending_list": list})
            .await
            .map_err(map_err)
    }

    async fn list_claimed(&self, list: SendingListId) -> StoreResult<u64> {
        self.coll::<Document>(names::QUEUE)
            .count_documents(doc! {"sending_list": list, "claimed_by": {"$ne": Bson::Null}})
            .await
            .map_err(map_err)
    }

    async fn scan(&self) -> StoreResult<Vec<QueueEntry>> {
        let mut cursor = self
            .coll::<Document>(names::QUEUE)
            .find(doc! {})
            .projection(doc! {"sending_list": 1, "claimed_by": 1, "claim_owner": 1})
            .await
            .map_err(map_err)?;
        let mut out = Vec::new();
        while let Some(d) = cursor.try_next().await.map_err(map_err)? {
            let (Ok(id), Ok(list)) = (d.get_object_id("_id"), d.get_object_id("sending_list"))
            else {
                continue;
            };
            let claimed = !matches!(d.get("claimed_by"), None | Some(Bson::Null));
            out.push(QueueEntry {
                id: MessageId(id),
                list: SendingListId(list),
                claim_owner: claimed.then(|| d.get_str("claim_owner").unwrap_or("").to_string()),
            });
        }
        Ok(out)
    }
}
