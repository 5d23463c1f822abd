//! Stage 3, finish: the batch's remaining writes, each only after the one
//! before it is durable: the dead letters of messages that were never
//! attempted (answered by DeadLetter once durable), then the requeues
//! (retries, billing backoff, released messages), and only then `complete`,
//! which deletes whatever the batch's token still holds. A message thus
//! leaves the queue only after its outcome is durable (guarantee 2).
//!
//! Crash points: after the dead letters (`worker.dead_lettered`), after the
//! requeues (`worker.requeued`), after the deletion (`worker.completed`).
//! Each step is restartable: the claim is released when the lease lapses,
//! the next claimer's screen finds the dead letters and outcomes already
//! written (done), and messages already requeued are ordinary ready ones.

use super::{Abort, BatchRun, StepError};
use crate::messages::RecordFailures;

impl BatchRun {
    pub(super) async fn finish(&mut self) -> Result<(), Abort> {
        let list = self.list.id();
        if !self.failures.is_empty() {
            let failures = std::mem::take(&mut self.failures);
            let dl = self.d.dead_letter.clone();
            self.durable("record dead letters", || {
                let dl = dl.clone();
                let failures = failures.clone();
                async move {
                    dl.send(RecordFailures(failures))
                        .await?
                        .map_err(StepError::from)
                }
            })
            .await?;
            for f in &failures {
                if let Some(run) = f.original.as_ref().and_then(|m| m.run) {
                    self.runs
                        .entry(run)
                        .or_default()
                        .add_failed(f.reason.as_str(), 1);
                }
            }
            crate::failpoint::hit("worker.dead_lettered");
        }
        if !self.requeues.is_empty() {
            let requeues = std::mem::take(&mut self.requeues);
            let queue = self.d.stores.queue.clone();
            let token = self.token.clone();
            self.durable("requeue", || {
                let queue = queue.clone();
                let token = token.clone();
                let requeues = requeues.clone();
                async move { Ok(queue.requeue(&token, requeues).await?) }
            })
            .await?;
            self.d.metrics.requeued.inc_by(self.report.requeued);
            if let Some(at) = requeues.iter().map(|r| r.not_before).min() {
                // The Coordinator may have backed off past it.
                self.d.instance.wake_at(at);
            }
            crate::failpoint::hit("worker.requeued");
        }
        let queue = self.d.stores.queue.clone();
        let token = self.token.clone();
        self.durable("complete", || {
            let queue = queue.clone();
            let token = token.clone();
            async move { Ok(queue.complete(list, &token).await?) }
        })
        .await?;
        crate::failpoint::hit("worker.completed");
        self.d.metrics.sent.inc_by(self.report.sent);
        Ok(())
    }
}
