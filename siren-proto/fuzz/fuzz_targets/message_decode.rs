//! Message decoding: the input is decoded as a `ClientMessage`, a `ServerMessage` and a
//! `LinkMessage`. Nothing may panic, and whatever decodes must round-trip: decoding
//! `encode(msg)` gives `msg` back, and encoding is stable (`encode(decode(encode(msg)))` is the
//! same bytes as `encode(msg)`).

#![no_main]

use std::fmt::Debug;

use libfuzzer_sys::fuzz_target;
use siren_proto::message::{self, ClientMessage, LinkMessage, ServerMessage, WireMessage};

fn check<M: WireMessage + PartialEq + Debug>(data: &[u8]) {
    match message::decode::<M>(data) {
        Ok(msg) => {
            let bytes = message::encode(&msg);
            let again = message::decode::<M>(&bytes).unwrap_or_else(|e| {
                panic!("re-encoding of {msg:?} does not decode: {e} (bytes {bytes:02x?})")
            });
            assert_eq!(again, msg, "round trip changed the message");
            assert_eq!(message::encode(&again), bytes, "encoding is not stable");
        }
        Err(e) => {
            // Exercise the error paths callers use.
            let _ = e.code();
            let _ = e.to_string();
        }
    }
}

fuzz_target!(|data: &[u8]| {
    check::<ClientMessage>(data);
    check::<ServerMessage>(data);
    check::<LinkMessage>(data);
});
