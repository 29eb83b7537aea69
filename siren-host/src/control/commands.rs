//! What each admin command does, on the running server (through the admin socket) or on the
//! store directly (when no server runs): the same code and the same output either way; the
//! running server also acts on its live state at once (closing sessions, dropping caches).

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context as _, anyhow, bail};
use siren_api::auth::{CredentialAdmin, CredentialBackend};
use siren_api::storage::{DeviceKey, Storage};
use siren_api::{Error, ErrorCode, Username};
use siren_proto::fingerprint::fingerprint;
use siren_proto::records::DeviceRecord;

use super::wire::Request;
use crate::accounts;
use crate::config::Config;
use crate::directory::Directory;
use crate::federation::outbox::outbox_key;
use crate::hub::Hub;
use crate::shared::Shared;

/// What `sirend status` says about the running process besides [`Shared`].
#[derive(Clone)]
pub struct ServerInfo {
    /// When the server started.
    pub started: Instant,
    /// The client listener's bound address.
    pub listen: SocketAddr,
    /// The web listener's page (`http://127.0.0.1:7454/`), when it is on.
    pub web: Option<String>,
    /// The admin socket.
    pub socket: PathBuf,
    /// Reloads the configuration.
    pub reload: Arc<crate::reload::Reloader>,
}

/// Where commands act: a store (and credential backend) of a server that is not running, or the
/// running server itself.
pub struct Ops {
    /// The configuration of a server that is not running (a running one's is read live).
    config: Arc<Config>,
    storage: Arc<dyn Storage>,
    credentials: Arc<dyn CredentialBackend>,
    live: Option<(Arc<Shared>, ServerInfo)>,
}

impl Ops {
    /// Commands on the running server.
    pub fn live(shared: Arc<Shared>, info: ServerInfo) -> Self {
        Ops {
            config: shared.running.load_full(),
            storage: shared.storage.clone(),
            credentials: shared.credentials.clone(),
            live: Some((shared, info)),
        }
    }

    /// The configuration in force.
    fn config(&self) -> Arc<Config> {
        match &self.live {
            Some((shared, _)) => shared.running.load_full(),
            None => self.config.clone(),
        }
    }

    /// Commands on a store no server has open.
    pub fn offline(
        config: Config,
        storage: Arc<dyn Storage>,
        credentials: Arc<dyn CredentialBackend>,
    ) -> Self {
        Ops {
            config: Arc::new(config),
            storage,
            credentials,
            live: None,
        }
    }

    fn hub(&self) -> Option<&Hub> {
        self.live.as_ref().map(|(s, _)| s.hub.as_ref())
    }

    fn admin(&self) -> anyhow::Result<&dyn CredentialAdmin> {
        self.credentials.admin().ok_or_else(|| {
            anyhow!(
                "the credential backend {:?} does not manage users itself; manage them where they \
                 live (for `ldap`: in the directory)",
                self.config().auth.credentials
            )
        })
    }

    /// Runs one command; returns what to print.
    pub async fn run(&self, request: Request) -> anyhow::Result<String> {
        match request {
            Request::UserAdd { user, password } => {
                self.user_add(&username(&user)?, &password).await
            }
            Request::UserPasswd { user, password } => {
                self.user_passwd(&username(&user)?, &password).await
            }
            Request::UserDel { user } => self.user_del(&username(&user)?).await,
            Request::UserList {} => {
                let users = self.admin()?.list_users().await.map_err(api)?;
                Ok(users.iter().map(|u| format!("{u}\n")).collect())
            }
            Request::DevicesList { user } => self.devices_list(&username(&user)?).await,
            Request::DevicesRevoke { user, device } => {
                self.end_sessions(&username(&user)?, Some(&device)).await
            }
            Request::SessionsKick { user, device } => {
                self.end_sessions(&username(&user)?, device.as_deref())
                    .await
            }
            Request::SessionsList {} => self.sessions_list().await,
            Request::QueueStats { user } => match user {
                Some(user) => self.queue_of(&username(&user)?).await,
                None => self.queue_totals().await,
            },
            Request::FederationLinks {} => self.federation_links().await,
            Request::Status {} => self.status(),
            Request::Reload {} => {
                // A reload reads a file and may compile plugins: off the async executor.
                let reloader = self.running("reload")?.1.reload.clone();
                tokio::task::spawn_blocking(move || reloader.reload())
                    .await
                    .map_err(|e| anyhow::anyhow!("the reload task failed: {e}"))?
            }
            Request::Backup { to } => {
                crate::backup::write(&self.config(), self.storage.as_ref(), Path::new(&to)).await
            }
        }
    }

