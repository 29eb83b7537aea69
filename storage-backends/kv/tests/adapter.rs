//! What the adapter promises beyond the conformance suite: the documented key layout, errors
//! instead of panics on corrupt data or failing engines, paging through large keyspaces, expiry
//! by index, and counters recovered from the store.
//!
//! The engine here is a map with instruments (how much each scan returned; a switch that makes
//! every call fail), shared between adapters to model a restart.

use std::collections::BTreeMap;
use std::ops::Bound;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use siren_api::storage::{
    Account, AccountStore, DirectoryStore, Durability, EntryKind, KeyRange, KvEngine, NewQueueItem,
    QueueStore, RosterStore, SessionRecord, SessionStore, Storage, StoredEntry, StoredRoster,
    WriteBatch, WriteOp,
};
use siren_api::{ErrorCode, Username};
use siren_storage_kv::KvStorage;

#[derive(Default)]
struct State {
    map: Mutex<BTreeMap<Vec<u8>, Vec<u8>>>,
    fail: AtomicBool,
    /// Milliseconds each write waits before it applies (a slow sync), and each read before it
    /// reads (a slow disk), widening every race.
    write_delay_ms: AtomicU64,
    read_delay_ms: AtomicU64,
    /// Entries returned by scans, in total and by the largest single scan.
    scanned: AtomicUsize,
    largest_scan: AtomicUsize,
    /// Whether `get_cached` answers (from the map, as an engine with everything in memory);
    /// how many `get`s (the blocking reads) were made.
    cached: AtomicBool,
    gets: AtomicUsize,
}

#[derive(Clone, Default)]
struct TestEngine(Arc<State>);

impl TestEngine {
    fn check(&self, op: &str) -> Result<(), siren_api::Error> {
        if op != "write" {
            let delay = self.0.read_delay_ms.load(Ordering::SeqCst);
            std::thread::sleep(std::time::Duration::from_millis(delay));
        }
        if self.0.fail.load(Ordering::SeqCst) {
            return Err(siren_api::Error::new(
                ErrorCode::Unavailable,
                format!("test engine {op}: disk gone"),
            ));
        }
        Ok(())
    }

    fn raw_put(&self, key: &[u8], value: &[u8]) {
        self.0
            .map
            .lock()
            .unwrap()
            .insert(key.to_vec(), value.to_vec());
    }

    fn keys(&self) -> Vec<Vec<u8>> {
        self.0.map.lock().unwrap().keys().cloned().collect()
    }
}

impl KvEngine for TestEngine {
    fn describe(&self) -> String {
        "test engine".into()
    }

    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, siren_api::Error> {
        self.0.gets.fetch_add(1, Ordering::SeqCst);
        self.check("get")?;
        Ok(self.0.map.lock().unwrap().get(key).cloned())
    }

    fn get_cached(&self, key: &[u8]) -> Option<Result<Option<Vec<u8>>, siren_api::Error>> {
        if !self.0.cached.load(Ordering::SeqCst) {
            return None;
        }
        if self.0.fail.load(Ordering::SeqCst) {
            return Some(Err(siren_api::Error::new(
                ErrorCode::Unavailable,
                "test engine get_cached: memory gone",
            )));
        }
        Some(Ok(self.0.map.lock().unwrap().get(key).cloned()))
    }

    fn scan(
        &self,
        range: &KeyRange,
        limit: usize,
        reverse: bool,
    ) -> Result<Vec<(Vec<u8>, Vec<u8>)>, siren_api::Error> {
        self.check("scan")?;
        if !range.end.is_empty() && range.start >= range.end {
            return Ok(Vec::new());
        }
        let end = match range.end.as_slice() {
            [] => Bound::Unbounded,
            end => Bound::Excluded(end),
        };
        let map = self.0.map.lock().unwrap();
        let entries = map.range::<[u8], _>((Bound::Included(range.start.as_slice()), end));
        let out: Vec<_> = if reverse {
            entries
                .rev()
                .take(limit)
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect()
        } else {
            entries
                .take(limit)
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect()
        };
        self.0.scanned.fetch_add(out.len(), Ordering::SeqCst);
        self.0.largest_scan.fetch_max(out.len(), Ordering::SeqCst);
        Ok(out)
    }

    fn write(&self, batch: &WriteBatch, _: Durability) -> Result<(), siren_api::Error> {
        self.check("write")?;
        let delay = self.0.write_delay_ms.load(Ordering::SeqCst);
        std::thread::sleep(std::time::Duration::from_millis(delay));
        let mut map = self.0.map.lock().unwrap();
        for op in &batch.ops {
            match op {
                WriteOp::Put(k, v) => map.insert(k.clone(), v.clone()),
                WriteOp::Delete(k) => map.remove(k),
            };
        }
        Ok(())
    }

