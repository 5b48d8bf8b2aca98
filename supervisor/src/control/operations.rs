//! The operations a signed request may name, and their arguments: each checked by name,
//! none unknown, none missing. Only an accepted request reaches this.

use keyring::Accepted;

use super::protocol::Privileged;

/// Largest memory range one `dump-memory` reads.
pub const MAX_DUMP: usize = 1024 * 1024;

/// The operation an accepted request asks for, its arguments checked; unknown or
/// missing arguments are refused by name.
pub fn privileged(a: &Accepted) -> Result<Privileged, String> {
    let target = a.request.target.as_str().to_owned();
    let allowed: &[&str] = match a.request.op.as_str() {
        "dump-spool" | "stop" => &[],
        "dump-memory" => &["pid", "addr", "len"],
        "set-capture" => &["capture", "peer", "for"],
        "set-rules" => &["rules"],
        "level" => &["level", "for"],
        other => return Err(format!("operation {other:?} has no handler here")),
    };
    if let Some((name, _)) = a.args.iter().find(|(n, _)| !allowed.contains(&n.as_str())) {
        return Err(format!(
            "{} takes no argument {name:?} (it takes: {})",
            a.request.op,
            if allowed.is_empty() {
                "none".to_owned()
            } else {
                allowed.join(", ")
            }
        ));
    }
    let need = |name: &str| {
        a.arg(name)
            .map(str::to_owned)
            .ok_or_else(|| format!("{} needs the argument {name:?}", a.request.op))
    };
    let for_ms = || -> Result<Option<u64>, String> {
        a.arg("for")
            .map(|t| crate::profile::duration::parse_duration(t).map(|d| d.as_millis() as u64))
            .transpose()
            .map_err(|m| format!("for: {m}"))
    };
    let tenant_only = |what: &str| {
        if a.request.target.as_str() != a.request.target.tenant() {
            return Err(format!(
                "{what} targets the tenant ({}), not {target}",
                a.request.target.tenant()
            ));
        }
        Ok(())
    };
    Ok(match a.request.op.as_str() {
        "dump-spool" => Privileged::DumpSpool { dpid: target },
        "stop" => {
            tenant_only("stop")?;
            Privileged::Stop
        }
        "dump-memory" => {
            tenant_only("dump-memory")?;
            let pid: i32 = need("pid")?
                .parse()
                .ok()
                .filter(|p| *p > 0)
                .ok_or("pid: a positive process id as the tenant numbers it")?;
            let addr_text = need("addr")?;
            let addr = match addr_text.strip_prefix("0x") {
                Some(hex) => u64::from_str_radix(hex, 16),
                None => addr_text.parse(),
            }
            .map_err(|_| format!("addr {addr_text:?}: an address, 0x-hex or decimal"))?;
            let len: usize = need("len")?
                .parse()
                .ok()
                .filter(|l| (1..=MAX_DUMP).contains(l))
                .ok_or(format!("len: 1 to {MAX_DUMP} bytes"))?;
            Privileged::DumpMemory { pid, addr, len }
        }
        "set-capture" => Privileged::SetCapture {
            dpid: target,
            peer: a.arg("peer").map(str::to_owned),
            capture: need("capture")?,
            for_ms: for_ms()?,
        },
        "set-rules" => Privileged::SetRules {
            dpid: target,
            rules: need("rules")?,
        },
        "level" => Privileged::Level {
            dpid: target,
            level: need("level")?,
            for_ms: for_ms()?,
        },
        other => return Err(format!("operation {other:?} has no handler here")),
    })
}
