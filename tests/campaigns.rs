//! Campaigns from trigger to queue to provider: the Scheduler actor on real
//! daemons (in-memory store, fake provider, hand-driven clock; the last
//! tests on MongoDB). Each filter and its skip count, union and dedup,
//! deferral, exactly one trigger across daemons, missed occurrences, failed
//! validation, resumption from a checkpoint, concurrent campaigns and
//! cooldowns, the send-time window re-check, and explain.

mod common;

use chrono::TimeZone;
use common::*;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::Duration;
use trackly::domain::*;
use trackly::messages::*;
use trackly::providers::fake::FakeSettings;
use trackly::store::{CooldownClaim, Stores};
use trackly_devkit::seed;

const T: Duration = Duration::from_secs(20);

/// 12:00 in New York (17:00 UTC), 02:00 in Tokyo.
fn noon_new_york() -> Timestamp {
    chrono::Utc.with_ymd_and_hms(2026, 12, 1, 17, 0, 0).unwrap()
}

struct World {
    account: Account,
    list: SendingList,
    contacts: Vec<Contact>,
    audience: Audience,
    creative: MessageCreative,
}

/// An account, a list on the fake provider, `n` subscribed New York
/// contacts (first names set), one audience of the list, and a creative
/// with two variants and a tracked link.
async fn world(stores: &Stores, n: u64, now: Timestamp) -> World {
    let account = seed::account(
        Money::from_micros(1_000_000_000),
        Money::from_micros(10_000),
        now,
    );
    stores
        .accounts
        .insert_account(account.clone())
        .await
        .unwrap();
    let list = seed::list(account.id, ProviderSettings::Fake, 600_000, now);
    stores.lists.insert_list(list.clone()).await.unwrap();
    let contacts: Vec<Contact> = (0..n)
        .map(|i| {
            let mut c = seed::contact(account.id, list.id, i, now);
            c.custom_fields
                .insert("first_name".into(), format!("Ann{i}"));
            c
        })
        .collect();
    stores
        .contacts
        .insert_contacts(contacts.clone())
        .await
        .unwrap();
    let audience = seed::audience(
        account.id,
        "everyone",
        AudienceFilter {
            list: Some(list.id),
            ..Default::default()
        },
        now,
    );
    stores
        .contacts
        .insert_audience(audience.clone())
        .await
        .unwrap();
    let creative = seed::creative(
        account.id,
        &[
            (
                "A",
                "Hi {{first_name|there}}, sale at https://shop.example/a",
                1,
            ),
            ("B", "Hello {{first_name}}! https://shop.example/b", 1),
        ],
        true,
        now,
    );
    stores
        .schedules
        .insert_creative(creative.clone())
        .await
        .unwrap();
    World {
        account,
        list,
        contacts,
        audience,
        creative,
    }
}

async fn add_schedule(
    stores: &Stores,
    w: &World,
    audiences: Vec<AudienceId>,
    at: Timestamp,
) -> Schedule {
    let s = seed::schedule(
        &w.list,
        audiences,
        w.creative.id,
        ScheduleKind::Once { at },
        Some(at),
        at,
    );
    stores.schedules.insert_schedule(s.clone()).await.unwrap();
    s
}

fn daemon_at(stores: &Stores, now: Timestamp) -> TestDaemon {
    start_daemon_with_clock(
        test_config(),
        stores.clone(),
        local_permits(),
        FakeSettings::default(),
        trackly::clock::ManualClock::new(now),
    )
}

