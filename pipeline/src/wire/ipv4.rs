//! IPv4 header (RFC 791): lengths, header checksum, options shape and fragment fields.

use super::{bytes, checksum};
use crate::Malformed;

/// Byte offsets of the IPv4 header fields.
pub mod field {
    /// Version (high nibble) and header length in 32-bit words (low nibble).
    pub const VER_IHL: usize = 0;
    /// DSCP (high 6 bits) and ECN (low 2 bits).
    pub const DSCP_ECN: usize = 1;
    /// Total length of the datagram, header included (2 bytes).
    pub const TOTAL_LEN: usize = 2;
    /// Identification, shared by the fragments of one datagram (2 bytes).
    pub const IDENT: usize = 4;
    /// Flags (3 high bits) and fragment offset in 8-byte units (13 bits).
    pub const FLAGS_FRAG: usize = 6;
    /// Time to live.
    pub const TTL: usize = 8;
    /// Upper-layer protocol (an [`ip_protocol`](crate::wire::ip_protocol) number).
    pub const PROTOCOL: usize = 9;
    /// Header checksum (2 bytes).
    pub const CHECKSUM: usize = 10;
    /// Source address (4 bytes).
    pub const SRC: usize = 12;
    /// Destination address (4 bytes).
    pub const DST: usize = 16;
    /// Start of the options, which run to IHL × 4.
    pub const OPTIONS: usize = 20;
}

/// Header length without options.
pub const MIN_HEADER_LEN: usize = 20;
/// IHL 15 × 4: the longest header, 40 bytes of options.
pub const MAX_HEADER_LEN: usize = 60;
/// Largest datagram the 16-bit total length can describe.
pub const MAX_DATAGRAM_LEN: usize = 65535;

const FLAG_RESERVED: u16 = 0x8000;
const FLAG_DF: u16 = 0x4000;
const FLAG_MF: u16 = 0x2000;
const FRAG_OFFSET_MASK: u16 = 0x1fff;

/// Option kinds whose shape is checked beyond the generic type-length rule.
pub mod option {
    /// End of option list.
    pub const EOL: u8 = 0;
    /// No-operation padding between options.
    pub const NOP: u8 = 1;
    /// Record route (RFC 791).
    pub const RECORD_ROUTE: u8 = 7;
    /// Internet timestamp (RFC 791).
    pub const TIMESTAMP: u8 = 68;
    /// Loose source and record route: deprecated, a spoofing aid (RFC 7126).
    pub const LOOSE_SOURCE_ROUTE: u8 = 131;
    /// Stream identifier (obsolete, RFC 6814).
    pub const STREAM_ID: u8 = 136;
    /// Strict source and record route: deprecated like the loose one.
    pub const STRICT_SOURCE_ROUTE: u8 = 137;
    /// Router alert (RFC 2113): asks every router to look at the packet.
    pub const ROUTER_ALERT: u8 = 148;
}

/// A view of an IPv4 datagram over any byte buffer, starting at the version byte.
#[derive(Debug, Clone, Copy)]
pub struct Packet<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Packet<T> {
    /// Wrap without checking; accessors read missing bytes as zero and setters skip them.
    pub const fn new_unchecked(buffer: T) -> Self {
        Packet { buffer }
    }

    /// Wrap after checking, in this order: the 20 fixed bytes are present (`Ipv4Truncated`),
    /// the version is 4 (`Ipv4BadVersion`), IHL is at least 5 (`Ipv4BadHeaderLength`), the
    /// whole header with options is present (`Ipv4Truncated`), and total length covers the
    /// header and fits in the buffer (`Ipv4BadTotalLength`). Bytes past total length are
    /// Ethernet padding and are allowed. The checksum and options are checked separately
    /// ([`Packet::verify_checksum`], [`Packet::check_options`]) so a rewriter that already
    /// trusts the header need not pay for them.
    pub fn new_checked(buffer: T) -> Result<Self, Malformed> {
        let p = Self::new_unchecked(buffer);
        p.check_len()?;
        Ok(p)
    }

