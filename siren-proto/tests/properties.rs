//! Property tests over the public API:
//!
//! * every message of every set round-trips through its CBOR encoding;
//! * flipping any byte of a sealed envelope, a signed device record, a revocation, a roster or a
//!   USK transfer (in wire form) makes it fail to decode or fail verification;
//! * decoding arbitrary bytes never panics.
//!
//! (The handshake messages get the exhaustive byte-flip treatment in the crate's unit tests,
//! where the deterministic RNG lets a test replay a handshake.)

use chacha20::ChaCha20Rng;
use proptest::collection::vec;
use proptest::prelude::*;
use rand_core::SeedableRng;
use siren_api::{ServerName, Uid};
use siren_proto::approval::{self, ApprovalTranscript, UskTransfer};
use siren_proto::envelope::{Envelope, Recipient, ReplayWindow, Sender};
use siren_proto::ids::{MessageId, SessionId};
use siren_proto::keys::{DekPublic, DekSecret, Signature, UskSecret};
use siren_proto::message::{
    self, ClientMessage, LinkMessage, NextStep, Notice, Presence, PresenceStatus, QueueItem,
    ServerMessage, Topic, WireMessage,
};
use siren_proto::records::{
    ChainHead, DeviceRecord, DeviceRecordDraft, DeviceRevocation, DirectoryEntry, DirectoryListing,
    UserDirectory,
};
use siren_proto::roster::{Contact, Roster};
use siren_proto::transcript::Digest;

fn rng(seed: u64) -> ChaCha20Rng {
    ChaCha20Rng::seed_from_u64(seed)
}

// ---------------------------------------------------------------------------------------------
// Strategies.

fn server_name() -> impl Strategy<Value = ServerName> {
    "[a-z0-9]([a-z0-9-]{0,6}[a-z0-9])?(\\.[a-z0-9]{1,4}){0,2}"
        .prop_map(|s| ServerName::parse(&s).unwrap())
}

fn uid() -> impl Strategy<Value = Uid> {
    ("[a-z0-9]([a-z0-9._-]{0,8}[a-z0-9])?", server_name())
        .prop_map(|(u, s)| Uid::parse(&format!("{u}@{s}")).unwrap())
}

fn bytes32() -> impl Strategy<Value = [u8; 32]> {
    any::<[u8; 32]>()
}

fn dek() -> impl Strategy<Value = DekPublic> {
    bytes32().prop_map(DekPublic::from_bytes)
}

fn digest() -> impl Strategy<Value = Digest> {
    bytes32().prop_map(Digest::from_bytes)
}

fn sig() -> impl Strategy<Value = Signature> {
    (bytes32(), bytes32()).prop_map(|(a, b)| {
        let mut s = [0u8; 64];
        s[..32].copy_from_slice(&a);
        s[32..].copy_from_slice(&b);
        Signature::from_bytes(s)
    })
}

fn text(max: usize) -> impl Strategy<Value = String> {
    proptest::string::string_regex(&format!("\\PC{{0,{max}}}"))
        .unwrap()
        .prop_filter("within byte limit", move |s| s.len() <= max)
}

fn envelope() -> impl Strategy<Value = Envelope> {
    (
        (any::<[u8; 16]>(), uid(), dek(), uid(), dek()),
        (any::<u64>(), bytes32(), vec(any::<u8>(), 0..300), sig()),
    )
        .prop_map(
            |((id, from, from_dek, to, to_dek), (ctr, eph, ct, sig))| Envelope {
                id: MessageId::from_bytes(id),
                from,
                from_dek,
                to,
                to_dek,
                ctr,
                eph,
                ct,
                sig,
            },
        )
}

fn record() -> impl Strategy<Value = DeviceRecord> {
    (
        any::<u64>(),
        uid(),
        dek(),
        1..1000u64,
        digest(),
        any::<u64>(),
        proptest::option::of(text(64)),
    )
        .prop_map(|(seed, uid, dek, seq, prev, ts, name)| {
            DeviceRecordDraft {
                uid,
                dek,
                seq,
                prev,
                ts,
                name,
            }
            .sign(&UskSecret::generate(&mut rng(seed)))
        })
}

