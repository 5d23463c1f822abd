//! Actor tests: the whole executor on the in-memory store with the fake
//! provider and a hand-driven clock. Every dead-letter reason, retry,
//! billing, control and recovery path is produced by the real code path.

mod common;

use common::*;
use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;
use trackly::config::Dur;
use trackly::domain::*;
use trackly::messages::*;
use trackly::providers::fake::{FakeSettings, Scripted};
use trackly::ratelimit::{Bucket, Grant, PermitBackend, RateLimitError};
use trackly::store::Stores;
use trackly_devkit::seed;

const T: Duration = Duration::from_secs(10);

async fn seed_campaign(
    stores: &Stores,
    n: u64,
    rate: u32,
    balance: Money,
    now: Timestamp,
) -> seed::Campaign {
    seed::campaign(stores, n, ProviderSettings::Fake, rate, balance, now)
        .await
        .unwrap()
}

/// Each message is in exactly one terminal state: sent (`submitted = true`,
/// no dead letter) or failed (a dead letter; an attempt record, if any, is
/// `submitted = false`). Returns (sent, failed).
async fn terminal_states(stores: &Stores, ids: &[MessageId]) -> (usize, usize) {
    let mut sent = 0;
    let mut failed = 0;
    for id in ids {
        let s = stores.sent.get(*id).await.unwrap();
        let f = stores.dead_letters.get(*id).await.unwrap();
        match (s.as_ref().and_then(|s| s.submitted), f) {
            (Some(true), None) => sent += 1,
            (Some(false), Some(_)) | (None, Some(_))
                if s.as_ref().is_none_or(|s| s.submitted == Some(false)) =>
            {
                failed += 1
            }
            other => panic!("message {id} is not in exactly one terminal state: {other:?}"),
        }
        assert!(
            stores.queue.get(*id).await.unwrap().is_none(),
            "terminal message {id} still queued"
        );
    }
    (sent, failed)
}

fn ids(c: &seed::Campaign) -> Vec<MessageId> {
    c.messages.iter().map(|m| m.id).collect()
}

#[actix_rt::test]
async fn a_campaign_is_sent_once_billed_and_recorded() {
    let stores = Stores::memory();
    let t = test_daemon(&stores);
    let c = seed_campaign(
        &stores,
        500,
        1_000_000,
        Money::from_micros(100_000_000),
        t.now(),
    )
    .await;
    t.daemon.coordinator.do_send(Nudge);
    assert!(t.drained(T).await, "queue not drained");
    assert_eq!(t.provider.accepted_count(), 500);
    assert!(t.provider.duplicates().is_empty());
    assert_eq!(terminal_states(&stores, &ids(&c)).await, (500, 0));
    let acc = stores
        .accounts
        .get_account(c.account.id)
        .await
        .unwrap()
        .unwrap();
    // 500 one-segment messages at 0.0075 each.
    assert_eq!(acc.balance, Money::from_micros(100_000_000 - 500 * 7_500));
    let rec = stores.sent.get(c.messages[0].id).await.unwrap().unwrap();
    assert_eq!(
        rec.provider_message_id,
        Some(format!("fake-{}", c.messages[0].id))
    );
    assert_eq!(rec.cost, Money::from_micros(7_500));
    assert_eq!(rec.delivered, None);
}

fn test_daemon(stores: &Stores) -> TestDaemon {
    start_daemon(
        test_config(),
        stores.clone(),
        local_permits(),
        FakeSettings::default(),
    )
}

#[actix_rt::test]
async fn stale_blocked_content_and_blocked_contacts_are_dead_lettered() {
    let stores = Stores::memory();
    let t = test_daemon(&stores);
    let now = t.now();
    let acc = seed::account(
        Money::from_micros(10_000_000),
        Money::from_micros(7_500),
        now,
    );
    stores.accounts.insert_account(acc.clone()).await.unwrap();
    let mut list = seed::list(acc.id, ProviderSettings::Fake, 1_000_000, now);
    list.blocked_words = vec!["casino".into()];
    stores.lists.insert_list(list.clone()).await.unwrap();
    let contacts: Vec<Contact> = (0..5)
        .map(|i| seed::contact(acc.id, list.id, i, now))
        .collect();
    stores
        .contacts
        .insert_contacts(contacts.clone())
        .await
        .unwrap();
    stores
        .contacts
        .set_subscription(contacts[2].id, list.id, false, now)
        .await
        .unwrap();
    stores
        .contacts
        .set_blocked(contacts[3].id, true)
        .await
        .unwrap();
    let stale = seed::queued(
        &list,
        &contacts[0],
        "hello",
        now - chrono::Duration::minutes(31),
    );
    let spam = seed::queued(&list, &contacts[1], "Visit our CASINO tonight", now);
    let unsub = seed::queued(&list, &contacts[2], "hello", now);
    let blocked = seed::queued(&list, &contacts[3], "hello", now);
    let fine = seed::queued(&list, &contacts[4], "casinos are not a blocked word", now);
    stores
        .queue
        .enqueue(vec![
            stale.clone(),
            spam.clone(),
            unsub.clone(),
            blocked.clone(),
            fine.clone(),
        ])
        .await
        .unwrap();
    t.daemon.coordinator.do_send(Nudge);
    assert!(t.drained(T).await);
    let reason = |id| {
        let stores = stores.clone();
        async move { stores.dead_letters.get(id).await.unwrap().map(|f| f.reason) }
    };
    assert_eq!(reason(stale.id).await, Some(FailureReason::Stale));
    assert_eq!(reason(spam.id).await, Some(FailureReason::BlockedContent));
    assert_eq!(reason(unsub.id).await, Some(FailureReason::ContactBlocked));
    assert_eq!(
        reason(blocked.id).await,
        Some(FailureReason::ContactBlocked)
    );
    assert_eq!(reason(fine.id).await, None);
    assert_eq!(t.provider.accepted_count(), 1);
    // Nothing that was not sent was paid for.
    let balance = stores
        .accounts
        .get_account(acc.id)
        .await
        .unwrap()
        .unwrap()
        .balance;
    assert_eq!(balance, Money::from_micros(10_000_000 - 7_500));
    let f = stores.dead_letters.get(spam.id).await.unwrap().unwrap();
    let original = f.original.clone().unwrap();
    assert_eq!(original, {
        let mut o = spam.clone();
        o.claimed_by = original.claimed_by.clone();
        o.claimed_at = original.claimed_at;
        o.claim_owner = original.claim_owner.clone();
        o.claim_count = 1;
        o
    });
    assert_eq!(
        original.claim_owner.as_deref(),
        Some(t.daemon.instance.id.as_str())
    );
    // Nothing never attempted has an attempt record.
    assert!(stores.sent.get(spam.id).await.unwrap().is_none());
    assert!(f.detail.contains("casino"));
}

