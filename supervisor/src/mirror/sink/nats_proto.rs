//! The part of the NATS client protocol the station speaks, parsed without I/O: the
//! server's operations (INFO, MSG, HMSG with status headers, PING/PONG, +OK/-ERR) from a
//! byte buffer, and the errors a conversation can end in.

use std::io;
use std::time::Duration;

/// What a 503 status means.
pub const NO_RESPONDERS: &str = "no responders (no JetStream stream captures it)";

/// Any read or write, and any wait for a reply without progress: a stalled server
/// becomes an error instead of a hung station thread.
pub const IO_TIMEOUT: Duration = Duration::from_secs(2);

/// Longest control line accepted from the server (a clustered INFO lists URLs).
pub const MAX_CONTROL_LINE: usize = 64 * 1024;
/// Largest payload accepted from the server (NATS caps `max_payload` at 64 MiB).
pub const MAX_PAYLOAD: usize = 64 * 1024 * 1024;

/// What went wrong talking to the server.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum NatsError {
    /// The configuration cannot work (checked before any connection).
    #[error("invalid NATS station config: {0}")]
    Config(String),
    /// No address of the URL accepted a connection (`source`: the last one's error).
    #[error("connecting to {url}")]
    Connect { url: String, source: io::Error },
    /// The socket failed.
    #[error(transparent)]
    Io(#[from] io::Error),
    /// The server closed the connection.
    #[error("the NATS server closed the connection")]
    Closed,
    /// Nothing arrived within [`IO_TIMEOUT`] while waiting for this.
    #[error("no reply from the NATS server within {IO_TIMEOUT:?} waiting for {0}")]
    Timeout(&'static str),
    /// The bytes were not the NATS protocol.
    #[error("malformed NATS protocol from the server: {0}")]
    Protocol(&'static str),
    /// The server sent `-ERR` (bad credentials, payload too large, permissions…).
    #[error("NATS server error: {0}")]
    Server(String),
    /// The server predates headers (NATS 2.2), so it has no JetStream either.
    #[error("NATS server {0} does not support headers (2.2 or later needed for JetStream)")]
    NoHeaders(String),
    /// Nothing answers the JetStream API.
    #[error("JetStream is not enabled on the NATS server {server} (no responders for {api}); start it with -js")]
    NoJetStream { server: String, api: String },
    /// A reply with a status header: 503 is "no responders" (no stream captures a
    /// publish, or nothing serves an API).
    #[error("{subject}: status {code} {}", if *code == 503 { NO_RESPONDERS } else { description })]
    Status {
        subject: String,
        code: u16,
        description: String,
    },
    /// JetStream answered `{"error":{…}}` (`err_code` 10059: stream not found…).
    #[error("{api}: JetStream error {code}/{err_code}: {description}")]
    JetStream {
        api: String,
        code: u64,
        err_code: u64,
        description: String,
    },
    /// The stream exists but its subjects do not cover ours.
    #[error("JetStream stream {stream} captures {subjects:?}, not {wanted}")]
    StreamSubjects {
        stream: String,
        subjects: Vec<String>,
        wanted: String,
    },
    /// One payload is larger than the server's `max_payload`.
    #[error("a payload of {len} bytes exceeds the server's max_payload of {max}")]
    TooLarge { len: usize, max: u64 },
    /// `write` before `connect`, or after an error dropped the connection.
    #[error("not connected to a NATS server")]
    NotConnected,
}

impl From<NatsError> for io::Error {
    fn from(e: NatsError) -> io::Error {
        let kind = match &e {
            NatsError::Io(e) => e.kind(),
            NatsError::Connect { source, .. } => source.kind(),
            NatsError::Config(_) | NatsError::TooLarge { .. } => io::ErrorKind::InvalidInput,
            NatsError::Timeout { .. } => io::ErrorKind::TimedOut,
            NatsError::Closed => io::ErrorKind::UnexpectedEof,
            NatsError::NotConnected => io::ErrorKind::NotConnected,
            _ => io::ErrorKind::Other,
        };
        // Callers log an io::Error with `{}`: put the cause chain in the message.
        let mut text = e.to_string();
        let mut source = std::error::Error::source(&e);
        while let Some(s) = source {
            text.push_str(": ");
            text.push_str(&s.to_string());
            source = s.source();
        }
        io::Error::new(kind, text)
    }
}

/// The server's INFO, the fields we use.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(default)]
pub struct ServerInfo {
    /// Its configured name.
    pub server_name: String,
    /// Its version.
    pub version: String,
    /// Largest payload it accepts (NATS's default when the INFO omits it).
    #[serde(default = "default_max_payload")]
    pub max_payload: u64,
    /// Whether it supports HPUB/HMSG (needed for no-responders statuses).
    pub headers: bool,
}

fn default_max_payload() -> u64 {
    1024 * 1024
}

/// A message delivered to us (`MSG` or `HMSG`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Msg {
    /// Its subject (our inbox for replies).
    pub subject: String,
    /// The sender's reply subject.
    pub reply: Option<String>,
    /// The status line of its headers (`NATS/1.0 503` → `(503, "")`).
    pub status: Option<(u16, String)>,
    /// The payload, headers excluded.
    pub payload: Vec<u8>,
}

/// One operation from the server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ServerOp {
    /// `INFO {json}`.
    Info(ServerInfo),
    /// `MSG` or `HMSG`.
    Msg(Msg),
    /// `PING`: must be answered with `PONG`.
    Ping,
    /// `PONG`.
    Pong,
    /// `+OK`.
    Ok,
    /// `-ERR 'text'`, the text unquoted.
    Err(String),
}