/// Ask the daemon's scheduler to look until the lease is held and the
/// look succeeds.
async fn look(t: &TestDaemon) -> LookReport {
    let s = t.daemon.scheduler.clone().expect("scheduler enabled");
    for _ in 0..100 {
        let r = s.send(LookNow).await.unwrap();
        if r.error.is_none() {
            return r;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the scheduler never completed a look");
}

async fn runs(stores: &Stores, s: &Schedule) -> Vec<ScheduleRun> {
    stores.schedules.runs_of(s.id, 100).await.unwrap()
}

/// Wait until the schedule's only run has left `evaluating`.
async fn run_done(stores: &Stores, s: &Schedule) -> ScheduleRun {
    let ok = wait_until(T, || async {
        runs(stores, s)
            .await
            .first()
            .is_some_and(|r| r.status != RunStatus::Evaluating)
    })
    .await;
    assert!(ok, "run did not finish");
    runs(stores, s).await.remove(0)
}

/// Queued messages by contact (panics on a contact queued twice).
async fn queued_by_contact(stores: &Stores) -> HashMap<ContactId, QueuedTextMessage> {
    let mut out = HashMap::new();
    for e in stores.queue.scan().await.unwrap() {
        let m = stores.queue.get(e.id).await.unwrap().unwrap();
        assert!(
            out.insert(m.contact, m).is_none(),
            "a contact was queued twice"
        );
    }
    out
}

/// The contact of every message the providers accepted (a contact may
/// appear twice only if it was messaged twice).
async fn sent_contacts(stores: &Stores, daemons: &[&TestDaemon]) -> Vec<ContactId> {
    let ids: Vec<MessageId> = daemons
        .iter()
        .flat_map(|d| d.provider.accepted().into_keys())
        .collect();
    let records = stores.sent.get_many(&ids).await.unwrap();
    assert_eq!(
        records.len(),
        ids.len(),
        "every accepted message has its record"
    );
    records.into_iter().map(|r| r.contact).collect()
}

fn distinct(v: &[ContactId]) -> usize {
    v.iter().collect::<HashSet<_>>().len()
}

/// A look reads what falls due before its next timed look in the same
/// query, and the next look comes when the earliest of it falls due, not
/// `scheduler.max_idle` later (the schedule was written straight to the
/// store: no event tells the scheduler).
#[actix_rt::test]
async fn a_schedule_due_before_the_next_timed_look_triggers_when_it_falls_due() {
    let stores = Stores::memory();
    let now = noon_new_york();
    let w = world(&stores, 20, now).await;
    let due = now + chrono::Duration::seconds(2);
    let s = add_schedule(&stores, &w, vec![w.audience.id], due).await;
    let mut cfg = test_config();
    cfg.scheduler.max_idle = trackly::config::Dur::secs(600);
    let t = start_daemon_with_clock(
        cfg,
        stores.clone(),
        local_permits(),
        FakeSettings::default(),
        trackly::clock::ManualClock::new(now),
    );
    let first = look(&t).await;
    assert_eq!(first.started, 0, "not due yet: {first:?}");
    // The daemon's clock reaches the send time; its timer fires 2 s after
    // the look (real time), long before `max_idle`.
    t.clock.set(due);
    let sched = stores.schedules.clone();
    let triggered = wait_until(Duration::from_secs(15), || {
        let sched = sched.clone();
        async move { sched.runs_of(s.id, 10).await.is_ok_and(|r| r.len() == 1) }
    })
    .await;
    assert!(triggered, "the look after the due time never came");
}

#[actix_rt::test]
async fn the_union_of_audiences_is_queued_once_per_contact_and_sent() {
    let stores = Stores::memory();
    let now = noon_new_york();
    let w = world(&stores, 0, now).await;
    // Audience A: contacts 0..5000; B: 4500..7500 (3,000); 500 in both.
    let contacts: Vec<Contact> = (0..7_500u64)
        .map(|i| {
            let mut c = seed::contact(w.account.id, w.list.id, i, now);
            c.custom_fields
                .insert("first_name".into(), format!("Ann{i}"));
            if i < 5_000 {
                c.tags.push("a".into());
            }
            if i >= 4_500 {
                c.tags.push("b".into());
            }
            c
        })
        .collect();
    stores.contacts.insert_contacts(contacts).await.unwrap();
    let tagged = |name: &str, tag: &str| {
        seed::audience(
            w.account.id,
            name,
            AudienceFilter {
                tags_any: vec![tag.into()],
                ..Default::default()
            },
            now,
        )
    };
    let (a, b) = (tagged("A", "a"), tagged("B", "b"));
    stores.contacts.insert_audience(a.clone()).await.unwrap();
    stores.contacts.insert_audience(b.clone()).await.unwrap();
    let s = add_schedule(&stores, &w, vec![a.id, b.id], now).await;
    let t = daemon_at(&stores, now);

    // Explain first: the documentation's example, and nothing queued.
    let ex = t
        .daemon
        .scheduler
        .clone()
        .unwrap()
        .send(ExplainSchedule { schedule: s.id })
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        ex.audiences.iter().map(|a| a.contacts).collect::<Vec<_>>(),
        vec![5_000, 3_000]
    );
    assert_eq!((ex.unique_contacts, ex.eligible), (7_500, 7_500));
    assert_eq!(ex.variants.iter().map(|v| v.messages).sum::<u64>(), 7_500);
    assert_eq!(ex.cost, Money::from_micros(10_000 * ex.segments as i64));
    assert!(ex.affordable);
    assert_eq!(ex.outside_window_at_rate, 0);
    assert_eq!(stores.queue.depth().await.unwrap(), 0);

    look(&t).await;
    let run = run_done(&stores, &s).await;
    assert_eq!(run.status, RunStatus::Queued);
    assert_eq!(
        (run.audience, run.eligible, run.queued),
        (7_500, 7_500, 7_500)
    );
    assert_eq!(
        run.variants.values().map(|v| v.messages).sum::<u64>(),
        7_500
    );
    // A 50/50 split over 7,500 contacts.
    for v in run.variants.values() {
        assert!((3_450..=4_050).contains(&v.messages), "{:?}", run.variants);
    }
    let schedule = stores.schedules.get_schedule(s.id).await.unwrap().unwrap();
    assert_eq!(schedule.status, ScheduleStatus::Done);
    // Everything goes out once.
    assert!(t.drained(T).await, "queue not drained");
    assert!(t.provider.duplicates().is_empty());
    let to = sent_contacts(&stores, &[&t]).await;
    assert_eq!((to.len(), distinct(&to)), (7_500, 7_500));
}

#[actix_rt::test]
async fn messages_are_personalised_linked_segmented_and_numbered_in_order() {
    use trackly::campaign::{evaluate, plan};
    let stores = Stores::memory();
    let now = noon_new_york();
    let w = world(&stores, 0, now).await;
    let creative = seed::creative(
        w.account.id,
        &[(
            "emoji",
            "Hi {{first_name|there}} 🎉 see https://shop.example/x?y=1.",
            1,
        )],
        true,
        now,
    );
    stores
        .schedules
        .insert_creative(creative.clone())
        .await
        .unwrap();
    let contacts: Vec<Contact> = (0..4)
        .map(|i| {
            let mut c = seed::contact(w.account.id, w.list.id, i, now);
            if i % 2 == 0 {
                c.custom_fields.insert("first_name".into(), "Zoë".into());
            }
            c
        })
        .collect();
    let s = seed::schedule(
        &w.list,
        vec![w.audience.id],
        creative.id,
        ScheduleKind::Once { at: now },
        Some(now),
        now,
    );
    let caps = plan::Capabilities {
        providers: ["fake".to_string()].into(),
    };
    let p = plan::prepare(&stores, &test_config(), &s, &caps)
        .await
        .unwrap();
    let run = ScheduleRunId::new();
    let v = evaluate::screen(&p, run, &contacts, &HashMap::new(), now, &mut rand::rng());
    let built = evaluate::build(
        &p,
        evaluate::RunContext { run, seq: 7, now },
        &contacts,
        &v,
        &HashSet::new(),
        &mut rand::rng(),
    );
    assert_eq!(
        (built.messages.len(), built.links.len(), built.seq),
        (4, 4, 11)
    );
    for (i, m) in built.messages.iter().enumerate() {
        let name = if i % 2 == 0 { "Zoë" } else { "there" };
        assert!(
            m.body.starts_with(&format!("Hi {name} 🎉 see ")),
            "{}",
            m.body
        );
        // The link is replaced; the sentence's full stop stays outside it.
        assert!(
            m.body.ends_with('.') && !m.body.contains("shop.example"),
            "{}",
            m.body
        );
        let link = &built.links[i];
        assert!(m.body.contains(&format!("/l/{}", link.code)));
        assert_eq!(link.destination_url, "https://shop.example/x?y=1");
        assert_eq!(
            (link.message, link.variant.as_deref()),
            (Some(m.id), Some("emoji"))
        );
        assert_eq!(m.encoding.as_deref(), Some("UCS-2"));
        assert_eq!(m.segments, sms::segments(&m.body));
        assert_eq!(m.time_zone.as_deref(), Some("America/New_York"));
        assert_eq!(
            m.from,
            w.list.from_numbers[(7 + i) % w.list.from_numbers.len()]
        );
        assert_eq!((m.send_at, m.run, m.schedule), (now, Some(run), Some(s.id)));
    }
    // Ids keep FIFO: by send time, then by number.
    let mut sorted = built.messages.iter().map(|m| m.id).collect::<Vec<_>>();
    sorted.sort();
    assert_eq!(
        sorted,
        built.messages.iter().map(|m| m.id).collect::<Vec<_>>()
    );
    let later = evaluate::message_id(now + chrono::Duration::seconds(1), run, 0);
    assert!(later > *sorted.last().unwrap());
    assert_eq!(
        built.counts.cost,
        Money::from_micros(
            10_000
                * built
                    .messages
                    .iter()
                    .map(|m| m.segments as i64)
                    .sum::<i64>()
        )
    );
    // The preview renders the same way.
    let pv =
        trackly::campaign::explain::preview(&creative, &contacts[1], "https://t.example").unwrap();
    assert_eq!(pv.len(), 1);
    assert!(
        pv[0]
            .text
            .starts_with("Hi there 🎉 see https://t.example/l/"),
        "{}",
        pv[0].text
    );
    assert_eq!((pv[0].encoding.as_str(), pv[0].links.len()), ("UCS-2", 1));
    assert!(pv[0].missing.is_empty());
}

#[actix_rt::test]
async fn each_filter_skips_and_counts_its_contacts() {
    let stores = Stores::memory();
    let now = noon_new_york();
    let w = world(&stores, 0, now).await;
    let mut contacts = vec![];
    let mut expect: BTreeMap<&str, u64> = BTreeMap::new();
    let mut add = |i: u64, f: &dyn Fn(&mut Contact), reason: Option<&'static str>| {
        let mut c = seed::contact(w.account.id, w.list.id, 1_000 + i, now);
        c.custom_fields.insert("first_name".into(), "Bo".into());
        f(&mut c);
        if let Some(r) = reason {
            *expect.entry(r).or_default() += 1;
        }
        contacts.push(c);
    };
    for i in 0..10 {
        add(i, &|_| {}, None); // eligible
    }
    for i in 10..13 {
        add(
            i,
            &|c| c.subscriptions[0].subscribed = false,
            Some("unsubscribed"),
        );
    }
    add(13, &|c| c.blocked = true, Some("unsubscribed"));
    for i in 14..16 {
        add(
            i,
            &|c| c.phone = E164::parse("+12000000014").unwrap(),
            Some("invalid_number"),
        );
    }
    for i in 16..19 {
        add(
            i,
            &|c| c.time_zone = "Asia/Tokyo".into(),
            Some("quiet_hours"),
        );
    }
    for i in 19..21 {
        add(i, &|c| c.in_workflow = true, Some("in_workflow"));
    }
    for i in 21..23 {
        add(
            i,
            &|c| {
                c.last_sent.push(trackly::domain::contact::LastSent {
                    list: w.list.id,
                    at: now - chrono::Duration::hours(1),
                })
            },
            Some("cooldown"),
        );
    }
    for i in 23..25 {
        add(
            i,
            &|c| {
                c.custom_fields.remove("first_name");
            },
            None,
        ); // A has a default; B needs the name: some skip
    }
    // Contacts with invalid numbers need distinct phones.
    let mut seen = HashSet::new();
    for (k, c) in contacts.iter_mut().enumerate() {
        if !seen.insert(c.phone.clone()) {
            c.phone = E164::parse(&format!("+1200000{:04}", 100 + k)).unwrap();
        }
    }
    stores
        .contacts
        .insert_contacts(contacts.clone())
        .await
        .unwrap();
    // The list has a cooldown of a day; the schedule excludes journeys.
    let mut list = w.list.clone();
    list.cooldown_secs = 86_400;
    stores.lists.delete_list(w.list.id).await.unwrap();
    stores.lists.insert_list(list.clone()).await.unwrap();
    let mut s = seed::schedule(
        &list,
        vec![w.audience.id],
        w.creative.id,
        ScheduleKind::Once { at: now },
        Some(now),
        now,
    );
    s.exclude_in_workflow = true;
    stores.schedules.insert_schedule(s.clone()).await.unwrap();
    let t = daemon_at(&stores, now);
    look(&t).await;
    let run = run_done(&stores, &s).await;
    assert_eq!(run.status, RunStatus::Queued, "{:?}", run.reason);
    let missing = run.skipped.get("missing_field").copied().unwrap_or(0);
    assert!(missing <= 2);
    let mut skipped = run.skipped.clone();
    skipped.remove("missing_field");
    let expect: BTreeMap<String, u64> = expect
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
    assert_eq!(skipped, expect);
    assert_eq!(run.audience, 25);
    assert_eq!(run.queued, 12 - missing);
    assert_eq!(run.eligible, run.queued);
    // Cooldowns are now reserved for everyone queued.
    let ids: Vec<ContactId> = contacts.iter().map(|c| c.id).collect();
    let held = stores
        .contacts
        .cooldowns(list.id, &ids, now, None)
        .await
        .unwrap();
    assert_eq!(held.len() as u64, run.queued);
    // Every message carries what the worker re-checks and bills.
    for m in queued_by_contact(&stores).await.values() {
        assert_eq!(m.time_zone.as_deref(), Some("America/New_York"));
        assert_eq!(m.encoding.as_deref(), Some("GSM-7"));
        assert!(m.body.contains("/l/"), "{}", m.body);
        assert!(
            m.body.contains("Bo") || m.body.contains("there"),
            "{}",
            m.body
        );
        assert_eq!(m.segments, sms::segments(&m.body));
    }
}

