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
//!   admitted by the recipient's roster on the sending node;
//! * `presence` — a local user published presence (the UID and the presence, CBOR): each node
//!   hands it to its own subscribers, under the publisher's roster and their blocking.
//! * `directory` — a local user's devices changed (the username, CBOR): each node forgets its cached
//!   copy of the chain and tells the users who looked the user up on that node. A lost one
//!   leaves the copy at most `poll_secs` old ([`crate::directory::Directory::set_shared`]); a
//!   login and an append always read the store.
//! * `login_failed` — a login to a local user failed and counted towards the account's limit
//!   (the username, CBOR): each node counts it, so `failures_per_account_per_minute` holds for
//!   the cluster, not per node (a lost one is not counted elsewhere).
//! * `outbox` — envelopes were committed for a federated peer whose outbox another node
//!   drains (holds its lease, [`crate::federation::outbox`]): the peer's name, CBOR; that node's
//!   worker looks again, or one starts.
//!
//! Every `poll_secs` each node also forgets the queue usage it counted (the quotas: other nodes
//! add and acknowledge too, so each node reads the store's counts again) and starts a worker
//! for federated outboxes left without one ([`crate::federation::outbox::adopt`]).
//!
//! Every node also says `hello` every 2 seconds (its listener and how many sessions it holds):
//! `sirend status` and the `siren_cluster_nodes` metric show the nodes heard from in the last 10.
//!
//! And one question, asked with NATS request/reply on `siren.<name>.query.presence`: "is this
//! user online on your node, and how?" — only a node where they have a ready session answers.
//! A node asks it for a new subscription to a user not online here (the current state it starts
//! from), and before publishing `offline` when a user's last session here closes (they may
//! still be online on another node; then nothing changed).
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
use siren_api::{ServerName, Uid, Username};
use siren_proto::envelope::Envelope;
use siren_proto::keys::DekPublic;
use siren_proto::message::Presence;
use tokio::sync::mpsc;

use crate::config::ClusterSection;
use crate::hub::Routed;
use crate::shared::Shared;

/// Messages waiting to be published (beyond this they are dropped).
const OUTGOING: usize = 65_536;

/// How long a node waits for another's answer about a user's presence.
const QUERY_TIMEOUT: Duration = Duration::from_millis(500);
/// How often a node says `hello`.
const HELLO_EVERY: Duration = Duration::from_secs(2);
/// A node not heard from for this long is no longer counted.
const NODE_GONE: Duration = Duration::from_secs(10);

/// The subjects the nodes of server `name` exchange on: `siren.<name>.*`.
pub fn subjects(name: &str) -> String {
    format!("siren.{name}.*")
}

/// The subject of presence questions between the nodes of server `name`.
fn presence_query(name: &str) -> String {
    format!("siren.{name}.query.presence")
}

/// The subject of approval questions between the nodes of server `name`.
fn approval_query(name: &str) -> String {
    format!("siren.{name}.query.approval")
}

/// An approval question: whether new device `dek` waits for approval by a device of `user`
/// on the node asked; with `close`, that node also ends the approval (it was denied).
#[derive(Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
struct ApprovalQuestion {
    dek: DekPublic,
    user: Username,
    close: bool,
}

/// A `presence` message: who published what (a map in Siren's CBOR profile).
#[derive(serde::Serialize, serde::Deserialize)]
struct PresenceUpdate {
    from: Uid,
    presence: Presence,
}

/// A `directory` or `login_failed` message: the local user it is about (a map in Siren's CBOR
/// profile).
#[derive(serde::Serialize, serde::Deserialize)]
struct AboutUser {
    user: Username,
}

/// An `outbox` message: the peer whose outbox got envelopes (a map in Siren's CBOR profile).
#[derive(serde::Serialize, serde::Deserialize)]
struct OutboxCommitted {
    peer: ServerName,
}

/// What a node says of itself in its `hello`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct NodeInfo {
    /// Its listener.
    pub listen: String,
    /// Its live sessions.
    pub sessions: u64,
}

/// A node of the cluster as this one knows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeSeen {
    /// Its id.
    pub id: String,
    /// What it last said.
    pub info: NodeInfo,
    /// How long ago (zero: this node).
    pub ago: Duration,
    /// It is this node.
    pub this: bool,
}

