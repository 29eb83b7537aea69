//! What the kernel says about a process: resident memory and CPU time (from `/proc`), and this
//! process's open-file limit.

use std::time::Duration;

use anyhow::{Context as _, bail};

/// Resident set size of `pid` in bytes (`VmRSS` in `/proc/<pid>/status`).
pub fn rss_bytes(pid: u32) -> anyhow::Result<u64> {
    status_kib(pid, "VmRSS:").map(|kib| kib * 1024)
}

/// Number of threads of `pid` (`Threads` in `/proc/<pid>/status`).
pub fn threads(pid: u32) -> anyhow::Result<u64> {
    status_kib(pid, "Threads:")
}

/// The first number on the `key` line of `/proc/<pid>/status`.
fn status_kib(pid: u32, key: &str) -> anyhow::Result<u64> {
    let path = format!("/proc/{pid}/status");
    let text = std::fs::read_to_string(&path).with_context(|| format!("cannot read {path}"))?;
    let line = text
        .lines()
        .find(|l| l.starts_with(key))
        .with_context(|| format!("{path} has no {key} line"))?;
    let kib = line
        .split_whitespace()
        .nth(1)
        .and_then(|n| n.parse::<u64>().ok())
        .with_context(|| format!("cannot parse {line:?}"))?;
    Ok(kib)
}

/// User plus system CPU time `pid` has used so far.
pub fn cpu_time(pid: u32) -> anyhow::Result<Duration> {
    let (user, system) = cpu_split(pid)?;
    Ok(user + system)
}

/// User and system CPU time `pid` has used so far (`/proc/<pid>/stat` fields 14 and 15).
pub fn cpu_split(pid: u32) -> anyhow::Result<(Duration, Duration)> {
    let path = format!("/proc/{pid}/stat");
    let text = std::fs::read_to_string(&path).with_context(|| format!("cannot read {path}"))?;
    // The command name (field 2) is in parentheses and may contain spaces: skip past it.
    let rest = text
        .rsplit_once(')')
        .map(|(_, r)| r)
        .with_context(|| format!("cannot parse {path}"))?;
    // `rest` starts at field 3 (state); utime and stime are fields 14 and 15.
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| -> anyhow::Result<u64> {
        fields
            .get(i)
            .and_then(|f| f.parse::<u64>().ok())
            .with_context(|| format!("cannot parse field {} of {path}", i + 3))
    };
    let hz = clock_ticks() as f64;
    Ok((
        Duration::from_secs_f64(ticks(11)? as f64 / hz),
        Duration::from_secs_f64(ticks(12)? as f64 / hz),
    ))
}

/// This process's id.
pub fn own_pid() -> u32 {
    std::process::id()
}

/// Clock ticks per second (`getconf CLK_TCK`; 100 on every common Linux build).
fn clock_ticks() -> u64 {
    static TICKS: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    *TICKS.get_or_init(|| {
        std::process::Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|o| String::from_utf8(o.stdout).ok())
            .and_then(|s| s.trim().parse().ok())
            .filter(|&t| t > 0)
            .unwrap_or(100)
    })
}

/// Fails with advice unless this process may open at least `needed` files (soft limit, from
/// `/proc/self/limits`). Child processes (sirend) inherit the same limit.
pub fn require_open_files(needed: u64) -> anyhow::Result<()> {
    let text =
        std::fs::read_to_string("/proc/self/limits").context("cannot read /proc/self/limits")?;
    let line = text
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .context("/proc/self/limits has no \"Max open files\" line")?;
    let soft = line
        .trim_start_matches("Max open files")
        .split_whitespace()
        .next()
        .context("cannot parse the open-files limit")?;
    if soft == "unlimited" {
        return Ok(());
    }
    let soft: u64 = soft.parse().context("cannot parse the open-files limit")?;
    if soft < needed {
        bail!(
            "the open-files limit is {soft}, but this benchmark needs about {needed} \
             (raise it first: `ulimit -n {needed}`, then run siren-bench again)"
        );
    }
    Ok(())
}
