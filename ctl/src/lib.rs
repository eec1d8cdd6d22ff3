//! scrubd's control socket: the versioned line-delimited JSON protocol, and `scrubctl`.

#![forbid(unsafe_code)]

mod accept;
pub mod bgp;
pub mod client;
pub mod http;
/// The protocol's types, from their own crate (see `ctl-protocol`).
pub use ctl_protocol as protocol;
pub mod render;
pub mod server;
