//! Numeric constants (PostgreSQL 15's rules, trailing junk rejected) and operators
//! (scan.l's rules for splitting a run of operator characters).

use super::char_classes::{is_ident_start, is_non_sql_op_char, is_op_char};
use super::scanner::Lexer;
use super::{LexError, Tok, NAMEDATALEN};

/// What is known of the operator run a position lies in, so that re-scanning the
/// rest of a run after a split costs nothing (flex's own re-scan is quadratic).
#[derive(Debug, Clone, Copy)]
pub(super) struct OpRun {
    /// Where the run was first entered.
    from: usize,
    /// End of the operator part: the run's end or the first `/*` / `--` in it.
    end: usize,
    /// Start of the `+`/`-` characters that end `[from, end)`.
    trailing_signs: usize,
    /// Last character in `[from, end)` that lets an operator end in `+` or `-`.
    last_non_sql: Option<usize>,
}

impl Lexer<'_> {
    /// {integer}, {decimal}, {decimalfail}, {real}, {realfail} and the PostgreSQL 15
    /// junk rules, longest match first.
    pub(super) fn number(&mut self, i: usize) -> Result<usize, LexError> {
        let digits_from = |mut j: usize| {
            while self.at(j).is_ascii_digit() {
                j += 1;
            }
            j
        };
        let mut j = digits_from(i);
        if self.at(j) == b'.' {
            if j > i && self.at(j + 1) == b'.' {
                // {decimalfail}: `1..10` is 1, `..`, 10.
                self.push(i..j, Tok::Number(self.src[i..j].to_owned()));
                return Ok(j);
            }
            j = digits_from(j + 1);
        }
        let mantissa_end = j;
        let junk = LexError::TrailingJunkAfterNumber { at: i };
        if matches!(self.at(j), b'e' | b'E') {
            let mut k = j + 1;
            if matches!(self.at(k), b'+' | b'-') {
                if !self.at(k + 1).is_ascii_digit() {
                    // {realfail} (mantissa, e, sign) outruns {integer_junk}: the
                    // mantissa alone is the number; `e` is rescanned.
                    self.push(
                        i..mantissa_end,
                        Tok::Number(self.src[i..mantissa_end].to_owned()),
                    );
                    return Ok(mantissa_end);
                }
                k += 1;
            }
            if !self.at(k).is_ascii_digit() {
                // `1e`, `1.5ex`: {integer_junk} / {decimal_junk}.
                return Err(junk);
            }
            j = digits_from(k);
        }
        if is_ident_start(self.at(j)) {
            return Err(junk);
        }
        self.push(i..j, Tok::Number(self.src[i..j].to_owned()));
        Ok(j)
    }

    /// {operator}, with scan.l's splitting rules.
    pub(super) fn operator(&mut self, i: usize) -> Result<usize, LexError> {
        let run = match self.op_run {
            Some(run) if run.from <= i && i < run.end => run,
            _ => {
                let run = self.scan_op_run(i);
                self.op_run = Some(run);
                run
            }
        };
        let mut end = run.end;
        if end - i > 1
            && matches!(self.b[end - 1], b'+' | b'-')
            && run.last_non_sql.is_none_or(|p| p < i)
        {
            // Strip every trailing + and -, keeping at least one character.
            end = run.trailing_signs.max(i + 1);
        }
        if end - i >= NAMEDATALEN {
            return Err(LexError::OperatorTooLong { at: i });
        }
        self.push(i..end, Tok::Op(self.src[i..end].to_owned()));
        Ok(end)
    }

    fn scan_op_run(&self, from: usize) -> OpRun {
        let b = self.b;
        let mut run_end = from;
        while run_end < b.len() && is_op_char(b[run_end]) {
            run_end += 1;
        }
        // The run never starts with a comment (those are matched first), so `end`
        // stays past `from`.
        let end = (from..run_end.saturating_sub(1))
            .find(|&k| matches!((b[k], b[k + 1]), (b'/', b'*') | (b'-', b'-')))
            .unwrap_or(run_end);
        let mut trailing_signs = end;
        while trailing_signs > from && matches!(b[trailing_signs - 1], b'+' | b'-') {
            trailing_signs -= 1;
        }
        let last_non_sql = (from..end).rev().find(|&k| is_non_sql_op_char(b[k]));
        OpRun {
            from,
            end,
            trailing_signs,
            last_non_sql,
        }
    }
}
