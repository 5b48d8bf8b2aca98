//! The control socket's server: accepts connections on `<state>/ctl/<tenant>.sock`,
//! checks who is calling, and answers [`protocol`] requests through a [`Backend`].
//!
//! Every connection gets its own thread (at most [`MAX_CONNECTIONS`] at once) and
//! deadlines on both directions, so a stalled, slow or malformed client costs one slot
//! and at most a few seconds, never the notification loop or another client.

use std::fs;
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::fs::{DirBuilderExt, FileTypeExt, MetadataExt, PermissionsExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::panic::{self, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use rustix::event::{poll, PollFd, PollFlags};

use super::protocol::{self, Failure, Op, Response, MAX_REQUEST, MAX_RESPONSE};
use super::signed::Keyring;
use super::Backend;
use crate::diag::Kind;

/// Why this process runs without a keyring, told to each signed request.
static NO_KEYRING: std::sync::OnceLock<String> = std::sync::OnceLock::new();

/// Records why signed requests are not served (said to every requester).
pub fn set_no_keyring_reason(reason: String) {
    let _ = NO_KEYRING.set(reason);
}

/// Connections served at once; the next one is told `busy` and closed.
pub const MAX_CONNECTIONS: usize = 16;
/// How long a connection may sit idle, and how long one message may take to arrive or
/// to be written, once started.
pub const IO_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a refused peer's one-line answer may take before we give up on it.
const REFUSAL_TIMEOUT: Duration = Duration::from_secs(1);

/// A running control socket. Dropping it stops accepting and removes the socket file;
/// connections already being served finish on their own threads.
#[derive(Debug)]
pub struct Server {
    path: PathBuf,
    /// Device and inode of the socket we bound: Drop removes the file only while it is
    /// still ours (a successor may have replaced it).
    identity: (u64, u64),
    /// The write end of a pipe the accept thread polls: dropping it wakes the thread.
    stop: Option<OwnedFd>,
    accept: Option<JoinHandle<()>>,
}

impl Server {
    /// Binds `path` (its directory created 0700, the socket 0600) and starts the
    /// "ctl-accept" thread. Fails with [`io::ErrorKind::AddrInUse`] when another
    /// supervisor already answers on `path`; a stale socket left by a dead one is
    /// replaced.
    #[cfg(test)]
    pub fn start(path: &Path, backend: Arc<dyn Backend>) -> io::Result<Server> {
        Server::start_with_keyring(path, backend, None)
    }

    /// [`Server::start`], with the keyring that answers `node` and `signed` requests
    /// (without one they are refused as not offered).
    pub fn start_with_keyring(
        path: &Path,
        backend: Arc<dyn Backend>,
        keyring: Option<Arc<Keyring>>,
    ) -> io::Result<Server> {
        let dir = path
            .parent()
            .filter(|d| !d.as_os_str().is_empty())
            .ok_or_else(|| {
                io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!("{}: no directory", path.display()),
                )
            })?;
        prepare_dir(dir)?;
        claim(path)?;
        // The directory is 0700 and root's, so the moment between bind and chmod (the
        // socket at the umask's mode) exposes nothing.
        let listener = UnixListener::bind(path).map_err(|e| context(e, "cannot bind", path))?;
        fs::set_permissions(path, fs::Permissions::from_mode(0o600))
            .map_err(|e| context(e, "cannot chmod", path))?;
        let meta = fs::symlink_metadata(path)?;
        // Nonblocking so a connection that vanishes between poll and accept cannot
        // block the thread (accepted streams do not inherit it).
        listener.set_nonblocking(true)?;
        let ours = namespace_of(Path::new("/proc/self/ns/pid"))?;
        let (wake, stop) = rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC)?;
        // Its connection threads inherit its mask: none of them takes a signal.
        let accept = crate::sys::spawn_without_signals("ctl-accept", move || {
            accept_loop(listener, wake, Services { backend, keyring }, ours)
        })?;
        Ok(Server {
            path: path.to_owned(),
            identity: (meta.dev(), meta.ino()),
            stop: Some(stop),
            accept: Some(accept),
        })
    }

    /// The socket's path.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(accept) = self.accept.take() {
            let _ = accept.join();
        }
        if let Ok(meta) = fs::symlink_metadata(&self.path) {
            if (meta.dev(), meta.ino()) == self.identity {
                let _ = fs::remove_file(&self.path);
            }
        }
    }
}

