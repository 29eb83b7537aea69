//! Reloading the configuration of a running server (SIGHUP, `sirend reload`).
//!
//! The file is read and checked as at start-up (every key, backend and plugin name), and the
//! plugins it names are built; a file that fails any of it is refused with the reason and the
//! running configuration stays whole. Otherwise what can change live is applied at once, to
//! every request after the reload, without closing a session:
//!
//! * `[log] level` (unless `SIREN_LOG` overrides it);
//! * `[limits]`, except `max_connections`, `sweep_interval_secs` and `session_ttl_secs`
//!   (a session's own signal rate is set when it starts: new sessions get the new one);
//! * `[roster] non_contacts`;
//! * `[federation] enabled`, `policy` and `peers`: inbound links from peers no longer allowed
//!   are closed with the refusal, outbound links to them closed, and outboxes held while
//!   federation was off start sending;
//! * `[[plugins]]` message filters, directory hooks and federation policies (their settings,
//!   limits, added and removed ones), rebuilt and swapped in whole.
//!
//! Every other key that changed (the listeners, the store, authentication, the metrics
//! and web listeners, the other `[federation]` keys, plugins of other kinds) is named in the answer as
//! taking effect at the next restart, and the running server keeps its old value, so what
//! `sirend status` shows stays what is in force.

use std::path::PathBuf;
use std::sync::{Arc, Mutex, OnceLock, Weak};

use anyhow::{anyhow, bail};

use crate::config::{Config, PluginKind};
use crate::registry;
use crate::shared::Shared;

/// Sets the log filter; `Err` with the reason when it is not a valid filter.
pub type SetLogLevel = Box<dyn Fn(&str) -> Result<(), String> + Send + Sync>;

/// The running configuration and how to change what can change live.
pub struct Reloader {
    path: Option<PathBuf>,
    running: Mutex<Config>,
    set_log: SetLogLevel,
    /// The running server, once it is up (before that, and in tests without one, only the log
    /// level applies live).
    server: OnceLock<Weak<Shared>>,
}

/// The plugins a reload can swap in: the rest are opened once, at start-up.
fn swappable(kind: PluginKind) -> bool {
    matches!(
        kind,
        PluginKind::MessageFilter | PluginKind::DirectoryHook | PluginKind::Federation
    )
}

/// `new`, except for what cannot change while the server runs, which keeps `running`'s value.
fn effective(running: &Config, new: &Config, live: bool) -> Config {
    let mut eff = running.clone();
    eff.log.level = new.log.level.clone();
    if !live {
        return eff;
    }
    eff.limits = crate::config::Limits {
        max_connections: running.limits.max_connections,
        sweep_interval_secs: running.limits.sweep_interval_secs,
        session_ttl_secs: running.limits.session_ttl_secs,
        ..new.limits.clone()
    };
    eff.roster = new.roster.clone();
    eff.federation.enabled = new.federation.enabled;
    eff.federation.policy = new.federation.policy.clone();
    eff.federation.peers = new.federation.peers.clone();
    let fixed = |c: &Config| -> Vec<crate::config::PluginSection> {
        c.plugins
            .iter()
            .filter(|p| !swappable(p.kind))
            .cloned()
            .collect()
    };
    if fixed(running) == fixed(new) {
        eff.plugins = new.plugins.clone();
    }
    eff
}

/// The dotted keys whose values differ between `a` and `b` (`limits.max_frame`, `plugins`).
fn changed_keys(a: &Config, b: &Config) -> Vec<String> {
    fn walk(prefix: &str, a: Option<&toml::Value>, b: Option<&toml::Value>, out: &mut Vec<String>) {
        match (a, b) {
            (Some(toml::Value::Table(x)), Some(toml::Value::Table(y))) => {
                let keys: std::collections::BTreeSet<&String> = x.keys().chain(y.keys()).collect();
                for key in keys {
                    let name = if prefix.is_empty() {
                        key.clone()
                    } else {
                        format!("{prefix}.{key}")
                    };
                    walk(&name, x.get(key), y.get(key), out);
                }
            }
            (x, y) if x != y => out.push(prefix.to_owned()),
            _ => {}
        }
    }
    let value = |c: &Config| toml::Value::try_from(c).ok();
    let mut out = Vec::new();
    walk("", value(a).as_ref(), value(b).as_ref(), &mut out);
    out
}

/// What a reload builds before it changes anything (so that a failure changes nothing).
struct Built {
    filters: Option<Vec<Arc<dyn siren_api::hooks::MessageFilter>>>,
    hooks: Option<Vec<Arc<dyn siren_api::hooks::DirectoryHook>>>,
    policy: Option<Arc<dyn siren_api::federation::FederationPolicy>>,
}

impl Reloader {
    /// A reloader for a server started from `path` (`None`: built-in defaults) with `running`.
    pub fn new(path: Option<PathBuf>, running: Config, set_log: SetLogLevel) -> Self {
        Reloader {
            path,
            running: Mutex::new(running),
            set_log,
            server: OnceLock::new(),
        }
    }

    /// Connects the reloader to the running server, whose parts it then reconfigures.
    pub fn attach(&self, shared: &Arc<Shared>) {
        let _ = self.server.set(Arc::downgrade(shared));
    }

