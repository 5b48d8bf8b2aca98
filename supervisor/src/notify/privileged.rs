//! The privileged operations, run by the loop only for a signed request the keyring
//! accepted (`control::signed`): their results reveal tenant data or change what the
//! supervisor does, and leave this process sealed to the requester.

#![forbid(unsafe_code)]

use base64::Engine as _;
use serde_json::{json, Value};
use transforms::Direction;

use super::Supervisor;
use crate::control::{Failure, Privileged};
use crate::diag::{Dpid, Kind};

impl Supervisor {
    /// Runs one accepted privileged operation.
    pub(super) fn serve_privileged(&mut self, op: Privileged) -> Result<Value, Failure> {
        match op {
            Privileged::DumpSpool { dpid } => self.dump_spool(&dpid),
            Privileged::DumpMemory { pid, addr, len } => self.dump_memory(pid, addr, len),
            Privileged::SetCapture {
                dpid,
                peer,
                capture,
                for_ms,
            } => self.set_capture(&dpid, peer.as_deref(), &capture, for_ms),
            Privileged::SetRules { dpid, rules } => self.set_rules(&dpid, &rules),
            Privileged::Level {
                dpid,
                level,
                for_ms,
            } => self.set_level(&dpid, &level, for_ms),
            Privileged::Stop => self.stop_tenant(),
        }
    }

    /// A live connection's spooled (incomplete) messages and ready queues, byte for
    /// byte, with its recent messages and rule state.
    fn dump_spool(&mut self, dpid: &str) -> Result<Value, Failure> {
        let unknown = || Failure::new("unknown_dpid", format!("no live connection {dpid} here"));
        let (parsed, kind) = Dpid::parse(dpid).map_err(|m| Failure::new("bad_request", m))?;
        if kind != Kind::Connection {
            return Err(Failure::new(
                "bad_request",
                format!("{dpid} is a {kind}, not a connection"),
            ));
        }
        let inode = self.connection(&parsed).ok_or_else(unknown)?;
        let (stream, _) = self.table.stream(inode).ok_or_else(unknown)?;
        let b64 = |b: &[u8]| base64::engine::general_purpose::STANDARD.encode(b);
        let half = |h: &crate::stream::Half| {
            json!({
                "spooled_base64": b64(h.spool_bytes()),
                "ready_base64": b64(h.ready.as_slice()),
                "taken": h.taken, "emitted": h.emitted, "delivered": h.delivered,
                "dropped": h.dropped, "messages": h.messages, "ended": h.ended,
            })
        };
        let recent: Vec<Value> = stream
            .recent
            .list()
            .iter()
            .map(|s| {
                let direction = match s.direction {
                    Direction::Inbound => "inbound",
                    Direction::Outbound => "outbound",
                };
                json!({ "direction": direction, "name": s.name, "len": s.len })
            })
            .collect();
        let rules: serde_json::Map<String, Value> = stream
            .rule_state()
            .into_iter()
            .map(|(k, v)| (k.to_owned(), Value::String(v)))
            .collect();
        Ok(json!({
            "dpid": dpid,
            "stream": stream.name,
            "inbound": half(&stream.inbound),
            "outbound": half(&stream.outbound),
            "recent_messages": recent,
            "rules": rules,
        }))
    }

    /// `len` bytes at `addr` in tenant process `pid` (as the tenant numbers it). Only
    /// processes of this tenant are read; a process that exits or is replaced during
    /// the read is reported, not read as another.
    fn dump_memory(&mut self, pid: i32, addr: u64, len: usize) -> Result<Value, Failure> {
        let host = self
            .table
            .tenants
            .process_ids()
            .into_iter()
            .find(|&h| super::provide::namespace_pid(h) == Some(pid))
            .ok_or_else(|| {
                Failure::new(
                    "unknown_process",
                    format!("process {pid} is not one of this tenant's (as its PID namespace numbers them)"),
                )
            })?;
        let started = start_time(host);
        let mut buf = vec![0u8; len];
        let remote = [libc::iovec {
            iov_base: addr as usize as *mut libc::c_void,
            iov_len: len,
        }];
        let read = crate::sys::process_vm_read(host, &mut buf, &remote);
        if started.is_none() || start_time(host) != started {
            return Err(Failure::new(
                "unknown_process",
                format!("process {pid} exited while it was read"),
            ));
        }
        let n = read.map_err(|e| {
            Failure::new(
                "memory",
                format!("cannot read {len} bytes at {addr:#x} of process {pid}: {e}"),
            )
        })?;
        buf.truncate(n);
        Ok(json!({
            "pid": pid,
            "addr": format!("{addr:#x}"),
            "requested": len,
            "read": n,
            "bytes_base64": base64::engine::general_purpose::STANDARD.encode(&buf),
        }))
    }