fn revocation() -> impl Strategy<Value = DeviceRevocation> {
    (
        any::<u64>(),
        uid(),
        dek(),
        1..1000u64,
        digest(),
        any::<u64>(),
    )
        .prop_map(|(seed, uid, dek, seq, prev, ts)| {
            DeviceRevocation::sign(
                &UskSecret::generate(&mut rng(seed)),
                uid,
                dek,
                seq,
                prev,
                ts,
            )
        })
}

fn listing() -> impl Strategy<Value = DirectoryListing> {
    (
        uid(),
        vec(record(), 0..3),
        vec(revocation(), 0..3),
        0..100u64,
        digest(),
    )
        .prop_map(|(uid, records, revoked, seq, hash)| DirectoryListing {
            uid,
            records,
            revoked,
            head: ChainHead { seq, hash },
        })
}

fn roster() -> impl Strategy<Value = Roster> {
    (
        any::<u64>(),
        uid(),
        any::<u64>(),
        vec((uid(), proptest::option::of(text(20)), any::<bool>()), 0..4),
        vec(uid(), 0..4),
    )
        .prop_map(|(seed, owner, ts, contacts, blocked)| {
            let mut contacts: Vec<Contact> = contacts
                .into_iter()
                .map(|(uid, name, presence)| Contact {
                    uid,
                    name,
                    presence,
                })
                .collect();
            contacts.sort_by(|a, b| a.uid.cmp(&b.uid));
            contacts.dedup_by(|a, b| a.uid == b.uid);
            let mut blocked = blocked;
            blocked.sort();
            blocked.dedup();
            Roster::sign_next(
                &UskSecret::generate(&mut rng(seed)),
                owner,
                None,
                ts,
                contacts,
                blocked,
            )
        })
}

fn transfer() -> impl Strategy<Value = UskTransfer> {
    (dek(), dek(), bytes32(), vec(any::<u8>(), 48), sig()).prop_map(
        |(from_dek, to_dek, eph, ct, sig)| UskTransfer {
            from_dek,
            to_dek,
            eph,
            ct,
            sig,
        },
    )
}

fn presence() -> impl Strategy<Value = Presence> {
    (
        prop_oneof![
            Just(PresenceStatus::Available),
            Just(PresenceStatus::Away),
            Just(PresenceStatus::Busy),
            Just(PresenceStatus::Offline)
        ],
        proptest::option::of(text(40)),
    )
        .prop_map(|(status, text)| Presence { status, text })
}

fn topic() -> impl Strategy<Value = Topic> {
    uid().prop_map(|uid| Topic::Presence { uid })
}

fn notice() -> impl Strategy<Value = Notice> {
    prop_oneof![
        (uid(), 0..9u64, digest()).prop_map(|(uid, seq, hash)| Notice::DirectoryChanged {
            uid,
            head: ChainHead { seq, hash }
        }),
        (dek(), digest(), proptest::option::of(text(30))).prop_map(|(new_dek, commit, name)| {
            Notice::ApprovalRequest {
                new_dek,
                commit,
                name,
            }
        }),
        (dek(), bytes32())
            .prop_map(|(from_dek, nonce)| Notice::ApprovalChallenge { from_dek, nonce }),
        (dek(), bytes32()).prop_map(|(from_dek, nonce)| Notice::ApprovalReveal { from_dek, nonce }),
        transfer().prop_map(|transfer| Notice::ApprovalGrant { transfer }),
        dek().prop_map(|from_dek| Notice::ApprovalDeny { from_dek }),
        uid().prop_map(|from| Notice::ContactRequest { from }),
    ]
}

