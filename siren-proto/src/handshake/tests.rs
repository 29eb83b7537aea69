use super::*;
use crate::testing::{LOW_ORDER_POINTS, TestRng};

fn name(s: &str) -> ServerName {
    ServerName::parse(s).unwrap()
}

struct World {
    rng: TestRng,
    server: ResponderKeys,
    device: DekSecret,
}

fn world(seed: u64) -> World {
    let mut rng = TestRng::seeded(seed);
    let server = ResponderKeys {
        name: name("alpha.test"),
        current: SekSecret::generate(&mut rng),
        retired: vec![],
    };
    let device = DekSecret::generate(&mut rng);
    World {
        rng,
        server,
        device,
    }
}

/// The three messages of one client handshake and both results.
struct Run {
    hello: Vec<u8>,
    reply: Vec<u8>,
    finish: Vec<u8>,
    client: InitiatorDone,
    server: ResponderDone,
}

fn run(w: &mut World, request: SessionRequest) -> Run {
    run_with(w, request, None)
}

/// [`run`], the client passing `shared` ([`Initiator::client_with`]) if given.
fn run_with(w: &mut World, request: SessionRequest, shared: Option<&StaticShared>) -> Run {
    let (init, hello) = match shared {
        None => Initiator::client(
            &w.server.name,
            &w.server.current.public(),
            &w.device,
            request,
            &mut w.rng,
        ),
        Some(shared) => {
            Initiator::client_with(&w.server.name, shared, &w.device, request, &mut w.rng)
        }
    }
    .unwrap();
    let received = read_hello(&w.server, Role::ClientToServer, &hello).unwrap();
    let (waiting, reply) = received.reply(&mut w.rng).unwrap();
    let (client, finish) = init.read_reply(&reply).unwrap();
    let server = waiting.read_finish(&finish).unwrap();
    Run {
        hello,
        reply,
        finish,
        client,
        server,
    }
}

#[test]
fn client_and_server_agree() {
    let mut w = world(1);
    let mut r = run(&mut w, SessionRequest::Open);
    assert_eq!(r.server.peer, Peer::Device(w.device.public()));
    assert_eq!(r.server.request, SessionRequest::Open);
    assert_eq!(r.client.handshake_hash, r.server.handshake_hash);
    assert_eq!(r.client.rotated_sek, None);
    for i in 0..3u8 {
        let up = r.client.transport.seal(&[i; 10]).unwrap();
        assert_eq!(r.server.transport.open(&up).unwrap(), vec![i; 10]);
        let down = r.server.transport.seal(&[i; 20]).unwrap();
        assert_eq!(r.client.transport.open(&down).unwrap(), vec![i; 20]);
    }
}

#[test]
fn ephemeral_keys_are_fresh_per_handshake() {
    let mut w = world(2);
    let a = run(&mut w, SessionRequest::Open);
    let b = run(&mut w, SessionRequest::Open);
    assert_ne!(a.client.handshake_hash, b.client.handshake_hash);
    assert_ne!(a.hello, b.hello);
    assert_ne!(a.reply, b.reply);
}

#[test]
fn resume_is_carried_and_bound_to_the_dek() {
    let mut w = world(3);
    let sid = SessionId::random(&mut w.rng);
    let r = run(&mut w, SessionRequest::Resume(sid));
    assert_eq!(r.server.request, SessionRequest::Resume(sid));
    let Peer::Device(proven) = r.server.peer else {
        panic!("expected a device")
    };
    let binding = SessionBinding {
        id: sid,
        dek: w.device.public(),
    };
    assert!(binding.may_resume(&proven));
    let thief = DekSecret::generate(&mut w.rng).public();
    assert!(!binding.may_resume(&thief));
}

