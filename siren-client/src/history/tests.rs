use std::fs;
use std::os::unix::fs::PermissionsExt as _;

use siren_api::Uid;
use siren_client_core::model::{Body, Chat, ChatMessage, MessageState};
use siren_proto::ids::MessageId;
use siren_proto::keys::SekPublic;

use super::*;
use crate::profile::{Profile, Settings};

const SEED: [u8; 32] = [7; 32];

fn uid(s: &str) -> Uid {
    Uid::parse(s).unwrap()
}

fn id(n: u32) -> MessageId {
    let mut b = [0u8; 16];
    b[..4].copy_from_slice(&n.to_be_bytes());
    MessageId::from_bytes(b)
}

fn text(peer: &Uid, n: u32, at: u64, body: &str) -> ChatMessage {
    ChatMessage {
        id: id(n),
        peer: peer.clone(),
        group: None,
        outgoing: n.is_multiple_of(2),
        ts: at / 1000,
        at,
        body: Body::Text(body.to_owned()),
        state: MessageState::Sent,
        edited: false,
    }
}

fn open(dir: &Path) -> History {
    History::open_in(dir, &SEED).unwrap()
}

#[test]
fn upsert_replaces_in_place_without_reordering() {
    let dir = tempfile::tempdir().unwrap();
    let mut h = open(dir.path());
    let bob = uid("bob@beta.test");
    let m1 = text(&bob, 1, 1_000, "one");
    let m2 = text(&bob, 2, 2_000, "two");
    let m3 = text(&bob, 3, 3_000, "three");
    h.store_all([&m1, &m2, &m3]).unwrap();
    // A later state, handed over with another `at` (another device's clock, a restart): it
    // replaces the record where it was.
    let mut read = m1.clone();
    read.state = MessageState::Read;
    read.at = 9_000;
    read.body = Body::Text("one (edited)".into());
    read.edited = true;
    h.store(&read).unwrap();
    let (page, more) = h.page(&Chat::User(bob.clone()), None, 10).unwrap();
    assert!(!more);
    let ids: Vec<_> = page.iter().map(|m| m.id).collect();
    assert_eq!(ids, vec![id(1), id(2), id(3)]);
    assert_eq!(page[0].state, MessageState::Read);
    assert_eq!(page[0].at, 1_000, "keeps the first recorded time");
    assert!(page[0].edited);
    assert_eq!(h.len().unwrap(), 3);
    let convs = h.conversations().unwrap();
    assert_eq!(convs.len(), 1);
    assert_eq!(convs[0].count, 3, "an update is not a new message");
    assert_eq!(
        h.get(&Chat::User(bob.clone()), &id(1))
            .unwrap()
            .unwrap()
            .state,
        MessageState::Read
    );
    assert!(h.get(&Chat::User(bob.clone()), &id(4)).unwrap().is_none());
}

#[test]
fn pages_walk_back_in_order_across_ties() {
    let dir = tempfile::tempdir().unwrap();
    let mut h = open(dir.path());
    let bob = uid("bob@beta.test");
    let carol = uid("carol@beta.test");
    // Three messages per millisecond: page edges fall inside groups of equal `at`, where the
    // order is the id's.
    let all: Vec<ChatMessage> = (0..120u32)
        .map(|n| text(&bob, 1000 - n, u64::from(n / 3), &format!("m{n}")))
        .collect();
    h.store_all(&all).unwrap();
    h.store(&text(&carol, 5000, 50, "other conversation"))
        .unwrap();
    let mut expected = all.clone();
    expected.sort_by_key(|m| (m.at, m.id));

    let (first, more) = h.page(&Chat::User(bob.clone()), None, 50).unwrap();
    assert!(more);
    assert_eq!(
        first,
        expected[70..].to_vec(),
        "the newest 50, oldest first"
    );
    let (second, more) = h.page(&Chat::User(bob.clone()), first.first(), 50).unwrap();
    assert!(more);
    assert_eq!(second, expected[20..70].to_vec());
    let (third, more) = h
        .page(&Chat::User(bob.clone()), second.first(), 50)
        .unwrap();
    assert!(!more);
    assert_eq!(third, expected[..20].to_vec());
    let (none, more) = h.page(&Chat::User(bob.clone()), third.first(), 50).unwrap();
    assert!(none.is_empty() && !more);
    let (exact, more) = h.page(&Chat::User(bob.clone()), None, 120).unwrap();
    assert!(!more);
    assert_eq!(exact, expected);

    let convs = h.conversations().unwrap();
    let counts: Vec<_> = convs.iter().map(|c| (c.chat.clone(), c.count)).collect();
    assert_eq!(
        counts,
        vec![
            (Chat::User(carol.clone()), 1),
            (Chat::User(bob.clone()), 120)
        ]
    );
    assert_eq!(convs[1].last, expected[119]);
}

