//! The actors' protocol: every message, who sends it, who handles it, and
//! what its result means. Pure data; readable in one sitting.

pub mod alerts;
pub mod billing;
pub mod control;
pub mod dead_letter;
pub mod delivery;
pub mod dispatch;
pub mod links;
pub mod rate_limit;
pub mod resolve;
pub mod schedule;
pub mod stats;
pub mod webhooks;

pub use alerts::*;
pub use billing::*;
pub use control::*;
pub use dead_letter::*;
pub use delivery::*;
pub use dispatch::*;
pub use links::*;
pub use rate_limit::*;
pub use resolve::*;
pub use schedule::*;
pub use stats::*;
pub use webhooks::*;
