//! One contract, two stores: every test here runs unchanged against the
//! in-memory store and against MongoDB (scripts/test provides one).

mod common;

use chrono::Duration as CDur;
use std::collections::HashSet;
use trackly::clock::truncate_ms;
use trackly::domain::*;
use trackly::store::*;
use trackly_devkit::seed;

fn now() -> Timestamp {
    truncate_ms(chrono::Utc::now())
}

struct World {
    account: Account,
    list: SendingList,
    contacts: Vec<Contact>,
}

async fn world(s: &Stores, contacts: u64) -> World {
    let t = now();
    let account = seed::account(Money::from_micros(1_000_000), Money::from_micros(10_000), t);
    s.accounts.insert_account(account.clone()).await.unwrap();
    let list = seed::list(account.id, ProviderSettings::Fake, 17_000, t);
    s.lists.insert_list(list.clone()).await.unwrap();
    let contacts: Vec<Contact> = (0..contacts)
        .map(|i| seed::contact(account.id, list.id, i, t))
        .collect();
    s.contacts.insert_contacts(contacts.clone()).await.unwrap();
    World {
        account,
        list,
        contacts,
    }
}

fn msgs(w: &World, send_at: Timestamp) -> Vec<QueuedTextMessage> {
    w.contacts
        .iter()
        .map(|c| seed::queued(&w.list, c, "hello", send_at))
        .collect()
}

/// An attempt record costing 0.01 (the world's price per segment).
fn attempt(m: &QueuedTextMessage, token: &str, at: Timestamp) -> MessageSent {
    MessageSent::attempt(
        m,
        ProviderKind::Fake,
        token,
        &format!("owner-{token}"),
        Money::from_micros(10_000),
        at,
    )
}

fn claimant(token: &str) -> Claimant {
    Claimant {
        token: token.into(),
        owner: format!("owner-{token}"),
    }
}

async fn claim(
    s: &Stores,
    list: SendingListId,
    max: usize,
    token: &str,
    t: Timestamp,
) -> Vec<QueuedTextMessage> {
    s.queue
        .claim(list, max, &claimant(token), t)
        .await
        .unwrap()
        .messages
}

fn sent(id: MessageId, t: Timestamp) -> Settlement {
    Settlement::Sent {
        id,
        at: t,
        provider_message_id: Some(format!("p-{id}")),
        resolved_by: None,
    }
}

fn rejected(m: &QueuedTextMessage, t: Timestamp, refund: bool) -> Settlement {
    Settlement::Failed {
        at: t,
        code: "21211".into(),
        text: "invalid number".into(),
        refund,
        dead_letter: Box::new(failed(m, FailureReason::ProviderError, t)),
    }
}

fn failed(m: &QueuedTextMessage, reason: FailureReason, t: Timestamp) -> FailedMessage {
    FailedMessage {
        id: m.id,
        account: m.account,
        sending_list: m.sending_list,
        reason,
        detail: "test".into(),
        provider_code: Some("E400".into()),
        provider_text: Some("Bad request".into()),
        failed_at: t,
        original: Some(m.clone()),
        raw: None,
        resolved: None,
        requeued: None,
    }
}

async fn balance(s: &Stores, a: AccountId) -> Money {
    s.accounts.get_account(a).await.unwrap().unwrap().balance
}

// ---------------------------------------------------------------- the contract

async fn claim_takes_oldest_first_and_stamps_the_token(s: &Stores) {
    let w = world(s, 10).await;
    let t = now();
    let queued = msgs(&w, t - CDur::seconds(1));
    assert_eq!(s.queue.enqueue(queued.clone()).await.unwrap(), 10);
    // Enqueue is idempotent by id.
    assert_eq!(s.queue.enqueue(queued[..3].to_vec()).await.unwrap(), 0);
    let got = claim(s, w.list.id, 4, "tok-a", t).await;
    let ids: Vec<MessageId> = got.iter().map(|m| m.id).collect();
    let expected: Vec<MessageId> = queued[..4].iter().map(|m| m.id).collect();
    assert_eq!(ids, expected, "FIFO by id");
    assert!(got.iter().all(|m| m.claimed_by.as_deref() == Some("tok-a")
        && m.claim_owner.as_deref() == Some("owner-tok-a")
        && m.claimed_at == Some(t)));
    let stored = s.queue.get(ids[0]).await.unwrap().unwrap();
    assert_eq!(stored.claim_owner.as_deref(), Some("owner-tok-a"));
    let rest = claim(s, w.list.id, 100, "tok-b", t).await;
    assert_eq!(rest.len(), 6);
    assert!(claim(s, w.list.id, 100, "tok-c", t).await.is_empty());
    assert_eq!(s.queue.depth().await.unwrap(), 10);
    assert_eq!(
        s.queue.depth_by_list().await.unwrap().get(&w.list.id),
        Some(&10)
    );
}

async fn concurrent_claimers_never_share_a_message(s: &Stores) {
    let w = world(s, 300).await;
    let t = now();
    s.queue.enqueue(msgs(&w, t)).await.unwrap();
    let mut handles = vec![];
    for k in 0..6 {
        let s = s.clone();
        let list = w.list.id;
        handles.push(tokio::spawn(async move {
            let mut mine = vec![];
            loop {
                let got = claim(&s, list, 25, &format!("tok-{k}-{}", mine.len()), t).await;
                if got.is_empty() {
                    break;
                }
                mine.extend(got.into_iter().map(|m| m.id));
            }
            mine
        }));
    }
    let mut all = vec![];
    for h in handles {
        all.extend(h.await.unwrap());
    }
    let unique: HashSet<MessageId> = all.iter().copied().collect();
    assert_eq!(all.len(), unique.len(), "a message was claimed twice");
    assert_eq!(unique.len(), 300, "every message claimed once");
}

async fn messages_not_due_or_in_backoff_are_never_claimed(s: &Stores) {
    let w = world(s, 6).await;
    let t = now();
    let mut queued = msgs(&w, t);
    queued[0].send_at = t + CDur::minutes(5); // scheduled for later
    queued[0].not_before = queued[0].send_at;
    queued[1].not_before = t + CDur::seconds(30); // in backoff
    s.queue.enqueue(queued.clone()).await.unwrap();
    let got = claim(s, w.list.id, 100, "tok", t).await;
    let ids: HashSet<MessageId> = got.iter().map(|m| m.id).collect();
    assert_eq!(ids.len(), 4);
    assert!(!ids.contains(&queued[0].id) && !ids.contains(&queued[1].id));
    // Another list's messages are not claimed either.
    let other = seed::list(w.account.id, ProviderSettings::Fake, 100, t);
    assert!(claim(s, other.id, 100, "tok2", t).await.is_empty());
    // Once due, they are.
    let later = claim(s, w.list.id, 100, "tok3", t + CDur::minutes(6)).await;
    assert_eq!(later.len(), 2);
}

async fn due_lists_names_lists_with_ready_due_messages(s: &Stores) {
    let w = world(s, 3).await;
    let t = now();
    let mut queued = msgs(&w, t);
    for m in &mut queued {
        m.not_before = t + CDur::minutes(1);
    }
    s.queue.enqueue(queued).await.unwrap();
    assert!(s.queue.due_lists(t, 10).await.unwrap().is_empty());
    assert_eq!(
        s.queue.due_lists(t + CDur::minutes(1), 10).await.unwrap(),
        vec![w.list.id]
    );
    claim(s, w.list.id, 10, "tok", t + CDur::minutes(1)).await;
    assert!(
        s.queue
            .due_lists(t + CDur::minutes(2), 10)
            .await
            .unwrap()
            .is_empty(),
        "claimed messages are not ready"
    );
}

async fn next_due_is_the_earliest_unclaimed_later_message(s: &Stores) {
    let w = world(s, 3).await;
    let t = now();
    assert_eq!(s.queue.next_due(t).await.unwrap(), None, "empty queue");
    let mut queued = msgs(&w, t);
    for (i, m) in queued.iter_mut().enumerate() {
        m.not_before = t + CDur::minutes(3 - i as i64);
    }
    let ids: Vec<MessageId> = queued.iter().map(|m| m.id).collect();
    s.queue.enqueue(queued).await.unwrap();
    // Due at t+3, t+2 and t+1 minutes.
    assert_eq!(
        s.queue.next_due(t).await.unwrap(),
        Some(t + CDur::minutes(1))
    );
    assert_eq!(
        s.queue.next_due(t + CDur::minutes(1)).await.unwrap(),
        Some(t + CDur::minutes(2)),
        "only later than `now`: a due message is the poll's business"
    );
    // Claimed messages wait for nobody.
    claim(s, w.list.id, 10, "tok", t + CDur::minutes(3)).await;
    assert_eq!(
        s.queue.next_due(t).await.unwrap(),
        None,
        "all claimed: {ids:?}"
    );
}

async fn claims_of_dead_owners_are_released_and_live_ones_kept(s: &Stores) {
    let w = world(s, 4).await;
    let t = now();
    s.queue
        .enqueue(msgs(&w, t - CDur::minutes(20)))
        .await
        .unwrap();
    // Claimed long ago by a live daemon, and just now by a dead one: age
    // does not matter, only the owner.
    let live = claim(s, w.list.id, 2, "live", t - CDur::minutes(15)).await;
    let dead = claim(s, w.list.id, 2, "dead", t).await;
    assert_eq!((live.len(), dead.len()), (2, 2));
    let mut owners = s.queue.claim_owners().await.unwrap();
    owners.sort();
    assert_eq!(owners, vec!["owner-dead".to_string(), "owner-live".into()]);
    assert_eq!(
        s.queue
            .release_owners(&["owner-dead".to_string()])
            .await
            .unwrap(),
        2
    );
    let m = s.queue.get(dead[0].id).await.unwrap().unwrap();
    assert_eq!(
        (m.claimed_by, m.claim_owner, m.claimed_at),
        (None, None, None)
    );
    let l = s.queue.get(live[0].id).await.unwrap().unwrap();
    assert_eq!(l.claimed_by.as_deref(), Some("live"));
    let again = claim(s, w.list.id, 10, "new", t).await;
    let ids: HashSet<MessageId> = again.iter().map(|m| m.id).collect();
    assert_eq!(ids, dead.iter().map(|m| m.id).collect());
    assert_eq!(s.queue.release_owners(&[]).await.unwrap(), 0);
}