fn context(error: io::Error, what: &str, path: &Path) -> io::Error {
    io::Error::new(error.kind(), format!("{what} {}: {error}", path.display()))
}

/// Creates `dir` 0700, or makes an existing one 0700 after checking it is a real
/// directory of root's: the socket's protection is the directory's.
fn prepare_dir(dir: &Path) -> io::Result<()> {
    match fs::DirBuilder::new().mode(0o700).create(dir) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(context(e, "cannot create the control directory", dir)),
    }
    let meta = fs::symlink_metadata(dir)?;
    let refuse = |why: &str| {
        Err(io::Error::new(
            io::ErrorKind::PermissionDenied,
            format!("refusing the control directory {}: {why}", dir.display()),
        ))
    };
    if meta.file_type().is_symlink() {
        return refuse("it is a symlink");
    }
    if !meta.is_dir() {
        return refuse("it is not a directory");
    }
    if meta.uid() != 0 {
        return refuse(&format!("it is owned by uid {}, not root", meta.uid()));
    }
    if meta.mode() & 0o7777 != 0o700 {
        fs::set_permissions(dir, fs::Permissions::from_mode(0o700))
            .map_err(|e| context(e, "cannot chmod", dir))?;
    }
    Ok(())
}

/// Makes `path` free to bind: absent, or a socket nobody answers on (then removed).
fn claim(path: &Path) -> io::Result<()> {
    let meta = match fs::symlink_metadata(path) {
        Ok(meta) => meta,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(context(e, "cannot inspect", path)),
    };
    if !meta.file_type().is_socket() {
        return Err(io::Error::new(
            io::ErrorKind::AlreadyExists,
            format!(
                "{} exists and is not a socket; not replacing it",
                path.display()
            ),
        ));
    }
    match UnixStream::connect(path) {
        Ok(_) => Err(io::Error::new(
            io::ErrorKind::AddrInUse,
            format!(
                "another supervisor serves this tenant: it answers on {}",
                path.display()
            ),
        )),
        Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => {
            fs::remove_file(path).map_err(|e| context(e, "cannot remove the stale socket", path))
        }
        Err(e) => Err(context(
            e,
            "cannot tell whether a supervisor answers on",
            path,
        )),
    }
}

/// A PID namespace's identity: the device and inode of its `/proc/…/ns/pid` file.
fn namespace_of(file: &Path) -> io::Result<(u64, u64)> {
    let meta = fs::metadata(file)?;
    Ok((meta.dev(), meta.ino()))
}

/// Whether process `pid` (as our namespace numbers it) lives in PID namespace `ours`.
/// Tenants run in a child namespace, so this is what keeps a root tenant out.
fn in_pid_namespace(pid: i32, ours: (u64, u64)) -> io::Result<bool> {
    Ok(namespace_of(Path::new(&format!("/proc/{pid}/ns/pid")))? == ours)
}

