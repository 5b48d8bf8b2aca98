//! A fleet sink on NATS JetStream: each record's JSON line (the `jsonl` format, so a
//! console reads one format from either) published to
//! `<subject_prefix>.<node>.<tenant>.<stream>`, stored in one JetStream stream that
//! captures `<subject_prefix>.>`.
//!
//! The client protocol is spoken by hand over a blocking `TcpStream`: the station has
//! its own thread and the supervisor no async runtime, and the subset needed (INFO,
//! CONNECT, PING/PONG, SUB, PUB, MSG/HMSG, +OK/-ERR) is small. One wildcard
//! subscription on a private inbox carries every reply: JetStream API responses and
//! publish acks. Acks are pipelined: up to `max_pending` publishes are outstanding,
//! and `flush` waits for all of them, so a stored record costs no round trip.
//! Plaintext only (no TLS): for a local server or leaf node on a trusted network.

use std::collections::HashMap;
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::time::{Duration, Instant};

use serde_json::Value;

use super::super::record::Record;
use super::jsonl::encode_line;
pub use super::nats_proto::*;
use super::station::Station;

/// A dead address fails fast, so the station's retry loop (not a SYN timeout) paces us.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);
/// Idle this long, a write first takes in what the server sent meanwhile: its PINGs
/// go unanswered while the station waits on its queue, and after two the server
/// drops the connection as stale.
const IDLE_CHECK: Duration = Duration::from_secs(1);
/// Buffered publishes go out once this many bytes are waiting.
const OUT_HIGH_WATER: usize = 64 * 1024;
/// Last token of the diagnostics subject. Outside `[A-Za-z0-9_-]`, the only characters
/// a profile allows in a stream name, so a stream named `diag` cannot share its subject.
pub const DIAG_TOKEN: &str = "$diag";
/// JetStream's error code for a missing stream.
const STREAM_NOT_FOUND: u64 = 10059;

/// Credentials sent in CONNECT. Its `Debug` hides the secrets.
#[derive(Clone, Default)]
pub enum NatsAuth {
    /// None.
    #[default]
    None,
    /// `user` and `pass`.
    UserPassword { user: String, password: String },
    /// `auth_token`.
    Token(String),
}

impl std::fmt::Debug for NatsAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.kind())
    }
}

impl NatsAuth {
    fn kind(&self) -> &'static str {
        match self {
            NatsAuth::None => "none",
            NatsAuth::UserPassword { .. } => "user_password",
            NatsAuth::Token(_) => "token",
        }
    }
}

/// A NATS station's settings.
#[derive(Debug, Clone)]
pub struct NatsConfig {
    /// `nats://host:port`, `host:port` or `host` (port 4222).
    pub url: String,
    /// The JetStream stream, created if missing.
    pub stream: String,
    /// First token(s) of every subject; the stream captures `<subject_prefix>.>`.
    pub subject_prefix: String,
    /// This node's name (sanitized into one subject token).
    pub node: String,
    /// The stream's `max_bytes` when we create it (oldest messages discarded past it).
    pub max_bytes: i64,
    /// Publishes awaiting their ack before `write` waits for half of them.
    pub max_pending: usize,
    /// Credentials.
    pub auth: NatsAuth,
}

impl NatsConfig {
    /// Settings with a 1 GiB stream, 256 acks in flight and no credentials.
    pub fn new(url: &str, stream: &str, subject_prefix: &str, node: &str) -> NatsConfig {
        NatsConfig {
            url: url.into(),
            stream: stream.into(),
            subject_prefix: subject_prefix.into(),
            node: node.into(),
            max_bytes: 1 << 30,
            max_pending: 256,
            auth: NatsAuth::None,
        }
    }
}

/// One subject token from any text: NATS tokens cannot hold `.`, `*`, `>` or
/// whitespace (nor be empty), each such character becomes `_`.
pub fn token(text: &str) -> String {
    if text.is_empty() {
        return "_".into();
    }
    text.chars()
        .map(|c| match c {
            '.' | '*' | '>' => '_',
            c if c.is_whitespace() || c.is_control() => '_',
            c => c,
        })
        .collect()
}

