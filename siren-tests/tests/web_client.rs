//! The browser client: the page sirend serves, its session code (siren-client-session and the
//! client core, compiled to wasm in siren-web) run by Debian's chromium under Playwright and
//! driven as a person would — forms filled, buttons clicked — against a real `sirend` and the
//! real `siren` CLI. Screenshots of the main screens land in `<target>/screenshots`.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use serde_json::Value;
use siren_tests::browser::{Browser, web_dist};
use siren_tests::{Cli, Options, Server};

fn server() -> Server {
    // The web listener on a port the system picks (a port picked before the start could be
    // taken by another test meanwhile).
    let mut server = Server::new(Options {
        extra: "\n[roster]\nnon_contacts = \"accept\"\n".into(),
        ..Options::default()
    });
    server.start();
    server
}

/// The passphrase the tests' browsers lock their stores with.
const PASSPHRASE: &str = "correct horse battery staple";

/// Where screenshots go (`<target>/screenshots`).
fn screenshot(browser: &mut Browser, page: &str, name: &str) {
    let dir: PathBuf = web_dist()
        .parent()
        .expect("the target directory")
        .join("screenshots");
    std::fs::create_dir_all(&dir).expect("a screenshots directory");
    browser.screenshot(page, &dir.join(format!("{name}.png")));
}

/// Opens `page` and signs `account` in as a person would: the create form (account, password,
/// passphrase twice), then waits for the chat. A new device of an account that has one must be
/// approved first: use [`fill_sign_in`] then.
fn sign_in(browser: &mut Browser, page: &str, account: &str, password: &str) {
    fill_sign_in(browser, page, account, password);
    wait_online(browser, page);
}

/// The create form, filled and sent.
fn fill_sign_in(browser: &mut Browser, page: &str, account: &str, password: &str) {
    browser.open(page);
    browser.fill(page, "input[name=account]", account);
    browser.fill(page, "input[name=password]", password);
    browser.fill(page, "input[name=device]", page);
    browser.fill(page, "input[name=passphrase]", PASSPHRASE);
    browser.fill(page, "input[name=again]", PASSPHRASE);
    browser.click(page, "form.card button[type=submit]");
}

fn wait_online(browser: &mut Browser, page: &str) {
    browser.wait(page, "[data-screen=chat] .connection[data-status=online]");
}

/// Opens the conversation with `peer` from the side bar's field.
fn open_conversation(browser: &mut Browser, page: &str, peer: &str) {
    browser.fill(page, "input[name=peer]", peer);
    browser.press(page, "input[name=peer]", "Enter");
    browser.wait(page, &format!("[data-conversation=\"{peer}\"]"));
}

/// Types `text` in the open conversation and sends it with Enter.
fn say(browser: &mut Browser, page: &str, text: &str) {
    browser.fill(page, "textarea[name=compose]", text);
    browser.press(page, "textarea[name=compose]", "Enter");
}

/// Waits until the open conversation's message is with the server (sent or delivered).
fn wait_sent(browser: &mut Browser, page: &str) {
    browser.wait(
        page,
        ".message.mine[data-state=sent], .message.mine[data-state=delivered]",
    );
}

/// The texts of the open conversation's messages.
fn shown(browser: &mut Browser, page: &str) -> Vec<String> {
    browser.texts(page, ".messages .message .body")
}

