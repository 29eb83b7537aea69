//! Test plugin: a federation policy that exhausts its memory on request.
//!
//! * `hog.test`: allocates 1 MiB blocks until an allocation fails, which aborts (a trap): the
//!   host's memory limit must stop it and name the limit.
//! * `measure.test`: allocates 1 MiB blocks with `try_reserve` until one fails, frees them and
//!   denies with "allocated N MiB", so a test can check where the limit really is.
//! * any other peer: allowed.

use siren_plugin_sdk::Config;
use siren_plugin_sdk::federation::{Decision, Direction, FederationPolicy};

struct Hog;

const MIB: usize = 1 << 20;

impl FederationPolicy for Hog {
    fn init(_config: &Config) -> Result<Self, String> {
        Ok(Hog)
    }

    fn decide(&mut self, peer: &str, _direction: Direction) -> Decision {
        match peer {
            "hog.test" => {
                let mut blocks: Vec<Vec<u8>> = Vec::new();
                loop {
                    blocks.push(std::hint::black_box(vec![1u8; MIB]));
                }
            }
            "measure.test" => {
                let mut blocks: Vec<Vec<u8>> = Vec::with_capacity(4096);
                loop {
                    let mut block: Vec<u8> = Vec::new();
                    if block.try_reserve_exact(MIB).is_err() || blocks.len() == 4096 {
                        break;
                    }
                    block.resize(MIB, 1);
                    blocks.push(std::hint::black_box(block));
                }
                Decision::Deny(format!("allocated {} MiB", blocks.len()))
            }
            _ => Decision::Allow,
        }
    }
}

siren_plugin_sdk::export_federation_policy!(Hog);
