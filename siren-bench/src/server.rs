//! A real `sirend` process in a temporary directory: `sirend init`, a benchmark configuration,
//! `sirend user add`, `sirend run`, graceful stop. The same steps as the integration tests'
//! harness (`siren-tests`), but errors are values, logs go to a file, and the binary is looked
//! up next to this executable.

use std::io::{BufRead as _, BufReader, Write as _};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use siren_api::ServerName;
use siren_proto::keys::SekPublic;
use tempfile::TempDir;

use crate::procfs;

/// The password every benchmark user gets.
pub const PASSWORD: &str = "bench-password";

/// Where the server is and how to prove it is the right one.
#[derive(Clone)]
pub struct Target {
    /// `host:port`, or `ws://host:port/ws` to go over the web listener.
    pub addr: String,
    /// The server's name.
    pub name: ServerName,
    /// Its public key (SEK).
    pub sek: SekPublic,
    /// Its web listener's WebSocket (`ws://host:port/ws`), when it has one.
    pub websocket: Option<String>,
}

impl Target {
    /// The same server, reached over its WebSocket (as a browser does).
    pub fn over_websocket(&self) -> anyhow::Result<Target> {
        let url = self
            .websocket
            .clone()
            .context("the server has no web listener")?;
        Ok(Target {
            addr: url,
            ..self.clone()
        })
    }
}

/// A `sirend` configuration and data directory, run as a child process.
pub struct Server {
    dir: TempDir,
    bin: PathBuf,
    name: ServerName,
    sek: SekPublic,
    addr: Option<SocketAddr>,
    /// The web listener's address, from `web client on http://…/`.
    web: Option<SocketAddr>,
    child: Option<Child>,
}

/// `sirend` next to this executable (`target/<profile>/sirend`).
pub fn default_binary() -> anyhow::Result<PathBuf> {
    let exe = std::env::current_exe().context("cannot find this executable's path")?;
    let dir = exe
        .parent()
        .context("this executable has no parent directory")?;
    Ok(dir.join("sirend"))
}

impl Server {
    /// `sirend init` into a fresh temporary directory, then a configuration for benchmarks:
    /// loopback on a port the kernel picks, RocksDB, cheap argon2 (so thousands of logins are
    /// quick), generous connection limit and timeouts, log level `info` (the default) to a file.
    pub fn new(bin: &Path, name: &str) -> anyhow::Result<Server> {
        if !bin.exists() {
            bail!(
                "{} is missing: build it with the same profile as siren-bench \
                 (`cargo build --release -p siren-bench -p siren-host`)",
                bin.display()
            );
        }
        let dir = tempfile::Builder::new()
            .prefix("siren-bench-")
            .tempdir()
            .context("cannot create a temporary directory")?;
        let out = Command::new(bin)
            .args(["init", "--dir"])
            .arg(dir.path())
            .args(["--name", name, "--listen", "127.0.0.1:0"])
            .output()
            .context("cannot run sirend init")?;
        if !out.status.success() {
            bail!("sirend init: {}", String::from_utf8_lossy(&out.stderr));
        }
        let config = format!(
            r#"[server]
name = "{name}"
listen = "127.0.0.1:0"

[limits]
handshake_timeout_secs = 30
auth_timeout_secs = 600
idle_timeout_secs = 3600
max_connections = 20000
# Every simulated client connects from 127.0.0.1: the per-address limits on anonymous
# connections and the per-user send rates would measure themselves, not the server.
unauthenticated_per_address = 20000
max_unauthenticated = 20000
handshakes_per_address_per_second = 1000000
send_envelopes_per_second = 100000000
send_envelope_burst = 100000000
send_bytes_per_second = 100000000000
send_byte_burst = 100000000000
max_queue_items_per_device = 100000000
max_queue_bytes_per_device = 100000000000

[storage]
backend = "rocksdb"

[auth]
argon2_memory_kib = 64
argon2_iterations = 1
failures_per_address_per_minute = 50
max_concurrent_logins = 64

[roster]
non_contacts = "accept"    # the bench's users are strangers; contact requests are not measured

[log]
level = "info"

[web]
listen = "127.0.0.1:0"     # several bench servers run at once, each on a port of its own
"#
        );
        std::fs::write(dir.path().join("sirend.toml"), config)
            .context("cannot write sirend.toml")?;
        let mut server = Server {
            dir,
            bin: bin.to_owned(),
            name: ServerName::parse(name).context("server name")?,
            sek: SekPublic::from_bytes([0; 32]),
            addr: None,
            web: None,
            child: None,
        };
        let key = server.admin(&["key"], None)?;
        server.sek = SekPublic::from_base64(key.trim()).context("sirend key printed no key")?;
        Ok(server)
    }

