//! The one harness every integration test uses: real `sirend` processes on loopback ports, real
//! `siren` CLI processes and real library clients, in temporary directories.
//!
//! Binaries are found next to the test executable's directory (`target/debug/sirend`,
//! `target/debug/siren`); `scripts/test.sh` builds them before running the tests.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdout, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use tempfile::TempDir;

pub mod browser;
pub mod fake_peer;
pub mod hostile;
pub mod stream;
pub mod tmux;
pub mod web;

/// A workspace binary built next to the tests.
pub fn binary(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    // target/<profile>/deps/<test> -> target/<profile>/<name>
    let dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("target directory");
    let path = dir.join(name);
    assert!(
        path.exists(),
        "{} is missing: build the binaries first (`cargo build --workspace --bins`, which scripts/test.sh does)",
        path.display()
    );
    path
}

/// A free loopback port (bound, then released for the server to take).
///
/// Taken below the kernel's ephemeral range, where outgoing connections (a browser's, the
/// clients', the servers' links) get their local ports: a port from that range can be taken
/// by one of them between this check and the server's bind (seen in CI). One process hands out
/// ports one after another from a random start, so its tests never pick the same one.
pub fn free_port() -> u16 {
    use std::sync::atomic::{AtomicU32, Ordering};
    static NEXT: AtomicU32 = AtomicU32::new(0);
    const LOW: u32 = 10_000;
    let high = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|r| r.split_whitespace().next()?.parse::<u32>().ok())
        .unwrap_or(32_768);
    if high <= LOW + 1_000 {
        // No room below the ephemeral range: let the kernel choose.
        return TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
    }
    let span = high - LOW;
    let start = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos())
        ^ std::process::id().wrapping_mul(2_654_435_761);
    let _ = NEXT.compare_exchange(0, start % span + 1, Ordering::Relaxed, Ordering::Relaxed);
    for _ in 0..span {
        let port = LOW + NEXT.fetch_add(1, Ordering::Relaxed) % span;
        let port = u16::try_from(port).expect("below the ephemeral range");
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no free loopback port between {LOW} and {high}");
}

/// Extra configuration for a test server.
#[derive(Clone)]
pub struct Options {
    pub name: String,
    pub queue_ttl_secs: u64,
    pub sweep_interval_secs: u64,
    pub handshake_timeout_secs: u64,
    pub idle_timeout_secs: u64,
    pub approval_timeout_secs: u64,
    pub storage: &'static str,
    /// Lines added to `[storage]` (e.g. a `[storage.options]` table goes in `extra`).
    pub storage_lines: String,
    /// Lines added to `[auth]` (`mechanisms = …`, `credentials = …`).
    pub auth_lines: String,
    /// Lines added to `[limits]` (`max_connections = …`).
    pub limits_lines: String,
    pub extra: String,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            name: "alpha.test".into(),
            queue_ttl_secs: 7 * 24 * 3600,
            sweep_interval_secs: 60,
            handshake_timeout_secs: 10,
            idle_timeout_secs: 300,
            approval_timeout_secs: 60,
            storage: "rocksdb",
            storage_lines: String::new(),
            auth_lines: String::new(),
            limits_lines: String::new(),
            extra: String::new(),
        }
    }
}

/// A server's directory and configuration; started and stopped as a process.
pub struct Server {
    pub dir: TempDir,
    pub addr: SocketAddr,
    pub name: String,
    pub sek: String,
    /// The web listener's address while running (`[web] enabled`).
    pub web: Option<SocketAddr>,
    child: Option<Child>,
    log: Option<std::sync::Mutex<mpsc::Receiver<String>>>,
}

impl Server {
    /// Writes a configuration (cheap argon2 so logins are fast in tests) and a key.
    pub fn new(options: Options) -> Server {
        let dir = tempfile::tempdir().unwrap();
        let addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
        let out = Command::new(binary("sirend"))
            .args(["init", "--dir"])
            .arg(dir.path())
            .args(["--name", &options.name, "--listen", &addr.to_string()])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "sirend init: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        let sek = stdout
            .split("--server-key ")
            .nth(1)
            .and_then(|s| s.split_whitespace().next())
            .expect("init prints the key")
            .to_owned();
        let config = format!(
            r#"[server]
name = "{name}"
listen = "{addr}"

[limits]
queue_ttl_secs = {ttl}
sweep_interval_secs = {sweep}
handshake_timeout_secs = {hs}
idle_timeout_secs = {idle}
approval_timeout_secs = {approval}
{limits_lines}

[storage]
backend = "{storage}"
{storage_lines}

[auth]
{auth_lines}
{argon2}failures_per_address_per_minute = 50

[log]
level = "info"
{web}{extra}
"#,
            name = options.name,
            ttl = options.queue_ttl_secs,
            sweep = options.sweep_interval_secs,
            hs = options.handshake_timeout_secs,
            idle = options.idle_timeout_secs,
            approval = options.approval_timeout_secs,
            storage = options.storage,
            storage_lines = options.storage_lines,
            // Cheap hashing so logins are fast, unless the test sets its own cost.
            argon2 = if options.auth_lines.contains("argon2_") {
                ""
            } else {
                "argon2_memory_kib = 64\nargon2_iterations = 1\n"
            },
            auth_lines = options.auth_lines,
            limits_lines = options.limits_lines,
            // Every test server's web listener on a port of its own (a test that configures it
            // writes its own `[web]`).
            web = if options.extra.contains("[web]") {
                ""
            } else {
                "\n[web]\nlisten = \"127.0.0.1:0\"\n"
            },
            extra = options.extra,
        );
        std::fs::write(dir.path().join("sirend.toml"), config).unwrap();
        Server {
            dir,
            addr,
            name: options.name,
            sek,
            web: None,
            child: None,
            log: None,
        }
    }

