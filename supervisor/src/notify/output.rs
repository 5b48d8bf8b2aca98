//! The tenant's own output, stamped. The supervisor gives the tenant a pipe as stderr
//! (and as stdout with `--tenant-output all`) and services every write to it: the bytes
//! are taken from the tenant's buffer, cut into whole lines per process, and each line
//! goes out through the supervisor's bounded log writer as a record of kind `output`,
//! stamped with the DPID of the tracked connection that process serves (a PostgreSQL
//! backend's log line names its client's connection), else the tenant's.
//!
//! A process's lines keep their order and are never mixed with another's (each has its
//! own partial line). The write returns at once with the bytes taken: a blocked
//! terminal never stalls the tenant; lines the writer cannot keep up with are dropped
//! and counted (`log_lines_dropped`). Bytes that reach the pipe without a notified
//! write (sendfile, splice) are drained by a thread and stamped with the tenant's DPID.

#![forbid(unsafe_code)]

use std::collections::HashMap;

use super::table::OutputFd;
use super::{Request, Supervisor, Verdict};
use crate::diag::{Dpid, Kind};

/// Longest line kept whole; a longer one goes out in pieces marked `continued`.
const MAX_LINE: usize = 16 * 1024;
/// Most bytes taken per write call (a larger write returns short, as a pipe may).
const MAX_TAKE: usize = 64 * 1024;

/// Partial lines per (process, output).
#[derive(Debug, Default)]
pub struct Outputs {
    partial: HashMap<(libc::pid_t, OutputFd), Vec<u8>>,
    /// Lines stamped so far.
    pub lines: u64,
    /// The outputs being stamped (`stdout`, `stderr`).
    pub captured: Vec<&'static str>,
    /// Each writing process's pid in the tenant's namespace, read from /proc once.
    namespace_pids: HashMap<libc::pid_t, libc::pid_t>,
}

impl Outputs {
    /// Processes with an unfinished line.
    pub fn partial_count(&self) -> usize {
        self.partial.len()
    }
}

impl OutputFd {
    pub(super) fn name(self) -> &'static str {
        match self {
            OutputFd::Stdout => "stdout",
            OutputFd::Stderr => "stderr",
        }
    }
}

/// A write (write, writev, pwritev2 at the current offset) of `iovs` on one of the
/// tenant's outputs.
pub(super) fn write(
    sv: &mut Supervisor,
    request: &Request,
    which: OutputFd,
    iovs: &[libc::iovec],
) -> Verdict {
    let Some(tgid) = sv.table.tenants.tgid_of(request.tid()) else {
        return Verdict::Errno(libc::EIO);
    };
    let wanted: usize = iovs
        .iter()
        .map(|v| v.iov_len)
        .fold(0usize, usize::saturating_add);
    let take = wanted.min(MAX_TAKE).min(sv.scratch.len());
    let taken = match request.read_memory_into(iovs, &mut sv.scratch[..take]) {
        Ok(n) => n,
        Err(super::request::MemError::Gone) => return Verdict::Gone,
        Err(super::request::MemError::Fault) => return Verdict::Errno(libc::EFAULT),
    };
    let bytes = sv.scratch[..taken].to_vec();
    sv.take_output(tgid, which, &bytes);
    Verdict::Value(taken as i64)
}

impl Supervisor {
    /// Appends `bytes` written by process `tgid` and stamps every line they complete.
    fn take_output(&mut self, tgid: libc::pid_t, which: OutputFd, bytes: &[u8]) {
        let mut partial = self
            .outputs
            .partial
            .remove(&(tgid, which))
            .unwrap_or_default();
        partial.extend_from_slice(bytes);
        let mut start = 0;
        while let Some(end) = partial[start..].iter().position(|&b| b == b'\n') {
            let line = partial[start..start + end].to_vec();
            self.stamp(tgid, which, &line, false);
            start += end + 1;
        }
        partial.drain(..start);
        while partial.len() > MAX_LINE {
            let piece: Vec<u8> = partial.drain(..MAX_LINE).collect();
            self.stamp(tgid, which, &piece, true);
        }
        if !partial.is_empty() {
            self.outputs.partial.insert((tgid, which), partial);
        }
    }

    /// Process `tgid` is gone: its unfinished lines go out as they are.
    pub(super) fn flush_output_of(&mut self, tgid: libc::pid_t) {
        for which in [OutputFd::Stdout, OutputFd::Stderr] {
            if let Some(partial) = self.outputs.partial.remove(&(tgid, which)) {
                self.stamp(tgid, which, &partial, false);
            }
        }
        self.outputs.namespace_pids.remove(&tgid);
    }

    /// Every unfinished line goes out (the tenant ended).
    pub(super) fn flush_all_output(&mut self) {
        let pending: Vec<_> = self.outputs.partial.keys().map(|(t, _)| *t).collect();
        for tgid in pending {
            self.flush_output_of(tgid);
        }
    }

    fn stamp(&mut self, tgid: libc::pid_t, which: OutputFd, line: &[u8], continued: bool) {
        let Some(diag) = crate::diag::get() else {
            return;
        };
        let connections: Vec<Dpid> = self
            .table
            .held_by(tgid)
            .into_iter()
            .filter_map(|inode| self.table.stream(inode).map(|(s, _)| s.dpid.clone()))
            .collect();
        let tenant = Dpid::tenant(&self.components.tenant);
        let dpid = connections.first().unwrap_or(&tenant);
        let text = String::from_utf8_lossy(line);
        let text = text.strip_suffix('\r').unwrap_or(&text);
        let pid = *self
            .outputs
            .namespace_pids
            .entry(tgid)
            .or_insert_with(|| super::provide::namespace_pid(tgid).unwrap_or(tgid));
        let mut fields = vec![
            ("fd", serde_json::Value::from(which.name())),
            ("pid", serde_json::Value::from(pid)),
        ];
        if connections.len() > 1 {
            let all: Vec<&str> = connections.iter().map(Dpid::as_str).collect();
            fields.push(("connections", serde_json::Value::from(all.join(","))));
        }
        if continued {
            fields.push(("continued", serde_json::Value::from(true)));
        }
        let record = crate::diag::log::record(
            diag.format,
            "INFO",
            dpid.as_str(),
            Kind::Output,
            Some(&self.components.tenant),
            text,
            &fields,
        );
        match which {
            OutputFd::Stderr => diag.log.send(record.into_bytes()),
            OutputFd::Stdout => match diag.stdout.get() {
                Some(out) => out.send(record.into_bytes()),
                None => diag.log.send(record.into_bytes()),
            },
        }
        self.outputs.lines += 1;
    }
}
