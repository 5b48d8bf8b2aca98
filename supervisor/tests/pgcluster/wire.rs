//! A hand-built protocol v3 client: every message is built here byte by byte, every
//! byte read is kept (`received`), and reads stop at a given number of
//! ReadyForQuery, at EOF, or at a deadline.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// Default deadline of one [`Raw::read_until`].
pub const READ_TIMEOUT: Duration = Duration::from_secs(15);
/// At most this many bytes are kept (a runaway stream stops the read).
pub const MAX_KEEP: usize = 256 << 20;

/// Where to connect.
#[derive(Debug, Clone)]
pub enum Target {
    /// 127.0.0.1:port (tracked).
    Tcp(u16),
    /// A UNIX socket file (untracked).
    Unix(PathBuf),
}

impl Target {
    /// "tcp" or "unix".
    pub fn kind(&self) -> &'static str {
        match self {
            Target::Tcp(_) => "tcp",
            Target::Unix(_) => "unix",
        }
    }
}

#[derive(Debug)]
enum Conn {
    Tcp(TcpStream),
    Unix(UnixStream),
}

/// One backend message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Msg {
    /// The type byte.
    pub tag: u8,
    /// Everything after the length.
    pub body: Vec<u8>,
}

/// The fields of an ErrorResponse or NoticeResponse.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ErrFields {
    /// `V` (non-localized severity), else `S`.
    pub severity: String,
    /// `C`.
    pub code: String,
    /// `M`.
    pub message: String,
    /// Every (code, value) pair.
    pub all: Vec<(u8, String)>,
}

impl Msg {
    /// The fields, if this is an ErrorResponse (`E`) or NoticeResponse (`N`).
    pub fn fields(&self) -> Option<ErrFields> {
        if self.tag != b'E' && self.tag != b'N' {
            return None;
        }
        let mut all = Vec::new();
        let mut rest = &self.body[..];
        while let Some((&code, tail)) = rest.split_first() {
            if code == 0 {
                break;
            }
            let end = tail.iter().position(|&b| b == 0).unwrap_or(tail.len());
            all.push((code, String::from_utf8_lossy(&tail[..end]).into_owned()));
            rest = tail.get(end + 1..).unwrap_or(&[]);
        }
        let get = |c: u8| {
            all.iter()
                .find(|(k, _)| *k == c)
                .map(|(_, v)| v.clone())
                .unwrap_or_default()
        };
        let severity = if all.iter().any(|(k, _)| *k == b'V') {
            get(b'V')
        } else {
            get(b'S')
        };
        Some(ErrFields {
            severity,
            code: get(b'C'),
            message: get(b'M'),
            all,
        })
    }

    /// The fields if this is an ErrorResponse.
    pub fn error(&self) -> Option<ErrFields> {
        (self.tag == b'E').then(|| self.fields()).flatten()
    }

    /// The status byte if this is a ReadyForQuery.
    pub fn ready(&self) -> Option<u8> {
        (self.tag == b'Z')
            .then(|| self.body.first().copied())
            .flatten()
    }

    /// The values if this is a DataRow.
    pub fn data_row(&self) -> Option<Vec<Option<Vec<u8>>>> {
        if self.tag != b'D' || self.body.len() < 2 {
            return None;
        }
        let n = i16::from_be_bytes([self.body[0], self.body[1]]);
        let mut at = 2usize;
        let mut out = Vec::new();
        for _ in 0..n.max(0) {
            let len_bytes = self.body.get(at..at + 4)?;
            let len = i32::from_be_bytes(len_bytes.try_into().ok()?);
            at += 4;
            if len < 0 {
                out.push(None);
            } else {
                let len = usize::try_from(len).ok()?;
                out.push(Some(self.body.get(at..at + len)?.to_vec()));
                at += len;
            }
        }
        Some(out)
    }

    /// The tag if this is a CommandComplete.
    pub fn command_tag(&self) -> Option<String> {
        (self.tag == b'C').then(|| {
            String::from_utf8_lossy(self.body.strip_suffix(&[0]).unwrap_or(&self.body)).into_owned()
        })
    }

