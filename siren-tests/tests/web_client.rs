//! The browser client: the session code `siren` runs (siren-client-session), compiled to wasm
//! (siren-web) and run by Debian's chromium under Playwright, against a real `sirend`'s web
//! listener and the real `siren` CLI.

use std::time::{Duration, Instant};

use serde_json::Value;
use siren_tests::browser::Browser;
use siren_tests::{Cli, Options, Server};

fn server() -> Server {
    // The web listener on a fixed port, so that a restarted server is where the page was.
    let mut server = Server::new(Options {
        extra: format!(
            "\n[roster]\nnon_contacts = \"accept\"\n\n[web]\nlisten = \"127.0.0.1:{}\"\n",
            siren_tests::free_port()
        ),
        ..Options::default()
    });
    server.start();
    server
}

/// JavaScript that starts a session of `uid` in the page (as `window.session`, its updates
/// collected in `window.updates`) with the server key `sek`, and logs in.
fn login_js(server: &Server, uid: &str, sek: &str, password: &str) -> String {
    let url = format!("ws://{}/ws", server.web.expect("web listener"));
    let q = |s: &str| serde_json::to_string(s).expect("a JSON string");
    format!(
        "(async () => {{
            window.updates = [];
            window.session = new siren.Session({}, {}, {}, (u) => updates.push(u));
            return await session.login({}, 'browser');
        }})()",
        q(&url),
        q(uid),
        q(sek),
        q(password)
    )
}

/// Waits until the page's updates include one of type `kind`.
fn wait_for_update(browser: &mut Browser, page: &str, kind: &str) {
    let js = format!(
        "updates.some((u) => u.type === {})",
        serde_json::to_string(kind).expect("a JSON string")
    );
    let deadline = Instant::now() + Duration::from_secs(60);
    while browser.eval(page, &js) != Value::Bool(true) {
        assert!(
            Instant::now() < deadline,
            "no {kind} update in {page}: {}",
            browser.eval(page, "JSON.stringify(updates)")
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Waits until the page has received a message; returns them all as `from: text`.
fn messages_until(browser: &mut Browser, page: &str, expected: &str) -> Vec<String> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let got = browser.eval(
            page,
            "updates.filter((u) => u.type === 'message').map((u) => `${u.from}: ${u.text}`)",
        );
        let got: Vec<String> = serde_json::from_value(got).expect("strings");
        if got.iter().any(|m| m == expected) || Instant::now() > deadline {
            return got;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// alice's first device logs in in a browser page (its keys made there), bob with the CLI.
fn alice_in_a_browser_bob_on_the_cli(server: &Server) -> (Browser, Cli) {
    server.add_user("alice", "pw-alice");
    server.add_user("bob", "pw-bob");
    let bob = Cli::init(server, "bob@alpha.test");
    assert!(bob.login("pw-bob").ok);
    let mut browser = Browser::launch(server);
    browser.open("alice");
    let outcome = browser.eval(
        "alice",
        &login_js(server, "alice@alpha.test", &server.sek, "pw-alice"),
    );
    assert_eq!(outcome, Value::from("created-user"));
    (browser, bob)
}

/// A browser's first device logs in (its keys made in the page), and it and the CLI chat both
/// ways through `sirend`; the page asks nothing of any other origin.
#[test]
fn a_browser_and_the_cli_chat_both_ways() {
    let server = server();
    let (mut browser, bob) = alice_in_a_browser_bob_on_the_cli(&server);

    let id = browser.eval(
        "alice",
        "session.sendText('bob@alpha.test', 'hello from the browser')",
    );
    assert_eq!(id.as_str().map(str::len), Some(32), "a message id: {id}");
    assert_eq!(bob.recv(), ["alice@alpha.test: hello from the browser"]);

    bob.send("alice@alpha.test", "hello from the terminal");
    let got = messages_until(
        &mut browser,
        "alice",
        "bob@alpha.test: hello from the terminal",
    );
    assert_eq!(got, ["bob@alpha.test: hello from the terminal"]);

    assert_eq!(browser.requests_outside(), Vec::<String>::new());
}

/// The page pins the server's key: a server that cannot prove it holds the key the page was
/// given gets no login (and so no password), and the page says why.
#[test]
fn the_page_refuses_a_server_without_the_pinned_key() {
    let server = server();
    server.add_user("alice", "pw-alice");
    let other = Server::new(Options::default());

    let mut browser = Browser::launch(&server);
    browser.open("alice");
    let refused = browser
        .try_eval(
            "alice",
            &login_js(&server, "alice@alpha.test", &other.sek, "pw-alice"),
        )
        .expect_err("a login with the wrong server key");
    assert!(
        refused.contains("did not prove it is alpha.test"),
        "the page's error: {refused}"
    );
}

/// The page resumes its session by itself when the server comes back (no new login, no new
/// device), and what is sent to it then arrives.
#[test]
fn the_page_resumes_its_session_after_the_server_restarts() {
    let mut server = server();
    let (mut browser, bob) = alice_in_a_browser_bob_on_the_cli(&server);

    let device = browser_device(&server);
    server.kill();
    wait_for_update(&mut browser, "alice", "disconnected");
    server.start();
    wait_for_update(&mut browser, "alice", "connected");

    bob.send("alice@alpha.test", "after the restart");
    let got = messages_until(&mut browser, "alice", "bob@alpha.test: after the restart");
    assert_eq!(got, ["bob@alpha.test: after the restart"]);
    // Resumed, not logged in again (which would have made a new device key).
    assert_eq!(browser_device(&server), device);
}

/// The fingerprint of alice's device named `browser` (`sirend devices list`).
fn browser_device(server: &Server) -> String {
    let list = server.admin(&["devices", "list", "alice"], "");
    assert!(list.ok, "{}", list.stderr);
    let line = list
        .stdout
        .lines()
        .find(|l| l.contains(" browser "))
        .unwrap_or_else(|| panic!("no device named browser:\n{}", list.stdout));
    line.split("  ").next().unwrap_or_default().to_owned()
}
