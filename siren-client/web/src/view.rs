//! The chat's state as the page's JavaScript sees it: plain objects with camelCase fields, ids
//! in hex, device keys in base64. Every string in them may come from someone else: the page
//! puts them in the document as text, never as markup.

use js_sys::{Array, Object, Reflect, Uint8Array};
use siren_client_core::model::{Banner, Body, ChatMessage, FileProgress, MessageState, Status};
use siren_client_session::chat::Snapshot;
use siren_proto::message::PresenceStatus;
use wasm_bindgen::JsValue;

use crate::driver::Update;

/// Sets `key` on `object`.
pub fn set(object: &Object, key: &str, value: impl Into<JsValue>) {
    let _ = Reflect::set(object, &JsValue::from_str(key), &value.into());
}

/// A text, or `null`.
fn or_null(text: Option<&str>) -> JsValue {
    text.map_or(JsValue::NULL, JsValue::from_str)
}

/// A device's key (base64, as commands take it) and its fingerprint (as people compare it).
fn set_device(o: &Object, dek: &siren_proto::keys::DekPublic) {
    set(o, "device", dek.to_base64());
    set(
        o,
        "fingerprint",
        siren_proto::fingerprint::fingerprint(dek.as_bytes()),
    );
}

fn object(fill: impl FnOnce(&Object)) -> JsValue {
    let o = Object::new();
    fill(&o);
    o.into()
}

fn array<T>(items: impl IntoIterator<Item = T>, each: impl Fn(T) -> JsValue) -> JsValue {
    items.into_iter().map(each).collect::<Array>().into()
}

/// An update as a plain object: `{type: "snapshot", …}`, `{type: "file", name, data}`,
/// `{type: "approval-code", code}`, `{type: "confirm-approval", code, fingerprint}`,
/// `{type: "ended", reason}`.
pub fn update(update: &Update) -> JsValue {
    match update {
        Update::Snapshot(snapshot) => self::snapshot(snapshot),
        Update::File { name, data } => object(|o| {
            set(o, "type", "file");
            set(o, "name", name.as_str());
            set(o, "data", Uint8Array::from(data.as_slice()));
        }),
        Update::ApprovalCode(code) => object(|o| {
            set(o, "type", "approval-code");
            set(o, "code", code.as_str());
        }),
        Update::ConfirmApproval { code, fingerprint } => object(|o| {
            set(o, "type", "confirm-approval");
            set(o, "code", code.as_str());
            set(o, "fingerprint", fingerprint.as_str());
        }),
        Update::Ended(reason) => object(|o| {
            set(o, "type", "ended");
            set(o, "reason", reason.as_str());
        }),
    }
}

fn presence(status: PresenceStatus) -> &'static str {
    match status {
        PresenceStatus::Available => "available",
        PresenceStatus::Away => "away",
        PresenceStatus::Busy => "busy",
        PresenceStatus::Offline => "offline",
    }
}

