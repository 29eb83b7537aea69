//! A credential backend with users listed in the configuration (`users = "alice:pw1,bob:pw2"`),
//! for the server's `PLAIN` mechanism — a sample, not for production.

use std::collections::BTreeMap;

use siren_plugin_sdk::Config;
use siren_plugin_sdk::credentials::Credentials;

struct Static(BTreeMap<String, String>);

fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

impl Credentials for Static {
    fn init(config: &Config) -> Result<Self, String> {
        let mut users = BTreeMap::new();
        for entry in config.list("users") {
            let (user, password) = entry
                .split_once(':')
                .ok_or_else(|| format!("users: {entry:?} is not user:password"))?;
            users.insert(user.to_owned(), password.to_owned());
        }
        Ok(Static(users))
    }

    fn verify(&mut self, user: &str, password: &str) -> Result<bool, String> {
        let expected = self.0.get(user);
        let matches = same(
            expected.map_or(b"\0unknown user\0".as_slice(), |p| p.as_bytes()),
            password.as_bytes(),
        );
        Ok(matches && expected.is_some())
    }

    fn user_exists(&mut self, user: &str) -> Result<bool, String> {
        Ok(self.0.contains_key(user))
    }
}

siren_plugin_sdk::export_credentials!(Static);
