//! What happens to a packet, and why.

use crate::stage::ratelimit::LimitClass;

/// The fate of one packet. Every received packet ends as exactly one of these, which is what
/// lets the counters prove conservation: rx = forwarded + replied + Σ drops.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Send out of the paired port unchanged.
    Forward,
    /// The buffer was rewritten in place into a response (SYN-ACK, RST); send it back out of
    /// the port it came in on. The new frame length is carried because a reply may be shorter.
    Reply { len: u16 },
    /// Free the buffer and count the reason.
    Drop(DropReason),
}

/// Why a packet was not forwarded.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DropReason {
    /// Headers that are truncated, inconsistent or hostile.
    Malformed(Malformed),
    /// Source or destination matched the ACL deny list.
    AclDeny,
    /// Non-SYN traffic to a protected prefix from a source that has not authenticated.
    Unauthenticated,
    /// A RST or ACK to a protected prefix whose cookie did not validate.
    CookieInvalid,
    /// The client's RST that carried a valid cookie: consumed once the source is allowlisted,
    /// because the protected server never saw the handshake it would refer to.
    AuthHandshake,
    /// Over a per-source limit of this class, or over an aggregate budget
    /// ([`LimitClass::Aggregate`]).
    RateLimited(LimitClass),
    /// Matched a signature rule whose action is drop; the value is the rule's index in the
    /// compiled rule set (not its sid), so per-rule counters are a plain array.
    Signature(u32),
    /// Ethertype that the policy does not forward.
    UnsupportedEthertype,
    /// Matched a BGP FlowSpec rule whose action is discard (traffic-rate 0).
    FlowspecDiscard,
    /// Over the byte rate of the BGP FlowSpec rule it matched (traffic-rate).
    FlowspecRateLimited,
}

/// Sub-reasons for [`DropReason::Malformed`]. Fine-grained on purpose: an operator seeing a
/// flood of one kind of broken header wants to know which kind.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum Malformed {
    EthernetTruncated,
    VlanTruncated,
    TooManyVlans,
    ArpTruncated,
    Ipv4Truncated,
    Ipv4BadVersion,
    Ipv4BadHeaderLength,
    Ipv4BadTotalLength,
    Ipv4BadChecksum,
    Ipv4BadOptions,
    Ipv6Truncated,
    Ipv6BadVersion,
    Ipv6BadPayloadLength,
    Ipv6ExtTruncated,
    Ipv6TooManyExtHeaders,
    FragmentBad,
    TcpTruncated,
    TcpBadDataOffset,
    TcpBadOptions,
    UdpTruncated,
    UdpBadLength,
    IcmpTruncated,
    Icmpv6Truncated,
    /// An IPv6 extension header that is present but not acceptable: hop-by-hop not first, AH
    /// shorter than its fixed part, or a type 0 routing header still routing (RFC 5095).
    Ipv6BadExtHeader,
}

impl Malformed {
    /// Every sub-reason, in discriminant order, for counter tables and reports.
    pub const ALL: [Malformed; 24] = [
        Malformed::EthernetTruncated,
        Malformed::VlanTruncated,
        Malformed::TooManyVlans,
        Malformed::ArpTruncated,
        Malformed::Ipv4Truncated,
        Malformed::Ipv4BadVersion,
        Malformed::Ipv4BadHeaderLength,
        Malformed::Ipv4BadTotalLength,
        Malformed::Ipv4BadChecksum,
        Malformed::Ipv4BadOptions,
        Malformed::Ipv6Truncated,
        Malformed::Ipv6BadVersion,
        Malformed::Ipv6BadPayloadLength,
        Malformed::Ipv6ExtTruncated,
        Malformed::Ipv6TooManyExtHeaders,
        Malformed::FragmentBad,
        Malformed::TcpTruncated,
        Malformed::TcpBadDataOffset,
        Malformed::TcpBadOptions,
        Malformed::UdpTruncated,
        Malformed::UdpBadLength,
        Malformed::IcmpTruncated,
        Malformed::Icmpv6Truncated,
        Malformed::Ipv6BadExtHeader,
    ];
    pub const COUNT: usize = Self::ALL.len();

    pub fn index(self) -> usize {
        self as usize
    }

    /// Stable snake_case name used in reports, metrics and the control protocol.
    pub fn name(self) -> &'static str {
        match self {
            Malformed::EthernetTruncated => "ethernet_truncated",
            Malformed::VlanTruncated => "vlan_truncated",
            Malformed::TooManyVlans => "too_many_vlans",
            Malformed::ArpTruncated => "arp_truncated",
            Malformed::Ipv4Truncated => "ipv4_truncated",
            Malformed::Ipv4BadVersion => "ipv4_bad_version",
            Malformed::Ipv4BadHeaderLength => "ipv4_bad_header_length",
            Malformed::Ipv4BadTotalLength => "ipv4_bad_total_length",
            Malformed::Ipv4BadChecksum => "ipv4_bad_checksum",
            Malformed::Ipv4BadOptions => "ipv4_bad_options",
            Malformed::Ipv6Truncated => "ipv6_truncated",
            Malformed::Ipv6BadVersion => "ipv6_bad_version",
            Malformed::Ipv6BadPayloadLength => "ipv6_bad_payload_length",
            Malformed::Ipv6ExtTruncated => "ipv6_ext_truncated",
            Malformed::Ipv6TooManyExtHeaders => "ipv6_too_many_ext_headers",
            Malformed::FragmentBad => "fragment_bad",
            Malformed::TcpTruncated => "tcp_truncated",
            Malformed::TcpBadDataOffset => "tcp_bad_data_offset",
            Malformed::TcpBadOptions => "tcp_bad_options",
            Malformed::UdpTruncated => "udp_truncated",
            Malformed::UdpBadLength => "udp_bad_length",
            Malformed::IcmpTruncated => "icmp_truncated",
            Malformed::Icmpv6Truncated => "icmpv6_truncated",
            Malformed::Ipv6BadExtHeader => "ipv6_bad_ext_header",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn malformed_all_is_in_discriminant_order() {
        for (i, m) in Malformed::ALL.iter().enumerate() {
            assert_eq!(m.index(), i, "{m:?}");
        }
        let mut names: Vec<_> = Malformed::ALL.iter().map(|m| m.name()).collect();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), Malformed::COUNT, "names must be unique");
    }
}