    /// Field names if this is a RowDescription.
    pub fn field_names(&self) -> Option<Vec<String>> {
        if self.tag != b'T' || self.body.len() < 2 {
            return None;
        }
        let n = i16::from_be_bytes([self.body[0], self.body[1]]);
        let mut at = 2usize;
        let mut out = Vec::new();
        for _ in 0..n.max(0) {
            let end = at + self.body.get(at..)?.iter().position(|&b| b == 0)?;
            out.push(String::from_utf8_lossy(&self.body[at..end]).into_owned());
            at = end + 1 + 18;
        }
        Some(out)
    }

    /// A one-line summary (`E 42501 ERROR: …`, `Z I`, `C SELECT 3`, `D …`).
    pub fn summary(&self) -> String {
        if let Some(f) = self.fields() {
            return format!(
                "{} {} {}: {}",
                self.tag as char, f.code, f.severity, f.message
            );
        }
        if let Some(s) = self.ready() {
            return format!("Z {}", s as char);
        }
        if let Some(t) = self.command_tag() {
            return format!("C {t}");
        }
        if let Some(v) = self.data_row() {
            let cols: Vec<String> = v
                .iter()
                .map(|c| match c {
                    None => "NULL".to_owned(),
                    Some(b) => super::escape_bytes(&b[..b.len().min(60)]),
                })
                .collect();
            return format!("D [{}]", cols.join(" | "));
        }
        if let Some(n) = self.field_names() {
            return format!("T {n:?}");
        }
        format!("{} ({} bytes)", self.tag as char, self.body.len())
    }
}

/// A raw connection.
#[derive(Debug)]
pub struct Raw {
    conn: Option<Conn>,
    /// Every byte received, in order.
    pub received: Vec<u8>,
    pending: Vec<u8>,
    /// Every complete message received, in order.
    pub msgs: Vec<Msg>,
    /// The server closed the connection (EOF or a reset).
    pub eof: bool,
    /// A read hit its deadline.
    pub timed_out: bool,
    /// A send failed (the peer had closed).
    pub send_failed: bool,
    /// Where it is connected.
    pub target: Target,
}

impl Raw {
    /// Connects (10 s timeout); panics if the server does not accept.
    pub fn connect(target: &Target) -> Raw {
        let conn = match target {
            Target::Tcp(port) => {
                let s = TcpStream::connect_timeout(
                    &std::net::SocketAddr::from(([127, 0, 0, 1], *port)),
                    Duration::from_secs(10),
                )
                .unwrap_or_else(|e| panic!("raw client: connect 127.0.0.1:{port}: {e}"));
                s.set_nodelay(true).expect("TCP_NODELAY");
                s.set_write_timeout(Some(Duration::from_secs(15)))
                    .expect("write timeout");
                Conn::Tcp(s)
            }
            Target::Unix(path) => {
                let s = UnixStream::connect(path)
                    .unwrap_or_else(|e| panic!("raw client: connect {}: {e}", path.display()));
                s.set_write_timeout(Some(Duration::from_secs(15)))
                    .expect("write timeout");
                Conn::Unix(s)
            }
        };
        Raw {
            conn: Some(conn),
            received: Vec::new(),
            pending: Vec::new(),
            msgs: Vec::new(),
            eof: false,
            timed_out: false,
            send_failed: false,
            target: target.clone(),
        }
    }

    /// Connects, sends a StartupMessage with these parameters and reads up to the
    /// first ReadyForQuery.
    pub fn login(target: &Target, params: &[(&str, &str)]) -> Raw {
        let mut r = Raw::connect(target);
        r.send(&startup(params));
        r.read_until(1);
        r
    }

    /// Writes all of `bytes` in one write call where the kernel allows (a failure
    /// is recorded in `send_failed`, not a panic: the server may have closed).
    pub fn send(&mut self, bytes: &[u8]) {
        let res = match self.conn.as_mut() {
            Some(Conn::Tcp(s)) => s.write_all(bytes),
            Some(Conn::Unix(s)) => s.write_all(bytes),
            None => Err(std::io::Error::other("closed")),
        };
        if res.is_err() {
            self.send_failed = true;
        }
    }