/// Waits until the open conversation shows `text`; returns every text shown.
fn wait_shown(browser: &mut Browser, page: &str, text: &str) -> Vec<String> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let got = shown(browser, page);
        if got.iter().any(|m| m == text) {
            return got;
        }
        assert!(
            Instant::now() < deadline,
            "{page} never showed {text:?}: {got:?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Waits until `js` (an expression in `page`) is true.
fn wait_true(browser: &mut Browser, page: &str, js: &str) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while browser.eval(page, js) != Value::Bool(true) {
        assert!(Instant::now() < deadline, "in {page}, never true: {js}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// alice signed in in a browser page (named `alice`), bob logged in with the CLI.
fn alice_in_a_browser_bob_on_the_cli(server: &Server) -> (Browser, Cli) {
    server.add_user("alice", "pw-alice");
    server.add_user("bob", "pw-bob");
    let bob = Cli::init(server, "bob@alpha.test");
    assert!(bob.login("pw-bob").ok);
    let mut browser = Browser::launch(server);
    sign_in(&mut browser, "alice", "alice", "pw-alice");
    (browser, bob)
}

/// Two people in two browsers chat live: a contact request accepted, read receipts, typing,
/// a file that arrives whole; the pages ask nothing of any other origin.
#[test]
fn two_browsers_chat_live_with_receipts_typing_and_a_file() {
    let server = server();
    server.add_user("alice", "pw-alice");
    server.add_user("bob", "pw-bob");
    let mut browser = Browser::launch(&server);
    sign_in(&mut browser, "alice", "alice", "pw-alice");
    sign_in(&mut browser, "bob", "bob@alpha.test", "pw-bob");

    open_conversation(&mut browser, "alice", "bob@alpha.test");
    say(&mut browser, "alice", "hello bob, from a browser");
    // bob gets a contact request, accepts it, and reads.
    browser.wait("bob", "[data-request=\"alice@alpha.test\"]");
    screenshot(&mut browser, "bob", "contact-request");
    browser.click("bob", "[data-request=\"alice@alpha.test\"] button.primary");
    browser.click("bob", "[data-peer=\"alice@alpha.test\"]");
    wait_shown(&mut browser, "bob", "hello bob, from a browser");
    // alice sees it read.
    browser.wait("alice", ".message.mine[data-state=read]");

    // bob types: alice sees it; then he sends.
    browser.fill("bob", "textarea[name=compose]", "typing something");
    browser.wait("alice", ".typing:has-text(\"is typing\")");
    say(&mut browser, "bob", "hello alice, from another browser");
    wait_shown(&mut browser, "alice", "hello alice, from another browser");

    // A file, picked in alice's page, saved from bob's.
    let data: Vec<u8> = (0..300_000u32).map(|i| (i * 7 % 251) as u8).collect();
    browser.upload("alice", ".compose input[type=file]", "notes.bin", &data);
    browser.wait("bob", "[data-file][data-progress=complete]");
    let saved = tempfile::tempdir().unwrap();
    let path = saved.path().join("notes.bin");
    let name = browser.download("bob", "[data-file][data-progress=complete] button", &path);
    assert_eq!(name, "notes.bin");
    assert_eq!(
        std::fs::read(&path).unwrap(),
        data,
        "the file arrived whole"
    );
    browser.wait("alice", "[data-file][data-progress=sent]");

    screenshot(&mut browser, "alice", "conversation");
    screenshot(&mut browser, "bob", "conversation-bob");
    assert_eq!(browser.requests_outside(), Vec::<String>::new());
}

/// Stands in for the browser's `Notification` (granted; each notification recorded in
/// `window.notes`): Playwright's headless pages show none.
const NOTIFICATIONS: &str = "(() => {
  window.notes = [];
  window.Notification = class {
    constructor(title, options) { window.notes.push({ title, body: options?.body ?? '' }); }
    static get permission() { return 'granted'; }
    static requestPermission() { return Promise.resolve('granted'); }
  };
  return true;
})()";

/// Makes `page` hidden (`true`) or shown again, as switching tabs does.
fn set_hidden(browser: &mut Browser, page: &str, hidden: bool) {
    browser.eval(
        page,
        &format!(
            "(() => {{
              Object.defineProperty(document, 'hidden', {{ configurable: true, get: () => {hidden} }});
              Object.defineProperty(document, 'visibilityState', {{ configurable: true, get: () => {hidden} ? 'hidden' : 'visible' }});
              document.dispatchEvent(new Event('visibilitychange'));
              return true;
            }})()"
        ),
    );
}

