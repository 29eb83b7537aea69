//! The driver's task: connect (resuming the session), run it until it fails or the person
//! quits, then wait with exponential backoff and try again. The person's requests are taken in
//! all the while; what must go to the server waits for the next connection.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::pin::pin;
use std::time::Duration;

use futures_channel::mpsc;
use futures_util::StreamExt as _;
use futures_util::future::{Either, select};
use siren_api::Uid;
use siren_client_core::Core;
use siren_client_core::effect::Effect;
use siren_client_core::model::{Banner, Millis, Status};
use siren_proto::message::Presence;

use super::{Device, Files, History, Options, Request, Snapshot};
use crate::{Approving, Client, Platform, ServerRefused, Store};

/// The first wait after a lost connection; doubled after each failed attempt.
const BACKOFF_START: Duration = Duration::from_secs(1);
/// The longest wait between attempts.
const BACKOFF_MAX: Duration = Duration::from_secs(60);
/// A session that lasted this long resets the backoff.
const STABLE: Duration = Duration::from_secs(30);
/// Ping after this long without traffic (PROTOCOL.md §10.3).
const PING_AFTER: Duration = Duration::from_secs(60);
/// The core's clock ticks (typing expiry, countdowns) this often.
const TICK: Duration = Duration::from_secs(1);
/// Messages loaded per page of history.
pub const PAGE: usize = 50;
/// Conversations loaded from the history at start (the most recent first).
const RECENT: usize = 200;

/// How a session ended without an error.
enum End {
    /// The person quit.
    Quit,
}

/// What woke the session's loop.
#[allow(clippy::large_enum_variant)] // one at a time, moved straight into its handler
enum Wake {
    Request(Option<Request>),
    Server(anyhow::Result<siren_proto::message::ServerMessage>),
    Tick,
}

/// The driver's state.
pub(super) struct Driver<S: Store, P: Platform, H, F, U> {
    pub(super) client: Client<S, P>,
    pub(super) core: Core,
    pub(super) history: Option<H>,
    pub(super) files: F,
    pub(super) options: Options,
    requests: mpsc::UnboundedReceiver<Request>,
    publish: U,
    /// What was published last (an unchanged state is not published again).
    published: Option<Snapshot>,
    /// Effects that need the server, waiting for a connection (in order).
    pub(super) waiting: VecDeque<Effect>,
    /// Device approvals in progress on this device.
    pub(super) approving: BTreeMap<[u8; 32], Approving>,
    /// Safety numbers with the users whose keys are known (verified listing cached).
    pub(super) safety: BTreeMap<Uid, String>,
    /// Contacts whose presence subscription was refused (they had not accepted this user yet):
    /// tried again when something arrives from them.
    pub(super) unsubscribed: BTreeSet<Uid>,
    connection: String,
    /// This account's devices, as last verified.
    pub(super) devices: Vec<Device>,
}

impl<S: Store, P: Platform, H: History, F: Files, U: FnMut(Snapshot)> Driver<S, P, H, F, U> {
    pub(super) fn new(
        client: Client<S, P>,
        history: Option<H>,
        files: F,
        options: Options,
        requests: mpsc::UnboundedReceiver<Request>,
        publish: U,
    ) -> Self {
        let me = client.uid().clone();
        let core = Core::new(
            me.clone(),
            options.read_receipts,
            &mut siren_proto::os_rng(),
        );
        Driver {
            client,
            core,
            history,
            files,
            options,
            requests,
            publish,
            published: None,
            waiting: VecDeque::new(),
            approving: BTreeMap::new(),
            safety: BTreeMap::new(),
            unsubscribed: BTreeSet::new(),
            connection: connecting(&me),
            devices: Vec::new(),
        }
    }

    /// Now, by the platform's clock.
    pub(super) fn now(&self) -> Millis {
        self.client.platform().now_millis()
    }

    /// Fills the conversation list from the history (the newest messages of each).
    pub(super) async fn load_recent(&mut self) {
        let Some(history) = &self.history else { return };
        let mut problem = None;
        match history.chats().await {
            Ok(chats) => {
                for chat in chats.into_iter().take(RECENT) {
                    match history.page(&chat, None, PAGE).await {
                        Ok((msgs, more)) => self.core.history_loaded(&chat, msgs, more),
                        Err(e) => problem = Some(format!("cannot read the history: {e:#}")),
                    }
                }
            }
            Err(e) => problem = Some(format!("cannot read the history: {e:#}")),
        }
        if let Some(why) = problem {
            self.problem(why);
        }
        self.refresh_groups().await;
        self.publish();
    }

    /// Gives the core the groups this device holds, as held now.
    pub(super) async fn refresh_groups(&mut self) {
        match self.client.group_summaries().await {
            Ok(groups) => self.core.set_groups(groups),
            Err(e) => self.problem(format!("cannot read this device's groups: {e:#}")),
        }
    }

