//! A synced enqueue survives the process being killed: every item whose `enqueue` returned is
//! in the database after a SIGKILL, under the number that was returned.
//!
//! The test binary runs itself a second time as the writer (selected by an environment
//! variable): four tasks enqueue items one at a time and print each number once `enqueue` has
//! returned. The parent reads those lines, kills the writer with SIGKILL mid-stream, reads what
//! was printed before it died, reopens the database and looks every printed item up.
//!
//! A SIGKILL loses what the process held in memory (an unwritten WAL buffer, a memtable with no
//! WAL behind it, an acknowledgement sent before the write), not what the kernel holds: losing
//! the page cache too takes a power cut, which a test in a process cannot cause.

#![cfg(unix)]

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use siren_api::storage::{NewQueueItem, QueueStore};

/// Set (to the database directory) in the writer process.
const WRITER_DIR: &str = "SIREN_CRASH_TEST_WRITER_DIR";
const TEST_NAME: &str = "acknowledged_enqueues_survive_sigkill";
const WRITERS: u8 = 4;
/// Acknowledgements to read before the kill.
const BEFORE_KILL: usize = 200;
const SIGKILL: i32 = 9;

fn device(writer: u8) -> [u8; 32] {
    [writer + 1; 32]
}

fn payload(writer: u8, i: u64) -> Vec<u8> {
    format!("writer {writer} item {i}").into_bytes()
}

/// Starts the writer's line for each acknowledged item: `ACKED <writer> <seq> <i>`.
const MARKER: &str = "ACKED ";

/// The acknowledged item in a line of the writer's output, if there is one. The marker is looked
/// for anywhere in the line: the test harness prints the test's name without a newline before the
/// test starts writing.
fn parse_ack(line: &str) -> Option<(u8, u64, u64)> {
    let (_, ack) = line.split_once(MARKER)?;
    let fields: Vec<u64> = ack
        .split(' ')
        .map(|field| field.parse())
        .collect::<Result<_, _>>()
        .unwrap_or_else(|e| panic!("a garbled acknowledgement {line:?}: {e}"));
    match fields[..] {
        [writer, seq, i] => Some((writer as u8, seq, i)),
        _ => panic!("a garbled acknowledgement {line:?}"),
    }
}

#[test]
fn acknowledged_enqueues_survive_sigkill() {
    if let Some(dir) = std::env::var_os(WRITER_DIR) {
        writer(Path::new(&dir));
    }

    let dir = tempfile::tempdir().expect("a temporary directory");
    let mut child = Command::new(std::env::current_exe().expect("the test binary"))
        .args([TEST_NAME, "--exact", "--nocapture", "--test-threads=1"])
        .env(WRITER_DIR, dir.path())
        .stdout(Stdio::piped())
        .spawn()
        .expect("start the writer");
    let stdout = child.stdout.take().expect("the writer's stdout");
    let mut lines = BufReader::new(stdout).lines();

    let deadline = Instant::now() + Duration::from_secs(300);
    let mut acked = Vec::new();
    while acked.len() < BEFORE_KILL {
        let Some(line) = lines.next() else {
            panic!(
                "the writer exited after {} acknowledgements: {:?}",
                acked.len(),
                child.wait()
            );
        };
        let line = line.expect("a line from the writer");
        acked.extend(parse_ack(&line));
        if Instant::now() > deadline {
            child.kill().expect("kill the writer");
            panic!("only {} acknowledgements in 300 s", acked.len());
        }
    }
    child.kill().expect("SIGKILL the writer");
    // Whatever the writer printed before it died was acknowledged too.
    for line in lines {
        acked.extend(parse_ack(&line.expect("a line from the writer")));
    }
    let status = child.wait().expect("the writer's exit status");
    assert_eq!(
        status.signal(),
        Some(SIGKILL),
        "the writer was not killed: {status}"
    );

    let runtime = tokio::runtime::Runtime::new().expect("a runtime");
    runtime.block_on(async {
        let storage = siren_storage_rocksdb::open(dir.path()).expect("reopen after the kill");
        for writer in 0..WRITERS {
            let stored: BTreeMap<u64, Vec<u8>> = storage
                .pending(&device(writer), 0, usize::MAX)
                .await
                .expect("pending")
                .into_iter()
                .map(|item| (item.seq, item.bytes))
                .collect();
            let mine: Vec<(u64, u64)> = acked
                .iter()
                .filter(|(w, _, _)| *w == writer)
                .map(|&(_, seq, i)| (seq, i))
                .collect();
            assert!(!mine.is_empty(), "writer {writer} acknowledged nothing");
            for (n, &(seq, i)) in mine.iter().enumerate() {
                assert_eq!(
                    n as u64, i,
                    "writer {writer}'s acknowledgements out of order"
                );
                assert_eq!(
                    stored.get(&seq),
                    Some(&payload(writer, i)),
                    "writer {writer}: item {i}, acknowledged as number {seq}, is lost"
                );
            }
            let highest = mine.iter().map(|&(seq, _)| seq).max().unwrap_or(0);
            let next = storage
                .enqueue(&[NewQueueItem {
                    device: device(writer),
                    expires: 0,
                    bytes: Vec::new(),
                }])
                .await
                .expect("enqueue after the crash")[0];
            assert!(next > highest, "number {next} after acknowledged {highest}");
        }
        eprintln!(
            "{} acknowledged items, all present after SIGKILL",
            acked.len()
        );
    });
}

/// The writer: enqueues forever from four tasks, printing each number after `enqueue` returned.
fn writer(dir: &Path) -> ! {
    let runtime = tokio::runtime::Runtime::new().expect("a runtime");
    runtime.block_on(async {
        let storage = Arc::new(siren_storage_rocksdb::open(dir).expect("open the database"));
        let mut tasks = tokio::task::JoinSet::new();
        for writer in 0..WRITERS {
            let storage = Arc::clone(&storage);
            tasks.spawn(async move {
                for i in 0u64.. {
                    let item = NewQueueItem {
                        device: device(writer),
                        expires: 1_000_000 + i,
                        bytes: payload(writer, i),
                    };
                    let seq = storage.enqueue(&[item]).await.expect("enqueue")[0];
                    // One write per line, so lines never interleave.
                    let line = format!("{MARKER}{writer} {seq} {i}\n");
                    let mut out = std::io::stdout().lock();
                    out.write_all(line.as_bytes()).expect("stdout");
                    out.flush().expect("stdout");
                }
            });
        }
        while let Some(done) = tasks.join_next().await {
            done.expect("a writer task");
        }
    });
    unreachable!("the writer runs until it is killed")
}