#[actix_rt::test]
async fn contacts_outside_their_window_are_deferred_to_its_next_start() {
    let stores = Stores::memory();
    let now = noon_new_york(); // 02:00 in Tokyo
    let w = world(&stores, 0, now).await;
    let contacts: Vec<Contact> = (0..5)
        .map(|i| {
            let mut c = seed::contact(w.account.id, w.list.id, i, now);
            c.time_zone = "Asia/Tokyo".into();
            c.custom_fields.insert("first_name".into(), "Yu".into());
            c
        })
        .collect();
    stores.contacts.insert_contacts(contacts).await.unwrap();
    let mut s = seed::schedule(
        &w.list,
        vec![w.audience.id],
        w.creative.id,
        ScheduleKind::Once { at: now },
        Some(now),
        now,
    );
    s.defer_outside_window = true;
    stores.schedules.insert_schedule(s.clone()).await.unwrap();
    let t = daemon_at(&stores, now);
    look(&t).await;
    let run = run_done(&stores, &s).await;
    assert_eq!((run.queued, run.skipped.len()), (5, 0));
    // 08:00 in Tokyo is 23:00 UTC the same day.
    let opens = chrono::Utc.with_ymd_and_hms(2026, 12, 1, 23, 0, 0).unwrap();
    for m in queued_by_contact(&stores).await.values() {
        assert_eq!((m.send_at, m.not_before), (opens, opens));
        assert!(m.defer_outside_window);
    }
    // Nothing goes before then.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(t.provider.accepted_count(), 0);
    t.clock.set(opens + chrono::Duration::seconds(1));
    t.daemon.coordinator.do_send(Nudge);
    assert!(t.drained(T).await);
    assert_eq!(t.provider.accepted_count(), 5);
}