#[test]
fn server_to_server_link() {
    let mut rng = TestRng::seeded(4);
    let beta = ResponderKeys {
        name: name("beta.test"),
        current: SekSecret::generate(&mut rng),
        retired: vec![],
    };
    let alpha_sek = SekSecret::generate(&mut rng);
    let (init, hello) = Initiator::server(
        &name("alpha.test"),
        &alpha_sek,
        &beta.name,
        &beta.current.public(),
        &mut rng,
    )
    .unwrap();
    // A client listener refuses a link hello, and the reverse.
    assert!(matches!(
        read_hello(&beta, Role::ClientToServer, &hello),
        Err(HandshakeError::WrongRole { .. })
    ));
    let received = read_hello(&beta, Role::ServerToServer, &hello).unwrap();
    assert_eq!(
        received.peer(),
        &Peer::Server {
            name: name("alpha.test"),
            sek: alpha_sek.public()
        }
    );
    let (waiting, reply) = received.reply(&mut rng).unwrap();
    let (mut a, finish) = init.read_reply(&reply).unwrap();
    let mut b = waiting.read_finish(&finish).unwrap();
    let frame = a.transport.seal(b"link").unwrap();
    assert_eq!(b.transport.open(&frame).unwrap(), b"link");
}

#[test]
fn wrong_pin_wrong_name_wrong_version() {
    let mut w = world(5);
    let impostor = SekSecret::generate(&mut w.rng).public();
    let (_, hello) = Initiator::client(
        &w.server.name,
        &impostor,
        &w.device,
        SessionRequest::Open,
        &mut w.rng,
    )
    .unwrap();
    assert!(matches!(
        read_hello(&w.server, Role::ClientToServer, &hello),
        Err(HandshakeError::UnknownKey)
    ));

    let (_, hello) = Initiator::client(
        &name("gamma.test"),
        &w.server.current.public(),
        &w.device,
        SessionRequest::Open,
        &mut w.rng,
    )
    .unwrap();
    assert!(matches!(
        read_hello(&w.server, Role::ClientToServer, &hello),
        Err(HandshakeError::UnknownServer(n)) if n == "gamma.test"
    ));

    let (_, hello) = Initiator::client(
        &w.server.name,
        &w.server.current.public(),
        &w.device,
        SessionRequest::Open,
        &mut w.rng,
    )
    .unwrap();
    let bumped = edit_field(&hello, "v", ciborium::Value::Integer(2.into()));
    let err = read_hello(&w.server, Role::ClientToServer, &bumped)
        .err()
        .unwrap();
    assert_eq!(
        err,
        HandshakeError::UnsupportedVersion {
            offered: 2,
            supported: 1
        }
    );
    assert_eq!(err.code(), ErrorCode::UnsupportedVersion);
    // Any unsigned integer is a version (unsupported), not a malformed hello.
    let far = edit_field(&hello, "v", ciborium::Value::Integer(70_000.into()));
    let err = read_hello(&w.server, Role::ClientToServer, &far)
        .err()
        .unwrap();
    assert_eq!(err.code(), ErrorCode::UnsupportedVersion);
}

/// Re-encodes a CBOR map with one field replaced.
fn edit_field(msg: &[u8], key: &str, value: ciborium::Value) -> Vec<u8> {
    let mut v: ciborium::Value = ciborium::from_reader(msg).unwrap();
    let map = v.as_map_mut().unwrap();
    for (k, val) in map.iter_mut() {
        if k.as_text() == Some(key) {
            *val = value.clone();
        }
    }
    let mut out = Vec::new();
    ciborium::into_writer(&v, &mut out).unwrap();
    out
}