    /// Reads the file again and applies what can be applied; returns what happened. Blocks
    /// (reads a file, may compile plugins): call it off the async executor.
    pub fn reload(&self) -> anyhow::Result<String> {
        let Some(path) = &self.path else {
            bail!(
                "sirend runs on its built-in defaults (no configuration file): nothing to reload"
            );
        };
        let refused =
            |why: String| anyhow!("reload refused, the running configuration stays: {why}");
        let new = Config::load(path).map_err(|e| refused(e.to_string()))?;
        registry::check_names(&new)
            .map_err(|(key, e)| refused(format!("`{key}`: {}", e.message)))?;
        registry::check_plugins(&new).map_err(|e| refused(e.message))?;
        let mut running = self.running.lock().unwrap_or_else(|p| p.into_inner());
        let shared = self.server.get().and_then(Weak::upgrade);
        let eff = effective(&running, &new, shared.is_some());
        let applied = changed_keys(&running, &eff);
        let restart = changed_keys(&eff, &new);
        let touched = |section: &str| {
            applied
                .iter()
                .any(|k| k == section || k.starts_with(&format!("{section}.")))
        };
        // Everything that can fail is built first.
        let plugins = touched("plugins");
        let built = Built {
            filters: plugins
                .then(|| registry::open_filters(&eff))
                .transpose()
                .map_err(|e| refused(e.message))?,
            hooks: plugins
                .then(|| registry::open_directory_hooks(&eff))
                .transpose()
                .map_err(|e| refused(e.message))?,
            policy: (plugins || touched("federation"))
                .then(|| registry::open_federation_policy(&eff))
                .transpose()
                .map_err(|e| refused(e.message))?,
        };
        if eff.log.level != running.log.level {
            (self.set_log)(&eff.log.level).map_err(|e| refused(format!("`log.level`: {e}")))?;
        }
        if let Some(shared) = &shared {
            apply(shared, &eff, touched("limits"), touched("roster"), built);
        }
        *running = eff;
        let mut out = format!("reloaded {}: ", path.display());
        if applied.is_empty() {
            out.push_str("nothing changed that applies live");
        } else {
            out.push_str(&format!("applied {}", applied.join(", ")));
        }
        if !restart.is_empty() {
            out.push_str(&format!(
                "; changed, taking effect at the next restart: {}",
                restart.join(", ")
            ));
        }
        tracing::info!(applied = ?applied, restart = ?restart, "configuration reloaded");
        out.push('\n');
        Ok(out)
    }
}

/// Hands the reloaded configuration to the server's parts.
fn apply(shared: &Arc<Shared>, eff: &Config, limits: bool, roster: bool, built: Built) {
    if limits {
        let l = &eff.limits;
        shared.admission.set_limits(l);
        let (envelopes, bytes) = crate::server::send_rates(l);
        shared.send_rate.set(envelopes, bytes);
        shared
            .directory_changes
            .set_rate(crate::server::directory_change_rate(l));
        shared.queue.set_ttl(l.queue_ttl_secs);
        shared
            .queue
            .usage
            .set_quota(l.max_queue_items_per_device, l.max_queue_bytes_per_device);
        shared.directory.set_max_entries(l.max_directory_entries);
        shared.approvals.set_limits(
            l.pending_approvals_per_account,
            l.pending_approvals_per_address,
        );
    }
    if roster {
        shared.rosters.set_policy(eff.roster.non_contacts);
    }
    if let Some(filters) = built.filters {
        shared.filters.store(Arc::new(filters));
    }
    if let Some(hooks) = built.hooks {
        shared.directory_hooks.store(Arc::new(hooks));
    }
    shared.running.store(Arc::new(eff.clone()));
    if let Some(policy) = built.policy {
        shared.links.set_gate(eff.federation.enabled, policy);
        // Outbound links the new gate refuses close; outboxes it now allows start sending.
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            let shared = shared.clone();
            runtime.spawn(async move {
                for peer in shared.links.close_disallowed().await {
                    tracing::info!(%peer, "outbound link closed: the reloaded federation settings no longer allow this peer");
                }
                crate::federation::outbox::resume_outboxes(&shared).await;
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    #[test]
    fn a_bad_file_is_refused_and_the_log_level_applies() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sirend.toml");
        std::fs::write(&path, "[log]\nlevel = \"info\"\n").unwrap();
        let running = Config::load(&path).unwrap();
        let levels = Arc::new(Mutex::new(Vec::<String>::new()));
        let seen = levels.clone();
        let reloader = Reloader::new(
            Some(path.clone()),
            running,
            Box::new(move |level| {
                if level == "nonsense=[" {
                    return Err("bad filter".into());
                }
                seen.lock().unwrap().push(level.to_owned());
                Ok(())
            }),
        );
        assert_eq!(
            reloader.reload().unwrap(),
            format!(
                "reloaded {}: nothing changed that applies live\n",
                path.display()
            )
        );
        std::fs::write(
            &path,
            "[log]\nlevel = \"debug\"\n[limits]\nqueue_ttl_secs = 60\n",
        )
        .unwrap();
        let out = reloader.reload().unwrap();
        assert!(out.contains("next restart"), "{out}");
        assert!(out.contains("applied log.level;"), "{out}");
        // Without a running server only the log level applies live.
        assert!(out.ends_with("restart: limits.queue_ttl_secs\n"), "{out}");
        assert_eq!(*levels.lock().unwrap(), ["debug"]);
        std::fs::write(&path, "[limits]\nqueue_ttl_secs = \"soon\"\n").unwrap();
        let refused = reloader.reload().unwrap_err().to_string();
        assert!(refused.contains("reload refused"), "{refused}");
        assert!(refused.contains("queue_ttl_secs"), "{refused}");
        std::fs::write(&path, "[log]\nlevel = \"nonsense=[\"\n").unwrap();
        assert!(reloader.reload().is_err());
        assert_eq!(
            levels.lock().unwrap().len(),
            1,
            "nothing applied from a refused file"
        );
    }
}
