//! The canonical request encoding, version 1: the exact bytes an operator signs.
//!
//! ```text
//! supervise-request/1
//! op dump-spool
//! target pg-demo/pg-clients/c3
//! node SHA256:Zx4…
//! instance 6f1c0a9e2b7d4c31        (optional: one run of the tenant's supervisor)
//! issued 1796601600
//! expires 1796601900
//! nonce 0f1e2d3c4b5a69788796a5b4c3d2e1f0
//! recipient age1…                  (or: ssh-ed25519 AAAA…)
//! arg capture 0..64                (zero or more, in the order given)
//! sealed-args YWdlLWVuY3J5cHRpb24…  (instead of arg lines: base64 of an age file to
//!                                   the node, whose plaintext is the arg lines)
//! end
//! ```
//!
//! Every line ends with `\n` (no `\r`), the fields come in exactly this order, each once
//! (`arg` repeats); the last line is `end`, so a request cut at a line boundary is
//! still seen to be cut. Argument values are percent-encoded: every byte outside `!`..`~`,
//! and `%` itself, is written `%XX` (upper-case hex), and nothing else is. So one request
//! has one spelling: [`Request::parse`] refuses any other, and `encode(parse(b)) == b`.
//! Every length is bounded ([`MAX_REQUEST`], [`MAX_ARGS`], [`MAX_ARG`]) before anything
//! is allocated for it.

use std::fmt::Write as _;
use std::str::FromStr;

use crate::refusal::Refusal;

/// The first line of every version-1 request.
pub const MAGIC: &str = "supervise-request/1";
/// Largest request, in bytes.
pub const MAX_REQUEST: usize = 32 * 1024;
/// Most arguments.
pub const MAX_ARGS: usize = 16;
/// Largest argument value, decoded, in bytes.
pub const MAX_ARG: usize = 16 * 1024;
/// Largest argument name.
pub const MAX_ARG_NAME: usize = 32;
/// Largest target (a DPID).
pub const MAX_TARGET: usize = 256;

/// The privileged operations a request may name.
pub const OPERATIONS: [&str; 6] = [
    "dump-spool",
    "dump-memory",
    "set-capture",
    "set-rules",
    "level",
    "stop",
];

/// What a request is about: a DPID. Its first part names the tenant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target(String);

impl Target {
    /// `dpid` as a target, or why not.
    pub fn new(dpid: &str) -> Result<Target, String> {
        if dpid.is_empty() || dpid.len() > MAX_TARGET {
            return Err(format!("a target is 1 to {MAX_TARGET} bytes"));
        }
        if !dpid
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_./@:".contains(&b))
        {
            return Err(format!(
                "target {dpid:?}: only letters, digits and - _ . / @ : (a DPID)"
            ));
        }
        if dpid.starts_with('/') || dpid.ends_with('/') || dpid.contains("//") {
            return Err(format!("target {dpid:?}: an empty part"));
        }
        Ok(Target(dpid.to_owned()))
    }

    /// The whole DPID.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The tenant it belongs to (the DPID's first part).
    pub fn tenant(&self) -> &str {
        self.0.split('/').next().unwrap_or(&self.0)
    }
}

/// Who can read the result: an age recipient.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Recipient {
    /// `age1…`.
    X25519(String),
    /// `ssh-ed25519 AAAA…` (no comment).
    SshEd25519(String),
}

impl Recipient {
    /// Its text as written in a request.
    pub fn as_str(&self) -> &str {
        match self {
            Recipient::X25519(s) | Recipient::SshEd25519(s) => s,
        }
    }
}

impl FromStr for Recipient {
    type Err = String;