    /// Sends the concatenation of these messages in one write.
    pub fn send_all(&mut self, msgs: &[Vec<u8>]) {
        let bytes: Vec<u8> = msgs.concat();
        self.send(&bytes);
    }

    fn read_some(&mut self, deadline: Instant) -> bool {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            self.timed_out = true;
            return false;
        }
        let mut buf = vec![0u8; 64 * 1024];
        let res = match self.conn.as_mut() {
            Some(Conn::Tcp(s)) => {
                s.set_read_timeout(Some(left)).expect("read timeout");
                s.read(&mut buf)
            }
            Some(Conn::Unix(s)) => {
                s.set_read_timeout(Some(left)).expect("read timeout");
                s.read(&mut buf)
            }
            None => Ok(0),
        };
        match res {
            Ok(0) => {
                self.eof = true;
                false
            }
            Ok(n) => {
                if self.received.len() < MAX_KEEP {
                    self.received.extend_from_slice(&buf[..n]);
                }
                self.pending.extend_from_slice(&buf[..n]);
                true
            }
            Err(e)
                if e.kind() == std::io::ErrorKind::WouldBlock
                    || e.kind() == std::io::ErrorKind::TimedOut =>
            {
                self.timed_out = true;
                false
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => true,
            Err(_) => {
                self.eof = true;
                false
            }
        }
    }

    fn next_msg(&mut self) -> Option<Msg> {
        if self.pending.len() < 5 {
            return None;
        }
        let len = i32::from_be_bytes([
            self.pending[1],
            self.pending[2],
            self.pending[3],
            self.pending[4],
        ]);
        let len = usize::try_from(len).ok().filter(|&l| l >= 4)?;
        if self.pending.len() < 1 + len {
            return None;
        }
        let m = Msg {
            tag: self.pending[0],
            body: self.pending[5..1 + len].to_vec(),
        };
        self.pending.drain(..1 + len);
        Some(m)
    }

    /// Reads until `ready` ReadyForQuery messages arrived (0: until EOF), EOF, or
    /// [`READ_TIMEOUT`]. Returns the messages read by this call.
    pub fn read_until(&mut self, ready: usize) -> Vec<Msg> {
        self.read_until_for(ready, READ_TIMEOUT)
    }

    /// [`Raw::read_until`] with this deadline.
    pub fn read_until_for(&mut self, ready: usize, timeout: Duration) -> Vec<Msg> {
        let deadline = Instant::now() + timeout;
        let mut got = Vec::new();
        let mut seen = 0usize;
        loop {
            while let Some(m) = self.next_msg() {
                let is_ready = m.tag == b'Z';
                self.msgs.push(m.clone());
                got.push(m);
                if is_ready {
                    seen += 1;
                    if ready > 0 && seen >= ready {
                        return got;
                    }
                }
            }
            if self.eof || self.received.len() >= MAX_KEEP {
                return got;
            }
            if !self.read_some(deadline) {
                if self.eof {
                    continue; // parse what is left, then return
                }
                return got;
            }
        }
    }

    /// Reads whatever arrives within `timeout` (for "nothing more must come").
    pub fn drain_for(&mut self, timeout: Duration) -> Vec<Msg> {
        let before = self.timed_out;
        let got = self.read_until_for(0, timeout);
        self.timed_out = before;
        got
    }

    /// Closes our side.
    pub fn close(&mut self) {
        self.conn = None;
    }
}

fn cstr(out: &mut Vec<u8>, s: &str) {
    out.extend_from_slice(s.as_bytes());
    out.push(0);
}

/// Byte1 tag + Int32 length + body.
pub fn build(tag: u8, body: &[u8]) -> Vec<u8> {
    let mut m = vec![tag];
    m.extend_from_slice(&(i32::try_from(body.len() + 4).expect("fits")).to_be_bytes());
    m.extend_from_slice(body);
    m
}

