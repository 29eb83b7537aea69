//! The web listener (`[web]`): Siren sessions over a WebSocket served by the same session code as
//! TCP, the documented closes for what a browser must not send, the Origin check, admission, and
//! the page's security headers. A real `sirend`, real WebSockets on loopback.

use std::io::{Read as _, Write as _};
use std::net::SocketAddr;
use std::time::Duration;

use futures_util::SinkExt as _;
use siren_proto::envelope::Recipient;
use siren_proto::handshake::decode_error_frame;
use siren_proto::message::{ClientMessage, QueueItem, ServerMessage};
use siren_proto::plaintext::Plaintext;
use siren_tests::raw::{self, Session};
use siren_tests::web::{self, until_closed};
use siren_tests::{Options, Server};
use tokio_tungstenite::tungstenite::Message;

fn server(limits: &str) -> Server {
    let mut server = Server::new(Options {
        limits_lines: limits.into(),
        extra: "\n[roster]\nnon_contacts = \"accept\"\n".into(),
        ..Options::default()
    });
    server.start();
    server
}

fn text(body: &str) -> Vec<u8> {
    Plaintext::Text {
        body: body.into(),
        ts: 0,
    }
    .encode()
}

/// Sends `body` from `from` to `to`'s device and waits for the acknowledgement.
async fn send(from: &mut Session, to: &Session, ctr: u64, body: &str) {
    let env = from.seal_to(&to.uid, &to.dek.public(), ctr, &text(body));
    let rid = from
        .request(|rid| ClientMessage::Send {
            rid,
            msgs: vec![env],
        })
        .await;
    match from.next_answer().await {
        ServerMessage::SendAck { rid: r, .. } if r == rid => {}
        other => panic!("send refused: {other:?}"),
    }
}

/// The text of the next message delivered to `to`, opened with its DEK.
async fn received(to: &mut Session, from: &Session) -> String {
    loop {
        match raw::next_message(&mut to.conn).await {
            ServerMessage::Deliver {
                item: QueueItem::Message { env },
                ..
            } => {
                let plain = env
                    .open(
                        Recipient {
                            uid: &to.uid,
                            dek: &to.dek,
                        },
                        &from.usk.public(),
                        &mut Default::default(),
                    )
                    .unwrap();
                match Plaintext::decode(&plain).unwrap() {
                    Plaintext::Text { body, .. } => return body,
                    other => panic!("not a text: {other:?}"),
                }
            }
            _ => continue,
        }
    }
}

#[tokio::test]
async fn a_websocket_session_and_a_tcp_session_chat_both_ways() {
    let server = server("");
    server.add_user("alice", "pw-alice");
    server.add_user("bob", "pw-bob");
    let mut alice = Session::create_web(&server, "alice", "pw-alice").await;
    let mut bob = Session::create(&server, "bob", "pw-bob").await;
    send(&mut alice, &bob, 1, "hello over a WebSocket").await;
    assert_eq!(received(&mut bob, &alice).await, "hello over a WebSocket");
    send(&mut bob, &alice, 1, "hello over TCP").await;
    assert_eq!(received(&mut alice, &bob).await, "hello over TCP");
}

