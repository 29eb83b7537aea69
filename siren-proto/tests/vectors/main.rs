//! Siren's protocol test vectors (`siren-proto/vectors/siren-v1.json`), documented in
//! PROTOCOL.md §"Test vectors".
//!
//! Every value in the file comes from inputs listed in the file: the secret keys, every random
//! draw (ephemeral keys, challenges, nonces), every timestamp, name and field, so another
//! implementation can feed the same inputs and compare bytes. The `negative` section lists
//! inputs every implementation must refuse, with where and how.
//!
//! * `cargo test -p siren-proto --test vectors` regenerates the vectors in memory, compares them
//!   with the file, checks the file's values independently (opening, verifying, hashing), checks
//!   the handshake, the transport and an envelope again with PROTOCOL.md's formulas written from
//!   the text alone (`spec.rs`), and checks every negative vector against the code;
//! * `UPDATE_VECTORS=1 cargo test -p siren-proto --test vectors` rewrites the file after a
//!   deliberate protocol change (which also needs a new version or label).

mod negative;
mod spec;

use std::collections::VecDeque;
use std::path::PathBuf;

use rand_core::{TryCryptoRng, TryRng};
use serde_json::{Value, json};
use siren_api::{ServerName, Uid};
use siren_proto::approval::{self, ApprovalTranscript, UskTransfer};
use siren_proto::envelope::{Envelope, Recipient, ReplayWindow, Sender};
use siren_proto::frame;
use siren_proto::group::{GroupState, Membership};
use siren_proto::handshake::{self, Initiator, ResponderKeys, Role, SessionRequest};
use siren_proto::ids::{GroupId, MessageId, SessionId};
use siren_proto::keys::{DekPublic, DekSecret, SekPublic, SekSecret, UskPublic, UskSecret};
use siren_proto::message::{self, ClientMessage, LinkMessage, ServerMessage};
use siren_proto::plaintext::Plaintext;
use siren_proto::records::{DeviceRecordDraft, DeviceRevocation, DirectoryEntry, UserDirectory};
use siren_proto::roster::{Contact, Roster};
use siren_proto::transcript::Digest;

/// An RNG that hands out exactly the listed values, in order, and fails the test if asked for
/// anything else: the vectors list every random draw.
struct Scripted(VecDeque<Vec<u8>>);

impl Scripted {
    fn new(draws: &[&[u8]]) -> Self {
        Scripted(draws.iter().map(|d| d.to_vec()).collect())
    }
    fn done(&self) {
        assert!(self.0.is_empty(), "unused scripted draws: {}", self.0.len());
    }
}

impl TryRng for Scripted {
    type Error = core::convert::Infallible;
    fn try_next_u32(&mut self) -> Result<u32, Self::Error> {
        panic!("vectors draw only byte strings")
    }
    fn try_next_u64(&mut self) -> Result<u64, Self::Error> {
        panic!("vectors draw only byte strings")
    }
    fn try_fill_bytes(&mut self, dst: &mut [u8]) -> Result<(), Self::Error> {
        let next = self
            .0
            .pop_front()
            .expect("the vectors list every random draw");
        assert_eq!(next.len(), dst.len(), "scripted draw has the wrong length");
        dst.copy_from_slice(&next);
        Ok(())
    }
}
impl TryCryptoRng for Scripted {}

/// Fixed "random" inputs: byte `b` repeated, so they are easy to recognise in the file.
fn fixed<const N: usize>(b: u8) -> [u8; N] {
    [b; N]
}

fn hex(bytes: impl AsRef<[u8]>) -> Value {
    Value::String(hex::encode(bytes))
}

fn uid(s: &str) -> Uid {
    Uid::parse(s).unwrap()
}

const TS: u64 = 1_767_225_600; // 2026-01-01T00:00:00Z

