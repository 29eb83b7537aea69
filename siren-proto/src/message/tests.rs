use super::*;
use crate::testing::TestRng;
use ciborium::Value;

fn cbor(v: &Value) -> Vec<u8> {
    let mut out = Vec::new();
    ciborium::into_writer(v, &mut out).unwrap();
    out
}

fn map(fields: Vec<(&str, Value)>) -> Value {
    Value::Map(
        fields
            .into_iter()
            .map(|(k, v)| (Value::Text(k.into()), v))
            .collect(),
    )
}

#[test]
fn simple_messages_round_trip_and_look_as_documented() {
    let msg = ClientMessage::Lookup {
        rid: 7,
        uid: siren_api::Uid::parse("bob@beta.test").unwrap(),
    };
    let bytes = encode(&msg);
    assert_eq!(decode::<ClientMessage>(&bytes).unwrap(), msg);
    // The documented shape: a map with t, rid, uid.
    let expected = map(vec![
        ("t", Value::Text("lookup".into())),
        ("rid", Value::Integer(7.into())),
        ("uid", Value::Text("bob@beta.test".into())),
    ]);
    assert_eq!(bytes, cbor(&expected));
    assert_eq!(
        encode(&ClientMessage::Bye),
        cbor(&map(vec![("t", Value::Text("bye".into()))]))
    );
}

#[test]
fn unknown_type_is_reported_with_its_rid() {
    let bytes = cbor(&map(vec![
        ("t", Value::Text("teleport".into())),
        ("rid", Value::Integer(42.into())),
    ]));
    let err = decode::<ClientMessage>(&bytes).unwrap_err();
    assert_eq!(err.kind, DecodeErrorKind::UnknownType("teleport".into()));
    assert_eq!(err.rid, Some(42));
    assert_eq!(err.code(), ErrorCode::UnknownMessageType);
    // A server message type is unknown to a server reading client messages.
    let bytes = encode(&ServerMessage::Pong { rid: 1 });
    assert!(matches!(
        decode::<ClientMessage>(&bytes).unwrap_err().kind,
        DecodeErrorKind::UnknownType(_)
    ));
}

#[test]
fn unknown_fields_are_ignored() {
    let bytes = cbor(&map(vec![
        ("t", Value::Text("ping".into())),
        ("rid", Value::Integer(3.into())),
        ("from_the_future", Value::Array(vec![Value::Bool(true)])),
    ]));
    assert_eq!(
        decode::<ClientMessage>(&bytes).unwrap(),
        ClientMessage::Ping { rid: 3 }
    );
}

#[test]
fn malformed_messages_keep_their_rid() {
    // `lookup` without `uid`.
    let bytes = cbor(&map(vec![
        ("t", Value::Text("lookup".into())),
        ("rid", Value::Integer(9.into())),
    ]));
    let err = decode::<ClientMessage>(&bytes).unwrap_err();
    assert!(matches!(err.kind, DecodeErrorKind::Malformed(_)));
    assert_eq!(err.rid, Some(9));
    assert_eq!(err.code(), ErrorCode::MalformedMessage);
    // An invalid UID is malformed too (parse, don't validate).
    let bytes = cbor(&map(vec![
        ("t", Value::Text("lookup".into())),
        ("rid", Value::Integer(9.into())),
        ("uid", Value::Text("no at sign".into())),
    ]));
    assert!(matches!(
        decode::<ClientMessage>(&bytes).unwrap_err().kind,
        DecodeErrorKind::Malformed(_)
    ));
    // Not a map, no t, garbage, trailing bytes.
    for bad in [
        cbor(&Value::Integer(1.into())),
        cbor(&map(vec![("rid", Value::Integer(1.into()))])),
        vec![0xff, 0x00, 0x13],
        vec![],
        {
            let mut b = encode(&ClientMessage::Ping { rid: 1 });
            b.push(0);
            b
        },
    ] {
        assert!(
            matches!(
                decode::<ClientMessage>(&bad).unwrap_err().kind,
                DecodeErrorKind::Malformed(_)
            ),
            "{bad:?}"
        );
    }
}

