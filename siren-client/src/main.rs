//! `siren`: the Siren command-line client.

#![deny(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::io::BufRead as _;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context as _, bail};
use clap::{Parser, Subcommand};
use siren_api::Uid;
use siren_client::client::{ApprovalPrompt, Client, Credentials, Event, LoginOutcome};
use siren_client::driver::oneshot::OneShot;
use siren_client::fingerprint::fingerprint;
use siren_client::history::History;
use siren_client::profile::{Profile, Settings};
use siren_client::x509::ClientCert;
use siren_client::{note, say};
use siren_client_core::model::{Body, Chat, ChatMessage, FileProgress, MessageState};
use siren_proto::approval::ShortCode;
use siren_proto::ids::GroupId;
use siren_proto::keys::{SekPublic, UskPublic};
use siren_proto::message::{Notice, Presence, PresenceStatus};
use siren_proto::plaintext::{Plaintext, ReceiptState};
use siren_proto::roster::Contact;

mod groups_cmd;
use groups_cmd::GroupAction;
use siren_client_session::groups::GroupNews;

/// The Siren end-to-end encrypted IM client.
#[derive(Parser)]
#[command(name = "siren", version, about)]
struct Cli {
    /// Profile directory (one account on this device). Default: $SIREN_PROFILE or ~/.siren.
    #[arg(long, global = true)]
    profile: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Create a profile for an account. Without --server, the server is found through DNS
    /// (`_siren._tcp.<domain>` SRV and the `_siren-key.<domain>` TXT key).
    Init {
        /// The account, e.g. alice@alpha.test.
        uid: String,
        /// The server's address, host:port (skips the DNS SRV lookup), or its web listener's
        /// WebSocket, ws://host:port/ws (where only HTTP gets through; the session is
        /// authenticated by the server's key either way).
        #[arg(long)]
        server: Option<String>,
        /// The server's key (base64), as `sirend init` printed it. With DNS discovery, the key
        /// DNS publishes must match it; without it, the published key is pinned (first use).
        #[arg(long)]
        server_key: Option<String>,
        /// The DNS server to ask (host:port), instead of the system's resolver.
        #[arg(long)]
        dns: Option<std::net::SocketAddr>,
        /// Protect the keys with a passphrase (from SIREN_PASSPHRASE, or asked for).
        #[arg(long)]
        passphrase: bool,
    },
    /// Log in with the account's password (or a client certificate) and register this device.
    /// A new device of an account that has devices waits for one of them to approve it, shows
    /// the signing key it received, and asks (on standard input) whether you approved the code
    /// on one of your devices: answer y only if you did.
    Login {
        /// Read the password from the first line of standard input (the answer to the approval
        /// question, on a new device, is the next line).
        #[arg(long, conflicts_with = "cert")]
        password_stdin: bool,
        /// Log in with this client certificate (PEM: the certificate, then intermediates)
        /// instead of a password (mechanism X509).
        #[arg(long, requires = "key")]
        cert: Option<PathBuf>,
        /// The certificate's private key (PEM; PKCS#8 Ed25519 or P-256, or SEC1 P-256).
        #[arg(long, requires = "cert")]
        key: Option<PathBuf>,
        /// A name for this device, shown to the account's other devices.
        #[arg(long)]
        device_name: Option<String>,
        /// Send the password with this mechanism instead of PLAIN (same message format, for a
        /// password mechanism the server added as a plugin).
        #[arg(long, conflicts_with = "cert")]
        mechanism: Option<String>,
    },
    /// Send a text message to a user, or to a group.
    Send {
        /// The recipient, e.g. bob@beta.test; or a group (its id, first digits or title).
        uid: String,
        /// The text.
        text: String,
    },
    /// Print the messages waiting for this device, then exit.
    Recv,
    /// Stay connected and print messages (and watched contacts' presence) as they arrive.
    Listen {
        /// Publish this presence while connected: available, away, busy.
        #[arg(long)]
        status: Option<String>,
        /// Free text to go with the status.
        #[arg(long)]
        text: Option<String>,
        /// Watch a contact's presence (they must allow it); repeat for several.
        #[arg(long)]
        watch: Vec<String>,
    },
    /// The interactive chat (a terminal UI): conversations, receipts, typing, files, contact
    /// requests, safety numbers and device approvals. Reconnects by itself. `?` shows the keys.
    Chat {
        /// Where received files are saved (default: `downloads` in the profile directory).
        #[arg(long)]
        downloads: Option<std::path::PathBuf>,
        /// Do not tell others when you read their messages (delivery receipts still go).
        #[arg(long)]
        no_read_receipts: bool,
        /// Publish this presence while connected: available, away, busy.
        #[arg(long, default_value = "available")]
        status: String,
    },
    /// Show the local history: a conversation (the newest messages), a search, or the list of
    /// conversations. `send`, `recv` and `listen` keep it, sealed, in the profile.
    History {
        /// The other party, e.g. bob@beta.test, or a group (its title, id or first digits);
        /// without it: every conversation.
        uid: Option<String>,
        /// Only messages containing every one of these words (in any case).
        #[arg(long)]
        search: Option<String>,
        /// How many messages to show (the newest).
        #[arg(long, default_value_t = 50)]
        limit: usize,
    },
    /// Look a user up: verify every device record against one USK and compare with the cache.
    Lookup {
        /// The user.
        uid: String,
    },
    /// Show this profile's account and device.
    Whoami,
    /// The recovery key: the account's signing key, to keep offline for when no device is left.
    Recovery {
        #[command(subcommand)]
        action: RecoveryAction,
    },
    /// This account's devices.
    Devices {
        #[command(subcommand)]
        action: DeviceAction,
    },
    /// The Personal Roster: contacts and blocked users (signed by this account's USK).
    Contacts {
        #[command(subcommand)]
        action: ContactAction,
    },
    /// Groups: create, add, remove, leave, list, info, send.
    Group {
        #[command(subcommand)]
        action: GroupAction,
    },
}