fn client_message() -> impl Strategy<Value = ClientMessage> {
    let rid = any::<u32>();
    prop_oneof![
        (rid, "[a-zA-Z0-9-]{1,20}", vec(any::<u8>(), 0..64))
            .prop_map(|(rid, mech, data)| ClientMessage::AuthStart { rid, mech, data }),
        (rid, vec(any::<u8>(), 0..64))
            .prop_map(|(rid, data)| ClientMessage::AuthStep { rid, data }),
        (rid, record()).prop_map(|(rid, record)| ClientMessage::Register { rid, record }),
        (rid, revocation()).prop_map(|(rid, revocation)| ClientMessage::Revoke { rid, revocation }),
        (rid, uid()).prop_map(|(rid, uid)| ClientMessage::Lookup { rid, uid }),
        (rid, vec(envelope(), 0..4)).prop_map(|(rid, msgs)| ClientMessage::Send { rid, msgs }),
        vec(any::<u64>(), 0..10).prop_map(|seqs| ClientMessage::Ack { seqs }),
        (rid, vec(topic(), 0..4))
            .prop_map(|(rid, topics)| ClientMessage::Subscribe { rid, topics }),
        (rid, vec(topic(), 0..4))
            .prop_map(|(rid, topics)| ClientMessage::Unsubscribe { rid, topics }),
        (rid, presence()).prop_map(|(rid, presence)| ClientMessage::Publish { rid, presence }),
        rid.prop_map(|rid| ClientMessage::RosterGet { rid }),
        (rid, roster()).prop_map(|(rid, roster)| ClientMessage::RosterPut { rid, roster }),
        (rid, digest(), proptest::option::of(text(64)))
            .prop_map(|(rid, commit, name)| ClientMessage::ApprovalRequest { rid, commit, name }),
        (rid, dek(), bytes32()).prop_map(|(rid, to, nonce)| ClientMessage::ApprovalChallenge {
            rid,
            to,
            nonce
        }),
        (rid, dek(), bytes32()).prop_map(|(rid, to, nonce)| ClientMessage::ApprovalReveal {
            rid,
            to,
            nonce
        }),
        (rid, transfer())
            .prop_map(|(rid, transfer)| ClientMessage::ApprovalGrant { rid, transfer }),
        (rid, dek()).prop_map(|(rid, to)| ClientMessage::ApprovalDeny { rid, to }),
        rid.prop_map(|rid| ClientMessage::Ping { rid }),
        Just(ClientMessage::Bye),
    ]
}

fn next_step() -> impl Strategy<Value = NextStep> {
    prop_oneof![
        Just(NextStep::Ready),
        Just(NextStep::CreateUser),
        listing().prop_map(|listing| NextStep::AwaitApproval { listing }),
    ]
}

fn server_message() -> impl Strategy<Value = ServerMessage> {
    let rid = any::<u32>();
    prop_oneof![
        (
            any::<[u8; 16]>(),
            any::<bool>(),
            server_name(),
            any::<u32>(),
            proptest::option::of(uid())
        )
            .prop_map(
                |(sid, resumed, server, max_frame, uid)| ServerMessage::Welcome {
                    sid: SessionId::from_bytes(sid),
                    resumed,
                    server,
                    max_frame,
                    uid
                }
            ),
        vec("[A-Z0-9-]{1,20}", 0..4).prop_map(|mechs| ServerMessage::AuthMechanisms { mechs }),
        (rid, vec(any::<u8>(), 0..64))
            .prop_map(|(rid, data)| ServerMessage::AuthChallenge { rid, data }),
        (rid, uid(), next_step()).prop_map(|(rid, uid, next)| ServerMessage::AuthSuccess {
            rid,
            uid,
            next
        }),
        rid.prop_map(|rid| ServerMessage::Ok { rid }),
        (proptest::option::of(rid), any::<u16>(), text(100))
            .prop_map(|(rid, code, msg)| ServerMessage::Error { rid, code, msg }),
        (rid, listing()).prop_map(|(rid, listing)| ServerMessage::Directory { rid, listing }),
        (rid, vec(any::<[u8; 16]>(), 0..4)).prop_map(|(rid, ids)| ServerMessage::SendAck {
            rid,
            ids: ids.into_iter().map(MessageId::from_bytes).collect()
        }),
        (any::<u64>(), envelope()).prop_map(|(seq, env)| ServerMessage::Deliver {
            seq,
            item: QueueItem::Message { env }
        }),
        (any::<u64>(), notice()).prop_map(|(seq, notice)| ServerMessage::Deliver {
            seq,
            item: QueueItem::Notice { notice }
        }),
        Just(ServerMessage::QueueDrained),
        (topic(), uid(), presence()).prop_map(|(topic, from, presence)| ServerMessage::Event {
            topic,
            from,
            presence
        }),
        (rid, proptest::option::of(roster()))
            .prop_map(|(rid, roster)| ServerMessage::Roster { rid, roster }),
        rid.prop_map(|rid| ServerMessage::Pong { rid }),
    ]
}

