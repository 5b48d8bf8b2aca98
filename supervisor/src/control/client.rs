//! `supervise ctl`: the command-line client of the control socket.
//!
//! A DPID's first segment is its tenant, and each tenant's supervising process serves
//! `<state dir>/ctl/<tenant>.sock`, so routing needs no lookup. `list` and `metrics`
//! without a tenant ask every socket in the directory (all tenants of one
//! `supervise up` share the state dir) and merge the answers.
//!
//! Exit status: 0 ok, 1 a server answered an error, 2 usage, 3 a socket unreachable.

use std::io::{self, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::Value;

use super::protocol::{MAX_RESPONSE, VERSION};
use super::{Failure, Op, Request, Response};
use crate::cli::{CtlArgs, CtlCommand};
use crate::diag::{Dpid, Kind};

/// How long one request may take, connecting to the last byte of the response.
pub const TIMEOUT: Duration = Duration::from_secs(10);

const SERVER_ERROR: i32 = 1;
const USAGE: i32 = 2;
const UNREACHABLE: i32 = 3;

/// Sends one request to the socket at `path` and reads its response, within `limit`.
/// A server's refusal is an `Ok` response with `ok: false`.
pub fn call_within(path: &Path, request: &Request, limit: Duration) -> io::Result<Response> {
    let deadline = Instant::now() + limit;
    let mut stream = UnixStream::connect(path)?;
    stream.set_write_timeout(Some(TIMEOUT))?;
    let json = serde_json::to_vec(request).map_err(io::Error::other)?;
    let len = u32::try_from(json.len()).map_err(|_| invalid("the request is too large".into()))?;
    let mut frame = Vec::with_capacity(4 + json.len());
    frame.extend_from_slice(&len.to_be_bytes());
    frame.extend_from_slice(&json);
    stream.write_all(&frame)?;
    let mut prefix = [0u8; 4];
    read_by(&mut stream, &mut prefix, deadline, limit)?;
    let len = u32::from_be_bytes(prefix);
    if len > MAX_RESPONSE {
        return Err(invalid(format!(
            "the response declares {len} bytes, over the limit of {MAX_RESPONSE}"
        )));
    }
    let mut body = vec![0u8; len as usize];
    read_by(&mut stream, &mut body, deadline, limit)?;
    serde_json::from_slice(&body)
        .map_err(|e| invalid(format!("the response is not protocol JSON: {e}")))
}

fn invalid(message: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, message)
}

