//! scrubd's telemetry commands, end to end through DPDK's telemetry socket.
//!
//! EAL initialises once per process, so the whole scenario is one test: EAL with the options
//! scrubd's tests use (`--no-huge --no-shconf`, which keep telemetry on), commands registered,
//! then a client of our own on the SEQPACKET socket and, when installed, `dpdk-telemetry.py`.

use dataplane::telemetry::{self, TelemetryValue as V, MAX_DICT_ENTRIES, TRUNCATED_KEY};
use dataplane::{Eal, Mempool, Port, PortSetup};
use serde_json::{json, Value};
use std::ffi::CString;
use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// A telemetry client speaking DPDK's protocol: one request per datagram, one JSON reply each.
struct Client {
    fd: libc::c_int,
}

impl Client {
    fn connect(path: &Path) -> (Client, Value) {
        // SAFETY: plain socket(2) call; the result is checked.
        let fd = unsafe { libc::socket(libc::AF_UNIX, libc::SOCK_SEQPACKET, 0) };
        assert!(fd >= 0, "socket: {}", std::io::Error::last_os_error());
        let client = Client { fd };
        // SAFETY: sockaddr_un is plain old data; all-zero is a valid value.
        let mut addr: libc::sockaddr_un = unsafe { std::mem::zeroed() };
        addr.sun_family = libc::AF_UNIX as libc::sa_family_t;
        let cpath = CString::new(path.as_os_str().as_encoded_bytes()).unwrap();
        let bytes = cpath.as_bytes_with_nul();
        assert!(bytes.len() <= addr.sun_path.len(), "socket path too long");
        for (d, s) in addr.sun_path.iter_mut().zip(bytes) {
            *d = *s as libc::c_char;
        }
        // SAFETY: addr is a fully initialised sockaddr_un and its size is passed with it.
        let rc = unsafe {
            libc::connect(
                fd,
                (&addr as *const libc::sockaddr_un).cast(),
                std::mem::size_of::<libc::sockaddr_un>() as libc::socklen_t,
            )
        };
        assert_eq!(
            rc,
            0,
            "connect {}: {}",
            path.display(),
            std::io::Error::last_os_error()
        );
        let hello = client.recv();
        (client, hello)
    }

    fn recv(&self) -> Value {
        let mut buf = vec![0u8; 64 * 1024];
        // SAFETY: buf is valid for buf.len() bytes of writes.
        let n = unsafe { libc::recv(self.fd, buf.as_mut_ptr().cast(), buf.len(), 0) };
        assert!(n > 0, "recv: {}", std::io::Error::last_os_error());
        buf.truncate(n as usize);
        serde_json::from_slice(&buf).unwrap_or_else(|e| {
            panic!("reply is not JSON ({e}): {}", String::from_utf8_lossy(&buf))
        })
    }

    fn request(&self, cmd: &str) -> Value {
        // SAFETY: cmd is valid for cmd.len() bytes of reads.
        let n = unsafe { libc::send(self.fd, cmd.as_ptr().cast(), cmd.len(), 0) };
        assert_eq!(
            n,
            cmd.len() as isize,
            "send: {}",
            std::io::Error::last_os_error()
        );
        let mut reply = self.recv();
        reply
            .get_mut(cmd.split(',').next().unwrap())
            .map(Value::take)
            .unwrap_or_else(|| panic!("reply to {cmd} lacks its key: {reply}"))
    }
}

impl Drop for Client {
    fn drop(&mut self) {
        // SAFETY: fd is a socket this client owns.
        unsafe { libc::close(self.fd) };
    }
}

