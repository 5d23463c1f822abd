//! Outbound network rules: what the daemon may connect to when the address
//! comes from a customer (delivery-status webhooks today, Discord webhook
//! URLs next). One module, so every such URL is vetted by the same rule.

pub mod outbound_url;
pub mod signature;
