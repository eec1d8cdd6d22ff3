//! ICMPv6 (RFC 4443): only the common header is interpreted. Every ICMPv6 message defined
//! so far has at least 4 bytes after type/code/checksum, so 8 bytes is the minimum accepted,
//! the same bound Linux's receive path pulls.

use super::{bytes, checksum, ip_protocol};
use crate::Malformed;

/// Byte offsets of the ICMPv6 header fields.
pub mod field {
    /// Message type (1 byte).
    pub const TYPE: usize = 0;
    /// Type-specific code (1 byte).
    pub const CODE: usize = 1;
    /// Checksum (2 bytes).
    pub const CHECKSUM: usize = 2;
    /// Identifier and sequence number for echo; type-specific otherwise.
    pub const REST: usize = 4;
}

/// Type, code, checksum and the 4-byte rest-of-header, the minimum accepted.
pub const HEADER_LEN: usize = 8;

/// Destination unreachable (RFC 4443 §3.1).
pub const TYPE_DEST_UNREACHABLE: u8 = 1;
/// Packet too big: path MTU discovery depends on it (RFC 4443 §3.2).
pub const TYPE_PACKET_TOO_BIG: u8 = 2;
/// Echo request (ping).
pub const TYPE_ECHO_REQUEST: u8 = 128;
/// Echo reply.
pub const TYPE_ECHO_REPLY: u8 = 129;
/// Neighbor solicitation (RFC 4861): IPv6's ARP request.
pub const TYPE_NEIGHBOR_SOLICIT: u8 = 135;
/// Neighbor advertisement (RFC 4861): IPv6's ARP reply.
pub const TYPE_NEIGHBOR_ADVERT: u8 = 136;

/// A view of an ICMPv6 message over any byte buffer.
#[derive(Debug, Clone, Copy)]
pub struct Packet<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Packet<T> {
    /// Wrap without checking; accessors read missing bytes as zero and setters skip them.
    pub const fn new_unchecked(buffer: T) -> Self {
        Packet { buffer }
    }

    /// Wrap after checking the 8-byte common header is present (`Icmpv6Truncated`).
    pub fn new_checked(buffer: T) -> Result<Self, Malformed> {
        let p = Self::new_unchecked(buffer);
        if p.buffer.as_ref().len() < HEADER_LEN {
            return Err(Malformed::Icmpv6Truncated);
        }
        Ok(p)
    }

    /// Give the buffer back.
    pub fn into_inner(self) -> T {
        self.buffer
    }

    /// Message type (the `TYPE_*` constants).
    pub fn msg_type(&self) -> u8 {
        bytes::u8_at(self.buffer.as_ref(), field::TYPE)
    }

    /// Type-specific code.
    pub fn code(&self) -> u8 {
        bytes::u8_at(self.buffer.as_ref(), field::CODE)
    }

    /// The stored checksum.
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

    /// Whether the message sums to zero over the IPv6 pseudo-header of `src` → `dst`.
    pub fn verify_checksum(&self, src: [u8; 16], dst: [u8; 16]) -> bool {
        checksum::l4_v6(src, dst, ip_protocol::ICMPV6, self.buffer.as_ref()) == 0
    }

    /// The message body after the 8-byte header.
    pub fn payload(&self) -> &[u8] {
        self.buffer.as_ref().get(HEADER_LEN..).unwrap_or(&[])
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Packet<T> {
    /// Write the message type.
    pub fn set_msg_type(&mut self, ty: u8) {
        bytes::set_u8(self.buffer.as_mut(), field::TYPE, ty);
    }

    /// Write the code.
    pub fn set_code(&mut self, code: u8) {
        bytes::set_u8(self.buffer.as_mut(), field::CODE, code);
    }

    /// Write the checksum field as given (see the `fill_checksum` method to compute it).
    pub fn set_checksum(&mut self, sum: u16) {
        bytes::set_u16(self.buffer.as_mut(), field::CHECKSUM, sum);
    }

    /// Recompute the checksum over the whole buffer and the IPv6 pseudo-header after a rewrite.
    pub fn fill_checksum(&mut self, src: [u8; 16], dst: [u8; 16]) {
        self.set_checksum(0);
        let sum = checksum::l4_v6(src, dst, ip_protocol::ICMPV6, self.buffer.as_ref());
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
