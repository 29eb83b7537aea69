//! The local history at the size the issue asks for: 10,000 messages in one conversation.
//!
//! * `history/first_screen`: open the profile's history and load the newest 50 messages (what
//!   a chat view shows first);
//! * `history/scroll_back`: the 50 before a page (scrolling up);
//! * `history/search_all_10000`: a two-word search decrypting and scanning every message;
//! * `history/store_one`: one upsert, committed and synced (what `siren recv` does per message).
//!
//! `cargo bench -p siren-client --bench history`. Filling the history (one transaction) is timed
//! once and printed on stderr. On the 2-core build machine: filling 128 ms, first screen 3.0 ms,
//! scroll back 0.24 ms, search 47 ms, one stored message 0.19 ms.

use std::hint::black_box;
use std::time::Instant;

use criterion::{Criterion, criterion_group, criterion_main};
use siren_api::Uid;
use siren_client::history::History;
use siren_client::profile::{Profile, Settings};
use siren_client_core::model::{Body, Chat, ChatMessage, MessageState};
use siren_proto::ids::MessageId;
use siren_proto::keys::SekPublic;

const MESSAGES: u32 = 10_000;
const WORDS: &[&str] = &[
    "lunch", "tomorrow", "meeting", "coffee", "train", "late", "weekend", "photo", "call",
    "project", "deadline", "dinner", "thanks", "sure", "maybe", "tonight", "office", "great",
];

fn message(peer: &Uid, n: u32) -> ChatMessage {
    let mut id = [0u8; 16];
    id[..4].copy_from_slice(&n.to_be_bytes());
    // A deterministic mix of words, 8 to 15 of them; one message in a hundred has the needle.
    let mut text = String::new();
    let mut x = n.wrapping_mul(2_654_435_761);
    for _ in 0..(8 + n % 8) {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        let i = usize::try_from(x).unwrap_or(0) % WORDS.len();
        text.push_str(WORDS[i]);
        text.push(' ');
    }
    if n % 100 == 7 {
        text.push_str("Xylophone needle");
    }
    ChatMessage {
        id: MessageId::from_bytes(id),
        peer: peer.clone(),
        group: None,
        outgoing: n.is_multiple_of(3),
        ts: 1_700_000_000 + u64::from(n),
        at: 1_700_000_000_000 + u64::from(n) * 1_000,
        body: Body::Text(text),
        state: MessageState::Read,
        edited: false,
    }
}

fn bench(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("profile");
    let settings = Settings {
        uid: Uid::parse("alice@alpha.test").unwrap(),
        server: "127.0.0.1:7453".into(),
        fallback: Vec::new(),
        server_key: SekPublic::from_bytes([9; 32]).to_base64(),
    };
    let profile = Profile::create(&path, settings, None).unwrap();
    let bob = Uid::parse("bob@beta.test").unwrap();
    let all: Vec<ChatMessage> = (0..MESSAGES).map(|n| message(&bob, n)).collect();
    {
        let mut history = History::open(&profile).unwrap();
        let start = Instant::now();
        history.store_all(&all).unwrap();
        siren_client::note!(
            "stored {MESSAGES} messages in one transaction in {:?}",
            start.elapsed()
        );
        assert_eq!(history.len().unwrap(), u64::from(MESSAGES));
    }

    let mut group = c.benchmark_group("history");
    group.sample_size(30);
    group.bench_function("first_screen", |b| {
        b.iter(|| {
            let history = History::open(&profile).unwrap();
            let (page, more) = history.page(&Chat::User(bob.clone()), None, 50).unwrap();
            assert!(more && page.len() == 50);
            black_box(page);
        })
    });
    let history = History::open(&profile).unwrap();
    let middle = &all[5_000];
    group.bench_function("scroll_back", |b| {
        b.iter(|| {
            black_box(
                history
                    .page(&Chat::User(bob.clone()), Some(middle), 50)
                    .unwrap(),
            )
        })
    });
    group.bench_function("search_all_10000", |b| {
        b.iter(|| {
            let found = history.search("needle xylophone", None, 50).unwrap();
            assert_eq!(found.len(), 50);
            black_box(found);
        })
    });
    drop(history);
    let mut history = History::open(&profile).unwrap();
    let mut update = all[9_999].clone();
    group.bench_function("store_one", |b| {
        b.iter(|| {
            update.edited = !update.edited;
            history.store(&update).unwrap();
        })
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
