//! Internet checksum (RFC 1071) and incremental update (RFC 1624).

/// One's-complement sum of `data` folded into 32 bits, not yet complemented. Odd trailing byte
/// is padded with zero as RFC 1071 requires.
pub fn sum(mut acc: u32, data: &[u8]) -> u32 {
    let mut chunks = data.chunks_exact(2);
    for c in &mut chunks {
        acc = acc.wrapping_add(u32::from(u16::from_be_bytes([c[0], c[1]])));
    }
    if let [last] = chunks.remainder() {
        acc = acc.wrapping_add(u32::from(*last) << 8);
    }
    acc
}

/// [`sum`] over a buffer whose length is known at compile time and a multiple of 4, read as
/// 32-bit big-endian words into a 64-bit accumulator: a 20-byte header is five loads and adds
/// instead of ten 16-bit steps, with no loop left after unrolling. Equal to [`sum`] modulo
/// 0xffff (2^16 ≡ 1), which is all [`finish`] keeps; the result is folded back so
/// it stays below 2^18 and can be added to other partial sums like [`sum`]'s.
#[inline]
pub fn sum_words<const N: usize>(acc: u32, data: &[u8; N]) -> u32 {
    const { assert!(N & 3 == 0, "sum_words reads whole 32-bit words") };
    let mut wide = u64::from(acc);
    for w in data.chunks_exact(4) {
        wide += u64::from(u32::from_be_bytes([w[0], w[1], w[2], w[3]]));
    }
    let folded = (wide & 0xffff) + ((wide >> 16) & 0xffff) + ((wide >> 32) & 0xffff) + (wide >> 48);
    folded as u32
}

/// Fold a 32-bit accumulator to 16 bits and complement it: the value to store in a header.
///
/// Two end-around-carry folds are exact for any `u32`: the first leaves at most 0x1fffe, the
/// second at most 0xffff; a fixed pair is branch-free where a loop would not be.
pub fn finish(acc: u32) -> u16 {
    let acc = (acc & 0xffff) + (acc >> 16);
    let acc = (acc & 0xffff) + (acc >> 16);
    !(acc as u16)
}

/// Checksum of `data` alone (IPv4 header, ICMP).
pub fn checksum(data: &[u8]) -> u16 {
    finish(sum(0, data))
}

/// Sum of the IPv4 pseudo-header for TCP/UDP.
pub fn pseudo_v4(src: [u8; 4], dst: [u8; 4], proto: u8, l4_len: u16) -> u32 {
    let mut acc = sum(0, &src);
    acc = sum(acc, &dst);
    acc + u32::from(proto) + u32::from(l4_len)
}

/// Sum of the IPv6 pseudo-header for TCP/UDP/ICMPv6.
pub fn pseudo_v6(src: [u8; 16], dst: [u8; 16], next_header: u8, l4_len: u32) -> u32 {
    let mut acc = sum(0, &src);
    acc = sum(acc, &dst);
    acc = acc.wrapping_add(l4_len >> 16).wrapping_add(l4_len & 0xffff);
    acc + u32::from(next_header)
}

/// RFC 1624 eqn. 3: new checksum after one 16-bit word changed from `old` to `new`,
/// without re-summing the packet: HC' = ~(~HC + ~m + m').
pub fn update16(hc: u16, old: u16, new: u16) -> u16 {
    let acc = u32::from(!hc) + u32::from(!old) + u32::from(new);
    finish(acc)
}

/// [`update16`] for a 32-bit field (an address or sequence number).
pub fn update32(hc: u16, old: u32, new: u32) -> u16 {
    let hc = update16(hc, (old >> 16) as u16, (new >> 16) as u16);
    update16(hc, old as u16, new as u16)
}

/// Full TCP/UDP checksum of `segment` (header and payload) over the IPv4 pseudo-header.
/// With the segment's checksum field zeroed this is the value to store; with the stored
/// value in place it is 0 exactly when the segment verifies. An IPv4 segment cannot exceed
/// 65535 bytes, so the length is taken modulo 2^16 like the header field would hold it.
pub fn l4_v4(src: [u8; 4], dst: [u8; 4], proto: u8, segment: &[u8]) -> u16 {
    let len = (segment.len() & 0xffff) as u16;
    finish(sum(pseudo_v4(src, dst, proto, len), segment))
}

