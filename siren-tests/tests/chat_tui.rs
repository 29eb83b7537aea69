//! `siren chat` end to end: real `sirend`, real `siren chat` processes in tmux terminals (typed
//! into with `send-keys`, read with `capture-pane`), real `siren` commands and library clients
//! beside them.

use std::path::Path;
use std::time::Duration;

use sha2::{Digest as _, Sha256};
use siren_api::Uid;
use siren_client::client::{Client, Event};
use siren_proto::ids::{FileId, MessageId};
use siren_proto::plaintext::{FileManifest, Plaintext, ReceiptState, seal_chunk};
use siren_tests::tmux::Tmux;
use siren_tests::{Cli, Options, Running, Server, any_file_contains, binary, files_under};

/// The longest any one step may take (every wait ends as soon as the screen shows it).
const T: Duration = Duration::from_secs(30);

fn server(users: &[&str]) -> Server {
    let mut s = Server::new(Options::default());
    for u in users {
        s.add_user(u, &format!("pw-{u}"));
    }
    s.start();
    s
}

fn logged_in(s: &Server, user: &str) -> Cli {
    let cli = Cli::init(s, &format!("{user}@{}", s.name));
    cli.login(&format!("pw-{user}"));
    cli
}

/// `siren chat` on `cli`'s profile in a `w`×`h` terminal, once it is connected.
fn chat(cli: &Cli, w: u16, h: u16, extra: &[&str]) -> Tmux {
    let tmux = chat_starting(cli.profile(), w, h, extra);
    tmux.wait_for(&format!("connected as {}", cli.uid), T);
    tmux
}

fn chat_starting(profile: &Path, w: u16, h: u16, extra: &[&str]) -> Tmux {
    let siren = binary("siren");
    let mut args = vec!["--profile", profile.to_str().unwrap(), "chat"];
    args.extend_from_slice(extra);
    Tmux::start(siren.to_str().unwrap(), args, &[], w, h)
}

/// Quits with Ctrl-C and checks the process ended well.
fn quit(tmux: &Tmux) {
    tmux.send_keys(&["C-c"]);
    assert!(
        tmux.try_wait(T, |_| !tmux.alive()).is_some(),
        "siren chat did not quit:\n{}",
        tmux.capture()
    );
    assert_eq!(tmux.exit_status(), Some(0), "{}", tmux.capture());
}

/// The code a logging-in device shows (`approval code: 123 456`).
fn approval_code(login: &Running) -> String {
    loop {
        let line = login
            .next_line(T)
            .expect("the new device shows an approval code");
        if let Some(code) = line.strip_prefix("approval code: ") {
            return code.trim().to_owned();
        }
    }
}

/// The safety number in a `/verify` window: the line of digit groups after the title.
fn safety_number(screen: &str) -> String {
    screen
        .lines()
        .map(|l| l.trim_matches(|c: char| c == '│' || c.is_whitespace()))
        .find(|l| l.len() > 20 && l.chars().all(|c| c.is_ascii_digit() || c == ' '))
        .unwrap_or_else(|| panic!("no safety number on the screen:\n{screen}"))
        .to_owned()
}