    /// Another node of `first`'s cluster, written with `options` (its name must be `first`'s):
    /// its own directory, listener and data, `first`'s SEK.
    pub fn node_of(first: &Server, options: Options) -> Server {
        assert_eq!(
            options.name, first.name,
            "the nodes of a cluster share its name"
        );
        let mut node = Server::new(options);
        std::fs::copy(
            first.dir.path().join("sek.key"),
            node.dir.path().join("sek.key"),
        )
        .unwrap();
        node.sek = first.sek.clone();
        node
    }

    /// The running server's process id.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// The running server's resident memory, in bytes (Linux `/proc`).
    pub fn rss(&self) -> Option<u64> {
        rss_of(self.pid()?)
    }

    pub fn config(&self) -> PathBuf {
        self.dir.path().join("sirend.toml")
    }

    /// `sirend user add NAME` (through the admin socket while the server runs).
    pub fn add_user(&self, name: &str, password: &str) {
        let mut child = Command::new(binary("sirend"))
            .args(["user", "add", name, "--password-stdin", "--config"])
            .arg(self.config())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        writeln!(child.stdin.take().unwrap(), "{password}").unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "user add: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Runs `sirend ARGS` (e.g. `check-config`, `migrate-store`) to completion.
    pub fn sirend(args: &[&str]) -> Output {
        let out = Command::new(binary("sirend")).args(args).output().unwrap();
        Output {
            ok: out.status.success(),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }

    /// Runs `sirend user ARGS… --config <this server's>` to completion with `stdin` (a
    /// password for `--password-stdin`); through the admin socket while the server runs.
    pub fn user_command(&self, args: &[&str], stdin: &str) -> Output {
        let mut cmd = Command::new(binary("sirend"));
        cmd.arg("user")
            .args(args)
            .arg("--config")
            .arg(self.config());
        run_to_end(cmd, stdin)
    }

    /// `sirend user ARGS…` as it runs on another machine sharing this server's store
    /// (PostgreSQL): the same configuration with another data directory, so it cannot reach
    /// the running server's admin socket and works on the store alone.
    pub fn user_command_elsewhere(&self, args: &[&str], stdin: &str) -> Output {
        let elsewhere = self.dir.path().join("elsewhere");
        std::fs::create_dir_all(&elsewhere).unwrap();
        let config = elsewhere.join("sirend.toml");
        std::fs::copy(self.config(), &config).unwrap();
        let mut cmd = Command::new(binary("sirend"));
        cmd.arg("user").args(args).arg("--config").arg(config);
        run_to_end(cmd, stdin)
    }

    /// `sirend ARGS… --config <this server's>` (an admin command: through the running
    /// server's admin socket, or on the store when the server is stopped) to completion.
    pub fn admin(&self, args: &[&str], stdin: &str) -> Output {
        let mut cmd = Command::new(binary("sirend"));
        cmd.args(args).arg("--config").arg(self.config());
        run_to_end(cmd, stdin)
    }

    /// `sirend run` that must fail at start-up: returns what it printed on stderr.
    pub fn start_failure(&self) -> String {
        let out = Command::new(binary("sirend"))
            .args(["run", "--config"])
            .arg(self.config())
            .output()
            .unwrap();
        assert!(!out.status.success(), "sirend started, but should not have");
        String::from_utf8_lossy(&out.stderr).into_owned()
    }

    /// Starts `sirend run` and waits until it listens.
    pub fn start(&mut self) {
        assert!(self.child.is_none(), "already running");
        let mut child = Command::new(binary("sirend"))
            .args(["run", "--config"])
            .arg(self.config())
            .env("SIREN_LOG", "info")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let stderr = child.stderr.take().unwrap();
        let (tx, rx) = mpsc::channel();
        let log_tx = tx.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                let _ = log_tx.send(line);
            }
        });
        let ready = wait_for_lines(stdout, "listening on ", Duration::from_secs(60));
        assert!(
            ready.is_some(),
            "sirend did not start; log: {:?}",
            rx.try_iter().collect::<Vec<_>>()
        );
        // `web client on http://127.0.0.1:PORT/` comes before `listening on`.
        self.web = ready.unwrap_or_default().iter().find_map(|line| {
            let url = line.strip_prefix("web client on ")?;
            let rest = url.split("://").nth(1)?;
            rest.trim_end_matches('/').parse().ok()
        });
        self.child = Some(child);
        self.log = Some(std::sync::Mutex::new(rx));
    }

    /// SIGTERM and wait (graceful shutdown). Returns the exit status success.
    pub fn stop(&mut self) -> bool {
        let Some(mut child) = self.child.take() else {
            return true;
        };
        signal(&child, "TERM");
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                return status.success();
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                panic!("sirend did not stop within 30 s of SIGTERM");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// SIGKILL: no flush, no goodbye.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            signal(&child, "KILL");
            let _ = child.wait();
        }
    }

    /// Waits (up to 10 s) until the server logged a line containing `needle`; returns the whole
    /// log so far.
    pub fn wait_for_log(&self, needle: &str) -> String {
        let mut log = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            log.extend(self.log_lines());
            if log.iter().any(|l| l.contains(needle)) {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        log.join("\n")
    }

    /// Everything the server logged so far.
    pub fn log_lines(&self) -> Vec<String> {
        self.log
            .as_ref()
            .map(|rx| {
                rx.lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .try_iter()
                    .collect()
            })
            .unwrap_or_default()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill();
    }
}