fn generate() -> Value {
    let sek = SekSecret::from_bytes(fixed(0x01));
    let dek = DekSecret::from_bytes(fixed(0x02));
    let usk = UskSecret::from_bytes(&fixed(0x03));
    let bob_dek = DekSecret::from_bytes(fixed(0x05));
    let alpha = ServerName::parse("alpha.test").unwrap();
    let alice = uid("alice@alpha.test");
    let bob = uid("bob@beta.test");

    let keys = json!({
        "sek_secret": hex(*sek.to_bytes()),
        "sek_public": hex(sek.public().as_bytes()),
        "sek_public_base64": sek.public().to_base64(),
        "sek_key_id": hex(sek.public().key_id()),
        "dek_secret": hex(*dek.to_bytes()),
        "dek_public": hex(dek.public().as_bytes()),
        "usk_seed": hex(*usk.to_bytes()),
        "usk_public": hex(usk.public().as_bytes()),
        "usk_public_base64": usk.public().to_base64(),
        "bob_dek_secret": hex(*bob_dek.to_bytes()),
        "bob_dek_public": hex(bob_dek.public().as_bytes()),
    });

    // Client → server handshake, resuming a session, then one transport frame each way.
    let server = ResponderKeys {
        name: alpha.clone(),
        current: SekSecret::from_bytes(fixed(0x01)),
        retired: vec![],
    };
    let (i_eph, r_eph, challenge) = (fixed::<32>(0x11), fixed::<32>(0x12), fixed::<32>(0x13));
    let sid = SessionId::from_bytes(fixed(0x14));
    let mut irng = Scripted::new(&[&i_eph]);
    let (init, hello) = Initiator::client(
        &alpha,
        &sek.public(),
        &dek,
        SessionRequest::Resume(sid),
        &mut irng,
    )
    .unwrap();
    irng.done();
    let mut rrng = Scripted::new(&[&r_eph, &challenge]);
    let received = handshake::read_hello(&server, Role::ClientToServer, &hello).unwrap();
    let (waiting, reply) = received.reply(&mut rrng).unwrap();
    rrng.done();
    let (mut client, finish) = init.read_reply(&reply).unwrap();
    let mut srv = waiting.read_finish(&finish).unwrap();
    assert_eq!(srv.request, SessionRequest::Resume(sid));
    let welcome = message::encode(&ServerMessage::Welcome {
        sid,
        resumed: true,
        server: alpha.clone(),
        max_frame: frame::DEFAULT_MAX_FRAME as u32,
        uid: Some(alice.clone()),
    });
    let welcome_frame = frame::encode(&srv.transport.seal(&welcome).unwrap(), 1 << 20).unwrap();
    let ping = message::encode(&ClientMessage::Ping { rid: 1 });
    let ping_frame = frame::encode(&client.transport.seal(&ping).unwrap(), 1 << 20).unwrap();
    let handshake_c2s = json!({
        "version": 1,
        "role": "c2s",
        "server_name": "alpha.test",
        "initiator_static_secret (dek)": hex(*dek.to_bytes()),
        "responder_static_secret (sek)": hex(*sek.to_bytes()),
        "initiator_ephemeral_secret": hex(i_eph),
        "responder_ephemeral_secret": hex(r_eph),
        "challenge": hex(challenge),
        "resume_session_id": hex(sid.as_bytes()),
        "hello": hex(&hello),
        "hello_reply": hex(&reply),
        "finish": hex(&finish),
        "handshake_hash": hex(client.handshake_hash.as_bytes()),
        "server_first_message": {
            "t": "welcome",
            "sid": hex(sid.as_bytes()),
            "resumed": true,
            "server": "alpha.test",
            "max_frame": frame::DEFAULT_MAX_FRAME,
            "uid": "alice@alpha.test",
        },
        "server_first_plaintext (welcome)": hex(&welcome),
        "server_first_frame": hex(&welcome_frame),
        "client_first_message": { "t": "ping", "rid": 1 },
        "client_first_plaintext (ping)": hex(&ping),
        "client_first_frame": hex(&ping_frame),
    });

    // Server → server link handshake: beta.test opens a link to alpha.test.
    let beta_sek = SekSecret::from_bytes(fixed(0x21));
    let (li_eph, lr_eph, lchallenge) = (fixed::<32>(0x22), fixed::<32>(0x23), fixed::<32>(0x24));
    let mut irng = Scripted::new(&[&li_eph]);
    let beta = ServerName::parse("beta.test").unwrap();
    let (linit, lhello) =
        Initiator::server(&beta, &beta_sek, &alpha, &sek.public(), &mut irng).unwrap();
    let mut rrng = Scripted::new(&[&lr_eph, &lchallenge]);
    let (lwaiting, lreply) = handshake::read_hello(&server, Role::ServerToServer, &lhello)
        .unwrap()
        .reply(&mut rrng)
        .unwrap();
    let (ldone, lfinish) = linit.read_reply(&lreply).unwrap();
    lwaiting.read_finish(&lfinish).unwrap();
    let handshake_s2s = json!({
        "version": 1,
        "role": "s2s",
        "initiator_name (payload1.from)": "beta.test",
        "responder_name": "alpha.test",
        "initiator_static_secret (beta sek)": hex(*beta_sek.to_bytes()),
        "responder_static_secret (alpha sek)": hex(*sek.to_bytes()),
        "initiator_ephemeral_secret": hex(li_eph),
        "responder_ephemeral_secret": hex(lr_eph),
        "challenge": hex(lchallenge),
        "hello": hex(&lhello),
        "hello_reply": hex(&lreply),
        "finish": hex(&lfinish),
        "handshake_hash": hex(ldone.handshake_hash.as_bytes()),
    });

    // SEK rotation: alpha.test retired the SEK the device pinned (0x01) for a new one (0x15);
    // the device's hello names the retired key, the reply proves the new one (§7.6).
    let new_sek = SekSecret::from_bytes(fixed(0x15));
    let rotated = ResponderKeys {
        name: alpha.clone(),
        current: SekSecret::from_bytes(fixed(0x15)),
        retired: vec![SekSecret::from_bytes(fixed(0x01))],
    };
    let (ri_eph, rr_eph, rchallenge) = (fixed::<32>(0x16), fixed::<32>(0x17), fixed::<32>(0x18));
    let mut irng = Scripted::new(&[&ri_eph]);
    let (rinit, rhello) =
        Initiator::client(&alpha, &sek.public(), &dek, SessionRequest::Open, &mut irng).unwrap();
    let mut rrng = Scripted::new(&[&rr_eph, &rchallenge]);
    let (rwaiting, rreply) = handshake::read_hello(&rotated, Role::ClientToServer, &rhello)
        .unwrap()
        .reply(&mut rrng)
        .unwrap();
    rrng.done();
    let (rdone, rfinish) = rinit.read_reply(&rreply).unwrap();
    assert_eq!(rdone.rotated_sek, Some(new_sek.public()));
    rwaiting.read_finish(&rfinish).unwrap();
    // The proof and payload2 are inside the ciphertext: PROTOCOL.md's formulas recompute them.
    let spec_reply = spec::respond(
        &rhello,
        "alpha.test",
        fixed(0x01),
        rr_eph,
        rchallenge,
        |h0| {
            Some((
                *new_sek.public().as_bytes(),
                spec::rotation_proof(h0, fixed(0x15), spec::public(ri_eph)),
            ))
        },
    );
    assert_eq!(
        spec_reply.hello_reply, rreply,
        "§7.4 and §7.6 give the same bytes"
    );
    let proof = spec::rotation_proof(&spec_reply.h0, fixed(0x15), spec::public(ri_eph));
    let handshake_rotation = json!({
        "version": 1,
        "role": "c2s",
        "server_name": "alpha.test",
        "initiator_static_secret (dek)": hex(*dek.to_bytes()),
        "pinned_sek_secret (retired)": hex(*sek.to_bytes()),
        "pinned_sek_key_id (hello.kid)": hex(sek.public().key_id()),
        "new_sek_secret (current)": hex(*new_sek.to_bytes()),
        "new_sek_public": hex(new_sek.public().as_bytes()),
        "new_sek_key_id": hex(new_sek.public().key_id()),
        "initiator_ephemeral_secret": hex(ri_eph),
        "responder_ephemeral_secret": hex(rr_eph),
        "challenge": hex(rchallenge),
        "hello": hex(&rhello),
        "h0": hex(spec_reply.h0),
        "rotation_proof": hex(proof),
        "payload2": hex(&spec_reply.payload2),
        "hello_reply": hex(&rreply),
        "finish": hex(&rfinish),
        "handshake_hash": hex(rdone.handshake_hash.as_bytes()),
    });

    // An envelope from alice's device to bob's device.
    let env_eph = fixed::<32>(0x31);
    let msg_id = MessageId::from_bytes(fixed(0x32));
    let plaintext = Plaintext::Text {
        body: "hello bob".into(),
        ts: TS,
    }
    .encode();
    let mut erng = Scripted::new(&[&env_eph]);
    let env = Envelope::seal(
        Sender {
            uid: &alice,
            usk: &usk,
            dek: &dek.public(),
        },
        &bob,
        &bob_dek.public(),
        msg_id,
        7,
        &plaintext,
        &mut erng,
    )
    .unwrap();
    erng.done();
    let env_dh = spec::x25519(env_eph, *bob_dek.public().as_bytes());
    let env_okm = spec::envelope_key(
        "siren/v1/message-key",
        &env_dh,
        &env.eph,
        bob_dek.public().as_bytes(),
    );
    let envelope = json!({
        "from": "alice@alpha.test",
        "sender_usk_seed": hex(*usk.to_bytes()),
        "sender_dek_public": hex(dek.public().as_bytes()),
        "to": "bob@beta.test",
        "recipient_dek_secret": hex(*bob_dek.to_bytes()),
        "recipient_dek_public": hex(bob_dek.public().as_bytes()),
        "message_id": hex(msg_id.as_bytes()),
        "counter": 7,
        "ephemeral_secret": hex(env_eph),
        "plaintext_fields": { "type": "text", "body": "hello bob", "ts": TS },
        "plaintext": hex(&plaintext),
        "ephemeral_public": hex(env.eph),
        "shared_secret": hex(env_dh),
        "key": hex(&env_okm[..32]),
        "nonce": hex(&env_okm[32..]),
        "ct": hex(&env.ct),
        "signed_bytes": hex(env.signed_bytes()),
        "sig": hex(env.sig.as_bytes()),
        "cbor": hex(message::encode_value(&env)),
    });

    // The same envelope as an ephemeral signal (§14): the device's request, the server's hand-over
    // to the recipient's session, and a link `signal` (§17).
    let signal = json!({
        "envelope": "envelope.cbor",
        "request_rid": 7,
        "request_cbor": hex(message::encode(&ClientMessage::Signal {
            rid: 7,
            msgs: vec![env.clone()],
        })),
        "delivery_cbor": hex(message::encode(&ServerMessage::Signal { env: env.clone() })),
        "link_cbor": hex(message::encode(&LinkMessage::Signal {
            msgs: vec![env.clone()],
        })),
    });

    // Directory: alice's first device record, a second, and the revocation of the first.
    let rec1 = DeviceRecordDraft {
        uid: alice.clone(),
        dek: dek.public(),
        seq: 1,
        prev: Digest::ZERO,
        ts: TS,
        name: Some("laptop".into()),
    }
    .sign(&usk);
    let mut dir = UserDirectory::genesis(rec1.clone()).unwrap();
    let h1 = dir.head().hash;
    let rec2 = DeviceRecordDraft {
        uid: alice.clone(),
        dek: bob_dek.public(), // any key will do as alice's second device here
        seq: 2,
        prev: h1,
        ts: TS + 60,
        name: None,
    }
    .sign(&usk);
    dir.apply(DirectoryEntry::Add(rec2.clone())).unwrap();
    let h2 = dir.head().hash;
    let rev = DeviceRevocation::sign(&usk, alice.clone(), dek.public(), 3, h2, TS + 120);
    dir.apply(DirectoryEntry::Revoke(rev.clone())).unwrap();
    let directory = json!({
        "uid": "alice@alpha.test",
        "usk_seed": hex(*usk.to_bytes()),
        "record_1": {
            "inputs": {
                "dek": hex(dek.public().as_bytes()),
                "seq": 1,
                "prev": hex(Digest::ZERO.as_bytes()),
                "ts": TS,
                "name": "laptop",
            },
            "signed_bytes": hex(rec1.signed_bytes()),
            "sig": hex(rec1.sig.as_bytes()),
            "cbor": hex(message::encode_value(&rec1)),
            "entry_hash": hex(DirectoryEntry::Add(rec1.clone()).hash().as_bytes()),
        },
        "record_2": {
            "inputs": {
                "dek (keys.bob_dek_public)": hex(bob_dek.public().as_bytes()),
                "seq": 2,
                "prev (record_1.entry_hash)": hex(h1.as_bytes()),
                "ts": TS + 60,
                "name": null,
            },
            "signed_bytes": hex(rec2.signed_bytes()),
            "sig": hex(rec2.sig.as_bytes()),
            "cbor": hex(message::encode_value(&rec2)),
            "entry_hash": hex(DirectoryEntry::Add(rec2.clone()).hash().as_bytes()),
        },
        "revocation_3": {
            "inputs": {
                "dek (record_1's)": hex(dek.public().as_bytes()),
                "seq": 3,
                "prev (record_2.entry_hash)": hex(h2.as_bytes()),
                "ts": TS + 120,
            },
            "signed_bytes": hex(rev.signed_bytes()),
            "sig": hex(rev.sig.as_bytes()),
            "cbor": hex(message::encode_value(&rev)),
            "entry_hash": hex(DirectoryEntry::Revoke(rev.clone()).hash().as_bytes()),
        },
        "listing_cbor": hex(message::encode_value(&dir.listing())),
    });

    // Roster versions 1 and 2.
    let v1 = Roster::sign_next(&usk, alice.clone(), None, TS, vec![], vec![]);
    let v2 = Roster::sign_next(
        &usk,
        alice.clone(),
        Some(&v1),
        TS + 1,
        vec![Contact {
            uid: bob.clone(),
            name: Some("Bob".into()),
            presence: true,
        }],
        vec![uid("mallory@gamma.test")],
    );
    let roster = json!({
        "uid": "alice@alpha.test",
        "usk_seed": hex(*usk.to_bytes()),
        "v1": {
            "inputs": {
                "version": 1,
                "prev": hex(Digest::ZERO.as_bytes()),
                "ts": TS,
                "contacts": [],
                "blocked": [],
            },
            "signed_bytes": hex(v1.signed_bytes()),
            "sig": hex(v1.sig.as_bytes()),
            "cbor": hex(message::encode_value(&v1)),
            "hash": hex(v1.hash().as_bytes()),
        },
        "v2": {
            "inputs": {
                "version": 2,
                "prev (v1.hash)": hex(v1.hash().as_bytes()),
                "ts": TS + 1,
                "contacts": [{ "uid": "bob@beta.test", "name": "Bob", "presence": true }],
                "blocked": ["mallory@gamma.test"],
            },
            "signed_bytes": hex(v2.signed_bytes()),
            "sig": hex(v2.sig.as_bytes()),
            "cbor": hex(message::encode_value(&v2)),
            "hash": hex(v2.hash().as_bytes()),
        },
    });

    // Device approval: alice's existing device `dek` approves a new device.
    let new_dek = DekSecret::from_bytes(fixed(0x41));
    let (n_new, n_existing, t_eph) = (fixed::<32>(0x42), fixed::<32>(0x43), fixed::<32>(0x44));
    let commit = approval::commitment(&alice, &new_dek.public(), &n_new);
    let transcript = ApprovalTranscript {
        uid: alice.clone(),
        new_dek: new_dek.public(),
        existing_dek: dek.public(),
        commit,
        existing_nonce: n_existing,
        new_nonce: n_new,
    };
    let mut trng = Scripted::new(&[&t_eph]);
    let transfer = UskTransfer::seal(&usk, &transcript, &mut trng).unwrap();
    trng.done();
    let approval = json!({
        "uid": "alice@alpha.test",
        "usk_seed": hex(*usk.to_bytes()),
        "existing_dek_secret (keys.dek_secret)": hex(*dek.to_bytes()),
        "existing_dek_public": hex(dek.public().as_bytes()),
        "new_dek_secret": hex(*new_dek.to_bytes()),
        "new_dek_public": hex(new_dek.public().as_bytes()),
        "new_nonce": hex(n_new),
        "existing_nonce": hex(n_existing),
        "commit": hex(commit.as_bytes()),
        "transcript_hash": hex(transcript.hash().as_bytes()),
        "short_code": transcript.short_code().to_string(),
        "transfer_ephemeral_secret": hex(t_eph),
        "transfer_signed_bytes": hex(transfer.signed_bytes(&transcript)),
        "transfer_cbor": hex(message::encode_value(&transfer)),
    });

    // A group: alice creates it with bob (version 1), then adds carol and makes bob an admin
    // (version 2); a text to the group under version 2.
    let group = group_versions(&usk, &alice);
    let group_json = |g: &GroupState, prev_name: &str| {
        json!({
            "inputs": {
                "group": hex(g.group.as_bytes()),
                "version": g.version,
                prev_name: hex(g.prev.as_bytes()),
                "by": g.by.to_string(),
                "ts": g.ts,
                "title": g.title,
                "members": g.members.iter().map(ToString::to_string).collect::<Vec<_>>(),
                "admins": g.admins.iter().map(ToString::to_string).collect::<Vec<_>>(),
            },
            "signed_bytes": hex(g.signed_bytes()),
            "sig": hex(g.sig.as_bytes()),
            "cbor": hex(message::encode_value(g)),
            "hash": hex(g.hash().as_bytes()),
        })
    };
    let group_message = Plaintext::Group {
        group: group[1].group,
        version: 2,
        msg: Box::new(Plaintext::Text {
            body: "lunch at noon?".into(),
            ts: TS + 3,
        }),
    };
    let group = json!({
        "usk_seed (alice's, keys.usk_seed)": hex(*usk.to_bytes()),
        "v1": group_json(&group[0], "prev"),
        "v2": group_json(&group[1], "prev (v1.hash)"),
        "message": {
            "inputs": { "group": hex(group[1].group.as_bytes()), "version": 2, "body": "lunch at noon?", "ts": TS + 3 },
            "cbor": hex(group_message.encode()),
        },
    });

    let mut all = json!({
        "about": "Siren protocol v1 test vectors. Byte strings are hex. See PROTOCOL.md, section Test vectors.",
        "keys": keys,
        "handshake_c2s": handshake_c2s,
        "handshake_s2s": handshake_s2s,
        "handshake_rotation": handshake_rotation,
        "envelope": envelope,
        "signal": signal,
        "directory": directory,
        "roster": roster,
        "group": group,
        "approval": approval,
    });
    all["negative"] = negative::generate(&all);
    all
}

