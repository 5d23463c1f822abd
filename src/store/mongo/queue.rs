//! The queue on MongoDB. A claim is two round trips however large the
//! batch: read the next `max` ready messages, then stamp exactly those with
//! the token in one `update_many` whose filter re-checks `claimed_by: null`
//! for each (so two claimers never share one). When the update changed
//! fewer than were read (another claimer won some), a third round trip reads
//! back what this token holds.

use super::{MongoStore, map_err, names};
use crate::domain::*;
use crate::store::{QueueStore, Requeue, StoreResult};
use async_trait::async_trait;
use bson::{Bson, Document, doc};
use futures::TryStreamExt;

fn ts(t: Timestamp) -> bson::DateTime {
    bson::DateTime::from_chrono(t)
}

fn ready_filter(list: SendingListId, now: Timestamp) -> Document {
    doc! {"sending_list": list, "claimed_by": Bson::Null, "not_before": {"$lte": ts(now)}}
}

enum Claim {
    Got(Vec<QueuedTextMessage>),
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
        token: &str,
        now: Timestamp,
        skip: u64,
    ) -> StoreResult<Claim> {
        if max == 0 {
            return Ok(Claim::Empty);
        }
        let typed = self.coll::<QueuedTextMessage>(names::QUEUE);
        // 1. The next `max` ready messages, oldest first, in one reply.
        let found: Vec<QueuedTextMessage> = typed
            .find(ready_filter(list, now))
            .sort(doc! {"_id": 1})
            .skip(skip)
            .limit(max as i64)
            .batch_size(max.min(u32::MAX as usize) as u32)
            .await
            .map_err(map_err)?
            .try_collect()
            .await
            .map_err(map_err)?;
        let (Some(first), Some(last)) = (found.first(), found.last()) else {
            return Ok(Claim::Empty);
        };
        // 2. Stamp exactly those that are still ready. The `_id` range keeps
        // the update on the index even on servers that scan for `$in`.
        let ids: Vec<MessageId> = found.iter().map(|m| m.id).collect();
        let mut filter = ready_filter(list, now);
        filter.insert("_id", doc! {"$gte": first.id, "$lte": last.id, "$in": ids});
        let res = self
            .coll::<Document>(names::QUEUE)
            .update_many(
                filter,
                doc! {"$set": {"claimed_by": token, "claimed_at": ts(now)}, "$inc": {"claim_count": 1}},
            )
            .await
            .map_err(map_err)?;
        if res.modified_count as usize == found.len() {
            // Every message found was still ready and is now ours.
            return Ok(Claim::Got(
                found
                    .into_iter()
                    .map(|mut m| {
                        m.claimed_by = Some(token.to_string());
                        m.claimed_at = Some(now);
                        m.claim_count += 1;
                        m
                    })
                    .collect(),
            ));
        }
        if res.modified_count == 0 {
            return Ok(Claim::LostRace);
        }
        // 3. Another claimer took some of them: read back what is ours.
        let mine = typed
            .find(doc! {"sending_list": list, "claimed_by": token})
            .sort(doc! {"_id": 1})
            .limit(max as i64)
            .batch_size(max.min(u32::MAX as usize) as u32)
            .await
            .map_err(map_err)?
            .try_collect()
            .await
            .map_err(map_err)?;
        Ok(Claim::Got(mine))
    }
}

#[async_trait]
impl QueueStore for MongoStore {
    async fn enqueue(&self, msgs: Vec<QueuedTextMessage>) -> StoreResult<u64> {
        let total = msgs.len() as u64;
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

    async fn claim(
        &self,
        list: SendingListId,
        max: usize,
        token: &str,
        now: Timestamp,
    ) -> StoreResult<Vec<QueuedTextMessage>> {
        // Claimers on other daemons read the same head of the queue; the one
        // whose update lands second gets nothing and tries again further
        // along (a few times) instead of reporting "no work". Under such
        // contention FIFO holds per claim, not strictly across daemons.
        for attempt in 0..4u64 {
            // After a lost race, look past the range the winner is taking.
            let skip = attempt * max as u64;
            match self.claim_once(list, max, token, now, skip).await? {
                Claim::Got(v) => return Ok(v),
                Claim::Empty if skip == 0 => return Ok(vec![]),
                Claim::Empty => continue,
                Claim::LostRace => continue,
            }
        }
        Ok(vec![])
    }

    async fn requeue(&self, token: &str, items: Vec<Requeue>) -> StoreResult<u64> {
        if items.is_empty() {
            return Ok(0);
        }
        let statements = items
            .into_iter()
            .map(|r| {
                doc! {
                    "q": {"_id": r.id, "claimed_by": token},
                    "u": {"$set": {
                        "claimed_by": Bson::Null,
                        "claimed_at": Bson::Null,
                        "not_before": ts(r.not_before),
                        "attempts": r.attempts as i64,
                        "billing_blocked_since": r.billing_blocked_since.map(ts),
                        "last_error": r.last_error,
                    }},
                }
            })
            .collect();
        self.bulk_update(names::QUEUE, statements, false).await
    }

    async fn release(&self, list: SendingListId, token: &str) -> StoreResult<u64> {
        let res = self
            .coll::<Document>(names::QUEUE)
            .update_many(
                doc! {"sending_list": list, "claimed_by": token},
                doc! {"$set": {"claimed_by": Bson::Null, "claimed_at": Bson::Null}},
            )
            .await
            .map_err(map_err)?;
        Ok(res.modified_count)
    }

    async fn release_stale(&self, claimed_before: Timestamp) -> StoreResult<u64> {
        let res = self
            .coll::<Document>(names::QUEUE)
            .update_many(
                doc! {"claimed_at": {"$lt": ts(claimed_before)}, "claimed_by": {"$ne": Bson::Null}},
                doc! {"$set": {"claimed_by": Bson::Null, "claimed_at": Bson::Null}},
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
        self.bulk_delete(names::QUEUE, statements).await
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
}
