//! scrubd's control socket: the versioned line-delimited JSON protocol, and `scrubctl`.

#![forbid(unsafe_code)]

mod accept;
pub mod client;
pub mod http;
pub mod protocol;
pub mod render;
pub mod server;
