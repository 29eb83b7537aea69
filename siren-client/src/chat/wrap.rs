//! Styled text broken into rows of a given width, as the terminal will show them (wide
//! characters count two columns). Messages break between words where they can; the compose box
//! breaks anywhere, so the cursor's row and column follow from the text before it.

use ratatui::style::Style;
use ratatui::text::{Line, Span};
use unicode_width::UnicodeWidthChar;

/// Characters with their styles, built piece by piece.
#[derive(Debug, Default, Clone)]
pub(crate) struct Cells(Vec<(char, Style)>);

impl Cells {
    /// Appends text in a style. The text must already be escaped (no control characters).
    pub fn push(&mut self, text: &str, style: Style) -> &mut Cells {
        self.0.extend(text.chars().map(|c| (c, style)));
        self
    }
}

/// Columns a character takes (zero-width ones take none).
pub(crate) fn char_width(c: char) -> usize {
    c.width().unwrap_or(0)
}

/// Breaks cells into rows of at most `width` columns, between words where a row has a space to
/// break at, inside a word otherwise. Always at least one row; a width of 0 is taken as 1.
pub(crate) fn wrap_words(cells: &Cells, width: usize) -> Vec<Line<'static>> {
    let width = width.max(1);
    let mut rows: Vec<Vec<(char, Style)>> = Vec::new();
    let mut row: Vec<(char, Style)> = Vec::new();
    let mut row_width = 0;
    for &(c, style) in &cells.0 {
        let w = char_width(c);
        if row_width + w > width && !row.is_empty() {
            // Break after the row's last space if there is one (the word moves down whole).
            let rest = match row.iter().rposition(|(c, _)| *c == ' ') {
                Some(i) if i + 1 < row.len() => row.split_off(i + 1),
                _ => Vec::new(),
            };
            rows.push(std::mem::replace(&mut row, rest));
            row_width = row.iter().map(|(c, _)| char_width(*c)).sum();
            // A word longer than a row still breaks inside.
            if row_width + w > width && !row.is_empty() {
                rows.push(std::mem::take(&mut row));
                row_width = 0;
            }
        }
        row.push((c, style));
        row_width += w;
    }
    rows.push(row);
    rows.into_iter().map(to_line).collect()
}

/// Breaks cells into rows of at most `width` columns anywhere; also returns the row and column
/// where a cursor before cell `cursor` (after the last if it is the count) would be. A width of
/// 0 is taken as 1.
pub(crate) fn wrap_chars(
    cells: &Cells,
    width: usize,
    cursor: Option<usize>,
) -> (Vec<Line<'static>>, Option<(usize, usize)>) {
    let width = width.max(1);
    let mut rows: Vec<Vec<(char, Style)>> = Vec::new();
    let mut row: Vec<(char, Style)> = Vec::new();
    let mut row_width = 0;
    let mut at = None;
    for (i, &(c, style)) in cells.0.iter().enumerate() {
        let w = char_width(c);
        if row_width + w > width && !row.is_empty() {
            rows.push(std::mem::take(&mut row));
            row_width = 0;
        }
        if cursor == Some(i) {
            at = Some((rows.len(), row_width));
        }
        row.push((c, style));
        row_width += w;
    }
    if cursor == Some(cells.0.len()) {
        if row_width >= width {
            rows.push(std::mem::take(&mut row));
            row_width = 0;
        }
        at = Some((rows.len(), row_width));
    }
    rows.push(row);
    (rows.into_iter().map(to_line).collect(), at)
}

/// One row of cells as a line of spans (runs of one style).
fn to_line(row: Vec<(char, Style)>) -> Line<'static> {
    let mut spans: Vec<Span<'static>> = Vec::new();
    let mut text = String::new();
    let mut current: Option<Style> = None;
    for (c, style) in row {
        if current.is_some_and(|s| s != style) {
            spans.push(Span::styled(
                std::mem::take(&mut text),
                current.unwrap_or_default(),
            ));
        }
        current = Some(style);
        text.push(c);
    }
    if let Some(style) = current {
        spans.push(Span::styled(text, style));
    }
    Line::from(spans)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plain(s: &str) -> Cells {
        let mut c = Cells::default();
        c.push(s, Style::default());
        c
    }

    fn texts(lines: &[Line<'_>]) -> Vec<String> {
        lines.iter().map(|l| l.to_string()).collect()
    }

    #[test]
    fn words_move_down_whole_and_long_words_break() {
        assert_eq!(
            texts(&wrap_words(&plain("hello big world"), 10)),
            vec!["hello big ", "world"]
        );
        assert_eq!(
            texts(&wrap_words(&plain("abcdefghijkl xy"), 5)),
            vec!["abcde", "fghij", "kl xy"]
        );
        assert_eq!(texts(&wrap_words(&plain("日本語"), 4)), vec!["日本", "語"]);
        assert_eq!(texts(&wrap_words(&plain(""), 0)), vec![""]);
        assert_eq!(texts(&wrap_words(&plain("ab"), 0)), vec!["a", "b"]);
    }

    #[test]
    fn the_cursor_lands_where_the_text_before_it_ends() {
        let (rows, at) = wrap_chars(&plain("abcdef"), 4, Some(6));
        assert_eq!(texts(&rows), vec!["abcd", "ef"]);
        assert_eq!(at, Some((1, 2)));
        let (rows, at) = wrap_chars(&plain("abcd"), 4, Some(4));
        assert_eq!(texts(&rows), vec!["abcd", ""]);
        assert_eq!(at, Some((1, 0)));
        let (rows, at) = wrap_chars(&plain("abcd"), 4, None);
        assert_eq!(texts(&rows), vec!["abcd"]);
        assert_eq!(at, None);
        let (_, at) = wrap_chars(&plain("abcdef"), 4, Some(1));
        assert_eq!(at, Some((0, 1)));
        let (rows, at) = wrap_chars(&plain(""), 4, Some(0));
        assert_eq!(texts(&rows), vec![""]);
        assert_eq!(at, Some((0, 0)));
    }
}
