use super::*;
use crate::testing::{LOW_ORDER_POINTS, TestRng};

struct Party {
    uid: Uid,
    usk: UskSecret,
    dek: DekSecret,
}

fn party(uid: &str, rng: &mut TestRng) -> Party {
    Party {
        uid: Uid::parse(uid).unwrap(),
        usk: UskSecret::generate(rng),
        dek: DekSecret::generate(rng),
    }
}

fn seal(from: &Party, to: &Party, ctr: u64, text: &[u8], rng: &mut TestRng) -> Envelope {
    let dek = from.dek.public();
    Envelope::seal(
        Sender {
            uid: &from.uid,
            usk: &from.usk,
            dek: &dek,
        },
        &to.uid,
        &to.dek.public(),
        MessageId::random(rng),
        ctr,
        text,
        rng,
    )
    .unwrap()
}

fn open(
    env: &Envelope,
    me: &Party,
    from: &Party,
    w: &mut ReplayWindow,
) -> Result<Vec<u8>, EnvelopeError> {
    env.open(
        Recipient {
            uid: &me.uid,
            dek: &me.dek,
        },
        &from.usk.public(),
        w,
    )
    .map(|p| p.to_vec())
}

#[test]
fn seal_and_open() {
    let mut rng = TestRng::seeded(1);
    let alice = party("alice@alpha.test", &mut rng);
    let bob = party("bob@beta.test", &mut rng);
    let env = seal(&alice, &bob, 1, b"hello bob", &mut rng);
    let mut w = ReplayWindow::default();
    assert_eq!(open(&env, &bob, &alice, &mut w).unwrap(), b"hello bob");
    env.verify_sender(&alice.usk.public()).unwrap();
    // Each envelope has its own ephemeral key.
    let again = seal(&alice, &bob, 2, b"hello bob", &mut rng);
    assert_ne!(env.eph, again.eph);
    assert_ne!(env.ct, again.ct);
}

#[test]
fn forged_sender_and_wrong_recipient_are_refused() {
    let mut rng = TestRng::seeded(2);
    let alice = party("alice@alpha.test", &mut rng);
    let bob = party("bob@beta.test", &mut rng);
    let mallory = party("mallory@alpha.test", &mut rng);
    // Mallory signs with her own USK but claims to be alice.
    let mut forged = seal(&mallory, &bob, 1, b"it is alice, honest", &mut rng);
    forged.from = alice.uid.clone();
    let mut w = ReplayWindow::default();
    assert_eq!(
        open(&forged, &bob, &alice, &mut w),
        Err(EnvelopeError::BadSignature)
    );
    assert_eq!(
        forged.verify_sender(&alice.usk.public()),
        Err(EnvelopeError::BadSignature)
    );
    // Reflection: alice's message to bob shown back to alice.
    let env = seal(&alice, &bob, 1, b"x", &mut rng);
    assert_eq!(
        open(&env, &alice, &alice, &mut w),
        Err(EnvelopeError::NotForMe)
    );
    // Forwarding to another recipient by rewriting the header breaks the signature.
    let mut forwarded = env.clone();
    forwarded.to = mallory.uid.clone();
    forwarded.to_dek = mallory.dek.public();
    assert_eq!(
        open(&forwarded, &mallory, &alice, &mut w),
        Err(EnvelopeError::BadSignature)
    );
    assert_eq!(
        w,
        ReplayWindow::default(),
        "failures must not move the window"
    );
}

