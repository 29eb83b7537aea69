//! Checks of the [`KvEngine`] contract itself, below the adapter: exact reads, atomic ordered
//! batches, and scans that respect their bounds, direction and limit.

use siren_api::storage::{Durability, KeyRange, KvEngine, WriteBatch};

use crate::sample::ok;

fn put(engine: &dyn KvEngine, key: &[u8], value: &[u8]) {
    let mut batch = WriteBatch::new();
    batch.put(key, value);
    ok(engine.write(&batch, Durability::Synced), "write");
}

fn range(start: &[u8], end: &[u8]) -> KeyRange {
    KeyRange {
        start: start.to_vec(),
        end: end.to_vec(),
    }
}

#[track_caller]
fn keys(engine: &dyn KvEngine, range: &KeyRange, limit: usize, reverse: bool) -> Vec<Vec<u8>> {
    ok(engine.scan(range, limit, reverse), "scan")
        .into_iter()
        .map(|(k, _)| k)
        .collect()
}

fn list(keys: &[&[u8]]) -> Vec<Vec<u8>> {
    keys.iter().map(|k| k.to_vec()).collect()
}

/// The sample keys the scan checks use, in order.
const SAMPLE: &[&[u8]] = &[
    b"a",
    b"b",
    b"ba",
    b"bb",
    b"c",
    &[0xff],
    &[0xff, 0x00],
    &[0xff, 0xff],
];

fn with_sample(engine: &dyn KvEngine) {
    // Written in a scrambled order, some buffered: order comes from the keys.
    for &i in &[4usize, 0, 7, 2, 5, 1, 6, 3] {
        let mut batch = WriteBatch::new();
        batch.put(SAMPLE[i], vec![i as u8]);
        let durability = if i % 2 == 0 {
            Durability::Synced
        } else {
            Durability::Buffered
        };
        ok(engine.write(&batch, durability), "write");
    }
}

/// A missing key reads `None`; a put reads back; a second put replaces; a delete removes; a
/// delete of a missing key is no error.
pub fn engine_get_put_delete(engine: &dyn KvEngine) {
    assert_eq!(ok(engine.get(b"k"), "get"), None);
    put(engine, b"k", b"one");
    assert_eq!(ok(engine.get(b"k"), "get"), Some(b"one".to_vec()));
    assert_eq!(ok(engine.get(b"k2"), "get"), None, "a longer key matched");
    assert_eq!(ok(engine.get(b""), "get"), None, "a shorter key matched");
    put(engine, b"k", b"two");
    assert_eq!(ok(engine.get(b"k"), "get"), Some(b"two".to_vec()));
    let mut batch = WriteBatch::new();
    batch.delete(b"k".to_vec()).delete(b"missing".to_vec());
    ok(engine.write(&batch, Durability::Synced), "write deletes");
    assert_eq!(ok(engine.get(b"k"), "get"), None);
}

/// An empty value is a value, not an absence (the queue's expiry index is made of them).
pub fn engine_empty_value_is_a_value(engine: &dyn KvEngine) {
    put(engine, b"x/1", b"");
    assert_eq!(ok(engine.get(b"x/1"), "get"), Some(Vec::new()));
    assert_eq!(
        ok(engine.scan(&KeyRange::prefix(b"x/"), 10, false), "scan"),
        vec![(b"x/1".to_vec(), Vec::new())]
    );
}

/// A batch applies its operations in order: put-then-delete leaves nothing, delete-then-put
/// leaves the value, two puts leave the second.
pub fn engine_batch_applies_in_order(engine: &dyn KvEngine) {
    put(engine, b"b", b"old");
    let mut batch = WriteBatch::new();
    batch
        .put(b"a".to_vec(), b"1".to_vec())
        .delete(b"a".to_vec())
        .delete(b"b".to_vec())
        .put(b"b".to_vec(), b"2".to_vec())
        .put(b"c".to_vec(), b"1".to_vec())
        .put(b"c".to_vec(), b"2".to_vec());
    ok(engine.write(&batch, Durability::Buffered), "write");
    assert_eq!(ok(engine.get(b"a"), "get"), None);
    assert_eq!(ok(engine.get(b"b"), "get"), Some(b"2".to_vec()));
    assert_eq!(ok(engine.get(b"c"), "get"), Some(b"2".to_vec()));
    ok(
        engine.write(&WriteBatch::new(), Durability::Synced),
        "empty batch",
    );
}

