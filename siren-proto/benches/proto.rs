//! Criterion benchmarks of the protocol core, each beside the raw primitives it is built from,
//! measured in the same run so the overhead is a ratio, not an absolute time on a noisy machine.
//!
//! `cargo bench -p siren-proto --bench proto` runs them; `python3 siren-proto/benches/table.py`
//! then prints the table of ratios from criterion's estimates.
//!
//! Determinism trick: each role of the handshake is timed alone by giving it a freshly seeded
//! RNG every iteration, so its messages are the same every time and the other side's answer can
//! be computed once, outside the timed loop.

use std::hint::black_box;
use std::time::Instant;

use chacha20::ChaCha20Rng;
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use crypto_secretbox::aead::Aead;
use crypto_secretbox::{KeyInit, XSalsa20Poly1305};
use ed25519_dalek::{Signer, SigningKey};
use rand_core::SeedableRng;
use siren_api::{ServerName, Uid};
use siren_proto::envelope::{Envelope, Recipient, ReplayWindow, Sender};
use siren_proto::frame;
use siren_proto::handshake::{self, Initiator, ResponderKeys, Role, SessionRequest};
use siren_proto::ids::MessageId;
use siren_proto::keys::{DekSecret, SekSecret, UskSecret};
use siren_proto::message::{self, ClientMessage, QueueItem, ServerMessage, WireMessage as _};
use siren_proto::transport::Transport;
use x25519_dalek::{PublicKey, StaticSecret};

fn rng(seed: u64) -> ChaCha20Rng {
    ChaCha20Rng::seed_from_u64(seed)
}

const SIZES: [usize; 2] = [256, 4096];

fn primitives(c: &mut Criterion) {
    let mut g = c.benchmark_group("primitive");
    let a = StaticSecret::from([7u8; 32]);
    let b_pub = PublicKey::from(&StaticSecret::from([9u8; 32]));
    g.bench_function("x25519_keygen", |b| {
        b.iter(|| PublicKey::from(&StaticSecret::from(black_box([3u8; 32]))))
    });
    g.bench_function("x25519_dh", |b| {
        b.iter(|| black_box(&a).diffie_hellman(black_box(&b_pub)))
    });
    let sk = SigningKey::from_bytes(&[5u8; 32]);
    let vk = sk.verifying_key();
    let key = [1u8; 32];
    let nonce = [2u8; 24];
    let cipher = XSalsa20Poly1305::new((&key).into());
    for size in SIZES {
        // The envelope signs its plaintext's ciphertext plus about 200 bytes of header fields;
        // measure the primitive on a message of exactly that length.
        let signed_len = envelope_signed_len(size);
        let msg = vec![0xabu8; signed_len];
        let sig = sk.sign(&msg);
        g.throughput(Throughput::Bytes(size as u64));
        g.bench_with_input(BenchmarkId::new("ed25519_sign", size), &msg, |b, m| {
            b.iter(|| sk.sign(black_box(m)))
        });
        g.bench_with_input(BenchmarkId::new("ed25519_verify", size), &msg, |b, m| {
            b.iter(|| vk.verify_strict(black_box(m), &sig).is_ok())
        });
        let pt = vec![0x42u8; size];
        let ct = cipher.encrypt((&nonce).into(), &pt[..]).unwrap();
        g.bench_with_input(BenchmarkId::new("secretbox_seal", size), &pt, |b, p| {
            b.iter(|| {
                XSalsa20Poly1305::new((&key).into())
                    .encrypt((&nonce).into(), black_box(&p[..]))
                    .unwrap()
            })
        });
        g.bench_with_input(BenchmarkId::new("secretbox_open", size), &ct, |b, ct| {
            b.iter(|| {
                XSalsa20Poly1305::new((&key).into())
                    .decrypt((&nonce).into(), black_box(&ct[..]))
                    .unwrap()
            })
        });
    }
    g.finish();
}

struct Parties {
    alice: Uid,
    alice_usk: UskSecret,
    alice_dek: DekSecret,
    bob: Uid,
    bob_usk: UskSecret,
    bob_dek: DekSecret,
}

fn parties() -> Parties {
    let mut r = rng(1);
    Parties {
        alice: Uid::parse("alice@alpha.test").unwrap(),
        alice_usk: UskSecret::generate(&mut r),
        alice_dek: DekSecret::generate(&mut r),
        bob: Uid::parse("bob@beta.test").unwrap(),
        bob_usk: UskSecret::generate(&mut r),
        bob_dek: DekSecret::generate(&mut r),
    }
}