#[test]
fn replay_and_reordering() {
    let mut rng = TestRng::seeded(3);
    let alice = party("alice@alpha.test", &mut rng);
    let bob = party("bob@beta.test", &mut rng);
    let envs: Vec<Envelope> = (1..=5)
        .map(|c| seal(&alice, &bob, c, &[c as u8], &mut rng))
        .collect();
    let mut w = ReplayWindow::default();
    // Out of order within the window is fine.
    for i in [2, 0, 4, 1, 3] {
        open(&envs[i], &bob, &alice, &mut w).unwrap();
    }
    // Every replay is refused.
    for env in &envs {
        assert_eq!(
            open(env, &bob, &alice, &mut w),
            Err(EnvelopeError::Replay(env.ctr))
        );
    }
    // Far ahead, then something older than the window.
    let far = seal(&alice, &bob, 5 + REPLAY_WINDOW + 10, b"later", &mut rng);
    open(&far, &bob, &alice, &mut w).unwrap();
    let late = seal(&alice, &bob, 6, b"late", &mut rng);
    assert!(matches!(
        open(&late, &bob, &alice, &mut w),
        Err(EnvelopeError::TooOld { ctr: 6, .. })
    ));
}

#[test]
fn window_edges() {
    let mut w = ReplayWindow::default();
    w.accept(1000);
    assert!(w.check(1000 - REPLAY_WINDOW + 1).is_ok());
    assert!(matches!(
        w.check(1000 - REPLAY_WINDOW),
        Err(EnvelopeError::TooOld { .. })
    ));
    w.accept(1000 - REPLAY_WINDOW + 1);
    assert_eq!(
        w.check(1000 - REPLAY_WINDOW + 1),
        Err(EnvelopeError::Replay(1000 - REPLAY_WINDOW + 1))
    );
    w.accept(u64::MAX);
    assert_eq!(w.check(u64::MAX), Err(EnvelopeError::Replay(u64::MAX)));
    assert!(w.check(1000).is_err());
}

#[test]
fn low_order_points_are_refused() {
    let mut rng = TestRng::seeded(4);
    let alice = party("alice@alpha.test", &mut rng);
    let bob = party("bob@beta.test", &mut rng);
    for point in LOW_ORDER_POINTS {
        // Sealing to a low-order DEK.
        let dek = alice.dek.public();
        let r = Envelope::seal(
            Sender {
                uid: &alice.uid,
                usk: &alice.usk,
                dek: &dek,
            },
            &bob.uid,
            &DekPublic::from_bytes(point),
            MessageId::random(&mut rng),
            1,
            b"x",
            &mut rng,
        );
        assert_eq!(r.err(), Some(EnvelopeError::Key(KeyError::NonContributory)));
        // An envelope whose (signed) ephemeral is low-order.
        let mut env = seal(&alice, &bob, 1, b"x", &mut rng);
        env.eph = point;
        env.sig = alice.usk.sign(&env.signed_bytes());
        let mut w = ReplayWindow::default();
        assert_eq!(
            open(&env, &bob, &alice, &mut w),
            Err(EnvelopeError::Key(KeyError::NonContributory))
        );
    }
}

#[test]
fn any_altered_byte_of_the_wire_form_fails() {
    let mut rng = TestRng::seeded(5);
    let alice = party("alice@alpha.test", &mut rng);
    let bob = party("bob@beta.test", &mut rng);
    let env = seal(&alice, &bob, 7, b"the quick brown fox", &mut rng);
    let wire = crate::message::encode_cbor(&env);
    for i in 0..wire.len() {
        for flip in [0x01u8, 0x20, 0x80] {
            let mut bad = wire.clone();
            bad[i] ^= flip;
            let Ok(decoded) = crate::message::decode_cbor::<Envelope>(&bad) else {
                continue;
            };
            let mut w = ReplayWindow::default();
            assert!(
                open(&decoded, &bob, &alice, &mut w).is_err(),
                "byte {i} ^ {flip:#x} still opened"
            );
        }
    }
}

#[test]
fn window_round_trips_through_the_cbor_profile() {
    let mut w = ReplayWindow::default();
    for ctr in [1000, 999, 900, 880] {
        w.accept(ctr);
    }
    let back: ReplayWindow =
        crate::message::decode_value(&crate::message::encode_value(&w)).unwrap();
    assert_eq!(back, w);
    assert_eq!(back.check(900), Err(EnvelopeError::Replay(900)));
}