/// Whether subject filter `filter` matches every subject under `prefix.>`.
pub fn covers(filter: &str, prefix: &str) -> bool {
    let mut wanted = prefix.split('.');
    for f in filter.split('.') {
        if f == ">" {
            return true;
        }
        match wanted.next() {
            Some(w) if f == "*" || f == w => continue,
            _ => return false,
        }
    }
    false
}

/// What one received operation amounted to.
enum Event {
    Other,
    Pong,
    Acked,
    Reply(u64, Msg),
}

/// One open connection: its socket, buffers and outstanding publishes.
#[derive(Debug)]
struct Conn {
    sock: TcpStream,
    addr: SocketAddr,
    info: ServerInfo,
    rbuf: Vec<u8>,
    rpos: usize,
    last_read: Instant,
    out: Vec<u8>,
    inbox: String,
    next_id: u64,
    /// Publishes awaiting their ack, by reply id: their subjects, for errors.
    pending: HashMap<u64, String>,
}

impl Conn {
    /// Connects and completes the handshake (INFO, CONNECT, PING → PONG, SUB).
    fn open(config: &NatsConfig, host_port: &str) -> Result<Conn, NatsError> {
        let failed = |source| NatsError::Connect {
            url: config.url.clone(),
            source,
        };
        // Every address of the name is tried, so one dead address does not hide a live one.
        let mut last = io::Error::new(io::ErrorKind::NotFound, "no address");
        let mut opened = None;
        for addr in host_port.to_socket_addrs().map_err(failed)? {
            match TcpStream::connect_timeout(&addr, CONNECT_TIMEOUT) {
                Ok(sock) => {
                    opened = Some((sock, addr));
                    break;
                }
                Err(e) => last = e,
            }
        }
        let (sock, addr) = opened.ok_or_else(|| failed(last))?;
        sock.set_write_timeout(Some(IO_TIMEOUT))?;
        // Publishes are batched by us; acks and PONGs must not wait for Nagle.
        sock.set_nodelay(true)?;
        let mut conn = Conn {
            sock,
            addr,
            info: ServerInfo::default(),
            rbuf: Vec::new(),
            rpos: 0,
            last_read: Instant::now(),
            out: Vec::new(),
            inbox: format!("_INBOX.{}", random_token()),
            next_id: 0,
            pending: HashMap::new(),
        };
        let deadline = Instant::now() + IO_TIMEOUT;
        // The server speaks first; anything but INFO is not a NATS server.
        let ServerOp::Info(info) = conn.read_op(deadline, "INFO")? else {
            return Err(NatsError::Protocol("the server did not begin with INFO"));
        };
        conn.info = info;
        // Without headers there is no 503 no-responders status, and no JetStream.
        if !conn.info.headers {
            return Err(NatsError::NoHeaders(conn.info.version.clone()));
        }
        let mut connect = serde_json::json!({
            "verbose": false, "pedantic": false, "lang": "rust",
            "version": env!("CARGO_PKG_VERSION"), "protocol": 1,
            "headers": true, "no_responders": true,
            "name": format!("supervise mirror {}", token(&config.node)),
        });
        match &config.auth {
            NatsAuth::None => {}
            NatsAuth::UserPassword { user, password } => {
                connect["user"] = user.as_str().into();
                connect["pass"] = password.as_str().into();
            }
            NatsAuth::Token(t) => connect["auth_token"] = t.as_str().into(),
        }
        // With verbose off, the PONG to this PING is the only sign CONNECT was
        // accepted; bad credentials come back as -ERR instead. The SUB follows: one
        // wildcard subscription carries every API reply and publish ack.
        let hello = format!("CONNECT {connect}\r\nPING\r\n");
        conn.out.extend_from_slice(hello.as_bytes());
        conn.send()?;
        while !matches!(conn.pump(deadline, &mut 0, "PONG")?, Event::Pong) {}
        let sub = format!("SUB {}.* 1\r\n", conn.inbox);
        conn.out.extend_from_slice(sub.as_bytes());
        Ok(conn)
    }