    /// The checks [`Packet::new_checked`] runs, in its order.
    pub fn check_len(&self) -> Result<(), Malformed> {
        let len = self.buffer.as_ref().len();
        if len < MIN_HEADER_LEN {
            return Err(Malformed::Ipv4Truncated);
        }
        if self.version() != 4 {
            return Err(Malformed::Ipv4BadVersion);
        }
        let hl = self.header_len();
        if hl < MIN_HEADER_LEN {
            return Err(Malformed::Ipv4BadHeaderLength);
        }
        if len < hl {
            return Err(Malformed::Ipv4Truncated);
        }
        let total = usize::from(self.total_len());
        if total < hl || total > len {
            return Err(Malformed::Ipv4BadTotalLength);
        }
        Ok(())
    }

    /// Give the buffer back.
    pub fn into_inner(self) -> T {
        self.buffer
    }

    /// Version nibble (4 for a valid header).
    pub fn version(&self) -> u8 {
        bytes::u8_at(self.buffer.as_ref(), field::VER_IHL) >> 4
    }

    /// Header length in bytes (IHL × 4).
    pub fn header_len(&self) -> usize {
        usize::from(bytes::u8_at(self.buffer.as_ref(), field::VER_IHL) & 0x0f) * 4
    }

    /// DSCP and ECN bits, as one byte.
    pub fn dscp_ecn(&self) -> u8 {
        bytes::u8_at(self.buffer.as_ref(), field::DSCP_ECN)
    }

    /// Total length field: header plus payload, Ethernet padding excluded.
    pub fn total_len(&self) -> u16 {
        bytes::u16_at(self.buffer.as_ref(), field::TOTAL_LEN)
    }

    /// Identification field.
    pub fn ident(&self) -> u16 {
        bytes::u16_at(self.buffer.as_ref(), field::IDENT)
    }

    fn flags_frag(&self) -> u16 {
        bytes::u16_at(self.buffer.as_ref(), field::FLAGS_FRAG)
    }

    /// The reserved ("evil") flag bit. Reported, not rejected: RFC 791 only asks senders to
    /// clear it and dropping on it would gain nothing.
    pub fn reserved_flag(&self) -> bool {
        self.flags_frag() & FLAG_RESERVED != 0
    }

    /// Don't-fragment flag.
    pub fn dont_frag(&self) -> bool {
        self.flags_frag() & FLAG_DF != 0
    }

    /// More-fragments flag: set on every fragment but the last.
    pub fn more_frags(&self) -> bool {
        self.flags_frag() & FLAG_MF != 0
    }

    /// Fragment offset in bytes.
    pub fn frag_offset(&self) -> usize {
        usize::from(self.flags_frag() & FRAG_OFFSET_MASK) * 8
    }

    /// Time to live.
    pub fn ttl(&self) -> u8 {
        bytes::u8_at(self.buffer.as_ref(), field::TTL)
    }

    /// Upper-layer protocol (an [`ip_protocol`](super::ip_protocol) number).
    pub fn protocol(&self) -> u8 {
        bytes::u8_at(self.buffer.as_ref(), field::PROTOCOL)
    }

    /// The stored header checksum.
    pub fn checksum(&self) -> u16 {
        bytes::u16_at(self.buffer.as_ref(), field::CHECKSUM)
    }

    /// Source address.
    pub fn src_addr(&self) -> [u8; 4] {
        bytes::array_or_zero(self.buffer.as_ref(), field::SRC)
    }

    /// Destination address.
    pub fn dst_addr(&self) -> [u8; 4] {
        bytes::array_or_zero(self.buffer.as_ref(), field::DST)
    }

    fn header(&self) -> &[u8] {
        let b = self.buffer.as_ref();
        b.get(..self.header_len()).unwrap_or(b)
    }

    /// The option bytes between the fixed header and IHL × 4.
    pub fn options(&self) -> &[u8] {
        self.header().get(field::OPTIONS..).unwrap_or(&[])
    }

    /// Whether the header (options included) sums to zero in one's complement.
    pub fn verify_checksum(&self) -> bool {
        checksum::checksum(self.header()) == 0
    }

    /// Reject options that do not tile the option space, and known options whose length or
    /// pointer is impossible; unknown kinds only need a sane length. Hostile option lists are
    /// a classic way to push slow paths in routers and stacks, so they are refused here.
    pub fn check_options(&self) -> Result<(), Malformed> {
        check_options(self.options())
    }

