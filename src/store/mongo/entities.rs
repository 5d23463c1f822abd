//! Contacts, audiences, accounts, lists, links, creatives and schedules.

use super::{MongoStore, is_duplicate_key, map_err, names};
use crate::domain::*;
use crate::store::*;
use async_trait::async_trait;
use bson::{Document, doc};
use futures::TryStreamExt;
use mongodb::options::ReturnDocument;
use serde::Deserialize;

fn ts(t: Timestamp) -> bson::DateTime {
    bson::DateTime::from_chrono(t)
}

fn dup_or(e: mongodb::error::Error, what: String) -> StoreError {
    if is_duplicate_key(&e) {
        StoreError::Duplicate(what)
    } else {
        map_err(e)
    }
}

/// The fields the send-time block check reads.
#[derive(Deserialize)]
struct ContactBlockView {
    #[serde(rename = "_id")]
    id: ContactId,
    #[serde(default)]
    blocked: bool,
    #[serde(default)]
    subscriptions: Vec<Subscription>,
}

#[derive(Deserialize)]
struct BalanceView {
    balance: Money,
}

#[async_trait]
impl ContactStore for MongoStore {
    async fn insert_contacts(&self, contacts: Vec<Contact>) -> StoreResult<u64> {
        let total = contacts.len() as u64;
        let existing = self.insert_new(names::CONTACTS, contacts).await?;
        Ok(total - existing.len() as u64)
    }

    async fn get_contact(&self, id: ContactId) -> StoreResult<Option<Contact>> {
        self.coll::<Contact>(names::CONTACTS)
            .find_one(doc! {"_id": id})
            .await
            .map_err(map_err)
    }

    async fn existing_phones(
        &self,
        account: AccountId,
        phones: &[E164],
    ) -> StoreResult<std::collections::HashSet<E164>> {
        #[derive(Deserialize)]
        struct Phone {
            phone: E164,
        }
        let mut out = std::collections::HashSet::new();
        for chunk in phones.chunks(super::MAX_STATEMENTS) {
            let list: Vec<&str> = chunk.iter().map(|p| p.as_str()).collect();
            let found: Vec<Phone> = self
                .coll::<Phone>(names::CONTACTS)
                .find(doc! {"account": account, "phone": {"$in": list}})
                .projection(doc! {"phone": 1, "_id": 0})
                .await
                .map_err(map_err)?
                .try_collect()
                .await
                .map_err(map_err)?;
            out.extend(found.into_iter().map(|p| p.phone));
        }
        Ok(out)
    }

    async fn find_by_phone(
        &self,
        account: AccountId,
        phone: &E164,
    ) -> StoreResult<Option<Contact>> {
        self.coll::<Contact>(names::CONTACTS)
            .find_one(doc! {"account": account, "phone": phone.as_str()})
            .await
            .map_err(map_err)
    }

