//! One pass over a frame that fills [`Headers`], or says precisely why it cannot.
//!
//! Runs once per packet at line rate (10+ Mpps per core), so it walks each layer exactly once
//! through the zero-copy views, allocates nothing, and later stages trust what it recorded
//! instead of re-validating.
//!
//! What is verified and what is not:
//! - The IPv4 header checksum is verified (`Ipv4BadChecksum`): it covers only 20–60 bytes that
//!   are already in cache, and a corrupt header would otherwise feed wrong addresses to the
//!   ACL and rate limiter.
//! - TCP and UDP checksums are not verified here. They cover the whole payload (up to a jumbo
//!   frame per packet, touching every cache line of it), which would multiply the parser's
//!   cost, and the destination host verifies them anyway. A segment with a bad checksum is
//!   discarded by the protected host, so forwarding it costs nothing but bandwidth; the
//!   stages that rewrite a packet into a reply (SYN cookies) compute fresh checksums with
//!   [`super::checksum`].
//! - Non-first fragments carry no transport header: `transport` is [`Transport::None`] and
//!   the payload is the fragment's data. First fragments must hold the whole transport header
//!   (RFC 1858 / RFC 7112), a TCP fragment at offset 8 is the RFC 1858 flag-overwrite attack,
//!   a fragment that is not the last must carry a non-zero multiple of 8 bytes, and no
//!   fragment may reach past the 65535-byte datagram limit; all of those are `FragmentBad`.
//! - Lengths: every header must be inside the bytes its enclosing length field grants, and
//!   every length field inside the frame. Ethernet padding after the IP datagram is allowed
//!   and excluded from `ip_len` and the payload. Offsets in [`Headers`] are `u16`, so a
//!   datagram ending past byte 65535 of the frame (impossible on any real link) is refused as
//!   a bad total/payload length rather than truncated.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use super::{arp, ethernet, icmp, icmpv6, ip_protocol, ipv4, ipv6, tcp, udp};
use crate::{Frag, Headers, IpHeaders, IpVersion, Malformed, Net, TcpInfo, TcpOptions, Transport};

/// Parse `frame` (starting at the Ethernet destination address, no FCS) into [`Headers`].
///
/// The common shape (untagged Ethernet, IPv4 without options or fragmentation, TCP or UDP)
/// takes `parse_ipv4_simple`, which reads the fixed headers through fixed-size arrays so
/// every bounds check folds away; anything else, and every frame that path would refuse, takes
/// the general walk, so the result (and the precise error) is the same either way.
#[inline]
pub fn parse(frame: &[u8]) -> Result<Headers, Malformed> {
    parse_ipv4_simple(frame)
}

/// Ethernet + IPv4 header + the first 20 bytes after it: the fixed headers the fast path reads.
const SIMPLE_LEN: usize = ethernet::HEADER_LEN + ipv4::MIN_HEADER_LEN + tcp::MIN_HEADER_LEN;