/// A message that arrives while the tab is hidden raises one desktop notification (none while
/// it is shown), and shown again it is marked read; each side's list shows the other's
/// presence, which goes offline when that page's session ends.
#[test]
fn a_hidden_page_notifies_and_the_list_shows_presence() {
    let server = server();
    server.add_user("alice", "pw-alice");
    server.add_user("bob", "pw-bob");
    let mut browser = Browser::launch(&server);
    sign_in(&mut browser, "alice", "alice", "pw-alice");
    sign_in(&mut browser, "bob", "bob", "pw-bob");
    browser.eval("alice", NOTIFICATIONS);

    open_conversation(&mut browser, "alice", "bob@alpha.test");
    say(&mut browser, "alice", "are you there?");
    browser.wait("bob", "[data-request=\"alice@alpha.test\"]");
    browser.click("bob", "[data-request=\"alice@alpha.test\"] button.primary");
    browser.click("bob", "[data-peer=\"alice@alpha.test\"]");
    say(&mut browser, "bob", "yes, with the tab in front of you");
    wait_shown(&mut browser, "alice", "yes, with the tab in front of you");
    // Each sees the other available (presence is shared between contacts).
    browser.wait("alice", "[data-peer=\"bob@alpha.test\"] .dot.available");
    browser.wait("bob", "[data-peer=\"alice@alpha.test\"] .dot.available");
    assert_eq!(browser.eval("alice", "window.notes.length"), 0);

    set_hidden(&mut browser, "alice", true);
    say(&mut browser, "bob", "and now while you look elsewhere");
    wait_true(&mut browser, "alice", "window.notes.length > 0");
    assert_eq!(
        browser.eval("alice", "window.notes"),
        serde_json::json!([{ "title": "bob@alpha.test", "body": "and now while you look elsewhere" }])
    );
    // Not read while hidden; read once shown.
    browser.wait("bob", ".message.mine[data-state=delivered]");
    set_hidden(&mut browser, "alice", false);
    browser.wait("bob", ".message.mine:last-child[data-state=read]");
    assert_eq!(browser.eval("alice", "window.notes.length"), 1);

    // bob's session ends: alice's list shows him offline.
    browser.eval("bob", "(siren.state.session.quit(), true)");
    browser.wait("alice", "[data-peer=\"bob@alpha.test\"] .dot.offline");
}

/// A browser and the CLI chat both ways through `sirend`.
#[test]
fn a_browser_and_the_cli_chat_both_ways() {
    let server = server();
    let (mut browser, bob) = alice_in_a_browser_bob_on_the_cli(&server);

    open_conversation(&mut browser, "alice", "bob@alpha.test");
    say(&mut browser, "alice", "hello from the browser");
    wait_sent(&mut browser, "alice");
    let got = bob.recv();
    assert!(
        got.iter()
            .any(|l| l == "alice@alpha.test: hello from the browser"),
        "{got:?}"
    );

    bob.send("alice@alpha.test", "hello from the terminal");
    wait_shown(&mut browser, "alice", "hello from the terminal");
    assert_eq!(browser.requests_outside(), Vec::<String>::new());
}

/// A group in the browser: listed once the page holds it, each message with its sender, the
/// membership changes told in line, what the page writes reaching every member.
#[test]
fn a_group_in_the_browser_shows_senders_and_changes() {
    let server = server();
    let (mut browser, bob) = alice_in_a_browser_bob_on_the_cli(&server);
    server.add_user("carol", "pw-carol");
    let carol = Cli::init(&server, "carol@alpha.test");
    assert!(carol.login("pw-carol").ok);
    let out = bob.run(&[
        "group",
        "create",
        "Lunch",
        "alice@alpha.test",
        "carol@alpha.test",
    ]);
    assert!(out.ok, "{}", out.stderr);
    let id = out
        .stdout
        .split_whitespace()
        .nth(2)
        .unwrap_or_else(|| panic!("a group id in {:?}", out.stdout))
        .to_owned();

    let item = format!(".conversation[data-peer=\"#{id}\"]");
    browser.wait("alice", &item);
    browser.click("alice", &item);
    browser.wait(
        "alice",
        &format!("[data-group=\"{id}\"] [data-members=\"3\"]"),
    );
    wait_true(
        &mut browser,
        "alice",
        "[...document.querySelectorAll('.event')].some((e) => e.textContent.includes('added by bob@alpha.test'))",
    );

    bob.send("Lunch", "noon?");
    wait_shown(&mut browser, "alice", "noon?");
    assert_eq!(
        browser.texts("alice", ".messages .message .sender"),
        vec!["bob@alpha.test".to_owned()]
    );
    say(&mut browser, "alice", "see you there");
    wait_sent(&mut browser, "alice");
    for cli in [&bob, &carol] {
        let got = cli.recv();
        assert!(
            got.iter()
                .any(|l| l == "[Lunch] alice@alpha.test: see you there"),
            "{got:?}"
        );
    }

    let out = bob.run(&["group", "remove", "Lunch", "carol@alpha.test"]);
    assert!(out.ok, "{}", out.stderr);
    browser.wait(
        "alice",
        &format!("[data-group=\"{id}\"] [data-members=\"2\"]"),
    );
    wait_true(
        &mut browser,
        "alice",
        "[...document.querySelectorAll('.event')].some((e) => e.textContent.includes('bob@alpha.test removed carol@alpha.test'))",
    );
    screenshot(&mut browser, "alice", "group");
    // No 1:1 conversation came of it.
    assert_eq!(
        browser
            .eval("alice", "siren.state.snapshot.conversations.length")
            .as_u64(),
        Some(1)
    );
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
    let js = format!(
        "(async () => {{
            const s = await siren.Session.create(siren.websocket, 'alice@alpha.test', {}, 'pw', () => {{}});
            return await s.login('pw-alice', 'browser');
        }})()",
        serde_json::to_string(&other.sek).unwrap()
    );
    let refused = browser
        .try_eval("alice", &js)
        .expect_err("a login with the wrong server key");
    assert!(
        refused.contains("did not prove it is alpha.test"),
        "the page's error: {refused}"
    );
}

