//! Traffic profiles: which classes, by weight, and how they look (sizes, IPv6 share, VLAN).
//!
//! ```toml
//! sizes = "imix"       # "64", "imix" (7:4:1 of 64/594/1518 B on the wire) or a frame size
//! ipv6 = 0.25          # share of IPv6 frames among the classes that have both families
//! vlan = 100           # optional: an 802.1Q tag with this id on every frame
//! clients = 256        # legitimate client addresses (each authenticates once)
//! data_segments = 2    # data segments a legitimate client sends once its SYN is through
//!
//! [weights]            # relative shares of newly generated packets
//! legit-tcp = 10       # a new client connection (SYN; RST, SYN again and data follow)
//! syn-flood = 40
//! ack-flood = 20
//! udp-reflection = 20  # from ports 53, 123, 11211, 389, 1900, with their answers' sizes
//! icmp-flood = 5
//! signature-hit = 2
//! signature-miss = 3
//! replay = 0           # frames of [replay] pcap, in order, looping
//!
//! [replay]
//! pcap = "../shared/pcaps/tcpdump/some.pcap"   # relative to the profile file
//! ```
//!
//! The rate and duration are the command line's, so one profile serves a short CI run and a
//! long measurement alike. Frames of "fixed size" classes (SYN, ACK floods: header-only; UDP
//! reflection: the size of the service's answer) ignore `sizes`.

use serde::Deserialize;
use std::path::{Path, PathBuf};

/// A profile file's problem, naming the file and, where there is one, the key.
#[derive(Debug, thiserror::Error)]
pub enum ProfileError {
    #[error("{path}: {msg}")]
    Io { path: PathBuf, msg: String },
    #[error("{path}: {msg}")]
    Toml { path: PathBuf, msg: String },
    #[error("{path}: {key}: {msg}")]
    Invalid {
        path: PathBuf,
        key: String,
        msg: String,
    },
}

/// Frame sizes (without the 4-byte FCS, as DPDK counts them).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Sizes {
    Fixed(u16),
    /// The simple IMIX: 7 × 60, 4 × 590, 1 × 1514 bytes.
    Imix,
}

