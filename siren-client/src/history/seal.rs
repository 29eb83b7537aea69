//! The history's keys: [`siren_client_core::at_rest`] (shared with the browser client, which
//! seals its IndexedDB the same way).

pub use siren_client_core::at_rest::{HISTORY_KEY_LABEL, HistoryKeys, OpenFailed, TAG_LEN, Tag};