    async fn user_add(&self, user: &Username, password: &str) -> anyhow::Result<String> {
        let admin = self.admin()?;
        if password.is_empty() {
            bail!("empty password");
        }
        if self.credentials.user_exists(user).await.map_err(api)? {
            bail!("user {user} already exists (use `sirend user passwd`)");
        }
        admin.set_password(user, password).await.map_err(api)?;
        Ok(format!("created {user}@{}\n", self.config().server.name))
    }

    async fn user_passwd(&self, user: &Username, password: &str) -> anyhow::Result<String> {
        let admin = self.admin()?;
        if password.is_empty() {
            bail!("empty password");
        }
        if !self.credentials.user_exists(user).await.map_err(api)? {
            bail!("no user {user}");
        }
        admin.set_password(user, password).await.map_err(api)?;
        // The running server closes the live sessions now rather than at its next re-check.
        let ended = accounts::end_sessions(
            self.storage.as_ref(),
            self.hub(),
            user,
            None,
            &accounts::credentials_changed(),
        )
        .await
        .map_err(api)?;
        Ok(format!(
            "changed the password of {user}@{}; its devices must log in again \
             ({} sessions ended)\n",
            self.config().server.name,
            ended.stored
        ))
    }

    async fn user_del(&self, user: &Username) -> anyhow::Result<String> {
        let admin = self.admin()?;
        // The account first: from here on nobody logs in as the user.
        let had_account = admin.delete_user(user).await.map_err(api)?;
        let forgotten = accounts::forget_user(self.storage.as_ref(), user)
            .await
            .map_err(api)?;
        if let Some((shared, _)) = &self.live {
            shared.directory.forget(user);
            shared.hub.directory_changed(user);
            shared.rosters.forget(user);
            shared
                .hub
                .end(|_, who, _| who == user, &accounts::credentials_changed());
        }
        if !had_account && forgotten.is_empty() {
            bail!("no user {user}");
        }
        Ok(format!(
            "deleted {user}@{}: {} devices, {} queued messages, {} sessions{}\n",
            self.config().server.name,
            forgotten.devices,
            forgotten.items,
            forgotten.sessions,
            if forgotten.roster { ", the roster" } else { "" }
        ))
    }

    /// The live devices of `user`'s chain, oldest first.
    async fn devices(&self, user: &Username) -> anyhow::Result<Vec<DeviceRecord>> {
        // A fresh read of the store, not the running server's cache: what is stored is the truth.
        let directory = Directory::new(
            self.storage.clone(),
            self.config().limits.max_directory_entries,
        );
        let Some(dir) = directory.get(user).await.map_err(api)? else {
            if self.credentials.user_exists(user).await.map_err(api)? {
                return Ok(Vec::new());
            }
            bail!("no user {user}");
        };
        let mut devices: Vec<DeviceRecord> = dir.devices().cloned().collect();
        devices.sort_by_key(|d| d.seq);
        Ok(devices)
    }

    async fn devices_list(&self, user: &Username) -> anyhow::Result<String> {
        let devices = self.devices(user).await?;
        if devices.is_empty() {
            return Ok(format!(
                "{user}@{} has no devices\n",
                self.config().server.name
            ));
        }
        let sessions = self.session_states().await?;
        let now = crate::queue::now();
        let mut out = format!(
            "{:<39}  {:<16}  {:<17}  {:>6}  session\n",
            "device", "name", "registered (UTC)", "queued"
        );
        for d in &devices {
            let usage = self.storage.usage(d.dek.as_bytes()).await.map_err(api)?;
            let state = sessions
                .get(d.dek.as_bytes())
                .map_or("none", |(_, live)| if *live { "live" } else { "resumable" });
            let _ = writeln!(
                out,
                "{:<39}  {:<16}  {:<17}  {:>6}  {state}",
                fingerprint(d.dek.as_bytes()),
                d.name.as_deref().map(shown).unwrap_or_default(),
                date(d.ts.min(now)),
                usage.items,
            );
        }
        Ok(out)
    }

