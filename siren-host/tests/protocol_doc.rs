//! PROTOCOL.md §20's table of server limits must stay true: every row names a real
//! configuration key with its real default, and every limit that bounds what anonymous clients
//! or one user can make the server do has a row.

use siren_host::config::Config;

fn doc() -> String {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../PROTOCOL.md");
    std::fs::read_to_string(path).expect("PROTOCOL.md at the workspace root")
}

/// The rows of the server limits table: (key, default as written).
fn rows(doc: &str) -> Vec<(String, String)> {
    let table = doc
        .split("**Server limits.**")
        .nth(1)
        .expect("PROTOCOL.md §20 has a **Server limits.** table");
    table
        .lines()
        .skip_while(|l| !l.starts_with('|'))
        .take_while(|l| l.starts_with('|'))
        .filter_map(|l| {
            let cells: Vec<&str> = l.split('|').map(str::trim).collect();
            let key = cells.get(1)?.strip_prefix('`')?.strip_suffix('`')?;
            Some((key.to_owned(), cells.get(2)?.to_string()))
        })
        .collect()
}

/// The default of a dotted key (`limits.max_unauthenticated`) as the configuration has it.
fn default_of(key: &str) -> Option<String> {
    let defaults = toml::Value::try_from(Config::default()).expect("defaults serialise");
    let mut v = &defaults;
    for part in key.split('.') {
        v = v.get(part)?;
    }
    Some(v.to_string())
}

#[test]
fn every_server_limit_row_matches_the_configuration() {
    let doc = doc();
    let rows = rows(&doc);
    assert!(!rows.is_empty());
    for (key, written) in &rows {
        let default = default_of(key).unwrap_or_else(|| panic!("`{key}` is not a config key"));
        // The number comes first; a note may follow ("0 (twice the CPU cores)").
        let number = written.split_whitespace().next().unwrap_or("");
        assert_eq!(number, default, "PROTOCOL.md §20 says {key} = {written}");
    }
}

#[test]
fn every_abuse_limit_is_in_the_table() {
    let doc = doc();
    let keys: Vec<String> = rows(&doc).into_iter().map(|(k, _)| k).collect();
    for key in [
        "limits.unauthenticated_per_address",
        "limits.max_unauthenticated",
        "limits.handshakes_per_address_per_second",
        "limits.auth_timeout_secs",
        "auth.max_concurrent_logins",
        "auth.failures_per_address_per_minute",
        "auth.failures_per_address_and_account_per_minute",
        "auth.failures_per_account_per_minute",
        "limits.max_queue_items_per_device",
        "limits.max_queue_bytes_per_device",
        "limits.send_envelopes_per_second",
        "limits.send_envelope_burst",
        "limits.send_bytes_per_second",
        "limits.send_byte_burst",
        "limits.max_subscriptions_per_session",
        "limits.directory_changes_per_hour",
        "limits.max_directory_entries",
        "limits.pending_approvals_per_account",
        "limits.pending_approvals_per_address",
        "federation.request_timeout_secs",
        "federation.max_outbox_peers_per_user",
        "federation.max_outbox_peers",
        "federation.new_peer_hellos_per_address_per_minute",
        "federation.negative_cache_secs",
    ] {
        assert!(
            keys.iter().any(|k| k == key),
            "PROTOCOL.md §20 lacks a row for `{key}`"
        );
    }
}

#[test]
fn the_targets_tried_per_link_are_documented() {
    let doc = doc();
    let t = siren_host::links::MAX_TARGETS;
    for text in [
        format!("| SRV targets tried / connection attempts per link (§4) | {t} / {t} | 502 |"),
        format!("at most the first **{t}** SRV targets"),
    ] {
        assert!(doc.contains(&text), "PROTOCOL.md lacks {text:?}");
    }
}
