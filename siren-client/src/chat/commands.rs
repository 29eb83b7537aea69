//! The `/commands` typed in the compose box, parsed. What each one does is the app's business
//! ([`super::app`]); this module only reads the line and says clearly what is wrong with it.

use siren_api::{IdentityError, Uid};

/// One `/command`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Slash {
    /// `/chat USER`: open (or start) a conversation.
    Chat(Uid),
    /// `/chat GROUP` (a name without `@`: a group's title or the first digits of its id): open
    /// a group's conversation.
    Group(String),
    /// `/accept [USER]`: accept a contact request (the open conversation's by default).
    Accept(Option<Uid>),
    /// `/refuse [USER]`: refuse a contact request (blocks the user).
    Refuse(Option<Uid>),
    /// `/block [USER]`.
    Block(Option<Uid>),
    /// `/unblock [USER]`.
    Unblock(Option<Uid>),
    /// `/verify [USER]`: show the safety number, `y` marks it verified.
    Verify(Option<Uid>),
    /// `/approve`: answer a new device's approval request.
    Approve,
    /// `/file PATH`: send a file to the open conversation.
    File(String),
    /// `/save`: save the last received file of the open conversation.
    Save,
    /// `/edit TEXT`: replace the text of this account's last message in the open conversation.
    Edit(String),
    /// `/delete`: withdraw this account's last message in the open conversation.
    Delete,
    /// `/receipts on|off`.
    Receipts(bool),
    /// `/help`.
    Help,
    /// `/quit`.
    Quit,
}

/// What is wrong with a `/command` line.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum SlashError {
    /// No such command.
    #[error("unknown command /{0}; F1 lists them")]
    Unknown(String),
    /// A needed argument is missing.
    #[error("usage: {0}")]
    Usage(&'static str),
    /// The user id does not parse.
    #[error("{input} is not a user id (name@server): {why}")]
    BadUid {
        /// What was typed.
        input: String,
        /// Why it is not one.
        why: IdentityError,
    },
}

/// Parses a line that starts with `/`.
pub(crate) fn parse(line: &str) -> Result<Slash, SlashError> {
    let line = line.trim();
    let rest = line.strip_prefix('/').unwrap_or(line);
    let (name, arg) = match rest.split_once(char::is_whitespace) {
        Some((name, arg)) => (name, arg.trim()),
        None => (rest, ""),
    };
    let arg = (!arg.is_empty()).then_some(arg);
    match name {
        "chat" | "open" => match arg {
            Some(a) if !a.contains('@') => Ok(Slash::Group(a.to_owned())),
            Some(a) => Ok(Slash::Chat(user(a, "/chat USER|GROUP")?)),
            None => Err(SlashError::Usage(
                "/chat USER|GROUP (e.g. /chat bob@example.org, /chat Lunch)",
            )),
        },
        "accept" => Ok(Slash::Accept(optional_user(arg, "/accept [USER]")?)),
        "refuse" => Ok(Slash::Refuse(optional_user(arg, "/refuse [USER]")?)),
        "block" => Ok(Slash::Block(optional_user(arg, "/block [USER]")?)),
        "unblock" => Ok(Slash::Unblock(optional_user(arg, "/unblock [USER]")?)),
        "verify" => Ok(Slash::Verify(optional_user(arg, "/verify [USER]")?)),
        "approve" => no_arg(arg, Slash::Approve, "/approve"),
        "file" | "send" => match arg {
            Some(path) => Ok(Slash::File(path.to_owned())),
            None => Err(SlashError::Usage("/file PATH")),
        },
        "save" => no_arg(arg, Slash::Save, "/save"),
        "edit" => match arg {
            Some(text) => Ok(Slash::Edit(text.to_owned())),
            None => Err(SlashError::Usage("/edit NEW TEXT")),
        },
        "delete" => no_arg(arg, Slash::Delete, "/delete"),
        "receipts" => match arg {
            Some("on") => Ok(Slash::Receipts(true)),
            Some("off") => Ok(Slash::Receipts(false)),
            _ => Err(SlashError::Usage("/receipts on|off")),
        },
        "help" => no_arg(arg, Slash::Help, "/help"),
        "quit" | "exit" => no_arg(arg, Slash::Quit, "/quit"),
        other => Err(SlashError::Unknown(other.to_owned())),
    }
}

