//! The server against real sockets in a temporary directory (the tests run as root in
//! the supervisor's PID namespace, so the peer check admits them).

use std::io::{Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use super::*;
use crate::control::{client, Op, Request};

/// Answers every op with the op itself; `state` of "t/panic" panics.
struct Echo;

impl Backend for Echo {
    fn serve(&self, op: Op) -> Result<Value, Failure> {
        if op
            == (Op::State {
                dpid: "t/panic".into(),
            })
        {
            panic!("boom");
        }
        Ok(serde_json::to_value(&op).unwrap())
    }
}

fn start() -> (tempfile::TempDir, Server) {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("ctl/t.sock"), Arc::new(Echo)).unwrap();
    (dir, server)
}

fn send(stream: &mut UnixStream, body: &[u8]) {
    let mut frame = (body.len() as u32).to_be_bytes().to_vec();
    frame.extend_from_slice(body);
    stream.write_all(&frame).unwrap();
}

fn receive(stream: &mut UnixStream) -> Response {
    let mut prefix = [0u8; 4];
    stream.read_exact(&mut prefix).unwrap();
    let mut body = vec![0u8; u32::from_be_bytes(prefix) as usize];
    stream.read_exact(&mut body).unwrap();
    serde_json::from_slice(&body).unwrap()
}

fn code(response: &Response) -> &str {
    response.error.as_ref().map_or("(ok)", |f| f.code.as_str())
}

fn connect(server: &Server) -> UnixStream {
    let stream = UnixStream::connect(server.path()).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    stream
}

