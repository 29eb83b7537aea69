//! `signal` (PROTOCOL.md §14): ephemeral envelopes, checked like a `send`'s, handed to the live
//! sessions of their recipient devices (local, or over an open link to the recipient's server)
//! and never stored. The answer is `ok` whether or not anyone received them.

use std::collections::BTreeMap;

use siren_api::{Error, ErrorCode, ServerName, Username};
use siren_proto::envelope::Envelope;
use siren_proto::message::RequestId;

use super::{Outcome, Session};
use crate::rate::{Buckets, Rate, wait_secs};

/// A session's budget of signal envelopes (`[limits] signal_envelopes_per_second` and
/// `signal_envelope_burst`).
pub(super) fn session_rate(limits: &crate::config::Limits) -> Buckets<()> {
    Buckets::new(
        Rate {
            per_second: f64::from(limits.signal_envelopes_per_second),
            burst: f64::from(limits.signal_envelope_burst),
        },
        1,
    )
}

impl Session {
    pub(super) async fn signal(
        &mut self,
        rid: RequestId,
        user: &Username,
        msgs: Vec<Envelope>,
    ) -> Result<(), Outcome> {
        if let Err(e) = self.charge_signal(msgs.len()) {
            return self.error(Some(rid), &e).await;
        }
        if let Err(e) = self.check_signal(user, &msgs).await {
            return self.error(Some(rid), &e).await;
        }
        let mut remote: BTreeMap<ServerName, Vec<Envelope>> = BTreeMap::new();
        for env in msgs {
            if env.to.server() == &self.shared.config().server.name {
                crate::signals::deliver_local(&self.shared, env).await;
            } else {
                remote.entry(env.to.server().clone()).or_default().push(env);
            }
        }
        for (peer, envs) in remote {
            self.shared.links.signal(&peer, envs);
        }
        self.ok(rid).await
    }

    /// Takes `n` envelopes from this session's signal budget: error 203 with the seconds to
    /// wait, or 107 for one `signal` larger than the whole burst.
    fn charge_signal(&self, n: usize) -> Result<(), Error> {
        let taken = self.signal_rate.take(&(), n as f64);
        if taken.is_err() {
            self.shared.metrics.limit_refused("signal_rate");
        }
        match taken {
            Ok(()) => Ok(()),
            Err(wait) if wait == std::time::Duration::MAX => Err(Error::new(
                ErrorCode::LimitExceeded,
                format!(
                    "a signal may have at most {} envelopes here",
                    self.shared.config().limits.signal_envelope_burst
                ),
            )),
            Err(wait) => Err(Error::new(
                ErrorCode::RateLimited,
                format!("too many signals; retry in {} s", wait_secs(wait)),
            )),
        }
    }

    /// Checks every envelope of a `signal` before any is handed over, like a `send`'s: the sender
    /// is this session (400), signed by the user's USK (301), to a live device of a local user
    /// (300, 304) or to a server federation allows (500, 501).
    async fn check_signal(&self, user: &Username, msgs: &[Envelope]) -> Result<(), Error> {
        let me = self.uid(user);
        let own =
            self.shared.directory.get(user).await?.ok_or_else(|| {
                Error::new(ErrorCode::UnknownDevice, "this device is not registered")
            })?;
        for env in msgs {
            self.check_sender(env, &me, &own)?;
            if env.to.server() != &self.shared.config().server.name {
                self.shared
                    .remote_allowed(env.to.server(), siren_api::federation::Direction::Outbound)
                    .await?;
                continue;
            }
            self.check_local_recipient(env).await?;
        }
        Ok(())
    }
}
