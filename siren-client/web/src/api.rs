//! What the page's JavaScript calls: a [`Session`] whose methods return promises, and updates
//! delivered to a callback as plain objects.

use std::collections::VecDeque;

use futures_channel::{mpsc, oneshot};
use js_sys::{Object, Promise, Reflect};
use siren_api::Uid;
use siren_client_session::{Client, Event, LoginOutcome, Secrets};
use siren_proto::keys::SekPublic;
use siren_proto::plaintext::Plaintext;
use wasm_bindgen::prelude::*;
use wasm_bindgen_futures::future_to_promise;

use crate::driver::{self, Command, Update};
use crate::link::ServerAddress;
use crate::platform::Browser;
use crate::store::MemoryStore;

/// One account's session in the page.
#[wasm_bindgen]
pub struct Session {
    commands: mpsc::UnboundedSender<Command>,
}

#[wasm_bindgen]
impl Session {
    /// A session of account `uid` with its server's web listener at `url`
    /// (`wss://host/ws`), which must prove it holds `sek` (the server's key, base64).
    /// `on_update` is called with each update: `{type: "message", from, id, text}` (or `kind`
    /// instead of `text` for what is not a text), `{type: "refused", from, reason}`,
    /// `{type: "signal", from, kind}`, `{type: "notice", notice}`,
    /// `{type: "presence", from, status}`, `{type: "drained"}`,
    /// `{type: "disconnected", reason}` (it reconnects by itself), `{type: "connected"}`.
    #[wasm_bindgen(constructor)]
    pub fn new(
        url: String,
        uid: &str,
        sek: &str,
        on_update: js_sys::Function,
    ) -> Result<Session, JsError> {
        let uid = Uid::parse(uid).map_err(|e| JsError::new(&format!("{uid}: {e}")))?;
        let sek = SekPublic::from_base64(sek)
            .map_err(|e| JsError::new(&format!("the server key: {e}")))?;
        let server = ServerAddress {
            url,
            name: uid.server().clone(),
            sek,
        };
        let client = Client::with_state(
            uid,
            MemoryStore::default(),
            Browser::new(server),
            Secrets::default(),
            VecDeque::new(),
        );
        let (commands, receiver) = mpsc::unbounded();
        wasm_bindgen_futures::spawn_local(driver::run(client, receiver, move |update| {
            // A throwing callback is the page's bug; the session goes on.
            let _ = on_update.call1(&JsValue::NULL, &update_object(&update));
        }));
        Ok(Session { commands })
    }

    /// Logs in with the account's password; resolves to how it went (`"created-user"`,
    /// `"registered"`, `"approved"`, `"already-registered"`).
    pub fn login(&self, password: String, device_name: Option<String>) -> Promise {
        self.ask(
            |reply| Command::Login {
                password,
                device_name,
                reply,
            },
            |outcome| {
                JsValue::from_str(match outcome {
                    LoginOutcome::CreatedUser => "created-user",
                    LoginOutcome::Registered => "registered",
                    LoginOutcome::Approved => "approved",
                    LoginOutcome::AlreadyRegistered => "already-registered",
                })
            },
        )
    }

    /// Sends `text` to `to`; resolves to the message id once the server holds it durably.
    #[wasm_bindgen(js_name = sendText)]
    pub fn send_text(&self, to: &str, text: String) -> Promise {
        let to = match Uid::parse(to) {
            Ok(to) => to,
            Err(e) => return Promise::reject(&JsError::new(&format!("{to}: {e}")).into()),
        };
        self.ask(
            |reply| Command::SendText { to, text, reply },
            |(id, _devices): (String, usize)| JsValue::from_str(&id),
        )
    }
}

impl Session {
    /// Sends a command to the session's task; the promise settles with its answer.
    fn ask<T: 'static>(
        &self,
        command: impl FnOnce(driver::Reply<T>) -> Command,
        answer: impl FnOnce(T) -> JsValue + 'static,
    ) -> Promise {
        let (reply, answered) = oneshot::channel();
        let sent = self.commands.unbounded_send(command(reply));
        future_to_promise(async move {
            let ended = || JsValue::from(JsError::new("the session has ended"));
            sent.map_err(|_| ended())?;
            match answered.await.map_err(|_| ended())? {
                Ok(value) => Ok(answer(value)),
                Err(e) => Err(JsError::new(&e).into()),
            }
        })
    }
}

/// An update as a plain object.
fn update_object(update: &Update) -> JsValue {
    let object = Object::new();
    let set = |key: &str, value: JsValue| {
        let _ = Reflect::set(&object, &JsValue::from_str(key), &value);
    };
    let text = |s: &str| JsValue::from_str(s);
    match update {
        Update::Event(Event::Message(received)) => {
            set("type", text("message"));
            set("from", text(&received.from.to_string()));
            set("id", text(&received.id.to_string()));
            match &received.content {
                Plaintext::Text { body, .. } => set("text", text(body)),
                other => set("kind", text(other.kind())),
            }
        }
        Update::Event(Event::Refused { from, reason }) => {
            set("type", text("refused"));
            set("from", text(&from.to_string()));
            set("reason", text(reason));
        }
        Update::Event(Event::Drained) => set("type", text("drained")),
        Update::Event(Event::Signal(signal)) => {
            set("type", text("signal"));
            set("from", text(&signal.from.to_string()));
            set("kind", text(signal.content.kind()));
        }
        Update::Event(Event::Notice(notice)) => {
            set("type", text("notice"));
            set("notice", text(&format!("{notice:?}")));
        }
        Update::Event(Event::Presence { from, presence }) => {
            set("type", text("presence"));
            set("from", text(&from.to_string()));
            set("status", text(&format!("{:?}", presence.status)));
        }
        Update::Connected => set("type", text("connected")),
        Update::Disconnected(reason) => {
            set("type", text("disconnected"));
            set("reason", text(reason));
        }
    }
    object.into()
}