fn signal(child: &Child, sig: &str) {
    let _ = Command::new("kill")
        .arg(format!("-{sig}"))
        .arg(child.id().to_string())
        .status();
}

/// Reads `stdout` on a thread until a line containing `needle` appears (returns it) or the time
/// runs out. The rest of the stream is drained in the background.
/// The lines of `stdout` up to and with the first that contains `needle`; the rest is read and
/// dropped in the background.
fn wait_for_lines(stdout: ChildStdout, needle: &str, limit: Duration) -> Option<Vec<String>> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let deadline = Instant::now() + limit;
    let mut lines = Vec::new();
    while let Some(left) = deadline.checked_duration_since(Instant::now()) {
        match rx.recv_timeout(left) {
            Ok(line) => {
                let found = line.contains(needle);
                lines.push(line);
                if found {
                    return Some(lines);
                }
            }
            Err(_) => return None,
        }
    }
    None
}

/// A `siren` CLI profile.
pub struct Cli {
    pub dir: TempDir,
    pub uid: String,
}

/// The result of one CLI command.
pub struct Output {
    pub ok: bool,
    pub stdout: String,
    pub stderr: String,
}

impl Cli {
    /// `siren init UID --server … --server-key …` in a fresh profile directory.
    pub fn init(server: &Server, uid: &str) -> Cli {
        Cli::init_at(server, uid, &server.addr.to_string())
    }

    /// [`Cli::init`] with the server at `address` (`ws://…/ws` for its web listener).
    pub fn init_at(server: &Server, uid: &str, address: &str) -> Cli {
        let dir = tempfile::tempdir().unwrap();
        let cli = Cli {
            dir,
            uid: uid.to_owned(),
        };
        let out = cli.run(&[
            "init",
            uid,
            "--server",
            address,
            "--server-key",
            &server.sek,
        ]);
        assert!(out.ok, "siren init: {}", out.stderr);
        cli
    }

    pub fn profile(&self) -> &Path {
        self.dir.path()
    }

    /// A library client over this profile (which no command may use meanwhile), connected.
    pub async fn connected(&self) -> siren_client::client::Client {
        let profile = siren_client::profile::Profile::open(self.profile(), None).unwrap();
        let mut client = siren_client::client::open(profile).unwrap();
        client.connect().await.unwrap();
        client
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(binary("siren"));
        cmd.arg("--profile").arg(self.dir.path()).args(args);
        cmd.env_remove("SIREN_PASSPHRASE");
        cmd
    }

    /// Runs a command to completion.
    pub fn run(&self, args: &[&str]) -> Output {
        self.run_with_stdin(args, "")
    }

    pub fn run_with_stdin(&self, args: &[&str], stdin: &str) -> Output {
        run_to_end(self.command(args), stdin)
    }

    /// `siren login --password-stdin`, which must succeed.
    pub fn login(&self, password: &str) -> Output {
        let out = self.run_with_stdin(&["login", "--password-stdin"], &format!("{password}\n"));
        assert!(out.ok, "siren login: {}", out.stderr);
        out
    }

    /// `siren login --password-stdin`, which may fail.
    pub fn try_login(&self, password: &str) -> Output {
        self.run_with_stdin(&["login", "--password-stdin"], &format!("{password}\n"))
    }

    /// `siren send`, which must succeed.
    pub fn send(&self, to: &str, text: &str) {
        let out = self.run(&["send", to, text]);
        assert!(out.ok, "siren send: {}", out.stderr);
    }

    /// `siren recv`: the lines printed.
    pub fn recv(&self) -> Vec<String> {
        let out = self.run(&["recv"]);
        assert!(out.ok, "siren recv: {}", out.stderr);
        out.stdout.lines().map(str::to_owned).collect()
    }

