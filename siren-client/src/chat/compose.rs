//! The compose box's text: a multi-line buffer with a cursor, edited by keys.

/// The text being written and where the cursor is.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct Compose {
    text: String,
    /// A byte offset into `text`, always on a character boundary.
    cursor: usize,
}

impl Compose {
    /// The text.
    pub fn text(&self) -> &str {
        &self.text
    }

    /// The cursor, as a byte offset into [`Compose::text`].
    pub fn cursor(&self) -> usize {
        self.cursor
    }

    /// Nothing written.
    pub fn is_empty(&self) -> bool {
        self.text.is_empty()
    }

    /// Inserts a character at the cursor.
    pub fn insert(&mut self, c: char) {
        self.text.insert(self.cursor, c);
        self.cursor += c.len_utf8();
    }

    /// Inserts pasted text at the cursor: line breaks kept (`\r\n` and `\r` become `\n`), tabs
    /// kept, other control characters dropped.
    pub fn paste(&mut self, s: &str) {
        let s = s.replace("\r\n", "\n").replace('\r', "\n");
        for c in s.chars() {
            if c == '\n' || c == '\t' || !c.is_control() {
                self.insert(c);
            }
        }
    }

    /// Deletes the character before the cursor.
    pub fn backspace(&mut self) {
        if let Some(c) = self
            .text
            .get(..self.cursor)
            .and_then(|t| t.chars().next_back())
        {
            self.cursor -= c.len_utf8();
            self.text.remove(self.cursor);
        }
    }

    /// Deletes the character at the cursor.
    pub fn delete(&mut self) {
        if self.cursor < self.text.len() {
            self.text.remove(self.cursor);
        }
    }

    /// Moves the cursor one character left.
    pub fn left(&mut self) {
        if let Some(c) = self
            .text
            .get(..self.cursor)
            .and_then(|t| t.chars().next_back())
        {
            self.cursor -= c.len_utf8();
        }
    }

    /// Moves the cursor one character right.
    pub fn right(&mut self) {
        if let Some(c) = self.text.get(self.cursor..).and_then(|t| t.chars().next()) {
            self.cursor += c.len_utf8();
        }
    }

    /// Moves the cursor to the start of its line.
    pub fn home(&mut self) {
        let before = self.text.get(..self.cursor).unwrap_or("");
        self.cursor = before.rfind('\n').map_or(0, |i| i + 1);
    }

    /// Moves the cursor to the end of its line.
    pub fn end(&mut self) {
        let after = self.text.get(self.cursor..).unwrap_or("");
        self.cursor += after.find('\n').unwrap_or(after.len());
    }

    /// Deletes from the start of the line to the cursor (Ctrl-U).
    pub fn kill_to_line_start(&mut self) {
        let end = self.cursor;
        self.home();
        self.text.replace_range(self.cursor..end, "");
    }

    /// Empties the box, returning what was written.
    pub fn take(&mut self) -> String {
        self.cursor = 0;
        std::mem::take(&mut self.text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn editing_moves_over_characters_not_bytes() {
        let mut c = Compose::default();
        for ch in "héllo".chars() {
            c.insert(ch);
        }
        c.left();
        c.left();
        c.left();
        c.left();
        c.backspace();
        assert_eq!(c.text(), "éllo");
        c.delete();
        assert_eq!(c.text(), "llo");
        c.end();
        c.insert('\n');
        c.paste("a\r\nb\x1bc\td");
        assert_eq!(c.text(), "llo\na\nbc\td");
        c.home();
        c.insert('>');
        assert_eq!(c.text(), "llo\na\n>bc\td");
        c.kill_to_line_start();
        assert_eq!(c.text(), "llo\na\nbc\td");
        for _ in 0..20 {
            c.right();
        }
        assert_eq!(c.cursor(), c.text().len());
        assert_eq!(c.take(), "llo\na\nbc\td");
        assert!(c.is_empty());
        c.backspace();
        c.left();
        c.delete();
        assert_eq!(c.cursor(), 0);
    }
}
