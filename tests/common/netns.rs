//! Real Linux hosts around scrubd for `tests/realstack.rs`: network namespaces joined by veth
//! pairs, scrubd on `net_af_packet` in the middle, background processes and tcpdump captures.
//!
//! ```text
//!  client 10.77.0.10 ─┐
//!                     ├─ br0 (seg) ── tobox ═ o0 [box: scrubd] i0 ═ eth0  server 10.77.0.80
//!  attacker 10.77.0.66┘                outside          inside
//! ```
//!
//! Every name carries the test process id and the scenario's tag, so parallel test processes do
//! not clash; [`Topology`] deletes its namespaces (and with them every veth) on drop, also when
//! the scenario panics, after killing the processes still running in them.

use super::Scenario;
use serde_json::Value;
use std::io::Read;
use std::net::Ipv4Addr;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::time::{Duration, Instant};

pub const CLIENT_IP: &str = "10.77.0.10";
pub const ATTACKER_IP: &str = "10.77.0.66";
pub const SERVER_IP: &str = "10.77.0.80";
pub const CLIENT_MAC: &str = "02:00:00:00:00:10";
pub const ATTACKER_MAC: &str = "02:00:00:00:00:66";
pub const SERVER_MAC: &str = "02:00:00:00:00:80";
pub const ATTACKER_MAC_BYTES: [u8; 6] = [2, 0, 0, 0, 0, 0x66];
/// The af_packet ring size the shipped config uses: the 512-frame default dropped frames of a
/// ~10 kpps burst when the worker was starved of CPU, and the PMD does not count those drops.
pub const FRAMECNT: u32 = 4096;

/// Where the traffic tools live (standard-library python3).
pub const TOOL: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/realstack.py");

/// Name prefix of every namespace these tests create: `srs<pid><tag>-<host>`.
const PREFIX: &str = "srs";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Host {
    /// scrubd, with `o0` (outside) and `i0` (inside).
    Box,
    /// The outside segment: bridge `br0` joining `tobox`, `tocli`, `toatt`.
    Seg,
    Client,
    Attacker,
    Server,
}

impl Host {
    const ALL: [Host; 5] = [
        Host::Box,
        Host::Seg,
        Host::Client,
        Host::Attacker,
        Host::Server,
    ];

    fn tag(self) -> &'static str {
        match self {
            Host::Box => "box",
            Host::Seg => "seg",
            Host::Client => "cli",
            Host::Attacker => "att",
            Host::Server => "srv",
        }
    }
}

/// Every veth end: (namespace, interface).
const LINKS: [(Host, &str); 8] = [
    (Host::Box, "o0"),
    (Host::Box, "i0"),
    (Host::Seg, "tobox"),
    (Host::Seg, "tocli"),
    (Host::Seg, "toatt"),
    (Host::Client, "eth0"),
    (Host::Attacker, "eth0"),
    (Host::Server, "eth0"),
];

/// Why these tests cannot run here (not root, no network namespaces), or None.
pub fn unavailable() -> Option<String> {
    let uid = Command::new("id").arg("-u").output();
    match uid {
        Ok(o) if String::from_utf8_lossy(&o.stdout).trim() == "0" => {}
        Ok(o) => {
            return Some(format!(
                "not root (uid {})",
                String::from_utf8_lossy(&o.stdout).trim()
            ))
        }
        Err(e) => return Some(format!("cannot run id: {e}")),
    }
    let probe = format!("{PREFIX}{}probe", std::process::id());
    match Command::new("ip").args(["netns", "add", &probe]).output() {
        Err(e) => Some(format!("cannot run ip: {e}")),
        Ok(o) if !o.status.success() => Some(format!(
            "`ip netns add` failed: {}",
            String::from_utf8_lossy(&o.stderr).trim()
        )),
        Ok(_) => {
            let _ = Command::new("ip").args(["netns", "del", &probe]).output();
            None
        }
    }
}

