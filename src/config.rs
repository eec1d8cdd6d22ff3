//! The daemon's TOML configuration: EAL, ports, wiring, workers, pipeline policy.
//!
//! Parsing rejects unknown keys (a typo in a scrubbing box's config must not silently fall back
//! to a default); validation then checks cross-references and ranges, and every error names the
//! file and the key.

use serde::Deserialize;
use std::collections::HashSet;
use std::path::{Path, PathBuf};
use thiserror::Error;

#[derive(Debug, Error)]
pub enum ConfigError {
    #[error("{file}: cannot read: {err}")]
    Read { file: String, err: std::io::Error },
    #[error("{file}: {msg}")]
    Parse { file: String, msg: String },
    #[error("{file}: key `{key}`: {msg}")]
    Invalid {
        file: String,
        key: String,
        msg: String,
    },
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub eal: EalConfig,
    #[serde(default)]
    pub dataplane: DataplaneConfig,
    #[serde(rename = "port")]
    pub ports: Vec<PortConfig>,
    #[serde(rename = "pair", default)]
    pub pairs: Vec<PairConfig>,
    #[serde(default)]
    pub run: RunConfig,
    #[serde(default)]
    pub pipeline: pipeline::PipelineConfig,
    #[serde(default)]
    pub control: ControlConfig,
}

/// The control side: the operator socket, the stats path and the ecosystem hooks.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ControlConfig {
    /// Unix socket scrubctl talks to. Its directory is created (0755) if missing.
    pub socket: PathBuf,
    /// "0600" (owner only, the default) or "0660" (owner and `socket_group`).
    pub socket_mode: String,
    /// Group that may use the socket with mode 0660.
    pub socket_group: Option<String>,
    /// Further uids allowed to connect (root and the daemon's own uid always are).
    pub allowed_uids: Vec<u32>,
    /// How often each worker publishes a stats snapshot.
    pub stats_interval_ms: u64,
    /// The span the rates (pps, bps) are computed over.
    pub rate_window_s: f64,
    /// The span of the "recent" latency histogram.
    pub latency_window_s: u64,
    /// Serve Prometheus text on http://ADDR/metrics (e.g. "127.0.0.1:9417"); off when absent.
    pub metrics_listen: Option<std::net::SocketAddr>,
    /// CPU the control thread is pinned to; default: the main lcore's CPU.
    pub cpu: Option<usize>,
    /// Register /scrubd/* commands with DPDK telemetry.
    pub telemetry: bool,
    /// Initialise rte_pdump so `dpdk-dumpcap` can capture live traffic. Needs
    /// `memory = "hugepages"` (shared memory with the capture process); with other memory modes
    /// scrubd says so at start-up and runs without it.
    pub pdump: bool,
}

impl Default for ControlConfig {
    fn default() -> Self {
        ControlConfig {
            socket: PathBuf::from("/run/scrubd/scrubd.sock"),
            socket_mode: "0600".into(),
            socket_group: None,
            allowed_uids: Vec::new(),
            stats_interval_ms: 100,
            rate_window_s: 1.0,
            latency_window_s: 10,
            metrics_listen: None,
            cpu: None,
            telemetry: true,
            pdump: true,
        }
    }
}

