//! The client against a lying server (`siren_tests::hostile`): a real `siren` process whose
//! profile is pointed at a scripted fake server that answers with objects recorded from a real
//! `sirend` earlier in the same test, or invented by the fake. The client must refuse each lie
//! and not act on it.

use siren_api::{ErrorCode, Uid};
use siren_proto::approval::{self, ApprovalTranscript, UskTransfer};
use siren_proto::envelope::{Envelope, Sender};
use siren_proto::ids::MessageId;
use siren_proto::keys::{DekPublic, DekSecret, SekPublic, UskSecret};
use siren_proto::message::{ClientMessage, NextStep, Notice, QueueItem, ServerMessage};
use siren_proto::records::{DeviceRecord, DeviceRecordDraft, DirectoryListing, UserDirectory};
use siren_proto::roster::Roster;
use siren_proto::transcript::Digest;
use siren_tests::hostile::{self, Hostile, Seen, with_client};
use siren_tests::{Cli, Options, Output, Server};

const DOMAIN: &str = "alpha.test";

fn server() -> Server {
    let mut s = Server::new(Options::default());
    for (u, p) in [("alice", "pw-a"), ("bob", "pw-b"), ("mallory", "pw-m")] {
        s.add_user(u, p);
    }
    s.start();
    s
}

fn uid(s: &str) -> Uid {
    Uid::parse(s).unwrap()
}

/// What `siren whoami` prints after `prefix` (`device `, `signing key `).
fn whoami(cli: &Cli, prefix: &str) -> Option<String> {
    cli.run(&["whoami"])
        .stdout
        .lines()
        .find_map(|l| l.strip_prefix(prefix).map(str::to_owned))
}

/// A profile's current DEK, read from its keys.
fn device(cli: &Cli) -> DekPublic {
    with_client(cli.profile(), async |c| c.device().unwrap())
}

fn lookup(cli: &Cli, who: &Uid) -> DirectoryListing {
    with_client(cli.profile(), async |c| {
        c.lookup(who).await.unwrap().directory.listing()
    })
}

/// Whether the client sent the fake a `register`.
fn registered(fake: &Hostile) -> bool {
    fake.received()
        .iter()
        .any(|m| matches!(m, ClientMessage::Register { .. }))
}

fn assert_refused(out: &Output, what: &str, needle: &str) {
    assert!(!out.ok, "{what} must fail:\n{}\n{}", out.stdout, out.stderr);
    assert!(
        out.stderr.contains(needle),
        "{what}: expected {needle:?} in\n{}",
        out.stderr
    );
}

// ---------------------------------------------------------------------------------------------
// F15: a revoked device comes back when a listing leaves the revocation out.

/// Bob with a revoked device: his laptop, a device `old` added with the recovery key and then
/// revoked from the laptop, and a device `new` added after that (so the head of his chain is a
/// record, and a listing can leave the revocation out and still verify).
struct RevokedDevice {
    laptop: Cli,
    old: DekPublic,
    old_record: DeviceRecord,
    honest: DirectoryListing,
}

impl RevokedDevice {
    fn set_up(s: &Server) -> RevokedDevice {
        let bob = uid("bob@alpha.test");
        let laptop = Cli::init(s, "bob@alpha.test");
        laptop.login("pw-b");
        let key = laptop.run(&["recovery", "export"]).stdout.trim().to_owned();
        let join = || {
            let cli = Cli::init(s, "bob@alpha.test");
            assert!(cli.run(&["recovery", "import", &key]).ok);
            cli.login("pw-b");
            cli
        };
        let old_cli = join();
        let old = device(&old_cli);
        let old_record = lookup(&old_cli, &bob)
            .records
            .into_iter()
            .find(|r| r.dek == old)
            .unwrap();
        let fp = whoami(&old_cli, "device ").unwrap();
        let out = laptop.run(&["devices", "revoke", &fp]);
        assert!(out.ok, "revoke: {}", out.stderr);
        // Recorded from the new device, so that the laptop's cache stays as the revoke left it.
        let new = join();
        let honest = lookup(&new, &bob);
        assert!(honest.revoked.iter().any(|r| r.dek == old));
        assert!(!honest.records.iter().any(|r| r.dek == old));
        RevokedDevice {
            laptop,
            old,
            old_record,
            honest,
        }
    }