#[test]
fn two_people_chat_live_with_read_marks_typing_a_contact_request_and_a_second_device() {
    let s = server(&["alice", "bob"]);
    let (alice, bob) = (logged_in(&s, "alice"), logged_in(&s, "bob"));
    let a = chat(&alice, 80, 24, &[]);

    // A second device of alice's logs in; the running chat shows the request and the same code,
    // and approves it with y.
    let phone = Cli::init(&s, "alice@alpha.test");
    let mut login = phone.spawn(
        &["login", "--password-stdin", "--device-name", "phone"],
        "pw-alice\n",
    );
    let code = approval_code(&login);
    a.wait_for("new device(s) of yours waiting: /approve", T);
    a.type_line("/approve");
    a.wait_for(&format!("Code: {code}"), T);
    a.wait_for("phone", T);
    a.send_keys(&["y"]);
    loop {
        let line = login.next_line(T).expect("the phone receives the key");
        if line.starts_with("signing key ") {
            break;
        }
    }
    login.write_line("y");
    let out = login.finish(T);
    assert!(out.ok, "phone login: {}", out.stderr);
    a.wait_gone("waiting: /approve", T);

    let b = chat(&bob, 80, 24, &[]);
    let p = chat(&phone, 80, 24, &[]);

    // alice writes first: bob sees a contact request with her message, not yet receipted.
    a.type_line("/chat bob@alpha.test");
    a.type_line("hello bob");
    a.wait_for("you: hello bob ✓", T);
    let screen = b.wait_for("contact request from alice@alpha.test", T);
    b.wait_for("alice: hello bob", T);
    assert!(
        !a.capture().contains("hello bob ✓✓"),
        "a stranger's client must not receipt: {screen}"
    );
    // bob accepts from the UI: the receipts held back go, and alice sees it read (bob has the
    // conversation open).
    b.type_line("/accept alice@alpha.test");
    b.wait_gone("contact request from", T);
    a.wait_for("you: hello bob ✓✓ read", T);
    assert!(
        !a.capture().contains("keys of bob@alpha.test changed"),
        "a first contact is not a key change:\n{}",
        a.capture()
    );

    // The typing line comes while bob types and goes when he sends.
    b.send_text("fine, and");
    a.wait_for("bob is typing…", T);
    b.send_text(" you?");
    b.send_keys(&["Enter"]);
    a.wait_for("bob: fine, and you?", T);
    a.wait_gone("is typing", T);
    b.wait_for("you: fine, and you? ✓✓ read", T);

    // A multi-line message (Alt-Enter).
    a.send_text("line one");
    a.send_keys(&["M-Enter"]);
    a.type_line("line two");
    b.wait_for("line two", T);

    // Edits and deletions of one's own last message.
    a.type_line("/edit lines one and two");
    b.wait_for("alice: lines one and two (edited)", T);
    a.type_line("a typo");
    b.wait_for("alice: a typo", T);
    a.type_line("/delete");
    b.wait_for("alice: message deleted", T);

    // The phone saw both sides: alice's own message (a sealed copy) and bob's.
    p.wait_for("bob: fine, and you?", T);
    p.wait_for("you: hello bob", T);

    // The help screen, and a resize: the conversation is still drawn.
    a.send_keys(&["F1"]);
    a.wait_for("keys and commands", T);
    a.send_keys(&["Escape"]);
    a.wait_gone("keys and commands", T);
    a.resize(120, 40);
    a.wait_for("bob: fine, and you?", T);
    a.resize(60, 16);
    a.wait_for("fine, and you?", T);

    // Safety numbers: both sides show the same one; y marks it verified.
    a.resize(80, 24);
    a.type_line("/verify bob@alpha.test");
    let screen = a.wait_for("Safety number with bob@alpha.test", T);
    let number = safety_number(&screen);
    b.type_line("/verify alice@alpha.test");
    let theirs = safety_number(&b.wait_for("Safety number with alice@alpha.test", T));
    assert_eq!(number, theirs);
    b.send_keys(&["Escape"]);
    a.send_keys(&["y"]);
    // (bob's presence shows too: alice's subscription started from his current state.)
    a.wait_for("bob@alpha.test · available · verified ✓", T);

    // History survives a restart of the chat; nothing readable is left in the profile.
    quit(&a);
    for needle in ["hello bob", "fine, and you?", "lines one and two"] {
        assert_eq!(
            any_file_contains(alice.profile(), needle.as_bytes()),
            None,
            "{needle:?} in plaintext in the profile"
        );
    }
    let a = chat(&alice, 80, 24, &[]);
    a.wait_for("bob: fine, and you?", T);
    a.wait_for("you: hello bob ✓✓ read", T);
    quit(&a);
    quit(&b);
    quit(&p);
}

fn uid(s: &str) -> Uid {
    Uid::parse(s).unwrap()
}

fn id() -> MessageId {
    MessageId::random(&mut siren_proto::os_rng())
}

