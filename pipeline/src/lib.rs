//! scrubd's scrubbing brain: parses frames and decides, per packet, whether to forward, answer or drop.
//!
//! Nothing here knows about DPDK. Workers hand in `&mut [u8]` views of received frames plus a small
//! [`Meta`] (RX port, TSC); the pipeline returns a [`Verdict`] and counts it. Keeping DPDK out lets
//! every stage be unit tested, fuzzed and benchmarked without an EAL.

pub mod counters;
pub mod headers;
pub mod lpm;
pub mod offenders;
pub mod pipeline;
pub mod prefix;
pub mod stage;
#[cfg(any(test, feature = "testutil"))]
pub mod testutil;
pub mod verdict;
pub mod wire;

pub use counters::VerdictCounters;
pub use headers::{Frag, Headers, IpHeaders, IpVersion, Net, TcpInfo, TcpOptions, Transport};
pub use pipeline::{Pipeline, PipelineConfig, Policy, PolicyError};
pub use verdict::{DropReason, Malformed, Verdict};

/// Per-packet metadata supplied by the data path.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Meta {
    /// Index of the port the frame arrived on (the data path's numbering).
    pub port: u16,
    /// TSC value read once per burst; stages derive time from it instead of calling the clock.
    pub tsc: u64,
}
