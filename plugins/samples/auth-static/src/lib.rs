//! `STATIC`: a PLAIN-like mechanism (`\0user\0password`, RFC 4616's message) checking users
//! listed in the configuration — a sample, not for production (passwords in a config file):
//!
//! ```toml
//! [config]
//! users = "alice:pw1,bob:pw2"
//! mechanism = "STATIC"   # the default
//! ```

use std::collections::BTreeMap;

use siren_plugin_sdk::Config;
use siren_plugin_sdk::auth::{AuthContext, AuthMechanism, AuthStep, Exchange};

struct Static {
    mechanism: String,
    users: BTreeMap<String, String>,
}

impl AuthMechanism for Static {
    fn init(config: &Config) -> Result<Self, String> {
        let mut users = BTreeMap::new();
        for entry in config.list("users") {
            let (user, password) = entry
                .split_once(':')
                .ok_or_else(|| format!("users: {entry:?} is not user:password"))?;
            users.insert(user.to_owned(), password.to_owned());
        }
        Ok(Static {
            mechanism: config.get("mechanism").unwrap_or("STATIC").to_owned(),
            users,
        })
    }

    fn name(&self) -> String {
        self.mechanism.clone()
    }

    fn begin(&mut self, _ctx: AuthContext) -> Box<dyn Exchange> {
        Box::new(Attempt {
            users: self.users.clone(),
            asked: false,
        })
    }
}

struct Attempt {
    users: BTreeMap<String, String>,
    asked: bool,
}

/// Compares without stopping at the first difference.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

impl Exchange for Attempt {
    fn step(&mut self, response: &[u8]) -> Result<AuthStep, String> {
        if response.is_empty() && !self.asked {
            // No initial response: ask for it with an empty challenge.
            self.asked = true;
            return Ok(AuthStep::Challenge(Vec::new()));
        }
        let mut parts = response.split(|&b| b == 0);
        let (Some(authzid), Some(user), Some(password), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Ok(AuthStep::Failure(None));
        };
        let Ok(user) = std::str::from_utf8(user) else {
            return Ok(AuthStep::Failure(None));
        };
        if !authzid.is_empty() && authzid != user.as_bytes() {
            return Ok(AuthStep::Failure(Some(user.to_owned())));
        }
        // An unknown user is compared against a dummy, so both cases take the same path.
        let expected = self.users.get(user).map(String::as_bytes);
        let matches = same(expected.unwrap_or(b"\0unknown user\0"), password);
        if matches && expected.is_some() && !password.is_empty() {
            Ok(AuthStep::Success(user.to_owned()))
        } else {
            Ok(AuthStep::Failure(Some(user.to_owned())))
        }
    }
}

siren_plugin_sdk::export_auth_mechanism!(Static);