/// This node's handle on the cluster, for questions to the other nodes.
pub struct Cluster {
    client: async_nats::Client,
    name: String,
    node: String,
    heard: std::sync::Mutex<std::collections::BTreeMap<String, (tokio::time::Instant, NodeInfo)>>,
}

impl Cluster {
    /// The nodes heard from in the last 10 seconds and this one, by id.
    pub fn nodes(&self, here: NodeInfo) -> Vec<NodeSeen> {
        let mut heard = self.heard.lock().unwrap_or_else(|p| p.into_inner());
        heard.retain(|_, (at, _)| at.elapsed() < NODE_GONE);
        let mut out: Vec<NodeSeen> = heard
            .iter()
            .filter(|(id, _)| **id != self.node)
            .map(|(id, (at, info))| NodeSeen {
                id: id.clone(),
                info: info.clone(),
                ago: at.elapsed(),
                this: false,
            })
            .collect();
        out.push(NodeSeen {
            id: self.node.clone(),
            info: here,
            ago: Duration::ZERO,
            this: true,
        });
        out.sort_by(|a, b| a.id.cmp(&b.id));
        out
    }

    fn heard(&self, node: &[u8], info: NodeInfo) {
        if let Ok(id) = std::str::from_utf8(node) {
            self.heard
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .insert(id.to_owned(), (tokio::time::Instant::now(), info));
        }
    }

    /// How local user `user` is online on another node, if they are: the first node with a
    /// ready session of theirs answers; `None` when none does (or NATS cannot be reached
    /// within half a second: then they count as offline here).
    pub async fn presence_elsewhere(&self, user: &Username) -> Option<Presence> {
        let ask = self
            .client
            .request(presence_query(&self.name), user.as_str().to_owned().into());
        let answer = tokio::time::timeout(QUERY_TIMEOUT, ask).await.ok()?.ok()?;
        siren_proto::message::decode_value::<Presence>(&answer.payload).ok()
    }
}

impl Cluster {
    /// Whether new device `dek` waits for approval by a device of local user `user` on
    /// another node (the exchange of PROTOCOL.md §16 then crosses nodes). With `close`, the
    /// node where it waits also ends it. `false` when no node answers within half a second.
    pub async fn approval_elsewhere(&self, dek: DekPublic, user: &Username, close: bool) -> bool {
        let question = siren_proto::message::encode_value(&ApprovalQuestion {
            dek,
            user: user.clone(),
            close,
        });
        let ask = self
            .client
            .request(approval_query(&self.name), question.into());
        matches!(
            tokio::time::timeout(QUERY_TIMEOUT, ask).await,
            Ok(Ok(answer)) if answer.payload.as_ref() == b"pending"
        )
    }
}

/// The start of every payload node `node` sends: its id, one byte of length then (at most 255
/// bytes of) the id.
fn framed(node: &str) -> Vec<u8> {
    let id = node.as_bytes();
    let id = id.get(..usize::from(u8::MAX)).unwrap_or(id);
    let mut out = Vec::with_capacity(1 + id.len() + 40);
    out.push(u8::try_from(id.len()).unwrap_or(u8::MAX));
    out.extend_from_slice(id);
    out
}

/// The subject and payload of `routed`, sent by node `node` ([`framed`], then the message).
fn encode(routed: &Routed, name: &str, node: &str) -> (String, Vec<u8>) {
    let mut out = framed(node);
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
        Routed::Presence(update) => {
            let (from, presence) = update.as_ref();
            out.extend_from_slice(&siren_proto::message::encode_value(&PresenceUpdate {
                from: from.clone(),
                presence: presence.clone(),
            }));
            "presence"
        }
        Routed::Outbox(peer) => {
            out.extend_from_slice(&siren_proto::message::encode_value(&OutboxCommitted {
                peer: peer.clone(),
            }));
            "outbox"
        }
        Routed::Directory(user) => {
            out.extend_from_slice(&siren_proto::message::encode_value(&AboutUser {
                user: user.clone(),
            }));
            "directory"
        }
        Routed::LoginFailed(user) => {
            out.extend_from_slice(&siren_proto::message::encode_value(&AboutUser {
                user: user.clone(),
            }));
            "login_failed"
        }
    };
    (format!("siren.{name}.{kind}"), out)
}

