//! A registry of named implementations: the configuration picks backends by name
//! (`[storage] backend = "rocksdb"`), and an unknown name is an error that lists what exists.

use std::collections::BTreeMap;
use std::fmt;

use crate::error::{Error, ErrorCode};

/// Where a registered implementation comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    /// Compiled into the host.
    BuiltIn,
    /// Loaded from a file (a wasm component or a native library).
    Plugin {
        /// The file.
        path: String,
        /// The interface version it implements.
        interface: String,
    },
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Origin::BuiltIn => f.write_str("built-in"),
            Origin::Plugin { path, interface } => write!(f, "{path} (interface {interface})"),
        }
    }
}

/// Named factories of one kind of implementation (`T` is usually a boxed factory function).
pub struct Registry<T> {
    kind: &'static str,
    entries: BTreeMap<String, (Origin, T)>,
}

impl<T> Registry<T> {
    /// An empty registry for implementations of `kind` ("storage backend", "auth mechanism").
    pub fn new(kind: &'static str) -> Self {
        Registry {
            kind,
            entries: BTreeMap::new(),
        }
    }

    /// Registers `item` under `name`. A name can be registered once.
    pub fn register(&mut self, name: &str, origin: Origin, item: T) -> Result<(), Error> {
        if self.entries.contains_key(name) {
            return Err(Error::new(
                ErrorCode::Internal,
                format!("{} {name:?} is registered twice", self.kind),
            ));
        }
        self.entries.insert(name.to_owned(), (origin, item));
        Ok(())
    }

    /// The item registered under `name`, or an error naming the ones that exist.
    pub fn get(&self, name: &str) -> Result<&T, Error> {
        self.entries.get(name).map(|(_, item)| item).ok_or_else(|| {
            Error::new(
                ErrorCode::Internal,
                format!(
                    "unknown {} {name:?}; available: {}",
                    self.kind,
                    self.names().collect::<Vec<_>>().join(", ")
                ),
            )
        })
    }

    /// Registered names, sorted.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.entries.keys().map(String::as_str)
    }

    /// Every entry with its origin, sorted by name.
    pub fn entries(&self) -> impl Iterator<Item = (&str, &Origin, &T)> {
        self.entries.iter().map(|(n, (o, t))| (n.as_str(), o, t))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_name_lists_the_available_ones() {
        let mut r: Registry<u8> = Registry::new("storage backend");
        r.register("rocksdb", Origin::BuiltIn, 1).unwrap();
        r.register("memory", Origin::BuiltIn, 2).unwrap();
        assert_eq!(*r.get("memory").unwrap(), 2);
        let err = r.get("mongo").unwrap_err();
        assert_eq!(
            err.message,
            "unknown storage backend \"mongo\"; available: memory, rocksdb"
        );
        assert!(r.register("memory", Origin::BuiltIn, 3).is_err());
    }
}