/// What [`parse`] found at the start of a buffer.
#[derive(Debug, PartialEq, Eq)]
pub enum Parse {
    /// More bytes are needed.
    Partial,
    /// One operation, taking `consumed` bytes.
    Complete { op: ServerOp, consumed: usize },
}

/// Parses one server operation from the start of `buf` (sans-IO: the caller reads).
pub fn parse(buf: &[u8]) -> Result<Parse, NatsError> {
    let Some(end) = buf.windows(2).position(|w| w == b"\r\n") else {
        return match buf.len() > MAX_CONTROL_LINE {
            true => Err(NatsError::Protocol("control line too long")),
            false => Ok(Parse::Partial),
        };
    };
    if end > MAX_CONTROL_LINE {
        return Err(NatsError::Protocol("control line too long"));
    }
    let line = std::str::from_utf8(&buf[..end])
        .map_err(|_| NatsError::Protocol("control line is not UTF-8"))?;
    let (name, rest) = line.split_once([' ', '\t']).unwrap_or((line, ""));
    let rest = rest.trim();
    let consumed = end + 2;
    let done = |op| Ok(Parse::Complete { op, consumed });
    match name.to_ascii_uppercase().as_str() {
        "PING" => done(ServerOp::Ping),
        "PONG" => done(ServerOp::Pong),
        "+OK" => done(ServerOp::Ok),
        "-ERR" => done(ServerOp::Err(rest.trim_matches('\'').to_owned())),
        "INFO" => serde_json::from_str(rest)
            .map_err(|_| NatsError::Protocol("INFO is not a JSON object"))
            .and_then(|info| done(ServerOp::Info(info))),
        "MSG" | "HMSG" => Ok(match parse_msg(name.len() == 4, rest, &buf[consumed..])? {
            Some((msg, len)) => Parse::Complete {
                op: ServerOp::Msg(msg),
                consumed: consumed + len,
            },
            None => Parse::Partial,
        }),
        _ => Err(NatsError::Protocol("unknown operation")),
    }
}

/// A MSG/HMSG's arguments and body; `None` until the whole body is in `body`.
fn parse_msg(headers: bool, args: &str, body: &[u8]) -> Result<Option<(Msg, usize)>, NatsError> {
    let bad = NatsError::Protocol("bad MSG/HMSG arguments");
    let args: Vec<&str> = args.split_ascii_whitespace().collect();
    let sizes = if headers { 2 } else { 1 };
    if args.len() != 2 + sizes && args.len() != 3 + sizes {
        return Err(bad);
    }
    let number = |s: &str| s.parse::<usize>().ok().filter(|&n| n <= MAX_PAYLOAD);
    let total = number(args[args.len() - 1]).ok_or(NatsError::Protocol("bad or too large size"))?;
    let header_len = match headers {
        true => number(args[args.len() - 2])
            .filter(|&h| h <= total)
            .ok_or(bad)?,
        false => 0,
    };
    if body.len() < total + 2 {
        return Ok(None);
    }
    if &body[total..total + 2] != b"\r\n" {
        return Err(NatsError::Protocol("payload not followed by CRLF"));
    }
    let status = match headers {
        true => parse_status(&body[..header_len])?,
        false => None,
    };
    let msg = Msg {
        subject: args[0].to_owned(),
        reply: (args.len() == 3 + sizes).then(|| args[2].to_owned()),
        status,
        payload: body[header_len..total].to_vec(),
    };
    Ok(Some((msg, total + 2)))
}

/// The status of a header block: `NATS/1.0 503 [description]\r\n…`.
fn parse_status(headers: &[u8]) -> Result<Option<(u16, String)>, NatsError> {
    let first = headers.split(|&b| b == b'\n').next().unwrap_or_default();
    let first = std::str::from_utf8(first)
        .ok()
        .and_then(|l| l.trim_end_matches('\r').strip_prefix("NATS/1.0"))
        .ok_or(NatsError::Protocol("headers do not start with NATS/1.0"))?;
    let first = first.trim();
    if first.is_empty() {
        return Ok(None);
    }
    let (code, description) = first.split_once(' ').unwrap_or((first, ""));
    let code = code
        .parse()
        .map_err(|_| NatsError::Protocol("bad status code"))?;
    Ok(Some((code, description.trim().to_owned())))
}