    pub(super) fn problem(&mut self, why: String) {
        self.core.banner(Banner::Problem(why));
    }

    fn snapshot(&self) -> Snapshot {
        let view = self.core.view().clone();
        let messages = view
            .conversations
            .iter()
            .map(|c| (c.chat.clone(), self.core.messages(&c.chat).to_vec()))
            .collect();
        Snapshot {
            view,
            messages,
            safety: self.safety.clone(),
            connection: self.connection.clone(),
            devices: self.devices.clone(),
        }
    }

    fn publish(&mut self) {
        let snapshot = self.snapshot();
        if self.published.as_ref() != Some(&snapshot) {
            self.published = Some(snapshot.clone());
            (self.publish)(snapshot);
        }
    }

    /// The task's body.
    pub(super) async fn run(&mut self) -> anyhow::Result<()> {
        let mut backoff = BACKOFF_START;
        loop {
            self.core.set_status(Status::Connecting);
            self.connection = format!("connecting to {}", self.client.uid().server());
            self.publish();
            let started = self.now();
            let why = match self.session().await {
                Ok(End::Quit) => {
                    let _ = self.client.bye().await;
                    self.publish();
                    return Ok(());
                }
                Err(e) => e,
            };
            self.client.disconnect();
            if let Some(refused) = why.downcast_ref::<ServerRefused>()
                && is_final(refused.code)
            {
                self.connection = format!("disconnected: {refused}");
                self.core.set_status(Status::Offline {
                    retry_in: 0,
                    why: refused.to_string(),
                });
                self.publish();
                return Err(why);
            }
            if format!("{why:#}").contains("no longer knows this session") {
                self.connection = format!("{why:#}");
                self.publish();
                return Err(why);
            }
            if self.now().saturating_sub(started) >= STABLE.as_millis() as u64 {
                backoff = BACKOFF_START;
            }
            if self.wait(backoff, &format!("{why:#}")).await {
                let _ = self.client.bye().await;
                return Ok(());
            }
            backoff = (backoff * 2).min(BACKOFF_MAX);
        }
    }

    /// Waits `delay` before the next attempt, taking in the person's requests. Returns true
    /// if the person quit.
    async fn wait(&mut self, delay: Duration, why: &str) -> bool {
        let deadline = self.now() + delay.as_millis() as u64;
        loop {
            let left = deadline.saturating_sub(self.now());
            if left == 0 {
                return false;
            }
            let retry_in = left.div_ceil(1000);
            self.connection = format!("offline: {why}; retrying in {retry_in} s");
            self.core.set_status(Status::Offline {
                retry_in,
                why: why.to_owned(),
            });
            self.offline_effects().await;
            self.publish();
            // Wake at the next whole second of the countdown (or the deadline).
            let step = Duration::from_millis(left.min(TICK.as_millis() as u64));
            let tick = pin!(self.client.platform().sleep(step));
            match select(pin!(self.requests.next()), tick).await {
                Either::Left((None | Some(Request::Quit), _)) => return true,
                Either::Left((Some(req), _)) => self.request(req, false).await,
                Either::Right(((), _)) => {
                    let now = self.now();
                    self.core.tick(now);
                }
            }
        }
    }

    /// One session: connect, set up, then serve until it fails or the person quits.
    async fn session(&mut self) -> anyhow::Result<End> {
        self.client.connect().await?;
        self.refresh_roster().await?;
        self.refresh_devices().await;
        let status = self.options.presence;
        self.client.publish(Presence { status, text: None }).await?;
        self.core.set_status(Status::Online);
        self.connection = format!("connected as {}", self.client.uid());
        let mut last_traffic = self.now();
        let mut next_tick = self.now() + TICK.as_millis() as u64;
        loop {
            self.online_effects().await?;
            // What was processed is acknowledged before waiting (the server then drops it).
            self.client.flush_acks().await?;
            self.publish();
            let wake = {
                // The timer borrows nothing: armed first, it runs beside the session's wait.
                let until_tick = Duration::from_millis(next_tick.saturating_sub(self.now()));
                let tick = pin!(self.client.platform().sleep(until_tick));
                let requests = pin!(self.requests.next());
                let server = pin!(self.client.next_server_message());
                // Requests first, as the person waits on them.
                match select(requests, select(server, tick)).await {
                    Either::Left((req, _)) => Wake::Request(req),
                    Either::Right((Either::Left((msg, _)), _)) => Wake::Server(msg),
                    Either::Right((Either::Right(((), _)), _)) => Wake::Tick,
                }
            };
            match wake {
                Wake::Request(None | Some(Request::Quit)) => {
                    self.online_effects().await?;
                    return Ok(End::Quit);
                }
                Wake::Request(Some(req)) => self.request(req, true).await,
                Wake::Server(msg) => {
                    let msg = msg?;
                    last_traffic = self.now();
                    if let Some(event) = self.client.handle_server_message(msg).await? {
                        self.event(event).await?;
                    }
                    while let Some(event) = self.client.released_event() {
                        self.event(event).await?;
                    }
                }
                Wake::Tick => {
                    let now = self.now();
                    next_tick = now + TICK.as_millis() as u64;
                    self.core.tick(now);
                    if now.saturating_sub(last_traffic) >= PING_AFTER.as_millis() as u64 {
                        self.client.ping().await?;
                        last_traffic = self.now();
                    }
                }
            }
        }
    }

