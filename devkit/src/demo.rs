//! `cargo demo` (`devkit demo`): a whole campaign in one process with nothing
//! installed: the in-memory store, the in-process rate limiter and the fake
//! provider (realistic latency, a small failure rate).
//!
//! It seeds what an operator would have: an account, a list with a TCPA
//! window and a one-day cooldown, contacts in two overlapping audiences (a
//! share unsubscribed, cooling down from an earlier campaign, with invalid
//! numbers, or in a time zone where it is night), a creative with two
//! variants, a placeholder and a tracked link, and a one-off schedule due
//! now. Then it prints the schedule's explain (the dry run), lets the
//! Scheduler trigger it, shows the sending with a progress bar and prints
//! the summary: the run's skipped contacts by reason, variants, what was
//! sent, failed and billed.

use crate::seed;
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Arc;
use std::time::{Duration, Instant};
use trackly::app::{Daemon, DaemonParts};
use trackly::campaign::explain::Explain;
use trackly::clock::{Clock, SystemClock};
use trackly::config::{Config, Dur, RateLimitBackend, StoreBackend};
use trackly::domain::contact::LastSent;
use trackly::domain::*;
use trackly::messages::{ExplainSchedule, LookNow};
use trackly::providers::ProviderRegistry;
use trackly::providers::fake::{FakeProvider, FakeSettings};
use trackly::ratelimit::local::LocalPermits;
use trackly::store::Stores;

/// Demo knobs (the CLI's flags).
#[derive(Debug, Clone)]
pub struct DemoOptions {
    /// Contacts of the account (the union of the two audiences).
    pub contacts: u64,
    pub rate_per_minute: u32,
    pub latency: Duration,
    pub reject_rate: f64,
    pub transient_rate: f64,
    /// No explain, no progress bar (tests).
    pub quiet: bool,
    /// Send through this provider's adapter to an in-process mock provider
    /// over HTTP (reports come back to the daemon's webhooks), instead of
    /// the in-process fake.
    pub via_mock: Option<ProviderKind>,
    /// Serve HTTP (the admin API and the dashboard) on this address, with
    /// an operator and a read-only token, and print the dashboard's URL.
    pub dashboard: Option<String>,
}

impl Default for DemoOptions {
    fn default() -> Self {
        DemoOptions {
            contacts: 10_000,
            rate_per_minute: 500_000,
            latency: Duration::from_millis(20),
            reject_rate: 0.005,
            transient_rate: 0.01,
            quiet: false,
            via_mock: None,
            dashboard: None,
        }
    }
}

/// The seeded shares: one contact in 50 replied STOP, one in 50 was
/// messaged on the list an hour ago (inside its one-day cooldown), one in
/// 100 has a number that cannot be sent to, one in 100 lives where it is
/// night now. One in five has no first name (the placeholder's default).
fn unsubscribed(k: u64) -> bool {
    k % 50 == 7
}
fn cooling_down(k: u64) -> bool {
    k % 50 == 13
}
fn invalid_number(k: u64) -> bool {
    k % 100 == 21
}
fn night_zone(k: u64) -> bool {
    k % 100 == 42
}

/// What the demo did.
#[derive(Debug, Clone)]
pub struct DemoSummary {
    pub explain: Explain,
    pub run: ScheduleRun,
    pub sent: u64,
    pub failed: Vec<(FailureReason, u64)>,
    pub duplicates_at_provider: usize,
    /// From the trigger to the queue drained.
    pub duration: Duration,
    pub charged: Money,
    /// Through the mock: the provider, and delivery reports received.
    pub via: Option<ProviderKind>,
    pub delivery: Option<trackly::store::DeliveryCounts>,
}

impl DemoSummary {
    pub fn msg_per_sec(&self) -> f64 {
        (self.sent + self.failed.iter().map(|(_, n)| n).sum::<u64>()) as f64
            / self.duration.as_secs_f64().max(1e-9)
    }