/// The sending node's id and the rest of a payload.
fn split(payload: &[u8]) -> Option<(&[u8], &[u8])> {
    let len = usize::from(*payload.first()?);
    Some((payload.get(1..1 + len)?, payload.get(1 + len..)?))
}

/// A `hello` as published by node `node`.
fn hello(info: &NodeInfo, node: &str) -> Vec<u8> {
    let mut out = framed(node);
    out.extend_from_slice(&siren_proto::message::encode_value(info));
    out
}

/// A message read back: the sending node and what it says; `None` if it is not one.
fn decode<'a>(subject: &str, payload: &'a [u8]) -> Option<(&'a [u8], Routed)> {
    let (node, rest) = split(payload)?;
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
        "presence" => {
            let update = siren_proto::message::decode_value::<PresenceUpdate>(rest).ok()?;
            Routed::Presence(Box::new((update.from, update.presence)))
        }
        "outbox" => Routed::Outbox(
            siren_proto::message::decode_value::<OutboxCommitted>(rest)
                .ok()?
                .peer,
        ),
        "login_failed" => Routed::LoginFailed(
            siren_proto::message::decode_value::<AboutUser>(rest)
                .ok()?
                .user,
        ),
        "directory" => Routed::Directory(
            siren_proto::message::decode_value::<AboutUser>(rest)
                .ok()?
                .user,
        ),
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
    let mut options = async_nats::ConnectOptions::new();
    if let Some(path) = &config.nats_token_file {
        let token = std::fs::read_to_string(path)
            .with_context(|| format!("`cluster.nats_token_file`: cannot read {}", path.display()))?
            .trim()
            .to_owned();
        anyhow::ensure!(
            !token.is_empty(),
            "`cluster.nats_token_file`: {} is empty",
            path.display()
        );
        options = options.token(token);
    }
    let client = options
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
    let questions = client
        .subscribe(presence_query(&name))
        .await
        .context("cannot subscribe to the other nodes' questions")?;
    let approvals = client
        .subscribe(approval_query(&name))
        .await
        .context("cannot subscribe to the other nodes' questions")?;
    let (tx, mut outgoing) = mpsc::channel::<Routed>(OUTGOING);
    shared.hub.set_remote(tx);
    let _ = shared.cluster.set(Cluster {
        client: client.clone(),
        name: name.clone(),
        node: node.clone(),
        heard: Default::default(),
    });

    let (hello_client, hello_subject, hello_me) =
        (client.clone(), format!("siren.{name}.hello"), node.clone());
    // Only a node where the user is online answers.
    answer(
        questions,
        client.clone(),
        shared.clone(),
        |here, question| {
            let user = Username::parse(std::str::from_utf8(question).ok()?).ok()?;
            here.pubsub
                .is_online(&user)
                .then(|| siren_proto::message::encode_value(&here.pubsub.current(&user)))
        },
    );
    // Only the node where the device waits answers; a denial ends the approval there.
    answer(
        approvals,
        client.clone(),
        shared.clone(),
        |here, question| {
            let q = siren_proto::message::decode_value::<ApprovalQuestion>(question).ok()?;
            if !here.approvals.is_pending(&q.dek, &q.user) {
                return None;
            }
            if q.close {
                here.approvals.close(&q.dek);
            }
            Some(b"pending".to_vec())
        },
    );

    let me = node.clone();
    let here = shared.clone();
    let mut stop = shared.shutdown.clone();
    tokio::spawn(async move {
        loop {
            tokio::select! {
                msg = incoming.next() => {
                    let Some(msg) = msg else { break };
                    if msg.subject.as_str().ends_with(".hello") {
                        let said = split(&msg.payload).and_then(|(from, rest)| {
                            Some((from, siren_proto::message::decode_value::<NodeInfo>(rest).ok()?))
                        });
                        if let (Some((from, info)), Some(cluster)) = (said, here.cluster.get()) {
                            cluster.heard(from, info);
                        }
                        continue;
                    }
                    match decode(msg.subject.as_str(), &msg.payload) {
                        Some((from, _)) if from == me.as_bytes() => {}
                        Some((_, Routed::Wake(dek, seq))) => {
                            here.hub.push_local(&dek, seq);
                        }
                        Some((_, Routed::Kick(dek))) => here.hub.kick_local(&dek),
                        Some((_, Routed::Signal(env))) => {
                            here.hub.signal_local(*env);
                        }
                        Some((_, Routed::LoginFailed(user))) => {
                            here.auth.limits.failed_elsewhere(&user);
                        }
                        Some((_, Routed::Outbox(peer))) => {
                            crate::federation::outbox::ensure_worker(&here, &peer);
                        }
                        Some((_, Routed::Directory(user))) => {
                            here.directory.forget(&user);
                            crate::session::tell_watchers(&here, &user).await;
                        }
                        Some((_, Routed::Presence(update))) => {
                            let (from, presence) = *update;
                            if from.server() == &here.config().server.name {
                                crate::session::fan_out_presence(&here, &from, &presence).await;
                            }
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

    let mut stop = shared.shutdown.clone();
    let speaker = shared.clone();
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(HELLO_EVERY);
        loop {
            tokio::select! {
                _ = tick.tick() => {
                    let info = this_node(&speaker);
                    let payload = hello(&info, &hello_me);
                    if let Err(e) = hello_client.publish(hello_subject.clone(), payload.into()).await {
                        tracing::debug!(error = %e, "cannot say hello to the other nodes");
                    }
                }
                _ = stop.changed() => break,
            }
        }
    });

    let every = Duration::from_secs(config.poll_secs);
    let mut stop = shared.shutdown.clone();
    let hub = shared.hub.clone();
    let adopter = shared.clone();
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = tick.tick() => {
                    hub.poll_all();
                    // Other nodes commit to and acknowledge from the same queues: the quota is
                    // checked against the store's counts, read again at most this long after.
                    adopter.queue.usage.forget_all();
                    crate::federation::outbox::adopt(&adopter).await;
                }
                _ = stop.changed() => break,
            }
        }
    });
    Ok(())
}

/// Answers the questions of other nodes arriving on `questions`: `reply` says what to answer,
/// or that this node does not answer (another will, or none: the asker's timeout says so).
fn answer(
    mut questions: async_nats::Subscriber,
    client: async_nats::Client,
    here: Arc<Shared>,
    reply: impl Fn(&Shared, &[u8]) -> Option<Vec<u8>> + Send + 'static,
) {
    let mut stop = here.shutdown.clone();
    tokio::spawn(async move {
        loop {
            tokio::select! {
                msg = questions.next() => {
                    let Some(msg) = msg else { break };
                    if let (Some(to), Some(payload)) = (msg.reply, reply(&here, &msg.payload))
                        && let Err(e) = client.publish(to, payload.into()).await
                    {
                        tracing::warn!(error = %e, "cannot answer another node");
                    }
                }
                _ = stop.changed() => break,
            }
        }
    });
}

/// What this node says of itself.
pub fn this_node(shared: &Shared) -> NodeInfo {
    NodeInfo {
        listen: shared.config().server.listen.to_string(),
        sessions: u64::try_from(shared.hub.live().len()).unwrap_or(u64::MAX),
    }
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
            Routed::Presence(Box::new((
                Uid::parse("alice@alpha.test").unwrap(),
                Presence {
                    status: siren_proto::message::PresenceStatus::Away,
                    text: Some("lunch".into()),
                },
            ))),
            Routed::Directory(Username::parse("bob").unwrap()),
            Routed::Outbox(ServerName::parse("beta.test").unwrap()),
            Routed::LoginFailed(Username::parse("carol").unwrap()),
        ] {
            let (subject, payload) = encode(&routed, "alpha.test", "node-2");
            assert!(subject.starts_with("siren.alpha.test."), "{subject}");
            assert_eq!(decode(&subject, &payload), Some((&b"node-2"[..], routed)));
            // Cut short, or under another kind: refused.
            assert_eq!(decode(&subject, &payload[..payload.len() - 1]), None);
            assert_eq!(decode("siren.alpha.test.other", &payload), None);
        }
        assert_eq!(decode("siren.alpha.test.wake", b""), None);
        let info = NodeInfo {
            listen: "127.0.0.1:7471".into(),
            sessions: 3,
        };
        let said = hello(&info, "node-1");
        let (from, rest) = split(&said).unwrap();
        assert_eq!(from, b"node-1");
        assert_eq!(
            siren_proto::message::decode_value::<NodeInfo>(rest).unwrap(),
            info
        );
        assert_eq!(subjects("alpha.test"), "siren.alpha.test.*");
    }
}
