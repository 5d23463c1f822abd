//! The write-coalescing both writer actors use (DeadLetter, DeliveryIntake):
//! requests that arrive while a write is in flight wait and are written
//! together in the next one, so a burst becomes a few bulk writes. Each
//! request is answered only once its own items are durable.

use crate::store::StoreError;
use tokio::sync::oneshot;

pub type Answer<R> = oneshot::Sender<Result<R, StoreError>>;

pub struct Coalescer<T, R> {
    pending: Vec<(Vec<T>, Answer<R>)>,
    flushing: bool,
    max_batch: usize,
}

impl<T, R> Coalescer<T, R> {
    pub fn new(max_batch: usize) -> Self {
        Coalescer {
            pending: Vec::new(),
            flushing: false,
            max_batch: max_batch.max(1),
        }
    }

    /// Queue one request; the receiver gets its answer.
    pub fn push(&mut self, items: Vec<T>) -> oneshot::Receiver<Result<R, StoreError>> {
        let (tx, rx) = oneshot::channel();
        self.pending.push((items, tx));
        rx
    }

    /// The next write, unless one is in flight: whole requests, up to about
    /// `max_batch` items (always at least one request).
    pub fn take(&mut self) -> Option<Vec<(Vec<T>, Answer<R>)>> {
        if self.flushing || self.pending.is_empty() {
            return None;
        }
        let mut take = 0;
        let mut n = 0;
        for (items, _) in &self.pending {
            if take > 0 && n + items.len() > self.max_batch {
                break;
            }
            n += items.len();
            take += 1;
        }
        self.flushing = true;
        Some(self.pending.drain(..take).collect())
    }

    /// The write in flight finished.
    pub fn done(&mut self) {
        self.flushing = false;
    }
}

/// Await an answer; a dropped sender means the actor stopped.
pub async fn answer<R>(
    rx: oneshot::Receiver<Result<R, StoreError>>,
    who: &str,
) -> Result<R, StoreError> {
    rx.await
        .unwrap_or_else(|_| Err(StoreError::Other(format!("{who} stopped"))))
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
}