    pub fn table(&self) -> String {
        let mut out = String::new();
        let line = |k: &str, v: String| format!("  {k:<34} {v:>12}\n");
        let r = &self.run;
        out.push_str("\nTrackly demo: summary\n");
        out.push_str(&line("run", r.status.as_str().to_string()));
        out.push_str(&line("contacts in the audiences", r.audience.to_string()));
        for (reason, n) in &r.skipped {
            out.push_str(&line(&format!("skipped: {reason}"), n.to_string()));
        }
        out.push_str(&line("messages queued", r.queued.to_string()));
        for (key, v) in &r.variants {
            out.push_str(&line(
                &format!("  variant {key}"),
                format!("{} msg", v.messages),
            ));
        }
        out.push_str(&line("sent (accepted by provider)", self.sent.to_string()));
        for (reason, n) in &self.failed {
            out.push_str(&line(&format!("failed: {reason}"), n.to_string()));
        }
        if let (Some(kind), Some(d)) = (self.via, self.delivery) {
            out.push_str(&line(
                "provider (mock, over HTTP)",
                kind.as_str().to_string(),
            ));
            out.push_str(&line("delivered (reports)", d.delivered.to_string()));
            out.push_str(&line("undelivered (reports)", d.undelivered.to_string()));
            out.push_str(&line("awaiting a report", d.unknown.to_string()));
        }
        out.push_str(&line("sent twice", self.duplicates_at_provider.to_string()));
        out.push_str(&line(
            "duration (trigger to sent)",
            format!("{:.2} s", self.duration.as_secs_f64()),
        ));
        out.push_str(&line(
            "throughput",
            format!("{:.0} msg/s", self.msg_per_sec()),
        ));
        out.push_str(&line("billed", self.charged.to_string()));
        out
    }
}

/// The explain as the operator reads it before sending.
pub fn explain_table(e: &Explain) -> String {
    let mut out = String::new();
    let line = |k: &str, v: String| format!("  {k:<34} {v:>12}\n");
    out.push_str("\nTrackly demo: explain (a dry run, nothing queued)\n");
    for a in &e.audiences {
        out.push_str(&line(
            &format!("audience \"{}\"", a.name),
            a.contacts.to_string(),
        ));
    }
    out.push_str(&line("unique contacts", e.unique_contacts.to_string()));
    for (reason, n) in &e.skipped {
        out.push_str(&line(&format!("would skip: {reason}"), n.to_string()));
    }
    out.push_str(&line("eligible", e.eligible.to_string()));
    for v in &e.variants {
        let enc: Vec<String> = v
            .encodings
            .iter()
            .map(|(k, n)| format!("{k} {n}"))
            .collect();
        let _ = write!(
            out,
            "{}",
            line(
                &format!("  variant {} ({})", v.key, enc.join(", ")),
                format!("{} msg", v.messages)
            )
        );
        out.push_str(&line(
            &format!("    {} segments, cost", v.segments),
            v.cost.to_string(),
        ));
    }
    out.push_str(&line("cost", e.cost.to_string()));
    out.push_str(&line(
        "balance",
        format!(
            "{}{}",
            e.balance,
            if e.affordable { "" } else { " (short)" }
        ),
    ));
    out.push_str(&line(
        "send time at the list's rate",
        format!("{:.1} s at {}/min", e.send_seconds, e.rate_per_minute),
    ));
    out.push_str(&line(
        "turn after the window closes",
        e.outside_window_at_rate.to_string(),
    ));
    out
}

pub fn demo_config(o: &DemoOptions) -> Config {
    let mut c = Config::default();
    c.store.backend = StoreBackend::Memory;
    c.rate_limit.backend = RateLimitBackend::Local;
    c.coordinator.poll_interval = Dur::millis(100);
    c.coordinator.max_poll_interval = Dur::secs(1);
    c.worker.retry_base = Dur::millis(500);
    c.providers.fake.enabled = true;
    c.providers.fake.latency = Dur(o.latency);
    c.providers.fake.reject_rate = o.reject_rate;
    c.providers.fake.transient_rate = o.transient_rate;
    c
}

