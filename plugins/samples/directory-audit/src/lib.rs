//! A directory hook that writes an audit line to the server's log for every device added or
//! revoked (`prefix` sets the line's start; default "audit").

use siren_plugin_sdk::directory::{DirectoryEvent, DirectoryHook};
use siren_plugin_sdk::{Config, Level, log};

struct Audit {
    prefix: String,
    seen: u64,
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

impl DirectoryHook for Audit {
    fn init(config: &Config) -> Result<Self, String> {
        Ok(Audit {
            prefix: config.get("prefix").unwrap_or("audit").to_owned(),
            seen: 0,
        })
    }

    fn on_event(&mut self, event: DirectoryEvent) {
        self.seen += 1;
        let (what, change) = match event {
            DirectoryEvent::DeviceAdded(c) => ("added", c),
            DirectoryEvent::DeviceRevoked(c) => ("revoked", c),
        };
        log(
            Level::Info,
            &format!(
                "{} #{}: device {} {what} for {}",
                self.prefix,
                self.seen,
                hex(&change.device),
                change.uid
            ),
        );
    }
}

siren_plugin_sdk::export_directory_hook!(Audit);
