//! Online 1:1 relay: a sender session and a live receiver session on sirend, beside a bare tokio
//! TCP relay that forwards frames of the same size (no crypto, no storage).
//!
//! Both use the same closed-loop load: at most [`Load::window`] messages are sent and not yet
//! received, optionally paced to a fixed rate. Latency is from just before the sender writes a
//! message to just after the receiver has read (and, for Siren, decrypted and decoded) it; the
//! message carries a slot number that names its send time.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use rand_core::Rng as _;
use siren_net::{Connected, read_frame, write_frame};
use siren_proto::envelope::{self, Envelope};
use siren_proto::frame::HEADER_LEN;
use siren_proto::handshake::SessionRequest;
use siren_proto::ids::MessageId;
use siren_proto::keys::{DekPublic, DekSecret};
use siren_proto::message::{self, ClientMessage, QueueItem, ServerMessage};
use tokio::net::TcpStream;
use tokio::sync::Semaphore;
use tokio::task::JoinHandle;

use crate::client::{self, Account};
use crate::handshakes;
use crate::procfs;
use crate::server::Target;
use crate::stats::{Latencies, rate};

/// Bytes of plaintext in each message.
pub const PAYLOAD: usize = 256;
/// Distinct messages (and send-time slots); more than any window.
const SLOTS: usize = 4096;
/// Deliveries the Siren receiver acknowledges at once.
const ACK_BATCH: usize = 16;
/// How long the sender waits for room in the window before declaring the relay stalled.
const STALL: Duration = Duration::from_secs(30);
/// Largest frame the bare relay accepts.
const BARE_MAX_FRAME: usize = 1 << 16;

/// The shape of a load run.
#[derive(Clone, Copy)]
pub struct Load {
    /// Most messages sent and not yet received.
    pub window: usize,
    /// Time before the measured interval (not counted).
    pub warmup: Duration,
    /// The measured interval.
    pub measure: Duration,
}

/// One run's figures.
#[derive(Clone, Copy, Default)]
pub struct Run {
    /// Messages received per second during the measured interval.
    pub rate: f64,
    /// Median latency of the messages received in the measured interval.
    pub p50: Duration,
    /// 99th percentile latency.
    pub p99: Duration,
    /// The largest latency.
    pub max: Duration,
    /// Messages of the measured interval slower than 5 ms, and how many were measured.
    pub over_5ms: (usize, usize),
    /// Messages sent in the whole run (warm-up included).
    pub sent: u64,
    /// The whole run's duration (warm-up and final drain included).
    pub elapsed: Duration,
}

/// State shared by a load's sender and receiver.
struct Flow {
    epoch: Instant,
    window: Semaphore,
    size: usize,
    sent_at: Vec<AtomicU64>,
    /// `(received, latency)` in nanoseconds since `epoch`.
    samples: Mutex<Vec<(u64, u64)>>,
    failure: Mutex<Option<String>>,
}

impl Flow {
    fn new(window: usize) -> Arc<Flow> {
        Arc::new(Flow {
            epoch: Instant::now(),
            window: Semaphore::new(window),
            size: window,
            sent_at: (0..SLOTS).map(|_| AtomicU64::new(0)).collect(),
            samples: Mutex::new(Vec::new()),
            failure: Mutex::new(None),
        })
    }

    fn ns(&self, at: Instant) -> u64 {
        u64::try_from(at.saturating_duration_since(self.epoch).as_nanos()).unwrap_or(u64::MAX)
    }

    fn mark_sent(&self, n: u64) {
        self.sent_at[slot(n)].store(self.ns(Instant::now()), Ordering::Relaxed);
    }

    fn received(&self, n: u64) {
        let now = self.ns(Instant::now());
        let sent = self.sent_at[slot(n)].load(Ordering::Relaxed);
        self.samples
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push((now, now.saturating_sub(sent)));
        self.window.add_permits(1);
    }

    fn fail(&self, why: String) {
        let mut failure = self.failure.lock().unwrap_or_else(PoisonError::into_inner);
        if failure.is_none() {
            *failure = Some(why);
        }
        self.window.close();
    }

    fn failure(&self) -> String {
        self.failure
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
            .unwrap_or_else(|| "no error reported".into())
    }

