//! The customer-webhook outbox (`webhook_outbox`) and the account's webhook
//! setting.
//!
//! Round trips: adding entries is one unordered `insert_many` (an existing
//! `_id` is no error); a claim is three (read the due candidates, read the
//! pending earlier entries of their messages, one `update` stamping the
//! claim re-checking that nobody claimed them meanwhile) plus one read of
//! what this token now holds; recording a batch's results is one `update`
//! command with a statement per entry.

use super::{MongoStore, map_err, names};
use crate::domain::*;
use crate::store::*;
use async_trait::async_trait;
use bson::{Bson, Document, doc};
use futures::TryStreamExt;
use std::collections::HashSet;

fn bdt(t: Timestamp) -> bson::DateTime {
    bson::DateTime::from_chrono(t)
}

fn status(s: OutboxStatus) -> &'static str {
    s.as_str()
}

/// Claimable at `now`: pending, due, and not held by a running claim.
fn claimable(now: Timestamp) -> Document {
    doc! {
        "status": status(OutboxStatus::Pending),
        "next_attempt_at": {"$lte": bdt(now)},
        "$or": [{"lease_until": Bson::Null}, {"lease_until": {"$lte": bdt(now)}}],
    }
}

#[async_trait]
impl OutboxStore for MongoStore {
    async fn add_outbox(&self, entries: Vec<OutboxEntry>) -> StoreResult<u64> {
        let n = entries.len() as u64;
        let existing = self.insert_new(names::OUTBOX, entries).await?;
        Ok(n - existing.len() as u64)
    }

    async fn claim_outbox(
        &self,
        max: usize,
        token: &str,
        now: Timestamp,
        lease_until: Timestamp,
    ) -> StoreResult<Vec<OutboxEntry>> {
        if max == 0 {
            return Ok(vec![]);
        }
        #[derive(serde::Deserialize)]
        struct Candidate {
            #[serde(rename = "_id")]
            id: String,
            message: MessageId,
            rank: u8,
        }
        // Read a little more than asked: some may wait for an earlier entry.
        let candidates: Vec<Candidate> = self
            .coll::<Candidate>(names::OUTBOX)
            .find(claimable(now))
            .sort(doc! {"status": 1, "next_attempt_at": 1})
            .projection(doc! {"_id": 1, "message": 1, "rank": 1})
            .limit((max * 2) as i64)
            .await
            .map_err(map_err)?
            .try_collect()
            .await
            .map_err(map_err)?;
        if candidates.is_empty() {
            return Ok(vec![]);
        }
        let earlier: Vec<String> = candidates
            .iter()
            .filter(|c| c.rank > 0)
            .map(|c| OutboxEntry::key(c.message, DeliveryState::Pending))
            .collect();
        let blocked: HashSet<String> = if earlier.is_empty() {
            HashSet::new()
        } else {
            self.coll::<Document>(names::OUTBOX)
                .find(doc! {"_id": {"$in": &earlier}, "status": status(OutboxStatus::Pending)})
                .projection(doc! {"_id": 1})
                .await
                .map_err(map_err)?
                .try_collect::<Vec<Document>>()
                .await
                .map_err(map_err)?
                .into_iter()
                .filter_map(|d| d.get_str("_id").ok().map(str::to_string))
                .collect()
        };
        let ids: Vec<String> = candidates
            .into_iter()
            .filter(|c| {
                c.rank == 0
                    || !blocked.contains(&OutboxEntry::key(c.message, DeliveryState::Pending))
            })
            .map(|c| c.id)
            .take(max)
            .collect();
        if ids.is_empty() {
            return Ok(vec![]);
        }
        let mut filter = claimable(now);
        filter.insert("_id", doc! {"$in": &ids});
        self.coll::<Document>(names::OUTBOX)
            .update_many(
                filter,
                doc! {"$set": {"claim": token, "lease_until": bdt(lease_until)}},
            )
            .await
            .map_err(map_err)?;
        self.coll::<OutboxEntry>(names::OUTBOX)
            .find(doc! {"_id": {"$in": &ids}, "claim": token})
            .sort(doc! {"next_attempt_at": 1})
            .await
            .map_err(map_err)?
            .try_collect()
            .await
            .map_err(map_err)
    }

    async fn finish_outbox(&self, token: &str, results: Vec<OutboxResult>) -> StoreResult<u64> {
        if results.is_empty() {
            return Ok(0);
        }
        let statements: Vec<Document> = results
            .into_iter()
            .map(|r| {
                let mut set = doc! {
                    "status": status(r.status),
                    "attempts": r.attempts as i64,
                    "last_error": r.last_error.map(Bson::String).unwrap_or(Bson::Null),
                    "claim": Bson::Null,
                    "lease_until": Bson::Null,
                };
                if r.status == OutboxStatus::Pending {
                    set.insert("next_attempt_at", bdt(r.next_attempt_at));
                } else {
                    set.insert("finished_at", bdt(r.at));
                }
                doc! {
                    "q": {"_id": r.id, "claim": token, "status": status(OutboxStatus::Pending)},
                    "u": {"$set": set},
                }
            })
            .collect();
        self.bulk_update(names::OUTBOX, statements, false, None)
            .await
    }

    async fn outbox_entry(&self, id: &str) -> StoreResult<Option<OutboxEntry>> {
        self.coll::<OutboxEntry>(names::OUTBOX)
            .find_one(doc! {"_id": id})
            .await
            .map_err(map_err)
    }

    async fn outbox_counts(
        &self,
        account: Option<AccountId>,
    ) -> StoreResult<Vec<(OutboxStatus, u64)>> {
        // One round trip: counts by status (a status with none is 0).
        let mut pipeline = Vec::with_capacity(2);
        if let Some(a) = account {
            pipeline.push(doc! {"$match": {"account": a}});
        }
        pipeline.push(doc! {"$group": {"_id": "$status", "n": {"$sum": 1}}});
        let rows: Vec<Document> = self
            .coll::<Document>(names::OUTBOX)
            .aggregate(pipeline)
            .await
            .map_err(map_err)?
            .try_collect()
            .await
            .map_err(map_err)?;
        let mut out: Vec<(OutboxStatus, u64)> = OutboxStatus::ALL.iter().map(|s| (*s, 0)).collect();
        for r in rows {
            let n = match r.get("n") {
                Some(Bson::Int32(n)) => u64::try_from(*n).unwrap_or(0),
                Some(Bson::Int64(n)) => u64::try_from(*n).unwrap_or(0),
                Some(Bson::Double(n)) if *n >= 0.0 => *n as u64,
                _ => 0,
            };
            if let Some(slot) = out
                .iter_mut()
                .find(|(s, _)| Some(s.as_str()) == r.get_str("_id").ok())
            {
                slot.1 = n;
            }
        }
        Ok(out)
    }
}

impl MongoStore {
    pub(crate) async fn set_delivery_webhook_impl(
        &self,
        id: AccountId,
        webhook: Option<CustomerWebhook>,
    ) -> StoreResult<bool> {
        let value = match webhook {
            Some(w) => bson::to_bson(&w).map_err(|e| StoreError::Corrupt(Cause::new(e)))?,
            None => Bson::Null,
        };
        let r = self
            .coll::<Document>(names::ACCOUNTS)
            .update_one(doc! {"_id": id}, doc! {"$set": {"delivery_webhook": value}})
            .await
            .map_err(map_err)?;
        Ok(r.matched_count > 0)
    }
}
