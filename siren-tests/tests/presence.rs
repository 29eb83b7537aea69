//! Presence over pub/sub with real processes: only to subscribers the publisher's roster allows,
//! the current state once to a new subscription and no older change, `offline` when the last
//! session closes, nothing from blocked users.

use std::time::Duration;

use siren_tests::{Cli, Options, Server};

struct World {
    _server: Server,
    alice: Cli,
    bob: Cli,
    carol: Cli,
}

fn world() -> World {
    let mut s = Server::new(Options::default());
    for (u, p) in [("alice", "pw-a"), ("bob", "pw-b"), ("carol", "pw-c")] {
        s.add_user(u, p);
    }
    s.start();
    let alice = Cli::init(&s, "alice@alpha.test");
    let bob = Cli::init(&s, "bob@alpha.test");
    let carol = Cli::init(&s, "carol@alpha.test");
    alice.login("pw-a");
    bob.login("pw-b");
    carol.login("pw-c");
    // Alice lets bob (not carol) see her presence.
    let out = alice.run(&["contacts", "add", "bob@alpha.test", "--presence"]);
    assert!(out.ok, "{}", out.stderr);
    World {
        _server: s,
        alice,
        bob,
        carol,
    }
}

const WAIT: Duration = Duration::from_secs(10);

#[test]
fn presence_reaches_allowed_subscribers_and_goes_offline_with_the_last_session() {
    let w = world();
    let bob = w.bob.listen_with(&["--watch", "alice@alpha.test"]);
    // The current state first: alice has no session yet.
    assert_eq!(
        bob.next_line(WAIT).as_deref(),
        Some("* alice@alpha.test is offline")
    );
    let alice = w
        .alice
        .listen_with(&["--status", "away", "--text", "lunch"]);
    assert_eq!(
        bob.next_line(WAIT).as_deref(),
        Some("* alice@alpha.test is away (lunch)")
    );
    drop(alice); // alice's only session closes
    assert_eq!(
        bob.next_line(WAIT).as_deref(),
        Some("* alice@alpha.test is offline")
    );
}

#[test]
fn subscriptions_need_the_publishers_permission() {
    let w = world();
    let out = w.carol.run(&["listen", "--watch", "alice@alpha.test"]);
    assert!(!out.ok);
    assert!(out.stderr.contains("refused, 402"), "{}", out.stderr);
}

/// A subscription starts from the publisher's current state, sent once; nothing older is kept
/// or sent again, and a user with no session is `offline` (their last status is forgotten).
#[test]
fn a_late_subscriber_gets_the_current_presence_once_and_nothing_older() {
    let w = world();
    let alice = w.alice.listen_with(&["--status", "busy"]);
    // Bob subscribes after alice published: he learns her current state, and only it.
    let bob = w.bob.listen_with(&["--watch", "alice@alpha.test"]);
    assert_eq!(
        bob.next_line(WAIT).as_deref(),
        Some("* alice@alpha.test is busy")
    );
    let _again = w.alice.run(&["whoami"]); // unrelated command: nothing more
    assert_eq!(bob.next_line(Duration::from_secs(1)), None);
    drop(bob);
    drop(alice);
    // alice has no session: a new subscriber hears `offline`, not her last status.
    let bob = w.bob.listen_with(&["--watch", "alice@alpha.test"]);
    assert_eq!(
        bob.next_line(WAIT).as_deref(),
        Some("* alice@alpha.test is offline")
    );
    assert_eq!(bob.next_line(Duration::from_secs(1)), None);
}

#[test]
fn presence_from_a_blocked_user_does_not_arrive() {
    let w = world();
    assert!(w.bob.run(&["contacts", "block", "alice@alpha.test"]).ok);
    let bob = w.bob.listen_with(&["--watch", "alice@alpha.test"]);
    let alice = w.alice.listen_with(&["--status", "available"]);
    assert_eq!(bob.next_line(Duration::from_secs(3)), None);
    drop(alice);
    assert_eq!(bob.next_line(Duration::from_secs(2)), None);
}
