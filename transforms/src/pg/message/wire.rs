//! Bounds-checked reading and writing of protocol fields, shared by the parsers.
//!
//! Every parser goes through [`Reader`], so a length or count read from the wire can only
//! fail with a [`MessageError`], never index out of bounds or reserve more memory than the
//! message's remaining bytes could fill.

use super::MessageError;

/// A bounds-checked cursor over a message body: every read either succeeds or returns
/// [`MessageError::Truncated`], so no parser indexes a slice directly.
pub(super) struct Reader<'a> {
    pub(super) buf: &'a [u8],
}

impl<'a> Reader<'a> {
    pub(super) fn new(buf: &'a [u8]) -> Reader<'a> {
        Reader { buf }
    }

    pub(super) fn remaining(&self) -> usize {
        self.buf.len()
    }

    pub(super) fn bytes(&mut self, n: usize, what: &'static str) -> Result<&'a [u8], MessageError> {
        if n > self.buf.len() {
            return Err(MessageError::Truncated { what });
        }
        let (head, tail) = self.buf.split_at(n);
        self.buf = tail;
        Ok(head)
    }

    pub(super) fn array<const N: usize>(
        &mut self,
        what: &'static str,
    ) -> Result<[u8; N], MessageError> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.bytes(N, what)?);
        Ok(out)
    }

    pub(super) fn u8(&mut self, what: &'static str) -> Result<u8, MessageError> {
        Ok(self.array::<1>(what)?[0])
    }

    pub(super) fn i16(&mut self, what: &'static str) -> Result<i16, MessageError> {
        Ok(i16::from_be_bytes(self.array(what)?))
    }

    pub(super) fn i32(&mut self, what: &'static str) -> Result<i32, MessageError> {
        Ok(i32::from_be_bytes(self.array(what)?))
    }

    pub(super) fn u32(&mut self, what: &'static str) -> Result<u32, MessageError> {
        Ok(u32::from_be_bytes(self.array(what)?))
    }

    /// A non-negative Int16 count whose items take at least `item_size` bytes each:
    /// returns it with a capacity capped by what the remaining bytes can hold, so a
    /// forged count cannot drive a large allocation.
    pub(super) fn count(
        &mut self,
        what: &'static str,
        item_size: usize,
    ) -> Result<(usize, usize), MessageError> {
        let n = self.i16(what)?;
        let n = usize::try_from(n).map_err(|_| MessageError::BadLength {
            what,
            len: i64::from(n),
        })?;
        Ok((n, n.min(self.remaining() / item_size.max(1))))
    }

    /// A NUL-terminated UTF-8 string (without its NUL).
    pub(super) fn cstr(&mut self, what: &'static str) -> Result<&'a str, MessageError> {
        let nul = self
            .buf
            .iter()
            .position(|&b| b == 0)
            .ok_or(MessageError::NotNulTerminated { what })?;
        let raw = self.bytes(nul + 1, what)?;
        std::str::from_utf8(&raw[..nul]).map_err(|_| MessageError::NotUtf8 { what })
    }

    pub(super) fn i16_array(&mut self, what: &'static str) -> Result<Vec<i16>, MessageError> {
        let (n, cap) = self.count(what, 2)?;
        let mut out = Vec::with_capacity(cap);
        for _ in 0..n {
            out.push(self.i16(what)?);
        }
        Ok(out)
    }

    /// Fails unless every byte was consumed (the server's `pq_getmsgend`).
    pub(super) fn finish(&self, what: &'static str) -> Result<(), MessageError> {
        match self.buf.len() {
            0 => Ok(()),
            count => Err(MessageError::TrailingBytes { what, count }),
        }
    }
}

/// Appends `s` and its terminating NUL. A string is cut at an interior NUL, which the
/// protocol cannot carry, so a built message always parses back.
pub(super) fn put_cstr(out: &mut Vec<u8>, s: &str) {
    let bytes = s.as_bytes();
    let end = bytes.iter().position(|&b| b == 0).unwrap_or(bytes.len());
    out.extend_from_slice(&bytes[..end]);
    out.push(0);
}

/// Appends an Int16 count. Lists longer than `i16::MAX` cannot be expressed on the wire;
/// such a count is written as `i16::MAX` (builders are fed parsed messages, which cannot
/// exceed it).
pub(super) fn put_count(out: &mut Vec<u8>, n: usize) {
    out.extend_from_slice(&i16::try_from(n).unwrap_or(i16::MAX).to_be_bytes());
}

pub(super) fn put_i16s(out: &mut Vec<u8>, values: &[i16]) {
    put_count(out, values.len());
    for v in values {
        out.extend_from_slice(&v.to_be_bytes());
    }
}

/// Appends a length-prefixed value, `-1` for NULL.
pub(super) fn put_value(out: &mut Vec<u8>, value: Option<&[u8]>) {
    match value {
        None => out.extend_from_slice(&(-1i32).to_be_bytes()),
        Some(v) => {
            out.extend_from_slice(&i32::try_from(v.len()).unwrap_or(i32::MAX).to_be_bytes());
            out.extend_from_slice(v);
        }
    }
}

/// Reads one length-prefixed value (`-1` is NULL; other negatives are errors).
pub(super) fn read_value<'a>(
    r: &mut Reader<'a>,
    what: &'static str,
) -> Result<Option<&'a [u8]>, MessageError> {
    let len = r.i32(what)?;
    match len {
        -1 => Ok(None),
        _ => {
            let n = usize::try_from(len).map_err(|_| MessageError::BadLength {
                what,
                len: i64::from(len),
            })?;
            r.bytes(n, what).map(Some)
        }
    }
}