async fn requeue_release_and_complete_act_only_on_the_token(s: &Stores) {
    let w = world(s, 6).await;
    let t = now();
    s.queue.enqueue(msgs(&w, t)).await.unwrap();
    let a = claim(s, w.list.id, 3, "a", t).await;
    let b = claim(s, w.list.id, 3, "b", t).await;
    // Requeue with another token: nothing happens.
    let wrong = Requeue {
        id: a[0].id,
        not_before: t,
        send_at: None,
        attempts: 9,
        billing_blocked_since: None,
        last_error: None,
    };
    assert_eq!(s.queue.requeue("b", vec![wrong]).await.unwrap(), 0);
    let later = t + CDur::minutes(5);
    let r = Requeue {
        id: a[0].id,
        not_before: later,
        send_at: None,
        attempts: 1,
        billing_blocked_since: Some(t),
        last_error: Some("HTTP 503".into()),
    };
    assert_eq!(s.queue.requeue("a", vec![r]).await.unwrap(), 1);
    let m = s.queue.get(a[0].id).await.unwrap().unwrap();
    assert_eq!((m.claimed_by, m.claim_owner), (None, None));
    assert_eq!(m.not_before, later);
    assert_eq!(m.attempts, 1);
    assert_eq!(m.billing_blocked_since, Some(t));
    assert_eq!(m.last_error.as_deref(), Some("HTTP 503"));
    // A token no one minted deletes nothing (a restarted daemon's new
    // tokens never match its predecessor's).
    assert_eq!(s.queue.complete(w.list.id, "a-other").await.unwrap(), 0);
    // Complete deletes what "a" still holds, not "b"'s, not the requeued one.
    assert_eq!(s.queue.complete(w.list.id, "a").await.unwrap(), 2);
    assert!(s.queue.get(a[1].id).await.unwrap().is_none());
    assert!(s.queue.get(a[0].id).await.unwrap().is_some());
    assert!(s.queue.get(b[0].id).await.unwrap().is_some());
    // Release puts b's back, unchanged.
    assert_eq!(s.queue.release(w.list.id, "b").await.unwrap(), 3);
    let again = claim(s, w.list.id, 10, "c", t).await;
    assert_eq!(
        again.len(),
        3,
        "released messages are claimable; the backed-off one is not"
    );
    // The audit's view: what is queued, and who holds it.
    let scan = s.queue.scan().await.unwrap();
    assert_eq!(scan.len(), 4);
    assert_eq!(
        scan.iter()
            .filter(|e| e.claim_owner.as_deref() == Some("owner-c"))
            .count(),
        3
    );
}

async fn a_charge_and_its_attempt_records_are_written_together(s: &Stores) {
    let w = world(s, 3).await; // balance 1.00, 0.01 a message
    let t = now();
    let q = msgs(&w, t);
    let first = s
        .sent
        .begin_attempts(w.account.id, vec![attempt(&q[0], "a", t)])
        .await
        .unwrap();
    assert_eq!(first.recorded, vec![q[0].id]);
    assert_eq!(first.balance, Some(Money::from_micros(990_000)));
    s.sent.settle(vec![sent(q[0].id, t)]).await.unwrap();
    // A second daemon tries the same message plus two new ones: the old one
    // is neither recorded again nor charged.
    let second = s
        .sent
        .begin_attempts(w.account.id, q.iter().map(|m| attempt(m, "b", t)).collect())
        .await
        .unwrap();
    assert_eq!(second.already_attempted, vec![q[0].id]);
    assert_eq!(second.recorded, vec![q[1].id, q[2].id]);
    assert_eq!(balance(s, w.account.id).await, Money::from_micros(970_000));
    // The first record is untouched.
    let r = s.sent.get(q[0].id).await.unwrap().unwrap();
    assert_eq!(
        (r.attempt_token.as_str(), r.owner.as_str()),
        ("a", "owner-a")
    );
    assert_eq!(r.submitted, Some(true));
    assert_eq!(r.cost, Money::from_micros(10_000));
    assert_eq!(s.sent.count().await.unwrap(), 3);
}

async fn only_the_affordable_prefix_is_charged_and_never_below_zero(s: &Stores) {
    let w = world(s, 120).await; // balance 1.00 = 100 messages
    let t = now();
    let q = msgs(&w, t);
    let got = s
        .sent
        .begin_attempts(
            w.account.id,
            q[..3].iter().map(|m| attempt(m, "a", t)).collect(),
        )
        .await
        .unwrap();
    assert_eq!(got.recorded.len(), 3);
    // Concurrent charges on one account: exactly the affordable ones pass.
    let mut hs = vec![];
    for (k, chunk) in q[3..].chunks(13).enumerate() {
        let s = s.clone();
        let recs: Vec<MessageSent> = chunk
            .iter()
            .map(|m| attempt(m, &format!("w{k}"), t))
            .collect();
        let acc = w.account.id;
        hs.push(tokio::spawn(async move {
            s.sent.begin_attempts(acc, recs).await.unwrap()
        }));
    }
    let (mut recorded, mut unaffordable) = (0, 0);
    let mut unpaid = vec![];
    for h in hs {
        let b = h.await.unwrap();
        recorded += b.recorded.len();
        unaffordable += b.unaffordable.len();
        unpaid.extend(b.unaffordable);
    }
    for id in &unpaid {
        assert!(
            s.sent.get(*id).await.unwrap().is_none(),
            "{id} has an attempt record but was not charged"
        );
    }
    assert_eq!(recorded, 97, "the balance paid for 100 in all");
    assert_eq!(unaffordable, 20);
    assert_eq!(balance(s, w.account.id).await, Money::ZERO);
    assert_eq!(
        s.sent.count().await.unwrap(),
        100,
        "no record without its charge"
    );
    let stranger = seed::queued(&w.list, &w.contacts[0], "hi", t);
    let unknown = s
        .sent
        .begin_attempts(AccountId::new(), vec![attempt(&stranger, "x", t)])
        .await;
    assert!(
        matches!(unknown, Err(StoreError::NotFound(_))),
        "{unknown:?}"
    );
}

async fn a_failure_is_recorded_with_its_dead_letter_and_refunded_once(s: &Stores) {
    let w = world(s, 3).await;
    let t = now();
    let q = msgs(&w, t);
    s.sent
        .begin_attempts(w.account.id, q.iter().map(|m| attempt(m, "a", t)).collect())
        .await
        .unwrap();
    assert_eq!(balance(s, w.account.id).await, Money::from_micros(970_000));
    let done = s
        .sent
        .settle(vec![
            sent(q[0].id, t),
            rejected(&q[1], t, true),
            outcome_in_doubt(&q[2], t),
        ])
        .await
        .unwrap();
    assert_eq!(done.sent, 1);
    assert_eq!(done.failed.len(), 2);
    assert_eq!(done.refunded, Money::from_micros(10_000));
    assert_eq!(balance(s, w.account.id).await, Money::from_micros(980_000));
    let r1 = s.sent.get(q[1].id).await.unwrap().unwrap();
    assert_eq!((r1.submitted, r1.refunded), (Some(false), true));
    assert_eq!(r1.error_code.as_deref(), Some("21211"));
    assert_eq!(
        s.dead_letters.get(q[1].id).await.unwrap().unwrap().reason,
        FailureReason::ProviderError
    );
    let r2 = s.sent.get(q[2].id).await.unwrap().unwrap();
    assert!(r2.in_doubt() && !r2.refunded, "in doubt keeps its charge");
    assert_eq!(
        s.dead_letters.get(q[2].id).await.unwrap().unwrap().reason,
        FailureReason::NoResponse
    );
    // Settling again (a late writer): nothing changes, nothing is refunded.
    let again = s
        .sent
        .settle(vec![rejected(&q[0], t, true), rejected(&q[1], t, true)])
        .await
        .unwrap();
    assert_eq!((again.failed.len(), again.refunded), (0, Money::ZERO));
    assert_eq!(balance(s, w.account.id).await, Money::from_micros(980_000));
    assert!(
        s.dead_letters.get(q[0].id).await.unwrap().is_none(),
        "a sent message never gets a dead letter"
    );
    assert_eq!(
        s.sent.get(q[0].id).await.unwrap().unwrap().submitted,
        Some(true)
    );
}

fn outcome_in_doubt(m: &QueuedTextMessage, t: Timestamp) -> Settlement {
    Settlement::Failed {
        at: t,
        code: "NO_RESPONSE".into(),
        text: "timed out".into(),
        refund: false,
        dead_letter: Box::new(failed(m, FailureReason::NoResponse, t)),
    }
}

async fn unsent_attempts_are_withdrawn_and_refunded_only_by_their_token(s: &Stores) {
    let w = world(s, 2).await;
    let t = now();
    let q = msgs(&w, t);
    s.sent
        .begin_attempts(w.account.id, q.iter().map(|m| attempt(m, "a", t)).collect())
        .await
        .unwrap();
    s.sent.settle(vec![sent(q[1].id, t)]).await.unwrap();
    let unsent = |id, token: &str| Settlement::Unsent {
        id,
        token: token.into(),
    };
    // Wrong token: nothing. Answered record: never removed.
    let r = s.sent.settle(vec![unsent(q[0].id, "zzz")]).await.unwrap();
    assert!(r.unsent.is_empty());
    let r = s
        .sent
        .settle(vec![unsent(q[0].id, "a"), unsent(q[1].id, "a")])
        .await
        .unwrap();
    assert_eq!(r.unsent, vec![q[0].id]);
    assert_eq!(r.refunded, Money::from_micros(10_000));
    assert!(s.sent.get(q[0].id).await.unwrap().is_none());
    assert!(s.sent.get(q[1].id).await.unwrap().is_some());
    assert_eq!(balance(s, w.account.id).await, Money::from_micros(990_000));
    let again = s
        .sent
        .begin_attempts(w.account.id, vec![attempt(&q[0], "b", t)])
        .await
        .unwrap();
    assert_eq!(again.recorded, vec![q[0].id], "a retry may record it again");
}

async fn unanswered_attempts_are_found_by_owner_token_and_horizon(s: &Stores) {
    let w = world(s, 5).await;
    let t = now();
    let q = msgs(&w, t);
    let mut recs = vec![
        attempt(&q[0], "dead-1", t), // owner-dead-1: not live
        attempt(&q[1], "live-1", t), // a live owner's, in flight
        attempt(&q[2], "me-1", t),   // mine, batch still running
        attempt(&q[3], "me-2", t),   // mine, batch given up
        attempt(&q[4], "live-2", t), // live, but past the horizon
    ];
    recs[2].owner = "me".into();
    recs[3].owner = "me".into();
    recs[1].owner = "owner-live".into();
    recs[4].owner = "owner-live".into();
    recs[4].attempted_at = t - CDur::hours(2);
    s.sent.begin_attempts(w.account.id, recs).await.unwrap();
    let q0 = UnansweredQuery {
        only_mine: false,
        live_owners: vec!["owner-live".into(), "me".into()],
        me: "me".into(),
        active_tokens: vec!["me-1".into()],
        attempted_before: t - CDur::hours(1),
        limit: 100,
    };
    let mut found: Vec<MessageId> = s
        .sent
        .unanswered(&q0)
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.id)
        .collect();
    found.sort();
    let mut want = vec![q[0].id, q[3].id, q[4].id];
    want.sort();
    assert_eq!(found, want);
    let mut owners = s.sent.attempt_owners().await.unwrap();
    owners.sort();
    assert_eq!(
        owners,
        vec!["me".to_string(), "owner-dead-1".into(), "owner-live".into()]
    );
}

