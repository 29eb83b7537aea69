//! One node of a cluster (`[cluster]`): several `sirend`s serve one domain from one shared
//! store (PostgreSQL), each with its own listener; DNS lists them all and clients try them in
//! order.
//!
//! The store stays the only copy of every message. What crosses nodes is what concerns a
//! device whose live session may be on another node ([`Routed`]), published on NATS under
//! `siren.<server name>.<kind>`, each payload starting with the sending node's id:
//!
//! * `wake` — a commit for a device not live here: that session must read its queue (the DEK,
//!   the item's sequence number);
//! * `kick` — a revoked device: its session must close with error 305 (the DEK);
//! * `signal` — an ephemeral signal (typing) for a device not live here (the envelope, CBOR),
//!   admitted by the recipient's roster on the sending node.
//!
//! The hub and the signals registry hand them to this module ([`crate::hub::Hub::set_remote`]);
//! every node subscribes and applies what the others sent to its own sessions only. Nothing
//! waits for NATS: what does not fit the outgoing buffer, or is lost while NATS is down, is
//! dropped. For wake-ups the periodic re-read covers that — every `poll_secs` each live session
//! here reads its queue again from the start ([`crate::hub::Hub::poll_all`]) — so a lost
//! wake-up delays a delivery, never loses one. A lost signal is lost, as signals are anyway
//! when nobody reads; a lost kick leaves the revoked device's session open with nothing to
//! receive (its queue is gone) until it reconnects, which is refused.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use futures_util::StreamExt as _;
use siren_proto::envelope::Envelope;
use siren_proto::keys::DekPublic;
use tokio::sync::mpsc;

use crate::config::ClusterSection;
use crate::hub::Routed;
use crate::shared::Shared;

/// Messages waiting to be published (beyond this they are dropped).
const OUTGOING: usize = 65_536;

/// The subjects the nodes of server `name` exchange on: `siren.<name>.*`.
pub fn subjects(name: &str) -> String {
    format!("siren.{name}.*")
}

/// The subject and payload of `routed`, sent by node `node`: the node's id (one byte of
/// length, then the id), then the message.
fn encode(routed: &Routed, name: &str, node: &str) -> (String, Vec<u8>) {
    let id = node.as_bytes();
    let mut out = Vec::with_capacity(1 + id.len() + 40);
    out.push(u8::try_from(id.len()).unwrap_or(u8::MAX));
    out.extend_from_slice(id.get(..usize::from(u8::MAX)).unwrap_or(id));
    let kind = match routed {
        Routed::Wake(dek, seq) => {
            out.extend_from_slice(dek.as_bytes());
            out.extend_from_slice(&seq.to_be_bytes());
            "wake"
        }
        Routed::Kick(dek) => {
            out.extend_from_slice(dek.as_bytes());
            "kick"
        }
        Routed::Signal(env) => {
            out.extend_from_slice(&siren_proto::message::encode_value(env.as_ref()));
            "signal"
        }
    };
    (format!("siren.{name}.{kind}"), out)
}

/// A message read back: the sending node and what it says; `None` if it is not one.
fn decode<'a>(subject: &str, payload: &'a [u8]) -> Option<(&'a [u8], Routed)> {
    let len = usize::from(*payload.first()?);
    let node = payload.get(1..1 + len)?;
    let rest = payload.get(1 + len..)?;
    let dek =
        || -> Option<DekPublic> { Some(DekPublic::from_bytes(rest.get(..32)?.try_into().ok()?)) };
    let kind = subject.rsplit('.').next()?;
    let routed = match kind {
        "wake" if rest.len() == 40 => {
            let seq: [u8; 8] = rest.get(32..40)?.try_into().ok()?;
            Routed::Wake(dek()?, u64::from_be_bytes(seq))
        }
        "kick" if rest.len() == 32 => Routed::Kick(dek()?),
        "signal" => Routed::Signal(Box::new(
            siren_proto::message::decode_value::<Envelope>(rest).ok()?,
        )),
        _ => return None,
    };
    Some((node, routed))
}