/// The fast path of [`parse`]. It answers itself only for a frame the general walk accepts,
/// with the same [`Headers`]; any other shape, and any frame it would refuse, is handed to
/// [`parse_general`], which then names the reason. Every condition below is one the general
/// walk checks too. (Each bail-out calls the general walk directly instead of returning an
/// `Option` so the headers are built in the caller's slot, not moved through a wrapper.)
#[inline(always)]
fn parse_ipv4_simple(frame: &[u8]) -> Result<Headers, Malformed> {
    let Some(h) = frame.first_chunk::<SIMPLE_LEN>() else {
        return parse_general(frame);
    };
    const L3: usize = ethernet::HEADER_LEN;
    const L4: usize = L3 + ipv4::MIN_HEADER_LEN;
    if u16::from_be_bytes([h[12], h[13]]) != ethernet::ETHERTYPE_IPV4 || h[L3] != 0x45 {
        return parse_general(frame);
    }
    let total = usize::from(u16::from_be_bytes([h[L3 + 2], h[L3 + 3]]));
    // Total length covers the header and the transport's 20 bytes, lies inside the frame, and
    // the datagram ends before byte 65535 of the frame; no fragment bits (the reserved flag
    // and DF are allowed, as in the general walk).
    if total < ipv4::MIN_HEADER_LEN + tcp::MIN_HEADER_LEN
        || L3 + total > frame.len()
        || L3 + total > usize::from(u16::MAX)
        || u16::from_be_bytes([h[L3 + 6], h[L3 + 7]]) & 0x3fff != 0
    {
        return parse_general(frame);
    }
    // Header checksum: the one's-complement sum of the 20 bytes must be 0xffff. The sum is
    // taken over five native-order 32-bit words: one's-complement sums are byte-order
    // independent (RFC 1071 2.(B)) and a word swap only rotates the folded sum, which leaves
    // 0xffff as it is.
    let mut acc = 0u64;
    for i in 0..5 {
        let o = L3 + 4 * i;
        acc += u64::from(u32::from_ne_bytes([h[o], h[o + 1], h[o + 2], h[o + 3]]));
    }
    let acc = (acc & 0xffff_ffff) + (acc >> 32);
    let acc = (acc & 0xffff) + (acc >> 16);
    let acc = (acc & 0xffff) + (acc >> 16);
    if acc != 0xffff {
        return parse_general(frame);
    }
    let proto = h[L3 + 9];
    let seg_len = total - ipv4::MIN_HEADER_LEN;
    // Each arm returns its whole `Headers`, so the transport fields go straight into the
    // result instead of through a temporary copied in afterwards (parse row of
    // `scrubd-pipeline-bench`: TCP 187 -> 179 Ir/pkt, UDP 173 -> 152).
    match proto {
        ip_protocol::TCP => {
            let hl = usize::from(h[L4 + 12] >> 4) * 4;
            if hl < tcp::MIN_HEADER_LEN || hl > seg_len {
                return parse_general(frame);
            }
            let options = if hl == tcp::MIN_HEADER_LEN {
                TcpOptions::default()
            } else {
                match frame
                    .get(L4 + tcp::MIN_HEADER_LEN..L4 + hl)
                    .map(tcp::parse_options)
                {
                    Some(Ok(o)) => o,
                    _ => return parse_general(frame),
                }
            };
            let info = TcpInfo {
                sport: u16::from_be_bytes([h[L4], h[L4 + 1]]),
                dport: u16::from_be_bytes([h[L4 + 2], h[L4 + 3]]),
                seq: u32::from_be_bytes([h[L4 + 4], h[L4 + 5], h[L4 + 6], h[L4 + 7]]),
                ack: u32::from_be_bytes([h[L4 + 8], h[L4 + 9], h[L4 + 10], h[L4 + 11]]),
                flags: h[L4 + 13],
                window: u16::from_be_bytes([h[L4 + 14], h[L4 + 15]]),
                options,
            };
            Ok(simple_headers(
                h,
                total,
                Transport::Tcp(info),
                hl,
                seg_len - hl,
            ))
        }
        ip_protocol::UDP => {
            let ulen = usize::from(u16::from_be_bytes([h[L4 + 4], h[L4 + 5]]));
            if ulen < udp::HEADER_LEN || ulen > seg_len {
                return parse_general(frame);
            }
            let t = Transport::Udp {
                sport: u16::from_be_bytes([h[L4], h[L4 + 1]]),
                dport: u16::from_be_bytes([h[L4 + 2], h[L4 + 3]]),
            };
            Ok(simple_headers(
                h,
                total,
                t,
                udp::HEADER_LEN,
                ulen - udp::HEADER_LEN,
            ))
        }
        _ => parse_general(frame),
    }
}

/// The [`Headers`] of an untagged IPv4 frame without options or fragmentation whose fixed
/// headers are `h`, as [`parse_ipv4_simple`] checked them.
#[inline(always)]
fn simple_headers(
    h: &[u8; SIMPLE_LEN],
    total: usize,
    transport: Transport,
    l4_hdr: usize,
    payload_len: usize,
) -> Headers {
    const L3: usize = ethernet::HEADER_LEN;
    const L4: usize = L3 + ipv4::MIN_HEADER_LEN;
    let addr = |o: usize| Ipv4Addr::new(h[o], h[o + 1], h[o + 2], h[o + 3]);
    Headers {
        vlans: [0; 2],
        vlan_count: 0,
        ethertype: ethernet::ETHERTYPE_IPV4,
        l3_off: L3 as u16,
        net: Net::Ip(IpHeaders {
            version: IpVersion::V4,
            src: IpAddr::V4(addr(L3 + 12)),
            dst: IpAddr::V4(addr(L3 + 16)),
            proto: h[L3 + 9],
            ttl: h[L3 + 8],
            frag: Frag::None,
            ip_len: total as u16,
            l4_off: L4 as u16,
            transport,
            payload_off: (L4 + l4_hdr) as u16,
            payload_len: payload_len as u16,
        }),
    }
}