/// Delete namespaces left by test processes that no longer exist (killed before their drop).
fn reap_stale() {
    let Ok(out) = Command::new("ip").args(["netns", "list"]).output() else {
        return;
    };
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let name = line.split_whitespace().next().unwrap_or("");
        let Some(rest) = name.strip_prefix(PREFIX) else {
            continue;
        };
        let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
        if !digits.is_empty() && !Path::new(&format!("/proc/{digits}")).exists() {
            let _ = Command::new("ip").args(["netns", "del", name]).output();
        }
    }
}

/// A bound on how long to wait for something, with a name for the failure message.
fn deadline(limit: Duration) -> impl Fn() -> bool {
    let start = Instant::now();
    move || start.elapsed() > limit
}

/// The five namespaces of one scenario, wired as in the module picture.
pub struct Topology {
    prefix: String,
    made: Vec<String>,
    pub s: Scenario,
}

impl Topology {
    /// Build the topology, or print why it cannot be built here and return None (the scenario
    /// is then skipped). `tag` must start with a letter.
    pub fn new(tag: &str) -> Option<Topology> {
        if let Some(why) = unavailable() {
            println!("SKIPPED realstack {tag}: network namespaces unavailable: {why}");
            return None;
        }
        reap_stale();
        let mut t = Topology {
            prefix: format!("{PREFIX}{}{tag}", std::process::id()),
            made: Vec::new(),
            s: Scenario::new(&format!("rs-{tag}")),
        };
        t.build();
        Some(t)
    }

    pub fn ns(&self, h: Host) -> String {
        format!("{}-{}", self.prefix, h.tag())
    }

    fn build(&mut self) {
        for h in Host::ALL {
            let ns = self.ns(h);
            must(Command::new("ip").args(["netns", "add", &ns]));
            self.made.push(ns);
            // Hosts send IPv6 ND and MLD on their own; without IPv6 every frame on the wire
            // is one the test caused (ARP aside), so counts can be compared exactly.
            self.exec(
                h,
                &[
                    "sysctl",
                    "-qw",
                    "net.ipv6.conf.all.disable_ipv6=1",
                    "net.ipv6.conf.default.disable_ipv6=1",
                    "net.ipv4.conf.all.rp_filter=0",
                    "net.ipv4.conf.default.rp_filter=0",
                    // A bridge with snooping joins 224.0.0.106 and reports it; no IGMP for
                    // link-local groups means no frame nobody asked for.
                    "net.ipv4.igmp_link_local_mcast_reports=0",
                ],
            );
            self.exec(h, &["ip", "link", "set", "lo", "up"]);
        }
        let veth = |a: Host, an: &str, b: Host, bn: &str| {
            must(Command::new("ip").args([
                "link",
                "add",
                an,
                "netns",
                &self.ns(a),
                "type",
                "veth",
                "peer",
                "name",
                bn,
                "netns",
                &self.ns(b),
            ]));
        };
        veth(Host::Box, "o0", Host::Seg, "tobox");
        veth(Host::Box, "i0", Host::Server, "eth0");
        veth(Host::Client, "eth0", Host::Seg, "tocli");
        veth(Host::Attacker, "eth0", Host::Seg, "toatt");
        self.exec(
            Host::Seg,
            &[
                "ip",
                "link",
                "add",
                "br0",
                "type",
                "bridge",
                "mcast_snooping",
                "0",
            ],
        );
        for p in ["tobox", "tocli", "toatt"] {
            self.exec(Host::Seg, &["ip", "link", "set", p, "master", "br0"]);
        }
        for (h, mac, ip) in [
            (Host::Client, CLIENT_MAC, CLIENT_IP),
            (Host::Attacker, ATTACKER_MAC, ATTACKER_IP),
            (Host::Server, SERVER_MAC, SERVER_IP),
        ] {
            self.exec(h, &["ip", "link", "set", "eth0", "address", mac]);
            self.exec(
                h,
                &["ip", "addr", "add", &format!("{ip}/24"), "dev", "eth0"],
            );
        }
        for (h, ifc) in LINKS {
            // With checksum offload on, veth hands af_packet TCP segments with unfinished
            // checksums, scrubd forwards them unchanged and the receiving stack drops them.
            self.exec(
                h,
                &[
                    "ethtool", "-K", ifc, "rx", "off", "tx", "off", "gso", "off", "gro", "off",
                    "tso", "off", "sg", "off",
                ],
            );
            self.exec(h, &["ip", "link", "set", ifc, "up"]);
        }
        self.exec(Host::Seg, &["ip", "link", "set", "br0", "up"]);
        self.wait_links_up();
        // Sources outside the /24 (spoofed floods) still have a route back, so the server's
        // stack would answer them if they got through rather than drop them unseen.
        self.exec(
            Host::Server,
            &["ip", "route", "add", "default", "dev", "eth0"],
        );
    }