    async fn acquire(&self) -> anyhow::Result<()> {
        match tokio::time::timeout(STALL, self.window.acquire()).await {
            Ok(Ok(permit)) => {
                permit.forget();
                Ok(())
            }
            Ok(Err(_)) => bail!("the receiver failed: {}", self.failure()),
            Err(_) => bail!("nothing received for {STALL:?} ({})", self.failure()),
        }
    }

    /// Waits until everything sent has been received.
    async fn settle(&self) -> anyhow::Result<()> {
        let n = u32::try_from(self.size).context("window too large")?;
        match tokio::time::timeout(STALL, self.window.acquire_many(n)).await {
            Ok(Ok(all)) => {
                drop(all);
                Ok(())
            }
            Ok(Err(_)) => bail!("the receiver failed: {}", self.failure()),
            Err(_) => bail!(
                "messages still missing after {STALL:?} ({})",
                self.failure()
            ),
        }
    }

    fn take_samples(&self) -> Vec<(u64, u64)> {
        std::mem::take(&mut *self.samples.lock().unwrap_or_else(PoisonError::into_inner))
    }
}

fn slot(n: u64) -> usize {
    (n % SLOTS as u64) as usize
}

/// Something that sends message number `n` of a load.
trait Source {
    async fn send(&mut self, n: u64) -> anyhow::Result<()>;
}

/// Runs one load: warm-up, measured interval, then waits for the stragglers. `rate` paces the
/// sender (messages per second); `None` sends as fast as the window allows.
async fn run(
    flow: &Flow,
    source: &mut impl Source,
    next: &mut u64,
    load: &Load,
    pace: Option<f64>,
) -> anyhow::Result<Run> {
    if pace.is_some_and(|r| !(r.is_finite() && r > 0.0)) {
        bail!("cannot pace a load at {pace:?} messages per second");
    }
    flow.take_samples();
    let start = Instant::now();
    let from = start + load.warmup;
    let end = from + load.measure;
    let mut sent = 0u64;
    while Instant::now() < end {
        if let Some(per_sec) = pace {
            let due = start + Duration::from_secs_f64(sent as f64 / per_sec);
            tokio::time::sleep_until(due.into()).await;
        }
        flow.acquire().await?;
        flow.mark_sent(*next);
        source.send(*next).await?;
        *next += 1;
        sent += 1;
    }
    flow.settle().await?;
    let elapsed = start.elapsed();
    let (from, end) = (flow.ns(from), flow.ns(end));
    let mut latencies = Latencies::default();
    for (at, latency) in flow.take_samples() {
        if (from..end).contains(&at) {
            latencies.push(Duration::from_nanos(latency));
        }
    }
    Ok(Run {
        rate: rate(latencies.len() as u64, load.measure),
        p50: latencies.percentile(50.0),
        p99: latencies.percentile(99.0),
        max: latencies.percentile(100.0),
        over_5ms: (
            latencies.count_above(Duration::from_millis(5)),
            latencies.len(),
        ),
        sent,
        elapsed,
    })
}

// ---------------------------------------------------------------------------------------------
// The bare relay.

/// A bare relay on its own two-thread runtime (like sirend's): frames from the first
/// connection to the second, one read and one write per frame.
struct BareRelay {
    input: SocketAddr,
    output: SocketAddr,
    thread: std::thread::JoinHandle<anyhow::Result<()>>,
}

impl BareRelay {
    fn start() -> anyhow::Result<BareRelay> {
        let bind = || -> anyhow::Result<std::net::TcpListener> {
            let l = std::net::TcpListener::bind("127.0.0.1:0")?;
            l.set_nonblocking(true)?;
            Ok(l)
        };
        let (input, output) = (bind()?, bind()?);
        let (in_addr, out_addr) = (input.local_addr()?, output.local_addr()?);
        let thread = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()?;
            runtime.block_on(async move {
                let input = tokio::net::TcpListener::from_std(input)?;
                let output = tokio::net::TcpListener::from_std(output)?;
                let (from, _) = input.accept().await?;
                let (to, _) = output.accept().await?;
                from.set_nodelay(true)?;
                to.set_nodelay(true)?;
                let (mut rd, _keep) = from.into_split();
                let (_keep2, mut wr) = to.into_split();
                // Runs until the sender closes its connection.
                while let Ok(frame) = read_frame(&mut rd, BARE_MAX_FRAME).await {
                    write_frame(&mut wr, &frame, BARE_MAX_FRAME).await?;
                }
                anyhow::Ok(())
            })
        });
        Ok(BareRelay {
            input: in_addr,
            output: out_addr,
            thread,
        })
    }
}

