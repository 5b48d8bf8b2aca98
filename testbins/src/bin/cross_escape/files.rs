//! File-system attempts: tenant B's home and files, a file outside A's paths, /tmp.

use crate::{blocked, close_fd, escaped};
use std::ffi::{c_int, CStr, CString};
use testbins::{errno, escape_text};

fn cpath(p: &str) -> CString {
    CString::new(p).unwrap_or_else(|_| crate::usage(&format!("path {p:?} contains NUL")))
}

/// open(2); Ok(fd) or Err(errno).
fn open(path: &str, flags: c_int, mode: libc::mode_t) -> Result<c_int, i32> {
    let c = cpath(path);
    // SAFETY: c is a live NUL-terminated path; mode is only used with O_CREAT.
    let fd = unsafe { libc::open(c.as_ptr(), flags | libc::O_CLOEXEC, mode) };
    if fd < 0 {
        Err(errno())
    } else {
        Ok(fd)
    }
}

/// Reads up to 4 KiB from fd and describes the outcome.
fn read_some(fd: c_int) -> String {
    let mut buf = [0u8; 4096];
    // SAFETY: buf is a live, writable buffer of the length passed.
    let n = unsafe { libc::read(fd, buf.as_mut_ptr().cast(), buf.len()) };
    if n < 0 {
        return format!("opened, read failed {}", crate::errname(errno()));
    }
    let got = &buf[..n as usize];
    if got.len() > 64 {
        format!(
            "read {} bytes: \"{}...\"",
            got.len(),
            escape_text(&got[..64])
        )
    } else {
        format!("read {} bytes: \"{}\"", got.len(), escape_text(got))
    }
}

/// unlink(2); whether it worked.
fn unlink(path: &str) -> bool {
    let c = cpath(path);
    // SAFETY: c is a live NUL-terminated path.
    unsafe { libc::unlink(c.as_ptr()) == 0 }
}

fn open_and_read(name: &str, path: &str) {
    match open(path, libc::O_RDONLY, 0) {
        Err(e) => blocked(name, e),
        Ok(fd) => {
            let detail = read_some(fd);
            close_fd(fd);
            escaped(name, &detail);
        }
    }
}

pub fn read_b_file(path: &str) {
    open_and_read("read_b_file", path);
}

pub fn write_b_file(path: &str) {
    match open(path, libc::O_WRONLY | libc::O_APPEND, 0) {
        Err(e) => blocked("write_b_file", e),
        Ok(fd) => {
            close_fd(fd);
            escaped("write_b_file", "opened for writing (nothing written)");
        }
    }
}

fn create(name: &str, path: &str) {
    let flags = libc::O_CREAT | libc::O_WRONLY | libc::O_EXCL;
    match open(path, flags, 0o644) {
        Err(e) => blocked(name, e),
        Ok(fd) => {
            close_fd(fd);
            let gone = if unlink(path) {
                "removed again"
            } else {
                "unlink failed"
            };
            escaped(name, &format!("created {path} ({gone})"));
        }
    }
}

pub fn create_in_b_home(path: &str) {
    create("create_in_b_home", path);
}

pub fn list_b_home(dir: &str) {
    let fd = match open(dir, libc::O_RDONLY | libc::O_DIRECTORY, 0) {
        Err(e) => return blocked("list_b_home", e),
        Ok(fd) => fd,
    };
    // SAFETY: fd is an open directory fd; fdopendir takes it over (closedir closes it).
    let d = unsafe { libc::fdopendir(fd) };
    if d.is_null() {
        close_fd(fd);
        return escaped("list_b_home", "opened directory (fdopendir failed)");
    }
    let mut names = Vec::new();
    loop {
        // SAFETY: d is a live DIR stream owned by this function.
        let ent = unsafe { libc::readdir(d) };
        if ent.is_null() {
            break;
        }
        // SAFETY: readdir returned a valid dirent whose d_name is NUL-terminated
        // and stays valid until the next readdir/closedir on d.
        let n = unsafe { CStr::from_ptr((*ent).d_name.as_ptr()) };
        let n = n.to_string_lossy().into_owned();
        if n != "." && n != ".." {
            names.push(n);
        }
    }
    // SAFETY: d is live and not used after this.
    unsafe { libc::closedir(d) };
    names.sort();
    escaped("list_b_home", &format!("entries=[{}]", names.join(",")));
}

pub fn read_outside_file(path: &str) {
    open_and_read("read_outside_file", path);
}

pub fn write_tmp(path: &str) {
    create("write_tmp", path);
}
