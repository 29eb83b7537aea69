//! The core's rules, driven the way a driver drives them: inputs in, effects and view out.

use siren_api::Uid;
use siren_proto::ids::MessageId;
use siren_proto::plaintext::{Plaintext, ReceiptState};

use crate::effect::Effect;
use crate::model::{Banner, Body, Chat, FileProgress, MessageState};
use crate::{Command, Core};

fn uid(s: &str) -> Uid {
    Uid::parse(s).unwrap()
}

fn rng() -> impl rand_core::CryptoRng {
    siren_proto::os_rng()
}

fn core(me: &str) -> Core {
    Core::new(uid(me), true, &mut rng())
}

fn text(body: &str) -> Plaintext {
    Plaintext::Text {
        body: body.into(),
        ts: 1,
    }
}

/// The `Send` effects, as (to, id, content).
fn sends(effects: &[Effect]) -> Vec<(Uid, MessageId, Plaintext)> {
    effects
        .iter()
        .filter_map(|e| match e {
            Effect::Send { to, id, content } => Some((to.clone(), *id, content.clone())),
            _ => None,
        })
        .collect()
}

fn receipts_to(effects: &[Effect], to: &Uid) -> Vec<(ReceiptState, Vec<MessageId>)> {
    sends(effects)
        .into_iter()
        .filter_map(|(t, _, c)| match c {
            Plaintext::Receipt { state, ids, .. } if &t == to => Some((state, ids)),
            _ => None,
        })
        .collect()
}

fn with_contact(me: &str, peer: &Uid) -> Core {
    let mut c = core(me);
    c.set_roster(vec![(peer.clone(), None)], vec![]);
    c
}

#[test]
fn an_outgoing_message_moves_forward_only_and_only_its_peer_moves_it() {
    let bob = uid("bob@b.example");
    let mut alice = core("alice@a.example");
    alice.command(
        1000,
        Command::SendText {
            to: Chat::User(bob.clone()),
            body: "hi".into(),
        },
        &mut rng(),
    );
    let effects = alice.take_effects();
    // Writing to a stranger accepts them; the message goes to bob and, as a copy, to alice's
    // other devices.
    assert!(effects.contains(&Effect::AddContact(bob.clone())));
    let s = sends(&effects);
    assert_eq!(s.len(), 2);
    let id = s[0].1;
    assert_eq!(s[0].0, bob);
    assert_eq!(s[1].0, uid("alice@a.example"));
    assert!(matches!(&s[1].2, Plaintext::Copy { to, id: i, .. } if *to == bob && *i == id));
    let state = |c: &Core| c.messages(&Chat::User(bob.clone()))[0].state.clone();
    assert_eq!(state(&alice), MessageState::Sending);
    alice.sent(&[id]);
    assert_eq!(state(&alice), MessageState::Sent);
    // Someone else's receipt for it changes nothing.
    let receipt = |state| Plaintext::Receipt {
        state,
        ids: vec![id],
        ts: 1,
    };
    alice.received(
        2000,
        &uid("eve@e.example"),
        MessageId::from_bytes([9; 16]),
        receipt(ReceiptState::Read),
    );
    assert_eq!(state(&alice), MessageState::Sent);
    alice.received(
        2000,
        &bob,
        MessageId::from_bytes([1; 16]),
        receipt(ReceiptState::Read),
    );
    assert_eq!(state(&alice), MessageState::Read);
    alice.received(
        2000,
        &bob,
        MessageId::from_bytes([2; 16]),
        receipt(ReceiptState::Delivered),
    );
    assert_eq!(state(&alice), MessageState::Read);
}