#[derive(Subcommand)]
enum RecoveryAction {
    /// Print the recovery key (anyone holding it controls the account: keep it offline).
    Export,
    /// Store a recovery key in this (new) profile; then `siren login` registers this device
    /// without another device's approval.
    Import {
        /// The key `siren recovery export` printed.
        key: String,
    },
}

#[derive(Subcommand)]
enum DeviceAction {
    /// List the account's devices.
    List,
    /// Wait for a new device's approval request, compare codes, and send it the signing key.
    Approve {
        /// The code the new device shows (six digits); without it, you are asked.
        #[arg(long)]
        code: Option<String>,
        /// Read the code the new device shows from standard input once this device has computed
        /// its own (for scripts: the code is known only after the exchange started).
        #[arg(long, conflicts_with = "code")]
        code_stdin: bool,
        /// How long to wait for a request, in seconds.
        #[arg(long, default_value_t = 120)]
        wait: u64,
    },
    /// Wait for a new device's approval request and refuse it.
    Deny {
        /// How long to wait for a request, in seconds.
        #[arg(long, default_value_t = 120)]
        wait: u64,
    },
    /// Revoke a device (by the start of its fingerprint, as `devices list` shows it).
    Revoke {
        /// Fingerprint prefix, e.g. "3e44 28c4" or "3e4428c4".
        device: String,
    },
}

#[derive(Subcommand)]
enum ContactAction {
    /// List contacts and blocked users.
    List,
    /// Add (or update) a contact.
    Add {
        /// The contact.
        uid: String,
        /// A display name.
        #[arg(long)]
        name: Option<String>,
        /// Let this contact see your presence.
        #[arg(long)]
        presence: bool,
    },
    /// Remove a contact.
    Remove {
        /// The contact.
        uid: String,
    },
    /// Block a user: the server drops their messages and presence.
    Block {
        /// The user.
        uid: String,
    },
    /// Unblock a user.
    Unblock {
        /// The user.
        uid: String,
    },
}

fn profile_dir(arg: Option<PathBuf>) -> anyhow::Result<PathBuf> {
    if let Some(p) = arg {
        return Ok(p);
    }
    if let Some(p) = std::env::var_os("SIREN_PROFILE") {
        return Ok(PathBuf::from(p));
    }
    let home = std::env::var_os("HOME").context("set --profile, SIREN_PROFILE or HOME")?;
    Ok(PathBuf::from(home).join(".siren"))
}

fn passphrase(create: bool) -> anyhow::Result<Option<String>> {
    if let Ok(p) = std::env::var("SIREN_PASSPHRASE") {
        return Ok(Some(p));
    }
    if !create {
        return Ok(None);
    }
    let first = rpassword::prompt_password("New passphrase: ")?;
    let again = rpassword::prompt_password("Again: ")?;
    if first != again {
        bail!("the passphrases differ");
    }
    if first.is_empty() {
        bail!("empty passphrase");
    }
    Ok(Some(first))
}

/// A presence status as people type it.
fn parse_status(status: &str) -> anyhow::Result<PresenceStatus> {
    Ok(match status {
        "available" => PresenceStatus::Available,
        "away" => PresenceStatus::Away,
        "busy" => PresenceStatus::Busy,
        other => bail!("--status must be available, away or busy, not {other:?}"),
    })
}

fn open_profile(dir: &std::path::Path) -> anyhow::Result<Profile> {
    let profile = Profile::open(dir, std::env::var("SIREN_PASSPHRASE").ok())?;
    if profile.is_encrypted()? && std::env::var_os("SIREN_PASSPHRASE").is_none() {
        let p = rpassword::prompt_password("Passphrase: ")?;
        drop(profile);
        return Profile::open(dir, Some(p));
    }
    Ok(profile)
}

