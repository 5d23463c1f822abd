//! Builders for accounts, lists, contacts and queued messages: used by the
//! demo, the benchmark and the tests, so that all three exercise the same
//! shapes of data.

use std::collections::BTreeMap;
use trackly::domain::*;
use trackly::store::{StoreResult, Stores};

pub fn account(balance: Money, price_per_segment: Money, now: Timestamp) -> Account {
    Account {
        id: AccountId::new(),
        name: "Demo Shop".into(),
        balance,
        funded: balance,
        price_per_segment,
        delivery_webhook: None,
        discord_webhook_url: None,
        filter_bots: false,
        created_at: now,
    }
}

pub fn list(
    account: AccountId,
    provider: ProviderSettings,
    rate_per_minute: u32,
    now: Timestamp,
) -> SendingList {
    SendingList {
        id: SendingListId::new(),
        account,
        name: "Main list".into(),
        provider,
        from_numbers: vec!["+15550000001".into(), "+15550000002".into()],
        rate_limit_per_minute: rate_per_minute,
        cooldown_secs: 0,
        blocked_words: vec![],
        tcpa_window: TcpaWindow::default(),
        default_time_zone: None,
        help_reply: None,
        status: ListStatus::Active,
        discord_webhook_url: None,
        created_at: now,
    }
}

/// A valid (per libphonenumber), unique New York number for index `i`:
/// +1 212 followed by an exchange of 200 to 999 (8,000,000 numbers before
/// they repeat).
pub fn phone(i: u64) -> E164 {
    E164::parse(&format!("+1212{}", 2_000_000 + (i % 8_000_000))).unwrap_or_else(|_| {
        // Unreachable for the range above; keep a valid fallback anyway.
        E164::parse("+12125550123").unwrap_or_else(|_| unreachable!())
    })
}

pub fn contact(account: AccountId, list: SendingListId, i: u64, now: Timestamp) -> Contact {
    Contact {
        id: ContactId::new(),
        account,
        phone: phone(i),
        time_zone: "America/New_York".into(),
        subscriptions: vec![Subscription {
            list,
            subscribed: true,
            changed_at: now,
        }],
        blocked: false,
        in_workflow: false,
        tags: vec![],
        custom_fields: BTreeMap::new(),
        last_sent: vec![],
        created_at: now,
    }
}

/// A ready message for `contact` on `list`, due at `send_at`.
pub fn queued(
    list: &SendingList,
    contact: &Contact,
    body: &str,
    send_at: Timestamp,
) -> QueuedTextMessage {
    QueuedTextMessage {
        id: MessageId::new(),
        account: list.account,
        sending_list: list.id,
        contact: contact.id,
        schedule: None,
        run: None,
        creative: None,
        variant: None,
        send_type: SendType::Campaign,
        from: list.from_numbers.first().cloned().unwrap_or_default(),
        to: contact.phone.clone(),
        body: body.to_string(),
        segments: sms::segments(body),
        encoding: None,
        time_zone: None,
        defer_outside_window: false,
        send_at,
        not_before: send_at,
        claimed_by: None,
        claimed_at: None,
        claim_owner: None,
        claim_count: 0,
        attempts: 0,
        billing_blocked_since: None,
        last_error: None,
        queued_at: send_at,
    }
}

/// What [`campaign`] created.
pub struct Campaign {
    pub account: Account,
    pub list: SendingList,
    pub contacts: Vec<Contact>,
    pub messages: Vec<QueuedTextMessage>,
}

