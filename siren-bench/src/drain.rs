//! Offline enqueue, then drain: the recipient is away while the sender enqueues many messages
//! (up to 256 envelopes per `send`, several requests in flight); then the recipient resumes its
//! session and the bench times delivery and acknowledgement of the whole backlog.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use siren_net::Connected;
use siren_proto::envelope::{self, Envelope};
use siren_proto::ids::MessageId;
use siren_proto::keys::{DekPublic, UskSecret};
use siren_proto::message::{self, ClientMessage, MAX_ENVELOPES, QueueItem, ServerMessage};
use tokio::sync::Semaphore;

use crate::client::{self, ANSWER_TIMEOUT, Account};
use crate::procfs;
use crate::relay::PAYLOAD;
use crate::server::Target;
use crate::stats::rate;

/// `send` requests in flight during the enqueue.
const DEPTH: usize = 4;
/// Deliveries acknowledged at once during the drain (the server allows 256 in flight).
const ACK_BATCH: usize = 64;

/// What the drain measured.
pub struct Drain {
    /// Messages enqueued and drained.
    pub messages: usize,
    /// Enqueued messages per second (first `send` to last `send_ack`).
    pub enqueue_rate: f64,
    /// Drained messages per second (resumption to the last acknowledgement processed).
    pub drain_rate: f64,
    /// sirend's CPU time during the enqueue.
    pub enqueue_server_cpu: Duration,
    /// sirend's CPU time during the drain: user, system.
    pub drain_server_cpu: (Duration, Duration),
    /// This process's CPU time during the drain.
    pub drain_bench_cpu: Duration,
    /// Wall time of the drain.
    pub drain_elapsed: Duration,
}

/// Enqueues `messages` messages from `from` to an offline device of `to`, then drains them.
pub async fn measure(
    target: &Target,
    server: u32,
    from: &Account,
    to: &Account,
    messages: usize,
) -> anyhow::Result<Drain> {
    let (sender_device, mut sender) = client::enroll(target, from).await?;
    let (receiver, receiver_conn) = client::enroll(target, to).await?;
    client::bye(receiver_conn).await?;
    let listing = client::lookup(&mut sender, 3, &to.uid).await?;
    let [record] = listing.records.as_slice() else {
        bail!("expected one device for {}", to.uid);
    };
    let to_dek = record.dek;
    let requests = tokio::task::spawn_blocking({
        let (from_uid, to_uid) = (from.uid.clone(), to.uid.clone());
        let usk = UskSecret::from_bytes(&from.usk.to_bytes());
        let dek = sender_device.dek.public();
        move || batches(&from_uid, &usk, &dek, &to_uid, &to_dek, messages)
    })
    .await??;

    let cpu = procfs::cpu_time(server)?;
    let start = Instant::now();
    enqueue(sender, requests).await?;
    let enqueue_elapsed = start.elapsed();
    let enqueue_server_cpu = procfs::cpu_time(server)?.saturating_sub(cpu);

    let cpu = (
        procfs::cpu_split(server)?,
        procfs::cpu_time(procfs::own_pid())?,
    );
    let start = Instant::now();
    let conn = client::resume(target, &receiver).await?;
    drain(conn, messages).await?;
    let drain_elapsed = start.elapsed();
    Ok(Drain {
        messages,
        enqueue_rate: rate(messages as u64, enqueue_elapsed),
        drain_rate: rate(messages as u64, drain_elapsed),
        enqueue_server_cpu,
        drain_server_cpu: {
            let after = procfs::cpu_split(server)?;
            (
                after.0.saturating_sub(cpu.0.0),
                after.1.saturating_sub(cpu.0.1),
            )
        },
        drain_bench_cpu: procfs::cpu_time(procfs::own_pid())?.saturating_sub(cpu.1),
        drain_elapsed,
    })
}

/// `messages` envelopes (distinct ids, counters and ephemeral keys, each sealed and signed) in
/// encoded `send` requests of up to [`MAX_ENVELOPES`] each. Sealed on every core.
fn batches(
    from: &siren_api::Uid,
    usk: &UskSecret,
    dek: &DekPublic,
    to: &siren_api::Uid,
    to_dek: &DekPublic,
    messages: usize,
) -> anyhow::Result<Vec<(usize, Vec<u8>)>> {
    let tag = MessageId::random(&mut siren_proto::os_rng());
    let sender = envelope::Sender {
        uid: from,
        usk,
        dek,
    };
    let chunks: Vec<std::ops::Range<usize>> = (0..messages)
        .step_by(MAX_ENVELOPES)
        .map(|start| start..(start + MAX_ENVELOPES).min(messages))
        .collect();
    let threads = std::thread::available_parallelism().map_or(1, usize::from);
    let per_thread = chunks.len().div_ceil(threads).max(1);
    let seal = |range: std::ops::Range<usize>| -> anyhow::Result<Vec<Envelope>> {
        let mut rng = siren_proto::os_rng();
        range
            .map(|i| {
                let mut id = *tag.as_bytes();
                id[..8].copy_from_slice(&(i as u64).to_le_bytes());
                Ok(Envelope::seal(
                    sender,
                    to,
                    to_dek,
                    MessageId::from_bytes(id),
                    i as u64 + 1,
                    &[0x5a; PAYLOAD],
                    &mut rng,
                )?)
            })
            .collect()
    };
    let sealed: Vec<anyhow::Result<Vec<Vec<Envelope>>>> = std::thread::scope(|scope| {
        let workers: Vec<_> = chunks
            .chunks(per_thread)
            .map(|mine| scope.spawn(move || mine.iter().cloned().map(seal).collect()))
            .collect();
        workers
            .into_iter()
            .map(|w| {
                w.join()
                    .unwrap_or_else(|_| Err(anyhow::anyhow!("a sealing thread panicked")))
            })
            .collect()
    });
    let mut requests = Vec::with_capacity(chunks.len());
    for thread in sealed {
        for msgs in thread? {
            let rid = u32::try_from(requests.len()).context("too many requests")?;
            requests.push((
                msgs.len(),
                message::encode(&ClientMessage::Send { rid, msgs }),
            ));
        }
    }
    Ok(requests)
}