struct BareSource {
    stream: TcpStream,
    payload: Vec<u8>,
}

impl Source for BareSource {
    async fn send(&mut self, n: u64) -> anyhow::Result<()> {
        self.payload[..8].copy_from_slice(&n.to_le_bytes());
        write_frame(&mut self.stream, &self.payload, BARE_MAX_FRAME)
            .await
            .context("writing to the bare relay")
    }
}

/// The bare relay's figures: one run per entry of `paces` (messages per second, or `None` for
/// as fast as the window allows), on one relay.
pub async fn bare(
    frame_len: usize,
    load: &Load,
    paces: &[Option<f64>],
) -> anyhow::Result<Vec<Run>> {
    let relay = BareRelay::start()?;
    let stream = TcpStream::connect(relay.input).await?;
    stream.set_nodelay(true)?;
    let receiver = TcpStream::connect(relay.output).await?;
    receiver.set_nodelay(true)?;
    let flow = Flow::new(load.window);
    let reader = {
        let flow = flow.clone();
        let mut receiver = receiver;
        tokio::spawn(async move {
            loop {
                match read_frame(&mut receiver, BARE_MAX_FRAME).await {
                    Ok(frame) if frame.len() >= 8 => {
                        let mut n = [0u8; 8];
                        n.copy_from_slice(&frame[..8]);
                        flow.received(u64::from_le_bytes(n));
                    }
                    Ok(_) => return flow.fail("short frame from the bare relay".into()),
                    // The relay closed: the load is over.
                    Err(_) => return,
                }
            }
        })
    };
    let mut source = BareSource {
        stream,
        payload: vec![0xa5; frame_len - HEADER_LEN],
    };
    let mut next = 0;
    let mut runs = Vec::new();
    for &pace in paces {
        runs.push(run(&flow, &mut source, &mut next, load, pace).await?);
    }
    drop(source);
    let _ = reader.await;
    relay
        .thread
        .join()
        .map_err(|_| anyhow::anyhow!("the bare relay panicked"))??;
    Ok(runs)
}

// ---------------------------------------------------------------------------------------------
// Siren.

/// Two live sessions on sirend and the messages one will send the other.
pub struct SirenPair {
    sender: Connected,
    receiver: Connected,
    /// Encoded `send` requests, one envelope each, [`SLOTS`] of them (request id = slot).
    requests: Vec<Vec<u8>>,
    /// The size of a `deliver` frame carrying one of these envelopes (prefix included).
    pub deliver_frame: usize,
    /// Bytes a frame adds to its plaintext (length prefix and transport tag).
    overhead: usize,
}

/// Enrolls a device for each account, looks the receiver up from the sender's session, and
/// seals [`SLOTS`] envelopes of [`PAYLOAD`] bytes to it (distinct ids, counters and
/// ephemeral keys; slot `k`'s id starts with `k`).
pub async fn siren_pair(
    target: &Target,
    from: &Account,
    to: &Account,
) -> anyhow::Result<SirenPair> {
    siren_pair_across(target, target, from, to).await
}

/// A sender on `from_target` and a receiver on `to_target` (the same server, or two federated
/// ones: then every message crosses a server-to-server link).
pub async fn siren_pair_across(
    from_target: &Target,
    to_target: &Target,
    from: &Account,
    to: &Account,
) -> anyhow::Result<SirenPair> {
    let (sender_device, mut sender) = client::enroll(from_target, from).await?;
    let (_, receiver) = client::enroll(to_target, to).await?;
    let listing = client::lookup(&mut sender, 3, &to.uid).await?;
    let [record] = listing.records.as_slice() else {
        bail!("expected one device for {}", to.uid);
    };
    let to_dek = record.dek;
    let requests = tokio::task::spawn_blocking({
        let (from_uid, to_uid) = (from.uid.clone(), to.uid.clone());
        let usk = siren_proto::keys::UskSecret::from_bytes(&from.usk.to_bytes());
        let dek = sender_device.dek.public();
        move || seal_requests(&from_uid, &usk, &dek, &to_uid, &to_dek)
    })
    .await??;
    let (deliver_frame, overhead) = deliver_frame_len(&requests.1)?;
    Ok(SirenPair {
        sender,
        receiver,
        requests: requests.0,
        deliver_frame,
        overhead,
    })
}

