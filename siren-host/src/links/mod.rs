//! Server-to-server links (PROTOCOL.md §17): outbound links to peers, found through DNS and
//! authenticated by the peer's SEK, and the key check of the inbound side.
//!
//! This module is the transport: whether a peer may be talked to at all (federation on, the
//! policy), finding a peer ([`dial`]), its pinned key ([`pins`]), one reused link per peer
//! ([`link`]) and requests matched to their answers, each within `[federation]
//! request_timeout_secs`. What travels over the links (deliveries from the outbox, the inbound
//! side, presence events) lives in [`crate::federation`]. A peer's SEK is pinned on first use
//! (kept in `<data_dir>/peer-keys.toml`); a later link whose DNS key differs from the pin is
//! refused and logged loudly.
//!
//! Opening a link to one peer never holds up another: each peer has its own lock, held only
//! while that peer's link is being opened, and the map of peers is locked only to find an entry.
//! DNS answers that a peer does not exist are remembered ([`guard`]), and link attempts by
//! unpinned servers, which need DNS, have a budget per address.

mod dial;
mod guard;
mod link;
mod pins;

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use siren_api::federation::{Decision, Direction, FederationPolicy};
use siren_api::{Error, ErrorCode, ServerName, Uid};
use siren_net::discovery::{self, Resolver, ResolverConfig};
use siren_proto::keys::{SekPublic, SekSecret};
use siren_proto::message::{self, LinkMessage};
use siren_proto::records::DirectoryListing;

pub use dial::MAX_TARGETS;
use link::{Link, Outgoing};

use crate::config::Config;

/// One peer's link, and the lock held while it is being opened.
type Slot = tokio::sync::Mutex<Option<Arc<Link>>>;

/// How a request to a peer failed.
#[derive(Debug, thiserror::Error)]
pub enum RequestError {
    /// The peer answered with an `error`: its code (as sent, known to this version or not) and
    /// the error to pass on.
    #[error("{error}")]
    Refused {
        /// The number the peer sent.
        code: u16,
        /// The code (or `internal` for a number this version does not know) and the peer's text.
        error: Error,
    },
    /// No answer: the peer is not allowed, cannot be reached, or did not answer in time.
    #[error("{0}")]
    Failed(Error),
}

impl From<RequestError> for Error {
    fn from(e: RequestError) -> Self {
        match e {
            RequestError::Refused { error, .. } | RequestError::Failed(error) => error,
        }
    }
}

/// The peer's answer to a `deliver` sent with [`Links::send_deliver`]: `Ok` once it committed
/// the envelopes.
pub type DeliveryAnswer =
    std::pin::Pin<Box<dyn Future<Output = Result<(), RequestError>> + Send + 'static>>;

/// What an outbound link to a peer is doing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinkState {
    /// Open.
    Up,
    /// Being opened (DNS, connection, handshake), or busy being replaced.
    Opening,
    /// Closed (it will be opened again when something must go to the peer).
    Down,
}

impl LinkState {
    /// Every state.
    pub const ALL: [LinkState; 3] = [LinkState::Up, LinkState::Opening, LinkState::Down];

    /// `up`, `opening` or `down`.
    pub fn as_str(self) -> &'static str {
        match self {
            LinkState::Up => "up",
            LinkState::Opening => "opening",
            LinkState::Down => "down",
        }
    }

    /// Whether the link is open.
    pub fn is_up(self) -> bool {
        self == LinkState::Up
    }
}

/// Whether federation is on and which peers the policy allows.
#[derive(Clone)]
struct Gate {
    enabled: bool,
    policy: Arc<dyn FederationPolicy>,
}