/// A text message, an oversized message and garbage each close that WebSocket with the
/// documented code (PROTOCOL.md §5.1), and a session beside them goes on.
#[tokio::test]
async fn bad_messages_close_their_websocket_and_others_go_on() {
    let server = server("max_frame = 65536\n");
    let addr = server.web.unwrap();
    server.add_user("alice", "pw-alice");
    server.add_user("bob", "pw-bob");
    let mut alice = Session::create_web(&server, "alice", "pw-alice").await;
    let mut bob = Session::create_web(&server, "bob", "pw-bob").await;

    let mut ws = web::open(addr, None).await.unwrap();
    ws.send(Message::Text("hello".into())).await.unwrap();
    let closed = until_closed(&mut ws).await;
    assert_eq!(closed.code, 1003, "{closed:?}");
    assert!(closed.reason.contains("binary"), "{closed:?}");

    let mut ws = web::open(addr, None).await.unwrap();
    ws.send(Message::Binary(vec![7u8; 65537].into()))
        .await
        .unwrap();
    let closed = until_closed(&mut ws).await;
    assert_eq!(closed.code, 1009, "{closed:?}");

    // Garbage where the hello belongs: the handshake's own plaintext `error` 101 (malformed
    // handshake message, as on TCP), then a normal close.
    let mut ws = web::open(addr, None).await.unwrap();
    ws.send(Message::Binary(vec![0xff; 100].into()))
        .await
        .unwrap();
    let closed = until_closed(&mut ws).await;
    assert_eq!(closed.code, 1000, "{closed:?}");
    let [frame] = closed.binary.as_slice() else {
        panic!("one error frame before the close: {closed:?}");
    };
    let (code, message) = decode_error_frame(frame).expect("a plaintext error frame");
    assert_eq!(code, 101, "{message}");

    // Garbage after the handshake (a frame that does not decrypt) ends that session only.
    let dek = siren_proto::keys::DekSecret::generate(&mut siren_proto::os_rng());
    let mut broken = raw::open_web(&server, &dek).await;
    broken
        .sender
        .send_encoded(b"\xff not a message")
        .await
        .unwrap();
    let answer = loop {
        match broken.receiver.recv::<ServerMessage>().await {
            Ok(ServerMessage::Error { code, .. }) => break Some(code),
            Ok(_) => continue,
            Err(_) => break None,
        }
    };
    assert!(answer.is_some(), "the session says why it ends");

    send(&mut alice, &bob, 1, "still here").await;
    assert_eq!(received(&mut bob, &alice).await, "still here");
}

#[tokio::test]
async fn pages_of_other_origins_cannot_open_a_session() {
    let server = server("");
    let addr = server.web.unwrap();
    let refused = web::open(addr, Some("http://evil.example"))
        .await
        .unwrap_err();
    match refused {
        tokio_tungstenite::tungstenite::Error::Http(response) => {
            assert_eq!(response.status(), 403);
        }
        other => panic!("expected 403, got {other}"),
    }
    // The page's own origin, and clients that are not browsers (no Origin), get in.
    web::open(addr, Some(&format!("http://{addr}")))
        .await
        .unwrap();
    web::open(addr, None).await.unwrap();
}

/// Admission before login is the client listener's: over the per-address limit a WebSocket gets
/// the plaintext `error` 203 and close 1013.
#[tokio::test]
async fn admission_limits_apply_to_websockets() {
    let server = server("unauthenticated_per_address = 1\n");
    let addr = server.web.unwrap();
    let _first = web::open(addr, None).await.unwrap();
    let mut second = web::open(addr, None).await.unwrap();
    let closed = until_closed(&mut second).await;
    assert_eq!(closed.code, 1013, "{closed:?}");
    let [frame] = closed.binary.as_slice() else {
        panic!("one error frame before the close: {closed:?}");
    };
    assert_eq!(decode_error_frame(frame).unwrap().0, 203);
}

/// `GET path` with the response's head (lower-cased) and status; `None` when no HTTP answer
/// comes.
fn get(addr: SocketAddr, path: &str) -> Option<(u16, String)> {
    get_with_body(addr, path).map(|(status, head, _)| (status, head))
}

/// [`get`], with the body.
fn get_with_body(addr: SocketAddr, path: &str) -> Option<(u16, String, String)> {
    let mut stream = std::net::TcpStream::connect(addr).ok()?;
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .ok()?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut response = Vec::new();
    let _ = stream.read_to_end(&mut response);
    let response = String::from_utf8_lossy(&response);
    let (head, body) = response.split_once("\r\n\r\n")?;
    let head = head.to_lowercase();
    let status = head.strip_prefix("http/1.1 ")?.get(..3)?.parse().ok()?;
    Some((status, head, body.to_owned()))
}