#[actix_rt::test]
async fn provider_rejections_are_dead_lettered_with_the_code_and_stop_unsubscribes() {
    let stores = Stores::memory();
    let t = test_daemon(&stores);
    let c = seed_campaign(
        &stores,
        3,
        1_000_000,
        Money::from_micros(10_000_000),
        t.now(),
    )
    .await;
    t.provider.script(
        c.contacts[0].phone.as_str(),
        Scripted::Reject {
            code: "21211".into(),
            unsubscribed: false,
        },
    );
    t.provider.script(
        c.contacts[1].phone.as_str(),
        Scripted::Reject {
            code: "21610".into(),
            unsubscribed: true,
        },
    );
    t.daemon.coordinator.do_send(Nudge);
    assert!(t.drained(T).await);
    for (i, code) in [(0, "21211"), (1, "21610")] {
        let f = stores
            .dead_letters
            .get(c.messages[i].id)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(f.reason, FailureReason::ProviderError);
        assert_eq!(f.provider_code.as_deref(), Some(code));
        let s = stores.sent.get(c.messages[i].id).await.unwrap().unwrap();
        assert_eq!(
            (s.submitted, s.error_code.as_deref()),
            (Some(false), Some(code))
        );
    }
    let unsub = stores
        .contacts
        .get_contact(c.contacts[1].id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(unsub.state_on(c.list.id), ContactState::Unsubscribed);
    let kept = stores
        .contacts
        .get_contact(c.contacts[0].id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(kept.state_on(c.list.id), ContactState::Sendable);
    assert_eq!(terminal_states(&stores, &ids(&c)).await, (1, 2));
    // Rejected messages are refunded: only one was paid for.
    let balance = stores
        .accounts
        .get_account(c.account.id)
        .await
        .unwrap()
        .unwrap()
        .balance;
    assert_eq!(balance, Money::from_micros(10_000_000 - 7_500));
}

#[actix_rt::test]
async fn transient_errors_are_retried_with_backoff_while_fresh() {
    let stores = Stores::memory();
    let t = test_daemon(&stores);
    let c = seed_campaign(
        &stores,
        2,
        1_000_000,
        Money::from_micros(10_000_000),
        t.now(),
    )
    .await;
    let flaky = c.contacts[0].phone.as_str().to_string();
    t.provider
        .script(&flaky, Scripted::Transient { throttled: true });
    t.daemon.coordinator.do_send(Nudge);
    let q = stores.queue.clone();
    let id = c.messages[0].id;
    // The healthy message goes; the flaky one is back in the queue with a
    // later not-before and one attempt counted, its attempt record removed.
    assert!(
        wait_until(T, || {
            let q = q.clone();
            async move {
                q.depth().await.unwrap() == 1
                    && q.get(id)
                        .await
                        .unwrap()
                        .is_some_and(|m| m.claimed_by.is_none())
            }
        })
        .await
    );
    let m = stores.queue.get(id).await.unwrap().unwrap();
    assert_eq!(m.attempts, 1);
    assert!(m.not_before > t.now(), "backoff");
    assert!(m.not_before <= t.now() + chrono::Duration::seconds(2));
    assert_eq!(
        m.last_error.as_deref(),
        Some("429: scripted transient error")
    );
    assert!(stores.sent.get(id).await.unwrap().is_none());
    // 429 lowered the list's effective rate.
    let f = t
        .daemon
        .rate_limiter
        .send(EffectiveFraction { list: c.list.id })
        .await
        .unwrap();
    assert!(f < 1.0, "{f}");
    // Once the provider recovers and the backoff has passed, it is sent.
    t.provider.unscript(&flaky);
    t.clock.advance(Duration::from_secs(3));
    t.daemon.coordinator.do_send(PollNow);
    assert!(t.drained(T).await);
    assert_eq!(terminal_states(&stores, &ids(&c)).await, (2, 0));
    assert!(t.provider.duplicates().is_empty());
}

#[actix_rt::test]
async fn transient_errors_until_stale_end_as_provider_error() {
    let stores = Stores::memory();
    let t = test_daemon(&stores);
    let c = seed_campaign(
        &stores,
        1,
        1_000_000,
        Money::from_micros(10_000_000),
        t.now(),
    )
    .await;
    t.provider.script(
        c.contacts[0].phone.as_str(),
        Scripted::Transient { throttled: false },
    );
    // Keep retrying as time passes, until the next retry would be stale:
    // each pass ends with the message back in the queue (one more attempt)
    // or dead-lettered.
    let id = c.messages[0].id;
    for pass in 1..=40u32 {
        t.daemon.coordinator.do_send(PollNow);
        let q = stores.queue.clone();
        assert!(
            wait_until(T, || {
                let q = q.clone();
                async move {
                    match q.get(id).await.unwrap() {
                        None => true,
                        Some(m) => m.claimed_by.is_none() && m.attempts >= pass,
                    }
                }
            })
            .await,
            "pass {pass} did not finish"
        );
        match stores.queue.get(id).await.unwrap() {
            None => break,
            // To its next retry time.
            Some(m) => t.clock.set(m.not_before),
        }
    }
    let f = stores
        .dead_letters
        .get(c.messages[0].id)
        .await
        .unwrap()
        .expect("dead-lettered");
    assert_eq!(f.reason, FailureReason::ProviderError);
    assert_eq!(f.provider_code.as_deref(), Some("CONNECT"));
    assert!(f.detail.contains("went stale"), "{}", f.detail);
    // Its last attempt's charge was refunded with the failure.
    let r = stores.sent.get(c.messages[0].id).await.unwrap().unwrap();
    assert_eq!((r.submitted, r.refunded), (Some(false), true));
    assert_eq!(terminal_states(&stores, &ids(&c)).await, (0, 1));
}

#[actix_rt::test]
async fn an_ambiguous_answer_is_in_doubt_and_never_resent() {
    let stores = Stores::memory();
    let t = test_daemon(&stores);
    let c = seed_campaign(
        &stores,
        2,
        1_000_000,
        Money::from_micros(10_000_000),
        t.now(),
    )
    .await;
    // A 502 after the fake took the message (a gateway timing out).
    t.provider
        .script(c.contacts[0].phone.as_str(), Scripted::InDoubt);
    t.daemon.coordinator.do_send(Nudge);
    assert!(t.drained(T).await);
    let f = stores
        .dead_letters
        .get(c.messages[0].id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(f.reason, FailureReason::NoResponse);
    assert_eq!(f.provider_code.as_deref(), Some("HTTP 502"));
    let s = stores.sent.get(c.messages[0].id).await.unwrap().unwrap();
    assert_eq!(
        (s.submitted, s.error_code.as_deref()),
        (Some(false), Some("NO_RESPONSE"))
    );
    assert!(
        !s.refunded,
        "the provider may have sent it: the charge stands"
    );
    assert_eq!(t.provider.calls(), 1, "no retry");
    assert!(t.provider.duplicates().is_empty());
    // A delivery report proves it was sent: resolved, one terminal state.
    t.daemon
        .intake
        .send(ApplyReports(vec![trackly::store::DeliveryUpdate {
            id: c.messages[0].id,
            state: DeliveryState::Delivered,
            error_code: None,
            at: t.now(),
        }]))
        .await
        .unwrap()
        .unwrap();
    let s = stores.sent.get(c.messages[0].id).await.unwrap().unwrap();
    assert_eq!((s.submitted, s.delivered), (Some(true), Some(true)));
    let f = stores
        .dead_letters
        .get(c.messages[0].id)
        .await
        .unwrap()
        .unwrap();
    assert!(f.resolved.is_some());
    assert_eq!(
        stores
            .accounts
            .get_account(c.account.id)
            .await
            .unwrap()
            .unwrap()
            .balance,
        Money::from_micros(10_000_000 - 2 * 7_500),
        "both billed as sent"
    );
}

#[actix_rt::test]
async fn billing_blocks_back_off_clear_on_top_up_and_expire_after_the_ttl() {
    let stores = Stores::memory();
    let t = test_daemon(&stores);
    // Balance for 3 messages of 5.
    let c = seed_campaign(
        &stores,
        5,
        1_000_000,
        Money::from_micros(3 * 7_500),
        t.now(),
    )
    .await;
    t.daemon.coordinator.do_send(Nudge);
    let q = stores.queue.clone();
    assert!(
        wait_until(T, || {
            let q = q.clone();
            async move { q.depth().await.unwrap() == 2 }
        })
        .await
    );
    let p = t.provider.clone();
    assert!(
        wait_until(T, || {
            let p = p.clone();
            async move { p.accepted_count() == 3 }
        })
        .await
    );
    let blocked: Vec<QueuedTextMessage> = {
        let mut v = vec![];
        for m in &c.messages {
            if let Some(q) = stores.queue.get(m.id).await.unwrap() {
                v.push(q);
            }
        }
        v
    };
    assert_eq!(blocked.len(), 2);
    for m in &blocked {
        assert_eq!(m.billing_blocked_since, Some(t.now()));
        assert_eq!(m.not_before, t.now() + chrono::Duration::minutes(5));
    }
    // Still no money after the backoff: blocked again, since unchanged.
    t.clock.advance(Duration::from_secs(5 * 60));
    t.daemon.coordinator.do_send(PollNow);
    let first_block = t.now() - chrono::Duration::minutes(5);
    assert!(
        wait_until(T, || {
            let q = q.clone();
            let id = blocked[0].id;
            async move {
                q.get(id)
                    .await
                    .unwrap()
                    .is_some_and(|m| m.claimed_by.is_none() && m.claim_count == 2)
            }
        })
        .await
    );
    assert_eq!(
        stores
            .queue
            .get(blocked[0].id)
            .await
            .unwrap()
            .unwrap()
            .billing_blocked_since,
        Some(first_block)
    );
    // Top up one message's worth: one more goes after the next backoff.
    stores
        .accounts
        .top_up(c.account.id, Money::from_micros(7_500))
        .await
        .unwrap();
    t.clock.advance(Duration::from_secs(5 * 60));
    t.daemon.coordinator.do_send(PollNow);
    assert!(
        wait_until(T, || {
            let q = q.clone();
            async move { q.depth().await.unwrap() == 1 }
        })
        .await
    );
    assert_eq!(t.provider.accepted_count(), 4);
    // The last one stays blocked past the 60-minute TTL: BILLING_BLOCKED,
    // even though its send time is long stale (the TTL governs it).
    let last_id = c
        .messages
        .iter()
        .find(|m| !t.provider.accepted().contains_key(&m.id))
        .unwrap()
        .id;
    for _ in 0..12 {
        let before = stores.queue.get(last_id).await.unwrap();
        let Some(before) = before else { break };
        t.clock.advance(Duration::from_secs(5 * 60));
        t.daemon.coordinator.do_send(PollNow);
        // The pass is over when it is blocked again (claimed once more and
        // back) or dead-lettered.
        let q = stores.queue.clone();
        assert!(
            wait_until(T, || {
                let q = q.clone();
                async move {
                    match q.get(last_id).await.unwrap() {
                        None => true,
                        Some(m) => m.claimed_by.is_none() && m.claim_count > before.claim_count,
                    }
                }
            })
            .await
        );
    }
    assert!(t.drained(T).await);
    let (sent, failed) = terminal_states(&stores, &ids(&c)).await;
    assert_eq!((sent, failed), (4, 1));
    let last = c
        .messages
        .iter()
        .find(|m| !t.provider.accepted().contains_key(&m.id))
        .unwrap();
    assert_eq!(
        stores
            .dead_letters
            .get(last.id)
            .await
            .unwrap()
            .unwrap()
            .reason,
        FailureReason::BillingBlocked
    );
    assert_eq!(
        stores
            .accounts
            .get_account(c.account.id)
            .await
            .unwrap()
            .unwrap()
            .balance,
        Money::ZERO
    );
}

#[actix_rt::test]
async fn no_permit_within_the_window_is_rate_limit_timeout() {
    let stores = Stores::memory();
    let mut cfg = test_config();
    cfg.worker.permit_timeout = Dur::millis(300);
    let t = start_daemon(
        cfg,
        stores.clone(),
        local_permits(),
        FakeSettings::default(),
    );
    // 1 message a minute: the bucket holds one permit; the rest wait.
    let c = seed_campaign(&stores, 3, 1, Money::from_micros(10_000_000), t.now()).await;
    t.daemon.coordinator.do_send(Nudge);
    assert!(t.drained(T).await);
    let (sent, failed) = terminal_states(&stores, &ids(&c)).await;
    assert_eq!((sent, failed), (1, 2));
    let reasons = stores.dead_letters.count_by_reason().await.unwrap();
    assert_eq!(reasons.get(&FailureReason::RateLimitTimeout), Some(&2));
}

#[actix_rt::test]
async fn a_message_already_attempted_elsewhere_is_never_sent_again() {
    let stores = Stores::memory();
    let t = test_daemon(&stores);
    let c = seed_campaign(
        &stores,
        3,
        1_000_000,
        Money::from_micros(10_000_000),
        t.now(),
    )
    .await;
    // Another daemon recorded attempts for two of them: one answered, one
    // still in doubt.
    let other = |m: &QueuedTextMessage| {
        MessageSent::attempt(
            m,
            ProviderKind::Fake,
            "other-daemon:x:1",
            "other-daemon:x",
            Money::ZERO,
            t.now(),
        )
    };
    stores
        .sent
        .begin_attempts(
            c.account.id,
            vec![other(&c.messages[0]), other(&c.messages[1])],
        )
        .await
        .unwrap();
    stores
        .sent
        .settle(vec![trackly::store::Settlement::Sent {
            id: c.messages[0].id,
            at: t.now(),
            provider_message_id: None,
            resolved_by: None,
        }])
        .await
        .unwrap();
    t.daemon.coordinator.do_send(Nudge);
    let q = stores.queue.clone();
    assert!(
        wait_until(T, || {
            let q = q.clone();
            async move { q.depth().await.unwrap() == 1 }
        })
        .await
    );
    assert_eq!(
        t.provider.accepted_count(),
        1,
        "only the untouched message was sent"
    );
    // The unanswered one is left to Recovery, which finds its owner has no
    // lease: in doubt, NO_RESPONSE, removed; it is never sent.
    let waiting = stores.queue.get(c.messages[1].id).await.unwrap().unwrap();
    assert!(waiting.claimed_by.is_none() && waiting.not_before > t.now());
    let report = t.daemon.recovery.send(SweepNow).await.unwrap();
    assert_eq!(report.no_response, 1);
    assert_eq!(report.dead_owners, vec!["other-daemon:x".to_string()]);
    assert_eq!(
        stores
            .dead_letters
            .get(c.messages[1].id)
            .await
            .unwrap()
            .unwrap()
            .reason,
        FailureReason::NoResponse
    );
    assert!(t.drained(T).await);
    assert_eq!(t.provider.accepted_count(), 1);
    // Only what this daemon attempted was charged.
    let balance = stores
        .accounts
        .get_account(c.account.id)
        .await
        .unwrap()
        .unwrap()
        .balance;
    assert_eq!(balance, Money::from_micros(10_000_000 - 7_500));
}

#[actix_rt::test]
async fn a_crashed_worker_is_restarted_and_nothing_is_sent_twice() {
    let stores = Stores::memory();
    let t = test_daemon(&stores);
    let c = seed_campaign(
        &stores,
        20,
        1_000_000,
        Money::from_micros(10_000_000),
        t.now(),
    )
    .await;
    let bomb = c.contacts[5].phone.as_str().to_string();
    t.provider.script(&bomb, Scripted::Panic);
    t.daemon.coordinator.do_send(Nudge);
    // The worker panics in the middle of its provider call. Its supervisor
    // restarts it and releases the claim; the batch is claimed again, but
    // every message of it has an attempt record with no answer: in doubt,
    // so none is sent again. They wait, unclaimed, for Recovery.
    let q = stores.queue.clone();
    let first = c.messages[0].id;
    assert!(
        wait_until(T, || {
            let q = q.clone();
            async move {
                q.get(first)
                    .await
                    .unwrap()
                    .is_some_and(|m| m.claim_count == 2 && m.claimed_by.is_none())
            }
        })
        .await
    );
    t.provider.unscript(&bomb);
    let accepted_before_crash = t.provider.accepted_count();
    assert_eq!(
        accepted_before_crash, 5,
        "the fake took the messages before the bomb"
    );
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(
        t.provider.accepted_count(),
        accepted_before_crash,
        "nothing resent"
    );
    assert_eq!(stores.queue.depth().await.unwrap(), 20);
    // The batch that made them is gone (its token is no longer running):
    // Recovery records NO_RESPONSE for each at once; never resent.
    let report = t.daemon.recovery.send(SweepNow).await.unwrap();
    assert_eq!(report.no_response, 20);
    assert!(t.drained(T).await);
    assert_eq!(terminal_states(&stores, &ids(&c)).await, (0, 20));
    assert!(t.provider.duplicates().is_empty());
    // The supervisor works on with its restarted worker.
    let more = seed::queued(&c.list, &c.contacts[0], "second message", t.now());
    stores.queue.enqueue(vec![more.clone()]).await.unwrap();
    t.daemon.coordinator.do_send(Nudge);
    assert!(t.drained(T).await);
    assert!(t.provider.accepted().contains_key(&more.id));
}

#[actix_rt::test]
async fn pause_resume_rate_and_drain_control_a_list() {
    let stores = Stores::memory();
    let t = test_daemon(&stores);
    let c = seed_campaign(
        &stores,
        0,
        1_000_000,
        Money::from_micros(10_000_000),
        t.now(),
    )
    .await;
    let unknown = t
        .daemon
        .coordinator
        .send(ListControl {
            list: SendingListId::new(),
            command: ListCommand::Pause,
        })
        .await
        .unwrap();
    assert!(matches!(unknown, Err(ControlError::UnknownList(_))));
    t.daemon
        .coordinator
        .send(ListControl {
            list: c.list.id,
            command: ListCommand::Pause,
        })
        .await
        .unwrap()
        .unwrap();
    let contacts: Vec<Contact> = (0..10)
        .map(|i| seed::contact(c.account.id, c.list.id, 100 + i, t.now()))
        .collect();
    stores
        .contacts
        .insert_contacts(contacts.clone())
        .await
        .unwrap();
    stores
        .queue
        .enqueue(
            contacts
                .iter()
                .map(|k| seed::queued(&c.list, k, "hi", t.now()))
                .collect(),
        )
        .await
        .unwrap();
    t.daemon.coordinator.do_send(Nudge);
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(t.provider.accepted_count(), 0, "paused");
    t.daemon
        .coordinator
        .send(ListControl {
            list: c.list.id,
            command: ListCommand::SetRateLimit(600_000),
        })
        .await
        .unwrap()
        .unwrap();
    t.daemon
        .coordinator
        .send(ListControl {
            list: c.list.id,
            command: ListCommand::Resume,
        })
        .await
        .unwrap()
        .unwrap();
    assert!(t.drained(T).await);
    assert_eq!(t.provider.accepted_count(), 10);
    // Drain answers once nothing is in flight.
    let drained = t.daemon.coordinator.send(ListControl {
        list: c.list.id,
        command: ListCommand::Drain,
    });
    assert!(tokio::time::timeout(T, drained).await.is_ok());
}

#[actix_rt::test]
async fn shutdown_stops_claiming_and_releases_unstarted_messages() {
    let stores = Stores::memory();
    let mut cfg = test_config();
    cfg.rate_limit.burst_seconds = 0.1;
    let t = start_daemon(
        cfg,
        stores.clone(),
        local_permits(),
        FakeSettings::default(),
    );
    // 600/min = 10/s: a batch holds 20 and gets permits slowly.
    let c = seed_campaign(&stores, 200, 600, Money::from_micros(10_000_000), t.now()).await;
    t.daemon.coordinator.do_send(Nudge);
    let p = t.provider.clone();
    assert!(
        wait_until(T, || {
            let p = p.clone();
            async move { p.accepted_count() >= 2 }
        })
        .await
    );
    let report = t
        .daemon
        .coordinator
        .send(Shutdown {
            grace: Duration::from_secs(5),
        })
        .await
        .unwrap();
    assert_eq!((report.drained, report.timed_out), (1, 0));
    let sent_at_stop = t.provider.accepted_count();
    // Everything not sent is back in the queue, unclaimed, and nobody claims it.
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(t.provider.accepted_count(), sent_at_stop);
    let mut unclaimed = 0;
    for m in &c.messages {
        if let Some(q) = stores.queue.get(m.id).await.unwrap() {
            assert!(q.claimed_by.is_none(), "claim not released");
            unclaimed += 1;
        }
    }
    assert_eq!(unclaimed + sent_at_stop, 200);
    assert!(unclaimed > 100);
}

/// A permit backend that can be switched off, like Redis going away.
struct Switchable {
    inner: Arc<dyn PermitBackend>,
    up: std::sync::atomic::AtomicBool,
}

#[async_trait::async_trait]
impl PermitBackend for Switchable {
    async fn acquire(
        &self,
        list: SendingListId,
        bucket: Bucket,
        rate: f64,
        cap: f64,
        n: u32,
    ) -> Result<Grant, RateLimitError> {
        if !self.up.load(std::sync::atomic::Ordering::SeqCst) {
            return Err(RateLimitError::Unavailable("connection refused".into()));
        }
        self.inner.acquire(list, bucket, rate, cap, n).await
    }
    async fn ping(&self) -> Result<(), RateLimitError> {
        if self.up.load(std::sync::atomic::Ordering::SeqCst) {
            Ok(())
        } else {
            Err(RateLimitError::Unavailable("connection refused".into()))
        }
    }
    fn name(&self) -> &'static str {
        "switchable"
    }
}

#[actix_rt::test]
async fn sending_pauses_while_the_rate_limiter_is_unreachable_and_resumes_by_itself() {
    let stores = Stores::memory();
    let permits = Arc::new(Switchable {
        inner: local_permits(),
        up: false.into(),
    });
    let mut cfg = test_config();
    cfg.rate_limit.unavailable_retry = Dur::millis(50);
    let t = start_daemon(
        cfg,
        stores.clone(),
        permits.clone(),
        FakeSettings::default(),
    );
    let c = seed_campaign(
        &stores,
        50,
        1_000_000,
        Money::from_micros(10_000_000),
        t.now(),
    )
    .await;
    t.daemon.coordinator.do_send(Nudge);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        t.provider.accepted_count(),
        0,
        "never send without a permit"
    );
    assert_eq!(stores.queue.depth().await.unwrap(), 50, "nothing lost");
    permits.up.store(true, std::sync::atomic::Ordering::SeqCst);
    assert!(t.drained(T).await);
    assert_eq!(terminal_states(&stores, &ids(&c)).await, (50, 0));
}

#[actix_rt::test]
async fn messages_not_yet_due_wait_for_their_send_time() {
    let stores = Stores::memory();
    let t = test_daemon(&stores);
    let c = seed_campaign(
        &stores,
        0,
        1_000_000,
        Money::from_micros(10_000_000),
        t.now(),
    )
    .await;
    let k = seed::contact(c.account.id, c.list.id, 42, t.now());
    stores
        .contacts
        .insert_contacts(vec![k.clone()])
        .await
        .unwrap();
    let later = seed::queued(
        &c.list,
        &k,
        "later",
        t.now() + chrono::Duration::minutes(10),
    );
    stores.queue.enqueue(vec![later.clone()]).await.unwrap();
    t.daemon.coordinator.do_send(Nudge);
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(t.provider.accepted_count(), 0);
    t.clock.advance(Duration::from_secs(600));
    t.daemon.coordinator.do_send(PollNow);
    assert!(t.drained(T).await);
    let seen: HashSet<MessageId> = t.provider.accepted().keys().copied().collect();
    assert!(seen.contains(&later.id));
}

#[actix_rt::test]
async fn an_idle_supervisor_stops_and_new_work_starts_it_again() {
    let stores = Stores::memory();
    let mut cfg = test_config();
    cfg.coordinator.idle_supervisor_after = Dur::millis(100);
    let t = start_daemon(
        cfg,
        stores.clone(),
        local_permits(),
        FakeSettings::default(),
    );
    let c = seed_campaign(
        &stores,
        5,
        1_000_000,
        Money::from_micros(10_000_000),
        t.now(),
    )
    .await;
    t.daemon.coordinator.do_send(Nudge);
    assert!(t.drained(T).await);
    assert_eq!(
        t.daemon.coordinator.send(ActiveLists).await.unwrap(),
        vec![c.list.id]
    );
    let coord = t.daemon.coordinator.clone();
    assert!(
        wait_until(T, || {
            let coord = coord.clone();
            async move { coord.send(ActiveLists).await.unwrap().is_empty() }
        })
        .await,
        "the supervisor should stop when idle"
    );
    let more = seed::queued(&c.list, &c.contacts[0], "again", t.now());
    stores.queue.enqueue(vec![more.clone()]).await.unwrap();
    t.daemon.coordinator.do_send(Nudge);
    assert!(t.drained(T).await);
    assert!(t.provider.accepted().contains_key(&more.id));
}

/// Defect 4: nothing is written before the permit, so a daemon that dies
/// while waiting for one leaves nothing in doubt.
#[actix_rt::test]
async fn nothing_is_attempted_or_charged_before_the_permit() {
    let stores = Stores::memory();
    let gate = Gated::new(0);
    let t = start_daemon(
        test_config(),
        stores.clone(),
        gate.clone(),
        FakeSettings::default(),
    );
    let c = seed_campaign(
        &stores,
        4,
        1_000_000,
        Money::from_micros(10_000_000),
        t.now(),
    )
    .await;
    t.daemon.coordinator.do_send(Nudge);
    let g = gate.clone();
    assert!(
        wait_until(T, || {
            let g = g.clone();
            async move { g.asked.load(std::sync::atomic::Ordering::SeqCst) >= 3 }
        })
        .await,
        "the batch waits for permits"
    );
    assert_eq!(
        stores.sent.count().await.unwrap(),
        0,
        "no attempt record yet"
    );
    let acc = stores
        .accounts
        .get_account(c.account.id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        acc.balance,
        Money::from_micros(10_000_000),
        "nothing charged yet"
    );
    gate.allow(4);
    assert!(t.drained(T).await);
    assert_eq!(terminal_states(&stores, &ids(&c)).await, (4, 0));
}

/// Defect 7: the contact is read again for each chunk, right before its
/// send: an opt-out between two chunks of one batch counts.
#[actix_rt::test]
async fn an_opt_out_between_two_chunks_of_a_batch_is_honoured() {
    let stores = Stores::memory();
    let gate = Gated::new(2);
    let t = start_daemon(
        test_config(),
        stores.clone(),
        gate.clone(),
        FakeSettings::default(),
    );
    // 120/min: a burst (and a chunk) of 2; one claim of 4.
    let c = seed_campaign(&stores, 4, 120, Money::from_micros(10_000_000), t.now()).await;
    t.daemon.coordinator.do_send(Nudge);
    let p = t.provider.clone();
    assert!(
        wait_until(T, || {
            let p = p.clone();
            async move { p.accepted_count() == 2 }
        })
        .await,
        "the first chunk went"
    );
    let second = c
        .messages
        .iter()
        .find(|m| !t.provider.accepted().contains_key(&m.id))
        .unwrap();
    assert_eq!(
        stores
            .queue
            .get(second.id)
            .await
            .unwrap()
            .unwrap()
            .claim_count,
        1,
        "still in the same batch"
    );
    stores
        .contacts
        .set_subscription(second.contact, c.list.id, false, t.now())
        .await
        .unwrap();
    gate.allow(2);
    assert!(t.drained(T).await);
    assert_eq!(t.provider.accepted_count(), 3);
    let f = stores.dead_letters.get(second.id).await.unwrap().unwrap();
    assert_eq!(f.reason, FailureReason::ContactBlocked);
    assert_eq!(terminal_states(&stores, &ids(&c)).await, (3, 1));
}

/// Defect 5: a re-claimed message that already has an outcome is done; it
/// is never dead-lettered on top of it (here it went stale meanwhile).
#[actix_rt::test]
async fn an_existing_outcome_comes_before_staleness_and_content_checks() {
    let stores = Stores::memory();
    let t = test_daemon(&stores);
    let c = seed_campaign(
        &stores,
        0,
        1_000_000,
        Money::from_micros(10_000_000),
        t.now(),
    )
    .await;
    let k: Vec<Contact> = (0..2)
        .map(|i| seed::contact(c.account.id, c.list.id, 10 + i, t.now()))
        .collect();
    stores.contacts.insert_contacts(k.clone()).await.unwrap();
    let old = t.now() - chrono::Duration::minutes(45);
    // Sent by an earlier pass whose daemon died before deleting it.
    let mut sent = seed::queued(&c.list, &k[0], "hello", old);
    sent.claim_count = 1;
    // Dead-lettered (rejected) by an earlier pass, likewise.
    let mut failed = seed::queued(&c.list, &k[1], "hello", old);
    failed.claim_count = 1;
    let rec = |m: &QueuedTextMessage| {
        MessageSent::attempt(m, ProviderKind::Fake, "gone:1", "gone", Money::ZERO, old)
    };
    stores
        .sent
        .begin_attempts(c.account.id, vec![rec(&sent), rec(&failed)])
        .await
        .unwrap();
    stores
        .sent
        .settle(vec![
            trackly::store::Settlement::Sent {
                id: sent.id,
                at: old,
                provider_message_id: None,
                resolved_by: None,
            },
            trackly::store::Settlement::Failed {
                at: old,
                code: "21211".into(),
                text: "invalid".into(),
                refund: true,
                dead_letter: Box::new(trackly::actors::outcome::failure(
                    &failed,
                    FailureReason::ProviderError,
                    "rejected".into(),
                    None,
                    old,
                )),
            },
        ])
        .await
        .unwrap();
    stores
        .queue
        .enqueue(vec![sent.clone(), failed.clone()])
        .await
        .unwrap();
    t.daemon.coordinator.do_send(Nudge);
    assert!(t.drained(T).await);
    assert!(
        stores.dead_letters.get(sent.id).await.unwrap().is_none(),
        "a sent message never also goes STALE"
    );
    assert_eq!(
        stores
            .dead_letters
            .get(failed.id)
            .await
            .unwrap()
            .unwrap()
            .reason,
        FailureReason::ProviderError,
        "the first dead letter stands"
    );
    assert_eq!(t.provider.calls(), 0);
    assert_eq!(
        terminal_states(&stores, &[sent.id, failed.id]).await,
        (1, 1)
    );
}

/// Defect 9: the messages of a list that no longer exists do not stay
/// queued for ever: they are dead-lettered LIST_DELETED.
#[actix_rt::test]
async fn a_deleted_lists_messages_are_dead_lettered() {
    let stores = Stores::memory();
    let mut cfg = test_config();
    cfg.supervisor.list_refresh = Dur::millis(100);
    let t = start_daemon(
        cfg,
        stores.clone(),
        local_permits(),
        FakeSettings::default(),
    );
    let c = seed_campaign(
        &stores,
        5,
        1_000_000,
        Money::from_micros(10_000_000),
        t.now(),
    )
    .await;
    stores.lists.delete_list(c.list.id).await.unwrap();
    t.daemon.coordinator.do_send(Nudge);
    assert!(t.drained(T).await);
    let reasons = stores.dead_letters.count_by_reason().await.unwrap();
    assert_eq!(reasons.get(&FailureReason::ListDeleted), Some(&5));
    assert_eq!(t.provider.calls(), 0);
    assert_eq!(terminal_states(&stores, &ids(&c)).await, (0, 5));
}

/// Defect 9: a list whose provider no live daemon has credentials for is
/// named in /readyz (and logged by Recovery).
#[actix_rt::test]
async fn a_list_no_daemon_can_serve_shows_in_readyz() {
    use actix_web::test as atest;
    let stores = Stores::memory();
    let mut cfg = test_config();
    cfg.recovery.sweep_interval = Dur::millis(50);
    cfg.recovery.unservable_check = Dur::millis(50);
    let t = start_daemon(
        cfg,
        stores.clone(),
        local_permits(),
        FakeSettings::default(),
    );
    let infobip = ProviderSettings::Infobip {
        credentials: "eu".into(),
    };
    let c = seed::campaign(
        &stores,
        2,
        infobip,
        1000,
        Money::from_micros(1_000_000),
        t.now(),
    )
    .await
    .unwrap();
    let found = trackly::actors::recovery::unservable_lists(&stores, t.now())
        .await
        .unwrap();
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].provider, "infobip:eu");
    let app = atest::init_service(
        actix_web::App::new().configure(trackly::http::configure(
            t.daemon
                .http_state(Arc::new(trackly::config::Secrets::default()), "http://x"),
        )),
    )
    .await;
    let un = t.daemon.unservable.clone();
    assert!(
        wait_until(T, || {
            let un = un.clone();
            async move { !un.read().unwrap().is_empty() }
        })
        .await
    );
    let body: serde_json::Value =
        atest::call_and_read_body_json(&app, atest::TestRequest::get().uri("/readyz").to_request())
            .await;
    assert_eq!(
        body["detail"]["unservable_lists"][0]["list"],
        serde_json::json!(c.list.id.to_hex())
    );
    assert_eq!(body["detail"]["lease"], "held");
    assert_eq!(
        stores.queue.depth().await.unwrap(),
        2,
        "left for an operator"
    );
}