    async fn contact_states(
        &self,
        list: SendingListId,
        ids: &[ContactId],
    ) -> StoreResult<std::collections::HashMap<ContactId, ContactState>> {
        let mut out: std::collections::HashMap<ContactId, ContactState> =
            ids.iter().map(|id| (*id, ContactState::Missing)).collect();
        if ids.is_empty() {
            return Ok(out);
        }
        let mut unique = ids.to_vec();
        unique.sort();
        unique.dedup();
        let (Some(first), Some(last)) = (unique.first().copied(), unique.last().copied()) else {
            return Ok(out);
        };
        let state = |v: &ContactBlockView| {
            if v.blocked {
                ContactState::Blocked
            } else {
                match v.subscriptions.iter().find(|s| s.list == list) {
                    Some(s) if s.subscribed => ContactState::Sendable,
                    Some(_) => ContactState::Unsubscribed,
                    None => ContactState::NotOnList,
                }
            }
        };
        // A campaign's batch holds contacts in `_id` order, close together:
        // read their `_id` range first (an index range, never `$in`, which
        // the test server scans for once per listed id), at most twice as
        // many documents as asked for. Only when the range is sparser than
        // that are the ids past what it reached read by `$in`.
        let cap = unique.len().saturating_mul(2).min(u32::MAX as usize / 2);
        let range: Vec<ContactBlockView> = self
            .coll::<ContactBlockView>(names::CONTACTS)
            .find(doc! {"_id": {"$gte": first, "$lte": last}})
            .sort(doc! {"_id": 1})
            .projection(doc! {"blocked": 1, "subscriptions": 1})
            // A limit as well as a batch size: the whole answer comes in
            // the first reply, with no getMore round trip.
            .limit(cap as i64)
            .batch_size(cap as u32)
            .await
            .map_err(map_err)?
            .try_collect()
            .await
            .map_err(map_err)?;
        let reached = if range.len() < cap {
            Some(last)
        } else {
            range.last().map(|v| v.id)
        };
        for v in &range {
            if let Some(slot) = out.get_mut(&v.id) {
                *slot = state(v);
            }
        }
        let rest: Vec<ContactId> = unique
            .into_iter()
            .filter(|id| reached.is_none_or(|r| *id > r))
            .collect();
        if rest.is_empty() {
            return Ok(out);
        }
        let n = rest.len().min(u32::MAX as usize) as u32;
        let mut cursor = self
            .coll::<ContactBlockView>(names::CONTACTS)
            .find(doc! {"_id": {"$in": rest}})
            .projection(doc! {"blocked": 1, "subscriptions": 1})
            .limit(n as i64)
            .batch_size(n)
            .await
            .map_err(map_err)?;
        while let Some(v) = cursor.try_next().await.map_err(map_err)? {
            out.insert(v.id, state(&v));
        }
        Ok(out)
    }

    async fn set_subscription(
        &self,
        contact: ContactId,
        list: SendingListId,
        subscribed: bool,
        at: Timestamp,
    ) -> StoreResult<()> {
        let coll = self.coll::<Document>(names::CONTACTS);
        // Update the entry for this list if there is one, else append one;
        // the `$ne` guard keeps two concurrent appends from duplicating it.
        for _ in 0..2 {
            let r = coll
                .update_one(
                    doc! {"_id": contact, "subscriptions.list": list},
                    doc! {"$set": {"subscriptions.$.subscribed": subscribed, "subscriptions.$.changed_at": ts(at)}},
                )
                .await
                .map_err(map_err)?;
            if r.matched_count == 1 {
                return Ok(());
            }
            let r = coll
                .update_one(
                    doc! {"_id": contact, "subscriptions.list": {"$ne": list}},
                    doc! {"$push": {"subscriptions": {"list": list, "subscribed": subscribed, "changed_at": ts(at)}}},
                )
                .await
                .map_err(map_err)?;
            if r.matched_count == 1 {
                return Ok(());
            }
            if coll
                .find_one(doc! {"_id": contact})
                .projection(doc! {"_id": 1})
                .await
                .map_err(map_err)?
                .is_none()
            {
                return Err(StoreError::NotFound(format!("contact {contact}")));
            }
        }
        Err(StoreError::Conflict(Cause::msg(format!(
            "subscription of contact {contact} kept changing under us"
        ))))
    }

    async fn set_blocked(&self, contact: ContactId, blocked: bool) -> StoreResult<()> {
        let r = self
            .coll::<Document>(names::CONTACTS)
            .update_one(doc! {"_id": contact}, doc! {"$set": {"blocked": blocked}})
            .await
            .map_err(map_err)?;
        if r.matched_count == 0 {
            return Err(StoreError::NotFound(format!("contact {contact}")));
        }
        Ok(())
    }

    async fn insert_audience(&self, audience: Audience) -> StoreResult<()> {
        let what = format!("audience {}", audience.id);
        self.coll::<Audience>(names::AUDIENCES)
            .insert_one(audience)
            .await
            .map(|_| ())
            .map_err(|e| dup_or(e, what))
    }

    async fn get_audience(&self, id: AudienceId) -> StoreResult<Option<Audience>> {
        self.coll::<Audience>(names::AUDIENCES)
            .find_one(doc! {"_id": id})
            .await
            .map_err(map_err)
    }

