//! In-doubt resolution: tests and operators → Resolver.

use actix::Message;

/// → Resolver: look now (as the timer would), even when this daemon is not
/// the recovery leader. Answers what the look did.
#[derive(Message, Debug, Clone, Copy)]
#[rtype(result = "ResolveReport")]
pub struct ResolveNow;

/// What one look did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ResolveReport {
    /// In-doubt messages looked up at their provider.
    pub looked_up: u64,
    /// Settled by the provider's records: it took them (now sent).
    pub taken: u64,
    /// It never took them: queued again (once).
    pub resent: u64,
    /// It never took them and they are too old to send: STALE.
    pub stale: u64,
    /// Left in doubt: no lookup for their provider here, a lookup that
    /// failed, a provider in retry backoff, or the lookup budget spent.
    pub left: u64,
    /// Why a lookup failed, when one did.
    pub error: Option<String>,
}