fn seal_requests(
    from: &siren_api::Uid,
    usk: &siren_proto::keys::UskSecret,
    dek: &DekPublic,
    to: &siren_api::Uid,
    to_dek: &DekPublic,
) -> anyhow::Result<(Vec<Vec<u8>>, Envelope)> {
    let mut rng = siren_proto::os_rng();
    let tag = MessageId::random(&mut rng);
    let sender = envelope::Sender {
        uid: from,
        usk,
        dek,
    };
    let mut requests = Vec::with_capacity(SLOTS);
    let mut first = None;
    for k in 0..SLOTS {
        let mut id = *tag.as_bytes();
        id[..8].copy_from_slice(&(k as u64).to_le_bytes());
        let mut plaintext = vec![0u8; PAYLOAD];
        rng.fill_bytes(&mut plaintext);
        let env = Envelope::seal(
            sender,
            to,
            to_dek,
            MessageId::from_bytes(id),
            k as u64 + 1,
            &plaintext,
            &mut rng,
        )?;
        if first.is_none() {
            first = Some(env.clone());
        }
        requests.push(message::encode(&ClientMessage::Send {
            rid: k as u32,
            msgs: vec![env],
        }));
    }
    Ok((requests, first.context("no envelopes")?))
}

/// The bytes on the wire for `deliver { seq, item: message { env } }` with a five-byte `seq`
/// (what sequence numbers in the tens of thousands take in CBOR), sealed by a real transport;
/// and how many bytes the frame adds to the plaintext.
fn deliver_frame_len(env: &Envelope) -> anyhow::Result<(usize, usize)> {
    let item = message::encode_value(&QueueItem::Message { env: env.clone() });
    let plain = message::encode_deliver(100_000, &item);
    let keys = handshakes::test_keys(env.to.server());
    let dek = DekSecret::generate(&mut siren_proto::os_rng());
    let (_, responder) = handshakes::in_process(&keys, &dek, SessionRequest::Open)?;
    let (mut sealer, _) = responder.transport.split();
    let frame = HEADER_LEN + sealer.seal(&plain)?.len();
    Ok((frame, frame - plain.len()))
}

/// The size of a `deliver` frame carrying a [`PAYLOAD`]-byte message from `from` to `to`
/// (sealed with fresh keys; the size does not depend on them).
pub fn deliver_frame(from: &siren_api::Uid, to: &siren_api::Uid) -> anyhow::Result<usize> {
    let mut rng = siren_proto::os_rng();
    let usk = siren_proto::keys::UskSecret::generate(&mut rng);
    let dek = DekSecret::generate(&mut rng).public();
    let to_dek = DekSecret::generate(&mut rng).public();
    let env = Envelope::seal(
        envelope::Sender {
            uid: from,
            usk: &usk,
            dek: &dek,
        },
        to,
        &to_dek,
        MessageId::random(&mut rng),
        1,
        &[0u8; PAYLOAD],
        &mut rng,
    )?;
    Ok(deliver_frame_len(&env)?.0)
}

struct SirenSource {
    sender: siren_net::Sender,
    requests: Arc<Vec<Vec<u8>>>,
}

impl Source for SirenSource {
    async fn send(&mut self, n: u64) -> anyhow::Result<()> {
        self.sender
            .send_encoded(&self.requests[slot(n)])
            .await
            .context("sending to sirend")
    }
}

/// What the Siren relay measured.
pub struct SirenRuns {
    /// As fast as the window allows, then at each paced rate.
    pub runs: Vec<Run>,
    /// The largest `deliver` frame the receiver read (prefix included).
    pub observed_frame: usize,
    /// CPU time sirend used during the first (fastest) run: user, system.
    pub server_cpu: (Duration, Duration),
    /// CPU time this process (both clients) used during the first run.
    pub bench_cpu: Duration,
}