/// The group of the vectors: version 1 by alice (alice and bob, alice admin), version 2 by
/// alice (carol added, bob made admin).
fn group_versions(usk: &UskSecret, alice: &Uid) -> [GroupState; 2] {
    let (bob, carol) = (uid("bob@beta.test"), uid("carol@alpha.test"));
    let v1 = GroupState::create(
        usk,
        alice.clone(),
        GroupId::from_bytes(fixed(0x51)),
        TS + 1,
        Membership {
            title: "Lunch".into(),
            members: vec![alice.clone(), bob.clone()],
            admins: vec![alice.clone()],
        },
    )
    .unwrap();
    let v2 = v1
        .next(
            usk,
            alice.clone(),
            TS + 2,
            Membership {
                title: "Lunch".into(),
                members: vec![alice.clone(), bob.clone(), carol],
                admins: vec![alice.clone(), bob],
            },
        )
        .unwrap();
    [v1, v2]
}

fn path() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("vectors/siren-v1.json")
}

fn file() -> Value {
    serde_json::from_str(&std::fs::read_to_string(path()).unwrap()).unwrap()
}

fn unhex(v: &Value) -> Vec<u8> {
    hex::decode(v.as_str().expect("hex string")).expect("valid hex")
}

fn arr<const N: usize>(v: &Value) -> [u8; N] {
    unhex(v).try_into().expect("right length")
}