    /// Starts a command in the background with `stdin` written to it.
    pub fn spawn(&self, args: &[&str], stdin: &str) -> Running {
        let mut child = self
            .command(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut input = child.stdin.take().unwrap();
        input.write_all(stdin.as_bytes()).unwrap();
        let (tx, rx) = mpsc::channel();
        let stdout = child.stdout.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Running {
            child,
            lines: rx,
            stdin: Some(input),
        }
    }

    /// Starts `siren listen` in the background.
    pub fn listen(&self) -> Listener {
        self.listen_with(&[])
    }

    /// Starts `siren listen ARGS…` in the background and waits until it is connected.
    pub fn listen_with(&self, args: &[&str]) -> Listener {
        let mut full = vec!["listen"];
        full.extend_from_slice(args);
        let mut child = self
            .command(&full)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let (tx, rx) = mpsc::channel();
        let stdout = child.stdout.take().unwrap();
        let mut stderr = child.stderr.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        // Wait until it is connected (it says so on stderr).
        let (etx, erx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            let mut seen = String::new();
            while let Ok(n) = stderr.read(&mut buf) {
                if n == 0 {
                    break;
                }
                seen.push_str(&String::from_utf8_lossy(&buf[..n]));
                let _ = etx.send(seen.clone());
            }
        });
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            match erx.recv_timeout(Duration::from_millis(100)) {
                Ok(text) if text.contains("listening as") => break,
                Ok(_) => {}
                Err(_) if Instant::now() > deadline => panic!("siren listen did not connect"),
                Err(_) => {}
            }
        }
        Listener {
            child,
            lines: rx,
            stderr: erx,
        }
    }
}

/// A `nats-server` on a loopback port (Debian's package, which `scripts/test.sh` installs),
/// stopped when dropped.
pub struct Nats {
    child: Option<Child>,
    /// Its port.
    pub port: u16,
    /// The token it requires, and the file holding it (for `[cluster] nats_token_file`).
    token: Option<(String, tempfile::TempDir)>,
}

impl Nats {
    /// Starts one and waits until it accepts connections.
    pub fn start() -> Nats {
        let mut nats = Nats {
            child: None,
            port: free_port(),
            token: None,
        };
        nats.spawn();
        nats
    }

    /// [`Nats::start`], requiring a (random) token of every client.
    pub fn start_with_token() -> Nats {
        let token = siren_proto::ids::MessageId::random(&mut siren_proto::os_rng()).to_hex();
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("nats.token"), format!("{token}\n")).unwrap();
        let mut nats = Nats {
            child: None,
            port: free_port(),
            token: Some((token, dir)),
        };
        nats.spawn();
        nats
    }

    /// Its address, as `[cluster] nats` takes it.
    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// The `[cluster]` lines that reach it: `nats`, and `nats_token_file` if it wants a token.
    pub fn config_lines(&self) -> String {
        let mut lines = format!("nats = [\"{}\"]\n", self.url());
        if let Some((_, dir)) = &self.token {
            lines.push_str(&format!(
                "nats_token_file = \"{}\"\n",
                dir.path().join("nats.token").display()
            ));
        }
        lines
    }

    fn spawn(&mut self) {
        let mut args = vec![
            "-a".to_owned(),
            "127.0.0.1".to_owned(),
            "-p".to_owned(),
            self.port.to_string(),
        ];
        if let Some((token, _)) = &self.token {
            args.extend(["--auth".to_owned(), token.clone()]);
        }
        let child = Command::new("nats-server")
            .args(&args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "cannot start nats-server ({e}): scripts/test.sh installs Debian's nats-server"
                )
            });
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(Instant::now() < deadline, "nats-server did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Stops it (`kill -9`: whatever it held is gone).
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            signal(&child, "KILL");
            let _ = child.wait();
        }
    }

    /// Starts it again on the same port.
    pub fn restart(&mut self) {
        self.kill();
        self.spawn();
    }
}

