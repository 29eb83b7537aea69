//! A per-sender rate limit: at most `limit` messages per sender in each fixed window of
//! `window_secs` seconds; beyond, `delay` the sender until the window ends, or `deny`.
//!
//! ```toml
//! [config]
//! limit = "30"         # default 30
//! window_secs = "60"   # default 60
//! action = "delay"     # or "deny"; default "delay"
//! ```
//!
//! Time comes from the messages' timestamps (plugins have no clock). Counters live in guest
//! memory; at most `max_senders` (default 100000) are tracked, the oldest windows dropped first.

use std::collections::HashMap;

use siren_plugin_sdk::Config;
use siren_plugin_sdk::filter::{FilterDecision, MessageFilter, RoutingMeta};

#[derive(PartialEq)]
enum Action {
    Delay,
    Deny,
}

struct RateLimit {
    limit: u32,
    window: u64,
    action: Action,
    max_senders: usize,
    /// Per sender: the start of its current window and the messages counted in it.
    senders: HashMap<String, (u64, u32)>,
}

impl MessageFilter for RateLimit {
    fn init(config: &Config) -> Result<Self, String> {
        let action = match config.get("action").unwrap_or("delay") {
            "delay" => Action::Delay,
            "deny" => Action::Deny,
            other => return Err(format!("action = {other:?}: use \"delay\" or \"deny\"")),
        };
        let window: u64 = config.parse("window_secs", 60)?;
        let limit: u32 = config.parse("limit", 30)?;
        if window == 0 || limit == 0 {
            return Err("limit and window_secs must be at least 1".into());
        }
        Ok(RateLimit {
            limit,
            window,
            action,
            max_senders: config.parse("max_senders", 100_000)?,
            senders: HashMap::new(),
        })
    }

    fn check(&mut self, meta: &RoutingMeta) -> FilterDecision {
        let now = meta.timestamp;
        let window_start = now - now % self.window;
        if self.senders.len() >= self.max_senders && !self.senders.contains_key(&meta.sender) {
            self.senders.retain(|_, (start, _)| *start == window_start);
        }
        let entry = self
            .senders
            .entry(meta.sender.clone())
            .or_insert((window_start, 0));
        if entry.0 != window_start {
            *entry = (window_start, 0);
        }
        if entry.1 < self.limit {
            entry.1 += 1;
            return FilterDecision::Allow;
        }
        match self.action {
            Action::Delay => {
                let wait = (window_start + self.window).saturating_sub(now);
                FilterDecision::Delay(u32::try_from(wait.max(1)).unwrap_or(u32::MAX))
            }
            Action::Deny => FilterDecision::Deny(format!(
                "{} sent more than {} messages in {} s",
                meta.sender, self.limit, self.window
            )),
        }
    }
}

siren_plugin_sdk::export_message_filter!(RateLimit);
