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

/// JavaScript that creates this browser's device of `uid` (its store locked with `passphrase`),
/// as `window.session`, its updates collected in `window.updates`, pinning the server key `sek`
/// (`None`: the one the server's `/siren.json` gives), and logs in with `password`.
fn create_js(uid: &str, sek: Option<&str>, password: &str) -> String {
    let q = |s: &str| serde_json::to_string(s).expect("a JSON string");
    let sek = sek.map_or_else(|| "siren.server.key".to_owned(), q);
    format!(
        "(async () => {{
            window.updates = [];
            window.session = await siren.Session.create(
                siren.websocket, {}, {sek}, {}, (u) => updates.push(u));
            return await session.login({}, 'browser');
        }})()",
        q(uid),
        q(PASSPHRASE),
        q(password)
    )
}

/// The passphrase the tests' browsers lock their stores with.
const PASSPHRASE: &str = "correct horse battery staple";

/// JavaScript that unlocks this browser's device with `passphrase` (as `window.session`, its
/// updates in `window.updates`); its account.
fn unlock_js(passphrase: &str) -> String {
    format!(
        "(async () => {{
            window.updates = [];
            window.session = await siren.Session.unlock(
                siren.websocket, {}, (u) => updates.push(u));
            return session.uid;
        }})()",
        serde_json::to_string(passphrase).expect("a JSON string")
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
    let outcome = browser.eval("alice", &create_js("alice@alpha.test", None, "pw-alice"));
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
            &create_js("alice@alpha.test", Some(&other.sek), "pw-alice"),
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

/// A reload (or a browser restart) keeps the device: the page asks for its passphrase (a wrong
/// one opens nothing), resumes the same session, shows the history kept before, and receives
/// what was sent while it was closed. What IndexedDB holds is sealed: no name, text or key
/// field in clear, in its keys or its values.
#[test]
fn a_reloaded_page_keeps_its_device_and_history_sealed() {
    let server = server();
    let (mut browser, bob) = alice_in_a_browser_bob_on_the_cli(&server);
    let device = browser_device(&server);

    browser.eval(
        "alice",
        "session.sendText('bob@alpha.test', 'sealed before the reload')",
    );
    bob.send("alice@alpha.test", "an answer kept in the history");
    messages_until(
        &mut browser,
        "alice",
        "bob@alpha.test: an answer kept in the history",
    );
    let listed = browser.eval("alice", "session.conversations()");
    assert_eq!(listed[0]["peer"], "bob@alpha.test", "{listed}");
    assert_eq!(
        (listed[0]["items"].as_u64(), listed[0]["unread"].as_u64()),
        (Some(2), Some(1))
    );

    browser.reload("alice");
    bob.send("alice@alpha.test", "sent while the page was closed");
    assert_eq!(
        browser.eval("alice", "siren.Session.exists()"),
        Value::Bool(true)
    );
    let wrong = browser
        .try_eval("alice", &unlock_js("not the passphrase"))
        .expect_err("a wrong passphrase");
    assert!(wrong.contains("wrong passphrase"), "{wrong}");
    assert_eq!(
        browser.eval("alice", &unlock_js(PASSPHRASE)),
        Value::from("alice@alpha.test")
    );
    wait_for_update(&mut browser, "alice", "connected");
    let got = messages_until(
        &mut browser,
        "alice",
        "bob@alpha.test: sent while the page was closed",
    );
    assert_eq!(got, ["bob@alpha.test: sent while the page was closed"]);
    // Resumed, not logged in again.
    assert_eq!(browser_device(&server), device);

    let history = browser.eval(
        "alice",
        "session.history('bob@alpha.test').then((h) => h.map((i) => `${i.outgoing ? '>' : '<'} ${i.text}`))",
    );
    assert_eq!(
        history,
        serde_json::json!([
            "> sealed before the reload",
            "< an answer kept in the history",
            "< sent while the page was closed",
        ])
    );
    let listed = browser.eval("alice", "session.conversations()");
    assert_eq!(listed[0]["unread"], 0, "read once shown: {listed}");

    let records = browser.eval("alice", DUMP_INDEXEDDB);
    let records = records.as_array().expect("records");
    assert!(
        records.len() >= 6,
        "secrets, account, contacts, history…: {records:?}"
    );
    for record in records {
        let key = record["key"].as_str().expect("a string key");
        let value: Vec<u8> = serde_json::from_value(record["value"].clone()).expect("bytes");
        for clear in [
            "alice",
            "bob",
            "alpha.test",
            "sealed before",
            "answer kept",
            "while the page",
            "secrets",
            "contact",
            "usk",
            "dek",
            "counter",
        ] {
            assert!(!key.contains(clear), "{clear:?} in the key {key}");
            assert!(
                !value.windows(clear.len()).any(|w| w == clear.as_bytes()),
                "{clear:?} in clear in the record {key}"
            );
        }
    }
}

/// Every record of the page's IndexedDB database: `[{key, value: [bytes]}]`.
const DUMP_INDEXEDDB: &str = "(async () => {
    const request = (r) => new Promise((ok, fail) => { r.onsuccess = () => ok(r.result); r.onerror = () => fail(r.error); });
    const db = await request(indexedDB.open('siren'));
    const store = db.transaction('records').objectStore('records');
    const [keys, values] = await Promise.all([request(store.getAllKeys()), request(store.getAll())]);
    db.close();
    return keys.map((key, i) => ({ key, value: Array.from(new Uint8Array(values[i])) }));
})()";