#[test]
fn low_order_points_are_refused_everywhere() {
    let mut w = world(6);
    for point in LOW_ORDER_POINTS {
        // A pinned SEK of low order: the client refuses to start.
        let bad_sek = SekPublic::from_bytes(point);
        assert!(matches!(
            Initiator::client(
                &w.server.name,
                &bad_sek,
                &w.device,
                SessionRequest::Open,
                &mut w.rng
            ),
            Err(HandshakeError::Key(KeyError::NonContributory))
        ));

        // A low-order ephemeral in the hello: the server refuses.
        let (_, hello) = Initiator::client(
            &w.server.name,
            &w.server.current.public(),
            &w.device,
            SessionRequest::Open,
            &mut w.rng,
        )
        .unwrap();
        let bad = edit_field(&hello, "e", ciborium::Value::Bytes(point.to_vec()));
        assert!(matches!(
            read_hello(&w.server, Role::ClientToServer, &bad),
            Err(HandshakeError::Key(KeyError::NonContributory))
        ));

        // A low-order static key inside the (correctly encrypted) hello: the server refuses.
        let (_, hello) = Initiator::start(
            Role::ClientToServer,
            &w.server.name,
            &w.server.current.public(),
            StaticSecret::from(*w.device.to_bytes()),
            &point,
            None,
            Payload1::default(),
            SessionRequest::Open,
            &mut w.rng,
        )
        .unwrap();
        assert!(matches!(
            read_hello(&w.server, Role::ClientToServer, &hello),
            Err(HandshakeError::Key(KeyError::NonContributory))
        ));

        // A low-order ephemeral in the reply: the client refuses.
        let (init, hello) = Initiator::client(
            &w.server.name,
            &w.server.current.public(),
            &w.device,
            SessionRequest::Open,
            &mut w.rng,
        )
        .unwrap();
        let (_, reply) = read_hello(&w.server, Role::ClientToServer, &hello)
            .unwrap()
            .reply(&mut w.rng)
            .unwrap();
        let bad = edit_field(&reply, "e", ciborium::Value::Bytes(point.to_vec()));
        assert!(matches!(
            init.read_reply(&bad),
            Err(HandshakeError::Key(KeyError::NonContributory))
        ));
    }
}

#[test]
fn any_altered_byte_fails_the_step_that_reads_it() {
    // Deterministic worlds, so the same three messages come out every time.
    let reference = run(&mut world(7), SessionRequest::Open);
    for i in 0..reference.hello.len() {
        for flip in [0x01u8, 0x80] {
            let mut w = world(7);
            let mut hello = reference.hello.clone();
            hello[i] ^= flip;
            assert!(
                read_hello(&w.server, Role::ClientToServer, &hello).is_err(),
                "hello byte {i} ^ {flip:#x} was accepted"
            );
            let _ = &mut w;
        }
    }
    for i in 0..reference.reply.len() {
        let mut w = world(7);
        let (init, hello) = Initiator::client(
            &w.server.name,
            &w.server.current.public(),
            &w.device,
            SessionRequest::Open,
            &mut w.rng,
        )
        .unwrap();
        let (_, reply) = read_hello(&w.server, Role::ClientToServer, &hello)
            .unwrap()
            .reply(&mut w.rng)
            .unwrap();
        assert_eq!(reply, reference.reply);
        let mut bad = reply.clone();
        bad[i] ^= 0x01;
        assert!(
            init.read_reply(&bad).is_err(),
            "reply byte {i} was accepted"
        );
    }
    for i in 0..reference.finish.len() {
        let mut w = world(7);
        let (init, hello) = Initiator::client(
            &w.server.name,
            &w.server.current.public(),
            &w.device,
            SessionRequest::Open,
            &mut w.rng,
        )
        .unwrap();
        let (waiting, reply) = read_hello(&w.server, Role::ClientToServer, &hello)
            .unwrap()
            .reply(&mut w.rng)
            .unwrap();
        let (_, finish) = init.read_reply(&reply).unwrap();
        let mut bad = finish.clone();
        bad[i] ^= 0x01;
        assert!(
            waiting.read_finish(&bad).is_err(),
            "finish byte {i} was accepted"
        );
    }
}

#[test]
fn replayed_handshake_does_not_open_a_session() {
    // An attacker recorded a whole successful handshake and replays the client's side.
    let mut w = world(8);
    let recorded = run(&mut w, SessionRequest::Open);
    let received = read_hello(&w.server, Role::ClientToServer, &recorded.hello).unwrap();
    // The server answers with a fresh ephemeral key and challenge...
    let (waiting, reply) = received.reply(&mut w.rng).unwrap();
    assert_ne!(reply, recorded.reply);
    // ...so the recorded finish no longer decrypts.
    assert_eq!(
        waiting.read_finish(&recorded.finish).err(),
        Some(HandshakeError::Decrypt)
    );
}

