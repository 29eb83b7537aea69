//! Server-to-server links (PROTOCOL.md §17): outbound links to peers, found through DNS and
//! authenticated by the peer's SEK, and the inbound side that answers a peer's requests.
//!
//! This version carries proxied directory lookups; deliveries and presence across servers come
//! next. A peer's SEK is pinned on first use (in memory for the life of the process); a later
//! link whose DNS key differs from the pin is refused and logged loudly.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
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

/// Serves a peer's link after the handshake: answers its lookups of this server's users.
pub async fn serve_inbound(
    shared: Arc<crate::server::Shared>,
    peer: ServerName,
    mut sender: Sender,
    mut receiver: Receiver,
) {
    // One writer: answers and presence events share the link.
    let (out, mut queued) = tokio::sync::mpsc::channel::<LinkMessage>(256);
    let writer = tokio::spawn(async move {
        while let Some(message) = queued.recv().await {
            if sender.send(&message).await.is_err() {
                break;
            }
        }
    });
    let ready = LinkMessage::LinkReady {
        server: shared.config.server.name.clone(),
        max_frame: shared.config.limits.max_frame,
    };
    if out.send(ready).await.is_err() {
        return;
    }
    tracing::info!(%peer, "inbound link ready");
    let idle = Duration::from_secs(shared.config.limits.idle_timeout_secs);
    let mut remote: HashMap<Uid, u64> = HashMap::new();
    loop {
        let message = match tokio::time::timeout(idle, receiver.recv::<LinkMessage>()).await {
            Ok(Ok(m)) => m,
            Ok(Err(_)) | Err(_) => break,
        };
        let failed = |rid: u32, e: Error| LinkMessage::Error {
            rid: Some(rid),
            code: e.code.as_u16(),
            msg: e.message,
        };
        let answer = match message {
            LinkMessage::Lookup { rid, uid } => lookup_local(&shared, rid, uid).await,
            LinkMessage::Ping { rid } => LinkMessage::Pong { rid },
            LinkMessage::Deliver { rid, msgs } => match accept_delivery(&shared, &peer, msgs).await
            {
                Ok(ids) => LinkMessage::DeliverAck { rid, ids },
                Err(e) => failed(rid, e),
            },
            LinkMessage::Subscribe { rid, from, topics } => {
                match subscribe_remote(&shared, &peer, from, topics, &mut remote, &out).await {
                    Ok(()) => LinkMessage::Ok { rid },
                    Err(e) => failed(rid, e),
                }
            }
            LinkMessage::Unsubscribe { rid, from, topics } => {
                if let Some(conn) = remote.get(&from) {
                    for topic in &topics {
                        shared.pubsub.unsubscribe(*conn, topic.publisher());
                    }
                }
                LinkMessage::Ok { rid }
            }
            other => LinkMessage::Error {
                rid: request_id(&other),
                code: ErrorCode::UnexpectedMessage.as_u16(),
                msg: "not expected on a link".into(),
            },
        };
        if out.send(answer).await.is_err() {
            break;
        }
    }
    for conn in remote.values() {
        shared.pubsub.session_closed(*conn, None, false);
    }
    drop(out);
    let _ = writer.await;
    tracing::info!(%peer, "inbound link closed");
}

/// Answers a peer's lookup of one of our users.
async fn lookup_local(shared: &crate::server::Shared, rid: u32, uid: Uid) -> LinkMessage {
    let not_found = |msg: String| LinkMessage::Error {
        rid: Some(rid),
        code: ErrorCode::NotFound.as_u16(),
        msg,
    };
    if uid.server() != &shared.config.server.name {
        return not_found(format!("{uid} is not a user of this server"));
    }
    match shared.directory.get(uid.user()).await {
        Ok(Some(dir)) => LinkMessage::Directory {
            rid,
            listing: dir.listing(),
        },
        Ok(None) => not_found(format!("no devices for {uid}")),
        Err(e) => LinkMessage::Error {
            rid: Some(rid),
            code: e.code.as_u16(),
            msg: e.message,
        },
    }
}