    fn flush(&self) -> Result<(), siren_api::Error> {
        self.check("flush")
    }
}

fn user(name: &str) -> Username {
    Username::parse(name).unwrap()
}

fn item(device: u8, expires: u64, bytes: &[u8]) -> NewQueueItem {
    NewQueueItem {
        device: [device; 32],
        expires,
        bytes: bytes.to_vec(),
    }
}

fn concat(parts: &[&[u8]]) -> Vec<u8> {
    parts.concat()
}

/// The keys are those the crate documentation lists, byte for byte.
#[tokio::test]
async fn keys_follow_the_documented_layout() {
    let engine = TestEngine::default();
    let storage = KvStorage::new(engine.clone());
    let alice = user("alice");
    storage
        .put_account(&Account {
            user: alice.clone(),
            created: 1,
            credential: None,
            credential_stamp: 0,
        })
        .await
        .unwrap();
    storage
        .append_entry(
            &alice,
            &StoredEntry {
                seq: 1,
                kind: EntryKind::Add,
                device: [2; 32],
                bytes: b"e".to_vec(),
            },
        )
        .await
        .unwrap();
    let seqs = storage.enqueue(&[item(3, 0x0102, b"m")]).await.unwrap();
    assert_eq!(seqs, [1]);
    storage
        .put_session(&SessionRecord {
            id: [4; 16],
            device: [3; 32],
            user: None,
            last_seen: 5,
            credential_stamp: None,
        })
        .await
        .unwrap();
    storage
        .put_roster(
            &alice,
            &StoredRoster {
                version: 1,
                bytes: b"r".to_vec(),
            },
        )
        .await
        .unwrap();

    let mut expected = vec![
        b"a/alice".to_vec(),
        concat(&[b"d/alice/", &1u64.to_be_bytes()]),
        concat(&[b"q/", &[3; 32], &1u64.to_be_bytes()]),
        b"r/alice".to_vec(),
        concat(&[b"s/", &[4; 16]]),
        concat(&[
            b"x/",
            &0x0102u64.to_be_bytes(),
            &[3; 32],
            &1u64.to_be_bytes(),
        ]),
    ];
    expected.sort();
    assert_eq!(engine.keys(), expected);

    // Acknowledging leaves only the high-water mark `n/<device>` behind.
    assert_eq!(storage.ack(&[3; 32], &[1]).await.unwrap(), 1);
    let queue_keys: Vec<_> = engine
        .keys()
        .into_iter()
        .filter(|k| matches!(k[0], b'q' | b'x' | b'n'))
        .collect();
    assert_eq!(queue_keys, [concat(&[b"n/", &[3; 32]])]);
}

/// Numbers start at 1 per device and follow the order of the items within a call.
#[tokio::test]
async fn seqs_start_at_1_and_follow_call_order() {
    let storage = KvStorage::new(TestEngine::default());
    let items = [
        item(1, 9, b"a"),
        item(1, 9, b"b"),
        item(2, 9, b"c"),
        item(1, 9, b"d"),
    ];
    assert_eq!(storage.enqueue(&items).await.unwrap(), [1, 2, 1, 3]);
    assert_eq!(storage.enqueue(&items[..1]).await.unwrap(), [4]);
    let pending = storage.pending(&[1; 32], 0, 10).await.unwrap();
    let bytes: Vec<_> = pending.iter().map(|i| i.bytes.as_slice()).collect();
    assert_eq!(bytes, [&b"a"[..], b"b", b"d", b"a"]);
}

/// A sweep reads the expiry index from its start up to `now`, not every queue.
#[tokio::test]
async fn expire_scans_only_expired_items() {
    let engine = TestEngine::default();
    let storage = KvStorage::new(engine.clone());
    let waiting: Vec<_> = (0..500u32)
        .map(|i| item(1, 1_000 + u64::from(i), b"w"))
        .collect();
    storage.enqueue(&waiting).await.unwrap();
    storage
        .enqueue(&[item(2, 10, b"x"), item(3, 20, b"y"), item(1, 30, b"z")])
        .await
        .unwrap();
    engine.0.scanned.store(0, Ordering::SeqCst);
    assert_eq!(storage.expire(999, 1000).await.unwrap(), 3);
    let scanned = engine.0.scanned.load(Ordering::SeqCst);
    assert_eq!(scanned, 3, "the sweep read {scanned} entries to find 3");
}

