//! One contract, two stores: every test here runs unchanged against the
//! in-memory store and against MongoDB (scripts/test provides one).

mod common;

use chrono::Duration as CDur;
use std::collections::HashSet;
use trackly::clock::truncate_ms;
use trackly::domain::*;
use trackly::seed;
use trackly::store::*;

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

fn attempt(m: &QueuedTextMessage, token: &str, at: Timestamp) -> MessageSent {
    MessageSent::attempt(m, ProviderKind::Fake, token, Money::from_micros(10_000), at)
}

// ---------------------------------------------------------------- the contract

async fn claim_takes_oldest_first_and_stamps_the_token(s: &Stores) {
    let w = world(s, 10).await;
    let t = now();
    let queued = msgs(&w, t - CDur::seconds(1));
    assert_eq!(s.queue.enqueue(queued.clone()).await.unwrap(), 10);
    // Enqueue is idempotent by id.
    assert_eq!(s.queue.enqueue(queued[..3].to_vec()).await.unwrap(), 0);
    let got = s.queue.claim(w.list.id, 4, "tok-a", t).await.unwrap();
    let ids: Vec<MessageId> = got.iter().map(|m| m.id).collect();
    let expected: Vec<MessageId> = queued[..4].iter().map(|m| m.id).collect();
    assert_eq!(ids, expected, "FIFO by id");
    assert!(
        got.iter()
            .all(|m| m.claimed_by.as_deref() == Some("tok-a") && m.claimed_at == Some(t))
    );
    let rest = s.queue.claim(w.list.id, 100, "tok-b", t).await.unwrap();
    assert_eq!(rest.len(), 6);
    assert!(
        s.queue
            .claim(w.list.id, 100, "tok-c", t)
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(s.queue.depth().await.unwrap(), 10);
}

async fn concurrent_claimers_never_share_a_message(s: &Stores) {
    let w = world(s, 300).await;
    let t = now();
    s.queue.enqueue(msgs(&w, t)).await.unwrap();
    let mut handles = vec![];
    for k in 0..6 {
        let q = s.queue.clone();
        let list = w.list.id;
        handles.push(tokio::spawn(async move {
            let mut mine = vec![];
            loop {
                let got = q
                    .claim(list, 25, &format!("tok-{k}-{}", mine.len()), t)
                    .await
                    .unwrap();
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
    let got = s.queue.claim(w.list.id, 100, "tok", t).await.unwrap();
    let ids: HashSet<MessageId> = got.iter().map(|m| m.id).collect();
    assert_eq!(ids.len(), 4);
    assert!(!ids.contains(&queued[0].id) && !ids.contains(&queued[1].id));
    // Another list's messages are not claimed either.
    let other = seed::list(w.account.id, ProviderSettings::Fake, 100, t);
    assert!(
        s.queue
            .claim(other.id, 100, "tok2", t)
            .await
            .unwrap()
            .is_empty()
    );
    // Once due, they are.
    let later = s
        .queue
        .claim(w.list.id, 100, "tok3", t + CDur::minutes(6))
        .await
        .unwrap();
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
    s.queue
        .claim(w.list.id, 10, "tok", t + CDur::minutes(1))
        .await
        .unwrap();
    assert!(
        s.queue
            .due_lists(t + CDur::minutes(2), 10)
            .await
            .unwrap()
            .is_empty(),
        "claimed messages are not ready"
    );
}

async fn stale_claims_are_released_and_fresh_ones_kept(s: &Stores) {
    let w = world(s, 4).await;
    let t = now();
    s.queue
        .enqueue(msgs(&w, t - CDur::minutes(20)))
        .await
        .unwrap();
    let old = s
        .queue
        .claim(w.list.id, 2, "old", t - CDur::minutes(11))
        .await
        .unwrap();
    let fresh = s
        .queue
        .claim(w.list.id, 2, "fresh", t - CDur::minutes(1))
        .await
        .unwrap();
    assert_eq!((old.len(), fresh.len()), (2, 2));
    assert_eq!(
        s.queue.release_stale(t - CDur::minutes(10)).await.unwrap(),
        2
    );
    let m = s.queue.get(old[0].id).await.unwrap().unwrap();
    assert_eq!((m.claimed_by, m.claimed_at), (None, None));
    let f = s.queue.get(fresh[0].id).await.unwrap().unwrap();
    assert_eq!(f.claimed_by.as_deref(), Some("fresh"));
    let again = s.queue.claim(w.list.id, 10, "new", t).await.unwrap();
    let ids: HashSet<MessageId> = again.iter().map(|m| m.id).collect();
    assert_eq!(ids, old.iter().map(|m| m.id).collect());
}

async fn requeue_release_and_complete_act_only_on_the_token(s: &Stores) {
    let w = world(s, 6).await;
    let t = now();
    s.queue.enqueue(msgs(&w, t)).await.unwrap();
    let a = s.queue.claim(w.list.id, 3, "a", t).await.unwrap();
    let b = s.queue.claim(w.list.id, 3, "b", t).await.unwrap();
    // Requeue with another token: nothing happens.
    let wrong = Requeue {
        id: a[0].id,
        not_before: t,
        attempts: 9,
        billing_blocked_since: None,
        last_error: None,
    };
    assert_eq!(s.queue.requeue("b", vec![wrong]).await.unwrap(), 0);
    let later = t + CDur::minutes(5);
    let r = Requeue {
        id: a[0].id,
        not_before: later,
        attempts: 1,
        billing_blocked_since: Some(t),
        last_error: Some("HTTP 503".into()),
    };
    assert_eq!(s.queue.requeue("a", vec![r]).await.unwrap(), 1);
    let m = s.queue.get(a[0].id).await.unwrap().unwrap();
    assert_eq!(m.claimed_by, None);
    assert_eq!(m.not_before, later);
    assert_eq!(m.attempts, 1);
    assert_eq!(m.billing_blocked_since, Some(t));
    assert_eq!(m.last_error.as_deref(), Some("HTTP 503"));
    // Complete deletes what "a" still holds, not "b"'s, not the requeued one.
    assert_eq!(s.queue.complete(w.list.id, "a").await.unwrap(), 2);
    assert!(s.queue.get(a[1].id).await.unwrap().is_none());
    assert!(s.queue.get(a[0].id).await.unwrap().is_some());
    assert!(s.queue.get(b[0].id).await.unwrap().is_some());
    // Release puts b's back, unchanged.
    assert_eq!(s.queue.release(w.list.id, "b").await.unwrap(), 3);
    let again = s.queue.claim(w.list.id, 10, "c", t).await.unwrap();
    assert_eq!(
        again.len(),
        3,
        "released messages are claimable; the backed-off one is not"
    );
}

async fn attempt_insert_is_idempotent_and_reports_already_attempted(s: &Stores) {
    let w = world(s, 3).await;
    let t = now();
    let queued = msgs(&w, t);
    let first = s
        .sent
        .record_attempts(vec![attempt(&queued[0], "a", t)])
        .await
        .unwrap();
    assert_eq!(first.inserted, vec![queued[0].id]);
    s.sent
        .record_outcomes(vec![SendOutcome {
            id: queued[0].id,
            submitted: true,
            at: t,
            provider_message_id: Some("p-1".into()),
            error_code: None,
            error_text: None,
        }])
        .await
        .unwrap();
    // A second daemon tries the same message plus two new ones.
    let second = s
        .sent
        .record_attempts(queued.iter().map(|m| attempt(m, "b", t)).collect())
        .await
        .unwrap();
    assert_eq!(second.already_attempted, vec![queued[0].id]);
    assert_eq!(second.inserted, vec![queued[1].id, queued[2].id]);
    // The first record is untouched.
    let r = s.sent.get(queued[0].id).await.unwrap().unwrap();
    assert_eq!(r.attempt_token, "a");
    assert_eq!(r.submitted, Some(true));
    assert_eq!(r.provider_message_id.as_deref(), Some("p-1"));
    assert_eq!(s.sent.count().await.unwrap(), 3);
}

async fn outcomes_never_overwrite_a_recorded_outcome(s: &Stores) {
    let w = world(s, 1).await;
    let t = now();
    let m = &msgs(&w, t)[0];
    s.sent
        .record_attempts(vec![attempt(m, "a", t)])
        .await
        .unwrap();
    let o = |ok: bool| SendOutcome {
        id: m.id,
        submitted: ok,
        at: t,
        provider_message_id: None,
        error_code: (!ok).then(|| "21211".to_string()),
        error_text: None,
    };
    assert_eq!(s.sent.record_outcomes(vec![o(false)]).await.unwrap(), 1);
    assert_eq!(s.sent.record_outcomes(vec![o(true)]).await.unwrap(), 0);
    let r = s.sent.get(m.id).await.unwrap().unwrap();
    assert_eq!(
        (r.submitted, r.error_code.as_deref()),
        (Some(false), Some("21211"))
    );
}

async fn discarded_attempts_allow_a_retry_only_when_unanswered(s: &Stores) {
    let w = world(s, 2).await;
    let t = now();
    let q = msgs(&w, t);
    s.sent
        .record_attempts(q.iter().map(|m| attempt(m, "a", t)).collect())
        .await
        .unwrap();
    s.sent
        .record_outcomes(vec![SendOutcome {
            id: q[1].id,
            submitted: true,
            at: t,
            provider_message_id: None,
            error_code: None,
            error_text: None,
        }])
        .await
        .unwrap();
    // Wrong token: nothing. Answered record: never removed.
    assert_eq!(
        s.sent.discard_attempts("zzz", vec![q[0].id]).await.unwrap(),
        0
    );
    assert_eq!(
        s.sent
            .discard_attempts("a", vec![q[0].id, q[1].id])
            .await
            .unwrap(),
        1
    );
    assert!(s.sent.get(q[0].id).await.unwrap().is_none());
    assert!(s.sent.get(q[1].id).await.unwrap().is_some());
    let again = s
        .sent
        .record_attempts(vec![attempt(&q[0], "b", t)])
        .await
        .unwrap();
    assert_eq!(again.inserted, vec![q[0].id]);
}

async fn in_doubt_lists_old_unanswered_attempts(s: &Stores) {
    let w = world(s, 3).await;
    let t = now();
    let q = msgs(&w, t);
    let mut recs: Vec<MessageSent> = q
        .iter()
        .map(|m| attempt(m, "a", t - CDur::minutes(5)))
        .collect();
    recs[2].attempted_at = t;
    s.sent.record_attempts(recs).await.unwrap();
    s.sent
        .record_outcomes(vec![SendOutcome {
            id: q[1].id,
            submitted: true,
            at: t,
            provider_message_id: None,
            error_code: None,
            error_text: None,
        }])
        .await
        .unwrap();
    let doubt = s.sent.in_doubt(t - CDur::minutes(1), 100).await.unwrap();
    assert_eq!(
        doubt.iter().map(|r| r.id).collect::<Vec<_>>(),
        vec![q[0].id]
    );
}

async fn delivery_reports_never_replace_a_final_state(s: &Stores) {
    let w = world(s, 3).await;
    let t = now();
    let q = msgs(&w, t);
    s.sent
        .record_attempts(q.iter().map(|m| attempt(m, "a", t)).collect())
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
    s.sent
        .record_outcomes(vec![SendOutcome {
            id: q[0].id,
            submitted: true,
            at: t,
            provider_message_id: Some("p0".into()),
            error_code: None,
            error_text: None,
        }])
        .await
        .unwrap();
    let m0 = s.sent.get(q[0].id).await.unwrap().unwrap();
    assert_eq!((m0.submitted, m0.delivered), (Some(true), Some(true)));
}

async fn dead_letters_are_written_once(s: &Stores) {
    let w = world(s, 2).await;
    let t = now();
    let q = msgs(&w, t);
    let f = |m: &QueuedTextMessage, reason| FailedMessage {
        id: m.id,
        account: m.account,
        sending_list: m.sending_list,
        reason,
        detail: "test".into(),
        provider_code: Some("E400".into()),
        provider_text: Some("Bad request".into()),
        failed_at: t,
        original: m.clone(),
    };
    assert_eq!(
        s.dead_letters
            .record(vec![
                f(&q[0], FailureReason::Stale),
                f(&q[1], FailureReason::ProviderError)
            ])
            .await
            .unwrap(),
        2
    );
    assert_eq!(
        s.dead_letters
            .record(vec![f(&q[0], FailureReason::NoResponse)])
            .await
            .unwrap(),
        0
    );
    let got = s.dead_letters.get(q[0].id).await.unwrap().unwrap();
    assert_eq!(got.reason, FailureReason::Stale, "first record wins");
    assert_eq!(got.original, q[0]);
    let counts = s.dead_letters.count_by_reason().await.unwrap();
    assert_eq!(counts.get(&FailureReason::Stale), Some(&1));
    assert_eq!(counts.get(&FailureReason::ProviderError), Some(&1));
}

async fn debits_are_atomic_and_never_go_below_zero(s: &Stores) {
    let w = world(s, 0).await; // balance 1.000000
    let a = w.account.id;
    assert_eq!(
        s.accounts
            .debit(a, Money::from_micros(600_000))
            .await
            .unwrap(),
        Debit::Done {
            balance: Money::from_micros(400_000)
        }
    );
    assert_eq!(
        s.accounts
            .debit(a, Money::from_micros(500_000))
            .await
            .unwrap(),
        Debit::Insufficient {
            balance: Money::from_micros(400_000)
        }
    );
    // Many concurrent debits: exactly the affordable number succeed.
    let mut hs = vec![];
    for _ in 0..30 {
        let acc = s.accounts.clone();
        hs.push(tokio::spawn(async move {
            acc.debit(a, Money::from_micros(20_000)).await.unwrap()
        }));
    }
    let mut done = 0;
    for h in hs {
        if matches!(h.await.unwrap(), Debit::Done { .. }) {
            done += 1;
        }
    }
    assert_eq!(done, 20);
    assert_eq!(
        s.accounts.get_account(a).await.unwrap().unwrap().balance,
        Money::ZERO
    );
    assert_eq!(
        s.accounts.credit(a, Money::from_micros(5)).await.unwrap(),
        Money::from_micros(5)
    );
    assert!(matches!(
        s.accounts.debit(AccountId::new(), Money(1)).await,
        Err(StoreError::NotFound(_))
    ));
}

async fn queue_entries_are_deleted_only_after_their_outcome(s: &Stores) {
    // The sequence a worker follows: attempt record, outcome, then complete.
    let w = world(s, 2).await;
    let t = now();
    let q = msgs(&w, t);
    s.queue.enqueue(q.clone()).await.unwrap();
    let got = s.queue.claim(w.list.id, 10, "tok", t).await.unwrap();
    s.sent
        .record_attempts(got.iter().map(|m| attempt(m, "tok", t)).collect())
        .await
        .unwrap();
    s.sent
        .record_outcomes(
            got.iter()
                .map(|m| SendOutcome {
                    id: m.id,
                    submitted: true,
                    at: t,
                    provider_message_id: None,
                    error_code: None,
                    error_text: None,
                })
                .collect(),
        )
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

    let link = |code: &str| MessageShortLink {
        id: LinkId::new(),
        code: code.into(),
        account: w.account.id,
        message: None,
        schedule: None,
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
    let schedule = Schedule {
        id: ScheduleId::new(),
        account: w.account.id,
        name: "spring sale".into(),
        sending_list: w.list.id,
        audiences: vec![],
        creative: creative.id,
        kind: ScheduleKind::Once { at: t },
        exclude_in_workflow: false,
        variant_selection: VariantSelection::Weighted,
        status: ScheduleStatus::Active,
        next_run_at: Some(t),
        created_at: t,
    };
    s.schedules.insert_schedule(schedule.clone()).await.unwrap();
    assert_eq!(s.schedules.due_schedules(t, 10).await.unwrap().len(), 1);
    assert!(
        s.schedules
            .due_schedules(t - CDur::seconds(1), 10)
            .await
            .unwrap()
            .is_empty()
    );
    let run = |by: &str| ScheduleRun {
        id: ScheduleRunId::new(),
        schedule: schedule.id,
        occurrence: t,
        triggered_by: by.into(),
        status: RunStatus::Evaluating,
        queued: 0,
        skipped: Default::default(),
        started_at: t,
        finished_at: None,
    };
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
    concurrent_claimers_never_share_a_message,
    messages_not_due_or_in_backoff_are_never_claimed,
    due_lists_names_lists_with_ready_due_messages,
    stale_claims_are_released_and_fresh_ones_kept,
    requeue_release_and_complete_act_only_on_the_token,
    attempt_insert_is_idempotent_and_reports_already_attempted,
    outcomes_never_overwrite_a_recorded_outcome,
    discarded_attempts_allow_a_retry_only_when_unanswered,
    in_doubt_lists_old_unanswered_attempts,
    delivery_reports_never_replace_a_final_state,
    dead_letters_are_written_once,
    debits_are_atomic_and_never_go_below_zero,
    queue_entries_are_deleted_only_after_their_outcome,
    contact_states_are_read_fresh,
    lists_links_and_runs,
);