/// The peer's credentials. Through libc rather than rustix's `socket_peercred`: the
/// kernel reports pid 0 for a peer whose namespace ours cannot see, which rustix would
/// store in a non-zero `Pid` (undefined behaviour); here it is a plain integer.
fn peer_credentials(stream: &UnixStream) -> io::Result<libc::ucred> {
    let mut cred = libc::ucred {
        pid: 0,
        uid: 0,
        gid: 0,
    };
    let mut len = std::mem::size_of::<libc::ucred>() as libc::socklen_t;
    // SAFETY: `cred` and `len` are valid for writes and `len` states cred's size.
    let rc = unsafe {
        libc::getsockopt(
            stream.as_fd().as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_PEERCRED,
            (&mut cred as *mut libc::ucred).cast(),
            &mut len,
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(cred)
}

/// Why a peer may not talk to us, or nothing.
fn refusal(stream: &UnixStream, ours: (u64, u64)) -> Option<(i32, u32, String)> {
    let cred = match peer_credentials(stream) {
        Ok(cred) => cred,
        Err(e) => return Some((0, u32::MAX, format!("cannot read its credentials: {e}"))),
    };
    let why = if cred.uid != 0 {
        "only root may use the control socket".to_owned()
    } else if cred.pid <= 0 {
        "it runs in a PID namespace this supervisor cannot see".to_owned()
    } else {
        match in_pid_namespace(cred.pid, ours) {
            Ok(true) => return None,
            Ok(false) => "it runs in another PID namespace (a tenant's?)".to_owned(),
            Err(e) => format!("cannot read its PID namespace: {e}"),
        }
    };
    Some((cred.pid, cred.uid, why))
}

/// Counts a connection in [`MAX_CONNECTIONS`] until dropped (also when its thread
/// panics or cannot be spawned).
struct Slot(Arc<AtomicUsize>);

impl Slot {
    fn take(active: &Arc<AtomicUsize>) -> Option<Slot> {
        let taken = active.fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
            (n < MAX_CONNECTIONS).then_some(n + 1)
        });
        taken.ok().map(|_| Slot(active.clone()))
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// What answers a connection's requests.
#[derive(Clone)]
struct Services {
    backend: Arc<dyn Backend>,
    keyring: Option<Arc<Keyring>>,
}

fn accept_loop(listener: UnixListener, wake: OwnedFd, services: Services, ours: (u64, u64)) {
    let active = Arc::new(AtomicUsize::new(0));
    loop {
        let mut fds = [
            PollFd::new(&listener, PollFlags::IN),
            PollFd::new(&wake, PollFlags::IN),
        ];
        match poll(&mut fds, None) {
            Ok(_) => {}
            Err(rustix::io::Errno::INTR) => continue,
            Err(error) => {
                tracing::warn!(target: Kind::Control.target(), %error, "control socket: poll failed");
                thread::sleep(Duration::from_millis(100));
                continue;
            }
        }
        if !fds[1].revents().is_empty() {
            return; // the Server was dropped
        }
        let stream = match listener.accept() {
            Ok((stream, _)) => stream,
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted
                ) =>
            {
                continue
            }
            Err(error) => {
                // EMFILE and the like: back off rather than spin.
                tracing::warn!(target: Kind::Control.target(), %error, "control socket: accept failed");
                thread::sleep(Duration::from_millis(100));
                continue;
            }
        };
        if let Some((peer_pid, peer_uid, reason)) = refusal(&stream, ours) {
            tracing::warn!(target: Kind::Control.target(), peer_pid, peer_uid, %reason, "control connection refused");
            let message = format!("refused peer uid {peer_uid} pid {peer_pid}: {reason}");
            answer_and_close(stream, Failure::new("forbidden", message));
            continue;
        }
        let Some(slot) = Slot::take(&active) else {
            let message =
                format!("{MAX_CONNECTIONS} control connections are being served; try again");
            answer_and_close(stream, Failure::new("busy", message));
            continue;
        };
        let services = services.clone();
        let spawned = thread::Builder::new()
            .name("ctl-conn".into())
            .spawn(move || {
                let _slot = slot;
                serve_connection(stream, &services);
            });
        if let Err(error) = spawned {
            tracing::warn!(target: Kind::Control.target(), %error, "control socket: cannot start a connection thread");
        }
    }
}

/// One best-effort answer to a peer we will not serve.
fn answer_and_close(mut stream: UnixStream, failure: Failure) {
    let _ = stream.set_nonblocking(false);
    let _ = stream.set_write_timeout(Some(REFUSAL_TIMEOUT));
    let _ = write_response(&mut stream, &Response::fail(failure));
}

/// Writes one length-prefixed response; one too large for a client to accept becomes
/// an `internal` failure instead.
fn write_response(stream: &mut UnixStream, response: &Response) -> io::Result<()> {
    let mut json = serde_json::to_vec(response).map_err(io::Error::other)?;
    if json.len() > MAX_RESPONSE as usize {
        let message = format!(
            "the response is {} bytes, over the limit of {MAX_RESPONSE}",
            json.len()
        );
        json = serde_json::to_vec(&Response::fail(Failure::new("internal", message)))
            .map_err(io::Error::other)?;
    }
    let mut frame = Vec::with_capacity(4 + json.len());
    frame.extend_from_slice(&(json.len() as u32).to_be_bytes());
    frame.extend_from_slice(&json);
    stream.write_all(&frame)
}

/// Fills `buf` from `got` on, before `deadline`. On failure: how much had arrived.
fn read_until(
    stream: &mut UnixStream,
    buf: &mut [u8],
    mut got: usize,
    deadline: Instant,
) -> Result<(), (usize, io::Error)> {
    while got < buf.len() {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err((got, io::ErrorKind::TimedOut.into()));
        }
        stream.set_read_timeout(Some(left)).map_err(|e| (got, e))?;
        match stream.read(&mut buf[got..]) {
            Ok(0) => return Err((got, io::ErrorKind::UnexpectedEof.into())),
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err((got, e)),
        }
    }
    Ok(())
}

