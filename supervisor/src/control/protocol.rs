//! The control protocol, version 1: length-prefixed JSON over a unix stream socket.
//!
//! Each message is a 4-byte big-endian length followed by that many bytes of UTF-8
//! JSON. A client may send several requests on one connection; each gets one response,
//! in order. Why this and not HTTP: the framing is four bytes (nothing to parse before
//! the length is known, so an oversized request is refused before a byte of it is
//! buffered), both ends are ours, and JSON keeps it scriptable (`supervise ctl` prints
//! it; `socat`/Python can speak it in a few lines).
//!
//! Request:  `{"v":1,"op":"state","dpid":"pg-demo/pg-clients/c3"}`
//! Response: `{"v":1,"ok":true,"result":{...}}` or
//!           `{"v":1,"ok":false,"error":{"code":"unknown_dpid","message":"..."}}`

use serde::{Deserialize, Serialize};

/// The protocol version this build speaks.
pub const VERSION: u32 = 1;
/// Largest request a server reads (bytes of JSON).
pub const MAX_REQUEST: u32 = 64 * 1024;
/// Largest response a client reads.
pub const MAX_RESPONSE: u32 = 64 * 1024 * 1024;

/// What a client asks.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "kebab-case", deny_unknown_fields)]
pub enum Op {
    /// Every component of this supervising process: DPID, kind, ops.
    List,
    /// A component's state.
    State {
        /// Which.
        dpid: String,
    },
    /// A component's effective configuration (secrets redacted by structure).
    Config {
        /// Which.
        dpid: String,
    },
    /// The names of a component's self-tests.
    Selftests {
        /// Which.
        dpid: String,
    },
    /// Runs one self-test, or all of them (`name` absent).
    Selftest {
        /// Which.
        dpid: String,
        /// The test; all when absent.
        #[serde(default)]
        name: Option<String>,
    },
    /// OpenMetrics text for every component of this process.
    Metrics,
    /// This node's public facts, for building a signed request: its id (the host key's
    /// fingerprint), host key, age recipient, the tenant and this run's instance id.
    Node,
    /// A signed privileged request (see `keyring`): its exact signed text and the
    /// armored SSH signature over it. The result comes back sealed to the recipient
    /// the request names, signed by the node.
    Signed {
        /// The canonical request text.
        request: String,
        /// `-----BEGIN SSH SIGNATURE-----` …
        signature: String,
    },
}

/// A request: the version and the operation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Request {
    /// Must be [`VERSION`].
    pub v: u32,
    /// The operation.
    #[serde(flatten)]
    pub op: Op,
}

/// Why a request failed: a stable code for programs and a message for people.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Failure {
    /// `bad_request`, `bad_version`, `too_large`, `unknown_op`, `unknown_dpid`,
    /// `not_offered`, `requires_signed_request`, `bad_level`, `unknown_selftest`,
    /// `timeout`, `busy`, `internal`.
    pub code: String,
    /// What was wrong, naming the offending part.
    pub message: String,
}

impl Failure {
    /// A failure with `code`.
    pub fn new(code: &str, message: impl Into<String>) -> Failure {
        Failure {
            code: code.to_owned(),
            message: message.into(),
        }
    }
}

/// A response.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Response {
    /// [`VERSION`].
    pub v: u32,
    /// Whether `result` (true) or `error` (false) is present.
    pub ok: bool,
    /// The answer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result: Option<serde_json::Value>,
    /// Why not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<Failure>,
}

impl Response {
    /// A success.
    pub fn ok(result: serde_json::Value) -> Response {
        Response {
            v: VERSION,
            ok: true,
            result: Some(result),
            error: None,
        }
    }

    /// A failure.
    pub fn fail(failure: Failure) -> Response {
        Response {
            v: VERSION,
            ok: false,
            result: None,
            error: Some(failure),
        }
    }
}

/// Operations that reveal tenant data or change behaviour: never served unsigned. They
/// arrive inside a signed request (`op: signed`); asked for plainly they are refused by
/// name.
pub const SIGNED_ONLY: [&str; 8] = [
    "dump-spool",
    "dump-memory",
    "set-rules",
    "set-capture",
    "level",
    "stop",
    "kill",
    "capture",
];