#[test]
fn incoming_messages_are_receipted_and_read_marks_go_to_the_peer_and_own_devices() {
    let alice = uid("alice@a.example");
    let me = uid("bob@b.example");
    let mut bob = with_contact("bob@b.example", &alice);
    let id = MessageId::from_bytes([1; 16]);
    bob.received(1000, &alice, id, text("hello"));
    assert_eq!(bob.view().conversations[0].unread, 1);
    let effects = bob.take_effects();
    assert_eq!(
        receipts_to(&effects, &alice),
        vec![(ReceiptState::Delivered, vec![id])]
    );
    bob.command(
        2000,
        Command::MarkRead(Chat::User(alice.clone())),
        &mut rng(),
    );
    assert_eq!(bob.view().conversations[0].unread, 0);
    assert_eq!(
        bob.messages(&Chat::User(alice.clone()))[0].state,
        MessageState::Seen
    );
    let effects = bob.take_effects();
    assert_eq!(
        receipts_to(&effects, &alice),
        vec![(ReceiptState::Read, vec![id])]
    );
    assert_eq!(
        receipts_to(&effects, &me),
        vec![(ReceiptState::Read, vec![id])]
    );
    // Receipt ids are fresh.
    let ids: Vec<MessageId> = sends(&effects).iter().map(|s| s.1).collect();
    assert_ne!(ids[0], ids[1]);

    // Read receipts switched off: only the account's own devices hear of it.
    bob.command(3000, Command::SetReadReceipts(false), &mut rng());
    let id2 = MessageId::from_bytes([2; 16]);
    bob.received(4000, &alice, id2, text("again"));
    bob.take_effects();
    bob.command(
        5000,
        Command::MarkRead(Chat::User(alice.clone())),
        &mut rng(),
    );
    let effects = bob.take_effects();
    assert!(receipts_to(&effects, &alice).is_empty());
    assert_eq!(receipts_to(&effects, &me).len(), 1);
}

#[test]
fn nothing_reaches_a_blocked_user_and_nothing_from_them_shows() {
    let alice = uid("alice@a.example");
    let mut bob = with_contact("bob@b.example", &alice);
    bob.received(1000, &alice, MessageId::from_bytes([1; 16]), text("one"));
    bob.command(1500, Command::Block(alice.clone()), &mut rng());
    let effects = bob.take_effects();
    assert!(effects.contains(&Effect::Block(alice.clone())));
    // The delivered receipt that was still pending is not sent to a user blocked meanwhile.
    assert!(receipts_to(&effects, &alice).is_empty());
    bob.received(2000, &alice, MessageId::from_bytes([2; 16]), text("two"));
    bob.signal(2000, &alice, Plaintext::Typing { typing: true });
    assert_eq!(bob.messages(&Chat::User(alice.clone())).len(), 1);
    assert!(!bob.view().conversations[0].typing);
    bob.command(
        3000,
        Command::SetTyping {
            to: Chat::User(alice.clone()),
            typing: true,
        },
        &mut rng(),
    );
    bob.command(
        3000,
        Command::MarkRead(Chat::User(alice.clone())),
        &mut rng(),
    );
    let effects = bob.take_effects();
    assert!(receipts_to(&effects, &alice).is_empty());
    assert!(!effects.iter().any(|e| matches!(e, Effect::Signal { .. })));
}

#[test]
fn a_strangers_message_is_a_request_that_learns_nothing_until_accepted() {
    let carol = uid("carol@c.example");
    let mut bob = core("bob@b.example");
    bob.set_roster(vec![], vec![]);
    bob.received(1000, &carol, MessageId::from_bytes([1; 16]), text("hi bob"));
    assert_eq!(bob.view().requests.len(), 1);
    bob.command(
        1500,
        Command::MarkRead(Chat::User(carol.clone())),
        &mut rng(),
    );
    bob.command(
        1500,
        Command::SetTyping {
            to: Chat::User(carol.clone()),
            typing: true,
        },
        &mut rng(),
    );
    let effects = bob.take_effects();
    assert!(receipts_to(&effects, &carol).is_empty());
    assert!(!effects.iter().any(|e| matches!(e, Effect::Signal { .. })));
    bob.command(2000, Command::AcceptContact(carol.clone()), &mut rng());
    assert!(bob.view().requests.is_empty());
    let effects = bob.take_effects();
    assert!(effects.contains(&Effect::AddContact(carol.clone())));
    // Accepting sends what was held back: delivered, and read (bob had opened it).
    let first = MessageId::from_bytes([1; 16]);
    assert_eq!(
        receipts_to(&effects, &carol),
        vec![
            (ReceiptState::Delivered, vec![first]),
            (ReceiptState::Read, vec![first])
        ]
    );
    bob.received(3000, &carol, MessageId::from_bytes([2; 16]), text("thanks"));
    assert_eq!(receipts_to(&bob.take_effects(), &carol).len(), 1);
}

