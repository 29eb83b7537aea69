//! The driver of the client core for `siren chat`: the runtime-free one of
//! [`siren_client_session::chat`] (which the browser client runs too), run as one tokio task
//! with the profile's history and the downloads folder.
//!
//! A user interface holds a [`ChatHandle`]: it reads the latest snapshot and sends requests,
//! so nothing the interface does can block or cancel the session's work halfway.
//!
//! | module | what |
//! |---|---|
//! | [`downloads`] | received files into the downloads folder, under safe names |
//! | [`oneshot`] | the core for the one-shot commands (`siren recv`, `listen`) |
//! | `source` | the driver as the chat UI's [`crate::chat::ChatSource`] |

pub mod downloads;
pub mod oneshot;
mod source;

use std::path::PathBuf;
use std::sync::Arc;

use futures_channel::mpsc;
use siren_client_core::model::{Chat, ChatMessage};
pub use siren_client_session::chat::{PAGE, Request, Snapshot};
use tokio::sync::watch;

use crate::client::Client;
use crate::history::History;

/// Now, in milliseconds since the Unix epoch.
pub(crate) fn now_millis() -> siren_client_core::model::Millis {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
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
        let _ = self.0.unbounded_send(request);
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
        let _ = self.requests.unbounded_send(request);
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
    let (requests, rx) = mpsc::unbounded();
    let first = Arc::new(Snapshot::starting(client.uid()));
    let (tx, updates) = watch::channel(first.clone());
    let files = Downloads(options.downloads.clone());
    let options = siren_client_session::chat::Options {
        read_receipts: options.read_receipts,
        presence: options.presence,
    };
    let task = tokio::spawn(siren_client_session::chat::run(
        client,
        history,
        files,
        options,
        rx,
        move |snapshot| {
            tx.send_replace(Arc::new(snapshot));
        },
    ));
    (
        ChatHandle {
            snapshot: first,
            updates,
            requests,
        },
        task,
    )
}

impl siren_client_session::chat::History for History {
    async fn store(&mut self, msg: &ChatMessage) -> anyhow::Result<()> {
        Ok(History::store(self, msg)?)
    }

    async fn page(
        &self,
        chat: &Chat,
        before: Option<&ChatMessage>,
        limit: usize,
    ) -> anyhow::Result<(Vec<ChatMessage>, bool)> {
        Ok(History::page(self, chat, before, limit)?)
    }

    async fn chats(&self) -> anyhow::Result<Vec<Chat>> {
        Ok(self.conversations()?.into_iter().map(|e| e.chat).collect())
    }
}

/// The downloads folder, and files on this machine to send.
struct Downloads(PathBuf);

impl siren_client_session::chat::Files for Downloads {
    async fn save(&mut self, name: &str, data: &[u8]) -> anyhow::Result<String> {
        let path = downloads::save(&self.0, name, data).await?;
        Ok(path.display().to_string())
    }

    async fn read(&mut self, path: &str) -> anyhow::Result<(String, Vec<u8>)> {
        read_file(path).await
    }
}

/// Reads a file the person wants to send, refusing what the protocol cannot carry before
/// reading it.
async fn read_file(path: &str) -> anyhow::Result<(String, Vec<u8>)> {
    use anyhow::Context as _;
    use siren_client_session::chat::MAX_FILE;
    let meta = tokio::fs::metadata(path)
        .await
        .with_context(|| format!("cannot open {path}"))?;
    if !meta.is_file() {
        anyhow::bail!("{path} is not a file");
    }
    if meta.len() > MAX_FILE {
        anyhow::bail!(
            "{path} is {} bytes; files up to 25 MiB ({MAX_FILE} bytes) can be sent",
            meta.len()
        );
    }
    let data = tokio::fs::read(path)
        .await
        .with_context(|| format!("cannot read {path}"))?;
    let name = std::path::Path::new(path)
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "file".to_owned());
    Ok((name, data))
}