impl Drop for Nats {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A second device of `uid` on `server`, logged in and approved from `first` (`siren devices
/// approve` with the code the new device shows), its signing key confirmed.
pub fn second_device(server: &Server, first: &Cli, uid: &str, password: &str) -> Cli {
    let t = Duration::from_secs(30);
    let mut approver = first.spawn(&["devices", "approve", "--code-stdin", "--wait", "30"], "");
    let device = Cli::init(server, uid);
    let mut login = device.spawn(
        &["login", "--password-stdin", "--device-name", "phone"],
        &format!("{password}\n"),
    );
    let code = login.next_with("approval code: ", t).replace(' ', "");
    approver.write_line(&code);
    let approved = approver.finish(t);
    assert!(approved.ok, "approve: {}", approved.stderr);
    login.next_with("signing key ", t);
    login.write_line("y");
    let done = login.finish(t);
    assert!(done.ok, "second device of {uid}: {}", done.stderr);
    device
}

/// A server started with `options`, with alice (password `alice-1`) and bob (`bob-1`) logged in
/// on one device each.
pub fn alice_and_bob(options: Options) -> (Server, Cli, Cli) {
    let mut s = Server::new(options);
    s.add_user("alice", "alice-1");
    s.add_user("bob", "bob-1");
    s.start();
    let alice = Cli::init(&s, "alice@alpha.test");
    alice.login("alice-1");
    let bob = Cli::init(&s, "bob@alpha.test");
    bob.login("bob-1");
    (s, alice, bob)
}

/// Runs `cmd` to completion with `stdin` written to it.
pub fn run_to_end(mut cmd: Command, stdin: &str) -> Output {
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    Output {
        ok: out.status.success(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// The value of a variable `scripts/test.sh` sets for a service it started (PostgreSQL,
/// slapd); panics saying so when it is missing.
pub fn service_env(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| {
        panic!("{name} is not set: run the tests through scripts/test.sh, which starts PostgreSQL and slapd")
    })
}

/// A fresh database on the test PostgreSQL (`SIREN_TEST_POSTGRES_URL`); returns its URL.
pub fn postgres_database() -> String {
    let admin = service_env("SIREN_TEST_POSTGRES_URL");
    let name = format!(
        "siren_it_{}_{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos()
    );
    let out = Command::new("psql")
        .args([&admin, "-q", "-c", &format!("CREATE DATABASE {name}")])
        .output()
        .expect("psql");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let base = admin.rsplit_once('/').unwrap().0;
    format!("{base}/{name}")
}

/// A command running in the background.
pub struct Running {
    child: Child,
    lines: mpsc::Receiver<String>,
    stdin: Option<std::process::ChildStdin>,
}

impl Running {
    /// The rest of the first line (within `limit` each) that starts with `prefix`.
    pub fn next_with(&self, prefix: &str, limit: Duration) -> String {
        loop {
            let line = self
                .next_line(limit)
                .unwrap_or_else(|| panic!("no line starting with {prefix:?}"));
            if let Some(rest) = line.strip_prefix(prefix) {
                return rest.to_owned();
            }
        }
    }

    /// Writes a line to the command's standard input.
    pub fn write_line(&mut self, line: &str) {
        let stdin = self.stdin.as_mut().expect("stdin still open");
        writeln!(stdin, "{line}").unwrap();
        stdin.flush().unwrap();
    }

    /// The next line on stdout, within `limit`.
    pub fn next_line(&self, limit: Duration) -> Option<String> {
        self.lines.recv_timeout(limit).ok()
    }

    /// Waits for the command to end (at most `limit`); its success, the rest of stdout, stderr.
    pub fn finish(mut self, limit: Duration) -> Output {
        drop(self.stdin.take());
        let deadline = Instant::now() + limit;
        let status = loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                break status;
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                panic!("the command did not finish within {limit:?}");
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        let mut stderr = String::new();
        if let Some(mut e) = self.child.stderr.take() {
            let _ = e.read_to_string(&mut stderr);
        }
        // Everything the command printed: the reader ends at the pipe's end (waited for, so
        // the last lines are not lost to a race with the exit).
        let mut stdout = Vec::new();
        while let Ok(line) = self.lines.recv_timeout(Duration::from_secs(5)) {
            stdout.push(line);
        }
        Output {
            ok: status.success(),
            stdout: stdout.join("\n"),
            stderr,
        }
    }
}

/// A running `siren listen`.
pub struct Listener {
    child: Child,
    lines: mpsc::Receiver<String>,
    /// Everything printed on stderr so far, each time more arrives.
    stderr: mpsc::Receiver<String>,
}

impl Listener {
    /// The next printed line, within `limit`.
    pub fn next_line(&self, limit: Duration) -> Option<String> {
        self.lines.recv_timeout(limit).ok()
    }

    /// Waits (up to `limit`) for `siren listen` to end by itself (the server closed the
    /// session); its success and stderr (stdout is read with [`Listener::next_line`]), or `None`
    /// if it still runs.
    pub fn exited(&mut self, limit: Duration) -> Option<Output> {
        let deadline = Instant::now() + limit;
        let status = loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                break status;
            }
            if Instant::now() > deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        // The reader thread ends at EOF; its last message is the whole of stderr.
        let mut stderr = String::new();
        while let Ok(seen) = self.stderr.recv_timeout(Duration::from_secs(5)) {
            stderr = seen;
        }
        Some(Output {
            ok: status.success(),
            stdout: String::new(),
            stderr,
        })
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A process's resident memory, in bytes (Linux `/proc`).
pub fn rss_of(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))?
        .trim()
        .strip_suffix("kB")?
        .trim()
        .parse()
        .ok()?;
    Some(kib * 1024)
}

/// Every file under `dir`, recursively.
pub fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_owned()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let p = entry.path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.push(p);
            }
        }
    }
    out
}

/// Whether any file under `dir` contains `needle`.
pub fn any_file_contains(dir: &Path, needle: &[u8]) -> Option<PathBuf> {
    files_under(dir).into_iter().find(|p| {
        std::fs::read(p).is_ok_and(|bytes| bytes.windows(needle.len()).any(|w| w == needle))
    })
}

/// Raw protocol access for tests that must misbehave (forged senders, replays, bad frames).
pub mod raw {
    use std::time::Duration;

    use siren_api::{ServerName, Uid};
    use siren_net::{Connected, connect};
    use siren_proto::handshake::SessionRequest;
    use siren_proto::keys::{DekSecret, SekPublic, UskSecret};
    use siren_proto::message::{ClientMessage, NextStep, ServerMessage};
    use siren_proto::records::DeviceRecordDraft;
    use siren_proto::transcript::Digest;

    use super::Server;

    /// A logged-in raw session.
    pub struct Session {
        pub conn: Connected,
        pub uid: Uid,
        pub dek: DekSecret,
        pub usk: UskSecret,
        next_rid: u32,
    }

    pub fn sek(server: &Server) -> SekPublic {
        SekPublic::from_base64(&server.sek).unwrap()
    }