/// Keyspaces larger than a scan page are read a page at a time, and completely.
#[tokio::test]
async fn large_keyspaces_are_paged() {
    const N: u32 = 2_500;
    let engine = TestEngine::default();
    let storage = KvStorage::new(engine.clone());
    for i in 0..N {
        let account = Account {
            user: user(&format!("u{i:05}")),
            created: 0,
            credential: None,
            credential_stamp: 0,
        };
        storage.put_account(&account).await.unwrap();
        let session = SessionRecord {
            id: {
                let mut id = [0; 16];
                id[..4].copy_from_slice(&i.to_be_bytes());
                id
            },
            device: [0; 32],
            user: None,
            last_seen: u64::from(i % 2),
            credential_stamp: None,
        };
        storage.put_session(&session).await.unwrap();
    }
    let alice = user("alice");
    for seq in 1..=1_100 {
        let entry = StoredEntry {
            seq,
            kind: EntryKind::Add,
            device: [0; 32],
            bytes: Vec::new(),
        };
        storage.append_entry(&alice, &entry).await.unwrap();
    }
    let items: Vec<_> = (0..N).map(|i| item(1, u64::from(i % 3), b"q")).collect();
    storage.enqueue(&items).await.unwrap();
    storage.enqueue(&items).await.unwrap();
    engine.0.largest_scan.store(0, Ordering::SeqCst);

    let listed = storage.list_accounts().await.unwrap();
    assert_eq!(listed.len(), N as usize);
    assert!(listed.windows(2).all(|w| w[0] < w[1]));
    assert_eq!(storage.entries(&alice).await.unwrap().len(), 1_100);
    assert_eq!(storage.count(&[1; 32]).await.unwrap(), 2 * u64::from(N));
    assert_eq!(storage.expire_sessions(1).await.unwrap(), (N / 2) as usize);
    // Two thirds of the items expire by time 1, a third by time 0.
    let by_1 = 2 * (0..N).filter(|i| i % 3 < 2).count();
    assert_eq!(storage.expire(1, usize::MAX).await.unwrap(), by_1);
    assert_eq!(
        storage.purge(&[1; 32]).await.unwrap(),
        2 * N as usize - by_1
    );
    assert_eq!(storage.count(&[1; 32]).await.unwrap(), 0);
    let largest = engine.0.largest_scan.load(Ordering::SeqCst);
    assert!(largest <= 1024, "one scan returned {largest} entries");
}

/// A new adapter over the same data (a restart) continues each device's numbers above both the
/// items still stored and those already removed.
#[tokio::test]
async fn counters_recover_from_items_and_high_water_marks() {
    let engine = TestEngine::default();
    let first = KvStorage::new(engine.clone());
    first
        .enqueue(&[item(1, 5, b"a"), item(1, 5, b"b"), item(1, 5, b"c")])
        .await
        .unwrap();
    first
        .enqueue(&[item(2, 5, b"a"), item(2, 5, b"b")])
        .await
        .unwrap();
    // Device 1 keeps item 1 and loses its highest, 3; device 2 keeps its highest, 2.
    assert_eq!(first.ack(&[1; 32], &[2, 3]).await.unwrap(), 2);
    assert_eq!(first.ack(&[2; 32], &[1]).await.unwrap(), 1);
    drop(first);

    let second = KvStorage::new(engine);
    assert_eq!(second.enqueue(&[item(1, 5, b"d")]).await.unwrap(), [4]);
    assert_eq!(second.enqueue(&[item(2, 5, b"c")]).await.unwrap(), [3]);
    assert_eq!(second.enqueue(&[item(3, 5, b"a")]).await.unwrap(), [1]);
}

/// Engine failures come back as the engine's `Unavailable`, naming the operation; nothing is
/// half-done, and the store works again when the engine does.
#[tokio::test]
async fn engine_failures_are_reported_with_the_operation() {
    let engine = TestEngine::default();
    let storage = KvStorage::new(engine.clone());
    storage.enqueue(&[item(1, 5, b"a")]).await.unwrap();
    engine.0.fail.store(true, Ordering::SeqCst);

    let e = storage.enqueue(&[item(1, 5, b"b")]).await.unwrap_err();
    assert_eq!(e.code, ErrorCode::Unavailable);
    assert!(e.message.starts_with("enqueue: "), "{e}");
    assert!(e.message.contains("disk gone"), "{e}");
    let e = storage.account(&user("alice")).await.unwrap_err();
    assert_eq!(e.code, ErrorCode::Unavailable);
    assert!(e.message.starts_with("account: "), "{e}");
    let e = storage.flush().await.unwrap_err();
    assert!(e.message.starts_with("flush: "), "{e}");
    let e = storage
        .put_roster(
            &user("alice"),
            &StoredRoster {
                version: 1,
                bytes: vec![],
            },
        )
        .await
        .unwrap_err();
    assert_eq!(e.code, ErrorCode::Unavailable);

    engine.0.fail.store(false, Ordering::SeqCst);
    let seqs = storage.enqueue(&[item(1, 5, b"c")]).await.unwrap();
    assert!(seqs[0] > 1);
    assert_eq!(storage.count(&[1; 32]).await.unwrap(), 2);
}

