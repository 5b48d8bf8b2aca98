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
    /// Sets a component's log level (and of everything under it); `for_ms`: revert
    /// after that long. `level` "reset" removes the override.
    Level {
        /// Which.
        dpid: String,
        /// off, error, warn, info, debug, trace, or reset.
        level: String,
        /// Revert after this many milliseconds.
        #[serde(default)]
        for_ms: Option<u64>,
    },
    /// OpenMetrics text for every component of this process.
    Metrics,
    /// Changes the mirror's capture for a tenant, stream or connection (by DPID), or a
    /// peer network (`peer`, with the tenant's DPID): `capture` is none, header, all,
    /// N, M..N, or reset. From the next message on. Root-only for now; the signed
    /// request issue puts it behind a signature.
    SetCapture {
        /// Which.
        dpid: String,
        /// A peer address or CIDR.
        #[serde(default)]
        peer: Option<String>,
        /// The capture, or "reset".
        capture: String,
        /// Revert after this many milliseconds.
        #[serde(default)]
        for_ms: Option<u64>,
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
/// arrive with signed privileged requests; until then they are refused by name.
pub const SIGNED_ONLY: [&str; 5] = ["dump-spool", "dump-memory", "set-rules", "stop", "kill"];

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
        "level",
        "metrics",
        "set-capture",
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
        let r = parse_request(
            br#"{"v":1,"op":"level","dpid":"pg/s/c1","level":"debug","for_ms":2000}"#,
        )
        .unwrap();
        assert_eq!(
            r.op,
            Op::Level {
                dpid: "pg/s/c1".into(),
                level: "debug".into(),
                for_ms: Some(2000)
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
        assert_eq!(
            code(br#"{"v":1,"op":"dump-spool","dpid":"x"}"#),
            "requires_signed_request"
        );
        assert_eq!(code(br#"{"v":1,"op":"state"}"#), "bad_request");
        assert_eq!(
            code(br#"{"v":1,"op":"state","dpid":"x","extra":1}"#),
            "bad_request"
        );
    }
}
