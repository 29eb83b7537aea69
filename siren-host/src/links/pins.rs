//! Peer SEKs pinned on first use, kept in `<data_dir>/peer-keys.toml` (`name = "base64 SEK"`).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, PoisonError};

use siren_api::{Error, ErrorCode, ServerName};
use siren_proto::keys::SekPublic;

/// The pinned keys and the file that keeps them.
pub(super) struct Pins {
    keys: Mutex<HashMap<ServerName, SekPublic>>,
    file: PathBuf,
}

impl Pins {
    /// Reads `<data_dir>/peer-keys.toml`; a missing file is no pins.
    pub(super) fn load(data_dir: &Path) -> Result<Pins, Error> {
        let file = data_dir.join("peer-keys.toml");
        let text = match std::fs::read_to_string(&file) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
            Err(e) => {
                return Err(Error::new(
                    ErrorCode::Internal,
                    format!("cannot read {}: {e}", file.display()),
                ));
            }
        };
        let bad =
            |what: String| Error::new(ErrorCode::Internal, format!("{}: {what}", file.display()));
        let table: toml::Table = text.parse().map_err(|e| bad(format!("{e}")))?;
        let mut keys = HashMap::new();
        for (name, value) in table {
            let peer = ServerName::parse(&name).map_err(|e| bad(format!("{name}: {e}")))?;
            let key = value
                .as_str()
                .and_then(|k| SekPublic::from_base64(k).ok())
                .ok_or_else(|| bad(format!("{name}: not a base64 key")))?;
            keys.insert(peer, key);
        }
        Ok(Pins {
            keys: Mutex::new(keys),
            file,
        })
    }

    /// The key pinned for `peer`, if any.
    pub(super) fn get(&self, peer: &ServerName) -> Option<SekPublic> {
        self.keys
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(peer)
            .copied()
    }

    /// Pins `key` for `peer` and saves every pin (written to a temporary file, then renamed).
    pub(super) fn set(&self, peer: &ServerName, key: SekPublic) {
        let mut keys = self.keys.lock().unwrap_or_else(PoisonError::into_inner);
        keys.insert(peer.clone(), key);
        let mut table = toml::Table::new();
        for (name, key) in keys.iter() {
            table.insert(name.to_string(), toml::Value::String(key.to_base64()));
        }
        let tmp = self.file.with_extension("toml.tmp");
        let saved = std::fs::write(&tmp, table.to_string())
            .and_then(|()| std::fs::rename(&tmp, &self.file));
        if let Err(e) = saved {
            tracing::warn!(file = %self.file.display(), error = %e, "cannot save the peer pins");
        }
    }
}
