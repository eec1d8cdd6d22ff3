//! IP protocol numbers (IANA "Assigned Internet Protocol Numbers"): the IPv4 Protocol field,
//! the IPv6 Next Header field and [`IpHeaders::proto`](crate::IpHeaders::proto) all hold them.
//!
//! The one place these numbers are spelled: the parser, the checksums, the SYN-cookie stage
//! and its reply writer all name them from here, so a match on `proto` reads as the protocol
//! it means. IPv6 extension headers are protocol numbers too; [`super::ipv6::next_header`] is
//! this module under the name RFC 8200 gives the field.

/// IPv6 hop-by-hop options (RFC 8200 §4.3); only valid as the first extension header.
pub const HOP_BY_HOP: u8 = 0;
/// ICMP for IPv4 (RFC 792).
pub const ICMP: u8 = 1;
/// TCP (RFC 9293).
pub const TCP: u8 = 6;
/// UDP (RFC 768).
pub const UDP: u8 = 17;
/// IPv6 routing header (RFC 8200 §4.4).
pub const ROUTING: u8 = 43;
/// IPv6 fragment header (RFC 8200 §4.5).
pub const FRAGMENT: u8 = 44;
/// Encapsulating Security Payload (RFC 4303): nothing after it is readable.
pub const ESP: u8 = 50;
/// Authentication header (RFC 4302).
pub const AH: u8 = 51;
/// ICMP for IPv6 (RFC 4443).
pub const ICMPV6: u8 = 58;
/// IPv6 "no next header" (RFC 8200 §4.7): the chain ends with no upper layer.
pub const NO_NEXT: u8 = 59;
/// IPv6 destination options (RFC 8200 §4.6).
pub const DEST_OPTS: u8 = 60;
