//! Ethernet II header and 802.1Q / 802.1ad (QinQ) VLAN tags.

use super::bytes;
use crate::Malformed;

/// Byte offsets of the Ethernet II header fields.
pub mod field {
    /// Destination MAC address (6 bytes).
    pub const DST: usize = 0;
    /// Source MAC address (6 bytes).
    pub const SRC: usize = 6;
    /// EtherType, or the TPID of the first VLAN tag (2 bytes).
    pub const ETHERTYPE: usize = 12;
}

/// Length of the untagged Ethernet header.
pub const HEADER_LEN: usize = 14;

// The EtherTypes scrubd tells apart: the one set every file names them from.

/// IPv4 (RFC 894).
pub const ETHERTYPE_IPV4: u16 = 0x0800;
/// ARP (RFC 826): forwarded untouched.
pub const ETHERTYPE_ARP: u16 = 0x0806;
/// IPv6 (RFC 2464).
pub const ETHERTYPE_IPV6: u16 = 0x86dd;
/// 802.1Q customer tag.
pub const TPID_8021Q: u16 = 0x8100;
/// 802.1ad service tag (the outer tag of standard QinQ).
pub const TPID_8021AD: u16 = 0x88a8;
/// Pre-standard QinQ outer tag that some switches still emit.
pub const TPID_QINQ_LEGACY: u16 = 0x9100;

/// Whether `ethertype` announces a VLAN tag rather than a payload. All three are accepted in
/// any position because real QinQ deployments mix them.
pub const fn is_vlan_tpid(ethertype: u16) -> bool {
    matches!(ethertype, TPID_8021Q | TPID_8021AD | TPID_QINQ_LEGACY)
}

/// A view of an Ethernet II frame.
#[derive(Debug, Clone, Copy)]
pub struct Frame<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Frame<T> {
    /// Wrap without checking; accessors read missing bytes as zero.
    pub const fn new_unchecked(buffer: T) -> Self {
        Frame { buffer }
    }

    /// Wrap after proving the 14-byte header is present.
    pub fn new_checked(buffer: T) -> Result<Self, Malformed> {
        let f = Self::new_unchecked(buffer);
        f.check_len()?;
        Ok(f)
    }

    /// `EthernetTruncated` unless the 14-byte header is present; what [`Frame::new_checked`]
    /// runs.
    pub fn check_len(&self) -> Result<(), Malformed> {
        if self.buffer.as_ref().len() < HEADER_LEN {
            return Err(Malformed::EthernetTruncated);
        }
        Ok(())
    }

    /// Give the buffer back.
    pub fn into_inner(self) -> T {
        self.buffer
    }

    /// Destination MAC address.
    pub fn dst_addr(&self) -> [u8; 6] {
        bytes::array_or_zero(self.buffer.as_ref(), field::DST)
    }

    /// Source MAC address.
    pub fn src_addr(&self) -> [u8; 6] {
        bytes::array_or_zero(self.buffer.as_ref(), field::SRC)
    }

