//! The task that owns the page's session. Until the device is logged in it takes the page's
//! login (a new browser is approved by one of the account's devices: the code is shown, and the
//! page asks the person to confirm before the signing key is kept); then it runs the chat
//! driver `siren chat` runs ([`siren_client_session::chat`]), which publishes a snapshot after
//! every change and reconnects by itself.

use futures_channel::{mpsc, oneshot};
use futures_util::StreamExt as _;
use siren_client_session::chat::{self, Request, Snapshot};
use siren_client_session::{ApprovalPrompt, Client, LoginOutcome};
use siren_proto::approval::ShortCode;
use siren_proto::keys::UskPublic;
use siren_proto::message::PresenceStatus;

use crate::platform::Browser;
use crate::store::DeviceStore;

/// The page's session.
pub type WebSession = Client<DeviceStore, Browser>;

/// An answer to the page: what happened, or why it failed (shown to the person as is).
pub type Reply<T> = oneshot::Sender<Result<T, String>>;

/// A login the page asks for.
pub struct Login {
    /// The account's password.
    pub password: String,
    /// The name the account's other devices see.
    pub device_name: Option<String>,
    /// How it went.
    pub reply: Reply<LoginOutcome>,
}

/// What the session tells the page.
pub enum Update {
    /// The chat's state changed.
    Snapshot(Box<Snapshot>),
    /// A received file to offer for download.
    File {
        /// The name its sender gave.
        name: String,
        /// Its contents (checked against the sender's hash).
        data: Vec<u8>,
    },
    /// A new device's approval: the code to compare with the approving device.
    ApprovalCode(String),
    /// The signing key arrived: the person must confirm they approved `code` on another
    /// device (answered with [`Inputs::confirm`]).
    ConfirmApproval {
        /// The code.
        code: String,
        /// The signing key's fingerprint (the account's other devices show it).
        fingerprint: String,
    },
    /// The session ended for good (the device's session is gone, or its credentials changed).
    Ended(String),
}

/// What the page sends the task.
pub struct Inputs {
    /// Logins (before the chat runs).
    pub logins: mpsc::UnboundedReceiver<Login>,
    /// Confirmations of an approval.
    pub confirm: mpsc::UnboundedReceiver<bool>,
    /// The person's requests to the chat (kept until it runs).
    pub requests: mpsc::UnboundedReceiver<Request>,
}

/// Runs the page's session: logs in if the device has not, then the chat until the page drops
/// its handle.
pub async fn run(
    mut client: WebSession,
    inputs: Inputs,
    update: impl Fn(Update) + Clone + 'static,
) {
    let Inputs {
        mut logins,
        mut confirm,
        requests,
    } = inputs;
    while client.device().is_none() {
        let Some(login) = logins.next().await else {
            return;
        };
        let mut prompt = PagePrompt {
            update: update.clone(),
            answers: &mut confirm,
        };
        let result = client
            .login(&login.password, login.device_name, &mut prompt)
            .await;
        // What a re-login drained from an old device key's queue is not shown here: the chat
        // reads the history, and anything still queued arrives on the new session.
        let result = result.map(|(outcome, _drained)| outcome);
        let _ = login.reply.send(result.map_err(|e| format!("{e:#}")));
    }
    // Logins after this one are refused: the device is logged in.
    wasm_bindgen_futures::spawn_local(async move {
        while let Some(login) = logins.next().await {
            let _ = login
                .reply
                .send(Err("this browser's device is already logged in".into()));
        }
    });
    let history = client.store().history();
    let files = crate::files::PageFiles::new({
        let update = update.clone();
        move |name: &str, data: &[u8]| {
            update(Update::File {
                name: name.to_owned(),
                data: data.to_vec(),
            });
        }
    });
    let options = chat::Options {
        read_receipts: true,
        presence: PresenceStatus::Available,
    };
    let publish = {
        let update = update.clone();
        move |snapshot: Snapshot| update(Update::Snapshot(Box::new(snapshot)))
    };
    if let Err(e) = chat::run(client, Some(history), files, options, requests, publish).await {
        update(Update::Ended(format!("{e:#}")));
    }
}

/// The page's side of a new device's approval.
struct PagePrompt<'a, U> {
    update: U,
    answers: &'a mut mpsc::UnboundedReceiver<bool>,
}

impl<U: Fn(Update)> ApprovalPrompt for PagePrompt<'_, U> {
    fn show_code(&mut self, code: ShortCode) {
        (self.update)(Update::ApprovalCode(code.to_string()));
    }

    async fn confirm(&mut self, code: ShortCode, usk: &UskPublic) -> bool {
        // An answer left from an earlier approval is not this one's.
        while self.answers.try_recv().is_ok() {}
        (self.update)(Update::ConfirmApproval {
            code: code.to_string(),
            fingerprint: siren_proto::fingerprint::fingerprint(usk.as_bytes()),
        });
        self.answers.next().await.unwrap_or(false)
    }
}
