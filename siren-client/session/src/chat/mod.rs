//! The driver of the client core ([`siren_client_core::Core`]) for interactive clients —
//! `siren chat` and the browser client run this same code: it owns the [`Client`] (the session
//! with the server) and the core, feeds the core what arrives and what the person asks, carries
//! out the core's effects (sealing and sending, history, files, roster edits, device
//! approvals), reconnects by itself with backoff (resuming the session), and publishes a
//! [`Snapshot`] after every change.
//!
//! Like the rest of this crate it has no runtime: the [`Platform`] gives it timers and the
//! time, a [`History`] keeps the conversations, [`Files`] saves and reads files, and the caller
//! runs [`run`] as one task (tokio's in `siren`, `spawn_local` in the page) and reads the
//! snapshots it publishes.
//!
//! | module | what |
//! |---|---|
//! | `task` | the task: connect, run the session, back off and reconnect |
//! | `events` | what arrives from the server, into the core |
//! | `effects` | the core's effects, carried out |

mod effects;
mod events;
mod task;

use std::collections::BTreeMap;

use siren_api::Uid;
use siren_client_core::model::{Chat, ChatMessage};
use siren_client_core::{Command, View};

use crate::{Client, Platform, Store};

pub use task::PAGE;

/// Everything a user interface draws, as of the last change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Snapshot {
    /// The core's view.
    pub view: View,
    /// Loaded messages per conversation, oldest first.
    pub messages: BTreeMap<Chat, Vec<ChatMessage>>,
    /// Safety numbers with the users whose keys are known (PROTOCOL.md §11).
    pub safety: BTreeMap<Uid, String>,
    /// The connection, in words.
    pub connection: String,
    /// This account's devices, as this device last verified them (refreshed at each connection
    /// and when the account's directory changes).
    pub devices: Vec<Device>,
}

impl Snapshot {
    /// What an interface shows before the driver's first snapshot: no conversations yet, and
    /// connecting.
    pub fn starting(me: &Uid) -> Snapshot {
        let core = siren_client_core::Core::new(me.clone(), false, &mut siren_proto::os_rng());
        Snapshot {
            view: core.view().clone(),
            messages: BTreeMap::new(),
            safety: BTreeMap::new(),
            connection: task::connecting(me),
            devices: Vec::new(),
        }
    }
}

/// One of this account's devices.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Device {
    /// Its key.
    pub dek: siren_proto::keys::DekPublic,
    /// The name it gave, if any (someone else's text: escape it).
    pub name: Option<String>,
    /// When it was added (seconds since the Unix epoch, its own clock).
    pub added: u64,
    /// It is this device.
    pub this: bool,
}

/// What a user interface asks of the driver.
#[derive(Debug, Clone)]
pub enum Request {
    /// A person's command.
    Command(Command),
    /// Load older history of a conversation.
    LoadOlder(Chat),
    /// Revoke one of this account's devices (this one too: then its session ends for good).
    Revoke(siren_proto::keys::DekPublic),
    /// Send a file the interface already read (a browser's file picker: there is no path).
    SendFile {
        /// To whom (a user or a group).
        to: Chat,
        /// Its name.
        name: String,
        /// Its contents.
        data: Vec<u8>,
    },
    /// Close the session (cleanly) and stop.
    Quit,
}

/// Options of the driver.
#[derive(Debug, Clone)]
pub struct Options {
    /// Send read receipts.
    pub read_receipts: bool,
    /// Presence published while connected.
    pub presence: siren_proto::message::PresenceStatus,
}

/// Where the conversations are kept (sealed at rest: a profile's `history.redb`, the page's
/// IndexedDB).
#[allow(async_fn_in_trait)] // the futures' Send-ness follows the implementation's
pub trait History {
    /// Writes (or replaces, by id) a message.
    async fn store(&mut self, msg: &ChatMessage) -> anyhow::Result<()>;
    /// Up to `limit` messages of conversation `chat` before `before` (the newest without),
    /// oldest first, and whether older ones remain.
    async fn page(
        &self,
        chat: &Chat,
        before: Option<&ChatMessage>,
        limit: usize,
    ) -> anyhow::Result<(Vec<ChatMessage>, bool)>;
    /// The conversations, the most recent first.
    async fn chats(&self) -> anyhow::Result<Vec<Chat>>;
}

/// Files on the device.
#[allow(async_fn_in_trait)] // the futures' Send-ness follows the implementation's
pub trait Files {
    /// Saves a received file (already checked against its hash) under a safe version of the
    /// `name` its sender gave; where it went, in words for the person.
    async fn save(&mut self, name: &str, data: &[u8]) -> anyhow::Result<String>;
    /// Reads the file at `path` the person wants to send: its name and contents (refusing what
    /// the protocol cannot carry before reading it).
    async fn read(&mut self, path: &str) -> anyhow::Result<(String, Vec<u8>)>;
}

/// The largest file that can be sent (PROTOCOL.md §12: 25 MiB).
pub const MAX_FILE: u64 = 26_214_400;

/// Runs the driver until [`Request::Quit`] (or until the requests' sender is dropped), with the
/// session closed cleanly, or until it gives up with the error that made it (a session the
/// server no longer knows, credentials that changed). `publish` gets a snapshot after every
/// change.
pub async fn run<S: Store, P: Platform, H: History, F: Files>(
    client: Client<S, P>,
    history: Option<H>,
    files: F,
    options: Options,
    requests: futures_channel::mpsc::UnboundedReceiver<Request>,
    publish: impl FnMut(Snapshot),
) -> anyhow::Result<()> {
    let mut driver = task::Driver::new(client, history, files, options, requests, publish);
    driver.load_recent().await;
    driver.run().await
}