    fn from_str(text: &str) -> Result<Recipient, String> {
        if text.starts_with("age1") {
            age::x25519::Recipient::from_str(text)
                .map_err(|e| format!("recipient {text:?} is not an age X25519 recipient: {e}"))?;
            return Ok(Recipient::X25519(text.to_owned()));
        }
        if let Some(key) = text.strip_prefix("ssh-ed25519 ") {
            if key.contains(' ') {
                return Err("recipient: an ssh-ed25519 key without a comment".into());
            }
            age::ssh::Recipient::from_str(text).map_err(|e| {
                format!("recipient {text:?} is not an ssh-ed25519 public key: {e:?}")
            })?;
            return Ok(Recipient::SshEd25519(text.to_owned()));
        }
        Err(format!(
            "recipient {:?}: expected an age X25519 recipient (age1…) or an ssh-ed25519 public key",
            text.chars().take(40).collect::<String>()
        ))
    }
}

/// The arguments: in the clear, or sealed to the node's age recipient.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Args {
    /// Name and value pairs, in order.
    Clear(Vec<(String, String)>),
    /// An age file (binary) whose plaintext is `arg` lines.
    Sealed(Vec<u8>),
}

/// A parsed request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// One of [`OPERATIONS`].
    pub op: String,
    /// What it acts on.
    pub target: Target,
    /// The node it is bound to (the node's host key fingerprint).
    pub node: String,
    /// One run of the target tenant's supervisor, when named.
    pub instance: Option<String>,
    /// Unix seconds when it was made.
    pub issued: u64,
    /// Unix seconds after which it is void.
    pub expires: u64,
    /// 128 random bits, hex.
    pub nonce: [u8; 16],
    /// Who can read the result.
    pub recipient: Recipient,
    /// Its arguments.
    pub args: Args,
}

fn malformed(message: impl Into<String>) -> Refusal {
    Refusal::new("malformed", message)
}

impl Request {
    /// The canonical bytes of this request.
    pub fn encode(&self) -> String {
        let mut out = String::with_capacity(256);
        let _ = writeln!(out, "{MAGIC}");
        let _ = writeln!(out, "op {}", self.op);
        let _ = writeln!(out, "target {}", self.target.as_str());
        let _ = writeln!(out, "node {}", self.node);
        if let Some(instance) = &self.instance {
            let _ = writeln!(out, "instance {instance}");
        }
        let _ = writeln!(out, "issued {}", self.issued);
        let _ = writeln!(out, "expires {}", self.expires);
        let _ = writeln!(out, "nonce {}", hex(&self.nonce));
        let _ = writeln!(out, "recipient {}", self.recipient.as_str());
        match &self.args {
            Args::Clear(args) => out.push_str(&encode_args(args)),
            Args::Sealed(bytes) => {
                use base64::Engine as _;
                let b64 = base64::engine::general_purpose::STANDARD.encode(bytes);
                let _ = writeln!(out, "sealed-args {b64}");
            }
        }
        out.push_str("end\n");
        out
    }

    /// Parses canonical bytes, refusing anything else with the reason.
    pub fn parse(bytes: &[u8]) -> Result<Request, Refusal> {
        if bytes.len() > MAX_REQUEST {
            return Err(Refusal::new(
                "too_large",
                format!(
                    "the request is {} bytes; the limit is {MAX_REQUEST}",
                    bytes.len()
                ),
            ));
        }
        let text = std::str::from_utf8(bytes).map_err(|_| malformed("the request is not UTF-8"))?;
        if !text.ends_with('\n') {
            return Err(malformed(
                "the request is truncated: its last line has no newline",
            ));
        }
        let mut lines = Lines::new(text);
        lines.expect_exact(MAGIC)?;
        let op = lines.field("op")?;
        if !OPERATIONS.contains(&op) {
            return Err(malformed(format!(
                "unknown op {op:?} (known: {})",
                OPERATIONS.join(", ")
            )));
        }
        let target = Target::new(lines.field("target")?).map_err(malformed)?;
        let node = lines.field("node")?;
        token("node", node, 128)?;
        let instance = match lines.peek_key() {
            Some("instance") => {
                let value = lines.field("instance")?;
                token("instance", value, 64)?;
                Some(value.to_owned())
            }
            _ => None,
        };
        let issued = number("issued", lines.field("issued")?)?;
        let expires = number("expires", lines.field("expires")?)?;
        let nonce = parse_nonce(lines.field("nonce")?)?;
        let recipient = lines
            .field("recipient")?
            .parse::<Recipient>()
            .map_err(|m| Refusal::new("bad_recipient", m))?;
        let args = if lines.peek_key() == Some("sealed-args") {
            let b64 = lines.field("sealed-args")?;
            use base64::Engine as _;
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(b64)
                .map_err(|e| malformed(format!("sealed-args is not base64: {e}")))?;
            Args::Sealed(bytes)
        } else {
            Args::Clear(parse_arg_lines(&mut lines)?)
        };
        match lines.next_line() {
            Some("end") => {}
            None => return Err(malformed("the request is truncated: no `end` line")),
            Some(line) => {
                return Err(malformed(format!(
                    "expected `end`, found {:?}",
                    line.chars().take(40).collect::<String>()
                )))
            }
        }
        if let Some(line) = lines.next_line() {
            return Err(malformed(format!(
                "unexpected line {:?} after `end`",
                line.chars().take(40).collect::<String>()
            )));
        }
        let request = Request {
            op: op.to_owned(),
            target,
            node: node.to_owned(),
            instance,
            issued,
            expires,
            nonce,
            recipient,
            args,
        };
        if request.encode().as_bytes() != bytes {
            return Err(malformed(
                "the request is not in canonical form (sealed-args must be canonical base64)",
            ));
        }
        Ok(request)
    }

