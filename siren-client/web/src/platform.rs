//! The page as the session's [`Platform`]: its WebSocket, its timers, its clock.

use std::time::Duration;

use siren_client_session::{Opened, Platform, TIMEOUT};
use siren_proto::handshake::{SessionRequest, StaticShared};
use siren_proto::keys::DekSecret;

use crate::link::{self, ServerAddress, WsLink};

/// The browser, talking to one server.
pub struct Browser {
    server: ServerAddress,
    /// The DEK's agreement with the server's key, kept across reconnections (computed again
    /// after a new login's DEK).
    shared: Option<StaticShared>,
}

impl Browser {
    /// Sessions with `server`.
    pub fn new(server: ServerAddress) -> Browser {
        Browser {
            server,
            shared: None,
        }
    }

    /// The server it talks to.
    pub fn server(&self) -> &ServerAddress {
        &self.server
    }
}

/// A timer on the page's `setTimeout`, cleared when dropped (the session arms one per wait, so
/// a timer must not outlive the wait it guards).
fn sleep(duration: Duration) -> gloo_timers::future::TimeoutFuture {
    let ms = u32::try_from(duration.as_millis()).unwrap_or(u32::MAX);
    gloo_timers::future::TimeoutFuture::new(ms)
}

impl Platform for Browser {
    type Link = WsLink;

    async fn open(
        &mut self,
        dek: &DekSecret,
        request: SessionRequest,
    ) -> anyhow::Result<Opened<WsLink>> {
        let shared = StaticShared::keep(&mut self.shared, dek, &self.server.sek)?;
        link::open(&self.server, shared, dek, request, TIMEOUT, sleep).await
    }

    fn sleep(&self, duration: Duration) -> impl Future<Output = ()> + 'static {
        sleep(duration)
    }

    fn now_millis(&self) -> u64 {
        // `Date.now()` is a whole number of milliseconds since the epoch (negative only on a
        // clock set before 1970).
        let now = js_sys::Date::now();
        if now.is_finite() && now > 0.0 {
            now as u64
        } else {
            0
        }
    }
}
