//! `env_fds`
//!
//! Prints what the program was started with, then exits 0:
//! 1. `fd N TARGET` for every open descriptor, found with fcntl(F_GETFD) on 0..4096
//!    (nothing is opened first, so the list is exactly what execve left open);
//!    TARGET is readlink(/proc/self/fd/N);
//! 2. `env NAME=VALUE` for every environment variable, sorted;
//! 3. `done`.

use testbins::say;

fn main() {
    let open: Vec<i32> = (0..4096)
        // SAFETY: F_GETFD only reads the descriptor flags of `fd`, open or not.
        .filter(|&fd| unsafe { libc::fcntl(fd, libc::F_GETFD) } != -1)
        .collect();
    for fd in open {
        let target = std::fs::read_link(format!("/proc/self/fd/{fd}"))
            .map(|p| p.display().to_string())
            .unwrap_or_else(|e| format!("<{e}>"));
        say(&format!("fd {fd} {target}"));
    }
    let mut vars: Vec<(String, String)> = std::env::vars_os()
        .map(|(k, v)| {
            (
                k.to_string_lossy().into_owned(),
                v.to_string_lossy().into_owned(),
            )
        })
        .collect();
    vars.sort();
    for (k, v) in vars {
        say(&format!("env {k}={v}"));
    }
    say("done");
}