    async fn audience_page(
        &self,
        account: AccountId,
        filters: &[AudienceFilter],
        after: Option<ContactId>,
        limit: usize,
    ) -> StoreResult<Vec<Contact>> {
        self.audience_page_impl(account, filters, after, limit)
            .await
    }

    async fn cooldowns(
        &self,
        list: SendingListId,
        ids: &[ContactId],
        now: Timestamp,
        except: Option<ScheduleRunId>,
    ) -> StoreResult<std::collections::HashMap<ContactId, Timestamp>> {
        self.cooldowns_impl(list, ids, now, except).await
    }

    async fn reserve_cooldowns(
        &self,
        list: SendingListId,
        run: ScheduleRunId,
        items: &[CooldownClaim],
        now: Timestamp,
    ) -> StoreResult<Vec<ContactId>> {
        self.reserve_cooldowns_impl(list, run, items, now).await
    }
}

#[async_trait]
impl AccountStore for MongoStore {
    async fn insert_account(&self, account: Account) -> StoreResult<()> {
        let what = format!("account {}", account.id);
        self.coll::<Account>(names::ACCOUNTS)
            .insert_one(account)
            .await
            .map(|_| ())
            .map_err(|e| dup_or(e, what))
    }

    async fn get_account(&self, id: AccountId) -> StoreResult<Option<Account>> {
        self.coll::<Account>(names::ACCOUNTS)
            .find_one(doc! {"_id": id})
            .await
            .map_err(map_err)
    }

    async fn top_up(&self, id: AccountId, amount: Money) -> StoreResult<Money> {
        self.coll::<BalanceView>(names::ACCOUNTS)
            .find_one_and_update(
                doc! {"_id": id},
                doc! {"$inc": {"balance": amount.0, "funded": amount.0}},
            )
            .return_document(ReturnDocument::After)
            .projection(doc! {"balance": 1})
            .await
            .map_err(map_err)?
            .map(|v| v.balance)
            .ok_or_else(|| StoreError::NotFound(format!("account {id}")))
    }

    async fn accounts(&self) -> StoreResult<Vec<Account>> {
        self.coll::<Account>(names::ACCOUNTS)
            .find(doc! {})
            .await
            .map_err(map_err)?
            .try_collect()
            .await
            .map_err(map_err)
    }

    async fn set_delivery_webhook(
        &self,
        id: AccountId,
        webhook: Option<CustomerWebhook>,
    ) -> StoreResult<bool> {
        self.set_delivery_webhook_impl(id, webhook).await
    }

    async fn set_discord_webhook(
        &self,
        id: AccountId,
        url: Option<crate::telemetry::Secret>,
    ) -> StoreResult<bool> {
        let value = match url {
            Some(u) => bson::to_bson(&u).map_err(|e| StoreError::Corrupt(Cause::new(e)))?,
            None => bson::Bson::Null,
        };
        let r = self
            .coll::<Document>(names::ACCOUNTS)
            .update_one(
                doc! {"_id": id},
                doc! {"$set": {"discord_webhook_url": value}},
            )
            .await
            .map_err(map_err)?;
        Ok(r.matched_count > 0)
    }
}

#[async_trait]
impl ListStore for MongoStore {
    async fn insert_list(&self, list: SendingList) -> StoreResult<()> {
        let what = format!("list {}", list.id);
        self.coll::<SendingList>(names::LISTS)
            .insert_one(list)
            .await
            .map(|_| ())
            .map_err(|e| dup_or(e, what))
    }

    async fn set_list_discord_webhook(
        &self,
        id: SendingListId,
        url: Option<crate::telemetry::Secret>,
    ) -> StoreResult<bool> {
        let value = match url {
            Some(u) => bson::to_bson(&u).map_err(|e| StoreError::Corrupt(Cause::new(e)))?,
            None => bson::Bson::Null,
        };
        let r = self
            .coll::<Document>(names::LISTS)
            .update_one(
                doc! {"_id": id},
                doc! {"$set": {"discord_webhook_url": value}},
            )
            .await
            .map_err(map_err)?;
        Ok(r.matched_count > 0)
    }

