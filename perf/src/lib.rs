//! Traffic generation and measurement helpers for scrubd's tests, demo and benchmarks.

pub mod gen;
pub mod pcap;
pub mod pipebench;
