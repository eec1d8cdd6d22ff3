//! The stats path between the workers and the operator.
//!
//! Workers fill [`Snapshot`]s (counters are cumulative, the latency histogram is the delta since
//! the worker's previous published snapshot) and hand them to the control thread over SPSC rings;
//! everything here runs on the control side or is plain data, so it is tested without DPDK.

#![forbid(unsafe_code)]

pub mod aggregate;
pub mod exposition;
pub mod hgrm;
pub mod snapshot;

pub use aggregate::{Aggregator, AggregatorConfig};
pub use snapshot::{new_latency_histogram, Snapshot, LATENCY_MAX_NS};
