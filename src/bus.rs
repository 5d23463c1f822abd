//! The event bus between daemons: small, losable hints that make every
//! daemon act within a second or two of a change made anywhere.
//!
//! - [`Event::ListChanged`]: a list's settings (pause, rate) changed in the
//!   store; each daemon's supervisor for it reloads them at once.
//! - [`Event::Queued`]: messages were queued for these lists; each daemon's
//!   Coordinator polls now, and wakes again when the earliest of them falls
//!   due (`due`, when the publisher knows it: deferred messages).
//! - [`Event::SchedulesChanged`]: a schedule was created, resumed or asked to
//!   run now; each daemon's Scheduler looks for due schedules at once.
//! - [`Event::Resync`]: never published; each daemon's own bus hands it to
//!   its subscribers when events may have been missed (the Redis
//!   subscription was lost and is back, or a subscriber lagged): look at
//!   everything again now.
//!
//! While the bus is live ([`EventBus::is_live`]) timers back off much
//! further (coordinator polls up to `coordinator.bus_poll_interval`, list
//! re-reads every `supervisor.bus_list_refresh`): the events carry the
//! news, the timers only bound what a lost event can cost.
//!
//! The store stays the truth: an event carries no setting, only "look
//! again", and a lost event costs only latency (supervisors re-read their
//! list every `supervisor.list_refresh`, coordinators poll on a timer).
//! Backends: Redis pub/sub (shared by all daemons) or an in-process channel
//! (the embedded mode).

use crate::domain::SendingListId;
use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::broadcast;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Event {
    ListChanged {
        list: SendingListId,
    },
    Queued {
        lists: Vec<SendingListId>,
        /// The earliest `not_before` of the queued messages, when known
        /// (absent: the Coordinator reads the queue's next due time again).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        due: Option<crate::domain::Timestamp>,
    },
    SchedulesChanged,
    Resync,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("event bus unavailable: {0}")]
pub struct BusError(pub String);

#[async_trait]
pub trait EventBus: Send + Sync {
    /// Tell every daemon (this one included).
    async fn publish(&self, event: Event) -> Result<(), BusError>;
    /// Events from now on.
    fn subscribe(&self) -> broadcast::Receiver<Event>;
    /// Events published anywhere reach this daemon now, so timers may back
    /// off far (Redis, while subscribed).
    fn is_live(&self) -> bool;
}

pub type SharedBus = Arc<dyn EventBus>;

/// In-process bus (one daemon).
pub struct LocalBus {
    tx: broadcast::Sender<Event>,
}

impl Default for LocalBus {
    fn default() -> Self {
        LocalBus {
            tx: broadcast::channel(1024).0,
        }
    }
}

impl LocalBus {
    pub fn new() -> Self {
        Self::default()
    }
}

#[async_trait]
impl EventBus for LocalBus {
    async fn publish(&self, event: Event) -> Result<(), BusError> {
        // No receiver is not an error: nobody needed the hint.
        let _ = self.tx.send(event);
        Ok(())
    }

    fn subscribe(&self) -> broadcast::Receiver<Event> {
        self.tx.subscribe()
    }

    /// The embedded mode keeps its short timers: its store is also written
    /// directly (tests, tools), with no event.
    fn is_live(&self) -> bool {
        false
    }
}

/// Redis pub/sub on `<prefix>:events`. A background task holds a dedicated
/// subscriber connection, reconnecting with backoff, and fans events out to
/// local subscribers.
pub struct RedisBus {
    pool: deadpool_redis::Pool,
    channel: String,
    tx: broadcast::Sender<Event>,
    timeout: Duration,
    metrics: Arc<crate::metrics::Metrics>,
    /// Subscribed now.
    live: Arc<std::sync::atomic::AtomicBool>,
}

impl RedisBus {
    /// Start the subscriber task on the current runtime.
    pub fn start(
        url: &str,
        pool: deadpool_redis::Pool,
        prefix: &str,
        timeout: Duration,
        metrics: Arc<crate::metrics::Metrics>,
    ) -> Result<Arc<RedisBus>, deadpool_redis::redis::RedisError> {
        let client = deadpool_redis::redis::Client::open(url)?;
        let channel = format!("{prefix}:events");
        let tx = broadcast::channel(1024).0;
        let live = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let bus = Arc::new(RedisBus {
            pool,
            channel: channel.clone(),
            tx: tx.clone(),
            timeout,
            metrics,
            live: live.clone(),
        });
        tokio::spawn(subscriber(client, channel, tx, live));
        Ok(bus)
    }
}

