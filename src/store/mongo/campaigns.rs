//! The campaign writes and reads on MongoDB: audience pages, cooldown
//! reservations, a run's page committed in one transaction, run ownership,
//! and the variants' evidence.
//!
//! - An audience page is one `find`: the account's contacts after the
//!   checkpoint, in `_id` order, matching any of the audiences' filters (a
//!   `$or`), so the union has no duplicates by construction.
//! - A cooldown reservation is a document per (list, contact) in
//!   `contact_cooldowns`. One `update` command reserves a page: each
//!   statement is an upsert on the reservation's `_id` that matches only a
//!   reservation that has run out (or is this run's own); when another
//!   campaign's reservation still runs, the statement's upsert collides on
//!   `_id` and the server answers that statement with a duplicate-key error:
//!   that contact is refused, atomically, whatever runs concurrently.
//! - A page commit is one transaction: the messages, their short links and
//!   the run's checkpoint and counters (`insert`, `insert`, `update`,
//!   `commitTransaction`). The run update matches only while this daemon
//!   owns the run at the page's starting checkpoint; otherwise the
//!   transaction is aborted and nothing of the page exists.

use super::{MongoStore, is_duplicate_key, map_err, names, reply_count};
use crate::domain::audience::is_plain_name;
use crate::domain::*;
use crate::store::{Cause, CooldownClaim, RunPage, StoreError, StoreResult};
use bson::{Bson, Document, doc};
use futures::TryStreamExt;
use mongodb::options::ReturnDocument;
use std::collections::{BTreeMap, HashMap};

fn ts(t: Timestamp) -> bson::DateTime {
    bson::DateTime::from_chrono(t)
}

fn cooldown_key(list: SendingListId, contact: ContactId) -> String {
    format!("{}:{}", list.to_hex(), contact.to_hex())
}

/// One audience's filter as a query document (field names were checked:
/// they become paths).
fn filter_doc(f: &AudienceFilter) -> StoreResult<Document> {
    f.validate()
        .map_err(|e| StoreError::Rejected(Cause::msg(e)))?;
    let mut d = Document::new();
    if let Some(list) = f.list {
        d.insert("subscriptions.list", list);
    }
    let mut tags = Document::new();
    if !f.tags_any.is_empty() {
        tags.insert("$in", f.tags_any.clone());
    }
    if !f.tags_none.is_empty() {
        tags.insert("$nin", f.tags_none.clone());
    }
    if !tags.is_empty() {
        d.insert("tags", tags);
    }
    for (k, v) in &f.fields {
        // `$eq` so that a value is only ever a value.
        d.insert(format!("custom_fields.{k}"), doc! {"$eq": v});
    }
    Ok(d)
}

#[derive(serde::Deserialize)]
struct CooldownView {
    contact: ContactId,
    #[serde(with = "crate::domain::dt")]
    at: Timestamp,
}

#[derive(serde::Deserialize)]
struct RunVariants {
    #[serde(default)]
    variants: BTreeMap<String, VariantCount>,
}

#[derive(serde::Deserialize)]
struct VariantClicks {
    variant: String,
    #[serde(default)]
    clicked: u64,
}

impl MongoStore {
    pub(crate) async fn audience_page_impl(
        &self,
        account: AccountId,
        filters: &[AudienceFilter],
        after: Option<ContactId>,
        limit: usize,
    ) -> StoreResult<Vec<Contact>> {
        if filters.is_empty() || limit == 0 {
            return Ok(vec![]);
        }
        let ors = filters
            .iter()
            .map(filter_doc)
            .collect::<StoreResult<Vec<_>>>()?;
        let mut q = doc! {"account": account, "$or": ors};
        if let Some(a) = after {
            q.insert("_id", doc! {"$gt": a});
        }
        self.coll::<Contact>(names::CONTACTS)
            .find(q)
            .sort(doc! {"account": 1, "_id": 1})
            .limit(limit as i64)
            .batch_size(limit.min(u32::MAX as usize) as u32)
            .await
            .map_err(map_err)?
            .try_collect()
            .await
            .map_err(map_err)
    }

