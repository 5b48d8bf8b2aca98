//! Parse and build PostgreSQL v3 protocol messages.
//!
//! The framer ([`super::framer::PgFramer`]) only finds where a message ends; this module
//! reads and writes the few message bodies a rule engine needs to look inside. Every
//! length and count here is attacker-controlled, so each read is bounds-checked, a count
//! never reserves more than the remaining bytes can hold, and every parser returns a
//! [`MessageError`] instead of panicking. Parsers are strict like the server itself
//! (`pq_getmsgend`): trailing bytes after the last field are an error, so a message that
//! parses can be rebuilt byte for byte by the matching `build_*` function.
//!
//! Unless stated otherwise a `parse_*` function takes a message *body* (the bytes after
//! the Byte1 tag and the Int32 length, see [`typed`]) and a `build_*` function returns a
//! *whole* message (tag, length and body), ready to send.

mod backend;
#[doc(hidden)]
pub mod fixture;
mod startup;
#[cfg(test)]
mod tests;
mod wire;

pub use backend::{
    build_data_row, build_error, build_fields, build_ready, build_row_description, parse_data_row,
    parse_fields, parse_ready, parse_row_description, Field,
};
pub use startup::{build_startup, is_protocol_3, parse_startup, Startup};
use wire::{put_count, put_cstr, put_i16s, put_value, read_value, Reader};

/// StartupMessage code for protocol 3.0 (major 3 in the high 16 bits, minor 0).
pub const PROTOCOL_3_0: i32 = 196608;
/// StartupMessage code for protocol 3.2 (PostgreSQL 18: longer cancel keys).
pub const PROTOCOL_3_2: i32 = 196610;
/// SSLRequest code (1234.5679): the client asks for TLS before the StartupMessage.
pub const SSL_REQUEST: i32 = 80877103;
/// GSSENCRequest code (1234.5680): the client asks for GSSAPI encryption.
pub const GSSENC_REQUEST: i32 = 80877104;
/// CancelRequest code (1234.5678): sent on a fresh connection to cancel a query.
pub const CANCEL_REQUEST: i32 = 80877102;
/// Largest startup packet the server accepts (`MAX_STARTUP_PACKET_LENGTH`).
pub const MAX_STARTUP_LEN: usize = 10_000;
/// Longest cancel key a CancelRequest may carry (protocol 3.2, `MAX_CANCEL_KEY_LENGTH`).
pub const MAX_CANCEL_KEY_LEN: usize = 256;

/// Why a message could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum MessageError {
    /// The message ended before `what` was complete.
    #[error("message truncated in {what}")]
    Truncated {
        /// The field being read.
        what: &'static str,
    },
    /// A string field has no terminating NUL before the end of the message.
    #[error("{what} is not NUL-terminated")]
    NotNulTerminated {
        /// The field being read.
        what: &'static str,
    },
    /// A string field is not valid UTF-8.
    #[error("{what} is not valid UTF-8")]
    NotUtf8 {
        /// The field being read.
        what: &'static str,
    },
    /// A length or count is negative, out of range, or disagrees with the bytes present.
    #[error("bad length {len} for {what}")]
    BadLength {
        /// The length or count being checked.
        what: &'static str,
        /// The value found.
        len: i64,
    },
    /// The untyped first packet carries a code this module does not know.
    #[error("unknown startup code {0}")]
    UnknownStartupCode(i32),
    /// Bytes remain after the last field of the message.
    #[error("{count} trailing bytes after {what}")]
    TrailingBytes {
        /// The message being read.
        what: &'static str,
        /// How many bytes were left over.
        count: usize,
    },
    /// A one-byte field holds a value the protocol does not allow there.
    #[error("unexpected byte {byte:#04x} in {what}")]
    UnexpectedByte {
        /// The field being read.
        what: &'static str,
        /// The value found.
        byte: u8,
    },
}

/// A typed message split into its tag and body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Typed<'a> {
    /// The Byte1 message type (its meaning depends on the direction).
    pub tag: u8,
    /// The bytes after the Int32 length.
    pub body: &'a [u8],
}

/// Splits a whole typed message, checking that its length field (≥ 4) matches.
pub fn typed(whole_message: &[u8]) -> Result<Typed<'_>, MessageError> {
    let mut r = Reader::new(whole_message);
    let tag = r.u8("message type")?;
    let len = r.i32("message length")?;
    if usize::try_from(len).map_or(true, |l| l < 4 || l != whole_message.len() - 1) {
        return Err(MessageError::BadLength {
            what: "message length",
            len: i64::from(len),
        });
    }
    Ok(Typed { tag, body: r.buf })
}

/// Builds a whole typed message: `tag`, Int32 length (body + 4), `body`.
///
/// A body longer than `i32::MAX - 4` bytes cannot be framed; its length saturates (the
/// framer's `max_message` keeps real messages far below that).
pub fn build(tag: u8, body: &[u8]) -> Vec<u8> {
    let len = i32::try_from(body.len().saturating_add(4)).unwrap_or(i32::MAX);
    let mut out = Vec::with_capacity(body.len() + 5);
    out.push(tag);
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(body);
    out
}

/// Parses a Query (`Q`) body: the SQL text, possibly several statements.
pub fn parse_query(body: &[u8]) -> Result<&str, MessageError> {
    let mut r = Reader::new(body);
    let sql = r.cstr("query string")?;
    r.finish("Query")?;
    Ok(sql)
}

/// Builds a Query (`Q`) message.
pub fn build_query(sql: &str) -> Vec<u8> {
    let mut body = Vec::with_capacity(sql.len() + 1);
    put_cstr(&mut body, sql);
    build(b'Q', &body)
}