/// Defect 4: a live daemon's claims are never released and its sends never
/// judged in doubt, however slow it is; once its lease is gone, they are.
#[actix_rt::test]
async fn a_slow_live_daemon_keeps_its_claims_until_its_lease_is_gone() {
    let stores = Stores::memory();
    let slow = start_daemon(
        test_config(),
        stores.clone(),
        local_permits(),
        FakeSettings {
            latency: Duration::from_millis(1500),
            ..Default::default()
        },
    );
    let other = test_daemon(&stores);
    let c = seed_campaign(
        &stores,
        3,
        1_000_000,
        Money::from_micros(10_000_000),
        slow.now(),
    )
    .await;
    // Only the slow daemon claims (the other one never polls on its own).
    slow.daemon.coordinator.do_send(Nudge);
    let q = stores.queue.clone();
    let first = c.messages[0].id;
    assert!(
        wait_until(T, || {
            let q = q.clone();
            async move {
                q.get(first)
                    .await
                    .unwrap()
                    .is_some_and(|m| m.claimed_by.is_some())
            }
        })
        .await
    );
    // By the other daemon's clock the claims are hours old: age decides
    // nothing, only the owner's lease (on the store's clock) does.
    other.clock.advance(Duration::from_secs(2 * 3600));
    for _ in 0..3 {
        let r = other.daemon.recovery.send(SweepNow).await.unwrap();
        assert_eq!((r.released_claims, r.no_response), (0, 0), "{r:?}");
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    assert!(slow.drained(T).await);
    assert_eq!(terminal_states(&stores, &ids(&c)).await, (3, 0));
    assert_eq!(slow.provider.accepted_count(), 3);
}