fn seal(p: &Parties, size: usize, seed: u64) -> Envelope {
    let dek = p.alice_dek.public();
    Envelope::seal(
        Sender {
            uid: &p.alice,
            usk: &p.alice_usk,
            dek: &dek,
        },
        &p.bob,
        &p.bob_dek.public(),
        MessageId::from_bytes([9; 16]),
        1,
        &vec![0x42u8; size],
        &mut rng(seed),
    )
    .unwrap()
}

fn envelope_signed_len(size: usize) -> usize {
    seal(&parties(), size, 2).signed_bytes().len()
}

fn envelopes(c: &mut Criterion) {
    let p = parties();
    let mut g = c.benchmark_group("envelope");
    for size in SIZES {
        g.throughput(Throughput::Bytes(size as u64));
        let dek = p.alice_dek.public();
        let pt = vec![0x42u8; size];
        g.bench_with_input(BenchmarkId::new("seal", size), &pt, |b, pt| {
            let mut r = rng(3);
            b.iter(|| {
                Envelope::seal(
                    Sender {
                        uid: &p.alice,
                        usk: &p.alice_usk,
                        dek: &dek,
                    },
                    &p.bob,
                    &p.bob_dek.public(),
                    MessageId::from_bytes([9; 16]),
                    1,
                    black_box(pt),
                    &mut r,
                )
                .unwrap()
            })
        });
        let env = seal(&p, size, 4);
        let usk = p.alice_usk.public();
        g.bench_with_input(BenchmarkId::new("open", size), &env, |b, env| {
            b.iter(|| {
                let mut w = ReplayWindow::default();
                env.open(
                    Recipient {
                        uid: &p.bob,
                        dek: &p.bob_dek,
                    },
                    &usk,
                    &mut w,
                )
                .unwrap()
            })
        });
    }
    let _ = &p.bob_usk;
    g.finish();
}

fn handshakes(c: &mut Criterion) {
    let mut r = rng(5);
    let server = ResponderKeys {
        name: ServerName::parse("alpha.test").unwrap(),
        current: SekSecret::generate(&mut r),
        retired: vec![],
    };
    let device = DekSecret::generate(&mut r);
    let sek = server.current.public();
    // One deterministic run to get the messages each role needs from the other.
    let (init, hello) = Initiator::client(
        &server.name,
        &sek,
        &device,
        SessionRequest::Open,
        &mut rng(10),
    )
    .unwrap();
    let (waiting, reply) = handshake::read_hello(&server, Role::ClientToServer, &hello)
        .unwrap()
        .reply(&mut rng(11))
        .unwrap();
    let (_, finish) = init.read_reply(&reply).unwrap();
    waiting.read_finish(&finish).unwrap();

    let mut g = c.benchmark_group("handshake");
    g.bench_function("initiator", |b| {
        b.iter(|| {
            let (init, hello) = Initiator::client(
                &server.name,
                &sek,
                &device,
                SessionRequest::Open,
                &mut rng(10),
            )
            .unwrap();
            black_box(hello);
            init.read_reply(black_box(&reply)).unwrap()
        })
    });
    g.bench_function("responder", |b| {
        b.iter(|| {
            let (waiting, reply) =
                handshake::read_hello(&server, Role::ClientToServer, black_box(&hello))
                    .unwrap()
                    .reply(&mut rng(11))
                    .unwrap();
            black_box(reply);
            waiting.read_finish(black_box(&finish)).unwrap()
        })
    });
    g.finish();
}

/// Both ends of a fresh session's transport.
fn session_pair(seed: u64) -> (Transport, Transport) {
    let mut r = rng(seed);
    let server = ResponderKeys {
        name: ServerName::parse("alpha.test").unwrap(),
        current: SekSecret::generate(&mut r),
        retired: vec![],
    };
    let device = DekSecret::generate(&mut r);
    let (init, hello) = Initiator::client(
        &server.name,
        &server.current.public(),
        &device,
        SessionRequest::Open,
        &mut r,
    )
    .unwrap();
    let (waiting, reply) = handshake::read_hello(&server, Role::ClientToServer, &hello)
        .unwrap()
        .reply(&mut r)
        .unwrap();
    let (client, finish) = init.read_reply(&reply).unwrap();
    let srv = waiting.read_finish(&finish).unwrap();
    (client.transport, srv.transport)
}

