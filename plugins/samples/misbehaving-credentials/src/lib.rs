//! Test plugin: a credential backend that misbehaves for chosen users, so the server's tests can
//! show a sandboxed call failing while other sessions go on.
//!
//! * user `loop`: never returns (the host's deadline must stop it);
//! * user `hog`: allocates 1 MiB blocks until an allocation fails (the memory limit must stop it);
//! * any other user: the password is the user's name reversed.

use siren_plugin_sdk::Config;
use siren_plugin_sdk::credentials::Credentials;

struct Misbehaving;

const MIB: usize = 1 << 20;

impl Credentials for Misbehaving {
    fn init(_config: &Config) -> Result<Self, String> {
        Ok(Misbehaving)
    }

    fn verify(&mut self, user: &str, password: &str) -> Result<bool, String> {
        match user {
            "loop" => {
                let mut n: u64 = 0;
                loop {
                    n = std::hint::black_box(n.wrapping_add(1));
                }
            }
            "hog" => {
                let mut blocks: Vec<Vec<u8>> = Vec::new();
                loop {
                    blocks.push(std::hint::black_box(vec![1u8; MIB]));
                }
            }
            _ => Ok(password.chars().eq(user.chars().rev())),
        }
    }

    fn user_exists(&mut self, user: &str) -> Result<bool, String> {
        Ok(!user.is_empty())
    }
}

siren_plugin_sdk::export_credentials!(Misbehaving);