#[test]
fn requests_are_answered_and_bad_ones_do_not_end_the_connection() {
    let (dir, server) = start();
    let mode = |p: &Path| fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&dir.path().join("ctl")), 0o700);
    assert_eq!(mode(server.path()), 0o600);
    let mut s = connect(&server);
    send(&mut s, br#"{"v":1,"op":"state","dpid":"t/s/c1"}"#);
    let r = receive(&mut s);
    assert!(r.ok);
    assert_eq!(r.result, Some(json!({"op": "state", "dpid": "t/s/c1"})));
    for (body, expected) in [
        (&br#"{"v":1,"op":"#[..], "bad_request"),
        (br#"{"v":1,"op":"frobnicate"}"#, "unknown_op"),
        (br#"{"v":2,"op":"list"}"#, "bad_version"),
        (
            br#"{"v":1,"op":"dump-spool","dpid":"t"}"#,
            "requires_signed_request",
        ),
        (br#"{"v":1,"op":"state","dpid":"t/panic"}"#, "internal"),
        (b"", "bad_request"),
    ] {
        send(&mut s, body);
        assert_eq!(
            code(&receive(&mut s)),
            expected,
            "{}",
            String::from_utf8_lossy(body)
        );
    }
    send(&mut s, br#"{"v":1,"op":"list"}"#);
    assert_eq!(receive(&mut s).result, Some(json!({"op": "list"})));
    // And through the client's call.
    let request = Request {
        v: 1,
        op: Op::Metrics,
    };
    let r = client::call_within(server.path(), &request, client::TIMEOUT).unwrap();
    assert_eq!(r.result, Some(json!({"op": "metrics"})));
}

#[test]
fn an_oversized_request_is_refused_before_its_body_and_the_connection_closed() {
    let (_dir, server) = start();
    let mut s = connect(&server);
    s.write_all(&(100u32 << 20).to_be_bytes()).unwrap();
    let r = receive(&mut s);
    assert_eq!(code(&r), "too_large");
    let message = &r.error.unwrap().message;
    assert!(
        message.contains("104857600") && message.contains("65536"),
        "{message}"
    );
    assert_eq!(s.read(&mut [0u8; 1]).unwrap_or(0), 0, "closed");
}

#[test]
fn stalled_clients_time_out_without_holding_up_others() {
    let (_dir, server) = start();
    let t0 = Instant::now();
    let mut prefix_staller = connect(&server);
    prefix_staller.write_all(&[0, 0]).unwrap();
    let mut body_staller = connect(&server);
    body_staller.write_all(&20u32.to_be_bytes()).unwrap();
    body_staller.write_all(&[b' '; 10]).unwrap();
    thread::sleep(Duration::from_millis(300));

    let mut other = connect(&server);
    send(&mut other, br#"{"v":1,"op":"list"}"#);
    assert!(receive(&mut other).ok);
    for staller in [&prefix_staller, &body_staller] {
        staller.set_nonblocking(true).unwrap();
        let pending = (&*staller).read(&mut [0u8; 1]).unwrap_err();
        assert_eq!(pending.kind(), io::ErrorKind::WouldBlock, "still waiting");
        staller.set_nonblocking(false).unwrap();
    }
    assert!(t0.elapsed() < Duration::from_secs(2));

    for (staller, expected) in [
        (&mut prefix_staller, "got 2 of 4 bytes"),
        (&mut body_staller, "got 10 of 20 bytes"),
    ] {
        let r = receive(staller);
        assert_eq!(code(&r), "timeout");
        let message = r.error.unwrap().message;
        assert!(message.contains(expected), "{message}");
    }
    let elapsed = t0.elapsed();
    assert!(
        elapsed > Duration::from_millis(4500) && elapsed < Duration::from_millis(6500),
        "{elapsed:?}"
    );
}

#[test]
fn connections_beyond_the_limit_are_told_busy() {
    let (_dir, server) = start();
    let held: Vec<UnixStream> = (0..MAX_CONNECTIONS).map(|_| connect(&server)).collect();
    let mut extra = connect(&server);
    assert_eq!(code(&receive(&mut extra)), "busy");
    drop(held);
    // The slots free up as the held connections' threads see EOF.
    let deadline = Instant::now() + Duration::from_secs(3);
    loop {
        let mut s = connect(&server);
        send(&mut s, br#"{"v":1,"op":"list"}"#);
        if receive(&mut s).ok {
            break;
        }
        assert!(Instant::now() < deadline, "slots never freed");
        thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn one_socket_one_server_and_stale_sockets_are_replaced() {
    let (dir, server) = start();
    let error = Server::start(server.path(), Arc::new(Echo)).unwrap_err();
    assert_eq!(error.kind(), io::ErrorKind::AddrInUse);
    assert!(
        error
            .to_string()
            .contains(&*server.path().to_string_lossy()),
        "{error}"
    );
    let path = server.path().to_owned();
    drop(server);
    assert!(!path.exists(), "removed on drop");

    drop(UnixListener::bind(&path).unwrap()); // a dead supervisor's socket
    assert!(path.exists());
    let server = Server::start(&path, Arc::new(Echo)).unwrap();
    let r = client::call_within(&path, &Request { v: 1, op: Op::List }, client::TIMEOUT).unwrap();
    assert!(r.ok);

    let file = dir.path().join("ctl/plain.sock");
    fs::write(&file, "").unwrap();
    assert!(
        Server::start(&file, Arc::new(Echo)).is_err(),
        "not a socket: left alone"
    );
    drop(server);
}

#[test]
fn the_control_directory_is_made_private_and_a_symlink_refused() {
    let dir = tempfile::tempdir().unwrap();
    let ctl = dir.path().join("ctl");
    fs::create_dir(&ctl).unwrap();
    fs::set_permissions(&ctl, fs::Permissions::from_mode(0o755)).unwrap();
    prepare_dir(&ctl).unwrap();
    assert_eq!(
        fs::metadata(&ctl).unwrap().permissions().mode() & 0o7777,
        0o700
    );
    let link = dir.path().join("link");
    std::os::unix::fs::symlink(&ctl, &link).unwrap();
    let error = prepare_dir(&link).unwrap_err();
    assert!(error.to_string().contains("symlink"), "{error}");
}

#[test]
fn pid_namespaces_are_compared() {
    let ours = namespace_of(Path::new("/proc/self/ns/pid")).unwrap();
    assert!(in_pid_namespace(std::process::id() as i32, ours).unwrap());
    // A process in a child PID namespace, as a tenant is.
    let Ok(mut unshare) = std::process::Command::new("unshare")
        .args(["--pid", "--fork", "sleep", "5"])
        .stderr(std::process::Stdio::null())
        .spawn()
    else {
        eprintln!("skipped the child-namespace half: no unshare");
        return;
    };
    let children = format!("/proc/{}/task/{}/children", unshare.id(), unshare.id());
    let deadline = Instant::now() + Duration::from_secs(3);
    let child = loop {
        if let Ok(Some(status)) = unshare.try_wait() {
            eprintln!("skipped the child-namespace half: unshare failed ({status})");
            return;
        }
        let text = fs::read_to_string(&children).unwrap_or_default();
        if let Some(pid) = text.split_whitespace().next() {
            break pid.parse::<i32>().unwrap();
        }
        assert!(Instant::now() < deadline, "unshare started no child");
        thread::sleep(Duration::from_millis(10));
    };
    let other = in_pid_namespace(child, ours);
    if let Some(pid) = rustix::process::Pid::from_raw(child) {
        let _ = rustix::process::kill_process(pid, rustix::process::Signal::KILL);
    }
    let _ = unshare.wait();
    assert!(
        !other.unwrap(),
        "a child PID namespace is another namespace"
    );
}