fn test_value(params: Option<&str>, calls: u64) -> V {
    V::dict([
        ("version", V::from("1.2.3")),
        ("rx", V::U64(12_345_678_901_234)),
        ("delta", V::I64(-42)),
        ("big_negative", V::I64(-(1 << 40))),
        ("bad-key.x", V::U64(1)),
        ("quote", V::from("say \"hi\" \\ ok")),
        ("calls", V::U64(calls)),
        ("echo", V::from(params.unwrap_or("none"))),
        (
            "ports",
            V::dict([
                (
                    "outside",
                    V::dict([
                        ("rx", V::U64(1)),
                        ("drops", V::dict([("acl", V::U64(2)), ("syn", V::U64(3))])),
                    ]),
                ),
                ("inside", V::dict([("rx", V::U64(4))])),
            ]),
        ),
        ("queues", V::List(vec![V::U64(1), V::U64(2), V::U64(3)])),
        ("offsets", V::List(vec![V::I64(-1), V::I64(5)])),
        (
            "workers",
            V::List(vec![
                V::dict([("lcore", V::U64(1))]),
                V::dict([("lcore", V::U64(2))]),
            ]),
        ),
    ])
}

fn expected_test_reply(echo: &str, calls: u64) -> Value {
    json!({
        "version": "1.2.3",
        "rx": 12_345_678_901_234u64,
        "delta": -42,
        "big_negative": (-(1i64 << 40)).to_string(),
        "bad_key_x": 1,
        "quote": "say \"hi\" \\ ok",
        "calls": calls,
        "echo": echo,
        "ports": {
            "outside": {"rx": 1, "drops": {"acl": 2, "syn": 3}},
            "inside": {"rx": 4}
        },
        "queues": [1, 2, 3],
        "offsets": [-1, 5],
        "workers": {"0": {"lcore": 1}, "1": {"lcore": 2}}
    })
}

