//! The pipes the tenant gets as its stdout/stderr when they are stamped (see
//! `notify::output`): created before the launch, the tenant's ends dup'ed over its
//! standard descriptors in the child, the reading ends kept here and drained by a
//! thread for what bypasses the notified writes (sendfile or splice to stderr, or
//! anything written while the supervisor runs `--continue-all`). Those bytes are
//! stamped with the tenant's DPID only: no notification says which process wrote them.

use std::io::{BufRead, BufReader};
use std::os::fd::{AsRawFd, OwnedFd, RawFd};

use crate::cli::TenantOutput;
use crate::diag::{Dpid, Kind};
use crate::notify::table::OutputFd;

/// The pipes, before and after the launch.
#[derive(Debug)]
pub struct Pipes {
    /// (reading end, tenant's end, which) per stamped output.
    pipes: Vec<(OwnedFd, OwnedFd, OutputFd)>,
}

impl Pipes {
    /// The pipes `choice` asks for (none for `raw`).
    pub fn create(choice: TenantOutput) -> std::io::Result<Pipes> {
        let which: &[OutputFd] = match choice {
            TenantOutput::Raw => &[],
            TenantOutput::Stderr => &[OutputFd::Stderr],
            TenantOutput::All => &[OutputFd::Stdout, OutputFd::Stderr],
        };
        let mut pipes = Vec::new();
        for &w in which {
            let (read, write) = rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC)?;
            pipes.push((read, write, w));
        }
        if which.contains(&OutputFd::Stdout) {
            crate::diag::start_stdout();
        }
        Ok(Pipes { pipes })
    }

    /// What the child dup's over its stdout and stderr.
    pub fn child_ends(&self) -> [Option<RawFd>; 2] {
        let end = |w: OutputFd| {
            self.pipes
                .iter()
                .find(|p| p.2 == w)
                .map(|p| p.1.as_raw_fd())
        };
        [end(OutputFd::Stdout), end(OutputFd::Stderr)]
    }

    /// After the launch: closes the supervisor's copies of the tenant's ends, starts
    /// the drain threads, and returns each pipe's (device, inode) for the loop.
    pub fn started(self, tenant: &str) -> Vec<((u64, u64), OutputFd)> {
        let mut ids = Vec::new();
        for (read, write, which) in self.pipes {
            if let Ok((dev, ino, _)) = crate::sys::file_id(std::os::fd::AsFd::as_fd(&write)) {
                ids.push(((dev, ino), which));
            }
            drop(write);
            let tenant = tenant.to_owned();
            let spawned =
                crate::sys::spawn_without_signals("out-drain", move || drain(read, which, &tenant));
            if let Err(error) = spawned {
                tracing::warn!(target: Kind::Output.target(), %error, "cannot start the output drain thread");
            }
        }
        ids
    }
}

/// Stamps what reaches a pipe directly, line by line, until every writer closed it.
fn drain(read: OwnedFd, which: OutputFd, tenant: &str) {
    let Some(diag) = crate::diag::get() else {
        return;
    };
    let name = match which {
        OutputFd::Stdout => "stdout",
        OutputFd::Stderr => "stderr",
    };
    let dpid = Dpid::tenant(tenant);
    let reader = BufReader::new(std::fs::File::from(read));
    for line in reader.split(b'\n') {
        let Ok(line) = line else { break };
        let text = String::from_utf8_lossy(&line);
        let record = crate::diag::log::record(
            diag.format,
            "INFO",
            dpid.as_str(),
            Kind::Output,
            Some(tenant),
            &text,
            &[
                ("fd", serde_json::Value::from(name)),
                ("via", serde_json::Value::from("pipe")),
            ],
        );
        match (which, diag.stdout.get()) {
            (OutputFd::Stdout, Some(out)) => out.send(record.into_bytes()),
            _ => diag.log.send(record.into_bytes()),
        }
    }
}
