//! Opening an outbound link (PROTOCOL.md §4, §17): the peer's key (its pin, or the one key its
//! DNS publishes), its SRV targets, a connection to a public address among the first
//! [`MAX_TARGETS`] targets, the `s2s` handshake and the peer's `link_ready`.
//!
//! What goes wrong is told apart here: the details (DNS answers, addresses, whatever bytes a
//! non-Siren service sent back) go to the log only, the client gets a code and a generic text,
//! and failures that are DNS *answers* (no such server, no key, only unusable addresses) are
//! marked so the caller can remember them for a while.

use std::net::SocketAddr;
use std::time::Duration;

use siren_api::{Error, ErrorCode, ServerName};
use siren_net::discovery::{self, ConnectLimits, DiscoveryError, FailureKind, Resolver};
use siren_net::{NetError, Receiver, Sender};
use siren_proto::handshake::HandshakeError;
use siren_proto::keys::{SekPublic, SekSecret};
use siren_proto::message::LinkMessage;

use super::pins::Pins;

/// Most SRV targets tried, and most connections attempted, to open one link.
pub const MAX_TARGETS: usize = 4;

/// What opening a link needs.
pub(super) struct Dialer<'a> {
    pub(super) own: &'a ServerName,
    pub(super) sek: &'a SekSecret,
    pub(super) resolver: &'a Resolver,
    pub(super) pins: &'a Pins,
    /// The deadline of each connection attempt and handshake step.
    pub(super) step: Duration,
    /// Whether non-public addresses may be connected to (`danger_allow_private_targets`).
    pub(super) allow_non_public: bool,
}

/// A link whose handshake and `link_ready` are done.
pub(super) struct Dialed {
    pub(super) sender: Sender,
    pub(super) receiver: Receiver,
    /// The largest frame the peer accepts.
    pub(super) max_frame: usize,
    pub(super) addr: SocketAddr,
}

/// Why a link could not be opened.
#[derive(Debug)]
pub(super) struct DialError {
    /// What the requester is told: a code and a text with no detail from DNS or the target.
    pub(super) public: Error,
    /// What the log says.
    pub(super) detail: String,
    /// The failure is a DNS answer (remember it for a while).
    pub(super) dns_answer: bool,
}

/// The text every requester gets when a peer cannot be reached, whatever the reason.
pub(super) fn unreachable(peer: &ServerName) -> Error {
    Error::new(
        ErrorCode::PeerUnreachable,
        format!("{peer} cannot be reached right now (the reason is in this server's log)"),
    )
}

impl DialError {
    fn unreachable(peer: &ServerName, detail: impl std::fmt::Display) -> Self {
        DialError {
            public: unreachable(peer),
            detail: detail.to_string(),
            dns_answer: false,
        }
    }

    /// A failed DNS lookup or connection; a DNS *answer* (no such server, no key, no usable
    /// address) is marked as one.
    pub(super) fn from_lookup(peer: &ServerName, e: DiscoveryError) -> Self {
        let dns_answer = match &e {
            DiscoveryError::NoKeyRecord { .. }
            | DiscoveryError::ServiceUnavailable { .. }
            | DiscoveryError::BadKeyRecord { .. }
            | DiscoveryError::TooManyKeys { .. } => true,
            // No connection was even attempted: every target is unknown to DNS or refused.
            DiscoveryError::Unreachable { failures } => failures.iter().all(|f| {
                matches!(
                    f.kind,
                    FailureKind::NoAddress | FailureKind::NotPublic | FailureKind::NotTried
                )
            }),
            _ => false,
        };
        DialError {
            dns_answer,
            ..DialError::unreachable(peer, e)
        }
    }

    fn key_mismatch(text: String) -> Self {
        DialError {
            public: Error::new(ErrorCode::PeerKeyMismatch, text.clone()),
            detail: text,
            dns_answer: false,
        }
    }