#[test]
fn hostile_cbor_is_refused_cheaply() {
    // A byte string claiming 4 GiB with 3 bytes behind it.
    let mut lying = cbor(&map(vec![
        ("t", Value::Text("auth_step".into())),
        ("rid", Value::Integer(1.into())),
    ]));
    lying[0] += 1; // one more map entry
    lying.extend_from_slice(&[
        0x64, b'd', b'a', b't', b'a', 0x5a, 0xff, 0xff, 0xff, 0xff, 1, 2, 3,
    ]);
    assert!(decode::<ClientMessage>(&lying).is_err());
    // Nesting far beyond any real message.
    let mut deep = vec![0x81u8; 10_000];
    deep.push(0x00);
    assert!(decode::<ClientMessage>(&deep).is_err());
    let mut deep_in_field = cbor(&map(vec![
        ("t", Value::Text("ping".into())),
        ("rid", Value::Integer(1.into())),
    ]));
    deep_in_field[0] += 1;
    deep_in_field.extend_from_slice(&[0x61, b'x']);
    deep_in_field.extend(std::iter::repeat_n(0x81u8, 10_000));
    deep_in_field.push(0);
    assert!(decode::<ClientMessage>(&deep_in_field).is_err());
}

#[test]
fn limits_are_enforced() {
    let acks = ClientMessage::Ack {
        seqs: (0..(MAX_ACKS as u64 + 1)).collect(),
    };
    let err = decode::<ClientMessage>(&encode(&acks)).unwrap_err();
    assert_eq!(
        err.kind,
        DecodeErrorKind::Limit {
            what: "acks",
            max: MAX_ACKS
        }
    );
    assert_eq!(err.code(), ErrorCode::LimitExceeded);
    let presence = ClientMessage::Publish {
        rid: 1,
        presence: Presence {
            status: PresenceStatus::Away,
            text: Some("x".repeat(MAX_STATUS_TEXT + 1)),
        },
    };
    assert!(matches!(
        decode::<ClientMessage>(&encode(&presence))
            .unwrap_err()
            .kind,
        DecodeErrorKind::Limit {
            what: "status text",
            ..
        }
    ));
}

#[test]
fn every_type_name_is_distinct() {
    for types in [
        ClientMessage::TYPES,
        ServerMessage::TYPES,
        LinkMessage::TYPES,
    ] {
        let set: std::collections::HashSet<_> = types.iter().collect();
        assert_eq!(set.len(), types.len());
    }
    // Keep the RNG import honest: ids are random.
    let mut rng = TestRng::seeded(1);
    assert_ne!(
        crate::ids::MessageId::random(&mut rng),
        crate::ids::MessageId::random(&mut rng)
    );
}

#[test]
fn encode_deliver_matches_the_serde_encoding() {
    let item = QueueItem::Notice {
        notice: Notice::ContactRequest {
            from: siren_api::Uid::parse("eve@x.test").unwrap(),
        },
    };
    for seq in [0u64, 23, 24, 255, 65_536, u64::MAX] {
        let spliced = encode_deliver(seq, &encode_value(&item));
        let whole = encode(&ServerMessage::Deliver {
            seq,
            item: item.clone(),
        });
        assert_eq!(spliced, whole);
        assert_eq!(
            decode::<ServerMessage>(&spliced).unwrap(),
            ServerMessage::Deliver {
                seq,
                item: item.clone()
            }
        );
    }
}

#[test]
fn undeliverable_notices_look_as_documented_and_bound_their_reason() {
    let notice = |reason: String| QueueItem::Notice {
        notice: Notice::Undeliverable {
            id: crate::ids::MessageId::from_bytes([7; 16]),
            to: siren_api::Uid::parse("bob@beta.test").unwrap(),
            code: 107,
            reason,
        },
    };
    let item = notice("too large".into());
    let bytes = encode(&ServerMessage::Deliver {
        seq: 1,
        item: item.clone(),
    });
    let expected = map(vec![
        ("t", Value::Text("deliver".into())),
        ("seq", Value::Integer(1.into())),
        (
            "item",
            map(vec![
                ("k", Value::Text("notice".into())),
                (
                    "notice",
                    map(vec![
                        ("k", Value::Text("undeliverable".into())),
                        ("id", Value::Bytes(vec![7; 16])),
                        ("to", Value::Text("bob@beta.test".into())),
                        ("code", Value::Integer(107.into())),
                        ("reason", Value::Text("too large".into())),
                    ]),
                ),
            ]),
        ),
    ]);
    assert_eq!(bytes, cbor(&expected));
    assert_eq!(
        decode::<ServerMessage>(&bytes).unwrap(),
        ServerMessage::Deliver { seq: 1, item }
    );
    let long = encode(&ServerMessage::Deliver {
        seq: 1,
        item: notice("x".repeat(MAX_ERROR_TEXT + 1)),
    });
    assert_eq!(
        decode::<ServerMessage>(&long).unwrap_err().code(),
        ErrorCode::LimitExceeded
    );
}