#[test]
fn search_needs_every_word_ignoring_case() {
    let dir = tempfile::tempdir().unwrap();
    let mut h = open(dir.path());
    let bob = uid("bob@beta.test");
    let carol = uid("carol@beta.test");
    h.store_all(&[
        text(&bob, 1, 10, "Lunch at NOON tomorrow?"),
        text(&bob, 2, 20, "noon is fine"),
        text(&carol, 3, 30, "lunch? noon works"),
        text(&carol, 4, 40, "dinner instead"),
        text(&bob, 5, 50, "LUNCH moved to one, not noon"),
    ])
    .unwrap();
    let found = |words: &str, peer: Option<&Uid>, limit: usize| -> Vec<MessageId> {
        h.search(words, peer.cloned().map(Chat::User).as_ref(), limit)
            .unwrap()
            .iter()
            .map(|m| m.id)
            .collect()
    };
    assert_eq!(found("lunch noon", None, 10), vec![id(1), id(3), id(5)]);
    assert_eq!(found("Lunch   NOON", Some(&bob), 10), vec![id(1), id(5)]);
    assert_eq!(
        found("lunch noon", None, 2),
        vec![id(3), id(5)],
        "the newest"
    );
    assert!(found("breakfast", None, 10).is_empty());
    assert!(found("dinner", Some(&bob), 10).is_empty());
    assert!(matches!(
        h.search("  ", None, 10),
        Err(HistoryError::NoWords)
    ));
}

#[test]
fn wrong_key_fails_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let bob = uid("bob@beta.test");
    {
        let mut h = open(dir.path());
        h.store(&text(&bob, 1, 10, "secret")).unwrap();
    }
    let err = History::open_in(dir.path(), &[8; 32]).err().unwrap();
    assert!(matches!(err, HistoryError::WrongKey), "{err}");
    assert!(err.to_string().contains("another key"), "{err}");
    // The right key still opens it.
    assert_eq!(
        open(dir.path())
            .page(&Chat::User(bob.clone()), None, 5)
            .unwrap()
            .0
            .len(),
        1
    );
}

#[test]
fn damaged_or_moved_records_are_named_not_panics() {
    let dir = tempfile::tempdir().unwrap();
    let bob = uid("bob@beta.test");
    let carol = uid("carol@beta.test");
    let mut h = open(dir.path());
    h.store(&text(&bob, 1, 10, "to bob")).unwrap();
    h.store(&text(&carol, 2, 10, "to carol")).unwrap();
    let bob_key = h.message_key(&h.keys.peer_tag(&bob), 10, &h.keys.id_tag(&id(1)));
    let carol_key = h.message_key(&h.keys.peer_tag(&carol), 10, &h.keys.id_tag(&id(2)));

    // A record sealed for carol's conversation, moved under bob's key.
    let txn = h.db.begin_write().unwrap();
    {
        let mut t = txn.open_table(MESSAGES).unwrap();
        let moved = t
            .get(carol_key.as_slice())
            .unwrap()
            .unwrap()
            .value()
            .to_vec();
        t.insert(bob_key.as_slice(), moved.as_slice()).unwrap();
    }
    txn.commit().unwrap();
    let err = h.page(&Chat::User(bob.clone()), None, 5).err().unwrap();
    let shown = err.to_string();
    assert!(
        shown.contains(&format!("messages/{}", hex(&bob_key))),
        "{shown}"
    );
    assert!(shown.contains("another message's key"), "{shown}");

    // Garbage, and a truncated value.
    for bad in [&b"not sealed at all, just some bytes"[..], &[1, 2, 3][..]] {
        let txn = h.db.begin_write().unwrap();
        {
            let mut t = txn.open_table(MESSAGES).unwrap();
            t.insert(bob_key.as_slice(), bad).unwrap();
        }
        txn.commit().unwrap();
        let err = h.search("bob", None, 5).err().unwrap();
        assert!(
            matches!(&err, HistoryError::Damaged { record, .. } if record.contains(&hex(&bob_key))),
            "{err}"
        );
        assert!(err.to_string().contains("does not open"), "{err}");
    }
}