    /// The outer ethertype: a TPID when the frame is VLAN tagged.
    pub fn ethertype(&self) -> u16 {
        bytes::u16_at(self.buffer.as_ref(), field::ETHERTYPE)
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Frame<T> {
    /// Write the destination MAC address.
    pub fn set_dst_addr(&mut self, addr: [u8; 6]) {
        bytes::set_bytes(self.buffer.as_mut(), field::DST, &addr);
    }

    /// Write the source MAC address.
    pub fn set_src_addr(&mut self, addr: [u8; 6]) {
        bytes::set_bytes(self.buffer.as_mut(), field::SRC, &addr);
    }

    /// Exchange source and destination, the first step of turning a frame into its reply.
    pub fn swap_addrs(&mut self) {
        let (src, dst) = (self.src_addr(), self.dst_addr());
        self.set_dst_addr(src);
        self.set_src_addr(dst);
    }

    /// Write the outer ethertype (a TPID to start a VLAN tag).
    pub fn set_ethertype(&mut self, ethertype: u16) {
        bytes::set_u16(self.buffer.as_mut(), field::ETHERTYPE, ethertype);
    }
}

/// Byte offsets inside one VLAN tag, counted from the byte after its TPID.
pub mod tag_field {
    /// Tag control information: PCP, DEI and VID (2 bytes).
    pub const TCI: usize = 0;
    /// The ethertype or next TPID after this tag (2 bytes).
    pub const ETHERTYPE: usize = 2;
}

/// Length a tag adds to the header: TCI plus the next ethertype (the TPID replaced the old one).
pub const TAG_LEN: usize = 4;

/// A view of one VLAN tag, starting right after its TPID.
#[derive(Debug, Clone, Copy)]
pub struct VlanTag<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> VlanTag<T> {
    /// Wrap without checking; accessors read missing bytes as zero.
    pub const fn new_unchecked(buffer: T) -> Self {
        VlanTag { buffer }
    }

    /// Wrap after proving the 4 tag bytes (TCI and next ethertype) are present.
    pub fn new_checked(buffer: T) -> Result<Self, Malformed> {
        let t = Self::new_unchecked(buffer);
        t.check_len()?;
        Ok(t)
    }

    /// `VlanTruncated` unless the 4 tag bytes are present; what [`VlanTag::new_checked`] runs.
    pub fn check_len(&self) -> Result<(), Malformed> {
        if self.buffer.as_ref().len() < TAG_LEN {
            return Err(Malformed::VlanTruncated);
        }
        Ok(())
    }

    /// The whole tag control information: PCP (3 bits), DEI (1 bit), VID (12 bits).
    pub fn tci(&self) -> u16 {
        bytes::u16_at(self.buffer.as_ref(), tag_field::TCI)
    }

    /// The 12-bit VLAN identifier.
    pub fn vid(&self) -> u16 {
        self.tci() & 0x0fff
    }

    /// Priority code point (802.1p class).
    pub fn pcp(&self) -> u8 {
        (self.tci() >> 13) as u8
    }

    /// Drop-eligible indicator.
    pub fn dei(&self) -> bool {
        self.tci() & 0x1000 != 0
    }

    /// The ethertype (or next TPID) that follows this tag.
    pub fn ethertype(&self) -> u16 {
        bytes::u16_at(self.buffer.as_ref(), tag_field::ETHERTYPE)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FRAME: [u8; 18] = [
        0x00, 0x11, 0x22, 0x33, 0x44, 0x55, // dst
        0x66, 0x77, 0x88, 0x99, 0xaa, 0xbb, // src
        0x81, 0x00, // 802.1Q
        0xa0, 0x64, // pcp 5, dei 0, vid 100
        0x08, 0x00,
    ];

    #[test]
    fn fields() {
        let f = Frame::new_checked(&FRAME[..]).unwrap();
        assert_eq!(f.dst_addr(), [0x00, 0x11, 0x22, 0x33, 0x44, 0x55]);
        assert_eq!(f.src_addr(), [0x66, 0x77, 0x88, 0x99, 0xaa, 0xbb]);
        assert_eq!(f.ethertype(), TPID_8021Q);
        let t = VlanTag::new_checked(&FRAME[HEADER_LEN..]).unwrap();
        assert_eq!(
            (t.vid(), t.pcp(), t.dei(), t.ethertype()),
            (100, 5, false, ETHERTYPE_IPV4)
        );
    }

    #[test]
    fn short_buffers_are_rejected() {
        assert_eq!(
            Frame::new_checked(&FRAME[..13]).err(),
            Some(Malformed::EthernetTruncated)
        );
        assert_eq!(
            VlanTag::new_checked(&FRAME[HEADER_LEN..17]).err(),
            Some(Malformed::VlanTruncated)
        );
    }

    #[test]
    fn swap_addrs_exchanges_macs() {
        let mut buf = FRAME;
        let mut f = Frame::new_checked(&mut buf[..]).unwrap();
        f.swap_addrs();
        assert_eq!(f.dst_addr(), [0x66, 0x77, 0x88, 0x99, 0xaa, 0xbb]);
        assert_eq!(f.src_addr(), [0x00, 0x11, 0x22, 0x33, 0x44, 0x55]);
    }

    #[test]
    fn tpids() {
        for t in [TPID_8021Q, TPID_8021AD, TPID_QINQ_LEGACY] {
            assert!(is_vlan_tpid(t));
        }
        assert!(!is_vlan_tpid(ETHERTYPE_IPV4));
    }
}
