//! Turning a received client segment into our answer, in the same buffer.
//!
//! The answer is built fresh from the parsed [`Headers`](crate::Headers) values rather than by
//! patching the received bytes: IPv4 options, IPv6 extension headers, TCP options other than
//! MSS and any payload are all dropped, so the reply is always a minimal, well-formed segment
//! whatever the client sent. Only the Ethernet header and VLAN tags are kept (MACs swapped), so
//! the frame leaves on the same VLAN it arrived on.
//!
//! The bytes are written through the same [`wire`](crate::wire) views the parser reads with, so
//! field offsets, protocol numbers and checksum rules live in one place for both directions.
//!
//! The frame is not padded to the Ethernet minimum of 60 bytes: the returned length is the exact
//! reply length (a v4 SYN-ACK is 58 bytes untagged) and the NIC pads short frames on transmit.

use crate::wire::{checksum, ethernet, ip_protocol, ipv4, ipv6, tcp};
use crate::{IpHeaders, IpVersion, TcpInfo};
use std::net::IpAddr;

/// The TCP fields of the answer; everything else follows from the segment being answered.
#[derive(Clone, Copy, Debug)]
pub struct Segment {
    pub seq: u32,
    pub ack: u32,
    pub flags: u8,
    pub window: u16,
    /// MSS option to carry; left out if the buffer has no room for it (see [`rewrite`]).
    pub mss: Option<u16>,
}

/// The reply's addresses: from the server the client wrote to, back to the client.
enum Ends {
    V4 { from: [u8; 4], to: [u8; 4] },
    V6 { from: [u8; 16], to: [u8; 16] },
}

/// Rewrites `frame` (whose network header starts at `l3_off` and which `ip`/`tcp` describe) into
/// `seg` sent back to the packet's source with the given hop limit; returns the new frame length.
///
/// The reply is never longer than the received packet except by the 4-byte MSS option, and a
/// SYN with no TCP options and no Ethernet padding has no room for it. Such a SYN-ACK goes out
/// without the option rather than not at all: the client then assumes the default MSS, which
/// is harmless because no data ever flows on this handshake. `None` when even a bare reply
/// does not fit or the headers contradict themselves; nothing has been written in that case.
pub fn rewrite(
    frame: &mut [u8],
    l3_off: u16,
    ip: &IpHeaders,
    tcp: &TcpInfo,
    hop_limit: u8,
    seg: &Segment,
) -> Option<u16> {
    let l3 = usize::from(l3_off);
    if l3 < ethernet::HEADER_LEN {
        return None;
    }
    let ends = match (ip.version, ip.src, ip.dst) {
        (IpVersion::V4, IpAddr::V4(client), IpAddr::V4(server)) => Ends::V4 {
            from: server.octets(),
            to: client.octets(),
        },
        (IpVersion::V6, IpAddr::V6(client), IpAddr::V6(server)) => Ends::V6 {
            from: server.octets(),
            to: client.octets(),
        },
        _ => return None,
    };
    let ip_len = match ends {
        Ends::V4 { .. } => ipv4::MIN_HEADER_LEN,
        Ends::V6 { .. } => ipv6::HEADER_LEN,
    };
    let fits = |tcp_len: usize| l3 + ip_len + tcp_len <= frame.len();
    let with_mss = tcp::MIN_HEADER_LEN + tcp::option::MSS_LEN;
    let mss = seg.mss.filter(|_| fits(with_mss));
    let tcp_len = if mss.is_some() {
        with_mss
    } else {
        tcp::MIN_HEADER_LEN
    };
    if !fits(tcp_len) {
        return None;
    }
    let total = u16::try_from(l3 + ip_len + tcp_len).ok()?;

    // Headers are composed in fixed-size arrays, where the views' bounds checks fold away,
    // then copied into place with constant lengths. Both start from zero: every field not set
    // below (IPv4 ID and fragment offset, IPv6 traffic class and flow label, TCP urgent pointer
    // and reserved bits) is zero, and so are the option bytes when no MSS is carried.
    let mut th = [0u8; tcp::MIN_HEADER_LEN + tcp::option::MSS_LEN];
    let mut t = tcp::Packet::new_unchecked(&mut th);
    t.set_src_port(tcp.dport);
    t.set_dst_port(tcp.sport);
    t.set_seq(seg.seq);
    t.set_ack(seg.ack);
    t.set_header_len(tcp_len);
    t.set_flags(seg.flags);
    t.set_window(seg.window);
    if let Some(m) = mss {
        t.set_option_mss(m);
    }
    // The checksum is summed over the whole fixed array as words, with its checksum field
    // still zero: unused option bytes are zero and add nothing, and the pseudo-header carries
    // the real length. This is the full RFC 1071 sum (every reply field changes, so there is
    // nothing to update incrementally from), at a constant 24 bytes.
    let tcp_sum = checksum::sum_words(0, &th);

    match ends {
        Ends::V4 { from, to } => {
            let (ih, pseudo) = ipv4_header(from, to, tcp_len, hop_limit);
            tcp::Packet::new_unchecked(&mut th).set_checksum(checksum::finish(pseudo + tcp_sum));
            put(frame, l3, &ih)?;
        }
        Ends::V6 { from, to } => {
            let (ih, pseudo) = ipv6_header(from, to, tcp_len, hop_limit);
            tcp::Packet::new_unchecked(&mut th).set_checksum(checksum::finish(pseudo + tcp_sum));
            put(frame, l3, &ih)?;
        }
    }
    let at = l3 + ip_len;
    if mss.is_some() {
        put(frame, at, &th)?;
    } else {
        let bare: &[u8; tcp::MIN_HEADER_LEN] = th.first_chunk()?;
        put(frame, at, bare)?;
    }

    ethernet::Frame::new_unchecked(&mut *frame).swap_addrs();
    Some(total)
}

