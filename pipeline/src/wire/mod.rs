//! Zero-copy views over protocol headers, each checking its length before any field is read.

pub mod checksum;