async fn delivery_reports_never_replace_a_final_state(s: &Stores) {
    let w = world(s, 3).await;
    let t = now();
    let q = msgs(&w, t);
    s.sent
        .begin_attempts(w.account.id, q.iter().map(|m| attempt(m, "a", t)).collect())
        .await
        .unwrap();
    let up = |i: usize, st: DeliveryState, code: Option<&str>| DeliveryUpdate {
        id: q[i].id,
        state: st,
        error_code: code.map(String::from),
        at: t,
    };
    // Message 0: pending, then delivered, then a late pending and a late failure.
    let r = s
        .sent
        .apply_delivery(vec![
            up(0, DeliveryState::Pending, None),
            up(0, DeliveryState::Delivered, None),
            up(0, DeliveryState::Pending, None),
            up(0, DeliveryState::Undelivered, Some("30003")),
        ])
        .await
        .unwrap();
    assert_eq!((r.applied, r.ignored), (2, 2));
    let m0 = s.sent.get(q[0].id).await.unwrap().unwrap();
    assert_eq!(
        (m0.delivered, m0.delivery_state),
        (Some(true), Some(DeliveryState::Delivered))
    );
    // Message 1: failed with a code; pending stays null.
    let unknown = MessageId::new();
    let r = s
        .sent
        .apply_delivery(vec![
            up(1, DeliveryState::Expired, Some("EXPIRED")),
            up(2, DeliveryState::Pending, None),
            DeliveryUpdate {
                id: unknown,
                state: DeliveryState::Delivered,
                error_code: None,
                at: t,
            },
        ])
        .await
        .unwrap();
    assert_eq!(r.applied, 2);
    assert_eq!(r.unknown, vec![unknown]);
    let m1 = s.sent.get(q[1].id).await.unwrap().unwrap();
    assert_eq!(
        (m1.delivered, m1.delivery_error_code.as_deref()),
        (Some(false), Some("EXPIRED"))
    );
    let m2 = s.sent.get(q[2].id).await.unwrap().unwrap();
    assert_eq!(
        (m2.delivered, m2.delivery_state),
        (None, Some(DeliveryState::Pending))
    );
    // A report that arrives before the send outcome is kept; the outcome
    // still lands afterwards.
    s.sent.settle(vec![sent(q[0].id, t)]).await.unwrap();
    let m0 = s.sent.get(q[0].id).await.unwrap().unwrap();
    assert_eq!((m0.submitted, m0.delivered), (Some(true), Some(true)));
}

async fn a_report_for_an_in_doubt_message_resolves_it_as_sent(s: &Stores) {
    let w = world(s, 2).await;
    let t = now();
    let q = msgs(&w, t);
    s.sent
        .begin_attempts(w.account.id, q.iter().map(|m| attempt(m, "a", t)).collect())
        .await
        .unwrap();
    s.sent
        .settle(vec![outcome_in_doubt(&q[0], t), rejected(&q[1], t, true)])
        .await
        .unwrap();
    let r = s
        .sent
        .apply_delivery(vec![
            DeliveryUpdate {
                id: q[0].id,
                state: DeliveryState::Delivered,
                error_code: None,
                at: t,
            },
            DeliveryUpdate {
                id: q[1].id,
                state: DeliveryState::Rejected,
                error_code: None,
                at: t,
            },
        ])
        .await
        .unwrap();
    assert_eq!(r.resolved, vec![q[0].id], "only the in-doubt one");
    let m0 = s.sent.get(q[0].id).await.unwrap().unwrap();
    assert_eq!((m0.submitted, m0.delivered), (Some(true), Some(true)));
    assert_eq!(m0.resolved_by.as_deref(), Some(RESOLVED_BY_REPORT));
    let f0 = s.dead_letters.get(q[0].id).await.unwrap().unwrap();
    assert_eq!(
        f0.resolved.map(|r| r.by),
        Some(RESOLVED_BY_REPORT.to_string())
    );
    // A rejection stays a rejection, with its dead letter unresolved.
    let m1 = s.sent.get(q[1].id).await.unwrap().unwrap();
    assert_eq!(m1.submitted, Some(false));
    assert!(
        s.dead_letters
            .get(q[1].id)
            .await
            .unwrap()
            .unwrap()
            .resolved
            .is_none()
    );
    // The audit's view of both.
    let scan = s.dead_letters.scan().await.unwrap();
    assert!(scan.contains(&(q[0].id, FailureReason::NoResponse, true)));
    assert!(scan.contains(&(q[1].id, FailureReason::ProviderError, false)));
    let sent_scan = s.sent.scan().await.unwrap();
    assert!(
        sent_scan
            .iter()
            .any(|e| e.id == q[1].id && e.refunded && e.submitted == Some(false))
    );
}

/// In-doubt messages settled by the provider's records: taken ones become
/// sent (id, delivery state, dead letter resolved); one not taken is
/// refunded and queued again once under a new id; one too old ends STALE,
/// refunded. Each only while still in doubt.
async fn lookups_resolve_in_doubt_messages_once(s: &Stores) {
    let w = world(s, 3).await;
    let t = now();
    let q = msgs(&w, t);
    s.sent
        .begin_attempts(w.account.id, q.iter().map(|m| attempt(m, "a", t)).collect())
        .await
        .unwrap();
    s.sent
        .settle(q.iter().map(|m| outcome_in_doubt(m, t)).collect())
        .await
        .unwrap();
    let charged = balance(s, w.account.id).await;
    let taken = LookupTaken {
        id: q[0].id,
        provider_message_id: Some("prov-0".into()),
        delivery: Some(DeliveryState::Delivered),
        error_code: None,
    };
    assert_eq!(
        s.sent.resolve_taken(vec![taken.clone()], t).await.unwrap(),
        vec![q[0].id]
    );
    assert!(
        s.sent
            .resolve_taken(vec![taken], t)
            .await
            .unwrap()
            .is_empty()
    );
    let m0 = s.sent.get(q[0].id).await.unwrap().unwrap();
    assert_eq!(
        (
            m0.submitted,
            m0.delivered,
            m0.provider_message_id.as_deref()
        ),
        (Some(true), Some(true), Some("prov-0"))
    );
    assert_eq!(m0.resolved_by.as_deref(), Some(RESOLVED_BY_LOOKUP));
    let f0 = s.dead_letters.get(q[0].id).await.unwrap().unwrap();
    assert_eq!(
        f0.resolved.map(|r| r.by),
        Some(RESOLVED_BY_LOOKUP.to_string())
    );

    let again = q[1].resend(t, t);
    let not_taken = LookupNotTaken {
        id: q[1].id,
        resend: Some(again.clone()),
    };
    assert!(
        s.sent
            .resolve_not_taken(not_taken.clone(), t)
            .await
            .unwrap()
    );
    let twice = LookupNotTaken {
        id: q[1].id,
        resend: Some(q[1].resend(t, t)),
    };
    assert!(!s.sent.resolve_not_taken(twice, t).await.unwrap());
    let m1 = s.sent.get(q[1].id).await.unwrap().unwrap();
    assert_eq!(
        (m1.submitted, m1.error_code.as_deref(), m1.refunded),
        (Some(false), Some("NOT_TAKEN"), true)
    );
    assert!(!m1.in_doubt());
    let f1 = s.dead_letters.get(q[1].id).await.unwrap().unwrap();
    assert_eq!(f1.requeued.map(|r| r.message), Some(again.id));
    let queued = s.queue.get(again.id).await.unwrap().expect("queued again");
    assert_eq!(
        (queued.to.clone(), queued.body.clone()),
        (q[1].to.clone(), q[1].body.clone())
    );
    assert_eq!(s.queue.depth().await.unwrap(), 1);

    let stale = LookupNotTaken {
        id: q[2].id,
        resend: None,
    };
    assert!(s.sent.resolve_not_taken(stale, t).await.unwrap());
    let f2 = s.dead_letters.get(q[2].id).await.unwrap().unwrap();
    assert_eq!(
        (f2.reason, f2.requeued.is_none()),
        (FailureReason::Stale, true)
    );
    assert_eq!(
        balance(s, w.account.id).await,
        Money(charged.0 + 2 * 10_000),
        "two charges given back"
    );
    // Nothing left in doubt.
    let open = FailedFilter {
        reason: Some(FailureReason::NoResponse),
        open_only: true,
        ..Default::default()
    };
    assert_eq!(s.dead_letters.count_failed(&open).await.unwrap(), 0);
}

async fn an_in_doubt_judgment_after_a_report_records_the_message_sent(s: &Stores) {
    // The daemon died before recording the answer; the report came first.
    let w = world(s, 1).await;
    let t = now();
    let q = msgs(&w, t);
    s.sent
        .begin_attempts(w.account.id, vec![attempt(&q[0], "a", t)])
        .await
        .unwrap();
    s.sent
        .apply_delivery(vec![DeliveryUpdate {
            id: q[0].id,
            state: DeliveryState::Delivered,
            error_code: None,
            at: t,
        }])
        .await
        .unwrap();
    let r = s
        .sent
        .settle(vec![outcome_in_doubt(&q[0], t)])
        .await
        .unwrap();
    assert_eq!((r.sent, r.failed.len()), (1, 0));
    let m = s.sent.get(q[0].id).await.unwrap().unwrap();
    assert_eq!(m.submitted, Some(true));
    assert_eq!(m.resolved_by.as_deref(), Some(RESOLVED_BY_REPORT));
    assert!(s.dead_letters.get(q[0].id).await.unwrap().is_none());
}

async fn dead_letters_are_written_once(s: &Stores) {
    let w = world(s, 2).await;
    let t = now();
    let q = msgs(&w, t);
    assert_eq!(
        s.dead_letters
            .record(vec![
                failed(&q[0], FailureReason::Stale, t),
                failed(&q[1], FailureReason::ProviderError, t)
            ])
            .await
            .unwrap(),
        2
    );
    assert_eq!(
        s.dead_letters
            .record(vec![failed(&q[0], FailureReason::NoResponse, t)])
            .await
            .unwrap(),
        0
    );
    let got = s.dead_letters.get(q[0].id).await.unwrap().unwrap();
    assert_eq!(got.reason, FailureReason::Stale, "first record wins");
    assert_eq!(got.original.as_ref(), Some(&q[0]));
    let counts = s.dead_letters.count_by_reason().await.unwrap();
    assert_eq!(counts.get(&FailureReason::Stale), Some(&1));
    assert_eq!(counts.get(&FailureReason::ProviderError), Some(&1));
}

async fn top_ups_count_as_funded(s: &Stores) {
    let w = world(s, 0).await; // opened with 1.00
    let a = w.account.id;
    assert_eq!(
        s.accounts.top_up(a, Money::from_micros(5)).await.unwrap(),
        Money::from_micros(1_000_005)
    );
    let acc = s.accounts.get_account(a).await.unwrap().unwrap();
    assert_eq!(acc.funded, Money::from_micros(1_000_005));
    assert!(matches!(
        s.accounts.top_up(AccountId::new(), Money(1)).await,
        Err(StoreError::NotFound(_))
    ));
    assert_eq!(s.accounts.accounts().await.unwrap().len(), 1);
}