/// Checks a peer's envelopes (sent by its users, to live devices of ours, not blocked) and
/// commits them to the recipients' queues; returns the ids accepted. Nothing is acknowledged
/// before the commit. The recipients' devices verify each sender's signature (E2E).
async fn accept_delivery(
    shared: &Arc<crate::server::Shared>,
    peer: &ServerName,
    msgs: Vec<siren_proto::envelope::Envelope>,
) -> Result<Vec<siren_proto::ids::MessageId>, Error> {
    use crate::roster::Admission;
    use siren_proto::message::{Notice, QueueItem};
    let mut ids = Vec::new();
    let mut items = Vec::new();
    let mut live_msgs = Vec::with_capacity(msgs.len());
    for env in msgs {
        if env.from.server() != peer {
            return Err(Error::new(
                ErrorCode::ForgedSender,
                format!("{} is not a user of {peer}", env.from),
            ));
        }
        if env.to.server() != &shared.config.server.name {
            return Err(Error::new(
                ErrorCode::NotFound,
                format!("{} is not a user of this server", env.to),
            ));
        }
        let live = shared
            .directory
            .get(env.to.user())
            .await?
            .is_some_and(|dir| dir.is_live(&env.to_dek));
        if !ids.contains(&env.id) {
            ids.push(env.id);
        }
        // A device revoked meanwhile: accepted, with nothing to deliver it to.
        if live {
            live_msgs.push(env);
        }
    }
    for env in live_msgs {
        match shared
            .rosters
            .admit(env.to.user(), &env.to_dek, &env.from)
            .await?
        {
            Admission::Drop | Admission::Refuse => {}
            Admission::DeliverWithRequest => {
                let notice = Notice::ContactRequest {
                    from: env.from.clone(),
                };
                items.push((env.to_dek, QueueItem::Notice { notice }));
                items.push((env.to_dek, QueueItem::Message { env }));
            }
            Admission::Deliver => items.push((env.to_dek, QueueItem::Message { env })),
        }
    }
    shared.queue.enqueue_to(items).await?;
    Ok(ids)
}

fn request_id(message: &LinkMessage) -> Option<u32> {
    match message {
        LinkMessage::Deliver { rid, .. }
        | LinkMessage::Subscribe { rid, .. }
        | LinkMessage::Unsubscribe { rid, .. } => Some(*rid),
        _ => None,
    }
}

// ---------------------------------------------------------------------------------------------
// Outbound deliveries: a persisted queue per peer, drained over the link.

/// The queue that holds envelopes waiting for `peer`: an ordinary device queue in the store,
/// named by a key no device can have (a hash of a label and the peer's name), so it gets the
/// store's durability, order and expiry with no new table.
pub fn outbox_key(peer: &ServerName) -> siren_proto::keys::DekPublic {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    h.update(b"siren/v1/outbox\0");
    h.update(peer.as_str().as_bytes());
    siren_proto::keys::DekPublic::from_bytes(h.finalize().into())
}

/// The hub registration id of outbox workers (sessions count up from 1).
const OUTBOX_CONN: u64 = u64::MAX;

/// Envelopes sent per `deliver`.
const DELIVER_BATCH: usize = 64;

/// Longest wait between attempts to reach a peer.
const MAX_BACKOFF: Duration = Duration::from_secs(30);

impl Links {
    /// Starts the worker that drains `peer`'s outbox, unless it runs already.
    pub fn ensure_worker(&self, shared: &Arc<crate::server::Shared>, peer: &ServerName) {
        let mut workers = self.workers.lock().unwrap_or_else(PoisonError::into_inner);
        if workers.insert(peer.clone()) {
            tokio::spawn(run_outbox(shared.clone(), peer.clone()));
        }
    }