#[actix_rt::test]
async fn two_daemons_trigger_an_occurrence_exactly_once() {
    let stores = Stores::memory();
    let now = noon_new_york();
    let w = world(&stores, 300, now).await;
    let s = add_schedule(&stores, &w, vec![w.audience.id], now).await;
    let a = daemon_at(&stores, now);
    let b = daemon_at(&stores, now);
    let _ = futures::join!(look(&a), look(&b));
    let run = run_done(&stores, &s).await;
    assert_eq!(runs(&stores, &s).await.len(), 1);
    assert_eq!(run.queued, 300);
    let ok = wait_until(T, || async {
        a.provider.accepted_count() + b.provider.accepted_count() == 300
    })
    .await;
    assert!(ok);
    let to = sent_contacts(&stores, &[&a, &b]).await;
    assert_eq!((to.len(), distinct(&to)), (300, 300));
}

#[actix_rt::test]
async fn a_late_occurrence_is_missed_and_a_recurring_schedule_moves_on() {
    let stores = Stores::memory();
    let now = noon_new_york();
    let w = world(&stores, 10, now).await;
    // Due an hour ago (grace 15 minutes): missed, nothing queued.
    let due = now - chrono::Duration::hours(1);
    let s = seed::schedule(
        &w.list,
        vec![w.audience.id],
        w.creative.id,
        ScheduleKind::Recurring {
            cron: "0 * * * *".into(),
            time_zone: "UTC".into(),
        },
        Some(due),
        due,
    );
    stores.schedules.insert_schedule(s.clone()).await.unwrap();
    let t = daemon_at(&stores, now);
    look(&t).await;
    let all = runs(&stores, &s).await;
    let missed = all.iter().find(|r| r.occurrence == due).unwrap();
    assert_eq!(missed.status, RunStatus::Missed);
    assert!(missed.reason.as_deref().unwrap_or("").contains("late"));
    assert_eq!(missed.queued, 0);
    // The next occurrence is the first not past the grace: 17:00 UTC, now,
    // which runs (the occurrence at 16:00 passes unrecorded).
    look(&t).await;
    assert!(all.len() <= 2);
    let ok = wait_until(T, || async {
        runs(&stores, &s)
            .await
            .iter()
            .any(|r| r.status == RunStatus::Queued)
    })
    .await;
    assert!(ok);
    let sched = stores.schedules.get_schedule(s.id).await.unwrap().unwrap();
    assert_eq!(sched.next_run_at, Some(now + chrono::Duration::hours(1)));
    assert_eq!(sched.status, ScheduleStatus::Active);
}