fn user(arg: &str, usage: &'static str) -> Result<Uid, SlashError> {
    if arg.split_whitespace().nth(1).is_some() {
        return Err(SlashError::Usage(usage));
    }
    Uid::parse(arg).map_err(|why| SlashError::BadUid {
        input: arg.to_owned(),
        why,
    })
}

fn optional_user(arg: Option<&str>, usage: &'static str) -> Result<Option<Uid>, SlashError> {
    arg.map(|a| user(a, usage)).transpose()
}

fn no_arg(arg: Option<&str>, slash: Slash, usage: &'static str) -> Result<Slash, SlashError> {
    match arg {
        None => Ok(slash),
        Some(_) => Err(SlashError::Usage(usage)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn uid(s: &str) -> Uid {
        Uid::parse(s).unwrap()
    }

    #[test]
    fn commands_parse() {
        assert_eq!(
            parse("/edit  better words "),
            Ok(Slash::Edit("better words".into()))
        );
        assert_eq!(parse("/edit"), Err(SlashError::Usage("/edit NEW TEXT")));
        assert_eq!(parse("/delete"), Ok(Slash::Delete));
        assert_eq!(parse("/delete it"), Err(SlashError::Usage("/delete")));
        assert_eq!(
            parse("/chat bob@beta.test"),
            Ok(Slash::Chat(uid("bob@beta.test")))
        );
        assert_eq!(parse("  /accept  "), Ok(Slash::Accept(None)));
        assert_eq!(
            parse("/refuse eve@evil.test"),
            Ok(Slash::Refuse(Some(uid("eve@evil.test"))))
        );
        assert_eq!(
            parse("/block eve@evil.test"),
            Ok(Slash::Block(Some(uid("eve@evil.test"))))
        );
        assert_eq!(parse("/unblock"), Ok(Slash::Unblock(None)));
        assert_eq!(parse("/verify"), Ok(Slash::Verify(None)));
        assert_eq!(parse("/approve"), Ok(Slash::Approve));
        assert_eq!(
            parse("/file /tmp/a b.txt"),
            Ok(Slash::File("/tmp/a b.txt".into()))
        );
        assert_eq!(parse("/save"), Ok(Slash::Save));
        assert_eq!(parse("/receipts off"), Ok(Slash::Receipts(false)));
        assert_eq!(parse("/receipts on"), Ok(Slash::Receipts(true)));
        assert_eq!(parse("/quit"), Ok(Slash::Quit));
        assert_eq!(parse("/help"), Ok(Slash::Help));
    }

    #[test]
    fn bad_commands_say_what_is_wrong() {
        assert_eq!(
            parse("/frobnicate x"),
            Err(SlashError::Unknown("frobnicate".into()))
        );
        assert!(matches!(parse("/chat"), Err(SlashError::Usage(_))));
        assert!(matches!(
            parse("/chat a@b.test c"),
            Err(SlashError::Usage(_))
        ));
        assert!(matches!(
            parse("/receipts maybe"),
            Err(SlashError::Usage(_))
        ));
        assert!(matches!(parse("/save now"), Err(SlashError::Usage(_))));
        // Without `@`: a group's title.
        assert_eq!(parse("/chat Lunch"), Ok(Slash::Group("Lunch".into())));
        let err = parse("/chat bob@").unwrap_err();
        assert!(matches!(err, SlashError::BadUid { .. }));
        assert!(
            err.to_string()
                .starts_with("bob@ is not a user id (name@server)"),
            "{err}"
        );
        assert!(matches!(
            parse("/block b\u{1b}b@x.test"),
            Err(SlashError::BadUid { .. })
        ));
    }
}