    async fn get_list(&self, id: SendingListId) -> StoreResult<Option<SendingList>> {
        self.coll::<SendingList>(names::LISTS)
            .find_one(doc! {"_id": id})
            .await
            .map_err(map_err)
    }

    async fn lists(&self, limit: usize) -> StoreResult<Vec<SendingList>> {
        self.coll::<SendingList>(names::LISTS)
            .find(doc! {})
            .sort(doc! {"created_at": -1, "_id": -1})
            .limit(limit as i64)
            .await
            .map_err(map_err)?
            .try_collect()
            .await
            .map_err(map_err)
    }

    async fn lists_sending_from(&self, number: &str) -> StoreResult<Vec<SendingList>> {
        self.coll::<SendingList>(names::LISTS)
            .find(doc! {"from_numbers": number})
            .await
            .map_err(map_err)?
            .try_collect()
            .await
            .map_err(map_err)
    }

    async fn set_list_status(&self, id: SendingListId, status: ListStatus) -> StoreResult<()> {
        let status = bson::to_bson(&status).map_err(|e| StoreError::Corrupt(Cause::new(e)))?;
        let r = self
            .coll::<Document>(names::LISTS)
            .update_one(doc! {"_id": id}, doc! {"$set": {"status": status}})
            .await
            .map_err(map_err)?;
        if r.matched_count == 0 {
            return Err(StoreError::NotFound(format!("list {id}")));
        }
        Ok(())
    }

    async fn set_rate_limit(&self, id: SendingListId, per_minute: u32) -> StoreResult<()> {
        let r = self
            .coll::<Document>(names::LISTS)
            .update_one(
                doc! {"_id": id},
                doc! {"$set": {"rate_limit_per_minute": per_minute as i64}},
            )
            .await
            .map_err(map_err)?;
        if r.matched_count == 0 {
            return Err(StoreError::NotFound(format!("list {id}")));
        }
        Ok(())
    }

    async fn delete_list(&self, id: SendingListId) -> StoreResult<()> {
        let r = self
            .coll::<Document>(names::LISTS)
            .delete_one(doc! {"_id": id})
            .await
            .map_err(map_err)?;
        if r.deleted_count == 0 {
            return Err(StoreError::NotFound(format!("list {id}")));
        }
        Ok(())
    }
}

#[async_trait]
impl LeaseStore for MongoStore {
    async fn renew_lease(&self, r: &LeaseRenewal) -> StoreResult<Timestamp> {
        let lists: Vec<bson::Bson> = r.lists.iter().map(|l| (*l).into()).collect();
        let sent_per_minute: Document = r
            .sent_per_minute
            .iter()
            .map(|(k, v)| (k.clone(), bson::Bson::Int64(*v as i64)))
            .collect();
        let after = self
            .coll::<DaemonLease>(names::LEASES)
            .find_one_and_update(
                doc! {"_id": &r.instance},
                doc! {
                    "$set": {
                        "daemon_id": &r.daemon_id,
                        "version": &r.version,
                        "started_at": ts(r.started_at),
                        "ttl_ms": r.ttl_ms,
                        "stopped": false,
                        "providers": r.providers.clone(),
                        "lists": lists,
                        "sent_per_minute": sent_per_minute,
                    },
                    // The server's clock, not ours: expiry is judged on it.
                    "$currentDate": {"heartbeat_at": true},
                },
            )
            .upsert(true)
            .return_document(ReturnDocument::After)
            .await
            .map_err(map_err)?;
        after
            .map(|l| l.heartbeat_at)
            .ok_or_else(|| StoreError::Rejected(Cause::msg("the lease upsert returned nothing")))
    }

    async fn stop_lease(&self, instance: &str) -> StoreResult<()> {
        self.coll::<Document>(names::LEASES)
            .update_one(doc! {"_id": instance}, doc! {"$set": {"stopped": true}})
            .await
            .map_err(map_err)?;
        Ok(())
    }

    async fn leases(&self) -> StoreResult<Vec<DaemonLease>> {
        self.coll::<DaemonLease>(names::LEASES)
            .find(doc! {})
            .await
            .map_err(map_err)?
            .try_collect()
            .await
            .map_err(map_err)
    }

