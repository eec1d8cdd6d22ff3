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
    /// `box="<name>"` on every Prometheus sample, so a fleet's boxes stay apart wherever their
    /// series meet (federation, remote write, a shared dashboard); none by default, where the
    /// scraper's `instance` label (host:port) tells boxes apart.
    pub metrics_box: Option<String>,
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
            metrics_box: None,
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

/// Every key has a default (the README lists them), so a section that sets only some keys
/// takes the defaults for the rest.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
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
    /// Level of the operator log on stderr ("error", "warn", "info", "debug", "trace";
    /// default "info"); `--log-level` overrides it.
    pub log_level: Option<log::LevelFilter>,
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
        let need = self.mbufs_for_rings();
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
        if let Some(b) = &c.metrics_box {
            if b.trim().is_empty() || b.len() > 128 || b.chars().any(char::is_control) {
                return bad(
                    "control.metrics_box",
                    format!("{b:?}: give 1 to 128 printable characters (a box name)"),
                );
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

    /// Mbufs the descriptor rings, the workers' bursts and the per-lcore caches can hold at
    /// once: the pool must have at least this many or RX starves.
    pub fn mbufs_for_rings(&self) -> u64 {
        let d = &self.dataplane;
        let queues = d.workers.len() as u64;
        self.ports.len() as u64 * queues * (u64::from(d.rx_desc) + u64::from(d.tx_desc))
            + queues * (d.burst as u64 * 4 + u64::from(d.mempool_cache))
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
        self.lcore_cpus()
            .into_iter()
            .find(|&(l, _)| l == lcore)
            .map_or(lcore, |(_, cpu)| cpu)
    }

    /// Every (lcore, CPU) pair of `eal.lcores`: "2@1" and "2-3@1" put lcores on CPU 1, a bare
    /// lcore runs on the CPU of its own number.
    pub fn lcore_cpus(&self) -> Vec<(u32, u32)> {
        let mut out = Vec::new();
        for part in self.eal.lcores.split(',') {
            let (ls, cpu) = match part.trim().split_once('@') {
                Some((l, c)) => (l, c.trim().parse::<u32>().ok()),
                None => (part, None),
            };
            if let Ok(lcores) = parse_lcore_list(ls) {
                out.extend(lcores.into_iter().map(|l| (l, cpu.unwrap_or(l))));
            }
        }
        out
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

/// What start-up needs from this machine, checked before EAL starts so that each mistake is
/// reported against the config file and key (EAL would dump its usage text for an lcore it
/// does not know, a PMD would fail with a bare "Invalid argument" for a pool too small).
/// `scrubd --check` runs these checks too, so it fails wherever start-up would before the
/// ports start. They only read, except for an empty probe file created and removed at once
/// in the directories scrubd will write to (the only exact test of writability, root included).
impl Config {
    /// Every problem found, in config order; empty when the machine can run this config.
    pub fn check_host(&self, file: &str) -> Vec<ConfigError> {
        let mut errs = Vec::new();
        let mut bad = |key: &str, msg: String| {
            errs.push(ConfigError::Invalid {
                file: file.into(),
                key: key.into(),
                msg,
            })
        };

        // lcores: EAL pins each lcore to its CPU, which must exist and be ours to use.
        let cpus = HostCpus::read();
        let mut reported = HashSet::new();
        for (lcore, cpu) in self.lcore_cpus() {
            if lcore >= dataplane::eal::MAX_LCORE {
                bad(
                    "eal.lcores",
                    format!(
                        "lcore {lcore} is beyond DPDK's {} lcores; number lcores from 0 and map \
                         them onto CPUs with \"lcore@cpu\"",
                        dataplane::eal::MAX_LCORE
                    ),
                );
            } else if !cpus.usable(cpu) && reported.insert(cpu) {
                let on = if cpu == lcore {
                    String::new()
                } else {
                    format!(" (\"{lcore}@{cpu}\")")
                };
                bad(
                    "eal.lcores",
                    format!(
                        "lcore {lcore} runs on CPU {cpu}{on}, which this machine does not offer \
                         (usable CPUs: {}); map lcores onto usable CPUs with \"lcore@cpu\"",
                        cpus.describe()
                    ),
                );
            }
        }
        if let Some(cpu) = self.control.cpu {
            if !cpus.usable(cpu as u32) {
                bad(
                    "control.cpu",
                    format!(
                        "CPU {cpu} is not usable on this machine (usable CPUs: {})",
                        cpus.describe()
                    ),
                );
            }
        }

        // The file prefix: a live DPDK process using it makes EAL fail with a lock error.
        let prefix = dataplane::eal::PrefixFiles::new(&self.eal.file_prefix);
        let live = prefix.live_user().ok().flatten();
        if let Some(pid) = live {
            let who = pid.map(|p| format!(" (pid {p})")).unwrap_or_default();
            bad(
                "eal.file_prefix",
                format!(
                    "a live DPDK process{who} already uses prefix \"{}\" ({}); each DPDK \
                     process on a machine needs its own",
                    self.eal.file_prefix,
                    prefix.runtime_dir().display()
                ),
            );
        }

        // Hugepages: none reserved, or (for "hugepages") no hugetlbfs to put the files in.
        if self.eal.memory != MemoryMode::NoHuge {
            let pages = hugepage_pools();
            let total: u64 = pages.iter().map(|p| p.total * p.size).sum();
            // Files a dead process of our prefix left are reclaimed at start-up.
            let stale: u64 = if live.is_none() {
                prefix
                    .hugepage_files()
                    .iter()
                    .filter_map(|f| std::fs::metadata(f).ok())
                    .map(|m| m.len())
                    .sum()
            } else {
                0
            };
            let free: u64 = pages.iter().map(|p| p.free * p.size).sum::<u64>() + stale;
            let mode = match self.eal.memory {
                MemoryMode::Hugepages => "hugepages",
                _ => "in-memory",
            };
            let mib = |b: u64| b / (1024 * 1024);
            if total == 0 {
                bad(
                    "eal.memory",
                    format!(
                        "\"{mode}\" needs hugepages and none are reserved on this machine: \
                         reserve some (hugepage-setup reserve --pages 1024) or use \"no-huge\""
                    ),
                );
            } else if let Some(want) = self.eal.memory_mb.filter(|&m| u64::from(m) > mib(free)) {
                bad(
                    "eal.memory_mb",
                    format!(
                        "{want} MiB asked but only {} MiB of hugepages are free",
                        mib(free)
                    ),
                );
            } else if free == 0 {
                bad(
                    "eal.memory",
                    format!(
                        "all {} MiB of hugepages are in use by other processes",
                        mib(total)
                    ),
                );
            }
            if self.eal.memory == MemoryMode::Hugepages
                && total > 0
                && dataplane::eal::hugetlbfs_mounts().is_empty()
            {
                bad(
                    "eal.memory",
                    "\"hugepages\" keeps its pages as files in a hugetlbfs and none is mounted \
                     (hugepage-setup reserve mounts one at /dev/hugepages)"
                        .into(),
                );
            }
        }

        // A fleet's shared SYN-cookie key: present, private and long enough.
        if let Some(path) = self
            .pipeline
            .syncookie
            .as_ref()
            .and_then(|sc| sc.shared_key_file.as_ref())
        {
            if let Err(e) = read_shared_key(path) {
                bad(
                    "pipeline.syncookie.shared_key_file",
                    format!("\"{}\": {e}", path.display()),
                );
            }
        }

        // Ports: the files, interfaces and PCI devices their PMDs will open.
        let mut pcap_frames: Vec<(usize, u64)> = Vec::new();
        for (i, p) in self.ports.iter().enumerate() {
            if let Some(v) = &p.vdev {
                let key = format!("port[{i}].vdev");
                let (driver, args) = vdev_parts(v);
                let infinite = args.iter().any(|(k, v)| {
                    *k == "infinite_rx" && v.trim().parse::<i64>().is_ok_and(|n| n > 0)
                });
                for (k, val) in &args {
                    let problem = match (driver, *k) {
                        ("net_pcap" | "eth_pcap", "rx_pcap") => {
                            match count_pcap_frames(Path::new(val)) {
                                Ok(n) => {
                                    if infinite {
                                        pcap_frames.push((i, n));
                                    }
                                    None
                                }
                                Err(e) => Some(e),
                            }
                        }
                        ("net_pcap" | "eth_pcap", "tx_pcap") => {
                            check_output_file(Path::new(val)).err()
                        }
                        (
                            "net_pcap" | "eth_pcap",
                            "iface" | "rx_iface" | "rx_iface_in" | "tx_iface",
                        )
                        | ("net_af_packet" | "eth_af_packet", "iface") => {
                            let sys = Path::new("/sys/class/net").join(val);
                            (Path::new("/sys/class/net").is_dir() && !sys.exists())
                                .then(|| "no such network interface on this machine".to_string())
                        }
                        _ => None,
                    };
                    if let Some(e) = problem {
                        bad(&key, format!("{k} \"{val}\": {e}"));
                    }
                }
            }
            if let Some(pci) = &p.pci {
                if let Err(e) = check_pci_device(pci) {
                    bad(&format!("port[{i}].pci"), e);
                }
            }
        }

        // The pool: with infinite_rx, net_pcap keeps every frame of its capture in mbufs for
        // the whole run, on top of what the rings and caches hold.
        let frames: u64 = pcap_frames.iter().map(|(_, n)| n).sum();
        if frames > 0 {
            let rings = self.mbufs_for_rings();
            let need = rings + frames;
            let have = u64::from(self.dataplane.mempool_mbufs);
            if have < need {
                let per_port = pcap_frames
                    .iter()
                    .map(|(i, n)| format!("port[{i}] {n}"))
                    .collect::<Vec<_>>()
                    .join(", ");
                bad(
                    "dataplane.mempool_mbufs",
                    format!(
                        "{have} is too small: {need} needed ({rings} for the rings and caches, \
                         {frames} for the frames infinite_rx keeps in memory: {per_port})"
                    ),
                );
            }
        }

        // The control socket's directory (created at start-up if missing, one level only).
        let c = &self.control;
        if let Err(e) = check_socket_path(&c.socket) {
            bad("control.socket", e);
        }
        if let Some(addr) = c.metrics_listen {
            if let Err(e) = std::net::TcpListener::bind(addr) {
                bad(
                    "control.metrics_listen",
                    format!("cannot listen on {addr}: {e}"),
                );
            }
        }
        errs
    }
}

/// Start-up failures that get past [`Config::check_host`] (EAL, pool, PMDs), translated into
/// errors that name the config file and the key to change.
impl Config {
    /// A failure of the step configured by `key` (EAL init, the file prefix, the pool).
    pub fn start_error(&self, file: &str, key: &str, e: &dataplane::DpdkError) -> ConfigError {
        use dataplane::DpdkError as E;
        if let E::EalInit { errno, .. } = e {
            // EAL fails the whole init for a vdev whose driver it does not know ("failed to
            // parse device"); name the port whose driver is not one DPDK 22.11 ships.
            if *errno == libc::ENODEV {
                if let Some((i, v)) = self.ports.iter().enumerate().find_map(|(i, p)| {
                    p.vdev
                        .as_deref()
                        .filter(|v| !KNOWN_VDEV_DRIVERS.contains(&vdev_parts(v).0))
                        .map(|v| (i, v))
                }) {
                    return ConfigError::Invalid {
                        file: file.into(),
                        key: format!("port[{i}].vdev"),
                        msg: format!(
                            "no DPDK driver takes \"{}\" (EAL: {e}); virtual devices are named \
                             after their driver, e.g. net_pcap0, net_null0, net_memif0, \
                             net_af_packet0, net_ring0, net_tap0",
                            v.split(',').next().unwrap_or(v)
                        ),
                    };
                }
            }
        }
        let msg = match e {
            E::Mempool { .. } => {
                format!("{e}; lower the count or give EAL more memory (eal.memory_mb, hugepages)")
            }
            E::EalInit { .. } => format!(
                "{e}; the EAL arguments come from [eal] and the ports' vdev/pci keys \
                 (scrubd --check prints them)"
            ),
            _ => e.to_string(),
        };
        ConfigError::Invalid {
            file: file.into(),
            key: key.into(),
            msg,
        }
    }

    /// A failure to start port `i`, against the key that decides it: the device string for a
    /// device that did not probe or has too few queues, the ring sizes, or the pool for a PMD
    /// that rejects its queue setup or start for want of mbufs.
    pub fn port_error(&self, file: &str, i: usize, e: &dataplane::DpdkError) -> ConfigError {
        use dataplane::DpdkError as E;
        let p = &self.ports[i];
        let d = &self.dataplane;
        let dev_key = if p.pci.is_some() {
            format!("port[{i}].pci")
        } else {
            format!("port[{i}].vdev")
        };
        let (key, msg) = match e {
            E::NoSuchPort(name) if p.pci.is_some() => (
                dev_key,
                format!(
                    "DPDK probed no port {name}: is the NIC bound to vfio-pci \
                     (dpdk-devbind.py --status)? The EAL lines above say why it was skipped"
                ),
            ),
            E::NoSuchPort(name) => (
                dev_key,
                format!(
                    "DPDK created no port from \"{}\": the driver does not exist or rejected \
                     its arguments (the PMD's own message is in the lines above; device {name})",
                    p.vdev.as_deref().unwrap_or_default()
                ),
            ),
            E::TooManyQueues {
                kind, max, want, ..
            } => {
                let hint = match vdev_parts(p.vdev.as_deref().unwrap_or_default()).0 {
                    "net_pcap" | "eth_pcap" => {
                        "; net_pcap has one queue per rx_pcap/tx_pcap argument"
                    }
                    _ => "",
                };
                (
                    dev_key,
                    format!(
                        "device {} has {max} {kind} queue(s), dataplane.workers needs {want} \
                         (one per worker){hint}",
                        p.device_name()
                    ),
                )
            }
            E::Descriptors { kind, .. } => (
                if *kind == "RX" {
                    "dataplane.rx_desc".to_string()
                } else {
                    "dataplane.tx_desc".to_string()
                },
                e.to_string(),
            ),
            E::Port { what, errno, .. }
                if matches!(*what, "rx_queue_setup" | "dev_start")
                    && [libc::EINVAL, libc::ENOMEM, libc::ENOBUFS].contains(errno) =>
            {
                (
                    "dataplane.mempool_mbufs".to_string(),
                    format!(
                        "{} mbufs are too few for port[{i}] ({}): {e}; the ring sizes are within \
                         the device's limits, so its PMD wants more mbufs (its line above says \
                         how many)",
                        d.mempool_mbufs,
                        p.device_name()
                    ),
                )
            }
            E::Port {
                what: "set_mtu", ..
            } => (format!("port[{i}].mtu"), e.to_string()),
            _ => (dev_key, e.to_string()),
        };
        ConfigError::Invalid {
            file: file.into(),
            key,
            msg,
        }
    }
}

/// Virtual network drivers (and their `eth_` aliases) in DPDK 22.11, used only to say which
/// port EAL's "No such device" is about.
const KNOWN_VDEV_DRIVERS: &[&str] = &[
    "net_af_packet",
    "eth_af_packet",
    "net_af_xdp",
    "net_bonding",
    "eth_bond",
    "net_failsafe",
    "net_kni",
    "net_memif",
    "net_null",
    "eth_null",
    "net_pcap",
    "eth_pcap",
    "net_ring",
    "eth_ring",
    "net_tap",
    "net_tun",
    "net_vhost",
    "eth_vhost",
    "net_virtio_user",
    "net_vdev_netvsc",
];

/// CPUs this process may run on: online on the machine and in its affinity mask.
struct HostCpus {
    usable: Option<Vec<u32>>,
}

impl HostCpus {
    fn read() -> HostCpus {
        let online = std::fs::read_to_string("/sys/devices/system/cpu/online")
            .ok()
            .and_then(|t| parse_cpu_list(t.trim()));
        let allowed = std::fs::read_to_string("/proc/self/status")
            .ok()
            .and_then(|t| {
                t.lines()
                    .find_map(|l| l.strip_prefix("Cpus_allowed_list:"))
                    .and_then(|v| parse_cpu_list(v.trim()))
            });
        let usable = match (online, allowed) {
            (Some(o), Some(a)) => Some(o.into_iter().filter(|c| a.contains(c)).collect()),
            (o, a) => o.or(a),
        };
        HostCpus { usable }
    }

    /// Unknown (no /sys, no /proc) counts as usable: EAL will say.
    fn usable(&self, cpu: u32) -> bool {
        self.usable.as_ref().is_none_or(|u| u.contains(&cpu))
    }

    fn describe(&self) -> String {
        match &self.usable {
            Some(u) => compact_cpu_list(u),
            None => "unknown".into(),
        }
    }
}

/// "0-3,5" into [0, 1, 2, 3, 5] (the kernel's cpulist format).
fn parse_cpu_list(s: &str) -> Option<Vec<u32>> {
    let mut out = Vec::new();
    for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        match part.split_once('-') {
            Some((a, b)) => out.extend(a.parse::<u32>().ok()?..=b.parse::<u32>().ok()?),
            None => out.push(part.parse().ok()?),
        }
    }
    Some(out)
}

fn compact_cpu_list(cpus: &[u32]) -> String {
    let mut parts = Vec::new();
    let mut i = 0;
    while i < cpus.len() {
        let mut j = i;
        while j + 1 < cpus.len() && cpus[j + 1] == cpus[j] + 1 {
            j += 1;
        }
        parts.push(if i == j {
            cpus[i].to_string()
        } else {
            format!("{}-{}", cpus[i], cpus[j])
        });
        i = j + 1;
    }
    parts.join(",")
}

/// One hugepage size: page size in bytes, pages reserved, pages free.
struct HugePool {
    size: u64,
    total: u64,
    free: u64,
}

fn hugepage_pools() -> Vec<HugePool> {
    let Ok(dir) = std::fs::read_dir("/sys/kernel/mm/hugepages") else {
        return Vec::new();
    };
    let read = |p: &Path, f: &str| {
        std::fs::read_to_string(p.join(f))
            .ok()
            .and_then(|t| t.trim().parse::<u64>().ok())
            .unwrap_or(0)
    };
    dir.flatten()
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            let kib = name
                .strip_prefix("hugepages-")?
                .strip_suffix("kB")?
                .parse::<u64>()
                .ok()?;
            let p = e.path();
            Some(HugePool {
                size: kib * 1024,
                total: read(&p, "nr_hugepages"),
                free: read(&p, "free_hugepages"),
            })
        })
        .collect()
}

