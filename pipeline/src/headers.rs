//! The parsed summary of one frame that every stage reads.
//!
//! The parser fills this once per packet; stages never re-parse. Offsets are from the start of
//! the frame so a stage that rewrites the packet (the SYN-cookie reply) knows where to write.

use std::net::IpAddr;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Headers {
    /// VLAN ids outermost first; `vlan_count` says how many are valid (0, 1 = 802.1Q, 2 = QinQ).
    pub vlans: [u16; 2],
    pub vlan_count: u8,
    /// The innermost ethertype (after VLAN tags); see [`wire::ethernet`](crate::wire::ethernet)'s
    /// `ETHERTYPE_*` constants.
    pub ethertype: u16,
    /// Offset of the network header.
    pub l3_off: u16,
    pub net: Net,
}

/// `repr(u8)`: an explicit tag byte instead of a niche in the IP headers' own enums, so telling
/// IP from ARP from a parse error (the `Result` around [`Headers`] uses the same byte) is one
/// compare on every packet rather than a range decode.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum Net {
    /// ARP: forwarded untouched, never scrubbed.
    Arp,
    /// Any other non-IP ethertype.
    Other,
    Ip(IpHeaders),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IpVersion {
    V4,
    V6,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Frag {
    /// Not a fragment.
    None,
    /// First fragment (offset 0, more-fragments set): carries the transport header.
    First,
    /// Non-first fragment: no transport header, `transport` is [`Transport::None`].
    Later,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IpHeaders {
    pub version: IpVersion,
    pub src: IpAddr,
    pub dst: IpAddr,
    /// Upper-layer protocol: for IPv6, the one after the extension-header chain. Named by
    /// [`wire::ip_protocol`](crate::wire::ip_protocol).
    pub proto: u8,
    /// TTL or hop limit.
    pub ttl: u8,
    pub frag: Frag,
    /// Length of the IP datagram as its header states it (excludes Ethernet padding).
    pub ip_len: u16,
    /// Offset of the transport header (end of IP header and extension headers).
    pub l4_off: u16,
    pub transport: Transport,
    /// Offset and length of the transport payload (within `ip_len`, padding excluded).
    pub payload_off: u16,
    pub payload_len: u16,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Transport {
    Tcp(TcpInfo),
    Udp {
        sport: u16,
        dport: u16,
    },
    Icmp {
        ty: u8,
        code: u8,
    },
    Icmpv6 {
        ty: u8,
        code: u8,
    },
    /// Non-first fragment: the transport header is in another fragment.
    None,
    /// A protocol the parser does not look into.
    Other,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TcpInfo {
    pub sport: u16,
    pub dport: u16,
    pub seq: u32,
    pub ack: u32,
    /// The 8 classic flag bits: FIN=0x01 SYN=0x02 RST=0x04 PSH=0x08 ACK=0x10 URG=0x20 ECE=0x40 CWR=0x80.
    pub flags: u8,
    pub window: u16,
    pub options: TcpOptions,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TcpOptions {
    pub mss: Option<u16>,
    pub window_scale: Option<u8>,
    pub sack_permitted: bool,
    /// (TSval, TSecr)
    pub timestamps: Option<(u32, u32)>,
}

impl TcpInfo {
    pub const FIN: u8 = 0x01;
    pub const SYN: u8 = 0x02;
    pub const RST: u8 = 0x04;
    pub const PSH: u8 = 0x08;
    pub const ACK: u8 = 0x10;
    pub const URG: u8 = 0x20;
    pub const ECE: u8 = 0x40;
    pub const CWR: u8 = 0x80;
}

impl Headers {
    pub fn ip(&self) -> Option<&IpHeaders> {
        match &self.net {
            Net::Ip(ip) => Some(ip),
            _ => None,
        }
    }
}
