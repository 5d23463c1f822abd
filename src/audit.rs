//! `trackly audit`: the guarantees checked against a live store.
//!
//! Violations (each with a count and example ids; any one makes the command
//! exit non-zero):
//!
//! - **two terminal states**: a message sent (`submitted = true`) that also
//!   has an unresolved dead letter;
//! - **failure without its dead letter**: `submitted = false` and no dead
//!   letter;
//! - **done but still queued**: a message with a terminal state still in
//!   the queue, unclaimed or held by a daemon whose lease lapsed (a live
//!   batch completes its own). Recovery's two writes (the outcome, then the
//!   removal) leave this state for an instant; run the audit again if it
//!   shows one or two on a busy system;
//! - **claims of a lapsed lease**: claims, or unanswered attempts, of an
//!   instance whose lease lapsed longer ago than recovery needs (two sweep
//!   intervals), or that never had a lease;
//! - **balance does not reconcile**: for each account,
//!   `balance = funded − charged + refunded`, with `charged` and `refunded`
//!   summed over its attempt records.
//!
//! Notes (not violations): messages in doubt (NO_RESPONSE, unresolved),
//! attempts in flight on live daemons, the backlog per list, lists no live
//! daemon can serve, and the daemons with their lease state.
//!
//! The checks read whole collections (ids and a few fields each): meant for
//! an operator after an incident and for tests, not for a hot path.

use crate::domain::*;
use crate::store::{StoreError, Stores};
use serde::Serialize;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::Duration;

/// How many example ids a finding lists.
const EXAMPLES: usize = 5;

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ViolationKind {
    TwoTerminalStates,
    FailureWithoutDeadLetter,
    DoneButStillQueued,
    ClaimOfLapsedLease,
    UnansweredOfLapsedLease,
    BalanceDoesNotReconcile,
}

