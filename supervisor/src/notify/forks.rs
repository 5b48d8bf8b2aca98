//! clone (new processes only: the filter lets threads through), fork and vfork. The
//! call itself is the kernel's; the supervisor only notes that the forking thread's
//! tracked descriptors are about to be inherited, so the child is known with them once
//! the call returns (see `table::tenants`).

#![forbid(unsafe_code)]

use super::request::Request;
use super::{continue_untracked, Supervisor, Verdict};
use crate::diag::Kind;

/// clone / fork / vfork.
pub(super) fn create(sv: &mut Supervisor, request: &Request, tgid: libc::pid_t) -> Verdict {
    let flags = if request.nr() == libc::SYS_clone {
        request.arg(0)
    } else {
        0
    };
    tracing::debug!(target: Kind::Supervisor.target(), tid = request.tid(), flags, "process creation");
    if flags & libc::CLONE_THREAD as u64 == 0 {
        let shares_files = flags & libc::CLONE_FILES as u64 != 0;
        sv.table.fork_started(request.tid(), tgid, shares_files);
        sv.arm_ticker();
    }
    continue_untracked()
}
