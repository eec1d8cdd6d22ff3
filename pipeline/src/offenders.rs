//! Who is being dropped: a bounded heavy-hitter sketch of the addresses behind dropped packets.
//!
//! Per-packet logging is impossible at line rate and useless under a spoofed flood, but an
//! operator under attack still needs to see the top sources and destinations per drop reason.
//! Each worker keeps a fixed-size sketch (no allocation after construction) that the pipeline
//! feeds on its drop path; the control thread merges the workers' exports.

use std::net::IpAddr;

/// Which address of a dropped packet an entry counts.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Side {
    Src,
    Dst,
}

/// One tracked (address, drop reason) key with its estimated count. Space-Saving style
/// estimates over-count by at most `error`: the true count lies in `count - error ..= count`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OffenderEntry {
    pub side: Side,
    pub addr: IpAddr,
    /// Drop-reason slot (see [`crate::counters::slot_name`]).
    pub reason: u16,
    pub count: u64,
    pub error: u64,
}