#[actix_rt::test]
async fn an_invalid_campaign_fails_with_its_reason_and_queues_nothing() {
    let stores = Stores::memory();
    let now = noon_new_york();
    let w = world(&stores, 10, now).await;
    // A creative with an unknown placeholder.
    let bad = seed::creative(w.account.id, &[("A", "Hi {{nickname}}", 1)], false, now);
    stores.schedules.insert_creative(bad.clone()).await.unwrap();
    let s1 = seed::schedule(
        &w.list,
        vec![w.audience.id],
        bad.id,
        ScheduleKind::Once { at: now },
        Some(now),
        now,
    );
    stores.schedules.insert_schedule(s1.clone()).await.unwrap();
    // A list no daemon can send through.
    let mut twilio = seed::list(
        w.account.id,
        ProviderSettings::Twilio {
            credentials: "default".into(),
            messaging_service_sid: None,
        },
        600,
        now,
    );
    twilio.name = "twilio".into();
    stores.lists.insert_list(twilio.clone()).await.unwrap();
    let s2 = seed::schedule(
        &twilio,
        vec![w.audience.id],
        w.creative.id,
        ScheduleKind::Once { at: now },
        Some(now),
        now,
    );
    stores.schedules.insert_schedule(s2.clone()).await.unwrap();
    // An audience that does not exist.
    let s3 = seed::schedule(
        &w.list,
        vec![AudienceId::new()],
        w.creative.id,
        ScheduleKind::Once { at: now },
        Some(now),
        now,
    );
    stores.schedules.insert_schedule(s3.clone()).await.unwrap();
    let t = daemon_at(&stores, now);
    look(&t).await;
    let reason = |s: &Schedule| {
        let stores = stores.clone();
        let id = s.id;
        async move {
            let r = stores.schedules.runs_of(id, 1).await.unwrap().remove(0);
            assert_eq!(r.status, RunStatus::Failed);
            r.reason.unwrap_or_default()
        }
    };
    assert!(reason(&s1).await.contains("nickname"));
    assert!(reason(&s2).await.contains("twilio:default"));
    assert!(reason(&s3).await.contains("does not exist"));
    assert_eq!(stores.queue.depth().await.unwrap(), 0);
}

