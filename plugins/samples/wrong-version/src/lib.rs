//! Test plugin: a federation policy built against a future `siren:plugin@0.2.0` (a copy of the
//! 0.1.0 federation world with the version changed). A 0.1.0 server must refuse it at load,
//! naming both versions.

wit_bindgen::generate!({
    inline: r#"
        package siren:plugin@0.2.0;

        interface host {
            enum level { error, warn, info, debug, trace }
            log: func(level: level, message: string);
        }

        interface federation-policy {
            enum direction { outbound, inbound }
            variant decision { allow, deny(string) }
            decide: func(peer: string, direction: direction) -> decision;
        }

        world federation-plugin {
            import host;
            export interface-version: func() -> string;
            export init: func(config: list<tuple<string, string>>) -> result<_, string>;
            export federation-policy;
        }
    "#,
});

use exports::siren::plugin::federation_policy::{Decision, Direction, Guest as Policy};

struct Future;

impl Guest for Future {
    fn interface_version() -> String {
        "0.2.0".to_owned()
    }

    fn init(_config: Vec<(String, String)>) -> Result<(), String> {
        Ok(())
    }
}

impl Policy for Future {
    fn decide(_peer: String, _direction: Direction) -> Decision {
        Decision::Allow
    }
}

export!(Future);