/// A stored `QueueItem::Message` gives up its envelope's bytes without a decode, and a link
/// `deliver` spliced from such bytes is the serde encoding, which decodes back; other items and
/// other layouts are not taken for envelopes.
#[test]
fn queued_envelopes_splice_into_link_delivers() {
    let envs: Vec<_> = [0, 23, 24, 300, 70_000].map(envelope).into();
    let stored: Vec<Vec<u8>> = envs
        .iter()
        .map(|env| encode_value(&QueueItem::Message { env: env.clone() }))
        .collect();
    let raw: Vec<&[u8]> = stored
        .iter()
        .map(|item| queued_envelope(item).unwrap())
        .collect();
    for (env, bytes) in envs.iter().zip(&raw) {
        assert_eq!(*bytes, encode_value(env).as_slice());
    }
    for (rid, count) in [(0u32, 0usize), (1, 1), (23, 2), (24, 5), (u32::MAX, 5)] {
        let Some(these) = raw.get(..count) else {
            panic!("{count} envelopes");
        };
        let msgs = envs.iter().take(count).cloned().collect::<Vec<_>>();
        let whole = encode(&LinkMessage::Deliver {
            rid,
            msgs: msgs.clone(),
        });
        let spliced = encode_link_deliver(rid, these);
        assert_eq!(spliced, whole);
        assert_eq!(
            decode::<LinkMessage>(&spliced).unwrap(),
            LinkMessage::Deliver { rid, msgs }
        );
    }
    let notice = encode_value(&QueueItem::Notice {
        notice: Notice::ContactRequest {
            from: siren_api::Uid::parse("eve@x.test").unwrap(),
        },
    });
    assert_eq!(queued_envelope(&notice), None);
    // The same item with its keys the other way round (another writer's layout): not spliced.
    let reordered = cbor(&map(vec![
        ("env", Value::Bytes(vec![1])),
        ("k", Value::Text("message".into())),
    ]));
    assert_eq!(queued_envelope(&reordered), None);
    assert_eq!(queued_envelope(QUEUED_MESSAGE_PREFIX), None);
}

/// An envelope with fixed fields and `ct_len` bytes of ciphertext.
fn envelope(ct_len: usize) -> crate::envelope::Envelope {
    use crate::keys::{DekPublic, Signature};
    crate::envelope::Envelope {
        id: crate::ids::MessageId::from_bytes([1; 16]),
        from: siren_api::Uid::parse("alice@alpha.test").unwrap(),
        from_dek: DekPublic::from_bytes([2; 32]),
        to: siren_api::Uid::parse("bob@beta.test").unwrap(),
        to_dek: DekPublic::from_bytes([3; 32]),
        ctr: 9,
        eph: [4; 32],
        ct: vec![5; ct_len],
        sig: Signature::from_bytes([6; 64]),
    }
}

