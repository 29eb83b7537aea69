//! No acknowledged message is lost: a stream of sends is interrupted by a graceful restart or by
//! `kill -9`, and every message the server acknowledged is delivered afterwards — also when the
//! recipient is online and gets messages through the fast path, before they are durable
//! (PROTOCOL.md §13).

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use siren_api::Uid;
use siren_client::client::Client;
use siren_client::profile::Profile;
use siren_tests::{Cli, Options, Server};

#[derive(Clone, Copy)]
enum Stop {
    Graceful,
    Kill9,
}

fn stream_and_stop(stop: Stop, online: bool) {
    let port = siren_tests::free_port();
    let mut server = Server::new(Options {
        extra: siren_tests::metrics::metrics_on(port),
        ..Options::default()
    });
    server.add_user("alice", "pw-a");
    server.add_user("bob", "pw-b");
    server.start();
    let alice = Cli::init(&server, "alice@alpha.test");
    let bob = Cli::init(&server, "bob@alpha.test");
    alice.login("pw-a");
    bob.login("pw-b");
    // Online: bob listens through the whole stream (his `siren listen` ends with the server).
    let live = online.then(|| bob.listen());

    // Alice sends as fast as the server acknowledges, from a library client on another thread.
    let acked: Arc<Mutex<Vec<String>>> = Arc::default();
    let sender = {
        let acked = acked.clone();
        let profile = alice.profile().to_owned();
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                let mut client = Client::new(Profile::open(&profile, None).unwrap()).unwrap();
                client.connect().await.unwrap();
                let bob = Uid::parse("bob@alpha.test").unwrap();
                for i in 0.. {
                    let text = format!("message {i}");
                    match client.send_text(&bob, &text).await {
                        Ok(_) => acked.lock().unwrap().push(text),
                        Err(_) => return, // the server went away mid-request: not acknowledged
                    }
                }
            })
        })
    };
    // Let a stream build up, then stop the server in the middle of it.
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while acked.lock().unwrap().len() < 40 {
        assert!(
            std::time::Instant::now() < deadline,
            "the stream did not get going"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    if online {
        // The fast path is in use: items went to bob before their commit was durable.
        let at = format!("127.0.0.1:{port}").parse().unwrap();
        let (_, text) = siren_tests::metrics::get(at, "/metrics").expect("metrics");
        let early = siren_tests::metrics::sample(&text, "siren_messages_delivered_early_total");
        assert!(early.is_some_and(|n| n > 0.0), "no early delivery:\n{text}");
        // And commits settled by bob's acknowledgements, without a sync (crate::deferred):
        // waited for while the stream goes on (a slow machine may need a few tries).
        loop {
            let (_, text) = siren_tests::metrics::get(at, "/metrics").expect("metrics");
            let unsynced =
                siren_tests::metrics::sample(&text, "siren_messages_acknowledged_unsynced_total");
            if unsynced.is_some_and(|n| n > 0.0) {
                break;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "no commit was settled by an acknowledgement:\n{text}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    match stop {
        Stop::Graceful => assert!(server.stop(), "graceful shutdown must exit cleanly"),
        Stop::Kill9 => server.kill(),
    }
    sender.join().unwrap();
    let acked: Vec<String> = acked.lock().unwrap().clone();
    assert!(acked.len() >= 40);
    let mut received: BTreeSet<String> = BTreeSet::new();
    if let Some(live) = live {
        while let Some(line) = live.next_line(Duration::from_secs(2)) {
            received.insert(line.trim_start_matches("alice@alpha.test: ").to_owned());
        }
        assert!(!received.is_empty(), "bob received nothing while online");
    }

    server.start();
    received.extend(
        bob.recv()
            .into_iter()
            .map(|line| line.trim_start_matches("alice@alpha.test: ").to_owned()),
    );
    let missing: Vec<&String> = acked.iter().filter(|t| !received.contains(*t)).collect();
    assert!(
        missing.is_empty(),
        "{} of {} acknowledged messages were lost: {:?}",
        missing.len(),
        acked.len(),
        missing
    );
}

#[test]
fn graceful_restart_during_a_stream_loses_no_acknowledged_message() {
    stream_and_stop(Stop::Graceful, false);
}

#[test]
fn kill_9_during_a_stream_loses_no_acknowledged_message() {
    stream_and_stop(Stop::Kill9, false);
}

#[test]
fn kill_9_during_a_stream_to_an_online_device_loses_no_acknowledged_message() {
    stream_and_stop(Stop::Kill9, true);
}
