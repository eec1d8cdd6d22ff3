//! TCP header (RFC 9293) and its options (RFC 9293, 7323, 2018).

use super::{bytes, checksum, ip_protocol};
use crate::{Malformed, TcpOptions};

/// Byte offsets of the TCP header fields.
pub mod field {
    /// Source port (2 bytes).
    pub const SRC_PORT: usize = 0;
    /// Destination port (2 bytes).
    pub const DST_PORT: usize = 2;
    /// Sequence number (4 bytes).
    pub const SEQ: usize = 4;
    /// Acknowledgement number (4 bytes).
    pub const ACK: usize = 8;
    /// Data offset in the high nibble.
    pub const DATA_OFF: usize = 12;
    /// The eight flag bits CWR … FIN.
    pub const FLAGS: usize = 13;
    /// Receive window (2 bytes).
    pub const WINDOW: usize = 14;
    /// Checksum over pseudo-header, header and payload (2 bytes).
    pub const CHECKSUM: usize = 16;
    /// Urgent pointer (2 bytes).
    pub const URGENT: usize = 18;
    /// Start of the options, which run to the data offset.
    pub const OPTIONS: usize = 20;
}

/// Header length without options.
pub const MIN_HEADER_LEN: usize = 20;
/// Data offset 15 × 4.
pub const MAX_HEADER_LEN: usize = 60;

/// Option kinds that are understood; every other kind is skipped by its length.
pub mod option {
    /// End of option list.
    pub const EOL: u8 = 0;
    /// No-operation padding.
    pub const NOP: u8 = 1;
    /// Maximum segment size (SYN only).
    pub const MSS: u8 = 2;
    /// Window scale shift (RFC 7323, SYN only).
    pub const WINDOW_SCALE: u8 = 3;
    /// SACK permitted (RFC 2018, SYN only).
    pub const SACK_PERMITTED: u8 = 4;
    /// SACK blocks (RFC 2018).
    pub const SACK: u8 = 5;
    /// Timestamps TSval/TSecr (RFC 7323).
    pub const TIMESTAMPS: u8 = 8;
    /// Length of the MSS option: kind, length and the 16-bit size.
    pub const MSS_LEN: usize = 4;
}

/// A view of a TCP segment (header and payload) over any byte buffer.
#[derive(Debug, Clone, Copy)]
pub struct Packet<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Packet<T> {
    /// Wrap without checking; accessors read missing bytes as zero and setters skip them.
    pub const fn new_unchecked(buffer: T) -> Self {
        Packet { buffer }
    }

    /// Wrap `segment` (the IP payload, bounded by the IP length) after checking the 20 fixed
    /// bytes are present (`TcpTruncated`) and the data offset is at least 5 words and inside
    /// the segment (`TcpBadDataOffset`). Because the segment is already bounded by a validated
    /// IP length, a header reaching past it is the data offset's lie, not a short capture.
    pub fn new_checked(buffer: T) -> Result<Self, Malformed> {
        let p = Self::new_unchecked(buffer);
        p.check_len()?;
        Ok(p)
    }