/// The general walk of [`parse`]: any VLAN stack, IPv4 with options and fragments, IPv6, ARP.
/// Public so tests can hold the fast path to it; out of line so the fast path stays small.
#[inline(never)]
pub fn parse_general(frame: &[u8]) -> Result<Headers, Malformed> {
    let eth = ethernet::Frame::new_checked(frame)?;
    let mut ethertype = eth.ethertype();
    let mut off = ethernet::HEADER_LEN;
    let mut vlans = [0u16; 2];
    let mut vlan_count = 0usize;
    while ethernet::is_vlan_tpid(ethertype) {
        let slot = vlans.get_mut(vlan_count).ok_or(Malformed::TooManyVlans)?;
        let tag = ethernet::VlanTag::new_checked(tail(frame, off))?;
        *slot = tag.vid();
        vlan_count += 1;
        ethertype = tag.ethertype();
        off += ethernet::TAG_LEN;
    }
    let l3 = tail(frame, off);
    let net = match ethertype {
        ethernet::ETHERTYPE_IPV4 => Net::Ip(parse_ipv4(l3, off)?),
        ethernet::ETHERTYPE_IPV6 => Net::Ip(parse_ipv6(l3, off)?),
        ethernet::ETHERTYPE_ARP => {
            arp::Packet::new_checked(l3)?;
            Net::Arp
        }
        _ => Net::Other,
    };
    Ok(Headers {
        vlans,
        // At most 2 (the loop stops at the array's length) and at most 22: both fit.
        vlan_count: vlan_count as u8,
        ethertype,
        l3_off: off as u16,
        net,
    })
}

fn tail(b: &[u8], off: usize) -> &[u8] {
    b.get(off..).unwrap_or(&[])
}

fn parse_ipv4(l3: &[u8], l3_off: usize) -> Result<IpHeaders, Malformed> {
    let ip = ipv4::Packet::new_checked(l3)?;
    if !ip.verify_checksum() {
        return Err(Malformed::Ipv4BadChecksum);
    }
    ip.check_options()?;
    let hl = ip.header_len();
    let total = usize::from(ip.total_len());
    if l3_off + total > usize::from(u16::MAX) {
        return Err(Malformed::Ipv4BadTotalLength);
    }
    let proto = ip.protocol();
    let data_len = total.saturating_sub(hl);
    let frag = check_fragment(
        ip.frag_offset(),
        ip.more_frags(),
        data_len,
        ipv4::MAX_DATAGRAM_LEN - hl,
        proto,
    )?;
    let seg = l3.get(hl..total).unwrap_or(&[]);
    let (transport, l4_hdr, payload_len) = parse_transport(seg, proto, frag, IpVersion::V4)?;
    let l4_off = l3_off + hl;
    Ok(IpHeaders {
        version: IpVersion::V4,
        src: IpAddr::V4(Ipv4Addr::from(ip.src_addr())),
        dst: IpAddr::V4(Ipv4Addr::from(ip.dst_addr())),
        proto,
        ttl: ip.ttl(),
        frag,
        ip_len: total as u16,
        l4_off: l4_off as u16,
        transport,
        payload_off: (l4_off + l4_hdr) as u16,
        payload_len: payload_len as u16,
    })
}

fn parse_ipv6(l3: &[u8], l3_off: usize) -> Result<IpHeaders, Malformed> {
    let ip = ipv6::Packet::new_checked(l3)?;
    let total = ip.total_len();
    if l3_off + total > usize::from(u16::MAX) {
        return Err(Malformed::Ipv6BadPayloadLength);
    }
    let chain = ip.chain()?;
    let frag = match chain.frag {
        None => Frag::None,
        Some(f) => {
            // Extension headers before the fragment header travel in every fragment and
            // count against the reassembled payload limit.
            let unfragmentable = f
                .data_off
                .saturating_sub(ipv6::HEADER_LEN + ipv6::FRAG_HEADER_LEN);
            check_fragment(
                f.offset,
                f.more,
                total.saturating_sub(f.data_off),
                usize::from(u16::MAX).saturating_sub(unfragmentable),
                chain.proto,
            )?
        }
    };
    let seg = ip.datagram().get(chain.l4_off..).unwrap_or(&[]);
    let (transport, l4_hdr, payload_len) = parse_transport(seg, chain.proto, frag, IpVersion::V6)?;
    let l4_off = l3_off + chain.l4_off;
    Ok(IpHeaders {
        version: IpVersion::V6,
        src: IpAddr::V6(Ipv6Addr::from(ip.src_addr())),
        dst: IpAddr::V6(Ipv6Addr::from(ip.dst_addr())),
        proto: chain.proto,
        ttl: ip.hop_limit(),
        frag,
        ip_len: total as u16,
        l4_off: l4_off as u16,
        transport,
        payload_off: (l4_off + l4_hdr) as u16,
        payload_len: payload_len as u16,
    })
}

