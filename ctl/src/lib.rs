//! scrubd's control socket: the versioned line-delimited JSON protocol, and `scrubctl`.

mod accept;
pub mod client;
pub mod http;
pub mod protocol;
pub mod render;
pub mod server;