    /// The honest listing with the revocation left out and the revoked record live again.
    fn lie(&self) -> DirectoryListing {
        let mut lie = self.honest.clone();
        lie.revoked.retain(|r| r.dek != self.old);
        lie.records.push(self.old_record.clone());
        lie
    }
}

/// A fake that resumes `who`'s session, answers every lookup of bob with `listing`, acknowledges
/// sends and registrations, and pushes `pushed` after the welcome.
fn lying_directory(who: &Uid, listing: DirectoryListing, pushed: Vec<ServerMessage>) -> Hostile {
    let who = who.clone();
    Hostile::start(DOMAIN, move |seen| match seen {
        Seen::Opened { .. } => {
            let mut out = hostile::resumed(DOMAIN, &who);
            out.extend(pushed.iter().cloned());
            out
        }
        Seen::Request(ClientMessage::Lookup { rid, .. }) => vec![ServerMessage::Directory {
            rid: *rid,
            listing: listing.clone(),
        }],
        Seen::Request(ClientMessage::Send { rid, msgs }) => vec![ServerMessage::SendAck {
            rid: *rid,
            ids: msgs.iter().map(|m| m.id).collect(),
        }],
        Seen::Request(other) => hostile::routine(other),
    })
}

/// Whether the client sealed anything to `dek`.
fn sealed_to(fake: &Hostile, dek: &DekPublic) -> bool {
    fake.received().iter().any(|m| match m {
        ClientMessage::Send { msgs, .. } => msgs.iter().any(|e| &e.to_dek == dek),
        _ => false,
    })
}

#[test]
fn a_contact_listing_that_leaves_out_a_revocation_is_refused() {
    let s = server();
    let bob = RevokedDevice::set_up(&s);
    // Alice first looks bob up after the revocation: she sees it only in the `revoked` list.
    let alice = Cli::init(&s, "alice@alpha.test");
    alice.login("pw-a");
    let out = alice.run(&["lookup", "bob@alpha.test"]);
    assert!(out.ok, "{}", out.stderr);
    let alice_dek = device(&alice);
    let usk = with_client(bob.laptop.profile(), async |c| c.usk().unwrap());

    // `siren send` must not encrypt to the revoked device.
    let fake = lying_directory(&uid("alice@alpha.test"), bob.lie(), Vec::new());
    fake.point(&alice);
    let out = alice.run(&["send", "bob@alpha.test", "for bob's live devices only"]);
    assert_refused(&out, "send after the lie", "revoked");
    assert!(!sealed_to(&fake, &bob.old), "sealed to the revoked device");
    drop(fake);

    // `siren recv` must not accept a message from the revoked device (its sender is unknown to
    // alice's cache, so the client looks bob up, and gets the lie).
    let content = siren_proto::plaintext::Plaintext::Text {
        body: "from a revoked device".into(),
        ts: 0,
    }
    .encode();
    let env = Envelope::seal(
        Sender {
            uid: &uid("bob@alpha.test"),
            usk: &usk,
            dek: &bob.old,
        },
        &uid("alice@alpha.test"),
        &alice_dek,
        MessageId::random(&mut siren_proto::os_rng()),
        1_000,
        &content,
        &mut siren_proto::os_rng(),
    )
    .unwrap();
    let pushed = vec![
        hostile::deliver(1, QueueItem::Message { env }),
        ServerMessage::QueueDrained,
    ];
    let fake = lying_directory(&uid("alice@alpha.test"), bob.lie(), pushed);
    fake.point(&alice);
    let out = alice.run(&["recv"]);
    assert!(
        !out.stdout.contains("from a revoked device"),
        "a message from a revoked device was shown:\n{}",
        out.stdout
    );
    assert!(out.stderr.contains("refused"), "{}", out.stderr);
}

