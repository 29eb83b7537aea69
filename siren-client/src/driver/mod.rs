//! The driver of the client core ([`siren_client_core::Core`]) for interactive clients such as
//! `siren chat`: it owns the [`Client`] (the session with the server) and the core, feeds the
//! core what arrives and what the person asks, carries out the core's effects (sealing and
//! sending, history, files, roster edits, device approvals), reconnects by itself with backoff
//! (resuming the session), and publishes a [`Snapshot`] after every change.
//!
//! It runs as one tokio task; a user interface holds a [`ChatHandle`]: it reads the latest
//! snapshot and sends requests, so nothing the interface does can block or cancel the session's
//! work halfway.
//!
//! | module | what |
//! |---|---|
//! | `session` | the task: connect, run the session, back off and reconnect |
//! | `events` | what arrives from the server, into the core |
//! | `effects` | the core's effects, carried out |
//! | [`downloads`] | received files into the downloads folder, under safe names |
//! | [`oneshot`] | the core for the one-shot commands (`siren recv`, `listen`) |
//! | `source` | the driver as the chat UI's [`crate::chat::ChatSource`] |

pub mod downloads;
mod effects;
mod events;
pub mod oneshot;
mod session;
mod source;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use siren_api::Uid;
use siren_client_core::model::ChatMessage;
use siren_client_core::{Command, View};
use tokio::sync::{mpsc, watch};

use crate::client::Client;
use crate::history::History;

/// Everything a user interface draws, as of the last change.
#[derive(Debug, Clone)]
pub struct Snapshot {
    /// The core's view.
    pub view: View,
    /// Loaded messages per conversation, oldest first.
    pub messages: BTreeMap<Uid, Vec<ChatMessage>>,
    /// Safety numbers with the users whose keys are known (PROTOCOL.md §11).
    pub safety: BTreeMap<Uid, String>,
    /// The connection, in words.
    pub connection: String,
}

/// What a user interface asks of the driver.
#[derive(Debug, Clone)]
pub enum Request {
    /// A person's command.
    Command(Command),
    /// Load older history of a conversation.
    LoadOlder(Uid),
    /// Close the session (cleanly) and stop.
    Quit,
}

/// Options of the driver.
#[derive(Debug, Clone)]
pub struct Options {
    /// Where received files are saved.
    pub downloads: PathBuf,
    /// Send read receipts.
    pub read_receipts: bool,
    /// Presence published while connected.
    pub presence: siren_proto::message::PresenceStatus,
}

/// Sends requests to the driver.
#[derive(Clone)]
pub struct Requests(mpsc::UnboundedSender<Request>);

impl Requests {
    /// Sends a request (ignored once the driver stopped).
    pub fn request(&self, request: Request) {
        let _ = self.0.send(request);
    }
}

/// A user interface's end of the driver.
pub struct ChatHandle {
    snapshot: Arc<Snapshot>,
    updates: watch::Receiver<Arc<Snapshot>>,
    requests: mpsc::UnboundedSender<Request>,
}

impl ChatHandle {
    /// The latest snapshot.
    pub fn snapshot(&self) -> &Snapshot {
        &self.snapshot
    }

    /// Sends a request (ignored once the driver stopped).
    pub fn request(&self, request: Request) {
        let _ = self.requests.send(request);
    }

    /// A second way to send requests, which outlives the handle (e.g. to quit after the
    /// interface that owned the handle ended).
    pub fn sender(&self) -> Requests {
        Requests(self.requests.clone())
    }

    /// Waits until the driver published a new snapshot (and takes it). Cancel-safe. Returns
    /// `false` once the driver stopped.
    pub async fn changed(&mut self) -> bool {
        if self.updates.changed().await.is_err() {
            return false;
        }
        self.snapshot = self.updates.borrow_and_update().clone();
        true
    }
}

/// Starts the driver on the current tokio runtime. The task ends after [`Request::Quit`] (or
/// when the handle is dropped), with the session closed cleanly, or with the error that made it
/// give up (a session the server no longer knows, a broken profile).
pub fn start(
    client: Client,
    history: Option<History>,
    options: Options,
) -> (ChatHandle, tokio::task::JoinHandle<anyhow::Result<()>>) {
    let (requests, rx) = mpsc::unbounded_channel();
    let driver = session::Driver::new(client, history, options, rx);
    let first = Arc::new(driver.snapshot());
    let (tx, updates) = watch::channel(first.clone());
    let task = tokio::spawn(driver.run(tx));
    (
        ChatHandle {
            snapshot: first,
            updates,
            requests,
        },
        task,
    )
}
