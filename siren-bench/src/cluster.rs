//! One domain on several nodes (issue 17): three `sirend` nodes sharing one PostgreSQL database
//! and one `nats-server`, all on this machine.
//!
//! * **Relay within a node and across nodes**: alice→carol both on node 1, beside dave on node 1
//!   → bob on node 2 (every message is committed by node 1 and wakes bob's session on node 2
//!   over NATS): the rate as fast as the window allows, and the latency at half that rate.
//! * **From one node to three**: the same pairs (each pair's two users on one node) spread over
//!   one, two, then three nodes. This machine has two cores, so it cannot show the cluster's
//!   capacity growing; the nodes' CPU per message is what tells what a node costs.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::Context as _;

use crate::client::Account;
use crate::relay::{self, Load};
use crate::server::Server;
use crate::stats::{fmt_ms, fmt_rate};
use crate::{Report, Row, met, met_within, per_msg, percent, procfs, times};

/// Nodes started.
const NODES: usize = 3;

/// A `nats-server` on a loopback port of its own, stopped on drop.
struct Nats {
    child: Child,
    url: String,
}

impl Nats {
    fn start() -> anyhow::Result<Nats> {
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let child = Command::new("nats-server")
            .args(["-a", "127.0.0.1", "-p", &port.to_string()])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("cannot run nats-server (Debian: apt-get install nats-server)")?;
        let nats = Nats {
            child,
            url: format!("nats://127.0.0.1:{port}"),
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            anyhow::ensure!(
                Instant::now() < deadline,
                "nats-server did not listen within 10 s"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(nats)
    }
}

impl Drop for Nats {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Whether `nats-server` can be run here.
pub fn available() -> bool {
    Command::new("nats-server")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// The users of pair `i` of the run on `n` nodes.
fn users(n: usize, i: usize) -> (String, String) {
    (format!("s{n}x{i}"), format!("r{n}x{i}"))
}

/// The CPU time all of `pids` used so far.
fn cpu(pids: &[u32]) -> anyhow::Result<Duration> {
    pids.iter().map(|&p| procfs::cpu_time(p)).sum()
}

/// The rows; `admin_url` is a PostgreSQL admin URL (a database is created and dropped).
pub async fn measure(
    bin: &Path,
    quick: bool,
    load: &Load,
    admin_url: &str,
    report: &mut Report,
) -> anyhow::Result<()> {
    eprintln!("cluster…");
    let db = format!("siren_bench_cluster_{}", std::process::id());
    crate::psql(admin_url, &format!("CREATE DATABASE {db}"))?;
    let base = admin_url.rsplit_once('/').map_or(admin_url, |(b, _)| b);
    let result = nodes(bin, quick, load, &format!("{base}/{db}"), report).await;
    crate::psql(
        admin_url,
        &format!("DROP DATABASE IF EXISTS {db} WITH (FORCE)"),
    )?;
    result
}

async fn nodes(
    bin: &Path,
    quick: bool,
    load: &Load,
    url: &str,
    report: &mut Report,
) -> anyhow::Result<()> {
    let (pairs, window) = if quick { (3, 4) } else { (12, 16) };
    let nats = Nats::start()?;
    let mut nodes: Vec<Server> = Vec::with_capacity(NODES);
    for i in 1..=NODES {
        let mut node = Server::new(bin, "cluster.test")?;
        node.cluster_node(url, &format!("node-{i}"), &nats.url)?;
        if let Some(first) = nodes.first() {
            node.share_key(first)?;
        }
        nodes.push(node);
    }
    let mut names: Vec<String> = ["alice", "carol", "dave", "bob"]
        .into_iter()
        .map(str::to_owned)
        .collect();
    for n in 1..=NODES {
        for i in 0..pairs {
            let (s, r) = users(n, i);
            names.extend([s, r]);
        }
    }
    // One store: the users are added once, through the first node's configuration.
    if let Some(first) = nodes.first() {
        first.add_users(&names)?;
    }
    for node in &mut nodes {
        node.start()?;
    }
    let targets = nodes
        .iter()
        .map(Server::target)
        .collect::<anyhow::Result<Vec<_>>>()?;
    let pids = nodes
        .iter()
        .map(Server::pid)
        .collect::<anyhow::Result<Vec<_>>>()?;
    let (Some(one), Some(two), Some(&first_pid)) = (targets.first(), targets.get(1), pids.first())
    else {
        anyhow::bail!("the cluster has fewer than two nodes");
    };

    let half = |max: f64| vec![max / 2.0];
    let (alice, carol) = (Account::new(one, "alice")?, Account::new(one, "carol")?);
    let same = relay::siren_pair(one, &alice, &carol).await?;
    let before = cpu(&pids)?;
    let same = relay::siren(same, first_pid, load, half).await?;
    let same_cpu = cpu(&pids)?.saturating_sub(before);
    let (dave, bob) = (Account::new(one, "dave")?, Account::new(two, "bob")?);
    let across = relay::siren_pair_across(one, two, &dave, &bob).await?;
    let before = cpu(&pids)?;
    let across = relay::siren(across, first_pid, load, half).await?;
    let across_cpu = cpu(&pids)?.saturating_sub(before);
    let (Some(s_max), Some(s_half), Some(x_max), Some(x_half)) = (
        same.runs.first(),
        same.runs.get(1),
        across.runs.first(),
        across.runs.get(1),
    ) else {
        anyhow::bail!("the relays returned too few runs");
    };
    report.rows.push(
        Row::new(
            "cluster: 1:1 relay across nodes (delivered msgs/s)",
            fmt_rate(x_max.rate),
            format!("{} (both on one node)", fmt_rate(s_max.rate)),
            percent(x_max.rate / s_max.rate),
        )
        .goal(
            "≥ 70% of one node",
            met(
                x_max.rate >= 0.7 * s_max.rate,
                x_max.rate / (0.7 * s_max.rate),
            ),
        ),
    );
    report.rows.push(
        Row::new(
            "cluster: relay latency p99 across nodes at half max rate",
            fmt_ms(x_half.p99),
            format!("{} (both on one node)", fmt_ms(s_half.p99)),
            times(x_half.p99, s_half.p99),
        )
        .goal("≤ 10 ms", met_within(x_half.p99, Duration::from_millis(10))),
    );
    let sent = |r: &relay::SirenRuns| r.runs.iter().map(|run| run.sent).sum::<u64>();
    report.note(format!(
        "cluster: CPU per message of all three nodes {} within node 1 ({} msgs), {} across nodes \
         ({} msgs); p50 at half max {} within a node, {} across",
        per_msg(same_cpu, sent(&same)),
        sent(&same),
        per_msg(across_cpu, sent(&across)),
        sent(&across),
        fmt_ms(s_half.p50),
        fmt_ms(x_half.p50),
    ));

    // The same pairs over one, two, then three nodes.
    let load = Load { window, ..*load };
    let mut one_node = 0.0;
    for n in 1..=NODES {
        let mut set = Vec::with_capacity(pairs);
        for i in 0..pairs {
            let target = targets.get(i % n).context("a node is missing")?;
            let (s, r) = users(n, i);
            let (s, r) = (Account::new(target, &s)?, Account::new(target, &r)?);
            set.push(relay::siren_pair(target, &s, &r).await?);
        }
        let before = cpu(&pids)?;
        let mut tasks = tokio::task::JoinSet::new();
        for pair in set {
            tasks.spawn(async move { relay::siren(pair, first_pid, &load, |_| Vec::new()).await });
        }
        let (mut rate, mut sent) = (0.0, 0);
        while let Some(done) = tasks.join_next().await {
            let runs = done??;
            let run = runs.runs.first().context("a pair returned no run")?;
            rate += run.rate;
            sent += run.sent;
        }
        let used = cpu(&pids)?.saturating_sub(before);
        if n == 1 {
            one_node = rate;
        }
        report.rows.push(Row::new(
            format!(
                "cluster: {pairs} pairs × {window} in flight on {n} node{} (delivered msgs/s)",
                if n == 1 { "" } else { "s" }
            ),
            fmt_rate(rate),
            format!("{} (1 node)", fmt_rate(one_node)),
            percent(rate / one_node),
        ));
        report.note(format!(
            "cluster: {pairs} pairs on {n} node(s): CPU of all nodes per message {} ({sent} msgs)",
            per_msg(used, sent)
        ));
    }
    report.note(
        "cluster: three sirend nodes, one PostgreSQL database and one nats-server on this 2-core \
         machine; a pair's users are on one node except in the across-nodes row. More nodes on \
         the same two cores cannot add capacity: what scales is the CPU per message of a node",
    );
    drop(nats);
    for node in &mut nodes {
        node.stop()?;
    }
    Ok(())
}
