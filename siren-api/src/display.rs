//! How text that came from elsewhere (message bodies, device and contact names, error texts) is
//! shown on a terminal: C0 controls (TAB, CR and LF included), DEL, C1 controls, the bidi
//! embeddings and overrides U+202A–U+202E, the isolates U+2066–U+2069 and the marks U+200E,
//! U+200F and U+061C become visible escapes (`\t`, `\r`, `\n`, `\u{1b}`, `\u{202e}`, …), so
//! such text cannot drive the terminal or reorder what is shown. Used by `siren` for every line
//! it prints and by `sirend`'s admin commands for names users chose.

use std::fmt::{self, Display, Write as _};

/// Whether `c` is shown escaped.
pub fn is_escaped(c: char) -> bool {
    c.is_control()
        || matches!(
            c,
            '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}' | '\u{200E}' | '\u{200F}' | '\u{061C}'
        )
}

/// Shows a value with every character of [`is_escaped`] replaced by a visible escape.
#[derive(Debug, Clone, Copy)]
pub struct Escaped<T>(pub T);

impl<T: Display> Display for Escaped<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(Escaper(f), "{}", self.0)
    }
}

/// Writes through to a formatter, escaping on the way.
struct Escaper<'a, 'b>(&'a mut fmt::Formatter<'b>);

impl fmt::Write for Escaper<'_, '_> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        for c in s.chars() {
            match c {
                '\t' => self.0.write_str("\\t")?,
                '\n' => self.0.write_str("\\n")?,
                '\r' => self.0.write_str("\\r")?,
                c if is_escaped(c) => write!(self.0, "\\u{{{:x}}}", u32::from(c))?,
                c => self.0.write_char(c)?,
            }
        }
        Ok(())
    }
}