/// Seed an account, a list, `n` subscribed contacts and one due message for
/// each, in batches of 1,000.
pub async fn campaign(
    stores: &Stores,
    n: u64,
    provider: ProviderSettings,
    rate_per_minute: u32,
    balance: Money,
    now: Timestamp,
) -> StoreResult<Campaign> {
    let account = account(balance, Money::from_micros(7_500), now);
    stores.accounts.insert_account(account.clone()).await?;
    let list = list(account.id, provider, rate_per_minute, now);
    stores.lists.insert_list(list.clone()).await?;
    let contacts: Vec<Contact> = (0..n)
        .map(|i| contact(account.id, list.id, i, now))
        .collect();
    let mut messages = Vec::with_capacity(n as usize);
    for chunk in contacts.chunks(1000) {
        stores.contacts.insert_contacts(chunk.to_vec()).await?;
        let batch: Vec<QueuedTextMessage> = chunk
            .iter()
            .map(|c| {
                queued(
                    &list,
                    c,
                    "Hi! Our spring sale starts today: 20% off everything.",
                    now,
                )
            })
            .collect();
        stores.queue.enqueue(batch.clone()).await?;
        messages.extend(batch);
    }
    Ok(Campaign {
        account,
        list,
        contacts,
        messages,
    })
}

/// A creative with `(key, body, weight)` variants.
pub fn creative(
    account: AccountId,
    variants: &[(&str, &str, u32)],
    track_links: bool,
    now: Timestamp,
) -> MessageCreative {
    MessageCreative {
        id: CreativeId::new(),
        account,
        name: "creative".into(),
        variants: variants
            .iter()
            .map(|(key, body, weight)| Variant {
                key: (*key).into(),
                body: (*body).into(),
                weight: *weight,
            })
            .collect(),
        track_links,
        created_at: now,
    }
}

/// An audience of `account` with `filter`.
pub fn audience(
    account: AccountId,
    name: &str,
    filter: AudienceFilter,
    now: Timestamp,
) -> Audience {
    Audience {
        id: AudienceId::new(),
        account,
        name: name.into(),
        filter,
        created_at: now,
    }
}

/// An active schedule, due at `at` (a one-off unless `kind` says otherwise).
pub fn schedule(
    list: &SendingList,
    audiences: Vec<AudienceId>,
    creative: CreativeId,
    kind: ScheduleKind,
    next_run_at: Option<Timestamp>,
    now: Timestamp,
) -> Schedule {
    Schedule {
        id: ScheduleId::new(),
        account: list.account,
        name: "campaign".into(),
        sending_list: list.id,
        audiences,
        creative,
        kind,
        exclude_in_workflow: false,
        defer_outside_window: false,
        variant_selection: VariantSelection::Weighted,
        status: ScheduleStatus::Active,
        next_run_at,
        created_at: now,
    }
}

/// A run of `schedule` at `occurrence`, evaluating, owned by `owner`.
pub fn run(schedule: &Schedule, occurrence: Timestamp, owner: &str, now: Timestamp) -> ScheduleRun {
    ScheduleRun {
        id: ScheduleRunId::new(),
        schedule: schedule.id,
        account: schedule.account,
        sending_list: schedule.sending_list,
        creative: schedule.creative,
        occurrence,
        triggered_by: owner.into(),
        owner: owner.into(),
        status: RunStatus::Evaluating,
        reason: None,
        cursor: None,
        seq: 0,
        audience: 0,
        eligible: 0,
        queued: 0,
        skipped: BTreeMap::new(),
        variants: BTreeMap::new(),
        cost: Money::default(),
        started_at: now,
        finished_at: None,
        stats: Default::default(),
    }
}

/// A TCPA window that is open in `zone` from three hours before `now` to
/// nine hours after it: tests and benchmarks on the wall clock get the same
/// verdict whatever the time of day they run at.
pub fn window_open_around(now: Timestamp, zone: &str) -> TcpaWindow {
    let tz: chrono_tz::Tz = zone.parse().unwrap_or(chrono_tz::Tz::UTC);
    let local = now.with_timezone(&tz);
    let minute = |t: chrono::DateTime<chrono_tz::Tz>| {
        use chrono::Timelike;
        (t.hour() * 60 + t.minute()) as u16
    };
    TcpaWindow {
        start_minute: minute(local - chrono::Duration::hours(3)),
        end_minute: minute(local + chrono::Duration::hours(9)),
    }
}
