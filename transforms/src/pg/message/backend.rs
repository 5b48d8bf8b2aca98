//! Server messages a rule reads or forges: RowDescription, DataRow, ErrorResponse and
//! NoticeResponse, ReadyForQuery.

use super::wire::{put_count, put_cstr, put_value, read_value, Reader};
use super::{build, MessageError};

/// One column of a RowDescription.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Field<'a> {
    /// Column name (its alias if renamed).
    pub name: &'a str,
    /// OID of the source table, 0 if the column is not a plain table column.
    pub table_oid: u32,
    /// Attribute number in that table, 0 if none.
    pub column: i16,
    /// Data type OID.
    pub type_oid: u32,
    /// Data type size (`pg_type.typlen`; negative for variable width).
    pub type_len: i16,
    /// Type modifier (`pg_attribute.atttypmod`).
    pub type_mod: i32,
    /// Format code: 0 text, 1 binary.
    pub format: i16,
}

/// Bytes one RowDescription field takes at least: an empty name's NUL and 18 fixed bytes.
const MIN_FIELD_LEN: usize = 1 + 4 + 2 + 4 + 2 + 4 + 2;

/// Parses a RowDescription (`T`) body.
pub fn parse_row_description(body: &[u8]) -> Result<Vec<Field<'_>>, MessageError> {
    let mut r = Reader::new(body);
    let (n, cap) = r.count("field count", MIN_FIELD_LEN)?;
    let mut fields = Vec::with_capacity(cap);
    for _ in 0..n {
        fields.push(Field {
            name: r.cstr("field name")?,
            table_oid: r.u32("table OID")?,
            column: r.i16("column number")?,
            type_oid: r.u32("type OID")?,
            type_len: r.i16("type length")?,
            type_mod: r.i32("type modifier")?,
            format: r.i16("format code")?,
        });
    }
    r.finish("RowDescription")?;
    Ok(fields)
}

/// Builds a RowDescription (`T`) message.
pub fn build_row_description(fields: &[Field<'_>]) -> Vec<u8> {
    let mut body = Vec::new();
    put_count(&mut body, fields.len());
    for f in fields {
        put_cstr(&mut body, f.name);
        body.extend_from_slice(&f.table_oid.to_be_bytes());
        body.extend_from_slice(&f.column.to_be_bytes());
        body.extend_from_slice(&f.type_oid.to_be_bytes());
        body.extend_from_slice(&f.type_len.to_be_bytes());
        body.extend_from_slice(&f.type_mod.to_be_bytes());
        body.extend_from_slice(&f.format.to_be_bytes());
    }
    build(b'T', &body)
}

/// Parses a DataRow (`D`) body: one value per column, `None` for NULL.
pub fn parse_data_row(body: &[u8]) -> Result<Vec<Option<&[u8]>>, MessageError> {
    let mut r = Reader::new(body);
    let (n, cap) = r.count("column count", 4)?;
    let mut values = Vec::with_capacity(cap);
    for _ in 0..n {
        values.push(read_value(&mut r, "column value")?);
    }
    r.finish("DataRow")?;
    Ok(values)
}

/// Builds a DataRow (`D`) message; lengths are recomputed from the values.
pub fn build_data_row(values: &[Option<&[u8]>]) -> Vec<u8> {
    let mut body = Vec::with_capacity(
        2 + values
            .iter()
            .map(|v| 4 + v.map_or(0, <[u8]>::len))
            .sum::<usize>(),
    );
    put_count(&mut body, values.len());
    for v in values {
        put_value(&mut body, *v);
    }
    build(b'D', &body)
}

/// Parses an ErrorResponse (`E`) or NoticeResponse (`N`) body: (code, value) pairs in
/// order. Unknown codes are kept; callers must ignore codes they do not know.
pub fn parse_fields(body: &[u8]) -> Result<Vec<(u8, &str)>, MessageError> {
    let mut r = Reader::new(body);
    let mut fields = Vec::new();
    loop {
        match r.u8("field code")? {
            0 => break,
            code => fields.push((code, r.cstr("field value")?)),
        }
    }
    r.finish("ErrorResponse/NoticeResponse")?;
    Ok(fields)
}

/// Builds an ErrorResponse or NoticeResponse with message type `tag` (`E` or `N`).
/// A pair with code 0 would end the list early and is skipped.
pub fn build_fields(tag: u8, fields: &[(u8, &str)]) -> Vec<u8> {
    let mut body = Vec::new();
    for &(code, value) in fields.iter().filter(|(code, _)| *code != 0) {
        body.push(code);
        put_cstr(&mut body, value);
    }
    body.push(0);
    build(tag, &body)
}

/// Builds an ErrorResponse with severity `S` and `V` (`ERROR` or `FATAL`), SQLSTATE `C`
/// and message `M`: the fields every client relies on.
pub fn build_error(severity: &str, code: &str, message: &str) -> Vec<u8> {
    build_fields(
        b'E',
        &[
            (b'S', severity),
            (b'V', severity),
            (b'C', code),
            (b'M', message),
        ],
    )
}

/// Parses a ReadyForQuery (`Z`) body: `I` idle, `T` in a transaction block, `E` in a
/// failed transaction block.
pub fn parse_ready(body: &[u8]) -> Result<u8, MessageError> {
    let mut r = Reader::new(body);
    let status = r.u8("transaction status")?;
    r.finish("ReadyForQuery")?;
    match status {
        b'I' | b'T' | b'E' => Ok(status),
        byte => Err(MessageError::UnexpectedByte {
            what: "transaction status",
            byte,
        }),
    }
}

/// Builds a ReadyForQuery (`Z`) message with `status`.
pub fn build_ready(status: u8) -> Vec<u8> {
    build(b'Z', &[status])
}