#[test]
fn wrong_challenge_response_is_refused() {
    let mut w = world(9);
    let (mut init, hello) = Initiator::client(
        &w.server.name,
        &w.server.current.public(),
        &w.device,
        SessionRequest::Open,
        &mut w.rng,
    )
    .unwrap();
    let (waiting, reply) = read_hello(&w.server, Role::ClientToServer, &hello)
        .unwrap()
        .reply(&mut w.rng)
        .unwrap();
    // Run the initiator's side by hand, answering with the wrong challenge.
    let Wire::HelloReply { e: re, p } = decode_wire(&reply, "hello_reply").unwrap() else {
        panic!()
    };
    init.sym.mix_hash(&re);
    init.sym.mix_key(init.e.agree(&re).unwrap());
    init.sym
        .mix_key(crate::keys::dh_static(&init.s, &re).unwrap());
    let mut p2: Payload2 = decode_payload(&init.sym.decrypt_and_hash(&p).unwrap(), "p2").unwrap();
    p2.ch[0] ^= 1;
    let c = init
        .sym
        .encrypt_and_hash(&crate::message::encode_cbor(&Payload3 {
            ch: p2.ch,
            resume: None,
        }));
    let finish = crate::message::encode_cbor(&Wire::Finish { p: c });
    assert_eq!(
        waiting.read_finish(&finish).err(),
        Some(HandshakeError::ChallengeMismatch)
    );
}

#[test]
fn sek_rotation_is_announced_and_proven() {
    let mut w = world(10);
    let old = SekSecret::from_bytes(*w.server.current.to_bytes());
    let pinned = old.public();
    let new = SekSecret::generate(&mut w.rng);
    let new_pub = new.public();
    w.server = ResponderKeys {
        name: w.server.name.clone(),
        current: new,
        retired: vec![old],
    };
    let (init, hello) = Initiator::client(
        &w.server.name,
        &pinned,
        &w.device,
        SessionRequest::Open,
        &mut w.rng,
    )
    .unwrap();
    let (waiting, reply) = read_hello(&w.server, Role::ClientToServer, &hello)
        .unwrap()
        .reply(&mut w.rng)
        .unwrap();
    let (done, finish) = init.read_reply(&reply).unwrap();
    assert_eq!(done.rotated_sek, Some(new_pub));
    waiting.read_finish(&finish).unwrap();

    // A server that announces a key it does not hold is caught.
    let liar = SekSecret::generate(&mut w.rng);
    let (init, hello) = Initiator::client(
        &w.server.name,
        &pinned,
        &w.device,
        SessionRequest::Open,
        &mut w.rng,
    )
    .unwrap();
    let mut received = read_hello(&w.server, Role::ClientToServer, &hello).unwrap();
    received.rotate_to = Some((new_pub, StaticSecret::from(*liar.to_bytes())));
    let (_, reply) = received.reply(&mut w.rng).unwrap();
    assert_eq!(
        init.read_reply(&reply).err(),
        Some(HandshakeError::BadRotationProof)
    );
}

#[test]
fn error_frame_is_reported() {
    let mut w = world(11);
    let (init, _) = Initiator::client(
        &w.server.name,
        &w.server.current.public(),
        &w.device,
        SessionRequest::Open,
        &mut w.rng,
    )
    .unwrap();
    let frame = error_frame(ErrorCode::UnsupportedVersion, "speak v1");
    assert_eq!(
        init.read_reply(&frame).err(),
        Some(HandshakeError::Refused {
            code: 103,
            message: "speak v1".into()
        })
    );
}