    /// Appends configuration text (e.g. a `[federation]` section) before the server starts.
    pub fn append_config(&self, text: &str) -> anyhow::Result<()> {
        let mut config =
            std::fs::read_to_string(self.config()).context("cannot read sirend.toml")?;
        config.push_str(text);
        std::fs::write(self.config(), config).context("cannot write sirend.toml")
    }

    /// Makes this server a node of a cluster (before it starts): the store becomes the
    /// PostgreSQL database at `url`, shared with the other nodes, and `[cluster]` names the node
    /// and the NATS server. The first node's key is the cluster's (see [`Server::share_key`]).
    pub fn cluster_node(&self, url: &str, node: &str, nats: &str) -> anyhow::Result<()> {
        let config = std::fs::read_to_string(self.config()).context("cannot read sirend.toml")?;
        let rocksdb = "[storage]\nbackend = \"rocksdb\"\n";
        if !config.contains(rocksdb) {
            bail!("sirend.toml has no RocksDB store to replace");
        }
        let postgres = format!(
            "[storage]\nbackend = \"postgres\"\n\n[storage.options]\nurl = \"{url}\"\npool_size = 8\n"
        );
        std::fs::write(self.config(), config.replace(rocksdb, &postgres))
            .context("cannot write sirend.toml")?;
        self.append_config(&format!(
            "\n[cluster]\nenabled = true\nnode_id = \"{node}\"\nnats = [\"{nats}\"]\n"
        ))
    }

    /// Takes `first`'s key (SEK): the nodes of a cluster share it, and its name.
    pub fn share_key(&mut self, first: &Server) -> anyhow::Result<()> {
        if self.name != first.name {
            bail!("the nodes of a cluster share its name");
        }
        std::fs::copy(
            first.dir.path().join("sek.key"),
            self.dir.path().join("sek.key"),
        )
        .context("cannot copy the cluster's key")?;
        self.sek = first.sek;
        Ok(())
    }

    fn config(&self) -> PathBuf {
        self.dir.path().join("sirend.toml")
    }

