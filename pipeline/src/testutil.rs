//! Finding and reading the shared real captures, for this crate's tests and for other crates'
//! tests and benchmarks (feature `testutil`).
//!
//! The captures are never copied into the repository, so tests locate them: `$SCRUBD_PCAPS`
//! if set, else a `shared/pcaps` directory beside this crate's directory or any of its
//! ancestors (`/work/<checkout>/pipeline` finds `/work/shared/pcaps`; a CI clone at
//! `<parent>/<repo>` with `<parent>/shared` finds it the same way).

use std::path::{Path, PathBuf};

use pcap_file::pcap::PcapReader;
use pcap_file::{DataLink, TsResolution};

/// Environment variable that overrides where the captures are.
pub const PCAPS_ENV: &str = "SCRUBD_PCAPS";

#[derive(Debug, thiserror::Error)]
pub enum CaptureError {
    #[error("captures not found: {0}")]
    NotFound(String),
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {source}")]
    Pcap {
        path: PathBuf,
        source: pcap_file::PcapError,
    },
    #[error("{path}: link type {link} cannot be turned into Ethernet")]
    LinkType { path: PathBuf, link: String },
}

/// The captures directory; the error says where it looked, for a test's skip message.
pub fn pcaps_dir() -> Result<PathBuf, CaptureError> {
    if let Some(dir) = std::env::var_os(PCAPS_ENV) {
        let dir = PathBuf::from(dir);
        return if dir.is_dir() {
            Ok(dir)
        } else {
            Err(CaptureError::NotFound(format!(
                "${PCAPS_ENV}={} is not a directory",
                dir.display()
            )))
        };
    }
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest
        .ancestors()
        .map(|a| a.join("shared").join("pcaps"))
        .find(|p| p.is_dir())
        .ok_or_else(|| {
            CaptureError::NotFound(format!(
                "${PCAPS_ENV} unset and no shared/pcaps beside {} or its ancestors",
                manifest.display()
            ))
        })
}

/// Every `.pcap` / `.pcapng` file under `dir`, recursively, sorted by path.
pub fn capture_files(dir: &Path) -> Result<Vec<PathBuf>, CaptureError> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let io = |source| CaptureError::Io {
            path: d.clone(),
            source,
        };
        for entry in std::fs::read_dir(&d).map_err(io)? {
            let path = entry.map_err(io)?.path();
            if path.is_dir() {
                stack.push(path);
            } else if matches!(
                path.extension().and_then(|e| e.to_str()),
                Some("pcap" | "pcapng")
            ) {
                out.push(path);
            }
        }
    }
    out.sort();
    Ok(out)
}

/// Read a classic libpcap file (whatever its extension) into Ethernet frames. Loopback
/// captures (DLT_NULL, DLT_LOOP) get a synthetic Ethernet header with the ethertype their
/// address family implies, so every consumer sees the same link layer the data path does.
/// Records are taken as captured, without pcap-file's length validation, because a short
/// snaplen (the tcpdump NTP files use 600) makes it reject valid files.
pub fn read_frames(path: &Path) -> Result<Vec<Vec<u8>>, CaptureError> {
    Ok(read_timed_frames(path)?
        .into_iter()
        .map(|f| f.data)
        .collect())
}

/// One captured frame with the time it was captured.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TimedFrame {
    /// Capture time in nanoseconds since the Unix epoch, whatever the file's resolution:
    /// time-based stages (rate limits, cookie counters) replay the capture's own pacing from it.
    pub ts_ns: u64,
    /// The frame, with an Ethernet header as [`read_frames`] gives it.
    pub data: Vec<u8>,
}

/// [`read_frames`] with each frame's capture timestamp.
pub fn read_timed_frames(path: &Path) -> Result<Vec<TimedFrame>, CaptureError> {
    let pcap_err = |source| CaptureError::Pcap {
        path: path.to_path_buf(),
        source,
    };
    let file = std::fs::File::open(path).map_err(|source| CaptureError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let mut reader = PcapReader::new(std::io::BufReader::new(file)).map_err(pcap_err)?;
    let link = reader.header().datalink;
    let frac_ns: u64 = match reader.header().ts_resolution {
        TsResolution::MicroSecond => 1_000,
        TsResolution::NanoSecond => 1,
    };
    let mut frames = Vec::new();
    while let Some(rec) = reader.next_raw_packet() {
        let rec = rec.map_err(pcap_err)?;
        let ts_ns = u64::from(rec.ts_sec) * 1_000_000_000 + u64::from(rec.ts_frac) * frac_ns;
        let data = rec.data;
        let frame = match link {
            DataLink::ETHERNET => data.into_owned(),
            DataLink::NULL | DataLink::LOOP => loopback_to_ethernet(&data, link == DataLink::LOOP)
                .ok_or_else(|| CaptureError::LinkType {
                    path: path.to_path_buf(),
                    link: format!("{link:?} with an unknown address family"),
                })?,
            other => {
                return Err(CaptureError::LinkType {
                    path: path.to_path_buf(),
                    link: format!("{other:?}"),
                })
            }
        };
        frames.push(TimedFrame { ts_ns, data: frame });
    }
    Ok(frames)
}

/// Replace the 4-byte loopback family word by an Ethernet header. DLT_NULL stores the family
/// in the capturing host's byte order, so both orders are tried; DLT_LOOP is big-endian.
fn loopback_to_ethernet(data: &[u8], big_endian_only: bool) -> Option<Vec<u8>> {
    let word: [u8; 4] = data.get(..4)?.try_into().ok()?;
    let be = u32::from_be_bytes(word);
    let family = if big_endian_only || be <= 0xff {
        be
    } else {
        u32::from_le_bytes(word)
    };
    let ethertype: u16 = match family {
        2 => 0x0800,
        // AF_INET6 is 10 on Linux, 24/28/30 on the BSDs and macOS.
        10 | 24 | 28 | 30 => 0x86dd,
        _ => return None,
    };
    let mut frame = Vec::with_capacity(data.len() + 10);
    frame.extend_from_slice(&[0x02, 0, 0, 0, 0, 0x02, 0x02, 0, 0, 0, 0, 0x01]);
    frame.extend_from_slice(&ethertype.to_be_bytes());
    frame.extend_from_slice(data.get(4..)?);
    Some(frame)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_families() {
        let v4 = loopback_to_ethernet(&[2, 0, 0, 0, 0x45], false).unwrap();
        assert_eq!(&v4[12..], &[0x08, 0x00, 0x45]);
        let v6 = loopback_to_ethernet(&[0, 0, 0, 30, 0x60], false).unwrap();
        assert_eq!(&v6[12..], &[0x86, 0xdd, 0x60]);
        assert!(loopback_to_ethernet(&[7, 0, 0, 0], false).is_none());
        assert!(loopback_to_ethernet(&[2, 0, 0], false).is_none());
    }
}
