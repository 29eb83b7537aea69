//! What the server counts, for Prometheus (`prometheus-client`): counters and histograms updated
//! where things happen, and gauges sampled from the server's state at each scrape
//! ([`Metrics::sample`]). Served by [`http`] when `[metrics] enabled`.
//!
//! Names follow Prometheus' conventions: the `siren_` prefix, base units (`_seconds`,
//! `_bytes`), `_total` on counters. Label values come from small fixed sets (error names,
//! mechanism names, reasons, link states) or the configuration (peer server names, bounded by
//! `[federation] max_outbox_peers`); never a user name, a device or a key.

pub mod http;

use std::sync::atomic::AtomicU64;
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use crate::shared::Shared;

/// A label set of one `reason`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct Reason {
    /// Why.
    pub reason: String,
}

/// A login's mechanism and result.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct Login {
    /// The mechanism (`PLAIN`, `X509`, …).
    pub mechanism: String,
    /// `success`, `failure` or `rate_limited`.
    pub result: String,
}

/// A peer server.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct Peer {
    /// The peer's server name.
    pub peer: String,
}

/// How often the totals of all queues are computed at most (each walk reads every queue).
pub const QUEUE_SAMPLE_EVERY: Duration = Duration::from_secs(30);

/// A kind of limit.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct Limit {
    /// Which limit refused (a fixed set: see [`LIMITS`]).
    pub limit: String,
}

/// Every kind of limit counted in `siren_limit_refusals_total`.
pub const LIMITS: [&str; 13] = [
    "max_connections",
    "unauthenticated_server_wide",
    "unauthenticated_per_address",
    "handshake_rate",
    "login_concurrency",
    "login_failures",
    "send_rate",
    "queue_quota",
    "signal_rate",
    "subscriptions",
    "directory_changes",
    "directory_entries",
    "pending_approvals",
];

/// A plugin, by its configured name.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct Plugin {
    /// The `[[plugins]] name`.
    pub plugin: String,
}

/// A link state.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct State {
    /// `up`, `opening` or `down`.
    pub state: String,
}

