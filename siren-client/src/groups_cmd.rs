//! `siren group …`: groups from the command line (PROTOCOL.md §12.1). Each command first takes
//! in what waits in the queue (printed as `siren recv` prints it), so that a change is made on
//! the newest version of the group this device can know.

use anyhow::Context as _;
use clap::Subcommand;
use siren_api::Uid;
use siren_client::client::Client;
use siren_client::{note, say};
use siren_client_core::model::Chat;
use siren_proto::ids::{GroupId, MessageId};
use siren_proto::plaintext::Plaintext;

/// What `siren group` does.
#[derive(Subcommand)]
pub enum GroupAction {
    /// Create a group with these members (you are its admin).
    Create {
        /// Its title, shown to members.
        title: String,
        /// Its other members.
        members: Vec<String>,
    },
    /// Add members (admins only).
    Add {
        /// The group: its id (or its first digits) or its title.
        group: String,
        /// Who to add.
        members: Vec<String>,
        /// Make them admins too.
        #[arg(long)]
        admin: bool,
    },
    /// Remove members (admins only); they receive nothing sent after.
    Remove {
        /// The group.
        group: String,
        /// Who to remove.
        members: Vec<String>,
    },
    /// Leave a group.
    Leave {
        /// The group.
        group: String,
    },
    /// The groups this device is in.
    List,
    /// A group's members, admins and version.
    Info {
        /// The group.
        group: String,
    },
    /// Send a text to a group (also: `siren send <group> <text>`).
    Send {
        /// The group.
        group: String,
        /// What to say.
        text: String,
    },
}

/// A group id as shown: its first eight hex digits.
pub fn short(id: &GroupId) -> String {
    id.to_hex()[..8].to_owned()
}

fn parse(uids: &[String]) -> anyhow::Result<Vec<Uid>> {
    uids.iter()
        .map(|u| Uid::parse(u).with_context(|| format!("{u:?} is not a user (name@server)")))
        .collect()
}

/// Carries out `action` on a connected client whose queue was taken in.
pub async fn run(client: &mut Client, action: GroupAction) -> anyhow::Result<()> {
    match action {
        GroupAction::Create { title, members } => {
            let members = parse(&members)?;
            let id = client.create_group(&title, &members).await?;
            say!(
                "created group {} {title:?} with {} other member{}",
                id.to_hex(),
                members.len(),
                if members.len() == 1 { "" } else { "s" }
            );
        }
        GroupAction::Add {
            group,
            members,
            admin,
        } => {
            let (id, _) = client.find_group(&group).await?;
            let added = parse(&members)?;
            let state = client
                .change_group(&id, |m, _| {
                    m.members.extend(added.iter().cloned());
                    if admin {
                        m.admins.extend(added.iter().cloned());
                    }
                    Ok(())
                })
                .await?;
            say!("group {} is at version {}", short(&id), state.version);
        }
        GroupAction::Remove { group, members } => {
            let (id, _) = client.find_group(&group).await?;
            let removed = parse(&members)?;
            let state = client
                .change_group(&id, |m, _| {
                    m.members.retain(|u| !removed.contains(u));
                    m.admins.retain(|u| !removed.contains(u));
                    Ok(())
                })
                .await?;
            say!("group {} is at version {}", short(&id), state.version);
        }
        GroupAction::Leave { group } => {
            let (id, _) = client.find_group(&group).await?;
            client.leave_group(&id).await?;
            say!("left group {}", short(&id));
        }
        GroupAction::List => {
            let me = client.uid().clone();
            let groups = client.groups().await?;
            if groups.is_empty() {
                say!("no groups");
            }
            for (id, record) in groups {
                let Some(state) = record.current() else {
                    continue;
                };
                let gone = if state.is_member(&me) {
                    ""
                } else {
                    "  (you are no longer a member)"
                };
                say!(
                    "{} {:?} {} member{}{gone}",
                    id.to_hex(),
                    state.title,
                    state.members.len(),
                    if state.members.len() == 1 { "" } else { "s" }
                );
            }
        }
        GroupAction::Info { group } => {
            let (id, record) = client.find_group(&group).await?;
            let state = record.current().context("an empty group record")?;
            say!("group   {}", id.to_hex());
            say!("title   {:?}", state.title);
            say!("version {} (made by {})", state.version, state.by);
            for m in &state.members {
                let admin = if state.is_admin(m) { "  admin" } else { "" };
                say!("member  {m}{admin}");
            }
            if let Some((from, to)) = record.missing() {
                note!("versions {from} to {to} are missing here; a member was asked for them");
            }
        }
        GroupAction::Send { group, text } => send(client, &group, &text).await?,
    }
    Ok(())
}

/// Sends `text` to the group `group` names.
pub async fn send(client: &mut Client, group: &str, text: &str) -> anyhow::Result<()> {
    let (id, _) = client.find_group(group).await?;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
    let ts = now / 1000;
    let sent = client
        .send_to_group(
            &id,
            MessageId::random(&mut siren_proto::os_rng()),
            Plaintext::Text {
                body: text.to_owned(),
                ts,
            },
        )
        .await?;
    for (who, why) in &sent.skipped {
        note!("warning: not sent to {who}: {why}");
    }
    match siren_client::client::history(client).await {
        Ok(mut history) => {
            let me = client.uid().clone();
            if let Err(e) = history.record_sent(&me, &Chat::Group(id), sent.id, text, now) {
                note!("warning: the message was sent but not kept in the history: {e}");
            }
        }
        Err(e) => note!("warning: the local history cannot be opened, nothing is kept: {e:#}"),
    }
    say!(
        "sent {} to group {} ({} device{})",
        sent.id.to_hex(),
        short(&id),
        sent.devices,
        if sent.devices == 1 { "" } else { "s" }
    );
    Ok(())
}