fn link_message() -> impl Strategy<Value = LinkMessage> {
    let rid = any::<u32>();
    prop_oneof![
        (server_name(), any::<u32>())
            .prop_map(|(server, max_frame)| LinkMessage::LinkReady { server, max_frame }),
        (rid, uid()).prop_map(|(rid, uid)| LinkMessage::Lookup { rid, uid }),
        (rid, listing()).prop_map(|(rid, listing)| LinkMessage::Directory { rid, listing }),
        (rid, vec(envelope(), 0..3)).prop_map(|(rid, msgs)| LinkMessage::Deliver { rid, msgs }),
        (rid, vec(any::<[u8; 16]>(), 0..4)).prop_map(|(rid, ids)| {
            LinkMessage::DeliverAck {
                rid,
                ids: ids.into_iter().map(MessageId::from_bytes).collect(),
            }
        }),
        (rid, uid(), vec(topic(), 0..3)).prop_map(|(rid, from, topics)| LinkMessage::Subscribe {
            rid,
            from,
            topics
        }),
        (rid, uid(), vec(topic(), 0..3)).prop_map(|(rid, from, topics)| LinkMessage::Unsubscribe {
            rid,
            from,
            topics
        }),
        (vec(uid(), 0..3), topic(), uid(), presence()).prop_map(|(to, topic, from, presence)| {
            LinkMessage::Event {
                to,
                topic,
                from,
                presence,
            }
        }),
        rid.prop_map(|rid| LinkMessage::Ok { rid }),
        (proptest::option::of(rid), any::<u16>(), text(100))
            .prop_map(|(rid, code, msg)| LinkMessage::Error { rid, code, msg }),
        rid.prop_map(|rid| LinkMessage::Ping { rid }),
        rid.prop_map(|rid| LinkMessage::Pong { rid }),
    ]
}

fn round_trips<M: WireMessage + PartialEq + std::fmt::Debug>(msg: &M) -> Result<(), TestCaseError> {
    let bytes = message::encode(msg);
    let back: M = message::decode(&bytes)
        .map_err(|e| TestCaseError::fail(format!("{msg:?} did not decode: {e}")))?;
    prop_assert_eq!(&back, msg);
    // One value, one encoding.
    prop_assert_eq!(message::encode(&back), bytes);
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn client_messages_round_trip(msg in client_message()) {
        round_trips(&msg)?;
    }

    #[test]
    fn server_messages_round_trip(msg in server_message()) {
        round_trips(&msg)?;
    }

    #[test]
    fn link_messages_round_trip(msg in link_message()) {
        round_trips(&msg)?;
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in vec(any::<u8>(), 0..512)) {
        let _ = message::decode::<ClientMessage>(&bytes);
        let _ = message::decode::<ServerMessage>(&bytes);
        let _ = message::decode::<LinkMessage>(&bytes);
        let _ = message::decode_value::<Envelope>(&bytes);
        let _ = message::decode_value::<Roster>(&bytes);
    }
}

