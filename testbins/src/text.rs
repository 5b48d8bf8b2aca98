//! Byte/text conversions shared by the programs' arguments and progress lines.

/// Lower-case hex of `bytes`.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Makes bytes printable on one line: `\n` `\r` `\t` `\\` and `\xHH` escapes.
pub fn escape_text(bytes: &[u8]) -> String {
    let mut s = String::new();
    for &b in bytes {
        match b {
            b'\n' => s.push_str("\\n"),
            b'\r' => s.push_str("\\r"),
            b'\t' => s.push_str("\\t"),
            b'\\' => s.push_str("\\\\"),
            0x20..=0x7e => s.push(b as char),
            _ => s.push_str(&format!("\\x{b:02x}")),
        }
    }
    s
}

/// Splits on unescaped commas and unescapes each piece (see [`unescape`]).
pub fn split_pieces(s: &str) -> Vec<Vec<u8>> {
    let mut pieces = vec![String::new()];
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        match c {
            ',' => pieces.push(String::new()),
            '\\' => {
                let next = chars.next();
                let cur = pieces.last_mut().expect("never empty");
                match next {
                    Some(',') => cur.push(','),
                    Some(n) => {
                        cur.push('\\');
                        cur.push(n);
                    }
                    None => cur.push('\\'),
                }
            }
            c => pieces.last_mut().expect("never empty").push(c),
        }
    }
    pieces.iter().map(|p| unescape(p)).collect()
}

/// Expands `\n` `\r` `\t` `\\` `\0` and `\xHH`; other text is taken literally.
pub fn unescape(s: &str) -> Vec<u8> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] != b'\\' || i + 1 == b.len() {
            out.push(b[i]);
            i += 1;
            continue;
        }
        let (byte, used) = match b[i + 1] {
            b'n' => (b'\n', 2),
            b'r' => (b'\r', 2),
            b't' => (b'\t', 2),
            b'0' => (0, 2),
            b'\\' => (b'\\', 2),
            b'x' if s
                .get(i + 2..i + 4)
                .is_some_and(|h| u8::from_str_radix(h, 16).is_ok()) =>
            {
                (
                    u8::from_str_radix(&s[i + 2..i + 4], 16).expect("checked"),
                    4,
                )
            }
            _ => (b'\\', 1),
        };
        out.push(byte);
        i += used;
    }
    out
}
