//! Anyone → Alerts: what happened, for Discord alerts. Every event is
//! fire-and-forget through an [`AlertSink`]: a bounded `try_send` that
//! never waits, so alerts can never block or slow the send path; an event
//! that does not fit in the mailbox is dropped and counted
//! (`alerts_dropped_total`). Senders send one event per batch or write,
//! never one per message.

use crate::domain::{
    AccountId, DeliveryState, FailureReason, MessageId, ScheduleId, ScheduleRunId, SendingListId,
};
use crate::metrics::Metrics;
use actix::prelude::*;
use std::sync::Arc;

/// One dead letter, as alerts see it (never the number or the body).
#[derive(Debug, Clone, PartialEq)]
pub struct FailureItem {
    pub reason: FailureReason,
    pub provider_code: Option<String>,
}

#[derive(Message, Debug, Clone)]
#[rtype(result = "()")]
pub enum AlertEvent {
    /// Worker (record) and DeadLetter → Alerts: durable outcomes of one
    /// list's messages: taken by the provider, dead-lettered (with reason
    /// and provider code), and transient answers (retried: nothing sent).
    Outcomes {
        account: AccountId,
        list: SendingListId,
        sent: u64,
        transient: u64,
        failures: Vec<FailureItem>,
    },
    /// DeliveryIntake → Alerts: delivery reports that changed a record to
    /// a failed final state, with the provider's error code. Their lists
    /// are read by the Alerts actor, off the intake's path.
    ReportsFailed {
        items: Vec<(MessageId, DeliveryState, Option<String>)>,
    },
    /// Worker (attempt) → Alerts: the account's balance did not cover
    /// these messages; they wait for the billing backoff.
    BillingBlocked {
        account: AccountId,
        list: SendingListId,
        messages: u64,
    },
    /// Recovery → Alerts: the list has due messages and no live daemon has
    /// credentials for its provider (`provider`: the provider key, e.g.
    /// `infobip:default`, never a credential).
    ListUnservable {
        list: SendingListId,
        provider: String,
    },
    /// Scheduler → Alerts: a run ended `failed` (validation or timing),
    /// nothing queued.
    RunFailed {
        account: AccountId,
        list: SendingListId,
        schedule: ScheduleId,
        run: ScheduleRunId,
        reason: String,
    },
}

/// Daemon shutdown → Alerts: write the counts still in memory to the
/// shared windows now. Answers once written (or given up).
#[derive(Message, Debug, Clone, Copy)]
#[rtype(result = "()")]
pub struct FlushAlerts;

/// Where alert events go: the Alerts actor, or nowhere (alerts off).
#[derive(Clone, Default)]
pub struct AlertSink {
    to: Option<(Recipient<AlertEvent>, Arc<Metrics>)>,
}

impl AlertSink {
    /// Alerts off: every event is ignored.
    pub fn off() -> AlertSink {
        AlertSink { to: None }
    }

    pub fn new(to: Recipient<AlertEvent>, metrics: Arc<Metrics>) -> AlertSink {
        AlertSink {
            to: Some((to, metrics)),
        }
    }

    /// Hand `event` over without waiting; dropped (and counted) when the
    /// Alerts actor's mailbox is full or it stopped.
    pub fn emit(&self, event: AlertEvent) {
        if let Some((to, metrics)) = &self.to
            && to.try_send(event).is_err()
        {
            metrics.alerts_dropped.inc();
        }
    }
}

impl std::fmt::Debug for AlertSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.to.is_some() {
            "AlertSink(on)"
        } else {
            "AlertSink(off)"
        })
    }
}