    /// Opens a session with a fresh DEK from local address `from` (127.0.0.x: another client
    /// address), or the error the server answered.
    pub async fn open_from(
        server: &Server,
        dek: &DekSecret,
        from: std::net::IpAddr,
    ) -> Result<Connected, siren_net::NetError> {
        siren_net::connect_from(
            from,
            server.addr,
            &ServerName::parse(&server.name).unwrap(),
            &sek(server),
            dek,
            SessionRequest::Open,
            Duration::from_secs(10),
        )
        .await
    }

    /// Opens a session from `from` and runs a `PLAIN` login: the `next` step, or the error code
    /// of the refusal (a refused connection's code too).
    pub async fn login_from(
        server: &Server,
        from: std::net::IpAddr,
        user: &str,
        password: &str,
    ) -> (DekSecret, Result<(Connected, NextStep), u16>) {
        let dek = DekSecret::generate(&mut siren_proto::os_rng());
        let conn = match open_from(server, &dek, from).await {
            Ok(c) => c,
            Err(siren_net::NetError::Handshake(
                siren_proto::handshake::HandshakeError::Refused { code, .. },
            )) => return (dek, Err(code)),
            Err(e) => panic!("cannot connect: {e}"),
        };
        (dek, login_on(conn, user, password).await)
    }

    /// Runs a `PLAIN` login on an open session: the `next` step, or the error code.
    pub async fn login_on(
        mut conn: Connected,
        user: &str,
        password: &str,
    ) -> Result<(Connected, NextStep), u16> {
        start_plain(&mut conn, user, password).await;
        let answer = match conn.receiver.recv::<ServerMessage>().await {
            Ok(ServerMessage::AuthSuccess { next, .. }) => Ok(next),
            Ok(ServerMessage::Error { code, .. }) => Err(code),
            Ok(other) => panic!("unexpected answer to login: {other:?}"),
            Err(e) => panic!("login: {e}"),
        };
        answer.map(|next| (conn, next))
    }

    /// Opens a session with `dek` over a WebSocket to the server's web listener.
    pub async fn open_web(server: &Server, dek: &DekSecret) -> Connected {
        let web = server.web.expect("the server's web listener is on");
        let (rd, wr) = crate::web::bridge(crate::web::open(web, None).await.unwrap());
        open_over(server, dek, rd, wr).await
    }

    /// Opens a session with `dek` over a connection the caller opened (frames on `rd`, `wr`).
    pub async fn open_over(
        server: &Server,
        dek: &DekSecret,
        rd: siren_net::ReadHalf,
        wr: siren_net::WriteHalf,
    ) -> Connected {
        siren_net::connect_over(
            rd,
            wr,
            &ServerName::parse(&server.name).unwrap(),
            &sek(server),
            dek,
            SessionRequest::Open,
            Duration::from_secs(10),
        )
        .await
        .unwrap()
    }

    /// Reads the welcome and the mechanisms, then sends a `PLAIN` login (request id 1); the
    /// answers are the caller's to read.
    pub async fn start_plain(conn: &mut Connected, user: &str, password: &str) {
        for _ in 0..2 {
            // welcome, auth_mechanisms
            conn.receiver.recv::<ServerMessage>().await.unwrap();
        }
        conn.sender
            .send(&ClientMessage::AuthStart {
                rid: 1,
                mech: "PLAIN".into(),
                data: format!("\0{user}\0{password}").into_bytes(),
            })
            .await
            .unwrap();
    }

    /// The next message the server sends on `conn`, whatever it is (20 s at most).
    pub async fn next_message(conn: &mut Connected) -> ServerMessage {
        tokio::time::timeout(
            Duration::from_secs(20),
            conn.receiver.recv::<ServerMessage>(),
        )
        .await
        .expect("a message from the server in time")
        .unwrap()
    }

    /// Opens a session with `dek`.
    pub async fn open(server: &Server, dek: &DekSecret) -> Connected {
        connect(
            &server.addr.to_string(),
            &ServerName::parse(&server.name).unwrap(),
            &sek(server),
            dek,
            SessionRequest::Open,
            Duration::from_secs(10),
        )
        .await
        .unwrap()
    }

    impl Session {
        /// Logs in as a user with no devices yet and registers a fresh DEK with a fresh USK.
        pub async fn create(server: &Server, user: &str, password: &str) -> Session {
            let (dek, answer) = login_from(
                server,
                std::net::IpAddr::from([127, 0, 0, 1]),
                user,
                password,
            )
            .await;
            Session::register(server, dek, answer, user).await
        }

        /// [`Session::create`] over a WebSocket to the server's web listener.
        pub async fn create_web(server: &Server, user: &str, password: &str) -> Session {
            let dek = DekSecret::generate(&mut siren_proto::os_rng());
            let conn = open_web(server, &dek).await;
            Session::create_on(server, dek, conn, user, password).await
        }

        /// [`Session::create`] on a session `conn` opened with `dek` in some other way.
        pub async fn create_on(
            server: &Server,
            dek: DekSecret,
            conn: Connected,
            user: &str,
            password: &str,
        ) -> Session {
            let answer = login_on(conn, user, password).await;
            Session::register(server, dek, answer, user).await
        }