#[test]
fn an_own_listing_that_leaves_out_a_revocation_is_refused() {
    let s = server();
    let bob = RevokedDevice::set_up(&s);
    let me = uid("bob@alpha.test");

    // `siren devices list` on the laptop that revoked the device.
    let fake = lying_directory(&me, bob.lie(), Vec::new());
    fake.point(&bob.laptop);
    let out = bob.laptop.run(&["devices", "list"]);
    assert_refused(&out, "devices list after the lie", "revoked");
    drop(fake);

    // `siren login` again on the laptop: the listing of `await_approval` is the lie; the laptop
    // must not register on top of it.
    let lie = bob.lie();
    let fake = Hostile::start(DOMAIN, move |seen| match seen {
        Seen::Opened { .. } => hostile::login_offered(DOMAIN),
        Seen::Request(ClientMessage::AuthStart { rid, .. }) => vec![ServerMessage::AuthSuccess {
            rid: *rid,
            uid: uid("bob@alpha.test"),
            next: NextStep::AwaitApproval {
                listing: lie.clone(),
            },
        }],
        Seen::Request(ClientMessage::Register { rid, .. }) => vec![ServerMessage::Ok { rid: *rid }],
        Seen::Request(other) => hostile::routine(other),
    });
    fake.point(&bob.laptop);
    let out = bob.laptop.try_login("pw-b");
    assert_refused(&out, "login after the lie", "revoked");
    assert!(!registered(&fake), "registered on top of the lie");
}

// ---------------------------------------------------------------------------------------------
// F14: an older (or forked) signed roster, served again.

/// A fake that resumes alice's session and answers `roster_get` with `roster`.
fn serving_roster(roster: Option<Roster>) -> Hostile {
    Hostile::start(DOMAIN, move |seen| match seen {
        Seen::Opened { .. } => hostile::resumed(DOMAIN, &uid("alice@alpha.test")),
        Seen::Request(ClientMessage::RosterGet { rid }) => vec![ServerMessage::Roster {
            rid: *rid,
            roster: roster.clone(),
        }],
        Seen::Request(ClientMessage::RosterPut { rid, .. }) => {
            vec![ServerMessage::Ok { rid: *rid }]
        }
        Seen::Request(other) => hostile::routine(other),
    })
}

fn roster_puts(fake: &Hostile) -> usize {
    fake.received()
        .iter()
        .filter(|m| matches!(m, ClientMessage::RosterPut { .. }))
        .count()
}

#[test]
fn an_older_or_forked_roster_is_refused_and_never_signed_on() {
    let s = server();
    let alice = Cli::init(&s, "alice@alpha.test");
    alice.login("pw-a");
    assert!(alice.run(&["contacts", "add", "bob@alpha.test"]).ok);
    let v1 = with_client(alice.profile(), async |c| {
        c.roster().await.unwrap().unwrap()
    });
    assert_eq!(v1.version, 1);
    let usk = with_client(alice.profile(), async |c| c.usk().unwrap());
    assert!(alice.run(&["contacts", "block", "mallory@alpha.test"]).ok);

    // A server restored from a backup serves version 1 again: signing the next edit on top of
    // it would silently unblock mallory.
    let fake = serving_roster(Some(v1.clone()));
    fake.point(&alice);
    let out = alice.run(&["contacts", "add", "carol@alpha.test"]);
    assert_refused(
        &out,
        "an edit on top of version 1",
        "version 1, older than version 2",
    );
    assert_eq!(
        roster_puts(&fake),
        0,
        "signed an edit on top of an old roster"
    );
    let out = alice.run(&["contacts", "list"]);
    assert_refused(&out, "listing version 1", "older than version 2");
    drop(fake);

    // No roster at all, after this device saw version 2.
    let fake = serving_roster(None);
    fake.point(&alice);
    let out = alice.run(&["contacts", "block", "carol@alpha.test"]);
    assert_refused(&out, "an edit on top of no roster", "saw version 2");
    assert_eq!(roster_puts(&fake), 0);
    drop(fake);

    // A version 2 that is not the one this device signed (a fork), valid under alice's USK.
    let forked = Roster::sign_next(
        &usk,
        uid("alice@alpha.test"),
        Some(&v1),
        1,
        v1.contacts.clone(),
        Vec::new(),
    );
    let fake = serving_roster(Some(forked));
    fake.point(&alice);
    let out = alice.run(&["contacts", "add", "carol@alpha.test"]);
    assert_refused(&out, "an edit on top of a fork", "a fork");
    assert_eq!(roster_puts(&fake), 0);
}

