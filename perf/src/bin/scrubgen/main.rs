//! `scrubgen`: a live DPDK traffic generator that knows which packets should pass.
//!
//! `scrubgen run` transmits a weighted mix of legitimate and attack traffic (see
//! `perf::scrubgen::profile`) on the outside port, receives on both ports, answers the
//! scrubber's SYN-cookie challenges like real clients, and reports per class what was sent,
//! passed and answered: false-pass, false-drop and the latency through the scrubber.
//! `scrubgen bench` is the harness: it starts scrubd and `scrubgen run` as two DPDK processes
//! over net_memif, and dpdk-testpmd io forwarding on the same set-up as the baseline.

#![forbid(unsafe_code)]

mod bench;
mod run;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "scrubgen", version, about)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Generate traffic against a running scrubber (or anything forwarding between two ports).
    Run(run::RunArgs),
    /// Start scrubd (and dpdk-testpmd as the baseline) over memif and measure them with `run`.
    Bench(bench::BenchArgs),
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let r = match cli.cmd {
        Cmd::Run(a) => run::main(a),
        Cmd::Bench(a) => bench::main(a),
    };
    match r {
        Ok(code) => code,
        Err(e) => {
            eprintln!("scrubgen: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}