        async fn register(
            server: &Server,
            dek: DekSecret,
            answer: Result<(Connected, NextStep), u16>,
            user: &str,
        ) -> Session {
            let (mut conn, next) = answer.unwrap_or_else(|code| panic!("login failed: {code}"));
            let uid = Uid::parse(&format!("{user}@{}", server.name)).unwrap();
            assert_eq!(next, NextStep::CreateUser, "raw sessions create their user");
            let usk = UskSecret::generate(&mut siren_proto::os_rng());
            let record = DeviceRecordDraft {
                uid: uid.clone(),
                dek: dek.public(),
                seq: 1,
                prev: Digest::ZERO,
                ts: 0,
                name: Some("raw".into()),
            }
            .sign(&usk);
            conn.sender
                .send(&ClientMessage::Register { rid: 2, record })
                .await
                .unwrap();
            let mut s = Session {
                conn,
                uid,
                dek,
                usk,
                next_rid: 2,
            };
            match s.next_answer().await {
                ServerMessage::Ok { rid: 2 } => s,
                other => panic!("register failed: {other:?}"),
            }
        }

        /// This session's device logged in again, on `server` (another node of its cluster):
        /// a second session of the same device, ready.
        pub async fn again_on(&self, server: &Server, password: &str) -> Session {
            let dek = DekSecret::from_bytes(*self.dek.to_bytes());
            let usk = UskSecret::from_bytes(&self.usk.to_bytes());
            let (conn, next) =
                login_on(open(server, &dek).await, self.uid.user().as_str(), password)
                    .await
                    .unwrap_or_else(|code| panic!("login failed: {code}"));
            assert_eq!(next, NextStep::Ready, "the device is registered");
            Session {
                conn,
                uid: self.uid.clone(),
                dek,
                usk,
                next_rid: 1,
            }
        }

        /// An envelope from this session's device to `to`'s device, with counter `ctr`.
        pub fn seal_to(
            &self,
            to: &Uid,
            to_dek: &siren_proto::keys::DekPublic,
            ctr: u64,
            content: &[u8],
        ) -> siren_proto::envelope::Envelope {
            siren_proto::envelope::Envelope::seal(
                siren_proto::envelope::Sender {
                    uid: &self.uid,
                    usk: &self.usk,
                    dek: &self.dek.public(),
                },
                to,
                to_dek,
                siren_proto::ids::MessageId::random(&mut siren_proto::os_rng()),
                ctr,
                content,
                &mut siren_proto::os_rng(),
            )
            .unwrap()
        }

        /// Sends a request with the next request id; returns the id.
        pub async fn request(&mut self, make: impl FnOnce(u32) -> ClientMessage) -> u32 {
            self.next_rid += 1;
            let rid = self.next_rid;
            self.conn.sender.send(&make(rid)).await.unwrap();
            rid
        }

        /// The next message that is not a queue delivery.
        pub async fn next_answer(&mut self) -> ServerMessage {
            loop {
                let msg = next_message(&mut self.conn).await;
                if !matches!(
                    msg,
                    ServerMessage::Deliver { .. } | ServerMessage::QueueDrained
                ) {
                    return msg;
                }
            }
        }
    }
}

/// A dnsmasq on loopback of one test's own (`scripts/services/dnsmasq.sh`, which installs it
/// with apt-get when missing), answering for `*.test` from the records given; stopped on drop.
pub struct Dns {
    dir: TempDir,
    /// Where it answers (UDP and TCP).
    pub addr: SocketAddr,
}

/// Starts are serialised: the first may install dnsmasq with apt-get, which takes a lock.
static DNS_START: std::sync::Mutex<()> = std::sync::Mutex::new(());

impl Dns {
    fn script() -> PathBuf {
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../scripts/services/dnsmasq.sh")
    }

    fn run(&self, action: &str) {
        let out = Command::new("bash")
            .arg(Self::script())
            .arg(action)
            .arg(self.dir.path())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "scripts/services/dnsmasq.sh {action} failed (these tests need dnsmasq; the script installs it as root):\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Starts dnsmasq with `records` (dnsmasq option lines: `srv-host=…`, `txt-record=…`,
    /// `host-record=…`).
    pub fn start(records: &str) -> Dns {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("records.conf"), records).unwrap();
        let mut dns = Dns {
            dir,
            addr: "127.0.0.1:0".parse().unwrap(),
        };
        {
            let _guard = DNS_START.lock().unwrap_or_else(|e| e.into_inner());
            dns.run("start");
        }
        let env = std::fs::read_to_string(dns.dir.path().join("dnsmasq.env")).unwrap();
        dns.addr = env
            .trim()
            .strip_prefix("export SIREN_TEST_DNS=")
            .unwrap_or_else(|| panic!("unexpected dnsmasq.env: {env:?}"))
            .parse()
            .unwrap();
        dns
    }

    /// Replaces every record (the script restarts dnsmasq on the same port).
    pub fn rewrite(&self, records: &str) {
        std::fs::write(self.dir.path().join("records.conf"), records).unwrap();
        self.run("reload");
    }

    /// How many queries for names containing `needle` dnsmasq logged so far.
    pub fn queries(&self, needle: &str) -> usize {
        std::fs::read_to_string(self.dir.path().join("dnsmasq.log"))
            .unwrap_or_default()
            .lines()
            .filter(|l| l.contains("query[") && l.contains(needle))
            .count()
    }

