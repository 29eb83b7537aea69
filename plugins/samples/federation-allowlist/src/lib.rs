//! A federation policy that talks only to the peers listed in its configuration:
//!
//! ```toml
//! [federation]
//! enabled = true
//! policy = "partners"
//!
//! [[plugins]]
//! name = "partners"
//! kind = "federation"
//! wasm = ".../federation-allowlist.wasm"
//! [plugins.config]
//! peers = "beta.test, gamma.test"
//! ```

use siren_plugin_sdk::Config;
use siren_plugin_sdk::federation::{Decision, Direction, FederationPolicy};

struct Allowlist {
    peers: Vec<String>,
}

impl FederationPolicy for Allowlist {
    fn init(config: &Config) -> Result<Self, String> {
        let peers = config.list("peers");
        if peers.is_empty() {
            return Err("set peers = \"a.example, b.example\"".into());
        }
        Ok(Allowlist {
            peers: peers.into_iter().map(|p| p.to_ascii_lowercase()).collect(),
        })
    }

    fn decide(&mut self, peer: &str, _direction: Direction) -> Decision {
        if self.peers.iter().any(|p| p.eq_ignore_ascii_case(peer)) {
            Decision::Allow
        } else {
            Decision::Deny(format!("{peer} is not on the allowlist"))
        }
    }
}

siren_plugin_sdk::export_federation_policy!(Allowlist);