// ---------------------------------------------------------------------------------------------
// Byte flips on signed objects.

/// Flips bit `bit` of byte `at` (mod length) in the wire form of `value`; the result must fail to
/// decode or fail `check`.
fn flipped_fails<T: serde::Serialize + serde::de::DeserializeOwned>(
    value: &T,
    at: usize,
    bit: u8,
    check: impl Fn(&T) -> bool,
) -> Result<(), TestCaseError> {
    prop_assert!(check(value), "the unaltered value must pass");
    let mut wire = message::encode_value(value);
    let i = at % wire.len();
    wire[i] ^= 1 << (bit % 8);
    if let Ok(decoded) = message::decode_value::<T>(&wire) {
        prop_assert!(
            !check(&decoded),
            "flipping bit {} of byte {} went unnoticed",
            bit % 8,
            i
        );
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2048, ..ProptestConfig::default() })]

    #[test]
    fn flipped_envelope_fails(seed in any::<u64>(), text in vec(any::<u8>(), 0..200), ctr in any::<u64>(), at in any::<usize>(), bit in any::<u8>()) {
        let mut r = rng(seed);
        let (alice, bob) = (Uid::parse("alice@alpha.test").unwrap(), Uid::parse("bob@beta.test").unwrap());
        let usk = UskSecret::generate(&mut r);
        let (a_dek, b_dek) = (DekSecret::generate(&mut r), DekSecret::generate(&mut r));
        let env = Envelope::seal(
            Sender { uid: &alice, usk: &usk, dek: &a_dek.public() },
            &bob, &b_dek.public(), MessageId::random(&mut r), ctr, &text, &mut r,
        ).unwrap();
        let usk_pub = usk.public();
        flipped_fails(&env, at, bit, |e| {
            e.open(Recipient { uid: &bob, dek: &b_dek }, &usk_pub, &mut ReplayWindow::default()).is_ok()
        })?;
    }

    #[test]
    fn flipped_record_fails(r in record(), at in any::<usize>(), bit in any::<u8>()) {
        flipped_fails(&r, at, bit, |r| r.verify().is_ok())?;
        // As a directory entry too (tagged enum form).
        flipped_fails(&DirectoryEntry::Add(r.clone()), at, bit, |e| e.verify().is_ok())?;
    }

    #[test]
    fn flipped_revocation_fails(r in revocation(), at in any::<usize>(), bit in any::<u8>()) {
        flipped_fails(&r, at, bit, |r| r.verify().is_ok())?;
    }

    #[test]
    fn flipped_roster_fails(r in roster(), at in any::<usize>(), bit in any::<u8>()) {
        flipped_fails(&r, at, bit, |r| r.verify().is_ok())?;
    }

    #[test]
    fn flipped_transfer_fails(seed in any::<u64>(), at in any::<usize>(), bit in any::<u8>()) {
        let mut r = rng(seed);
        let alice = Uid::parse("alice@alpha.test").unwrap();
        let usk = UskSecret::generate(&mut r);
        let (old, new) = (DekSecret::generate(&mut r), DekSecret::generate(&mut r));
        let new_nonce = approval::random_nonce(&mut r);
        let t = ApprovalTranscript {
            uid: alice.clone(),
            new_dek: new.public(),
            existing_dek: old.public(),
            commit: approval::commitment(&alice, &new.public(), &new_nonce),
            existing_nonce: approval::random_nonce(&mut r),
            new_nonce,
        };
        let transfer = UskTransfer::seal(&usk, &t, &mut r).unwrap();
        let usk_pub = usk.public();
        flipped_fails(&transfer, at, bit, |x| {
            x.open(&new, &t, &usk_pub, &[old.public()]).is_ok()
        })?;
    }

    #[test]
    fn directory_listing_checks_survive_garbage(l in listing()) {
        // Random listings (foreign keys, unchained) must be refused or accepted without panics.
        let _ = UserDirectory::check_listing(&l.uid.clone(), &l, None);
    }
}