#[test]
fn typing_shows_for_ten_seconds_and_a_message_ends_it() {
    let alice = uid("alice@a.example");
    let mut bob = with_contact("bob@b.example", &alice);
    bob.received(1000, &alice, MessageId::from_bytes([1; 16]), text("one"));
    bob.signal(2000, &alice, Plaintext::Typing { typing: true });
    assert!(bob.view().conversations[0].typing);
    bob.tick(11_999);
    assert!(bob.view().conversations[0].typing);
    bob.tick(12_000);
    assert!(!bob.view().conversations[0].typing);
    bob.signal(13_000, &alice, Plaintext::Typing { typing: true });
    bob.received(14_000, &alice, MessageId::from_bytes([2; 16]), text("two"));
    assert!(!bob.view().conversations[0].typing);
    bob.signal(15_000, &alice, Plaintext::Typing { typing: true });
    bob.signal(15_500, &alice, Plaintext::Typing { typing: false });
    assert!(!bob.view().conversations[0].typing);
    // A typing notice that came through the queue (as a message) is ignored.
    bob.received(
        16_000,
        &alice,
        MessageId::from_bytes([3; 16]),
        Plaintext::Typing { typing: true },
    );
    assert!(!bob.view().conversations[0].typing);
    assert_eq!(bob.messages(&Chat::User(alice.clone())).len(), 2);
}

#[test]
fn another_device_shows_both_sides_from_copies_and_follows_read_marks() {
    let me = uid("bob@b.example");
    let alice = uid("alice@a.example");
    let mut phone = with_contact("bob@b.example", &alice);
    let mut laptop = with_contact("bob@b.example", &alice);
    let incoming = MessageId::from_bytes([1; 16]);
    phone.received(1000, &alice, incoming, text("from alice"));
    laptop.received(1000, &alice, incoming, text("from alice"));
    phone.command(
        2000,
        Command::SendText {
            to: Chat::User(alice.clone()),
            body: "from bob's phone".into(),
        },
        &mut rng(),
    );
    phone.command(
        2500,
        Command::MarkRead(Chat::User(alice.clone())),
        &mut rng(),
    );
    for (to, id, content) in sends(&phone.take_effects()) {
        if to == me {
            laptop.received(3000, &me, id, content);
        }
    }
    let msgs = laptop.messages(&Chat::User(alice.clone()));
    assert_eq!(msgs.len(), 2);
    assert!(msgs[1].outgoing);
    assert_eq!(msgs[1].body, Body::Text("from bob's phone".into()));
    assert_eq!(msgs[1].state, MessageState::Sent);
    assert_eq!(msgs[0].state, MessageState::Seen);
    assert_eq!(laptop.view().conversations[0].unread, 0);
}