#[test]
fn the_page_is_served_with_its_security_headers() {
    let server = server("");
    let addr = server.web.unwrap();
    for (path, status) in [("/", 200), ("/no-such-file", 404)] {
        let (got, head) = get(addr, path).expect("an HTTP answer");
        assert_eq!(got, status, "{head}");
        for header in [
            "content-security-policy: default-src 'none'; script-src 'self' 'wasm-unsafe-eval';",
            "x-content-type-options: nosniff",
            "x-frame-options: deny",
            "referrer-policy: no-referrer",
        ] {
            assert!(head.contains(header), "{path}: no {header:?} in\n{head}");
        }
        assert!(head.contains("connect-src 'self'"), "{head}");
    }
}

/// `[web] tls_cert`/`tls_key`: the page over HTTPS and a session over `wss:`.
#[tokio::test]
async fn https_and_wss_with_a_certificate() {
    use tokio_rustls::rustls;

    let keys = tempfile::tempdir().unwrap();
    let certified = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
    let cert = keys.path().join("web.crt");
    let key = keys.path().join("web.key");
    std::fs::write(&cert, certified.cert.pem()).unwrap();
    std::fs::write(&key, certified.signing_key.serialize_pem()).unwrap();
    let mut server = Server::new(Options {
        extra: format!(
            "\n[web]\nlisten = \"127.0.0.1:0\"\ntls_cert = {cert:?}\ntls_key = {key:?}\n"
        ),
        ..Options::default()
    });
    server.start();
    server.add_user("alice", "pw-alice");
    let addr = server.web.expect("the web listener says where it is");

    let mut roots = rustls::RootCertStore::empty();
    roots.add(certified.cert.der().clone()).unwrap();
    let client = rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(std::sync::Arc::new(client));
    let tls = async || {
        let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
        let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
        connector.connect(name, tcp).await.unwrap()
    };

    // The page, over HTTPS, with its headers.
    let mut stream = tls().await;
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    stream
        .write_all(b"GET / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut page = Vec::new();
    let _ = stream.read_to_end(&mut page).await;
    let page = String::from_utf8_lossy(&page).to_lowercase();
    assert!(page.starts_with("http/1.1 200"), "{page}");
    assert!(page.contains("content-security-policy"), "{page}");

    // A session over wss:.
    let url = format!("wss://localhost:{}/ws", addr.port());
    let (ws, _) = tokio_tungstenite::client_async(url, tls().await)
        .await
        .unwrap();
    let (rd, wr) = web::bridge(ws);
    let dek = siren_proto::keys::DekSecret::generate(&mut siren_proto::os_rng());
    let conn = raw::open_over(&server, &dek, rd, wr).await;
    let alice = Session::create_on(&server, dek, conn, "alice", "pw-alice").await;
    assert_eq!(alice.uid.to_string(), "alice@alpha.test");

    // Plain HTTP to the TLS listener gets nothing.
    assert_eq!(get(addr, "/"), None);
}

/// `/siren.json` tells the page which server it reached and the key to pin; `[web] assets` names
/// the client's directory (its files served by name, nothing outside it), and one that holds no
/// client stops the start with the reason.
#[test]
fn the_client_directory_and_the_server_info_are_served() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("index.html"),
        "<p>the configured client</p>",
    )
    .unwrap();
    std::fs::write(dir.path().join("app.js"), "export {};").unwrap();
    std::fs::write(dir.path().join("notes.md"), "not part of a client").unwrap();
    let mut server = Server::new(Options {
        extra: format!(
            "\n[web]\nlisten = \"127.0.0.1:0\"\nassets = {:?}\n",
            dir.path()
        ),
        ..Options::default()
    });
    server.start();
    let addr = server.web.unwrap();
    let (status, _, body) = get_with_body(addr, "/").unwrap();
    assert_eq!(
        (status, body.as_str()),
        (200, "<p>the configured client</p>")
    );
    let (status, head, _) = get_with_body(addr, "/app.js").unwrap();
    assert_eq!(status, 200);
    assert!(head.contains("content-type: text/javascript"), "{head}");
    for path in ["/notes.md", "/../index.html", "/%2e%2e/index.html"] {
        assert_eq!(get(addr, path).unwrap().0, 404, "{path}");
    }
    let (status, head, body) = get_with_body(addr, "/siren.json").unwrap();
    assert_eq!(status, 200);
    assert!(head.contains("content-type: application/json"), "{head}");
    let info: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(info["server"], "alpha.test");
    assert_eq!(info["key"], server.sek.as_str());
    assert_eq!(info["websocket"], "/ws");

    let empty = tempfile::tempdir().unwrap();
    let broken = Server::new(Options {
        extra: format!(
            "\n[web]\nlisten = \"127.0.0.1:0\"\nassets = {:?}\n",
            empty.path()
        ),
        ..Options::default()
    });
    let stderr = broken.start_failure();
    assert!(
        stderr.contains("web.assets") && stderr.contains("no index.html"),
        "{stderr}"
    );
}

