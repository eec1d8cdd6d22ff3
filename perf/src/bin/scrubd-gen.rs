//! Writes a reproducible two-sided traffic mix as pcap files for net_pcap.

#![forbid(unsafe_code)]

use clap::Parser;
use perf::gen::{mix, Side};
use std::path::PathBuf;

/// Generate demo/test traffic: `<out-dir>/outside.pcap` (client → server) and
/// `<out-dir>/inside.pcap` (server → client), replayable by DPDK's net_pcap
/// (`--vdev net_pcap0,rx_pcap=<out-dir>/outside.pcap`).
#[derive(Parser)]
#[command(name = "scrubd-gen", version)]
struct Args {
    /// Directory to write outside.pcap and inside.pcap into (created if missing).
    #[arg(long, default_value = "out/demo")]
    out_dir: PathBuf,
    /// Frames per side.
    #[arg(long, default_value_t = 10_000)]
    packets: u64,
    /// Seed; the same seed always gives the same bytes.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Mix attack frames into outside.pcap: one after every N legitimate frames (spoofed SYNs
    /// to 198.51.100.20:443, memcached reflection, truncated headers, in rotation). 0 = none.
    #[arg(long, default_value_t = 0, value_name = "N")]
    attack_every: u64,
}

fn main() -> std::process::ExitCode {
    let a = Args::parse();
    if let Err(e) = std::fs::create_dir_all(&a.out_dir) {
        eprintln!("scrubd-gen: cannot create {}: {e}", a.out_dir.display());
        return std::process::ExitCode::FAILURE;
    }
    for (side, name) in [
        (Side::Outside, "outside.pcap"),
        (Side::Inside, "inside.pcap"),
    ] {
        let path = a.out_dir.join(name);
        let frames = if side == Side::Outside && a.attack_every > 0 {
            perf::gen::mix_with_attack(a.packets, a.seed, a.attack_every).0
        } else {
            mix(side, a.packets, a.seed)
        };
        if let Err(e) = perf::pcap::write(&path, &frames) {
            eprintln!("scrubd-gen: cannot write {}: {e}", path.display());
            return std::process::ExitCode::FAILURE;
        }
        println!("wrote {} frames to {}", a.packets, path.display());
    }
    std::process::ExitCode::SUCCESS
}