fn profile(dir: &Path) -> Profile {
    Profile::create(
        dir,
        Settings {
            uid: uid("alice@alpha.test"),
            server: "127.0.0.1:7453".into(),
            fallback: Vec::new(),
            server_key: SekPublic::from_bytes([9; 32]).to_base64(),
        },
        None,
    )
    .unwrap()
}

#[test]
fn at_rest_the_file_is_private_and_sealed() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("p");
    let profile = profile(&path);
    let mut h = History::open(&profile).unwrap();
    let peer = uid("zebulon-the-peer@gamma.test");
    h.store(&text(&peer, 1, 10, "the marker word xylophonic"))
        .unwrap();
    // An id of distinctive bytes (the small test ids are mostly zeros, found in any file).
    let sent_id = MessageId::from_bytes(*b"\xa7id-in-the-file\xa7");
    let me = uid("alice@alpha.test");
    h.record_sent(
        &me,
        &Chat::User(peer.clone()),
        sent_id,
        "another xylophonic line",
        20,
    )
    .unwrap();
    drop(h);
    let file = path.join(FILE_NAME);
    assert_eq!(
        fs::metadata(&file).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let raw = fs::read(&file).unwrap();
    for needle in [&b"xylophonic"[..], b"zebulon", sent_id.as_bytes()] {
        assert!(
            !raw.windows(needle.len()).any(|w| w == needle),
            "{:?} is in the file in clear",
            String::from_utf8_lossy(needle)
        );
    }
    // Reopened from the profile (same seed in the keys file): everything is there.
    let h = History::open(&profile).unwrap();
    assert_eq!(
        h.search("XYLOPHONIC", Some(&Chat::User(peer.clone())), 10)
            .unwrap()
            .len(),
        2
    );

    // Another seed in the keys file (a replaced keys file): a clear error, no panic.
    let mut secrets = profile.secrets().unwrap();
    secrets.history = Some([1; 32]);
    profile.save_secrets(&secrets).unwrap();
    drop(h);
    let err = History::open(&profile).err().unwrap();
    assert!(format!("{err:#}").contains("another key"), "{err:#}");
}

#[test]
fn older_profiles_get_a_seed_on_first_use() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("p");
    let profile = profile(&path);
    let mut secrets = profile.secrets().unwrap();
    assert!(secrets.history.is_some(), "new profiles have one");
    secrets.history = None;
    profile.save_secrets(&secrets).unwrap();
    let h = History::open(&profile).unwrap();
    drop(h);
    let seed = profile.secrets().unwrap().history;
    assert!(seed.is_some(), "saved");
    History::open(&profile).unwrap();
    assert_eq!(profile.secrets().unwrap().history, seed, "and kept");
}

/// A conversation record written before groups (`{peer, count}`) still reads as the
/// conversation with that user; a group's names the group.
#[test]
fn conversation_records_from_before_groups_read_on() {
    #[derive(serde::Serialize)]
    struct Before {
        peer: Uid,
        count: u64,
    }
    let bob = uid("bob@beta.test");
    let old = message::encode_value(&Before {
        peer: bob.clone(),
        count: 3,
    });
    let entry: PeerEntry = message::decode_value(&old).unwrap();
    assert_eq!((entry.chat(), entry.count), (Some(Chat::User(bob)), 3));
    let group = siren_proto::ids::GroupId::from_bytes([5; 16]);
    let new = message::encode_value(&PeerEntry {
        peer: None,
        group: Some(group),
        count: 1,
    });
    let entry: PeerEntry = message::decode_value(&new).unwrap();
    assert_eq!(entry.chat(), Some(Chat::Group(group)));
}
