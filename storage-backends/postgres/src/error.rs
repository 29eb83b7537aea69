//! Database and pool failures as [`siren_api::Error`]s.
//!
//! Messages name the operation and the database (`user@host:port/database`, never a password).
//! A database that cannot be reached, is shutting down, is overloaded or gave up on a lock is
//! [`ErrorCode::Unavailable`] (retry later); anything else — a constraint the code should have
//! kept, a value of the wrong shape — is [`ErrorCode::Internal`].

use deadpool_postgres::{PoolError, TimeoutType};
use siren_api::{Error, ErrorCode};

/// The error of a failed statement.
pub(crate) fn db_error(op: &str, target: &str, e: &tokio_postgres::Error) -> Error {
    if let Some(db) = e.as_db_error() {
        let state = db.code().code();
        let mut message = format!(
            "{op} on postgresql at {target}: {} (SQLSTATE {state})",
            db.message()
        );
        if let Some(detail) = db.detail() {
            message.push_str(": ");
            message.push_str(detail);
        }
        return Error::new(code_of_state(state), message);
    }
    // Not an answer from the server: the connection broke, or the client refused a value.
    let io = e.is_closed() || chain_has_io(e);
    let code = if io {
        ErrorCode::Unavailable
    } else {
        ErrorCode::Internal
    };
    Error::new(
        code,
        format!("{op} on postgresql at {target}: {}", chain(e)),
    )
}

/// The error of a connection that could not be had from the pool.
pub(crate) fn pool_error(op: &str, target: &str, e: PoolError) -> Error {
    let why = match e {
        PoolError::Timeout(TimeoutType::Wait) => {
            "every connection of the pool stayed busy for the whole connect timeout".to_owned()
        }
        PoolError::Timeout(TimeoutType::Create) => {
            "no connection within the connect timeout".to_owned()
        }
        PoolError::Timeout(TimeoutType::Recycle) => {
            "checking an idle connection took the whole connect timeout".to_owned()
        }
        PoolError::Backend(e) => match e.as_db_error() {
            // The server answered, but refused us (authentication, unknown database, too many
            // connections): its own message says which.
            Some(db) => format!("{} (SQLSTATE {})", db.message(), db.code().code()),
            None => chain(&e),
        },
        PoolError::Closed => "the connection pool was closed".to_owned(),
        PoolError::NoRuntimeSpecified => "the connection pool has no runtime".to_owned(),
        PoolError::PostCreateHook(e) => e.to_string(),
    };
    Error::new(
        ErrorCode::Unavailable,
        format!("{op}: cannot connect to postgresql at {target}: {why}"),
    )
}

/// The error for a stored value that does not have the shape the schema gives it.
pub(crate) fn corrupt(what: &str, detail: impl std::fmt::Display) -> Error {
    Error::new(
        ErrorCode::Internal,
        format!("stored {what} is corrupt: {detail}"),
    )
}

/// [`ErrorCode::Unavailable`] for conditions that pass (connection trouble, shutdown, lack of
/// resources, lock and statement timeouts, serialisation failures); [`ErrorCode::Internal`]
/// otherwise.
fn code_of_state(state: &str) -> ErrorCode {
    let transient = state.starts_with("08") // connection exception
        || state.starts_with("53") // insufficient resources
        || state.starts_with("57P") // operator intervention: shutdown, cannot connect now
        || matches!(
            state,
            "40001" // serialization_failure
            | "40P01" // deadlock_detected
            | "55P03" // lock_not_available (lock_timeout)
            | "57014" // query_canceled (statement_timeout)
        );
    if transient {
        ErrorCode::Unavailable
    } else {
        ErrorCode::Internal
    }
}

/// The error and its causes, `: `-separated (tokio-postgres puts the useful part in causes).
fn chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut text = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        let more = c.to_string();
        if !text.ends_with(&more) {
            text.push_str(": ");
            text.push_str(&more);
        }
        cause = c.source();
    }
    text
}

fn chain_has_io(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut cause = e.source();
    while let Some(c) = cause {
        if c.is::<std::io::Error>() {
            return true;
        }
        cause = c.source();
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transient_states_are_unavailable() {
        for state in [
            "08006", "53300", "57P01", "57P03", "40001", "40P01", "55P03", "57014",
        ] {
            assert_eq!(code_of_state(state), ErrorCode::Unavailable, "{state}");
        }
        for state in ["23505", "22003", "42P01", "XX000"] {
            assert_eq!(code_of_state(state), ErrorCode::Internal, "{state}");
        }
    }
}