    /// Finds the device of `user` whose fingerprint starts with `prefix`.
    async fn device(&self, user: &Username, prefix: &str) -> anyhow::Result<DeviceRecord> {
        let wanted: String = prefix
            .chars()
            .filter(|c| !c.is_whitespace())
            .collect::<String>()
            .to_ascii_lowercase();
        if wanted.len() < 4 || !wanted.chars().all(|c| c.is_ascii_hexdigit()) {
            bail!(
                "{:?} is not the start of a device fingerprint (at least 4 hex digits, as \
                 `sirend devices list {user}` shows)",
                shown(prefix)
            );
        }
        let mut found = self.devices(user).await?.into_iter().filter(|d| {
            fingerprint(d.dek.as_bytes())
                .replace(' ', "")
                .starts_with(&wanted)
        });
        match (found.next(), found.next()) {
            (Some(d), None) => Ok(d),
            (None, _) => bail!(
                "{user} has no device whose fingerprint starts with {wanted} (see `sirend devices \
                 list {user}`)"
            ),
            (Some(_), Some(_)) => {
                bail!("several devices of {user} start with {wanted}; give more digits")
            }
        }
    }

    /// `sessions kick USER [DEVICE]` and `devices revoke USER DEVICE`: the stored sessions are
    /// forgotten (none resumes) and the live ones get error 209 and close.
    async fn end_sessions(&self, user: &Username, device: Option<&str>) -> anyhow::Result<String> {
        let record = match device {
            Some(prefix) => Some(self.device(user, prefix).await?),
            None => {
                if !self.credentials.user_exists(user).await.map_err(api)? {
                    bail!("no user {user}");
                }
                None
            }
        };
        let dek = record.as_ref().map(|r| r.dek);
        let reason = Error::new(
            ErrorCode::SessionEnded,
            "an administrator ended this session; log in again",
        );
        let ended = accounts::end_sessions(
            self.storage.as_ref(),
            self.hub(),
            user,
            dek.as_ref(),
            &reason,
        )
        .await
        .map_err(api)?;
        let whose = match &record {
            Some(r) => format!(
                "{user}@{}'s device {}{}",
                self.config().server.name,
                fingerprint(r.dek.as_bytes()),
                r.name
                    .as_deref()
                    .map(|n| format!(" ({})", shown(n)))
                    .unwrap_or_default()
            ),
            None => format!("{user}@{}", self.config().server.name),
        };
        Ok(format!(
            "ended the sessions of {whose}: {} stored, {} live; it must log in again\n",
            ended.stored, ended.live
        ))
    }

    /// Every session by DEK: (user, live?). Stored (resumable) ones and, on a running server,
    /// live ones that are not stored yet (a device waiting for approval).
    async fn session_states(&self) -> anyhow::Result<BTreeMap<DeviceKey, (String, bool)>> {
        let mut states = BTreeMap::new();
        for s in self.storage.sessions().await.map_err(api)? {
            if let Some(user) = s.user {
                states.insert(s.device, (user.to_string(), false));
            }
        }
        if let Some(hub) = self.hub() {
            for (dek, user) in hub.live() {
                states.insert(*dek.as_bytes(), (user.to_string(), true));
            }
        }
        Ok(states)
    }

    async fn sessions_list(&self) -> anyhow::Result<String> {
        let states = self.session_states().await?;
        let mut rows: Vec<(&String, &DeviceKey, bool)> =
            states.iter().map(|(d, (u, l))| (u, d, *l)).collect();
        rows.sort();
        let mut out = format!("{:<24}  {:<39}  state\n", "user", "device");
        for (user, device, live) in &rows {
            let _ = writeln!(
                out,
                "{user:<24}  {:<39}  {}",
                fingerprint(device),
                if *live { "live" } else { "resumable" }
            );
        }
        let live = rows.iter().filter(|r| r.2).count();
        let _ = writeln!(out, "{} sessions, {live} live", rows.len());
        Ok(out)
    }