async fn queue_entries_are_deleted_only_after_their_outcome(s: &Stores) {
    // The sequence a worker follows: attempt record, outcome, then complete.
    let w = world(s, 2).await;
    let t = now();
    let q = msgs(&w, t);
    s.queue.enqueue(q.clone()).await.unwrap();
    let got = claim(s, w.list.id, 10, "tok", t).await;
    s.sent
        .begin_attempts(
            w.account.id,
            got.iter().map(|m| attempt(m, "tok", t)).collect(),
        )
        .await
        .unwrap();
    s.sent
        .settle(got.iter().map(|m| sent(m.id, t)).collect())
        .await
        .unwrap();
    assert_eq!(s.queue.complete(w.list.id, "tok").await.unwrap(), 2);
    for m in &q {
        assert!(s.queue.get(m.id).await.unwrap().is_none());
        assert_eq!(
            s.sent.get(m.id).await.unwrap().unwrap().submitted,
            Some(true)
        );
    }
}

async fn leases_are_stamped_and_judged_on_the_stores_clock(s: &Stores) {
    let renewal = |instance: &str| LeaseRenewal {
        instance: instance.into(),
        daemon_id: "d".into(),
        version: "1".into(),
        started_at: now(),
        ttl_ms: 60_000,
        providers: vec!["fake".into()],
        lists: vec![SendingListId::new()],
        sent_per_minute: [("0123456789abcdef01234567".to_string(), 120)].into(),
    };
    let before = s.leases.server_time().await.unwrap();
    let at = s.leases.renew_lease(&renewal("d:1")).await.unwrap();
    assert!(at >= before - CDur::seconds(1));
    s.leases.renew_lease(&renewal("d:2")).await.unwrap();
    s.leases.stop_lease("d:2").await.unwrap();
    let now_s = s.leases.server_time().await.unwrap();
    let leases = s.leases.leases().await.unwrap();
    let l1 = leases.iter().find(|l| l.instance == "d:1").unwrap();
    let l2 = leases.iter().find(|l| l.instance == "d:2").unwrap();
    assert!(l1.live_at(now_s));
    assert!(!l1.live_at(now_s + CDur::seconds(61)));
    assert!(!l2.live_at(now_s), "a stopped lease is expired at once");
    assert_eq!(l1.providers, vec!["fake".to_string()]);
    assert_eq!(
        l1.sent_per_minute.get("0123456789abcdef01234567"),
        Some(&120)
    );
    // Renewing again moves heartbeat_at, and revives nothing stopped.
    let again = s.leases.renew_lease(&renewal("d:1")).await.unwrap();
    assert!(again >= at);
}

async fn contact_states_are_read_fresh(s: &Stores) {
    let w = world(s, 4).await;
    let t = now();
    let ids: Vec<ContactId> = w.contacts.iter().map(|c| c.id).collect();
    s.contacts
        .set_subscription(ids[1], w.list.id, false, t)
        .await
        .unwrap();
    s.contacts.set_blocked(ids[2], true).await.unwrap();
    let other_list = SendingListId::new();
    let missing = ContactId::new();
    let mut ask = ids.clone();
    ask.push(missing);
    let st = s.contacts.contact_states(w.list.id, &ask).await.unwrap();
    assert_eq!(st[&ids[0]], ContactState::Sendable);
    assert_eq!(st[&ids[1]], ContactState::Unsubscribed);
    assert_eq!(st[&ids[2]], ContactState::Blocked);
    assert_eq!(st[&missing], ContactState::Missing);
    let st2 = s
        .contacts
        .contact_states(other_list, &ids[..1])
        .await
        .unwrap();
    assert_eq!(st2[&ids[0]], ContactState::NotOnList);
    // Re-subscribe; and subscribe to a second list.
    s.contacts
        .set_subscription(ids[1], w.list.id, true, t)
        .await
        .unwrap();
    s.contacts
        .set_subscription(ids[1], other_list, true, t)
        .await
        .unwrap();
    let c = s.contacts.get_contact(ids[1]).await.unwrap().unwrap();
    assert_eq!(c.subscriptions.len(), 2);
    assert_eq!(c.state_on(w.list.id), ContactState::Sendable);
    assert!(matches!(
        s.contacts.set_blocked(missing, true).await,
        Err(StoreError::NotFound(_))
    ));
    // (account, phone) is unique.
    let dup = seed::contact(w.account.id, w.list.id, 0, t);
    assert_eq!(s.contacts.insert_contacts(vec![dup]).await.unwrap(), 0);
}

async fn lists_links_and_runs(s: &Stores) {
    let w = world(s, 0).await;
    let t = now();
    s.lists
        .set_list_status(w.list.id, ListStatus::Paused)
        .await
        .unwrap();
    s.lists.set_rate_limit(w.list.id, 600).await.unwrap();
    let l = s.lists.get_list(w.list.id).await.unwrap().unwrap();
    assert_eq!(
        (l.status, l.rate_limit_per_minute),
        (ListStatus::Paused, 600)
    );
    assert!(matches!(
        s.lists.insert_list(w.list.clone()).await,
        Err(StoreError::Duplicate(_))
    ));
    s.lists.delete_list(w.list.id).await.unwrap();
    assert!(s.lists.get_list(w.list.id).await.unwrap().is_none());
    assert!(matches!(
        s.lists.delete_list(w.list.id).await,
        Err(StoreError::NotFound(_))
    ));

    let link = |code: &str| MessageShortLink {
        id: LinkId::new(),
        code: code.into(),
        account: w.account.id,
        message: None,
        schedule: None,
        run: None,
        creative: None,
        variant: None,
        destination_url: "https://shop.example/sale".into(),
        created_at: t,
    };
    let a = link("abc123");
    s.links.insert_links(vec![a.clone()]).await.unwrap();
    assert!(matches!(
        s.links.insert_links(vec![link("abc123")]).await,
        Err(StoreError::Duplicate(_))
    ));
    assert_eq!(s.links.find_link("abc123").await.unwrap().unwrap().id, a.id);
    assert!(s.links.find_link("nope").await.unwrap().is_none());
    for bot in [false, true, false] {
        s.links
            .record_click(LinkClick {
                id: ClickId::new(),
                link: a.id,
                message: None,
                clicked_at: t,
                user_agent: None,
                ip_hash: None,
                is_bot: bot,
            })
            .await
            .unwrap();
    }
    assert_eq!(s.links.human_clicks(a.id).await.unwrap(), 2);

    let creative = MessageCreative {
        id: CreativeId::new(),
        account: w.account.id,
        name: "spring".into(),
        variants: vec![Variant {
            key: "A".into(),
            body: "Hi {{first_name|there}}".into(),
            weight: 1,
        }],
        track_links: true,
        created_at: t,
    };
    s.schedules.insert_creative(creative.clone()).await.unwrap();
    let schedule = seed::schedule(
        &w.list,
        vec![],
        creative.id,
        ScheduleKind::Once { at: t },
        Some(t),
        t,
    );
    s.schedules.insert_schedule(schedule.clone()).await.unwrap();
    assert_eq!(s.schedules.due_schedules(t, 10).await.unwrap().len(), 1);
    assert!(
        s.schedules
            .due_schedules(t - CDur::seconds(1), 10)
            .await
            .unwrap()
            .is_empty()
    );
    let run = |by: &str| seed::run(&schedule, t, by, t);
    let r1 = run("daemon-a");
    assert!(s.schedules.start_run(r1.clone()).await.unwrap());
    assert!(
        !s.schedules.start_run(run("daemon-b")).await.unwrap(),
        "a trigger happens once"
    );
    assert_eq!(
        s.schedules
            .get_run(r1.id)
            .await
            .unwrap()
            .unwrap()
            .triggered_by,
        "daemon-a"
    );
    assert_eq!(
        s.schedules
            .get_creative(creative.id)
            .await
            .unwrap()
            .unwrap(),
        creative
    );
}

/// Contacts for audience tests: `i` gets tag "a" when i % 2 == 0 and tag
/// "b" when i % 3 == 0 (so 0, 6, 12… are in both).
async fn tagged_world(s: &Stores, n: u64) -> World {
    let t = now();
    let account = seed::account(Money::from_micros(1_000_000), Money::from_micros(10_000), t);
    s.accounts.insert_account(account.clone()).await.unwrap();
    let list = seed::list(account.id, ProviderSettings::Fake, 17_000, t);
    s.lists.insert_list(list.clone()).await.unwrap();
    let contacts: Vec<Contact> = (0..n)
        .map(|i| {
            let mut c = seed::contact(account.id, list.id, i, t);
            if i % 2 == 0 {
                c.tags.push("a".into());
            }
            if i % 3 == 0 {
                c.tags.push("b".into());
            }
            if i % 5 == 0 {
                c.custom_fields.insert("city".into(), "Oslo".into());
            }
            c
        })
        .collect();
    s.contacts.insert_contacts(contacts.clone()).await.unwrap();
    World {
        account,
        list,
        contacts,
    }
}

fn tags_any(tag: &str) -> AudienceFilter {
    AudienceFilter {
        tags_any: vec![tag.into()],
        ..Default::default()
    }
}

async fn all_pages(
    s: &Stores,
    w: &World,
    filters: &[AudienceFilter],
    page: usize,
) -> Vec<ContactId> {
    let mut out = vec![];
    let mut after = None;
    loop {
        let got = s
            .contacts
            .audience_page(w.account.id, filters, after, page)
            .await
            .unwrap();
        if got.is_empty() {
            break;
        }
        assert!(got.len() <= page);
        after = got.last().map(|c| c.id);
        out.extend(got.into_iter().map(|c| c.id));
    }
    out
}

