//! Writing classic pcap files (the format DPDK's net_pcap reads). Reading, and finding the
//! shared captures, is `pipeline::testutil`.

use pcap_file::pcap::{PcapHeader, PcapPacket, PcapWriter};
use pcap_file::DataLink;
use std::fs::File;
use std::io::BufWriter;
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