    /// The clear arguments' value for `name`, if given.
    pub fn arg(&self, name: &str) -> Option<&str> {
        match &self.args {
            Args::Clear(args) => args
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, v)| v.as_str()),
            Args::Sealed(_) => None,
        }
    }
}

/// `arg NAME VALUE` lines, values percent-encoded.
pub fn encode_args(args: &[(String, String)]) -> String {
    let mut out = String::new();
    for (name, value) in args {
        let _ = writeln!(out, "arg {name} {}", percent_encode(value.as_bytes()));
    }
    out
}

/// Parses `arg` lines (the clear ones, or the plaintext of sealed-args).
pub fn parse_args(text: &[u8]) -> Result<Vec<(String, String)>, Refusal> {
    let text = std::str::from_utf8(text).map_err(|_| malformed("the arguments are not UTF-8"))?;
    if !text.is_empty() && !text.ends_with('\n') {
        return Err(malformed("the arguments are truncated"));
    }
    let mut lines = Lines::new(text);
    let args = parse_arg_lines(&mut lines)?;
    if lines.next_line().is_some() {
        return Err(malformed(
            "a line that is not `arg NAME VALUE` among the arguments",
        ));
    }
    if encode_args(&args) != text {
        return Err(malformed("the arguments are not in canonical form"));
    }
    Ok(args)
}

fn parse_arg_lines(lines: &mut Lines<'_>) -> Result<Vec<(String, String)>, Refusal> {
    let mut args = Vec::new();
    while lines.peek_key() == Some("arg") {
        if args.len() == MAX_ARGS {
            return Err(Refusal::new(
                "too_large",
                format!("more than {MAX_ARGS} arguments"),
            ));
        }
        let rest = lines.field("arg")?;
        let (name, value) = rest
            .split_once(' ')
            .ok_or_else(|| malformed(format!("argument {rest:?}: expected `arg NAME VALUE`")))?;
        if name.is_empty()
            || name.len() > MAX_ARG_NAME
            || !name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        {
            return Err(malformed(format!(
                "argument name {name:?}: 1 to {MAX_ARG_NAME} of a-z 0-9 -"
            )));
        }
        if args.iter().any(|(n, _)| n == name) {
            return Err(malformed(format!("argument {name:?} given twice")));
        }
        let value =
            percent_decode(value).map_err(|m| malformed(format!("argument {name:?}: {m}")))?;
        args.push((name.to_owned(), value));
    }
    Ok(args)
}

