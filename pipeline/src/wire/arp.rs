//! ARP (RFC 826). scrubd forwards ARP untouched, so the view only proves the packet is as long
//! as its own address lengths say; addresses are read for logging and tests.

use super::bytes;
use crate::Malformed;

/// Byte offsets of the fixed ARP fields; addresses follow at offsets derived from HLEN/PLEN.
pub mod field {
    /// Hardware type (1 for Ethernet).
    pub const HTYPE: usize = 0;
    /// Protocol type: the EtherType of the protocol addresses (IPv4 for ARP).
    pub const PTYPE: usize = 2;
    /// Hardware address length in bytes (6 for Ethernet).
    pub const HLEN: usize = 4;
    /// Protocol address length in bytes (4 for IPv4).
    pub const PLEN: usize = 5;
    /// Operation: [`OPER_REQUEST`](super::OPER_REQUEST) or [`OPER_REPLY`](super::OPER_REPLY).
    pub const OPER: usize = 6;
    /// Sender hardware address; the other three addresses follow it.
    pub const SHA: usize = 8;
}

/// The fixed part before the addresses.
pub const FIXED_LEN: usize = 8;
/// Ethernet/IPv4 ARP, the only kind seen on the wire in practice.
pub const ETHERNET_IPV4_LEN: usize = 28;

/// Operation code of a who-has request.
pub const OPER_REQUEST: u16 = 1;
/// Operation code of an is-at reply.
pub const OPER_REPLY: u16 = 2;

/// A view of an ARP packet over any byte buffer.
#[derive(Debug, Clone, Copy)]
pub struct Packet<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Packet<T> {
    /// Wrap without checking; accessors read missing bytes as zero and setters skip them.
    pub const fn new_unchecked(buffer: T) -> Self {
        Packet { buffer }
    }

    /// Wrap after [`Packet::check_len`] proves the addresses its lengths announce are present.
    pub fn new_checked(buffer: T) -> Result<Self, Malformed> {
        let p = Self::new_unchecked(buffer);
        p.check_len()?;
        Ok(p)
    }

    /// The fixed part and both address pairs, sized by HLEN and PLEN, must be present.
    pub fn check_len(&self) -> Result<(), Malformed> {
        let len = self.buffer.as_ref().len();
        if len < FIXED_LEN || len < self.total_len() {
            return Err(Malformed::ArpTruncated);
        }
        Ok(())
    }

    /// Length of the ARP packet its header implies (Ethernet padding excluded).
    pub fn total_len(&self) -> usize {
        FIXED_LEN + 2 * (usize::from(self.hlen()) + usize::from(self.plen()))
    }

    /// Hardware type.
    pub fn htype(&self) -> u16 {
        bytes::u16_at(self.buffer.as_ref(), field::HTYPE)
    }

    /// Protocol type (an EtherType).
    pub fn ptype(&self) -> u16 {
        bytes::u16_at(self.buffer.as_ref(), field::PTYPE)
    }

    /// Hardware address length in bytes.
    pub fn hlen(&self) -> u8 {
        bytes::u8_at(self.buffer.as_ref(), field::HLEN)
    }

    /// Protocol address length in bytes.
    pub fn plen(&self) -> u8 {
        bytes::u8_at(self.buffer.as_ref(), field::PLEN)
    }

    /// Operation (request or reply).
    pub fn oper(&self) -> u16 {
        bytes::u16_at(self.buffer.as_ref(), field::OPER)
    }

    fn addr(&self, off: usize, len: u8) -> &[u8] {
        let b = self.buffer.as_ref();
        b.get(off..off + usize::from(len)).unwrap_or(&[])
    }

    /// Sender hardware address (empty if the buffer is short).
    pub fn sender_hw(&self) -> &[u8] {
        self.addr(field::SHA, self.hlen())
    }

    /// Sender protocol address (empty if the buffer is short).
    pub fn sender_proto(&self) -> &[u8] {
        self.addr(field::SHA + usize::from(self.hlen()), self.plen())
    }

    /// Target hardware address (empty if the buffer is short).
    pub fn target_hw(&self) -> &[u8] {
        let off = field::SHA + usize::from(self.hlen()) + usize::from(self.plen());
        self.addr(off, self.hlen())
    }

    /// Target protocol address (empty if the buffer is short).
    pub fn target_proto(&self) -> &[u8] {
        let off = field::SHA + 2 * usize::from(self.hlen()) + usize::from(self.plen());
        self.addr(off, self.plen())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A who-has 192.168.1.1 tell 192.168.1.2, padded to the Ethernet minimum.
    const REQUEST: [u8; 46] = {
        let mut b = [0u8; 46];
        let head = [
            0x00, 0x01, 0x08, 0x00, 0x06, 0x04, 0x00, 0x01, // eth/ipv4 request
            0x02, 0x00, 0x00, 0x00, 0x00, 0x02, 0xc0, 0xa8, 0x01, 0x02, // sender
            0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0xc0, 0xa8, 0x01, 0x01, // target
        ];
        let mut i = 0;
        while i < head.len() {
            b[i] = head[i];
            i += 1;
        }
        b
    };

    #[test]
    fn fields() {
        let p = Packet::new_checked(&REQUEST[..]).unwrap();
        assert_eq!(
            (p.htype(), p.ptype(), p.hlen(), p.plen()),
            (1, 0x0800, 6, 4)
        );
        assert_eq!(p.oper(), OPER_REQUEST);
        assert_eq!(p.total_len(), ETHERNET_IPV4_LEN);
        assert_eq!(p.sender_hw(), &[0x02, 0, 0, 0, 0, 0x02]);
        assert_eq!(p.sender_proto(), &[192, 168, 1, 2]);
        assert_eq!(p.target_hw(), &[0; 6]);
        assert_eq!(p.target_proto(), &[192, 168, 1, 1]);
    }

    #[test]
    fn truncated() {
        assert_eq!(
            Packet::new_checked(&REQUEST[..27]).err(),
            Some(Malformed::ArpTruncated)
        );
        assert_eq!(
            Packet::new_checked(&REQUEST[..7]).err(),
            Some(Malformed::ArpTruncated)
        );
        // Address lengths larger than the buffer: the lengths are what make it truncated.
        let mut big = REQUEST;
        big[4] = 16;
        assert_eq!(
            Packet::new_checked(&big[..]).err(),
            Some(Malformed::ArpTruncated)
        );
        assert!(Packet::new_checked(&REQUEST[..28]).is_ok());
    }
}