impl ViolationKind {
    pub fn describe(&self) -> &'static str {
        match self {
            ViolationKind::TwoTerminalStates => "messages with more than one terminal state",
            ViolationKind::FailureWithoutDeadLetter => "failures without their dead letter",
            ViolationKind::DoneButStillQueued => {
                "messages with an outcome still queued after recovery should have removed them"
            }
            ViolationKind::ClaimOfLapsedLease => {
                "claims held by a daemon whose lease lapsed past recovery's horizon"
            }
            ViolationKind::UnansweredOfLapsedLease => {
                "unanswered attempts of a daemon whose lease lapsed past recovery's horizon"
            }
            ViolationKind::BalanceDoesNotReconcile => {
                "accounts whose balance does not reconcile with charges and refunds"
            }
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Finding<K> {
    pub kind: K,
    pub count: u64,
    /// Up to five ids (messages, instances or accounts).
    pub examples: Vec<String>,
    /// For balances: what was expected against what is stored.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub details: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum NoteKind {
    InDoubt,
    InFlight,
    UnservableList,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Backlog {
    #[serde(serialize_with = "crate::domain::ids::hex")]
    pub list: SendingListId,
    pub queued: u64,
    pub claimed: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DaemonState {
    pub instance: String,
    pub live: bool,
    pub stopped: bool,
    /// Seconds since its last heartbeat (database clock).
    pub heartbeat_age_s: i64,
}

/// In-doubt messages: still open by provider (CM's wait for a report or an
/// operator; Infobip's and Twilio's for the Resolver), and how the others
/// were settled.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct InDoubtCounts {
    pub open_by_provider: BTreeMap<String, u64>,
    pub resolved_by_report: u64,
    pub resolved_by_lookup: u64,
    /// The provider had no record: refunded, and queued again or STALE.
    pub not_taken: u64,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Checked {
    pub queued: u64,
    pub attempt_records: u64,
    pub dead_letters: u64,
    pub accounts: u64,
    pub daemons: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AuditReport {
    pub server_time: Timestamp,
    pub checked: Checked,
    /// What became of messages that fell in doubt.
    pub in_doubt: InDoubtCounts,
    pub violations: Vec<Finding<ViolationKind>>,
    pub notes: Vec<Finding<NoteKind>>,
    pub backlog: Vec<Backlog>,
    pub daemons: Vec<DaemonState>,
}

impl AuditReport {
    pub fn is_clean(&self) -> bool {
        self.violations.is_empty()
    }

    /// How many messages or accounts a violation kind concerns (0 if none).
    pub fn count(&self, kind: ViolationKind) -> u64 {
        self.violations
            .iter()
            .find(|v| v.kind == kind)
            .map_or(0, |v| v.count)
    }

    pub fn note(&self, kind: NoteKind) -> u64 {
        self.notes
            .iter()
            .find(|n| n.kind == kind)
            .map_or(0, |n| n.count)
    }

    /// The report for a terminal.
    pub fn text(&self) -> String {
        let mut out = String::new();
        let c = &self.checked;
        out.push_str(&format!(
            "trackly audit at {} (database clock)\nchecked: {} queued, {} attempt records, {} dead letters, {} accounts, {} daemons\n",
            self.server_time.to_rfc3339(),
            c.queued,
            c.attempt_records,
            c.dead_letters,
            c.accounts,
            c.daemons
        ));
        if self.violations.is_empty() {
            out.push_str("violations: none\n");
        } else {
            out.push_str(&format!("violations: {}\n", self.violations.len()));
            for v in &self.violations {
                out.push_str(&format!(
                    "  VIOLATION {}: {} (e.g. {})\n",
                    v.kind.describe(),
                    v.count,
                    v.examples.join(", ")
                ));
                for d in &v.details {
                    out.push_str(&format!("    {d}\n"));
                }
            }
        }
        out.push_str("to look at:\n");
        let note = |k: NoteKind| self.notes.iter().find(|n| n.kind == k);
        match note(NoteKind::InDoubt) {
            Some(n) => out.push_str(&format!(
                "  in doubt (NO_RESPONSE, unresolved; may have been delivered): {} (e.g. {})\n",
                n.count,
                n.examples.join(", ")
            )),
            None => out.push_str("  in doubt: none\n"),
        }
        let d = &self.in_doubt;
        if !d.open_by_provider.is_empty()
            || d.resolved_by_report + d.resolved_by_lookup + d.not_taken > 0
        {
            let open: Vec<String> = d
                .open_by_provider
                .iter()
                .map(|(p, n)| format!("{p} {n}"))
                .collect();
            out.push_str(&format!(
                "  in doubt by provider: {}; resolved as sent by a report {}, by the provider's records {}; not taken (refunded, resent or stale) {}\n",
                if open.is_empty() { "none".to_string() } else { open.join(", ") },
                d.resolved_by_report,
                d.resolved_by_lookup,
                d.not_taken
            ));
        }
        if let Some(n) = note(NoteKind::InFlight) {
            out.push_str(&format!(
                "  attempts in flight on live daemons: {}\n",
                n.count
            ));
        }
        match note(NoteKind::UnservableList) {
            Some(n) => out.push_str(&format!(
                "  lists no live daemon can serve: {} ({})\n",
                n.count,
                n.details.join(", ")
            )),
            None => out.push_str("  lists no live daemon can serve: none\n"),
        }
        if self.backlog.is_empty() {
            out.push_str("  backlog: none\n");
        }
        for b in &self.backlog {
            out.push_str(&format!(
                "  backlog: list {} has {} queued ({} claimed)\n",
                b.list, b.queued, b.claimed
            ));
        }
        for d in &self.daemons {
            out.push_str(&format!(
                "  daemon {}: {} (last heartbeat {} s ago)\n",
                d.instance,
                if d.stopped {
                    "stopped"
                } else if d.live {
                    "live"
                } else {
                    "lease lapsed"
                },
                d.heartbeat_age_s
            ));
        }
        out
    }
}

fn finding<K>(kind: K, ids: Vec<String>) -> Option<Finding<K>> {
    if ids.is_empty() {
        return None;
    }
    Some(Finding {
        kind,
        count: ids.len() as u64,
        examples: ids.into_iter().take(EXAMPLES).collect(),
        details: vec![],
    })
}

/// Check the invariants. `recovery_grace`: how long after a lease lapses
/// recovery may take before its leftovers count as violations (two sweep
/// intervals is what a working recovery needs).
pub async fn audit(stores: &Stores, recovery_grace: Duration) -> Result<AuditReport, StoreError> {
    let server_now = stores.leases.server_time().await?;
    let leases = stores.leases.leases().await?;
    let queue = stores.queue.scan().await?;
    let sent = stores.sent.scan().await?;
    let letters = stores.dead_letters.scan().await?;
    let accounts = stores.accounts.accounts().await?;

    let grace = crate::clock::chrono_dur(recovery_grace);
    let lease_of: HashMap<&str, &DaemonLease> =
        leases.iter().map(|l| (l.instance.as_str(), l)).collect();
    let live = |owner: &str| lease_of.get(owner).is_some_and(|l| l.live_at(server_now));
    // Lapsed long enough ago that recovery should have acted.
    let overdue = |owner: &str| match lease_of.get(owner) {
        None => true,
        Some(l) if l.stopped => false,
        Some(l) => l.heartbeat_at + chrono::Duration::milliseconds(l.ttl_ms) + grace < server_now,
    };

    let unresolved: HashSet<MessageId> = letters
        .iter()
        .filter(|(_, _, resolved)| !resolved)
        .map(|(id, _, _)| *id)
        .collect();
    let sent_by_id: HashMap<MessageId, &crate::store::SentEntry> =
        sent.iter().map(|e| (e.id, e)).collect();

    let mut two = vec![];
    let mut no_letter = vec![];
    let mut in_doubt = vec![];
    let mut in_flight = 0u64;
    let mut unanswered_lapsed: Vec<String> = vec![];
    let mut doubt = InDoubtCounts::default();
    for e in &sent {
        if e.in_doubt {
            *doubt
                .open_by_provider
                .entry(e.provider.as_str().to_string())
                .or_insert(0) += 1;
        }
        match e.resolved_by.as_deref() {
            Some(crate::store::RESOLVED_BY_REPORT) => doubt.resolved_by_report += 1,
            Some(crate::store::RESOLVED_BY_LOOKUP) if e.not_taken => doubt.not_taken += 1,
            Some(crate::store::RESOLVED_BY_LOOKUP) => doubt.resolved_by_lookup += 1,
            _ => {}
        }
    }
    for e in &sent {
        match e.submitted {
            Some(true) if unresolved.contains(&e.id) => two.push(e.id.to_hex()),
            Some(false) if !unresolved.contains(&e.id) => no_letter.push(e.id.to_hex()),
            Some(false) if e.in_doubt => in_doubt.push(e.id.to_hex()),
            None if live(&e.owner) => in_flight += 1,
            None if overdue(&e.owner) => unanswered_lapsed.push(e.id.to_hex()),
            _ => {}
        }
    }

    let terminal = |id: &MessageId| {
        unresolved.contains(id) || sent_by_id.get(id).is_some_and(|e| e.submitted.is_some())
    };
    let mut done_queued = vec![];
    let mut lapsed_claims: BTreeMap<String, u64> = BTreeMap::new();
    let mut backlog: BTreeMap<SendingListId, (u64, u64)> = BTreeMap::new();
    for q in &queue {
        let b = backlog.entry(q.list).or_default();
        b.0 += 1;
        if q.claim_owner.is_some() {
            b.1 += 1;
        }
        let held_live = q.claim_owner.as_deref().is_some_and(live);
        if terminal(&q.id) && !held_live {
            done_queued.push(q.id.to_hex());
        }
        if let Some(owner) = q.claim_owner.as_deref()
            && !live(owner)
            && overdue(owner)
        {
            *lapsed_claims.entry(owner.to_string()).or_insert(0) += 1;
        }
    }

    // Balances: funded - charged + refunded.
    let mut charged: HashMap<AccountId, (i64, i64)> = HashMap::new();
    for e in &sent {
        let c = charged.entry(e.account).or_default();
        c.0 += e.cost.0;
        if e.refunded {
            c.1 += e.cost.0;
        }
    }
    let mut mismatched = vec![];
    let mut balance_details = vec![];
    for a in &accounts {
        let (ch, re) = charged.get(&a.id).copied().unwrap_or_default();
        let expected = Money(a.funded.0 - ch + re);
        if expected != a.balance {
            mismatched.push(a.id.to_hex());
            balance_details.push(format!(
                "account {}: funded {} - charged {} + refunded {} = {}, stored balance {}",
                a.id,
                a.funded,
                Money(ch),
                Money(re),
                expected,
                a.balance
            ));
        }
    }

    let mut violations: Vec<Finding<ViolationKind>> = [
        finding(ViolationKind::TwoTerminalStates, two),
        finding(ViolationKind::FailureWithoutDeadLetter, no_letter),
        finding(ViolationKind::DoneButStillQueued, done_queued),
        Some(Finding {
            kind: ViolationKind::ClaimOfLapsedLease,
            count: lapsed_claims.values().sum(),
            examples: lapsed_claims.keys().take(EXAMPLES).cloned().collect(),
            details: vec![],
        })
        .filter(|f| f.count > 0),
        finding(ViolationKind::UnansweredOfLapsedLease, unanswered_lapsed),
    ]
    .into_iter()
    .flatten()
    .collect();
    if let Some(mut f) = finding(ViolationKind::BalanceDoesNotReconcile, mismatched) {
        f.details = balance_details;
        violations.push(f);
    }

    let unservable = crate::actors::recovery::unservable_lists(stores, server_now).await?;
    let mut notes: Vec<Finding<NoteKind>> = [
        finding(NoteKind::InDoubt, in_doubt),
        (in_flight > 0).then(|| Finding {
            kind: NoteKind::InFlight,
            count: in_flight,
            examples: vec![],
            details: vec![],
        }),
    ]
    .into_iter()
    .flatten()
    .collect();
    if !unservable.is_empty() {
        notes.push(Finding {
            kind: NoteKind::UnservableList,
            count: unservable.len() as u64,
            examples: unservable.iter().map(|u| u.list.to_hex()).collect(),
            details: unservable
                .iter()
                .map(|u| format!("{} needs {}", u.list, u.provider))
                .collect(),
        });
    }

    let mut daemons: Vec<DaemonState> = leases
        .iter()
        .map(|l| DaemonState {
            instance: l.instance.clone(),
            live: l.live_at(server_now),
            stopped: l.stopped,
            heartbeat_age_s: l.age_at(server_now).num_seconds(),
        })
        .collect();
    daemons.sort_by(|a, b| a.instance.cmp(&b.instance));

    Ok(AuditReport {
        in_doubt: doubt,
        server_time: server_now,
        checked: Checked {
            queued: queue.len() as u64,
            attempt_records: sent.len() as u64,
            dead_letters: letters.len() as u64,
            accounts: accounts.len() as u64,
            daemons: leases.len() as u64,
        },
        violations,
        notes,
        backlog: backlog
            .into_iter()
            .map(|(list, (queued, claimed))| Backlog {
                list,
                queued,
                claimed,
            })
            .collect(),
        daemons,
    })
}

/// `trackly audit`: connect as `serve` would (same configuration and
/// environment overrides) and check. Store connection errors are errors.
pub async fn run(cfg: &crate::config::Config) -> Result<AuditReport, crate::serve::SetupError> {
    if cfg.store.backend == crate::config::StoreBackend::Memory {
        return Err(crate::serve::SetupError::NothingPersisted);
    }
    let metrics = std::sync::Arc::new(crate::metrics::Metrics::new());
    let stores = crate::serve::connect_store(cfg, metrics).await?;
    let grace = cfg.recovery.sweep_interval.get() * 2;
    Ok(audit(&stores, grace).await?)
}