/// The IPv4 header, checksum included, of a segment we make up (`tcp_len` bytes of TCP, no
/// payload), and the pseudo-header sum for its TCP checksum; for [`rewrite`] and the proxy's
/// `compose`. Every field not set here (ID, fragment offset, TOS) is zero.
#[inline]
pub(super) fn ipv4_header(
    from: [u8; 4],
    to: [u8; 4],
    tcp_len: usize,
    hop_limit: u8,
) -> ([u8; ipv4::MIN_HEADER_LEN], u32) {
    let mut ih = [0u8; ipv4::MIN_HEADER_LEN];
    let mut p = ipv4::Packet::new_unchecked(&mut ih);
    p.set_version(4);
    p.set_header_len(ipv4::MIN_HEADER_LEN);
    p.set_total_len((ipv4::MIN_HEADER_LEN + tcp_len) as u16);
    // ID 0 with DF set: an atomic datagram, whose ID RFC 6864 lets us choose freely.
    p.set_dont_frag(true);
    p.set_ttl(hop_limit);
    p.set_protocol(ip_protocol::TCP);
    p.set_src_addr(from);
    p.set_dst_addr(to);
    let ip_sum = checksum::finish(checksum::sum_words(0, &ih));
    ipv4::Packet::new_unchecked(&mut ih).set_checksum(ip_sum);
    let pseudo = checksum::pseudo_v4(from, to, ip_protocol::TCP, tcp_len as u16);
    (ih, pseudo)
}

/// The IPv6 header of a segment we make up (`tcp_len` bytes of TCP, no payload), and the
/// pseudo-header sum for its TCP checksum. Traffic class and flow label stay zero: the segment
/// is not part of any flow the peer has.
#[inline]
pub(super) fn ipv6_header(
    from: [u8; 16],
    to: [u8; 16],
    tcp_len: usize,
    hop_limit: u8,
) -> ([u8; ipv6::HEADER_LEN], u32) {
    let mut ih = [0u8; ipv6::HEADER_LEN];
    let mut p = ipv6::Packet::new_unchecked(&mut ih);
    p.set_version(6);
    p.set_payload_len(tcp_len as u16);
    p.set_next_header(ip_protocol::TCP);
    p.set_hop_limit(hop_limit);
    p.set_src_addr(from);
    p.set_dst_addr(to);
    let pseudo = checksum::pseudo_v6(from, to, ip_protocol::TCP, tcp_len as u32);
    (ih, pseudo)
}

/// Copies a composed header into `frame` at `at` with a length known at compile time, so the
/// copy is a few register moves rather than a `memcpy` call. `None` when it does not fit,
/// which [`rewrite`] has ruled out before writing anything.
#[inline]
fn put<const N: usize>(frame: &mut [u8], at: usize, header: &[u8; N]) -> Option<()> {
    let dst: &mut [u8; N] = frame.get_mut(at..)?.first_chunk_mut()?;
    *dst = *header;
    Some(())
}