/// `siren login`'s side of an approval: the code and the arrived signing key on stdout, the
/// person's confirmation from stdin (the terminal, or the line after the password with
/// `--password-stdin`).
struct LoginPrompt;

impl ApprovalPrompt for LoginPrompt {
    fn show_code(&mut self, code: ShortCode) {
        say!("approval code: {code}");
        say!("compare it with the code on your other device, and approve there");
    }

    async fn confirm(&mut self, code: ShortCode, usk: &UskPublic) -> bool {
        say!(
            "signing key {} received; your other devices show theirs (siren whoami): they must match",
            fingerprint(usk.as_bytes())
        );
        say!("did you approve code {code} on one of your other devices? [y/N]");
        let mut line = String::new();
        if std::io::stdin().lock().read_line(&mut line).is_err() {
            return false;
        }
        matches!(line.trim().to_ascii_lowercase().as_str(), "y" | "yes")
    }
}

/// Tells the user about devices of a contact that appeared or disappeared since the last lookup.
fn warn_changes(uid: &Uid, report: &siren_client::client::LookupReport) {
    for d in &report.removed {
        note!(
            "note: device {} of {uid} is gone; it is treated as revoked",
            fingerprint(d.as_bytes())
        );
    }
    if !report.added.is_empty() && !report.first {
        for d in &report.added {
            note!(
                "note: {uid} has a new device {}; if unexpected, compare safety numbers (siren lookup {uid})",
                fingerprint(d.as_bytes())
            );
        }
    }
}

/// One message's content as the one-shot commands print it; `from` names who wrote it.
fn print_content(from: &str, content: &Plaintext) {
    match content {
        Plaintext::Text { body, .. } => say!("{from}: {body}"),
        Plaintext::Receipt { state, ids, .. } => {
            let what = match state {
                ReceiptState::Delivered => "received",
                ReceiptState::Read => "read",
            };
            // Status, not a message: on stderr, beside the notices, so that standard output
            // stays the messages.
            let n = ids.len();
            note!(
                "* {from} {what} {n} of your message{}",
                if n == 1 { "" } else { "s" }
            );
        }
        Plaintext::File(f) => say!(
            "{from}: [file] {} ({} bytes; `siren chat` receives files)",
            f.name,
            f.size
        ),
        // The chunks of a file: `siren chat` assembles them.
        Plaintext::FileChunk { .. } | Plaintext::Typing { .. } => {}
        Plaintext::Edit { of, body, .. } => {
            say!("{from} (edit of {}): {body}", of.to_hex())
        }
        Plaintext::Delete { of, .. } => say!("* {from} withdrew message {}", of.to_hex()),
        // What another device of this account sent.
        Plaintext::Copy { to, msg, .. } => print_content(&format!("you (to {to})"), msg),
        Plaintext::Unsupported { kind } => {
            say!("{from}: (unsupported message of type {kind:?}; a newer client can show it)")
        }
        _ => say!("{from}: (unsupported message)"),
    }
}

fn print_event(event: &Event, me: &Uid) {
    match event {
        // A copy counts only from this account's own devices (anyone else's is ignored, as the
        // history and the client core ignore it).
        Event::Message(m) => match &m.content {
            Plaintext::Copy { .. } if m.from != *me => {}
            // Another device of this account marked messages read: nothing to say.
            Plaintext::Receipt { .. } if m.from == *me => {}
            content => print_content(&m.from.to_string(), content),
        },
        Event::Signal(m) => match &m.content {
            Plaintext::Typing { typing: true } => say!("* {} is typing", m.from),
            Plaintext::Typing { typing: false } => say!("* {} stopped typing", m.from),
            _ => {}
        },
        Event::Refused { from, reason } => {
            note!("refused a message claiming to be from {from}: {reason}")
        }
        Event::Notice(Notice::ContactRequest { from }) => note!(
            "contact request from {from} (accept: siren contacts add {from}; refuse: siren contacts block {from})"
        ),
        Event::Notice(Notice::DirectoryChanged { uid, .. }) => {
            note!("the devices of {uid} changed (senders re-check them; see: siren lookup {uid})")
        }
        Event::Notice(Notice::ApprovalRequest { name, .. }) => note!(
            "a new device ({}) asks to join this account: siren devices approve",
            name.as_deref().unwrap_or("unnamed")
        ),
        Event::Notice(Notice::Undeliverable {
            id,
            to,
            code,
            reason,
        }) => {
            let name = siren_api::ErrorCode::from_u16(*code).map_or("unknown", |c| c.name());
            note!(
                "message {} to {to} was not delivered and will not be: {reason} ({name}, {code})",
                id.to_hex()
            )
        }
        Event::Notice(n) => note!("notice: {n:?}"),
        Event::Drained => note!("(no more queued messages)"),
        // Checked by the session: the sender is a member of the version held.
        Event::GroupMessage { group, message } => {
            if let Plaintext::Group { msg, .. } = &message.content {
                print_content(&format!("[{group}] {}", message.from), msg);
            }
        }
        Event::Group(news) => match news.news {
            GroupNews::Refused { .. } | GroupNews::Gap { .. } => note!("{}", news.describe()),
            _ => say!("* {}", news.describe()),
        },
        Event::Presence { from, presence } => {
            let status = match presence.status {
                PresenceStatus::Available => "available",
                PresenceStatus::Away => "away",
                PresenceStatus::Busy => "busy",
                _ => "offline",
            };
            match &presence.text {
                Some(t) => say!("* {from} is {status} ({t})"),
                None => say!("* {from} is {status}"),
            }
        }
    }
}