    /// The server as `name version at addr`, for errors and state.
    fn server(&self) -> String {
        let info = &self.info;
        format!("{} {} at {}", info.server_name, info.version, self.addr)
    }

    /// Reads until one whole operation is buffered, or the deadline passes.
    fn read_op(&mut self, deadline: Instant, what: &'static str) -> Result<ServerOp, NatsError> {
        loop {
            if let Parse::Complete { op, consumed } = parse(&self.rbuf[self.rpos..])? {
                self.rpos += consumed;
                return Ok(op);
            }
            self.rbuf.drain(..self.rpos);
            self.rpos = 0;
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(NatsError::Timeout(what));
            }
            self.sock.set_read_timeout(Some(left))?;
            let len = self.rbuf.len();
            self.rbuf.resize(len + 64 * 1024, 0);
            let read = self.sock.read(&mut self.rbuf[len..]);
            self.rbuf.truncate(len + *read.as_ref().unwrap_or(&0));
            match read {
                Ok(0) => return Err(NatsError::Closed),
                Ok(_) => self.last_read = Instant::now(),
                Err(e) => match e.kind() {
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => {
                        return Err(NatsError::Timeout(what))
                    }
                    io::ErrorKind::Interrupted => {}
                    _ => return Err(e.into()),
                },
            }
        }
    }

    /// Writes out what is buffered.
    fn send(&mut self) -> Result<(), NatsError> {
        let result = self.sock.write_all(&self.out);
        self.out.clear();
        result.map_err(NatsError::from)
    }

    /// Buffers `PUB subject <inbox>.<id> len\r\npayload\r\n`; returns the id.
    fn publish(&mut self, subject: &str, payload: &[u8]) -> u64 {
        self.next_id += 1;
        let id = self.next_id;
        let head = format!("PUB {subject} {}.{id} {}\r\n", self.inbox, payload.len());
        self.out.extend_from_slice(head.as_bytes());
        self.out.extend_from_slice(payload);
        self.out.extend_from_slice(b"\r\n");
        id
    }

    /// Handles one operation: answers PING, settles an ack, or hands back a reply.
    fn pump(
        &mut self,
        by: Instant,
        acked: &mut u64,
        what: &'static str,
    ) -> Result<Event, NatsError> {
        match self.read_op(by, what)? {
            ServerOp::Ping => {
                self.out.extend_from_slice(b"PONG\r\n");
                self.send()?;
                Ok(Event::Other)
            }
            ServerOp::Pong => Ok(Event::Pong),
            ServerOp::Ok => Ok(Event::Other),
            ServerOp::Info(info) => {
                self.info = info;
                Ok(Event::Other)
            }
            ServerOp::Err(text) => Err(NatsError::Server(text)),
            ServerOp::Msg(msg) => {
                let id = msg
                    .subject
                    .strip_prefix(&self.inbox)
                    .and_then(|s| s.strip_prefix('.'));
                let Some(id) = id.and_then(|s| s.parse::<u64>().ok()) else {
                    return Ok(Event::Other);
                };
                let Some(subject) = self.pending.remove(&id) else {
                    return Ok(Event::Reply(id, msg));
                };
                // Which stream stored it needs no check: streams' subjects cannot
                // overlap, and ours covers every subject we publish to.
                api_result(&subject, &msg)?;
                *acked += 1;
                Ok(Event::Acked)
            }
        }
    }

    /// Handles what the server sent while we were idle, without waiting for more.
    fn catch_up(&mut self, acked: &mut u64) -> Result<(), NatsError> {
        self.sock.set_nonblocking(true)?;
        let result = loop {
            match self.pump(Instant::now() + IO_TIMEOUT, acked, "nothing") {
                Ok(_) => {}
                Err(NatsError::Timeout(_)) => break Ok(()), // nothing more to read
                Err(e) => break Err(e),
            }
        };
        self.sock.set_nonblocking(false)?;
        result
    }

    /// Sends what is buffered, then reads acks until at most `left` are pending. Times
    /// out after [`IO_TIMEOUT`] without an ack.
    fn wait_acks(&mut self, left: usize, acked: &mut u64) -> Result<(), NatsError> {
        self.send()?;
        let mut deadline = Instant::now() + IO_TIMEOUT;
        while self.pending.len() > left {
            if let Event::Acked = self.pump(deadline, acked, "publish acks")? {
                deadline = Instant::now() + IO_TIMEOUT;
            }
        }
        Ok(())
    }

    /// A request on our inbox; the reply's JSON, a JetStream error made an error.
    fn request(&mut self, subject: &str, body: &[u8], acked: &mut u64) -> Result<Value, NatsError> {
        let id = self.publish(subject, body);
        self.send()?;
        let deadline = Instant::now() + IO_TIMEOUT;
        loop {
            match self.pump(deadline, acked, "a JetStream API reply")? {
                Event::Reply(got, msg) if got == id => return api_result(subject, &msg),
                _ => {}
            }
        }
    }

    /// Finds or creates the stream; true when created.
    fn ensure_stream(&mut self, config: &NatsConfig) -> Result<bool, NatsError> {
        let api = format!("$JS.API.STREAM.INFO.{}", config.stream);
        let wanted = format!("{}.>", config.subject_prefix);
        let info = match self.request(&api, b"", &mut 0) {
            Ok(info) => info,
            Err(NatsError::Status { code: 503, .. }) => {
                return Err(NatsError::NoJetStream {
                    server: self.server(),
                    api,
                })
            }
            Err(NatsError::JetStream {
                err_code: STREAM_NOT_FOUND,
                ..
            }) => {
                let create = serde_json::json!({
                    "name": config.stream, "subjects": [wanted], "storage": "file",
                    "max_bytes": config.max_bytes, "discard": "old",
                });
                let api = format!("$JS.API.STREAM.CREATE.{}", config.stream);
                self.request(&api, create.to_string().as_bytes(), &mut 0)?;
                return Ok(true);
            }
            Err(e) => return Err(e),
        };
        // An existing stream made by someone else must still capture our subjects,
        // or every publish would fail (or land in another stream).
        let subjects: Vec<String> = match info["config"]["subjects"].as_array() {
            Some(list) => list
                .iter()
                .filter_map(|s| s.as_str().map(Into::into))
                .collect(),
            None => Vec::new(),
        };
        if !subjects.iter().any(|s| covers(s, &config.subject_prefix)) {
            let stream = config.stream.clone();
            return Err(NatsError::StreamSubjects {
                stream,
                subjects,
                wanted,
            });
        }
        Ok(false)
    }
}

