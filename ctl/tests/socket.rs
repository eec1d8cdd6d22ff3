//! The control socket end to end: real Unix sockets in a temp dir, a fake handler.

mod common;

use common::*;
use ctl::client::{Client, ClientError};
use ctl::protocol::*;
use ctl::server::{serve, ServerConfig, ServerError, RESERVED_PRIVILEGED};
use std::io::Write;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::sync::Arc;
use std::time::Instant;

fn every_command() -> Vec<Command> {
    vec![
        Command::Status,
        Command::Stats,
        Command::Latency {
            reset: true,
            hgrm: true,
        },
        Command::Metrics,
        Command::RulesReload,
        Command::BlockAdd {
            prefix: "203.0.113.0/24".into(),
            ttl_s: Some(600),
        },
        Command::BlockDel {
            prefix: "203.0.113.0/24".into(),
        },
        Command::BlockList,
        Command::AllowAdd {
            prefix: "2001:db8::/32".into(),
            ttl_s: None,
        },
        Command::AllowDel {
            prefix: "2001:db8::/32".into(),
        },
        Command::AllowList,
        Command::RatelimitShow,
        Command::RatelimitSet {
            class: "udp_reflection".into(),
            rate: Some(1000),
            burst: Some(2000),
            mode: Some("fixed_window".into()),
            off: false,
        },
        Command::SyncookieStatus,
        Command::SyncookieRotate,
        Command::Ports,
        Command::Offenders {
            limit: Some(3),
            reason: Some("signature".into()),
        },
        Command::Shutdown,
    ]
}

#[test]
fn every_command_round_trips() {
    let fx = start();
    let mut c = Client::connect(fx.path()).unwrap();
    c.set_timeout(Some(BOUND)).unwrap();
    for cmd in every_command() {
        let data = c.call(cmd.clone()).unwrap();
        match &cmd {
            Command::Status => {
                let r: StatusReport = serde_json::from_value(data).unwrap();
                assert_eq!(r.version, "9.9.9-fake");
            }
            Command::Latency { .. } => {
                let r: LatencyReport = serde_json::from_value(data).unwrap();
                assert_eq!(r.hgrm.as_deref(), Some(HGRM));
                assert!(r.reset);
            }
            Command::Metrics => {
                let r: MetricsReport = serde_json::from_value(data).unwrap();
                assert_eq!(r.text, METRICS);
            }
            _ => assert!(!data.is_null()),
        }
    }
    assert_eq!(fx.fake.calls(), every_command());
}

#[test]
fn daemon_errors_and_panics_reach_the_client_and_the_server_survives() {
    let fx = start();
    let mut c = Client::connect(fx.path()).unwrap();
    c.set_timeout(Some(BOUND)).unwrap();
    match c.call(Command::BlockAdd {
        prefix: "not-a-prefix".into(),
        ttl_s: None,
    }) {
        Err(ClientError::Daemon { code, message }) => {
            assert_eq!(code, ErrorCode::Invalid);
            assert!(message.contains("not-a-prefix"));
        }
        other => panic!("{other:?}"),
    }
    match c.call(Command::BlockDel {
        prefix: "panic".into(),
    }) {
        Err(ClientError::Daemon { code, message }) => {
            assert_eq!(code, ErrorCode::Internal);
            assert!(message.contains("fake handler panic"));
        }
        other => panic!("{other:?}"),
    }
    // Same connection and a new one both still work.
    c.call(Command::Status).unwrap();
    Client::connect(fx.path())
        .unwrap()
        .call(Command::Status)
        .unwrap();
}

