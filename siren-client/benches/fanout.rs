//! Fan-out: what one message costs its sender's device when the recipient has 1 device and when
//! it has 5 (PROTOCOL.md §12: one envelope per recipient device, each sealed to that device's
//! DEK and signed with the sender's USK), and what opening one costs each receiving device.
//!
//! * `fanout/seal_to_1_device`, `fanout/seal_to_5_devices`: sealing and signing a 200-byte text
//!   for every device (what `Client::send_plaintext` does before the one `send` request);
//! * `fanout/open_one`: one receiving device checks the signature and the replay window and
//!   opens it.
//!
//! `cargo bench -p siren-client --bench fanout`. The 5-device row over the 1-device row is the
//! fan-out factor a sender pays; the server's side (accepting the 5 envelopes in one commit) is
//! measured by `siren-bench`. Figures from the 2-core build machine are in ARCHITECTURE.md.

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use siren_api::Uid;
use siren_proto::envelope::{Envelope, Recipient, ReplayWindow, Sender};
use siren_proto::ids::MessageId;
use siren_proto::keys::{DekPublic, DekSecret, UskSecret};
use siren_proto::plaintext::Plaintext;

fn seal_to(
    from: &Uid,
    usk: &UskSecret,
    dek: &DekPublic,
    to: &Uid,
    devices: &[DekPublic],
    plaintext: &[u8],
    ctr: u64,
) -> Vec<Envelope> {
    let mut rng = siren_proto::os_rng();
    let id = MessageId::random(&mut rng);
    devices
        .iter()
        .map(|d| {
            Envelope::seal(
                Sender {
                    uid: from,
                    usk,
                    dek,
                },
                to,
                d,
                id,
                ctr,
                plaintext,
                &mut rng,
            )
            .unwrap()
        })
        .collect()
}

fn fanout(c: &mut Criterion) {
    let mut rng = siren_proto::os_rng();
    let alice = Uid::parse("alice@alpha.test").unwrap();
    let bob = Uid::parse("bob@alpha.test").unwrap();
    let usk = UskSecret::generate(&mut rng);
    let dek = DekSecret::generate(&mut rng).public();
    let bob_deks: Vec<DekSecret> = (0..5).map(|_| DekSecret::generate(&mut rng)).collect();
    let bob_devices: Vec<DekPublic> = bob_deks.iter().map(DekSecret::public).collect();
    let plaintext = Plaintext::Text {
        body: "x".repeat(200),
        ts: 1,
    }
    .encode();

    let mut group = c.benchmark_group("fanout");
    let mut ctr = 0u64;
    for n in [1usize, 5] {
        let name = if n == 1 {
            "seal_to_1_device".to_owned()
        } else {
            format!("seal_to_{n}_devices")
        };
        group.bench_function(name, |b| {
            b.iter(|| {
                ctr += 1;
                black_box(seal_to(
                    &alice,
                    &usk,
                    &dek,
                    &bob,
                    &bob_devices[..n],
                    &plaintext,
                    ctr,
                ))
            })
        });
    }
    let sealed = seal_to(&alice, &usk, &dek, &bob, &bob_devices[..1], &plaintext, 1);
    let env = &sealed[0];
    let usk_public = usk.public();
    group.bench_function("open_one", |b| {
        b.iter(|| {
            let mut window = ReplayWindow::default();
            black_box(
                env.open(
                    Recipient {
                        uid: &bob,
                        dek: &bob_deks[0],
                    },
                    &usk_public,
                    &mut window,
                )
                .unwrap(),
            )
        })
    });
    group.finish();
}

criterion_group!(benches, fanout);
criterion_main!(benches);
