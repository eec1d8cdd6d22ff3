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
#[inline]
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
    if let (IpVersion::V4, IpAddr::V4(client), IpAddr::V4(server), Some(mss)) =
        (ip.version, ip.src, ip.dst, seg.mss)
    {
        if let Some(len) = rewrite_v4(
            frame,
            l3,
            client.octets(),
            server.octets(),
            tcp,
            hop_limit,
            seg,
            mss,
        ) {
            return Some(len);
        }
    }
    rewrite_any(frame, l3, ip, tcp, hop_limit, seg)
}

/// [`rewrite`] for every other case (IPv6, or no room for the MSS option), out of line so the
/// common path inlined into the stage stays small.
#[inline(never)]
fn rewrite_any(
    frame: &mut [u8],
    l3: usize,
    ip: &IpHeaders,
    tcp: &TcpInfo,
    hop_limit: u8,
    seg: &Segment,
) -> Option<u16> {
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
    fill_tcp(&mut t, tcp, seg, tcp_len);
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

    swap_macs(frame);
    Some(total)
}

/// Bytes of an IPv4 answer carrying the MSS option: header, TCP header, option.
const V4_MSS_LEN: usize = ipv4::MIN_HEADER_LEN + tcp::MIN_HEADER_LEN + tcp::option::MSS_LEN;

/// Sum of the two 16-bit halves of a 32-bit field, for the checksums.
#[inline(always)]
fn halves(x: u32) -> u32 {
    (x >> 16) + (x & 0xffff)
}

/// [`rewrite`] for the common answer, IPv4 with the MSS option, in one pass: both headers are
/// composed in one fixed-size array and copied into the frame with one bounds check, and both
/// checksums are summed from the field values instead of re-read bytes (the addresses' sum is
/// shared by the IPv4 header and the TCP pseudo-header, and swapping the ends changes no
/// sum). `None` (nothing written) when the frame has no room for the option; [`rewrite`] then
/// takes the general path.
#[allow(clippy::too_many_arguments)]
#[inline]
fn rewrite_v4(
    frame: &mut [u8],
    l3: usize,
    client: [u8; 4],
    server: [u8; 4],
    tcp: &TcpInfo,
    hop_limit: u8,
    seg: &Segment,
    mss: u16,
) -> Option<u16> {
    const TCP_LEN: usize = tcp::MIN_HEADER_LEN + tcp::option::MSS_LEN;
    let total = u16::try_from(l3 + V4_MSS_LEN).ok()?;
    let out: &mut [u8; V4_MSS_LEN] = frame.get_mut(l3..)?.first_chunk_mut()?;
    let mut h = [0u8; V4_MSS_LEN];
    let (ih, th) = h.split_at_mut(ipv4::MIN_HEADER_LEN);
    let mut p = ipv4::Packet::new_unchecked(&mut *ih);
    p.set_version(4);
    p.set_header_len(ipv4::MIN_HEADER_LEN);
    p.set_total_len(V4_MSS_LEN as u16);
    // ID 0 with DF set: an atomic datagram, whose ID RFC 6864 lets us choose freely.
    p.set_dont_frag(true);
    p.set_ttl(hop_limit);
    p.set_protocol(ip_protocol::TCP);
    p.set_src_addr(server);
    p.set_dst_addr(client);
    let mut t = tcp::Packet::new_unchecked(&mut *th);
    fill_tcp(&mut t, tcp, seg, TCP_LEN);
    t.set_option_mss(mss);

    let addrs = halves(u32::from_be_bytes(client)) + halves(u32::from_be_bytes(server));
    // Version/IHL/TOS, total length, ID, DF, TTL/protocol: the words just written.
    let ip_words = 0x4500
        + V4_MSS_LEN as u32
        + 0x4000
        + ((u32::from(hop_limit) << 8) | u32::from(ip_protocol::TCP));
    ipv4::Packet::new_unchecked(&mut *ih).set_checksum(checksum::finish(ip_words + addrs));
    let tcp_words = u32::from(tcp.sport)
        + u32::from(tcp.dport)
        + halves(seg.seq)
        + halves(seg.ack)
        + (((TCP_LEN as u32 / 4) << 12) | u32::from(seg.flags))
        + u32::from(seg.window)
        + ((u32::from(tcp::option::MSS) << 8) | tcp::option::MSS_LEN as u32)
        + u32::from(mss);
    let pseudo = addrs + u32::from(ip_protocol::TCP) + TCP_LEN as u32;
    tcp::Packet::new_unchecked(&mut *th).set_checksum(checksum::finish(pseudo + tcp_words));
    *out = h;
    swap_macs(frame);
    Some(total)
}