    /// Wait until every link is operationally up. Until the kernel's link watcher (run at
    /// most once a second) has seen a new veth's carrier, the device has no queueing
    /// discipline and silently drops what is sent: a client's first ARP request was lost
    /// that way, costing its first ping a 1 s ARP retry.
    fn wait_links_up(&self) {
        let late = deadline(Duration::from_secs(10));
        for (h, ifc) in LINKS.into_iter().chain([(Host::Seg, "br0")]) {
            loop {
                let state = self.exec(h, &["ip", "-o", "link", "show", "dev", ifc]);
                if state.contains("state UP") {
                    break;
                }
                assert!(!late(), "{ifc} in {} never came up: {state}", self.ns(h));
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    }

    /// `ip netns exec <ns> args...`
    pub fn cmd(&self, h: Host, args: &[&str]) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.ns(h)]).args(args);
        c
    }

    /// Run in `h`; must exit 0; returns stdout.
    pub fn exec(&self, h: Host, args: &[&str]) -> String {
        let out = must(&mut self.cmd(h, args));
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Run `python3 tests/realstack.py args...` in `h` to completion (bounded); returns the JSON
    /// object it printed last.
    pub fn tool(&self, h: Host, args: &[&str], limit: Duration) -> Value {
        let bg = self.spawn_tool(h, args[0], args);
        bg.finish(limit).json()
    }

    /// Start `python3 tests/realstack.py args...` in `h` in the background, its output in files
    /// named `name`.
    pub fn spawn_tool(&self, h: Host, name: &str, args: &[&str]) -> Bg {
        self.spawn(h, name, &tool_argv(args))
    }

    /// Start `argv` in `h` in the background, stdout and stderr into files of the scenario dir.
    pub fn spawn(&self, h: Host, name: &str, argv: &[&str]) -> Bg {
        let out = self.s.path(&format!("{name}.out"));
        let err = self.s.path(&format!("{name}.err"));
        let child = self
            .cmd(h, argv)
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(&out).expect("create stdout file"))
            .stderr(std::fs::File::create(&err).expect("create stderr file"))
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {argv:?}: {e}"));
        Bg {
            child: Some(child),
            name: name.to_string(),
            out,
            err,
        }
    }

    /// A tool server (`http-serve`, `tcp-serve`, `udp-count`) started and listening.
    pub fn serve(&self, h: Host, name: &str, args: &[&str]) -> Bg {
        let bg = self.spawn(h, name, &tool_argv(args));
        bg.wait_for("ready", Duration::from_secs(20));
        bg
    }

    /// tcpdump on `iface` of `h`, frames in direction `dir` ("in": received by that interface,
    /// "out": sent by it) matching `filter`, up to 512 bytes of each.
    pub fn capture(&self, h: Host, iface: &str, dir: &str, filter: &str, name: &str) -> Capture {
        let file = self.s.path(&format!("{name}.pcap"));
        let f = file.to_string_lossy().into_owned();
        let mut argv = vec![
            "tcpdump",
            "--immediate-mode",
            "-Z",
            "root",
            "-U",
            "-n",
            "-p",
            "-s",
            "512",
            "-B",
            "8192",
            "-i",
            iface,
            "-Q",
            dir,
            "-w",
            &f,
        ];
        argv.extend(filter.split_whitespace());
        let bg = self.spawn(h, name, &argv);
        bg.wait_for("listening on", Duration::from_secs(20));
        Capture { bg, file }
    }

    /// A scrubd config for this topology: outside on `o0`, inside on `i0`, one worker;
    /// `extra` is appended after `[control]` (control keys, then `[pipeline.*]` tables).
    pub fn config(&self, extra: &str) -> PathBuf {
        self.s.config_with(
            "0,1",
            &[1],
            &af_packet_vdev(0, "o0"),
            &af_packet_vdev(1, "i0"),
            "",
            16383,
            extra,
        )
    }

    /// As [`Topology::config`] with `workers` workers: each port gets `qpairs = workers` (the
    /// kernel's fanout hash spreads flows over the queues as RSS would); lcores share CPU 1.
    pub fn config_workers(&self, workers: usize, extra: &str) -> PathBuf {
        let lcores = std::iter::once("0@0".to_string())
            .chain((1..=workers).map(|w| format!("{w}@1")))
            .collect::<Vec<_>>()
            .join(",");
        let ids: Vec<u32> = (1..=workers as u32).collect();
        self.s.config_with(
            &lcores,
            &ids,
            &format!("{},qpairs={workers}", af_packet_vdev(0, "o0")),
            &format!("{},qpairs={workers}", af_packet_vdev(1, "i0")),
            "",
            32767,
            extra,
        )
    }

    /// Start scrubd in the box namespace and wait for its control socket.
    pub fn scrubd(&self, cfg: &Path) -> Scrubd {
        let exe = env!("CARGO_BIN_EXE_scrubd");
        let c = cfg.to_string_lossy().into_owned();
        let socket = self.s.path("scrubd.sock");
        let _ = std::fs::remove_file(self.s.path("summary.json"));
        let bg = self.spawn(Host::Box, "scrubd", &[exe, "--config", &c]);
        let d = Scrubd { bg, socket };
        let late = deadline(Duration::from_secs(30));
        while UnixStream::connect(&d.socket).is_err() {
            if d.bg.exited() {
                panic!("scrubd exited before its socket came up\n{}", d.bg.logs());
            }
            assert!(!late(), "scrubd socket did not come up\n{}", d.bg.logs());
            std::thread::sleep(Duration::from_millis(20));
        }
        // The socket is up before the worker polls; a snapshot proves its loop runs, so
        // latencies measured from here on are scrubd's, not its start-up.
        d.wait_stats("the worker running", |st| {
            st["workers"].as_array().is_some_and(|w| {
                !w.is_empty() && w.iter().all(|w| super::netns::num(&w["snapshots"]) > 0)
            })
        });
        d
    }

    /// `curl` from `h` with no retry option, the body into `out` (or discarded).
    pub fn curl(&self, h: Host, url: &str, out: Option<&Path>, extra: &[&str]) -> Curl {
        let o = out.map_or("/dev/null".to_string(), |p| {
            p.to_string_lossy().into_owned()
        });
        let mut argv = vec![
            "curl",
            "-s",
            "-o",
            &o,
            "-w",
            "%{http_code} %{time_connect} %{time_total}",
        ];
        argv.extend_from_slice(extra);
        argv.push(url);
        let out = self
            .cmd(h, &argv)
            .output()
            .unwrap_or_else(|e| panic!("run curl: {e}"));
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let mut w = text.split_whitespace();
        let mut next = || w.next().and_then(|x| x.parse::<f64>().ok()).unwrap_or(0.0);
        Curl {
            code: next() as u32,
            connect_s: next(),
            total_s: next(),
            exit: out.status.code().unwrap_or(-1),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }
}