    /// The handshake failed. A peer that refused the link with one of the federation codes
    /// (disabled, denied, key mismatch) is reported with that code; anything else — including
    /// whatever a service that is not Siren sent back — is just "unreachable".
    fn handshake(peer: &ServerName, e: NetError) -> Self {
        if let NetError::Handshake(HandshakeError::Refused { code, .. }) = &e
            && let Some(code) = ErrorCode::from_u16(*code).filter(|c| {
                matches!(
                    c,
                    ErrorCode::FederationDisabled
                        | ErrorCode::FederationDenied
                        | ErrorCode::PeerKeyMismatch
                        | ErrorCode::RateLimited
                )
            })
        {
            return DialError {
                public: Error::new(code, format!("{peer} refused the link ({})", code.name())),
                detail: e.to_string(),
                dns_answer: false,
            };
        }
        DialError::unreachable(peer, e)
    }
}

impl Dialer<'_> {
    /// The pinned (or DNS-published, then pinned) key of `peer`. A pinned peer whose DNS now
    /// publishes other keys is refused (error 503) and logged loudly.
    async fn peer_key(&self, peer: &ServerName) -> Result<SekPublic, DialError> {
        if let Some(pin) = self.pins.get(peer) {
            let published = discovery::lookup_keys(self.resolver, peer)
                .await
                .unwrap_or_default();
            if !published.is_empty() && !published.contains(&pin) {
                tracing::error!(%peer, pinned = %pin, "DNS now publishes another key for a pinned peer: link refused");
                return Err(DialError::key_mismatch(format!(
                    "{peer}'s DNS key differs from the pinned key"
                )));
            }
            return Ok(pin);
        }
        let keys = discovery::lookup_keys(self.resolver, peer)
            .await
            .map_err(|e| DialError::from_lookup(peer, e))?;
        let [key] = keys.as_slice() else {
            return Err(DialError {
                dns_answer: true,
                ..DialError::unreachable(peer, "DNS publishes more than one key and none is pinned")
            });
        };
        self.pins.set(peer, *key);
        Ok(*key)
    }

    /// Opens a link to `peer`: key, targets, connection, handshake, `link_ready`.
    pub(super) async fn dial(&self, peer: &ServerName) -> Result<Dialed, DialError> {
        let key = self.peer_key(peer).await?;
        let (targets, _) =
            discovery::lookup_targets(self.resolver, peer, &mut siren_proto::os_rng())
                .await
                .map_err(|e| DialError::from_lookup(peer, e))?;
        let limits = ConnectLimits {
            max_targets: MAX_TARGETS,
            max_attempts: MAX_TARGETS,
            allow_non_public: self.allow_non_public,
        };
        let reached = discovery::connect_within(self.resolver, &targets, self.step, limits)
            .await
            .map_err(|e| {
                if let DiscoveryError::Unreachable { failures } = &e
                    && failures.iter().any(|f| f.kind == FailureKind::NotPublic)
                {
                    tracing::warn!(%peer, error = %e, "a peer's DNS names addresses that are not public: not connecting there (`[federation] danger_allow_private_targets` allows it)");
                }
                DialError::from_lookup(peer, e)
            })?;
        let addr = reached.addr;
        let connected =
            siren_net::connect_link(reached.stream, self.own, self.sek, peer, &key, self.step)
                .await
                .map_err(|e| DialError::handshake(peer, e))?;
        if let Some(new) = connected.rotated_sek {
            // Proven inside a handshake made with the pinned key (PROTOCOL.md §7.6).
            tracing::info!(%peer, old = %key, new = %new, "peer rotated its key; pin updated");
            self.pins.set(peer, new);
        }
        let mut receiver = connected.receiver;
        let max_frame = match siren_net::within(self.step, receiver.recv::<LinkMessage>()).await {
            Ok(Ok(LinkMessage::LinkReady { server, max_frame })) if &server == peer => max_frame,
            Ok(Ok(other)) => {
                return Err(DialError::unreachable(
                    peer,
                    format!("expected link_ready, got {other:?}"),
                ));
            }
            Ok(Err(e)) | Err(e) => return Err(DialError::unreachable(peer, e)),
        };
        Ok(Dialed {
            sender: connected.sender,
            receiver,
            max_frame: usize::try_from(max_frame).unwrap_or(usize::MAX),
            addr,
        })
    }
}