/// A `signal` (PROTOCOL.md §10, §14): the device request, the delivery to a live session and
/// the link message carry whole envelopes, as documented, within the signal limits.
#[test]
fn signals_look_as_documented_and_are_bounded() {
    let env = envelope;
    let one = env(40);
    let env_value = map(vec![
        ("id", Value::Bytes(vec![1; 16])),
        ("from", Value::Text("alice@alpha.test".into())),
        ("from_dek", Value::Bytes(vec![2; 32])),
        ("to", Value::Text("bob@beta.test".into())),
        ("to_dek", Value::Bytes(vec![3; 32])),
        ("ctr", Value::Integer(9.into())),
        ("eph", Value::Bytes(vec![4; 32])),
        ("ct", Value::Bytes(vec![5; 40])),
        ("sig", Value::Bytes(vec![6; 64])),
    ]);
    assert_eq!(encode_value(&one), cbor(&env_value));

    let request = ClientMessage::Signal {
        rid: 3,
        msgs: vec![one.clone()],
    };
    let bytes = encode(&request);
    assert_eq!(
        bytes,
        cbor(&map(vec![
            ("t", Value::Text("signal".into())),
            ("rid", Value::Integer(3.into())),
            ("msgs", Value::Array(vec![env_value.clone()])),
        ]))
    );
    assert_eq!(decode::<ClientMessage>(&bytes).unwrap(), request);
    assert_eq!(request.request_id(), Some(3));

    let delivery = ServerMessage::Signal { env: one.clone() };
    let bytes = encode(&delivery);
    assert_eq!(
        bytes,
        cbor(&map(vec![
            ("t", Value::Text("signal".into())),
            ("env", env_value.clone()),
        ]))
    );
    assert_eq!(decode::<ServerMessage>(&bytes).unwrap(), delivery);

    let link = LinkMessage::Signal {
        msgs: vec![one.clone()],
    };
    let bytes = encode(&link);
    assert_eq!(
        bytes,
        cbor(&map(vec![
            ("t", Value::Text("signal".into())),
            ("msgs", Value::Array(vec![env_value])),
        ]))
    );
    assert_eq!(decode::<LinkMessage>(&bytes).unwrap(), link);

    // The limits: a ciphertext of 4096 bytes is a signal, one byte more is not; at most 256
    // envelopes. Each refusal names the request (107 with its rid).
    let largest = ClientMessage::Signal {
        rid: 4,
        msgs: vec![env(MAX_SIGNAL_CIPHERTEXT)],
    };
    assert!(decode::<ClientMessage>(&encode(&largest)).is_ok());
    for too_much in [
        ClientMessage::Signal {
            rid: 5,
            msgs: vec![env(MAX_SIGNAL_CIPHERTEXT + 1)],
        },
        ClientMessage::Signal {
            rid: 5,
            msgs: vec![one.clone(); MAX_ENVELOPES + 1],
        },
    ] {
        let e = decode::<ClientMessage>(&encode(&too_much)).unwrap_err();
        assert_eq!(e.code(), ErrorCode::LimitExceeded);
        assert_eq!(e.rid, Some(5));
    }
    let e = decode::<ServerMessage>(&encode(&ServerMessage::Signal {
        env: env(MAX_SIGNAL_CIPHERTEXT + 1),
    }))
    .unwrap_err();
    assert_eq!(e.code(), ErrorCode::LimitExceeded);
    let e = decode::<LinkMessage>(&encode(&LinkMessage::Signal {
        msgs: vec![env(MAX_SIGNAL_CIPHERTEXT + 1)],
    }))
    .unwrap_err();
    assert_eq!(e.code(), ErrorCode::LimitExceeded);
}

/// `send` and `ack` are decoded straight into their fields ([`WireMessage::decode_direct`]):
/// the same message, and the same refusals, as serde's tagged-enum path.
#[test]
fn send_and_ack_decode_directly_as_the_generic_path_does() {
    let env = envelope(40);
    let generic = |bytes: &[u8]| cbor::decode_checked::<ClientMessage>(bytes);
    let direct = |t: &str, bytes: &[u8]| ClientMessage::decode_direct(t, bytes).unwrap();
    for msg in [
        ClientMessage::Send {
            rid: 4,
            msgs: vec![env.clone(), env.clone()],
        },
        ClientMessage::Send {
            rid: 5,
            msgs: Vec::new(),
        },
        ClientMessage::Ack {
            seqs: vec![1, 2, u64::MAX],
        },
    ] {
        let bytes = encode(&msg);
        let t = if matches!(msg, ClientMessage::Ack { .. }) {
            "ack"
        } else {
            "send"
        };
        assert_eq!(direct(t, &bytes), Ok(msg.clone()));
        assert_eq!(generic(&bytes), Ok(msg.clone()));
        assert_eq!(decode::<ClientMessage>(&bytes).unwrap(), msg);
    }
    // Unknown keys are ignored by both; missing or mistyped fields refused by both.
    let extra = cbor(&map(vec![
        ("t", Value::Text("ack".into())),
        ("seqs", Value::Array(vec![Value::Integer(7.into())])),
        ("later", Value::Bool(true)),
    ]));
    assert_eq!(direct("ack", &extra), generic(&extra));
    for bad in [
        map(vec![
            ("t", Value::Text("send".into())),
            ("msgs", Value::Array(vec![])),
        ]),
        map(vec![
            ("t", Value::Text("send".into())),
            ("rid", Value::Integer(1.into())),
            ("msgs", Value::Text("no".into())),
        ]),
        map(vec![
            ("t", Value::Text("send".into())),
            ("rid", Value::Integer((-1).into())),
            ("msgs", Value::Array(vec![])),
        ]),
    ] {
        let bytes = cbor(&bad);
        assert!(direct("send", &bytes).is_err(), "{bad:?}");
        assert!(generic(&bytes).is_err(), "{bad:?}");
        assert!(decode::<ClientMessage>(&bytes).is_err(), "{bad:?}");
    }
}
