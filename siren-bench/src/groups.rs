//! Groups (PROTOCOL.md §12.1): what one message to a group costs. The sender's client seals one
//! envelope per member device and the server accepts them as ordinary envelopes, so the two
//! figures are the sender's sealing and the server's acceptance of the `send` (to the members'
//! durable queues: they are offline), each beside a 1:1 message to one member's two devices,
//! measured in the same run.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::bail;
use siren_api::Uid;
use siren_net::Connected;
use siren_proto::envelope::{self, Envelope};
use siren_proto::ids::{GroupId, MessageId};
use siren_proto::keys::DekPublic;
use siren_proto::message::{ClientMessage, ServerMessage};
use siren_proto::plaintext::Plaintext;

use crate::client::{self, Account};
use crate::server::Server;
use crate::stats::fmt_ms;
use crate::{Report, Row, times};

/// Most envelopes in one `send` (PROTOCOL.md §20).
const SEND_BATCH: usize = 256;

/// The median of `samples`.
fn median(mut samples: Vec<Duration>) -> Duration {
    samples.sort_unstable();
    samples.get(samples.len() / 2).copied().unwrap_or_default()
}

/// The envelopes of message `ctr` from `sender` (device `dek`) to each of `targets`.
fn seal(
    sender: &Account,
    dek: &DekPublic,
    targets: &[(Uid, DekPublic)],
    ctr: u64,
    plaintext: &[u8],
) -> anyhow::Result<Vec<Envelope>> {
    let id = MessageId::random(&mut siren_proto::os_rng());
    let mut rng = siren_proto::os_rng();
    targets
        .iter()
        .map(|(uid, to_dek)| {
            Ok(Envelope::seal(
                envelope::Sender {
                    uid: &sender.uid,
                    usk: &sender.usk,
                    dek,
                },
                uid,
                to_dek,
                id,
                ctr,
                plaintext,
                &mut rng,
            )?)
        })
        .collect()
}

/// Sends `envelopes` ([`SEND_BATCH`] per `send`, all in flight at once) and waits for every
/// `send_ack`.
async fn send(conn: &mut Connected, rid: &mut u32, envelopes: Vec<Envelope>) -> anyhow::Result<()> {
    let mut waiting = Vec::new();
    for batch in envelopes.chunks(SEND_BATCH) {
        *rid += 1;
        waiting.push(*rid);
        conn.sender
            .send(&ClientMessage::Send {
                rid: *rid,
                msgs: batch.to_vec(),
            })
            .await?;
    }
    while !waiting.is_empty() {
        match client::recv(conn).await? {
            ServerMessage::SendAck { rid, .. } => waiting.retain(|r| *r != rid),
            ServerMessage::Deliver { .. } | ServerMessage::QueueDrained => {}
            other => bail!("expected send_ack, got {other:?}"),
        }
    }
    Ok(())
}

/// The rows: a message to a group of `members` users with two devices each, beside a 1:1
/// message to one of them.
pub async fn measure(bin: &Path, quick: bool, report: &mut Report) -> anyhow::Result<()> {
    eprintln!("groups…");
    let (members, rounds) = if quick { (10, 5) } else { (50, 30) };
    const DEVICES: usize = 2;
    let mut server = Server::new(bin, "groups.test")?;
    let names: Vec<String> = std::iter::once("gsender".to_owned())
        .chain((0..members).map(|i| format!("gm{i}")))
        .collect();
    server.add_users(&names)?;
    server.start()?;
    let target = server.target()?;
    let sender = Account::new(&target, "gsender")?;
    let (device, mut conn) = client::enroll(&target, &sender).await?;
    let dek = device.dek.public();
    // Every member with two devices, offline: their queues take the messages.
    let mut all = Vec::with_capacity(members * DEVICES);
    for i in 0..members {
        let account = Account::new(&target, &format!("gm{i}"))?;
        for _ in 0..DEVICES {
            let (device, member) = client::enroll(&target, &account).await?;
            all.push((account.uid.clone(), device.dek.public()));
            client::bye(member).await?;
        }
    }
    let one: Vec<_> = all.iter().take(DEVICES).cloned().collect();
    let text = Plaintext::Text {
        body: "lunch at noon? ".repeat(8),
        ts: 0,
    };
    let group_plaintext = Plaintext::Group {
        group: GroupId::random(&mut siren_proto::os_rng()),
        version: 1,
        msg: Box::new(text.clone()),
    }
    .encode();
    let direct_plaintext = text.encode();

    let (mut seal_group, mut seal_one, mut accept_group, mut accept_one) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let (mut ctr, mut rid) = (0, 10);
    for _ in 0..rounds {
        ctr += 1;
        let started = Instant::now();
        let envelopes = seal(&sender, &dek, &all, ctr, &group_plaintext)?;
        seal_group.push(started.elapsed());
        let started = Instant::now();
        send(&mut conn, &mut rid, envelopes).await?;
        accept_group.push(started.elapsed());

        ctr += 1;
        let started = Instant::now();
        let envelopes = seal(&sender, &dek, &one, ctr, &direct_plaintext)?;
        seal_one.push(started.elapsed());
        let started = Instant::now();
        send(&mut conn, &mut rid, envelopes).await?;
        accept_one.push(started.elapsed());
    }
    client::bye(conn).await?;
    let (seal_group, seal_one) = (median(seal_group), median(seal_one));
    let (accept_group, accept_one) = (median(accept_group), median(accept_one));
    let what = format!("group of {members} × {DEVICES} devices");
    let per_member = |d: Duration| fmt_ms(d / members as u32);
    report.rows.push(Row::new(
        format!("{what}: sender's sealing per message (median)"),
        format!(
            "{} ({} per member)",
            fmt_ms(seal_group),
            per_member(seal_group)
        ),
        format!("{} (1:1, one member's {DEVICES} devices)", fmt_ms(seal_one)),
        times(seal_group, seal_one),
    ));
    report.rows.push(Row::new(
        format!("{what}: server's acceptance per message, send → send_ack (median)"),
        format!(
            "{} ({} per member)",
            fmt_ms(accept_group),
            per_member(accept_group)
        ),
        format!(
            "{} (1:1, one member's {DEVICES} devices)",
            fmt_ms(accept_one)
        ),
        times(accept_group, accept_one),
    ));
    report.note(format!(
        "groups: {rounds} messages each way to {members} members with {DEVICES} devices each \
         ({} envelopes per group message, one `send`), members offline (durable queues); \
         sealing is X25519 + Ed25519 per envelope on the sender's device; no sender keys \
         (PROTOCOL.md §12.1)",
        all.len()
    ));
    server.stop()?;
    Ok(())
}
