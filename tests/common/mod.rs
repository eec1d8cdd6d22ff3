//! Helpers for process-level tests: each scenario runs scrubd as its own process, because EAL
//! initialises once per process.

#![allow(dead_code)]

use perf::pcap::Frame;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Scenarios run one at a time: every scrubd busy-polls a core and this machine has two.
pub static SERIAL: Mutex<()> = Mutex::new(());

/// Reports a test skipped because `why` (root, network namespaces or the shared data are
/// missing: things the machine has or has not, not install steps).
pub fn skip(why: &str) {
    eprintln!("skipped: {why}");
}

/// Whether program `bin` is installed. Under `CI=true` a missing one fails the test instead:
/// `scripts/install-deps.sh` installs every program the tests run, so there a skip would hide
/// a missing install step.
pub fn have_installed(bin: &str) -> bool {
    let found = std::process::Command::new("sh")
        .args(["-c", &format!("command -v {bin}")])
        .output()
        .is_ok_and(|o| o.status.success());
    if !found && std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!("CI=true, yet {bin} is not installed: scripts/install-deps.sh must install it");
    }
    found
}

pub fn lock() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

pub struct Scenario {
    pub dir: PathBuf,
    pub name: String,
}

impl Scenario {
    pub fn new(name: &str) -> Scenario {
        let dir = std::env::temp_dir().join(format!("scrubd-test-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("create scenario dir");
        Scenario {
            dir,
            name: name.into(),
        }
    }

    pub fn path(&self, f: &str) -> PathBuf {
        self.dir.join(f)
    }

    pub fn write_pcap(&self, f: &str, frames: &[Frame]) -> PathBuf {
        let p = self.path(f);
        perf::pcap::write(&p, frames).expect("write pcap");
        p
    }

    /// A config with the given `[eal]` lcores, workers and `[[port]]` vdev strings
    /// (outside first), wired as one pair, no hugepages.
    pub fn config(
        &self,
        lcores: &str,
        workers: &[u32],
        outside: &str,
        inside: &str,
        run: &str,
        mbufs: u32,
    ) -> PathBuf {
        self.config_with(lcores, workers, outside, inside, run, mbufs, "")
    }

    /// [`Scenario::config`] with `extra` appended after the `[control]` section: bare keys in it
    /// are control keys, then any further tables (`[pipeline.*]`).
    #[allow(clippy::too_many_arguments)]
    pub fn config_with(
        &self,
        lcores: &str,
        workers: &[u32],
        outside: &str,
        inside: &str,
        run: &str,
        mbufs: u32,
        extra: &str,
    ) -> PathBuf {
        let text = format!(
            r#"
[eal]
lcores = "{lcores}"
memory = "no-huge"
memory_mb = 1024
file_prefix = "scrubd-test-{name}-{pid}"

[dataplane]
workers = {workers:?}
burst = 32
rx_desc = 512
tx_desc = 512
mempool_mbufs = {mbufs}
mempool_cache = 64

[[port]]
name = "outside"
vdev = "{outside}"

[[port]]
name = "inside"
vdev = "{inside}"

[[pair]]
outside = "outside"
inside = "inside"

[run]
{run}
summary_json = "{summary}"

[control]
socket = "{socket}"
{extra}
"#,
            name = self.name,
            pid = std::process::id(),
            summary = self.path("summary.json").display(),
            socket = self.path("scrubd.sock").display()
        );
        let p = self.path("scrubd.toml");
        std::fs::write(&p, text).expect("write config");
        p
    }

    pub fn summary(&self) -> serde_json::Value {
        let text =
            std::fs::read_to_string(self.path("summary.json")).expect("scrubd wrote its summary");
        serde_json::from_str(&text).expect("summary is JSON")
    }
}

impl Drop for Scenario {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

/// A net_pcap vdev string replaying `rx` and writing what is sent to `tx`.
pub fn pcap_vdev(index: u8, rx: &Path, tx: &Path) -> String {
    format!(
        "net_pcap{index},rx_pcap={},tx_pcap={}",
        rx.display(),
        tx.display()
    )
}

/// Run `scrubd --config cfg` to completion within `limit`.
pub fn run_config(cfg: &Path, limit: Duration) -> Output {
    let mut cmd = scrubd();
    cmd.arg("--config").arg(cfg);
    run_with_limit(cmd, limit)
}

/// [`run_config`] that must exit 0 within a minute.
pub fn run_ok(cfg: &Path) -> Output {
    let out = run_config(cfg, Duration::from_secs(60));
    assert!(out.status.success(), "{}", show(&out));
    out
}

pub fn scrubd() -> Command {
    Command::new(env!("CARGO_BIN_EXE_scrubd"))
}

/// Run to completion, killing the process (and failing) after `limit`.
pub fn run_with_limit(mut cmd: Command, limit: Duration) -> Output {
    let child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn scrubd");
    wait_with_limit(child, limit)
}

pub fn wait_with_limit(mut child: Child, limit: Duration) -> Output {
    let start = Instant::now();
    loop {
        if child.try_wait().expect("wait").is_some() {
            return child.wait_with_output().expect("collect output");
        }
        if start.elapsed() > limit {
            let _ = child.kill();
            let out = child.wait_with_output().expect("collect output");
            panic!(
                "scrubd did not finish within {limit:?}\nstdout:\n{}\nstderr:\n{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

pub fn show(out: &Output) -> String {
    format!(
        "status {:?}\nstdout:\n{}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

pub fn read_frames(p: &Path) -> Vec<Vec<u8>> {
    pipeline::testutil::read_frames(p).unwrap_or_else(|e| panic!("read {}: {e}", p.display()))
}

/// Check rx = forwarded + replied + Σ drops for every port of a summary, and return the ports.
pub fn assert_conserved(sum: &serde_json::Value) -> Vec<serde_json::Value> {
    let ports = sum["ports"].as_array().expect("ports").clone();
    for p in &ports {
        let n = |k: &str| p[k].as_u64().unwrap_or_else(|| panic!("{k} in {p}"));
        let drops: u64 = p["drops"]
            .as_object()
            .expect("drops")
            .values()
            .map(|v| v.as_u64().unwrap())
            .sum();
        assert_eq!(drops, n("dropped"), "drop breakdown sums to dropped: {p}");
        assert_eq!(
            n("rx"),
            n("forwarded") + n("replied") + n("dropped"),
            "conservation on {p}"
        );
        assert_eq!(n("rx"), n("eth_ipackets"), "our rx equals the PMD's: {p}");
        assert_eq!(p["conserved"], true);
    }
    assert_eq!(sum["conserved"], true);
    ports
}

pub mod netns;

/// The scrubctl binary (package `ctl`) of this build profile, built on demand when a test
/// runs alone.
pub fn scrubctl_bin() -> PathBuf {
    let exe = std::env::current_exe().expect("test exe");
    let dir = exe.parent().and_then(Path::parent).expect("target dir");
    let bin = dir.join("scrubctl");
    if !bin.exists() {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let mut cmd = Command::new(cargo);
        cmd.args(["build", "-p", "ctl", "--bin", "scrubctl"]);
        if !cfg!(debug_assertions) {
            cmd.arg("--release");
        }
        assert!(
            cmd.status().expect("build scrubctl").success(),
            "build scrubctl"
        );
    }
    bin
}

/// Starts scrubd on `cfg` and waits (30 s at most) until its control socket `sock` answers;
/// panics with its output if it exits first.
pub fn spawn_until_socket(cfg: &Path, sock: &Path) -> Child {
    let mut child = scrubd()
        .arg("--config")
        .arg(cfg)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn scrubd");
    let t0 = Instant::now();
    while std::os::unix::net::UnixStream::connect(sock).is_err() {
        if let Some(st) = child.try_wait().expect("wait") {
            let out = child.wait_with_output().expect("output");
            panic!(
                "scrubd exited before its socket came up ({st}): {}",
                show(&out)
            );
        }
        assert!(
            t0.elapsed() < Duration::from_secs(30),
            "socket {} did not come up",
            sock.display()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    child
}

/// A running scrubd driven through scrubctl; killed when dropped (a failing test).
pub struct Daemon {
    child: Option<Child>,
    pub socket: PathBuf,
}

impl Daemon {
    pub fn start(cfg: &Path, socket: &Path) -> Daemon {
        Daemon {
            child: Some(spawn_until_socket(cfg, socket)),
            socket: socket.to_path_buf(),
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().map_or(0, Child::id)
    }

    pub fn ctl(&self, args: &[&str]) -> Output {
        Command::new(scrubctl_bin())
            .arg("--socket")
            .arg(&self.socket)
            .args(args)
            .output()
            .expect("run scrubctl")
    }

    /// Run scrubctl, require exit 0, return stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.ctl(args);
        assert!(out.status.success(), "scrubctl {args:?}: {}", show(&out));
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// `scrubctl --json ...` parsed.
    pub fn json(&self, args: &[&str]) -> serde_json::Value {
        let mut a = vec!["--json"];
        a.extend_from_slice(args);
        let text = self.ok(&a);
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("scrubctl {args:?}: {e}: {text}"))
    }

    /// Poll `stats` until `pred` holds (30 s at most).
    pub fn wait_stats(
        &self,
        what: &str,
        pred: impl Fn(&serde_json::Value) -> bool,
    ) -> serde_json::Value {
        let start = Instant::now();
        loop {
            let s = self.json(&["stats"]);
            if pred(&s) {
                return s;
            }
            assert!(
                start.elapsed() < Duration::from_secs(30),
                "stats never showed {what}: {s}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Ask for shutdown and collect the exit.
    pub fn shutdown(mut self) -> Output {
        self.ok(&["shutdown"]);
        let child = self.child.take().expect("running");
        wait_with_limit(child, Duration::from_secs(30))
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}