impl Sizes {
    /// Frame size for the `k`-th draw (k from the generator's RNG).
    pub fn pick(self, k: u64) -> usize {
        match self {
            Sizes::Fixed(n) => usize::from(n),
            Sizes::Imix => match k % 12 {
                0..=6 => 60,
                7..=10 => 590,
                _ => 1514,
            },
        }
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct Raw {
    sizes: Option<toml::Value>,
    ipv6: Option<f64>,
    vlan: Option<u16>,
    clients: Option<u32>,
    data_segments: Option<u32>,
    #[serde(default)]
    weights: Weights,
    replay: Option<RawReplay>,
}

#[derive(Debug, Default, Deserialize, Clone, Copy, PartialEq)]
#[serde(deny_unknown_fields, rename_all = "kebab-case", default)]
pub struct Weights {
    pub legit_tcp: u32,
    pub syn_flood: u32,
    pub ack_flood: u32,
    pub udp_reflection: u32,
    pub icmp_flood: u32,
    pub signature_hit: u32,
    pub signature_miss: u32,
    pub replay: u32,
}

impl Weights {
    /// The weights in the order of the generator's draw ([`super::build::Gen::next`]): legit
    /// TCP, SYN flood, ACK flood, UDP reflection, ICMP flood, signature hit and miss, replay.
    pub fn in_order(&self) -> [u32; 8] {
        [
            self.legit_tcp,
            self.syn_flood,
            self.ack_flood,
            self.udp_reflection,
            self.icmp_flood,
            self.signature_hit,
            self.signature_miss,
            self.replay,
        ]
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawReplay {
    pcap: PathBuf,
}

/// A checked profile.
#[derive(Clone, Debug)]
pub struct Profile {
    /// The file's stem, used to name results.
    pub name: String,
    pub sizes: Sizes,
    pub ipv6: f64,
    pub vlan: Option<u16>,
    pub clients: u32,
    pub data_segments: u32,
    pub weights: Weights,
    /// Frames of the replayed capture (empty without `[replay]`).
    pub replay: Vec<Vec<u8>>,
}

/// Largest frame the generator builds (and accepts as `sizes`).
pub const MAX_SIZE: u16 = 1514;

impl Profile {
    pub fn load(path: &Path) -> Result<Profile, ProfileError> {
        let text = std::fs::read_to_string(path).map_err(|e| ProfileError::Io {
            path: path.into(),
            msg: e.to_string(),
        })?;
        let name = path
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_else(|| "profile".into());
        Profile::parse(&text, &name, path)
    }

    /// Parse profile `text`; `path` names the file in errors and anchors `[replay] pcap`.
    pub fn parse(text: &str, name: &str, path: &Path) -> Result<Profile, ProfileError> {
        let raw: Raw = toml::from_str(text).map_err(|e| ProfileError::Toml {
            path: path.into(),
            msg: e.to_string(),
        })?;
        let invalid = |key: &str, msg: String| ProfileError::Invalid {
            path: path.into(),
            key: key.into(),
            msg,
        };
        let sizes = match &raw.sizes {
            None => Sizes::Fixed(60),
            Some(toml::Value::String(s)) if s == "imix" => Sizes::Imix,
            Some(toml::Value::String(s)) if s == "64" => Sizes::Fixed(60),
            Some(toml::Value::Integer(n)) if (60..=i64::from(MAX_SIZE)).contains(n) => {
                Sizes::Fixed(*n as u16)
            }
            Some(v) => {
                return Err(invalid(
                    "sizes",
                    format!("{v} is not \"64\", \"imix\" or a frame size in 60..={MAX_SIZE}"),
                ))
            }
        };
        let ipv6 = raw.ipv6.unwrap_or(0.0);
        if !(0.0..=1.0).contains(&ipv6) {
            return Err(invalid("ipv6", format!("{ipv6} is not a share in 0..=1")));
        }
        if let Some(v) = raw.vlan {
            if v == 0 || v > 4094 {
                return Err(invalid("vlan", format!("{v} is not a VLAN id in 1..=4094")));
            }
        }
        let clients = raw.clients.unwrap_or(256);
        if clients == 0 || clients > 65536 {
            return Err(invalid(
                "clients",
                format!("{clients} is outside 1..=65536"),
            ));
        }
        let data_segments = raw.data_segments.unwrap_or(2);
        if data_segments > 64 {
            return Err(invalid(
                "data_segments",
                format!("{data_segments} is above 64"),
            ));
        }
        let w = raw.weights;
        let total = w.in_order().iter().map(|&v| u64::from(v)).sum::<u64>();
        if total == 0 {
            return Err(invalid(
                "weights",
                "every weight is 0: nothing to send".into(),
            ));
        }
        let replay = match (&raw.replay, w.replay) {
            (None, 0) => Vec::new(),
            (None, _) => {
                return Err(invalid(
                    "weights.replay",
                    "is above 0 but there is no [replay] pcap".into(),
                ))
            }
            (Some(r), _) => {
                let p = if r.pcap.is_absolute() {
                    r.pcap.clone()
                } else {
                    path.parent().unwrap_or(Path::new(".")).join(&r.pcap)
                };
                let frames = pipeline::testutil::read_frames(&p)
                    .map_err(|e| invalid("replay.pcap", format!("{}: {e}", p.display())))?;
                let frames: Vec<Vec<u8>> = frames
                    .into_iter()
                    .filter(|f| f.len() >= 14 && f.len() <= usize::from(MAX_SIZE) + 4)
                    .collect();
                if frames.is_empty() && w.replay > 0 {
                    return Err(invalid(
                        "replay.pcap",
                        format!("{}: no Ethernet frame of 14..=1518 bytes", p.display()),
                    ));
                }
                frames
            }
        };
        Ok(Profile {
            name: name.into(),
            sizes,
            ipv6,
            vlan: raw.vlan,
            clients,
            data_segments,
            weights: w,
            replay,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(t: &str) -> Result<Profile, ProfileError> {
        Profile::parse(t, "t", Path::new("/p/t.toml"))
    }

    #[test]
    fn full_profile_parses() {
        let p = parse(
            "sizes = \"imix\"\nipv6 = 0.5\nvlan = 7\nclients = 10\ndata_segments = 3\n\
             [weights]\nlegit-tcp = 1\nsyn-flood = 2\nicmp-flood = 3\n",
        )
        .unwrap();
        assert_eq!(p.sizes, Sizes::Imix);
        assert_eq!(p.vlan, Some(7));
        assert_eq!(p.weights.syn_flood, 2);
        assert_eq!(p.weights.icmp_flood, 3);
        assert!(p.replay.is_empty());
    }

    #[test]
    fn errors_name_the_key() {
        for (text, key) in [
            ("sizes = 20\n[weights]\nsyn-flood=1", "sizes"),
            ("ipv6 = 2.0\n[weights]\nsyn-flood=1", "ipv6"),
            ("vlan = 5000\n[weights]\nsyn-flood=1", "vlan"),
            ("clients = 0\n[weights]\nsyn-flood=1", "clients"),
            ("[weights]\nsyn-flood=0", "weights"),
            ("[weights]\nreplay=1", "weights.replay"),
        ] {
            let e = parse(text).unwrap_err().to_string();
            assert!(e.starts_with(&format!("/p/t.toml: {key}:")), "{text}: {e}");
        }
        let e = parse("[weights]\nsyn-fld = 1").unwrap_err().to_string();
        assert!(e.contains("syn-fld"), "{e}");
    }

    #[test]
    fn imix_is_seven_four_one() {
        let mut n = [0; 3];
        for k in 0..12 {
            match Sizes::Imix.pick(k) {
                60 => n[0] += 1,
                590 => n[1] += 1,
                1514 => n[2] += 1,
                s => panic!("{s}"),
            }
        }
        assert_eq!(n, [7, 4, 1]);
    }
}