/// Scans include `start`, exclude `end`, treat an empty `end` as unbounded, and return values
/// with their keys.
pub fn engine_scan_bounds(engine: &dyn KvEngine) {
    with_sample(engine);
    let all = usize::MAX;
    assert_eq!(
        keys(engine, &range(b"b", b"c"), all, false),
        list(&[b"b", b"ba", b"bb"])
    );
    assert_eq!(
        keys(engine, &range(b"ba", b"bb"), all, false),
        list(&[b"ba"])
    );
    assert_eq!(
        keys(engine, &range(b"b0", b"c0"), all, false),
        list(&[b"ba", b"bb", b"c"])
    );
    assert_eq!(
        keys(engine, &range(b"bb", b""), all, false),
        list(&[b"bb", b"c", &[0xff], &[0xff, 0x00], &[0xff, 0xff]])
    );
    assert_eq!(keys(engine, &range(b"", b""), all, false), list(SAMPLE));
    assert_eq!(
        keys(engine, &KeyRange::prefix(b"b"), all, false),
        list(&[b"b", b"ba", b"bb"])
    );
    assert_eq!(
        keys(engine, &KeyRange::prefix(&[0xff]), all, false),
        list(&[&[0xff], &[0xff, 0x00], &[0xff, 0xff]])
    );
    let entries = ok(engine.scan(&range(b"c", b"d"), 10, false), "scan");
    assert_eq!(entries, vec![(b"c".to_vec(), vec![4])]);
}

/// Reverse scans return the same range from the end; `limit` counts from the scan's start, in
/// either direction; a limit of 0 returns nothing.
pub fn engine_scan_reverse_and_limit(engine: &dyn KvEngine) {
    with_sample(engine);
    let b = KeyRange::prefix(b"b");
    assert_eq!(keys(engine, &b, 10, true), list(&[b"bb", b"ba", b"b"]));
    assert_eq!(keys(engine, &b, 2, false), list(&[b"b", b"ba"]));
    assert_eq!(keys(engine, &b, 2, true), list(&[b"bb", b"ba"]));
    assert_eq!(keys(engine, &b, 1, true), list(&[b"bb"]));
    assert!(keys(engine, &b, 0, false).is_empty());
    assert!(keys(engine, &b, 0, true).is_empty());
    // The reverse scan starts below `end`, even when `end` itself is a key.
    assert_eq!(keys(engine, &range(b"a", b"c"), 1, true), list(&[b"bb"]));
    assert_eq!(keys(engine, &range(b"a", b"bb"), 1, true), list(&[b"ba"]));
    assert_eq!(
        keys(engine, &range(b"", b""), 1, true),
        list(&[&[0xff, 0xff]])
    );
    assert_eq!(
        keys(engine, &range(b"c", b""), 10, true),
        list(&[&[0xff, 0xff], &[0xff, 0x00], &[0xff], b"c"])
    );
}

/// Ranges with nothing in them, including `start == end` and `start > end`, are empty (not an
/// error, not a panic), in both directions.
pub fn engine_scan_empty_ranges(engine: &dyn KvEngine) {
    assert!(keys(engine, &range(b"", b""), 10, false).is_empty());
    with_sample(engine);
    for reverse in [false, true] {
        assert!(keys(engine, &range(b"b", b"b"), 10, reverse).is_empty());
        assert!(keys(engine, &range(b"c", b"b"), 10, reverse).is_empty());
        assert!(keys(engine, &range(b"bc", b"c"), 10, reverse).is_empty());
        assert!(keys(engine, &KeyRange::prefix(b"q"), 10, reverse).is_empty());
    }
}

/// Keys and values are arbitrary bytes: zero bytes, 0xff bytes, a key that is a prefix of
/// another, a 1 MiB value.
pub fn engine_binary_keys_and_values(engine: &dyn KvEngine) {
    let big: Vec<u8> = (0..1 << 20).map(|i: u32| (i % 253) as u8).collect();
    let pairs: Vec<(Vec<u8>, Vec<u8>)> = vec![
        (vec![0], vec![0, 0, 0]),
        (vec![0, 0], vec![0xff]),
        (vec![1, 0, 2], big.clone()),
        (vec![0xff, 0, 0xff], vec![]),
    ];
    let mut batch = WriteBatch::new();
    for (k, v) in &pairs {
        batch.put(k.clone(), v.clone());
    }
    ok(engine.write(&batch, Durability::Synced), "write");
    for (k, v) in &pairs {
        assert_eq!(ok(engine.get(k), "get").as_ref(), Some(v), "key {k:?}");
    }
    assert_eq!(ok(engine.scan(&range(b"", b""), 10, false), "scan"), pairs);
}

