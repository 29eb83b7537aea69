//! The help screen's content: every key and every `/command` (F1, or `?` on an empty compose
//! line, shows it; any key closes it).

/// The title of the help screen.
pub(crate) const TITLE: &str = "siren chat: keys and commands";

/// Keys, then commands: (what to press or type, what it does). An empty pair is a blank line.
pub(crate) const ENTRIES: &[(&str, &str)] = &[
    ("Enter", "send the message (or run the /command)"),
    ("Alt-Enter, Ctrl-J", "new line in the message"),
    ("Tab, Shift-Tab, Up, Down", "next / previous conversation"),
    ("PgUp, PgDn", "scroll (older history loads at the top)"),
    (
        "Left, Right, Home, End",
        "move in the message; Ctrl-U clears the line",
    ),
    ("Esc", "close a window, dismiss the note and banner"),
    ("F1, ?, /help", "this help (? on an empty line)"),
    ("Ctrl-C, /quit", "quit"),
    ("", ""),
    ("/chat USER", "open or start a conversation (name@server)"),
    ("/accept [USER]", "accept the contact request"),
    (
        "/refuse [USER]",
        "refuse the contact request (blocks the user)",
    ),
    (
        "/block [USER]",
        "block a user (default: this conversation's)",
    ),
    ("/unblock [USER]", "unblock a user"),
    (
        "/verify [USER]",
        "show the safety number; y marks it verified",
    ),
    ("/approve", "a new device of yours: compare the code, y/N"),
    ("/file PATH", "send a file to this conversation"),
    ("/save", "save the last received file of this conversation"),
    (
        "/edit TEXT, /delete",
        "change or withdraw your last message here",
    ),
    ("/receipts on|off", "send read receipts or not"),
];