    async fn server_time(&self) -> StoreResult<Timestamp> {
        let reply = self
            .db
            .run_command(doc! {"hello": 1})
            .await
            .map_err(map_err)?;
        reply
            .get_datetime("localTime")
            .map(|d| d.to_chrono())
            .map_err(|_| StoreError::Rejected(Cause::msg("the server's hello has no localTime")))
    }
}

#[async_trait]
impl LinkStore for MongoStore {
    async fn insert_links(&self, links: Vec<MessageShortLink>) -> StoreResult<()> {
        if links.is_empty() {
            return Ok(());
        }
        self.coll::<MessageShortLink>(names::LINKS)
            .insert_many(links)
            .ordered(true)
            .await
            .map(|_| ())
            .map_err(|e| dup_or(e, "link code".into()))
    }

    async fn find_link(&self, code: &str) -> StoreResult<Option<MessageShortLink>> {
        self.coll::<MessageShortLink>(names::LINKS)
            .find_one(doc! {"code": code})
            .await
            .map_err(map_err)
    }

    async fn record_click(&self, click: LinkClick) -> StoreResult<()> {
        self.coll::<LinkClick>(names::CLICKS)
            .insert_one(&click)
            .await
            .map_err(map_err)?;
        self.count_variant_click(&click).await
    }

    async fn human_clicks(&self, link: LinkId) -> StoreResult<u64> {
        self.coll::<Document>(names::CLICKS)
            .count_documents(doc! {"link": link, "is_bot": false})
            .await
            .map_err(map_err)
    }
}

#[async_trait]
impl ScheduleStore for MongoStore {
    async fn insert_creative(&self, creative: MessageCreative) -> StoreResult<()> {
        let what = format!("creative {}", creative.id);
        self.coll::<MessageCreative>(names::CREATIVES)
            .insert_one(creative)
            .await
            .map(|_| ())
            .map_err(|e| dup_or(e, what))
    }

    async fn get_creative(&self, id: CreativeId) -> StoreResult<Option<MessageCreative>> {
        self.coll::<MessageCreative>(names::CREATIVES)
            .find_one(doc! {"_id": id})
            .await
            .map_err(map_err)
    }

    async fn insert_schedule(&self, schedule: Schedule) -> StoreResult<()> {
        let what = format!("schedule {}", schedule.id);
        self.coll::<Schedule>(names::SCHEDULES)
            .insert_one(schedule)
            .await
            .map(|_| ())
            .map_err(|e| dup_or(e, what))
    }

    async fn get_schedule(&self, id: ScheduleId) -> StoreResult<Option<Schedule>> {
        self.coll::<Schedule>(names::SCHEDULES)
            .find_one(doc! {"_id": id})
            .await
            .map_err(map_err)
    }

    async fn schedules(&self, limit: usize) -> StoreResult<Vec<Schedule>> {
        self.coll::<Schedule>(names::SCHEDULES)
            .find(doc! {})
            .sort(doc! {"created_at": -1, "_id": -1})
            .limit(limit as i64)
            .await
            .map_err(map_err)?
            .try_collect()
            .await
            .map_err(map_err)
    }

    async fn due_schedules(&self, now: Timestamp, limit: usize) -> StoreResult<Vec<Schedule>> {
        self.coll::<Schedule>(names::SCHEDULES)
            .find(doc! {"status": "active", "next_run_at": {"$lte": ts(now)}})
            .sort(doc! {"status": 1, "next_run_at": 1})
            .limit(limit as i64)
            .await
            .map_err(map_err)?
            .try_collect()
            .await
            .map_err(map_err)
    }

    async fn start_run(&self, run: ScheduleRun) -> StoreResult<bool> {
        match self.coll::<ScheduleRun>(names::RUNS).insert_one(run).await {
            Ok(_) => Ok(true),
            Err(e) if is_duplicate_key(&e) => Ok(false),
            Err(e) => Err(map_err(e)),
        }
    }

    async fn get_run(&self, id: ScheduleRunId) -> StoreResult<Option<ScheduleRun>> {
        self.coll::<ScheduleRun>(names::RUNS)
            .find_one(doc! {"_id": id})
            .await
            .map_err(map_err)
    }

