//! Handshake and resumption rates through sirend, beside the raw cost of the handshake's
//! cryptography (both roles of `siren_proto::handshake`, in process, on every core).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use siren_api::ServerName;
use siren_proto::handshake::{
    self, Initiator, InitiatorDone, ResponderDone, ResponderKeys, Role, SessionRequest,
};
use siren_proto::keys::{DekSecret, SekSecret};
use siren_proto::message::ServerMessage;

use crate::client::{self, Account, Device};
use crate::server::Target;
use crate::stats::rate;

/// A complete handshake in memory: the initiator (a device) and the responder (a server).
pub fn in_process(
    keys: &ResponderKeys,
    dek: &DekSecret,
    request: SessionRequest,
) -> anyhow::Result<(InitiatorDone, ResponderDone)> {
    let mut rng = siren_proto::os_rng();
    let (init, hello) =
        Initiator::client(&keys.name, &keys.current.public(), dek, request, &mut rng)?;
    let received = handshake::read_hello(keys, Role::ClientToServer, &hello)?;
    let (waiting, reply) = received.reply(&mut rng)?;
    let (initiator, finish) = init.read_reply(&reply)?;
    let responder = waiting.read_finish(&finish)?;
    Ok((initiator, responder))
}

/// Fresh responder keys for in-process handshakes.
pub fn test_keys(name: &ServerName) -> ResponderKeys {
    ResponderKeys {
        name: name.clone(),
        current: SekSecret::generate(&mut siren_proto::os_rng()),
        retired: Vec::new(),
    }
}

/// Complete in-process handshakes per second, on `threads` threads for `duration`.
pub fn crypto_rate(threads: usize, duration: Duration) -> anyhow::Result<f64> {
    let name = ServerName::parse("bench.test").context("server name")?;
    let keys = Arc::new(test_keys(&name));
    on_threads(threads, duration, move || {
        let dek = DekSecret::generate(&mut siren_proto::os_rng());
        let keys = keys.clone();
        move || in_process(&keys, &dek, SessionRequest::Open).map(|_| ())
    })
}

/// argon2id password hashes per second at the password backend's default cost (OWASP's:
/// 19 MiB, 2 iterations, 1 lane), on `threads` threads: the raw price of one `PLAIN` login.
pub fn hash_rate(threads: usize, duration: Duration) -> anyhow::Result<f64> {
    let cost = siren_auth_password::Cost::RECOMMENDED;
    let params = argon2::Params::new(cost.memory_kib, cost.iterations, cost.parallelism, None)
        .map_err(|e| anyhow::anyhow!("argon2 parameters: {e}"))?;
    on_threads(threads, duration, move || {
        let argon2 = argon2::Argon2::new(
            argon2::Algorithm::Argon2id,
            argon2::Version::V0x13,
            params.clone(),
        );
        move || {
            let mut out = [0u8; 32];
            argon2
                .hash_password_into(b"a bench password", b"sixteen byte salt", &mut out)
                .map_err(|e| anyhow::anyhow!("argon2: {e}"))
        }
    })
}

/// Runs `work` in a loop on `threads` threads for `duration` (each thread makes its own with
/// `make`); completions per second.
fn on_threads<M, W>(threads: usize, duration: Duration, make: M) -> anyhow::Result<f64>
where
    M: Fn() -> W,
    W: FnMut() -> anyhow::Result<()> + Send + 'static,
{
    let stop = Arc::new(AtomicBool::new(false));
    let count = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let workers: Vec<_> = (0..threads)
        .map(|_| {
            let (stop, count) = (stop.clone(), count.clone());
            let mut work = make();
            std::thread::spawn(move || -> anyhow::Result<()> {
                while !stop.load(Ordering::Relaxed) {
                    work()?;
                    count.fetch_add(1, Ordering::Relaxed);
                }
                Ok(())
            })
        })
        .collect();
    std::thread::sleep(duration);
    stop.store(true, Ordering::Relaxed);
    let elapsed = start.elapsed();
    for w in workers {
        w.join()
            .map_err(|_| anyhow::anyhow!("a measuring thread panicked"))??;
    }
    Ok(rate(count.load(Ordering::Relaxed), elapsed))
}

