//! The untyped first packets: StartupMessage, SSLRequest, GSSENCRequest, CancelRequest.

use super::wire::{put_cstr, Reader};
use super::{
    MessageError, CANCEL_REQUEST, GSSENC_REQUEST, MAX_CANCEL_KEY_LEN, MAX_STARTUP_LEN, SSL_REQUEST,
};

/// The untyped first packet a client sends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Startup<'a> {
    /// SSLRequest: a tracked stream answers `N` (it must stay readable).
    Ssl,
    /// GSSENCRequest: answered `N` like [`Startup::Ssl`].
    GssEnc,
    /// CancelRequest for backend `pid`; `key` is 4 bytes in 3.0, up to 256 in 3.2.
    Cancel {
        /// Process id of the backend whose query to cancel.
        pid: i32,
        /// The secret key from that backend's BackendKeyData.
        key: &'a [u8],
    },
    /// StartupMessage: protocol `version` and `name`/`value` parameters in order.
    Params {
        /// Protocol code: major version in the high 16 bits, minor in the low 16.
        version: i32,
        /// Parameters such as `user`, `database`, `application_name`, `_pq_.*`.
        params: Vec<(&'a str, &'a str)>,
    },
}

impl<'a> Startup<'a> {
    /// The value of StartupMessage parameter `name`, if any. A name given twice takes
    /// its last value, as the server does (it applies the pairs in order).
    pub fn param(&self, name: &str) -> Option<&'a str> {
        match self {
            Startup::Params { params, .. } => params
                .iter()
                .rev()
                .find(|(n, _)| *n == name)
                .map(|&(_, v)| v),
            _ => None,
        }
    }
}

/// True for a StartupMessage code the server accepts: any protocol 3.x (a minor it does
/// not know is negotiated down with NegotiateProtocolVersion).
pub fn is_protocol_3(code: i32) -> bool {
    code >> 16 == 3
}

/// Parses a whole untyped first packet (Int32 length, Int32 code, payload).
///
/// Checks what the server checks: the length field equals the packet length and lies in
/// 8..=[`MAX_STARTUP_LEN`], SSL/GSS requests carry nothing else, a cancel key is 1..=256
/// bytes, and StartupMessage parameters end with an empty name.
pub fn parse_startup(whole_message: &[u8]) -> Result<Startup<'_>, MessageError> {
    let what = "startup packet";
    let mut r = Reader::new(whole_message);
    let len = r.i32("startup length")?;
    if usize::try_from(len).map_or(true, |l| {
        l != whole_message.len() || !(8..=MAX_STARTUP_LEN).contains(&l)
    }) {
        return Err(MessageError::BadLength {
            what,
            len: i64::from(len),
        });
    }
    let code = r.i32("startup code")?;
    let startup = match code {
        SSL_REQUEST => Startup::Ssl,
        GSSENC_REQUEST => Startup::GssEnc,
        CANCEL_REQUEST => {
            let pid = r.i32("cancel pid")?;
            let key = r.bytes(r.remaining(), "cancel key")?;
            if key.is_empty() || key.len() > MAX_CANCEL_KEY_LEN {
                return Err(MessageError::BadLength {
                    what: "cancel key",
                    len: key.len() as i64,
                });
            }
            Startup::Cancel { pid, key }
        }
        version if is_protocol_3(version) => {
            let mut params = Vec::new();
            loop {
                let name = r.cstr("startup parameter name")?;
                if name.is_empty() {
                    break;
                }
                params.push((name, r.cstr("startup parameter value")?));
            }
            Startup::Params { version, params }
        }
        other => return Err(MessageError::UnknownStartupCode(other)),
    };
    r.finish(what)?;
    Ok(startup)
}

/// Builds the untyped packet for `startup` (the inverse of [`parse_startup`]).
pub fn build_startup(startup: &Startup<'_>) -> Vec<u8> {
    let mut body = Vec::new();
    match startup {
        Startup::Ssl => body.extend_from_slice(&SSL_REQUEST.to_be_bytes()),
        Startup::GssEnc => body.extend_from_slice(&GSSENC_REQUEST.to_be_bytes()),
        Startup::Cancel { pid, key } => {
            body.extend_from_slice(&CANCEL_REQUEST.to_be_bytes());
            body.extend_from_slice(&pid.to_be_bytes());
            body.extend_from_slice(key);
        }
        Startup::Params { version, params } => {
            body.extend_from_slice(&version.to_be_bytes());
            for (name, value) in params {
                put_cstr(&mut body, name);
                put_cstr(&mut body, value);
            }
            body.push(0);
        }
    }
    let len = i32::try_from(body.len() + 4).unwrap_or(i32::MAX);
    let mut out = Vec::with_capacity(body.len() + 4);
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(&body);
    out
}