async fn audience_pages_are_the_union_in_id_order_each_contact_once(s: &Stores) {
    let w = tagged_world(s, 60).await;
    let other = tagged_world(s, 10).await; // another account: never included
    let a = all_pages(s, &w, &[tags_any("a")], 7).await;
    let b = all_pages(s, &w, &[tags_any("b")], 7).await;
    let union = all_pages(s, &w, &[tags_any("a"), tags_any("b")], 7).await;
    assert_eq!((a.len(), b.len()), (30, 20));
    // 30 + 20 − 10 in both (multiples of 6).
    assert_eq!(union.len(), 40);
    let mut sorted = union.clone();
    sorted.sort();
    sorted.dedup();
    assert_eq!(sorted, union, "in _id order, no duplicates");
    let expected: HashSet<ContactId> = w
        .contacts
        .iter()
        .enumerate()
        .filter(|(i, _)| i % 2 == 0 || i % 3 == 0)
        .map(|(_, c)| c.id)
        .collect();
    assert_eq!(union.iter().copied().collect::<HashSet<_>>(), expected);
    assert!(other.contacts.iter().all(|c| !union.contains(&c.id)));
    // Every filter field, and an empty filter list matches nothing.
    let oslo_not_b = AudienceFilter {
        list: Some(w.list.id),
        tags_none: vec!["b".into()],
        fields: [("city".to_string(), "Oslo".to_string())].into(),
        ..Default::default()
    };
    // Multiples of 5 but not of 3: 5, 10, 20, 25, 35, 40, 50, 55.
    assert_eq!(all_pages(s, &w, &[oslo_not_b], 3).await.len(), 8);
    assert!(all_pages(s, &w, &[], 3).await.is_empty());
    let elsewhere = AudienceFilter {
        list: Some(SendingListId::new()),
        ..Default::default()
    };
    assert!(all_pages(s, &w, &[elsewhere], 3).await.is_empty());
    // A field name that would be an operator is refused, not run.
    let injected = AudienceFilter {
        fields: [("$where".to_string(), "1".to_string())].into(),
        ..Default::default()
    };
    if s.backend == "mongodb" {
        assert!(
            s.contacts
                .audience_page(w.account.id, &[injected], None, 10)
                .await
                .is_err()
        );
    }
}

async fn cooldown_reservations_are_atomic_per_contact(s: &Stores) {
    let w = world(s, 4).await;
    let t = now();
    let (r1, r2) = (ScheduleRunId::new(), ScheduleRunId::new());
    let claim = |c: &Contact, hours: i64| CooldownClaim {
        contact: c.id,
        at: t,
        until: t + CDur::hours(hours),
    };
    let ids: Vec<ContactId> = w.contacts.iter().map(|c| c.id).collect();
    // Run 1 reserves contacts 0 and 1 (and 3, whose reservation is over
    // at once).
    let refused = s
        .contacts
        .reserve_cooldowns(
            w.list.id,
            r1,
            &[
                claim(&w.contacts[0], 24),
                claim(&w.contacts[1], 24),
                CooldownClaim {
                    contact: w.contacts[3].id,
                    at: t - CDur::hours(2),
                    until: t - CDur::hours(1),
                },
            ],
            t,
        )
        .await
        .unwrap();
    assert!(refused.is_empty());
    let running = s
        .contacts
        .cooldowns(w.list.id, &ids, t, None)
        .await
        .unwrap();
    assert_eq!(running.len(), 2);
    // A resumed run does not see its own reservations as someone else's.
    assert!(
        s.contacts
            .cooldowns(w.list.id, &ids, t, Some(r1))
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(running.get(&w.contacts[0].id), Some(&t));
    // Run 2 wants 0, 2 and 3: 0 is refused, 2 is free, 3's reservation ran out.
    let refused = s
        .contacts
        .reserve_cooldowns(
            w.list.id,
            r2,
            &[
                claim(&w.contacts[0], 1),
                claim(&w.contacts[2], 1),
                claim(&w.contacts[3], 1),
            ],
            t,
        )
        .await
        .unwrap();
    assert_eq!(refused, vec![w.contacts[0].id]);
    // Run 1 resumed after a crash gets its own reservations again.
    let refused = s
        .contacts
        .reserve_cooldowns(w.list.id, r1, &[claim(&w.contacts[1], 24)], t)
        .await
        .unwrap();
    assert!(refused.is_empty());
    // Another list is another cooldown.
    let other = SendingListId::new();
    assert!(
        s.contacts
            .reserve_cooldowns(other, r2, &[claim(&w.contacts[0], 1)], t)
            .await
            .unwrap()
            .is_empty()
    );
    // Concurrent runs racing for the same contacts: each contact goes to
    // exactly one of them.
    let fresh = world(s, 50).await;
    let claims: Vec<CooldownClaim> = fresh.contacts.iter().map(|c| claim(c, 24)).collect();
    let runs: Vec<ScheduleRunId> = (0..4).map(|_| ScheduleRunId::new()).collect();
    let results = futures::future::join_all(
        runs.iter()
            .map(|r| s.contacts.reserve_cooldowns(fresh.list.id, *r, &claims, t)),
    )
    .await;
    let granted: usize = results
        .into_iter()
        .map(|r| claims.len() - r.unwrap().len())
        .sum();
    assert_eq!(granted, claims.len(), "each contact reserved exactly once");
}

fn page_of(
    run: &ScheduleRun,
    owner: &str,
    from: Option<ContactId>,
    w: &World,
    range: std::ops::Range<usize>,
    t: Timestamp,
) -> RunPage {
    let messages: Vec<QueuedTextMessage> = w.contacts[range.clone()]
        .iter()
        .map(|c| {
            let mut m = seed::queued(&w.list, c, "hi", t);
            m.run = Some(run.id);
            m.variant = Some("A".into());
            m
        })
        .collect();
    let links = messages
        .iter()
        .map(|m| MessageShortLink {
            id: LinkId::new(),
            code: format!("c{}", m.id.to_hex()),
            account: w.account.id,
            message: Some(m.id),
            schedule: Some(run.schedule),
            run: Some(run.id),
            creative: Some(run.creative),
            variant: Some("A".into()),
            destination_url: "https://shop.example/".into(),
            created_at: t,
        })
        .collect();
    let n = range.len() as u64;
    RunPage {
        run: run.id,
        owner: owner.into(),
        finished_at: None,
        from,
        to: w.contacts[range.end - 1].id,
        seq: range.end as u64,
        messages,
        links,
        counts: PageCounts {
            audience: n + 1,
            eligible: n,
            queued: n,
            skipped: [("cooldown".to_string(), 1)].into(),
            variants: [(
                "A".to_string(),
                VariantCount {
                    messages: n,
                    segments: n,
                },
            )]
            .into(),
            cost: Money::from_micros(10_000 * n as i64),
        },
    }
}

async fn a_claim_says_when_it_found_fewer_ready_messages_than_it_asked_for(s: &Stores) {
    let w = world(s, 5).await;
    let t = now();
    s.queue
        .enqueue(msgs(&w, t - CDur::seconds(1)))
        .await
        .unwrap();
    let first = s
        .queue
        .claim(w.list.id, 3, &claimant("tok-a"), t)
        .await
        .unwrap();
    assert_eq!(
        (first.messages.len(), first.exhausted),
        (3, false),
        "it found all it asked for: more may be ready"
    );
    let second = s
        .queue
        .claim(w.list.id, 3, &claimant("tok-b"), t)
        .await
        .unwrap();
    assert_eq!(
        (second.messages.len(), second.exhausted),
        (2, true),
        "it found fewer: nothing more was ready"
    );
    let third = s
        .queue
        .claim(w.list.id, 3, &claimant("tok-c"), t)
        .await
        .unwrap();
    assert!(third.messages.is_empty() && third.exhausted);
}

/// A one-off schedule of `w`'s list and its run, started by "d1".
async fn started_run(s: &Stores, w: &World, t: Timestamp) -> (Schedule, ScheduleRun) {
    let creative = seed::creative(w.account.id, &[("A", "hi", 1)], true, t);
    let schedule = seed::schedule(
        &w.list,
        vec![],
        creative.id,
        ScheduleKind::Once { at: t },
        Some(t),
        t,
    );
    s.schedules.insert_schedule(schedule.clone()).await.unwrap();
    let run = seed::run(&schedule, t, "d1", t);
    assert!(s.schedules.start_run(run.clone()).await.unwrap());
    (schedule, run)
}

async fn a_last_page_finishes_its_run_in_the_same_write(s: &Stores) {
    let w = world(s, 4).await;
    let t = now();
    let (_, run) = started_run(s, &w, t).await;
    let done_at = t + CDur::seconds(1);
    let mut page = page_of(&run, "d1", None, &w, 0..4, t);
    page.finished_at = Some(done_at);
    s.schedules.commit_page(page).await.unwrap();
    let r = s.schedules.get_run(run.id).await.unwrap().unwrap();
    assert_eq!(
        (r.status, r.queued, r.cursor, r.finished_at),
        (RunStatus::Queued, 4, Some(w.contacts[3].id), Some(done_at))
    );
    assert!(s.schedules.evaluating_runs(10).await.unwrap().is_empty());
    assert_eq!(s.queue.depth().await.unwrap(), 4);
    // The run is finished: the same page again writes nothing.
    let mut again = page_of(&run, "d1", None, &w, 0..4, t);
    again.finished_at = Some(t);
    assert!(s.schedules.commit_page(again).await.is_err());
    assert_eq!(s.queue.depth().await.unwrap(), 4);
    let r = s.schedules.get_run(run.id).await.unwrap().unwrap();
    assert_eq!((r.queued, r.finished_at), (4, Some(done_at)));
}

async fn run_pages_commit_all_or_nothing_and_only_for_their_owner(s: &Stores) {
    let w = world(s, 6).await;
    let t = now();
    let (schedule, run) = started_run(s, &w, t).await;

    s.schedules
        .commit_page(page_of(&run, "d1", None, &w, 0..3, t))
        .await
        .unwrap();
    let r = s.schedules.get_run(run.id).await.unwrap().unwrap();
    assert_eq!(
        (r.cursor, r.seq, r.queued, r.audience),
        (Some(w.contacts[2].id), 3, 3, 4)
    );
    assert_eq!(r.skipped.get("cooldown"), Some(&1));
    assert_eq!(
        r.variants["A"],
        VariantCount {
            messages: 3,
            segments: 3
        }
    );
    assert_eq!(s.queue.depth().await.unwrap(), 3);

    // A page from the wrong checkpoint (a stale owner's retry) changes nothing.
    let stale = page_of(&run, "d1", None, &w, 3..6, t);
    assert!(matches!(
        s.schedules.commit_page(stale).await,
        Err(StoreError::Superseded(_))
    ));
    assert_eq!(s.queue.depth().await.unwrap(), 3);

    // Another daemon takes the run over; the old owner can no longer write.
    assert!(
        s.schedules
            .take_over_run(run.id, "nobody", "d2")
            .await
            .unwrap()
            .is_none()
    );
    let taken = s
        .schedules
        .take_over_run(run.id, "d1", "d2")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (taken.owner.as_str(), taken.cursor),
        ("d2", Some(w.contacts[2].id))
    );
    let from = taken.cursor;
    assert!(matches!(
        s.schedules
            .commit_page(page_of(&run, "d1", from, &w, 3..6, t))
            .await,
        Err(StoreError::Superseded(_))
    ));
    // A page whose link code is taken writes none of its messages.
    let mut clash = page_of(&run, "d2", from, &w, 3..6, t);
    let existing = s.queue.scan().await.unwrap().into_iter().next().unwrap().id;
    clash.links[1].code = format!("c{}", existing.to_hex());
    assert!(s.schedules.commit_page(clash).await.is_err());
    assert_eq!(
        s.queue.depth().await.unwrap(),
        3,
        "nothing of a failed page"
    );
    let r = s.schedules.get_run(run.id).await.unwrap().unwrap();
    assert_eq!((r.cursor, r.queued), (Some(w.contacts[2].id), 3));

    s.schedules
        .commit_page(page_of(&run, "d2", from, &w, 3..6, t))
        .await
        .unwrap();
    assert_eq!(s.queue.depth().await.unwrap(), 6);
    assert_eq!(s.schedules.evaluating_runs(10).await.unwrap().len(), 1);
    assert!(
        !s.schedules
            .finish_run(run.id, "d1", RunStatus::Queued, None, t)
            .await
            .unwrap()
    );
    assert!(
        s.schedules
            .finish_run(run.id, "d2", RunStatus::Queued, None, t)
            .await
            .unwrap()
    );
    let r = s.schedules.get_run(run.id).await.unwrap().unwrap();
    assert_eq!(
        (r.status, r.queued, r.finished_at),
        (RunStatus::Queued, 6, Some(t))
    );
    assert!(s.schedules.evaluating_runs(10).await.unwrap().is_empty());
    assert_eq!(s.schedules.runs_of(schedule.id, 10).await.unwrap().len(), 1);

    // Variant evidence: sends from the runs, clicks once per message.
    let link = s
        .links
        .find_link(&format!(
            "c{}",
            s.queue.scan().await.unwrap()[0].id.to_hex()
        ))
        .await
        .unwrap()
        .unwrap();
    for bot in [false, false, true] {
        s.links
            .record_click(LinkClick {
                id: ClickId::new(),
                link: link.id,
                message: link.message,
                clicked_at: t,
                user_agent: None,
                ip_hash: None,
                is_bot: bot,
            })
            .await
            .unwrap();
    }
    let stats = s.schedules.variant_stats(schedule.creative).await.unwrap();
    assert_eq!(stats.len(), 1);
    assert_eq!(
        (stats[0].variant.as_str(), stats[0].sends, stats[0].clicked),
        ("A", 6, 1)
    );
    // The run counts the message clicked once (its first human click), and
    // once among messages clicked at all.
    assert_eq!(link.run, Some(run.id));
    let st = s.schedules.get_run(run.id).await.unwrap().unwrap().stats;
    assert_eq!((st.clicked, st.clicked_any), (1, 1));
    // A message clicked only by a bot counts for `clicked_any` alone.
    let other = s
        .links
        .find_link(&format!(
            "c{}",
            s.queue.scan().await.unwrap()[1].id.to_hex()
        ))
        .await
        .unwrap()
        .unwrap();
    for _ in 0..2 {
        s.links
            .record_click(LinkClick {
                id: ClickId::new(),
                link: other.id,
                message: other.message,
                clicked_at: t,
                user_agent: None,
                ip_hash: None,
                is_bot: true,
            })
            .await
            .unwrap();
    }
    let st = s.schedules.get_run(run.id).await.unwrap().unwrap().stats;
    assert_eq!((st.clicked, st.clicked_any), (1, 2));

    // Run counters add up: sums, the earliest first and latest last send.
    let mut a = RunCounts::default();
    a.add_sent(4, t + chrono::Duration::seconds(10));
    a.add_failed("STALE", 2);
    a.delivered = 3;
    let mut b = RunCounts::default();
    b.add_sent(6, t);
    b.add_sent(1, t + chrono::Duration::seconds(20));
    b.add_failed("STALE", 1);
    b.add_failed("PROVIDER_REJECTED", 1);
    b.undelivered = 2;
    s.schedules
        .add_run_counts(vec![(run.id, a), (ScheduleRunId::new(), b.clone())])
        .await
        .unwrap();
    s.schedules.add_run_counts(vec![(run.id, b)]).await.unwrap();
    let c = s.schedules.get_run(run.id).await.unwrap().unwrap().stats;
    assert_eq!(
        (
            c.sent,
            c.delivered,
            c.undelivered,
            c.clicked,
            c.failed_total()
        ),
        (11, 3, 2, 1, 4)
    );
    assert_eq!(c.failed.get("STALE"), Some(&3));
    assert_eq!(c.first_sent_at, Some(t));
    assert_eq!(c.last_sent_at, Some(t + chrono::Duration::seconds(20)));
}

