//! Loader for the byte fixtures in `transforms/fixtures/*.hex`, shared by every test
//! that replays PostgreSQL traffic (framer, rules, snapshots, fuzz seeds).
//!
//! Format, one message per line:
//! - `#` starts a comment that runs to the end of the line; blank lines are skipped;
//! - pairs of hex digits are bytes (whitespace between pairs is ignored);
//! - `"text"` is the bytes of `text`, with escapes `\0`, `\n`, `\t`, `\\` and `\"`, so a
//!   fixture shows its SQL and names while every length stays explicit hex.

use crate::Direction;

/// Lists fixture files as `(name, text)` pairs, embedded at compile time.
macro_rules! fixtures {
    ($($name:literal,)*) => {
        &[$(($name, include_str!(concat!("../../../fixtures/", $name))),)*]
    };
}

/// Every `transforms/fixtures/*.hex` file as `(file name, text)`; a test checks that the
/// list matches the directory, so a new fixture is replayed everywhere at once.
pub const ALL: &[(&str, &str)] = fixtures!(
    "cancel-request-3.2.inbound.hex",
    "cancel-request.inbound.hex",
    "cancelled-query.inbound.hex",
    "cancelled-query.outbound.hex",
    "copy-fail.inbound.hex",
    "copy-fail.outbound.hex",
    "copy-from-stdin.inbound.hex",
    "copy-from-stdin.outbound.hex",
    "copy-to-stdout.inbound.hex",
    "copy-to-stdout.outbound.hex",
    "error-position.inbound.hex",
    "error-position.outbound.hex",
    "extended-protocol.inbound.hex",
    "extended-protocol.outbound.hex",
    "gssenc-ssl-startup-3.2.inbound.hex",
    "malformed-direct-tls.inbound.hex",
    "malformed-negative-length.inbound.hex",
    "malformed-repeated-ssl.inbound.hex",
    "malformed-short-length.outbound.hex",
    "malformed-startup-length.inbound.hex",
    "malformed-too-long.inbound.hex",
    "malformed-unknown-startup.inbound.hex",
    "multi-statement.inbound.hex",
    "multi-statement.outbound.hex",
    "simple-query.inbound.hex",
    "simple-query.outbound.hex",
    "ssl-startup.inbound.hex",
    "ssl-startup.outbound.hex",
    "startup-3.2.outbound.hex",
    "transaction-error.inbound.hex",
    "transaction-error.outbound.hex",
);

/// The direction a fixture file holds, from its `<case>.<direction>.hex` name.
pub fn direction_of(name: &str) -> Direction {
    if name.contains(".outbound.") {
        Direction::Outbound
    } else {
        Direction::Inbound
    }
}

/// True for a `malformed-*` fixture: its last line must make the framer fail.
pub fn is_malformed(name: &str) -> bool {
    name.starts_with("malformed-")
}

/// Parses fixture `text` into one byte vector per non-empty line.
///
/// # Panics
/// On a malformed line (odd hex digit count, unknown escape, unclosed string), naming
/// the line: fixtures are test data and a typo must fail loudly.
pub fn load_hex_fixture(text: &str) -> Vec<Vec<u8>> {
    text.lines()
        .enumerate()
        .filter_map(|(i, line)| match parse_line(line) {
            Ok(bytes) if bytes.is_empty() => None,
            Ok(bytes) => Some(bytes),
            Err(why) => panic!("fixture line {}: {why}: {line:?}", i + 1),
        })
        .collect()
}

fn parse_line(line: &str) -> Result<Vec<u8>, &'static str> {
    let mut out = Vec::new();
    let mut chars = line.chars();
    let mut pending: Option<u8> = None;
    while let Some(c) = chars.next() {
        match c {
            '#' => break,
            c if c.is_whitespace() || c == '"' => {
                if pending.is_some() {
                    return Err("odd number of hex digits");
                }
                if c != '"' {
                    continue;
                }
                loop {
                    match chars.next().ok_or("unclosed string")? {
                        '"' => break,
                        '\\' => out.push(match chars.next().ok_or("unclosed string")? {
                            '0' => 0,
                            'n' => b'\n',
                            't' => b'\t',
                            '\\' => b'\\',
                            '"' => b'"',
                            _ => return Err("unknown escape"),
                        }),
                        c => {
                            let mut buf = [0u8; 4];
                            out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
                        }
                    }
                }
            }
            c => {
                let digit = c.to_digit(16).ok_or("not a hex digit")? as u8;
                match pending.take() {
                    None => pending = Some(digit),
                    Some(high) => out.push(high << 4 | digit),
                }
            }
        }
    }
    match pending {
        Some(_) => Err("odd number of hex digits"),
        None => Ok(out),
    }
}