/// Every metric of the server.
pub struct Metrics {
    registry: Registry,
    /// Connections accepted.
    pub connections: Counter,
    /// Connections open now.
    pub connections_open: Gauge,
    /// Connections refused before the handshake, by reason.
    pub connections_refused: Family<Reason, Counter>,
    /// Logins by mechanism and result.
    pub logins: Family<Login, Counter>,
    /// Envelopes committed to a queue (accepted from a `send`).
    pub messages_accepted: Counter,
    /// Queue items written to a live device.
    pub messages_delivered: Counter,
    /// Queue items written to a live device before they were durable (the online fast path;
    /// also counted in `messages_delivered`).
    pub messages_delivered_early: Counter,
    /// Queue items acknowledged by their device before any sync of the store was needed
    /// (written without a sync; crate::deferred).
    pub messages_acknowledged_unsynced: Counter,
    /// Queue items a device acknowledged (removed).
    pub messages_acknowledged: Counter,
    /// Queue items removed by the TTL sweeper.
    pub messages_expired: Counter,
    /// Error answers to clients, by error name (refused sends, limits, bad requests…).
    pub errors: Family<Reason, Counter>,
    /// Time to commit one batch of envelopes.
    pub commit_seconds: Histogram,
    /// Time to verify one envelope's sender signature.
    pub verify_seconds: Histogram,
    /// Sessions live now (sampled).
    sessions_live: Gauge,
    /// Nodes of the cluster heard from in the last 10 s, this one included (0: not a cluster).
    cluster_nodes: Gauge,
    /// Federation links by state (sampled).
    links: Family<State, Gauge>,
    /// Envelopes waiting in each peer's outbox (sampled).
    outbox_items: Family<Peer, Gauge>,
    /// Age of the oldest envelope in each peer's outbox (sampled).
    outbox_oldest: Family<Peer, Gauge<f64, AtomicU64>>,
    /// Requests and connections refused by a limit, by kind.
    limit_refusals: Family<Limit, Counter>,
    /// Calls into each plugin (sampled from the plugin host's counters).
    plugin_calls: Family<Plugin, Counter>,
    /// Failed calls into each plugin (trap, deadline, memory, guest error).
    plugin_errors: Family<Plugin, Counter>,
    /// Calls into each plugin interrupted at their CPU deadline.
    plugin_deadline_hits: Family<Plugin, Counter>,
    /// Serialises the sampling of counters (two scrapes at once would add a delta twice).
    sampling: std::sync::Mutex<()>,
    /// When all queues were last walked for `queue_items` and `queue_oldest` (a walk reads
    /// every queue's head, so it happens at most every [`QUEUE_SAMPLE_EVERY`]).
    queue_sampled: std::sync::Mutex<Option<std::time::Instant>>,
    /// Stored sessions that are not live (resumable after a disconnection), sampled with the
    /// queues.
    sessions_resumable: Gauge,
    /// Items waiting in all queues together (devices' and outboxes'), sampled.
    queue_items: Gauge,
    /// Age of the oldest item waiting in any queue, sampled.
    queue_oldest: Gauge<f64, AtomicU64>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// Every metric, registered, at zero.
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("siren");
        let m = Metrics {
            connections: Counter::default(),
            connections_open: Gauge::default(),
            connections_refused: Family::default(),
            logins: Family::default(),
            messages_accepted: Counter::default(),
            messages_delivered: Counter::default(),
            messages_delivered_early: Counter::default(),
            messages_acknowledged_unsynced: Counter::default(),
            messages_acknowledged: Counter::default(),
            messages_expired: Counter::default(),
            errors: Family::default(),
            // 50 µs … ~3.3 s, doubling: a RocksDB group commit is ~0.2 ms, PostgreSQL's a few.
            commit_seconds: Histogram::new(exponential_buckets(0.000_05, 2.0, 17)),
            // 5 µs … ~20 ms: one Ed25519 check is ~30 µs.
            verify_seconds: Histogram::new(exponential_buckets(0.000_005, 2.0, 13)),
            sessions_live: Gauge::default(),
            cluster_nodes: Gauge::default(),
            links: Family::default(),
            outbox_items: Family::default(),
            outbox_oldest: Family::default(),
            limit_refusals: Family::default(),
            plugin_calls: Family::default(),
            plugin_errors: Family::default(),
            plugin_deadline_hits: Family::default(),
            sampling: std::sync::Mutex::new(()),
            queue_sampled: std::sync::Mutex::new(None),
            queue_items: Gauge::default(),
            sessions_resumable: Gauge::default(),
            queue_oldest: Gauge::default(),
            registry: Registry::default(),
        };
        let r = &mut registry;
        r.register(
            "connections",
            "Client and server connections accepted",
            m.connections.clone(),
        );
        r.register(
            "connections_open",
            "Connections open now",
            m.connections_open.clone(),
        );
        r.register(
            "connections_refused",
            "Connections refused before the handshake, by reason",
            m.connections_refused.clone(),
        );
        r.register("logins", "Logins by mechanism and result", m.logins.clone());
        r.register(
            "messages_accepted",
            "Envelopes committed to a queue from a send",
            m.messages_accepted.clone(),
        );
        r.register(
            "messages_delivered",
            "Queue items written to a live device",
            m.messages_delivered.clone(),
        );
        r.register(
            "messages_delivered_early",
            "Queue items written to a live device before their commit was durable (also in \
             messages_delivered)",
            m.messages_delivered_early.clone(),
        );
        r.register(
            "messages_acknowledged_unsynced",
            "Queue items acknowledged by their device (or, for an outbox, by the peer server) \
             before a sync of the store was needed (a commit to live devices or to an outbox on \
             the fast path is written unsynced, or not at all, and settles when they acknowledge \
             or a sync makes it durable)",
            m.messages_acknowledged_unsynced.clone(),
        );
        r.register(
            "messages_acknowledged",
            "Queue items acknowledged by their device",
            m.messages_acknowledged.clone(),
        );
        r.register(
            "messages_expired",
            "Queue items removed unacknowledged at the end of their TTL",
            m.messages_expired.clone(),
        );
        r.register(
            "errors",
            "Error answers to clients (refusals, limits, bad requests), by error name",
            m.errors.clone(),
        );
        r.register(
            "commit_duration_seconds",
            "Time to commit one batch of envelopes to the store",
            m.commit_seconds.clone(),
        );
        r.register(
            "envelope_verify_duration_seconds",
            "Time to verify one envelope's sender signature",
            m.verify_seconds.clone(),
        );
        r.register(
            "sessions_live",
            "Logged-in sessions live now",
            m.sessions_live.clone(),
        );
        r.register(
            "cluster_nodes",
            "Nodes of this server's cluster heard from in the last 10 s, this one included",
            m.cluster_nodes.clone(),
        );
        r.register(
            "federation_links",
            "Outbound federation links by state",
            m.links.clone(),
        );
        r.register(
            "federation_outbox_items",
            "Envelopes waiting in a peer's outbox",
            m.outbox_items.clone(),
        );
        r.register(
            "federation_outbox_oldest_age_seconds",
            "Age of the oldest envelope waiting in a peer's outbox",
            m.outbox_oldest.clone(),
        );
        r.register(
            "limit_refusals",
            "Requests and connections refused by a limit, by kind of limit",
            m.limit_refusals.clone(),
        );
        for limit in LIMITS {
            // Every kind present from the start, so rates and alerts see zeros, not gaps.
            let _ = m.limit_refusals.get_or_create(&Limit {
                limit: limit.into(),
            });
        }
        r.register(
            "plugin_calls",
            "Calls into a plugin",
            m.plugin_calls.clone(),
        );
        r.register(
            "plugin_errors",
            "Calls into a plugin that failed (trap, deadline, memory limit, guest error)",
            m.plugin_errors.clone(),
        );
        r.register(
            "plugin_deadline_hits",
            "Calls into a plugin interrupted at their CPU deadline",
            m.plugin_deadline_hits.clone(),
        );
        r.register(
            "sessions_resumable",
            "Sessions kept for resumption that are not live now (counted with the queues)",
            m.sessions_resumable.clone(),
        );
        r.register(
            "queue_items",
            "Items waiting in all queues together (devices and federation outboxes)",
            m.queue_items.clone(),
        );
        r.register(
            "queue_oldest_age_seconds",
            "Age of the oldest item waiting in any queue",
            m.queue_oldest.clone(),
        );
        Metrics { registry, ..m }
    }

    /// Counts a refusal by the limit `kind` (one of [`LIMITS`]).
    pub fn limit_refused(&self, kind: &'static str) {
        debug_assert!(LIMITS.contains(&kind), "{kind} is not in LIMITS");
        self.limit_refusals
            .get_or_create(&Limit {
                limit: kind.to_owned(),
            })
            .inc();
    }

    /// Walks every queue and the stored sessions (at most every [`QUEUE_SAMPLE_EVERY`]) for
    /// the total of waiting items, the age of the oldest, and the resumable sessions.
    async fn sample_queues(&self, shared: &Shared) {
        {
            let mut last = self.queue_sampled.lock().unwrap_or_else(|p| p.into_inner());
            if last.is_some_and(|t| t.elapsed() < QUEUE_SAMPLE_EVERY) {
                return;
            }
            *last = Some(std::time::Instant::now());
        }
        if let Ok(stored) = shared.storage.sessions().await {
            let live = shared.hub.live().len();
            self.sessions_resumable
                .set(i64::try_from(stored.len().saturating_sub(live)).unwrap_or(i64::MAX));
        }
        let Ok(devices) = shared.storage.queue_devices().await else {
            return;
        };
        let ttl = shared.config().limits.queue_ttl_secs;
        let (mut items, mut oldest) = (0u64, 0u64);
        for device in devices {
            if let Ok(usage) = shared.storage.usage(&device).await {
                items = items.saturating_add(usage.items);
            }
            if let Ok(Some(age)) =
                crate::queue::oldest_age(shared.storage.as_ref(), &device, ttl).await
            {
                oldest = oldest.max(age);
            }
        }
        self.queue_items
            .set(i64::try_from(items).unwrap_or(i64::MAX));
        self.queue_oldest.set(oldest as f64);
    }

    /// Brings the plugin counters up to the plugin host's.
    fn sample_plugins(&self) {
        let _one = self.sampling.lock().unwrap_or_else(|p| p.into_inner());
        for (name, counts) in siren_plugins::call_counts() {
            let label = Plugin { plugin: name };
            for (family, total) in [
                (&self.plugin_calls, counts.calls),
                (&self.plugin_errors, counts.errors),
                (&self.plugin_deadline_hits, counts.deadline_hits),
            ] {
                let counter = family.get_or_create(&label);
                let seen = counter.get();
                if total > seen {
                    counter.inc_by(total - seen);
                }
            }
        }
    }

    /// Counts an error answer.
    pub fn error(&self, e: &siren_api::Error) {
        count(&self.errors, e.code.name());
    }

    /// Counts a connection refused before its handshake (`reason`: one of [`LIMITS`]).
    pub fn connection_refused(&self, reason: &'static str) {
        count(&self.connections_refused, reason);
        self.limit_refused(match reason {
            "per_address" => "unauthenticated_per_address",
            "server_wide" => "unauthenticated_server_wide",
            other => other,
        });
    }

    /// Counts a login.
    pub fn login(&self, mechanism: &str, result: &str) {
        self.logins
            .get_or_create(&Login {
                mechanism: mechanism.to_owned(),
                result: result.to_owned(),
            })
            .inc();
    }

    /// Records how long something took in `histogram`.
    pub fn time(histogram: &Histogram, took: Duration) {
        histogram.observe(took.as_secs_f64());
    }

    /// Sets the sampled gauges from the server's state.
    pub async fn sample(&self, shared: &Shared) {
        self.sample_plugins();
        self.sample_queues(shared).await;
        self.sessions_live
            .set(i64::try_from(shared.hub.live().len()).unwrap_or(i64::MAX));
        if let Some(cluster) = shared.cluster.get() {
            let nodes = cluster.nodes(crate::cluster::this_node(shared)).len();
            self.cluster_nodes
                .set(i64::try_from(nodes).unwrap_or(i64::MAX));
        }
        for state in crate::links::LinkState::ALL {
            self.links
                .get_or_create(&State {
                    state: state.as_str().into(),
                })
                .set(0);
        }
        for (_, state) in shared.links.peers() {
            self.links
                .get_or_create(&State {
                    state: state.as_str().into(),
                })
                .inc();
        }
        self.outbox_items.clear();
        self.outbox_oldest.clear();
        let ttl = shared.config().limits.queue_ttl_secs;
        for (peer, _) in shared.outboxes.peers() {
            let key = crate::federation::outbox::outbox_key(&peer);
            let label = Peer {
                peer: peer.to_string(),
            };
            if let Ok(items) = shared.storage.count(key.as_bytes()).await {
                self.outbox_items
                    .get_or_create(&label)
                    .set(i64::try_from(items).unwrap_or(i64::MAX));
            }
            if let Ok(age) =
                crate::queue::oldest_age(shared.storage.as_ref(), key.as_bytes(), ttl).await
            {
                self.outbox_oldest
                    .get_or_create(&label)
                    .set(age.unwrap_or(0) as f64);
            }
        }
    }

    /// The exposition in the OpenMetrics text format (what Prometheus asks for first).
    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }

    /// The exposition in Prometheus' classic text format (0.0.4), for scrapers that do not
    /// accept OpenMetrics (`promtool check metrics`, `curl`): see [`classic`].
    pub fn encode_classic(&self) -> String {
        classic(&self.encode())
    }
}

