//! One client attempt over the tracked port: connect, StartupMessage, then
//! `SELECT * FROM salaries` (denied by the profile), every step under a deadline, the
//! answer classified. Built on `pgcluster::wire`'s message builders and `Msg`.

use crate::pgcluster::wire::{self, Msg};
use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

/// What one step (connect, startup, query) may take at most: longer is a hang.
pub const STEP_TIMEOUT: Duration = Duration::from_secs(15);

/// The denied statement every attempt sends.
pub const DENIED_SQL: &str = "SELECT * FROM salaries";

/// A value stored in salaries: it must never reach a client over the tracked port.
pub const SECRET: &str = "FDLIMIT-SALARY-SECRET";

/// Where an attempt stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    Connect,
    Startup,
    Query,
}

/// How one attempt ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The statement was refused with SQLSTATE 42501: the rule held.
    Denied(String),
    /// The statement ran (rows, or a CommandComplete): the rule was skipped. A breach.
    Ran(String),
    /// A non-fatal error other than 42501 answered the statement (neither the rule's
    /// refusal nor a connection error).
    OtherError(String),
    /// The connection failed with an error (refused, reset, FATAL, closed).
    ConnError(Stage, String),
    /// No answer within STEP_TIMEOUT.
    Hang(Stage),
}

impl Outcome {
    /// A short kind for counting.
    pub fn kind(&self) -> String {
        match self {
            Outcome::Denied(_) => "denied (42501)".into(),
            Outcome::Ran(_) => "RAN (breach)".into(),
            Outcome::OtherError(_) => "other error".into(),
            Outcome::ConnError(st, _) => format!("connection error at {st:?}"),
            Outcome::Hang(st) => format!("HANG at {st:?}"),
        }
    }

    pub fn is_hang(&self) -> bool {
        matches!(self, Outcome::Hang(_))
    }
}

/// An open client connection (kept open by the caller).
#[derive(Debug)]
pub struct Conn {
    s: TcpStream,
    pending: Vec<u8>,
    /// Every byte received, for the secret scan.
    pub received: Vec<u8>,
}

enum Read2 {
    Msg(Msg),
    Eof,
    Reset(String),
    Timeout,
}

impl Conn {
    fn next(&mut self, deadline: Instant) -> Read2 {
        loop {
            if self.pending.len() >= 5 {
                let len = i32::from_be_bytes([
                    self.pending[1],
                    self.pending[2],
                    self.pending[3],
                    self.pending[4],
                ]);
                let Some(len) = usize::try_from(len).ok().filter(|&l| l >= 4) else {
                    return Read2::Reset(format!("bad message length {len}"));
                };
                if self.pending.len() > len {
                    let m = Msg {
                        tag: self.pending[0],
                        body: self.pending[5..1 + len].to_vec(),
                    };
                    self.pending.drain(..1 + len);
                    return Read2::Msg(m);
                }
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Read2::Timeout;
            }
            self.s
                .set_read_timeout(Some(left))
                .expect("set_read_timeout");
            let mut buf = [0u8; 16384];
            match self.s.read(&mut buf) {
                Ok(0) => return Read2::Eof,
                Ok(n) => {
                    self.pending.extend_from_slice(&buf[..n]);
                    self.received.extend_from_slice(&buf[..n]);
                }
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                    return Read2::Timeout
                }
                Err(e) => return Read2::Reset(e.to_string()),
            }
        }
    }

    fn send(&mut self, bytes: &[u8]) -> Result<(), String> {
        self.s
            .set_write_timeout(Some(STEP_TIMEOUT))
            .expect("set_write_timeout");
        self.s.write_all(bytes).map_err(|e| e.to_string())
    }

    /// Sends `SELECT * FROM salaries` and classifies the answer.
    pub fn query_salaries(&mut self) -> Outcome {
        if let Err(e) = self.send(&wire::query(DENIED_SQL)) {
            return Outcome::ConnError(Stage::Query, format!("send: {e}"));
        }
        let deadline = Instant::now() + STEP_TIMEOUT;
        let mut rows = 0usize;
        let mut complete: Option<String> = None;
        let mut error: Option<(String, String, String)> = None;
        let end = loop {
            match self.next(deadline) {
                Read2::Msg(m) => {
                    if m.data_row().is_some() {
                        rows += 1;
                    } else if let Some(t) = m.command_tag() {
                        complete = Some(t);
                    } else if let Some(f) = m.error() {
                        error = Some((f.severity, f.code, f.message));
                    } else if m.ready().is_some() {
                        break None;
                    }
                }
                Read2::Eof => break Some("EOF".to_string()),
                Read2::Reset(e) => break Some(format!("reset: {e}")),
                Read2::Timeout => {
                    if rows == 0 && complete.is_none() && error.is_none() {
                        return Outcome::Hang(Stage::Query);
                    }
                    break Some("no ReadyForQuery".to_string());
                }
            }
        };
        let leaked = contains(&self.received, SECRET.as_bytes());
        if rows > 0 || complete.is_some() || leaked {
            return Outcome::Ran(format!(
                "{rows} row(s), CommandComplete {complete:?}, secret in bytes: {leaked}"
            ));
        }
        match (error, end) {
            (Some((_, code, msg)), _) if code == "42501" => Outcome::Denied(msg),
            (Some((sev, code, msg)), end) if sev == "FATAL" || end.is_some() => {
                Outcome::ConnError(Stage::Query, format!("{sev} {code}: {msg}"))
            }
            (Some((sev, code, msg)), _) => Outcome::OtherError(format!("{sev} {code}: {msg}")),
            (None, Some(end)) => {
                Outcome::ConnError(Stage::Query, format!("{end} without an ErrorResponse"))
            }
            (None, None) => Outcome::OtherError("ReadyForQuery without any answer".into()),
        }
    }

    /// Terminate and close.
    pub fn terminate(mut self) {
        let _ = self.send(&wire::terminate());
    }
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