/// This device's clock, in milliseconds since the Unix epoch.
fn now_millis() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// Opens the history for a command whose main job is messaging: if it cannot be opened, the
/// command goes on without it and says so.
async fn history_or_warn(client: &mut Client) -> Option<History> {
    match siren_client::client::history(client).await {
        Ok(h) => Some(h),
        Err(e) => {
            note!("warning: the local history cannot be opened, nothing is kept: {e:#}");
            None
        }
    }
}

/// The client core behind a one-shot command (receipts, the history), or none — said once —
/// if it cannot start: the command then only prints.
async fn one_shot(client: &mut Client) -> Option<OneShot> {
    let history = history_or_warn(client).await;
    match OneShot::start(client, history).await {
        Ok((one, warnings)) => {
            for w in warnings {
                note!("warning: {w}");
            }
            Some(one)
        }
        Err(e) => {
            note!("warning: nothing is kept in the history or receipted: {e:#}");
            None
        }
    }
}

/// Takes in (and prints, as `siren recv` does) what waits in the queue: group changes first of
/// all, so that what is done next starts from the newest version this device can know.
async fn take_in(client: &mut Client) -> anyhow::Result<()> {
    let me = client.uid().clone();
    let mut one = one_shot(client).await;
    while let Some(event) = client.next_event(true).await? {
        print_and_keep(&event, &me, &mut one);
    }
    flush(&mut one, client).await;
    Ok(())
}

/// Prints an event and hands it to the core.
fn print_and_keep(event: &Event, me: &Uid, one: &mut Option<OneShot>) {
    print_event(event, me);
    if let Some(one) = one.as_mut() {
        one.event(event);
    }
}

/// Carries out what the core asks for after what was printed (receipts, history).
async fn flush(one: &mut Option<OneShot>, client: &mut Client) {
    if let Some(one) = one.as_mut() {
        for w in one.flush(client).await {
            note!("warning: {w}");
        }
    }
}

/// `2024-05-01 12:34:56Z` (UTC) for milliseconds since the epoch.
fn utc(millis: u64) -> String {
    let secs = millis / 1000;
    let (days, rem) = (secs / 86_400, secs % 86_400);
    // Days to the civil date (H. Hinnant's algorithm), for dates after 1970.
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z % 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + u64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02}Z",
        rem / 3600,
        rem / 60 % 60,
        rem % 60
    )
}

