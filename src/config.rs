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
    /// EAL lcore list, e.g. "0,1" or "0-3". The main lcore runs the control side.
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

    /// The EAL argument vector this config stands for.
    pub fn eal_args(&self) -> Vec<String> {
        let mut a = vec![
            "-l".to_string(),
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