/// Runs the Siren relay: as fast as the window allows, then paced at each of
/// `paced(max rate)`. `server` is sirend's process id (for its CPU time).
pub async fn siren(
    pair: SirenPair,
    server: u32,
    load: &Load,
    paced: impl Fn(f64) -> Vec<f64>,
) -> anyhow::Result<SirenRuns> {
    let flow = Flow::new(load.window);
    let observed = Arc::new(AtomicUsize::new(0));
    let Connected {
        sender,
        receiver: mut acks,
        ..
    } = pair.sender;
    // The sender's answers: a `send_ack` per request, or an error.
    let ack_reader: JoinHandle<()> = {
        let flow = flow.clone();
        tokio::spawn(async move {
            loop {
                match acks.recv::<ServerMessage>().await {
                    Ok(ServerMessage::SendAck { .. } | ServerMessage::QueueDrained) => {}
                    Ok(other) => return flow.fail(format!("the sender got {other:?}")),
                    Err(e) => return flow.fail(format!("the sender's connection: {e}")),
                }
            }
        })
    };
    let delivery = tokio::spawn(receive(
        pair.receiver,
        flow.clone(),
        observed.clone(),
        pair.overhead,
        ACK_BATCH.min(load.window).max(1),
    ));
    let mut source = SirenSource {
        sender,
        requests: Arc::new(pair.requests),
    };
    let mut next = 0;
    let mut cpu = ((Duration::ZERO, Duration::ZERO), Duration::ZERO);
    let result = async {
        let before = (
            procfs::cpu_split(server)?,
            procfs::cpu_time(procfs::own_pid())?,
        );
        let first = run(&flow, &mut source, &mut next, load, None).await?;
        let after = procfs::cpu_split(server)?;
        cpu = (
            (
                after.0.saturating_sub(before.0.0),
                after.1.saturating_sub(before.0.1),
            ),
            procfs::cpu_time(procfs::own_pid())?.saturating_sub(before.1),
        );
        let mut runs = vec![first];
        for per_sec in paced(first.rate) {
            runs.push(run(&flow, &mut source, &mut next, load, Some(per_sec)).await?);
        }
        anyhow::Ok(runs)
    }
    .await;
    ack_reader.abort();
    delivery.abort();
    let _ = source.sender.send(&ClientMessage::Bye).await;
    Ok(SirenRuns {
        runs: result?,
        observed_frame: observed.load(Ordering::Relaxed),
        server_cpu: cpu.0,
        bench_cpu: cpu.1,
    })
}

/// The receiving device: reads each `deliver`, records it, and acknowledges what it holds
/// whenever the next frame is not already there, as `siren-client` flushes its acknowledgements
/// before it waits for the server (with one message in flight, each at once), and at the latest
/// every `ack_every` deliveries.
async fn receive(
    mut conn: Connected,
    flow: Arc<Flow>,
    observed: Arc<AtomicUsize>,
    overhead: usize,
    ack_every: usize,
) {
    let mut seqs = Vec::with_capacity(ack_every);
    loop {
        // `recv_plain` is cancel-safe: a poll that finds no whole frame loses nothing.
        let ready = std::future::poll_fn(|cx| {
            let next = std::pin::pin!(conn.receiver.recv_plain());
            std::task::Poll::Ready(match std::future::Future::poll(next, cx) {
                std::task::Poll::Ready(r) => Some(r),
                std::task::Poll::Pending => None,
            })
        })
        .await;
        let next = match ready {
            Some(next) => next,
            None => {
                if !seqs.is_empty() {
                    let ack = ClientMessage::Ack {
                        seqs: std::mem::take(&mut seqs),
                    };
                    if let Err(e) = conn.sender.send(&ack).await {
                        return flow.fail(format!("acknowledging: {e}"));
                    }
                }
                conn.receiver.recv_plain().await
            }
        };
        let plain = match next {
            Ok(p) => p,
            Err(e) => return flow.fail(format!("the receiver's connection: {e}")),
        };
        // With the transport tag and length prefix: the frame as it was on the wire.
        observed.fetch_max(plain.len() + overhead, Ordering::Relaxed);
        match message::decode::<ServerMessage>(&plain) {
            Ok(ServerMessage::Deliver {
                seq,
                item: QueueItem::Message { env },
            }) => {
                let mut n = [0u8; 8];
                n.copy_from_slice(&env.id.as_bytes()[..8]);
                flow.received(u64::from_le_bytes(n));
                seqs.push(seq);
                if seqs.len() >= ack_every {
                    let ack = ClientMessage::Ack {
                        seqs: std::mem::take(&mut seqs),
                    };
                    if let Err(e) = conn.sender.send(&ack).await {
                        return flow.fail(format!("acknowledging: {e}"));
                    }
                }
            }
            Ok(ServerMessage::QueueDrained) => {}
            Ok(other) => return flow.fail(format!("the receiver got {other:?}")),
            Err(e) => return flow.fail(format!("the receiver could not decode a message: {e}")),
        }
    }
}
