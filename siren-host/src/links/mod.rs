//! Server-to-server links (PROTOCOL.md §17): outbound links to peers, found through DNS and
//! authenticated by the peer's SEK, and the inbound side that answers a peer's requests.
//!
//! This module is the transport: finding a peer, its pinned key, one reused link per peer and
//! requests matched to their answers. What travels over the links (deliveries from the outbox,
//! the inbound side, presence events) lives in [`crate::federation`]. A peer's SEK is pinned on
//! first use (kept in `<data_dir>/peer-keys.toml`); a later link whose DNS key differs from the
//! pin is refused and logged loudly.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use siren_api::{Error, ErrorCode, ServerName, Uid};
use siren_net::discovery::{self, Resolver, ResolverConfig};
use siren_net::{NetError, Receiver, Sender};
use siren_proto::keys::{SekPublic, SekSecret};
use siren_proto::message::LinkMessage;
use siren_proto::records::DirectoryListing;
use tokio::sync::oneshot;

/// How long a request over a link may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// Requests waiting for their answer, by request id.
type Pending = Arc<Mutex<HashMap<u32, oneshot::Sender<LinkMessage>>>>;

/// One open outbound link.
struct Link {
    sender: tokio::sync::Mutex<Sender>,
    pending: Pending,
    next_rid: AtomicU32,
    /// Set to false by the reader task when the link is gone.
    alive: Arc<std::sync::atomic::AtomicBool>,
}

/// This server's outbound links and peer pins.
pub struct Links {
    name: ServerName,
    sek: SekSecret,
    resolver: Resolver,
    step: Duration,
    links: tokio::sync::Mutex<HashMap<ServerName, Arc<Link>>>,
    pins: Mutex<HashMap<ServerName, SekPublic>>,
    /// Peers whose outbox worker runs.
    workers: Mutex<std::collections::HashSet<ServerName>>,
    /// Where the pins are kept (`<data_dir>/peer-keys.toml`).
    pin_file: std::path::PathBuf,
    /// Presence events peers send over outbound links, for [`deliver_events`].
    events: tokio::sync::mpsc::UnboundedSender<(ServerName, LinkMessage)>,
    events_rx: Mutex<Option<tokio::sync::mpsc::UnboundedReceiver<(ServerName, LinkMessage)>>>,
}

/// Reads the pinned peer keys (`name = "base64 SEK"` lines); a missing file is no pins.
fn load_pins(path: &std::path::Path) -> Result<HashMap<ServerName, SekPublic>, Error> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(HashMap::new()),
        Err(e) => {
            return Err(Error::new(
                ErrorCode::Internal,
                format!("cannot read {}: {e}", path.display()),
            ));
        }
    };
    let bad = |what: String| Error::new(ErrorCode::Internal, format!("{}: {what}", path.display()));
    let table: toml::Table = text.parse().map_err(|e| bad(format!("{e}")))?;
    let mut pins = HashMap::new();
    for (name, value) in table {
        let peer = ServerName::parse(&name).map_err(|e| bad(format!("{name}: {e}")))?;
        let key = value
            .as_str()
            .and_then(|k| SekPublic::from_base64(k).ok())
            .ok_or_else(|| bad(format!("{name}: not a base64 key")))?;
        pins.insert(peer, key);
    }
    Ok(pins)
}

fn link_error(peer: &ServerName, what: impl std::fmt::Display) -> Error {
    Error::new(ErrorCode::PeerUnreachable, format!("{peer}: {what}"))
}

impl Links {
    /// Links for server `name` with key `sek`, resolving peers with `resolver`.
    pub fn new(
        name: ServerName,
        sek: SekSecret,
        resolver: &ResolverConfig,
        step: Duration,
        data_dir: &std::path::Path,
    ) -> Result<Links, Error> {
        let pin_file = data_dir.join("peer-keys.toml");
        let pins = load_pins(&pin_file)?;
        let (events, events_rx) = tokio::sync::mpsc::unbounded_channel();
        let resolver = Resolver::new(resolver)
            .map_err(|e| Error::new(ErrorCode::Internal, format!("`federation.dns`: {e}")))?;
        Ok(Links {
            name,
            sek,
            resolver,
            step,
            links: tokio::sync::Mutex::new(HashMap::new()),
            pins: Mutex::new(pins),
            workers: Mutex::new(std::collections::HashSet::new()),
            pin_file,
            events,
            events_rx: Mutex::new(Some(events_rx)),
        })
    }

    /// Pins `key` for `peer` and saves every pin (written to a temporary file, then renamed).
    fn set_pin(&self, peer: &ServerName, key: SekPublic) {
        let mut pins = self.pins.lock().unwrap_or_else(PoisonError::into_inner);
        pins.insert(peer.clone(), key);
        let mut table = toml::Table::new();
        for (name, key) in pins.iter() {
            table.insert(name.to_string(), toml::Value::String(key.to_base64()));
        }
        let tmp = self.pin_file.with_extension("toml.tmp");
        let saved = std::fs::write(&tmp, table.to_string())
            .and_then(|()| std::fs::rename(&tmp, &self.pin_file));
        if let Err(e) = saved {
            tracing::warn!(file = %self.pin_file.display(), error = %e, "cannot save the peer pins");
        }
    }