impl Drop for Topology {
    fn drop(&mut self) {
        for ns in &self.made {
            // Processes still inside (a scenario that panicked with a server running) would keep
            // the namespace and its veths alive after `ip netns del`.
            if let Ok(o) = Command::new("ip").args(["netns", "pids", ns]).output() {
                for pid in String::from_utf8_lossy(&o.stdout).split_whitespace() {
                    let _ = Command::new("kill").args(["-KILL", pid]).output();
                }
            }
        }
        for ns in self.made.iter().rev() {
            let _ = Command::new("ip").args(["netns", "del", ns]).output();
        }
    }
}

pub fn af_packet_vdev(index: u8, iface: &str) -> String {
    format!("net_af_packet{index},iface={iface},framecnt={FRAMECNT}")
}

fn tool_argv<'a>(args: &[&'a str]) -> Vec<&'a str> {
    let mut v = vec!["python3", TOOL];
    v.extend_from_slice(args);
    v
}

/// Run to completion; must exit 0.
fn must(c: &mut Command) -> Output {
    let out = c.output().unwrap_or_else(|e| panic!("run {c:?}: {e}"));
    assert!(out.status.success(), "{c:?}: {}", super::show(&out));
    out
}

#[derive(Debug)]
pub struct Curl {
    pub code: u32,
    pub connect_s: f64,
    pub total_s: f64,
    pub exit: i32,
    pub stderr: String,
}