#[test]
fn a_certificate_that_does_not_load_stops_the_start() {
    let dir = tempfile::tempdir().unwrap();
    let cert = dir.path().join("missing.crt");
    let key = dir.path().join("missing.key");
    let server = Server::new(Options {
        extra: format!(
            "\n[web]\nlisten = \"127.0.0.1:0\"\ntls_cert = {cert:?}\ntls_key = {key:?}\n"
        ),
        ..Options::default()
    });
    let stderr = server.start_failure();
    assert!(stderr.contains("web.tls_cert"), "{stderr}");
}

/// SIGTERM: WebSocket sessions are told and closed like TCP ones, and `sirend` exits cleanly
/// (the drain waits for them, and they end).
#[tokio::test]
async fn a_shutdown_ends_websocket_sessions_and_sirend_exits_cleanly() {
    let mut server = server("");
    server.add_user("alice", "pw-alice");
    let mut alice = Session::create_web(&server, "alice", "pw-alice").await;
    let stopping = tokio::task::spawn_blocking(move || {
        let clean = server.stop();
        (clean, server)
    });
    let ended = tokio::time::timeout(Duration::from_secs(20), async {
        loop {
            if alice.conn.receiver.recv::<ServerMessage>().await.is_err() {
                break;
            }
        }
    })
    .await;
    assert!(ended.is_ok(), "the WebSocket session outlived the shutdown");
    let (clean, _server) = stopping.await.unwrap();
    assert!(clean, "sirend exited with an error");
}

/// `siren` with a `ws://` server address: the CLI's session over the web listener, chatting with
/// a CLI on TCP, both ways.
#[test]
fn the_cli_talks_over_the_web_listener_too() {
    let server = server("");
    server.add_user("alice", "pw-alice");
    server.add_user("bob", "pw-bob");
    let ws = format!("ws://{}/ws", server.web.unwrap());
    let alice = siren_tests::Cli::init_at(&server, "alice@alpha.test", &ws);
    let bob = siren_tests::Cli::init(&server, "bob@alpha.test");
    assert!(alice.login("pw-alice").ok);
    assert!(bob.login("pw-bob").ok);
    alice.send("bob@alpha.test", "from a WebSocket");
    assert_eq!(bob.recv(), ["alice@alpha.test: from a WebSocket"]);
    bob.send("alice@alpha.test", "from TCP");
    assert_eq!(alice.recv(), ["bob@alpha.test: from TCP"]);
    let log = server.wait_for_log("\"websocket\"");
    assert!(
        log.contains("websocket"),
        "the session was not over the WebSocket:\n{log}"
    );
}