    async fn advance_schedule(
        &self,
        id: ScheduleId,
        occurrence: Timestamp,
        next: Option<Timestamp>,
    ) -> StoreResult<bool> {
        let next_bson = next.map_or(bson::Bson::Null, |t| bson::Bson::DateTime(ts(t)));
        if next.is_none() {
            // The last occurrence of an active schedule: moved on and done
            // in one write (the usual one-off). Otherwise (paused or
            // cancelled) only moved on, below.
            let res = self
                .coll::<Document>(names::SCHEDULES)
                .update_one(
                    doc! {"_id": id, "next_run_at": ts(occurrence), "status": "active"},
                    doc! {"$set": {"next_run_at": bson::Bson::Null, "status": "done"}},
                )
                .await
                .map_err(map_err)?;
            if res.modified_count > 0 {
                return Ok(true);
            }
        }
        let res = self
            .coll::<Document>(names::SCHEDULES)
            .update_one(
                doc! {"_id": id, "next_run_at": ts(occurrence)},
                doc! {"$set": {"next_run_at": next_bson}},
            )
            .await
            .map_err(map_err)?;
        Ok(res.modified_count > 0)
    }

    async fn set_schedule_status(
        &self,
        id: ScheduleId,
        status: ScheduleStatus,
        next_run_at: Option<Timestamp>,
    ) -> StoreResult<()> {
        let mut set = doc! {"status": bson::to_bson(&status).map_err(|e| StoreError::Corrupt(Cause::new(e)))?};
        if let Some(t) = next_run_at {
            set.insert("next_run_at", ts(t));
        }
        let res = self
            .coll::<Document>(names::SCHEDULES)
            .update_one(doc! {"_id": id}, doc! {"$set": set})
            .await
            .map_err(map_err)?;
        if res.matched_count == 0 {
            return Err(StoreError::NotFound(format!("schedule {id}")));
        }
        Ok(())
    }

    async fn evaluating_runs(&self, limit: usize) -> StoreResult<Vec<ScheduleRun>> {
        self.coll::<ScheduleRun>(names::RUNS)
            .find(doc! {"status": "evaluating"})
            .limit(limit as i64)
            .await
            .map_err(map_err)?
            .try_collect()
            .await
            .map_err(map_err)
    }

    async fn take_over_run(
        &self,
        id: ScheduleRunId,
        from: &str,
        to: &str,
    ) -> StoreResult<Option<ScheduleRun>> {
        self.take_over_run_impl(id, from, to).await
    }

    async fn commit_page(&self, page: RunPage) -> StoreResult<()> {
        self.commit_page_impl(page).await
    }

    async fn finish_run(
        &self,
        id: ScheduleRunId,
        owner: &str,
        status: RunStatus,
        reason: Option<String>,
        at: Timestamp,
    ) -> StoreResult<bool> {
        let res = self
            .coll::<Document>(names::RUNS)
            .update_one(
                doc! {"_id": id, "owner": owner, "status": "evaluating"},
                doc! {"$set": {
                    "status": status.as_str(),
                    "reason": reason.map_or(bson::Bson::Null, bson::Bson::String),
                    "finished_at": ts(at),
                }},
            )
            .await
            .map_err(map_err)?;
        Ok(res.modified_count == 1)
    }

    async fn runs_of(&self, schedule: ScheduleId, limit: usize) -> StoreResult<Vec<ScheduleRun>> {
        self.coll::<ScheduleRun>(names::RUNS)
            .find(doc! {"schedule": schedule})
            .sort(doc! {"schedule": 1, "occurrence": -1})
            .limit(limit as i64)
            .await
            .map_err(map_err)?
            .try_collect()
            .await
            .map_err(map_err)
    }

    async fn variant_stats(&self, creative: CreativeId) -> StoreResult<Vec<VariantStats>> {
        self.variant_stats_impl(creative).await
    }

    async fn add_run_counts(&self, counts: Vec<(ScheduleRunId, RunCounts)>) -> StoreResult<()> {
        self.add_run_counts_impl(counts).await
    }
}
