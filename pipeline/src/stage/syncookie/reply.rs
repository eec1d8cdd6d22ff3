//! Turning a received client segment into our answer, in the same buffer.
//!
//! The answer is built fresh from the parsed [`Headers`](crate::Headers) values rather than by
//! patching the received bytes: IPv4 options, IPv6 extension headers, TCP options other than
//! MSS and any payload are all dropped, so the reply is always a minimal, well-formed segment
//! whatever the client sent. Only the Ethernet header and VLAN tags are kept (MACs swapped), so
//! the frame leaves on the same VLAN it arrived on.
//!
//! The frame is not padded to the Ethernet minimum of 60 bytes: the returned length is the exact
//! reply length (a v4 SYN-ACK is 58 bytes untagged) and the NIC pads short frames on transmit.

use crate::wire::checksum;
use crate::{IpHeaders, IpVersion, TcpInfo};
use std::net::IpAddr;

const ETH_HDR: usize = 14;
const TCP_PROTO: u8 = 6;

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
    if l3 < ETH_HDR {
        return None;
    }
    let ip_len = match ip.version {
        IpVersion::V4 => 20,
        IpVersion::V6 => 40,
    };
    let fits = |tcp_len: usize| l3 + ip_len + tcp_len <= frame.len();
    let mss = seg.mss.filter(|_| fits(24));
    let tcp_len: usize = if mss.is_some() { 24 } else { 20 };
    if !fits(tcp_len) {
        return None;
    }
    let total = u16::try_from(l3 + ip_len + tcp_len).ok()?;

    let mut th = [0u8; 24];
    th[0..2].copy_from_slice(&tcp.dport.to_be_bytes());
    th[2..4].copy_from_slice(&tcp.sport.to_be_bytes());
    th[4..8].copy_from_slice(&seg.seq.to_be_bytes());
    th[8..12].copy_from_slice(&seg.ack.to_be_bytes());
    th[12] = ((tcp_len / 4) as u8) << 4;
    th[13] = seg.flags;
    th[14..16].copy_from_slice(&seg.window.to_be_bytes());
    // [16..18] checksum, [18..20] urgent pointer: zero for now.
    if let Some(m) = mss {
        th[20] = 2; // kind: MSS
        th[21] = 4; // length
        th[22..24].copy_from_slice(&m.to_be_bytes());
    }
    let th = th.get_mut(..tcp_len)?;

    match (ip.version, ip.src, ip.dst) {
        (IpVersion::V4, IpAddr::V4(client), IpAddr::V4(server)) => {
            let (from, to) = (server.octets(), client.octets());
            let mut ih = [0u8; 20];
            ih[0] = 0x45;
            ih[2..4].copy_from_slice(&((20 + tcp_len) as u16).to_be_bytes());
            // ID 0 with DF set: an atomic datagram, whose ID RFC 6864 lets us choose freely.
            ih[6] = 0x40;
            ih[8] = hop_limit;
            ih[9] = TCP_PROTO;
            ih[12..16].copy_from_slice(&from);
            ih[16..20].copy_from_slice(&to);
            let c = checksum::checksum(&ih);
            ih[10..12].copy_from_slice(&c.to_be_bytes());
            let pseudo = checksum::pseudo_v4(from, to, TCP_PROTO, tcp_len as u16);
            let c = checksum::finish(checksum::sum(pseudo, th));
            th[16..18].copy_from_slice(&c.to_be_bytes());
            frame.get_mut(l3..l3 + 20)?.copy_from_slice(&ih);
        }
        (IpVersion::V6, IpAddr::V6(client), IpAddr::V6(server)) => {
            let (from, to) = (server.octets(), client.octets());
            let mut ih = [0u8; 40];
            // Traffic class and flow label zero: the reply is not part of any flow the server has.
            ih[0] = 0x60;
            ih[4..6].copy_from_slice(&(tcp_len as u16).to_be_bytes());
            ih[6] = TCP_PROTO;
            ih[7] = hop_limit;
            ih[8..24].copy_from_slice(&from);
            ih[24..40].copy_from_slice(&to);
            let pseudo = checksum::pseudo_v6(from, to, TCP_PROTO, tcp_len as u32);
            let c = checksum::finish(checksum::sum(pseudo, th));
            th[16..18].copy_from_slice(&c.to_be_bytes());
            frame.get_mut(l3..l3 + 40)?.copy_from_slice(&ih);
        }
        _ => return None,
    }
    let at = l3 + ip_len;
    frame.get_mut(at..at + tcp_len)?.copy_from_slice(th);

    let (dst_mac, rest) = frame.split_at_mut(6);
    if let Some(src_mac) = rest.get_mut(..6) {
        dst_mac.swap_with_slice(src_mac);
    }
    Some(total)
}
