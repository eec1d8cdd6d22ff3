//! ICMPv4 (RFC 792): only the common 8-byte header is interpreted.

use super::{bytes, checksum};
use crate::Malformed;

/// Byte offsets of the ICMP header fields.
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

/// Type, code, checksum and the 4-byte rest-of-header every ICMP message carries.
pub const HEADER_LEN: usize = 8;

/// Echo reply.
pub const TYPE_ECHO_REPLY: u8 = 0;
/// Destination unreachable; path MTU discovery rides on code 4.
pub const TYPE_DEST_UNREACHABLE: u8 = 3;
/// Echo request (ping).
pub const TYPE_ECHO_REQUEST: u8 = 8;
/// Time exceeded: what traceroute reads.
pub const TYPE_TIME_EXCEEDED: u8 = 11;

/// A view of an ICMP message over any byte buffer.
#[derive(Debug, Clone, Copy)]
pub struct Packet<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Packet<T> {
    /// Wrap without checking; accessors read missing bytes as zero and setters skip them.
    pub const fn new_unchecked(buffer: T) -> Self {
        Packet { buffer }
    }

    /// Wrap after checking the 8-byte common header is present (`IcmpTruncated`).
    pub fn new_checked(buffer: T) -> Result<Self, Malformed> {
        let p = Self::new_unchecked(buffer);
        if p.buffer.as_ref().len() < HEADER_LEN {
            return Err(Malformed::IcmpTruncated);
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

    /// Whether the message (header and data) sums to zero.
    pub fn verify_checksum(&self) -> bool {
        checksum::checksum(self.buffer.as_ref()) == 0
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

    /// Recompute the checksum over the whole buffer (ICMPv4 has no pseudo-header).
    pub fn fill_checksum(&mut self) {
        self.set_checksum(0);
        let sum = checksum::checksum(self.buffer.as_ref());
        self.set_checksum(sum);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn echo_request_to_reply() {
        let mut v = vec![8, 0, 0, 0, 0x12, 0x34, 0x00, 0x01, b'p', b'i', b'n', b'g'];
        let mut p = Packet::new_checked(&mut v[..]).unwrap();
        p.fill_checksum();
        assert!(p.verify_checksum());
        assert_eq!(
            (p.msg_type(), p.code(), p.ident(), p.seq_no()),
            (8, 0, 0x1234, 1)
        );
        p.set_msg_type(TYPE_ECHO_REPLY);
        assert!(!p.verify_checksum());
        p.fill_checksum();
        assert!(p.verify_checksum());
        assert_eq!(p.payload(), b"ping");
        assert_eq!(
            Packet::new_checked(&v[..7]).err(),
            Some(Malformed::IcmpTruncated)
        );
    }
}
