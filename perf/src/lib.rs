//! Traffic generation and measurement helpers for scrubd's tests, demo and benchmarks.

#![forbid(unsafe_code)]

pub mod gen;
pub mod pcap;
pub mod pipebench;
