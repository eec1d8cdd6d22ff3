//! Zero-copy views over protocol headers, each checking its length before any field is read.
//!
//! Every view is a `Packet<T: AsRef<[u8]>>` (or `Frame` for Ethernet) built with `new_checked`,
//! which proves the fixed header fits in the buffer and returns the protocol's specific
//! [`Malformed`](crate::Malformed) otherwise. Accessors then read at constant offsets. They are
//! also panic-free on a view made with `new_unchecked` over a short buffer (they read missing
//! bytes as zero and setters skip them): a forgotten check must cost a wrong value, never a crash
//! of the data path. [`parse::parse`] walks these views once per frame and fills
//! [`Headers`](crate::Headers).
//!
//! The same views write: the SYN-cookie stage emits its SYN-ACKs and RSTs through their setters
//! (checksummed with [`checksum::sum_words`] over the fixed-size headers it composes; frames of
//! any length use the `fill_checksum*` methods), so each field offset and protocol number is
//! spelled once for both directions. Protocol numbers live in [`ip_protocol`], EtherTypes in [`ethernet`].
//! Every public item here is documented; `missing_docs` is denied to keep it so.

#![deny(missing_docs)]

pub mod arp;
pub mod checksum;
pub mod ethernet;
pub mod icmp;
pub mod icmpv6;
pub mod ip_protocol;
pub mod ipv4;
pub mod ipv6;
pub mod parse;
pub mod tcp;
pub mod udp;

/// Big-endian reads and writes that never panic: out-of-range reads give zero, out-of-range
/// writes do nothing. The views use these so their accessors stay total.
pub(crate) mod bytes {
    #[inline]
    pub fn u8_at(b: &[u8], off: usize) -> u8 {
        b.get(off).copied().unwrap_or(0)
    }

    #[inline]
    pub fn u16_at(b: &[u8], off: usize) -> u16 {
        array_at::<2>(b, off).map_or(0, u16::from_be_bytes)
    }

    #[inline]
    pub fn u32_at(b: &[u8], off: usize) -> u32 {
        array_at::<4>(b, off).map_or(0, u32::from_be_bytes)
    }

    #[inline]
    pub fn array_at<const N: usize>(b: &[u8], off: usize) -> Option<[u8; N]> {
        b.get(off..off.checked_add(N)?)?.try_into().ok()
    }

    /// Like [`array_at`] but zero-filled when out of range, for address accessors.
    #[inline]
    pub fn array_or_zero<const N: usize>(b: &[u8], off: usize) -> [u8; N] {
        array_at::<N>(b, off).unwrap_or([0; N])
    }

    #[inline]
    pub fn set_u8(b: &mut [u8], off: usize, v: u8) {
        if let Some(x) = b.get_mut(off) {
            *x = v;
        }
    }

    #[inline]
    pub fn set_u16(b: &mut [u8], off: usize, v: u16) {
        set_bytes(b, off, &v.to_be_bytes());
    }

    #[inline]
    pub fn set_u32(b: &mut [u8], off: usize, v: u32) {
        set_bytes(b, off, &v.to_be_bytes());
    }

    #[inline]
    pub fn set_bytes(b: &mut [u8], off: usize, v: &[u8]) {
        let Some(end) = off.checked_add(v.len()) else {
            return;
        };
        if let Some(dst) = b.get_mut(off..end) {
            dst.copy_from_slice(v);
        }
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        #[test]
        fn out_of_range_reads_are_zero_and_writes_are_ignored() {
            let mut b = [1u8, 2, 3];
            assert_eq!(u16_at(&b, 1), 0x0203);
            assert_eq!(u16_at(&b, 2), 0);
            assert_eq!(u32_at(&b, 0), 0);
            assert_eq!(u16_at(&b, usize::MAX), 0);
            set_u32(&mut b, 1, 0xdead_beef);
            set_u16(&mut b, usize::MAX, 7);
            assert_eq!(b, [1, 2, 3]);
            set_u16(&mut b, 1, 0xabcd);
            assert_eq!(b, [1, 0xab, 0xcd]);
        }
    }
}