#[actix_rt::test]
async fn a_stopped_daemons_run_is_resumed_from_its_checkpoint() {
    let stores = Stores::memory();
    let now = noon_new_york();
    let w = world(&stores, 40, now).await;
    let s = add_schedule(&stores, &w, vec![w.audience.id], now).await;
    // A daemon that is gone ("dead:1", no lease) queued the first 15
    // contacts, then died.
    let mut sorted = w.contacts.clone();
    sorted.sort_by_key(|c| c.id);
    let mut run = seed::run(&s, now, "dead:1", now);
    run.cursor = Some(sorted[14].id);
    run.seq = 15;
    run.audience = 15;
    run.eligible = 15;
    run.queued = 15;
    assert!(stores.schedules.start_run(run.clone()).await.unwrap());
    stores
        .schedules
        .advance_schedule(s.id, now, None)
        .await
        .unwrap();
    let before: Vec<QueuedTextMessage> = sorted[..15]
        .iter()
        .map(|c| {
            let mut m = seed::queued(&w.list, c, "hi", now);
            m.run = Some(run.id);
            m
        })
        .collect();
    stores.queue.enqueue(before).await.unwrap();
    let t = daemon_at(&stores, now);
    look(&t).await;
    let run = run_done(&stores, &s).await;
    assert_eq!(run.owner, t.daemon.instance.id);
    assert_eq!((run.audience, run.queued, run.seq), (40, 40, 40));
    assert!(t.drained(T).await);
    // Each contact got exactly one message.
    let to = sent_contacts(&stores, &[&t]).await;
    assert_eq!((to.len(), distinct(&to)), (40, 40));
}

