//! What the session needs from where it runs: connections to the server (the handshake done),
//! a timer and the time. `siren-client` gives it tokio and TCP or WebSocket streams; the
//! browser gives it the page's WebSocket and its timers.

use std::pin::pin;
use std::time::Duration;

use futures_util::future::{Either, select};
use siren_proto::handshake::SessionRequest;
use siren_proto::keys::DekSecret;
use siren_proto::message::{ClientMessage, ServerMessage};

/// An open, authenticated session's messages (frames encrypted and decrypted by the platform).
#[allow(async_fn_in_trait)] // the futures' Send-ness follows the implementation's
pub trait Link {
    /// Sends one message.
    async fn send(&mut self, msg: &ClientMessage) -> anyhow::Result<()>;
    /// The next message from the server; `Ok(None)` for a message of a type this client does
    /// not know (an authentic frame a newer server added: skipped, PROTOCOL.md §21). Must be
    /// cancel-safe: dropped unfinished, it loses nothing.
    async fn recv(&mut self) -> anyhow::Result<Option<ServerMessage>>;
    /// The largest frame the server accepts (from its `welcome`).
    fn set_max_frame(&mut self, max_frame: usize);
}

/// A session the platform opened: the handshake is done and the server authenticated by its
/// pinned key.
pub struct Opened<L> {
    /// The session's messages.
    pub link: L,
    /// The handshake hash (what the `X509` mechanism signs).
    pub handshake_hash: [u8; 32],
}

/// Where the session runs.
#[allow(async_fn_in_trait)] // the futures' Send-ness follows the implementation's
pub trait Platform {
    /// The sessions it opens.
    type Link: Link;
    /// Opens a session with the account's server as device `dek` (handshake included).
    async fn open(
        &mut self,
        dek: &DekSecret,
        request: SessionRequest,
    ) -> anyhow::Result<Opened<Self::Link>>;
    /// A timer that fires after `duration` (it borrows nothing, so it can run beside a call
    /// that borrows the client).
    fn sleep(&self, duration: Duration) -> impl Future<Output = ()> + 'static;
    /// Milliseconds since the Unix epoch.
    fn now_millis(&self) -> u64;
}

/// Runs `fut` until `timer` fires: `None` when the timer fired first (and `fut` was dropped).
pub async fn within<T>(timer: impl Future<Output = ()>, fut: impl Future<Output = T>) -> Option<T> {
    let fut = pin!(fut);
    let timer = pin!(timer);
    match select(fut, timer).await {
        Either::Left((value, _)) => Some(value),
        Either::Right(((), _)) => None,
    }
}
