//! `siren-bench`: end-to-end figures for real `sirend` processes on loopback, each beside a
//! baseline measured in the same run (see README.md for what each row means).
//!
//! ```sh
//! CARGO_TARGET_DIR=/var/tmp/siren-target cargo build --release -p siren-bench -p siren-host
//! /var/tmp/siren-target/release/siren-bench            # full sizes (a few minutes)
//! /var/tmp/siren-target/release/siren-bench --quick    # smoke check (under a minute)
//! ```

#![deny(clippy::unwrap_used, clippy::expect_used)]

mod client;
mod cluster;
mod drain;
mod groups;
mod handshakes;
mod idle;
mod pairs;
mod procfs;
mod relay;
mod server;
mod sessions;
mod stats;
mod stores;
mod web;

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use clap::{Parser, ValueEnum};

use crate::client::Account;
use crate::relay::Load;
use crate::server::Server;
use crate::stats::{Latencies, fmt_bytes, fmt_ms, fmt_rate, group};

/// Benchmarks a real sirend over loopback and prints a markdown table.
#[derive(Parser)]
#[command(name = "siren-bench", version)]
struct Cli {
    /// Small sizes, finishing in under a minute: a smoke check, not figures to quote.
    #[arg(long)]
    quick: bool,
    /// The sirend binary to run (default: `sirend` next to this executable).
    #[arg(long, value_name = "PATH")]
    sirend: Option<PathBuf>,
    /// Run only these measurements (comma-separated); all by default.
    #[arg(long, value_enum, value_delimiter = ',')]
    only: Vec<Part>,
    /// PostgreSQL server for the `stores` comparison: an admin URL (`postgres://…/postgres`);
    /// a fresh database is created with `psql` and dropped afterwards. Without it, `stores`
    /// is skipped.
    #[arg(long, value_name = "URL")]
    postgres: Option<String>,
    /// Internal: run the bare idle server of the memory baseline (the bench starts it).
    #[arg(long, hide = true)]
    idle_server: bool,
}

/// The measurements.
#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Part {
    /// Online 1:1 relay beside a bare TCP relay.
    Relay,
    /// Offline enqueue, then drain.
    Drain,
    /// Handshakes and resumptions beside the handshake's crypto.
    Handshake,
    /// Server memory per idle session.
    Sessions,
    /// RocksDB against PostgreSQL: enqueue, drain, lookup through the storage trait.
    Stores,
    /// Relay between two federated servers beside relay on one server.
    Federation,
    /// Relay with the metrics listener on and scraped every second beside metrics off.
    Metrics,
    /// Many pairs at once: 20 × 1 in flight (latency), 100 × 64 (throughput).
    Pairs,
    /// The browser client: page load, module sizes, browser ↔ browser round trip beside two
    /// native clients running the same chat driver.
    Web,
    /// One message to a group of 50 members with two devices each: the sender's sealing and
    /// the server's acceptance beside a 1:1 message.
    Groups,
    /// Three nodes of one domain (PostgreSQL, nats-server): relay within a node beside across
    /// nodes, and the same pairs over one, two and three nodes.
    Cluster,
}

/// Sizes of one benchmark run.
struct Sizes {
    load: Load,
    drain_messages: usize,
    handshake_time: Duration,
    connectors: usize,
    /// Connectors for the logins at the real password cost: as many as a two-core server's
    /// default concurrent password checks (`max_concurrent_logins` = twice the cores). More
    /// hashes of 19 MiB at once than that only slow each other (the bench's `sirend` allows 64).
    login_connectors: usize,
    users: usize,
    devices_per_user: usize,
    settle: Duration,
}

impl Sizes {
    fn new(quick: bool) -> Sizes {
        if quick {
            Sizes {
                load: Load {
                    window: 32,
                    warmup: Duration::from_millis(200),
                    measure: Duration::from_secs(1),
                },
                drain_messages: 5_000,
                handshake_time: Duration::from_secs(1),
                connectors: 4,
                login_connectors: 4,
                users: 10,
                devices_per_user: 10,
                settle: Duration::from_secs(2),
            }
        } else {
            Sizes {
                load: Load {
                    window: 32,
                    warmup: Duration::from_secs(1),
                    measure: Duration::from_secs(5),
                },
                drain_messages: 100_000,
                handshake_time: Duration::from_secs(3),
                connectors: 16,
                login_connectors: 4,
                users: 400,
                devices_per_user: 25,
                settle: Duration::from_secs(12),
            }
        }
    }
}