    /// Replaces a stream's rules, whole or not at all. New connections get the new
    /// rules at once; each live one from its next message on: stateless rules are
    /// swapped, a PostgreSQL session adopts the new rules at that boundary (asking the
    /// catalog again, judging its prepared statements again) or ends there with the
    /// reason when it cannot prove it is safe (see `transforms::pg::session::swap`).
    /// A connection that cannot take them at all is ended at its next message
    /// boundary: what is ready is delivered, nothing more is read under the old rules.
    fn set_rules(&mut self, dpid: &str, text: &str) -> Result<Value, Failure> {
        let (parsed, kind) = Dpid::parse(dpid).map_err(|m| Failure::new("bad_request", m))?;
        let index = self
            .components
            .streams
            .iter()
            .position(|s| s.dpid == parsed)
            .filter(|_| kind == Kind::Stream)
            .ok_or_else(|| Failure::new("unknown_dpid", format!("no stream {dpid} here")))?;
        let config = self.profile.streams[index]
            .with_rules_text(text)
            .map_err(|m| Failure::new("bad_rules", format!("{dpid}: {m}; nothing was changed")))?;
        let count = config.rule_count();
        self.profile.streams[index] = config;
        let component = &mut self.components.streams[index];
        component.rules = (0..count).map(|i| Dpid::rule(&parsed, i)).collect();
        component.hits = vec![0; count];
        let config = &self.profile.streams[index];
        let (mut adopted, mut ended, mut inodes) = (Vec::new(), Vec::new(), Vec::new());
        for (&inode, t) in self.table.sockets.iter_mut() {
            if let super::table::SocketKind::Stream(s) = &mut t.kind {
                if s.config != index || s.closing {
                    continue;
                }
                match s.replace_rules(config) {
                    Ok(()) => adopted.push(s.dpid.to_string()),
                    Err(why) => {
                        tracing::warn!(target: Kind::Stream.target(), dpid = %s.dpid, "the connection cannot take the new rules ({why}): it ends at its next message boundary");
                        s.closing = true;
                        ended.push(s.dpid.to_string());
                        inodes.push(inode);
                    }
                }
            }
        }
        for inode in inodes {
            // Delivers what is ready, then shuts the socket down both ways: the peer
            // and the tenant each see the end, and parked calls wake.
            let _ = super::io::flush_outbound(self, inode);
            self.arm(inode);
            self.retire_if_drained(inode);
        }
        tracing::warn!(target: Kind::Stream.target(), dpid, rules = count, adopted = adopted.len(), ended = ended.len(), "rules replaced (signed request): live connections take them at their next message boundary");
        Ok(json!({
            "stream": dpid,
            "rules": count,
            "connections_adopted": adopted,
            "connections_ended": ended,
        }))
    }

    /// Stops the tenant as `kill -TERM` of the supervisor would: the init stub relays
    /// SIGTERM to it, and the supervisor exits when it has.
    fn stop_tenant(&mut self) -> Result<Value, Failure> {
        let stub = rustix::process::Pid::from_raw(self.launched.stub_pid)
            .ok_or_else(|| Failure::new("internal", "the tenant's init stub is gone"))?;
        rustix::process::kill_process(stub, rustix::process::Signal::TERM)
            .map_err(|e| Failure::new("internal", format!("cannot signal the tenant: {e}")))?;
        tracing::warn!(target: Kind::Tenant.target(), "stopping the tenant (signed request): SIGTERM sent");
        Ok(json!({ "signal": "SIGTERM", "tenant": self.profile.tenant }))
    }
}

/// A process's start time (`/proc/PID/stat` field 22): with the pid, its identity.
fn start_time(pid: libc::pid_t) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after = &stat[stat.rfind(')')? + 2..];
    after.split(' ').nth(19)?.parse().ok()
}
