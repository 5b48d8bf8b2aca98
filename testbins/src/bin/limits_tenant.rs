//! A confined tenant that runs into its `[limits]` (tests/limits.rs). Every result is
//! one stdout line the test waits for; errnos are printed as number and name.
//!
//! ```text
//! limits_tenant probe          its cgroup and a child's, then "ready", then waits
//! limits_tenant fork N         starts up to N children until one fails: "fork failed errno=…"
//! limits_tenant alloc MIB      allocates and touches MIB MiB, 1 MiB at a time
//! limits_tenant fill           writes $HOME/fill until a write fails: "fill stopped errno=…"
//! limits_tenant wait-write     waits for $HOME/go, then writes 1 MiB to $HOME/after
//! limits_tenant dirs N         makes N directories $HOME/d<i>, each with a file, then waits
//! ```

use std::io::Write;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

fn say(line: &str) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}

fn errno(e: &std::io::Error) -> String {
    let code = e.raw_os_error().unwrap_or(0);
    let name = match code {
        libc::EAGAIN => "EAGAIN",
        libc::ENOMEM => "ENOMEM",
        libc::ENOSPC => "ENOSPC",
        libc::EDQUOT => "EDQUOT",
        libc::EACCES => "EACCES",
        _ => "other",
    };
    format!("errno={code} {name} ({e})")
}

fn home() -> PathBuf {
    PathBuf::from(std::env::var_os("HOME").expect("HOME is set for a confined tenant"))
}

fn own_cgroup() -> String {
    std::fs::read_to_string("/proc/self/cgroup")
        .unwrap_or_else(|e| format!("unreadable: {e}"))
        .lines()
        .collect::<Vec<_>>()
        .join(";")
}

fn me() -> Command {
    Command::new(std::env::current_exe().expect("own path"))
}

fn linger() -> ! {
    std::thread::sleep(Duration::from_secs(300));
    std::process::exit(0)
}

fn number(arg: Option<&String>, what: &str) -> u64 {
    arg.and_then(|a| a.parse().ok())
        .unwrap_or_else(|| panic!("{what}: a number"))
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    match args.get(1).map(String::as_str) {
        // The first thing the command does after exec: where it runs.
        Some("probe") => {
            say(&format!("cgroup {}", own_cgroup()));
            let out = me().arg("cgroup").output().expect("start a child");
            say(&format!(
                "child cgroup {}",
                String::from_utf8_lossy(&out.stdout).trim()
            ));
            say("ready");
            linger();
        }
        Some("cgroup") => say(&own_cgroup()),
        Some("pause") => linger(),
        Some("fork") => {
            let n = number(args.get(2), "fork N");
            let mut children: Vec<Child> = Vec::new();
            let mut failure = None;
            for _ in 0..n {
                match me().arg("pause").stdin(Stdio::null()).spawn() {
                    Ok(child) => children.push(child),
                    Err(e) => {
                        failure = Some(e);
                        break;
                    }
                }
            }
            let started = children.len();
            for child in &mut children {
                let _ = child.kill();
                let _ = child.wait();
            }
            match failure {
                Some(e) => say(&format!("fork failed {} after={started}", errno(&e))),
                None => say(&format!("forked all {started}")),
            }
        }
        Some("alloc") => {
            let mib = number(args.get(2), "alloc MIB");
            let mut held: Vec<Vec<u8>> = Vec::new();
            for i in 1..=mib {
                // vec![1; n] writes every byte: the pages are really used.
                held.push(vec![1u8; 1 << 20]);
                if i % 4 == 0 {
                    say(&format!("allocated {i} MiB"));
                }
            }
            say(&format!("allocated all {mib} MiB"));
        }
        Some("fill") => {
            let path = home().join("fill");
            let mut file = std::fs::File::create(&path).expect("create $HOME/fill");
            let chunk = vec![0x5au8; 64 << 10];
            let mut written: u64 = 0;
            let error = loop {
                match file.write(&chunk) {
                    Ok(0) => break std::io::Error::from_raw_os_error(libc::ENOSPC),
                    Ok(n) => written += n as u64,
                    Err(e) => break e,
                }
            };
            // A last check that nothing more fits, even a small new file.
            let small = std::fs::write(home().join("one-more"), b"x").err();
            say(&format!(
                "fill stopped {} after={written} small_write={}",
                errno(&error),
                small.as_ref().map_or("ok".to_string(), errno)
            ));
            linger();
        }
        Some("wait-write") => {
            let go = home().join("go");
            let deadline = Instant::now() + Duration::from_secs(120);
            say("waiting");
            while !go.exists() {
                assert!(
                    Instant::now() < deadline,
                    "no {} within 120 s",
                    go.display()
                );
                std::thread::sleep(Duration::from_millis(20));
            }
            match std::fs::write(home().join("after"), vec![7u8; 1 << 20]) {
                Ok(()) => say("wrote after ok"),
                Err(e) => say(&format!("write after failed {}", errno(&e))),
            }
        }
        Some("dirs") => {
            let n = number(args.get(2), "dirs N");
            for i in 0..n {
                let dir = home().join(format!("d{i}"));
                std::fs::create_dir(&dir).expect("mkdir");
                std::fs::write(dir.join("f"), b"x").expect("write");
            }
            say(&format!("made {n} dirs"));
            // Later files, in directories that exist already (watched or not).
            let go = home().join("go");
            let deadline = Instant::now() + Duration::from_secs(120);
            while !go.exists() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(20));
            }
            for i in 0..n {
                std::fs::write(home().join(format!("d{i}/g")), b"y").expect("write");
            }
            say("wrote later files");
            linger();
        }
        other => {
            eprintln!("limits_tenant: unknown command {other:?}");
            std::process::exit(2);
        }
    }
}