fn percent_encode(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len());
    for &b in bytes {
        if (b'!'..=b'~').contains(&b) && b != b'%' {
            out.push(b as char);
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

fn percent_decode(text: &str) -> Result<String, String> {
    if text.len() > MAX_ARG * 3 {
        return Err(format!("longer than {MAX_ARG} bytes"));
    }
    let mut out = Vec::with_capacity(text.len());
    let bytes = text.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = bytes
                .get(i + 1..i + 3)
                .and_then(|h| std::str::from_utf8(h).ok())
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .ok_or("a % not followed by two hex digits")?;
            out.push(hex);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    if out.len() > MAX_ARG {
        return Err(format!("longer than {MAX_ARG} bytes"));
    }
    String::from_utf8(out).map_err(|_| "not UTF-8 once decoded".to_owned())
}

fn token(name: &str, value: &str, max: usize) -> Result<(), Refusal> {
    if value.is_empty() || value.len() > max || !value.bytes().all(|b| (b'!'..=b'~').contains(&b)) {
        return Err(malformed(format!(
            "{name} {value:?}: 1 to {max} printable characters without spaces"
        )));
    }
    Ok(())
}

fn number(name: &str, value: &str) -> Result<u64, Refusal> {
    let canonical = !value.is_empty()
        && value.len() <= 19
        && value.bytes().all(|b| b.is_ascii_digit())
        && (value == "0" || !value.starts_with('0'));
    if !canonical {
        return Err(malformed(format!(
            "{name} {value:?}: unix seconds, in decimal without leading zeros"
        )));
    }
    value
        .parse()
        .map_err(|_| malformed(format!("{name} {value:?}: out of range")))
}

fn parse_nonce(value: &str) -> Result<[u8; 16], Refusal> {
    let bad = || malformed(format!("nonce {value:?}: 32 lower-case hex digits"));
    if value.len() != 32
        || !value
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    {
        return Err(bad());
    }
    let mut nonce = [0u8; 16];
    for (i, byte) in nonce.iter_mut().enumerate() {
        *byte = u8::from_str_radix(&value[2 * i..2 * i + 2], 16).map_err(|_| bad())?;
    }
    Ok(nonce)
}

/// Lower-case hex.
pub fn hex(bytes: &[u8]) -> String {
    bytes
        .iter()
        .fold(String::with_capacity(bytes.len() * 2), |mut s, b| {
            let _ = write!(s, "{b:02x}");
            s
        })
}

/// The request's lines, one at a time, for a strict parser.
struct Lines<'a> {
    rest: &'a str,
}

impl<'a> Lines<'a> {
    fn new(text: &'a str) -> Lines<'a> {
        Lines { rest: text }
    }

    fn next_line(&mut self) -> Option<&'a str> {
        if self.rest.is_empty() {
            return None;
        }
        let (line, rest) = self.rest.split_once('\n').unwrap_or((self.rest, ""));
        self.rest = rest;
        Some(line)
    }

    fn peek_key(&self) -> Option<&'a str> {
        let line = self.rest.split('\n').next()?;
        Some(line.split(' ').next().unwrap_or(line))
    }

    fn expect_exact(&mut self, want: &str) -> Result<(), Refusal> {
        match self.next_line() {
            Some(line) if line == want => Ok(()),
            Some(line) if line.starts_with("supervise-request/") => Err(malformed(format!(
                "request version {:?} is not spoken here (this node speaks {want})",
                line.chars().take(40).collect::<String>()
            ))),
            _ => Err(malformed(format!(
                "a request starts with the line {want:?}"
            ))),
        }
    }

    fn field(&mut self, key: &str) -> Result<&'a str, Refusal> {
        let line = self
            .next_line()
            .ok_or_else(|| malformed(format!("the request is truncated before `{key}`")))?;
        match line.split_once(' ') {
            Some((k, value)) if k == key && !value.is_empty() => {
                if value.bytes().any(|b| b.is_ascii_control()) {
                    return Err(malformed(format!("`{key}` holds a control character")));
                }
                Ok(value)
            }
            _ => Err(malformed(format!(
                "expected `{key} …`, found {:?}",
                line.chars().take(40).collect::<String>()
            ))),
        }
    }
}

#[cfg(test)]
mod tests;