    /// A request of the interface (`online`: the session is connected).
    async fn request(&mut self, req: Request, online: bool) {
        let now = self.now();
        match req {
            Request::Revoke(_) if !online => {
                self.problem("a device can be revoked only while connected".into());
            }
            Request::Revoke(dek) => match self.client.revoke(&dek).await {
                Ok(()) => {
                    self.core.banner(Banner::Info(format!(
                        "device {} revoked",
                        siren_proto::fingerprint::fingerprint(dek.as_bytes())
                    )));
                    self.refresh_devices().await;
                }
                Err(e) => self.problem(format!("cannot revoke that device: {e:#}")),
            },
            Request::Command(cmd) => {
                self.core.command(now, cmd, &mut siren_proto::os_rng());
            }
            Request::LoadOlder(chat) => {
                self.core.load_older(&chat);
            }
            Request::SendFile { to, name, data } => {
                if data.len() as u64 > super::MAX_FILE {
                    self.problem(format!(
                        "{name} is {} bytes; files up to 25 MiB can be sent",
                        data.len()
                    ));
                } else {
                    self.core
                        .send_file(now, &to, &name, &data, &mut siren_proto::os_rng());
                }
            }
            Request::Quit => {}
        }
    }

    /// Reads the roster and gives the core its contacts and blocked users; subscribes to the
    /// contacts' presence.
    pub(super) async fn refresh_roster(&mut self) -> anyhow::Result<()> {
        let roster = self.client.roster().await?;
        let (contacts, blocked) = roster.map(|r| (r.contacts, r.blocked)).unwrap_or_default();
        let uids: Vec<Uid> = contacts.iter().map(|c| c.uid.clone()).collect();
        self.core.set_roster(
            contacts.into_iter().map(|c| (c.uid, c.name)).collect(),
            blocked,
        );
        for uid in &uids {
            self.refresh_trust(uid).await;
        }
        // A contact who does not share presence refuses the subscription: subscribe one by one.
        self.unsubscribed.clear();
        for uid in uids {
            self.subscribe(uid).await;
        }
        Ok(())
    }

    /// Looks this account up (verified against what this device knows of it) for the devices
    /// list; a failure is shown, and the list stays as it was.
    pub(super) async fn refresh_devices(&mut self) {
        let me = self.client.uid().clone();
        match self.client.lookup(&me).await {
            Ok(report) => {
                let mine = self.client.device();
                self.devices = report
                    .directory
                    .devices()
                    .map(|r| Device {
                        dek: r.dek,
                        name: r.name.clone(),
                        added: r.ts,
                        this: Some(r.dek) == mine,
                    })
                    .collect();
            }
            Err(e) => self.problem(format!("cannot list this account's devices: {e:#}")),
        }
    }

    /// Subscribes to a contact's presence; a refusal (they have not accepted this user, or do
    /// not share presence) is remembered, to try again when something arrives from them.
    pub(super) async fn subscribe(&mut self, uid: Uid) {
        if self
            .client
            .subscribe(std::slice::from_ref(&uid))
            .await
            .is_err()
        {
            self.core.presence(&uid, None);
            self.unsubscribed.insert(uid);
        } else {
            self.unsubscribed.remove(&uid);
        }
    }

    /// Gives the core whether `uid`'s signing key is the one the person verified, and keeps
    /// the safety number with them.
    pub(super) async fn refresh_trust(&mut self, uid: &Uid) {
        let Ok(state) = self.client.store().contact(uid).await else {
            return;
        };
        let (Some(dir), Some(usk)) = (state.directory.as_ref(), self.client.usk()) else {
            return;
        };
        let me = self.client.uid().clone();
        let number = siren_proto::approval::safety_number((&me, &usk.public()), (uid, dir.usk()));
        let verified = state.verified.as_ref() == Some(dir.usk());
        self.safety.insert(uid.clone(), number);
        // Only the verified mark: a key-change warning stays until the person acknowledges it.
        self.core.set_verified(uid, verified);
    }
}

/// The connection line before the first attempt.
pub(super) fn connecting(me: &Uid) -> String {
    format!("connecting as {me}")
}

/// Server errors after which trying again cannot help (the account or session is gone).
fn is_final(code: u16) -> bool {
    use siren_api::ErrorCode;
    [ErrorCode::CredentialsChanged, ErrorCode::SessionEnded]
        .iter()
        .any(|c| c.as_u16() == code)
}