    /// The records that make `server` findable: SRV, an A record for its name, the key TXT.
    pub fn records_for(server: &Server) -> String {
        format!(
            "srv-host=_siren._tcp.{name},{name},{port},10,0\nhost-record={name},{ip}\ntxt-record=_siren-key.{name},\"v=siren1; k={key}\"\n",
            name = server.name,
            port = server.addr.port(),
            ip = server.addr.ip(),
            key = server.sek
        )
    }

    /// Turns federation on in `server`'s configuration, finding peers through this DNS server,
    /// with `policy` lines after. Every test server listens on loopback, so each must be
    /// allowed to follow DNS to non-public addresses.
    pub fn federate(&self, server: &Server, policy: &str) {
        let config = std::fs::read_to_string(server.config()).unwrap();
        std::fs::write(
            server.config(),
            format!(
                "{config}\n[federation]\nenabled = true\ndns = [\"{}\"]\ndanger_allow_private_targets = true\n{policy}\n",
                self.addr
            ),
        )
        .unwrap();
    }
}

impl Drop for Dns {
    fn drop(&mut self) {
        let _ = Command::new("bash")
            .arg(Self::script())
            .arg("stop")
            .arg(self.dir.path())
            .status();
    }
}

/// The first ```sh block of a Markdown file of the repository (`examples/…/README.md`): the
/// walkthrough the example tests run as written.
pub fn walkthrough(path_in_repo: &str) -> String {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join(path_in_repo);
    let text = std::fs::read_to_string(&path).unwrap();
    text.split("```sh\n")
        .nth(1)
        .and_then(|s| s.split("```").next())
        .unwrap_or_else(|| panic!("no sh block in {}", path.display()))
        .to_owned()
}

/// An example's walkthrough (`script`, from [`walkthrough`]) run with bash from the repository
/// root, each command echoed to nothing; `finished` is false when it did not end within
/// `limit` — then it and every process it started (all run under `work`) are killed, so a
/// server that fails to start fails the test instead of hanging it.
pub struct ExampleRun {
    /// Whether it ended in time.
    pub finished: bool,
    /// What it printed.
    pub stdout: String,
    /// What it printed on standard error.
    pub stderr: String,
}

/// Runs an example's walkthrough; see [`ExampleRun`].
pub fn run_example(script: &str, work: &Path, limit: Duration) -> ExampleRun {
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/..");
    let mut child = Command::new("bash")
        .args(["-c", &format!("set -m\n{script}\nwait")])
        .current_dir(std::fs::canonicalize(root).unwrap())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let read = |pipe: Option<Box<dyn Read + Send>>| {
        std::thread::spawn(move || {
            let mut text = String::new();
            if let Some(mut pipe) = pipe {
                let _ = pipe.read_to_string(&mut text);
            }
            text
        })
    };
    let stdout = read(
        child
            .stdout
            .take()
            .map(|p| Box::new(p) as Box<dyn Read + Send>),
    );
    let stderr = read(
        child
            .stderr
            .take()
            .map(|p| Box::new(p) as Box<dyn Read + Send>),
    );
    let deadline = Instant::now() + limit;
    let finished = loop {
        if child.try_wait().unwrap().is_some() {
            break true;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            break false;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    if !finished {
        kill_everything_under(work);
    }
    let _ = child.wait();
    ExampleRun {
        finished,
        stdout: stdout.join().unwrap(),
        stderr: stderr.join().unwrap(),
    }
}

/// Kills every process whose working directory is under `dir` (an example's servers run in
/// their own process groups, with relative paths, so neither a group nor a name finds them).
pub fn kill_everything_under(dir: &Path) {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return;
    };
    for entry in entries.flatten() {
        let pid = entry.file_name();
        let Some(pid) = pid
            .to_str()
            .filter(|p| p.bytes().all(|b| b.is_ascii_digit()))
        else {
            continue;
        };
        if std::fs::read_link(entry.path().join("cwd")).is_ok_and(|cwd| cwd.starts_with(dir)) {
            let _ = Command::new("kill").args(["-9", pid]).status();
        }
    }
}

/// Scraping a server's metrics listener.
pub mod metrics {
    use std::io::{Read as _, Write as _};
    use std::net::{SocketAddr, TcpStream};
    use std::time::Duration;

    /// `GET path` over HTTP/1.1: the status code and the body.
    pub fn get(addr: SocketAddr, path: &str) -> Option<(u16, String)> {
        let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(5)).ok()?;
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .ok()?;
        write!(
            stream,
            "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
        )
        .ok()?;
        let mut response = String::new();
        stream.read_to_string(&mut response).ok()?;
        let status = response.split(' ').nth(1)?.parse().ok()?;
        let body = response.split_once("\r\n\r\n")?.1.to_owned();
        Some((status, body))
    }

    /// A `[metrics]` section listening on `port` of loopback.
    pub fn metrics_on(port: u16) -> String {
        format!("\n[metrics]\nenabled = true\nlisten = \"127.0.0.1:{port}\"\n")
    }

    /// The value of the sample line that starts with `name` (labels included), if any.
    pub fn sample(text: &str, name: &str) -> Option<f64> {
        text.lines()
            .find(|l| l.starts_with(name) && l[name.len()..].starts_with(' '))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse().ok())
    }
}