    /// The IP payload as total length bounds it (Ethernet padding excluded).
    pub fn payload(&self) -> &[u8] {
        let b = self.buffer.as_ref();
        b.get(self.header_len()..usize::from(self.total_len()))
            .unwrap_or(&[])
    }
}

/// See [`Packet::check_options`].
pub fn check_options(mut opts: &[u8]) -> Result<(), Malformed> {
    use option::*;
    while let Some(&kind) = opts.first() {
        match kind {
            EOL => return Ok(()),
            NOP => {
                opts = opts.get(1..).unwrap_or(&[]);
                continue;
            }
            _ => {}
        }
        let len = usize::from(*opts.get(1).ok_or(Malformed::Ipv4BadOptions)?);
        if len < 2 || len > opts.len() {
            return Err(Malformed::Ipv4BadOptions);
        }
        let pointer = opts.get(2).copied().unwrap_or(0);
        let ok = match kind {
            // Route data: a pointer then 4-byte addresses; the pointer is 1-based and >= 4.
            RECORD_ROUTE | LOOSE_SOURCE_ROUTE | STRICT_SOURCE_ROUTE => {
                len >= 3 && (len - 3) % 4 == 0 && pointer >= 4
            }
            // Pointer, overflow/flag byte, then entries; the pointer is 1-based and >= 5.
            TIMESTAMP => len >= 4 && pointer >= 5,
            STREAM_ID | ROUTER_ALERT => len == 4,
            _ => true,
        };
        if !ok {
            return Err(Malformed::Ipv4BadOptions);
        }
        opts = opts.get(len..).unwrap_or(&[]);
    }
    Ok(())
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Packet<T> {
    /// Write the version nibble, keeping IHL.
    pub fn set_version(&mut self, version: u8) {
        let b = self.buffer.as_mut();
        let ihl = bytes::u8_at(b, field::VER_IHL) & 0x0f;
        bytes::set_u8(b, field::VER_IHL, (version << 4) | ihl);
    }

    /// Set IHL from a header length in bytes (rounded down to words, at most 60), keeping the
    /// version.
    pub fn set_header_len(&mut self, len: usize) {
        let words = (len.min(MAX_HEADER_LEN) / 4) as u8;
        let b = self.buffer.as_mut();
        let version = bytes::u8_at(b, field::VER_IHL) & 0xf0;
        bytes::set_u8(b, field::VER_IHL, version | words);
    }

    /// Set or clear the don't-fragment flag, keeping the other flags and the offset.
    pub fn set_dont_frag(&mut self, df: bool) {
        let v = self.flags_frag() & !FLAG_DF | if df { FLAG_DF } else { 0 };
        bytes::set_u16(self.buffer.as_mut(), field::FLAGS_FRAG, v);
    }

    /// Write the upper-layer protocol (an [`ip_protocol`](super::ip_protocol) number).
    pub fn set_protocol(&mut self, proto: u8) {
        bytes::set_u8(self.buffer.as_mut(), field::PROTOCOL, proto);
    }

    /// Write the source address.
    pub fn set_src_addr(&mut self, addr: [u8; 4]) {
        bytes::set_bytes(self.buffer.as_mut(), field::SRC, &addr);
    }

    /// Write the destination address.
    pub fn set_dst_addr(&mut self, addr: [u8; 4]) {
        bytes::set_bytes(self.buffer.as_mut(), field::DST, &addr);
    }

    /// Write the time to live.
    pub fn set_ttl(&mut self, ttl: u8) {
        bytes::set_u8(self.buffer.as_mut(), field::TTL, ttl);
    }

    /// Write the total length field.
    pub fn set_total_len(&mut self, len: u16) {
        bytes::set_u16(self.buffer.as_mut(), field::TOTAL_LEN, len);
    }

    /// Write the header checksum as given ([`Packet::fill_checksum`] computes it).
    pub fn set_checksum(&mut self, sum: u16) {
        bytes::set_u16(self.buffer.as_mut(), field::CHECKSUM, sum);
    }

    /// Recompute the header checksum from scratch after a rewrite.
    pub fn fill_checksum(&mut self) {
        self.set_checksum(0);
        let sum = checksum::checksum(self.header());
        self.set_checksum(sum);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 20-byte header of a TCP SYN 172.16.10.99 → 172.16.10.12, total length 60, DF.
    const HDR: [u8; 20] = [
        0x45, 0x00, 0x00, 0x3c, 0x1c, 0x46, 0x40, 0x00, 0x40, 0x06, 0xb1, 0xe6, 0xac, 0x10, 0x0a,
        0x63, 0xac, 0x10, 0x0a, 0x0c,
    ];

    fn datagram() -> Vec<u8> {
        let mut v = HDR.to_vec();
        v.resize(60, 0);
        v
    }

    #[test]
    fn fields() {
        let d = datagram();
        let p = Packet::new_checked(&d[..]).unwrap();
        assert_eq!((p.version(), p.header_len(), p.total_len()), (4, 20, 60));
        assert_eq!(
            (p.ident(), p.dont_frag(), p.more_frags()),
            (0x1c46, true, false)
        );
        assert_eq!((p.frag_offset(), p.ttl(), p.protocol()), (0, 64, 6));
        assert_eq!(p.src_addr(), [172, 16, 10, 99]);
        assert_eq!(p.dst_addr(), [172, 16, 10, 12]);
        assert!(p.verify_checksum());
        assert!(p.options().is_empty());
        assert_eq!(p.payload().len(), 40);
    }

    #[test]
    fn length_checks_in_order() {
        let d = datagram();
        assert_eq!(
            Packet::new_checked(&d[..19]).err(),
            Some(Malformed::Ipv4Truncated)
        );
        let mut v = d.clone();
        v[0] = 0x65;
        assert_eq!(
            Packet::new_checked(&v[..]).err(),
            Some(Malformed::Ipv4BadVersion)
        );
        v[0] = 0x44;
        assert_eq!(
            Packet::new_checked(&v[..]).err(),
            Some(Malformed::Ipv4BadHeaderLength)
        );
        v[0] = 0x4f;
        assert_eq!(
            Packet::new_checked(&v[..40]).err(),
            Some(Malformed::Ipv4Truncated)
        );
        assert_eq!(
            Packet::new_checked(&d[..59]).err(),
            Some(Malformed::Ipv4BadTotalLength)
        );
        let mut v = d.clone();
        v[3] = 19;
        assert_eq!(
            Packet::new_checked(&v[..]).err(),
            Some(Malformed::Ipv4BadTotalLength)
        );
        // Padding after total length is fine and excluded from the payload.
        let mut v = d.clone();
        v.extend_from_slice(&[0; 6]);
        assert_eq!(Packet::new_checked(&v[..]).unwrap().payload().len(), 40);
    }

    #[test]
    fn rewrite_then_fill_checksum() {
        let mut d = datagram();
        let mut p = Packet::new_checked(&mut d[..]).unwrap();
        p.set_src_addr([10, 0, 0, 1]);
        p.set_ttl(3);
        assert!(!p.verify_checksum());
        p.fill_checksum();
        assert!(p.verify_checksum());
        assert_eq!((p.src_addr(), p.ttl()), ([10, 0, 0, 1], 3));
    }

    #[test]
    fn options_shapes() {
        let ok: &[&[u8]] = &[
            &[],
            &[1, 1, 1, 0],
            &[148, 4, 0, 0],
            &[7, 7, 4, 0, 0, 0, 0, 0],
            &[68, 4, 5, 0],
            &[0, 0xff, 0xff], // after EOL anything is padding
            &[200, 3, 9, 1],  // unknown kind, skipped by length
        ];
        for o in ok {
            assert_eq!(check_options(o), Ok(()), "{o:?}");
        }
        let bad: &[&[u8]] = &[
            &[148],                    // no length byte
            &[148, 1, 0, 0],           // length < 2
            &[148, 8, 0, 0],           // beyond the option space
            &[148, 3, 0, 1],           // router alert is exactly 4
            &[7, 8, 4, 0, 0, 0, 0, 0], // route data not a multiple of 4
            &[7, 7, 3, 0, 0, 0, 0, 0], // route pointer < 4
            &[68, 4, 4, 0],            // timestamp pointer < 5
        ];
        for o in bad {
            assert_eq!(check_options(o), Err(Malformed::Ipv4BadOptions), "{o:?}");
        }
    }
}