// ---------------------------------------------------------------------------------------------
// F16: `create_user` to a device that already holds the USK.

#[test]
fn create_user_never_replaces_a_signing_key() {
    let s = server();
    let alice = Cli::init(&s, "alice@alpha.test");
    alice.login("pw-a");
    let key = whoami(&alice, "signing key ").expect("the first device holds the USK");

    let fake = Hostile::start(DOMAIN, |seen| match seen {
        Seen::Opened { .. } => hostile::login_offered(DOMAIN),
        Seen::Request(ClientMessage::AuthStart { rid, .. }) => vec![ServerMessage::AuthSuccess {
            rid: *rid,
            uid: uid("alice@alpha.test"),
            next: NextStep::CreateUser,
        }],
        Seen::Request(ClientMessage::Register { rid, .. }) => vec![ServerMessage::Ok { rid: *rid }],
        Seen::Request(other) => hostile::routine(other),
    });
    fake.point(&alice);
    let out = alice.try_login("pw-a");
    assert_refused(&out, "login answered with create_user", "create_user");
    assert_eq!(
        whoami(&alice, "signing key ").as_ref(),
        Some(&key),
        "the USK was replaced"
    );
    assert!(!registered(&fake), "registered a new USK");
    // Nor does a recovery key replace it.
    let other = SekPublic::from_bytes([7; 32]).to_base64();
    let out = alice.run(&["recovery", "import", &other]);
    assert_refused(&out, "importing a second key", "never replaced");
    assert_eq!(whoami(&alice, "signing key ").as_ref(), Some(&key));
}

// ---------------------------------------------------------------------------------------------
// F17: the server invents the approving device and hands the new device a USK it holds.

/// A fake that offers a login, answers `await_approval` with a directory it made up (one device
/// `E` under a USK the server holds), and runs `E`'s side of the approval itself.
fn invented_approval() -> Hostile {
    let alice = uid("alice@alpha.test");
    let mut rng = siren_proto::os_rng();
    let usk = UskSecret::generate(&mut rng);
    let e = DekSecret::generate(&mut rng).public();
    let record = DeviceRecordDraft {
        uid: alice.clone(),
        dek: e,
        seq: 1,
        prev: Digest::ZERO,
        ts: 1,
        name: Some("laptop".into()),
    }
    .sign(&usk);
    let listing = UserDirectory::genesis(record).unwrap().listing();
    let nonce_e = approval::random_nonce(&mut rng);
    let mut new_dek = None;
    let mut commit = None;
    Hostile::start(DOMAIN, move |seen| match seen {
        Seen::Opened { dek, .. } => {
            new_dek = Some(*dek);
            hostile::login_offered(DOMAIN)
        }
        Seen::Request(ClientMessage::AuthStart { rid, .. }) => vec![ServerMessage::AuthSuccess {
            rid: *rid,
            uid: alice.clone(),
            next: NextStep::AwaitApproval {
                listing: listing.clone(),
            },
        }],
        Seen::Request(ClientMessage::ApprovalRequest { rid, commit: c, .. }) => {
            commit = Some(*c);
            let notice = Notice::ApprovalChallenge {
                from_dek: e,
                nonce: nonce_e,
            };
            vec![
                ServerMessage::Ok { rid: *rid },
                hostile::deliver(1, QueueItem::Notice { notice }),
            ]
        }
        Seen::Request(ClientMessage::ApprovalReveal { rid, nonce, .. }) => {
            let transcript = ApprovalTranscript {
                uid: alice.clone(),
                new_dek: new_dek.unwrap(),
                existing_dek: e,
                commit: commit.unwrap(),
                existing_nonce: nonce_e,
                new_nonce: *nonce,
            };
            let transfer =
                UskTransfer::seal(&usk, &transcript, &mut siren_proto::os_rng()).unwrap();
            let notice = Notice::ApprovalGrant { transfer };
            vec![
                ServerMessage::Ok { rid: *rid },
                hostile::deliver(2, QueueItem::Notice { notice }),
            ]
        }
        Seen::Request(ClientMessage::Register { rid, .. }) => vec![ServerMessage::Ok { rid: *rid }],
        Seen::Request(other) => hostile::routine(other),
    })
}