/// Answers a message that stopped arriving (best effort: the client may be gone).
fn incomplete(stream: &mut UnixStream, got: usize, of: usize, what: &str, error: &io::Error) {
    let failure = match error.kind() {
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => Failure::new(
            "timeout",
            format!(
                "request incomplete after {} s: got {got} of {of} bytes{what}",
                IO_TIMEOUT.as_secs()
            ),
        ),
        io::ErrorKind::UnexpectedEof => Failure::new(
            "bad_request",
            format!("the client stopped sending mid-request: got {got} of {of} bytes{what}"),
        ),
        _ => return,
    };
    let _ = write_response(stream, &Response::fail(failure));
}

/// Serves requests on one connection until it ends, idles for [`IO_TIMEOUT`], or
/// breaks the framing.
fn serve_connection(mut stream: UnixStream, services: &Services) {
    if stream.set_nonblocking(false).is_err() || stream.set_write_timeout(Some(IO_TIMEOUT)).is_err()
    {
        return;
    }
    loop {
        // Idle wait for a message's first byte; then the whole message has IO_TIMEOUT.
        let mut prefix = [0u8; 4];
        if stream.set_read_timeout(Some(IO_TIMEOUT)).is_err() {
            return;
        }
        let first = loop {
            match stream.read(&mut prefix) {
                Ok(0) => return, // clean end
                Ok(n) => break n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => return, // idle too long, or broken: nothing half-sent to answer
            }
        };
        let deadline = Instant::now() + IO_TIMEOUT;
        if let Err((got, e)) = read_until(&mut stream, &mut prefix, first, deadline) {
            return incomplete(&mut stream, got, 4, " of the length prefix", &e);
        }
        let len = u32::from_be_bytes(prefix);
        if len > MAX_REQUEST {
            let message =
                format!("a request of {len} bytes exceeds the limit of {MAX_REQUEST} bytes");
            let _ = write_response(
                &mut stream,
                &Response::fail(Failure::new("too_large", message)),
            );
            return; // the body is never read, so the framing is lost
        }
        let mut body = vec![0u8; len as usize];
        if let Err((got, e)) = read_until(&mut stream, &mut body, 0, deadline) {
            return incomplete(&mut stream, got, len as usize, "", &e);
        }
        let response = match protocol::parse_request(&body) {
            Ok(request) => dispatch(services, request.op),
            Err(failure) => Response::fail(failure), // framing intact: keep serving
        };
        if write_response(&mut stream, &response).is_err() {
            return;
        }
    }
}

/// Calls the backend (or, for `node` and `signed`, the keyring); a panic there is the
/// caller's `internal` failure, not ours.
fn dispatch(services: &Services, op: Op) -> Response {
    let backend = &*services.backend;
    let keyring = services.keyring.as_deref();
    let serve = || match (op, keyring) {
        (Op::Node, Some(k)) => k.node(),
        // The keyring's own provider answers here: it reads files and takes the node's
        // nonce lock, which must never hold the loop (and so the tenant).
        (op, Some(k)) if k.provides(&op) => k.serve_provider(op),
        (Op::Signed { request, signature }, Some(k)) => k.serve(&request, &signature, backend),
        (Op::Node | Op::Signed { .. }, None) => Err(Failure::new(
            "not_offered",
            format!(
                "this supervisor has no keyring: signed requests are not served ({})",
                NO_KEYRING.get().map_or("not configured", String::as_str)
            ),
        )),
        (op, _) => backend.serve(op),
    };
    match panic::catch_unwind(AssertUnwindSafe(serve)) {
        Ok(Ok(result)) => Response::ok(result),
        Ok(Err(failure)) => Response::fail(failure),
        Err(payload) => {
            let what = payload
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| payload.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "unknown panic".into());
            Response::fail(Failure::new(
                "internal",
                format!("the request's handler panicked: {what}"),
            ))
        }
    }
}

#[cfg(test)]
mod tests;