/// Files in a downloads folder (none if it does not exist).
fn downloads(dir: &Path) -> Vec<std::path::PathBuf> {
    if dir.exists() {
        files_under(dir)
    } else {
        Vec::new()
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_ten_mib_file_arrives_intact_and_a_corrupted_one_is_reported_and_not_saved() {
    let s = server(&["alice", "bob", "carol"]);
    let (alice, bob, carol) = (
        logged_in(&s, "alice"),
        logged_in(&s, "bob"),
        logged_in(&s, "carol"),
    );
    let bob_downloads = bob.profile().join("downloads");
    let a = chat(&alice, 100, 30, &[]);
    let b = chat(&bob, 100, 30, &[]);
    a.type_line("/chat bob@alpha.test");
    a.type_line("a file is coming");
    b.wait_for("alice: a file is coming", T);
    b.type_line("/accept alice@alpha.test");

    // 10 MiB of random bytes (not compressible, not repetitive).
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("report.bin");
    let mut data = vec![0u8; 10 << 20];
    rand_core::Rng::fill_bytes(&mut siren_proto::os_rng(), &mut data);
    std::fs::write(&path, &data).unwrap();
    a.type_line(&format!("/file {}", path.display()));
    // Progress is shown while it goes, then it is complete on both sides.
    a.wait_for("report.bin (10.0 MiB)", T);
    b.wait_for(
        "[file] report.bin (10.0 MiB) received: /save keeps it",
        Duration::from_secs(120),
    );
    a.wait_for("[file] report.bin (10.0 MiB) sent", T);
    assert!(
        downloads(&bob_downloads).is_empty(),
        "nothing is saved before /save"
    );
    b.type_line("/save");
    b.wait_for("saved to", T);
    let saved = downloads(&bob_downloads);
    assert_eq!(saved.len(), 1, "{saved:?}");
    let got = std::fs::read(&saved[0]).unwrap();
    assert_eq!(
        Sha256::digest(&got),
        Sha256::digest(&data),
        "the file arrived intact"
    );

    // carol sends a file whose second chunk was altered: reported, nothing saved.
    let mut c = carol.connected().await;
    let bob_uid = uid("bob@alpha.test");
    let key = [7u8; 32];
    let body: Vec<u8> = (0..3000u32).map(|i| i as u8).collect();
    let file = FileId::random(&mut siren_proto::os_rng());
    let manifest = FileManifest {
        file,
        name: "tampered.txt".into(),
        size: 3000,
        chunk_size: 1000,
        chunks: 3,
        sha256: Sha256::digest(&body).into(),
        key,
        ts: 1,
    };
    c.send_plaintext(&bob_uid, id(), &Plaintext::File(Box::new(manifest)))
        .await
        .unwrap();
    for index in 0..3u32 {
        let start = index as usize * 1000;
        let mut data = seal_chunk(&key, index, &body[start..start + 1000]);
        if index == 1 {
            let last = data.len() - 1;
            data[last] ^= 1;
        }
        c.send_plaintext(&bob_uid, id(), &Plaintext::FileChunk { file, index, data })
            .await
            .unwrap();
    }
    b.type_line("/chat carol@alpha.test");
    b.wait_for(
        "[file] tampered.txt (2.9 KiB) failed: chunk 1 is corrupted",
        T,
    );
    b.type_line("/save");
    b.wait_for("tampered.txt failed: chunk 1 is corrupted", T);
    assert_eq!(downloads(&bob_downloads).len(), 1, "nothing more was saved");
    assert!(b.alive());
    c.bye().await.unwrap();
    quit(&a);
    quit(&b);
}

/// A CBOR map `{"type": <kind>}` with a text kind of `len` bytes.
fn cbor_kind_text(len: usize) -> Vec<u8> {
    let mut out = vec![0xa1, 0x64];
    out.extend_from_slice(b"type");
    match len {
        0..24 => out.push(0x60 + u8::try_from(len).unwrap()),
        24..256 => out.extend_from_slice(&[0x78, u8::try_from(len).unwrap()]),
        _ => {
            out.push(0x79);
            out.extend_from_slice(&u16::try_from(len).unwrap().to_be_bytes());
        }
    }
    out.extend(std::iter::repeat_n(b'k', len));
    out
}

#[tokio::test(flavor = "multi_thread")]
async fn hostile_payloads_are_shown_escaped_or_refused_and_the_chat_keeps_running() {
    let s = server(&["bob", "carol"]);
    let (bob, carol) = (logged_in(&s, "bob"), logged_in(&s, "carol"));
    let b = chat(&bob, 160, 30, &[]);
    let mut c = carol.connected().await;
    let bob_uid = uid("bob@alpha.test");

    // Control characters and bidi overrides in a text: drawn as visible escapes.
    let evil = "evil\x1b[2J\x1b]0;pwned\x07 \u{202e}gnp.exe end";
    let text = Plaintext::Text {
        body: evil.into(),
        ts: 1,
    };
    c.send_plaintext(&bob_uid, id(), &text).await.unwrap();
    b.wait_for(
        r"carol: evil\u{1b}[2J\u{1b}]0;pwned\u{7} \u{202e}gnp.exe end",
        T,
    );

    // A kind that is not a text string: refused, said so.
    c.send_encoded(&bob_uid, id(), &[0xa1, 0x64, b't', b'y', b'p', b'e', 0x07])
        .await
        .unwrap();
    b.wait_for("was refused", T);
    b.send_keys(&["Escape"]);
    // An oversized kind, and an unknown one: refused or shown as unsupported, never a crash.
    c.send_encoded(&bob_uid, id(), &cbor_kind_text(3000))
        .await
        .unwrap();
    c.send_encoded(&bob_uid, id(), &cbor_kind_text(8))
        .await
        .unwrap();
    b.wait_for(&format!("unsupported message ({}…)", "k".repeat(32)), T);
    b.wait_for("unsupported message (kkkkkkkk)", T);

    // A file manifest claiming 10 GiB: refused before anything is held.
    let manifest = FileManifest {
        file: FileId::random(&mut siren_proto::os_rng()),
        name: "huge.iso".into(),
        size: 10 << 30,
        chunk_size: 192 << 10,
        chunks: u32::try_from((10u64 << 30).div_ceil(192 << 10)).unwrap(),
        sha256: [0; 32],
        key: [1; 32],
        ts: 1,
    };
    c.send_plaintext(&bob_uid, id(), &Plaintext::File(Box::new(manifest)))
        .await
        .unwrap();
    b.wait_for("larger than", T);
    assert!(!b.capture().contains("huge.iso ("), "{}", b.capture());

    // Control characters in a file name.
    let body = b"tiny";
    let key = [3u8; 32];
    let file = FileId::random(&mut siren_proto::os_rng());
    let manifest = FileManifest {
        file,
        name: "bad\x1b[31mname\n.txt".into(),
        size: 4,
        chunk_size: 4,
        chunks: 1,
        sha256: Sha256::digest(body).into(),
        key,
        ts: 1,
    };
    c.send_plaintext(&bob_uid, id(), &Plaintext::File(Box::new(manifest)))
        .await
        .unwrap();
    let data = seal_chunk(&key, 0, body);
    c.send_plaintext(
        &bob_uid,
        id(),
        &Plaintext::FileChunk {
            file,
            index: 0,
            data,
        },
    )
    .await
    .unwrap();
    b.wait_for(r"[file] bad\u{1b}[31mname\n.txt (4 B) received", T);
    // Still running, and still chatting: bob accepts carol and answers.
    assert!(b.alive());
    b.type_line("/accept carol@alpha.test");
    b.type_line("still here");
    loop {
        let event = tokio::time::timeout(T, c.next_event(false))
            .await
            .expect("bob's answer in time")
            .unwrap();
        if let Some(Event::Message(m)) = event
            && matches!(&m.content, Plaintext::Text { body, .. } if body == "still here")
        {
            break;
        }
    }
    // Nothing on the screen drives the terminal: tmux shows no raw escape character.
    assert!(!b.capture().contains('\x1b'));
    c.bye().await.unwrap();
    quit(&b);
}

/// Everything that reaches `client` within `window` (receipts, signals, messages).
async fn collect(client: &mut Client, window: Duration) -> Vec<Event> {
    let mut got = Vec::new();
    let deadline = tokio::time::Instant::now() + window;
    while let Ok(event) = tokio::time::timeout_at(deadline, client.next_event(false)).await {
        if let Some(event) = event.unwrap() {
            got.push(event);
        }
    }
    got
}

/// Waits for a receipt of `state` for message `of`.
async fn receipt(client: &mut Client, state: ReceiptState, of: MessageId) {
    loop {
        let event = tokio::time::timeout(T, client.next_event(false))
            .await
            .unwrap_or_else(|_| panic!("a {state:?} receipt in time"))
            .unwrap();
        if let Some(Event::Message(m)) = event
            && let Plaintext::Receipt { state: s, ids, .. } = &m.content
            && *s == state
            && ids.contains(&of)
        {
            return;
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn receipts_and_typing_never_reach_a_blocked_user() {
    let s = server(&["alice", "bob", "carol"]);
    let (_alice, bob, carol) = (
        logged_in(&s, "alice"),
        logged_in(&s, "bob"),
        logged_in(&s, "carol"),
    );
    let mut c = carol.connected().await;
    let bob_uid = uid("bob@alpha.test");
    let text = |body: &str| Plaintext::Text {
        body: body.into(),
        ts: 1,
    };
    let first = id();
    c.send_plaintext(&bob_uid, first, &text("first"))
        .await
        .unwrap();
    let b = chat(&bob, 100, 30, &[]);
    b.wait_for("carol: first", T);
    b.type_line("/accept carol@alpha.test");
    receipt(&mut c, ReceiptState::Read, first).await;

    // Another conversation is open when carol's second message comes: delivered, not read.
    b.type_line("/chat alice@alpha.test");
    let second = id();
    c.send_plaintext(&bob_uid, second, &text("second"))
        .await
        .unwrap();
    receipt(&mut c, ReceiptState::Delivered, second).await;

    // bob blocks carol, then opens her conversation (reading "second") and types in it.
    b.type_line("/block carol@alpha.test");
    b.wait_for("blocked", T);
    b.type_line("/chat carol@alpha.test");
    b.wait_for("carol: second", T);
    b.send_text("not for you");
    let got = collect(&mut c, Duration::from_secs(4)).await;
    assert!(
        got.iter()
            .all(|e| !matches!(e, Event::Signal(_) | Event::Message(_))),
        "a blocked user got something: {got:?}"
    );

    // The same steps once unblocked do reach carol (so the silence above was the block).
    b.send_keys(&["C-u"]);
    b.type_line("/unblock carol@alpha.test");
    b.send_text("now you can");
    loop {
        let event = tokio::time::timeout(T, c.next_event(false))
            .await
            .expect("a typing signal once unblocked")
            .unwrap();
        if let Some(Event::Signal(r)) = event {
            assert_eq!(r.content, Plaintext::Typing { typing: true });
            break;
        }
    }
    c.bye().await.unwrap();
    quit(&b);
}

/// What `siren chat` received is acknowledged before it waits again (acknowledgements are
/// batched, not held back): the server keeps nothing for the device once it is on the screen.
#[test]
fn what_the_chat_received_leaves_the_servers_queue() {
    let s = server(&["alice", "bob"]);
    let (alice, bob) = (logged_in(&s, "alice"), logged_in(&s, "bob"));
    let b = chat(&bob, 100, 30, &[]);
    b.type_line("/chat alice@alpha.test");
    alice.send("bob@alpha.test", "one message, not a batch of 64");
    b.wait_for("alice: one message, not a batch of 64", T);
    let deadline = std::time::Instant::now() + T;
    loop {
        let stats = s.admin(&["queue", "stats", "bob"], "");
        assert!(stats.ok, "{}", stats.stderr);
        if stats.stdout.contains(" 0 items") {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the server still holds what the chat showed: {}",
            stats.stdout
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    quit(&b);
}

#[test]
fn the_chat_reconnects_by_itself_says_so_and_sends_what_was_written_offline() {
    let mut s = server(&["alice", "bob"]);
    let (alice, bob) = (logged_in(&s, "alice"), logged_in(&s, "bob"));
    let b = chat(&bob, 100, 30, &[]);
    b.type_line("/chat alice@alpha.test");
    b.type_line("before");
    b.wait_for("you: before ✓", T);

    s.kill();
    b.wait_for("retrying in", T);
    // Written while offline: kept, marked as not yet sent.
    b.type_line("while you were away");
    b.wait_for("you: while you were away …", T);
    s.start();
    b.wait_for("connected as bob@alpha.test", Duration::from_secs(90));
    b.wait_for("you: while you were away ✓", T);

    // A CLI user in the same conversation: bob's chat receipts her message, and `siren recv`
    // prints the receipts as such (not as unsupported messages).
    alice.send("bob@alpha.test", "from the command line");
    b.wait_for("alice: from the command line", T);
    quit(&b);
    // Messages on standard output, receipts beside the notices on standard error.
    let out = alice.run(&["recv"]);
    assert!(out.ok, "{}", out.stderr);
    let got: Vec<&str> = out.stdout.lines().collect();
    assert!(
        got.iter().any(|l| l.contains("while you were away")),
        "{got:?}"
    );
    let status: Vec<&str> = out.stderr.lines().collect();
    assert!(
        status.contains(&"* bob@alpha.test received 1 of your message"),
        "{status:?}"
    );
    assert!(
        status.contains(&"* bob@alpha.test read 1 of your message"),
        "{status:?}"
    );
    assert!(!out.stdout.contains("unsupported"), "{}", out.stdout);
    assert!(!out.stderr.contains("unsupported"), "{}", out.stderr);
}

#[test]
fn siren_recv_receipts_what_accepted_contacts_send_and_nothing_to_strangers() {
    let s = server(&["alice", "bob"]);
    let (alice, bob) = (logged_in(&s, "alice"), logged_in(&s, "bob"));
    let a = chat(&alice, 100, 30, &[]);
    a.type_line("/chat bob@alpha.test");
    a.type_line("first, to a stranger");
    a.wait_for("you: first, to a stranger ✓", T);
    // bob reads it on the command line: alice is a stranger to him, so no receipt goes (the
    // receipt would be sent before `recv` returns).
    let got = bob.recv();
    assert!(
        got.iter().any(|l| l.contains("first, to a stranger")),
        "{got:?}"
    );
    std::thread::sleep(Duration::from_secs(2));
    assert!(!a.capture().contains("stranger ✓✓"), "{}", a.capture());

    // Once bob accepted alice, `siren recv` receipts her messages as delivered.
    let out = bob.run(&["contacts", "add", "alice@alpha.test", "--presence"]);
    assert!(out.ok, "{}", out.stderr);
    a.type_line("second, to a contact");
    a.wait_for("you: second, to a contact ✓", T);
    let got = bob.recv();
    assert!(
        got.iter().any(|l| l.contains("second, to a contact")),
        "{got:?}"
    );
    a.wait_for("you: second, to a contact ✓✓", T);
    assert!(!a.capture().contains("contact ✓✓ read"), "{}", a.capture());
    // And bob's history has both, from the core's records.
    let out = bob.run(&["history", "alice@alpha.test"]);
    assert!(out.ok, "{}", out.stderr);
    assert!(
        out.stdout.contains("first, to a stranger"),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout.contains("second, to a contact"),
        "{}",
        out.stdout
    );
    quit(&a);
}

/// A group is a conversation of `siren chat`: listed as soon as this device holds it, each
/// message with its sender, the membership changes told in line, a reply fanned out to every
/// member, and `/chat GROUP` opens it by its title.
#[test]
fn a_group_is_a_conversation_in_siren_chat() {
    let s = server(&["alice", "bob", "carol"]);
    let alice = logged_in(&s, "alice");
    let bob = logged_in(&s, "bob");
    let carol = logged_in(&s, "carol");
    let (bob_uid, carol_uid) = (format!("bob@{}", s.name), format!("carol@{}", s.name));
    let created = alice.run(&["group", "create", "Lunch", &bob_uid, &carol_uid]);
    assert!(created.ok, "{}", created.stderr);

    let tui = chat(&bob, 110, 30, &[]);
    tui.wait_for("# Lunch", T);
    // alice is no contact of bob's: her first envelope also made a contact request, which
    // may be the conversation open first.
    tui.type_line("/chat Lunch");
    tui.wait_for("to # Lunch", T);
    tui.wait_for(
        &format!("* you are in the group, added by alice@{}", s.name),
        T,
    );
    tui.wait_for("3 members", T);
    // alice's group traffic made the server send a contact request; it is not shown while she
    // has never written to bob alone.
    tui.wait_gone("contact request", T);
    let sent = alice.run(&["send", "Lunch", "noon at the usual place?"]);
    assert!(sent.ok, "{}", sent.stderr);
    tui.wait_for("alice: noon at the usual place?", T);

    tui.type_line("see you there");
    tui.wait_for("you: see you there ✓", T);
    for (cli, user) in [(&alice, "alice"), (&carol, "carol")] {
        let got = cli.recv();
        assert!(
            got.iter()
                .any(|l| *l == format!("[Lunch] {bob_uid}: see you there")),
            "{user} got {got:?}"
        );
    }

    let removed = alice.run(&["group", "remove", "Lunch", &carol_uid]);
    assert!(removed.ok, "{}", removed.stderr);
    tui.wait_for(&format!("* alice@{} removed {carol_uid}", s.name), T);
    tui.wait_for("2 members", T);

    // Another conversation, then back to the group from the list.
    tui.type_line(&format!("/chat alice@{}", s.name));
    tui.wait_for(&format!("to alice@{}", s.name), T);
    tui.send_keys(&["Up"]);
    tui.wait_for("to # Lunch", T);
    quit(&tui);
}