/// One history line: `time  who  state  text` (escaped by `say!` like everything printed).
/// `with_peer`: lines of several conversations, each says which; `groups` names the groups.
fn print_record(m: &ChatMessage, with_peer: bool, groups: &BTreeMap<GroupId, String>) {
    let group = m.group.map(|g| {
        groups
            .get(&g)
            .cloned()
            .unwrap_or_else(|| siren_client_session::groups::display_name(&g, ""))
    });
    let who = match (m.outgoing, with_peer, &group) {
        (true, true, Some(group)) => format!("me -> [{group}]"),
        (true, true, None) => format!("me -> {}", m.peer),
        (true, false, _) => "me".to_owned(),
        (false, true, Some(group)) => format!("[{group}] {}", m.peer),
        (false, _, _) => m.peer.to_string(),
    };
    if let Body::Event(text) = &m.body {
        match group {
            Some(group) if with_peer => say!("{}  * [{group}] {text}", utc(m.at)),
            _ => say!("{}  * {text}", utc(m.at)),
        }
        return;
    }
    let state = match &m.state {
        MessageState::Sending => "sending",
        MessageState::Sent => "sent",
        MessageState::Delivered => "delivered",
        MessageState::Read => "read",
        MessageState::Failed(_) => "failed",
        MessageState::Unread => "unread",
        MessageState::Seen => "seen",
    };
    let text = match &m.body {
        Body::Text(t) if m.edited => format!("{t} (edited)"),
        Body::Text(t) => t.clone(),
        Body::File {
            name,
            size,
            progress,
            ..
        } => {
            let progress = match progress {
                FileProgress::Sending { sent, of } => format!("sending {sent}/{of}"),
                FileProgress::Sent => "sent".into(),
                FileProgress::Receiving { have, of } => format!("receiving {have}/{of}"),
                FileProgress::Complete => "complete".into(),
                FileProgress::Saved { path } => format!("saved as {path}"),
                FileProgress::Failed(why) => format!("failed: {why}"),
            };
            format!("[file {name:?}, {size} bytes, {progress}]")
        }
        Body::Deleted => "(deleted)".into(),
        Body::Unsupported(kind) => format!("(unsupported message of type {kind:?})"),
        Body::Event(text) => text.clone(),
    };
    match &m.state {
        MessageState::Failed(why) => {
            say!("{}  {who}  {state} ({why})  {text}", utc(m.at))
        }
        _ => say!("{}  {who}  {state}  {text}", utc(m.at)),
    }
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    let dir = profile_dir(cli.profile)?;
    match cli.command {
        Command::Init {
            uid,
            server,
            server_key,
            dns,
            passphrase: protect,
        } => {
            let uid = Uid::parse(&uid).context("the account")?;
            let given = server_key
                .as_deref()
                .map(|k| SekPublic::from_base64(k).context("--server-key"))
                .transpose()?;
            let (server, server_key, fallback) = match (server, given) {
                (Some(server), Some(key)) => (server, key, Vec::new()),
                (server, given) => discover_server(&uid, server, given, dns).await?,
            };
            let server_key = server_key.to_base64();
            let settings = Settings {
                uid: uid.clone(),
                server,
                fallback,
                server_key,
            };
            let pass = if protect { passphrase(true)? } else { None };
            Profile::create(&dir, settings, pass)?;
            say!("created the profile for {uid} in {}", dir.display());
        }
        Command::Login {
            password_stdin,
            cert,
            key,
            device_name,
            mechanism,
        } => {
            let certificate = match (cert, key) {
                (Some(cert), Some(key)) => Some(ClientCert::load(&cert, &key)?),
                _ => None,
            };
            let password = if certificate.is_some() {
                String::new()
            } else if password_stdin {
                let mut line = String::new();
                std::io::stdin().lock().read_line(&mut line)?;
                line.trim_end_matches(['\r', '\n']).to_owned()
            } else {
                rpassword::prompt_password("Password: ")?
            };
            let credentials = match &certificate {
                Some(cert) => Credentials::Certificate(cert),
                None => match &mechanism {
                    Some(mechanism) => Credentials::PasswordVia {
                        mechanism,
                        password: &password,
                    },
                    None => Credentials::Password(&password),
                },
            };
            let mut client = siren_client::client::open(open_profile(&dir)?)?;
            let (outcome, drained) = client
                .login_with(credentials, device_name, &mut LoginPrompt)
                .await?;
            let uid = client.uid().clone();
            let mut one = one_shot(&mut client).await;
            for event in &drained {
                print_and_keep(event, &uid, &mut one);
            }
            flush(&mut one, &mut client).await;
            match outcome {
                LoginOutcome::CreatedUser => {
                    say!("logged in as {uid}; created the account's signing key on this device")
                }
                LoginOutcome::Registered => say!("logged in as {uid}; registered this device"),
                LoginOutcome::Approved => {
                    say!(
                        "logged in as {uid}; approved by another device, which sent the signing key"
                    )
                }
                LoginOutcome::AlreadyRegistered => say!("logged in as {uid}"),
            }
            client.bye().await?;
        }
        // A name without `@` is a group (its id, first digits or title).
        Command::Send { uid, text } if !uid.contains('@') => {
            let mut client = siren_client::client::open(open_profile(&dir)?)?;
            client.connect().await?;
            take_in(&mut client).await?;
            groups_cmd::send(&mut client, &uid, &text).await?;
            client.bye().await?;
        }
        Command::Send { uid, text } => {
            let to = Uid::parse(&uid).context("the recipient")?;
            let mut client = siren_client::client::open(open_profile(&dir)?)?;
            client.connect().await?;
            let mut history = history_or_warn(&mut client).await;
            let (id, devices) = client.send_text(&to, &text).await?;
            if let Some(report) = client.last_lookup() {
                warn_changes(&to, report);
            }
            if let Some(h) = history.as_mut()
                && let Err(e) = h.record_sent(
                    &client.uid().clone(),
                    &Chat::User(to.clone()),
                    id,
                    &text,
                    now_millis(),
                )
            {
                note!("warning: the message was sent but not kept in the history: {e}");
            }
            say!(
                "sent {id} to {to} ({devices} device{})",
                if devices == 1 { "" } else { "s" }
            );
            client.bye().await?;
        }
        Command::Recv => {
            let mut client = siren_client::client::open(open_profile(&dir)?)?;
            client.connect().await?;
            let me = client.uid().clone();
            let mut one = one_shot(&mut client).await;
            while let Some(event) = client.next_event(true).await? {
                print_and_keep(&event, &me, &mut one);
            }
            flush(&mut one, &mut client).await;
            client.bye().await?;
        }
        Command::Listen {
            status,
            text,
            watch,
        } => {
            let mut client = siren_client::client::open(open_profile(&dir)?)?;
            client.connect().await?;
            let watch = watch
                .iter()
                .map(|u| Uid::parse(u).with_context(|| format!("--watch {u:?}")))
                .collect::<anyhow::Result<Vec<_>>>()?;
            if !watch.is_empty() {
                client.subscribe(&watch).await?;
            }
            if let Some(status) = status {
                let status = parse_status(&status)?;
                client.publish(Presence { status, text }).await?;
            }
            let me = client.uid().clone();
            let mut one = one_shot(&mut client).await;
            note!("listening as {me} (Ctrl-C to stop)");
            let mut ping = tokio::time::interval(Duration::from_secs(60));
            ping.tick().await;
            loop {
                tokio::select! {
                    event = client.next_event(false) => match event? {
                        Some(e) => {
                            print_and_keep(&e, &me, &mut one);
                            flush(&mut one, &mut client).await;
                        }
                        None => break,
                    },
                    _ = ping.tick() => client.ping().await?,
                    _ = tokio::signal::ctrl_c() => break,
                }
            }
            client.bye().await?;
        }
        Command::Chat {
            downloads,
            no_read_receipts,
            status,
        } => {
            let presence = parse_status(&status)?;
            let profile = open_profile(&dir)?;
            let mut client = siren_client::client::open(profile)?;
            if client.device().is_none() {
                bail!("this profile is not logged in: run `siren login` first");
            }
            let history = history_or_warn(&mut client).await;
            let options = siren_client::driver::Options {
                downloads: downloads.unwrap_or_else(|| dir.join("downloads")),
                read_receipts: !no_read_receipts,
                presence,
            };
            let (handle, task) = siren_client::driver::start(client, history, options);
            let requests = handle.sender();
            let ui = siren_client::chat::run_chat(handle).await;
            requests.request(siren_client::driver::Request::Quit);
            let driver = match tokio::time::timeout(Duration::from_secs(5), task).await {
                Ok(joined) => joined.context("the chat session stopped abnormally")?,
                Err(_) => Ok(()), // Quitting must not hang on a dead network.
            };
            ui?;
            driver?;
        }
        Command::History { uid, search, limit } => {
            let mut client = siren_client::client::open(open_profile(&dir)?)?;
            let groups: BTreeMap<GroupId, String> = client
                .groups()
                .await?
                .into_iter()
                .map(|(id, record)| {
                    let title = record
                        .current()
                        .map(|s| s.title.clone())
                        .unwrap_or_default();
                    (id, siren_client_session::groups::display_name(&id, &title))
                })
                .collect();
            // A name without `@` is a group (its id, first digits or title).
            let chat = match uid {
                None => None,
                Some(u) if u.contains('@') => Some(Chat::User(
                    Uid::parse(&u).with_context(|| format!("{u:?}"))?,
                )),
                Some(g) => Some(Chat::Group(client.find_group(&g).await?.0)),
            };
            let history = siren_client::client::history(&mut client).await?;
            let shown = |chat: &Chat| match chat {
                Chat::User(uid) => uid.to_string(),
                Chat::Group(g) => groups
                    .get(g)
                    .cloned()
                    .unwrap_or_else(|| siren_client_session::groups::display_name(g, "")),
            };
            match (&chat, &search) {
                (chat, Some(words)) => {
                    let found = history.search(words, chat.as_ref(), limit)?;
                    if found.is_empty() {
                        note!("nothing found");
                    }
                    for m in &found {
                        print_record(m, chat.is_none(), &groups);
                    }
                }
                (Some(chat), None) => {
                    let (page, more) = history.page(chat, None, limit)?;
                    if more {
                        note!("(older messages not shown: raise --limit)");
                    }
                    if page.is_empty() {
                        match chat {
                            Chat::User(peer) => note!("no messages with {peer}"),
                            Chat::Group(_) => note!("no messages in {}", shown(chat)),
                        }
                    }
                    for m in &page {
                        print_record(m, false, &groups);
                    }
                }
                (None, None) => {
                    let conversations = history.conversations()?;
                    if conversations.is_empty() {
                        note!("no conversations yet");
                    }
                    for c in conversations.iter().take(limit) {
                        say!(
                            "{}  {}  {} message{}",
                            utc(c.last.at),
                            shown(&c.chat),
                            c.count,
                            if c.count == 1 { "" } else { "s" }
                        );
                    }
                }
            }
        }
        Command::Lookup { uid } => {
            let uid = Uid::parse(&uid).context("the user")?;
            let mut client = siren_client::client::open(open_profile(&dir)?)?;
            client.connect().await?;
            let report = client.lookup(&uid).await?;
            let d = &report.directory;
            say!("{uid}: signing key {}", fingerprint(d.usk().as_bytes()));
            if let Some(usk) = client.usk() {
                let me = client.uid().clone();
                let number =
                    siren_proto::approval::safety_number((&me, &usk.public()), (&uid, d.usk()));
                say!("  safety number with {me}: {number}");
            }
            for record in d.devices() {
                let new = if report.added.contains(&record.dek) {
                    "  (new)"
                } else {
                    ""
                };
                say!(
                    "  device {}  {}{new}",
                    fingerprint(record.dek.as_bytes()),
                    record.name.as_deref().unwrap_or("")
                );
            }
            for gone in &report.removed {
                say!(
                    "  device {}  (removed: treated as revoked)",
                    fingerprint(gone.as_bytes())
                );
            }
            client.bye().await?;
        }
        Command::Recovery { action } => {
            let mut client = siren_client::client::open(open_profile(&dir)?)?;
            match action {
                RecoveryAction::Export => say!("{}", client.recovery_key()?),
                RecoveryAction::Import { key } => {
                    let usk = client.import_recovery_key(&key).await?;
                    say!(
                        "stored the signing key {}; now run `siren login`",
                        fingerprint(usk.as_bytes())
                    );
                }
            }
        }
        Command::Devices { action } => {
            let mut client = siren_client::client::open(open_profile(&dir)?)?;
            client.connect().await?;
            let me = client.uid().clone();
            match action {
                DeviceAction::List => {
                    let report = client.lookup(&me).await?;
                    say!(
                        "signing key {}",
                        fingerprint(report.directory.usk().as_bytes())
                    );
                    let mine = client.device();
                    for record in report.directory.devices() {
                        let this = if Some(record.dek) == mine {
                            "  (this device)"
                        } else {
                            ""
                        };
                        say!(
                            "{}  {}{this}",
                            fingerprint(record.dek.as_bytes()),
                            record.name.as_deref().unwrap_or("")
                        );
                    }
                }
                DeviceAction::Approve {
                    code,
                    code_stdin,
                    wait,
                } => {
                    let expected =
                        code.map(|c| c.chars().filter(char::is_ascii_digit).collect::<String>());
                    let mut decide =
                        |name: Option<&str>, shown: siren_proto::approval::ShortCode| {
                            let digits = format!("{:06}", shown.value());
                            note!("new device {}: code {shown}", name.unwrap_or("(unnamed)"));
                            if code_stdin {
                                let mut line = String::new();
                                if std::io::stdin().lock().read_line(&mut line).is_err() {
                                    return false;
                                }
                                let given: String =
                                    line.chars().filter(char::is_ascii_digit).collect();
                                return given == digits;
                            }
                            match &expected {
                                Some(c) => c == &digits,
                                None => rpassword::prompt_password(
                                    "Does the new device show the same code? [y/N] ",
                                )
                                .map(|a| a.trim().eq_ignore_ascii_case("y"))
                                .unwrap_or(false),
                            }
                        };
                    if client
                        .approve_next(Duration::from_secs(wait), &mut decide)
                        .await?
                    {
                        let usk = client.usk().context("this device has no signing key")?;
                        say!(
                            "approved: the new device received the signing key {}; it must show the same",
                            fingerprint(usk.public().as_bytes())
                        );
                    } else {
                        client.bye().await?;
                        bail!(
                            "the codes did not match (or you refused): the new device was denied"
                        );
                    }
                }
                DeviceAction::Deny { wait } => {
                    client
                        .approve_next(Duration::from_secs(wait), &mut |_, _| false)
                        .await?;
                    say!("denied");
                }
                DeviceAction::Revoke { device } => {
                    let prefix: String = device.chars().filter(|c| !c.is_whitespace()).collect();
                    let report = client.lookup(&me).await?;
                    let matches: Vec<_> = report
                        .directory
                        .devices()
                        .filter(|r| {
                            fingerprint(r.dek.as_bytes())
                                .replace(' ', "")
                                .starts_with(&prefix)
                        })
                        .map(|r| r.dek)
                        .collect();
                    let [target] = matches.as_slice() else {
                        bail!(
                            "{} devices match {device:?}; give more of the fingerprint",
                            matches.len()
                        );
                    };
                    if Some(*target) == client.device() {
                        bail!("this is the device you are using; revoke it from another one");
                    }
                    client.revoke(target).await?;
                    say!("revoked {}", fingerprint(target.as_bytes()));
                }
            }
            client.bye().await?;
        }
        Command::Group { action } => {
            let mut client = siren_client::client::open(open_profile(&dir)?)?;
            client.connect().await?;
            take_in(&mut client).await?;
            groups_cmd::run(&mut client, action).await?;
            client.bye().await?;
        }
        Command::Contacts { action } => {
            let mut client = siren_client::client::open(open_profile(&dir)?)?;
            client.connect().await?;
            let parse = |u: &str| Uid::parse(u).with_context(|| format!("{u:?}"));
            match action {
                ContactAction::List => match client.roster().await? {
                    None => say!("no contacts"),
                    Some(r) => {
                        for c in &r.contacts {
                            let name = c
                                .name
                                .as_deref()
                                .map(|n| format!(" ({n})"))
                                .unwrap_or_default();
                            let presence = if c.presence {
                                "  sees your presence"
                            } else {
                                ""
                            };
                            say!("contact {}{name}{presence}", c.uid);
                        }
                        for b in &r.blocked {
                            say!("blocked {b}");
                        }
                    }
                },
                ContactAction::Add {
                    uid,
                    name,
                    presence,
                } => {
                    let uid = parse(&uid)?;
                    let shown = uid.clone();
                    client
                        .edit_roster(move |contacts, blocked| {
                            blocked.retain(|b| b != &uid);
                            contacts.retain(|c| c.uid != uid);
                            contacts.push(Contact {
                                uid,
                                name,
                                presence,
                            });
                            Ok(())
                        })
                        .await?;
                    say!("added {shown}");
                }
                ContactAction::Remove { uid } => {
                    let uid = parse(&uid)?;
                    client
                        .edit_roster(|contacts, _| {
                            let before = contacts.len();
                            contacts.retain(|c| c.uid != uid);
                            if contacts.len() == before {
                                bail!("{uid} is not a contact");
                            }
                            Ok(())
                        })
                        .await?;
                    say!("removed");
                }
                ContactAction::Block { uid } => {
                    let uid = parse(&uid)?;
                    let shown = uid.clone();
                    client
                        .edit_roster(move |contacts, blocked| {
                            contacts.retain(|c| c.uid != uid);
                            if !blocked.contains(&uid) {
                                blocked.push(uid);
                            }
                            Ok(())
                        })
                        .await?;
                    say!("blocked {shown}");
                }
                ContactAction::Unblock { uid } => {
                    let uid = parse(&uid)?;
                    client
                        .edit_roster(|_, blocked| {
                            let before = blocked.len();
                            blocked.retain(|b| b != &uid);
                            if blocked.len() == before {
                                bail!("{uid} is not blocked");
                            }
                            Ok(())
                        })
                        .await?;
                    say!("unblocked");
                }
            }
            client.bye().await?;
        }
        Command::Whoami => {
            let client = siren_client::client::open(open_profile(&dir)?)?;
            say!("{}", client.uid());
            match client.device() {
                Some(d) => say!("device {}", fingerprint(d.as_bytes())),
                None => say!("not logged in"),
            }
            if let Some(usk) = client.usk() {
                say!("signing key {}", fingerprint(usk.public().as_bytes()));
            }
        }
    }
    Ok(())
}

