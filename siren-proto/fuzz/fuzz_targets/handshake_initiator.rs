//! The initiator (client) side of the handshake: `Initiator::read_reply` on hostile bytes.
//! Nothing may panic.
//!
//! Byte 0 of the input picks a mode; the rest is the payload:
//!
//! * 0: the payload is the `hello_reply` to a client hello;
//! * 1: the payload is XORed into the genuine reply to a client hello;
//! * 2: the same, for a client that pinned a retired SEK, so the reply carries a SEK rotation and
//!   its proof;
//! * 3: the same, for a server→server link.
//!
//! In modes 1 to 3 an all-zero mask must give a finished handshake with the expected result.

#![no_main]

mod common;

use std::sync::LazyLock;

use common::{rng, server_name, xor_into};
use libfuzzer_sys::fuzz_target;
use siren_api::ServerName;
use siren_proto::handshake::{self, Initiator, ResponderKeys, Role, SessionRequest};
use siren_proto::keys::{DekSecret, SekPublic, SekSecret};

/// Every initiator is started from this seed, so its hello (and ephemeral) is always the same
/// and the precomputed genuine replies match it.
const INIT_SEED: u64 = 7;

#[derive(Clone, Copy)]
enum Kind {
    Client,
    ClientPinnedRetired,
    Link,
}

struct Fixture {
    name: ServerName,
    link_name: ServerName,
    current: SekPublic,
    retired: SekPublic,
    device: DekSecret,
    link_sek: SekSecret,
    /// Genuine replies for `Kind::Client`, `Kind::ClientPinnedRetired` and `Kind::Link`.
    replies: [Vec<u8>; 3],
}

impl Fixture {
    fn initiator(&self, kind: Kind) -> Initiator {
        let mut r = rng(INIT_SEED);
        let started = match kind {
            Kind::Client => Initiator::client(
                &self.name,
                &self.current,
                &self.device,
                SessionRequest::Open,
                &mut r,
            ),
            Kind::ClientPinnedRetired => Initiator::client(
                &self.name,
                &self.retired,
                &self.device,
                SessionRequest::Open,
                &mut r,
            ),
            Kind::Link => Initiator::server(
                &self.link_name,
                &self.link_sek,
                &self.name,
                &self.current,
                &mut r,
            ),
        };
        started.expect("initiator starts").0
    }
}

static FIX: LazyLock<Fixture> = LazyLock::new(|| {
    let keys = ResponderKeys {
        name: server_name("alpha.test"),
        current: SekSecret::from_bytes([1; 32]),
        retired: vec![SekSecret::from_bytes([3; 32])],
    };
    let device = DekSecret::from_bytes([2; 32]);
    let link_sek = SekSecret::from_bytes([4; 32]);
    let link_name = server_name("beta.test");
    let reply_for = |kind: Kind, pinned: &SekSecret| {
        let mut r = rng(INIT_SEED);
        let (_, hello) = match kind {
            Kind::Link => {
                Initiator::server(&link_name, &link_sek, &keys.name, &pinned.public(), &mut r)
            }
            _ => Initiator::client(
                &keys.name,
                &pinned.public(),
                &device,
                SessionRequest::Open,
                &mut r,
            ),
        }
        .expect("hello");
        let role = match kind {
            Kind::Link => Role::ServerToServer,
            _ => Role::ClientToServer,
        };
        handshake::read_hello(&keys, role, &hello)
            .expect("genuine hello")
            .reply(&mut rng(8))
            .expect("reply")
            .1
    };
    let replies = [
        reply_for(Kind::Client, &keys.current),
        reply_for(Kind::ClientPinnedRetired, &keys.retired[0]),
        reply_for(Kind::Link, &keys.current),
    ];
    Fixture {
        current: keys.current.public(),
        retired: keys.retired[0].public(),
        name: keys.name.clone(),
        link_name,
        device,
        link_sek,
        replies,
    }
});

fuzz_target!(|data: &[u8]| {
    let f = &*FIX;
    let Some((&mode, payload)) = data.split_first() else {
        return;
    };
    let (kind, reply) = match mode % 4 {
        0 => {
            if let Err(e) = f.initiator(Kind::Client).read_reply(payload) {
                let _ = e.code();
                let _ = e.to_string();
            }
            return;
        }
        1 => (Kind::Client, &f.replies[0]),
        2 => (Kind::ClientPinnedRetired, &f.replies[1]),
        _ => (Kind::Link, &f.replies[2]),
    };
    let mutated = xor_into(reply, payload);
    match f.initiator(kind).read_reply(&mutated) {
        Ok((mut done, finish)) => {
            assert!(!finish.is_empty());
            if mutated == *reply {
                let expected_rotation = match kind {
                    Kind::ClientPinnedRetired => Some(f.current),
                    _ => None,
                };
                assert_eq!(done.rotated_sek, expected_rotation);
            }
            let _ = done.transport.seal(b"x").expect("transport seals");
        }
        Err(e) => {
            assert!(mutated != *reply, "genuine reply refused: {e}");
            let _ = e.code();
            let _ = e.to_string();
        }
    }
});
