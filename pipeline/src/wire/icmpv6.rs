//! ICMPv6 (RFC 4443): only the common header is interpreted. Every ICMPv6 message defined
//! so far has at least 4 bytes after type/code/checksum, so 8 bytes is the minimum accepted,
//! the same bound Linux's receive path pulls.

use super::{bytes, checksum};
use crate::Malformed;

/// Byte offsets of the ICMPv6 header fields.
pub mod field {
    pub const TYPE: usize = 0;
    pub const CODE: usize = 1;
    pub const CHECKSUM: usize = 2;
    pub const REST: usize = 4;
}

pub const HEADER_LEN: usize = 8;

pub const TYPE_DEST_UNREACHABLE: u8 = 1;
pub const TYPE_PACKET_TOO_BIG: u8 = 2;
pub const TYPE_ECHO_REQUEST: u8 = 128;
pub const TYPE_ECHO_REPLY: u8 = 129;
pub const TYPE_NEIGHBOR_SOLICIT: u8 = 135;
pub const TYPE_NEIGHBOR_ADVERT: u8 = 136;

#[derive(Debug, Clone, Copy)]
pub struct Packet<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Packet<T> {
    pub const fn new_unchecked(buffer: T) -> Self {
        Packet { buffer }
    }

    pub fn new_checked(buffer: T) -> Result<Self, Malformed> {
        let p = Self::new_unchecked(buffer);
        if p.buffer.as_ref().len() < HEADER_LEN {
            return Err(Malformed::Icmpv6Truncated);
        }
        Ok(p)
    }

    pub fn into_inner(self) -> T {
        self.buffer
    }

    pub fn msg_type(&self) -> u8 {
        bytes::u8_at(self.buffer.as_ref(), field::TYPE)
    }

    pub fn code(&self) -> u8 {
        bytes::u8_at(self.buffer.as_ref(), field::CODE)
    }

    pub fn checksum(&self) -> u16 {
        bytes::u16_at(self.buffer.as_ref(), field::CHECKSUM)
    }

    /// Echo identifier.
    pub fn ident(&self) -> u16 {
        bytes::u16_at(self.buffer.as_ref(), field::REST)
    }

    /// Echo sequence number.
    pub fn seq_no(&self) -> u16 {
        bytes::u16_at(self.buffer.as_ref(), field::REST + 2)
    }

    /// Whether the message verifies over the IPv6 pseudo-header.
    pub fn verify_checksum(&self, src: [u8; 16], dst: [u8; 16]) -> bool {
        checksum::l4_v6(src, dst, checksum::PROTO_ICMPV6, self.buffer.as_ref()) == 0
    }

    pub fn payload(&self) -> &[u8] {
        self.buffer.as_ref().get(HEADER_LEN..).unwrap_or(&[])
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Packet<T> {
    pub fn set_msg_type(&mut self, ty: u8) {
        bytes::set_u8(self.buffer.as_mut(), field::TYPE, ty);
    }

    pub fn set_code(&mut self, code: u8) {
        bytes::set_u8(self.buffer.as_mut(), field::CODE, code);
    }

    pub fn set_checksum(&mut self, sum: u16) {
        bytes::set_u16(self.buffer.as_mut(), field::CHECKSUM, sum);
    }

    pub fn fill_checksum(&mut self, src: [u8; 16], dst: [u8; 16]) {
        self.set_checksum(0);
        let sum = checksum::l4_v6(src, dst, checksum::PROTO_ICMPV6, self.buffer.as_ref());
        self.set_checksum(sum);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn echo_and_checksum() {
        let (src, dst) = ([0xfe; 16], [0x20; 16]);
        let mut v = vec![128, 0, 0, 0, 0xbe, 0xef, 0x00, 0x07, 1, 2, 3];
        let mut p = Packet::new_checked(&mut v[..]).unwrap();
        p.fill_checksum(src, dst);
        assert!(p.verify_checksum(src, dst));
        assert!(!p.verify_checksum(dst, [0; 16]));
        assert_eq!(
            (p.msg_type(), p.code(), p.ident(), p.seq_no()),
            (128, 0, 0xbeef, 7)
        );
        assert_eq!(p.payload(), &[1, 2, 3]);
        assert_eq!(
            Packet::new_checked(&v[..7]).err(),
            Some(Malformed::Icmpv6Truncated)
        );
    }
}
