//! Test plugin: a federation policy that imports `wasi:random/random` to decide at random. The
//! server gives plugins no WASI, so it must refuse this one at load, naming the import.

wit_bindgen::generate!({
    inline: r#"
        package siren:plugin@0.1.0;

        interface federation-policy {
            enum direction { outbound, inbound }
            variant decision { allow, deny(string) }
            decide: func(peer: string, direction: direction) -> decision;
        }

        world federation-plugin {
            import wasi:random/random@0.2.0;
            export interface-version: func() -> string;
            export init: func(config: list<tuple<string, string>>) -> result<_, string>;
            export federation-policy;
        }

        package wasi:random@0.2.0 {
            interface random {
                get-random-u64: func() -> u64;
            }
        }
    "#,
    generate_all,
});

use exports::siren::plugin::federation_policy::{Decision, Direction, Guest as Policy};

struct Coin;

impl Guest for Coin {
    fn interface_version() -> String {
        "0.1.0".to_owned()
    }

    fn init(_config: Vec<(String, String)>) -> Result<(), String> {
        Ok(())
    }
}

impl Policy for Coin {
    fn decide(_peer: String, _direction: Direction) -> Decision {
        if wasi::random::random::get_random_u64() % 2 == 0 {
            Decision::Allow
        } else {
            Decision::Deny("tails".to_owned())
        }
    }
}

export!(Coin);