/// Point reads (a session, an account, a roster) are answered on the calling task when the
/// engine has the value in memory, and go to the blocking read only when it has not; the answer
/// and the errors are the same either way.
#[tokio::test]
async fn point_reads_use_the_engines_memory_first() {
    let engine = TestEngine::default();
    let storage = KvStorage::new(engine.clone());
    let session = SessionRecord {
        id: [7; 16],
        device: [1; 32],
        user: Some(user("alice")),
        last_seen: 5,
        credential_stamp: Some(2),
    };
    storage.put_session(&session).await.unwrap();
    storage
        .put_account(&Account {
            user: user("alice"),
            created: 1,
            credential: None,
            credential_stamp: 0,
        })
        .await
        .unwrap();
    let roster = StoredRoster {
        version: 1,
        bytes: b"r".to_vec(),
    };
    storage.put_roster(&user("alice"), &roster).await.unwrap();

    for cached in [true, false] {
        engine.0.cached.store(cached, Ordering::SeqCst);
        engine.0.gets.store(0, Ordering::SeqCst);
        assert_eq!(
            storage.session(&[7; 16]).await.unwrap(),
            Some(session.clone())
        );
        assert_eq!(storage.session(&[8; 16]).await.unwrap(), None);
        let account = storage.account(&user("alice")).await.unwrap().unwrap();
        assert_eq!(account.created, 1);
        assert_eq!(
            storage.roster(&user("alice")).await.unwrap(),
            Some(roster.clone())
        );
        let blocking = engine.0.gets.load(Ordering::SeqCst);
        assert_eq!(blocking, if cached { 0 } else { 4 }, "cached: {cached}");

        engine.0.fail.store(true, Ordering::SeqCst);
        let e = storage.session(&[7; 16]).await.unwrap_err();
        assert_eq!(e.code, ErrorCode::Unavailable);
        assert!(e.message.starts_with("session: "), "{e}");
        engine.0.fail.store(false, Ordering::SeqCst);
    }
}

/// Stored bytes that do not decode are `Internal` errors naming what was read, never panics.
#[tokio::test]
async fn corrupt_data_is_an_internal_error() {
    let engine = TestEngine::default();
    let storage = KvStorage::new(engine.clone());
    let dev = [1u8; 32];
    engine.raw_put(b"a/alice", b"short");
    engine.raw_put(b"a/Not-A-User!", &[0; 9]);
    engine.raw_put(&concat(&[b"d/alice/", &1u64.to_be_bytes()]), &[9; 33]);
    engine.raw_put(&concat(&[b"q/", &dev, &1u64.to_be_bytes()]), b"x");
    engine.raw_put(&concat(&[b"n/", &[2; 32]]), b"not a number");
    engine.raw_put(&concat(&[b"s/", &[1; 16]]), b"garbage");
    engine.raw_put(b"d/bob/short", &[0; 33]);
    engine.raw_put(b"r/alice", b"");
    engine.raw_put(b"x/short", b"");

    let internal = |r: Result<(), siren_api::Error>, what: &str| {
        let e = r.expect_err(what);
        assert_eq!(e.code, ErrorCode::Internal, "{what}: {e}");
        assert!(e.message.contains("corrupt"), "{what}: {e}");
    };
    let alice = user("alice");
    internal(storage.account(&alice).await.map(drop), "account");
    internal(storage.list_accounts().await.map(drop), "list_accounts");
    internal(storage.entries(&alice).await.map(drop), "entries");
    internal(
        storage
            .append_entry(
                &user("bob"),
                &StoredEntry {
                    seq: 2,
                    kind: EntryKind::Add,
                    device: dev,
                    bytes: vec![],
                },
            )
            .await
            .map(drop),
        "append_entry over a corrupt key",
    );
    internal(storage.pending(&dev, 0, 10).await.map(drop), "pending");
    internal(storage.ack(&dev, &[1]).await.map(drop), "ack");
    internal(storage.purge(&dev).await.map(drop), "purge");
    internal(storage.expire(u64::MAX, 10).await.map(drop), "expire");
    internal(
        storage.enqueue(&[item(2, 1, b"m")]).await.map(drop),
        "enqueue with a corrupt high-water mark",
    );
    internal(storage.session(&[1; 16]).await.map(drop), "session");
    internal(
        storage.expire_sessions(u64::MAX).await.map(drop),
        "expire_sessions",
    );
    internal(storage.roster(&alice).await.map(drop), "roster");
}