/// StartupMessage (protocol 3.0) with these parameters, in this order.
pub fn startup(params: &[(&str, &str)]) -> Vec<u8> {
    let mut body = 196608i32.to_be_bytes().to_vec();
    for (k, v) in params {
        cstr(&mut body, k);
        cstr(&mut body, v);
    }
    body.push(0);
    let mut m = (i32::try_from(body.len() + 4).expect("fits"))
        .to_be_bytes()
        .to_vec();
    m.extend_from_slice(&body);
    m
}

/// The usual startup parameters: user postgres, database postgres.
pub fn default_params() -> Vec<(&'static str, &'static str)> {
    vec![("user", "postgres"), ("database", "postgres")]
}

/// Query.
pub fn query(sql: &str) -> Vec<u8> {
    let mut b = Vec::new();
    cstr(&mut b, sql);
    build(b'Q', &b)
}

/// Query with raw (possibly non-UTF-8) text.
pub fn query_bytes(sql: &[u8]) -> Vec<u8> {
    let mut b = sql.to_vec();
    b.push(0);
    build(b'Q', &b)
}

/// Parse.
pub fn parse(name: &str, sql: &str, types: &[u32]) -> Vec<u8> {
    let mut b = Vec::new();
    cstr(&mut b, name);
    cstr(&mut b, sql);
    b.extend_from_slice(&(i16::try_from(types.len()).expect("fits")).to_be_bytes());
    for t in types {
        b.extend_from_slice(&t.to_be_bytes());
    }
    build(b'P', &b)
}

/// Bind.
pub fn bind(
    portal: &str,
    statement: &str,
    param_formats: &[i16],
    params: &[Option<&[u8]>],
    result_formats: &[i16],
) -> Vec<u8> {
    let mut b = Vec::new();
    cstr(&mut b, portal);
    cstr(&mut b, statement);
    b.extend_from_slice(&(i16::try_from(param_formats.len()).expect("fits")).to_be_bytes());
    for f in param_formats {
        b.extend_from_slice(&f.to_be_bytes());
    }
    b.extend_from_slice(&(i16::try_from(params.len()).expect("fits")).to_be_bytes());
    for p in params {
        match p {
            None => b.extend_from_slice(&(-1i32).to_be_bytes()),
            Some(v) => {
                b.extend_from_slice(&(i32::try_from(v.len()).expect("fits")).to_be_bytes());
                b.extend_from_slice(v);
            }
        }
    }
    b.extend_from_slice(&(i16::try_from(result_formats.len()).expect("fits")).to_be_bytes());
    for f in result_formats {
        b.extend_from_slice(&f.to_be_bytes());
    }
    build(b'B', &b)
}

/// Describe (`b'S'` statement or `b'P'` portal).
pub fn describe(kind: u8, name: &str) -> Vec<u8> {
    let mut b = vec![kind];
    cstr(&mut b, name);
    build(b'D', &b)
}

/// Close (`b'S'` statement or `b'P'` portal).
pub fn close(kind: u8, name: &str) -> Vec<u8> {
    let mut b = vec![kind];
    cstr(&mut b, name);
    build(b'C', &b)
}

/// Execute with a row limit (0: all).
pub fn execute(portal: &str, max_rows: i32) -> Vec<u8> {
    let mut b = Vec::new();
    cstr(&mut b, portal);
    b.extend_from_slice(&max_rows.to_be_bytes());
    build(b'E', &b)
}

/// Sync.
pub fn sync() -> Vec<u8> {
    build(b'S', &[])
}

/// Flush.
pub fn flush() -> Vec<u8> {
    build(b'H', &[])
}

/// Terminate.
pub fn terminate() -> Vec<u8> {
    build(b'X', &[])
}

/// Parse + Bind + Execute (unnamed, all rows, these result formats) + Sync,
/// without Describe.
pub fn pbes(sql: &str, result_formats: &[i16]) -> Vec<u8> {
    [
        parse("", sql, &[]),
        bind("", "", &[], &[], result_formats),
        execute("", 0),
        sync(),
    ]
    .concat()
}
