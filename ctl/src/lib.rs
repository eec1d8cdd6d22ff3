//! scrubd's control socket: the versioned line-delimited JSON protocol, and `scrubctl`.

pub mod protocol;