/// A reply's JSON: a 503 status is no responders, `{"error":{…}}` a JetStream error.
fn api_result(subject: &str, msg: &Msg) -> Result<Value, NatsError> {
    if let Some((code, description)) = msg.status.clone() {
        return Err(NatsError::Status {
            subject: subject.into(),
            code,
            description,
        });
    }
    let value: Value = serde_json::from_slice(&msg.payload)
        .map_err(|_| NatsError::Protocol("a JetStream reply is not JSON"))?;
    if let Some(error) = value.get("error") {
        return Err(NatsError::JetStream {
            api: subject.into(),
            code: error["code"].as_u64().unwrap_or(0),
            err_code: error["err_code"].as_u64().unwrap_or(0),
            description: error["description"].as_str().unwrap_or("").into(),
        });
    }
    Ok(value)
}

/// A per-connection inbox token unlikely to collide across the fleet: std's
/// `RandomState` is seeded from the OS's randomness; the time and pid add to it.
fn random_token() -> String {
    use std::hash::{BuildHasher, Hasher};
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH);
    hasher.write_u128(now.map(|d| d.as_nanos()).unwrap_or(0));
    hasher.write_u32(std::process::id());
    format!("{:016x}", hasher.finish())
}

/// `host:port` from the URL; TLS and credentials in the URL are refused.
fn host_port(url: &str) -> Result<String, NatsError> {
    let bad = |why: &str| Err(NatsError::Config(format!("url {url:?}: {why}")));
    let rest = match url.split_once("://") {
        Some(("nats", rest)) => rest.trim_end_matches('/'),
        Some(_) => return bad("only nats:// is supported (no TLS)"),
        None => url,
    };
    if rest.contains('@') {
        return bad("credentials go in the auth settings, not the URL");
    }
    if rest.is_empty() || rest.contains('/') {
        return bad("not nats://host[:port]");
    }
    let has_port = match rest.strip_prefix('[') {
        Some(v6) => v6.contains("]:"),
        None => rest.contains(':'),
    };
    Ok(if has_port {
        rest.into()
    } else {
        format!("{rest}:4222")
    })
}