/// The earliest next occurrence of the active schedules, as a scheduler
/// look reads it (due and soon-due schedules in `next_run_at` order).
async fn earliest_occurrence(s: &Stores) -> Option<Timestamp> {
    let far = now() + CDur::days(3650);
    s.schedules
        .due_schedules(far, 1)
        .await
        .unwrap()
        .first()
        .and_then(|x| x.next_run_at)
}

async fn schedules_advance_once_per_occurrence(s: &Stores) {
    let w = world(s, 0).await;
    let t = now();
    let creative = seed::creative(w.account.id, &[("A", "hi", 1)], false, t);
    let later = t + CDur::hours(1);
    let daily = seed::schedule(
        &w.list,
        vec![],
        creative.id,
        ScheduleKind::Recurring {
            cron: "0 9 * * *".into(),
            time_zone: "UTC".into(),
        },
        Some(t),
        t,
    );
    let once = seed::schedule(
        &w.list,
        vec![],
        creative.id,
        ScheduleKind::Once { at: later },
        Some(later),
        t,
    );
    s.schedules.insert_schedule(daily.clone()).await.unwrap();
    s.schedules.insert_schedule(once.clone()).await.unwrap();
    assert_eq!(earliest_occurrence(s).await, Some(t));
    let tomorrow = t + CDur::days(1);
    assert!(
        s.schedules
            .advance_schedule(daily.id, t, Some(tomorrow))
            .await
            .unwrap()
    );
    assert!(
        !s.schedules
            .advance_schedule(daily.id, t, Some(tomorrow))
            .await
            .unwrap(),
        "a second daemon's advance changes nothing"
    );
    assert_eq!(earliest_occurrence(s).await, Some(later));
    assert!(
        s.schedules
            .advance_schedule(once.id, later, None)
            .await
            .unwrap()
    );
    let o = s.schedules.get_schedule(once.id).await.unwrap().unwrap();
    assert_eq!((o.status, o.next_run_at), (ScheduleStatus::Done, None));
    s.schedules
        .set_schedule_status(daily.id, ScheduleStatus::Paused, None)
        .await
        .unwrap();
    assert_eq!(earliest_occurrence(s).await, None);
    assert!(
        s.schedules
            .due_schedules(tomorrow, 10)
            .await
            .unwrap()
            .is_empty()
    );
    assert!(matches!(
        s.schedules
            .set_schedule_status(ScheduleId::new(), ScheduleStatus::Paused, None)
            .await,
        Err(StoreError::NotFound(_))
    ));
}

// ------------------------------------------------------------ the two stores

macro_rules! contract {
    ($backend:ident: $($name:ident),* $(,)?) => {
        mod $backend {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let Some(ts) = crate::common::$backend(stringify!($name)).await else { return };
                    super::$name(&ts.stores).await;
                    ts.cleanup().await;
                }
            )*
        }
    };
}

macro_rules! both {
    ($($name:ident),* $(,)?) => {
        contract!(memory: $($name),*);
        contract!(mongo: $($name),*);
    };
}

both!(
    claim_takes_oldest_first_and_stamps_the_token,
    a_claim_says_when_it_found_fewer_ready_messages_than_it_asked_for,
    a_last_page_finishes_its_run_in_the_same_write,
    concurrent_claimers_never_share_a_message,
    messages_not_due_or_in_backoff_are_never_claimed,
    due_lists_names_lists_with_ready_due_messages,
    next_due_is_the_earliest_unclaimed_later_message,
    claims_of_dead_owners_are_released_and_live_ones_kept,
    requeue_release_and_complete_act_only_on_the_token,
    a_charge_and_its_attempt_records_are_written_together,
    only_the_affordable_prefix_is_charged_and_never_below_zero,
    a_failure_is_recorded_with_its_dead_letter_and_refunded_once,
    unsent_attempts_are_withdrawn_and_refunded_only_by_their_token,
    unanswered_attempts_are_found_by_owner_token_and_horizon,
    delivery_reports_never_replace_a_final_state,
    a_report_for_an_in_doubt_message_resolves_it_as_sent,
    lookups_resolve_in_doubt_messages_once,
    an_in_doubt_judgment_after_a_report_records_the_message_sent,
    dead_letters_are_written_once,
    top_ups_count_as_funded,
    queue_entries_are_deleted_only_after_their_outcome,
    leases_are_stamped_and_judged_on_the_stores_clock,
    contact_states_are_read_fresh,
    lists_links_and_runs,
    audience_pages_are_the_union_in_id_order_each_contact_once,
    cooldown_reservations_are_atomic_per_contact,
    run_pages_commit_all_or_nothing_and_only_for_their_owner,
    schedules_advance_once_per_occurrence,
    inbound_numbers_find_their_lists_and_contacts,
    dead_letters_are_listed_by_filter_and_requeued_once,
    outbox_entries_are_added_once_per_message_and_state,
    outbox_claims_are_exclusive_due_and_leased,
    outbox_keeps_the_order_of_a_messages_states,
    outbox_results_apply_only_for_the_claim_token,
    delivery_webhooks_are_set_and_cleared,
    alert_windows_add_up_and_are_claimed_once,
    alert_flags_swap_once_and_counters_count,
    alert_holds_are_taken_once_until_they_run_out,
    list_discord_webhooks_are_set_and_cleared,
);

/// A list's Discord webhook is stored, read back and cleared; an unknown
/// list changes nothing.
async fn list_discord_webhooks_are_set_and_cleared(s: &Stores) {
    let t = now();
    let account = seed::account(Money::from_micros(1), Money::from_micros(1), t);
    s.accounts.insert_account(account.clone()).await.unwrap();
    let list = seed::list(account.id, ProviderSettings::Fake, 10, t);
    s.lists.insert_list(list.clone()).await.unwrap();
    let url = trackly::telemetry::Secret::new("https://discord.com/api/webhooks/1/t");
    assert!(
        s.lists
            .set_list_discord_webhook(list.id, Some(url.clone()))
            .await
            .unwrap()
    );
    let got = s.lists.get_list(list.id).await.unwrap().unwrap();
    assert_eq!(got.discord_webhook_url, Some(url));
    assert!(
        s.lists
            .set_list_discord_webhook(list.id, None)
            .await
            .unwrap()
    );
    let got = s.lists.get_list(list.id).await.unwrap().unwrap();
    assert_eq!(got.discord_webhook_url, None);
    assert!(
        !s.lists
            .set_list_discord_webhook(SendingListId::new(), None)
            .await
            .unwrap()
    );
}

fn alert_window(id: &str, list: SendingListId, start: Timestamp, closes: Timestamp) -> AlertWindow {
    AlertWindow {
        id: id.into(),
        kind: AlertKind::List,
        account: Some(AccountId::new()),
        list: Some(list),
        window_start: start,
        closes_at: closes,
        counts: Default::default(),
        detail: None,
        claimed_by: None,
    }
}