/// A privileged operation, built only from an accepted signed request (never parsed
/// from the wire: it has no `Deserialize`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Privileged {
    /// A connection's spool, ready queues, recent messages and rule state.
    DumpSpool {
        /// The connection's DPID.
        dpid: String,
    },
    /// `len` bytes at `addr` of tenant process `pid` (as the tenant's PID namespace
    /// numbers it).
    DumpMemory {
        /// The tenant's process.
        pid: i32,
        /// Where.
        addr: u64,
        /// How much (bounded).
        len: usize,
    },
    /// Mirror capture for a tenant, stream or connection, or a peer network.
    SetCapture {
        /// Which.
        dpid: String,
        /// A peer address or CIDR.
        peer: Option<String>,
        /// none, header, all, N, M..N, or reset.
        capture: String,
        /// Revert after this many milliseconds.
        for_ms: Option<u64>,
    },
    /// Replaces a stream's rules (TOML: `[[rules]]` tables as under a stream).
    SetRules {
        /// The stream's DPID.
        dpid: String,
        /// The new rule set.
        rules: String,
    },
    /// A component's log level, for a while.
    Level {
        /// Which.
        dpid: String,
        /// off, error, warn, info, debug, trace, or reset.
        level: String,
        /// Revert after this many milliseconds.
        for_ms: Option<u64>,
    },
    /// Stops the tenant (SIGTERM, then the profile's grace, then SIGKILL).
    Stop,
}

/// Parses a request's JSON, with an error that says what was wrong.
pub fn parse_request(bytes: &[u8]) -> Result<Request, Failure> {
    let value: serde_json::Value = serde_json::from_slice(bytes)
        .map_err(|e| Failure::new("bad_request", format!("not JSON: {e}")))?;
    let object = value
        .as_object()
        .ok_or_else(|| Failure::new("bad_request", "a request is a JSON object"))?;
    match object.get("v").and_then(serde_json::Value::as_u64) {
        Some(v) if v == u64::from(VERSION) => {}
        Some(v) => {
            return Err(Failure::new(
                "bad_version",
                format!(
                    "protocol version {v} is not spoken here (this supervisor speaks {VERSION})"
                ),
            ))
        }
        None => {
            return Err(Failure::new(
                "bad_request",
                "missing \"v\" (the protocol version, 1)",
            ))
        }
    }
    let op = object
        .get("op")
        .and_then(serde_json::Value::as_str)
        .ok_or_else(|| Failure::new("bad_request", "missing \"op\""))?;
    if SIGNED_ONLY.contains(&op) {
        return Err(Failure::new(
            "requires_signed_request",
            format!("{op:?} reveals tenant data or changes behaviour: it is only served from a signed request"),
        ));
    }
    const KNOWN: [&str; 8] = [
        "list",
        "state",
        "config",
        "selftests",
        "selftest",
        "metrics",
        "node",
        "signed",
    ];
    if !KNOWN.contains(&op) {
        return Err(Failure::new(
            "unknown_op",
            format!("unknown op {op:?} (known: {})", KNOWN.join(", ")),
        ));
    }
    serde_json::from_value(value.clone())
        .map_err(|e| Failure::new("bad_request", format!("op {op:?}: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_round_trip_and_bad_ones_name_the_problem() {
        let r = parse_request(br#"{"v":1,"op":"selftest","dpid":"pg/s/c1","name":"x"}"#).unwrap();
        assert_eq!(
            r.op,
            Op::Selftest {
                dpid: "pg/s/c1".into(),
                name: Some("x".into()),
            }
        );
        let text = serde_json::to_vec(&r).unwrap();
        assert_eq!(parse_request(&text).unwrap(), r);
        let code = |b: &[u8]| parse_request(b).unwrap_err().code;
        assert_eq!(code(b"{nope"), "bad_request");
        assert_eq!(code(b"[1]"), "bad_request");
        assert_eq!(code(br#"{"op":"list"}"#), "bad_request");
        assert_eq!(code(br#"{"v":2,"op":"list"}"#), "bad_version");
        assert_eq!(code(br#"{"v":1,"op":"frobnicate"}"#), "unknown_op");
        for op in SIGNED_ONLY {
            let text = format!(r#"{{"v":1,"op":"{op}","dpid":"x"}}"#);
            assert_eq!(code(text.as_bytes()), "requires_signed_request", "{op}");
        }
        assert_eq!(
            code(br#"{"v":1,"op":"signed","request":"x"}"#),
            "bad_request"
        );
        assert_eq!(code(br#"{"v":1,"op":"state"}"#), "bad_request");
        assert_eq!(
            code(br#"{"v":1,"op":"state","dpid":"x","extra":1}"#),
            "bad_request"
        );
    }
}