#[test]
fn an_approval_invented_by_the_server_is_not_accepted_without_the_person() {
    let s = server();
    let laptop = Cli::init(&s, "alice@alpha.test");
    laptop.login("pw-a");
    let real_key = whoami(&laptop, "signing key ").unwrap();

    let phone = Cli::init(&s, "alice@alpha.test");
    let fake = invented_approval();
    fake.point(&phone);
    // Alice approved nothing on her laptop: asked whether she did, she says no.
    let out = phone.run_with_stdin(
        &["login", "--password-stdin", "--device-name", "phone"],
        "pw-a\nn\n",
    );
    assert!(out.stdout.contains("approval code: "), "{}", out.stdout);
    assert_refused(&out, "a login approved by nobody", "not confirmed");
    assert!(!registered(&fake), "registered with the server's USK");
    assert_eq!(
        whoami(&phone, "signing key "),
        None,
        "kept the server's USK"
    );
    // What the phone showed is not the account's key, which the laptop shows: comparing them
    // catches the invented approval even if the person had answered yes.
    let shown = out
        .stdout
        .lines()
        .find_map(|l| l.strip_prefix("signing key "))
        .and_then(|l| l.split(" received").next())
        .expect("the new device shows the key it received")
        .to_owned();
    assert_ne!(shown, real_key);
}

// ---------------------------------------------------------------------------------------------
// F5: a server's error text reaches the terminal escaped.

#[test]
fn server_error_texts_are_shown_escaped() {
    let s = server();
    let alice = Cli::init(&s, "alice@alpha.test");
    alice.login("pw-a");
    let fake = Hostile::start(DOMAIN, |seen| match seen {
        Seen::Opened { .. } => hostile::resumed(DOMAIN, &uid("alice@alpha.test")),
        Seen::Request(ClientMessage::Lookup { rid, .. }) => vec![ServerMessage::Error {
            rid: Some(*rid),
            code: 300,
            msg: "no such user\x1b[2K\rbob@alpha.test: all good\u{202E}".into(),
        }],
        Seen::Request(other) => hostile::routine(other),
    });
    fake.point(&alice);
    let out = alice.run(&["send", "bob@alpha.test", "hello?"]);
    assert!(!out.ok);
    assert!(
        out.stderr
            .contains("no such user\\u{1b}[2K\\rbob@alpha.test: all good\\u{202e}"),
        "{}",
        out.stderr
    );
    assert!(
        !out.stderr.contains(['\x1b', '\r', '\u{202E}']),
        "{:?}",
        out.stderr
    );
}

// ---------------------------------------------------------------------------------------------
// A server checking too many logins at once says so (207); the client asks again.