/// One line of the table.
struct Row {
    what: String,
    siren: String,
    baseline: String,
    ratio: String,
    goal: &'static str,
    met: String,
}

impl Row {
    fn new(what: impl Into<String>, siren: String, baseline: String, ratio: String) -> Row {
        Row {
            what: what.into(),
            siren,
            baseline,
            ratio,
            goal: "",
            met: String::new(),
        }
    }

    fn goal(mut self, goal: &'static str, met: String) -> Row {
        self.goal = goal;
        self.met = met;
        self
    }
}

/// Everything to print.
#[derive(Default)]
struct Report {
    rows: Vec<Row>,
    notes: Vec<String>,
}

impl Report {
    fn note(&mut self, text: impl Into<String>) {
        let text = text.into();
        eprintln!("  {text}");
        self.notes.push(text);
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = if cli.idle_server {
        idle::serve()
    } else {
        real_main(&cli)
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("siren-bench: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn real_main(cli: &Cli) -> anyhow::Result<()> {
    let sizes = Sizes::new(cli.quick);
    let bin = match &cli.sirend {
        Some(path) => path.clone(),
        None => server::default_binary()?,
    };
    let wants = |p: Part| cli.only.is_empty() || cli.only.contains(&p);
    if wants(Part::Sessions) {
        // This process holds one socket per session; sirend inherits the limit.
        let sessions = (sizes.users * sizes.devices_per_user) as u64;
        procfs::require_open_files(sessions + 1_000)?;
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the tokio runtime")?;
    let mut report = Report::default();
    let load_before = load_average();
    let started = Instant::now();
    runtime.block_on(async {
        if wants(Part::Relay) || wants(Part::Drain) || wants(Part::Handshake) {
            one_server(&bin, &sizes, &wants, &mut report).await?;
        }
        if wants(Part::Pairs) {
            pairs::measure(&bin, cli.quick, &sizes.load, &mut report).await?;
        }
        if wants(Part::Sessions) {
            memory(&bin, &sizes, &mut report).await?;
        }
        if wants(Part::Federation) {
            federation(&bin, &sizes, &mut report).await?;
        }
        if wants(Part::Metrics) {
            metrics(&bin, &sizes, &mut report).await?;
        }
        if wants(Part::Groups) {
            groups::measure(&bin, cli.quick, &mut report).await?;
        }
        if wants(Part::Web) {
            web::measure(&bin, if cli.quick { 5 } else { 50 }, &mut report).await?;
        }
        let url = cli
            .postgres
            .clone()
            .or_else(|| std::env::var("SIREN_BENCH_POSTGRES_URL").ok());
        if wants(Part::Cluster) {
            match &url {
                Some(url) if cluster::available() => {
                    cluster::measure(&bin, cli.quick, &sizes.load, url, &mut report).await?
                }
                Some(_) => report.note("cluster: skipped (no nats-server on the PATH)"),
                None => report
                    .note("cluster: skipped (give --postgres URL or SIREN_BENCH_POSTGRES_URL)"),
            }
        }
        if wants(Part::Stores) {
            match url {
                Some(url) => compare_stores(&url, cli.quick, &mut report).await?,
                None => {
                    report.note("stores: skipped (give --postgres URL or SIREN_BENCH_POSTGRES_URL)")
                }
            }
        }
        anyhow::Ok(())
    })?;
    report.note(format!(
        "load average (1/5/15 min) before: {load_before}, after: {}; {} CPUs; took {:.0} s",
        load_average(),
        std::thread::available_parallelism().map_or(1, usize::from),
        started.elapsed().as_secs_f64()
    ));
    print(&report, cli.quick);
    Ok(())
}

/// Runs `scripts/services/dnsmasq.sh ACTION DIR` (from the repository root).
fn dnsmasq(action: &str, dir: &Path) -> anyhow::Result<()> {
    let out = std::process::Command::new("bash")
        .arg("scripts/services/dnsmasq.sh")
        .arg(action)
        .arg(dir)
        .output()
        .context(
            "cannot run scripts/services/dnsmasq.sh (run siren-bench from the repository root)",
        )?;
    anyhow::ensure!(
        out.status.success(),
        "dnsmasq.sh {action}: {}",
        String::from_utf8_lossy(&out.stderr).trim()
    );
    Ok(())
}

/// 1:1 relay with the receiver on another, federated server, beside 1:1 relay on one server,
/// same run, same load.
async fn federation(bin: &Path, sizes: &Sizes, report: &mut Report) -> anyhow::Result<()> {
    eprintln!("federation…");
    let dns_dir = tempfile::tempdir()?;
    std::fs::write(dns_dir.path().join("records.conf"), "")?;
    dnsmasq("start", dns_dir.path())?;
    let result = async {
        let env = std::fs::read_to_string(dns_dir.path().join("dnsmasq.env"))?;
        let dns = env
            .trim()
            .strip_prefix("export SIREN_TEST_DNS=")
            .context("unexpected dnsmasq.env")?
            .to_owned();
        let mut alpha = Server::new(bin, "alpha.test")?;
        let mut beta = Server::new(bin, "beta.test")?;
        let fed = format!(
            "\n[federation]\nenabled = true\ndns = [\"{dns}\"]\ndanger_allow_private_targets = true\n"
        );
        alpha.append_config(&fed)?;
        beta.append_config(&fed)?;
        alpha.add_users(&["alice", "carol", "dave"])?;
        beta.add_users(&["bob"])?;
        alpha.start()?;
        beta.start()?;
        let (a, b) = (alpha.target()?, beta.target()?);
        let mut records = String::new();
        for t in [&a, &b] {
            let port = t.addr.rsplit(':').next().unwrap_or("7453");
            records.push_str(&format!(
                "srv-host=_siren._tcp.{n},{n},{port},10,0\nhost-record={n},127.0.0.1\ntxt-record=_siren-key.{n},\"v=siren1; k={k}\"\n",
                n = t.name,
                k = t.sek
            ));
        }
        std::fs::write(dns_dir.path().join("records.conf"), records)?;
        dnsmasq("reload", dns_dir.path())?;
        let pid = alpha.pid()?;
        let load = &sizes.load;
        let (alice, carol) = (Account::new(&a, "alice")?, Account::new(&a, "carol")?);
        let local = relay::siren_pair(&a, &alice, &carol).await?;
        let local = relay::siren(local, pid, load, |_| Vec::new()).await?;
        let (dave, bob) = (Account::new(&a, "dave")?, Account::new(&b, "bob")?);
        let across = relay::siren_pair_across(&a, &b, &dave, &bob).await?;
        let across = relay::siren(across, pid, load, |_| Vec::new()).await?;
        let (Some(l), Some(x)) = (local.runs.first(), across.runs.first()) else {
            anyhow::bail!("the relays returned no runs");
        };
        report.rows.push(Row::new(
            "1:1 relay across two servers (delivered msgs/s)",
            fmt_rate(x.rate),
            format!("{} (same server)", fmt_rate(l.rate)),
            percent(x.rate / l.rate),
        ));
        for (what, s, b) in [
            ("relay latency p50 across servers, at max rate", x.p50, l.p50),
            ("relay latency p99 across servers, at max rate", x.p99, l.p99),
        ] {
            report.rows.push(Row::new(what, fmt_ms(s), format!("{} (same server)", fmt_ms(b)), times(s, b)));
        }
        report.note(
            "federation: two sirend on loopback found through dnsmasq; every cross-server message is committed to alpha's outbox (offered to its worker from memory and sent on at once while beta answers: written only if beta has not answered within 2 ms), sent over the link and committed by beta before bob gets it",
        );
        anyhow::Ok(())
    }
    .await;
    let _ = dnsmasq("stop", dns_dir.path());
    result
}

/// 1:1 relay on a server with `[metrics] enabled` whose `/metrics` is scraped every second
/// (Prometheus' default is every 15 s), beside the same relay on a server without the listener,
/// same run: two rounds each, alternating, the better of each kept. The counters themselves are
/// always updated (atomic increments), so this measures the listener and the scrapes on top.
async fn metrics(bin: &Path, sizes: &Sizes, report: &mut Report) -> anyhow::Result<()> {
    eprintln!("metrics…");
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let users: Vec<String> = (0..2)
        .flat_map(|round| [format!("alice{round}"), format!("carol{round}")])
        .collect();
    let mut off = Server::new(bin, "alpha.test")?;
    let mut on = Server::new(bin, "alpha.test")?;
    on.append_config(&format!(
        "\n[metrics]\nenabled = true\nlisten = \"127.0.0.1:{port}\"\n"
    ))?;
    for server in [&mut off, &mut on] {
        server.add_users(&users)?;
        server.start()?;
    }
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let scrapes = Arc::new(AtomicUsize::new(0));
    let scraper = tokio::spawn({
        let (stop, scrapes) = (stop.clone(), scrapes.clone());
        async move {
            use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
            while !stop.load(Ordering::Relaxed) {
                if let Ok(mut s) = tokio::net::TcpStream::connect(("127.0.0.1", port)).await {
                    let request = "GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
                    let mut body = Vec::new();
                    if s.write_all(request.as_bytes()).await.is_ok()
                        && s.read_to_end(&mut body).await.is_ok()
                        && body.starts_with(b"HTTP/1.1 200")
                    {
                        scrapes.fetch_add(1, Ordering::Relaxed);
                    }
                }
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    });
    let (mut best_off, mut best_on) = (0.0f64, 0.0f64);
    for round in 0..2 {
        for (server, best) in [(&off, &mut best_off), (&on, &mut best_on)] {
            let t = server.target()?;
            let (a, c) = (
                Account::new(&t, &format!("alice{round}"))?,
                Account::new(&t, &format!("carol{round}"))?,
            );
            let pair = relay::siren_pair(&t, &a, &c).await?;
            let runs = relay::siren(pair, server.pid()?, &sizes.load, |_| Vec::new()).await?;
            if let Some(run) = runs.runs.first() {
                *best = best.max(run.rate);
            }
        }
    }
    stop.store(true, Ordering::Relaxed);
    let _ = scraper.await;
    anyhow::ensure!(
        scrapes.load(Ordering::Relaxed) > 0,
        "the metrics listener never answered a scrape"
    );
    report.rows.push(
        Row::new(
            "1:1 relay, metrics on and scraped every second (delivered msgs/s)",
            fmt_rate(best_on),
            format!("{} (no metrics listener)", fmt_rate(best_off)),
            percent(best_on / best_off),
        )
        .goal(
            "≥ 95% of off",
            met(best_on >= 0.95 * best_off, best_on / best_off / 0.95),
        ),
    );
    report.note(format!(
        "metrics: {} scrapes of /metrics during the relay; the better of two alternating rounds each",
        scrapes.load(Ordering::Relaxed)
    ));
    off.stop()?;
    on.stop()?;
    Ok(())
}

/// Runs `psql URL -c SQL`.
fn psql(url: &str, sql: &str) -> anyhow::Result<()> {
    let out = std::process::Command::new("psql")
        .args([url, "-q", "-c", sql])
        .output()
        .context("cannot run psql")?;
    anyhow::ensure!(
        out.status.success(),
        "psql: {}",
        String::from_utf8_lossy(&out.stderr).trim()
    );
    Ok(())
}

/// The same store workload on RocksDB and PostgreSQL.
async fn compare_stores(admin_url: &str, quick: bool, report: &mut Report) -> anyhow::Result<()> {
    eprintln!("stores…");
    let workload = stores::Workload {
        items: if quick { 2_000 } else { 20_000 },
        concurrency: 16,
        users: if quick { 200 } else { 2_000 },
        lookups: if quick { 2_000 } else { 20_000 },
    };
    let dir = tempfile::tempdir()?;
    let rocks = Arc::new(
        siren_storage_rocksdb::open(dir.path().join("store"))
            .map_err(|e| anyhow::anyhow!("{e}"))?,
    );
    let rocks = stores::measure(rocks, workload).await?;
    let db = format!("siren_bench_{}", std::process::id());
    psql(admin_url, &format!("CREATE DATABASE {db}"))?;
    let base = admin_url.rsplit_once('/').map_or(admin_url, |(b, _)| b);
    let pg = async {
        let store = siren_storage_postgres::open(&siren_storage_postgres::PgConfig::new(format!(
            "{base}/{db}"
        )))
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
        stores::measure(Arc::new(store), workload).await
    }
    .await;
    psql(
        admin_url,
        &format!("DROP DATABASE IF EXISTS {db} WITH (FORCE)"),
    )?;
    let pg = pg?;
    // Issue 14's goal for PostgreSQL's durable enqueues with 16 writers.
    let enqueue_goal = 15_000.0;
    for (what, p, r, goal) in [
        (
            format!(
                "store: durable 1-item enqueues/s, {} writers (PostgreSQL vs RocksDB)",
                workload.concurrency
            ),
            pg.enqueue,
            rocks.enqueue,
            Some(("≥ 15,000/s", enqueue_goal)),
        ),
        (
            "store: items drained/s, 256-item pages read + acked".to_owned(),
            pg.drain,
            rocks.drain,
            None,
        ),
        (
            "store: directory lookups/s (3 entries per user)".to_owned(),
            pg.lookup,
            rocks.lookup,
            None,
        ),
    ] {
        let row = Row::new(
            what,
            fmt_rate(p),
            format!("{} (RocksDB)", fmt_rate(r)),
            percent(p / r),
        );
        report.rows.push(match goal {
            Some((text, at_least)) => row.goal(text, met(p >= at_least, p / at_least)),
            None => row,
        });
    }
    report.note(format!(
        "stores: {} items of 512 B, {} users, {} lookups, one process, both stores on this machine's disk; PostgreSQL over loopback TCP with a pool",
        workload.items, workload.users, workload.lookups
    ));
    Ok(())
}

/// Relay, drain and handshakes on one server.
async fn one_server(
    bin: &Path,
    sizes: &Sizes,
    wants: &impl Fn(Part) -> bool,
    report: &mut Report,
) -> anyhow::Result<()> {
    let mut server = Server::new(bin, "bench.test")?;
    let mut users = vec!["alice", "bob", "carol", "dave", "erin", "frank", "grace"];
    users.extend(PAIR_USERS.iter().flat_map(|(s, r)| [*s, *r]));
    server.add_users(&users)?;
    server.start()?;
    let target = server.target()?;
    let pid = server.pid()?;
    let fsync = fsync_latency(&server.data_dir(), 200)?;
    report.note(format!(
        "fsync of a small write on the server's disk: p50 {}, p99 {}",
        fmt_ms(fsync.0),
        fmt_ms(fsync.1)
    ));

    if wants(Part::Relay) {
        eprintln!("relay…");
        let (alice, bob) = (
            Account::new(&target, "alice")?,
            Account::new(&target, "bob")?,
        );
        let pair = relay::siren_pair(&target, &alice, &bob).await?;
        let frame = pair.deliver_frame;
        let load = &sizes.load;
        let bare = relay::bare(frame, load, &[None]).await?;
        let bare_max = bare.first().copied().unwrap_or_default();
        let siren = relay::siren(pair, pid, load, |max| vec![max / 2.0]).await?;
        let (max, half) = match siren.runs.as_slice() {
            [max, half, ..] => (*max, *half),
            _ => anyhow::bail!("the Siren relay returned too few runs"),
        };
        let bare_half = relay::bare(frame, load, &[Some(max.rate / 2.0)]).await?;
        let bare_half = bare_half.first().copied().unwrap_or_default();
        let ratio = max.rate / bare_max.rate;
        report.rows.push(
            Row::new(
                "1:1 relay throughput, 256 B payload (delivered msgs/s)",
                fmt_rate(max.rate),
                format!("{} (bare relay)", fmt_rate(bare_max.rate)),
                percent(ratio),
            )
            .goal("≥ 50% of bare", met(ratio >= 0.5, ratio / 0.5)),
        );
        for (what, s, b) in [
            ("relay latency p50, at max rate", max.p50, bare_max.p50),
            ("relay latency p99, at max rate", max.p99, bare_max.p99),
        ] {
            report
                .rows
                .push(Row::new(what, fmt_ms(s), fmt_ms(b), times(s, b)));
        }
        report.rows.push(Row::new(
            format!(
                "relay latency p50, paced at half max ({})",
                fmt_rate(half.rate)
            ),
            fmt_ms(half.p50),
            format!("{} (bare, same rate)", fmt_ms(bare_half.p50)),
            times(half.p50, bare_half.p50),
        ));
        report.rows.push(
            Row::new(
                format!(
                    "relay latency p99, paced at half max ({})",
                    fmt_rate(half.rate)
                ),
                fmt_ms(half.p99),
                format!("{} (bare, same rate)", fmt_ms(bare_half.p99)),
                times(half.p99, bare_half.p99),
            )
            .goal("≤ 5 ms", met_within(half.p99, Duration::from_millis(5))),
        );
        // The same relay with both clients on the web listener's WebSocket (as browsers reach
        // it): the bridge between messages and frames is its price.
        let web = target.over_websocket()?;
        let (frank, grace) = (Account::new(&web, "frank")?, Account::new(&web, "grace")?);
        let pair = relay::siren_pair(&web, &frank, &grace).await?;
        let ws = relay::siren(pair, pid, load, |_| Vec::new()).await?;
        let Some(ws) = ws.runs.first() else {
            anyhow::bail!("the WebSocket relay returned no runs");
        };
        report.rows.push(Row::new(
            "1:1 relay over WebSocket (delivered msgs/s)",
            fmt_rate(ws.rate),
            format!("{} (TCP)", fmt_rate(max.rate)),
            percent(ws.rate / max.rate),
        ));
        report.rows.push(Row::new(
            "relay latency p50 over WebSocket, at max rate",
            fmt_ms(ws.p50),
            format!("{} (TCP)", fmt_ms(max.p50)),
            times(ws.p50, max.p50),
        ));
        // Diagnostic: several independent pairs at once. If the aggregate grows with the number
        // of pairs while sirend's CPU is not saturated, one pair is limited by the per-session
        // sequence of synced writes, not by the server's capacity.
        let mut pairs = Vec::new();
        for (s, r) in PAIR_USERS {
            let (s, r) = (Account::new(&target, s)?, Account::new(&target, r)?);
            pairs.push(relay::siren_pair(&target, &s, &r).await?);
        }
        let cpu = procfs::cpu_time(pid)?;
        let start = Instant::now();
        let mut tasks = tokio::task::JoinSet::new();
        for pair in pairs {
            let load = *load;
            tasks.spawn(async move { relay::siren(pair, pid, &load, |_| Vec::new()).await });
        }
        let mut aggregate = 0.0;
        while let Some(done) = tasks.join_next().await {
            aggregate += done??.runs.first().map_or(0.0, |r| r.rate);
        }
        let busy = procfs::cpu_time(pid)?.saturating_sub(cpu).as_secs_f64()
            / start.elapsed().as_secs_f64();
        report.note(format!(
            "diagnostic: {} sender→receiver pairs at once deliver {} in total ({:.1}× one pair), \
             sirend at {busy:.2} CPU-seconds per wall-second",
            PAIR_USERS.len(),
            fmt_rate(aggregate),
            aggregate / max.rate,
        ));
        report.note(format!(
            "deliver frame with a 256-byte payload: {frame} bytes computed, {} bytes largest seen \
             on the wire (prefix included); the bare relay forwards {frame}-byte frames",
            siren.observed_frame
        ));
        report.note(format!(
            "relay load: at most {} messages sent and not yet received; one envelope per send; \
             receiver acks what it holds before it waits, at most 16 at once; {} s warm-up, {} s \
             measured per run",
            load.window,
            load.warmup.as_secs_f64(),
            load.measure.as_secs_f64()
        ));
        report.note(format!(
            "relay paced at half max: slowest message {} ({} of {} over 5 ms); bare relay at \
             that rate: slowest {}",
            fmt_ms(half.max),
            half.over_5ms.0,
            group(half.over_5ms.1 as u64),
            fmt_ms(bare_half.max),
        ));
        let (user, system) = siren.server_cpu;
        report.note(format!(
            "relay at max rate: sirend used {:.2} CPU-seconds per wall-second, {} of CPU per \
             message ({} user, {} system); this process (both clients) {} per message",
            (user + system).as_secs_f64() / max.elapsed.as_secs_f64(),
            per_msg(user + system, max.sent),
            per_msg(user, max.sent),
            per_msg(system, max.sent),
            per_msg(siren.bench_cpu, max.sent),
        ));
    }

    if wants(Part::Drain) {
        eprintln!("drain…");
        let (carol, dave) = (
            Account::new(&target, "carol")?,
            Account::new(&target, "dave")?,
        );
        let drained = drain::measure(&target, pid, &carol, &dave, sizes.drain_messages).await?;
        let verify =
            tokio::task::spawn_blocking(|| drain::verify_rate(Duration::from_secs(1))).await??;
        let bare = relay::bare(
            relay::deliver_frame(&carol.uid, &dave.uid)?,
            &Load {
                window: 256,
                ..sizes.load
            },
            &[None],
        )
        .await?;
        let bare = bare.first().copied().unwrap_or_default();
        let n = drained.messages as u64;
        report.rows.push(Row::new(
            format!(
                "offline enqueue, {} msgs in sends of 256 (msgs/s)",
                group(n)
            ),
            fmt_rate(drained.enqueue_rate),
            format!("{} (envelope signature checks, 1 thread)", fmt_rate(verify)),
            percent(drained.enqueue_rate / verify),
        ));
        report.rows.push(
            Row::new(
                format!(
                    "drain on RocksDB, {} msgs, deliver + ack (msgs/s)",
                    group(n)
                ),
                fmt_rate(drained.drain_rate),
                format!("{} (bare relay, window 256)", fmt_rate(bare.rate)),
                percent(drained.drain_rate / bare.rate),
            )
            .goal(
                "≥ 100,000/s",
                met(
                    drained.drain_rate >= 100_000.0,
                    drained.drain_rate / 100_000.0,
                ),
            ),
        );
        let (user, system) = drained.drain_server_cpu;
        report.note(format!(
            "enqueue: sirend used {} of CPU per message; drain: sirend {} ({} user, {} system) \
             and this process {} per message, {:.2} and {:.2} CPU-seconds per wall-second",
            per_msg(drained.enqueue_server_cpu, n),
            per_msg(user + system, n),
            per_msg(user, n),
            per_msg(system, n),
            per_msg(drained.drain_bench_cpu, n),
            (user + system).as_secs_f64() / drained.drain_elapsed.as_secs_f64(),
            drained.drain_bench_cpu.as_secs_f64() / drained.drain_elapsed.as_secs_f64(),
        ));
    }

    if wants(Part::Handshake) {
        eprintln!("handshakes…");
        let erin = Account::new(&target, "erin")?;
        let rates =
            handshakes::through_server(&target, &erin, sizes.connectors, sizes.handshake_time)
                .await?;
        let threads = std::thread::available_parallelism().map_or(1, usize::from);
        let time = sizes.handshake_time;
        let crypto =
            tokio::task::spawn_blocking(move || handshakes::crypto_rate(threads, time)).await??;
        let base = format!(
            "{} (crypto only, both roles, {threads} threads)",
            fmt_rate(crypto)
        );
        report.rows.push(Row::new(
            format!(
                "fresh handshakes + welcome ({} connectors, per s)",
                rates.connectors
            ),
            fmt_rate(rates.fresh),
            base.clone(),
            percent(rates.fresh / crypto),
        ));
        report.rows.push(Row::new(
            format!(
                "handshake + resume of a logged-in session ({} connectors, per s)",
                rates.connectors
            ),
            fmt_rate(rates.resumed),
            base,
            percent(rates.resumed / crypto),
        ));
        // Logins at the real password cost, on a server of their own.
        let mut server = Server::new(bin, "logins.test")?;
        server.default_password_cost()?;
        server.add_users(&["frank"])?;
        server.start()?;
        let at = server.target()?;
        let frank = Account::new(&at, "frank")?;
        let logins = handshakes::logins(&at, &frank, sizes.login_connectors, time).await?;
        server.stop()?;
        let hashes =
            tokio::task::spawn_blocking(move || handshakes::hash_rate(threads, time)).await??;
        report.rows.push(Row::new(
            format!(
                "PLAIN logins, argon2id at OWASP's cost ({} connectors, per s)",
                sizes.login_connectors
            ),
            fmt_rate(logins),
            format!("{} (argon2id hashes, {threads} threads)", fmt_rate(hashes)),
            percent(logins / hashes),
        ));
    }

    let warnings = server.warnings();
    server.stop()?;
    if !warnings.is_empty() {
        report.note(format!(
            "sirend logged {} warnings, e.g. {}",
            warnings.len(),
            warnings[0]
        ));
    }
    Ok(())
}

/// Users of the multi-pair relay diagnostic: (sender, receiver).
const PAIR_USERS: [(&str, &str); 4] = [("s1", "r1"), ("s2", "r2"), ("s3", "r3"), ("s4", "r4")];

/// Server memory per idle session, on its own server.
async fn memory(bin: &Path, sizes: &Sizes, report: &mut Report) -> anyhow::Result<()> {
    eprintln!("sessions…");
    let mut server = Server::new(bin, "mem.test")?;
    let start = Instant::now();
    server.add_users(&sessions::user_names(sizes.users))?;
    let add_users = start.elapsed();
    server.start()?;
    let m = sessions::measure(
        &mut server,
        sizes.users,
        sizes.devices_per_user,
        sizes.settle,
    )
    .await?;
    let warnings = server.warnings();
    server.stop()?;
    let (bare_before, bare_after) = idle::measure(m.sessions).await?;
    let bare = bare_after.saturating_sub(bare_before) as f64 / m.sessions.max(1) as f64;
    let per = m.per_session();
    report.rows.push(
        Row::new(
            format!(
                "server RSS per idle authenticated session ({} sessions)",
                group(m.sessions as u64)
            ),
            fmt_bytes(per),
            format!("{} (bare tokio server, idle connection)", fmt_bytes(bare)),
            format!("{:.1}×", per / bare.max(1.0)),
        )
        .goal("≤ 8 KiB", met(per <= 8192.0, 8192.0 / per.max(1.0))),
    );
    report.note(format!(
        "sessions: {} users × {} registered devices, each session resumed (no login needed) and \
         ready with its queue drained; {} users added in {:.1} s, devices registered in {:.1} s, \
         then sirend restarted and {} sessions resumed in {:.1} s ({} at a time, {})",
        m.users,
        sizes.devices_per_user,
        m.users,
        add_users.as_secs_f64(),
        m.enroll_elapsed.as_secs_f64(),
        group(m.sessions as u64),
        m.resume_elapsed.as_secs_f64(),
        sessions::WORKERS,
        fmt_rate(m.sessions as f64 / m.resume_elapsed.as_secs_f64()),
    ));
    report.note(format!(
        "sessions: sirend RSS {} before, {} with the sessions open; bare server {} → {}; \
         diagnostic: {} sessions that only did the handshake (not logged in) cost {} each \
         ({} → {})",
        fmt_bytes(m.rss_before as f64),
        fmt_bytes(m.rss_after as f64),
        fmt_bytes(bare_before as f64),
        fmt_bytes(bare_after as f64),
        group(m.sessions as u64),
        fmt_bytes(
            m.unauthenticated.1.saturating_sub(m.unauthenticated.0) as f64
                / m.sessions.max(1) as f64
        ),
        fmt_bytes(m.unauthenticated.0 as f64),
        fmt_bytes(m.unauthenticated.1 as f64),
    ));
    report.note(format!(
        "sessions: sirend RSS {} s after the last resumption: {} ({} per session); threads \
         {} before, {} then, {} at {} s",
        2,
        fmt_bytes(m.rss_early as f64),
        fmt_bytes(m.rss_early.saturating_sub(m.rss_before) as f64 / m.sessions.max(1) as f64),
        m.threads.0,
        m.threads.1,
        m.threads.2,
        sizes.settle.as_secs(),
    ));
    if !warnings.is_empty() {
        report.note(format!(
            "sirend (sessions) logged {} warnings, e.g. {}",
            warnings.len(),
            warnings[0]
        ));
    }
    Ok(())
}

/// The p50 and p99 of `n` small synced writes in `dir`.
fn fsync_latency(dir: &Path, n: usize) -> anyhow::Result<(Duration, Duration)> {
    let path = dir.join("fsync-probe");
    let mut file = std::fs::File::create(&path)
        .with_context(|| format!("cannot create {}", path.display()))?;
    let mut latencies = Latencies::default();
    for _ in 0..n {
        file.write_all(&[0u8; 100])?;
        let start = Instant::now();
        file.sync_data()?;
        latencies.push(start.elapsed());
    }
    drop(file);
    std::fs::remove_file(&path)?;
    Ok((latencies.percentile(50.0), latencies.percentile(99.0)))
}

fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "?".into())
}

fn percent(ratio: f64) -> String {
    format!("{:.0}%", ratio * 100.0)
}

fn times(siren: Duration, base: Duration) -> String {
    if base.is_zero() {
        return "—".into();
    }
    format!("{:.1}×", siren.as_secs_f64() / base.as_secs_f64())
}

fn per_msg(cpu: Duration, messages: u64) -> String {
    if messages == 0 {
        return "—".into();
    }
    format!("{:.1} µs", cpu.as_secs_f64() * 1e6 / messages as f64)
}

/// "yes", or "no" with how far off: `fraction` is achieved ÷ required (below 1 when missed).
/// Whether a latency goal "≤ `limit`" is met by `got` (how far off, if not).
fn met_within(got: Duration, limit: Duration) -> String {
    met(
        got <= limit,
        limit.as_secs_f64() / got.as_secs_f64().max(1e-9),
    )
}

fn met(ok: bool, fraction: f64) -> String {
    if ok {
        "yes".into()
    } else {
        format!("**no** ({:.0}% of goal)", fraction * 100.0)
    }
}

fn print(report: &Report, quick: bool) {
    println!();
    if quick {
        println!("*--quick: small sizes; a smoke check, not figures to quote.*");
        println!();
    }
    println!("| measurement | Siren | baseline | ratio | goal | met? |");
    println!("|---|---|---|---|---|---|");
    for r in &report.rows {
        println!(
            "| {} | {} | {} | {} | {} | {} |",
            r.what, r.siren, r.baseline, r.ratio, r.goal, r.met
        );
    }
    println!();
    for n in &report.notes {
        println!("* {n}");
    }
}