    /// The server's data directory (RocksDB lives under it).
    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("siren-data")
    }

    fn log_path(&self) -> PathBuf {
        self.dir.path().join("sirend.log")
    }

    /// Runs `sirend ARGS --config …` to completion; returns its standard output.
    fn admin(&self, args: &[&str], stdin: Option<&str>) -> anyhow::Result<String> {
        let mut child = Command::new(&self.bin)
            .args(args)
            .arg("--config")
            .arg(self.config())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .with_context(|| format!("cannot run sirend {}", args.join(" ")))?;
        if let (Some(text), Some(mut pipe)) = (stdin, child.stdin.take()) {
            writeln!(pipe, "{text}").context("cannot write to sirend's stdin")?;
        }
        let out = child.wait_with_output()?;
        if !out.status.success() {
            bail!(
                "sirend {}: {}",
                args.join(" "),
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// `sirend user add NAME` for each name, one process at a time (the store allows one
    /// process; the server must be stopped). Every user gets [`PASSWORD`].
    pub fn add_users<S: AsRef<str>>(&self, names: &[S]) -> anyhow::Result<()> {
        if self.child.is_some() {
            bail!("add users before starting the server");
        }
        for name in names {
            self.admin(
                &["user", "add", name.as_ref(), "--password-stdin"],
                Some(PASSWORD),
            )?;
        }
        Ok(())
    }

    /// Drops the cheap argon2 cost from the configuration: passwords are then hashed at the
    /// password backend's default (OWASP's) cost, as on a real server. Before users are added.
    pub fn default_password_cost(&self) -> anyhow::Result<()> {
        let path = self.dir.path().join("sirend.toml");
        let config = std::fs::read_to_string(&path).context("cannot read sirend.toml")?;
        let cheap = "argon2_memory_kib = 64\nargon2_iterations = 1\n";
        if !config.contains(cheap) {
            bail!("sirend.toml has no cheap argon2 cost to drop");
        }
        std::fs::write(&path, config.replace(cheap, "")).context("cannot write sirend.toml")
    }

    /// Starts `sirend run` and waits until it listens.
    pub fn start(&mut self) -> anyhow::Result<()> {
        if self.child.is_some() {
            bail!("the server is already running");
        }
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path())
            .context("cannot open the server log")?;
        let mut child = Command::new(&self.bin)
            .args(["run", "--config"])
            .arg(self.config())
            .env_remove("SIREN_LOG")
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(log))
            .spawn()
            .context("cannot start sirend run")?;
        let stdout = child.stdout.take().context("no stdout pipe")?;
        // The thread keeps draining stdout after the line we wait for.
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        let deadline = Instant::now() + Duration::from_secs(60);
        let addr = loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match rx.recv_timeout(left) {
                Ok(line) => {
                    if let Some(url) = line.strip_prefix("web client on http://") {
                        self.web = url.trim().trim_end_matches('/').parse().ok();
                    }
                    if let Some(addr) = line.strip_prefix("listening on ") {
                        break addr.trim().parse::<SocketAddr>().with_context(|| {
                            format!("sirend printed an unreadable address: {line:?}")
                        })?;
                    }
                }
                Err(_) => {
                    let _ = child.kill();
                    let _ = child.wait();
                    bail!("sirend did not start; its log:\n{}", self.log_tail(20));
                }
            }
        };
        self.addr = Some(addr);
        self.child = Some(child);
        Ok(())
    }

    /// Where to connect, while the server runs.
    pub fn target(&self) -> anyhow::Result<Target> {
        let addr = self.addr.context("the server is not running")?;
        Ok(Target {
            addr: addr.to_string(),
            name: self.name.clone(),
            sek: self.sek,
            websocket: self.web.map(|web| format!("ws://{web}/ws")),
        })
    }

    /// The running server's process id.
    pub fn pid(&self) -> anyhow::Result<u32> {
        self.child
            .as_ref()
            .map(Child::id)
            .context("the server is not running")
    }

    /// Its resident memory, in bytes.
    pub fn rss(&self) -> anyhow::Result<u64> {
        procfs::rss_bytes(self.pid()?)
    }

    /// SIGTERM, then wait for the graceful shutdown (SIGKILL after 60 s).
    pub fn stop(&mut self) -> anyhow::Result<()> {
        let Some(mut child) = self.child.take() else {
            return Ok(());
        };
        self.addr = None;
        let status = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status()
            .context("cannot run kill")?;
        if !status.success() {
            bail!("kill -TERM {} failed", child.id());
        }
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(status) = child.try_wait()? {
                if !status.success() {
                    bail!(
                        "sirend exited with {status}; its log:\n{}",
                        self.log_tail(20)
                    );
                }
                return Ok(());
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                bail!("sirend did not stop within 60 s of SIGTERM");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The last `n` lines of the server's log (for error messages).
    pub fn log_tail(&self, n: usize) -> String {
        let text = std::fs::read_to_string(self.log_path()).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(n)..].join("\n")
    }

    /// Log lines at WARN or ERROR so far (reported if there are any).
    pub fn warnings(&self) -> Vec<String> {
        std::fs::read_to_string(self.log_path())
            .unwrap_or_default()
            .lines()
            .filter(|l| l.contains(" WARN ") || l.contains(" ERROR "))
            .map(str::to_owned)
            .collect()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