/// Seed the campaign: account, list, contacts, two audiences, a creative
/// and a paused one-off schedule due now (activated after the explain).
pub async fn seed_demo(
    stores: &Stores,
    o: &DemoOptions,
    provider: ProviderSettings,
    now: Timestamp,
) -> Result<Schedule, String> {
    let err = |e: trackly::store::StoreError| e.to_string();
    let price = Money::from_micros(7_500);
    let account = seed::account(price.times(o.contacts * 4), price, now);
    stores
        .accounts
        .insert_account(account.clone())
        .await
        .map_err(err)?;
    let mut list = seed::list(account.id, provider, o.rate_per_minute, now);
    // Open now in New York whatever the hour the demo runs at (so the
    // night-zone share is the only one outside it), a one-day cooldown.
    list.tcpa_window = seed::window_open_around(now, "America/New_York");
    list.cooldown_secs = 86_400;
    stores.lists.insert_list(list.clone()).await.map_err(err)?;
    let names = ["Ann", "Bo", "Chen", "Dara", "Eli", "Femi", "Gus", "Hana"];
    // Audience "Spring shoppers": the first 60%; "VIP": the last 50%.
    let spring_end = o.contacts * 6 / 10;
    let vip_start = o.contacts / 2;
    let mut k = 0u64;
    while k < o.contacts {
        let n = (o.contacts - k).min(1_000);
        let contacts: Vec<Contact> = (k..k + n)
            .map(|i| {
                let mut c = seed::contact(account.id, list.id, i, now);
                if i < spring_end {
                    c.tags.push("spring".into());
                }
                if i >= vip_start {
                    c.tags.push("vip".into());
                }
                if i % 5 != 0 {
                    c.custom_fields
                        .insert("first_name".into(), names[(i % 8) as usize].into());
                }
                if unsubscribed(i) {
                    c.subscriptions[0].subscribed = false;
                }
                if cooling_down(i) {
                    c.last_sent.push(LastSent {
                        list: list.id,
                        at: now - chrono::Duration::hours(1),
                    });
                }
                if invalid_number(i) {
                    // Area code 200 does not exist: well-formed, not valid.
                    if let Ok(p) = E164::parse(&format!("+1200{:07}", i % 10_000_000)) {
                        c.phone = p;
                    }
                }
                if night_zone(i) {
                    c.time_zone = "Asia/Tokyo".into();
                }
                c
            })
            .collect();
        stores
            .contacts
            .insert_contacts(contacts)
            .await
            .map_err(err)?;
        k += n;
    }
    let tagged = |name: &str, tag: &str| {
        seed::audience(
            account.id,
            name,
            AudienceFilter {
                list: Some(list.id),
                tags_any: vec![tag.into()],
                ..Default::default()
            },
            now,
        )
    };
    let (spring, vip) = (tagged("Spring shoppers", "spring"), tagged("VIP", "vip"));
    for a in [&spring, &vip] {
        stores
            .contacts
            .insert_audience(a.clone())
            .await
            .map_err(err)?;
    }
    let creative = seed::creative(
        account.id,
        &[
            (
                "A",
                "Hi {{first_name|there}}! Our spring sale starts today: 20% off everything at https://shop.example.com/spring Reply STOP to opt out.",
                50,
            ),
            (
                "B",
                "{{first_name|Friend}}, free shipping on every order until midnight: https://shop.example.com/spring Reply STOP to opt out.",
                50,
            ),
        ],
        true,
        now,
    );
    stores
        .schedules
        .insert_creative(creative.clone())
        .await
        .map_err(err)?;
    let mut schedule = seed::schedule(
        &list,
        vec![spring.id, vip.id],
        creative.id,
        ScheduleKind::Once { at: now },
        Some(now),
        now,
    );
    schedule.name = "Spring sale".into();
    schedule.status = ScheduleStatus::Paused;
    stores
        .schedules
        .insert_schedule(schedule.clone())
        .await
        .map_err(err)?;
    Ok(schedule)
}

/// Run the demo on the current actix system.
pub async fn run(o: DemoOptions) -> Result<DemoSummary, String> {
    let (summary, served) = run_serving(o).await?;
    if let Some(d) = served {
        d.daemon.stop().await;
    }
    Ok(summary)
}

/// The daemon a `--dashboard` demo leaves serving, and how to sign in.
pub struct Served {
    pub daemon: crate::harness::HttpDaemon,
    pub url: String,
    pub operator_token: String,
    pub readonly_token: String,
}

impl Served {
    pub fn banner(&self) -> String {
        format!(
            "Dashboard: {url}\n  operator token:  {op}\n  read-only token: {ro}\n  (trackly ctl --url {base} --token {op} schedules shows the same)",
            url = self.url,
            op = self.operator_token,
            ro = self.readonly_token,
            base = self.daemon.public_url,
        )
    }
}

