//! # Billing
//!
//! Owns: every change to an account balance, and a short-lived cache of
//! account prices.
//!
//! Handles: [`Charge`]: the batch's cost (segments × the account's price per
//! segment) is debited with one conditional `$inc` that refuses to go below
//! zero. When the balance cannot cover the whole batch, the longest prefix
//! it covers is debited instead and the rest is reported `blocked` (the
//! worker puts those back with the billing backoff). [`Refund`] credits back
//! messages that were paid for and not sent.
//!
//! Restart: the price cache is rebuilt on demand; balances live in the store.

use crate::domain::{AccountId, MessageId, Money};
use crate::messages::{Charge, Charged, Refund};
use crate::store::{AccountStore, Debit, StoreError};
use actix::prelude::*;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;

pub struct Billing {
    store: Arc<dyn AccountStore>,
    price_ttl: Duration,
    prices: HashMap<AccountId, (Money, Instant)>,
}

impl Billing {
    pub fn new(store: Arc<dyn AccountStore>, price_ttl: Duration) -> Self {
        Billing {
            store,
            price_ttl,
            prices: HashMap::new(),
        }
    }
}

impl Actor for Billing {
    type Context = Context<Self>;
}

/// Debit `items` at `price`: everything, or else the longest affordable
/// prefix. Retries when a concurrent debit moved the balance in between.
async fn charge(
    store: &dyn AccountStore,
    account: AccountId,
    price: Money,
    items: Vec<(MessageId, u32)>,
) -> Result<Charged, StoreError> {
    let costs: Vec<Money> = items
        .iter()
        .map(|(_, seg)| price.times(*seg as u64))
        .collect();
    let total = Money(costs.iter().map(|c| c.0).sum());
    let mut take = items.len();
    let mut amount = total;
    for _ in 0..5 {
        match store.debit(account, amount).await? {
            Debit::Done { .. } => {
                let paid = items[..take]
                    .iter()
                    .zip(&costs)
                    .map(|((id, _), c)| (*id, *c))
                    .collect();
                let blocked = items[take..].iter().map(|(id, _)| *id).collect();
                return Ok(Charged { paid, blocked });
            }
            Debit::Insufficient { balance } => {
                // The longest prefix the balance covers.
                let mut sum = 0i64;
                take = 0;
                for c in &costs {
                    if sum + c.0 > balance.0 {
                        break;
                    }
                    sum += c.0;
                    take += 1;
                }
                if take == 0 {
                    break;
                }
                amount = Money(sum);
            }
        }
    }
    Ok(Charged {
        paid: vec![],
        blocked: items.iter().map(|(id, _)| *id).collect(),
    })
}

impl Handler<Charge> for Billing {
    type Result = ResponseActFuture<Self, Result<Charged, StoreError>>;

    fn handle(&mut self, msg: Charge, _: &mut Self::Context) -> Self::Result {
        let store = self.store.clone();
        let cached = self
            .prices
            .get(&msg.account)
            .filter(|(_, at)| at.elapsed() < self.price_ttl)
            .map(|(p, _)| *p);
        let account = msg.account;
        let fut = async move {
            let price = match cached {
                Some(p) => p,
                None => {
                    store
                        .get_account(account)
                        .await?
                        .ok_or_else(|| StoreError::NotFound(format!("account {account}")))?
                        .price_per_segment
                }
            };
            let charged = charge(store.as_ref(), account, price, msg.items).await?;
            Ok((price, charged))
        };
        Box::pin(fut.into_actor(self).map(move |res, act, _| {
            res.map(|(price, charged)| {
                act.prices.insert(account, (price, Instant::now()));
                charged
            })
        }))
    }
}

impl Handler<Refund> for Billing {
    type Result = ResponseFuture<Result<(), StoreError>>;

    fn handle(&mut self, msg: Refund, _: &mut Self::Context) -> Self::Result {
        let store = self.store.clone();
        Box::pin(async move {
            if msg.amount.0 > 0 {
                store.credit(msg.account, msg.amount).await?;
            }
            Ok(())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Stores;

    #[tokio::test]
    async fn charges_the_affordable_prefix() {
        let stores = Stores::memory();
        let now = chrono::Utc::now();
        let acc = crate::seed::account(Money(25_000), Money(10_000), now);
        stores.accounts.insert_account(acc.clone()).await.unwrap();
        let ids: Vec<MessageId> = (0..3).map(|_| MessageId::new()).collect();
        let items = vec![(ids[0], 1), (ids[1], 1), (ids[2], 2)];
        let c = charge(stores.accounts.as_ref(), acc.id, Money(10_000), items)
            .await
            .unwrap();
        assert_eq!(
            c.paid,
            vec![(ids[0], Money(10_000)), (ids[1], Money(10_000))]
        );
        assert_eq!(c.blocked, vec![ids[2]]);
        let left = stores
            .accounts
            .get_account(acc.id)
            .await
            .unwrap()
            .unwrap()
            .balance;
        assert_eq!(left, Money(5_000));
    }
}