#[test]
fn vectors_file_matches_the_code() {
    let generated = serde_json::to_string_pretty(&generate()).unwrap() + "\n";
    if std::env::var_os("UPDATE_VECTORS").is_some() {
        std::fs::create_dir_all(path().parent().unwrap()).unwrap();
        std::fs::write(path(), &generated).unwrap();
    }
    let on_disk =
        std::fs::read_to_string(path()).expect("vectors file exists (UPDATE_VECTORS=1 creates it)");
    assert!(
        on_disk == generated,
        "siren-v1.json differs from what the code produces; a protocol change needs a new \
         version (then regenerate with UPDATE_VECTORS=1)"
    );
}

/// Checks the file's values with the receiving side's code paths: the file, not the
/// generator, is the reference here.
#[test]
fn vectors_file_verifies() {
    let v = file();

    // The handshake replays from the listed inputs to the listed bytes.
    let h = &v["handshake_c2s"];
    let server = ResponderKeys {
        name: ServerName::parse(h["server_name"].as_str().unwrap()).unwrap(),
        current: SekSecret::from_bytes(arr(&h["responder_static_secret (sek)"])),
        retired: vec![],
    };
    let dek = DekSecret::from_bytes(arr(&h["initiator_static_secret (dek)"]));
    let hello = unhex(&h["hello"]);
    let received = handshake::read_hello(&server, Role::ClientToServer, &hello).unwrap();
    assert_eq!(received.peer(), &handshake::Peer::Device(dek.public()));
    let r_eph: [u8; 32] = arr(&h["responder_ephemeral_secret"]);
    let challenge: [u8; 32] = arr(&h["challenge"]);
    let (waiting, reply) = received
        .reply(&mut Scripted::new(&[&r_eph, &challenge]))
        .unwrap();
    assert_eq!(reply, unhex(&h["hello_reply"]));
    let mut done = waiting.read_finish(&unhex(&h["finish"])).unwrap();
    assert_eq!(
        done.request,
        SessionRequest::Resume(SessionId::from_bytes(arr(&h["resume_session_id"])))
    );
    assert_eq!(
        done.handshake_hash.as_bytes(),
        &arr::<32>(&h["handshake_hash"])
    );
    let client_frame = unhex(&h["client_first_frame"]);
    let len = frame::parse_header(client_frame[..4].try_into().unwrap(), 1 << 20).unwrap();
    let ping = done.transport.open(&client_frame[4..4 + len]).unwrap();
    assert_eq!(ping, unhex(&h["client_first_plaintext (ping)"]));
    assert_eq!(
        message::decode::<ClientMessage>(&ping).unwrap(),
        ClientMessage::Ping { rid: 1 }
    );
    let welcome = message::decode::<ServerMessage>(&unhex(&h["server_first_plaintext (welcome)"]));
    let m = &h["server_first_message"];
    assert_eq!(
        welcome.unwrap(),
        ServerMessage::Welcome {
            sid: SessionId::from_bytes(arr(&m["sid"])),
            resumed: m["resumed"].as_bool().unwrap(),
            server: ServerName::parse(m["server"].as_str().unwrap()).unwrap(),
            max_frame: m["max_frame"].as_u64().unwrap() as u32,
            uid: Some(uid(m["uid"].as_str().unwrap())),
        }
    );

    // The rotation: a device that pinned the retired key learns the new one.
    let r = &v["handshake_rotation"];
    let rotated = ResponderKeys {
        name: ServerName::parse(r["server_name"].as_str().unwrap()).unwrap(),
        current: SekSecret::from_bytes(arr(&r["new_sek_secret (current)"])),
        retired: vec![SekSecret::from_bytes(arr(
            &r["pinned_sek_secret (retired)"],
        ))],
    };
    let pinned = SekSecret::from_bytes(arr(&r["pinned_sek_secret (retired)"])).public();
    let mut irng = Scripted::new(&[&unhex(&r["initiator_ephemeral_secret"])]);
    let (init, rhello) = Initiator::client(
        &rotated.name,
        &pinned,
        &DekSecret::from_bytes(arr(&r["initiator_static_secret (dek)"])),
        SessionRequest::Open,
        &mut irng,
    )
    .unwrap();
    assert_eq!(rhello, unhex(&r["hello"]));
    assert_eq!(
        spec::field(&spec::parse(&rhello), "kid")
            .as_bytes()
            .unwrap(),
        &unhex(&r["pinned_sek_key_id (hello.kid)"])
    );
    let (rdone, rfinish) = init.read_reply(&unhex(&r["hello_reply"])).unwrap();
    assert_eq!(
        rdone.rotated_sek,
        Some(SekPublic::from_bytes(arr(&r["new_sek_public"])))
    );
    assert_eq!(rfinish, unhex(&r["finish"]));
    let (rwaiting, _) = handshake::read_hello(&rotated, Role::ClientToServer, &rhello)
        .unwrap()
        .reply(&mut Scripted::new(&[
            &unhex(&r["responder_ephemeral_secret"]),
            &unhex(&r["challenge"]),
        ]))
        .unwrap();
    assert_eq!(
        rwaiting.read_finish(&rfinish).unwrap().handshake_hash,
        rdone.handshake_hash
    );

    // The envelope opens with the recipient's key and verifies under the sender's USK.
    let e = &v["envelope"];
    let env: Envelope = message::decode_value(&unhex(&e["cbor"])).unwrap();
    let sender_usk = UskSecret::from_bytes(&arr(&e["sender_usk_seed"])).public();
    let bob_dek = DekSecret::from_bytes(arr(&e["recipient_dek_secret"]));
    let bob = uid(e["to"].as_str().unwrap());
    let plain = env
        .open(
            Recipient {
                uid: &bob,
                dek: &bob_dek,
            },
            &sender_usk,
            &mut ReplayWindow::default(),
        )
        .unwrap();
    assert_eq!(&plain[..], &unhex(&e["plaintext"])[..]);
    assert_eq!(env.signed_bytes(), unhex(&e["signed_bytes"]));
    assert_eq!(env.ctr, e["counter"].as_u64().unwrap());
    let fields = &e["plaintext_fields"];
    assert_eq!(fields["type"], "text");
    assert_eq!(
        Plaintext::decode(&plain).unwrap(),
        Plaintext::Text {
            body: fields["body"].as_str().unwrap().into(),
            ts: fields["ts"].as_u64().unwrap(),
        }
    );

    // The signal messages carry that envelope, and decode to what the code sends.
    let sig = &v["signal"];
    let rid = u32::try_from(sig["request_rid"].as_u64().unwrap()).unwrap();
    let request = ClientMessage::Signal {
        rid,
        msgs: vec![env.clone()],
    };
    assert_eq!(
        message::decode::<ClientMessage>(&unhex(&sig["request_cbor"])).unwrap(),
        request
    );
    assert_eq!(message::encode(&request), unhex(&sig["request_cbor"]));
    let delivery = ServerMessage::Signal { env: env.clone() };
    assert_eq!(
        message::decode::<ServerMessage>(&unhex(&sig["delivery_cbor"])).unwrap(),
        delivery
    );
    let link = LinkMessage::Signal {
        msgs: vec![env.clone()],
    };
    assert_eq!(
        message::decode::<LinkMessage>(&unhex(&sig["link_cbor"])).unwrap(),
        link
    );

    // Directory entries verify and chain.
    let d = &v["directory"];
    let listing: siren_proto::records::DirectoryListing =
        message::decode_value(&unhex(&d["listing_cbor"])).unwrap();
    let alice = uid(d["uid"].as_str().unwrap());
    let check = UserDirectory::check_listing(&alice, &listing, None).unwrap();
    assert_eq!(check.directory.head().seq, 3);
    assert_eq!(
        check.directory.head().hash.as_bytes(),
        &arr::<32>(&d["revocation_3"]["entry_hash"])
    );
    let usk = UskSecret::from_bytes(&arr(&d["usk_seed"]));
    for (key, dek_key, prev_key, name) in [
        (
            "record_1",
            "dek",
            "prev",
            d["record_1"]["inputs"]["name"].as_str(),
        ),
        (
            "record_2",
            "dek (keys.bob_dek_public)",
            "prev (record_1.entry_hash)",
            None,
        ),
    ] {
        let i = &d[key]["inputs"];
        let rec = DeviceRecordDraft {
            uid: alice.clone(),
            dek: DekPublic::from_bytes(arr(&i[dek_key])),
            seq: i["seq"].as_u64().unwrap(),
            prev: Digest::from_bytes(arr(&i[prev_key])),
            ts: i["ts"].as_u64().unwrap(),
            name: name.map(str::to_owned),
        }
        .sign(&usk);
        assert_eq!(message::encode_value(&rec), unhex(&d[key]["cbor"]), "{key}");
        let decoded: siren_proto::records::DeviceRecord =
            message::decode_value(&unhex(&d[key]["cbor"])).unwrap();
        decoded.verify().unwrap();
    }
    let i = &d["revocation_3"]["inputs"];
    let rev = DeviceRevocation::sign(
        &usk,
        alice.clone(),
        DekPublic::from_bytes(arr(&i["dek (record_1's)"])),
        i["seq"].as_u64().unwrap(),
        Digest::from_bytes(arr(&i["prev (record_2.entry_hash)"])),
        i["ts"].as_u64().unwrap(),
    );
    assert_eq!(
        message::encode_value(&rev),
        unhex(&d["revocation_3"]["cbor"])
    );

    // The roster verifies and chains, and both versions come from the listed inputs.
    let r = &v["roster"];
    let usk = UskSecret::from_bytes(&arr(&r["usk_seed"]));
    let i1 = &r["v1"]["inputs"];
    assert!(i1["contacts"].as_array().unwrap().is_empty());
    assert!(i1["blocked"].as_array().unwrap().is_empty());
    let v1 = Roster::sign_next(
        &usk,
        uid(r["uid"].as_str().unwrap()),
        None,
        i1["ts"].as_u64().unwrap(),
        vec![],
        vec![],
    );
    assert_eq!(message::encode_value(&v1), unhex(&r["v1"]["cbor"]));
    let i2 = &r["v2"]["inputs"];
    let contacts = i2["contacts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| Contact {
            uid: uid(c["uid"].as_str().unwrap()),
            name: c["name"].as_str().map(str::to_owned),
            presence: c["presence"].as_bool().unwrap(),
        })
        .collect();
    let blocked = i2["blocked"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| uid(b.as_str().unwrap()))
        .collect();
    let v2 = Roster::sign_next(
        &usk,
        uid(r["uid"].as_str().unwrap()),
        Some(&v1),
        i2["ts"].as_u64().unwrap(),
        contacts,
        blocked,
    );
    assert_eq!(message::encode_value(&v2), unhex(&r["v2"]["cbor"]));
    let v2: Roster = message::decode_value(&unhex(&r["v2"]["cbor"])).unwrap();
    v2.verify().unwrap();
    assert_eq!(v2.prev.as_bytes(), &arr::<32>(&r["v1"]["hash"]));
    assert_eq!(v2.hash().as_bytes(), &arr::<32>(&r["v2"]["hash"]));

    // The group's versions chain and verify under alice's key, and come from their inputs.
    let g = &v["group"];
    let usk = UskSecret::from_bytes(&arr(&g["usk_seed (alice's, keys.usk_seed)"]));
    let v1: GroupState = message::decode_value(&unhex(&g["v1"]["cbor"])).unwrap();
    let v2: GroupState = message::decode_value(&unhex(&g["v2"]["cbor"])).unwrap();
    v1.check_genesis(&usk.public()).unwrap();
    v2.check_successor(&v1, &usk.public()).unwrap();
    for (state, name) in [(&v1, "v1"), (&v2, "v2")] {
        assert_eq!(state.signed_bytes(), unhex(&g[name]["signed_bytes"]));
        assert_eq!(state.hash().as_bytes(), &arr::<32>(&g[name]["hash"]));
        let i = &g[name]["inputs"];
        let uids = |k: &str| -> Vec<Uid> {
            i[k].as_array()
                .unwrap()
                .iter()
                .map(|u| uid(u.as_str().unwrap()))
                .collect()
        };
        assert_eq!(state.members, uids("members"));
        assert_eq!(state.admins, uids("admins"));
        assert_eq!(state.ts, i["ts"].as_u64().unwrap());
    }
    assert_eq!(
        group_versions(&usk, &uid("alice@alpha.test")),
        [v1, v2.clone()]
    );
    let Plaintext::Group { group, version, .. } =
        Plaintext::decode(&unhex(&g["message"]["cbor"])).unwrap()
    else {
        panic!("the group message is a group message");
    };
    assert_eq!((group, version), (v2.group, 2));

    // The approval code and the USK transfer.
    let a = &v["approval"];
    let new_dek = DekSecret::from_bytes(arr(&a["new_dek_secret"]));
    let alice = uid(a["uid"].as_str().unwrap());
    let transcript = ApprovalTranscript {
        uid: alice.clone(),
        new_dek: new_dek.public(),
        existing_dek: DekPublic::from_bytes(arr(&a["existing_dek_public"])),
        commit: Digest::from_bytes(arr(&a["commit"])),
        existing_nonce: arr(&a["existing_nonce"]),
        new_nonce: arr(&a["new_nonce"]),
    };
    assert!(approval::check_reveal(
        &transcript.commit,
        &alice,
        &new_dek.public(),
        &transcript.new_nonce
    ));
    assert_eq!(
        transcript.short_code().to_string(),
        a["short_code"].as_str().unwrap()
    );
    let transfer: UskTransfer = message::decode_value(&unhex(&a["transfer_cbor"])).unwrap();
    let usk_public = UskSecret::from_bytes(&arr(&a["usk_seed"])).public();
    assert_eq!(
        usk_public,
        UskPublic::from_bytes(&arr(&v["keys"]["usk_public"])).unwrap()
    );
    let got = transfer
        .open(
            &new_dek,
            &transcript,
            &usk_public,
            &[transcript.existing_dek],
        )
        .unwrap();
    assert_eq!(got.public(), usk_public);
}

