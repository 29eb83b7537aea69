//! Reloading the configuration of a running server (SIGHUP, `sirend reload`).
//!
//! The file is read and checked as at start-up (every key, backend and plugin name); a file
//! that fails is refused with the reason and the running configuration stays. What can change
//! live today is the log filter (`[log] level`, unless `SIREN_LOG` overrides it). Every other
//! section that changed is named in the answer as taking effect at the next restart: live
//! reloading of limits, quotas, federation and roster policy and plugin settings is not built
//! yet, and the answer says so rather than pretending.

use std::path::PathBuf;
use std::sync::Mutex;

use anyhow::{anyhow, bail};

use crate::config::Config;
use crate::registry;

/// Sets the log filter; `Err` with the reason when it is not a valid filter.
pub type SetLogLevel = Box<dyn Fn(&str) -> Result<(), String> + Send + Sync>;

/// The running configuration and how to change what can change live.
pub struct Reloader {
    path: Option<PathBuf>,
    running: Mutex<Config>,
    set_log: SetLogLevel,
}

impl Reloader {
    /// A reloader for a server started from `path` (`None`: built-in defaults) with `running`.
    pub fn new(path: Option<PathBuf>, running: Config, set_log: SetLogLevel) -> Self {
        Reloader {
            path,
            running: Mutex::new(running),
            set_log,
        }
    }

    /// Reads the file again and applies what can be applied; returns what happened.
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
        let mut applied = Vec::new();
        if new.log != running.log {
            (self.set_log)(&new.log.level).map_err(|e| refused(format!("`log.level`: {e}")))?;
            running.log = new.log.clone();
            applied.push("[log] level");
        }
        let restart: Vec<&str> = [
            ("[server]", new.server != running.server),
            ("[limits]", new.limits != running.limits),
            ("[storage]", new.storage != running.storage),
            ("[auth]", new.auth != running.auth),
            ("[roster]", new.roster != running.roster),
            ("[federation]", new.federation != running.federation),
            ("[[plugins]]", new.plugins != running.plugins),
            ("[metrics]", new.metrics != running.metrics),
        ]
        .into_iter()
        .filter_map(|(name, changed)| changed.then_some(name))
        .collect();
        let mut out = format!("reloaded {}: ", path.display());
        if applied.is_empty() {
            out.push_str("nothing applied live");
        } else {
            out.push_str(&format!("applied {}", applied.join(", ")));
        }
        if !restart.is_empty() {
            out.push_str(&format!(
                "; changed, taking effect at the next restart (live reload of these is not built \
                 yet): {}",
                restart.join(", ")
            ));
        }
        out.push('\n');
        Ok(out)
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
            format!("reloaded {}: nothing applied live\n", path.display())
        );
        std::fs::write(
            &path,
            "[log]\nlevel = \"debug\"\n[limits]\nqueue_ttl_secs = 60\n",
        )
        .unwrap();
        let out = reloader.reload().unwrap();
        assert!(out.contains("applied [log] level"), "{out}");
        assert!(out.contains("next restart"), "{out}");
        assert!(out.contains("[limits]"), "{out}");
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
