//! scan.l's character classes, and its rule for when whitespace continues a quoted
//! literal, which the `U&` rewriter must respect as the scanner does.

/// scan.l's `{space}`.
pub(super) fn is_space(c: u8) -> bool {
    matches!(c, b' ' | b'\t' | b'\n' | b'\r' | 0x0c)
}

/// scan.l's `{ident_start}`: `[A-Za-z\200-\377_]`.
pub(super) fn is_ident_start(c: u8) -> bool {
    c.is_ascii_alphabetic() || c == b'_' || c >= 0x80
}

/// scan.l's `{ident_cont}`: `[A-Za-z\200-\377_0-9\$]`.
pub(super) fn is_ident_cont(c: u8) -> bool {
    is_ident_start(c) || c.is_ascii_digit() || c == b'$'
}

/// scan.l's `{dolq_cont}`: `{ident_cont}` without `$`.
pub(super) fn is_dolq_cont(c: u8) -> bool {
    is_ident_start(c) || c.is_ascii_digit()
}

/// scan.l's `{op_chars}`.
pub(super) fn is_op_char(c: u8) -> bool {
    matches!(
        c,
        b'~' | b'!'
            | b'@'
            | b'#'
            | b'^'
            | b'&'
            | b'|'
            | b'`'
            | b'?'
            | b'+'
            | b'-'
            | b'*'
            | b'/'
            | b'%'
            | b'<'
            | b'>'
            | b'='
    )
}

/// The characters that let a multi-character operator end in `+` or `-`.
pub(super) fn is_non_sql_op_char(c: u8) -> bool {
    matches!(
        c,
        b'~' | b'!' | b'@' | b'#' | b'^' | b'&' | b'|' | b'`' | b'?' | b'%'
    )
}

/// Where scan.l's `{whitespace_with_newline}` starting at `i` ends, if it matches:
/// spaces, tabs, form feeds, newlines and `--` comments (each running to a newline),
/// with at least one newline. `/* */` comments do not count.
pub(super) fn whitespace_with_newline_end(b: &[u8], mut i: usize) -> Option<usize> {
    let mut newline = false;
    loop {
        match b.get(i) {
            Some(b' ' | b'\t' | 0x0c) => i += 1,
            Some(b'\n' | b'\r') => {
                newline = true;
                i += 1;
            }
            Some(b'-') if b.get(i + 1) == Some(&b'-') => {
                // A comment must reach a newline to be followed by a quote.
                let rest = &b[i..];
                i += rest.iter().position(|&c| c == b'\n' || c == b'\r')?;
            }
            _ => break,
        }
    }
    newline.then_some(i)
}

/// scan.l's `{quotecontinue}` after a closing quote: the offset of the quote that
/// continues the literal, if there is one.
pub(super) fn quote_continuation(b: &[u8], after_quote: usize) -> Option<usize> {
    let end = whitespace_with_newline_end(b, after_quote)?;
    (b.get(end) == Some(&b'\'')).then_some(end)
}
