//! IPv6 fixed header (RFC 8200) and the extension-header chain.

use super::bytes;
use crate::Malformed;

/// Byte offsets of the fixed IPv6 header fields.
pub mod field {
    /// Version (4 bits), traffic class (8 bits) and flow label (20 bits).
    pub const VER_TC_FLOW: usize = 0;
    /// Payload length: everything after the fixed header (2 bytes).
    pub const PAYLOAD_LEN: usize = 4;
    /// The first extension header or the upper-layer protocol.
    pub const NEXT_HEADER: usize = 6;
    /// Hop limit (IPv4's TTL).
    pub const HOP_LIMIT: usize = 7;
    /// Source address (16 bytes).
    pub const SRC: usize = 8;
    /// Destination address (16 bytes).
    pub const DST: usize = 24;
}

/// Length of the fixed header; extension headers follow it.
pub const HEADER_LEN: usize = 40;

/// Next-header values: the IP protocol numbers, under the name RFC 8200 gives the field. The
/// chain walker steps over `HOP_BY_HOP`, `ROUTING`, `FRAGMENT`, `DEST_OPTS` and `AH`.
pub use super::ip_protocol as next_header;

/// Longest chain walked before giving up. RFC 8200 recommends each header at most once
/// (destination options twice), so an honest chain has at most six; anything longer is an
/// attempt to make the parser walk, or to push the transport header out of the first fragment.
pub const MAX_EXT_HEADERS: usize = 8;

/// A view of an IPv6 datagram over any byte buffer, starting at the version byte.
#[derive(Debug, Clone, Copy)]
pub struct Packet<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Packet<T> {
    /// Wrap without checking; accessors read missing bytes as zero and setters skip them.
    pub const fn new_unchecked(buffer: T) -> Self {
        Packet { buffer }
    }

    /// Wrap after checking the 40-byte header is present (`Ipv6Truncated`), the version is 6
    /// (`Ipv6BadVersion`) and the payload length fits in the buffer (`Ipv6BadPayloadLength`).
    /// Trailing bytes are Ethernet padding and are allowed.
    pub fn new_checked(buffer: T) -> Result<Self, Malformed> {
        let p = Self::new_unchecked(buffer);
        p.check_len()?;
        Ok(p)
    }

    /// The checks [`Packet::new_checked`] runs, in its order.
    pub fn check_len(&self) -> Result<(), Malformed> {
        let len = self.buffer.as_ref().len();
        if len < HEADER_LEN {
            return Err(Malformed::Ipv6Truncated);
        }
        if self.version() != 6 {
            return Err(Malformed::Ipv6BadVersion);
        }
        if self.total_len() > len {
            return Err(Malformed::Ipv6BadPayloadLength);
        }
        Ok(())
    }

    /// Give the buffer back.
    pub fn into_inner(self) -> T {
        self.buffer
    }

    /// Version nibble (6 for a valid header).
    pub fn version(&self) -> u8 {
        bytes::u8_at(self.buffer.as_ref(), field::VER_TC_FLOW) >> 4
    }

    /// Traffic class (DSCP and ECN).
    pub fn traffic_class(&self) -> u8 {
        (bytes::u16_at(self.buffer.as_ref(), field::VER_TC_FLOW) >> 4) as u8
    }

    /// The 20-bit flow label.
    pub fn flow_label(&self) -> u32 {
        bytes::u32_at(self.buffer.as_ref(), field::VER_TC_FLOW) & 0x000f_ffff
    }

    /// Payload length field: extension headers and upper layer, padding excluded.
    pub fn payload_len(&self) -> u16 {
        bytes::u16_at(self.buffer.as_ref(), field::PAYLOAD_LEN)
    }

    /// Fixed header plus payload length: the datagram without Ethernet padding.
    pub fn total_len(&self) -> usize {
        HEADER_LEN + usize::from(self.payload_len())
    }

    /// Next header: the first extension header or the upper-layer protocol.
    pub fn next_header(&self) -> u8 {
        bytes::u8_at(self.buffer.as_ref(), field::NEXT_HEADER)
    }