#[test]
fn edits_and_deletions_apply_only_to_the_senders_own_texts() {
    let alice = uid("alice@a.example");
    let mut bob = with_contact("bob@b.example", &alice);
    let theirs = MessageId::from_bytes([1; 16]);
    bob.received(1000, &alice, theirs, text("helo"));
    bob.command(
        1100,
        Command::SendText {
            to: Chat::User(alice.clone()),
            body: "mine".into(),
        },
        &mut rng(),
    );
    let mine = bob.messages(&Chat::User(alice.clone()))[1].id;
    let edit = |of| Plaintext::Edit {
        of,
        body: "hello".into(),
        ts: 2,
    };
    bob.received(2000, &alice, MessageId::from_bytes([2; 16]), edit(theirs));
    // alice cannot rewrite what bob said.
    bob.received(2000, &alice, MessageId::from_bytes([3; 16]), edit(mine));
    bob.received(
        2000,
        &alice,
        MessageId::from_bytes([4; 16]),
        Plaintext::Delete { of: mine, ts: 2 },
    );
    let msgs = bob.messages(&Chat::User(alice.clone()));
    assert_eq!(msgs[0].body, Body::Text("hello".into()));
    assert!(msgs[0].edited);
    assert_eq!(msgs[1].body, Body::Text("mine".into()));
    bob.received(
        3000,
        &alice,
        MessageId::from_bytes([5; 16]),
        Plaintext::Delete { of: theirs, ts: 3 },
    );
    assert_eq!(
        bob.messages(&Chat::User(alice.clone()))[0].body,
        Body::Deleted
    );
}

#[test]
fn unknown_kinds_show_as_unsupported() {
    let alice = uid("alice@a.example");
    let mut bob = with_contact("bob@b.example", &alice);
    bob.received(
        1000,
        &alice,
        MessageId::from_bytes([1; 16]),
        Plaintext::Unsupported {
            kind: "poll".into(),
        },
    );
    assert_eq!(
        bob.messages(&Chat::User(alice.clone()))[0].body,
        Body::Unsupported("poll".into())
    );
    // A sender-chosen kind is kept short (it is drawn and stored).
    bob.received(
        2000,
        &alice,
        MessageId::from_bytes([2; 16]),
        Plaintext::Unsupported {
            kind: "é".repeat(5000),
        },
    );
    assert_eq!(
        bob.messages(&Chat::User(alice.clone()))[1].body,
        Body::Unsupported(format!("{}…", "é".repeat(32)))
    );
}

/// Carries alice's sends to bob into bob's core; `tamper` may change a chunk.
fn deliver(
    from: &Uid,
    effects: Vec<Effect>,
    to: &mut Core,
    tamper: &mut dyn FnMut(u32, &mut Vec<u8>) -> bool,
) {
    let me = to.view().me.clone();
    for (_, id, content) in sends(&effects).into_iter().filter(|(t, _, _)| *t == me) {
        let content = match content {
            Plaintext::FileChunk {
                file,
                index,
                mut data,
            } => {
                if !tamper(index, &mut data) {
                    continue;
                }
                Plaintext::FileChunk { file, index, data }
            }
            other => other,
        };
        to.received(5000, from, id, content);
    }
}