/// The NATS JetStream station.
#[derive(Debug)]
pub struct NatsStation {
    config: NatsConfig,
    host_port: String,
    /// `<subject_prefix>.<node>`, ready for the tenant and stream tokens.
    base: String,
    conn: Option<Conn>,
    created: Option<bool>,
    published: u64,
    acked: u64,
    /// Publishes whose ack was still pending when their connection failed.
    unacked_lost: u64,
    last_error: Option<String>,
    line: Vec<u8>,
}

impl NatsStation {
    /// A station for `config`, checked but not yet connected.
    pub fn new(config: NatsConfig) -> Result<NatsStation, NatsError> {
        let bad = |why: &str| Err(NatsError::Config(why.into()));
        let c = &config;
        if c.stream.is_empty() || token(&c.stream) != c.stream || c.stream.contains(['/', '\\']) {
            return bad("the stream name must be non-empty, without . * > / \\ or whitespace");
        }
        if c.subject_prefix
            .split('.')
            .any(|t| t.is_empty() || token(t) != t)
        {
            return bad("the subject prefix must be dot-separated tokens without * > or spaces");
        }
        if c.max_pending == 0 || (c.max_bytes <= 0 && c.max_bytes != -1) {
            return bad("max_pending must be at least 1, max_bytes positive or -1");
        }
        Ok(NatsStation {
            host_port: host_port(&config.url)?,
            base: format!("{}.{}", config.subject_prefix, token(&config.node)),
            config,
            conn: None,
            created: None,
            published: 0,
            acked: 0,
            unacked_lost: 0,
            last_error: None,
            line: Vec::new(),
        })
    }

    /// The subject a record of `tenant`'s `stream` is published to.
    pub fn subject(&self, tenant: &str, stream: &str) -> String {
        format!("{}.{}.{}", self.base, token(tenant), token(stream))
    }

    /// Publishes one diagnostics line of `tenant` to
    /// `<subject_prefix>.<node>.<tenant>.$diag` (acked like a record).
    pub fn publish_diagnostic(&mut self, tenant: &str, line: &[u8]) -> io::Result<()> {
        let subject = format!("{}.{}.{DIAG_TOKEN}", self.base, token(tenant));
        self.publish(&subject, line)
    }

    /// A request/reply on the connection (a JetStream API call such as
    /// `$JS.API.STREAM.INFO.<stream>`): the reply's JSON, a JetStream error an error.
    #[cfg(test)]
    pub fn request(&mut self, subject: &str, body: &[u8]) -> io::Result<Value> {
        let acked = &mut self.acked;
        let result = match self.conn.as_mut() {
            Some(conn) => conn.request(subject, body, acked),
            None => Err(NatsError::NotConnected),
        };
        self.settle(result)
    }

