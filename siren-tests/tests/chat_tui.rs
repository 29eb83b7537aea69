//! `siren chat` end to end: real `sirend`, real `siren chat` processes in tmux terminals (typed
//! into with `send-keys`, read with `capture-pane`), real `siren` commands and library clients
//! beside them.

use std::path::Path;
use std::time::Duration;

use siren_tests::tmux::Tmux;
use siren_tests::{Cli, Options, Running, Server, binary};

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

    // History survives a restart of the chat.
    quit(&a);
    let a = chat(&alice, 80, 24, &[]);
    a.wait_for("bob: fine, and you?", T);
    a.wait_for("you: hello bob ✓✓ read", T);
    quit(&a);
    quit(&b);
    quit(&p);
}