#[test]
fn telemetry_commands_over_the_dpdk_socket() {
    let prefix = format!("scrubd-tel-{}", std::process::id());
    let args: Vec<String> = [
        "-l",
        "0",
        "--no-huge",
        "-m",
        "128",
        "--no-pci",
        "--no-shconf",
        &format!("--file-prefix={prefix}"),
        "--vdev=net_null0",
        "--vdev=net_null1",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let eal = Eal::init("telemetry-test", &args).expect("EAL init");
    // A started port, so DPDK's own /ethdev/stats has something to show beside ours.
    let pool = Mempool::new(&eal, "tel_pool", 1023, 32, -1).expect("mempool");
    let setup = PortSetup {
        rx_queues: 1,
        tx_queues: 1,
        rx_desc: 256,
        tx_desc: 256,
        promiscuous: false,
        mtu: None,
    };
    let port = Port::start(&eal, "net_null0", &pool, &setup).expect("port");

    let calls = Arc::new(AtomicU64::new(0));
    let seen = Arc::clone(&calls);
    telemetry::register(
        &eal,
        "/scrubd/test",
        "Test values. Parameters: any text, echoed",
        Arc::new(move |p| test_value(p, seen.fetch_add(1, Ordering::SeqCst) + 1)),
    )
    .expect("register /scrubd/test");
    telemetry::register(
        &eal,
        "/scrubd/big",
        "300 entries",
        Arc::new(|_| V::Dict((0..300u64).map(|i| (format!("k{i}"), V::U64(i))).collect())),
    )
    .expect("register /scrubd/big");
    telemetry::register(
        &eal,
        "/scrubd/panics",
        "always panics",
        Arc::new(|_| panic!("provider panic on purpose")),
    )
    .expect("register /scrubd/panics");
    telemetry::register(
        &eal,
        "/scrubd/list",
        "a list of dicts",
        Arc::new(|_| {
            V::List(vec![
                V::dict([("id", V::U64(0)), ("name", V::from("outside"))]),
                V::dict([("id", V::U64(1)), ("name", V::from("inside"))]),
            ])
        }),
    )
    .expect("register /scrubd/list");
    telemetry::register(
        &eal,
        "/scrubd/scalar",
        "a bare number",
        Arc::new(|_| V::U64(7)),
    )
    .expect("register /scrubd/scalar");

    // What the API refuses, with DPDK unchanged afterwards.
    let noop: telemetry::Provider = Arc::new(|_| V::U64(0));
    for (cmd, help) in [
        ("/scrubd/test", "again"),
        ("scrubd/x", "no slash"),
        ("/scrubd/a,b", "comma"),
        ("/scrubd/x", &"h".repeat(200)),
    ] {
        let err = telemetry::register(&eal, cmd, help, Arc::clone(&noop))
            .expect_err(&format!("{cmd} must be refused"));
        assert!(err.to_string().contains(cmd), "{err}");
    }

    let path = telemetry::socket_path(&eal);
    assert_eq!(
        path,
        Path::new("/var/run/dpdk")
            .join(&prefix)
            .join("dpdk_telemetry.v2"),
        "socket path (this test runs as root)"
    );
    let (client, hello) = Client::connect(&path);
    assert_eq!(
        hello["pid"].as_u64(),
        Some(u64::from(std::process::id())),
        "hello: {hello}"
    );

    assert_eq!(
        client.request("/scrubd/test"),
        expected_test_reply("none", 1)
    );
    assert_eq!(
        client.request("/scrubd/test,port=2"),
        expected_test_reply("port=2", 2)
    );

    let list = client.request("/");
    let list = list.as_array().expect("/ lists commands");
    for cmd in ["/scrubd/test", "/scrubd/big", "/ethdev/stats", "/help"] {
        assert!(list.iter().any(|c| c == cmd), "{cmd} missing from {list:?}");
    }
    assert_eq!(
        client.request("/help,/scrubd/test"),
        json!({"/scrubd/test": "Test values. Parameters: any text, echoed"})
    );

    let big = client.request("/scrubd/big");
    let big = big.as_object().expect("dict");
    assert_eq!(big.len(), MAX_DICT_ENTRIES);
    assert_eq!(big["k0"], 0);
    assert_eq!(big["k254"], 254);
    assert!(!big.contains_key("k255"));
    assert_eq!(big[TRUNCATED_KEY], 300 - 255);

    assert_eq!(client.request("/scrubd/panics"), Value::Null);
    // The telemetry thread survived the panic.
    assert_eq!(client.request("/scrubd/scalar"), json!("7"));
    assert_eq!(
        client.request("/scrubd/list"),
        json!({"0": {"id": 0, "name": "outside"}, "1": {"id": 1, "name": "inside"}})
    );

    let stats = client.request(&format!("/ethdev/stats,{}", port.id()));
    assert!(stats.get("ipackets").is_some(), "DPDK's stats: {stats}");
    drop(client);

    // The operator's tool, when installed.
    let script = Path::new("/usr/bin/dpdk-telemetry.py");
    if !script.exists() {
        println!(
            "SKIPPED dpdk-telemetry.py check: {} not installed",
            script.display()
        );
    } else {
        let mut child = Command::new("python3")
            .arg(script)
            .args(["-f", &prefix])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run dpdk-telemetry.py");
        child
            .stdin
            .take()
            .unwrap()
            .write_all(b"/scrubd/test,from-script\n/ethdev/list\n")
            .unwrap();
        let out = child.wait_with_output().unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "dpdk-telemetry.py failed: {stdout}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let replies: Vec<Value> = stdout
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect();
        let ours = replies
            .iter()
            .find_map(|r| r.get("/scrubd/test"))
            .unwrap_or_else(|| panic!("no /scrubd/test reply in: {stdout}"));
        assert_eq!(*ours, expected_test_reply("from-script", 3));
        assert!(
            replies.iter().any(|r| r.get("/ethdev/list").is_some()),
            "no /ethdev/list reply in: {stdout}"
        );
    }

    // The same EAL options leave packet capture impossible, and pdump says so.
    match dataplane::pdump::init(&eal) {
        Err(dataplane::DpdkError::PdumpUnavailable(why)) => {
            assert!(why.contains("--no-huge"), "{why}")
        }
        Err(other) => panic!("unexpected pdump error: {other}"),
        Ok(_) => panic!("pdump::init must refuse an EAL without hugepages"),
    }

    drop(port);
    drop(pool);
    drop(eal);
    let _ = std::fs::remove_dir_all(Path::new("/var/run/dpdk").join(&prefix));
}