fn file_progress(core: &Core, peer: &Uid) -> FileProgress {
    match &core
        .messages(&Chat::User(peer.clone()))
        .last()
        .unwrap()
        .body
    {
        Body::File { progress, .. } => progress.clone(),
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_file_arrives_checked_and_is_saved_only_when_whole() {
    let alice_uid = uid("alice@a.example");
    let bob_uid = uid("bob@b.example");
    let data: Vec<u8> = (0..1_000_000u32).map(|i| (i * 7 % 253) as u8).collect();

    let mut alice = with_contact("alice@a.example", &bob_uid);
    alice.send_file(
        1000,
        &Chat::User(bob_uid.clone()),
        "photo.jpg",
        &data,
        &mut rng(),
    );
    let effects = alice.take_effects();
    let chunk_ids: Vec<MessageId> = sends(&effects)
        .iter()
        .filter(|s| matches!(s.2, Plaintext::FileChunk { .. }))
        .map(|s| s.1)
        .collect();
    assert_eq!(chunk_ids.len(), 6);
    alice.sent(&chunk_ids[..3]);
    assert_eq!(
        file_progress(&alice, &bob_uid),
        FileProgress::Sending { sent: 3, of: 6 }
    );
    alice.sent(&chunk_ids[3..]);
    assert_eq!(file_progress(&alice, &bob_uid), FileProgress::Sent);

    let mut bob = with_contact("bob@b.example", &alice_uid);
    deliver(&alice_uid, effects.clone(), &mut bob, &mut |_, _| true);
    assert_eq!(file_progress(&bob, &alice_uid), FileProgress::Complete);
    let Body::File { file, .. } = bob.messages(&Chat::User(alice_uid.clone()))[0].body.clone()
    else {
        panic!()
    };
    bob.command(6000, Command::SaveFile(file), &mut rng());
    let saved: Vec<Vec<u8>> = bob
        .take_effects()
        .into_iter()
        .filter_map(|e| match e {
            Effect::SaveFile { data, name, .. } if name == "photo.jpg" => Some(data),
            _ => None,
        })
        .collect();
    assert_eq!(saved, vec![data.clone()]);
    bob.file_saved(&file, "/downloads/photo.jpg".into());
    assert_eq!(
        file_progress(&bob, &alice_uid),
        FileProgress::Saved {
            path: "/downloads/photo.jpg".into()
        }
    );

    // A corrupted chunk: reported, nothing to save.
    let mut carol = with_contact("bob@b.example", &alice_uid);
    deliver(&alice_uid, effects.clone(), &mut carol, &mut |i, d| {
        if i == 2 {
            d[40] ^= 0x80;
        }
        true
    });
    assert!(
        matches!(file_progress(&carol, &alice_uid), FileProgress::Failed(why) if why.contains("chunk 2"))
    );
    carol.command(6000, Command::SaveFile(file), &mut rng());
    let effects_after = carol.take_effects();
    assert!(
        !effects_after
            .iter()
            .any(|e| matches!(e, Effect::SaveFile { .. }))
    );
    assert!(
        carol
            .view()
            .banners
            .iter()
            .any(|b| matches!(b, Banner::Problem(_)))
    );

    // A missing chunk: reported once chunks stop coming.
    let mut dave = with_contact("bob@b.example", &alice_uid);
    deliver(&alice_uid, effects, &mut dave, &mut |i, _| i != 4);
    assert!(matches!(
        file_progress(&dave, &alice_uid),
        FileProgress::Receiving { have: 5, of: 6 }
    ));
    dave.tick(5000 + crate::files::STALL_MILLIS);
    assert!(
        matches!(file_progress(&dave, &alice_uid), FileProgress::Failed(why) if why.contains("chunk 4 is missing"))
    );
}

#[test]
fn a_key_change_warns_until_acknowledged_whatever_the_verified_mark_says() {
    let bob = uid("bob@b.test");
    let mut c = with_contact("alice@a.test", &bob);
    c.command(0, Command::Open(Chat::User(bob.clone())), &mut rng());
    c.set_verified(&bob, true);
    c.key_changed(&bob);
    // The driver re-reads the verified mark (the signing key may be the one verified).
    c.set_verified(&bob, true);
    let conv = |c: &Core| {
        c.view()
            .conversations
            .iter()
            .find(|x| x.chat == Chat::User(bob.clone()))
            .cloned()
    };
    let shown = conv(&c).expect("bob's conversation");
    assert!(shown.key_changed && shown.verified);
    assert!(
        c.view()
            .banners
            .iter()
            .any(|b| matches!(b, Banner::KeyChanged { uid } if *uid == bob))
    );
    c.command(0, Command::MarkVerified(bob.clone()), &mut rng());
    assert!(!conv(&c).expect("bob's conversation").key_changed);
}

/// Group traffic is the session's: it makes no conversation with its sender and is never
/// answered with a receipt (PROTOCOL.md §12.1).
#[test]
fn group_messages_are_no_conversation_and_get_no_receipt() {
    let alice = uid("alice@a.example");
    let mut bob = with_contact("bob@b.example", &alice);
    bob.received(
        1000,
        &alice,
        MessageId::from_bytes([1; 16]),
        Plaintext::Group {
            group: siren_proto::ids::GroupId::from_bytes([2; 16]),
            version: 1,
            msg: Box::new(text("hello group")),
        },
    );
    assert!(bob.messages(&Chat::User(alice.clone())).is_empty());
    assert_eq!(receipts_to(&bob.take_effects(), &alice), vec![]);
}

mod groups {
    use super::*;
    use crate::model::GroupSummary;
    use siren_proto::ids::GroupId;

    const GROUP: GroupId = GroupId::from_bytes([7; 16]);

    fn member_of(me: &str, members: &[&Uid]) -> Core {
        let mut c = core(me);
        c.set_groups(vec![(
            GROUP,
            GroupSummary {
                title: "Lunch".into(),
                members: members.iter().map(|u| (*u).clone()).collect(),
                admins: Vec::new(),
                version: 1,
            },
        )]);
        c
    }

    #[test]
    fn a_group_is_listed_before_its_first_message_and_its_messages_are_never_receipted() {
        let (alice, bob, carol) = (
            uid("alice@a.example"),
            uid("bob@b.example"),
            uid("carol@b.example"),
        );
        let mut bob_core = member_of("bob@b.example", &[&alice, &bob, &carol]);
        let chat = Chat::Group(GROUP);
        let listed = &bob_core.view().conversations;
        assert_eq!(listed.len(), 1);
        assert_eq!(listed[0].chat, chat);
        assert_eq!(listed[0].name.as_deref(), Some("Lunch"));

        let id = MessageId::from_bytes([1; 16]);
        bob_core.group_message(1000, GROUP, &alice, id, text("hi all"));
        let msgs = bob_core.messages(&chat);
        assert_eq!(msgs.len(), 1);
        assert_eq!(
            (msgs[0].peer.clone(), msgs[0].group),
            (alice.clone(), Some(GROUP))
        );
        assert_eq!(msgs[0].state, MessageState::Unread);
        let summary = &bob_core.view().conversations[0];
        assert_eq!(summary.unread, 1);
        assert_eq!(summary.preview.as_deref(), Some("alice: hi all"));
        // Not a contact request, not a 1:1 conversation, no delivered receipt.
        assert!(bob_core.view().requests.is_empty());
        assert_eq!(bob_core.view().conversations.len(), 1);
        let effects = bob_core.take_effects();
        assert!(sends(&effects).is_empty(), "{effects:?}");
        // Reading it tells this account's other devices only.
        bob_core.command(2000, Command::MarkRead(chat.clone()), &mut rng());
        let effects = bob_core.take_effects();
        assert!(receipts_to(&effects, &alice).is_empty());
        assert_eq!(
            receipts_to(&effects, &bob),
            vec![(ReceiptState::Read, vec![id])]
        );
    }

    #[test]
    fn a_fellow_members_contact_request_shows_only_once_they_write_directly() {
        let (alice, bob) = (uid("alice@a.example"), uid("bob@b.example"));
        // The server's request before the group is known, and after.
        let mut b = core("bob@b.example");
        b.contact_request(&alice);
        assert_eq!(b.view().requests.len(), 1);
        b.set_groups(vec![(
            GROUP,
            GroupSummary {
                title: "Lunch".into(),
                members: vec![alice.clone(), bob.clone()],
                admins: vec![alice.clone()],
                version: 1,
            },
        )]);
        assert!(b.view().requests.is_empty());
        b.contact_request(&alice);
        assert!(b.view().requests.is_empty());
        // Writing to bob alone is a contact request like anyone's.
        b.received(1000, &alice, MessageId::from_bytes([1; 16]), text("hi bob"));
        assert_eq!(b.view().requests.len(), 1);
        assert_eq!(b.view().requests[0].from, alice);
    }

    #[test]
    fn sending_to_a_group_is_one_group_send_and_refused_once_removed() {
        let (alice, bob) = (uid("alice@a.example"), uid("bob@b.example"));
        let mut a = member_of("alice@a.example", &[&alice, &bob]);
        let chat = Chat::Group(GROUP);
        let to = chat.clone();
        a.command(
            1000,
            Command::SendText {
                to,
                body: "hello".into(),
            },
            &mut rng(),
        );
        let effects = a.take_effects();
        assert!(
            sends(&effects).is_empty(),
            "no 1:1 send, no copy: {effects:?}"
        );
        let group_sends: Vec<_> = effects
            .iter()
            .filter_map(|e| match e {
                Effect::SendGroup { group, id, content } => Some((*group, *id, content.clone())),
                _ => None,
            })
            .collect();
        assert_eq!(group_sends.len(), 1);
        let (group, id, content) = group_sends[0].clone();
        assert_eq!((group, content), (GROUP, text_at("hello", 1)));
        a.sent(&[id]);
        assert_eq!(a.messages(&chat)[0].state, MessageState::Sent);
        assert!(a.messages(&chat)[0].outgoing);

        // Removed: nothing goes out, and the person is told.
        a.set_groups(vec![(
            GROUP,
            GroupSummary {
                title: "Lunch".into(),
                members: vec![bob.clone()],
                admins: vec![bob.clone()],
                version: 2,
            },
        )]);
        let to = chat.clone();
        a.command(
            3000,
            Command::SendText {
                to,
                body: "still here?".into(),
            },
            &mut rng(),
        );
        let effects = a.take_effects();
        assert!(
            !effects
                .iter()
                .any(|e| matches!(e, Effect::SendGroup { .. })),
            "{effects:?}"
        );
        assert_eq!(a.messages(&chat).len(), 1);
        assert!(
            matches!(a.view().banners.last(), Some(Banner::Problem(p)) if p.contains("no longer a member"))
        );
    }

    fn text_at(body: &str, ts: u64) -> Plaintext {
        Plaintext::Text {
            body: body.into(),
            ts,
        }
    }

    #[test]
    fn only_its_sender_edits_a_group_message_and_a_blocked_member_is_not_shown() {
        let (alice, bob, carol) = (
            uid("alice@a.example"),
            uid("bob@b.example"),
            uid("carol@b.example"),
        );
        let mut b = member_of("bob@b.example", &[&alice, &bob, &carol]);
        let chat = Chat::Group(GROUP);
        let id = MessageId::from_bytes([1; 16]);
        b.group_message(1000, GROUP, &alice, id, text("lunch at noon"));
        let forged = Plaintext::Edit {
            of: id,
            body: "lunch cancelled".into(),
            ts: 2,
        };
        b.group_message(2000, GROUP, &carol, MessageId::from_bytes([2; 16]), forged);
        assert_eq!(
            b.messages(&chat)[0].body,
            Body::Text("lunch at noon".into())
        );
        let edit = Plaintext::Edit {
            of: id,
            body: "lunch at one".into(),
            ts: 3,
        };
        b.group_message(3000, GROUP, &alice, MessageId::from_bytes([3; 16]), edit);
        assert_eq!(b.messages(&chat)[0].body, Body::Text("lunch at one".into()));
        assert!(b.messages(&chat)[0].edited);

        b.set_roster(vec![], vec![carol.clone()]);
        b.group_message(
            4000,
            GROUP,
            &carol,
            MessageId::from_bytes([4; 16]),
            text("hey"),
        );
        assert_eq!(b.messages(&chat).len(), 1);

        // From another device of this account: an outgoing message, already sent.
        b.group_message(
            5000,
            GROUP,
            &bob,
            MessageId::from_bytes([5; 16]),
            text("mine"),
        );
        let last = b.messages(&chat).last().unwrap();
        assert!(last.outgoing);
        assert_eq!(last.state, MessageState::Sent);

        b.group_event(6000, GROUP, &alice, "alice added dave".into());
        let last = b.messages(&chat).last().unwrap().clone();
        assert_eq!(last.body, Body::Event("alice added dave".into()));
        assert!(b.take_effects().contains(&Effect::Store(last)));
    }
}