    /// Items, bytes and the age of the oldest item of one queue.
    async fn queue(&self, device: &DeviceKey) -> anyhow::Result<QueueRow> {
        let usage = self.storage.usage(device).await.map_err(api)?;
        let oldest = crate::queue::oldest_age(
            self.storage.as_ref(),
            device,
            self.config().limits.queue_ttl_secs,
        )
        .await
        .map_err(api)?;
        Ok(QueueRow {
            items: usage.items,
            bytes: usage.bytes,
            oldest,
        })
    }

    async fn queue_of(&self, user: &Username) -> anyhow::Result<String> {
        let devices = self.devices(user).await?;
        let mut out = format!(
            "{:<39}  {:<16}  {:>8}  {:>12}  oldest\n",
            "device", "name", "items", "bytes"
        );
        let mut total = QueueRow::default();
        for d in &devices {
            let row = self.queue(d.dek.as_bytes()).await?;
            let _ = writeln!(
                out,
                "{:<39}  {:<16}  {:>8}  {:>12}  {}",
                fingerprint(d.dek.as_bytes()),
                d.name.as_deref().map(shown).unwrap_or_default(),
                row.items,
                row.bytes,
                age(row.oldest)
            );
            total.add(&row);
        }
        let _ = writeln!(
            out,
            "{user}@{}: {} devices, {} items, {} bytes, oldest {}",
            self.config().server.name,
            devices.len(),
            total.items,
            total.bytes,
            age(total.oldest)
        );
        Ok(out)
    }

    async fn queue_totals(&self) -> anyhow::Result<String> {
        let mut total = QueueRow::default();
        let mut queues = 0u64;
        for device in self.storage.queue_devices().await.map_err(api)? {
            let row = self.queue(&device).await?;
            if row.items > 0 {
                queues += 1;
                total.add(&row);
            }
        }
        Ok(format!(
            "{queues} queues hold {} items, {} bytes; oldest {}\n",
            total.items,
            total.bytes,
            age(total.oldest)
        ))
    }

    async fn federation_links(&self) -> anyhow::Result<String> {
        let (shared, _) = self.running("federation links")?;
        if !shared.config().federation.enabled {
            return Ok("federation is off ([federation] enabled = false)\n".into());
        }
        let links: BTreeMap<_, _> = shared.links.peers().into_iter().collect();
        let workers = shared.outboxes.peers();
        let peers: BTreeSet<_> = links.keys().chain(workers.keys()).cloned().collect();
        let mut out = format!(
            "{:<32}  {:<7}  {:<7}  {:>8}  oldest\n",
            "peer", "link", "outbox", "waiting"
        );
        for peer in &peers {
            let row = self.queue(outbox_key(peer).as_bytes()).await?;
            let _ = writeln!(
                out,
                "{:<32}  {:<7}  {:<7}  {:>8}  {}",
                peer.as_str(),
                links.get(peer).map_or("none", |s| s.as_str()),
                match workers.get(peer).copied() {
                    Some(true) if shared.outboxes.is_idle(peer) => "ready",
                    Some(true) => "sending",
                    _ => "idle",
                },
                row.items,
                age(row.oldest)
            );
        }
        let up = links.values().filter(|s| s.is_up()).count();
        let _ = writeln!(
            out,
            "federation on (policy {}): {} peers, {up} links up",
            shared.config().federation.policy,
            peers.len()
        );
        Ok(out)
    }

