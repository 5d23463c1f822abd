//! Alert windows (`alert_windows`) and the Alerts actor's shared state
//! (`alert_state`: flags and counters).
//!
//! Round trips: adding a daemon's counts to a window is one upsert
//! (`$setOnInsert` the window's identity, `$inc` its counters); a claim is
//! one `findAndModify` per window claimed (plus one that finds none), each
//! atomic, so two daemons never claim the same window; a flag swap is one
//! conditional update (plus an insert when the flag never existed); a
//! counter bump is one `findAndModify` (plus an insert the first time),
//! a take one `findAndModify`; a hold one conditional update (plus an
//! insert when the key was never held).

use super::{MongoStore, is_duplicate_key, map_err, names};
use crate::domain::*;
use crate::store::*;
use async_trait::async_trait;
use bson::{Bson, Document, doc};
use futures::TryStreamExt;
use mongodb::options::ReturnDocument;

fn bdt(t: Timestamp) -> bson::DateTime {
    bson::DateTime::from_chrono(t)
}

#[async_trait]
impl AlertStore for MongoStore {
    async fn add_to_alert_window(&self, w: AlertWindow) -> StoreResult<()> {
        let mut inc = Document::new();
        for (k, v) in &w.counts {
            if *v != 0 {
                inc.insert(format!("counts.{k}"), *v);
            }
        }
        let kind = bson::to_bson(&w.kind).map_err(|e| StoreError::Corrupt(Cause::new(e)))?;
        let mut on_insert = doc! {
            "kind": kind,
            "account": w.account.map(Bson::from).unwrap_or(Bson::Null),
            "list": w.list.map(Bson::from).unwrap_or(Bson::Null),
            "window_start": bdt(w.window_start),
            "closes_at": bdt(w.closes_at),
            "detail": w.detail.clone().map(Bson::String).unwrap_or(Bson::Null),
            "claimed_by": Bson::Null,
        };
        if inc.is_empty() {
            on_insert.insert("counts", Document::new());
        }
        let mut update = doc! {"$setOnInsert": on_insert};
        if !inc.is_empty() {
            update.insert("$inc", inc);
        }
        let coll = self.coll::<Document>(names::ALERT_WINDOWS);
        // Two first upserts of one id at once: one of them may fail on the
        // unique `_id`; the document exists then, and the retry adds to it.
        for attempt in 0..2 {
            match coll
                .update_one(doc! {"_id": &w.id}, update.clone())
                .upsert(true)
                .await
            {
                Ok(_) => return Ok(()),
                Err(e) if attempt == 0 && is_duplicate_key(&e) => continue,
                Err(e) => return Err(map_err(e)),
            }
        }
        Ok(())
    }

    async fn claim_alert_windows(
        &self,
        now: Timestamp,
        owner: &str,
        max: usize,
    ) -> StoreResult<Vec<AlertWindow>> {
        let coll = self.coll::<AlertWindow>(names::ALERT_WINDOWS);
        let mut out = Vec::new();
        while out.len() < max {
            let claimed = coll
                .find_one_and_update(
                    doc! {"claimed_by": Bson::Null, "closes_at": {"$lte": bdt(now)}},
                    doc! {"$set": {"claimed_by": owner, "claimed_at": bdt(now)}},
                )
                .sort(doc! {"claimed_by": 1, "closes_at": 1})
                .return_document(ReturnDocument::After)
                .await
                .map_err(map_err)?;
            match claimed {
                Some(w) => out.push(w),
                None => break,
            }
        }
        Ok(out)
    }

    async fn list_alert_windows(
        &self,
        list: SendingListId,
        from: Timestamp,
        to: Timestamp,
    ) -> StoreResult<Vec<AlertWindow>> {
        self.coll::<AlertWindow>(names::ALERT_WINDOWS)
            .find(doc! {
                "list": list,
                "window_start": {"$gte": bdt(from), "$lte": bdt(to)},
                "kind": "list",
            })
            .sort(doc! {"list": 1, "window_start": 1})
            .await
            .map_err(map_err)?
            .try_collect()
            .await
            .map_err(map_err)
    }