/// A `deliver` frame carrying one envelope: CBOR, transport encryption and the length prefix.
fn frames(c: &mut Criterion) {
    let p = parties();
    let mut g = c.benchmark_group("frame");
    for size in SIZES {
        let msg = ServerMessage::Deliver {
            seq: 1,
            item: QueueItem::Message {
                env: seal(&p, size, 7),
            },
        };
        g.throughput(Throughput::Bytes(size as u64));
        // Baseline: one secretbox over exactly the frame's plaintext (the CBOR message).
        let plain = message::encode(&msg);
        let (key, nonce) = ([1u8; 32], [2u8; 24]);
        let sealed = XSalsa20Poly1305::new((&key).into())
            .encrypt((&nonce).into(), &plain[..])
            .unwrap();
        g.bench_with_input(BenchmarkId::new("baseline_seal", size), &plain, |b, p| {
            b.iter(|| {
                XSalsa20Poly1305::new((&key).into())
                    .encrypt((&nonce).into(), black_box(&p[..]))
                    .unwrap()
            })
        });
        g.bench_with_input(BenchmarkId::new("baseline_open", size), &sealed, |b, ct| {
            b.iter(|| {
                XSalsa20Poly1305::new((&key).into())
                    .decrypt((&nonce).into(), black_box(&ct[..]))
                    .unwrap()
            })
        });
        g.bench_with_input(BenchmarkId::new("encode", size), &msg, |b, msg| {
            let (_, mut server) = session_pair(8);
            b.iter(|| {
                let ct = server.seal(&message::encode(black_box(msg))).unwrap();
                frame::encode(&ct, frame::DEFAULT_MAX_FRAME).unwrap()
            })
        });
        // Frames must be opened in the order they were sealed, so each sample gets a fresh
        // session and its frames are sealed before the clock starts.
        g.bench_with_input(BenchmarkId::new("decode", size), &msg, |b, msg| {
            b.iter_custom(|iters| {
                let (mut client, mut server) = session_pair(9);
                let plain = message::encode(msg);
                let wires: Vec<Vec<u8>> = (0..iters)
                    .map(|_| {
                        frame::encode(&server.seal(&plain).unwrap(), frame::DEFAULT_MAX_FRAME)
                            .unwrap()
                    })
                    .collect();
                let start = Instant::now();
                for wire in &wires {
                    let header: [u8; 4] = wire[..4].try_into().unwrap();
                    let len = frame::parse_header(header, frame::DEFAULT_MAX_FRAME).unwrap();
                    let pt = client.open(black_box(&wire[4..4 + len])).unwrap();
                    black_box(message::decode::<ServerMessage>(&pt).unwrap());
                }
                start.elapsed()
            })
        });
    }
    g.finish();
}

/// Decoding a `send` with one envelope (what sirend does for every relayed message): straight
/// into its fields ([`WireMessage::decode_direct`]) beside serde's internally tagged enum, which
/// buffers the whole message into its own tree first. Baseline: the tagged enum.
fn decode_send(c: &mut Criterion) {
    let p = parties();
    let mut g = c.benchmark_group("decode_send");
    for size in SIZES {
        let msg = ClientMessage::Send {
            rid: 1,
            msgs: vec![seal(&p, size, 11)],
        };
        let bytes = message::encode(&msg);
        g.throughput(Throughput::Bytes(size as u64));
        g.bench_with_input(
            BenchmarkId::new("baseline_tagged_enum", size),
            &bytes,
            |b, x| {
                b.iter(|| ciborium::de::from_reader::<ClientMessage, _>(black_box(&x[..])).unwrap())
            },
        );
        g.bench_with_input(BenchmarkId::new("direct", size), &bytes, |b, x| {
            b.iter(|| ClientMessage::decode_direct("send", black_box(&x[..])).unwrap())
        });
        g.bench_with_input(BenchmarkId::new("decode", size), &bytes, |b, x| {
            b.iter(|| message::decode::<ClientMessage>(black_box(&x[..])).unwrap())
        });
    }
    g.finish();
}

criterion_group!(
    benches,
    primitives,
    envelopes,
    handshakes,
    frames,
    decode_send
);
criterion_main!(benches);