/// Secrets of a dashboard demo: the mock's credentials and the two admin
/// tokens (from `TRACKLY_ADMIN_TOKEN` / `TRACKLY_READONLY_TOKEN` when set,
/// otherwise random).
fn dashboard_secrets() -> (trackly::config::Secrets, String, String) {
    let token = |var: &str| {
        std::env::var(var)
            .ok()
            .filter(|t| !t.trim().is_empty())
            .unwrap_or_else(|| {
                // 128 bits from the thread's CSPRNG (ids would be guessable).
                use rand::Rng as _;
                let mut rng = rand::rng();
                format!("{:016x}{:016x}", rng.next_u64(), rng.next_u64())
            })
    };
    let (op, ro) = (
        token("TRACKLY_ADMIN_TOKEN"),
        token("TRACKLY_READONLY_TOKEN"),
    );
    let mut s = crate::harness::mock_secrets();
    s.admin_token = Some(trackly::telemetry::Secret::new(op.clone()));
    s.readonly_token = Some(trackly::telemetry::Secret::new(ro.clone()));
    (s, op, ro)
}

/// Run the demo; with `dashboard`, the daemon and its HTTP server are
/// returned still serving.
pub async fn run_serving(o: DemoOptions) -> Result<(DemoSummary, Option<Served>), String> {
    let cfg = demo_config(&o);
    let stores = Stores::memory();
    let clock = Arc::new(SystemClock);
    let now = clock.now();
    let provider = o
        .via_mock
        .map_or(ProviderSettings::Fake, crate::harness::settings_for);
    let schedule = seed_demo(&stores, &o, provider, now).await?;
    let account = schedule.account;
    let balance_before = balance(&stores, account).await?;
    // Either the in-process fake, or the real adapter to a mock over HTTP.
    let mut tokens = None;
    let (daemon, fake, http) = match (o.via_mock, &o.dashboard) {
        (None, Some(bind)) => {
            // The in-process fake, behind an HTTP server for the dashboard.
            let fake = Arc::new(FakeProvider::new(FakeSettings::from(&cfg.providers.fake)));
            let (secrets, op, ro) = dashboard_secrets();
            tokens = Some((op, ro));
            let h = crate::harness::HttpDaemon::start_on(
                bind,
                cfg,
                stores.clone(),
                Arc::new(LocalPermits::new()),
                clock,
                Some(secrets),
                None,
                Some(fake.clone()),
            )
            .map_err(|e| {
                format!("cannot serve the dashboard on {bind}: {e} (try --bind 127.0.0.1:0)")
            })?;
            (h.daemon.clone(), Some(fake), Some(h))
        }
        (None, None) => {
            let fake = Arc::new(FakeProvider::new(FakeSettings::from(&cfg.providers.fake)));
            let daemon = Daemon::start(DaemonParts {
                config: Arc::new(cfg),
                daemon_id: "demo".into(),
                stores: stores.clone(),
                permits: Arc::new(LocalPermits::new()),
                providers: ProviderRegistry::new().with_fake(fake.clone()),
                clock,
                bus: Arc::new(trackly::bus::LocalBus::new()),
                secrets: Arc::new(trackly::config::Secrets::default()),
                metrics: Arc::new(trackly::metrics::Metrics::new()),
            });
            (daemon, Some(fake), None)
        }
        (Some(_), _) => {
            let mock = crate::mock::MockConfig {
                latency: o.latency,
                reject_rate: o.reject_rate,
                // Transient failures the provider documents as "not
                // processed" (429): retried. A 5xx would be in doubt.
                throttle_rate: o.transient_rate,
                report_delay: Duration::from_millis(500),
                delivered_ratio: 0.96,
                failed_ratio: 0.04,
                ..Default::default()
            };
            let secrets = match &o.dashboard {
                Some(_) => {
                    let (secrets, op, ro) = dashboard_secrets();
                    tokens = Some((op, ro));
                    secrets
                }
                None => crate::harness::mock_secrets(),
            };
            let h = crate::harness::HttpDaemon::start_on(
                o.dashboard.as_deref().unwrap_or("127.0.0.1:0"),
                cfg,
                stores.clone(),
                Arc::new(LocalPermits::new()),
                clock,
                Some(secrets),
                Some(mock),
                None,
            )
            .map_err(|e| format!("cannot start the daemon and the mock provider: {e}"))?;
            (h.daemon.clone(), None, Some(h))
        }
    };
    if let (Some(h), Some((op, ro))) = (&http, &tokens)
        && !o.quiet
    {
        println!(
            "\nDashboard: {}/dashboard/ (operator token {op}, read-only token {ro}); watch the campaign there.",
            h.public_url
        );
    }
    let scheduler = daemon
        .scheduler
        .clone()
        .ok_or("the demo daemon has no scheduler")?;
    // 1. The explain: what the campaign will do, before it does anything.
    let explain = scheduler
        .send(ExplainSchedule {
            schedule: schedule.id,
        })
        .await
        .map_err(|e| format!("the scheduler did not answer: {e}"))?
        .map_err(|e| format!("explain failed: {e}"))?;
    if !o.quiet {
        println!("{}", explain_table(&explain));
    }
    // 2. The go: activate the schedule and let the Scheduler trigger it.
    stores
        .schedules
        .set_schedule_status(schedule.id, ScheduleStatus::Active, Some(now))
        .await
        .map_err(|e| e.to_string())?;
    let start = Instant::now();
    let mut report = None;
    for _ in 0..200 {
        let r = scheduler
            .send(LookNow)
            .await
            .map_err(|e| format!("the scheduler did not answer: {e}"))?;
        if r.error.is_none() && r.started + r.resumed > 0 {
            report = Some(r);
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    if report.is_none() && runs(&stores, schedule.id).await?.is_empty() {
        return Err("the scheduler did not trigger the campaign".into());
    }
    // 3. The sending, with a progress bar over the eligible contacts.
    let expected = explain.eligible;
    let bar = if o.quiet {
        indicatif::ProgressBar::hidden()
    } else {
        let b = indicatif::ProgressBar::new(expected);
        if let Ok(style) = indicatif::ProgressStyle::with_template(
            "{spinner} [{elapsed_precise}] {bar:40} {pos}/{len} messages ({per_sec}) {msg}",
        ) {
            b.set_style(style);
        }
        b
    };
    let mut sent_done: Option<Duration> = None;
    let run = loop {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let done = daemon.metrics.done();
        bar.set_position(done.min(expected));
        let reports = daemon.metrics.reports_received.get();
        let run = runs(&stores, schedule.id).await?.into_iter().next();
        let evaluating = run
            .as_ref()
            .is_none_or(|r| r.status == RunStatus::Evaluating);
        bar.set_message(format!(
            "{}sent {}, failed {}, reports {reports}",
            if evaluating { "queuing, " } else { "" },
            daemon.metrics.sent(),
            daemon.metrics.failed_total()
        ));
        let depth = stores.queue.depth().await.map_err(|e| e.to_string())?;
        if let Some(r) = &run
            && r.status != RunStatus::Evaluating
            && depth == 0
            && done >= r.queued
            && sent_done.is_none()
        {
            sent_done = Some(start.elapsed());
        }
        if let (Some(sent), Some(r)) = (sent_done, &run) {
            // Through the mock, wait for the delivery reports too.
            let settled = match o.via_mock {
                None => true,
                Some(_) => {
                    let c = stores
                        .sent
                        .delivery_counts(schedule.sending_list)
                        .await
                        .map_err(|e| e.to_string())?;
                    c.unknown == 0 || start.elapsed() > sent + Duration::from_secs(30)
                }
            };
            if settled {
                break r.clone();
            }
        }
        if start.elapsed() > Duration::from_secs(600) {
            return Err(format!(
                "demo did not finish in 10 minutes ({done} of {expected} done)"
            ));
        }
    };
    let duration = sent_done.unwrap_or_else(|| start.elapsed());
    bar.finish();
    let failed = stores
        .dead_letters
        .count_by_reason()
        .await
        .map_err(|e| e.to_string())?
        .into_iter()
        .collect();
    let balance_after = balance(&stores, account).await?;
    let delivery = match o.via_mock {
        Some(_) => Some(
            stores
                .sent
                .delivery_counts(schedule.sending_list)
                .await
                .map_err(|e| e.to_string())?,
        ),
        None => None,
    };
    let duplicates = match (&fake, &http) {
        (Some(f), _) => f.duplicates().len(),
        (None, Some(h)) => h.mock.as_ref().map_or(0, |m| m.state.duplicates().len()),
        _ => 0,
    };
    let served = match (http, tokens) {
        (Some(h), Some((operator_token, readonly_token))) => Some(Served {
            url: format!("{}/dashboard/", h.public_url),
            daemon: h,
            operator_token,
            readonly_token,
        }),
        (Some(h), None) => {
            h.stop().await;
            None
        }
        (None, _) => None,
    };
    let summary = DemoSummary {
        explain,
        run,
        sent: daemon.metrics.sent(),
        failed,
        duplicates_at_provider: duplicates,
        duration,
        charged: Money(balance_before.0 - balance_after.0),
        via: o.via_mock,
        delivery,
    };
    Ok((summary, served))
}

async fn runs(stores: &Stores, schedule: ScheduleId) -> Result<Vec<ScheduleRun>, String> {
    stores
        .schedules
        .runs_of(schedule, 10)
        .await
        .map_err(|e| e.to_string())
}

async fn balance(stores: &Stores, account: AccountId) -> Result<Money, String> {
    Ok(stores
        .accounts
        .get_account(account)
        .await
        .map_err(|e| e.to_string())?
        .map(|a| a.balance)
        .unwrap_or(Money::ZERO))
}

/// The shares the demo seeds, by skip reason (what its explain and run
/// must show; the tests check it).
pub fn expected_skips(contacts: u64) -> BTreeMap<&'static str, u64> {
    let mut m = BTreeMap::new();
    for k in 0..contacts {
        let reason = if unsubscribed(k) {
            "unsubscribed"
        } else if invalid_number(k) {
            "invalid_number"
        } else if night_zone(k) {
            "quiet_hours"
        } else if cooling_down(k) {
            "cooldown"
        } else {
            continue;
        };
        *m.entry(reason).or_default() += 1;
    }
    m
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The demo's campaign, small and quiet: the explain and the run agree
    /// with the seeded shares, every eligible contact gets one message, none
    /// twice, and the bill matches what was sent.
    #[actix_rt::test]
    async fn the_demo_campaign_explains_then_sends_each_eligible_contact_once() {
        let o = DemoOptions {
            contacts: 2_000,
            latency: Duration::from_millis(1),
            reject_rate: 0.0,
            transient_rate: 0.0,
            quiet: true,
            ..Default::default()
        };
        let s = run(o).await.expect("demo runs");
        let skips: BTreeMap<String, u64> = expected_skips(2_000)
            .into_iter()
            .map(|(k, v)| (k.to_string(), v))
            .collect();
        let skipped_total: u64 = skips.values().sum();
        assert_eq!(s.explain.audiences.len(), 2);
        assert_eq!(
            s.explain
                .audiences
                .iter()
                .map(|a| a.contacts)
                .collect::<Vec<_>>(),
            vec![1_200, 1_000]
        );
        assert_eq!(s.explain.unique_contacts, 2_000);
        assert_eq!(s.explain.skipped, skips);
        assert_eq!(s.explain.eligible, 2_000 - skipped_total);
        assert_eq!(s.run.status, RunStatus::Queued, "{:?}", s.run.reason);
        assert_eq!(s.run.skipped, skips);
        assert_eq!(s.run.queued, s.explain.eligible);
        assert_eq!(s.run.variants.len(), 2);
        assert_eq!(s.sent, s.run.queued);
        assert_eq!(s.duplicates_at_provider, 0);
        assert!(s.failed.is_empty(), "{:?}", s.failed);
        assert_eq!(s.charged, s.explain.cost);
    }

    /// `--dashboard`: after the campaign the daemon still serves the
    /// dashboard, and the printed tokens have their roles.
    #[actix_rt::test]
    async fn the_dashboard_demo_keeps_serving_after_the_campaign() {
        let o = DemoOptions {
            contacts: 200,
            latency: Duration::from_millis(1),
            quiet: true,
            dashboard: Some("127.0.0.1:0".into()),
            ..Default::default()
        };
        let (s, served) = run_serving(o).await.expect("demo runs");
        let served = served.expect("still serving");
        assert_eq!(s.run.status, RunStatus::Queued);
        assert!(served.banner().contains(&served.url));
        assert_ne!(served.operator_token, served.readonly_token);
        let http = reqwest::Client::new();
        let page = http.get(&served.url).send().await.expect("dashboard");
        assert_eq!(page.status().as_u16(), 200);
        for (token, role) in [
            (&served.operator_token, "operator"),
            (&served.readonly_token, "read-only"),
        ] {
            let v: serde_json::Value = http
                .get(format!("{}/api/v1/whoami", served.daemon.public_url))
                .bearer_auth(token)
                .send()
                .await
                .expect("whoami")
                .json()
                .await
                .expect("JSON");
            assert_eq!(v["role"], role, "{v}");
        }
        served.daemon.stop().await;
    }
}