/// A Parse (`P`) message: prepares one statement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseMsg<'a> {
    /// Prepared statement name (empty: the unnamed statement).
    pub name: &'a str,
    /// The SQL text (one statement).
    pub query: &'a str,
    /// Parameter type OIDs the client specified (0: let the server infer).
    pub param_types: Vec<u32>,
}

/// Parses a Parse (`P`) body.
pub fn parse_parse(body: &[u8]) -> Result<ParseMsg<'_>, MessageError> {
    let mut r = Reader::new(body);
    let name = r.cstr("statement name")?;
    let query = r.cstr("query string")?;
    let (n, cap) = r.count("parameter type count", 4)?;
    let mut param_types = Vec::with_capacity(cap);
    for _ in 0..n {
        param_types.push(r.u32("parameter type")?);
    }
    r.finish("Parse")?;
    Ok(ParseMsg {
        name,
        query,
        param_types,
    })
}

/// Builds a Parse (`P`) message.
pub fn build_parse(msg: &ParseMsg<'_>) -> Vec<u8> {
    let mut body =
        Vec::with_capacity(msg.name.len() + msg.query.len() + 4 + 4 * msg.param_types.len());
    put_cstr(&mut body, msg.name);
    put_cstr(&mut body, msg.query);
    put_count(&mut body, msg.param_types.len());
    for t in &msg.param_types {
        body.extend_from_slice(&t.to_be_bytes());
    }
    build(b'P', &body)
}

/// A Bind (`B`) message: binds parameter values to a prepared statement as a portal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BindMsg<'a> {
    /// Destination portal name (empty: the unnamed portal).
    pub portal: &'a str,
    /// Source prepared statement name.
    pub statement: &'a str,
    /// Parameter format codes (none: all text; one: applies to all).
    pub param_formats: Vec<i16>,
    /// Parameter values, `None` for NULL.
    pub params: Vec<Option<&'a [u8]>>,
    /// Result column format codes (none: all text; one: applies to all).
    pub result_formats: Vec<i16>,
}

/// Parses a Bind (`B`) body.
pub fn parse_bind(body: &[u8]) -> Result<BindMsg<'_>, MessageError> {
    let mut r = Reader::new(body);
    let portal = r.cstr("portal name")?;
    let statement = r.cstr("statement name")?;
    let param_formats = r.i16_array("parameter format codes")?;
    let (n, cap) = r.count("parameter count", 4)?;
    let mut params = Vec::with_capacity(cap);
    for _ in 0..n {
        params.push(read_value(&mut r, "parameter value")?);
    }
    let result_formats = r.i16_array("result format codes")?;
    r.finish("Bind")?;
    Ok(BindMsg {
        portal,
        statement,
        param_formats,
        params,
        result_formats,
    })
}

/// Builds a Bind (`B`) message.
pub fn build_bind(msg: &BindMsg<'_>) -> Vec<u8> {
    let mut body = Vec::new();
    put_cstr(&mut body, msg.portal);
    put_cstr(&mut body, msg.statement);
    put_i16s(&mut body, &msg.param_formats);
    put_count(&mut body, msg.params.len());
    for p in &msg.params {
        put_value(&mut body, *p);
    }
    put_i16s(&mut body, &msg.result_formats);
    build(b'B', &body)
}

/// Parses a client Describe (`D`) or Close (`C`) body: kind `S` (statement) or `P`
/// (portal), and the name.
pub fn parse_describe(body: &[u8]) -> Result<(u8, &str), MessageError> {
    let mut r = Reader::new(body);
    let kind = r.u8("describe/close kind")?;
    if kind != b'S' && kind != b'P' {
        return Err(MessageError::UnexpectedByte {
            what: "describe/close kind",
            byte: kind,
        });
    }
    let name = r.cstr("describe/close name")?;
    r.finish("Describe/Close")?;
    Ok((kind, name))
}

/// Builds a client Describe (`D`) message for kind `S` or `P`.
pub fn build_describe(kind: u8, name: &str) -> Vec<u8> {
    build(b'D', &kind_name_body(kind, name))
}

/// Builds a client Close (`C`) message for kind `S` or `P`.
pub fn build_close(kind: u8, name: &str) -> Vec<u8> {
    build(b'C', &kind_name_body(kind, name))
}

fn kind_name_body(kind: u8, name: &str) -> Vec<u8> {
    let mut body = vec![kind];
    put_cstr(&mut body, name);
    body
}

/// Parses an Execute (`E`) body: portal name and maximum rows (0: no limit).
pub fn parse_execute(body: &[u8]) -> Result<(&str, i32), MessageError> {
    let mut r = Reader::new(body);
    let portal = r.cstr("portal name")?;
    let max_rows = r.i32("maximum rows")?;
    r.finish("Execute")?;
    Ok((portal, max_rows))
}

/// Builds an Execute (`E`) message.
pub fn build_execute(portal: &str, max_rows: i32) -> Vec<u8> {
    let mut body = Vec::with_capacity(portal.len() + 5);
    put_cstr(&mut body, portal);
    body.extend_from_slice(&max_rows.to_be_bytes());
    build(b'E', &body)
}

/// Builds a Sync (`S`) message: ends an extended-protocol pipeline.
pub fn build_sync() -> Vec<u8> {
    build(b'S', &[])
}

/// Builds a Terminate (`X`) message: the client ends the session.
pub fn build_terminate() -> Vec<u8> {
    build(b'X', &[])
}