/// This server's outbound links, peer pins and federation settings.
pub struct Links {
    name: ServerName,
    sek: SekSecret,
    resolver: Resolver,
    /// Whether federation is on, and the policy: replaced whole by a reload.
    gate: std::sync::RwLock<Gate>,
    /// Counts the gate's changes, so inbound links can ask again whether their peer is allowed.
    gate_changes: tokio::sync::watch::Sender<u64>,
    /// The deadline of each connection attempt and handshake step.
    step: Duration,
    /// The longest any request (opening the link included) and any link write may take.
    request_timeout: Duration,
    allow_non_public: bool,
    slots: Mutex<HashMap<ServerName, Arc<Slot>>>,
    pins: pins::Pins,
    negative: guard::NegativeCache,
    hellos: guard::PerAddress,
    /// The largest frame each peer accepted on its last link (its `link_ready`).
    frame_limits: Mutex<HashMap<ServerName, usize>>,
    /// Presence events peers send over outbound links, for [`Links::take_events`].
    events: link::Events,
    events_rx: Mutex<Option<tokio::sync::mpsc::UnboundedReceiver<(ServerName, LinkMessage)>>>,
}

impl Links {
    /// Links for the server `config` describes, with key `sek`, asking `policy` which peers it
    /// may talk to.
    pub fn new(
        config: &Config,
        sek: SekSecret,
        policy: Arc<dyn FederationPolicy>,
    ) -> Result<Links, Error> {
        let f = &config.federation;
        let resolver = Resolver::new(&ResolverConfig {
            nameservers: f.dns.clone(),
            ..Default::default()
        })
        .map_err(|e| Error::new(ErrorCode::Internal, format!("`federation.dns`: {e}")))?;
        let (events, events_rx) = tokio::sync::mpsc::unbounded_channel();
        Ok(Links {
            name: config.server.name.clone(),
            sek,
            resolver,
            gate: std::sync::RwLock::new(Gate {
                enabled: f.enabled,
                policy,
            }),
            gate_changes: tokio::sync::watch::Sender::new(0),
            step: Duration::from_secs(config.limits.handshake_timeout_secs),
            request_timeout: Duration::from_secs(f.request_timeout_secs),
            allow_non_public: f.danger_allow_private_targets,
            slots: Mutex::new(HashMap::new()),
            pins: pins::Pins::load(&config.server.data_dir)?,
            negative: guard::NegativeCache::new(Duration::from_secs(f.negative_cache_secs)),
            hellos: guard::PerAddress::new(f.new_peer_hellos_per_address_per_minute),
            frame_limits: Mutex::new(HashMap::new()),
            events,
            events_rx: Mutex::new(Some(events_rx)),
        })
    }

    /// Whether this server may talk to `peer` in `direction`: federation on (else 500) and the
    /// policy allows it (else 501). Asked before anything about another server or its users,
    /// before opening a link and before each outbox delivery.
    pub async fn allowed(&self, peer: &ServerName, direction: Direction) -> Result<(), Error> {
        let gate = self.gate();
        if !gate.enabled {
            return Err(Error::new(
                ErrorCode::FederationDisabled,
                format!("{peer} is another server and federation is disabled here"),
            ));
        }
        // A policy plugin's call blocks (up to its deadline): off the async executor (it is
        // asked before every send to another server's user and every outbox delivery, so a
        // built-in list answers here). A failed task denies (fail closed).
        let decision = if gate.policy.decides_at_once() {
            gate.policy.decide(peer, direction)
        } else {
            let policy = gate.policy.clone();
            let asked = peer.clone();
            tokio::task::spawn_blocking(move || policy.decide(&asked, direction))
                .await
                .unwrap_or_else(|e| Decision::Deny(format!("the policy task failed: {e}")))
        };
        match decision {
            Decision::Deny(reason) => {
                tracing::info!(%peer, ?direction, policy = gate.policy.name(), %reason, "federation refused by policy");
                Err(Error::new(
                    ErrorCode::FederationDenied,
                    format!("this server's federation policy does not allow {peer}"),
                ))
            }
            Decision::Allow => Ok(()),
        }
    }