/// Counts from several writers add up in one window; a window is claimable
/// only once it closed, and by one claimer only; counts added after the
/// claim stay in the store; the sliding window reads a list's windows.
async fn alert_windows_add_up_and_are_claimed_once(s: &Stores) {
    let t = now();
    let list = SendingListId::new();
    let id = format!("list:{}:1", list.to_hex());
    let a = s.alerts.clone();
    let mut w = alert_window(&id, list, t, t + CDur::seconds(70));
    w.add("sent", 5);
    w.add("r:PROVIDER_ERROR", 2);
    // Concurrent first writers of one window: nothing is lost.
    let writes = (0..8).map(|_| {
        let a = a.clone();
        let w = w.clone();
        async move { a.add_to_alert_window(w).await }
    });
    for r in futures::future::join_all(writes).await {
        r.unwrap();
    }
    let mut other = alert_window(&id, list, t, t + CDur::seconds(70));
    other.add("c:30007", 3);
    a.add_to_alert_window(other).await.unwrap();
    // Not closed yet.
    assert!(a.claim_alert_windows(t, "x", 10).await.unwrap().is_empty());
    let later = t + CDur::seconds(71);
    let claims = (0..4).map(|i| {
        let a = a.clone();
        async move { a.claim_alert_windows(later, &format!("c{i}"), 10).await }
    });
    let got: Vec<AlertWindow> = futures::future::join_all(claims)
        .await
        .into_iter()
        .flat_map(|r| r.unwrap())
        .collect();
    assert_eq!(got.len(), 1, "claimed by exactly one");
    let g = &got[0];
    assert_eq!(g.count("sent"), 40);
    assert_eq!(g.count("r:PROVIDER_ERROR"), 16);
    assert_eq!(g.count("c:30007"), 3);
    assert_eq!(g.list, Some(list));
    assert!(g.claimed_by.as_deref().unwrap_or("").starts_with('c'));
    assert!(
        a.claim_alert_windows(later, "y", 10)
            .await
            .unwrap()
            .is_empty()
    );
    // A second window of the list, and one of another list.
    let mut w2 = alert_window(
        &format!("list:{}:2", list.to_hex()),
        list,
        t + CDur::seconds(60),
        t + CDur::seconds(130),
    );
    w2.add("sent", 1);
    a.add_to_alert_window(w2).await.unwrap();
    let elsewhere = SendingListId::new();
    a.add_to_alert_window(alert_window("list:other:1", elsewhere, t, t))
        .await
        .unwrap();
    let ws = a
        .list_alert_windows(list, t - CDur::seconds(1), t + CDur::seconds(60))
        .await
        .unwrap();
    assert_eq!(ws.len(), 2);
    assert_eq!(ws[0].id, id);
    assert_eq!(ws[1].count("sent"), 1);
    assert!(
        a.list_alert_windows(list, t + CDur::seconds(1), t + CDur::seconds(59))
            .await
            .unwrap()
            .is_empty()
    );
}

/// A flag moves only from the value it holds (a missing flag holds false),
/// so of two daemons one changes it; counters add and are taken once.
async fn alert_flags_swap_once_and_counters_count(s: &Stores) {
    let a = s.alerts.clone();
    let t = now();
    assert!(!a.alert_flag("f").await.unwrap());
    assert!(!a.swap_alert_flag("f", true, false).await.unwrap());
    let swaps = (0..6).map(|_| {
        let a = a.clone();
        async move { a.swap_alert_flag("f", false, true).await }
    });
    let won = futures::future::join_all(swaps)
        .await
        .into_iter()
        .filter(|r| *r.as_ref().unwrap())
        .count();
    assert_eq!(won, 1);
    assert!(a.alert_flag("f").await.unwrap());
    assert!(a.swap_alert_flag("f", true, false).await.unwrap());
    assert!(!a.alert_flag("f").await.unwrap());
    assert!(a.swap_alert_flag("f", false, true).await.unwrap());

    let until = t + CDur::minutes(2);
    let bumps = (0..5).map(|_| {
        let a = a.clone();
        async move { a.bump_alert_counter("n", 1, until).await }
    });
    let mut seen: Vec<i64> = futures::future::join_all(bumps)
        .await
        .into_iter()
        .map(|r| r.unwrap())
        .collect();
    seen.sort();
    assert_eq!(seen, vec![1, 2, 3, 4, 5], "each bump sees its own count");
    assert_eq!(a.take_alert_counter("n").await.unwrap(), 5);
    assert_eq!(a.take_alert_counter("n").await.unwrap(), 0);
    assert_eq!(a.take_alert_counter("never").await.unwrap(), 0);
    assert_eq!(a.bump_alert_counter("n", 2, until).await.unwrap(), 2);
}

/// A hold: of six callers at once one gets it; nobody else until it runs
/// out, then the next caller (with its own time) does.
async fn alert_holds_are_taken_once_until_they_run_out(s: &Stores) {
    let a = s.alerts.clone();
    let t = now();
    let until = t + CDur::minutes(60);
    let takes = (0..6).map(|_| {
        let a = a.clone();
        async move { a.hold_alert("hold:x", t, until).await }
    });
    let won = futures::future::join_all(takes)
        .await
        .into_iter()
        .filter(|r| *r.as_ref().unwrap())
        .count();
    assert_eq!(won, 1);
    let later = t + CDur::minutes(59);
    assert!(
        !a.hold_alert("hold:x", later, later + CDur::minutes(60))
            .await
            .unwrap()
    );
    assert!(
        a.hold_alert("hold:y", later, later + CDur::minutes(60))
            .await
            .unwrap()
    );
    // Run out: taken again, and held for the new time.
    let after = until;
    assert!(
        a.hold_alert("hold:x", after, after + CDur::minutes(60))
            .await
            .unwrap()
    );
    assert!(
        !a.hold_alert(
            "hold:x",
            after + CDur::minutes(30),
            after + CDur::minutes(90)
        )
        .await
        .unwrap()
    );
}

fn entry(
    message: MessageId,
    account: AccountId,
    state: DeliveryState,
    t: Timestamp,
) -> OutboxEntry {
    OutboxEntry {
        id: OutboxEntry::key(message, state),
        message,
        account,
        state,
        rank: OutboxEntry::rank_of(state),
        body: format!("{{\"id\":\"{}\"}}", message.to_hex()),
        status: OutboxStatus::Pending,
        attempts: 0,
        created_at: t,
        next_attempt_at: t,
        claim: None,
        lease_until: None,
        last_error: None,
        finished_at: None,
    }
}

fn result(id: &str, status: OutboxStatus, next: Timestamp) -> OutboxResult {
    OutboxResult {
        id: id.to_string(),
        status,
        attempts: 1,
        next_attempt_at: next,
        last_error: (status != OutboxStatus::Delivered).then(|| "HTTP 500".to_string()),
        at: next,
    }
}

fn count(c: &[(OutboxStatus, u64)], s: OutboxStatus) -> u64 {
    c.iter().find(|(x, _)| *x == s).map_or(0, |(_, n)| *n)
}

/// An entry is keyed by (message, state): adding it again (a resent
/// report) changes nothing, not even a finished entry.
async fn outbox_entries_are_added_once_per_message_and_state(s: &Stores) {
    let t = now();
    let (m, a) = (MessageId::new(), AccountId::new());
    let e = entry(m, a, DeliveryState::Delivered, t);
    assert_eq!(
        s.outbox
            .add_outbox(vec![e.clone(), entry(m, a, DeliveryState::Pending, t)])
            .await
            .unwrap(),
        2
    );
    assert_eq!(s.outbox.add_outbox(vec![e.clone()]).await.unwrap(), 0);
    let got = s.outbox.outbox_entry(&e.id).await.unwrap().unwrap();
    assert_eq!(got, e);
    assert!(s.outbox.outbox_entry("nope").await.unwrap().is_none());
    let c = s.outbox.outbox_counts(Some(a)).await.unwrap();
    assert_eq!(count(&c, OutboxStatus::Pending), 2);
    assert_eq!(
        count(
            &s.outbox
                .outbox_counts(Some(AccountId::new()))
                .await
                .unwrap(),
            OutboxStatus::Pending
        ),
        0
    );
}

/// Claims hand each due entry to one claimer until its lease runs out;
/// entries not due yet are left.
async fn outbox_claims_are_exclusive_due_and_leased(s: &Stores) {
    let t = now();
    let a = AccountId::new();
    let mut es: Vec<OutboxEntry> = (0..6)
        .map(|_| entry(MessageId::new(), a, DeliveryState::Delivered, t))
        .collect();
    es[5].next_attempt_at = t + CDur::minutes(5);
    s.outbox.add_outbox(es.clone()).await.unwrap();
    let lease = t + CDur::minutes(1);
    let first = s.outbox.claim_outbox(3, "tok-a", t, lease).await.unwrap();
    assert_eq!(first.len(), 3);
    assert!(
        first
            .iter()
            .all(|e| e.claim.as_deref() == Some("tok-a") && e.lease_until == Some(lease))
    );
    let second = s.outbox.claim_outbox(10, "tok-b", t, lease).await.unwrap();
    assert_eq!(second.len(), 2, "the rest that is due");
    let ids: HashSet<String> = first.iter().chain(&second).map(|e| e.id.clone()).collect();
    assert_eq!(ids.len(), 5);
    assert!(!ids.contains(&es[5].id), "not due yet");
    assert!(
        s.outbox
            .claim_outbox(10, "tok-c", t, lease)
            .await
            .unwrap()
            .is_empty()
    );
    // The lease ran out (the claimer died): another claims them again.
    let later = t + CDur::minutes(2);
    let again = s
        .outbox
        .claim_outbox(10, "tok-d", later, later + CDur::minutes(10))
        .await
        .unwrap();
    assert_eq!(
        again.len(),
        5,
        "leases lapsed; the future entry is still not due"
    );
    let at_five = t + CDur::minutes(6);
    let last = s
        .outbox
        .claim_outbox(10, "tok-e", at_five, at_five + CDur::minutes(1))
        .await
        .unwrap();
    assert_eq!(
        last.iter().map(|e| e.id.clone()).collect::<Vec<_>>(),
        vec![es[5].id.clone()]
    );
}

