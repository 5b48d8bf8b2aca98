//! Splicing replacements into the original text: sqlparser's locations mapped to byte
//! offsets, each located literal checked to be the literal that was matched, and a
//! space added where a replacement would otherwise fuse with its neighbours.

use super::visitor::Edit;
use super::*;

/// Maps sqlparser locations (1-based line, 1-based column in characters, lines
/// separated by `\n`) to byte offsets.
pub(in crate::pg::sql) struct LineIndex<'s> {
    pub(super) sql: &'s str,
    starts: Vec<usize>,
    /// The last (line, column, byte offset) found: lookups in text order walk on from
    /// it instead of from the line's start (one long line of many literals would
    /// otherwise cost time quadratic in its length).
    cursor: std::cell::Cell<Option<(usize, usize, usize)>>,
}

impl<'s> LineIndex<'s> {
    pub(in crate::pg::sql) fn new(sql: &'s str) -> Self {
        let starts = std::iter::once(0)
            .chain(sql.match_indices('\n').map(|(i, _)| i + 1))
            .collect();
        LineIndex {
            sql,
            starts,
            cursor: std::cell::Cell::new(None),
        }
    }

    pub(in crate::pg::sql) fn offset(&self, at: Location) -> Option<usize> {
        let line = usize::try_from(at.line).ok()?.checked_sub(1)?;
        let column = usize::try_from(at.column).ok()?.checked_sub(1)?;
        let start = *self.starts.get(line)?;
        if column == 0 {
            return Some(start);
        }
        let (from_column, from_byte) = match self.cursor.get() {
            Some((l, c, b)) if l == line && c <= column => (c, b),
            _ => (0, start),
        };
        let rest = &self.sql[from_byte..];
        let found = match rest.char_indices().nth(column - from_column) {
            Some((i, _)) => Some(from_byte + i),
            None if rest.chars().count() == column - from_column => Some(self.sql.len()),
            None => None,
        };
        if let Some(byte) = found {
            self.cursor.set(Some((line, column, byte)));
        }
        found
    }

    /// [`offset`](Self::offset) of many locations in one pass over the text (linear
    /// in the text plus the sorting, where one by one is linear in each column).
    pub(super) fn offsets(&self, locations: &[Location]) -> Vec<Option<usize>> {
        let mut order: Vec<usize> = (0..locations.len()).collect();
        order.sort_by_key(|&i| (locations[i].line, locations[i].column));
        let mut out = vec![None; locations.len()];
        // (line, column) reached and its byte offset, both 0-based.
        let mut cursor: Option<(usize, usize, usize)> = None;
        for i in order {
            let at = locations[i];
            let (Some(line), Some(column)) = (
                usize::try_from(at.line).ok().and_then(|l| l.checked_sub(1)),
                usize::try_from(at.column)
                    .ok()
                    .and_then(|c| c.checked_sub(1)),
            ) else {
                continue;
            };
            let Some(&line_start) = self.starts.get(line) else {
                continue;
            };
            let (mut col, mut byte) = match cursor {
                Some((l, c, b)) if l == line && c <= column => (c, b),
                _ => (0, line_start),
            };
            while col < column {
                match self.sql[byte..].chars().next() {
                    Some(c) => {
                        byte += c.len_utf8();
                        col += 1;
                    }
                    None => break,
                }
            }
            cursor = Some((line, col, byte));
            if col == column {
                out[i] = Some(byte);
            }
        }
        out
    }
}

/// The literal a located text holds, if it is exactly one literal token.
fn located_value(text: &str) -> Option<Value> {
    let tokens = tokenize(text).ok()?;
    let mut significant = tokens.into_iter().filter(|t| !is_whitespace(&t.token));
    let token = significant.next()?.token;
    if significant.next().is_some() {
        return None;
    }
    Some(match token {
        Token::Number(n, long) => Value::Number(n, long),
        Token::SingleQuotedString(s) => Value::SingleQuotedString(s),
        Token::EscapedStringLiteral(s) => Value::EscapedStringLiteral(s),
        Token::UnicodeStringLiteral(s) => Value::UnicodeStringLiteral(s),
        Token::NationalStringLiteral(s) => Value::NationalStringLiteral(s),
        Token::DollarQuotedString(d) => Value::DollarQuotedString(d),
        Token::HexStringLiteral(s) => Value::HexStringLiteral(s),
        _ => return None,
    })
}

/// Replaces each edited literal in the original text.
pub(super) fn splice(sql: &str, edits: Vec<Edit>, rules: &[Compiled]) -> Result<String, SqlError> {
    let index = LineIndex::new(sql);
    let locations: Vec<Location> = edits
        .iter()
        .flat_map(|e| [e.span.start, e.span.end])
        .collect();
    let offsets = index.offsets(&locations);
    let mut ranges = Vec::with_capacity(edits.len());
    for (k, edit) in edits.into_iter().enumerate() {
        let not_located = || SqlError::LiteralNotLocated {
            line: edit.span.start.line,
            column: edit.span.start.column,
        };
        let start = offsets[2 * k].ok_or_else(not_located)?;
        let end = offsets[2 * k + 1].ok_or_else(not_located)?;
        let token = sql.get(start..end).ok_or_else(not_located)?;
        // The located text must be the literal itself.
        if located_value(token).as_ref() != Some(&edit.value) {
            return Err(not_located());
        }
        let start = if edit.sign {
            let before = sql[..start].trim_end();
            if !before.ends_with(['-', '+']) {
                return Err(not_located());
            }
            before.len() - 1
        } else {
            start
        };
        ranges.push((start, end, edit.rule, edit.quote));
    }
    ranges.sort_unstable();
    ranges.dedup();
    let mut out = String::with_capacity(sql.len() + 16 * ranges.len());
    let mut at = 0;
    for (start, end, rule, quote) in ranges {
        if start < at {
            // Overlapping edits cannot come from distinct literals.
            return Err(SqlError::LiteralNotLocated { line: 0, column: 0 });
        }
        let to = if quote {
            &rules[rule].to_quoted
        } else {
            &rules[rule].to
        };
        out.push_str(&sql[at..start]);
        let before = sql[..start].chars().next_back();
        let after = sql[end..].chars().next();
        if before.is_some_and(|c| glues(c) || (to.starts_with('-') && glues_minus(c))) {
            out.push(' ');
        }
        out.push_str(to);
        if after.is_some_and(glues) {
            out.push(' ');
        }
        at = end;
    }
    out.push_str(&sql[at..]);
    Ok(out)
}

/// Characters that would merge with an adjacent literal into one token.
fn glues(c: char) -> bool {
    c.is_alphanumeric() || c == '_' || c == '$' || c == '\'' || c == '.'
}

/// Characters that, right before a `-`, would start a comment (`--`) or form a
/// longer operator with it (PostgreSQL lexes `@-` as one operator, `=-` as two).
fn glues_minus(c: char) -> bool {
    "-~!@#%^&|`?".contains(c)
}
