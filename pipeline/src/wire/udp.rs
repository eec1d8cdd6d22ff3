//! UDP header (RFC 768).

use super::{bytes, checksum, ip_protocol};
use crate::Malformed;

/// Byte offsets of the UDP header fields.
pub mod field {
    /// Source port (2 bytes).
    pub const SRC_PORT: usize = 0;
    /// Destination port (2 bytes).
    pub const DST_PORT: usize = 2;
    /// Length of header plus data (2 bytes).
    pub const LENGTH: usize = 4;
    /// Checksum; zero means none over IPv4 (2 bytes).
    pub const CHECKSUM: usize = 6;
}

/// Length of the UDP header.
pub const HEADER_LEN: usize = 8;

/// A view of a UDP datagram (header and data) over any byte buffer.
#[derive(Debug, Clone, Copy)]
pub struct Packet<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Packet<T> {
    /// Wrap without checking; accessors read missing bytes as zero and setters skip them.
    pub const fn new_unchecked(buffer: T) -> Self {
        Packet { buffer }
    }

    /// Wrap a whole (unfragmented) datagram after checking the 8-byte header is present
    /// (`UdpTruncated`) and the length field covers the header and fits in the IP payload
    /// (`UdpBadLength`). A length shorter than the IP payload is allowed and bounds the data,
    /// as stacks trim the excess. For a first fragment use [`Packet::new_checked_first_fragment`].
    pub fn new_checked(buffer: T) -> Result<Self, Malformed> {
        let p = Self::new_unchecked(buffer);
        p.check_len()?;
        Ok(p)
    }

    /// The checks [`Packet::new_checked`] runs.
    pub fn check_len(&self) -> Result<(), Malformed> {
        let avail = self.buffer.as_ref().len();
        if avail < HEADER_LEN {
            return Err(Malformed::UdpTruncated);
        }
        let len = usize::from(self.len());
        if len < HEADER_LEN || len > avail {
            return Err(Malformed::UdpBadLength);
        }
        Ok(())
    }

    /// In a first fragment the length field describes the reassembled datagram, so it must
    /// be at least what this fragment carries rather than at most.
    pub fn new_checked_first_fragment(buffer: T) -> Result<Self, Malformed> {
        let p = Self::new_unchecked(buffer);
        let avail = p.buffer.as_ref().len();
        if avail < HEADER_LEN {
            return Err(Malformed::UdpTruncated);
        }
        if usize::from(p.len()) < avail {
            return Err(Malformed::UdpBadLength);
        }
        Ok(p)
    }

    /// Give the buffer back.
    pub fn into_inner(self) -> T {
        self.buffer
    }

    /// Source port.
    pub fn src_port(&self) -> u16 {
        bytes::u16_at(self.buffer.as_ref(), field::SRC_PORT)
    }

    /// Destination port.
    pub fn dst_port(&self) -> u16 {
        bytes::u16_at(self.buffer.as_ref(), field::DST_PORT)
    }

    /// The length field: header plus data.
    pub fn len(&self) -> u16 {
        bytes::u16_at(self.buffer.as_ref(), field::LENGTH)
    }

    /// Whether the datagram carries no data.
    pub fn is_empty(&self) -> bool {
        usize::from(self.len()) <= HEADER_LEN
    }

    /// The stored checksum (0: none was computed, allowed over IPv4).
    pub fn checksum(&self) -> u16 {
        bytes::u16_at(self.buffer.as_ref(), field::CHECKSUM)
    }

    /// Data bounded by the length field (or by the buffer, whichever is shorter).
    pub fn payload(&self) -> &[u8] {
        let b = self.buffer.as_ref();
        let end = usize::from(self.len()).min(b.len());
        b.get(HEADER_LEN..end).unwrap_or(&[])
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Packet<T> {
    /// Write the source port.
    pub fn set_src_port(&mut self, port: u16) {
        bytes::set_u16(self.buffer.as_mut(), field::SRC_PORT, port);
    }

    /// Write the destination port.
    pub fn set_dst_port(&mut self, port: u16) {
        bytes::set_u16(self.buffer.as_mut(), field::DST_PORT, port);
    }

    /// Write the length field.
    pub fn set_len(&mut self, len: u16) {
        bytes::set_u16(self.buffer.as_mut(), field::LENGTH, len);
    }

    /// Write the checksum as given (`fill_checksum_v4`/`_v6` compute it).
    pub fn set_checksum(&mut self, sum: u16) {
        bytes::set_u16(self.buffer.as_mut(), field::CHECKSUM, sum);
    }

    /// Recompute the checksum over the datagram for IPv4. A computed 0 is sent as 0xffff
    /// because 0 on the wire means "no checksum" (RFC 768).
    pub fn fill_checksum_v4(&mut self, src: [u8; 4], dst: [u8; 4]) {
        self.set_checksum(0);
        let sum = checksum::l4_v4(src, dst, ip_protocol::UDP, self.datagram());
        self.set_checksum(if sum == 0 { 0xffff } else { sum });
    }

    /// Recompute the checksum over the datagram for IPv6 (where it is mandatory).
    pub fn fill_checksum_v6(&mut self, src: [u8; 16], dst: [u8; 16]) {
        self.set_checksum(0);
        let sum = checksum::l4_v6(src, dst, ip_protocol::UDP, self.datagram());
        self.set_checksum(if sum == 0 { 0xffff } else { sum });
    }

    fn datagram(&self) -> &[u8] {
        let b = self.buffer.as_ref();
        b.get(..usize::from(self.len())).unwrap_or(b)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DGRAM: [u8; 12] = [0xcf, 0x08, 0x00, 0x35, 0x00, 0x0c, 0x00, 0x00, 1, 2, 3, 4];

    #[test]
    fn fields() {
        let p = Packet::new_checked(&DGRAM[..]).unwrap();
        assert_eq!((p.src_port(), p.dst_port(), p.len()), (53000, 53, 12));
        assert_eq!(p.payload(), &[1, 2, 3, 4]);
    }

    #[test]
    fn length_checks() {
        assert_eq!(
            Packet::new_checked(&DGRAM[..7]).err(),
            Some(Malformed::UdpTruncated)
        );
        assert_eq!(
            Packet::new_checked(&DGRAM[..11]).err(),
            Some(Malformed::UdpBadLength)
        );
        let mut v = DGRAM;
        v[5] = 7;
        assert_eq!(
            Packet::new_checked(&v[..]).err(),
            Some(Malformed::UdpBadLength)
        );
        v[5] = 10; // shorter than the IP payload: allowed, bounds the data
        assert_eq!(Packet::new_checked(&v[..]).unwrap().payload(), &[1, 2]);
        // First fragment: length names the whole datagram.
        let mut f = DGRAM;
        f[4] = 0x10;
        assert!(Packet::new_checked_first_fragment(&f[..]).is_ok());
        assert_eq!(
            Packet::new_checked_first_fragment(&v[..]).err(),
            Some(Malformed::UdpBadLength)
        );
    }

    #[test]
    fn fill_checksum_verifies() {
        let (src, dst) = ([192, 168, 1, 2], [192, 168, 1, 1]);
        let mut v = DGRAM;
        let mut p = Packet::new_checked(&mut v[..]).unwrap();
        p.set_src_port(53);
        p.set_dst_port(53000);
        p.fill_checksum_v4(src, dst);
        assert_ne!(p.checksum(), 0);
        assert_eq!(checksum::l4_v4(src, dst, ip_protocol::UDP, &v), 0);
    }
}
