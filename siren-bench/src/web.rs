//! The browser client (`--only web`): the page's load time, its module sizes, and a message's
//! round trip between two browsers beside the same round trip between two native clients
//! running the same chat driver (`siren chat`'s, `siren_client::driver`) — so the ratio is the
//! price of wasm, the browser and the page's drawing, not of different code.
//!
//! The browser side is `siren-client/web/tests/bench.mjs` (Playwright driving Debian's
//! chromium, as the tests do); it needs what `scripts/test.sh` installs (node, `npm ci` in
//! `siren-client/web`, chromium) and the client `scripts/build-web.sh` built beside `sirend`.
//! Without them the measurement is skipped with a note.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use siren_api::Uid;
use siren_client::driver::{self, ChatHandle, Request};
use siren_client::profile::{Profile, Settings};
use siren_client_core::Command as ChatCommand;
use siren_client_core::model::{Body, Chat};

use crate::server::{PASSWORD, Server};
use crate::stats::{Latencies, fmt_bytes, fmt_ms};
use crate::{Report, Row, times};

/// Measures and reports; `rounds` round trips each way.
pub async fn measure(bin: &Path, rounds: usize, report: &mut Report) -> anyhow::Result<()> {
    let repo = std::env::current_dir().context("no current directory")?;
    let web = repo.join("siren-client/web");
    let dist = bin
        .parent()
        .and_then(Path::parent)
        .map(|t| t.join("web-dist"))
        .context("sirend has no target directory")?;
    let chromium = std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
    let missing = [
        (
            web.join("node_modules/playwright-core"),
            "npm ci in siren-client/web",
        ),
        (dist.join("siren_web_bg.wasm"), "scripts/build-web.sh"),
        (PathBuf::from(&chromium), "chromium"),
    ]
    .into_iter()
    .find(|(path, _)| !path.exists());
    if let Some((path, fix)) = missing {
        report.note(format!(
            "web: skipped ({} is missing: {fix}; run from the repository root)",
            path.display()
        ));
        return Ok(());
    }

    eprintln!("web…");
    let mut server = Server::new(bin, "alpha.test")?;
    server.add_users(&["alice", "bob", "carol", "dave"])?;
    server.start()?;
    let target = server.target()?;
    let origin = target
        .websocket
        .as_deref()
        .and_then(|ws| ws.strip_prefix("ws://"))
        .and_then(|rest| rest.strip_suffix("/ws"))
        .map(|host| format!("http://{host}"))
        .context("the server has no web listener")?;

    // Native: carol and dave, each in the chat driver, as `siren chat` runs it.
    let dir = tempfile::tempdir()?;
    let carol = chat(dir.path(), &target, "carol").await?;
    let dave = chat(dir.path(), &target, "dave").await?;
    let mut native = round_trips(carol, dave, rounds).await?;

    // Browsers: alice and bob, each in a page.
    let out = Command::new("node")
        .arg(web.join("tests/bench.mjs"))
        .current_dir(&web)
        .env("SIREN_ORIGIN", &origin)
        .env("SIREN_PASSWORD", PASSWORD)
        .env("ROUNDS", rounds.to_string())
        .output()
        .context("cannot run node")?;
    server.stop()?;
    if !out.status.success() {
        bail!(
            "the browser bench failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    let result: serde_json::Value = serde_json::from_slice(&out.stdout).with_context(|| {
        format!(
            "bench.mjs printed {:?}",
            String::from_utf8_lossy(&out.stdout)
        )
    })?;
    let samples = |key: &str| -> Latencies {
        let mut l = Latencies::default();
        for ms in result[key]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|v| v.as_f64())
        {
            l.push(Duration::from_secs_f64(ms / 1000.0));
        }
        l
    };
    let mut load = samples("load_ms");
    let mut browser = samples("rtt_ms");
    if browser.len() != rounds {
        bail!("{} browser round trips of {rounds}", browser.len());
    }

    for p in [50.0, 99.0] {
        let (b, n) = (browser.percentile(p), native.percentile(p));
        report.rows.push(Row::new(
            format!("web: message round trip p{p}, browser ↔ browser"),
            fmt_ms(b),
            format!("{} (native chat driver)", fmt_ms(n)),
            times(b, n),
        ));
    }
    report.rows.push(Row::new(
        "web: page load to ready (p50)",
        fmt_ms(load.percentile(50.0)),
        "—".into(),
        "—".into(),
    ));
    let mut sizes = Vec::new();
    for file in [
        "siren_web_bg.wasm",
        "siren_web.js",
        "app.js",
        "style.css",
        "index.html",
    ] {
        let path = dist.join(file);
        let raw = std::fs::metadata(&path)
            .with_context(|| format!("{}", path.display()))?
            .len();
        let gz = gzipped(&path)?;
        sizes.push(format!(
            "{file} {} ({} gzipped)",
            fmt_bytes(raw as f64),
            fmt_bytes(gz as f64)
        ));
    }
    report.note(format!("web: the page's files: {}", sizes.join(", ")));
    report.note(format!(
        "web: {rounds} round trips each (a text and its answer, sealed, sent, opened and shown); \
         page load: {} loads in fresh browser contexts, from navigation to the client ready",
        load.len()
    ));
    Ok(())
}

