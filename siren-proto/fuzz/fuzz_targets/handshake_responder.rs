//! The responder (server) side of the handshake: `read_hello`, `reply` and `read_finish` on
//! hostile bytes. Nothing may panic.
//!
//! Byte 0 of the input picks a mode; the rest is the payload:
//!
//! * 0: the payload is a `hello`, read as client→server and as server→server;
//! * 1, 2, 3: the payload is XORed into a genuine hello (client to the current SEK, client to a
//!   retired SEK, server link), which must be accepted when the mask is all zero; an accepted
//!   hello is also answered (`reply`), which covers the SEK-rotation proof;
//! * 4: the payload is the `finish` after a genuine hello and reply;
//! * 5: the payload is XORed into the genuine `finish`, which must be accepted when the mask is
//!   all zero.

#![no_main]

mod common;

use std::sync::LazyLock;

use common::{rng, server_name, xor_into};
use libfuzzer_sys::fuzz_target;
use siren_proto::handshake::{
    self, AwaitingFinish, HandshakeError, Initiator, Peer, ResponderKeys, Role, SessionRequest,
};
use siren_proto::keys::{DekSecret, SekSecret};

const REPLY_SEED: u64 = 2;

struct Fixture {
    keys: ResponderKeys,
    device: DekSecret,
    link_sek: SekSecret,
    /// Genuine hellos: client→current SEK, client→retired SEK, server link.
    hellos: [(Vec<u8>, Role); 3],
    /// The genuine finish answering the reply made with `REPLY_SEED` to `hellos[0]`.
    finish: Vec<u8>,
}

static FIX: LazyLock<Fixture> = LazyLock::new(|| {
    let keys = ResponderKeys {
        name: server_name("alpha.test"),
        current: SekSecret::from_bytes([1; 32]),
        retired: vec![SekSecret::from_bytes([3; 32])],
    };
    let device = DekSecret::from_bytes([2; 32]);
    let link_sek = SekSecret::from_bytes([4; 32]);
    let mut r = rng(1);
    let (init, hello_current) = Initiator::client(
        &keys.name,
        &keys.current.public(),
        &device,
        SessionRequest::Open,
        &mut r,
    )
    .expect("client hello");
    let (_, hello_retired) = Initiator::client(
        &keys.name,
        &keys.retired[0].public(),
        &device,
        SessionRequest::Open,
        &mut r,
    )
    .expect("client hello to the retired key");
    let (_, hello_link) = Initiator::server(
        &server_name("beta.test"),
        &link_sek,
        &keys.name,
        &keys.current.public(),
        &mut r,
    )
    .expect("link hello");
    let (_, reply) = handshake::read_hello(&keys, Role::ClientToServer, &hello_current)
        .expect("genuine hello")
        .reply(&mut rng(REPLY_SEED))
        .expect("reply");
    let (_, finish) = init.read_reply(&reply).expect("genuine reply");
    Fixture {
        keys,
        device,
        link_sek,
        hellos: [
            (hello_current, Role::ClientToServer),
            (hello_retired, Role::ClientToServer),
            (hello_link, Role::ServerToServer),
        ],
        finish,
    }
});

/// A responder that read `hellos[0]` and sent the reply the genuine `finish` answers.
fn awaiting_finish(f: &Fixture) -> AwaitingFinish {
    handshake::read_hello(&f.keys, Role::ClientToServer, &f.hellos[0].0)
        .expect("genuine hello")
        .reply(&mut rng(REPLY_SEED))
        .expect("reply")
        .0
}

fn touch(e: &HandshakeError) {
    let _ = e.code();
    let _ = e.to_string();
}

fuzz_target!(|data: &[u8]| {
    let f = &*FIX;
    let Some((&mode, payload)) = data.split_first() else {
        return;
    };
    match mode % 6 {
        0 => {
            for role in [Role::ClientToServer, Role::ServerToServer] {
                match handshake::read_hello(&f.keys, role, payload) {
                    Ok(received) => {
                        let _ = received.peer();
                        let _ = received.reply(&mut rng(3));
                    }
                    Err(e) => touch(&e),
                }
            }
        }
        m @ 1..=3 => {
            let (base, role) = &f.hellos[usize::from(m) - 1];
            let hello = xor_into(base, payload);
            match handshake::read_hello(&f.keys, *role, &hello) {
                Ok(received) => {
                    if hello == *base {
                        let expected = match role {
                            Role::ClientToServer => Peer::Device(f.device.public()),
                            Role::ServerToServer => Peer::Server {
                                name: server_name("beta.test"),
                                sek: f.link_sek.public(),
                            },
                        };
                        assert_eq!(received.peer(), &expected);
                    }
                    let _ = received
                        .reply(&mut rng(3))
                        .expect("reply to an accepted hello");
                }
                Err(e) => {
                    assert!(hello != *base, "genuine hello refused: {e}");
                    touch(&e);
                }
            }
        }
        4 => {
            if let Err(e) = awaiting_finish(f).read_finish(payload) {
                touch(&e);
            }
        }
        _ => {
            let finish = xor_into(&f.finish, payload);
            match awaiting_finish(f).read_finish(&finish) {
                Ok(done) => {
                    assert_eq!(done.peer, Peer::Device(f.device.public()));
                    assert_eq!(done.request, SessionRequest::Open);
                }
                Err(e) => {
                    assert!(finish != f.finish, "genuine finish refused: {e}");
                    touch(&e);
                }
            }
        }
    }
});