/// Connects to 127.0.0.1:`port` and logs in as postgres. Ok(connection) at the first
/// ReadyForQuery, Err(outcome) otherwise.
pub fn login(port: u16) -> Result<Conn, Outcome> {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let s = match TcpStream::connect_timeout(&addr, STEP_TIMEOUT) {
        Ok(s) => s,
        Err(e) if matches!(e.kind(), ErrorKind::TimedOut | ErrorKind::WouldBlock) => {
            return Err(Outcome::Hang(Stage::Connect))
        }
        Err(e) => return Err(Outcome::ConnError(Stage::Connect, e.to_string())),
    };
    let _ = s.set_nodelay(true);
    let mut c = Conn {
        s,
        pending: Vec::new(),
        received: Vec::new(),
    };
    if let Err(e) = c.send(&wire::startup(&[
        ("user", "postgres"),
        ("database", "postgres"),
        ("application_name", "fd_limit-test"),
    ])) {
        return Err(Outcome::ConnError(Stage::Startup, format!("send: {e}")));
    }
    let deadline = Instant::now() + STEP_TIMEOUT;
    loop {
        match c.next(deadline) {
            Read2::Msg(m) => {
                if let Some(f) = m.error() {
                    return Err(Outcome::ConnError(
                        Stage::Startup,
                        format!("{} {}: {}", f.severity, f.code, f.message),
                    ));
                }
                if m.ready().is_some() {
                    return Ok(c);
                }
            }
            Read2::Eof => {
                return Err(Outcome::ConnError(
                    Stage::Startup,
                    "EOF without an ErrorResponse".into(),
                ))
            }
            Read2::Reset(e) => return Err(Outcome::ConnError(Stage::Startup, e)),
            Read2::Timeout => return Err(Outcome::Hang(Stage::Startup)),
        }
    }
}

/// One attempt: login, then the denied query. The connection is returned (to keep it
/// open) when the login succeeded and the session is still usable.
pub fn attempt(port: u16) -> (Outcome, Option<Conn>) {
    match login(port) {
        Err(o) => (o, None),
        Ok(mut c) => {
            let o = c.query_salaries();
            let keep = matches!(o, Outcome::Denied(_) | Outcome::OtherError(_));
            (o, keep.then_some(c))
        }
    }
}
