//! What the page's JavaScript calls: a [`Session`] whose methods return promises, and updates
//! delivered to a callback as plain objects.

use futures_channel::{mpsc, oneshot};
use js_sys::{Object, Promise, Reflect};
use siren_api::Uid;
use siren_client_session::{Client, Event, LoginOutcome};
use siren_proto::keys::SekPublic;
use siren_proto::plaintext::Plaintext;
use wasm_bindgen::prelude::*;
use wasm_bindgen_futures::future_to_promise;

use crate::driver::{self, Command, Update};
use crate::link::ServerAddress;
use crate::platform::Browser;
use crate::store::{Account, Conversation, DeviceStore, HistoryItem};

/// One account's session in the page.
#[wasm_bindgen]
pub struct Session {
    commands: mpsc::UnboundedSender<Command>,
    uid: String,
}

#[wasm_bindgen]
impl Session {
    /// Whether this browser already holds a device (to unlock, rather than create).
    pub async fn exists() -> Result<bool, JsError> {
        DeviceStore::exists().await.map_err(js_error)
    }

    /// Creates this browser's device of account `uid`, its keys and history kept sealed under
    /// `passphrase`, with its server's web listener at `url` (`wss://host/ws`), which must prove
    /// it holds `sek` (the server's key, base64; pinned from then on). Log in next.
    /// `on_update` is called with each update: `{type: "message", from, id, text}` (or `kind`
    /// instead of `text` for what is not a text), `{type: "refused", from, reason}`,
    /// `{type: "signal", from, kind}`, `{type: "notice", notice}`,
    /// `{type: "presence", from, status}`, `{type: "drained"}`,
    /// `{type: "disconnected", reason}` (it reconnects by itself), `{type: "connected"}`,
    /// `{type: "failed", reason}` (something could not be kept in the browser's storage).
    pub async fn create(
        url: String,
        uid: String,
        sek: String,
        passphrase: String,
        on_update: js_sys::Function,
    ) -> Result<Session, JsError> {
        let uid = Uid::parse(&uid).map_err(|e| JsError::new(&format!("{uid}: {e}")))?;
        let sek_key = SekPublic::from_base64(&sek)
            .map_err(|e| JsError::new(&format!("the server key: {e}")))?;
        let account = Account { uid, sek };
        let store = DeviceStore::create(&passphrase, &account)
            .await
            .map_err(js_error)?;
        Session::start(url, account, sek_key, store, on_update).await
    }

    /// Unlocks this browser's device with its passphrase, and resumes its session at `url`
    /// (as [`Session::create`]; updates as there).
    pub async fn unlock(
        url: String,
        passphrase: String,
        on_update: js_sys::Function,
    ) -> Result<Session, JsError> {
        let (store, account) = DeviceStore::unlock(&passphrase).await.map_err(js_error)?;
        let sek = account.sek().map_err(js_error)?;
        Session::start(url, account, sek, store, on_update).await
    }

    /// The account (`alice@example.org`).
    #[wasm_bindgen(getter)]
    pub fn uid(&self) -> String {
        self.uid.clone()
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

    /// The conversations, the most recent first: `[{peer, items, unread, lastAt}]`.
    pub fn conversations(&self) -> Promise {
        self.ask(
            |reply| Command::Conversations { reply },
            |list: Vec<Conversation>| {
                list.iter()
                    .map(|c| {
                        let object = Object::new();
                        set(&object, "peer", &c.peer.to_string().into());
                        set(&object, "items", &(c.items as f64).into());
                        set(&object, "unread", &(c.unread as f64).into());
                        set(&object, "lastAt", &(c.last_at as f64).into());
                        JsValue::from(object)
                    })
                    .collect::<js_sys::Array>()
                    .into()
            },
        )
    }

    /// The history of the conversation with `peer`, oldest first (and marks it read):
    /// `[{outgoing, id, at, text}]`.
    pub fn history(&self, peer: &str) -> Promise {
        let peer = match Uid::parse(peer) {
            Ok(peer) => peer,
            Err(e) => return Promise::reject(&JsError::new(&format!("{peer}: {e}")).into()),
        };
        self.ask(
            |reply| Command::History { peer, reply },
            |items: Vec<HistoryItem>| {
                items
                    .iter()
                    .map(|item| {
                        let object = Object::new();
                        set(&object, "outgoing", &item.outgoing.into());
                        set(&object, "id", &item.id.as_str().into());
                        set(&object, "at", &(item.at as f64).into());
                        set(&object, "text", &item.text.as_str().into());
                        JsValue::from(object)
                    })
                    .collect::<js_sys::Array>()
                    .into()
            },
        )
    }
}

fn js_error(e: anyhow::Error) -> JsError {
    JsError::new(&format!("{e:#}"))
}

fn set(object: &Object, key: &str, value: &JsValue) {
    let _ = Reflect::set(object, &JsValue::from_str(key), value);
}

impl Session {
    async fn start(
        url: String,
        account: Account,
        sek: SekPublic,
        store: DeviceStore,
        on_update: js_sys::Function,
    ) -> Result<Session, JsError> {
        let server = ServerAddress {
            url,
            name: account.uid.server().clone(),
            sek,
        };
        let client = Client::load(account.uid.clone(), store, Browser::new(server))
            .await
            .map_err(js_error)?;
        let (commands, receiver) = mpsc::unbounded();
        wasm_bindgen_futures::spawn_local(driver::run(client, receiver, move |update| {
            // A throwing callback is the page's bug; the session goes on.
            let _ = on_update.call1(&JsValue::NULL, &update_object(&update));
        }));
        Ok(Session {
            commands,
            uid: account.uid.to_string(),
        })
    }

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
        Update::Failed(reason) => {
            set("type", text("failed"));
            set("reason", text(reason));
        }
    }
    object.into()
}