/// Fills `buf` before `deadline`.
fn read_by(
    stream: &mut UnixStream,
    buf: &mut [u8],
    deadline: Instant,
    limit: Duration,
) -> io::Result<()> {
    let timed_out = || {
        let message = format!("no complete response within {} s", limit.as_secs());
        io::Error::new(io::ErrorKind::TimedOut, message)
    };
    let mut got = 0;
    while got < buf.len() {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(timed_out());
        }
        stream.set_read_timeout(Some(left))?;
        match stream.read(&mut buf[got..]) {
            Ok(0) => {
                let message = "the server closed the connection before answering";
                return Err(io::Error::new(io::ErrorKind::UnexpectedEof, message));
            }
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Err(timed_out()),
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Runs `supervise ctl`; returns the exit status.
pub fn run(state_dir: &Path, args: CtlArgs) -> i32 {
    let json = args.json;
    let one = |dpid: String, op: fn(String) -> Op| single(state_dir, &dpid, op(dpid.clone()), json);
    match args.op {
        CtlCommand::List { tenant } => list(state_dir, tenant.as_deref(), json),
        CtlCommand::Metrics { tenant } => metrics(state_dir, tenant.as_deref(), json),
        CtlCommand::State { dpid } => one(dpid, |dpid| Op::State { dpid }),
        CtlCommand::Config { dpid } => one(dpid, |dpid| Op::Config { dpid }),
        CtlCommand::Selftests { dpid } => one(dpid, |dpid| Op::Selftests { dpid }),
        CtlCommand::Selftest { dpid, name } => {
            let op = Op::Selftest {
                dpid: dpid.clone(),
                name,
            };
            single(state_dir, &dpid, op, json)
        }
        CtlCommand::Node { tenant } => {
            let path = super::socket_path(state_dir, &tenant);
            match ask(&path, Op::Node) {
                Ok(result) => {
                    print_json(&result, json);
                    0
                }
                Err(status) => status,
            }
        }
    }
}

fn usage(message: &str) -> i32 {
    eprintln!("supervise: ctl: {message}");
    USAGE
}

/// One request about one DPID, routed to its tenant's socket.
fn single(state_dir: &Path, dpid: &str, op: Op, json: bool) -> i32 {
    let dpid = match Dpid::parse(dpid) {
        Ok((dpid, _)) => dpid,
        Err(e) => return usage(&e),
    };
    let path = super::socket_path(state_dir, dpid.tenant_name());
    match ask(&path, op) {
        Ok(result) => {
            print_json(&result, json);
            0
        }
        Err(status) => status,
    }
}

/// Sends `op`; on failure prints why and returns the exit status.
pub(super) fn ask(path: &Path, op: Op) -> Result<Value, i32> {
    ask_quietly(path, op).map_err(|e| report("ctl", path, e))
}

/// Sends `op`: the result, or what went wrong (the server's failure, or I/O).
pub(super) fn ask_quietly(path: &Path, op: Op) -> Result<Value, Result<Failure, io::Error>> {
    ask_within(path, op, TIMEOUT)
}

/// [`ask_quietly`] with its own time limit.
pub(super) fn ask_within(
    path: &Path,
    op: Op,
    limit: Duration,
) -> Result<Value, Result<Failure, io::Error>> {
    match call_within(path, &Request { v: VERSION, op }, limit) {
        Ok(Response {
            ok: true, result, ..
        }) => Ok(result.unwrap_or(Value::Null)),
        Ok(Response { error, .. }) => Err(Ok(error
            .unwrap_or_else(|| Failure::new("internal", "the server failed without saying why")))),
        Err(e) => Err(Err(e)),
    }
}

/// Prints what [`ask_quietly`] met; returns the exit status.
/// `who` names the command in the message (`ctl`, `request`).
pub(super) fn report(who: &str, path: &Path, error: Result<Failure, io::Error>) -> i32 {
    let e = match error {
        Ok(f) => {
            eprintln!("supervise: {who}: {}: {}", f.code, f.message);
            return SERVER_ERROR;
        }
        Err(e) => e,
    };
    let tenant = path.file_stem().unwrap_or_default().to_string_lossy();
    let hint = match e.kind() {
        io::ErrorKind::PermissionDenied => " (the control socket is root-only)".to_owned(),
        io::ErrorKind::NotFound | io::ErrorKind::ConnectionRefused => {
            format!(
                " (is tenant {tenant} running? its supervisor serves this socket while it runs)"
            )
        }
        _ => String::new(),
    };
    eprintln!(
        "supervise: {who}: cannot reach {}: {e}{hint}",
        path.display()
    );
    UNREACHABLE
}

fn print_json(value: &Value, raw: bool) {
    let text = if raw {
        serde_json::to_string(value)
    } else {
        serde_json::to_string_pretty(value)
    };
    out(&format!(
        "{}\n",
        text.unwrap_or_else(|e| format!("(unprintable: {e})"))
    ));
}

/// Writes to stdout; a closed stdout (`ctl state … | head`) ends the output quietly
/// instead of panicking.
fn out(text: &str) {
    use std::io::Write;
    let _ = std::io::stdout().lock().write_all(text.as_bytes());
}

/// The sockets to ask: one tenant's, or every `*.sock` in `<state dir>/ctl`, sorted.
fn sockets(state_dir: &Path, tenant: Option<&str>) -> Result<Vec<(String, PathBuf)>, i32> {
    if let Some(tenant) = tenant {
        return match Dpid::parse(tenant) {
            Ok((_, Kind::Tenant)) => Ok(vec![(
                tenant.to_owned(),
                super::socket_path(state_dir, tenant),
            )]),
            _ => Err(usage(&format!(
                "{tenant:?} is not a tenant name ([A-Za-z0-9_-])"
            ))),
        };
    }
    let dir = super::socket_dir(state_dir);
    let entries = match std::fs::read_dir(&dir) {
        Ok(entries) => entries,
        Err(e) => {
            let hint = match e.kind() {
                io::ErrorKind::NotFound => " (no supervisor has served with this state dir)",
                io::ErrorKind::PermissionDenied => " (the control directory is root-only)",
                _ => "",
            };
            eprintln!("supervise: ctl: cannot read {}: {e}{hint}", dir.display());
            return Err(UNREACHABLE);
        }
    };
    let mut found: Vec<(String, PathBuf)> = entries
        .filter_map(Result::ok)
        .filter_map(|entry| {
            let path = entry.path();
            let tenant = path
                .file_name()?
                .to_str()?
                .strip_suffix(".sock")?
                .to_owned();
            Some((tenant, path))
        })
        .collect();
    found.sort();
    Ok(found)
}

/// Asks one tenant's socket, or every socket in the directory, skipping stale ones
/// (nothing listens) with a note. Returns the answers by tenant and the worst exit
/// status met.
fn ask_all(
    state_dir: &Path,
    tenant: Option<&str>,
    op: &Op,
) -> Result<(Vec<(String, Value)>, i32), i32> {
    let mut answers = Vec::new();
    let mut status = 0;
    for (name, path) in sockets(state_dir, tenant)? {
        match ask_quietly(&path, op.clone()) {
            Ok(value) => answers.push((name, value)),
            Err(Err(e)) if tenant.is_none() && e.kind() == io::ErrorKind::ConnectionRefused => {
                eprintln!(
                    "supervise: ctl: note: skipping {}: stale, nothing answers on it",
                    path.display()
                );
            }
            Err(e) => status = status.max(report("ctl", &path, e)),
        }
    }
    if answers.is_empty() && status == 0 {
        let dir = super::socket_dir(state_dir);
        eprintln!(
            "supervise: ctl: no supervisor is serving in {}",
            dir.display()
        );
        status = UNREACHABLE;
    }
    Ok((answers, status))
}

fn list(state_dir: &Path, tenant: Option<&str>, json: bool) -> i32 {
    let (answers, status) = match ask_all(state_dir, tenant, &Op::List) {
        Ok(r) => r,
        Err(status) => return status,
    };
    let items: Vec<Value> = answers
        .into_iter()
        .flat_map(|(_, v)| components(v))
        .collect();
    if json {
        print_json(&Value::Array(items), true);
    } else if !items.is_empty() || status == 0 {
        out(&table(&items));
    }
    status
}

/// A `list` result's components: the array itself, or its `components` field.
fn components(result: Value) -> Vec<Value> {
    match result {
        Value::Array(items) => items,
        Value::Object(mut object) => match object.remove("components") {
            Some(Value::Array(items)) => items,
            _ => vec![Value::Object(object)],
        },
        other => vec![other],
    }
}

/// DPID, KIND, OPS columns; ops comma-separated.
fn table(items: &[Value]) -> String {
    let text = |v: Option<&Value>| match v {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Array(a)) => a
            .iter()
            .map(|x| x.as_str().map_or_else(|| x.to_string(), str::to_owned))
            .collect::<Vec<_>>()
            .join(","),
        Some(Value::Null) | None => "-".to_owned(),
        Some(other) => other.to_string(),
    };
    let mut rows = vec![["DPID".to_owned(), "KIND".to_owned(), "OPS".to_owned()]];
    rows.extend(
        items
            .iter()
            .map(|i| [text(i.get("dpid")), text(i.get("kind")), text(i.get("ops"))]),
    );
    let width = |c: usize| rows.iter().map(|r| r[c].len()).max().unwrap_or(0);
    let (w0, w1) = (width(0), width(1));
    rows.iter()
        .map(|[d, k, o]| format!("{d:w0$}  {k:w1$}  {o}\n"))
        .collect()
}

fn metrics(state_dir: &Path, tenant: Option<&str>, json: bool) -> i32 {
    let (answers, status) = match ask_all(state_dir, tenant, &Op::Metrics) {
        Ok(r) => r,
        Err(status) => return status,
    };
    if json {
        let object = answers.into_iter().collect::<serde_json::Map<_, _>>();
        print_json(&Value::Object(object), true);
        return status;
    }
    let mut texts = Vec::new();
    for (tenant, value) in answers {
        match value {
            Value::String(text) => texts.push(text),
            other => eprintln!("supervise: ctl: {tenant}: metrics are not text: {other}"),
        }
    }
    if !texts.is_empty() {
        out(&merge_metrics(&texts));
    }
    status
}

/// Merges OpenMetrics expositions (one per tenant) into one: each metric family once,
/// with its `# TYPE`/`# HELP`/`# UNIT` lines, then every tenant's samples of it (the
/// DPID label keeps them apart), one `# EOF` at the end. A strict parser refuses a
/// family that appears twice.
fn merge_metrics(texts: &[String]) -> String {
    let mut order: Vec<String> = Vec::new();
    let mut families: std::collections::HashMap<String, (Vec<String>, Vec<String>)> =
        std::collections::HashMap::new();
    for text in texts {
        let mut current = String::new();
        for line in text.lines() {
            let line = line.trim_end();
            if line == "# EOF" || line.is_empty() {
                continue;
            }
            let meta = line
                .strip_prefix("# TYPE ")
                .or_else(|| line.strip_prefix("# HELP "))
                .or_else(|| line.strip_prefix("# UNIT "));
            if let Some(rest) = meta {
                current = rest.split_whitespace().next().unwrap_or("").to_owned();
            }
            let entry = families.entry(current.clone()).or_insert_with(|| {
                order.push(current.clone());
                (Vec::new(), Vec::new())
            });
            match meta {
                Some(_) if !entry.0.iter().any(|h| h == line) => entry.0.push(line.to_owned()),
                Some(_) => {}
                None => entry.1.push(line.to_owned()),
            }
        }
    }
    let mut out = String::new();
    for name in &order {
        let (headers, samples) = &families[name];
        for line in headers.iter().chain(samples) {
            out.push_str(line);
            out.push('\n');
        }
    }
    out.push_str("# EOF\n");
    out
}

#[cfg(test)]
mod tests;