/// Eight threads writing at once (synced and buffered) all land, each batch whole.
pub fn engine_concurrent_writers(engine: &dyn KvEngine) {
    std::thread::scope(|scope| {
        for t in 0..8u8 {
            scope.spawn(move || {
                for i in 0..25u8 {
                    let mut batch = WriteBatch::new();
                    batch
                        .put(vec![t, i, 0], vec![t])
                        .put(vec![t, i, 1], vec![i]);
                    let durability = if i % 5 == 0 {
                        Durability::Synced
                    } else {
                        Durability::Buffered
                    };
                    ok(engine.write(&batch, durability), "concurrent write");
                }
            });
        }
    });
    let all = ok(engine.scan(&range(b"", b""), usize::MAX, false), "scan");
    assert_eq!(all.len(), 8 * 25 * 2);
    for (k, v) in all {
        let expected = if k[2] == 0 { k[0] } else { k[1] };
        assert_eq!(v, vec![expected], "key {k:?}");
    }
}

/// `flush` succeeds (also twice, also on an empty engine) and `describe` says something.
pub fn engine_flush_and_describe(engine: &dyn KvEngine) {
    ok(engine.flush(), "flush an empty engine");
    assert!(!engine.describe().trim().is_empty(), "empty description");
    put(engine, b"k", b"v");
    ok(engine.flush(), "flush");
    ok(engine.flush(), "flush again");
    assert_eq!(ok(engine.get(b"k"), "get"), Some(b"v".to_vec()));
}

/// `get_cached`, where the engine answers it, says what `get` says: a missing key, a value just
/// written, a replaced value, a deleted key, and the same after `flush` (values now in files).
pub fn engine_cached_reads_agree(engine: &dyn KvEngine) {
    #[track_caller]
    fn agree(engine: &dyn KvEngine, key: &[u8]) {
        let read = ok(engine.get(key), "get");
        if let Some(cached) = engine.get_cached(key) {
            assert_eq!(
                ok(cached, "get_cached"),
                read,
                "get_cached of {key:?} differs"
            );
        }
    }
    agree(engine, b"k");
    put(engine, b"k", b"one");
    agree(engine, b"k");
    put(engine, b"k", b"two");
    agree(engine, b"k");
    put(engine, b"gone", b"x");
    let mut batch = WriteBatch::new();
    batch.delete(b"gone".to_vec());
    ok(engine.write(&batch, Durability::Buffered), "write a delete");
    agree(engine, b"gone");
    ok(engine.flush(), "flush");
    for key in [&b"k"[..], b"gone", b"never"] {
        agree(engine, key);
        agree(engine, key);
    }
}

/// `scan_cached`, where the engine answers it, says what `scan` says: forward and reverse, with
/// limits, over deleted entries (a queue's removed items), and after `flush` (entries now in
/// files).
pub fn engine_cached_scans_agree(engine: &dyn KvEngine) {
    #[track_caller]
    fn agree(engine: &dyn KvEngine, range: &KeyRange) {
        for (limit, reverse) in [(1, false), (3, false), (100, false), (1, true), (100, true)] {
            let scanned = ok(engine.scan(range, limit, reverse), "scan");
            if let Some(cached) = engine.scan_cached(range, limit, reverse) {
                assert_eq!(
                    ok(cached, "scan_cached"),
                    scanned,
                    "scan_cached of {range:?} (limit {limit}, reverse {reverse}) differs"
                );
            }
        }
    }
    let all = KeyRange::prefix(b"q/");
    agree(engine, &all);
    for i in 0u8..20 {
        put(engine, &[b'q', b'/', i], &[i]);
    }
    put(engine, b"r/outside", b"x");
    agree(engine, &all);
    agree(
        engine,
        &KeyRange {
            start: vec![b'q', b'/', 5],
            end: vec![b'q', b'/', 9],
        },
    );
    let mut batch = WriteBatch::new();
    for i in 0u8..12 {
        batch.delete(vec![b'q', b'/', i]);
    }
    ok(
        engine.write(&batch, Durability::Buffered),
        "delete the first twelve",
    );
    agree(engine, &all);
    ok(engine.flush(), "flush");
    agree(engine, &all);
    put(engine, &[b'q', b'/', 3], b"back");
    agree(engine, &all);
}