/// Bytes of key material a fleet's shared SYN-cookie key must hold at least, and at most.
pub const SHARED_KEY_MIN: usize = 16;
pub const SHARED_KEY_MAX: usize = 64;

/// Reads a fleet's shared SYN-cookie key (`[pipeline.syncookie] shared_key_file`): a regular
/// file owned by root or by the user scrubd runs as, with no group or other permission bits
/// (0600 or 0400), holding 16 to 64 bytes written as hex digits (32 to 128 of them, upper or
/// lower case; surrounding whitespace and a final newline are ignored), e.g. made with
/// `openssl rand -hex 32`. Hex so the file survives copying through text tools and
/// configuration management. The error says what is wrong and never shows the key's content.
pub fn read_shared_key(path: &Path) -> Result<Vec<u8>, String> {
    use std::os::unix::fs::MetadataExt;
    let meta = std::fs::metadata(path).map_err(|e| e.to_string())?;
    if !meta.is_file() {
        return Err("is not a regular file".into());
    }
    // The owner of /proc/self is this process's effective uid: no syscall wrapper needed.
    let me = std::fs::metadata("/proc/self")
        .map(|m| m.uid())
        .map_err(|e| format!("cannot tell which user scrubd runs as (/proc/self: {e})"))?;
    if meta.uid() != 0 && meta.uid() != me {
        return Err(format!(
            "is owned by uid {}; a key file must belong to root or to the user scrubd runs as              (uid {me})",
            meta.uid()
        ));
    }
    let mode = meta.mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(format!(
            "has mode {mode:04o}; a key file must not be readable or writable by group or              others (chmod 600)"
        ));
    }
    // A key is a line of hex; anything much longer is the wrong file.
    if meta.len() > 4096 {
        return Err(format!(
            "is {} bytes long; expected one line of {}..={} hex digits",
            meta.len(),
            2 * SHARED_KEY_MIN,
            2 * SHARED_KEY_MAX
        ));
    }
    let text = std::fs::read(path).map_err(|e| e.to_string())?;
    let digits = text.trim_ascii();
    let expect = format!(
        "{}..={} hex digits ({SHARED_KEY_MIN}..={SHARED_KEY_MAX} bytes, e.g. from          `openssl rand -hex 32`)",
        2 * SHARED_KEY_MIN,
        2 * SHARED_KEY_MAX
    );
    if let Some(at) = digits.iter().position(|c| !c.is_ascii_hexdigit()) {
        return Err(format!(
            "is not hex: a non-hex character at offset {at}; expected {expect}"
        ));
    }
    if digits.len() % 2 != 0
        || digits.len() < 2 * SHARED_KEY_MIN
        || digits.len() > 2 * SHARED_KEY_MAX
    {
        return Err(format!(
            "holds {} hex digits; expected {expect}",
            digits.len()
        ));
    }
    let nibble = |c: u8| (c as char).to_digit(16).unwrap_or(0) as u8;
    Ok(digits
        .chunks_exact(2)
        .map(|p| nibble(p[0]) << 4 | nibble(p[1]))
        .collect())
}