    pub(crate) async fn cooldowns_impl(
        &self,
        list: SendingListId,
        ids: &[ContactId],
        now: Timestamp,
        except: Option<ScheduleRunId>,
    ) -> StoreResult<HashMap<ContactId, Timestamp>> {
        if ids.is_empty() {
            return Ok(HashMap::new());
        }
        let keys: Vec<String> = ids.iter().map(|c| cooldown_key(list, *c)).collect();
        let mut q = doc! {"_id": {"$in": keys}, "until": {"$gt": ts(now)}};
        if let Some(r) = except {
            q.insert("run", doc! {"$ne": r});
        }
        let found: Vec<CooldownView> = self
            .coll::<CooldownView>(names::COOLDOWNS)
            .find(q)
            .projection(doc! {"contact": 1, "at": 1})
            .batch_size(ids.len().min(u32::MAX as usize) as u32)
            .await
            .map_err(map_err)?
            .try_collect()
            .await
            .map_err(map_err)?;
        Ok(found.into_iter().map(|c| (c.contact, c.at)).collect())
    }

    pub(crate) async fn reserve_cooldowns_impl(
        &self,
        list: SendingListId,
        run: ScheduleRunId,
        items: &[CooldownClaim],
        now: Timestamp,
    ) -> StoreResult<Vec<ContactId>> {
        let mut refused = vec![];
        for chunk in items.chunks(super::MAX_STATEMENTS) {
            let statements: Vec<Document> = chunk
                .iter()
                .map(|c| {
                    doc! {
                        "q": {"_id": cooldown_key(list, c.contact),
                              "$or": [{"until": {"$lte": ts(now)}}, {"run": run}]},
                        "u": {"$set": {"list": list, "contact": c.contact, "at": ts(c.at),
                                       "until": ts(c.until), "run": run}},
                        "upsert": true,
                    }
                })
                .collect();
            let reply = self
                .command(
                    doc! {"update": names::COOLDOWNS, "updates": statements, "ordered": false},
                    None,
                )
                .await
                .map_err(map_err)?;
            if let Ok(errs) = reply.get_array("writeErrors") {
                for e in errs {
                    let Some(e) = e.as_document() else { continue };
                    let code = match e.get("code") {
                        Some(Bson::Int32(c)) => i64::from(*c),
                        Some(Bson::Int64(c)) => *c,
                        _ => 0,
                    };
                    let index = reply_count(e, "index") as usize;
                    match (code, chunk.get(index)) {
                        (11000, Some(c)) => refused.push(c.contact),
                        _ => {
                            return Err(StoreError::Rejected(Cause::msg(format!(
                                "cooldown reservation refused: {e}"
                            ))));
                        }
                    }
                }
            }
        }
        Ok(refused)
    }

    pub(crate) async fn commit_page_impl(&self, page: RunPage) -> StoreResult<()> {
        let mut set = doc! {"cursor": page.to, "seq": page.seq as i64};
        if let Some(at) = page.finished_at {
            // The last page: the run is done in the same write.
            set.insert("status", RunStatus::Queued.as_str());
            set.insert("reason", Bson::Null);
            set.insert("finished_at", bson::DateTime::from_chrono(at));
        }
        let mut inc = doc! {
            "audience": page.counts.audience as i64,
            "eligible": page.counts.eligible as i64,
            "queued": page.counts.queued as i64,
            "cost": page.counts.cost.0,
        };
        for (k, v) in &page.counts.skipped {
            if !is_plain_name(k) {
                return Err(StoreError::Rejected(Cause::msg(format!(
                    "skip reason {k:?}"
                ))));
            }
            inc.insert(format!("skipped.{k}"), *v as i64);
        }
        for (k, v) in &page.counts.variants {
            if !is_plain_name(k) {
                return Err(StoreError::Rejected(Cause::msg(format!(
                    "variant key {k:?}"
                ))));
            }
            inc.insert(format!("variants.{k}.messages"), v.messages as i64);
            inc.insert(format!("variants.{k}.segments"), v.segments as i64);
        }
        let filter = doc! {
            "_id": page.run,
            "owner": &page.owner,
            "status": "evaluating",
            "cursor": page.from.map_or(Bson::Null, Bson::from),
        };
        let update = doc! {"$set": set, "$inc": inc};
        let mut tries = 0;
        loop {
            tries += 1;
            match self
                .commit_page_once(&page, filter.clone(), update.clone())
                .await
            {
                Err(StoreError::Conflict(_)) if tries < 5 => {
                    tokio::time::sleep(std::time::Duration::from_millis(20 * tries)).await;
                }
                other => return other,
            }
        }
    }

