//! Outbound network rules: what the daemon may connect to when the address
//! comes from a customer (delivery-status webhooks, Discord webhook URLs).
//! One module, so every such URL is vetted by the same rule; `discord.rs`
//! is Discord's webhook format and the meaning of its answers.

pub mod discord;
pub mod outbound_url;
pub mod signature;