#[test]
fn bad_requests_get_typed_errors_with_their_id() {
    let fx = start();
    let mut raw = Raw::connect(&fx.path());
    let r = raw.roundtrip("this is not json");
    assert_eq!(code(&r), ErrorCode::BadRequest);
    assert_eq!(r.id, None);
    let r = raw.roundtrip(r#"{"v":1,"id":11,"cmd":"frobnicate"}"#);
    assert_eq!((code(&r), r.id), (ErrorCode::BadRequest, Some(11)));
    assert!(r.error.unwrap().message.contains("frobnicate"));
    let r =
        raw.roundtrip(r#"{"v":1,"id":12,"cmd":"block_add","args":{"prefix":"x","colour":"red"}}"#);
    assert_eq!((code(&r), r.id), (ErrorCode::BadRequest, Some(12)));
    assert!(r.error.unwrap().message.contains("colour"));
    let r = raw.roundtrip(r#"{"v":2,"id":13,"cmd":"status"}"#);
    assert_eq!((code(&r), r.id), (ErrorCode::UnsupportedVersion, Some(13)));
    // Blank lines are ignored: the next reply belongs to the next real request.
    raw.send(b"\n   \r\n");
    let r = raw.roundtrip(r#"{"v":1,"id":14,"cmd":"status"}"#);
    assert!(r.ok);
    assert_eq!(r.id, Some(14));
    // None of the bad ones reached the handler.
    assert_eq!(fx.fake.calls(), vec![Command::Status]);
}

#[test]
fn final_line_without_newline_is_answered() {
    let fx = start();
    let mut raw = Raw::connect(&fx.path());
    raw.send(br#"{"v":1,"id":5,"cmd":"status"}"#);
    raw.w.shutdown(std::net::Shutdown::Write).unwrap();
    let r = raw.recv().expect("reply");
    assert!(r.ok);
    assert_eq!(r.id, Some(5));
    assert!(raw.closed());
}

#[test]
fn overlong_line_is_too_large_and_closed() {
    let fx = start();
    let mut raw = Raw::connect(&fx.path());
    let mut line = br#"{"v":1,"id":1,"cmd":"block_add","args":{"prefix":""#.to_vec();
    line.resize(MAX_REQUEST_BYTES + 100, b'a');
    // The server may close while we are still writing; that is the point.
    let _ = raw.w.write_all(&line);
    let r = raw.recv().expect("a too_large reply before the close");
    assert_eq!(code(&r), ErrorCode::TooLarge);
    assert_eq!(r.id, None);
    assert!(raw.closed());
    assert!(fx.fake.calls().is_empty());
    // A line of exactly the cap is still read (and rejected only for its content).
    let mut raw = Raw::connect(&fx.path());
    let mut line = br#"{"v":1,"id":2,"cmd":"status","pad":""#.to_vec();
    let tail = br#""}"#;
    line.resize(MAX_REQUEST_BYTES - tail.len(), b' ');
    line.extend_from_slice(tail);
    assert_eq!(line.len(), MAX_REQUEST_BYTES);
    line.push(b'\n');
    raw.send(&line);
    let r = raw.recv().unwrap();
    assert_eq!((code(&r), r.id), (ErrorCode::BadRequest, Some(2)));
}

#[test]
fn stalled_client_does_not_block_others() {
    let fx = start();
    let mut stalled = Raw::connect(&fx.path());
    stalled.send(br#"{"v":1,"id":1,"cmd":"sta"#);
    let mut c = Client::connect(fx.path()).unwrap();
    c.set_timeout(Some(BOUND)).unwrap();
    c.call(Command::Status).unwrap();
    // The stalled one finishes its line later and is answered normally.
    stalled.send(b"tus\"}\n");
    let r = stalled.recv().unwrap();
    assert_eq!(r.id, Some(1));
    assert!(r.ok);
}

#[test]
fn flood_of_pipelined_requests_answered_in_order() {
    let fx = start();
    let mut raw = Raw::connect(&fx.path());
    let w = raw.w.try_clone().unwrap();
    // Write from another thread so neither side's buffer fills while the other waits.
    let writer = std::thread::spawn(move || {
        let mut w = std::io::BufWriter::new(w);
        for i in 0..1000u64 {
            let cmd = if i % 2 == 0 { "status" } else { "block_list" };
            writeln!(w, r#"{{"v":1,"id":{i},"cmd":"{cmd}"}}"#).unwrap();
        }
        w.flush().unwrap();
    });
    for i in 0..1000u64 {
        let r = raw.recv().expect("reply");
        assert!(r.ok);
        assert_eq!(r.id, Some(i));
    }
    writer.join().unwrap();
    assert_eq!(fx.fake.calls().len(), 1000);
}

#[test]
fn socket_mode_defaults_to_0600() {
    let fx = start();
    let m = std::fs::metadata(fx.path()).unwrap();
    assert_eq!(m.permissions().mode() & 0o7777, 0o600);
    // No staging leftovers next to the socket.
    let names: Vec<_> = std::fs::read_dir(fx.dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names, vec![std::ffi::OsString::from("scrubd.sock")]);
}

#[test]
fn socket_mode_0660_with_group() {
    let fx = start_with(Fake::default(), |c| {
        c.mode = 0o660;
        c.group = Some("root".into());
    });
    let m = std::fs::metadata(fx.path()).unwrap();
    assert_eq!(m.permissions().mode() & 0o7777, 0o660);
    assert_eq!(m.gid(), 0);
}

#[test]
fn unknown_group_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(&dir.path().join("s.sock"));
    cfg.group = Some("no-such-group-for-scrubd".into());
    match serve(cfg, Arc::new(Fake::default())) {
        Err(ServerError::UnknownGroup(g)) => assert_eq!(g, "no-such-group-for-scrubd"),
        other => panic!("{:?}", other.err()),
    }
    assert!(!dir.path().join("s.sock").exists());
}

#[test]
fn stale_socket_is_replaced() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("scrubd.sock");
    drop(UnixListener::bind(&path).unwrap());
    assert!(path.exists());
    let server = serve(config(&path), Arc::new(Fake::default())).expect("replaces stale");
    Client::connect(&path)
        .unwrap()
        .call(Command::Status)
        .unwrap();
    server.shutdown();
}

#[test]
fn live_socket_is_not_stolen() {
    let fx = start();
    match serve(config(&fx.path()), Arc::new(Fake::default())) {
        Err(e @ ServerError::InUse(_)) => {
            assert!(e.to_string().contains("another scrubd is listening on"))
        }
        other => panic!("{:?}", other.err()),
    }
    // The first server still answers.
    Client::connect(fx.path())
        .unwrap()
        .call(Command::Status)
        .unwrap();
}

#[test]
fn regular_file_and_directory_are_refused_and_kept() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("scrubd.sock");
    std::fs::write(&path, b"precious").unwrap();
    match serve(config(&path), Arc::new(Fake::default())) {
        Err(ServerError::NotASocket { what, .. }) => assert_eq!(what, "a regular file"),
        other => panic!("{:?}", other.err()),
    }
    assert_eq!(std::fs::read(&path).unwrap(), b"precious");
    let d = dir.path().join("adir");
    std::fs::create_dir(&d).unwrap();
    assert!(matches!(
        serve(config(&d), Arc::new(Fake::default())),
        Err(ServerError::NotASocket { .. })
    ));
    assert!(d.is_dir());
}

#[test]
fn missing_parent_directory_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("nope/scrubd.sock");
    match serve(config(&path), Arc::new(Fake::default())) {
        Err(e @ ServerError::NoParent(_)) => assert!(e.to_string().contains("does not exist")),
        other => panic!("{:?}", other.err()),
    }
}

#[test]
fn shutdown_unlinks_and_ends_clients() {
    let mut fx = start();
    let mut idle = Raw::connect(&fx.path());
    assert!(idle.roundtrip(r#"{"v":1,"cmd":"status"}"#).ok);
    fx.server.take().unwrap().shutdown();
    assert!(!fx.path().exists());
    assert!(idle.closed(), "client thread was told to stop");
    assert!(UnixStream::connect(fx.path()).is_err());
}

#[test]
fn drop_cleans_up() {
    let mut fx = start();
    drop(fx.server.take());
    assert!(!fx.path().exists());
}

#[test]
fn shutdown_leaves_a_successors_socket_alone() {
    let mut fx = start();
    let server = fx.server.take().unwrap();
    // Someone replaced the socket file meanwhile (e.g. a new daemon after ours was wedged).
    std::fs::remove_file(fx.path()).unwrap();
    let other = UnixListener::bind(fx.path()).unwrap();
    server.shutdown();
    assert!(fx.path().exists());
    drop(other);
}

/// This process is root (or at least the daemon's own uid), so it is privileged: past
/// `max_clients` it gets the reserved slot, and past that the client idle longest is closed
/// for it, with a line saying why.
#[test]
fn past_max_clients_a_privileged_peer_gets_the_reserve_then_room() {
    let fx = start_with(Fake::default(), |c| c.max_clients = 1);
    let server = fx.server.as_ref().unwrap();
    let mut first = Raw::connect(&fx.path());
    assert!(first.roundtrip(r#"{"v":1,"cmd":"status"}"#).ok);
    // First is back to waiting before second starts, so it has waited longest.
    assert!(eventually(|| server.waiting_clients() == 1));
    let mut second = Raw::connect(&fx.path());
    assert!(second.roundtrip(r#"{"v":1,"cmd":"status"}"#).ok);
    assert!(eventually(|| server.waiting_clients() == 2));
    assert_eq!(server.active_clients(), 1 + RESERVED_PRIVILEGED);
    let mut third = Raw::connect(&fx.path());
    assert!(third.roundtrip(r#"{"v":1,"cmd":"status"}"#).ok);
    let r = first.recv().expect("a line saying why");
    assert_eq!(code(&r), ErrorCode::Unavailable);
    assert!(r.error.unwrap().message.contains("make room"));
    assert!(first.closed());
    assert_eq!(server.active_clients(), 1 + RESERVED_PRIVILEGED);
    // The one that waited less is untouched.
    assert!(second.roundtrip(r#"{"v":1,"cmd":"status"}"#).ok);
    drop((second, third));
    assert!(eventually(|| server.active_clients() == 0));
}

/// The issue's case: 16 idle clients (the documented `max_clients`) hold every ordinary slot.
/// A 17th unprivileged peer (allowed by uid) is refused with a reason; root still gets in and
/// its `status` and `shutdown` succeed.
#[test]
fn sixteen_idle_clients_do_not_lock_out_root() {
    let fx = start_with(Fake::default(), |c| c.allowed_uids = vec![65534]);
    assert_eq!(ServerConfig::default().max_clients, 16, "README says 16");
    let server = fx.server.as_ref().unwrap();
    let idle: Vec<Raw> = (0..16).map(|_| Raw::connect(&fx.path())).collect();
    assert!(eventually(|| server.active_clients() == 16));

    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } == 0 {
        std::fs::set_permissions(fx.dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        std::fs::set_permissions(fx.path(), std::fs::Permissions::from_mode(0o666)).unwrap();
        let reply = connect_as_nobody(&fx.path(), b"{\"v\":1,\"id\":1,\"cmd\":\"status\"}\n");
        let r: Response = serde_json::from_slice(reply.split(|&b| b == b'\n').next().unwrap())
            .unwrap_or_else(|e| panic!("{e}: {:?}", String::from_utf8_lossy(&reply)));
        assert_eq!(code(&r), ErrorCode::Unavailable);
        let msg = r.error.unwrap().message;
        assert!(msg.contains("too many control clients (max 16)"), "{msg}");
    } else {
        eprintln!("skipped the unprivileged 17th peer: needs root to run it as another uid");
    }

    let mut root = Client::connect(fx.path()).unwrap();
    root.set_timeout(Some(BOUND)).unwrap();
    let status: StatusReport = serde_json::from_value(root.call(Command::Status).unwrap()).unwrap();
    assert_eq!(status.version, "9.9.9-fake");
    root.call(Command::Shutdown).unwrap();
    assert_eq!(server.active_clients(), 16 + RESERVED_PRIVILEGED);
    assert_eq!(
        fx.fake.calls(),
        vec![Command::Status, Command::Shutdown],
        "the refused peer reached nothing"
    );
    drop(idle);
}

/// A peer sending its request a byte at a time does not keep its slot past `idle_timeout`:
/// the deadline covers the whole line, not each read.
#[test]
fn trickled_request_is_cut_at_the_idle_deadline() {
    let fx = start_with(Fake::default(), |c| {
        c.idle_timeout = std::time::Duration::from_secs(1)
    });
    let server = fx.server.as_ref().unwrap();
    let mut raw = Raw::connect(&fx.path());
    let mut w = raw.w.try_clone().unwrap();
    let start = Instant::now();
    let trickle = std::thread::spawn(move || {
        // 20 s of bytes, one every 100 ms: a per-read timeout of 1 s would never fire.
        for _ in 0..200 {
            if w.write_all(b" ").is_err() {
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
    });
    assert!(raw.closed());
    let took = start.elapsed();
    assert!(eventually(|| server.active_clients() == 0));
    // Generous: the point is that it ends at all while bytes keep coming.
    assert!(took < std::time::Duration::from_secs(5), "{took:?}");
    trickle.join().unwrap();
    assert!(fx.fake.calls().is_empty());
}

#[test]
fn idle_client_is_dropped() {
    let fx = start_with(Fake::default(), |c| {
        c.idle_timeout = std::time::Duration::from_millis(100)
    });
    let mut idle = Raw::connect(&fx.path());
    assert!(idle.closed());
}

#[test]
fn client_that_never_reads_is_dropped() {
    let fake = Fake {
        metrics_len: 4 << 20,
        ..Default::default()
    };
    let fx = start_with(fake, |c| {
        c.write_timeout = std::time::Duration::from_millis(100)
    });
    let raw = Raw::connect(&fx.path());
    let mut w = raw.w.try_clone().unwrap();
    w.write_all(b"{\"v\":1,\"cmd\":\"metrics\"}\n").unwrap();
    let server = fx.server.as_ref().unwrap();
    // Once the handler ran, the thread is stuck writing 4 MiB nobody reads, until it gives up.
    assert!(eventually(|| fx.fake.calls().len() == 1));
    assert!(eventually(|| server.active_clients() == 0));
    drop(raw);
}

/// The README's "not reading its replies for 10 s": with the default config, a client that
/// asks for a reply far bigger than the socket buffers and never reads is cut off 10 s (±1 s)
/// after the reply started, not after 10 s without progress per `write(2)` (which was 10-20 s).
#[test]
fn stalled_reader_is_cut_off_at_the_documented_write_timeout() {
    const DOCUMENTED: std::time::Duration = std::time::Duration::from_secs(10);
    assert_eq!(ServerConfig::default().write_timeout, DOCUMENTED);
    // Far over a Unix socket's send buffer (about 200 KiB), yet quick to build and encode, so
    // the clock below starts within a few milliseconds of the reply's first write.
    let fake = Fake {
        metrics_len: 2 << 20,
        ..Default::default()
    };
    let fx = start_with(fake, |_| {});
    let server = fx.server.as_ref().unwrap();
    let raw = Raw::connect(&fx.path());
    let mut w = raw.w.try_clone().unwrap();
    w.write_all(b"{\"v\":1,\"cmd\":\"metrics\"}\n").unwrap();
    assert!(eventually(|| fx.fake.calls().len() == 1));
    let start = Instant::now();
    assert!(eventually(|| server.active_clients() == 0));
    let took = start.elapsed();
    eprintln!("stalled reader cut off after {took:?}");
    let one = std::time::Duration::from_secs(1);
    assert!(
        took + one >= DOCUMENTED && took <= DOCUMENTED + one,
        "cut off after {took:?}, documented {DOCUMENTED:?}"
    );
    drop(raw);
}

/// A peer running as nobody is refused by its credentials even when file permissions let it
/// connect (here: the socket chmod-ed 0666 by mistake).
#[test]
fn peer_credentials_are_checked() {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("skipped: needs root to run a peer as another uid");
        return;
    }
    let fx = start();
    std::fs::set_permissions(fx.dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::set_permissions(fx.path(), std::fs::Permissions::from_mode(0o666)).unwrap();
    let reply = connect_as_nobody(&fx.path(), b"{\"v\":1,\"id\":1,\"cmd\":\"status\"}\n");
    let r: Response = serde_json::from_slice(reply.split(|&b| b == b'\n').next().unwrap())
        .unwrap_or_else(|e| panic!("{e}: {:?}", String::from_utf8_lossy(&reply)));
    assert_eq!(code(&r), ErrorCode::Unavailable);
    assert!(r.error.unwrap().message.contains("uid 65534"));
    assert!(fx.fake.calls().is_empty());
    // Root (this process) is still served.
    Client::connect(fx.path())
        .unwrap()
        .call(Command::Status)
        .unwrap();
}

/// Fork a child that drops to uid/gid 65534, connects, sends `req` and returns what it read.
/// Everything the child needs is prepared before the fork: it only makes system calls.
fn connect_as_nobody(path: &std::path::Path, req: &[u8]) -> Vec<u8> {
    use std::os::unix::ffi::OsStrExt;
    // SAFETY: sockaddr_un is plain data; zero is a valid starting value.
    let mut addr: libc::sockaddr_un = unsafe { std::mem::zeroed() };
    addr.sun_family = libc::AF_UNIX as libc::sa_family_t;
    let bytes = path.as_os_str().as_bytes();
    assert!(bytes.len() < addr.sun_path.len());
    for (d, s) in addr.sun_path.iter_mut().zip(bytes) {
        *d = *s as libc::c_char;
    }
    let tv = libc::timeval {
        tv_sec: BOUND.as_secs() as libc::time_t,
        tv_usec: 0,
    };
    let mut pipe = [0i32; 2];
    // SAFETY: `pipe` has room for two descriptors.
    assert_eq!(unsafe { libc::pipe(pipe.as_mut_ptr()) }, 0);
    // SAFETY: the child runs only async-signal-safe system calls on pre-built data, then _exit.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0);
    if pid == 0 {
        unsafe {
            libc::close(pipe[0]);
            if libc::setgroups(0, std::ptr::null()) != 0
                || libc::setgid(65534) != 0
                || libc::setuid(65534) != 0
            {
                libc::_exit(10);
            }
            let fd = libc::socket(libc::AF_UNIX, libc::SOCK_STREAM, 0);
            if fd < 0 {
                libc::_exit(11);
            }
            libc::setsockopt(
                fd,
                libc::SOL_SOCKET,
                libc::SO_RCVTIMEO,
                (&tv as *const libc::timeval).cast(),
                std::mem::size_of::<libc::timeval>() as libc::socklen_t,
            );
            if libc::connect(
                fd,
                (&addr as *const libc::sockaddr_un).cast(),
                std::mem::size_of::<libc::sockaddr_un>() as libc::socklen_t,
            ) != 0
            {
                libc::_exit(12);
            }
            libc::write(fd, req.as_ptr().cast(), req.len());
            let mut buf = [0u8; 4096];
            loop {
                let n = libc::read(fd, buf.as_mut_ptr().cast(), buf.len());
                if n <= 0 {
                    break;
                }
                libc::write(pipe[1], buf.as_ptr().cast(), n as usize);
            }
            libc::_exit(0);
        }
    }
    // SAFETY: closing our copy of the write end so reading sees EOF when the child exits.
    unsafe { libc::close(pipe[1]) };
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        // SAFETY: `buf` is valid for writes of its length.
        let n = unsafe { libc::read(pipe[0], buf.as_mut_ptr().cast(), buf.len()) };
        if n <= 0 {
            break;
        }
        out.extend_from_slice(&buf[..n as usize]);
    }
    let mut status = 0;
    // SAFETY: `pid` is our child; `status` is valid for writes.
    unsafe {
        libc::close(pipe[0]);
        libc::waitpid(pid, &mut status, 0);
    }
    assert!(
        libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
        "child failed with status {status:#x}"
    );
    out
}