/// A background process; killed on drop if still running.
pub struct Bg {
    child: Option<Child>,
    name: String,
    out: PathBuf,
    err: PathBuf,
}

pub struct Finished {
    pub name: String,
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

impl Finished {
    /// The last stdout line, parsed as JSON; the process must have exited 0.
    pub fn json(&self) -> Value {
        assert!(self.status.success(), "{} failed: {self}", self.name);
        let last = self.stdout.lines().last().unwrap_or("");
        serde_json::from_str(last).unwrap_or_else(|e| panic!("{}: {e}: {self}", self.name))
    }
}

impl std::fmt::Display for Finished {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} {:?}\nstdout:\n{}\nstderr:\n{}",
            self.name, self.status, self.stdout, self.stderr
        )
    }
}

impl Bg {
    fn read(p: &Path) -> String {
        let mut s = String::new();
        if let Ok(mut f) = std::fs::File::open(p) {
            let _ = f.read_to_string(&mut s);
        }
        s
    }

    pub fn logs(&self) -> String {
        format!(
            "{} stdout:\n{}\n{} stderr:\n{}",
            self.name,
            Self::read(&self.out),
            self.name,
            Self::read(&self.err)
        )
    }

    /// Whether the process has exited (a zombie not yet reaped counts): try_wait needs `&mut`.
    pub fn exited(&self) -> bool {
        let Some(c) = &self.child else { return true };
        match std::fs::read_to_string(format!("/proc/{}/stat", c.id())) {
            Ok(s) => s
                .rsplit_once(") ")
                .is_none_or(|(_, rest)| rest.starts_with('Z')),
            Err(_) => true,
        }
    }

