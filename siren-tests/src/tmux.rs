//! A real terminal for end-to-end tests of `siren chat`: a command runs in a detached tmux
//! session of a given size; tests type into it (`send-keys`) and read the screen
//! (`capture-pane`), waiting for text to appear or go.
//!
//! Each [`Tmux`] runs its own tmux server on a socket in its own temporary directory (no user
//! configuration, nothing shared with other tests or a person's tmux), with `remain-on-exit`
//! on so a command that exits or crashes leaves its last screen to read. Dropping it kills that
//! server and everything in it.
//!
//! Needs `tmux` on `PATH` (the Debian package; `scripts/test.sh` installs it).

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use tempfile::TempDir;

/// The session's name inside its private server.
const SESSION: &str = "siren";
/// How often the screen is read while waiting.
const POLL: Duration = Duration::from_millis(100);

/// A command running in a detached tmux session.
pub struct Tmux {
    dir: TempDir,
}

impl Tmux {
    /// Starts `program args…` in a new detached session of `width`×`height`, its environment
    /// this process's plus `env`, in the current directory.
    pub fn start<I, S>(
        program: &str,
        args: I,
        env: &[(&str, &str)],
        width: u16,
        height: u16,
    ) -> Tmux
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let dir = tempfile::tempdir().expect("a temporary directory for tmux");
        let conf = dir.path().join("tmux.conf");
        std::fs::write(
            &conf,
            "set -g remain-on-exit on\nset -g status off\nset -g default-terminal xterm-256color\n",
        )
        .expect("write tmux.conf");
        let tmux = Tmux { dir };
        let mut cmd = Command::new("tmux");
        cmd.arg("-f")
            .arg(&conf)
            .arg("-S")
            .arg(tmux.socket())
            .args(["new-session", "-d", "-s", SESSION, "-x"])
            .arg(width.to_string())
            .arg("-y")
            .arg(height.to_string());
        for (k, v) in env {
            cmd.arg("-e").arg(format!("{k}={v}"));
        }
        // The command runs under `sh`, which writes its exit status to a file: tmux itself
        // sometimes never reaps a command that closed its terminal (a zombie, no status).
        let script = format!(
            "\"$0\" \"$@\"; echo $? > '{}'",
            tmux.status_file().display()
        );
        cmd.arg("--")
            .arg("sh")
            .arg("-c")
            .arg(script)
            .arg(program)
            .args(args);
        let out = run(&mut cmd);
        assert!(
            out.status.success(),
            "tmux new-session failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        tmux
    }

    /// The private server's socket (for `tmux -S SOCKET …` by hand when debugging).
    pub fn socket(&self) -> PathBuf {
        self.dir.path().join("socket")
    }

    fn tmux<I, S>(&self, args: I) -> Output
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        run(Command::new("tmux").arg("-S").arg(self.socket()).args(args))
    }

    fn tmux_ok(&self, what: &str, args: &[&str]) -> String {
        let out = self.tmux(args);
        assert!(
            out.status.success(),
            "tmux {what} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Presses keys, in tmux's names: `"Enter"`, `"Tab"`, `"BTab"`, `"C-c"`, `"M-Enter"`,
    /// `"PPage"`, `"F1"`, `"Up"`… (a name tmux does not know is typed as text).
    pub fn send_keys(&self, keys: &[&str]) {
        let mut args = vec!["send-keys", "-t", SESSION];
        args.extend_from_slice(keys);
        self.tmux_ok("send-keys", &args);
    }

    /// Types `text` as it is (no key names), without pressing Enter.
    pub fn send_text(&self, text: &str) {
        self.tmux_ok(
            "send-keys -l",
            &["send-keys", "-t", SESSION, "-l", "--", text],
        );
    }

    /// Types `text` and presses Enter.
    pub fn type_line(&self, text: &str) {
        self.send_text(text);
        self.send_keys(&["Enter"]);
    }

    /// The screen as text, one line per row (trailing spaces trimmed by tmux).
    pub fn capture(&self) -> String {
        self.tmux_ok("capture-pane", &["capture-pane", "-p", "-t", SESSION])
    }

    /// Waits until `ready(screen)` holds, reading the screen every 100 ms; the screen that
    /// satisfied it, or None after `timeout`.
    pub fn try_wait(&self, timeout: Duration, ready: impl Fn(&str) -> bool) -> Option<String> {
        let deadline = Instant::now() + timeout;
        loop {
            let screen = self.capture();
            if ready(&screen) {
                return Some(screen);
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(POLL);
        }
    }

    /// Waits until `text` is on the screen; panics with the last screen after `timeout`.
    pub fn wait_for(&self, text: &str, timeout: Duration) -> String {
        match self.try_wait(timeout, |s| s.contains(text)) {
            Some(screen) => screen,
            None => panic!(
                "{text:?} did not appear within {timeout:?}; the screen:\n{}",
                self.capture()
            ),
        }
    }

    /// Waits until `text` is no longer on the screen; panics with the last screen after
    /// `timeout`.
    pub fn wait_gone(&self, text: &str, timeout: Duration) -> String {
        match self.try_wait(timeout, |s| !s.contains(text)) {
            Some(screen) => screen,
            None => panic!(
                "{text:?} was still there after {timeout:?}; the screen:\n{}",
                self.capture()
            ),
        }
    }

    /// Resizes the terminal (the command sees SIGWINCH).
    pub fn resize(&self, width: u16, height: u16) {
        let (w, h) = (width.to_string(), height.to_string());
        self.tmux_ok(
            "resize-window",
            &["resize-window", "-t", SESSION, "-x", &w, "-y", &h],
        );
    }

    fn status_file(&self) -> PathBuf {
        self.dir.path().join("exit-status")
    }

    /// Whether the command is still running (false once it exited; its screen stays).
    pub fn alive(&self) -> bool {
        self.exit_status().is_none()
    }

    /// The command's exit status once it exited (None while it runs; 128 + N after signal N).
    pub fn exit_status(&self) -> Option<i32> {
        let text = std::fs::read_to_string(self.status_file()).ok()?;
        text.trim().parse().ok()
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = self.tmux(["kill-server"]);
    }
}

/// Runs a tmux command; a missing tmux is a clear failure.
fn run(cmd: &mut Command) -> Output {
    match cmd.output() {
        Ok(out) => out,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            panic!(
                "tmux is needed for the terminal tests (apt-get install tmux; scripts/test.sh installs it)"
            )
        }
        Err(e) => panic!("cannot run tmux: {e}"),
    }
}

/// Whether a tmux server answers on `socket` (for checking that a dropped [`Tmux`] is gone).
pub fn server_running(socket: &Path) -> bool {
    Command::new("tmux")
        .arg("-S")
        .arg(socket)
        .arg("has-session")
        .output()
        .is_ok_and(|o| o.status.success())
}