    /// Sends envelopes over the link and waits for the peer's commit.
    async fn deliver(
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

/// Drains `peer`'s outbox for the life of the server: reads the stored envelopes in order,
/// delivers them, and removes them only after the peer acknowledged its commit. While the peer
/// is unreachable it retries with exponential backoff (1 s doubling to 30 s); new envelopes
/// wake it at once. Expired envelopes are removed by the sweeper like any queue item.
async fn run_outbox(shared: Arc<crate::server::Shared>, peer: ServerName) {
    let key = outbox_key(&peer);
    let registration = shared.hub.register(key, OUTBOX_CONN);
    let mut backoff = Duration::from_secs(1);
    let mut shutdown = shared.shutdown.clone();
    loop {
        registration
            .lag
            .store(crate::hub::NO_LAG, Ordering::Relaxed);
        let page = match shared
            .storage
            .pending(key.as_bytes(), 0, DELIVER_BATCH)
            .await
        {
            Ok(page) => page,
            Err(e) => {
                tracing::warn!(%peer, error = %e, "cannot read the outbox");
                Vec::new()
            }
        };
        let mut seqs = Vec::new();
        let mut msgs = Vec::new();
        for item in &page {
            seqs.push(item.seq);
            if let Ok(siren_proto::message::QueueItem::Message { env }) =
                siren_proto::message::decode_value(&item.bytes)
            {
                msgs.push(env);
            }
        }
        let wait = if page.is_empty() {
            None
        } else {
            let delivered = if msgs.is_empty() {
                Ok(())
            } else {
                shared.links.deliver(&peer, msgs).await
            };
            match delivered {
                Ok(()) => {
                    if let Err(e) = shared.storage.ack(key.as_bytes(), &seqs).await {
                        tracing::warn!(%peer, error = %e, "cannot remove delivered envelopes");
                    }
                    backoff = Duration::from_secs(1);
                    continue;
                }
                Err(e) => {
                    tracing::info!(%peer, error = %e, retry_in = ?backoff, "peer unreachable; envelopes stay queued");
                    let wait = backoff;
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                    Some(wait)
                }
            }
        };
        let woken = registration.wake.notified();
        tokio::select! {
            _ = woken, if wait.is_none() => {}
            _ = tokio::time::sleep(wait.unwrap_or(MAX_BACKOFF)) => {}
            _ = shutdown.changed() => return,
        }
    }
}

/// Starts outbox workers for every peer with envelopes waiting (after a restart).
pub async fn resume_outboxes(shared: &Arc<crate::server::Shared>) {
    let devices = match shared.storage.queue_devices().await {
        Ok(devices) => devices,
        Err(e) => {
            tracing::warn!(error = %e, "cannot list queues to resume outboxes");
            return;
        }
    };
    for device in devices {
        let Ok(page) = shared.storage.pending(&device, 0, 1).await else {
            continue;
        };
        let Some(item) = page.first() else { continue };
        if let Ok(siren_proto::message::QueueItem::Message { env }) =
            siren_proto::message::decode_value(&item.bytes)
        {
            let peer = env.to.server();
            if peer != &shared.config.server.name && outbox_key(peer).as_bytes() == &device {
                shared.links.ensure_worker(shared, peer);
            }
        }
    }
}

/// Hands presence events from peers to the local sessions subscribed to them: only events of
/// the peer's own users, only to the subscribers the peer named, never from a user the
/// subscriber blocked.
pub async fn deliver_events(
    shared: Arc<crate::server::Shared>,
    mut events: tokio::sync::mpsc::UnboundedReceiver<(ServerName, LinkMessage)>,
) {
    while let Some((peer, message)) = events.recv().await {
        let LinkMessage::Event {
            to, from, presence, ..
        } = message
        else {
            continue;
        };
        if from.server() != &peer {
            tracing::warn!(%peer, publisher = %from, "a peer sent presence of another server's user; dropped");
            continue;
        }
        for (subscriber, tx) in shared.pubsub.subscribers(&from) {
            if !to.contains(&subscriber) {
                continue;
            }
            let blocked = shared
                .rosters
                .blocks(subscriber.user(), &from)
                .await
                .unwrap_or(true);
            if !blocked {
                crate::pubsub::PubSub::deliver(&tx, &from, &presence);
            }
        }
    }
}

/// Connection ids of remote subscribers in the pub/sub tables (sessions count up from 1).
static REMOTE_CONN: AtomicU64 = AtomicU64::new(u64::MAX / 2);

/// A peer's subscription request: every topic must be one of our users who shares presence
/// with the subscriber (a user of that peer); events then go back over this link.
async fn subscribe_remote(
    shared: &Arc<crate::server::Shared>,
    peer: &ServerName,
    from: Uid,
    topics: Vec<siren_proto::message::Topic>,
    remote: &mut HashMap<Uid, u64>,
    out: &tokio::sync::mpsc::Sender<LinkMessage>,
) -> Result<(), Error> {
    if from.server() != peer {
        return Err(Error::new(
            ErrorCode::ForgedSender,
            format!("{from} is not a user of {peer}"),
        ));
    }
    for topic in &topics {
        let publisher = topic.publisher();
        let shares = publisher.server() == &shared.config.server.name
            && shared
                .rosters
                .shares_presence_with(publisher.user(), &from)
                .await?;
        if !shares {
            return Err(Error::new(
                ErrorCode::Refused,
                format!("{publisher} does not share presence with {from}"),
            ));
        }
    }
    let conn = *remote
        .entry(from.clone())
        .or_insert_with(|| REMOTE_CONN.fetch_add(1, Ordering::Relaxed));
    for topic in &topics {
        if let Some(mut inbox) = shared.pubsub.subscribe(conn, &from, topic.publisher()) {
            let (out, to) = (out.clone(), from.clone());
            tokio::spawn(async move {
                while let Some(siren_proto::message::ServerMessage::Event {
                    topic,
                    from,
                    presence,
                }) = inbox.rx.recv().await
                {
                    let event = LinkMessage::Event {
                        to: vec![to.clone()],
                        topic,
                        from,
                        presence,
                    };
                    if out.send(event).await.is_err() {
                        break;
                    }
                }
            });
        }
    }
    Ok(())
}