/// Classify a fragment and reject the shapes listed in the module docs. `data_len` is the
/// fragment's share of the datagram, `max_end` the largest offset + length the reassembled
/// datagram allows.
fn check_fragment(
    offset: usize,
    more: bool,
    data_len: usize,
    max_end: usize,
    proto: u8,
) -> Result<Frag, Malformed> {
    if offset == 0 && !more {
        return Ok(Frag::None);
    }
    let bad = (more && (data_len == 0 || data_len & 7 != 0))
        || offset + data_len > max_end
        || (proto == ip_protocol::TCP && offset == 8);
    if bad {
        return Err(Malformed::FragmentBad);
    }
    Ok(if offset == 0 {
        Frag::First
    } else {
        Frag::Later
    })
}

/// Read the transport header from `seg` (the bytes after the IP headers, up to the IP length)
/// and return it with its header length and the payload length.
fn parse_transport(
    seg: &[u8],
    proto: u8,
    frag: Frag,
    version: IpVersion,
) -> Result<(Transport, usize, usize), Malformed> {
    let first = frag == Frag::First;
    let header_missing = |min: usize| first && seg.len() < min;
    match (frag, proto, version) {
        (Frag::Later, ..) => Ok((Transport::None, 0, seg.len())),
        (_, ip_protocol::TCP, _) => {
            let doff_len = tcp::Packet::new_unchecked(seg).header_len();
            if header_missing(tcp::MIN_HEADER_LEN)
                || (first && doff_len >= tcp::MIN_HEADER_LEN && doff_len > seg.len())
            {
                return Err(Malformed::FragmentBad);
            }
            let t = tcp::Packet::new_checked(seg)?;
            let options = t.parse_options()?;
            let hl = t.header_len();
            let info = TcpInfo {
                sport: t.src_port(),
                dport: t.dst_port(),
                seq: t.seq(),
                ack: t.ack(),
                flags: t.flags(),
                window: t.window(),
                options,
            };
            Ok((Transport::Tcp(info), hl, seg.len().saturating_sub(hl)))
        }
        (_, ip_protocol::UDP, _) => {
            if header_missing(udp::HEADER_LEN) {
                return Err(Malformed::FragmentBad);
            }
            if first {
                let u = udp::Packet::new_checked_first_fragment(seg)?;
                let t = Transport::Udp {
                    sport: u.src_port(),
                    dport: u.dst_port(),
                };
                Ok((
                    t,
                    udp::HEADER_LEN,
                    seg.len().saturating_sub(udp::HEADER_LEN),
                ))
            } else {
                let u = udp::Packet::new_checked(seg)?;
                let t = Transport::Udp {
                    sport: u.src_port(),
                    dport: u.dst_port(),
                };
                Ok((
                    t,
                    udp::HEADER_LEN,
                    usize::from(u.len()).saturating_sub(udp::HEADER_LEN),
                ))
            }
        }
        (_, ip_protocol::ICMP, IpVersion::V4) => {
            if header_missing(icmp::HEADER_LEN) {
                return Err(Malformed::FragmentBad);
            }
            let i = icmp::Packet::new_checked(seg)?;
            let t = Transport::Icmp {
                ty: i.msg_type(),
                code: i.code(),
            };
            Ok((
                t,
                icmp::HEADER_LEN,
                seg.len().saturating_sub(icmp::HEADER_LEN),
            ))
        }
        (_, ip_protocol::ICMPV6, IpVersion::V6) => {
            if header_missing(icmpv6::HEADER_LEN) {
                return Err(Malformed::FragmentBad);
            }
            let i = icmpv6::Packet::new_checked(seg)?;
            let t = Transport::Icmpv6 {
                ty: i.msg_type(),
                code: i.code(),
            };
            Ok((
                t,
                icmpv6::HEADER_LEN,
                seg.len().saturating_sub(icmpv6::HEADER_LEN),
            ))
        }
        _ => Ok((Transport::Other, 0, seg.len())),
    }
}

#[cfg(test)]
mod tests;
