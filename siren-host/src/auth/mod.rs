//! The Authentication Manager: the mechanisms on offer ([`plain`] is built in; others come from
//! the registry) and the limits on logins ([`limits`]).
//!
//! Mechanisms only ever see credentials inside the encrypted session. A failure looks the same
//! to the client whatever the reason (error 201); a client over a limit gets error 203 whatever
//! the password, so guessing gets nowhere and a limit reveals nothing.

pub mod limits;
pub mod plain;

use std::sync::Arc;

use siren_api::auth::AuthMechanism;

pub use limits::{LoginLimitConfig, LoginLimits};
pub use plain::Plain;

/// The mechanisms on offer and the limits.
pub struct AuthManager {
    mechanisms: Vec<Arc<dyn AuthMechanism>>,
    /// Login limits.
    pub limits: LoginLimits,
}

impl AuthManager {
    /// Offers `mechanisms` in this order.
    pub fn new(mechanisms: Vec<Arc<dyn AuthMechanism>>, limits: LoginLimits) -> Self {
        AuthManager { mechanisms, limits }
    }

    /// Names to send in `auth_mechanisms`.
    pub fn names(&self) -> Vec<String> {
        self.mechanisms
            .iter()
            .map(|m| m.name().to_owned())
            .collect()
    }

    /// The mechanism called `name`.
    pub fn mechanism(&self, name: &str) -> Option<&Arc<dyn AuthMechanism>> {
        self.mechanisms.iter().find(|m| m.name() == name)
    }
}
