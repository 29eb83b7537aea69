//! The inbound side of a federation link (PROTOCOL.md §17): the responder's checks before the
//! handshake reply (the claimed name's key, the federation policy), then serving the peer's
//! requests — lookups of our users, deliveries to them, presence subscriptions, signals — over
//! one writer.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use siren_api::{Error, ErrorCode, ServerName, Uid};
use siren_net::{NetError, Receiver, Sender, read_frame, within, write_frame};
use siren_proto::handshake::{self, Peer, Role};
use siren_proto::message::LinkMessage;

use crate::shared::Shared;

/// A connection whose hello asked for the `s2s` role.
pub struct Incoming<'a> {
    /// The hello frame.
    pub hello: &'a [u8],
    /// The connection's halves.
    pub rd: siren_net::ReadHalf,
    /// The connection's halves.
    pub wr: siren_net::WriteHalf,
    /// The peer's address.
    pub addr: SocketAddr,
    /// The time allowed for each handshake step.
    pub step: Duration,
    /// The largest frame after the handshake.
    pub max: usize,
}

/// The responder side of a peer server's link: the claimed name's key must be its pinned or
/// DNS-published SEK and the federation policy must allow it (inbound), before the reply; then
/// the link is served until it closes.
pub async fn accept(
    shared: &Arc<Shared>,
    link: Incoming<'_>,
    ticket: &mut crate::admission::Ticket,
) -> Result<(), NetError> {
    let Incoming {
        hello,
        mut rd,
        mut wr,
        addr,
        step,
        max,
    } = link;
    let refuse = |code: ErrorCode, text: String| handshake::error_frame(code, &text);
    let received = match handshake::read_hello(&shared.keys, Role::ServerToServer, hello) {
        Ok(r) => r,
        Err(e) => {
            let frame = refuse(e.code(), e.to_string());
            let _ = write_frame(&mut wr, &frame, handshake::MAX_HANDSHAKE_FRAME).await;
            return Ok(());
        }
    };
    let Peer::Server { name, sek } = received.peer().clone() else {
        return Ok(());
    };
    let checked = match shared
        .remote_allowed(&name, siren_api::federation::Direction::Inbound)
        .await
    {
        Ok(()) => shared.links.check_peer_key(&name, &sek, addr.ip()).await,
        Err(e) => Err(e),
    };
    if let Err(e) = checked {
        tracing::warn!(%addr, peer = %name, error = %e, "link refused");
        let frame = refuse(e.code, e.message);
        let _ = write_frame(&mut wr, &frame, handshake::MAX_HANDSHAKE_FRAME).await;
        return Ok(());
    }
    let (waiting, reply) = received.reply(&mut siren_proto::os_rng())?;
    write_frame(&mut wr, &reply, handshake::MAX_HANDSHAKE_FRAME).await?;
    let finish = within(step, read_frame(&mut rd, handshake::MAX_HANDSHAKE_FRAME)).await??;
    let done = match waiting.read_finish(&finish) {
        Ok(done) => done,
        Err(e) => {
            tracing::warn!(%addr, peer = %name, error = %e, "link handshake failed");
            return Ok(());
        }
    };
    // An authenticated peer server: no longer one of its address's anonymous connections.
    ticket.logged_in();
    let (sealer, opener) = done.transport.split();
    serve(
        shared.clone(),
        name,
        Sender::new(wr, sealer, max),
        Receiver::new(rd, opener, max),
    )
    .await;
    Ok(())
}