#[test]
fn a_busy_login_is_tried_again() {
    let s = server();
    let alice = Cli::init(&s, "alice@alpha.test");
    let mut starts = 0;
    let fake = Hostile::start(DOMAIN, move |seen| match seen {
        Seen::Opened { .. } => hostile::login_offered(DOMAIN),
        Seen::Request(ClientMessage::AuthStart { rid, .. }) => {
            starts += 1;
            if starts < 3 {
                vec![ServerMessage::Error {
                    rid: Some(*rid),
                    code: ErrorCode::LoginBusy.as_u16(),
                    msg: "busy".into(),
                }]
            } else {
                vec![ServerMessage::AuthSuccess {
                    rid: *rid,
                    uid: uid("alice@alpha.test"),
                    next: NextStep::Ready,
                }]
            }
        }
        Seen::Request(other) => hostile::routine(other),
    });
    fake.point(&alice);
    let out = alice.try_login("pw-a");
    assert!(out.ok, "login after two busy answers: {}", out.stderr);
    let starts = fake
        .received()
        .iter()
        .filter(|m| matches!(m, ClientMessage::AuthStart { .. }))
        .count();
    assert_eq!(starts, 3);
}

// ---------------------------------------------------------------------------------------------
// A newer server's message types, queue item kinds and notice kinds are skipped (and queued
// ones acknowledged), not fatal (PROTOCOL.md §13, §21).

fn cbor(value: ciborium::Value) -> Vec<u8> {
    let mut out = Vec::new();
    ciborium::into_writer(&value, &mut out).unwrap();
    out
}

fn text(s: &str) -> ciborium::Value {
    ciborium::Value::Text(s.into())
}

#[test]
fn what_a_newer_server_adds_is_skipped() {
    use ciborium::Value::{Integer, Map};
    use siren_tests::hostile::Reply;
    let s = server();
    let alice = Cli::init(&s, "alice@alpha.test");
    alice.login("pw-a");
    let deliver = |seq: u64, item: ciborium::Value| {
        Reply::Raw(cbor(Map(vec![
            (text("t"), text("deliver")),
            (text("seq"), Integer(seq.into())),
            (text("item"), item),
        ])))
    };
    let fake = Hostile::start_raw(DOMAIN, move |seen| match seen {
        Seen::Opened { .. } => {
            let mut replies: Vec<Reply> = hostile::resumed(DOMAIN, &uid("alice@alpha.test"))
                .into_iter()
                .map(Reply::Message)
                .collect();
            replies.extend([
                Reply::Raw(cbor(Map(vec![(text("t"), text("teleport"))]))),
                Reply::Message(hostile::deliver(
                    1,
                    QueueItem::Notice {
                        notice: Notice::ContactRequest {
                            from: uid("bob@alpha.test"),
                        },
                    },
                )),
                deliver(
                    2,
                    Map(vec![
                        (text("k"), text("notice")),
                        (
                            text("notice"),
                            Map(vec![
                                (text("k"), text("from_the_future")),
                                (text("x"), Integer(1.into())),
                            ]),
                        ),
                    ]),
                ),
                deliver(3, Map(vec![(text("k"), text("hologram"))])),
                Reply::Message(hostile::deliver(
                    4,
                    QueueItem::Notice {
                        notice: Notice::ContactRequest {
                            from: uid("carol@alpha.test"),
                        },
                    },
                )),
                Reply::Message(ServerMessage::QueueDrained),
            ]);
            replies
        }
        Seen::Request(other) => hostile::routine(other)
            .into_iter()
            .map(Reply::Message)
            .collect(),
    });
    fake.point(&alice);
    let out = alice.run(&["recv"]);
    assert!(out.ok, "{}", out.stderr);
    let all = format!("{}{}", out.stdout, out.stderr);
    assert!(
        all.contains("bob@alpha.test") && all.contains("carol@alpha.test"),
        "{all}"
    );
    let acked: Vec<u64> = fake
        .received()
        .into_iter()
        .filter_map(|m| match m {
            ClientMessage::Ack { seqs } => Some(seqs),
            _ => None,
        })
        .flatten()
        .collect();
    assert_eq!(acked, vec![1, 2, 3, 4], "every queued item is acknowledged");
}
