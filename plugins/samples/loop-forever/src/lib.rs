//! Test plugin: a federation policy that misbehaves on request. For peer `loop.test` it loops
//! forever (the host's deadline must stop it), for `panic.test` it panics (a trap), and it
//! allows every other peer — so a test can check that the host goes on after each.

use siren_plugin_sdk::Config;
use siren_plugin_sdk::federation::{Decision, Direction, FederationPolicy};

struct Misbehave;

impl FederationPolicy for Misbehave {
    fn init(_config: &Config) -> Result<Self, String> {
        Ok(Misbehave)
    }

    fn decide(&mut self, peer: &str, _direction: Direction) -> Decision {
        match peer {
            "loop.test" => {
                let mut n: u64 = 0;
                loop {
                    n = std::hint::black_box(n.wrapping_add(1));
                }
            }
            "panic.test" => panic!("asked to panic for {peer}"),
            _ => Decision::Allow,
        }
    }
}

siren_plugin_sdk::export_federation_policy!(Misbehave);
