//! Everything `siren` prints goes through here, so text that came from elsewhere (message
//! bodies, presence texts, device and contact names, server error texts, files) cannot drive the
//! terminal: a sender's `ESC[2K\r` would otherwise erase the line and make what follows look like
//! a message from someone else, and a bidi override would reorder what is shown.
//!
//! Every printed line is escaped as a whole: C0 controls (TAB, CR and LF inside a line included),
//! DEL, C1 controls, the bidi embeddings and overrides U+202A–U+202E, the isolates
//! U+2066–U+2069 and the marks U+200E, U+200F and U+061C become visible escapes (`\t`, `\r`,
//! `\n`, `\u{1b}`, `\u{202e}`, …); everything else, other scripts and emoji included, is shown as
//! it is. The line's own end is the only newline written.
//!
//! Use [`say!`](crate::say!) (stdout) and [`note!`](crate::note!) (stderr) like `println!` and
//! `eprintln!`; the crate's `clippy.toml` forbids printing any other way, so a print site cannot
//! forget. [`Escaped`] is the same escaping as a `Display` wrapper, for library users; it lives in
//! `siren_api::display`, so `sirend`'s admin commands show names the same way.

use std::fmt;
use std::io::Write as _;

pub use siren_api::display::{Escaped, is_escaped};

/// Prints one escaped line on stdout (what [`say!`](crate::say!) expands to). A closed stdout is
/// not an error worth dying for.
#[allow(clippy::disallowed_methods)] // the one place that writes to stdout
pub fn say(args: fmt::Arguments<'_>) {
    let _ = writeln!(std::io::stdout().lock(), "{}", Escaped(args));
}

/// Prints one escaped line on stderr (what [`note!`](crate::note!) expands to).
#[allow(clippy::disallowed_methods)] // the one place that writes to stderr
pub fn note(args: fmt::Arguments<'_>) {
    let _ = writeln!(std::io::stderr().lock(), "{}", Escaped(args));
}

/// `println!` with every line escaped ([`terminal`](crate::terminal)).
#[macro_export]
macro_rules! say {
    ($($arg:tt)*) => {
        $crate::terminal::say(::std::format_args!($($arg)*))
    };
}

/// `eprintln!` with every line escaped ([`terminal`](crate::terminal)).
#[macro_export]
macro_rules! note {
    ($($arg:tt)*) => {
        $crate::terminal::note(::std::format_args!($($arg)*))
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shown(s: &str) -> String {
        Escaped(s).to_string()
    }

    #[test]
    fn controls_and_bidi_characters_are_escaped() {
        assert_eq!(
            shown("hi\x1b[2K\rbob: x\ty\nz"),
            "hi\\u{1b}[2K\\rbob: x\\ty\\nz"
        );
        assert_eq!(
            shown("\0\x07\x7f\u{85}\u{9b}"),
            "\\u{0}\\u{7}\\u{7f}\\u{85}\\u{9b}"
        );
        for c in ('\u{202A}'..='\u{202E}')
            .chain('\u{2066}'..='\u{2069}')
            .chain(['\u{200E}', '\u{200F}', '\u{061C}'])
        {
            let out = shown(&format!("a{c}b"));
            assert_eq!(out, format!("a\\u{{{:x}}}b", u32::from(c)));
        }
    }

    #[test]
    fn other_text_is_shown_as_it_is() {
        for s in [
            "plain ascii, punctuation: ;{}[]\\/",
            "é ü ß Ω 日本語 עברית العربية 😀",
            "\u{200D}\u{FE0F}",
        ] {
            assert_eq!(shown(s), s);
        }
    }

    #[test]
    fn formatting_passes_through_the_escaper() {
        let body = "x\x1by";
        assert_eq!(
            Escaped(format_args!("{}: {body}", "alice@alpha.test")).to_string(),
            "alice@alpha.test: x\\u{1b}y"
        );
    }
}