    /// Hop limit.
    pub fn hop_limit(&self) -> u8 {
        bytes::u8_at(self.buffer.as_ref(), field::HOP_LIMIT)
    }

    /// Source address.
    pub fn src_addr(&self) -> [u8; 16] {
        bytes::array_or_zero(self.buffer.as_ref(), field::SRC)
    }

    /// Destination address.
    pub fn dst_addr(&self) -> [u8; 16] {
        bytes::array_or_zero(self.buffer.as_ref(), field::DST)
    }

    /// The datagram bytes (header included) bounded by the payload length.
    pub fn datagram(&self) -> &[u8] {
        let b = self.buffer.as_ref();
        b.get(..self.total_len()).unwrap_or(b)
    }

    /// Walk the extension-header chain; see [`walk_chain`].
    pub fn chain(&self) -> Result<Chain, Malformed> {
        walk_chain(self.datagram())
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Packet<T> {
    /// Write the version nibble, keeping the traffic class and flow label.
    pub fn set_version(&mut self, version: u8) {
        let b = self.buffer.as_mut();
        let tc_high = bytes::u8_at(b, field::VER_TC_FLOW) & 0x0f;
        bytes::set_u8(b, field::VER_TC_FLOW, (version << 4) | tc_high);
    }

    /// Write the next header: the first extension header or the upper-layer protocol (an
    /// [`ip_protocol`](super::ip_protocol) number).
    pub fn set_next_header(&mut self, next: u8) {
        bytes::set_u8(self.buffer.as_mut(), field::NEXT_HEADER, next);
    }

    /// Write the source address.
    pub fn set_src_addr(&mut self, addr: [u8; 16]) {
        bytes::set_bytes(self.buffer.as_mut(), field::SRC, &addr);
    }

    /// Write the destination address.
    pub fn set_dst_addr(&mut self, addr: [u8; 16]) {
        bytes::set_bytes(self.buffer.as_mut(), field::DST, &addr);
    }

    /// Write the hop limit.
    pub fn set_hop_limit(&mut self, hops: u8) {
        bytes::set_u8(self.buffer.as_mut(), field::HOP_LIMIT, hops);
    }

    /// Write the payload length field.
    pub fn set_payload_len(&mut self, len: u16) {
        bytes::set_u16(self.buffer.as_mut(), field::PAYLOAD_LEN, len);
    }
}

/// Byte offsets in the fragment header (RFC 8200 §4.5).
pub mod frag_field {
    /// The header after the fragment header.
    pub const NEXT_HEADER: usize = 0;
    /// Fragment offset in 8-byte units (13 bits), 2 reserved bits and the M flag.
    pub const OFFSET_FLAGS: usize = 2;
    /// Identification, shared by the fragments of one datagram (4 bytes).
    pub const IDENT: usize = 4;
}

/// Length of the fragment header.
pub const FRAG_HEADER_LEN: usize = 8;

/// A view of the fragment extension header.
#[derive(Debug, Clone, Copy)]
pub struct FragmentHeader<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> FragmentHeader<T> {
    /// Wrap without checking; accessors read missing bytes as zero.
    pub const fn new_unchecked(buffer: T) -> Self {
        FragmentHeader { buffer }
    }

    /// Wrap after checking the 8-byte header is present (`Ipv6ExtTruncated`).
    pub fn new_checked(buffer: T) -> Result<Self, Malformed> {
        let h = Self::new_unchecked(buffer);
        if h.buffer.as_ref().len() < FRAG_HEADER_LEN {
            return Err(Malformed::Ipv6ExtTruncated);
        }
        Ok(h)
    }

    /// The header after this one (first header of the fragmentable part).
    pub fn next_header(&self) -> u8 {
        bytes::u8_at(self.buffer.as_ref(), frag_field::NEXT_HEADER)
    }

    /// Fragment offset in bytes.
    pub fn offset(&self) -> usize {
        usize::from(bytes::u16_at(self.buffer.as_ref(), frag_field::OFFSET_FLAGS) >> 3) * 8
    }

    /// M flag: set on every fragment but the last.
    pub fn more_frags(&self) -> bool {
        bytes::u16_at(self.buffer.as_ref(), frag_field::OFFSET_FLAGS) & 1 != 0
    }

    /// Identification.
    pub fn ident(&self) -> u32 {
        bytes::u32_at(self.buffer.as_ref(), frag_field::IDENT)
    }
}

/// Fragment fields found in the chain.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FragInfo {
    /// Offset in bytes.
    pub offset: usize,
    /// M flag: more fragments follow.
    pub more: bool,
    /// Identification of the original datagram.
    pub ident: u32,
    /// Offset, from the IPv6 header start, of the first byte after the fragment header: the
    /// start of the fragmentable part.
    pub data_off: usize,
}

/// Where the chain ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Chain {
    /// The upper-layer protocol, or for a non-first fragment the next header named by the
    /// fragment header (the first header of the fragmentable part; not parsed).
    pub proto: u8,
    /// Offset of the upper-layer header from the IPv6 header start.
    pub l4_off: usize,
    /// Number of extension headers stepped over.
    pub count: usize,
    /// The fragment header's fields, if the chain has one.
    pub frag: Option<FragInfo>,
}

