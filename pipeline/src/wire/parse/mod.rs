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
use crate::{Frag, Headers, IpHeaders, IpVersion, Malformed, Net, TcpInfo, Transport};

/// Parse `frame` (starting at the Ethernet destination address, no FCS) into [`Headers`].
pub fn parse(frame: &[u8]) -> Result<Headers, Malformed> {
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
