//! Many sender→receiver pairs at once on one server, the shape an outside load generator uses
//! to compare IM servers: near-unloaded (20 pairs, one message in flight each), where latency
//! is all the server's own path (checks, commit, wake-ups), and loaded (100 pairs, 64 in flight
//! each), where both cores are busy. Each pair is the 1:1 relay of [`crate::relay`]: one sending
//! and one receiving session, every message checked received once.

use std::path::Path;
use std::time::Duration;

use crate::client::Account;
use crate::relay::{self, Load};
use crate::server::Server;
use crate::stats::{fmt_ms, fmt_rate};
use crate::{Report, Row, met_within, per_msg, procfs, times};

/// One shape of load: how many pairs, how many messages in flight per pair.
#[derive(Clone, Copy)]
struct Shape {
    pairs: usize,
    window: usize,
}

/// What the pairs of one shape did together.
struct Together {
    /// Messages received per second, all pairs.
    rate: f64,
    /// The median of the pairs' median latencies.
    p50: Duration,
    /// The worst pair's 99th percentile.
    p99: Duration,
    /// sirend's CPU time during the run.
    cpu: Duration,
    /// Messages sent.
    sent: u64,
}

/// The usernames of pair `i` of a shape (`tag` tells the shapes apart: a pair's receiver must
/// have one device, so each shape has its own users).
fn users(tag: char, i: usize) -> (String, String) {
    (format!("{tag}s{i}"), format!("{tag}r{i}"))
}

/// Runs the pairs of `shape` (users tagged `tag`) at once, as fast as their windows allow.
async fn run(server: &Server, tag: char, shape: Shape, load: &Load) -> anyhow::Result<Together> {
    let target = server.target()?;
    let pid = server.pid()?;
    let mut pairs = Vec::with_capacity(shape.pairs);
    for i in 0..shape.pairs {
        let (s, r) = users(tag, i);
        let (s, r) = (Account::new(&target, &s)?, Account::new(&target, &r)?);
        pairs.push(relay::siren_pair(&target, &s, &r).await?);
    }
    let load = Load {
        window: shape.window,
        ..*load
    };
    let cpu = procfs::cpu_time(pid)?;
    let mut tasks = tokio::task::JoinSet::new();
    for pair in pairs {
        tasks.spawn(async move { relay::siren(pair, pid, &load, |_| Vec::new()).await });
    }
    let (mut rate, mut sent, mut p50s, mut p99) = (0.0, 0, Vec::new(), Duration::ZERO);
    while let Some(done) = tasks.join_next().await {
        let runs = done??;
        let Some(run) = runs.runs.first() else {
            anyhow::bail!("a pair returned no run");
        };
        rate += run.rate;
        sent += run.sent;
        p50s.push(run.p50);
        p99 = p99.max(run.p99);
    }
    let used = procfs::cpu_time(pid)?.saturating_sub(cpu);
    p50s.sort_unstable();
    Ok(Together {
        rate,
        p50: p50s.get(p50s.len() / 2).copied().unwrap_or_default(),
        p99,
        cpu: used,
        sent,
    })
}

/// The rows: near-unloaded latency and loaded throughput, beside the bare relay of the same
/// frames (one pair) measured in the same run.
pub async fn measure(
    bin: &Path,
    quick: bool,
    load: &Load,
    report: &mut Report,
) -> anyhow::Result<()> {
    eprintln!("pairs…");
    let (light, heavy) = if quick {
        (
            Shape {
                pairs: 4,
                window: 1,
            },
            Shape {
                pairs: 10,
                window: 8,
            },
        )
    } else {
        (
            Shape {
                pairs: 20,
                window: 1,
            },
            Shape {
                pairs: 100,
                window: 64,
            },
        )
    };
    let mut server = Server::new(bin, "pairs.test")?;
    let names: Vec<String> = (0..light.pairs)
        .map(|i| users('l', i))
        .chain((0..heavy.pairs).map(|i| users('h', i)))
        .flat_map(|(s, r)| [s, r])
        .collect();
    server.add_users(&names)?;
    server.start()?;
    let target = server.target()?;
    let (s0, r0) = users('l', 0);
    let frame = relay::deliver_frame(
        &Account::new(&target, &s0)?.uid,
        &Account::new(&target, &r0)?.uid,
    )?;

    let near = run(&server, 'l', light, load).await?;
    let bare_one = relay::bare(frame, &Load { window: 1, ..*load }, &[None]).await?;
    let bare_one = bare_one.first().copied().unwrap_or_default();
    let what = format!("{} pairs × {} in flight", light.pairs, light.window);
    report.rows.push(
        Row::new(
            format!("{what}: latency p50 (median of the pairs')"),
            fmt_ms(near.p50),
            format!("{} (bare relay, 1 pair × 1)", fmt_ms(bare_one.p50)),
            times(near.p50, bare_one.p50),
        )
        .goal("≤ 0.5 ms", met_within(near.p50, Duration::from_micros(500))),
    );
    report.rows.push(
        Row::new(
            format!("{what}: latency p99 (the worst pair's)"),
            fmt_ms(near.p99),
            format!("{} (bare relay, 1 pair × 1)", fmt_ms(bare_one.p99)),
            times(near.p99, bare_one.p99),
        )
        .goal("≤ 2 ms", met_within(near.p99, Duration::from_millis(2))),
    );

    let loaded = run(&server, 'h', heavy, load).await?;
    let bare_max = relay::bare(frame, load, &[None]).await?;
    let bare_max = bare_max.first().copied().unwrap_or_default();
    report.rows.push(Row::new(
        format!(
            "{} pairs × {} in flight (delivered msgs/s, all pairs)",
            heavy.pairs, heavy.window
        ),
        fmt_rate(loaded.rate),
        format!("{} (bare relay, 1 pair)", fmt_rate(bare_max.rate)),
        crate::percent(loaded.rate / bare_max.rate),
    ));
    report.note(format!(
        "pairs: sirend CPU per message {} at {} pairs × {} ({} msgs, {} delivered/s), {} at {} \
         pairs × {} ({} msgs); p99 at load {}",
        per_msg(near.cpu, near.sent),
        light.pairs,
        light.window,
        near.sent,
        fmt_rate(near.rate),
        per_msg(loaded.cpu, loaded.sent),
        heavy.pairs,
        heavy.window,
        loaded.sent,
        fmt_ms(loaded.p99),
    ));
    server.stop()?;
    Ok(())
}