/// A reload (or a browser restart) keeps the device: the page asks for its passphrase (a wrong
/// one opens nothing), resumes the same session, shows the history kept before, and receives
/// what was sent while it was closed. What IndexedDB holds is sealed: no name, text or key
/// field in clear, in its keys or its values.
#[test]
fn a_reloaded_page_keeps_its_device_and_history_sealed() {
    let server = server();
    server.add_user("alice", "pw-alice");
    server.add_user("bob", "pw-bob");
    let alice = Cli::init(&server, "alice@alpha.test");
    assert!(alice.login("pw-alice").ok);
    let mut browser = Browser::launch(&server);
    sign_in(&mut browser, "bob", "bob", "pw-bob");
    let device = browser_device(&server, "bob");

    open_conversation(&mut browser, "bob", "alice@alpha.test");
    say(&mut browser, "bob", "sealed before the reload");
    wait_sent(&mut browser, "bob");
    alice.send("bob@alpha.test", "an answer kept in the history");
    wait_shown(&mut browser, "bob", "an answer kept in the history");

    browser.reload("bob");
    alice.send("bob@alpha.test", "sent while the page was closed");
    browser.wait("bob", "input[name=passphrase]");
    screenshot(&mut browser, "bob", "unlock");
    browser.fill("bob", "input[name=passphrase]", "not the passphrase");
    browser.click("bob", "form.card button[type=submit]");
    browser.wait("bob", "p.error:has-text(\"wrong passphrase\")");
    browser.fill("bob", "input[name=passphrase]", PASSPHRASE);
    browser.click("bob", "form.card button[type=submit]");
    wait_online(&mut browser, "bob");
    // The conversation list, from the history, with what arrived meanwhile unread.
    browser.wait("bob", "[data-peer=\"alice@alpha.test\"] .unread");
    browser.click("bob", "[data-peer=\"alice@alpha.test\"]");
    let got = wait_shown(&mut browser, "bob", "sent while the page was closed");
    assert_eq!(
        got,
        [
            "sealed before the reload",
            "an answer kept in the history",
            "sent while the page was closed"
        ]
    );
    // Resumed, not logged in again (which would have made a new device key).
    assert_eq!(browser_device(&server, "bob"), device);

    let records = browser.eval("bob", DUMP_INDEXEDDB);
    let records = records.as_array().expect("records");
    assert!(
        records.len() >= 8,
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
            "Text",
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

/// alice's second browser is approved from her first: both show the same code, the first
/// approves, the second confirms, and then both receive what is sent to alice. Logging out of
/// the second revokes it: the first's devices list and the server's follow, and the second
/// browser keeps nothing.
#[test]
fn a_second_browser_is_approved_from_the_first_with_the_matching_code() {
    let server = server();
    let (mut browser, bob) = alice_in_a_browser_bob_on_the_cli(&server);

    fill_sign_in(&mut browser, "alice-laptop", "alice", "pw-alice");
    browser.wait("alice-laptop", "[data-screen=approval] .code");
    let code = browser.texts("alice-laptop", "[data-screen=approval] .code");
    browser.wait("alice", "[data-approval] .code");
    let shown_first = browser.texts("alice", "[data-approval] .code");
    assert_eq!(code, shown_first, "both devices show the same code");
    screenshot(&mut browser, "alice-laptop", "approval-new-device");
    screenshot(&mut browser, "alice", "approval-existing-device");
    browser.click("alice", "[data-approval] button.primary");
    browser.wait("alice-laptop", "[data-screen=confirm-approval]");
    browser.click(
        "alice-laptop",
        "[data-screen=confirm-approval] button.primary",
    );
    wait_online(&mut browser, "alice-laptop");

    bob.send("alice@alpha.test", "to both of alice's browsers");
    for page in ["alice", "alice-laptop"] {
        browser.wait(page, "[data-peer=\"bob@alpha.test\"]");
        browser.click(page, "[data-peer=\"bob@alpha.test\"]");
        wait_shown(&mut browser, page, "to both of alice's browsers");
    }
    let list = server.admin(&["devices", "list", "alice"], "");
    assert!(list.stdout.contains(" alice-laptop "), "{}", list.stdout);

    // The devices list shows both; logging out of the laptop revokes it, the list follows,
    // and nothing of it stays in that browser.
    browser.click("alice", "footer button:has-text(\"Devices\")");
    wait_true(
        &mut browser,
        "alice",
        "document.querySelectorAll('[data-screen=devices] [data-device]').length === 2",
    );
    screenshot(&mut browser, "alice", "devices");
    browser.click("alice-laptop", "footer button:has-text(\"Log out\")");
    browser.wait("alice-laptop", "input[name=account]");
    assert_eq!(
        browser.eval("alice-laptop", "siren.Session.exists()"),
        Value::Bool(false)
    );
    wait_true(
        &mut browser,
        "alice",
        "document.querySelectorAll('[data-screen=devices] [data-device]').length === 1",
    );
    let list = server.admin(&["devices", "list", "alice"], "");
    assert!(!list.stdout.contains(" alice-laptop "), "{}", list.stdout);
}

/// Blocking in the page stops delivery: what the blocked user sends after is not shown (a
/// message from someone else, sent after it, is).
#[test]
fn blocking_stops_delivery() {
    let server = server();
    let (mut browser, bob) = alice_in_a_browser_bob_on_the_cli(&server);
    server.add_user("carol", "pw-carol");
    let carol = Cli::init(&server, "carol@alpha.test");
    assert!(carol.login("pw-carol").ok);

    bob.send("alice@alpha.test", "before the block");
    browser.wait("alice", "[data-peer=\"bob@alpha.test\"]");
    browser.click("alice", "[data-peer=\"bob@alpha.test\"]");
    wait_shown(&mut browser, "alice", "before the block");
    browser.click(
        "alice",
        "[data-conversation=\"bob@alpha.test\"] header button.danger",
    );
    browser.wait(
        "alice",
        "[data-peer=\"bob@alpha.test\"] .peer:has-text(\"(blocked)\")",
    );
    let _ = bob.run(&["send", "alice@alpha.test", "after the block"]);
    carol.send("alice@alpha.test", "from carol, after bob's");
    browser.wait("alice", "[data-peer=\"carol@alpha.test\"]");
    browser.click("alice", "[data-peer=\"carol@alpha.test\"]");
    wait_shown(&mut browser, "alice", "from carol, after bob's");
    browser.click("alice", "[data-peer=\"bob@alpha.test\"]");
    assert_eq!(shown(&mut browser, "alice"), ["before the block"]);
    wait_true(
        &mut browser,
        "alice",
        "!JSON.stringify(siren.state.snapshot.messages).includes('after the block')",
    );
}

/// The page resumes its session by itself when the server comes back (no new login, no new
/// device), and what is sent to it then arrives.
#[test]
fn the_page_resumes_its_session_after_the_server_restarts() {
    let mut server = server();
    let (mut browser, bob) = alice_in_a_browser_bob_on_the_cli(&server);

    let device = browser_device(&server, "alice");
    server.kill();
    // The restarted server listens where the page was.
    let web = server.web.expect("the web listener");
    let config = std::fs::read_to_string(server.config()).unwrap();
    let fixed = config.replace("listen = \"127.0.0.1:0\"", &format!("listen = \"{web}\""));
    assert_ne!(fixed, config, "the web listener's line in {config}");
    std::fs::write(server.config(), fixed).unwrap();
    browser.wait("alice", ".connection[data-status=offline]");
    screenshot(&mut browser, "alice", "offline");
    server.start();
    wait_online(&mut browser, "alice");

    bob.send("alice@alpha.test", "after the restart");
    browser.wait("alice", "[data-peer=\"bob@alpha.test\"]");
    browser.click("alice", "[data-peer=\"bob@alpha.test\"]");
    wait_shown(&mut browser, "alice", "after the restart");
    // Resumed, not logged in again (which would have made a new device key).
    assert_eq!(browser_device(&server, "alice"), device);
}

/// The fingerprint of `user`'s device named after its page (`sirend devices list`).
fn browser_device(server: &Server, user: &str) -> String {
    let list = server.admin(&["devices", "list", user], "");
    assert!(list.ok, "{}", list.stderr);
    let line = list
        .stdout
        .lines()
        .find(|l| l.contains(&format!(" {user} ")))
        .unwrap_or_else(|| panic!("no device named {user}:\n{}", list.stdout));
    line.split("  ").next().unwrap_or_default().to_owned()
}

/// The safety number the page shows is the one `siren lookup` shows on the other side; marking
/// it verified shows the mark; when the contact's keys change, the page warns.
#[test]
fn safety_numbers_match_the_cli_and_a_key_change_warns() {
    let server = server();
    let (mut browser, bob) = alice_in_a_browser_bob_on_the_cli(&server);
    open_conversation(&mut browser, "alice", "bob@alpha.test");
    say(&mut browser, "alice", "let us compare numbers");
    wait_sent(&mut browser, "alice");

    browser.click(
        "alice",
        "[data-conversation] header button:has-text(\"Safety number\")",
    );
    browser.wait("alice", "[data-safety] .number");
    let number = browser.texts("alice", "[data-safety] .number").concat();
    let lookup = bob.run(&["lookup", "alice@alpha.test"]);
    assert!(lookup.ok, "{}", lookup.stderr);
    assert!(
        lookup
            .stdout
            .contains(&format!("safety number with bob@alpha.test: {number}")),
        "the page shows {number:?}; siren lookup says:\n{}",
        lookup.stdout
    );
    browser.click("alice", "[data-safety] button.primary");
    browser.wait("alice", "[data-safety] .verified");
    browser.wait("alice", "[data-peer=\"bob@alpha.test\"] .verified");
    screenshot(&mut browser, "alice", "safety-number");

    // bob logs in again: a new device key replaces his old one.
    assert!(bob.login("pw-bob").ok);
    browser.wait("alice", "[data-warning=key-changed]");
    browser.wait("alice", "[data-peer=\"bob@alpha.test\"] .warning");
}

/// From a real page, beside its own session: a WebSocket text message, an oversized message and
/// garbage each close that WebSocket with the code PROTOCOL.md §5.1 gives (1003; 1009; the
/// handshake's plaintext error, then 1000), and the page's session goes on.
#[test]
fn bad_websocket_messages_from_a_page_close_only_their_socket() {
    let server = server();
    let (mut browser, bob) = alice_in_a_browser_bob_on_the_cli(&server);
    let closes = browser.eval(
        "alice",
        "(async () => {
            const closed = (send) => new Promise((done) => {
                const ws = new WebSocket(siren.websocket);
                ws.binaryType = 'arraybuffer';
                const got = [];
                ws.onopen = () => send(ws);
                ws.onmessage = (m) => got.push(m.data.byteLength);
                ws.onclose = (e) => done({ code: e.code, reason: e.reason, messages: got.length });
            });
            return [
                await closed((ws) => ws.send('hello')),
                await closed((ws) => ws.send(new Uint8Array(8 * 1024 * 1024))),
                await closed((ws) => ws.send(new Uint8Array(100).fill(255))),
            ];
        })()",
    );
    assert_eq!(closes[0]["code"], 1003, "{closes}");
    assert!(
        closes[0]["reason"]
            .as_str()
            .unwrap_or_default()
            .contains("binary"),
        "{closes}"
    );
    // The close frame arrives even though the page was still sending: the server reads the
    // rest before it closes (a reset would destroy the frame: 1006, no reason).
    assert_eq!(closes[1]["code"], 1009, "{closes}");
    assert!(
        closes[1]["reason"]
            .as_str()
            .unwrap_or_default()
            .contains("max_frame"),
        "{closes}"
    );
    assert_eq!(closes[2]["code"], 1000, "{closes}");
    assert_eq!(
        closes[2]["messages"], 1,
        "the handshake's error frame first: {closes}"
    );

    open_conversation(&mut browser, "alice", "bob@alpha.test");
    say(&mut browser, "alice", "still here");
    wait_sent(&mut browser, "alice");
    assert!(
        bob.recv()
            .iter()
            .any(|l| l == "alice@alpha.test: still here")
    );
    assert_eq!(browser.requests_outside(), Vec::<String>::new());
}