/// A message's final state is not claimed while its intermediate state is
/// pending; once that is delivered (or given up) it is.
async fn outbox_keeps_the_order_of_a_messages_states(s: &Stores) {
    let t = now();
    let (m, a) = (MessageId::new(), AccountId::new());
    let pending = entry(m, a, DeliveryState::Pending, t);
    let mut delivered = entry(m, a, DeliveryState::Delivered, t);
    delivered.next_attempt_at = t - CDur::seconds(1);
    s.outbox
        .add_outbox(vec![delivered.clone(), pending.clone()])
        .await
        .unwrap();
    let lease = t + CDur::minutes(1);
    let got = s.outbox.claim_outbox(10, "tok", t, lease).await.unwrap();
    assert_eq!(
        got.iter().map(|e| e.id.clone()).collect::<Vec<_>>(),
        vec![pending.id.clone()]
    );
    // A failed try: the pending entry backs off, and still blocks the final one.
    let next = t + CDur::seconds(30);
    s.outbox
        .finish_outbox(
            "tok",
            vec![result(&pending.id, OutboxStatus::Pending, next)],
        )
        .await
        .unwrap();
    assert!(
        s.outbox
            .claim_outbox(10, "tok2", t + CDur::seconds(5), lease)
            .await
            .unwrap()
            .is_empty()
    );
    let got = s
        .outbox
        .claim_outbox(10, "tok3", next, next + CDur::minutes(1))
        .await
        .unwrap();
    assert_eq!(
        got.iter().map(|e| e.id.clone()).collect::<Vec<_>>(),
        vec![pending.id.clone()]
    );
    s.outbox
        .finish_outbox(
            "tok3",
            vec![result(&pending.id, OutboxStatus::Delivered, next)],
        )
        .await
        .unwrap();
    let got = s
        .outbox
        .claim_outbox(10, "tok4", next, next + CDur::minutes(1))
        .await
        .unwrap();
    assert_eq!(
        got.iter().map(|e| e.id.clone()).collect::<Vec<_>>(),
        vec![delivered.id.clone()]
    );
}

/// Results apply only to entries still claimed by the token; a retry
/// releases the claim with its next time, a final status ends the entry.
async fn outbox_results_apply_only_for_the_claim_token(s: &Stores) {
    let t = now();
    let a = AccountId::new();
    let e1 = entry(MessageId::new(), a, DeliveryState::Delivered, t);
    let e2 = entry(MessageId::new(), a, DeliveryState::Failed, t);
    s.outbox
        .add_outbox(vec![e1.clone(), e2.clone()])
        .await
        .unwrap();
    s.outbox
        .claim_outbox(10, "tok", t, t + CDur::minutes(1))
        .await
        .unwrap();
    let stranger = s
        .outbox
        .finish_outbox("other", vec![result(&e1.id, OutboxStatus::Delivered, t)])
        .await
        .unwrap();
    assert_eq!(stranger, 0);
    let next = t + CDur::seconds(20);
    let n = s
        .outbox
        .finish_outbox(
            "tok",
            vec![
                result(&e1.id, OutboxStatus::Delivered, t),
                result(&e2.id, OutboxStatus::Pending, next),
            ],
        )
        .await
        .unwrap();
    assert_eq!(n, 2);
    let g1 = s.outbox.outbox_entry(&e1.id).await.unwrap().unwrap();
    assert_eq!(g1.status, OutboxStatus::Delivered);
    assert_eq!(g1.finished_at, Some(t));
    assert_eq!(g1.claim, None);
    let g2 = s.outbox.outbox_entry(&e2.id).await.unwrap().unwrap();
    assert_eq!(
        (g2.status, g2.attempts, g2.next_attempt_at),
        (OutboxStatus::Pending, 1, next)
    );
    assert_eq!(g2.claim, None);
    assert_eq!(g2.lease_until, None);
    assert_eq!(g2.last_error.as_deref(), Some("HTTP 500"));
    // Finished entries are not claimed again; done ones are counted.
    assert!(
        s.outbox
            .claim_outbox(10, "t2", t, t + CDur::minutes(1))
            .await
            .unwrap()
            .is_empty()
    );
    let c = s.outbox.outbox_counts(None).await.unwrap();
    assert!(count(&c, OutboxStatus::Delivered) >= 1);
    // A second result for a finished entry changes nothing.
    assert_eq!(
        s.outbox
            .finish_outbox("tok", vec![result(&e1.id, OutboxStatus::GivenUp, t)])
            .await
            .unwrap(),
        0
    );
}

async fn delivery_webhooks_are_set_and_cleared(s: &Stores) {
    let w = world(s, 0).await;
    let hook = CustomerWebhook {
        url: "https://hooks.example.com/x".into(),
        secret: trackly::telemetry::Secret::new("0123456789abcdef"),
    };
    assert!(
        s.accounts
            .set_delivery_webhook(w.account.id, Some(hook.clone()))
            .await
            .unwrap()
    );
    let a = s.accounts.get_account(w.account.id).await.unwrap().unwrap();
    assert_eq!(a.delivery_webhook, Some(hook));
    assert_eq!(a.balance, w.account.balance, "nothing else changed");
    assert!(
        s.accounts
            .set_delivery_webhook(w.account.id, None)
            .await
            .unwrap()
    );
    assert_eq!(
        s.accounts
            .get_account(w.account.id)
            .await
            .unwrap()
            .unwrap()
            .delivery_webhook,
        None
    );
    assert!(
        !s.accounts
            .set_delivery_webhook(AccountId::new(), None)
            .await
            .unwrap()
    );
}

/// Failed messages: filtered newest first; a requeue marks the dead letter
/// and queues the new message together, once.
async fn dead_letters_are_listed_by_filter_and_requeued_once(s: &Stores) {
    let w = world(s, 3).await;
    let t = now();
    let ms = msgs(&w, t);
    let letters = vec![
        failed(&ms[0], FailureReason::ProviderError, t - CDur::minutes(3)),
        failed(&ms[1], FailureReason::ProviderError, t - CDur::minutes(1)),
        failed(&ms[2], FailureReason::Stale, t - CDur::minutes(2)),
    ];
    s.dead_letters.record(letters).await.unwrap();
    let all = s
        .dead_letters
        .list_failed(&FailedFilter::default(), 10)
        .await
        .unwrap();
    assert_eq!(
        all.iter().map(|f| f.id).collect::<Vec<_>>(),
        vec![ms[1].id, ms[2].id, ms[0].id]
    );
    let pe = FailedFilter {
        reason: Some(FailureReason::ProviderError),
        since: Some(t - CDur::minutes(2)),
        ..Default::default()
    };
    let found = s.dead_letters.list_failed(&pe, 10).await.unwrap();
    assert_eq!(
        found.iter().map(|f| f.id).collect::<Vec<_>>(),
        vec![ms[1].id]
    );
    assert_eq!(
        s.dead_letters
            .list_failed(&FailedFilter::default(), 1)
            .await
            .unwrap()
            .len(),
        1
    );

    let mut again = ms[0].clone();
    again.id = MessageId::new();
    assert!(
        s.dead_letters
            .requeue(ms[0].id, again.clone(), t)
            .await
            .unwrap()
    );
    assert!(s.queue.get(again.id).await.unwrap().is_some());
    let f = s.dead_letters.get(ms[0].id).await.unwrap().unwrap();
    assert_eq!(f.requeued.map(|r| r.message), Some(again.id));
    // Once: a second requeue changes nothing.
    let mut third = ms[0].clone();
    third.id = MessageId::new();
    assert!(
        !s.dead_letters
            .requeue(ms[0].id, third.clone(), t)
            .await
            .unwrap()
    );
    assert!(s.queue.get(third.id).await.unwrap().is_none());
    assert!(
        !s.dead_letters
            .requeue(MessageId::new(), third, t)
            .await
            .unwrap()
    );
    let open = FailedFilter {
        open_only: true,
        ..Default::default()
    };
    assert_eq!(
        s.dead_letters.list_failed(&open, 10).await.unwrap().len(),
        2
    );
}

/// Inbound messages: the lists that send from a number, the contact of an
/// account with a number.
async fn inbound_numbers_find_their_lists_and_contacts(s: &Stores) {
    let w = world(s, 3).await;
    let t = now();
    let mut a = seed::list(w.account.id, ProviderSettings::Fake, 1_000, t);
    a.from_numbers = vec!["+12125550100".into(), "+12125550101".into()];
    let mut b = seed::list(w.account.id, ProviderSettings::Fake, 1_000, t);
    b.from_numbers = vec!["+12125550101".into()];
    s.lists.insert_list(a.clone()).await.unwrap();
    s.lists.insert_list(b.clone()).await.unwrap();
    let ids = |v: Vec<SendingList>| {
        let mut v: Vec<SendingListId> = v.into_iter().map(|l| l.id).collect();
        v.sort();
        v
    };
    assert_eq!(
        ids(s.lists.lists_sending_from("+12125550100").await.unwrap()),
        vec![a.id]
    );
    let mut both = vec![a.id, b.id];
    both.sort();
    assert_eq!(
        ids(s.lists.lists_sending_from("+12125550101").await.unwrap()),
        both
    );
    assert!(
        s.lists
            .lists_sending_from("+12125550199")
            .await
            .unwrap()
            .is_empty()
    );
    let c = &w.contacts[1];
    let found = s
        .contacts
        .find_by_phone(w.account.id, &c.phone)
        .await
        .unwrap();
    assert_eq!(found.map(|f| f.id), Some(c.id));
    let other = seed::account(Money::ZERO, Money::ZERO, t);
    assert!(
        s.contacts
            .find_by_phone(other.id, &c.phone)
            .await
            .unwrap()
            .is_none()
    );
    let unknown = E164::parse("+12125550199").unwrap();
    let have = s
        .contacts
        .existing_phones(
            w.account.id,
            &[
                c.phone.clone(),
                unknown.clone(),
                w.contacts[2].phone.clone(),
            ],
        )
        .await
        .unwrap();
    assert_eq!(have.len(), 2);
    assert!(have.contains(&c.phone) && !have.contains(&unknown));
    assert!(
        s.contacts
            .existing_phones(other.id, std::slice::from_ref(&c.phone))
            .await
            .unwrap()
            .is_empty()
    );
}

/// MongoDB only (the in-memory store holds typed values): a queued document
/// that does not decode is quarantined as a MALFORMED dead letter with its
/// raw content, and the rest of its list is claimed normally.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_undecodable_queue_document_is_quarantined_not_blocking_its_list() {
    let Some(ts) = common::mongo("quarantine").await else {
        return;
    };
    let s = &ts.stores;
    let w = world(s, 3).await;
    let t = now();
    let q = msgs(&w, t);
    s.queue.enqueue(q.clone()).await.unwrap();
    // Corrupt the oldest one: `segments` must be a number.
    let m = ts.mongo.as_ref().unwrap();
    m.database()
        .collection::<bson::Document>("queued_text_messages")
        .update_one(
            bson::doc! {"_id": q[0].id},
            bson::doc! {"$set": {"segments": "many"}},
        )
        .await
        .unwrap();
    let got = s
        .queue
        .claim(w.list.id, 10, &claimant("tok"), t)
        .await
        .unwrap();
    assert_eq!(got.quarantined, 1);
    assert_eq!(
        got.messages.iter().map(|m| m.id).collect::<Vec<_>>(),
        vec![q[1].id, q[2].id]
    );
    assert!(s.queue.get(q[0].id).await.unwrap().is_none());
    let f = s.dead_letters.get(q[0].id).await.unwrap().unwrap();
    assert_eq!(f.reason, FailureReason::Malformed);
    assert!(f.original.is_none());
    assert!(f.raw.as_deref().unwrap_or("").contains("many"), "{f:?}");
    assert_eq!(f.account, w.account.id);
    ts.cleanup().await;
}