impl ControlConfig {
    /// The socket mode as a number (validated by `Config::validate`).
    pub fn mode(&self) -> u32 {
        if self.socket_mode == "0660" {
            0o660
        } else {
            0o600
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum MemoryMode {
    /// Hugepages, no shared runtime files (`--in-memory`): the default for a single daemon.
    InMemory,
    /// Hugepages with a runtime directory named by `file_prefix` (needed for secondary tools
    /// such as dpdk-dumpcap).
    Hugepages,
    /// Plain 4 KiB pages (`--no-huge`): works anywhere, slower; for tests and demos.
    NoHuge,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EalConfig {
    /// EAL lcore list, e.g. "0,1" or "0-3". The main lcore runs the control side. Entries may
    /// map an lcore onto a CPU, "2@1", to run more lcores than CPUs (tests on small machines).
    pub lcores: String,
    pub main_lcore: Option<u32>,
    pub memory: MemoryMode,
    /// Memory in MiB (EAL `-m`); required with no-huge, optional otherwise.
    pub memory_mb: Option<u32>,
    /// Unique per DPDK process on a machine (a generator and scrubd need different ones).
    pub file_prefix: String,
    /// Passed to EAL verbatim after everything else (e.g. ["--log-level=pmd.net.pcap:debug"]).
    #[serde(default)]
    pub extra_args: Vec<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DataplaneConfig {
    /// Worker lcores; worker i uses queue i on every port.
    pub workers: Vec<u32>,
    pub burst: usize,
    pub rx_desc: u16,
    pub tx_desc: u16,
    pub mempool_mbufs: u32,
    pub mempool_cache: u32,
}

impl Default for DataplaneConfig {
    fn default() -> Self {
        DataplaneConfig {
            workers: vec![1],
            burst: 32,
            rx_desc: 1024,
            tx_desc: 1024,
            mempool_mbufs: 16383,
            mempool_cache: 256,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PortConfig {
    /// Name used in `[[pair]]` and in reports.
    pub name: String,
    /// A virtual device string passed to EAL as `--vdev`, e.g. "net_pcap0,rx_pcap=in.pcap".
    pub vdev: Option<String>,
    /// A PCI address of a NIC bound to vfio-pci, passed to EAL as `-a`.
    pub pci: Option<String>,
    #[serde(default = "yes")]
    pub promiscuous: bool,
    pub mtu: Option<u16>,
}

fn yes() -> bool {
    true
}

impl PortConfig {
    /// The name DPDK gives the device: the vdev driver instance (before the first comma) or the
    /// PCI address.
    pub fn device_name(&self) -> &str {
        match (&self.vdev, &self.pci) {
            (Some(v), _) => v.split(',').next().unwrap_or(v),
            (None, Some(p)) => p,
            (None, None) => "",
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PairConfig {
    pub outside: String,
    pub inside: String,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunConfig {
    /// Stop after this many seconds (0 or absent: run until signalled).
    pub duration_s: Option<f64>,
    /// Stop once traffic was seen and then no packet arrived for this long (for finite
    /// captures replayed through net_pcap).
    pub exit_when_idle_ms: Option<u64>,
    /// Write the final summary as JSON to this path.
    pub summary_json: Option<PathBuf>,
}

impl Config {
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let file = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|err| ConfigError::Read {
            file: file.clone(),
            err,
        })?;
        Self::parse(&text, &file)
    }

    pub fn parse(text: &str, file: &str) -> Result<Config, ConfigError> {
        let cfg: Config = toml::from_str(text).map_err(|e| ConfigError::Parse {
            file: file.into(),
            msg: e.to_string().trim_end().to_string(),
        })?;
        cfg.validate(file)?;
        Ok(cfg)
    }

    fn validate(&self, file: &str) -> Result<(), ConfigError> {
        let bad = |key: &str, msg: String| {
            Err(ConfigError::Invalid {
                file: file.into(),
                key: key.into(),
                msg,
            })
        };
        let lcores = parse_lcore_list(&self.eal.lcores).map_err(|msg| ConfigError::Invalid {
            file: file.into(),
            key: "eal.lcores".into(),
            msg,
        })?;
        let main = self.eal.main_lcore.unwrap_or(lcores[0]);
        if !lcores.contains(&main) {
            return bad(
                "eal.main_lcore",
                format!("lcore {main} is not in eal.lcores \"{}\"", self.eal.lcores),
            );
        }
        if self.eal.file_prefix.is_empty() || self.eal.file_prefix.contains('/') {
            return bad(
                "eal.file_prefix",
                "must be a non-empty name without '/'".into(),
            );
        }
        if self.eal.memory == MemoryMode::NoHuge && self.eal.memory_mb.is_none() {
            return bad(
                "eal.memory_mb",
                "required with memory = \"no-huge\" (e.g. 512)".into(),
            );
        }
        let d = &self.dataplane;
        if d.workers.is_empty() {
            return bad(
                "dataplane.workers",
                "at least one worker lcore is needed".into(),
            );
        }
        let mut seen = HashSet::new();
        for w in &d.workers {
            if *w == main {
                return bad(
                    "dataplane.workers",
                    format!("lcore {w} is the main lcore; workers need their own"),
                );
            }
            if !lcores.contains(w) {
                return bad(
                    "dataplane.workers",
                    format!("lcore {w} is not in eal.lcores \"{}\"", self.eal.lcores),
                );
            }
            if !seen.insert(*w) {
                return bad("dataplane.workers", format!("lcore {w} is listed twice"));
            }
        }
        if d.burst == 0 || d.burst > dataplane::MAX_BURST {
            return bad(
                "dataplane.burst",
                format!("must be 1..={}, got {}", dataplane::MAX_BURST, d.burst),
            );
        }
        for (key, v) in [
            ("dataplane.rx_desc", d.rx_desc),
            ("dataplane.tx_desc", d.tx_desc),
        ] {
            if v < 32 || !v.is_power_of_two() {
                return bad(key, format!("must be a power of two >= 32, got {v}"));
            }
        }
        if self.ports.is_empty() {
            return bad("port", "no [[port]] defined".into());
        }
        let mut names = HashSet::new();
        let mut devices = HashSet::new();
        for (i, p) in self.ports.iter().enumerate() {
            let key = |f: &str| format!("port[{i}].{f}");
            if p.name.is_empty() {
                return bad(&key("name"), "must not be empty".into());
            }
            if !names.insert(p.name.as_str()) {
                return bad(
                    &key("name"),
                    format!("port name \"{}\" is used twice", p.name),
                );
            }
            match (&p.vdev, &p.pci) {
                (Some(_), Some(_)) => {
                    return bad(&key("vdev"), "give either vdev or pci, not both".into())
                }
                (None, None) => {
                    return bad(
                        &key("vdev"),
                        "each port needs vdev = \"...\" or pci = \"...\"".into(),
                    )
                }
                (Some(v), None) if v.is_empty() || v.starts_with(',') => {
                    return bad(
                        &key("vdev"),
                        "must start with a driver instance name like net_pcap0".into(),
                    )
                }
                (None, Some(pci)) if !looks_like_pci(pci) => {
                    return bad(
                        &key("pci"),
                        format!("\"{pci}\" is not a PCI address like 0000:01:00.0"),
                    )
                }
                _ => {}
            }
            if !devices.insert(p.device_name().to_string()) {
                return bad(
                    &key("vdev"),
                    format!("device \"{}\" is used by two ports", p.device_name()),
                );
            }
        }
        if self.pairs.is_empty() {
            return bad(
                "pair",
                "no [[pair]] defined: scrubd forwards between an outside and an inside port".into(),
            );
        }
        let mut wired = HashSet::new();
        for (i, pair) in self.pairs.iter().enumerate() {
            for (side, n) in [("outside", &pair.outside), ("inside", &pair.inside)] {
                let key = format!("pair[{i}].{side}");
                if !names.contains(n.as_str()) {
                    return bad(&key, format!("no [[port]] named \"{n}\""));
                }
                if !wired.insert(n.clone()) {
                    return bad(
                        &key,
                        format!("port \"{n}\" is already wired in another pair"),
                    );
                }
            }
        }
        let queues = d.workers.len() as u64;
        let need = self.ports.len() as u64 * queues * (u64::from(d.rx_desc) + u64::from(d.tx_desc))
            + queues * (d.burst as u64 * 4 + u64::from(d.mempool_cache));
        if u64::from(d.mempool_mbufs) < need {
            return bad(
                "dataplane.mempool_mbufs",
                format!(
                    "{} is too small: the rings and caches can hold {need} mbufs at once",
                    d.mempool_mbufs
                ),
            );
        }
        let c = &self.control;
        if c.socket.as_os_str().is_empty() {
            return bad("control.socket", "must be a path".into());
        }
        if c.socket.as_os_str().len() > 107 {
            return bad(
                "control.socket",
                "longer than a Unix socket path may be (107 bytes)".into(),
            );
        }
        match c.socket_mode.as_str() {
            "0600" => {}
            "0660" if c.socket_group.is_some() => {}
            "0660" => {
                return bad(
                    "control.socket_group",
                    "socket_mode \"0660\" needs the group that may connect".into(),
                )
            }
            m => {
                return bad(
                    "control.socket_mode",
                    format!("\"{m}\" is not \"0600\" or \"0660\""),
                )
            }
        }
        if !(10..=10_000).contains(&c.stats_interval_ms) {
            return bad(
                "control.stats_interval_ms",
                format!("must be 10..=10000, got {}", c.stats_interval_ms),
            );
        }
        if !(c.rate_window_s >= 0.1 && c.rate_window_s <= 3600.0) {
            return bad(
                "control.rate_window_s",
                format!("must be 0.1..=3600, got {}", c.rate_window_s),
            );
        }
        if !(1..=3600).contains(&c.latency_window_s) {
            return bad(
                "control.latency_window_s",
                format!("must be 1..=3600, got {}", c.latency_window_s),
            );
        }
        if let Some(s) = self.run.duration_s {
            if !(s >= 0.0 && s.is_finite()) {
                return bad(
                    "run.duration_s",
                    format!("must be a non-negative number, got {s}"),
                );
            }
        }
        Ok(())
    }

    pub fn main_lcore(&self) -> u32 {
        self.eal.main_lcore.unwrap_or_else(|| {
            parse_lcore_list(&self.eal.lcores)
                .map(|l| l[0])
                .unwrap_or(0)
        })
    }

    /// The CPU an lcore runs on: the `@cpu` of an "lcore@cpu" entry, else the lcore number.
    pub fn lcore_cpu(&self, lcore: u32) -> u32 {
        for part in self.eal.lcores.split(',') {
            if let Some((l, cpu)) = part.trim().split_once('@') {
                if l.trim().parse::<u32>() == Ok(lcore) {
                    if let Ok(c) = cpu.trim().parse() {
                        return c;
                    }
                }
            }
        }
        lcore
    }

    /// The EAL argument vector this config stands for.
    pub fn eal_args(&self) -> Vec<String> {
        let flag = if self.eal.lcores.contains('@') {
            "--lcores"
        } else {
            "-l"
        };
        let mut a = vec![
            flag.to_string(),
            self.eal.lcores.clone(),
            format!("--main-lcore={}", self.main_lcore()),
        ];
        match self.eal.memory {
            MemoryMode::InMemory => a.push("--in-memory".into()),
            MemoryMode::Hugepages => {}
            MemoryMode::NoHuge => a.push("--no-huge".into()),
        }
        if let Some(m) = self.eal.memory_mb {
            a.push(format!("-m{m}"));
        }
        a.push(format!("--file-prefix={}", self.eal.file_prefix));
        let has_pci = self.ports.iter().any(|p| p.pci.is_some());
        if !has_pci {
            // Nothing to probe on the bus: skip PCI scanning entirely (works without sysfs PCI).
            a.push("--no-pci".into());
        }
        for p in &self.ports {
            if let Some(v) = &p.vdev {
                a.push(format!("--vdev={v}"));
            }
            if let Some(pci) = &p.pci {
                a.push(format!("-a{pci}"));
            }
        }
        a.extend(self.eal.extra_args.iter().cloned());
        a
    }
}

fn looks_like_pci(s: &str) -> bool {
    // dddd:bb:dd.f or bb:dd.f
    let parts: Vec<&str> = s.split(':').collect();
    let ok_hex = |p: &str, n: usize| p.len() == n && p.chars().all(|c| c.is_ascii_hexdigit());
    let (dom, bus, devfn) = match parts.as_slice() {
        [d, b, df] => (Some(*d), *b, *df),
        [b, df] => (None, *b, *df),
        _ => return false,
    };
    let Some((dev, f)) = devfn.split_once('.') else {
        return false;
    };
    dom.is_none_or(|d| ok_hex(d, 4))
        && ok_hex(bus, 2)
        && ok_hex(dev, 2)
        && f.len() == 1
        && f.chars().all(|c| ('0'..='7').contains(&c))
}

/// Parse an EAL lcore list ("0,1", "0-3", "0,2-3") into ids, first as written.
pub fn parse_lcore_list(s: &str) -> Result<Vec<u32>, String> {
    let mut out = Vec::new();
    for part in s.split(',') {
        let part = part.trim();
        // "lcore@cpu": the lcore id is what the rest of the config refers to.
        let part = match part.split_once('@') {
            Some((l, cpu)) => {
                cpu.trim()
                    .parse::<u32>()
                    .map_err(|_| format!("\"{cpu}\" is not a CPU number in \"{s}\""))?;
                l
            }
            None => part,
        };
        let num = |t: &str| {
            t.trim()
                .parse::<u32>()
                .map_err(|_| format!("\"{t}\" is not an lcore number in \"{s}\""))
        };
        if let Some((a, b)) = part.split_once('-') {
            let (a, b) = (num(a)?, num(b)?);
            if a > b || b >= 1024 {
                return Err(format!("bad range \"{part}\" in \"{s}\""));
            }
            out.extend(a..=b);
        } else {
            let v = num(part)?;
            if v >= 1024 {
                return Err(format!("lcore {v} out of range in \"{s}\""));
            }
            out.push(v);
        }
    }
    if out.is_empty() {
        return Err("empty lcore list".into());
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
[eal]
lcores = "0,1"
memory = "no-huge"
memory_mb = 256
file_prefix = "t"

[dataplane]
workers = [1]
burst = 32
rx_desc = 512
tx_desc = 512
mempool_mbufs = 8191
mempool_cache = 128

[[port]]
name = "outside"
vdev = "net_null0"

[[port]]
name = "inside"
pci = "0000:01:00.1"

[[pair]]
outside = "outside"
inside = "inside"
"#;

    fn err_of(text: &str) -> String {
        Config::parse(text, "x.toml")
            .expect_err("config must be rejected")
            .to_string()
    }

    fn with(from: &str, to: &str) -> String {
        assert!(GOOD.contains(from), "test edits a line that exists: {from}");
        GOOD.replacen(from, to, 1)
    }

    #[test]
    fn good_config_parses_and_yields_eal_args() {
        let c = Config::parse(GOOD, "x.toml").unwrap();
        let a = c.eal_args();
        assert_eq!(&a[..3], &["-l", "0,1", "--main-lcore=0"]);
        assert!(a.contains(&"--no-huge".to_string()));
        assert!(a.contains(&"--vdev=net_null0".to_string()));
        assert!(a.contains(&"-a0000:01:00.1".to_string()));
        assert!(
            !a.contains(&"--no-pci".to_string()),
            "a PCI port needs the PCI bus"
        );
        assert_eq!(c.ports[0].device_name(), "net_null0");
    }

    /// Every kind of bad config gets its own message naming file, key and problem.
    #[test]
    fn each_bad_config_names_file_key_and_problem() {
        let cases: Vec<(String, &str)> = vec![
            (
                with("burst = 32", "burst = 32\nbrust = 1"),
                "unknown field `brust`",
            ),
            (
                with("burst = 32", "burst = 0"),
                "x.toml: key `dataplane.burst`: must be 1..=256, got 0",
            ),
            (
                with("burst = 32", "burst = \"big\""),
                "invalid type: string \"big\"",
            ),
            (
                with("rx_desc = 512", "rx_desc = 500"),
                "key `dataplane.rx_desc`: must be a power of two >= 32, got 500",
            ),
            (
                with("workers = [1]", "workers = [0]"),
                "key `dataplane.workers`: lcore 0 is the main lcore",
            ),
            (
                with("workers = [1]", "workers = [5]"),
                "key `dataplane.workers`: lcore 5 is not in eal.lcores",
            ),
            (
                with("workers = [1]", "workers = []"),
                "key `dataplane.workers`: at least one worker lcore is needed",
            ),
            (
                with("workers = [1]", "workers = [1, 1]"),
                "lcore 1 is listed twice",
            ),
            (
                with("lcores = \"0,1\"", "lcores = \"0,x\""),
                "key `eal.lcores`: \"x\" is not an lcore number",
            ),
            (
                with("memory_mb = 256\n", ""),
                "key `eal.memory_mb`: required with memory = \"no-huge\"",
            ),
            (
                with("memory = \"no-huge\"", "memory = \"lots\""),
                "unknown variant `lots`",
            ),
            (
                with("file_prefix = \"t\"", "file_prefix = \"a/b\""),
                "key `eal.file_prefix`",
            ),
            (
                with("mempool_mbufs = 8191", "mempool_mbufs = 100"),
                "key `dataplane.mempool_mbufs`: 100 is too small",
            ),
            (
                with("name = \"inside\"", "name = \"outside\""),
                "key `port[1].name`: port name \"outside\" is used twice",
            ),
            (
                with("pci = \"0000:01:00.1\"", "pci = \"01-00\""),
                "key `port[1].pci`: \"01-00\" is not a PCI address",
            ),
            (
                with("pci = \"0000:01:00.1\"", "mtu = 1500"),
                "key `port[1].vdev`: each port needs vdev",
            ),
            (
                with(
                    "vdev = \"net_null0\"",
                    "vdev = \"net_null0\"\npci = \"0000:01:00.0\"",
                ),
                "give either vdev or pci",
            ),
            (
                with("inside = \"inside\"", "inside = \"nope\""),
                "key `pair[0].inside`: no [[port]] named \"nope\"",
            ),
            (
                with("inside = \"inside\"", "inside = \"outside\""),
                "key `pair[0].inside`: port \"outside\" is already wired",
            ),
            (
                GOOD.split("[[pair]]").next().unwrap().to_string(),
                "key `pair`: no [[pair]] defined",
            ),
            ("[eal]\nlcores=\"0\"".to_string(), "missing field"),
        ];
        for (text, want) in cases {
            let e = err_of(&text);
            assert!(e.starts_with("x.toml"), "error must name the file: {e}");
            assert!(e.contains(want), "expected {want:?} in: {e}");
        }
    }

    #[test]
    fn unknown_key_error_gives_line() {
        let e = err_of(&with("burst = 32", "burst = 32\nbrust = 1"));
        assert!(
            e.contains("line 11, column 1"),
            "toml errors carry the line: {e}"
        );
    }

    #[test]
    fn lcore_lists() {
        assert_eq!(parse_lcore_list("0-3").unwrap(), vec![0, 1, 2, 3]);
        assert_eq!(parse_lcore_list("0,2-3").unwrap(), vec![0, 2, 3]);
        assert_eq!(parse_lcore_list("0@0,1@1,2@1").unwrap(), vec![0, 1, 2]);
        assert!(parse_lcore_list("3-1").is_err());
        assert!(parse_lcore_list("1@x").is_err());
        assert!(parse_lcore_list("").is_err());
        let c = Config::parse(&with("lcores = \"0,1\"", "lcores = \"0@0,1@1,2@1\""), "x").unwrap();
        assert_eq!(c.eal_args()[0], "--lcores");
    }

    #[test]
    fn shipped_configs_are_valid() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("configs");
        let mut n = 0;
        for e in std::fs::read_dir(&dir).unwrap() {
            let p = e.unwrap().path();
            if p.extension().is_some_and(|x| x == "toml") {
                Config::load(&p).unwrap_or_else(|e| panic!("{e}"));
                n += 1;
            }
        }
        assert!(n >= 3, "demo, vfio and memif configs ship");
    }
}
