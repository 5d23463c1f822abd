//! The write-coalescing the writer actors use (DeadLetter, DeliveryIntake,
//! and Billing per account): requests that arrive while a write is in flight
//! wait and are written together in the next one, so a burst becomes a few
//! bulk writes. Each request is answered only once its own items are
//! durable. What waits is bounded: past a byte budget a request is refused
//! at once (`StoreError::Overloaded`; the webhook answers 503 and the
//! provider sends it again later).

use crate::store::StoreError;
use actix::prelude::*;
use futures::future::BoxFuture;
use std::collections::HashMap;
use std::hash::Hash;
use tokio::sync::oneshot;

pub type Answer<R> = oneshot::Sender<Result<R, StoreError>>;

pub struct Coalescer<T, R> {
    pending: Vec<(Vec<T>, Answer<R>, usize)>,
    flushing: bool,
    max_batch: usize,
    /// Approximate bytes waiting, and the most allowed to wait.
    pending_bytes: usize,
    max_pending_bytes: usize,
}

impl<T, R> Coalescer<T, R> {
    pub fn new(max_batch: usize) -> Self {
        Self::with_budget(max_batch, usize::MAX)
    }

    /// At most `max_pending_bytes` (by `size_of::<T>()` per item, a lower
    /// bound of what the items hold) may wait.
    pub fn with_budget(max_batch: usize, max_pending_bytes: usize) -> Self {
        Coalescer {
            pending: Vec::new(),
            flushing: false,
            max_batch: max_batch.max(1),
            pending_bytes: 0,
            max_pending_bytes,
        }
    }

    /// Queue one request; the receiver gets its answer. Past the budget the
    /// answer is `Overloaded` at once (nothing is queued).
    pub fn push(&mut self, items: Vec<T>) -> oneshot::Receiver<Result<R, StoreError>> {
        let (tx, rx) = oneshot::channel();
        let bytes = items.len().saturating_mul(std::mem::size_of::<T>().max(1));
        if self.pending_bytes.saturating_add(bytes) > self.max_pending_bytes
            && !self.pending.is_empty()
        {
            let _ = tx.send(Err(StoreError::Overloaded(format!(
                "{} bytes already wait to be written",
                self.pending_bytes
            ))));
            return rx;
        }
        self.pending_bytes += bytes;
        self.pending.push((items, tx, bytes));
        rx
    }

    pub fn pending_bytes(&self) -> usize {
        self.pending_bytes
    }

    /// The next write, unless one is in flight: whole requests, up to about
    /// `max_batch` items (always at least one request).
    pub fn take(&mut self) -> Option<Vec<(Vec<T>, Answer<R>)>> {
        if self.flushing || self.pending.is_empty() {
            return None;
        }
        let mut take = 0;
        let mut n = 0;
        for (items, _, _) in &self.pending {
            if take > 0 && n + items.len() > self.max_batch {
                break;
            }
            n += items.len();
            take += 1;
        }
        self.flushing = true;
        Some(
            self.pending
                .drain(..take)
                .map(|(items, tx, bytes)| {
                    self.pending_bytes -= bytes;
                    (items, tx)
                })
                .collect(),
        )
    }

    /// The write in flight finished.
    pub fn done(&mut self) {
        self.flushing = false;
    }
}

/// An actor that writes through a [`Coalescer`]: it says where its
/// coalescer is and how to write a group of requests (answering each);
/// [`flush`] does the rest (one write at a time, the next one as soon as the
/// last finished).
pub trait CoalescingWriter: Actor<Context = Context<Self>> + Sized {
    type Item: 'static;
    type Answer: 'static;
    fn coalescer(&mut self) -> &mut Coalescer<Self::Item, Self::Answer>;
    /// Write these requests together and answer each once durable.
    fn write(&self, requests: Requests<Self::Item, Self::Answer>) -> BoxFuture<'static, ()>;
}

/// The requests one write serves, each with its answer channel.
pub type Requests<T, R> = Vec<(Vec<T>, Answer<R>)>;

/// Start the next write if one is waiting and none is in flight.
pub fn flush<W: CoalescingWriter>(w: &mut W, ctx: &mut Context<W>) {
    let Some(requests) = w.coalescer().take() else {
        return;
    };
    let fut = w.write(requests);
    ctx.spawn(fut.into_actor(w).map(|_, w, ctx| {
        w.coalescer().done();
        flush(w, ctx);
    }));
}

/// One coalescer per key (Billing: per account), created on first use and
/// dropped once idle.
pub struct Keyed<K, T, R> {
    by_key: HashMap<K, Coalescer<T, R>>,
    max_batch: usize,
}

impl<K: Hash + Eq + Clone, T, R> Keyed<K, T, R> {
    pub fn new(max_batch: usize) -> Self {
        Keyed {
            by_key: HashMap::new(),
            max_batch,
        }
    }

    pub fn push(&mut self, key: K, items: Vec<T>) -> oneshot::Receiver<Result<R, StoreError>> {
        let max = self.max_batch;
        self.by_key
            .entry(key)
            .or_insert_with(|| Coalescer::new(max))
            .push(items)
    }

    pub fn take(&mut self, key: &K) -> Option<Vec<(Vec<T>, Answer<R>)>> {
        self.by_key.get_mut(key)?.take()
    }

    /// The write for `key` finished; forget the key when nothing waits.
    pub fn done(&mut self, key: &K) {
        if let Some(c) = self.by_key.get_mut(key) {
            c.done();
            if c.pending.is_empty() {
                self.by_key.remove(key);
            }
        }
    }
}

/// Await an answer; a dropped sender means the actor stopped.
pub async fn answer<R>(
    rx: oneshot::Receiver<Result<R, StoreError>>,
    who: &'static str,
) -> Result<R, StoreError> {
    rx.await.unwrap_or(Err(StoreError::Stopped(who)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn takes_whole_requests_up_to_the_batch_and_one_write_at_a_time() {
        let mut c: Coalescer<u32, ()> = Coalescer::new(5);
        let _a = c.push(vec![1, 2, 3]);
        let _b = c.push(vec![4, 5, 6]);
        let _d = c.push(vec![7]);
        let first = c.take().unwrap();
        assert_eq!(first.len(), 1, "3 + 3 would pass 5");
        assert!(c.take().is_none(), "a write is in flight");
        c.done();
        let second = c.take().unwrap();
        assert_eq!(second.iter().map(|(v, _)| v.len()).sum::<usize>(), 4);
        c.done();
        assert!(c.take().is_none());
    }

    #[test]
    fn past_the_byte_budget_a_request_is_refused_and_nothing_waits() {
        let item = std::mem::size_of::<u64>();
        let mut c: Coalescer<u64, ()> = Coalescer::with_budget(100, 10 * item);
        let _a = c.push(vec![0; 8]);
        let mut refused = c.push(vec![0; 8]);
        assert!(matches!(
            refused.try_recv(),
            Ok(Err(StoreError::Overloaded(_)))
        ));
        assert_eq!(c.pending_bytes(), 8 * item);
        let taken = c.take().unwrap();
        assert_eq!(taken.len(), 1);
        assert_eq!(c.pending_bytes(), 0);
    }
}