    /// Wait until stdout or stderr contains `needle`.
    pub fn wait_for(&self, needle: &str, limit: Duration) {
        let late = deadline(limit);
        loop {
            if Self::read(&self.out).contains(needle) || Self::read(&self.err).contains(needle) {
                return;
            }
            assert!(
                !self.exited(),
                "{} exited early\n{}",
                self.name,
                self.logs()
            );
            assert!(
                !late(),
                "{} never printed {needle:?}\n{}",
                self.name,
                self.logs()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Wait for the process to exit by itself (killed, and failing, after `limit`).
    pub fn finish(mut self, limit: Duration) -> Finished {
        let mut child = self.child.take().expect("running");
        let late = deadline(limit);
        let status = loop {
            if let Some(st) = child.try_wait().expect("wait") {
                break st;
            }
            if late() {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "{} did not finish within {limit:?}\n{}",
                    self.name,
                    self.logs()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        Finished {
            name: self.name.clone(),
            status,
            stdout: Self::read(&self.out),
            stderr: Self::read(&self.err),
        }
    }

    /// SIGINT (tcpdump flushes and prints its counts), then [`Bg::finish`].
    pub fn interrupt(self, limit: Duration) -> Finished {
        if let Some(c) = &self.child {
            let _ = Command::new("kill")
                .args(["-INT", &c.id().to_string()])
                .status();
        }
        self.finish(limit)
    }
}

impl Drop for Bg {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// One captured frame: its length on the wire and its first bytes.
#[derive(Clone, Debug)]
pub struct Pkt {
    pub wire_len: u32,
    pub data: Vec<u8>,
}

/// A running tcpdump writing a pcap file.
pub struct Capture {
    bg: Bg,
    file: PathBuf,
}

impl Capture {
    /// The frames written so far (tcpdump -U writes each frame as it arrives; a record still
    /// being written is left out).
    pub fn frames(&self) -> Vec<Pkt> {
        read_pcap(&std::fs::read(&self.file).unwrap_or_default())
    }

    /// Stop tcpdump and return every frame; fails if the kernel dropped any for the capture,
    /// since the counts would then not be the wire's.
    pub fn stop(self) -> Vec<Pkt> {
        let file = self.file.clone();
        let done = self.bg.interrupt(Duration::from_secs(20));
        let dropped = done
            .stderr
            .lines()
            .find_map(|l| l.strip_suffix(" packets dropped by kernel"))
            .and_then(|n| n.trim().parse::<u64>().ok());
        assert_eq!(dropped, Some(0), "capture complete: {done}");
        read_pcap(&std::fs::read(&file).expect("capture file"))
    }
}

/// Frames of a classic pcap file (either byte order, any timestamp precision); a truncated last
/// record is ignored.
pub fn read_pcap(b: &[u8]) -> Vec<Pkt> {
    let mut v = Vec::new();
    if b.len() < 24 {
        return v;
    }
    let le = match &b[..4] {
        [0xd4, 0xc3, 0xb2, 0xa1] | [0x4d, 0x3c, 0xb2, 0xa1] => true,
        [0xa1, 0xb2, 0xc3, 0xd4] | [0xa1, 0xb2, 0x3c, 0x4d] => false,
        _ => panic!("not a pcap file"),
    };
    let u32at = |o: usize| {
        let a = [b[o], b[o + 1], b[o + 2], b[o + 3]];
        if le {
            u32::from_le_bytes(a)
        } else {
            u32::from_be_bytes(a)
        }
    };
    let mut o = 24;
    while o + 16 <= b.len() {
        let incl = u32at(o + 8) as usize;
        let wire_len = u32at(o + 12);
        if o + 16 + incl > b.len() {
            break;
        }
        v.push(Pkt {
            wire_len,
            data: b[o + 16..o + 16 + incl].to_vec(),
        });
        o += 16 + incl;
    }
    v
}

/// The IPv4 facts of a frame the scenarios look at.
#[derive(Debug, Clone)]
pub struct Ip4<'a> {
    pub src: Ipv4Addr,
    pub dst: Ipv4Addr,
    pub proto: u8,
    pub sport: u16,
    pub dport: u16,
    /// TCP flags (0 for other protocols).
    pub flags: u8,
    /// Transport payload as captured.
    pub payload: &'a [u8],
}

pub const SYN: u8 = 0x02;
pub const RST: u8 = 0x04;
pub const ACK: u8 = 0x10;

impl Ip4<'_> {
    pub fn is_syn(&self) -> bool {
        self.proto == 6 && self.flags & (SYN | ACK) == SYN
    }
    pub fn is_synack(&self) -> bool {
        self.proto == 6 && self.flags & (SYN | ACK) == SYN | ACK
    }
    pub fn is_rst(&self) -> bool {
        self.proto == 6 && self.flags & RST != 0
    }
}

/// Parse an untagged Ethernet/IPv4 frame (None for ARP and anything else).
pub fn ip4(f: &Pkt) -> Option<Ip4<'_>> {
    let d = &f.data;
    if d.len() < 34 || d[12..14] != [0x08, 0x00] || d[14] >> 4 != 4 {
        return None;
    }
    let ihl = usize::from(d[14] & 0xf) * 4;
    let l4 = 14 + ihl;
    let proto = d[23];
    let src = Ipv4Addr::new(d[26], d[27], d[28], d[29]);
    let dst = Ipv4Addr::new(d[30], d[31], d[32], d[33]);
    let be16 = |o: usize| {
        d.get(o..o + 2)
            .map_or(0, |x| u16::from_be_bytes([x[0], x[1]]))
    };
    let (sport, dport) = match proto {
        6 | 17 => (be16(l4), be16(l4 + 2)),
        _ => (0, 0),
    };
    let (flags, start) = match proto {
        6 => (
            d.get(l4 + 13).copied().unwrap_or(0),
            l4 + usize::from(d.get(l4 + 12).copied().unwrap_or(0) >> 4) * 4,
        ),
        17 => (0, l4 + 8),
        _ => (0, l4),
    };
    Some(Ip4 {
        src,
        dst,
        proto,
        sport,
        dport,
        flags,
        payload: d.get(start.min(d.len())..).unwrap_or(&[]),
    })
}

pub fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

/// scrubd running in the box namespace, with its control socket.
pub struct Scrubd {
    bg: Bg,
    socket: PathBuf,
}

impl Scrubd {
    pub fn ctl(&self, args: &[&str]) -> Output {
        Command::new(super::scrubctl_bin())
            .arg("--socket")
            .arg(&self.socket)
            .args(args)
            .output()
            .expect("run scrubctl")
    }

    /// `scrubctl --json args...`, which must succeed, parsed.
    pub fn json(&self, args: &[&str]) -> Value {
        let mut a = vec!["--json"];
        a.extend_from_slice(args);
        let out = self.ctl(&a);
        assert!(
            out.status.success(),
            "scrubctl {args:?}: {}",
            super::show(&out)
        );
        serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("scrubctl {args:?}: {e}"))
    }

    pub fn stats(&self) -> Value {
        self.json(&["stats"])
    }

    /// Poll `stats` until `pred` holds (30 s at most).
    pub fn wait_stats(&self, what: &str, pred: impl Fn(&Value) -> bool) -> Value {
        let late = deadline(Duration::from_secs(30));
        loop {
            let s = self.stats();
            if pred(&s) {
                return s;
            }
            assert!(!late(), "stats never showed {what}: {s}");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Poll until `check` (given fresh stats) returns Ok twice in a row 200 ms apart, i.e. the
    /// counters agree with what the namespaces saw and nothing is still moving; fails with the
    /// last mismatch after 20 s.
    pub fn settle<T>(&self, what: &str, check: impl Fn(&Value) -> Result<T, String>) -> T {
        let late = deadline(Duration::from_secs(20));
        let mut last_ok: Option<Vec<Value>> = None;
        // Rates decay between reads; the counters are what must stand still.
        let counters = |s: &Value| -> Vec<Value> {
            let ports = s["ports"].as_array().into_iter().flatten();
            ports.map(|p| p["counters"].clone()).collect()
        };
        loop {
            let s = self.stats();
            match check(&s) {
                Ok(v) if last_ok.as_ref() == Some(&counters(&s)) => return v,
                Ok(_) => last_ok = Some(counters(&s)),
                Err(e) => {
                    last_ok = None;
                    assert!(!late(), "{what}: {e}\nstats: {s}");
                }
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// `scrubctl shutdown`, wait for exit 0, and return the summary JSON.
    pub fn shutdown(self, s: &Scenario) -> Value {
        let out = self.ctl(&["shutdown"]);
        assert!(
            out.status.success(),
            "scrubctl shutdown: {}",
            super::show(&out)
        );
        let done = self.bg.finish(Duration::from_secs(30));
        assert!(done.status.success(), "scrubd exit: {done}");
        s.summary()
    }

    pub fn logs(&self) -> String {
        self.bg.logs()
    }
}

/// A counter of a stats or summary object, 0 when absent (stages list only counters that moved).
pub fn num(v: &Value) -> u64 {
    v.as_u64().unwrap_or(0)
}