/// The size of `path` compressed by `gzip -9` (as a server or proxy would send it).
fn gzipped(path: &Path) -> anyhow::Result<u64> {
    let out = Command::new("gzip")
        .args(["-9", "-c"])
        .arg(path)
        .output()
        .context("cannot run gzip")?;
    Ok(out.stdout.len() as u64)
}

/// A profile for `user` in `dir`, logged in, and its chat driver started.
async fn chat(
    dir: &Path,
    target: &crate::server::Target,
    user: &str,
) -> anyhow::Result<ChatHandle> {
    let uid = Uid::parse(&format!("{user}@{}", target.name))?;
    let settings = Settings {
        uid,
        server: target.addr.clone(),
        fallback: Vec::new(),
        server_key: target.sek.to_base64(),
    };
    let profile = Profile::create(&dir.join(user), settings, None)?;
    let mut client = siren_client::client::open(profile)?;
    client
        .login(PASSWORD, Some("bench".into()), &mut NoApproval)
        .await?;
    let (handle, _task) = driver::start(
        client,
        None,
        driver::Options {
            downloads: dir.join(format!("{user}-downloads")),
            read_receipts: true,
            presence: siren_proto::message::PresenceStatus::Available,
        },
    );
    Ok(handle)
}

/// First devices only: no approval is ever asked.
struct NoApproval;

impl siren_client_session::ApprovalPrompt for NoApproval {
    fn show_code(&mut self, _code: siren_proto::approval::ShortCode) {}

    async fn confirm(
        &mut self,
        _code: siren_proto::approval::ShortCode,
        _usk: &siren_proto::keys::UskPublic,
    ) -> bool {
        false
    }
}

/// Whether `handle`'s conversation with `peer` shows an incoming text `text`.
fn shows(handle: &ChatHandle, peer: &Uid, text: &str) -> bool {
    let chat = Chat::User(peer.clone());
    handle.snapshot().messages.get(&chat).is_some_and(|msgs| {
        msgs.iter()
            .any(|m| !m.outgoing && m.body == Body::Text(text.into()))
    })
}

/// `a` writes `ping i` to `b`, which answers `pong i` as soon as it shows it; the time from
/// `a`'s request to `a` showing the answer, `rounds` times.
async fn round_trips(
    mut a: ChatHandle,
    mut b: ChatHandle,
    rounds: usize,
) -> anyhow::Result<Latencies> {
    let (a_uid, b_uid) = (a.snapshot().view.me.clone(), b.snapshot().view.me.clone());
    for (h, peer) in [(&a, &b_uid), (&b, &a_uid)] {
        h.request(Request::Command(ChatCommand::AcceptContact(peer.clone())));
    }
    let answering = tokio::spawn({
        let a_uid = a_uid.clone();
        async move {
            let mut answered = 0;
            while answered < rounds {
                if !b.changed().await {
                    break;
                }
                while answered < rounds && shows(&b, &a_uid, &format!("ping {answered}")) {
                    b.request(Request::Command(ChatCommand::SendText {
                        to: Chat::User(a_uid.clone()),
                        body: format!("pong {answered}"),
                    }));
                    answered += 1;
                }
            }
            b
        }
    });
    let mut samples = Latencies::default();
    for i in 0..rounds {
        let started = Instant::now();
        a.request(Request::Command(ChatCommand::SendText {
            to: Chat::User(b_uid.clone()),
            body: format!("ping {i}"),
        }));
        let answer = format!("pong {i}");
        let deadline = started + Duration::from_secs(30);
        while !shows(&a, &b_uid, &answer) {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero()
                || !tokio::time::timeout(left, a.changed())
                    .await
                    .unwrap_or(false)
            {
                bail!("no answer to ping {i} from the native client");
            }
        }
        samples.push(started.elapsed());
    }
    let b = answering.await?;
    for h in [&a, &b] {
        h.request(Request::Quit);
    }
    Ok(samples)
}