async fn subscriber(
    client: deadpool_redis::redis::Client,
    channel: String,
    tx: broadcast::Sender<Event>,
    live: Arc<std::sync::atomic::AtomicBool>,
) {
    use futures::StreamExt;
    use std::sync::atomic::Ordering;
    let mut subscribed_before = false;
    let mut delay = Duration::from_millis(200);
    let mut failures = 0u32;
    loop {
        let connected = async {
            let mut ps = client.get_async_pubsub().await?;
            ps.subscribe(&channel).await?;
            Ok::<_, deadpool_redis::redis::RedisError>(ps)
        }
        .await;
        match connected {
            Ok(ps) => {
                if failures > 0 {
                    tracing::info!("event bus subscribed again");
                }
                failures = 0;
                delay = Duration::from_millis(200);
                live.store(true, Ordering::Relaxed);
                if subscribed_before {
                    // Events published while we were away are lost.
                    let _ = tx.send(Event::Resync);
                }
                subscribed_before = true;
                let mut stream = ps.into_on_message();
                while let Some(msg) = stream.next().await {
                    let Ok(payload) = msg.get_payload::<String>() else {
                        continue;
                    };
                    match serde_json::from_str::<Event>(&payload) {
                        Ok(e) => {
                            let _ = tx.send(e);
                        }
                        Err(e) => tracing::warn!(error = %e, "ignored an unreadable bus event"),
                    }
                }
                live.store(false, Ordering::Relaxed);
                tracing::warn!("event bus connection lost; resubscribing");
            }
            Err(e) => {
                if failures.is_multiple_of(20) {
                    tracing::warn!(error = %e, "event bus cannot subscribe; retrying");
                }
                failures += 1;
            }
        }
        if tx.receiver_count() == 0 && tx.is_empty() && failures > 1000 {
            return;
        }
        tokio::time::sleep(delay).await;
        delay = (delay * 2).min(Duration::from_secs(5));
    }
}

#[async_trait]
impl EventBus for RedisBus {
    async fn publish(&self, event: Event) -> Result<(), BusError> {
        let payload = serde_json::to_string(&event).map_err(|e| BusError(e.to_string()))?;
        self.metrics.redis_call(crate::metrics::RedisOp::Publish);
        let fut = async {
            let mut conn = self.pool.get().await.map_err(|e| BusError(e.to_string()))?;
            deadpool_redis::redis::cmd("PUBLISH")
                .arg(&self.channel)
                .arg(payload)
                .query_async::<i64>(&mut conn)
                .await
                .map(|_| ())
                .map_err(|e| BusError(e.to_string()))
        };
        tokio::time::timeout(self.timeout, fut)
            .await
            .map_err(|_| BusError("PUBLISH timed out".into()))?
    }

    fn subscribe(&self) -> broadcast::Receiver<Event> {
        self.tx.subscribe()
    }

    fn is_live(&self) -> bool {
        self.live.load(std::sync::atomic::Ordering::Relaxed)
    }
}

/// A subscription as a stream (for `ctx.add_stream`); a lagging receiver
/// skips what it missed and gets one [`Event::Resync`] instead.
pub fn stream(rx: broadcast::Receiver<Event>) -> impl futures::Stream<Item = Event> {
    futures::stream::unfold(rx, |mut rx| async move {
        match rx.recv().await {
            Ok(e) => Some((e, rx)),
            Err(broadcast::error::RecvError::Lagged(_)) => Some((Event::Resync, rx)),
            Err(broadcast::error::RecvError::Closed) => None,
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::StreamExt;

    #[tokio::test]
    async fn a_lagging_subscriber_is_told_to_look_again() {
        let (tx, rx) = broadcast::channel(2);
        for _ in 0..5 {
            let _ = tx.send(Event::SchedulesChanged);
        }
        drop(tx);
        let got: Vec<Event> = stream(rx).collect().await;
        assert_eq!(got.first(), Some(&Event::Resync), "{got:?}");
        assert_eq!(got.len(), 3, "Resync, then the two it kept: {got:?}");
    }

    #[test]
    fn the_in_process_bus_keeps_short_timers() {
        assert!(!LocalBus::new().is_live());
    }
}