/// Serves a peer's link after the handshake: answers its lookups of this server's users.
pub async fn serve(
    shared: Arc<Shared>,
    peer: ServerName,
    mut sender: Sender,
    mut receiver: Receiver,
) {
    // One writer: answers and presence events share the link. Every write has a deadline: a
    // peer that stops reading gets its link closed, not a task stuck forever.
    let (out, mut queued) = tokio::sync::mpsc::channel::<LinkMessage>(256);
    let deadline = Duration::from_secs(shared.config().federation.request_timeout_secs);
    let writer_peer = peer.clone();
    let writer = tokio::spawn(async move {
        while let Some(message) = queued.recv().await {
            match tokio::time::timeout(deadline, sender.send(&message)).await {
                Ok(Ok(())) => {}
                Ok(Err(_)) => break,
                Err(_) => {
                    tracing::warn!(peer = %writer_peer, after = ?deadline, "a write on an inbound link did not finish in time (the peer stopped reading); link closed");
                    break;
                }
            }
        }
    });
    let ready = LinkMessage::LinkReady {
        server: shared.config().server.name.clone(),
        max_frame: shared.config().limits.max_frame,
    };
    if out.send(ready).await.is_err() {
        return;
    }
    tracing::info!(%peer, "inbound link ready");
    let idle = Duration::from_secs(shared.config().limits.idle_timeout_secs);
    let mut remote: HashMap<Uid, u64> = HashMap::new();
    let mut gate = shared.links.gate_changes();
    // Deliveries are committed in the order they arrive, several at a time: each waits until
    // the one before has numbered its items (`chain`), then commits while the next ones are
    // read and checked.
    let mut chain: Option<tokio::sync::oneshot::Receiver<()>> = None;
    let deliveries = Arc::new(tokio::sync::Semaphore::new(DELIVERY_BUDGET_KIB as usize));
    loop {
        let message = tokio::select! {
            received = tokio::time::timeout(idle, receiver.recv::<LinkMessage>()) => match received {
                Ok(Ok(m)) => m,
                Ok(Err(_)) | Err(_) => break,
            },
            // The writer gave up (a stuck or broken link): stop serving it.
            () = out.closed() => break,
            // A reload changed federation: a peer no longer allowed loses its link.
            Ok(()) = gate.changed() => {
                match shared.links.allowed(&peer, siren_api::federation::Direction::Inbound).await {
                    Ok(()) => continue,
                    Err(e) => {
                        tracing::info!(%peer, error = %e, "inbound link closed: the reloaded federation settings no longer allow this peer");
                        let _ = out.send(LinkMessage::Error { rid: None, code: e.code.as_u16(), msg: e.message }).await;
                        break;
                    }
                }
            }
        };
        // Signals have no answer: delivered to live sessions or dropped.
        let message = match message {
            LinkMessage::Signal { msgs } => {
                crate::signals::accept_from_peer(&shared, &peer, msgs).await;
                continue;
            }
            LinkMessage::Deliver { rid, msgs } => {
                // Within the link's budget: the link is not read further meanwhile.
                let Ok(slot) = deliveries
                    .clone()
                    .acquire_many_owned(delivery_weight(&msgs))
                    .await
                else {
                    break;
                };
                let (numbered, next) = tokio::sync::oneshot::channel();
                // Waits for the one before only while that one is still numbering: one that
                // failed already was answered (or is about to be), and the peer may be sending
                // this one again after it.
                let before = chain.replace(next).and_then(|mut before| {
                    matches!(
                        before.try_recv(),
                        Err(tokio::sync::oneshot::error::TryRecvError::Empty)
                    )
                    .then_some(before)
                });
                let (shared, peer, out) = (shared.clone(), peer.clone(), out.clone());
                tokio::spawn(async move {
                    let answer = match accept_delivery(&shared, &peer, msgs, before, numbered).await
                    {
                        Ok(ids) => LinkMessage::DeliverAck { rid, ids },
                        Err(e) => LinkMessage::Error {
                            rid: Some(rid),
                            code: e.code.as_u16(),
                            msg: e.message,
                        },
                    };
                    let _ = out.send(answer).await;
                    drop(slot);
                });
                continue;
            }
            other => other,
        };
        let failed = |rid: u32, e: Error| LinkMessage::Error {
            rid: Some(rid),
            code: e.code.as_u16(),
            msg: e.message,
        };
        let answer = match message {
            LinkMessage::Lookup { rid, uid } => lookup_local(&shared, rid, uid).await,
            LinkMessage::Ping { rid } => LinkMessage::Pong { rid },
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
async fn lookup_local(shared: &Shared, rid: u32, uid: Uid) -> LinkMessage {
    let not_found = |msg: String| LinkMessage::Error {
        rid: Some(rid),
        code: ErrorCode::NotFound.as_u16(),
        msg,
    };
    if uid.server() != &shared.config().server.name {
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

/// What the `deliver`s of one inbound link being committed at once may hold, in KiB: at most
/// 16 of them, and (for large ones) about 4 MiB of envelopes.
const DELIVERY_BUDGET_KIB: u32 = 4 << 10;

/// A delivery's share of [`DELIVERY_BUDGET_KIB`]: its envelopes' size, and at least a
/// sixteenth (never more than the whole).
fn delivery_weight(msgs: &[siren_proto::envelope::Envelope]) -> u32 {
    // The ciphertext and a generous allowance for the other fields.
    let bytes: usize = msgs.iter().map(|e| e.ct.len() + 256).sum();
    let kib = u32::try_from(bytes.div_ceil(1024)).unwrap_or(u32::MAX);
    kib.clamp(DELIVERY_BUDGET_KIB / 16, DELIVERY_BUDGET_KIB)
}

/// Checks a peer's envelopes (sent by its users, to live devices of ours, not blocked) and
/// commits them to the recipients' queues; returns the ids accepted. Nothing is acknowledged
/// before the commit. The recipients' devices verify each sender's signature (E2E).
///
/// Deliveries over one link are committed in order: this one starts once the one `before` it
/// has numbered its items, and sends on `numbered` when its own are numbered. If the one before
/// fails meanwhile, this one fails too (error 902), so the peer sends both again in their order.
async fn accept_delivery(
    shared: &Arc<Shared>,
    peer: &ServerName,
    msgs: Vec<siren_proto::envelope::Envelope>,
    before: Option<tokio::sync::oneshot::Receiver<()>>,
    numbered: tokio::sync::oneshot::Sender<()>,
) -> Result<Vec<siren_proto::ids::MessageId>, Error> {
    use crate::roster::Admission;
    use siren_proto::message::{Notice, QueueItem};
    if let Some(before) = before
        && before.await.is_err()
    {
        return Err(Error::new(
            ErrorCode::Unavailable,
            "a delivery sent before this one on the link failed: send this one again after it",
        ));
    }
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
        if env.to.server() != &shared.config().server.name {
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
    // The recipients' quotas, as for local senders (PROTOCOL.md §13): a full queue refuses
    // the delivery with 401, which the sending server gives up (with a notice to its user)
    // rather than letting one full queue hold up everything else it has for us.
    let reserve: Vec<(siren_proto::keys::DekPublic, u64)> = items
        .iter()
        .filter(|(_, item)| matches!(item, QueueItem::Message { .. }))
        .map(|(dek, item)| (*dek, siren_proto::message::encode_value(item).len() as u64))
        .collect();
    if let Err(e) = shared.queue.usage.reserve(&reserve).await {
        if e.code == ErrorCode::QueueFull {
            shared.metrics.limit_refused("queue_quota");
        }
        return Err(e);
    }
    if let Err(e) = shared
        .queue
        .enqueue_numbered_first(items, Some(numbered))
        .await
    {
        shared.queue.usage.release(&reserve);
        return Err(e);
    }
    Ok(ids)
}

/// The request id of any request.
fn request_id(message: &LinkMessage) -> Option<u32> {
    match message {
        LinkMessage::Deliver { rid, .. }
        | LinkMessage::Subscribe { rid, .. }
        | LinkMessage::Unsubscribe { rid, .. } => Some(*rid),
        _ => None,
    }
}

// ---------------------------------------------------------------------------------------------

/// Connection ids of remote subscribers in the pub/sub tables (sessions count up from 1).
static REMOTE_CONN: AtomicU64 = AtomicU64::new(u64::MAX / 2);

/// A peer's subscription request: every topic must be one of our users who shares presence
/// with the subscriber (a user of that peer); events then go back over this link.
async fn subscribe_remote(
    shared: &Arc<Shared>,
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
        let shares = publisher.server() == &shared.config().server.name
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
                }) = inbox.rx.recv().await.map(|event| *event)
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
        // The publisher's current state, once (the subscriber's server applies its blocking).
        let presence = shared.pubsub.current(topic.publisher().user());
        shared.pubsub.deliver_to(conn, topic.publisher(), &presence);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(ct: usize) -> siren_proto::envelope::Envelope {
        crate::testing::envelope("b.test", 3, ct)
    }

    #[test]
    fn deliveries_in_flight_are_bounded_by_count_and_by_size() {
        let budget = DELIVERY_BUDGET_KIB;
        // Small ones: sixteen at a time.
        assert_eq!(delivery_weight(&[env(100)]), budget / 16);
        assert_eq!(delivery_weight(&vec![env(100); 64]), budget / 16);
        // Large ones by their size: four 1 MiB deliveries fill it.
        assert_eq!(delivery_weight(&[env((1 << 20) - 256)]), budget / 4);
        // Never more than the whole, so even the largest one can go alone.
        assert_eq!(delivery_weight(&[env(64 << 20)]), budget);
    }
}
