//! One node of a cluster (`[cluster]`): several `sirend`s serve one domain from one shared
//! store (PostgreSQL), each with its own listener; DNS lists them all and clients try them in
//! order.
//!
//! The store stays the only copy of every message. What crosses nodes is only a **wake-up**: a
//! commit on one node for a device whose live session is on another must tell that session to
//! read its queue. The hub hands every push for a device with no live session here to this
//! module ([`crate::hub::Hub::set_remote`]), which publishes it on NATS (subject
//! `siren.<server name>.wake`, payload: the DEK, the item's sequence number, the sending node);
//! every node subscribes and pushes what other nodes sent to its own sessions
//! ([`crate::hub::Hub::push_local`]). Nothing waits for NATS: a push that does not fit the
//! outgoing buffer, or is lost while NATS is down, is found by the periodic re-read — every
//! `poll_secs` each live session here reads its queue again from the start
//! ([`crate::hub::Hub::poll_all`]) — so a lost wake-up delays a delivery, never loses one.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use futures_util::StreamExt as _;
use siren_proto::keys::DekPublic;
use tokio::sync::{mpsc, watch};

use crate::config::ClusterSection;
use crate::hub::Hub;

/// Wake-ups waiting to be published (beyond this they are dropped: the re-read finds them).
const OUTGOING: usize = 65_536;

/// The subject the nodes of server `name` exchange wake-ups on.
pub fn wake_subject(name: &str) -> String {
    format!("siren.{name}.wake")
}

/// A wake-up as published: DEK (32 bytes), sequence number (8, big-endian), sending node.
fn encode(dek: &DekPublic, seq: u64, node: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(40 + node.len());
    out.extend_from_slice(dek.as_bytes());
    out.extend_from_slice(&seq.to_be_bytes());
    out.extend_from_slice(node.as_bytes());
    out
}

/// A published wake-up read back; `None` if it is not one.
fn decode(payload: &[u8]) -> Option<(DekPublic, u64, &[u8])> {
    let dek: [u8; 32] = payload.get(..32)?.try_into().ok()?;
    let seq: [u8; 8] = payload.get(32..40)?.try_into().ok()?;
    Some((
        DekPublic::from_bytes(dek),
        u64::from_be_bytes(seq),
        payload.get(40..)?,
    ))
}

/// Joins the cluster: connects to NATS (in the background: a node starts, and serves, while
/// NATS is unreachable), subscribes to the other nodes' wake-ups, routes this node's pushes
/// for devices not live here to them, and re-reads every live session's queue every
/// `poll_secs`. Everything stops with `shutdown`.
pub async fn join(
    config: &ClusterSection,
    server: &str,
    hub: Arc<Hub>,
    shutdown: watch::Receiver<bool>,
) -> anyhow::Result<()> {
    let addresses = config
        .nats
        .iter()
        .map(|u| {
            u.parse::<async_nats::ServerAddr>()
                .with_context(|| format!("`cluster.nats`: {u:?}"))
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    let node = config.node_id.clone();
    let client = async_nats::ConnectOptions::new()
        .name(format!("sirend {server} {node}"))
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
    let subject = wake_subject(server);
    let mut incoming = client
        .subscribe(subject.clone())
        .await
        .context("cannot subscribe to the other nodes' wake-ups")?;
    let (tx, mut outgoing) = mpsc::channel::<(DekPublic, u64)>(OUTGOING);
    hub.set_remote(tx);

    let me = node.clone();
    let local = hub.clone();
    let mut stop = shutdown.clone();
    tokio::spawn(async move {
        loop {
            tokio::select! {
                msg = incoming.next() => {
                    let Some(msg) = msg else { break };
                    match decode(&msg.payload) {
                        Some((dek, seq, from)) if from != me.as_bytes() => {
                            local.push_local(&dek, seq);
                        }
                        Some(_) => {}
                        None => tracing::warn!(subject = %msg.subject, "not a wake-up; ignored"),
                    }
                }
                _ = stop.changed() => break,
            }
        }
    });

    let mut stop = shutdown.clone();
    tokio::spawn(async move {
        loop {
            tokio::select! {
                next = outgoing.recv() => {
                    let Some((dek, seq)) = next else { break };
                    let payload = encode(&dek, seq, &node);
                    if let Err(e) = client.publish(subject.clone(), payload.into()).await {
                        tracing::warn!(error = %e, "cannot publish a wake-up; the re-read will find the item");
                    }
                }
                _ = stop.changed() => break,
            }
        }
    });

    let every = Duration::from_secs(config.poll_secs);
    let mut stop = shutdown;
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
    fn a_wake_up_reads_back_and_anything_else_is_refused() {
        let dek = DekPublic::from_bytes([7; 32]);
        let bytes = encode(&dek, 42, "node-2");
        assert_eq!(decode(&bytes), Some((dek, 42, &b"node-2"[..])));
        assert_eq!(decode(&bytes[..39]), None);
        assert_eq!(decode(b""), None);
        assert_eq!(wake_subject("alpha.test"), "siren.alpha.test.wake");
    }
}