/// The driver part of a vdev name ("net_pcap0" -> "net_pcap") and its `key=value` arguments.
fn vdev_parts(vdev: &str) -> (&str, Vec<(&str, &str)>) {
    let mut it = vdev.split(',');
    let name = it.next().unwrap_or("").trim();
    let driver = name.trim_end_matches(|c: char| c.is_ascii_digit());
    let args = it
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (k.trim(), v.trim()))
        .collect();
    (driver, args)
}

/// Frames in a pcap or pcapng capture (read record headers only), or why libpcap would not
/// open it.
fn count_pcap_frames(path: &Path) -> Result<u64, String> {
    use std::io::{Read, Seek, SeekFrom};
    let f = std::fs::File::open(path).map_err(|e| e.to_string())?;
    if f.metadata().is_ok_and(|m| m.is_dir()) {
        return Err("is a directory, not a capture file".into());
    }
    let len = f.metadata().map(|m| m.len()).unwrap_or(0);
    let mut r = std::io::BufReader::new(f);
    let mut head = [0u8; 24];
    r.read_exact(&mut head)
        .map_err(|_| "too short to be a pcap file".to_string())?;
    let magic = u32::from_le_bytes([head[0], head[1], head[2], head[3]]);
    let mut frames = 0u64;
    match magic {
        0xa1b2_c3d4 | 0xa1b2_3c4d | 0xd4c3_b2a1 | 0x4d3c_b2a1 => {
            let le = matches!(magic, 0xa1b2_c3d4 | 0xa1b2_3c4d);
            let mut pos = 24u64;
            let mut rec = [0u8; 16];
            while pos < len {
                if r.read_exact(&mut rec).is_err() {
                    break; // a cut-off last record: libpcap stops there too
                }
                let b = [rec[8], rec[9], rec[10], rec[11]];
                let incl = if le {
                    u32::from_le_bytes(b)
                } else {
                    u32::from_be_bytes(b)
                };
                pos += 16 + u64::from(incl);
                if pos > len {
                    break;
                }
                frames += 1;
                r.seek(SeekFrom::Start(pos)).map_err(|e| e.to_string())?;
            }
        }
        0x0a0d_0d0a => {
            // pcapng: blocks of (type, total length, ..., total length); the section header's
            // byte-order magic says the endianness. Packets are EPB (6), SPB (3), PB (2).
            let bom = u32::from_le_bytes([head[8], head[9], head[10], head[11]]);
            let le = bom == 0x1a2b_3c4d;
            let word = |b: [u8; 4]| {
                if le {
                    u32::from_le_bytes(b)
                } else {
                    u32::from_be_bytes(b)
                }
            };
            let mut pos = 0u64;
            r.seek(SeekFrom::Start(0)).map_err(|e| e.to_string())?;
            let mut hdr = [0u8; 8];
            while pos + 8 <= len {
                r.read_exact(&mut hdr).map_err(|e| e.to_string())?;
                let ty = word([hdr[0], hdr[1], hdr[2], hdr[3]]);
                let blen = u64::from(word([hdr[4], hdr[5], hdr[6], hdr[7]]));
                if blen < 12 || pos + blen > len {
                    break;
                }
                if matches!(ty, 2 | 3 | 6) {
                    frames += 1;
                }
                pos += blen;
                r.seek(SeekFrom::Start(pos)).map_err(|e| e.to_string())?;
            }
        }
        _ => return Err(format!("not a pcap or pcapng file (magic {magic:#010x})")),
    }
    Ok(frames)
}

