//! Text from elsewhere (names, message bodies, file names, presence texts, server errors) made
//! safe to draw: control characters, DEL, C1 controls and the bidi formatting characters become
//! visible escapes (`\u{1b}`, `\t`, `\u{202e}`, …), exactly as [`crate::terminal`] prints them,
//! so a message cannot move the cursor, change colours, clear the screen or reorder what is
//! shown.

use crate::terminal::Escaped;

/// One line of text as shown: every character that could drive the terminal escaped (line
/// breaks too).
pub fn shown(text: &str) -> String {
    Escaped(text).to_string()
}

/// A text that may span lines, as shown: split at each line break (`\n`, or `\r\n`), each line
/// escaped as by [`shown`]. An empty text is one empty line.
pub fn shown_lines(text: &str) -> Vec<String> {
    text.split('\n')
        .map(|line| shown(line.strip_suffix('\r').unwrap_or(line)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::terminal::is_escaped;

    #[test]
    fn escape_sequences_and_bidi_become_visible_text() {
        assert_eq!(shown("a\x1b[2Jb\u{202e}c"), "a\\u{1b}[2Jb\\u{202e}c");
        assert_eq!(shown("x\ny"), "x\\ny");
        assert_eq!(
            shown_lines("one\r\ntwo\x1b]0;title\x07\nthree\rfour"),
            vec!["one", "two\\u{1b}]0;title\\u{7}", "three\\rfour"]
        );
        assert_eq!(shown_lines(""), vec![""]);
        for line in shown_lines("\u{9b}31m\x00\x7f\u{2066}\t") {
            assert!(!line.chars().any(is_escaped), "{line:?}");
        }
    }
}
