//! Reading and writing classic pcap files (the format DPDK's net_pcap uses).

use pcap_file::pcap::{PcapHeader, PcapPacket, PcapReader, PcapWriter};
use pcap_file::DataLink;
use std::fs::File;
use std::io::{BufReader, BufWriter};
use std::path::Path;
use std::time::Duration;

/// One captured frame with its capture timestamp.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Frame {
    pub ts: Duration,
    pub data: Vec<u8>,
}

pub fn write(path: &Path, frames: &[Frame]) -> std::io::Result<()> {
    let f = BufWriter::new(File::create(path)?);
    let hdr = PcapHeader {
        datalink: DataLink::ETHERNET,
        ..Default::default()
    };
    let mut w = PcapWriter::with_header(f, hdr).map_err(std::io::Error::other)?;
    for fr in frames {
        w.write_packet(&PcapPacket::new(fr.ts, fr.data.len() as u32, &fr.data))
            .map_err(std::io::Error::other)?;
    }
    Ok(())
}

/// Read every frame of a pcap file, with its link type.
pub fn read(path: &Path) -> std::io::Result<(DataLink, Vec<Frame>)> {
    let f = BufReader::new(File::open(path)?);
    let mut r = PcapReader::new(f)
        .map_err(|e| std::io::Error::other(format!("{}: {e}", path.display())))?;
    let link = r.header().datalink;
    let mut out = Vec::new();
    while let Some(p) = r.next_packet() {
        let p = p.map_err(|e| std::io::Error::other(format!("{}: {e}", path.display())))?;
        out.push(Frame {
            ts: p.timestamp,
            data: p.data.into_owned(),
        });
    }
    Ok((link, out))
}

/// Where the shared real captures live: `$SCRUBD_PCAPS`, else a `shared/pcaps` directory beside
/// the repository or any of its ancestors (the CI layout is a clone with `shared/` next to it).
pub fn shared_pcaps() -> Option<std::path::PathBuf> {
    if let Ok(p) = std::env::var("SCRUBD_PCAPS") {
        let p = std::path::PathBuf::from(p);
        return p.is_dir().then_some(p);
    }
    let mut dir = Some(Path::new(env!("CARGO_MANIFEST_DIR")));
    while let Some(d) = dir {
        for cand in [d.join("shared/pcaps"), d.join("../shared/pcaps")] {
            if cand.is_dir() {
                return cand.canonicalize().ok();
            }
        }
        dir = d.parent();
    }
    None
}
