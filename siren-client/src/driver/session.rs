//! The driver's task: connect (resuming the session), run it until it fails or the person
//! quits, then wait with exponential backoff and try again. The person's commands are taken in
//! all the while; what must go to the server waits for the next connection.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use siren_api::Uid;
use siren_client_core::Core;
use siren_client_core::effect::Effect;
use siren_client_core::model::{Millis, Status};
use siren_proto::message::Presence;
use tokio::sync::{mpsc, watch};

use super::{Options, Request, Snapshot};
use crate::client::{Approving, Client, ServerRefused};
use crate::history::History;

/// The first wait after a lost connection; doubled after each failed attempt.
const BACKOFF_START: Duration = Duration::from_secs(1);
/// The longest wait between attempts.
const BACKOFF_MAX: Duration = Duration::from_secs(60);
/// A session that lasted this long resets the backoff.
const STABLE: Duration = Duration::from_secs(30);
/// Ping after this long without traffic (PROTOCOL.md §10.3).
const PING_AFTER: Duration = Duration::from_secs(60);
/// Messages loaded per page of history.
pub(super) const PAGE: usize = 50;

/// Now, in milliseconds since the Unix epoch.
pub(super) fn now_millis() -> Millis {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// How a session ended without an error.
enum End {
    /// The person quit.
    Quit,
}

/// The driver's state.
pub(super) struct Driver {
    pub(super) client: Client,
    pub(super) core: Core,
    pub(super) history: Option<History>,
    pub(super) options: Options,
    requests: mpsc::UnboundedReceiver<Request>,
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
}

impl Driver {
    pub(super) fn new(
        client: Client,
        history: Option<History>,
        options: Options,
        requests: mpsc::UnboundedReceiver<Request>,
    ) -> Driver {
        let me = client.uid().clone();
        let core = Core::new(
            me.clone(),
            options.read_receipts,
            &mut siren_proto::os_rng(),
        );
        let mut driver = Driver {
            client,
            core,
            history,
            options,
            requests,
            waiting: VecDeque::new(),
            approving: BTreeMap::new(),
            safety: BTreeMap::new(),
            unsubscribed: BTreeSet::new(),
            connection: format!("connecting as {me}"),
        };
        driver.load_recent();
        driver
    }

    /// Fills the conversation list from the history (the newest message of each).
    fn load_recent(&mut self) {
        let Some(history) = &self.history else { return };
        let mut problem = None;
        match history.conversations() {
            Ok(entries) => {
                for peer in entries.into_iter().take(200).map(|e| e.peer) {
                    match history.page(&peer, None, PAGE) {
                        Ok((msgs, more)) => self.core.history_loaded(&peer, msgs, more),
                        Err(e) => problem = Some(format!("cannot read the history: {e:#}")),
                    }
                }
            }
            Err(e) => problem = Some(format!("cannot read the history: {e:#}")),
        }
        if let Some(why) = problem {
            self.problem(why);
        }
    }

    pub(super) fn problem(&mut self, why: String) {
        self.core
            .banner(siren_client_core::model::Banner::Problem(why));
    }

    pub(super) fn snapshot(&self) -> Snapshot {
        let view = self.core.view().clone();
        let messages = view
            .conversations
            .iter()
            .map(|c| (c.peer.clone(), self.core.messages(&c.peer).to_vec()))
            .collect();
        Snapshot {
            view,
            messages,
            safety: self.safety.clone(),
            connection: self.connection.clone(),
        }
    }

    fn publish(&self, tx: &watch::Sender<Arc<Snapshot>>) {
        tx.send_replace(Arc::new(self.snapshot()));
    }

    /// The task's body.
    pub(super) async fn run(mut self, tx: watch::Sender<Arc<Snapshot>>) -> anyhow::Result<()> {
        let mut backoff = BACKOFF_START;
        loop {
            self.core.set_status(Status::Connecting);
            self.connection = format!("connecting to {}", self.client.store().settings.server);
            self.publish(&tx);
            let started = tokio::time::Instant::now();
            let why = match self.session(&tx).await {
                Ok(End::Quit) => {
                    let _ = self.client.bye().await;
                    self.publish(&tx);
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
                self.publish(&tx);
                return Err(why);
            }
            if format!("{why:#}").contains("no longer knows this session") {
                self.connection = format!("{why:#}");
                self.publish(&tx);
                return Err(why);
            }
            if started.elapsed() >= STABLE {
                backoff = BACKOFF_START;
            }
            if self.wait(&tx, backoff, &format!("{why:#}")).await {
                let _ = self.client.bye().await;
                return Ok(());
            }
            backoff = (backoff * 2).min(BACKOFF_MAX);
        }
    }

    /// Waits `delay` before the next attempt, taking in the person's requests. Returns true
    /// if the person quit.
    async fn wait(
        &mut self,
        tx: &watch::Sender<Arc<Snapshot>>,
        delay: Duration,
        why: &str,
    ) -> bool {
        let deadline = tokio::time::Instant::now() + delay;
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            if left.is_zero() {
                return false;
            }
            let retry_in = left.as_secs() + u64::from(left.subsec_nanos() > 0);
            self.connection = format!("offline: {why}; retrying in {retry_in} s");
            self.core.set_status(Status::Offline {
                retry_in,
                why: why.to_owned(),
            });
            self.offline_effects().await;
            self.publish(tx);
            tokio::select! {
                req = self.requests.recv() => match req {
                    None | Some(Request::Quit) => return true,
                    Some(req) => self.request(req),
                },
                _ = tick.tick() => self.core.tick(now_millis()),
            }
        }
    }

    /// One session: connect, set up, then serve until it fails or the person quits.
    async fn session(&mut self, tx: &watch::Sender<Arc<Snapshot>>) -> anyhow::Result<End> {
        self.client.connect().await?;
        self.refresh_roster().await?;
        let status = self.options.presence;
        self.client.publish(Presence { status, text: None }).await?;
        self.core.set_status(Status::Online);
        self.connection = format!("connected as {}", self.client.uid());
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        let mut last_traffic = tokio::time::Instant::now();
        loop {
            self.online_effects().await?;
            // What was processed is acknowledged before waiting (the server then drops it).
            self.client.flush_acks().await?;
            self.publish(tx);
            tokio::select! {
                biased;
                req = self.requests.recv() => match req {
                    None | Some(Request::Quit) => {
                        self.online_effects().await?;
                        return Ok(End::Quit);
                    }
                    Some(req) => self.request(req),
                },
                msg = self.client.next_server_message() => {
                    let msg = msg?;
                    last_traffic = tokio::time::Instant::now();
                    if let Some(event) = self.client.handle_server_message(msg).await? {
                        self.event(event).await?;
                    }
                },
                _ = tick.tick() => {
                    self.core.tick(now_millis());
                    if last_traffic.elapsed() >= PING_AFTER {
                        self.client.ping().await?;
                        last_traffic = tokio::time::Instant::now();
                    }
                },
            }
        }
    }

    /// A request of the interface.
    fn request(&mut self, req: Request) {
        match req {
            Request::Command(cmd) => {
                self.core
                    .command(now_millis(), cmd, &mut siren_proto::os_rng());
            }
            Request::LoadOlder(peer) => {
                self.core.load_older(&peer);
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
            self.refresh_trust(uid);
        }
        // A contact who does not share presence refuses the subscription: subscribe one by one.
        self.unsubscribed.clear();
        for uid in uids {
            self.subscribe(uid).await;
        }
        Ok(())
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

    /// Gives the core `uid`'s verification state, and keeps the safety number of verified
    /// users.
    pub(super) fn refresh_trust(&mut self, uid: &Uid) {
        let Ok(state) = self.client.store().contact(uid) else {
            return;
        };
        let (Some(dir), Some(usk)) = (state.directory.as_ref(), self.client.usk()) else {
            return;
        };
        let me = self.client.uid().clone();
        let number = siren_proto::approval::safety_number((&me, &usk.public()), (uid, dir.usk()));
        let verified = state.verified.as_ref() == Some(dir.usk());
        self.safety.insert(uid.clone(), number);
        self.core.set_trust(uid, verified, false);
    }
}

/// Server errors after which trying again cannot help (the account or session is gone).
fn is_final(code: u16) -> bool {
    use siren_api::ErrorCode;
    [ErrorCode::CredentialsChanged, ErrorCode::SessionEnded]
        .iter()
        .any(|c| c.as_u16() == code)
}