    fn gate(&self) -> Gate {
        self.gate
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Whether federation is on.
    pub fn enabled(&self) -> bool {
        self.gate().enabled
    }

    /// The name of the federation policy in force.
    pub fn policy_name(&self) -> String {
        self.gate().policy.name().to_owned()
    }

    /// Turns federation on or off and replaces the policy (a reload). Requests from now on are
    /// asked under the new gate; inbound links learn of it through [`Links::gate_changes`], and
    /// [`Links::close_disallowed`] closes the outbound links it no longer allows.
    pub fn set_gate(&self, enabled: bool, policy: Arc<dyn FederationPolicy>) {
        *self.gate.write().unwrap_or_else(PoisonError::into_inner) = Gate { enabled, policy };
        self.gate_changes.send_modify(|n| *n = n.wrapping_add(1));
    }

    /// Changes of the gate (each reload that touched federation).
    pub fn gate_changes(&self) -> tokio::sync::watch::Receiver<u64> {
        self.gate_changes.subscribe()
    }

    /// Closes the outbound links to peers the gate no longer allows; returns their names.
    /// Requests already on such a link finish; nothing new goes over it.
    pub async fn close_disallowed(&self) -> Vec<ServerName> {
        let mut closed = Vec::new();
        for (peer, slot) in self.all_slots() {
            if self.allowed(&peer, Direction::Outbound).await.is_err() {
                if let Some(link) = slot.lock().await.take() {
                    link.close();
                }
                closed.push(peer);
            }
        }
        closed
    }

    /// Every peer's slot (a copy: the map is not locked while they are used).
    fn all_slots(&self) -> Vec<(ServerName, Arc<Slot>)> {
        self.slots
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .map(|(p, s)| (p.clone(), s.clone()))
            .collect()
    }

    /// Whether `sek` is `peer`'s key, for a link `peer` opens to us from `from`: its pin
    /// (without DNS), or (first use) a key its DNS publishes, which is then pinned. A key that
    /// differs from the pin, or is not published, is refused (error 503) and logged. A name DNS
    /// recently said does not exist is refused from memory; the lookups an address may cause
    /// have a budget (error 203 beyond it).
    pub async fn check_peer_key(
        &self,
        peer: &ServerName,
        sek: &SekPublic,
        from: IpAddr,
    ) -> Result<(), Error> {
        match self.pins.get(peer) {
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
        if let Some(e) = self.negative.get(peer) {
            return Err(e);
        }
        if !self.hellos.allow(from) {
            tracing::info!(%from, %peer, "too many links naming unpinned servers from one address: refused without a DNS lookup");
            return Err(Error::new(
                ErrorCode::RateLimited,
                "too many link attempts naming servers whose key must be looked up; retry in a minute",
            ));
        }
        let published = match discovery::lookup_keys(&self.resolver, peer).await {
            Ok(keys) => keys,
            Err(e) => {
                let failed = dial::DialError::from_lookup(peer, e);
                tracing::info!(%peer, error = %failed.detail, "cannot check a linking server's key");
                let refusal = Error::new(
                    ErrorCode::PeerUnreachable,
                    format!("cannot find {peer}'s key in DNS"),
                );
                if failed.dns_answer {
                    self.negative.put(peer, &refusal);
                }
                return Err(refusal);
            }
        };
        if !published.contains(sek) {
            tracing::error!(%peer, offered = %sek, "a server's key is not the one its DNS publishes: refused");
            return Err(Error::new(
                ErrorCode::PeerKeyMismatch,
                format!("{peer} does not publish that key"),
            ));
        }
        self.pins.set(peer, *sek);
        Ok(())
    }

    /// The entry of `peer` in the map of links.
    fn slot(&self, peer: &ServerName) -> Arc<Slot> {
        self.slots
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .entry(peer.clone())
            .or_default()
            .clone()
    }

    /// Drops `peer`'s entry after a failed opening, unless someone else is waiting on it.
    fn forget_slot(&self, peer: &ServerName, slot: &Arc<Slot>) {
        let mut slots = self.slots.lock().unwrap_or_else(PoisonError::into_inner);
        // The map's reference and the caller's: nobody else waits for this entry.
        if Arc::strong_count(slot) == 2 && slots.get(peer).is_some_and(|s| Arc::ptr_eq(s, slot)) {
            slots.remove(peer);
        }
    }

    /// The open link to `peer`, or a new one. Only this peer's opening is waited for.
    async fn link(&self, peer: &ServerName) -> Result<Arc<Link>, Error> {
        let slot = self.slot(peer);
        let mut open = slot.lock().await;
        if let Some(link) = open.as_ref().filter(|l| l.is_alive()) {
            return Ok(link.clone());
        }
        *open = None;
        match self.open(peer).await {
            Ok(link) => {
                *open = Some(link.clone());
                Ok(link)
            }
            Err(e) => {
                drop(open);
                self.forget_slot(peer, &slot);
                Err(e)
            }
        }
    }

    /// Opens a link to `peer`, if the policy allows it and DNS did not recently say it does
    /// not exist.
    async fn open(&self, peer: &ServerName) -> Result<Arc<Link>, Error> {
        self.allowed(peer, Direction::Outbound).await?;
        if let Some(e) = self.negative.get(peer) {
            tracing::debug!(%peer, "link not opened: DNS recently said this server does not exist");
            return Err(e);
        }
        let dialer = dial::Dialer {
            own: &self.name,
            sek: &self.sek,
            resolver: &self.resolver,
            pins: &self.pins,
            step: self.step,
            allow_non_public: self.allow_non_public,
        };
        let dialed = match dialer.dial(peer).await {
            Ok(dialed) => dialed,
            Err(e) => {
                tracing::info!(%peer, error = %e.detail, "cannot open a link");
                if e.dns_answer {
                    self.negative.put(peer, &e.public);
                }
                return Err(e.public);
            }
        };
        tracing::info!(%peer, addr = %dialed.addr, max_frame = dialed.max_frame, "link opened");
        self.frame_limits
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(peer.clone(), dialed.max_frame);
        Ok(Link::start(
            peer,
            dialed.sender,
            dialed.receiver,
            dialed.max_frame,
            self.request_timeout,
            self.events.clone(),
        ))
    }

    /// Runs `op` within the request timeout; past it, the requester gets the generic 502.
    async fn within_budget<T>(
        &self,
        peer: &ServerName,
        op: impl Future<Output = Result<T, RequestError>>,
    ) -> Result<T, RequestError> {
        match tokio::time::timeout(self.request_timeout, op).await {
            Ok(result) => result,
            Err(_) => {
                tracing::info!(%peer, after = ?self.request_timeout, "no answer from a peer in time");
                Err(RequestError::Failed(dial::unreachable(peer)))
            }
        }
    }

    /// Sends a request over the link to `peer` (opened first if needed) and waits for its
    /// answer, all within the request timeout; an `error` answer is [`RequestError::Refused`].
    async fn request(
        &self,
        peer: &ServerName,
        make: impl FnOnce(u32) -> LinkMessage,
    ) -> Result<LinkMessage, RequestError> {
        self.within_budget(peer, async {
            let link = self.link(peer).await.map_err(RequestError::Failed)?;
            answered(peer, link.request(make).await)
        })
        .await
    }
    /// The largest frame `peer` accepts: from the open link, or opening one.
    pub async fn frame_limit(&self, peer: &ServerName) -> Result<usize, Error> {
        let link = self
            .within_budget(peer, async {
                self.link(peer).await.map_err(RequestError::Failed)
            })
            .await?;
        Ok(link.max_frame)
    }

    /// The largest frame `peer` accepted on its last link, if a link was ever opened.
    pub fn known_frame_limit(&self, peer: &ServerName) -> Option<usize> {
        self.frame_limits
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(peer)
            .copied()
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
            other => Err(unexpected(peer, &other)),
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
            other => Err(unexpected(peer, &other)),
        }
    }

    /// Sends envelopes (each encoded already, as the outbox stores it) in one `deliver` over
    /// the link to `peer` (opened first if needed) and returns what waits
    /// for the peer's commit, each step within the request timeout. Deliveries sent one after
    /// another are written in that order, so several can wait for their answers at once.
    pub async fn send_deliver(
        &self,
        peer: &ServerName,
        msgs: &[&[u8]],
    ) -> Result<DeliveryAnswer, RequestError> {
        let answer = self
            .within_budget(peer, async {
                let link = self.link(peer).await.map_err(RequestError::Failed)?;
                link.send(|rid| Outgoing::Encoded(message::encode_link_deliver(rid, msgs)))
                    .await
                    .map_err(|e| {
                        tracing::info!(%peer, error = %e, "a request to a peer failed");
                        RequestError::Failed(dial::unreachable(peer))
                    })
            })
            .await?;
        let (peer, timeout) = (peer.clone(), self.request_timeout);
        Ok(Box::pin(async move {
            let Ok(answer) = tokio::time::timeout(timeout, answer.answer()).await else {
                tracing::info!(%peer, after = ?timeout, "no answer from a peer in time");
                return Err(RequestError::Failed(dial::unreachable(&peer)));
            };
            match answered(&peer, answer)? {
                LinkMessage::DeliverAck { .. } => Ok(()),
                other => Err(RequestError::Failed(unexpected(&peer, &other))),
            }
        }))
    }

    /// Sends ephemeral envelopes (signals) to `peer` over the link that is open to it right
    /// now, without waiting: no link is opened for a signal, and when none is open (or it is
    /// being opened, or its writer is busy) they are dropped. Returns whether they were queued
    /// for the link's writer. The peer sends no answer.
    pub fn signal(&self, peer: &ServerName, msgs: Vec<siren_proto::envelope::Envelope>) -> bool {
        let slot = self
            .slots
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(peer)
            .cloned();
        let link = slot.and_then(|slot| {
            slot.try_lock()
                .ok()
                .and_then(|open| open.as_ref().filter(|l| l.is_alive()).cloned())
        });
        match link {
            Some(link) => link.signal(msgs),
            None => {
                tracing::debug!(%peer, "no open link: signals dropped");
                false
            }
        }
    }

    /// Every peer this server has an outbound link entry for, and the state of that link (for
    /// `sirend federation links` and `status`).
    pub fn peers(&self) -> Vec<(ServerName, LinkState)> {
        self.all_slots()
            .into_iter()
            .map(|(peer, slot)| {
                let state = match slot.try_lock() {
                    Err(_) => LinkState::Opening,
                    Ok(open) if open.as_ref().is_some_and(|l| l.is_alive()) => LinkState::Up,
                    Ok(_) => LinkState::Down,
                };
                (peer, state)
            })
            .collect()
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
}

/// A peer answered with a message that is not the answer to the request.
/// A request's answer as the requester sees it: an `error` is [`RequestError::Refused`], a
/// closed link the generic 502.
fn answered(
    peer: &ServerName,
    answer: Result<LinkMessage, link::LinkClosed>,
) -> Result<LinkMessage, RequestError> {
    match answer {
        Ok(LinkMessage::Error { code, msg, .. }) => Err(RequestError::Refused {
            code,
            error: Error::new(
                ErrorCode::from_u16(code).unwrap_or(ErrorCode::Internal),
                peer_text(peer, &msg),
            ),
        }),
        Ok(answer) => Ok(answer),
        Err(e) => {
            tracing::info!(%peer, error = %e, "a request to a peer failed");
            Err(RequestError::Failed(dial::unreachable(peer)))
        }
    }
}

fn unexpected(peer: &ServerName, answer: &LinkMessage) -> Error {
    tracing::info!(%peer, ?answer, "a peer answered a request with the wrong message");
    dial::unreachable(peer)
}

/// A peer's error text, prefixed with its name, within the protocol's limit for error texts.
pub fn peer_text(peer: &ServerName, msg: &str) -> String {
    error_text(format!("{peer}: {msg}"))
}

/// `text` cut to the protocol's limit for error texts (at a character boundary).
pub fn error_text(mut text: String) -> String {
    let max = siren_proto::message::MAX_ERROR_TEXT;
    if text.len() > max {
        let mut end = max;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text.truncate(end);
    }
    text
}