/// Walk hop-by-hop, routing, fragment, destination-options and AH headers in `datagram` (the
/// IPv6 header and its payload, padding excluded) and say where the upper layer starts.
///
/// The walk stops at the first non-extension next header, at ESP and no-next-header (nothing
/// after them is readable), and after the fragment header of a non-first fragment (what
/// follows is another fragment's data). Errors: a header not fully inside the payload is
/// `Ipv6ExtTruncated`, or `FragmentBad` when it lies after the fragment header of a first
/// fragment (RFC 7112: the whole chain must be in the first fragment); more than
/// [`MAX_EXT_HEADERS`] is `Ipv6TooManyExtHeaders`; a second fragment header is `FragmentBad`;
/// hop-by-hop anywhere but first, an AH shorter than its fixed part, or a type 0 routing header
/// with segments left (deprecated by RFC 5095 for enabling traffic amplification) is
/// `Ipv6BadExtHeader`.
pub fn walk_chain(datagram: &[u8]) -> Result<Chain, Malformed> {
    use next_header::*;
    let mut nh = bytes::u8_at(datagram, field::NEXT_HEADER);
    let mut off = HEADER_LEN;
    let mut count = 0usize;
    let mut frag: Option<FragInfo> = None;
    while matches!(nh, HOP_BY_HOP | ROUTING | FRAGMENT | DEST_OPTS | AH) {
        if let Some(f) = frag {
            if f.offset != 0 {
                break;
            }
        }
        count += 1;
        if count > MAX_EXT_HEADERS {
            return Err(Malformed::Ipv6TooManyExtHeaders);
        }
        let truncated = if frag.is_some_and(|f| f.more) {
            Malformed::FragmentBad
        } else {
            Malformed::Ipv6ExtTruncated
        };
        let rest = datagram.get(off..).unwrap_or(&[]);
        let (next, len) = match nh {
            FRAGMENT => {
                if frag.is_some() {
                    return Err(Malformed::FragmentBad);
                }
                let f = FragmentHeader::new_checked(rest).map_err(|_| truncated)?;
                frag = Some(FragInfo {
                    offset: f.offset(),
                    more: f.more_frags(),
                    ident: f.ident(),
                    data_off: off + FRAG_HEADER_LEN,
                });
                (f.next_header(), FRAG_HEADER_LEN)
            }
            _ => {
                let [next, len_field] = bytes::array_at::<2>(rest, 0).ok_or(truncated)?;
                let len = if nh == AH {
                    // Payload length in 4-byte units minus 2; the fixed part is 12 bytes.
                    if len_field < 1 {
                        return Err(Malformed::Ipv6BadExtHeader);
                    }
                    (usize::from(len_field) + 2) * 4
                } else {
                    (usize::from(len_field) + 1) * 8
                };
                if nh == HOP_BY_HOP && count != 1 {
                    return Err(Malformed::Ipv6BadExtHeader);
                }
                if nh == ROUTING {
                    let routing_type = bytes::u8_at(rest, 2);
                    let segments_left = bytes::u8_at(rest, 3);
                    if routing_type == 0 && segments_left != 0 {
                        return Err(Malformed::Ipv6BadExtHeader);
                    }
                }
                (next, len)
            }
        };
        if len > rest.len() {
            return Err(truncated);
        }
        off += len;
        nh = next;
    }
    Ok(Chain {
        proto: nh,
        l4_off: off,
        count,
        frag,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(next: u8, payload_len: u16) -> Vec<u8> {
        let mut v = vec![0u8; HEADER_LEN];
        v[0] = 0x60;
        v[1] = 0x12; // traffic class 0x01, flow label 0x23456
        v[2] = 0x34;
        v[3] = 0x56;
        v[4..6].copy_from_slice(&payload_len.to_be_bytes());
        v[6] = next;
        v[7] = 64;
        v[8] = 0x20;
        v[9] = 0x01;
        v[23] = 1;
        v[24] = 0x20;
        v[25] = 0x01;
        v[39] = 2;
        v
    }

    #[test]
    fn fields() {
        let mut v = header(17, 8);
        v.extend_from_slice(&[0; 8]);
        let p = Packet::new_checked(&v[..]).unwrap();
        assert_eq!(
            (p.version(), p.traffic_class(), p.flow_label()),
            (6, 0x01, 0x23456)
        );
        assert_eq!(
            (p.payload_len(), p.next_header(), p.hop_limit()),
            (8, 17, 64)
        );
        assert_eq!(p.src_addr()[..2], [0x20, 0x01]);
        assert_eq!(p.dst_addr()[15], 2);
        assert_eq!(
            p.chain().unwrap(),
            Chain {
                proto: 17,
                l4_off: 40,
                count: 0,
                frag: None
            }
        );
    }

    #[test]
    fn length_checks() {
        let v = header(59, 0);
        assert_eq!(
            Packet::new_checked(&v[..39]).err(),
            Some(Malformed::Ipv6Truncated)
        );
        let mut w = v.clone();
        w[0] = 0x40;
        assert_eq!(
            Packet::new_checked(&w[..]).err(),
            Some(Malformed::Ipv6BadVersion)
        );
        let w = header(59, 1);
        assert_eq!(
            Packet::new_checked(&w[..]).err(),
            Some(Malformed::Ipv6BadPayloadLength)
        );
    }

    #[test]
    fn chain_with_fragment() {
        use next_header::*;
        let mut v = header(HOP_BY_HOP, 0);
        v.extend_from_slice(&[DEST_OPTS, 0, 1, 4, 0, 0, 0, 0]); // hop-by-hop, PadN
        v.extend_from_slice(&[ROUTING, 1, 1, 4, 0, 0, 0, 0]); // dest opts 16 bytes
        v.extend_from_slice(&[0; 8]);
        v.extend_from_slice(&[FRAGMENT, 0, 4, 0, 0, 0, 0, 0]); // routing type 4, 8 bytes
        v.extend_from_slice(&[AH, 0, 0, 1, 0xde, 0xad, 0xbe, 0xef]); // first fragment
        v.extend_from_slice(&[6, 1, 0, 0, 0, 0, 0, 1, 0, 0, 0, 1]); // AH, 12 bytes
        v.extend_from_slice(&[0; 24]);
        let plen = (v.len() - HEADER_LEN) as u16;
        v[4..6].copy_from_slice(&plen.to_be_bytes());
        let c = Packet::new_checked(&v[..]).unwrap().chain().unwrap();
        assert_eq!(c.proto, 6);
        assert_eq!(c.count, 5);
        assert_eq!(c.l4_off, 40 + 8 + 16 + 8 + 8 + 12);
        assert_eq!(
            c.frag,
            Some(FragInfo {
                offset: 0,
                more: true,
                ident: 0xdeadbeef,
                data_off: 80
            })
        );
    }
}