    async fn commit_page_once(
        &self,
        page: &RunPage,
        filter: Document,
        update: Document,
    ) -> StoreResult<()> {
        let mut s = self.start_txn().await?;
        if !page.messages.is_empty() {
            self.coll::<QueuedTextMessage>(names::QUEUE)
                .insert_many(&page.messages)
                .session(&mut s)
                .await
                .map_err(|e| dup("queued message", e))?;
        }
        if !page.links.is_empty() {
            self.coll::<MessageShortLink>(names::LINKS)
                .insert_many(&page.links)
                .session(&mut s)
                .await
                .map_err(|e| dup("link code", e))?;
        }
        let res = self
            .coll::<Document>(names::RUNS)
            .update_one(filter, update)
            .session(&mut s)
            .await
            .map_err(map_err)?;
        if res.matched_count == 0 {
            let _ = s.abort_transaction().await;
            return Err(StoreError::Superseded(format!(
                "run {} is no longer this daemon's at this checkpoint",
                page.run
            )));
        }
        self.commit(&mut s).await
    }

    pub(crate) async fn take_over_run_impl(
        &self,
        id: ScheduleRunId,
        from: &str,
        to: &str,
    ) -> StoreResult<Option<ScheduleRun>> {
        self.coll::<ScheduleRun>(names::RUNS)
            .find_one_and_update(
                doc! {"_id": id, "owner": from, "status": "evaluating"},
                doc! {"$set": {"owner": to}},
            )
            .return_document(ReturnDocument::After)
            .await
            .map_err(map_err)
    }

    pub(crate) async fn variant_stats_impl(
        &self,
        creative: CreativeId,
    ) -> StoreResult<Vec<VariantStats>> {
        let runs: Vec<RunVariants> = self
            .coll::<RunVariants>(names::RUNS)
            .find(doc! {"creative": creative})
            .projection(doc! {"variants": 1})
            .await
            .map_err(map_err)?
            .try_collect()
            .await
            .map_err(map_err)?;
        let clicks: Vec<VariantClicks> = self
            .coll::<VariantClicks>(names::VARIANT_CLICKS)
            .find(doc! {"creative": creative})
            .await
            .map_err(map_err)?
            .try_collect()
            .await
            .map_err(map_err)?;
        let mut by: BTreeMap<String, (u64, u64)> = BTreeMap::new();
        for r in runs {
            for (k, v) in r.variants {
                by.entry(k).or_default().0 += v.messages;
            }
        }
        for c in clicks {
            by.entry(c.variant).or_default().1 += c.clicked;
        }
        Ok(by
            .into_iter()
            .map(|(variant, (sends, clicked))| VariantStats {
                creative,
                variant,
                sends,
                clicked,
            })
            .collect())
    }