    /// The key pinned for `peer`, if any.
    fn pin(&self, peer: &ServerName) -> Option<SekPublic> {
        self.pins
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(peer)
            .copied()
    }

    /// Whether `sek` is `peer`'s key: its pin, or (first use) a key its DNS publishes, which is
    /// then pinned. A key that differs from the pin is refused (error 503) and logged.
    pub async fn check_peer_key(&self, peer: &ServerName, sek: &SekPublic) -> Result<(), Error> {
        match self.pin(peer) {
            Some(pin) if &pin == sek => return Ok(()),
            Some(pin) => {
                tracing::error!(%peer, pinned = %pin, offered = %sek, "a peer's key differs from its pin: link refused");
                return Err(Error::new(
                    ErrorCode::PeerKeyMismatch,
                    format!("{peer}'s key differs from the pinned key"),
                ));
            }
            None => {}
        }
        let published = discovery::lookup_keys(&self.resolver, peer)
            .await
            .map_err(|e| link_error(peer, e))?;
        if !published.contains(sek) {
            tracing::error!(%peer, offered = %sek, "a server's key is not the one its DNS publishes: refused");
            return Err(Error::new(
                ErrorCode::PeerKeyMismatch,
                format!("{peer} does not publish that key"),
            ));
        }
        self.set_pin(peer, *sek);
        Ok(())
    }

    /// The pinned (or DNS-published, then pinned) key of `peer`.
    async fn peer_key(&self, peer: &ServerName) -> Result<SekPublic, Error> {
        if let Some(pin) = self.pin(peer) {
            let published = discovery::lookup_keys(&self.resolver, peer)
                .await
                .unwrap_or_default();
            if !published.is_empty() && !published.contains(&pin) {
                tracing::error!(%peer, pinned = %pin, "DNS now publishes another key for a pinned peer: link refused");
                return Err(Error::new(
                    ErrorCode::PeerKeyMismatch,
                    format!("{peer}'s DNS key differs from the pinned key"),
                ));
            }
            return Ok(pin);
        }
        let keys = discovery::lookup_keys(&self.resolver, peer)
            .await
            .map_err(|e| link_error(peer, e))?;
        let [key] = keys.as_slice() else {
            return Err(link_error(peer, "DNS publishes more than one key"));
        };
        self.check_peer_key(peer, key).await?;
        Ok(*key)
    }

    /// The open link to `peer`, or a new one.
    async fn link(&self, peer: &ServerName) -> Result<Arc<Link>, Error> {
        let mut links = self.links.lock().await;
        if let Some(link) = links.get(peer)
            && link.alive.load(Ordering::Acquire)
        {
            return Ok(link.clone());
        }
        let key = self.peer_key(peer).await?;
        let (targets, _) =
            discovery::lookup_targets(&self.resolver, peer, &mut siren_proto::os_rng())
                .await
                .map_err(|e| link_error(peer, e))?;
        let reached = discovery::connect_any(&self.resolver, &targets, self.step)
            .await
            .map_err(|e| link_error(peer, e))?;
        drop(reached.stream);
        let connected =
            siren_net::connect_link(reached.addr, &self.name, &self.sek, peer, &key, self.step)
                .await
                .map_err(|e| link_error(peer, e))?;
        if let Some(new) = connected.rotated_sek {
            // Proven inside a handshake made with the pinned key (PROTOCOL.md §7.6).
            tracing::info!(%peer, old = %key, new = %new, "peer rotated its key; pin updated");
            self.set_pin(peer, new);
        }
        let mut receiver = connected.receiver;
        match siren_net::within(self.step, receiver.recv::<LinkMessage>()).await {
            Ok(Ok(LinkMessage::LinkReady { server, .. })) if &server == peer => {}
            Ok(Ok(other)) => return Err(link_error(peer, format!("unexpected {other:?}"))),
            Ok(Err(e)) | Err(e) => return Err(link_error(peer, e)),
        }
        tracing::info!(%peer, addr = %reached.addr, "link opened");
        let link = Arc::new(Link {
            sender: tokio::sync::Mutex::new(connected.sender),
            pending: Pending::default(),
            next_rid: AtomicU32::new(1),
            alive: Arc::new(std::sync::atomic::AtomicBool::new(true)),
        });
        tokio::spawn(read_answers(
            peer.clone(),
            receiver,
            link.pending.clone(),
            link.alive.clone(),
            self.events.clone(),
        ));
        tokio::spawn(keepalive(peer.clone(), Arc::downgrade(&link)));
        links.insert(peer.clone(), link.clone());
        Ok(link)
    }

    /// Asks `peer`'s server for `uid`'s directory listing.
    pub async fn lookup(&self, uid: &Uid) -> Result<DirectoryListing, Error> {
        let peer = uid.server();
        match self
            .request(peer, |rid| LinkMessage::Lookup {
                rid,
                uid: uid.clone(),
            })
            .await?
        {
            LinkMessage::Directory { listing, .. } => Ok(listing),
            other => Err(link_error(peer, format!("unexpected answer {other:?}"))),
        }
    }