/// Finds the account's server through DNS (PROTOCOL.md §4): the SRV targets in order until one
/// accepts a connection (unless `server` is given), and the published key, which must match
/// `given` if there is one, or is pinned from now on. Also the addresses of the other targets
/// (a server on several nodes), to try when the first is down.
async fn discover_server(
    uid: &Uid,
    server: Option<String>,
    given: Option<SekPublic>,
    dns: Option<std::net::SocketAddr>,
) -> anyhow::Result<(String, SekPublic, Vec<String>)> {
    use siren_net::discovery::{self, Resolver, ResolverConfig};
    let config = ResolverConfig {
        nameservers: dns.into_iter().collect(),
        ..ResolverConfig::default()
    };
    let resolver = Resolver::new(&config)?;
    let domain = uid.server();
    let found = discovery::discover(&resolver, domain)
        .await
        .with_context(|| format!("cannot find the server of {domain} in DNS"))?;
    let key = match given {
        Some(key) if found.publishes(&key) => key,
        Some(_) => bail!(
            "DNS publishes another key for {domain} than --server-key: refusing (check with the server's operator)"
        ),
        None => match found.keys.as_slice() {
            [key] => *key,
            _ => bail!(
                "DNS publishes {} keys for {domain} (a key rotation?); give the current one with --server-key",
                found.keys.len()
            ),
        },
    };
    let (server, fallback) = match server {
        Some(server) => (server, Vec::new()),
        None => {
            let reached =
                discovery::connect_any(&resolver, &found.targets, Duration::from_secs(5)).await?;
            say!("found {domain} at {} ({})", reached.target, reached.addr);
            let others: Vec<String> = discovery::resolve_all(&resolver, &found.targets)
                .await
                .into_iter()
                .filter(|a| *a != reached.addr)
                .map(|a| a.to_string())
                .collect();
            if !others.is_empty() {
                say!(
                    "{domain} has {} other node{}, tried in turn when it is down: {}",
                    others.len(),
                    if others.len() == 1 { "" } else { "s" },
                    others.join(", ")
                );
            }
            (reached.addr.to_string(), others)
        }
    };
    if given.is_none() {
        say!("pinned the key DNS publishes for {domain}: {key}");
    }
    Ok((server, key, fallback))
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            note!("siren: {e}");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            note!("siren: {e:#}");
            ExitCode::FAILURE
        }
    }
}