    async fn alert_flag(&self, key: &str) -> StoreResult<bool> {
        let d = self
            .coll::<Document>(names::ALERT_STATE)
            .find_one(doc! {"_id": key})
            .await
            .map_err(map_err)?;
        Ok(d.and_then(|d| d.get_bool("on").ok()).unwrap_or(false))
    }

    async fn swap_alert_flag(&self, key: &str, from: bool, to: bool) -> StoreResult<bool> {
        let coll = self.coll::<Document>(names::ALERT_STATE);
        let r = coll
            .update_one(doc! {"_id": key, "on": from}, doc! {"$set": {"on": to}})
            .await
            .map_err(map_err)?;
        if r.matched_count > 0 {
            return Ok(true);
        }
        if from {
            return Ok(false);
        }
        // A flag never set holds `false`: create it; if another daemon
        // created it meanwhile, it changed first.
        match coll.insert_one(doc! {"_id": key, "on": to}).await {
            Ok(_) => Ok(true),
            Err(e) if is_duplicate_key(&e) => Ok(false),
            Err(e) => Err(map_err(e)),
        }
    }

    async fn hold_alert(&self, key: &str, now: Timestamp, until: Timestamp) -> StoreResult<bool> {
        let coll = self.coll::<Document>(names::ALERT_STATE);
        let set = doc! {"until": bdt(until), "expires_at": bdt(until)};
        // A hold that ran out is taken over in place; a missing one is
        // inserted, and an insert that loses to another daemon's means
        // that daemon holds it.
        let r = coll
            .update_one(
                doc! {"_id": key, "until": {"$lte": bdt(now)}},
                doc! {"$set": set.clone()},
            )
            .await
            .map_err(map_err)?;
        if r.matched_count > 0 {
            return Ok(true);
        }
        let mut fresh = doc! {"_id": key};
        fresh.extend(set);
        match coll.insert_one(fresh).await {
            Ok(_) => Ok(true),
            Err(e) if is_duplicate_key(&e) => Ok(false),
            Err(e) => Err(map_err(e)),
        }
    }

    async fn bump_alert_counter(
        &self,
        key: &str,
        by: i64,
        expires_at: Timestamp,
    ) -> StoreResult<i64> {
        // Not one upsert: concurrent first upserts of one key can both come
        // back without the document on some servers. An existing counter is
        // incremented in place; a missing one is inserted, and an insert
        // that loses to another goes back to the increment.
        let coll = self.coll::<Document>(names::ALERT_STATE);
        for _ in 0..3 {
            let after = coll
                .find_one_and_update(
                    doc! {"_id": key},
                    doc! {"$inc": {"n": by}, "$set": {"expires_at": bdt(expires_at)}},
                )
                .return_document(ReturnDocument::After)
                .await
                .map_err(map_err)?;
            if let Some(n) = after.as_ref().and_then(count_of) {
                return Ok(n);
            }
            match coll
                .insert_one(doc! {"_id": key, "n": by, "expires_at": bdt(expires_at)})
                .await
            {
                Ok(_) => return Ok(by),
                Err(e) if is_duplicate_key(&e) => continue,
                Err(e) => return Err(map_err(e)),
            }
        }
        Err(StoreError::Conflict(Cause::msg(format!(
            "alert counter {key} kept changing"
        ))))
    }

    async fn take_alert_counter(&self, key: &str) -> StoreResult<i64> {
        let before = self
            .coll::<Document>(names::ALERT_STATE)
            .find_one_and_update(doc! {"_id": key}, doc! {"$set": {"n": 0i64}})
            .return_document(ReturnDocument::Before)
            .await
            .map_err(map_err)?;
        Ok(before.and_then(|d| count_of(&d)).unwrap_or(0))
    }
}

fn count_of(d: &Document) -> Option<i64> {
    match d.get("n")? {
        Bson::Int64(n) => Some(*n),
        Bson::Int32(n) => Some(i64::from(*n)),
        Bson::Double(n) => Some(*n as i64),
        _ => None,
    }
}