    /// After a click is stored: the first human click on a message counts
    /// its variant as clicked once (a marker per message decides "first").
    pub(crate) async fn add_run_counts_impl(
        &self,
        counts: Vec<(ScheduleRunId, RunCounts)>,
    ) -> StoreResult<()> {
        let statements: Vec<Document> = counts
            .iter()
            .filter(|(_, c)| !c.is_empty())
            .map(|(run, c)| {
                let mut inc = doc! {
                    "stats.sent": c.sent as i64,
                    "stats.delivered": c.delivered as i64,
                    "stats.undelivered": c.undelivered as i64,
                    "stats.clicked": c.clicked as i64,
                };
                for (reason, n) in &c.failed {
                    inc.insert(format!("stats.failed.{reason}"), *n as i64);
                }
                let mut u = doc! {"$inc": inc};
                if let Some(t) = c.first_sent_at {
                    u.insert("$min", doc! {"stats.first_sent_at": ts(t)});
                }
                if let Some(t) = c.last_sent_at {
                    u.insert("$max", doc! {"stats.last_sent_at": ts(t)});
                }
                doc! {"q": {"_id": run}, "u": u}
            })
            .collect();
        if statements.is_empty() {
            return Ok(());
        }
        self.bulk_update(names::RUNS, statements, false, None)
            .await
            .map(|_| ())
    }

    pub(crate) async fn count_variant_click(&self, click: &LinkClick) -> StoreResult<()> {
        let Some(message) = click.message else {
            return Ok(());
        };
        // The first click of any kind: the run's `clicked_any` (keyed apart
        // from the human-click marker below).
        let first_any = match self
            .coll::<Document>(names::CLICKED_MESSAGES)
            .insert_one(doc! {"_id": format!("any:{}", message.to_hex())})
            .await
        {
            Ok(_) => true,
            Err(e) if is_duplicate_key(&e) => false,
            Err(e) => return Err(map_err(e)),
        };
        if click.is_bot {
            if first_any {
                self.count_run_click(click, "stats.clicked_any").await?;
            }
            return Ok(());
        }
        match self
            .coll::<Document>(names::CLICKED_MESSAGES)
            .insert_one(doc! {"_id": message})
            .await
        {
            Ok(_) => {}
            Err(e) if is_duplicate_key(&e) => {
                if first_any {
                    self.count_run_click(click, "stats.clicked_any").await?;
                }
                return Ok(());
            }
            Err(e) => return Err(map_err(e)),
        }
        let Some(link) = self
            .coll::<MessageShortLink>(names::LINKS)
            .find_one(doc! {"_id": click.link})
            .await
            .map_err(map_err)?
        else {
            return Ok(());
        };
        if let Some(run) = link.run {
            let mut inc = doc! {"stats.clicked": 1};
            if first_any {
                inc.insert("stats.clicked_any", 1);
            }
            self.coll::<Document>(names::RUNS)
                .update_one(doc! {"_id": run}, doc! {"$inc": inc})
                .await
                .map_err(map_err)?;
        }
        let (Some(creative), Some(variant)) = (link.creative, link.variant) else {
            return Ok(());
        };
        self.coll::<Document>(names::VARIANT_CLICKS)
            .update_one(
                doc! {"_id": format!("{}:{}", creative.to_hex(), variant)},
                doc! {"$set": {"creative": creative, "variant": &variant}, "$inc": {"clicked": 1}},
            )
            .upsert(true)
            .await
            .map(|_| ())
            .map_err(map_err)
    }
}

impl MongoStore {
    /// Adds one to `field` of the run the click's link came from.
    async fn count_run_click(&self, click: &LinkClick, field: &str) -> StoreResult<()> {
        let Some(run) = self
            .coll::<MessageShortLink>(names::LINKS)
            .find_one(doc! {"_id": click.link})
            .await
            .map_err(map_err)?
            .and_then(|l| l.run)
        else {
            return Ok(());
        };
        self.coll::<Document>(names::RUNS)
            .update_one(doc! {"_id": run}, doc! {"$inc": {field: 1}})
            .await
            .map(|_| ())
            .map_err(map_err)
    }
}

fn dup(what: &str, e: mongodb::error::Error) -> StoreError {
    if is_duplicate_key(&e) {
        StoreError::Duplicate(what.to_string())
    } else {
        map_err(e)
    }
}