/// A file the PMD will create or append to: its directory must exist and take new files.
fn check_output_file(path: &Path) -> Result<(), String> {
    if path.is_dir() {
        return Err("is a directory".into());
    }
    if path.exists() {
        return std::fs::OpenOptions::new()
            .append(true)
            .open(path)
            .map(drop)
            .map_err(|e| format!("cannot be written: {e}"));
    }
    let dir = parent_dir(path);
    if !dir.is_dir() {
        return Err(format!("directory {} does not exist", dir.display()));
    }
    probe_writable(dir).map_err(|e| format!("cannot create files in {}: {e}", dir.display()))
}

/// The directory a relative or absolute path's file lives in ("." for a bare name).
fn parent_dir(path: &Path) -> &Path {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
}

/// Creates and removes an empty file in `dir`: the one exact test of whether this process
/// may create files there (permissions, read-only mounts, sysfs, root or not).
fn probe_writable(dir: &Path) -> std::io::Result<()> {
    let probe = dir.join(format!(".scrubd-check-{}", std::process::id()));
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&probe)?;
    std::fs::remove_file(&probe)
}

/// The control socket: its directory exists and takes files, or can be created (start-up
/// creates the last level only), and no scrubd answers on it already.
fn check_socket_path(socket: &Path) -> Result<(), String> {
    let dir = parent_dir(socket);
    if dir.is_dir() {
        probe_writable(dir)
            .map_err(|e| format!("cannot create the socket in {}: {e}", dir.display()))?;
    } else if dir.exists() {
        return Err(format!("{} is not a directory", dir.display()));
    } else {
        let up = parent_dir(dir);
        if !up.is_dir() {
            return Err(format!(
                "neither {} nor {} exists (scrubd creates only the last directory)",
                dir.display(),
                up.display()
            ));
        }
        probe_writable(up)
            .map_err(|e| format!("cannot create directory {}: {e}", dir.display()))?;
    }
    if std::os::unix::net::UnixStream::connect(socket).is_ok() {
        return Err(format!(
            "{} is in use: another scrubd is listening on it",
            socket.display()
        ));
    }
    Ok(())
}

