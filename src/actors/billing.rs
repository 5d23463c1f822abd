//! # Billing
//!
//! One per daemon. Owns: every change to an account balance, each written
//! in one store transaction with the records that justify it, and a
//! short-lived cache of account prices.
//!
//! Handles:
//! - [`Charge`]: fills each attempt record's `cost` (segments × the
//!   account's price per segment) and runs the charge-and-record
//!   transaction: the longest prefix the balance covers is debited and its
//!   attempt records inserted together. A message is thus charged exactly
//!   when its attempt record exists: a crash can lose neither half.
//! - [`Settle`]: outcomes; a failure's outcome, its dead letter and its
//!   refund (flagged `refunded` on the record, so at most once) in one
//!   transaction.
//!
//! Requests for one account that arrive while a write for it is in flight
//! are written together in the next one, so the six workers of a list do not
//! fight over the account document (transactions on one document conflict).
//!
//! Restart: the price cache is rebuilt on demand; everything else lives in
//! the store. An unanswered request fails its sender, whose batch is then
//! released and re-claimed (the existing records keep it from being charged
//! or sent twice).

use super::coalesce::{Keyed, answer};
use crate::domain::{AccountId, MessageId, Money};
use crate::messages::{Charge, Settle};
use crate::store::{AccountStore, AttemptsBegun, SentStore, Settled, Settlement, StoreError};
use actix::prelude::*;
use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;

pub struct Billing {
    accounts: Arc<dyn AccountStore>,
    sent: Arc<dyn SentStore>,
    price_ttl: Duration,
    /// Price per segment by account, and when it was read.
    prices: HashMap<AccountId, (Money, Instant)>,
    /// Charges waiting for their account's write in flight.
    charges: Keyed<AccountId, crate::domain::MessageSent, AttemptsBegun>,
    /// Settlements waiting likewise.
    settlements: Keyed<AccountId, Settlement, Settled>,
}

impl Billing {
    pub fn new(
        accounts: Arc<dyn AccountStore>,
        sent: Arc<dyn SentStore>,
        price_ttl: Duration,
        max_batch: usize,
    ) -> Self {
        Billing {
            accounts,
            sent,
            price_ttl,
            prices: HashMap::new(),
            charges: Keyed::new(max_batch),
            settlements: Keyed::new(max_batch),
        }
    }

    fn cached_price(&self, account: AccountId) -> Option<Money> {
        self.prices
            .get(&account)
            .filter(|(_, at)| at.elapsed() < self.price_ttl)
            .map(|(p, _)| *p)
    }

    fn flush_charges(&mut self, account: AccountId, ctx: &mut Context<Self>) {
        let Some(requests) = self.charges.take(&account) else {
            return;
        };
        let cached = self.cached_price(account);
        let accounts = self.accounts.clone();
        let sent = self.sent.clone();
        let fut = async move {
            let price = match cached {
                Some(p) => Ok(p),
                None => accounts.get_account(account).await.and_then(|a| {
                    a.map(|a| a.price_per_segment)
                        .ok_or_else(|| StoreError::NotFound(format!("account {account}")))
                }),
            };
            let mut all = Vec::new();
            let mut answers = Vec::with_capacity(requests.len());
            for (records, tx) in requests {
                answers.push((records.iter().map(|r| r.id).collect::<Vec<_>>(), tx));
                all.extend(records);
            }
            let result = match price {
                Ok(p) => {
                    for r in &mut all {
                        r.cost = p.times(r.segments as u64);
                    }
                    sent.begin_attempts(account, all).await.map(|b| (p, b))
                }
                Err(e) => Err(e),
            };
            for (ids, tx) in answers {
                let _ = tx.send(result.clone().map(|(_, b)| only_charge(&b, &ids)));
            }
            result.ok().map(|(p, _)| p)
        };
        ctx.spawn(fut.into_actor(self).map(move |price, act, ctx| {
            if let Some(p) = price {
                act.prices.insert(account, (p, Instant::now()));
            }
            act.charges.done(&account);
            act.flush_charges(account, ctx);
        }));
    }

    fn flush_settlements(&mut self, account: AccountId, ctx: &mut Context<Self>) {
        let Some(requests) = self.settlements.take(&account) else {
            return;
        };
        let sent = self.sent.clone();
        let fut = async move {
            let mut all = Vec::new();
            let mut answers = Vec::with_capacity(requests.len());
            for (items, tx) in requests {
                let ids: Vec<MessageId> = items.iter().map(Settlement::id).collect();
                let sent_items = items
                    .iter()
                    .filter(|i| matches!(i, Settlement::Sent { .. }))
                    .count() as u64;
                answers.push((ids, sent_items, tx));
                all.extend(items);
            }
            let result = sent.settle(all).await;
            if let Ok(s) = &result
                && s.refunded.0 > 0
            {
                tracing::debug!(account = %account, refunded = %s.refunded, "refunded");
            }
            for (ids, sent_items, tx) in answers {
                let _ = tx.send(result.clone().map(|s| only_settled(&s, &ids, sent_items)));
            }
        };
        ctx.spawn(fut.into_actor(self).map(move |_, act, ctx| {
            act.settlements.done(&account);
            act.flush_settlements(account, ctx);
        }));
    }
}

/// One request's share of a coalesced charge.
fn only_charge(b: &AttemptsBegun, ids: &[MessageId]) -> AttemptsBegun {
    let mine: HashSet<&MessageId> = ids.iter().collect();
    let keep = |v: &Vec<MessageId>| v.iter().filter(|i| mine.contains(i)).copied().collect();
    AttemptsBegun {
        recorded: keep(&b.recorded),
        already_attempted: keep(&b.already_attempted),
        unaffordable: keep(&b.unaffordable),
        balance: b.balance,
    }
}

/// One request's share of a coalesced settlement (`sent` counts the whole
/// write's, capped at the request's own).
fn only_settled(s: &Settled, ids: &[MessageId], sent_items: u64) -> Settled {
    let mine: HashSet<&MessageId> = ids.iter().collect();
    let keep = |v: &Vec<MessageId>| v.iter().filter(|i| mine.contains(i)).copied().collect();
    Settled {
        sent: s.sent.min(sent_items),
        failed: keep(&s.failed),
        unsent: keep(&s.unsent),
        refunded: s.refunded,
    }
}

impl Actor for Billing {
    type Context = Context<Self>;
}

impl Handler<Charge> for Billing {
    type Result = ResponseFuture<Result<AttemptsBegun, StoreError>>;

    fn handle(&mut self, msg: Charge, ctx: &mut Self::Context) -> Self::Result {
        if msg.attempts.is_empty() {
            return Box::pin(async { Ok(AttemptsBegun::default()) });
        }
        let rx = self.charges.push(msg.account, msg.attempts);
        self.flush_charges(msg.account, ctx);
        Box::pin(answer(rx, "billing"))
    }
}

impl Handler<Settle> for Billing {
    type Result = ResponseFuture<Result<Settled, StoreError>>;

    fn handle(&mut self, msg: Settle, ctx: &mut Self::Context) -> Self::Result {
        if msg.items.is_empty() {
            return Box::pin(async { Ok(Settled::default()) });
        }
        let rx = self.settlements.push(msg.account, msg.items);
        self.flush_settlements(msg.account, ctx);
        Box::pin(answer(rx, "billing"))
    }
}
