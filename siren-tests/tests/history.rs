//! The local history with a real `sirend` and real `siren` processes: what `send` and `recv`
//! keep is found again by `siren history` in later processes, and no file of either profile
//! holds a message's text in clear.

use siren_tests::{Cli, Options, Server, any_file_contains};

#[test]
fn history_is_searchable_after_restart_and_sealed_at_rest() {
    let mut server = Server::new(Options::default());
    server.add_user("alice", "alice-password");
    server.add_user("bob", "bob-password");
    server.start();
    let alice = Cli::init(&server, "alice@alpha.test");
    let bob = Cli::init(&server, "bob@alpha.test");
    alice.login("alice-password");
    bob.login("bob-password");

    // A word that appears nowhere else (not in an id, a key or a name).
    let marker = format!("quokkamarker{}", std::process::id());
    alice.send("bob@alpha.test", &format!("first {marker} message"));
    alice.send("bob@alpha.test", "nothing to find here");
    alice.send(
        "bob@alpha.test",
        &format!("second {} one\u{1b}[2K\u{202e}", marker.to_uppercase()),
    );
    assert_eq!(bob.recv().len(), 3);

    // Every `siren` command is a new process: the server is not needed for history either.
    server.stop();

    let out = bob.run(&["history", "alice@alpha.test", "--search", &marker]);
    assert!(out.ok, "{}", out.stderr);
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert_eq!(lines.len(), 2, "{}", out.stdout);
    assert!(
        lines[0].ends_with(&format!("  alice@alpha.test  seen  first {marker} message")),
        "{}",
        lines[0]
    );
    // Found ignoring case, and what came from the network is shown escaped.
    assert!(
        lines[1].ends_with(&format!(
            "  alice@alpha.test  seen  second {} one\\u{{1b}}[2K\\u{{202e}}",
            marker.to_uppercase()
        )),
        "{}",
        lines[1]
    );
    assert!(!out.stdout.contains('\u{1b}'));

    // The sender's side: the whole conversation, and a search over every conversation.
    let out = alice.run(&["history", "bob@alpha.test"]);
    assert!(out.ok, "{}", out.stderr);
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert_eq!(lines.len(), 3, "{}", out.stdout);
    assert!(
        lines.iter().all(|l| l.contains("  me  sent  ")),
        "{}",
        out.stdout
    );
    assert!(lines[1].ends_with("nothing to find here"), "{}", lines[1]);
    let out = alice.run(&["history", "--search", &marker, "--limit", "1"]);
    assert!(out.ok, "{}", out.stderr);
    assert_eq!(out.stdout.lines().count(), 1, "{}", out.stdout);
    assert!(
        out.stdout.contains("  me -> bob@alpha.test  sent  second "),
        "{}",
        out.stdout
    );
    let out = bob.run(&["history"]);
    assert!(out.ok, "{}", out.stderr);
    assert!(
        out.stdout
            .trim_end()
            .ends_with("  alice@alpha.test  3 messages"),
        "{}",
        out.stdout
    );

    // Nothing of the texts in clear, in any file of either profile.
    for cli in [&alice, &bob] {
        assert!(cli.profile().join("history.redb").exists());
        for needle in [marker.as_bytes(), b"nothing to find here".as_slice()] {
            assert_eq!(
                any_file_contains(cli.profile(), needle),
                None,
                "{} holds a text in clear",
                cli.uid
            );
        }
    }
}