/// A PCI address names a device on this machine that DPDK can drive: bound to a user-space
/// I/O driver (vfio-pci, uio) or to a bifurcated kernel driver (mlx4/mlx5).
fn check_pci_device(pci: &str) -> Result<(), String> {
    let root = Path::new("/sys/bus/pci/devices");
    if !root.is_dir() {
        return Ok(()); // no sysfs PCI view here: EAL will say
    }
    let full = if pci.matches(':').count() == 1 {
        format!("0000:{pci}")
    } else {
        pci.to_string()
    }
    .to_ascii_lowercase();
    let dev = root.join(&full);
    if !dev.exists() {
        return Err(format!(
            "no PCI device {full} on this machine (dpdk-devbind.py --status lists them)"
        ));
    }
    let driver = std::fs::read_link(dev.join("driver"))
        .ok()
        .and_then(|l| l.file_name().map(|n| n.to_string_lossy().into_owned()));
    const USABLE: [&str; 5] = [
        "vfio-pci",
        "uio_pci_generic",
        "igb_uio",
        "mlx4_core",
        "mlx5_core",
    ];
    match driver {
        None => Err(format!(
            "PCI device {full} is bound to no driver: dpdk-devbind.py --bind=vfio-pci {full}"
        )),
        Some(d) if !USABLE.contains(&d.as_str()) && dev.join("net").is_dir() => Err(format!(
            "PCI device {full} is driven by the kernel's {d} driver, which DPDK cannot share: \
             dpdk-devbind.py --bind=vfio-pci {full}"
        )),
        Some(_) => Ok(()),
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

    /// Issue 9: the README gives a default per `[dataplane]` key, so a section that sets only
    /// some keys takes the rest from the defaults instead of failing on "missing field".
    #[test]
    fn run_log_level_is_a_level_name() {
        let with = |v: &str| format!("{GOOD}\n[run]\nlog_level = {v}\n");
        let c = Config::parse(&with("\"debug\""), "x.toml").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(c.run.log_level, Some(log::LevelFilter::Debug));
        let e = Config::parse(&with("\"loud\""), "x.toml")
            .unwrap_err()
            .to_string();
        assert!(e.contains("x.toml") && e.contains("log_level"), "{e}");
    }

    #[test]
    fn partial_sections_take_defaults_per_key() {
        let only_workers = GOOD.replace(
            "burst = 32\nrx_desc = 512\ntx_desc = 512\nmempool_mbufs = 8191\nmempool_cache = 128\n",
            "",
        );
        assert!(!only_workers.contains("burst"), "the test removes the keys");
        let c = Config::parse(&only_workers, "x.toml").unwrap_or_else(|e| panic!("{e}"));
        let def = DataplaneConfig::default();
        assert_eq!(c.dataplane.workers, vec![1]);
        assert_eq!(
            (
                c.dataplane.burst,
                c.dataplane.rx_desc,
                c.dataplane.tx_desc,
                c.dataplane.mempool_mbufs,
                c.dataplane.mempool_cache
            ),
            (32, 1024, 1024, 16383, 256),
            "README defaults"
        );
        assert_eq!(c.dataplane.mempool_mbufs, def.mempool_mbufs);
        // One key set, the others default; an unknown key is still an error.
        let only_burst = only_workers.replace("workers = [1]", "burst = 64");
        let c = Config::parse(&only_burst, "x.toml").unwrap();
        assert_eq!(
            (c.dataplane.burst, c.dataplane.workers.clone()),
            (64, vec![1])
        );
        let typo = only_workers.replace("workers = [1]", "workers = [1]\nbrust = 3");
        assert!(err_of(&typo).contains("unknown field `brust`"));
        // The other sections with documented defaults: [control], [run], [pipeline.*].
        let partial = format!(
            "{GOOD}\n[run]\nduration_s = 2\n\n[control]\nstats_interval_ms = 50\n\n\
             [pipeline.syncookie]\nprotected = [\"192.0.2.0/24\"]\n\n\
             [pipeline.ratelimit]\nsource_prefix_v4 = 24\n"
        );
        let c = Config::parse(&partial, "x.toml").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(c.control.stats_interval_ms, 50);
        assert_eq!(c.control.socket, ControlConfig::default().socket);
        assert_eq!(c.run.duration_s, Some(2.0));
        assert!(c.pipeline.syncookie.is_some() && c.pipeline.ratelimit.is_some());
    }

    #[test]
    fn lcore_cpu_mapping() {
        let c =
            Config::parse(&with("lcores = \"0,1\"", "lcores = \"0,1,2@1,3-4@0\""), "x").unwrap();
        assert_eq!(c.lcore_cpus(), vec![(0, 0), (1, 1), (2, 1), (3, 0), (4, 0)]);
        assert_eq!(c.lcore_cpu(2), 1);
        assert_eq!(c.lcore_cpu(1), 1);
    }

    #[test]
    fn cpu_lists_round_trip() {
        assert_eq!(parse_cpu_list("0-2,5"), Some(vec![0, 1, 2, 5]));
        assert_eq!(parse_cpu_list("x"), None);
        assert_eq!(compact_cpu_list(&[0, 1, 2, 5, 7, 8]), "0-2,5,7-8");
        let cpus = HostCpus {
            usable: Some(vec![0, 1]),
        };
        assert!(cpus.usable(1) && !cpus.usable(2));
    }

    #[test]
    fn vdev_arguments_split() {
        let (d, a) = vdev_parts("net_pcap12,rx_pcap=a.pcap, tx_pcap = b.pcap,infinite_rx=1");
        assert_eq!(d, "net_pcap");
        assert_eq!(
            a,
            vec![
                ("rx_pcap", "a.pcap"),
                ("tx_pcap", "b.pcap"),
                ("infinite_rx", "1")
            ]
        );
    }

    /// Classic pcap in both byte orders and pcapng are counted frame by frame; anything else is
    /// refused with its magic.
    #[test]
    fn pcap_frames_are_counted() {
        let dir = std::env::temp_dir().join(format!("scrubd-cfg-pcap-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let frame = [0u8; 60];
        for big_endian in [false, true] {
            let w32 = |v: u32| {
                if big_endian {
                    v.to_be_bytes()
                } else {
                    v.to_le_bytes()
                }
            };
            let w16 = |v: u16| {
                if big_endian {
                    v.to_be_bytes()
                } else {
                    v.to_le_bytes()
                }
            };
            let mut b = Vec::new();
            b.extend(w32(0xa1b2_c3d4));
            b.extend(w16(2));
            b.extend(w16(4));
            b.extend([0u8; 8]);
            b.extend(w32(65535));
            b.extend(w32(1));
            for i in 0..7u32 {
                b.extend(w32(0));
                b.extend(w32(i));
                b.extend(w32(60));
                b.extend(w32(60));
                b.extend(frame);
            }
            b.extend([0u8; 10]); // a cut-off record is not a frame
            let p = dir.join("c.pcap");
            std::fs::write(&p, &b).unwrap();
            assert_eq!(count_pcap_frames(&p), Ok(7), "big endian: {big_endian}");
        }
        // pcapng: section header, interface description, 3 enhanced packet blocks.
        let mut b = Vec::new();
        let block = |b: &mut Vec<u8>, ty: u32, body: &[u8]| {
            let len = 12 + body.len() as u32;
            b.extend(ty.to_le_bytes());
            b.extend(len.to_le_bytes());
            b.extend(body);
            b.extend(len.to_le_bytes());
        };
        block(
            &mut b,
            0x0a0d_0d0a,
            &[
                0x4d, 0x3c, 0x2b, 0x1a, 1, 0, 0, 0, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
            ],
        );
        block(&mut b, 1, &[1, 0, 0, 0, 0, 0, 0, 0]);
        for _ in 0..3 {
            let mut body = vec![0u8; 20];
            body.extend(frame);
            block(&mut b, 6, &body);
        }
        let p = dir.join("c.pcapng");
        std::fs::write(&p, &b).unwrap();
        assert_eq!(count_pcap_frames(&p), Ok(3));
        std::fs::write(&p, b"not a capture at all, really not").unwrap();
        assert!(count_pcap_frames(&p).unwrap_err().contains("not a pcap"));
        assert!(count_pcap_frames(&dir.join("missing.pcap"))
            .unwrap_err()
            .contains("No such file"));
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// Start-up failures after EAL are reported against the key that decides them.
    #[test]
    fn start_failures_name_the_key() {
        use dataplane::DpdkError as E;
        let c = Config::parse(GOOD, "x.toml").unwrap();
        let port = |what: &'static str, errno: i32| E::Port {
            port: 0,
            name: "net_null0".into(),
            what,
            msg: "Invalid argument".into(),
            errno,
        };
        let cases: Vec<(usize, E, &str)> =
            vec![
            (
                0,
                port("rx_queue_setup", libc::EINVAL),
                "x.toml: key `dataplane.mempool_mbufs`: 8191 mbufs are too few for port[0]",
            ),
            (0, port("dev_start", libc::ENOMEM), "key `dataplane.mempool_mbufs`"),
            (0, port("set_mtu", libc::EINVAL), "key `port[0].mtu`"),
            (0, port("dev_configure", libc::EINVAL), "key `port[0].vdev`"),
            (
                0,
                E::NoSuchPort("net_null0".into()),
                "key `port[0].vdev`: DPDK created no port from \"net_null0\"",
            ),
            (
                1,
                E::NoSuchPort("0000:01:00.1".into()),
                "key `port[1].pci`: DPDK probed no port 0000:01:00.1",
            ),
            (
                0,
                E::TooManyQueues {
                    port: 0,
                    name: "net_null0".into(),
                    kind: "RX",
                    max: 1,
                    want: 2,
                },
                "key `port[0].vdev`: device net_null0 has 1 RX queue(s), dataplane.workers needs 2",
            ),
            (
                0,
                E::Descriptors {
                    port: 0,
                    name: "net_null0".into(),
                    kind: "TX",
                    want: 4096,
                    min: 64,
                    max: 2048,
                    align: 32,
                },
                "key `dataplane.tx_desc`: port 0 (net_null0) takes 64..=2048 TX descriptors",
            ),
        ];
        for (i, e, want) in cases {
            let got = c.port_error("x.toml", i, &e).to_string();
            assert!(got.contains(want), "expected {want:?} in: {got}");
        }
        let eal = E::EalInit {
            msg: "No such device".into(),
            args: "...".into(),
            errno: libc::ENODEV,
        };
        let c2 = Config::parse(
            &with("vdev = \"net_null0\"", "vdev = \"net_nope0\""),
            "x.toml",
        )
        .unwrap();
        let got = c2.start_error("x.toml", "eal", &eal).to_string();
        assert!(
            got.contains("key `port[0].vdev`: no DPDK driver takes \"net_nope0\""),
            "{got}"
        );
        // With every driver known, the error stays with [eal].
        assert!(c
            .start_error("x.toml", "eal", &eal)
            .to_string()
            .contains("key `eal`"));
    }

    /// A key file in a fresh directory with `content` and `mode`.
    fn key_file(name: &str, content: &[u8], mode: u32) -> PathBuf {
        use std::os::unix::fs::PermissionsExt;
        let dir = std::env::temp_dir().join(format!("scrubd-key-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("cookie.key");
        std::fs::write(&p, content).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).unwrap();
        p
    }

    /// What check_host says about the shared key, with `path` as the key file.
    fn key_errors(path: &Path) -> Vec<String> {
        let text = format!(
            "{GOOD}\n[pipeline.syncookie]\nprotected = [\"192.0.2.0/24\"]\nshared_key_file = {:?}\n",
            path.display().to_string()
        );
        let c = Config::parse(&text, "x.toml").unwrap();
        c.check_host("x.toml")
            .into_iter()
            .map(|e| e.to_string())
            .filter(|e| e.contains("shared_key_file"))
            .collect()
    }

    const KEY_HEX: &[u8] = b"00112233445566778899aabbccddeeff0123456789ABCDEF0123456789abcdef\n";

    #[test]
    fn shared_key_file_is_read_as_hex() {
        let p = key_file("good", KEY_HEX, 0o600);
        assert_eq!(key_errors(&p), Vec::<String>::new());
        let k = read_shared_key(&p).unwrap();
        assert_eq!(k.len(), 32);
        assert_eq!(&k[..4], &[0x00, 0x11, 0x22, 0x33]);
        assert_eq!(&k[24..], &[0x01, 0x23, 0x45, 0x67, 0x89, 0xab, 0xcd, 0xef]);
        // Read-only is fine too, and exactly 16 bytes is enough.
        let p = key_file("ro16", b"00112233445566778899aabbccddeeff", 0o400);
        assert_eq!(read_shared_key(&p).unwrap().len(), 16);
    }

    #[test]
    fn shared_key_file_problems_name_file_and_key() {
        let cases: [(&str, &[u8], u32, &str); 5] = [
            ("group", KEY_HEX, 0o640, "has mode 0640"),
            ("other", KEY_HEX, 0o604, "has mode 0604"),
            (
                "short",
                b"00112233445566778899aabbccddee\n",
                0o600,
                "holds 30 hex digits",
            ),
            (
                "odd",
                b"00112233445566778899aabbccddeeff0\n",
                0o600,
                "holds 33 hex digits",
            ),
            (
                "nothex",
                b"00112233445566778899aabbccddeeffzz\n",
                0o600,
                "non-hex character at offset 32",
            ),
        ];
        for (name, content, mode, want) in cases {
            let p = key_file(name, content, mode);
            let errs = key_errors(&p);
            assert_eq!(errs.len(), 1, "{name}: {errs:?}");
            let e = &errs[0];
            assert!(e.contains(want), "{name}: {e}");
            assert!(
                e.contains("x.toml") && e.contains("pipeline.syncookie.shared_key_file"),
                "{e}"
            );
            assert!(e.contains(&p.display().to_string()), "{e}");
            // The key itself never appears.
            assert!(!e.contains("00112233"), "{e}");
        }
        let dir = key_file("dir", KEY_HEX, 0o600)
            .parent()
            .unwrap()
            .to_path_buf();
        let missing = dir.join("absent.key");
        let e = key_errors(&missing).join("\n");
        assert!(
            e.contains("No such file") && e.contains("absent.key"),
            "{e}"
        );
        let e = key_errors(&dir).join("\n");
        assert!(e.contains("is not a regular file"), "{e}");
    }

    #[test]
    fn shared_key_file_owned_by_someone_else_is_refused() {
        let p = key_file("owner", KEY_HEX, 0o600);
        let me = std::fs::metadata("/proc/self")
            .map(|m| std::os::unix::fs::MetadataExt::uid(&m))
            .unwrap();
        if me != 0 {
            // Only root can give a file away; as anyone else our own file must pass.
            assert_eq!(key_errors(&p), Vec::<String>::new());
            return;
        }
        std::os::unix::fs::chown(&p, Some(65534), None).unwrap();
        let e = key_errors(&p).join("\n");
        assert!(e.contains("is owned by uid 65534"), "{e}");
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
