//! Traffic generation and measurement helpers for scrubd's tests, demo and benchmarks.

#![forbid(unsafe_code)]

pub mod benchutil;
pub mod callgrind;
pub mod gen;
pub mod pcap;
pub mod pipebench;
pub mod scrubgen;
