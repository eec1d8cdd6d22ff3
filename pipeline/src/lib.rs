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
pub mod shared_set;
pub mod stage;
pub mod stage_counters;
#[cfg(any(test, feature = "testutil"))]
pub mod testutil;
pub mod update;
pub mod verdict;
pub mod wire;

pub use counters::VerdictCounters;
pub use headers::{Frag, Headers, IpHeaders, IpVersion, Net, TcpInfo, TcpOptions, Transport};
pub use pipeline::{Pipeline, PipelineConfig, Policy, PolicyError};
pub use update::Update;
pub use verdict::{DropReason, Malformed, Verdict};

/// Which side of the box a frame entered from. scrubd protects the inside from the outside:
/// every stage documents what it does in each direction (see [`Pipeline::process`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Direction {
    /// Received on an outside (Internet-facing) port, on its way to the protected network.
    #[default]
    Inbound,
    /// Received on an inside port: the protected network talking to the outside.
    Outbound,
}

/// Per-packet metadata supplied by the data path.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Meta {
    /// Index of the port the frame arrived on (the data path's numbering).
    pub port: u16,
    /// The side of the box that port is on.
    pub dir: Direction,
    /// TSC value read once per burst; stages derive time from it instead of calling the clock.
    pub tsc: u64,
}