/// Sends every request, [`DEPTH`] in flight, and waits for every `send_ack`.
async fn enqueue(conn: Connected, requests: Vec<(usize, Vec<u8>)>) -> anyhow::Result<()> {
    let Connected {
        mut sender,
        mut receiver,
        ..
    } = conn;
    let room = Arc::new(Semaphore::new(DEPTH));
    let expected: Vec<usize> = requests.iter().map(|(n, _)| *n).collect();
    let acks = tokio::spawn({
        let room = room.clone();
        async move {
            for (rid, n) in expected.iter().enumerate() {
                let msg = tokio::time::timeout(ANSWER_TIMEOUT, receiver.recv::<ServerMessage>())
                    .await
                    .context("no send_ack in time")??;
                match msg {
                    ServerMessage::SendAck { rid: r, ids } if r as usize == rid => {
                        if ids.len() != *n {
                            bail!("send {rid}: {} ids acknowledged for {n}", ids.len());
                        }
                    }
                    other => bail!("expected send_ack {rid}, got {other:?}"),
                }
                room.add_permits(1);
            }
            anyhow::Ok(())
        }
    });
    for (_, request) in &requests {
        let permit = tokio::time::timeout(ANSWER_TIMEOUT, room.acquire())
            .await
            .context("no send_ack in time")?;
        match permit {
            Ok(p) => p.forget(),
            // Closed only if the ack reader ended early: its error says why.
            Err(_) => break,
        }
        sender.send_encoded(request).await?;
    }
    acks.await.context("the ack reader failed")??;
    let _ = sender.send(&ClientMessage::Bye).await;
    Ok(())
}

/// Reads `messages` deliveries and `queue_drained`, acknowledging as it goes; returns once the
/// server has processed the last acknowledgement (a `ping` after it is answered).
async fn drain(mut conn: Connected, messages: usize) -> anyhow::Result<()> {
    let mut got = 0usize;
    let mut seqs = Vec::with_capacity(ACK_BATCH);
    loop {
        match client::recv(&mut conn).await? {
            ServerMessage::Deliver {
                seq,
                item: QueueItem::Message { .. },
            } => {
                got += 1;
                seqs.push(seq);
                if seqs.len() >= ACK_BATCH {
                    let seqs = std::mem::replace(&mut seqs, Vec::with_capacity(ACK_BATCH));
                    conn.sender.send(&ClientMessage::Ack { seqs }).await?;
                }
            }
            ServerMessage::QueueDrained => break,
            other => bail!("expected deliveries, got {other:?}"),
        }
    }
    if got != messages {
        bail!("queue_drained after {got} of {messages} messages");
    }
    conn.sender.send(&ClientMessage::Ack { seqs }).await?;
    conn.sender.send(&ClientMessage::Ping { rid: 1 }).await?;
    match client::recv(&mut conn).await? {
        ServerMessage::Pong { rid: 1 } => {}
        other => bail!("expected pong, got {other:?}"),
    }
    let _ = conn.sender.send(&ClientMessage::Bye).await;
    Ok(())
}

/// Envelope signature checks per second on one thread: what a server that checks them
/// (`[limits] check_envelope_signatures`; off by default, recipients always check) could take
/// at most on the task serving the sender's session.
pub fn verify_rate(duration: Duration) -> anyhow::Result<f64> {
    let mut rng = siren_proto::os_rng();
    let from = siren_api::Uid::parse("alice@bench.test")?;
    let to = siren_api::Uid::parse("bob@bench.test")?;
    let usk = UskSecret::generate(&mut rng);
    let dek = siren_proto::keys::DekSecret::generate(&mut rng).public();
    let to_dek = siren_proto::keys::DekSecret::generate(&mut rng).public();
    let env = Envelope::seal(
        envelope::Sender {
            uid: &from,
            usk: &usk,
            dek: &dek,
        },
        &to,
        &to_dek,
        MessageId::random(&mut rng),
        1,
        &[0x5a; PAYLOAD],
        &mut rng,
    )?;
    let public = usk.public();
    let start = Instant::now();
    let mut count = 0u64;
    while start.elapsed() < duration {
        for _ in 0..64 {
            env.verify_sender(&public)?;
        }
        count += 64;
    }
    Ok(rate(count, start.elapsed()))
}
