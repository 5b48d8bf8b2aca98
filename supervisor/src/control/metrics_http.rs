//! `--metrics-listen ADDR`: the OpenMetrics text of `ctl metrics` over plain HTTP, for
//! a Prometheus scraper. One thread, one request per connection, read with a timeout;
//! only GET of `/metrics` (or `/`) is answered. It reveals counters only, never
//! tenant data, so it needs no credentials; bind it to loopback unless the network is
//! trusted.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::time::Duration;

use super::{Backend, Op};
use crate::diag::Kind;

/// Binds `address` and serves from a thread (for the process's lifetime); returns the
/// bound address.
pub fn serve(address: SocketAddr, backend: Arc<dyn Backend>) -> std::io::Result<SocketAddr> {
    let listener = TcpListener::bind(address)?;
    let bound = listener.local_addr()?;
    crate::sys::spawn_without_signals("metrics-http", move || {
        for conn in listener.incoming().flatten() {
            if let Err(error) = answer(conn, &*backend) {
                tracing::debug!(target: Kind::Control.target(), %error, "metrics request failed");
            }
        }
    })?;
    tracing::info!(target: Kind::Control.target(), address = %bound, "serving OpenMetrics at /metrics");
    Ok(bound)
}

fn answer(conn: TcpStream, backend: &dyn Backend) -> std::io::Result<()> {
    conn.set_read_timeout(Some(Duration::from_secs(5)))?;
    conn.set_write_timeout(Some(Duration::from_secs(5)))?;
    let mut reader = BufReader::new(conn.try_clone()?);
    let mut request_line = String::new();
    reader.by_ref().take(8192).read_line(&mut request_line)?;
    // Headers up to the blank line (bounded).
    let mut header = String::new();
    for _ in 0..100 {
        header.clear();
        if reader.by_ref().take(8192).read_line(&mut header)? == 0
            || header == "\r\n"
            || header == "\n"
        {
            break;
        }
    }
    let mut parts = request_line.split_whitespace();
    let (method, path) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    let (status, content_type, body) = if method != "GET" {
        (
            "405 Method Not Allowed",
            "text/plain",
            "only GET\n".to_owned(),
        )
    } else if path != "/metrics" && path != "/" {
        ("404 Not Found", "text/plain", "see /metrics\n".to_owned())
    } else {
        match backend.serve(Op::Metrics) {
            Ok(serde_json::Value::String(text)) => (
                "200 OK",
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
                text,
            ),
            Ok(_) => (
                "500 Internal Server Error",
                "text/plain",
                "unexpected answer\n".to_owned(),
            ),
            Err(f) => (
                "503 Service Unavailable",
                "text/plain",
                format!("{}: {}\n", f.code, f.message),
            ),
        }
    };
    let mut conn = conn;
    write!(
        conn,
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )?;
    conn.flush()
}