    fn status(&self) -> anyhow::Result<String> {
        let (shared, info) = self.running("status")?;
        let users: BTreeSet<String> = shared
            .hub
            .live()
            .into_iter()
            .map(|(_, u)| u.to_string())
            .collect();
        let links = shared.links.peers();
        let up = links.iter().filter(|(_, s)| s.is_up()).count();
        let plugins: Vec<String> = shared
            .config()
            .plugins
            .iter()
            .map(|p| format!("{} ({:?}, loaded)", p.name, p.kind))
            .collect();
        let mut out = String::new();
        let mut row = |k: &str, v: String| {
            let _ = writeln!(out, "{k:<12} {v}");
        };
        row(
            "sirend",
            format!(
                "{} running for {} (pid {})",
                env!("CARGO_PKG_VERSION"),
                duration(info.started.elapsed().as_secs()),
                std::process::id()
            ),
        );
        row("name", shared.config().server.name.to_string());
        row("listen", info.listen.to_string());
        row(
            "web",
            info.web.clone().map_or_else(
                || "off".to_owned(),
                |url| format!("{url} (WebSocket at /ws)"),
            ),
        );
        row("admin", info.socket.display().to_string());
        row("store", shared.storage.describe());
        let cluster = &shared.config().cluster;
        if cluster.enabled {
            row(
                "cluster",
                format!(
                    "node {} (NATS {}; queues re-read every {} s)",
                    cluster.node_id,
                    cluster.nats.join(", "),
                    cluster.poll_secs
                ),
            );
            if let Some(joined) = shared.cluster.get() {
                let nodes: Vec<String> = joined
                    .nodes(crate::cluster::this_node(shared))
                    .iter()
                    .map(|n| {
                        let seen = if n.this {
                            "this node".to_owned()
                        } else {
                            format!("heard {} s ago", n.ago.as_secs())
                        };
                        format!(
                            "{} at {} ({} live sessions, {seen})",
                            n.id, n.info.listen, n.info.sessions
                        )
                    })
                    .collect();
                row("cluster nodes", nodes.join("; "));
            }
        }
        row(
            "auth",
            format!(
                "{} ({})",
                shared.config().auth.credentials,
                shared.auth.names().join(", ")
            ),
        );
        row(
            "sessions",
            format!("{} live ({} users)", shared.hub.live().len(), users.len()),
        );
        row(
            "federation",
            if shared.config().federation.enabled {
                format!(
                    "on (policy {}), {up} of {} links up",
                    shared.config().federation.policy,
                    links.len()
                )
            } else {
                "off".into()
            },
        );
        row(
            "plugins",
            if plugins.is_empty() {
                "none".into()
            } else {
                plugins.join(", ")
            },
        );
        Ok(out)
    }

    fn running(&self, what: &str) -> anyhow::Result<&(Arc<Shared>, ServerInfo)> {
        self.live
            .as_ref()
            .with_context(|| format!("sirend is not running; `{what}` describes a running server"))
    }
}

#[derive(Default)]
struct QueueRow {
    items: u64,
    bytes: u64,
    /// Seconds since the oldest item was queued.
    oldest: Option<u64>,
}

impl QueueRow {
    fn add(&mut self, other: &QueueRow) {
        self.items += other.items;
        self.bytes += other.bytes;
        self.oldest = self.oldest.max(other.oldest);
    }
}

fn username(name: &str) -> anyhow::Result<Username> {
    Username::parse(name).map_err(|e| anyhow!("username {:?}: {e}", shown(name)))
}

fn api(e: Error) -> anyhow::Error {
    anyhow!("{e}")
}

/// A name from a user (a device name, an argument) as it is safe to print in a terminal, at
/// most 64 characters.
fn shown(s: &str) -> String {
    siren_api::display::Escaped(s)
        .to_string()
        .chars()
        .take(64)
        .collect()
}

fn date(unix: u64) -> String {
    i64::try_from(unix)
        .ok()
        .and_then(|s| jiff::Timestamp::from_second(s).ok())
        .map_or_else(|| "?".into(), |t| t.strftime("%Y-%m-%d %H:%M").to_string())
}

fn age(secs: Option<u64>) -> String {
    secs.map_or_else(|| "-".into(), |s| format!("{} ago", duration(s)))
}

fn duration(secs: u64) -> String {
    match secs {
        0..60 => format!("{secs}s"),
        60..3600 => format!("{}m {}s", secs / 60, secs % 60),
        3600..86400 => format!("{}h {}m", secs / 3600, secs % 3600 / 60),
        _ => format!("{}d {}h", secs / 86400, secs % 86400 / 3600),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn printed_names_are_escaped_and_bounded() {
        assert_eq!(shown("laptop"), "laptop");
        assert_eq!(shown("a\x1b[2Jb"), "a\\u{1b}[2Jb");
        assert_eq!(shown("x\u{202e}y"), "x\\u{202e}y");
        assert_eq!(shown(&"z".repeat(100)).len(), 64);
    }

    #[test]
    fn durations_read_like_a_person_writes_them() {
        assert_eq!(duration(5), "5s");
        assert_eq!(duration(125), "2m 5s");
        assert_eq!(duration(7260), "2h 1m");
        assert_eq!(duration(90000), "1d 1h");
        assert_eq!(age(None), "-");
        assert_eq!(date(0), "1970-01-01 00:00");
    }
}
