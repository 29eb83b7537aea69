//! What the page's JavaScript calls: a [`Session`] whose methods return promises or send the
//! person's commands to the chat, and updates (snapshots of the chat's state, files, approval
//! steps; [`crate::view`]) delivered to a callback as plain objects.

use futures_channel::{mpsc, oneshot};
use js_sys::Promise;
use siren_api::Uid;
use siren_client_core::Command;
use siren_client_core::model::Chat;
use siren_client_session::chat::Request;
use siren_client_session::{Client, LoginOutcome};
use siren_proto::ids::{FileId, MessageId};
use siren_proto::keys::{DekPublic, SekPublic};
use wasm_bindgen::prelude::*;
use wasm_bindgen_futures::future_to_promise;

use crate::driver::{self, Inputs, Login};
use crate::link::ServerAddress;
use crate::platform::Browser;
use crate::store::{Account, DeviceStore};

/// One account's session in the page.
#[wasm_bindgen]
pub struct Session {
    logins: mpsc::UnboundedSender<Login>,
    confirm: mpsc::UnboundedSender<bool>,
    requests: mpsc::UnboundedSender<Request>,
    uid: Uid,
    logged_in: bool,
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
    /// `on_update` is called with each update (`crate::view::update` lists them).
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
        self.uid.to_string()
    }

    /// Whether the device was logged in when the session started (else: log in first).
    #[wasm_bindgen(getter, js_name = loggedIn)]
    pub fn logged_in(&self) -> bool {
        self.logged_in
    }

    /// Logs in with the account's password; resolves to how it went (`"created-user"`,
    /// `"registered"`, `"approved"`, `"already-registered"`). A new browser of an existing
    /// account is approved by one of its devices: updates `approval-code` (show it) and
    /// `confirm-approval` (ask the person, answer with [`Session::confirm_approval`]) come
    /// meanwhile.
    pub fn login(&self, password: String, device_name: Option<String>) -> Promise {
        let (reply, answered) = oneshot::channel();
        let sent = self.logins.unbounded_send(Login {
            password,
            device_name,
            reply,
        });
        future_to_promise(async move {
            let ended = || JsValue::from(JsError::new("the session has ended"));
            sent.map_err(|_| ended())?;
            match answered.await.map_err(|_| ended())? {
                Ok(outcome) => Ok(JsValue::from_str(match outcome {
                    LoginOutcome::CreatedUser => "created-user",
                    LoginOutcome::Registered => "registered",
                    LoginOutcome::Approved => "approved",
                    LoginOutcome::AlreadyRegistered => "already-registered",
                })),
                Err(e) => Err(JsError::new(&e).into()),
            }
        })
    }

    /// The person's answer to `confirm-approval`: they did (or did not) approve this code on
    /// one of their devices.
    #[wasm_bindgen(js_name = confirmApproval)]
    pub fn confirm_approval(&self, approved: bool) {
        let _ = self.confirm.unbounded_send(approved);
    }

    /// Opens (or starts) the conversation with `peer` (a user id, or `#` and a group's id).
    pub fn open(&self, peer: &str) -> Result<(), JsError> {
        self.command(Command::Open(chat(peer)?))
    }

    /// Sends a text (its states follow in the snapshots).
    #[wasm_bindgen(js_name = sendText)]
    pub fn send_text(&self, to: &str, text: String) -> Result<(), JsError> {
        self.command(Command::SendText {
            to: chat(to)?,
            body: text,
        })
    }

    /// The person is typing (or stopped) in the conversation with `to`.
    #[wasm_bindgen(js_name = setTyping)]
    pub fn set_typing(&self, to: &str, typing: bool) -> Result<(), JsError> {
        self.command(Command::SetTyping {
            to: chat(to)?,
            typing,
        })
    }

    /// The person sees the conversation with `peer`: its messages are read.
    #[wasm_bindgen(js_name = markRead)]
    pub fn mark_read(&self, peer: &str) -> Result<(), JsError> {
        self.command(Command::MarkRead(chat(peer)?))
    }

    /// Loads older messages of the conversation with `peer`.
    #[wasm_bindgen(js_name = loadOlder)]
    pub fn load_older(&self, peer: &str) -> Result<(), JsError> {
        self.request(Request::LoadOlder(chat(peer)?))
    }

    /// Sends a file the person picked.
    #[wasm_bindgen(js_name = sendFile)]
    pub fn send_file(&self, to: &str, name: String, data: Vec<u8>) -> Result<(), JsError> {
        self.request(Request::SendFile {
            to: chat(to)?,
            name,
            data,
        })
    }

    /// Offers a received file (its id in hex) as a download (a `file` update).
    #[wasm_bindgen(js_name = saveFile)]
    pub fn save_file(&self, file: &str) -> Result<(), JsError> {
        self.command(Command::SaveFile(FileId::from_bytes(hex16(file)?)))
    }

    /// Replaces the text of one of this account's messages.
    pub fn edit(&self, peer: &str, id: &str, text: String) -> Result<(), JsError> {
        self.command(Command::Edit {
            chat: chat(peer)?,
            id: MessageId::from_bytes(hex16(id)?),
            body: text,
        })
    }

    /// Withdraws one of this account's messages.
    pub fn delete(&self, peer: &str, id: &str) -> Result<(), JsError> {
        self.command(Command::Delete {
            chat: chat(peer)?,
            id: MessageId::from_bytes(hex16(id)?),
        })
    }

    /// Accepts a contact request.
    #[wasm_bindgen(js_name = acceptContact)]
    pub fn accept_contact(&self, peer: &str) -> Result<(), JsError> {
        self.command(Command::AcceptContact(uid(peer)?))
    }

    /// Blocks a user.
    pub fn block(&self, peer: &str) -> Result<(), JsError> {
        self.command(Command::Block(uid(peer)?))
    }

    /// Unblocks a user.
    pub fn unblock(&self, peer: &str) -> Result<(), JsError> {
        self.command(Command::Unblock(uid(peer)?))
    }

    /// The person compared the safety number with `peer`: marks them verified (and the
    /// key-change warning acknowledged).
    #[wasm_bindgen(js_name = markVerified)]
    pub fn mark_verified(&self, peer: &str) -> Result<(), JsError> {
        self.command(Command::MarkVerified(uid(peer)?))
    }

    /// Approves (the codes matched) or denies a new device of this account (`device`: its key
    /// in base64, as the snapshot's `approvals` give it).
    #[wasm_bindgen(js_name = answerApproval)]
    pub fn answer_approval(&self, device: &str, approve: bool) -> Result<(), JsError> {
        let new_dek = DekPublic::from_base64(device)
            .map_err(|e| JsError::new(&format!("the device key: {e}")))?;
        self.command(Command::AnswerApproval { new_dek, approve })
    }

    /// Revokes one of this account's devices (`device`: its key in base64, as the snapshot's
    /// `devices` give it). Revoking this one logs it out for good (an `ended` update follows).
    pub fn revoke(&self, device: &str) -> Result<(), JsError> {
        let dek = DekPublic::from_base64(device)
            .map_err(|e| JsError::new(&format!("the device key: {e}")))?;
        self.request(Request::Revoke(dek))
    }

    /// Sends read receipts or not.
    #[wasm_bindgen(js_name = setReadReceipts)]
    pub fn set_read_receipts(&self, on: bool) -> Result<(), JsError> {
        self.command(Command::SetReadReceipts(on))
    }

    /// Closes the session cleanly (the device stays: unlock it again later).
    pub fn quit(&self) {
        let _ = self.requests.unbounded_send(Request::Quit);
    }
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
        let logged_in = client.device().is_some();
        let (logins, logins_rx) = mpsc::unbounded();
        let (confirm, confirm_rx) = mpsc::unbounded();
        let (requests, requests_rx) = mpsc::unbounded();
        let inputs = Inputs {
            logins: logins_rx,
            confirm: confirm_rx,
            requests: requests_rx,
        };
        let on_update = std::rc::Rc::new(on_update);
        wasm_bindgen_futures::spawn_local(driver::run(client, inputs, move |update| {
            // A throwing callback is the page's bug; the session goes on.
            let _ = on_update.call1(&JsValue::NULL, &crate::view::update(&update));
        }));
        Ok(Session {
            logins,
            confirm,
            requests,
            uid: account.uid,
            logged_in,
        })
    }

    fn request(&self, request: Request) -> Result<(), JsError> {
        self.requests
            .unbounded_send(request)
            .map_err(|_| JsError::new("the session has ended"))
    }

    fn command(&self, command: Command) -> Result<(), JsError> {
        self.request(Request::Command(command))
    }
}

fn uid(text: &str) -> Result<Uid, JsError> {
    Uid::parse(text).map_err(|e| JsError::new(&format!("{text}: {e}")))
}

/// A conversation named as the snapshots name it: a user id, or `#` and a group's id.
fn chat(text: &str) -> Result<Chat, JsError> {
    Chat::parse(text).ok_or_else(|| JsError::new(&format!("{text}: not a user or group id")))
}

fn hex16(text: &str) -> Result<[u8; 16], JsError> {
    hex::decode(text)
        .ok()
        .and_then(|b| <[u8; 16]>::try_from(b).ok())
        .ok_or_else(|| JsError::new(&format!("{text}: not an id")))
}

fn js_error(e: anyhow::Error) -> JsError {
    JsError::new(&format!("{e:#}"))
}