/// [`l4_v4`] over the IPv6 pseudo-header (TCP, UDP and ICMPv6 all use it).
pub fn l4_v6(src: [u8; 16], dst: [u8; 16], next_header: u8, segment: &[u8]) -> u16 {
    let len = u32::try_from(segment.len()).unwrap_or(u32::MAX);
    finish(sum(pseudo_v6(src, dst, next_header, len), segment))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::ip_protocol::UDP as PROTO_UDP;
    use proptest::prelude::*;

    #[test]
    fn rfc1071_example() {
        // RFC 1071 section 3 example bytes: sum is 0xddf2, checksum its complement.
        let data = [0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7];
        assert_eq!(finish(sum(0, &data)), !0xddf2);
    }

    #[test]
    fn ipv4_header_checksum_verifies_to_zero() {
        // A real IPv4 header (from a captured SYN) with its checksum in place.
        let hdr = [
            0x45, 0x00, 0x00, 0x3c, 0x1c, 0x46, 0x40, 0x00, 0x40, 0x06, 0xb1, 0xe6, 0xac, 0x10,
            0x0a, 0x63, 0xac, 0x10, 0x0a, 0x0c,
        ];
        assert_eq!(checksum(&hdr), 0);
    }

    #[test]
    fn udp_over_v4_verifies_to_zero() {
        // A DNS query 192.168.1.2:53000 -> 192.168.1.1:53 with its checksum computed by hand.
        let (src, dst) = ([192, 168, 1, 2], [192, 168, 1, 1]);
        let mut udp = vec![
            0xcf, 0x08, 0x00, 0x35, 0x00, 0x0c, 0x00, 0x00, 0xab, 0xcd, 0x01, 0x00,
        ];
        let c = l4_v4(src, dst, PROTO_UDP, &udp);
        udp[6..8].copy_from_slice(&c.to_be_bytes());
        assert_eq!(l4_v4(src, dst, PROTO_UDP, &udp), 0);
        // Pseudo-header 0xc0a8+0x0102+0xc0a8+0x0101+0x0011+0x000c plus the segment words,
        // folded, is 0xff88, so the stored checksum is its complement.
        assert_eq!(c, !0xff88);
        udp[9] ^= 1;
        assert_ne!(l4_v4(src, dst, PROTO_UDP, &udp), 0);
    }

    proptest! {
        #[test]
        fn incremental_matches_full(mut data in proptest::collection::vec(any::<u8>(), 2..64),
                                    idx in any::<prop::sample::Index>(), new in any::<u16>()) {
            if data.len() % 2 == 1 { data.pop(); }
            let words = data.len() / 2;
            let i = idx.index(words) * 2;
            let before = checksum(&data);
            let old = u16::from_be_bytes([data[i], data[i + 1]]);
            data[i..i + 2].copy_from_slice(&new.to_be_bytes());
            let full = checksum(&data);
            let inc = update16(before, old, new);
            // 0x0000 and 0xffff are the same value in one's complement.
            prop_assert!(inc == full || (inc ^ full) == 0xffff && (inc == 0 || full == 0),
                "inc {inc:#06x} full {full:#06x}");
        }

        /// The word-wise sum must give exactly the stored checksum the byte-pair sum gives,
        /// also when started from a pseudo-header sum and for all-zero or all-0xff words.
        #[test]
        fn sum_words_matches_sum(data in any::<[u8; 24]>(), acc in 0u32..1 << 20, fill in 0u8..3) {
            let data = match fill { 0 => data, 1 => [0; 24], _ => [0xff; 24] };
            let acc = if fill == 0 { acc } else { 0 };
            prop_assert_eq!(finish(sum_words(acc, &data)), finish(sum(acc, &data)));
            let head: [u8; 20] = data[..20].try_into().unwrap();
            prop_assert_eq!(finish(sum_words(0, &head)), checksum(&head));
        }
    }
}