    fn publish(&mut self, subject: &str, payload: &[u8]) -> io::Result<()> {
        let acked = &mut self.acked;
        let idle = self
            .conn
            .as_mut()
            .filter(|c| c.last_read.elapsed() > IDLE_CHECK);
        if let Some(Err(e)) = idle.map(|conn| conn.catch_up(acked)) {
            // Dropped while idle (stale, restarted): reconnect now rather than
            // lose this record; the error stays visible in state.
            self.last_error = Some(io::Error::from(e).to_string());
            self.connect()?;
        }
        let (max_pending, acked) = (self.config.max_pending, &mut self.acked);
        let result = match self.conn.as_mut() {
            None => Err(NatsError::NotConnected),
            Some(conn) if payload.len() as u64 > conn.info.max_payload => {
                let (len, max) = (payload.len(), conn.info.max_payload);
                // Refused before sending: the connection stays good.
                return Err(NatsError::TooLarge { len, max }.into());
            }
            Some(conn) => {
                let id = conn.publish(subject, payload);
                conn.pending.insert(id, subject.to_owned());
                self.published += 1;
                if conn.pending.len() >= max_pending {
                    // Waiting for half the window, not one ack, keeps the pipe full.
                    conn.wait_acks(max_pending / 2, acked)
                } else if conn.out.len() >= OUT_HIGH_WATER {
                    conn.send()
                } else {
                    Ok(())
                }
            }
        };
        self.settle(result)
    }

    /// Passes a result on; an error drops the connection (`connect` makes a new one).
    fn settle<T>(&mut self, result: Result<T, NatsError>) -> io::Result<T> {
        result.map_err(|e| {
            if let Some(conn) = self.conn.take() {
                self.unacked_lost += conn.pending.len() as u64;
            }
            let e = io::Error::from(e);
            self.last_error = Some(e.to_string());
            e
        })
    }
}

impl Station for NatsStation {
    fn diagnostic(&mut self, tenant: &str, line: &[u8]) -> io::Result<()> {
        let line = line.strip_suffix(b"\n").unwrap_or(line);
        self.publish_diagnostic(tenant, line)
    }

    fn kind(&self) -> &'static str {
        "nats"
    }

    fn connect(&mut self) -> io::Result<()> {
        if let Some(old) = self.conn.take() {
            self.unacked_lost += old.pending.len() as u64;
        }
        let result = Conn::open(&self.config, &self.host_port).and_then(|mut conn| {
            let created = conn.ensure_stream(&self.config)?;
            Ok((conn, created))
        });
        let (conn, created) = self.settle(result)?;
        self.conn = Some(conn);
        self.created = Some(created);
        Ok(())
    }

    fn write(&mut self, record: &Record) -> io::Result<()> {
        let mut line = std::mem::take(&mut self.line);
        line.clear();
        encode_line(record, &mut line);
        line.pop(); // the newline: a message is already one record
        let result = self.publish(&self.subject(&record.tenant, &record.stream), &line);
        self.line = line;
        result
    }

    fn flush(&mut self) -> io::Result<()> {
        let acked = &mut self.acked;
        let result = match self.conn.as_mut() {
            Some(conn) => conn.wait_acks(0, acked),
            None => Ok(()),
        };
        self.settle(result)
    }

    fn config(&self) -> Value {
        let c = &self.config;
        serde_json::json!({
            "kind": "nats", "url": c.url, "stream": c.stream,
            "subject_prefix": c.subject_prefix, "node": c.node, "max_bytes": c.max_bytes,
            "max_pending": c.max_pending, "auth": c.auth.kind(),
        })
    }

    fn state(&self) -> Value {
        let conn = self.conn.as_ref();
        serde_json::json!({
            "connected": conn.is_some(),
            "server": conn.map(|c| c.server()),
            "stream": self.config.stream,
            "stream_created": self.created,
            "published": self.published,
            "acked": self.acked,
            "pending": conn.map_or(0, |c| c.pending.len()),
            "unacked_lost": self.unacked_lost,
            "last_error": self.last_error,
        })
    }
}

#[cfg(test)]
#[path = "nats_tests.rs"]
mod tests;