/// With reads and writes slow enough that racers always overlap, the read-check-write steps
/// still do not interleave: one append and one roster per number win, concurrent enqueues to a
/// new device get distinct numbers (also while each recovers the device's counter), and
/// concurrent acknowledgements and sweeps count each item once.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn racing_writers_do_not_interleave() {
    let engine = TestEngine::default();
    engine.0.write_delay_ms.store(20, Ordering::SeqCst);
    engine.0.read_delay_ms.store(5, Ordering::SeqCst);
    let storage = KvStorage::new(engine);
    let alice = user("alice");

    let mut appends = tokio::task::JoinSet::new();
    let mut rosters = tokio::task::JoinSet::new();
    let mut enqueues = tokio::task::JoinSet::new();
    for racer in 0..8u8 {
        let (s, a) = (storage.clone(), alice.clone());
        appends.spawn(async move {
            let entry = StoredEntry {
                seq: 1,
                kind: EntryKind::Add,
                device: [racer; 32],
                bytes: vec![racer],
            };
            s.append_entry(&a, &entry).await.is_ok()
        });
        let (s, a) = (storage.clone(), alice.clone());
        rosters.spawn(async move {
            let roster = StoredRoster {
                version: 1,
                bytes: vec![racer],
            };
            s.put_roster(&a, &roster).await.is_ok()
        });
        let s = storage.clone();
        enqueues.spawn(async move { s.enqueue(&[item(1, 5, &[racer])]).await.unwrap()[0] });
    }
    let appended = appends
        .join_all()
        .await
        .into_iter()
        .filter(|&won| won)
        .count();
    assert_eq!(appended, 1, "{appended} appends of entry 1 won");
    let stored = rosters
        .join_all()
        .await
        .into_iter()
        .filter(|&won| won)
        .count();
    assert_eq!(stored, 1, "{stored} puts of roster version 1 won");
    let mut seqs = enqueues.join_all().await;
    seqs.sort();
    assert_eq!(seqs, (1..=8).collect::<Vec<u64>>());

    let mut acks = tokio::task::JoinSet::new();
    for _ in 0..4 {
        let s = storage.clone();
        let seqs = seqs.clone();
        acks.spawn(async move { s.ack(&[1; 32], &seqs).await.unwrap() });
    }
    let removed: usize = acks.join_all().await.into_iter().sum();
    assert_eq!(
        removed, 8,
        "acknowledgements counted {removed} removals of 8 items"
    );

    let items: Vec<_> = (0..8u8).map(|i| item(2, 5, &[i])).collect();
    let seqs = storage.enqueue(&items).await.unwrap();
    let mut removals = tokio::task::JoinSet::new();
    for _ in 0..2 {
        let s = storage.clone();
        removals.spawn(async move { s.expire(5, 100).await.unwrap() });
        let (s, seqs) = (storage.clone(), seqs.clone());
        removals.spawn(async move { s.ack(&[2; 32], &seqs).await.unwrap() });
    }
    let removed: usize = removals.join_all().await.into_iter().sum();
    assert_eq!(
        removed, 8,
        "sweeps and acknowledgements counted {removed} removals of 8 items"
    );
}

/// Called outside a tokio runtime, a method returns an error instead of panicking.
#[test]
fn outside_a_runtime_is_an_error() {
    use std::task::{Context, Poll, Waker};
    let storage = KvStorage::new(TestEngine::default());
    let alice = user("alice");
    let mut future = storage.account(&alice);
    let mut context = Context::from_waker(Waker::noop());
    match future.as_mut().poll(&mut context) {
        Poll::Ready(Err(e)) => {
            assert_eq!(e.code, ErrorCode::Internal);
            assert!(e.message.contains("tokio runtime"), "{e}");
        }
        other => panic!("expected an error at once, got {other:?}"),
    }
}

/// `describe` is the engine's.
#[test]
fn describes_its_engine() {
    assert_eq!(
        KvStorage::new(TestEngine::default()).describe(),
        "test engine"
    );
}
