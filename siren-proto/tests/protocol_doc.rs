//! PROTOCOL.md must stay true: every message type, notice, error code, label and limit the code
//! knows appears in it, with the same value.

use siren_api::ErrorCode;
use siren_proto::labels;
use siren_proto::message::{self, ClientMessage, LinkMessage, ServerMessage, WireMessage};

fn doc() -> String {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../PROTOCOL.md");
    std::fs::read_to_string(path).expect("PROTOCOL.md at the workspace root")
}

#[test]
fn every_message_type_is_documented() {
    let doc = doc();
    for t in ClientMessage::TYPES
        .iter()
        .chain(ServerMessage::TYPES)
        .chain(LinkMessage::TYPES)
        .chain(&["hello", "hello_reply", "finish"])
        .chain(&[
            "directory_changed",
            "approval_request",
            "approval_challenge",
            "approval_reveal",
            "approval_grant",
            "approval_deny",
            "contact_request",
            "undeliverable",
        ])
    {
        assert!(
            doc.contains(&format!("`{t}`")),
            "PROTOCOL.md does not document `{t}`"
        );
    }
}

/// Every section of the vectors file and every kind of negative vector is named in §22, so a
/// reader knows what each one is.
#[test]
fn every_vector_kind_is_documented() {
    let doc = doc();
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/vectors/siren-v1.json");
    let vectors: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(path).expect("the vectors file")).unwrap();
    let keys = |v: &serde_json::Value| -> Vec<String> {
        v.as_object()
            .expect("a JSON object")
            .keys()
            .filter(|k| !["about", "points"].contains(&k.as_str()))
            .cloned()
            .collect()
    };
    let negative = &vectors["negative"];
    let mut names = keys(&vectors);
    names.extend(keys(negative));
    for kind in ["x25519_low_order", "ed25519_strict", "cbor_profile"] {
        names.extend(keys(&negative[kind]));
    }
    assert!(names.len() > 20, "{names:?}");
    for name in names {
        assert!(
            doc.contains(&format!("`{name}`")),
            "PROTOCOL.md §22 does not describe the vectors' `{name}`"
        );
    }
}

/// Every plaintext `type` has its row in §12's registry.
#[test]
fn every_plaintext_type_is_registered() {
    let doc = doc();
    for t in siren_proto::plaintext::TYPES {
        let row = format!("| `{t}` |");
        assert!(doc.contains(&row), "PROTOCOL.md §12 lacks the row {row:?}");
    }
}

#[test]
fn every_error_code_is_documented() {
    let doc = doc();
    for code in ErrorCode::ALL {
        let row = format!("| {} | `{}` |", code.as_u16(), code.name());
        assert!(doc.contains(&row), "PROTOCOL.md lacks the row {row:?}");
    }
}

#[test]
fn every_label_is_documented() {
    let doc = doc();
    for label in labels::ALL {
        assert!(
            doc.contains(&format!("`{label}`")),
            "PROTOCOL.md lacks label {label}"
        );
    }
}

#[test]
fn limits_match() {
    let doc = doc();
    for (text, value) in [
        ("1 MiB", siren_proto::frame::DEFAULT_MAX_FRAME == 1 << 20),
        (
            "| handshake frame | 4096 bytes |",
            siren_proto::handshake::MAX_HANDSHAKE_FRAME == 4096,
        ),
        ("| CBOR nesting | 32 levels |", message::MAX_NESTING == 32),
        ("| map key | 64 bytes |", message::MAX_KEY_LEN == 64),
        (
            "| map entries | 64 per map |",
            message::MAX_MAP_ENTRIES == 64,
        ),
        (
            "| auth data per step | 8192 bytes |",
            message::MAX_AUTH_DATA == 8192,
        ),
        (
            "| sequence numbers per `ack` | 1024 |",
            message::MAX_ACKS == 1024,
        ),
        (
            "| presence text | 256 bytes |",
            message::MAX_STATUS_TEXT == 256,
        ),
        (
            "| envelopes per `send` / `deliver` / `signal` / ids per ack | 256 |",
            message::MAX_ENVELOPES == 256,
        ),
        (
            "| ciphertext (`ct`) of one envelope in a `signal` | 4096 bytes |",
            message::MAX_SIGNAL_CIPHERTEXT == 4096,
        ),
        (
            "| live devices per user / revocations per listing | 32 / 64 |",
            siren_proto::records::MAX_DEVICES == 32
                && siren_proto::records::MAX_LISTED_REVOCATIONS == 64,
        ),
        (
            "| contacts / blocked per roster | 5000 / 5000; contact name 128 bytes |",
            siren_proto::roster::MAX_CONTACTS == 5000
                && siren_proto::roster::MAX_CONTACT_NAME == 128,
        ),
        (
            "within\n   the 128 counters",
            siren_proto::envelope::REPLAY_WINDOW == 128,
        ),
    ] {
        assert!(doc.contains(text), "PROTOCOL.md lacks {text:?}");
        assert!(value, "the code no longer matches {text:?}");
    }
}
