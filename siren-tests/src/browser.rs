//! The browser client in tests: Debian's chromium driven by Playwright
//! (`siren-client/web/tests/driver.mjs`), at a real `sirend`'s web listener, with the client
//! `scripts/build-web.sh` built. Each page is its own browser context (its own storage), as two
//! people's browsers are.

use std::io::{BufRead as _, BufReader, Write as _};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use serde_json::{Value, json};

use crate::Server;

/// How long one command to the browser may take.
const STEP: Duration = Duration::from_secs(90);

/// A chromium with pages at one server.
pub struct Browser {
    child: Child,
    stdin: ChildStdin,
    answers: mpsc::Receiver<String>,
}

/// The repository's root.
fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("siren-tests is in the workspace")
        .to_path_buf()
}

/// What `scripts/build-web.sh` built: `<target>/web-dist` beside `<target>/debug` (where the
/// tests' `sirend` finds it).
pub fn web_dist() -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    // target/<profile>/deps/<test> -> target/web-dist
    let dist = exe
        .ancestors()
        .nth(3)
        .expect("target directory")
        .join("web-dist");
    assert!(
        dist.join("siren_web_bg.wasm").exists(),
        "{} has no built client: run scripts/build-web.sh first (scripts/test.sh does)",
        dist.display()
    );
    dist
}

impl Browser {
    /// Starts chromium for pages at `server`'s web listener.
    pub fn launch(server: &Server) -> Browser {
        let web = server.web.expect("the server's web listener is running");
        // sirend serves the client from `web-dist` beside its executable's directory.
        let _ = web_dist();
        let web_dir = root().join("siren-client/web");
        assert!(
            web_dir.join("node_modules/playwright-core").exists(),
            "Playwright is not installed: run `npm ci` in {} (scripts/test.sh does)",
            web_dir.display()
        );
        let mut child = Command::new("node")
            .arg(web_dir.join("tests/driver.mjs"))
            .current_dir(&web_dir)
            .env("SIREN_ORIGIN", format!("http://{web}"))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("node runs");
        let stdin = child.stdin.take().expect("piped stdin");
        let stdout = child.stdout.take().expect("piped stdout");
        let (tx, answers) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Browser {
            child,
            stdin,
            answers,
        }
    }

    fn command(&mut self, command: Value) -> Result<Value, String> {
        writeln!(self.stdin, "{command}").expect("the browser driver is running");
        let line = self
            .answers
            .recv_timeout(STEP)
            .unwrap_or_else(|e| panic!("no answer from the browser to {command} ({e})"));
        let mut answer: Value = serde_json::from_str(&line).expect("a JSON answer");
        match answer.get("error") {
            Some(e) => Err(e.as_str().unwrap_or_default().to_owned()),
            None => Ok(answer["ok"].take()),
        }
    }

    /// Opens a new page (a browser context of its own) named `page`, and waits until the
    /// client loaded.
    pub fn open(&mut self, page: &str) {
        if let Err(e) = self.command(json!({"op": "open", "page": page})) {
            panic!("opening {page}: {e}");
        }
    }

    /// Reloads `page` (its storage stays, as a person's reload or a browser restart keeps it), and
    /// waits until the client loaded again.
    pub fn reload(&mut self, page: &str) {
        if let Err(e) = self.command(json!({"op": "reload", "page": page})) {
            panic!("reloading {page}: {e}");
        }
    }

    /// Evaluates the expression `js` in `page` (a promise is awaited); its value, or the
    /// exception's text.
    pub fn try_eval(&mut self, page: &str, js: &str) -> Result<Value, String> {
        self.command(json!({"op": "eval", "page": page, "js": js}))
    }

    /// [`Browser::try_eval`], which must succeed.
    pub fn eval(&mut self, page: &str, js: &str) -> Value {
        self.try_eval(page, js)
            .unwrap_or_else(|e| panic!("in {page}: {js}\n{e}"))
    }

    fn step(&mut self, page: &str, command: Value) {
        if let Err(e) = self.command(command.clone()) {
            panic!("in {page}: {command}\n{e}");
        }
    }

    /// Types `value` into the field `selector` of `page` (replacing what it held).
    pub fn fill(&mut self, page: &str, selector: &str, value: &str) {
        self.step(
            page,
            json!({"op": "fill", "page": page, "selector": selector, "value": value}),
        );
    }

    /// Clicks `selector` in `page`.
    pub fn click(&mut self, page: &str, selector: &str) {
        self.step(
            page,
            json!({"op": "click", "page": page, "selector": selector}),
        );
    }

    /// Presses `key` (`"Enter"`) in `selector`.
    pub fn press(&mut self, page: &str, selector: &str, key: &str) {
        self.step(
            page,
            json!({"op": "press", "page": page, "selector": selector, "key": key}),
        );
    }

    /// Waits until `selector` is visible in `page` (60 s at most).
    pub fn wait(&mut self, page: &str, selector: &str) {
        self.step(
            page,
            json!({"op": "wait", "page": page, "selector": selector}),
        );
    }

    /// The text of every element matching `selector`.
    pub fn texts(&mut self, page: &str, selector: &str) -> Vec<String> {
        let value = self
            .command(json!({"op": "text", "page": page, "selector": selector}))
            .unwrap_or_else(|e| panic!("in {page}: {selector}\n{e}"));
        serde_json::from_value(value).expect("strings")
    }

    /// Picks a file named `name` holding `data` in the file input `selector`.
    pub fn upload(&mut self, page: &str, selector: &str, name: &str, data: &[u8]) {
        use base64::Engine as _;
        let data = base64::engine::general_purpose::STANDARD.encode(data);
        self.step(
            page,
            json!({"op": "upload", "page": page, "selector": selector, "name": name, "data": data}),
        );
    }

    /// Clicks `selector`, and saves the download it starts at `path`; the file name the page
    /// suggested.
    pub fn download(&mut self, page: &str, selector: &str, path: &Path) -> String {
        let value = self
            .command(json!({"op": "download", "page": page, "selector": selector, "path": path}))
            .unwrap_or_else(|e| panic!("in {page}: download by {selector}\n{e}"));
        value.as_str().unwrap_or_default().to_owned()
    }

    /// Saves a PNG of `page` at `path`.
    pub fn screenshot(&mut self, page: &str, path: &Path) {
        self.step(
            page,
            json!({"op": "screenshot", "page": page, "path": path}),
        );
    }

    /// Every request a page made outside the server's origin.
    pub fn requests_outside(&mut self) -> Vec<String> {
        let value = self
            .command(json!({"op": "outside"}))
            .expect("the request log");
        serde_json::from_value(value).expect("a list of URLs")
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