#[test]
fn transport_refuses_replay_reflection_and_reordering() {
    let mut w = world(12);
    let mut r = run(&mut w, SessionRequest::Open);
    let f1 = r.client.transport.seal(b"one").unwrap();
    let f2 = r.client.transport.seal(b"two").unwrap();
    // Reordered: f2 before f1.
    let mut server = run(&mut world(12), SessionRequest::Open).server;
    assert_eq!(server.transport.open(&f2), Err(TransportError::Decrypt));
    // After a failure the transport stays failed, even for the right frame.
    assert_eq!(server.transport.open(&f1), Err(TransportError::Failed));
    // In order it works; a replay fails.
    assert_eq!(r.server.transport.open(&f1).unwrap(), b"one");
    assert_eq!(r.server.transport.open(&f1), Err(TransportError::Decrypt));
    // Reflection: the server's own frame sent back to it.
    let mut fresh = run(&mut world(13), SessionRequest::Open);
    let down = fresh.server.transport.seal(b"down").unwrap();
    assert_eq!(
        fresh.server.transport.open(&down),
        Err(TransportError::Decrypt)
    );
    // And the client cannot open its own frames either.
    let up = fresh.client.transport.seal(b"up").unwrap();
    assert_eq!(
        fresh.client.transport.open(&up),
        Err(TransportError::Decrypt)
    );
}

use crate::transport::TransportError;

/// A device that keeps its `ss` ([`StaticShared`]) sends the same messages as one that computes
/// it each time: same seed, byte-identical `hello`, `reply` and `finish`, same keys, and the
/// server (which cannot tell) resumes it.
#[test]
fn a_kept_static_agreement_changes_nothing_on_the_wire() {
    let id = SessionId::from_bytes([7; 16]);
    let mut plain_world = world(21);
    let plain = run(&mut plain_world, SessionRequest::Resume(id));

    let mut w = world(21);
    let shared = StaticShared::new(&w.device, &w.server.current.public()).unwrap();
    assert!(shared.is_for(&w.device.public(), &w.server.current.public()));
    let kept = run_with(&mut w, SessionRequest::Resume(id), Some(&shared));

    assert_eq!(kept.hello, plain.hello);
    assert_eq!(kept.reply, plain.reply);
    assert_eq!(kept.finish, plain.finish);
    assert_eq!(kept.client.handshake_hash, plain.client.handshake_hash);
    assert_eq!(kept.server.handshake_hash, plain.server.handshake_hash);
    assert_eq!(kept.server.request, SessionRequest::Resume(id));
    assert_eq!(kept.server.peer, Peer::Device(w.device.public()));
}

/// Another device's `ss` is refused before anything is sent, and one computed for a server key
/// the server has since replaced says so (`is_for`), so the client computes a new one.
#[test]
fn a_static_agreement_is_only_for_its_device_and_server_key() {
    let mut w = world(22);
    let other = DekSecret::generate(&mut w.rng);
    let shared = StaticShared::new(&other, &w.server.current.public()).unwrap();
    let refused = Initiator::client_with(
        &w.server.name,
        &shared,
        &w.device,
        SessionRequest::Open,
        &mut w.rng,
    );
    assert!(matches!(refused, Err(HandshakeError::WrongStaticShared)));
    assert!(!shared.is_for(&w.device.public(), &w.server.current.public()));

    let mine = StaticShared::new(&w.device, &w.server.current.public()).unwrap();
    let rotated = SekSecret::generate(&mut w.rng);
    assert!(!mine.is_for(&w.device.public(), &rotated.public()));

    // What a client keeps follows its DEK and the server's key.
    let mut kept = Some(shared);
    let now = StaticShared::keep(&mut kept, &w.device, &w.server.current.public()).unwrap();
    assert!(now.is_for(&w.device.public(), &w.server.current.public()));
    let now = StaticShared::keep(&mut kept, &w.device, &rotated.public()).unwrap();
    assert!(now.is_for(&w.device.public(), &rotated.public()));
    assert!(kept.is_some_and(|k| k.is_for(&w.device.public(), &rotated.public())));
}

/// A server key that is a low-order point gives an all-zero agreement: refused when the `ss`
/// is computed, as in the handshake.
#[test]
fn a_static_agreement_with_a_low_order_key_is_refused() {
    let w = world(23);
    for point in LOW_ORDER_POINTS {
        let sek = SekPublic::from_bytes(point);
        assert!(matches!(
            StaticShared::new(&w.device, &sek),
            Err(HandshakeError::Key(KeyError::NonContributory))
        ));
    }
}