/// Joins the cluster: connects to NATS (in the background: a node starts, and serves, while
/// NATS is unreachable), subscribes to what the other nodes send, routes what this node's hub
/// and signals hand over to them, and re-reads every live session's queue every `poll_secs`.
/// Everything stops with the server.
pub async fn join(config: &ClusterSection, shared: Arc<Shared>) -> anyhow::Result<()> {
    let addresses = config
        .nats
        .iter()
        .map(|u| {
            u.parse::<async_nats::ServerAddr>()
                .with_context(|| format!("`cluster.nats`: {u:?}"))
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    let name = shared.config().server.name.to_string();
    let node = config.node_id.clone();
    let client = async_nats::ConnectOptions::new()
        .name(format!("sirend {name} {node}"))
        .retry_on_initial_connect()
        .event_callback(|event| async move {
            match event {
                async_nats::Event::Connected => tracing::info!("connected to NATS"),
                async_nats::Event::Disconnected => {
                    tracing::warn!("lost NATS: wake-ups from other nodes wait for the re-read")
                }
                other => tracing::info!(event = %other, "NATS"),
            }
        })
        .connect(addresses)
        .await
        .context("cannot start the NATS client")?;
    let mut incoming = client
        .subscribe(subjects(&name))
        .await
        .context("cannot subscribe to the other nodes")?;
    let (tx, mut outgoing) = mpsc::channel::<Routed>(OUTGOING);
    shared.hub.set_remote(tx);

    let me = node.clone();
    let here = shared.clone();
    let mut stop = shared.shutdown.clone();
    tokio::spawn(async move {
        loop {
            tokio::select! {
                msg = incoming.next() => {
                    let Some(msg) = msg else { break };
                    match decode(msg.subject.as_str(), &msg.payload) {
                        Some((from, _)) if from == me.as_bytes() => {}
                        Some((_, Routed::Wake(dek, seq))) => {
                            here.hub.push_local(&dek, seq);
                        }
                        Some((_, Routed::Kick(dek))) => here.hub.kick_local(&dek),
                        Some((_, Routed::Signal(env))) => {
                            here.signals.hand_over(*env, None);
                        }
                        None => tracing::warn!(subject = %msg.subject, "not a cluster message; ignored"),
                    }
                }
                _ = stop.changed() => break,
            }
        }
    });

    let mut stop = shared.shutdown.clone();
    tokio::spawn(async move {
        loop {
            tokio::select! {
                next = outgoing.recv() => {
                    let Some(routed) = next else { break };
                    let (subject, payload) = encode(&routed, &name, &node);
                    if let Err(e) = client.publish(subject, payload.into()).await {
                        tracing::warn!(error = %e, "cannot publish to the other nodes");
                    }
                }
                _ = stop.changed() => break,
            }
        }
    });

    let every = Duration::from_secs(config.poll_secs);
    let mut stop = shared.shutdown.clone();
    let hub = shared.hub.clone();
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = tick.tick() => hub.poll_all(),
                _ = stop.changed() => break,
            }
        }
    });
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_message_reads_back_and_anything_else_is_refused() {
        let dek = DekPublic::from_bytes([7; 32]);
        let env = crate::testing::envelope("alpha.test", 3, 20);
        for routed in [
            Routed::Wake(dek, 42),
            Routed::Kick(dek),
            Routed::Signal(Box::new(env)),
        ] {
            let (subject, payload) = encode(&routed, "alpha.test", "node-2");
            assert!(subject.starts_with("siren.alpha.test."), "{subject}");
            assert_eq!(decode(&subject, &payload), Some((&b"node-2"[..], routed)));
            // Cut short, or under another kind: refused.
            assert_eq!(decode(&subject, &payload[..payload.len() - 1]), None);
            assert_eq!(decode("siren.alpha.test.other", &payload), None);
        }
        assert_eq!(decode("siren.alpha.test.wake", b""), None);
        assert_eq!(subjects("alpha.test"), "siren.alpha.test.*");
    }
}