/// Exchanges the Ethernet source and destination addresses through a fixed-size view (the
/// caller has checked the frame holds at least an Ethernet header).
#[inline(always)]
fn swap_macs(frame: &mut [u8]) {
    if let Some(m) = frame.first_chunk_mut::<12>() {
        let old = *m;
        m[..6].copy_from_slice(&old[6..]);
        m[6..].copy_from_slice(&old[..6]);
    }
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

/// The reply's fixed TCP header fields, on both rewrite paths: ports swapped back toward the
/// client, then the segment's own numbers.
#[inline(always)]
fn fill_tcp<T: AsRef<[u8]> + AsMut<[u8]>>(
    t: &mut tcp::Packet<T>,
    tcp: &TcpInfo,
    seg: &Segment,
    header_len: usize,
) {
    t.set_src_port(tcp.dport);
    t.set_dst_port(tcp.sport);
    t.set_seq(seg.seq);
    t.set_ack(seg.ack);
    t.set_header_len(header_len);
    t.set_flags(seg.flags);
    t.set_window(seg.window);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Frag, Transport};
    use proptest::prelude::*;
    use std::net::Ipv4Addr;

    proptest! {
        /// The one-pass IPv4 answer's checksums, summed from field values, verify like ones
        /// computed over the written bytes, for any addresses, ports, numbers and TTL; and the
        /// general path (taken when the option does not fit) writes the same headers less
        /// the option.
        #[test]
        fn v4_answer_checksums_verify(c in any::<u32>(), s in any::<u32>(), sport in any::<u16>(),
                                      dport in any::<u16>(), seq in any::<u32>(), ack in any::<u32>(),
                                      flags in any::<u8>(), window in any::<u16>(), mss in any::<u16>(),
                                      ttl in 1u8.., vlan in any::<bool>()) {
            let l3 = if vlan { 18 } else { 14 };
            let ip = IpHeaders {
                version: IpVersion::V4,
                src: IpAddr::V4(Ipv4Addr::from(c)),
                dst: IpAddr::V4(Ipv4Addr::from(s)),
                proto: ip_protocol::TCP,
                ttl: 64,
                frag: Frag::None,
                ip_len: 40,
                l4_off: l3 as u16 + 20,
                transport: Transport::Tcp(TcpInfo {
                    sport,
                    dport,
                    seq: 1,
                    ack: 0,
                    flags: TcpInfo::SYN,
                    window: 1,
                    options: Default::default(),
                }),
                payload_off: l3 as u16 + 40,
                payload_len: 0,
            };
            let Transport::Tcp(tcp) = ip.transport else { unreachable!() };
            let seg = Segment { seq, ack, flags, window, mss: Some(mss) };
            let mut frame = [0xa5u8; 64];
            frame[..12].copy_from_slice(&[1, 1, 1, 1, 1, 1, 2, 2, 2, 2, 2, 2]);
            let len = rewrite(&mut frame, l3 as u16, &ip, &tcp, ttl, &seg).unwrap();
            prop_assert_eq!(usize::from(len), l3 + 44);
            prop_assert_eq!(&frame[..12], &[2, 2, 2, 2, 2, 2, 1, 1, 1, 1, 1, 1]);
            let ih = &frame[l3..l3 + 20];
            prop_assert_eq!(checksum::checksum(ih), 0);
            let p = ipv4::Packet::new_unchecked(ih);
            prop_assert_eq!((p.src_addr(), p.dst_addr()), (s.to_be_bytes(), c.to_be_bytes()));
            prop_assert_eq!((p.ttl(), p.total_len()), (ttl, 44));
            let seg_bytes = &frame[l3 + 20..l3 + 44];
            prop_assert_eq!(checksum::l4_v4(p.src_addr(), p.dst_addr(), ip_protocol::TCP, seg_bytes), 0);
            let t = tcp::Packet::new_unchecked(seg_bytes);
            prop_assert_eq!((t.src_port(), t.dst_port(), t.seq(), t.ack()), (dport, sport, seq, ack));
            prop_assert_eq!((t.flags(), t.window(), t.header_len()), (flags, window, 24));

            // Too short for the option: the general path, with the same headers but 20 bytes of TCP.
            let mut short = [0xa5u8; 64];
            let end = l3 + 40;
            let len = rewrite(&mut short[..end], l3 as u16, &ip, &tcp, ttl, &seg).unwrap();
            prop_assert_eq!(usize::from(len), end);
            prop_assert_eq!(checksum::checksum(&short[l3..l3 + 20]), 0);
            prop_assert_eq!(checksum::l4_v4(s.to_be_bytes(), c.to_be_bytes(), ip_protocol::TCP, &short[l3 + 20..end]), 0);
            // Ports, numbers, flags and window alike; the data offset differs (5 words, not 6).
            prop_assert_eq!(&short[l3 + 20..l3 + 32], &frame[l3 + 20..l3 + 32]);
            prop_assert_eq!(&short[l3 + 33..l3 + 36], &frame[l3 + 33..l3 + 36]);
        }
    }
}