/// `PLAIN` logins per second through the server, `connectors` at once for `duration`: each a
/// fresh connection (handshake, `welcome`, `auth_start`, `auth_success`), dropped once logged in.
pub async fn logins(
    target: &Target,
    account: &Account,
    connectors: usize,
    duration: Duration,
) -> anyhow::Result<f64> {
    let (t, uid) = (target.clone(), account.uid.clone());
    timed(connectors, duration, move |_| {
        let (target, uid) = (t.clone(), uid.clone());
        async move {
            match client::log_in(&target, &uid).await?.3 {
                ServerMessage::AuthSuccess { .. } => Ok(()),
                other => bail!("login failed: {other:?}"),
            }
        }
    })
    .await
    .context("logins")
}

/// What [`through_server`] measured.
pub struct Rates {
    /// Fresh sessions (handshake, `welcome`, `auth_mechanisms`) per second.
    pub fresh: f64,
    /// Resumptions (handshake naming a logged-in session, `welcome` with `resumed`) per second.
    pub resumed: f64,
    /// How many connectors ran concurrently.
    pub connectors: usize,
}

/// Runs `connectors` concurrent loops of fresh handshakes for `duration`, then the same number
/// of loops resuming logged-in sessions (each loop its own registered device) for `duration`.
/// Each connection is dropped as soon as the answer is read, as a client that only checks in.
pub async fn through_server(
    target: &Target,
    account: &Account,
    connectors: usize,
    duration: Duration,
) -> anyhow::Result<Rates> {
    // Devices to resume: registered and logged in, then disconnected.
    let mut devices = Vec::new();
    for _ in 0..connectors {
        let (device, conn) = client::enroll(target, account).await?;
        client::bye(conn).await?;
        devices.push(Arc::new(device));
    }
    // Each enrolment queued a notice for the devices enrolled before it: take them now, as a
    // client would, so that every timed resumption finds an empty queue (a resumption, not a
    // backlog delivered again and again to a client that never reads it; the drain row measures
    // backlogs).
    for device in &devices {
        let mut conn = client::resume(target, device).await?;
        client::drained(&mut conn).await?;
        client::bye(conn).await?;
    }

    let t = target.clone();
    let fresh = timed(connectors, duration, move |_| {
        let target = t.clone();
        async move {
            let dek = DekSecret::generate(&mut siren_proto::os_rng());
            let mut conn = client::open(&target, &dek, SessionRequest::Open).await?;
            let (_, resumed) = client::welcome(&mut conn).await?;
            if resumed {
                bail!("a new session was reported as resumed");
            }
            match client::recv(&mut conn).await? {
                ServerMessage::AuthMechanisms { .. } => Ok(()),
                other => bail!("expected auth_mechanisms, got {other:?}"),
            }
        }
    })
    .await
    .context("fresh handshakes")?;

    let devices = Arc::new(devices);
    let t = target.clone();
    let resumed = timed(connectors, duration, move |i| {
        let target = t.clone();
        let device: Arc<Device> = devices[i].clone();
        async move {
            client::resume(&target, &device).await?;
            Ok(())
        }
    })
    .await
    .context("resumptions")?;

    Ok(Rates {
        fresh,
        resumed,
        connectors,
    })
}

/// Runs `connectors` loops of `one(i)` for `duration`; returns completions per second.
async fn timed<F, Fut>(connectors: usize, duration: Duration, one: F) -> anyhow::Result<f64>
where
    F: Fn(usize) -> Fut + Send + Sync + 'static + Clone,
    Fut: Future<Output = anyhow::Result<()>> + Send + 'static,
{
    let count = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let end = start + duration;
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..connectors {
        let (one, count) = (one.clone(), count.clone());
        tasks.spawn(async move {
            while Instant::now() < end {
                one(i).await?;
                count.fetch_add(1, Ordering::Relaxed);
            }
            anyhow::Ok(())
        });
    }
    while let Some(done) = tasks.join_next().await {
        done.context("a connector task failed")??;
    }
    Ok(rate(count.load(Ordering::Relaxed), start.elapsed()))
}