    /// Subscribes `from` (a local user) to presence topics of `peer`'s users; the peer checks
    /// each publisher's roster and sends events over this server's link to it.
    pub async fn subscribe(
        &self,
        peer: &ServerName,
        from: &Uid,
        topics: Vec<siren_proto::message::Topic>,
    ) -> Result<(), Error> {
        match self
            .request(peer, |rid| LinkMessage::Subscribe {
                rid,
                from: from.clone(),
                topics,
            })
            .await?
        {
            LinkMessage::Ok { .. } => Ok(()),
            other => Err(link_error(peer, format!("unexpected answer {other:?}"))),
        }
    }

    /// The receiving end of the peers' presence events (taken once, by the server).
    pub fn take_events(
        &self,
    ) -> Option<tokio::sync::mpsc::UnboundedReceiver<(ServerName, LinkMessage)>> {
        self.events_rx
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
    }

    /// Sends a request over the link to `peer` and waits for its answer; an `error` answer
    /// becomes an `Err` with the peer's code.
    async fn request(
        &self,
        peer: &ServerName,
        make: impl FnOnce(u32) -> LinkMessage,
    ) -> Result<LinkMessage, Error> {
        let link = self.link(peer).await?;
        let rid = link.next_rid.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = oneshot::channel();
        link.pending
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(rid, tx);
        let sent = link.sender.lock().await.send(&make(rid)).await;
        if let Err(e) = sent {
            link.alive.store(false, Ordering::Release);
            return Err(link_error(peer, e));
        }
        match tokio::time::timeout(REQUEST_TIMEOUT, rx).await {
            Ok(Ok(LinkMessage::Error { code, msg, .. })) => Err(Error::new(
                ErrorCode::from_u16(code).unwrap_or(ErrorCode::Internal),
                format!("{peer}: {msg}"),
            )),
            Ok(Ok(answer)) => Ok(answer),
            Ok(Err(_)) => Err(link_error(peer, "the link closed")),
            Err(_) => Err(link_error(peer, "no answer in time")),
        }
    }
}

/// How often an open outbound link is pinged (well inside the peer's idle timeout).
const KEEPALIVE: Duration = Duration::from_secs(30);

/// Pings the link every [`KEEPALIVE`] so an idle link stays open and a dead one is noticed
/// (the next request then opens a new link); ends with the link.
async fn keepalive(peer: ServerName, link: std::sync::Weak<Link>) {
    loop {
        tokio::time::sleep(KEEPALIVE).await;
        let Some(link) = link.upgrade() else { return };
        if !link.alive.load(Ordering::Acquire) {
            return;
        }
        let rid = link.next_rid.fetch_add(1, Ordering::Relaxed);
        if let Err(e) = link
            .sender
            .lock()
            .await
            .send(&LinkMessage::Ping { rid })
            .await
        {
            tracing::info!(%peer, error = %e, "link lost");
            link.alive.store(false, Ordering::Release);
            return;
        }
    }
}

/// Reads a link's answers and hands each to the request waiting for it.
async fn read_answers(
    peer: ServerName,
    mut receiver: Receiver,
    pending: Pending,
    alive: Arc<std::sync::atomic::AtomicBool>,
    events: tokio::sync::mpsc::UnboundedSender<(ServerName, LinkMessage)>,
) {
    loop {
        let message = match receiver.recv::<LinkMessage>().await {
            Ok(m) => m,
            Err(e) => {
                if !matches!(e, NetError::Io(_)) {
                    tracing::warn!(%peer, error = %e, "link failed");
                }
                break;
            }
        };
        if matches!(message, LinkMessage::Event { .. }) {
            let _ = events.send((peer.clone(), message));
            continue;
        }
        let rid = match &message {
            LinkMessage::Directory { rid, .. }
            | LinkMessage::DeliverAck { rid, .. }
            | LinkMessage::Ok { rid } => Some(*rid),
            LinkMessage::Error { rid, .. } => *rid,
            _ => None,
        };
        if let Some(rid) = rid {
            let waiting = pending
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .remove(&rid);
            if let Some(tx) = waiting {
                let _ = tx.send(message);
            }
        }
    }
    alive.store(false, Ordering::Release);
    // Dropping the waiting senders fails their requests ("the link closed").
    pending
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .clear();
    tracing::info!(%peer, "link closed");
}

impl Links {
    /// Marks `peer`'s outbox worker as running; false if it already runs.
    pub fn claim_worker(&self, peer: &ServerName) -> bool {
        self.workers
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(peer.clone())
    }

    /// Sends envelopes over the link and waits for the peer's commit.
    pub async fn deliver(
        &self,
        peer: &ServerName,
        msgs: Vec<siren_proto::envelope::Envelope>,
    ) -> Result<(), Error> {
        match self
            .request(peer, |rid| LinkMessage::Deliver { rid, msgs })
            .await?
        {
            LinkMessage::DeliverAck { .. } => Ok(()),
            other => Err(link_error(peer, format!("unexpected answer {other:?}"))),
        }
    }
}