#[actix_rt::test]
async fn two_campaigns_at_once_never_reach_a_contact_inside_its_cooldown() {
    let stores = Stores::memory();
    let now = noon_new_york();
    let w = world(&stores, 0, now).await;
    let mut list = w.list.clone();
    list.cooldown_secs = 86_400;
    stores.lists.delete_list(w.list.id).await.unwrap();
    stores.lists.insert_list(list.clone()).await.unwrap();
    let contacts: Vec<Contact> = (0..400)
        .map(|i| {
            let mut c = seed::contact(w.account.id, list.id, i, now);
            c.custom_fields.insert("first_name".into(), "Al".into());
            c
        })
        .collect();
    stores.contacts.insert_contacts(contacts).await.unwrap();
    let mut cfg = test_config();
    cfg.scheduler.page_size = 50; // many pages, interleaved
    let s1 = add_schedule(&stores, &w, vec![w.audience.id], now).await;
    let s2 = add_schedule(&stores, &w, vec![w.audience.id], now).await;
    let a = start_daemon_with_clock(
        cfg.clone(),
        stores.clone(),
        local_permits(),
        FakeSettings::default(),
        trackly::clock::ManualClock::new(now),
    );
    let b = start_daemon_with_clock(
        cfg,
        stores.clone(),
        local_permits(),
        FakeSettings::default(),
        trackly::clock::ManualClock::new(now),
    );
    let _ = futures::join!(look(&a), look(&b));
    let r1 = run_done(&stores, &s1).await;
    let r2 = run_done(&stores, &s2).await;
    assert_eq!(r1.queued + r2.queued, 400, "{r1:?} {r2:?}");
    assert_eq!(
        r1.skipped.get("cooldown").copied().unwrap_or(0)
            + r2.skipped.get("cooldown").copied().unwrap_or(0),
        400
    );
    let ok = wait_until(T, || async {
        a.provider.accepted_count() + b.provider.accepted_count() == 400
    })
    .await;
    assert!(ok);
    let to = sent_contacts(&stores, &[&a, &b]).await;
    assert_eq!(
        (to.len(), distinct(&to)),
        (400, 400),
        "a contact got two messages inside the cooldown"
    );
    // A reservation held by another run is still honoured by a third.
    let c0 = stores
        .contacts
        .audience_page(
            w.account.id,
            std::slice::from_ref(&w.audience.filter),
            None,
            1,
        )
        .await
        .unwrap()
        .remove(0);
    let refused = stores
        .contacts
        .reserve_cooldowns(
            list.id,
            ScheduleRunId::new(),
            &[CooldownClaim {
                contact: c0.id,
                at: now,
                until: now + chrono::Duration::hours(1),
            }],
            now,
        )
        .await
        .unwrap();
    assert_eq!(refused, vec![c0.id]);
}