/// PROTOCOL.md is enough: the handshake, the first transport frames and the envelope's keys,
/// recomputed with the document's formulas (`spec.rs`) from the file's inputs, give the file's
/// bytes.
#[test]
fn the_document_alone_reproduces_the_vectors() {
    let v = file();
    let h = &v["handshake_c2s"];
    let reply = spec::respond(
        &unhex(&h["hello"]),
        h["server_name"].as_str().unwrap(),
        arr(&h["responder_static_secret (sek)"]),
        arr(&h["responder_ephemeral_secret"]),
        arr(&h["challenge"]),
        |_| None,
    );
    assert_eq!(reply.hello_reply, unhex(&h["hello_reply"]));
    let mut sym = reply.sym;
    let finish = spec::parse(&unhex(&h["finish"]));
    let payload3 = sym.decrypt_and_hash(spec::field(&finish, "p").as_bytes().unwrap());
    let payload3 = spec::parse(&payload3);
    assert_eq!(
        spec::field(&payload3, "ch").as_bytes().unwrap(),
        &unhex(&h["challenge"])
    );
    assert_eq!(
        spec::field(&payload3, "resume").as_bytes().unwrap(),
        &unhex(&h["resume_session_id"])
    );
    assert_eq!(sym.h.to_vec(), unhex(&h["handshake_hash"]));
    // §8: frame n of a direction is secretbox(key, dir || 0^15 || u64(n), message).
    let (i2r, r2i) = sym.split();
    let nonce = |dir: u8, n: u64| {
        let mut nonce = [0u8; 24];
        nonce[0] = dir;
        nonce[16..].copy_from_slice(&n.to_be_bytes());
        nonce
    };
    let framed =
        |payload: Vec<u8>| [(payload.len() as u32).to_be_bytes().to_vec(), payload].concat();
    assert_eq!(
        framed(spec::secretbox(
            &i2r,
            &nonce(1, 0),
            &unhex(&h["client_first_plaintext (ping)"])
        )),
        unhex(&h["client_first_frame"])
    );
    assert_eq!(
        framed(spec::secretbox(
            &r2i,
            &nonce(2, 0),
            &unhex(&h["server_first_plaintext (welcome)"])
        )),
        unhex(&h["server_first_frame"])
    );

    // §7.6: the rotation proof and payload2.
    let r = &v["handshake_rotation"];
    let e_pub = spec::public(arr(&r["initiator_ephemeral_secret"]));
    let reply = spec::respond(
        &unhex(&r["hello"]),
        r["server_name"].as_str().unwrap(),
        arr(&r["pinned_sek_secret (retired)"]),
        arr(&r["responder_ephemeral_secret"]),
        arr(&r["challenge"]),
        |h0| {
            Some((
                arr(&r["new_sek_public"]),
                spec::rotation_proof(h0, arr(&r["new_sek_secret (current)"]), e_pub),
            ))
        },
    );
    assert_eq!(reply.h0.to_vec(), unhex(&r["h0"]));
    assert_eq!(reply.payload2, unhex(&r["payload2"]));
    assert_eq!(
        spec::field(spec::field(&spec::parse(&reply.payload2), "rot"), "proof")
            .as_bytes()
            .unwrap(),
        &unhex(&r["rotation_proof"])
    );
    assert_eq!(reply.hello_reply, unhex(&r["hello_reply"]));

    // §12: the envelope's key and nonce, and its ciphertext.
    let e = &v["envelope"];
    let eph = spec::public(arr(&e["ephemeral_secret"]));
    assert_eq!(eph.to_vec(), unhex(&e["ephemeral_public"]));
    let dh = spec::x25519(arr(&e["recipient_dek_secret"]), eph);
    assert_eq!(dh.to_vec(), unhex(&e["shared_secret"]));
    let okm = spec::envelope_key(
        "siren/v1/message-key",
        &dh,
        &eph,
        &arr(&e["recipient_dek_public"]),
    );
    assert_eq!(okm[..32].to_vec(), unhex(&e["key"]));
    assert_eq!(okm[32..].to_vec(), unhex(&e["nonce"]));
    assert_eq!(
        spec::secretbox(
            &okm[..32].try_into().unwrap(),
            &okm[32..].try_into().unwrap(),
            &unhex(&e["plaintext"])
        ),
        unhex(&e["ct"])
    );

    // §19.8 and §12.1: a group version's signed bytes from its inputs, its hash, and alice's
    // signature over them (Ed25519 from the USK seed, strict verification).
    let g = &v["group"];
    for name in ["v1", "v2"] {
        let i = &g[name]["inputs"];
        let prev = i.get("prev").unwrap_or_else(|| &i["prev (v1.hash)"]);
        let var = |t: &str| [(t.len() as u32).to_be_bytes().as_slice(), t.as_bytes()].concat();
        let list = |k: &str| {
            let items = i[k].as_array().unwrap();
            let mut out = (items.len() as u32).to_be_bytes().to_vec();
            for u in items {
                out.extend(var(u.as_str().unwrap()));
            }
            out
        };
        let signed = [
            spec::label("siren/v1/group"),
            unhex(&i["group"]),
            i["version"].as_u64().unwrap().to_be_bytes().to_vec(),
            unhex(prev),
            var(i["by"].as_str().unwrap()),
            i["ts"].as_u64().unwrap().to_be_bytes().to_vec(),
            var(i["title"].as_str().unwrap()),
            list("members"),
            list("admins"),
        ]
        .concat();
        assert_eq!(signed, unhex(&g[name]["signed_bytes"]), "group {name}");
        let key =
            ed25519_dalek::SigningKey::from_bytes(&arr(&g["usk_seed (alice's, keys.usk_seed)"]));
        let sig = ed25519_dalek::Signature::from_bytes(&arr(&g[name]["sig"]));
        key.verifying_key().verify_strict(&signed, &sig).unwrap();
        let hash = <sha2::Sha256 as sha2::Digest>::digest(
            [
                spec::label("siren/v1/group-hash"),
                (signed.len() as u32).to_be_bytes().to_vec(),
                signed.clone(),
                sig.to_bytes().to_vec(),
            ]
            .concat(),
        );
        assert_eq!(hash.to_vec(), unhex(&g[name]["hash"]), "group {name}");
    }
}