/// `{type: "snapshot", me, status: {state, retryIn, why}, connection, devices: [{device,
/// fingerprint, name, added, this}], conversations: [{peer, group: null | {members, admins,
/// version, member}, name, unread, preview, lastAt, presence, typing, verified, keyChanged,
/// blocked, safetyNumber}], requests: [uid], approvals: [{device, name, code}], banners: [{kind,
/// text, uid}], messages: {peer: [message]}}`. A conversation's `peer` is the user's id, or `#`
/// and the group's id in hex.
fn snapshot(s: &Snapshot) -> JsValue {
    let view = &s.view;
    object(|o| {
        set(o, "type", "snapshot");
        set(o, "me", view.me.to_string());
        set(
            o,
            "status",
            object(|st| match &view.status {
                Status::Connecting => set(st, "state", "connecting"),
                Status::Online => set(st, "state", "online"),
                Status::Offline { retry_in, why } => {
                    set(st, "state", "offline");
                    set(st, "retryIn", *retry_in as f64);
                    set(st, "why", why.as_str());
                }
            }),
        );
        set(o, "connection", s.connection.as_str());
        set(
            o,
            "devices",
            array(&s.devices, |d| {
                object(|dobj| {
                    set_device(dobj, &d.dek);
                    set(dobj, "name", or_null(d.name.as_deref()));
                    set(dobj, "added", d.added as f64);
                    set(dobj, "this", d.this);
                })
            }),
        );
        set(
            o,
            "conversations",
            array(&view.conversations, |c| {
                object(|co| {
                    set(co, "peer", c.chat.to_string());
                    let group = c.group.as_ref().map(|g| {
                        object(|go| {
                            let uids = |u: &Vec<siren_api::Uid>| array(u, |u| u.to_string().into());
                            set(go, "members", uids(&g.members));
                            set(go, "admins", uids(&g.admins));
                            set(go, "version", g.version as f64);
                            set(go, "member", g.members.contains(&view.me));
                        })
                    });
                    set(co, "group", group.unwrap_or(JsValue::NULL));
                    set(co, "name", or_null(c.name.as_deref()));
                    set(co, "unread", c.unread);
                    set(co, "preview", or_null(c.preview.as_deref()));
                    set(co, "lastAt", c.last_at as f64);
                    set(co, "presence", or_null(c.presence.map(presence)));
                    set(co, "typing", c.typing);
                    set(co, "verified", c.verified);
                    set(co, "keyChanged", c.key_changed);
                    set(co, "blocked", c.blocked);
                    set(
                        co,
                        "safetyNumber",
                        or_null(
                            c.chat
                                .user()
                                .and_then(|u| s.safety.get(u))
                                .map(String::as_str),
                        ),
                    );
                })
            }),
        );
        set(
            o,
            "requests",
            array(&view.requests, |r| r.from.to_string().into()),
        );
        set(
            o,
            "approvals",
            array(&view.approvals, |a| {
                object(|ao| {
                    set_device(ao, &a.new_dek);
                    set(ao, "name", or_null(a.name.as_deref()));
                    set(ao, "code", or_null(a.code.as_deref()));
                })
            }),
        );
        set(
            o,
            "banners",
            array(&view.banners, |b| {
                object(|bo| match b {
                    Banner::KeyChanged { uid } => {
                        set(bo, "kind", "key-changed");
                        set(bo, "uid", uid.to_string());
                        set(
                            bo,
                            "text",
                            format!("{uid}'s keys changed: compare your safety number again"),
                        );
                    }
                    Banner::Problem(text) => {
                        set(bo, "kind", "problem");
                        set(bo, "text", text.as_str());
                    }
                    Banner::Info(text) => {
                        set(bo, "kind", "info");
                        set(bo, "text", text.as_str());
                    }
                })
            }),
        );
        set(
            o,
            "messages",
            object(|mo| {
                for (peer, msgs) in &s.messages {
                    set(mo, &peer.to_string(), array(msgs, message));
                }
            }),
        );
    })
}

/// `{id, from, outgoing, ts, at, edited, state, failed, body: {kind: "text", text} | {kind:
/// "file", file, name, size, progress, have, of, path, failed} | {kind: "deleted"} | {kind:
/// "unsupported", type} | {kind: "event", text}}`; `from` is who wrote it (in a group: the
/// member; with one user: that user, or this account).
fn message(m: &ChatMessage) -> JsValue {
    object(|o| {
        set(o, "id", m.id.to_hex());
        set(o, "from", m.peer.to_string());
        set(o, "outgoing", m.outgoing);
        set(o, "ts", m.ts as f64);
        set(o, "at", m.at as f64);
        set(o, "edited", m.edited);
        let state = match &m.state {
            MessageState::Sending => "sending",
            MessageState::Sent => "sent",
            MessageState::Delivered => "delivered",
            MessageState::Read => "read",
            MessageState::Failed(why) => {
                set(o, "failed", why.as_str());
                "failed"
            }
            MessageState::Unread => "unread",
            MessageState::Seen => "seen",
        };
        set(o, "state", state);
        set(
            o,
            "body",
            object(|b| match &m.body {
                Body::Text(text) => {
                    set(b, "kind", "text");
                    set(b, "text", text.as_str());
                }
                Body::File {
                    file,
                    name,
                    size,
                    progress,
                } => {
                    set(b, "kind", "file");
                    set(b, "file", file.to_hex());
                    set(b, "name", name.as_str());
                    set(b, "size", *size as f64);
                    let (state, count) = match progress {
                        FileProgress::Sending { sent, of } => ("sending", Some((*sent, *of))),
                        FileProgress::Sent => ("sent", None),
                        FileProgress::Receiving { have, of } => ("receiving", Some((*have, *of))),
                        FileProgress::Complete => ("complete", None),
                        FileProgress::Saved { path } => {
                            set(b, "path", path.as_str());
                            ("saved", None)
                        }
                        FileProgress::Failed(why) => {
                            set(b, "failed", why.as_str());
                            ("failed", None)
                        }
                    };
                    set(b, "progress", state);
                    if let Some((done, of)) = count {
                        set(b, "done", done);
                        set(b, "of", of);
                    }
                }
                Body::Deleted => set(b, "kind", "deleted"),
                Body::Unsupported(kind) => {
                    set(b, "kind", "unsupported");
                    set(b, "type", kind.as_str());
                }
                Body::Event(text) => {
                    set(b, "kind", "event");
                    set(b, "text", text.as_str());
                }
            }),
        );
    })
}