/// Adds one to `family`'s counter for `reason`.
fn count(family: &Family<Reason, Counter>, reason: &str) {
    family
        .get_or_create(&Reason {
            reason: reason.to_owned(),
        })
        .inc();
}

/// Turns OpenMetrics text into Prometheus' classic text format. The two differ, for what this
/// server exposes, only in that OpenMetrics names a counter's family without the `_total` its
/// sample carries (`# TYPE siren_logins counter` / `siren_logins_total …`), where the classic
/// format names the family as the sample; and in the final `# EOF`.
pub fn classic(openmetrics: &str) -> String {
    let counters: std::collections::HashSet<&str> = openmetrics
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.strip_suffix(" counter"))
        .collect();
    let mut out = String::with_capacity(openmetrics.len());
    for line in openmetrics.lines() {
        if line == "# EOF" {
            continue;
        }
        let renamed = ["# HELP ", "# TYPE "].iter().find_map(|prefix| {
            let rest = line.strip_prefix(prefix)?;
            let (name, tail) = rest.split_once(' ')?;
            counters
                .contains(name)
                .then(|| format!("{prefix}{name}_total {tail}"))
        });
        match renamed {
            Some(l) => out.push_str(&l),
            None => out.push_str(line),
        }
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_exposition_names_follow_the_conventions() {
        let m = Metrics::new();
        m.messages_accepted.inc();
        m.login("PLAIN", "success");
        m.error(&siren_api::Error::new(siren_api::ErrorCode::QueueFull, "x"));
        Metrics::time(&m.commit_seconds, Duration::from_micros(300));
        let text = m.encode();
        for needle in [
            "siren_messages_accepted_total 1",
            "siren_logins_total{mechanism=\"PLAIN\",result=\"success\"} 1",
            "siren_errors_total{reason=\"queue_full\"} 1",
            "siren_commit_duration_seconds_count 1",
            "# EOF",
        ] {
            assert!(text.contains(needle), "{needle} in\n{text}");
        }
        let classic = m.encode_classic();
        assert!(classic.contains("# TYPE siren_messages_accepted_total counter\n"));
        assert!(classic.contains("# HELP siren_messages_accepted_total Envelopes"));
        assert!(classic.contains("# TYPE siren_commit_duration_seconds histogram\n"));
        assert!(!classic.contains("# EOF"));
    }
}