#[actix_rt::test]
async fn a_message_whose_turn_comes_after_the_window_is_deferred_or_dropped() {
    let stores = Stores::memory();
    // 21:30 in New York.
    let late = chrono::Utc.with_ymd_and_hms(2026, 12, 2, 2, 30, 0).unwrap();
    let w = world(&stores, 2, late).await;
    let queued_at = late - chrono::Duration::minutes(40);
    let mut drop = seed::queued(
        &w.list,
        &w.contacts[0],
        "hi",
        late - chrono::Duration::minutes(10),
    );
    drop.time_zone = Some("America/New_York".into());
    drop.queued_at = queued_at;
    let mut keep = seed::queued(
        &w.list,
        &w.contacts[1],
        "hi",
        late - chrono::Duration::minutes(10),
    );
    keep.time_zone = Some("America/New_York".into());
    keep.defer_outside_window = true;
    stores
        .queue
        .enqueue(vec![drop.clone(), keep.clone()])
        .await
        .unwrap();
    let t = daemon_at(&stores, late);
    t.daemon.coordinator.do_send(Nudge);
    let ok = wait_until(T, || async {
        stores.dead_letters.get(drop.id).await.unwrap().is_some()
    })
    .await;
    assert!(ok, "not dead-lettered");
    let f = stores.dead_letters.get(drop.id).await.unwrap().unwrap();
    assert_eq!(f.reason, FailureReason::QuietHours);
    assert!(
        stores.sent.get(drop.id).await.unwrap().is_none(),
        "nothing charged"
    );
    // The deferred one waits for 08:00 New York (13:00 UTC), with that as
    // its new send time.
    let opens = chrono::Utc.with_ymd_and_hms(2026, 12, 2, 13, 0, 0).unwrap();
    let ok = wait_until(T, || async {
        stores
            .queue
            .get(keep.id)
            .await
            .unwrap()
            .is_some_and(|m| m.claimed_by.is_none() && m.send_at == opens)
    })
    .await;
    assert!(ok, "not deferred");
    assert_eq!(t.provider.accepted_count(), 0);
    t.clock.set(opens);
    t.daemon.coordinator.do_send(Nudge);
    assert!(t.drained(T).await);
    assert_eq!(t.provider.accepted_count(), 1);
}

/// A page screened and built over the cores is the page one thread makes:
/// the same verdicts, message ids (numbered across the parts), contacts,
/// senders and counts; only the random link codes differ.
#[actix_rt::test]
async fn a_page_built_over_the_cores_equals_the_page_built_on_one() {
    use trackly::campaign::evaluate::{self, RunContext};
    use trackly::campaign::plan::{Capabilities, prepare};
    let stores = Stores::memory();
    let now = noon_new_york();
    let w = world(&stores, 5_000, now).await;
    let mut contacts = w.contacts.clone();
    for (i, c) in contacts.iter_mut().enumerate() {
        match i % 7 {
            1 => c.subscriptions[0].subscribed = false,
            3 => c.time_zone = "Asia/Tokyo".into(),
            _ => {}
        }
    }
    let mut list = w.list.clone();
    list.from_numbers = vec!["+12125550100".into(), "+12125550101".into()];
    stores.lists.delete_list(w.list.id).await.unwrap();
    stores.lists.insert_list(list.clone()).await.unwrap();
    let s = seed::schedule(
        &list,
        vec![w.audience.id],
        w.creative.id,
        ScheduleKind::Once { at: now },
        Some(now),
        now,
    );
    stores.schedules.insert_schedule(s.clone()).await.unwrap();
    let caps = Capabilities {
        providers: ["fake".to_string()].into(),
    };
    let plan = prepare(&stores, &test_config(), &s, &caps)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let run = ScheduleRunId::new();
    let none = HashMap::new();
    let one = evaluate::screen(&plan, run, &contacts, &none, now, &mut rand::rng());
    let many = evaluate::screen_parallel(&plan, run, &contacts, &none, now);
    assert_eq!(one, many);
    let refused: HashSet<ContactId> = contacts.iter().step_by(11).map(|c| c.id).collect();
    let ctx = RunContext { run, seq: 17, now };
    let a = evaluate::build(&plan, ctx, &contacts, &one, &refused, &mut rand::rng());
    let b = evaluate::build_parallel(&plan, ctx, &contacts, &many, &refused);
    assert!(a.counts.queued > 3_000, "{:?}", a.counts);
    assert_eq!(a.counts, b.counts);
    assert_eq!(a.seq, b.seq);
    assert_eq!(a.links.len(), b.links.len());
    let key = |m: &QueuedTextMessage| {
        (
            m.id,
            m.contact,
            m.from.clone(),
            m.variant.clone(),
            m.segments,
        )
    };
    assert_eq!(
        a.messages.iter().map(key).collect::<Vec<_>>(),
        b.messages.iter().map(key).collect::<Vec<_>>()
    );
}