    /// The checks [`Packet::new_checked`] runs.
    pub fn check_len(&self) -> Result<(), Malformed> {
        let len = self.buffer.as_ref().len();
        if len < MIN_HEADER_LEN {
            return Err(Malformed::TcpTruncated);
        }
        let hl = self.header_len();
        if hl < MIN_HEADER_LEN || hl > len {
            return Err(Malformed::TcpBadDataOffset);
        }
        Ok(())
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

    /// Sequence number.
    pub fn seq(&self) -> u32 {
        bytes::u32_at(self.buffer.as_ref(), field::SEQ)
    }

    /// Acknowledgement number (meaningful when ACK is set).
    pub fn ack(&self) -> u32 {
        bytes::u32_at(self.buffer.as_ref(), field::ACK)
    }

    /// Header length in bytes (data offset × 4).
    pub fn header_len(&self) -> usize {
        usize::from(bytes::u8_at(self.buffer.as_ref(), field::DATA_OFF) >> 4) * 4
    }

    /// The eight classic flag bits, as in [`crate::TcpInfo::flags`].
    pub fn flags(&self) -> u8 {
        bytes::u8_at(self.buffer.as_ref(), field::FLAGS)
    }

    /// Receive window, unscaled.
    pub fn window(&self) -> u16 {
        bytes::u16_at(self.buffer.as_ref(), field::WINDOW)
    }

    /// The stored checksum.
    pub fn checksum(&self) -> u16 {
        bytes::u16_at(self.buffer.as_ref(), field::CHECKSUM)
    }

    /// Urgent pointer (meaningful when URG is set).
    pub fn urgent(&self) -> u16 {
        bytes::u16_at(self.buffer.as_ref(), field::URGENT)
    }

    /// Option bytes between the fixed header and the data offset.
    pub fn options(&self) -> &[u8] {
        let b = self.buffer.as_ref();
        b.get(field::OPTIONS..self.header_len()).unwrap_or(&[])
    }

    /// Decode the options; see [`parse_options`].
    pub fn parse_options(&self) -> Result<TcpOptions, Malformed> {
        parse_options(self.options())
    }

    /// The bytes after the header, to the end of the buffer.
    pub fn payload(&self) -> &[u8] {
        self.buffer.as_ref().get(self.header_len()..).unwrap_or(&[])
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

    /// Write the sequence number.
    pub fn set_seq(&mut self, seq: u32) {
        bytes::set_u32(self.buffer.as_mut(), field::SEQ, seq);
    }

    /// Write the acknowledgement number.
    pub fn set_ack(&mut self, ack: u32) {
        bytes::set_u32(self.buffer.as_mut(), field::ACK, ack);
    }

    /// Set the data offset from a header length in bytes (rounded down to words, at most 60).
    pub fn set_header_len(&mut self, len: usize) {
        let words = (len.min(MAX_HEADER_LEN) / 4) as u8;
        let b = self.buffer.as_mut();
        let low = bytes::u8_at(b, field::DATA_OFF) & 0x0f;
        bytes::set_u8(b, field::DATA_OFF, (words << 4) | low);
    }

    /// Write the eight flag bits ([`crate::TcpInfo`]'s constants).
    pub fn set_flags(&mut self, flags: u8) {
        bytes::set_u8(self.buffer.as_mut(), field::FLAGS, flags);
    }

    /// Write the receive window.
    pub fn set_window(&mut self, window: u16) {
        bytes::set_u16(self.buffer.as_mut(), field::WINDOW, window);
    }

    /// Write the checksum as given (`fill_checksum_v4`/`_v6` compute it).
    pub fn set_checksum(&mut self, sum: u16) {
        bytes::set_u16(self.buffer.as_mut(), field::CHECKSUM, sum);
    }

    /// Write the urgent pointer.
    pub fn set_urgent(&mut self, urgent: u16) {
        bytes::set_u16(self.buffer.as_mut(), field::URGENT, urgent);
    }

    /// Write an MSS option as the first option (kind, length, size); the header length must
    /// leave [`option::MSS_LEN`] bytes of option space for it to be read back.
    pub fn set_option_mss(&mut self, mss: u16) {
        let b = self.buffer.as_mut();
        bytes::set_u8(b, field::OPTIONS, option::MSS);
        bytes::set_u8(b, field::OPTIONS + 1, option::MSS_LEN as u8);
        bytes::set_u16(b, field::OPTIONS + 2, mss);
    }

    /// Recompute the checksum over the whole buffer (header and payload) for IPv4.
    pub fn fill_checksum_v4(&mut self, src: [u8; 4], dst: [u8; 4]) {
        self.set_checksum(0);
        let sum = checksum::l4_v4(src, dst, ip_protocol::TCP, self.buffer.as_ref());
        self.set_checksum(sum);
    }

    /// Recompute the checksum over the whole buffer (header and payload) for IPv6.
    pub fn fill_checksum_v6(&mut self, src: [u8; 16], dst: [u8; 16]) {
        self.set_checksum(0);
        let sum = checksum::l4_v6(src, dst, ip_protocol::TCP, self.buffer.as_ref());
        self.set_checksum(sum);
    }
}

/// Decode MSS, window scale, SACK-permitted and timestamps; skip SACK blocks and unknown kinds
/// by their length; stop at end-of-list. `TcpBadOptions` when a kind other than EOL/NOP has no
/// length byte, a length below 2 or past the option space (the walk could not continue), or a
/// known kind has a length its RFC does not allow. Those are the options a SYN-cookie stage
/// encodes and a rewriter trusts, so a malformed one is refused rather than guessed.
/// A window scale above 14 is kept as sent (RFC 7323 tells the receiver to clamp it).
/// A repeated option overwrites the earlier one, as Linux does.
///
/// The option blocks real stacks put on almost every segment are recognised whole first, by
/// one slice pattern each (a length check and a few byte compares, no loop), and give exactly
/// what the walk would; everything else, malformed blocks included, takes the walk. A SYN
/// flood is mostly such SYNs, and this runs once per packet in the parser.
#[inline]
pub fn parse_options(opts: &[u8]) -> Result<TcpOptions, Malformed> {
    let none = TcpOptions::default();
    let ts = |a: [u8; 4], b: [u8; 4]| Some((u32::from_be_bytes(a), u32::from_be_bytes(b)));
    match *opts {
        // MSS alone (many SYN tools and middleboxes).
        [2, 4, m0, m1] => Ok(TcpOptions {
            mss: Some(u16::from_be_bytes([m0, m1])),
            ..none
        }),
        // Linux SYN: MSS, SACK-permitted, timestamps, NOP, window scale.
        [2, 4, m0, m1, 4, 2, 8, 10, a0, a1, a2, a3, b0, b1, b2, b3, 1, 3, 3, ws] => {
            Ok(TcpOptions {
                mss: Some(u16::from_be_bytes([m0, m1])),
                window_scale: Some(ws),
                sack_permitted: true,
                timestamps: ts([a0, a1, a2, a3], [b0, b1, b2, b3]),
            })
        }
        // Linux/BSD established segments: NOP, NOP, timestamps.
        [1, 1, 8, 10, a0, a1, a2, a3, b0, b1, b2, b3] => Ok(TcpOptions {
            timestamps: ts([a0, a1, a2, a3], [b0, b1, b2, b3]),
            ..none
        }),
        // Windows SYN: MSS, NOP, window scale, NOP, NOP, SACK-permitted.
        [2, 4, m0, m1, 1, 3, 3, ws, 1, 1, 4, 2] => Ok(TcpOptions {
            mss: Some(u16::from_be_bytes([m0, m1])),
            window_scale: Some(ws),
            sack_permitted: true,
            ..none
        }),
        _ => walk_options(opts),
    }
}

/// The general option walk behind [`parse_options`].
fn walk_options(mut opts: &[u8]) -> Result<TcpOptions, Malformed> {
    use option::*;
    let mut out = TcpOptions::default();
    while let Some(&kind) = opts.first() {
        match kind {
            EOL => break,
            NOP => {
                opts = opts.get(1..).unwrap_or(&[]);
                continue;
            }
            _ => {}
        }
        let len = usize::from(*opts.get(1).ok_or(Malformed::TcpBadOptions)?);
        if len < 2 || len > opts.len() {
            return Err(Malformed::TcpBadOptions);
        }
        let ok = match kind {
            MSS => {
                out.mss = Some(bytes::u16_at(opts, 2));
                len == MSS_LEN
            }
            WINDOW_SCALE => {
                out.window_scale = Some(bytes::u8_at(opts, 2));
                len == 3
            }
            SACK_PERMITTED => {
                out.sack_permitted = true;
                len == 2
            }
            // One to four 8-byte left/right edge pairs (four without timestamps, which a
            // 40-byte option space bounds anyway).
            SACK => len >= 10 && (len - 2) % 8 == 0,
            TIMESTAMPS => {
                out.timestamps = Some((bytes::u32_at(opts, 2), bytes::u32_at(opts, 6)));
                len == 10
            }
            _ => true,
        };
        if !ok {
            return Err(Malformed::TcpBadOptions);
        }
        opts = opts.get(len..).unwrap_or(&[]);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// SYN 40000 → 80 with MSS 1460, SACK-permitted, timestamps, NOP, window scale 7.
    fn syn() -> Vec<u8> {
        let mut v = vec![
            0x9c, 0x40, 0x00, 0x50, // ports
            0x11, 0x22, 0x33, 0x44, // seq
            0x00, 0x00, 0x00, 0x00, // ack
            0xa0, 0x02, 0xfa, 0xf0, // doff 10, SYN, window 64240
            0x00, 0x00, 0x00, 0x00, // checksum, urgent
        ];
        v.extend_from_slice(&[2, 4, 0x05, 0xb4, 4, 2, 8, 10]);
        v.extend_from_slice(&[0, 0, 0, 1, 0, 0, 0, 2, 1, 3, 3, 7]);
        v
    }

    #[test]
    fn fields_and_options() {
        let v = syn();
        let p = Packet::new_checked(&v[..]).unwrap();
        assert_eq!((p.src_port(), p.dst_port()), (40000, 80));
        assert_eq!((p.seq(), p.ack(), p.header_len()), (0x11223344, 0, 40));
        assert_eq!(
            (p.flags(), p.window(), p.urgent()),
            (crate::TcpInfo::SYN, 64240, 0)
        );
        assert_eq!(
            p.parse_options(),
            Ok(TcpOptions {
                mss: Some(1460),
                window_scale: Some(7),
                sack_permitted: true,
                timestamps: Some((1, 2)),
            })
        );
        assert!(p.payload().is_empty());
    }

    #[test]
    fn length_checks() {
        let v = syn();
        assert_eq!(
            Packet::new_checked(&v[..19]).err(),
            Some(Malformed::TcpTruncated)
        );
        assert_eq!(
            Packet::new_checked(&v[..39]).err(),
            Some(Malformed::TcpBadDataOffset)
        );
        let mut w = v.clone();
        w[12] = 0x40;
        assert_eq!(
            Packet::new_checked(&w[..]).err(),
            Some(Malformed::TcpBadDataOffset)
        );
    }

    #[test]
    fn setters_and_checksum() {
        let mut v = syn();
        let (src, dst) = ([192, 0, 2, 1], [198, 51, 100, 2]);
        let mut p = Packet::new_checked(&mut v[..]).unwrap();
        p.set_src_port(80);
        p.set_dst_port(40000);
        p.set_seq(7);
        p.set_ack(0x11223345);
        p.set_flags(crate::TcpInfo::SYN | crate::TcpInfo::ACK);
        p.set_window(0);
        p.set_header_len(24);
        p.fill_checksum_v4(src, dst);
        assert_eq!(
            (p.src_port(), p.dst_port(), p.seq(), p.ack()),
            (80, 40000, 7, 0x11223345)
        );
        assert_eq!((p.flags(), p.window(), p.header_len()), (0x12, 0, 24));
        assert_eq!(checksum::l4_v4(src, dst, ip_protocol::TCP, &v), 0);
    }

    /// The whole-block shapes must give exactly what the walk gives, for any field values.
    #[test]
    fn option_shapes_match_the_walk() {
        use proptest::prelude::*;
        proptest!(|(m in any::<[u8; 2]>(), ws in any::<u8>(), a in any::<[u8; 4]>(), b in any::<[u8; 4]>())| {
            let shapes: [Vec<u8>; 4] = [
                vec![2, 4, m[0], m[1]],
                [&[2, 4, m[0], m[1], 4, 2, 8, 10][..], &a, &b, &[1, 3, 3, ws]].concat(),
                [&[1, 1, 8, 10][..], &a, &b].concat(),
                vec![2, 4, m[0], m[1], 1, 3, 3, ws, 1, 1, 4, 2],
            ];
            for opts in &shapes {
                let fast = parse_options(opts);
                prop_assert!(fast.is_ok());
                prop_assert_eq!(fast, walk_options(opts), "{:?}", opts);
            }
        });
    }

    #[test]
    fn option_walk() {
        // Unknown kind skipped by length, SACK blocks skipped, EOL stops the walk.
        let opts = [1, 1, 30, 4, 0, 0, 5, 10, 0, 0, 0, 1, 0, 0, 0, 2, 0, 2, 4];
        assert_eq!(parse_options(&opts), Ok(TcpOptions::default()));
        let bad: &[&[u8]] = &[
            &[2],                         // no length
            &[2, 1],                      // length < 2
            &[2, 4, 5],                   // past the option space
            &[2, 3, 5],                   // MSS must be 4
            &[3, 4, 7, 0],                // window scale must be 3
            &[4, 3, 0],                   // SACK-permitted must be 2
            &[5, 9, 0, 0, 0, 0, 0, 0, 0], // SACK blocks are 8 bytes
            &[5, 2],                      // SACK needs a block
            &[8, 8, 0, 0, 0, 0, 0, 0],    // timestamps must be 10
            &[30, 0],                     // unknown with length 0
        ];
        for o in bad {
            assert_eq!(parse_options(o), Err(Malformed::TcpBadOptions), "{o:?}");
        }
    }
}
