//! The longest-prefix-match tables behind the ACL and the rate limiter.
//!
//! IPv4 uses a DIR-24-8 table ([`Dir24_8`]): one or two dependent memory reads per lookup
//! whatever the number of prefixes, which is what lets a deny list of hundreds of thousands of
//! entries cost the same per packet as a list of ten. IPv6 uses `prefix-trie`'s multibit tree
//! bitmap: a flat 2^24 table makes no sense for 128-bit keys, and IPv6 lists are short in practice.
//! Measurements that drove the choice are in the ignored `measure_lpm` test at the bottom.

use std::net::IpAddr;
use std::num::NonZeroU8;

use prefix_trie::PrefixMap;

use crate::prefix::{mask_v4, Prefix};

/// DIR-24-8 longest-prefix match for IPv4 with small non-zero `u8` values.
///
/// `tbl24` has one `u32` per /24: either the value of the longest prefix of length ≤ 24 covering
/// it (0 = none), or, with the top bit set, the index of a 256-entry `tbl8` group resolving the
/// last octet. Values are `u8` so a group costs 256 bytes: a list of 500k scattered /32s then
/// needs ~128 MiB of groups rather than ~512 MiB with `u32` entries. The 64 MiB `tbl24` is
/// zero-allocated, so pages no prefix touches are never made resident.
///
/// Immutable once built: the control plane builds a new one off the fast path and swaps it in,
/// which is why construction can paint prefixes in length order instead of supporting deletes.
pub struct Dir24_8 {
    tbl24: Vec<u32>,
    tbl8: Vec<u8>,
}

const EXT: u32 = 1 << 31;
const TBL24_LEN: usize = 1 << 24;

impl Dir24_8 {
    /// Builds from `(network, len, value)`; when the same network and length appear twice, the
    /// later entry wins (callers order their input to express precedence). Lengths over 32 are
    /// clamped and host bits ignored, since [`Prefix`] already guarantees both for real input.
    pub fn build(entries: &[(u32, u8, NonZeroU8)]) -> Dir24_8 {
        let mut sorted: Vec<(u32, u8, u8)> = entries
            .iter()
            .map(|&(a, l, v)| {
                let l = l.min(32);
                (a & mask_v4(l), l, v.get())
            })
            .collect();
        // Shorter first, so longer prefixes overwrite what they refine; stable so that for an
        // identical prefix the caller's later entry comes last and survives the dedup. Dedup
        // matters for build time: every repeated /8 would repaint 65536 slots.
        sorted.sort_by_key(|&(a, l, _)| (l, a));
        let mut dedup: Vec<(u32, u8, u8)> = Vec::with_capacity(sorted.len());
        for e in sorted {
            match dedup.last_mut() {
                Some(last) if (last.0, last.1) == (e.0, e.1) => *last = e,
                _ => dedup.push(e),
            }
        }
        let sorted = dedup;

        let mut tbl24 = vec![0u32; TBL24_LEN];
        let mut tbl8: Vec<u8> = Vec::new();
        for &(addr, len, value) in &sorted {
            let idx24 = (addr >> 8) as usize;
            if len <= 24 {
                let span = 1usize << (24 - len);
                // All ≤24 prefixes are painted before the first tbl8 group exists, so no
                // extended entry can be overwritten here.
                if let Some(slots) = tbl24.get_mut(idx24..idx24 + span) {
                    slots.fill(u32::from(value));
                }
            } else {
                let Some(slot) = tbl24.get_mut(idx24) else {
                    continue;
                };
                let group = if *slot & EXT != 0 {
                    (*slot & !EXT) as usize
                } else {
                    let g = tbl8.len() / 256;
                    // The covering ≤24 value (or none) becomes the group's default.
                    tbl8.resize(tbl8.len() + 256, *slot as u8);
                    *slot = EXT | g as u32;
                    g
                };
                let start = group * 256 + (addr & 0xff) as usize;
                let span = 1usize << (32 - len);
                if let Some(slots) = tbl8.get_mut(start..start + span) {
                    slots.fill(value);
                }
            }
        }
        tbl8.shrink_to_fit();
        Dir24_8 { tbl24, tbl8 }
    }

    /// The value of the longest prefix containing `addr`, if any.
    #[inline]
    pub fn lookup(&self, addr: u32) -> Option<NonZeroU8> {
        let e = *self.tbl24.get((addr >> 8) as usize)?;
        let v = if e & EXT == 0 {
            e as u8
        } else {
            *self
                .tbl8
                .get((e & !EXT) as usize * 256 + (addr & 0xff) as usize)?
        };
        NonZeroU8::new(v)
    }

    /// Bytes of `tbl8` groups; `tbl24` is a fixed 64 MiB of virtual memory on top.
    pub fn tbl8_bytes(&self) -> usize {
        self.tbl8.len()
    }
}

/// Both families behind one lookup: DIR-24-8 for IPv4 (only allocated when there is at least
/// one IPv4 prefix), `prefix-trie` for IPv6.
pub struct PrefixTable {
    v4: Option<Dir24_8>,
    v6: PrefixMap<(u128, u8), NonZeroU8>,
}

impl PrefixTable {
    /// Later entries win over earlier ones for an identical prefix.
    pub fn build(entries: &[(Prefix, NonZeroU8)]) -> PrefixTable {
        let mut v4 = Vec::new();
        let mut v6 = PrefixMap::new();
        for &(p, v) in entries {
            match p.addr() {
                IpAddr::V4(a) => v4.push((u32::from(a), p.prefix_len(), v)),
                IpAddr::V6(a) => {
                    v6.insert((u128::from(a), p.prefix_len()), v);
                }
            }
        }
        let v4 = (!v4.is_empty()).then(|| Dir24_8::build(&v4));
        PrefixTable { v4, v6 }
    }

    #[inline]
    pub fn lookup(&self, ip: IpAddr) -> Option<NonZeroU8> {
        match ip {
            IpAddr::V4(a) => self.v4.as_ref()?.lookup(u32::from(a)),
            IpAddr::V6(a) => self.v6.get_lpm(&(u128::from(a), 128)).map(|(_, v)| *v),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::net::{Ipv4Addr, Ipv6Addr};

    fn nz(v: u8) -> NonZeroU8 {
        NonZeroU8::new(v).expect("test values are non-zero")
    }

    /// Linear-scan oracle: the longest containing prefix, later entry winning ties.
    fn oracle(entries: &[(Prefix, NonZeroU8)], ip: IpAddr) -> Option<NonZeroU8> {
        let mut best: Option<(u8, NonZeroU8)> = None;
        for &(p, v) in entries {
            if p.contains(ip) && best.is_none_or(|(l, _)| p.prefix_len() >= l) {
                best = Some((p.prefix_len(), v));
            }
        }
        best.map(|(_, v)| v)
    }

    #[test]
    fn dir24_8_refines_inside_a_slash_24() {
        let t = Dir24_8::build(&[
            (0x0a00_0000, 8, nz(1)),
            (0x0a01_0280, 25, nz(2)),
            (0x0a01_02c4, 32, nz(3)),
        ]);
        assert_eq!(
            t.lookup(0x0a01_0201),
            Some(nz(1)),
            "tbl8 default comes from the /8"
        );
        assert_eq!(t.lookup(0x0a01_0281), Some(nz(2)));
        assert_eq!(t.lookup(0x0a01_02c4), Some(nz(3)));
        assert_eq!(t.lookup(0x0b00_0000), None);
        assert_eq!(t.tbl8_bytes(), 256);
    }

    fn arb_v4() -> impl Strategy<Value = Prefix> {
        // Few distinct high octets so random prefixes actually nest and overlap.
        (0u32..4, any::<u32>(), 0u8..=32).prop_map(|(hi, lo, len)| {
            let a = (hi << 30) | (lo >> 2);
            Prefix::masked(IpAddr::V4(Ipv4Addr::from(a)), len)
        })
    }

    fn arb_v6() -> impl Strategy<Value = Prefix> {
        (0u128..4, any::<u128>(), 0u8..=128).prop_map(|(hi, lo, len)| {
            let a = (hi << 126) | (lo >> 2);
            Prefix::masked(IpAddr::V6(Ipv6Addr::from(a)), len)
        })
    }

    /// Lookup addresses are drawn half near the prefixes (their first address, or that address
    /// with low bits flipped) so matches and near misses are both exercised.
    fn probe(entries: &[(Prefix, NonZeroU8)], pick: usize, flip: u128, random: u128) -> IpAddr {
        if entries.is_empty() || pick.is_multiple_of(2) {
            return match entries.first().map(|e| e.0.addr()) {
                Some(IpAddr::V6(_)) => IpAddr::V6(Ipv6Addr::from(random)),
                _ => IpAddr::V4(Ipv4Addr::from(random as u32)),
            };
        }
        match entries[pick % entries.len()].0.addr() {
            IpAddr::V4(a) => IpAddr::V4(Ipv4Addr::from(u32::from(a) ^ (flip as u32 & 0x3ff))),
            IpAddr::V6(a) => IpAddr::V6(Ipv6Addr::from(u128::from(a) ^ (flip & 0xffff_ffff))),
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(48))]

        #[test]
        fn v4_matches_linear_scan(
            prefixes in prop::collection::vec((arb_v4(), 1u8..=255), 0..200),
            probes in prop::collection::vec((any::<usize>(), any::<u128>(), any::<u128>()), 64),
        ) {
            let entries: Vec<_> = prefixes.into_iter().map(|(p, v)| (p, nz(v))).collect();
            let table = PrefixTable::build(&entries);
            for (pick, flip, random) in probes {
                let ip = probe(&entries, pick, flip, random);
                prop_assert_eq!(table.lookup(ip), oracle(&entries, ip), "{}", ip);
            }
        }

        #[test]
        fn v6_matches_linear_scan(
            prefixes in prop::collection::vec((arb_v6(), 1u8..=255), 0..200),
            probes in prop::collection::vec((any::<usize>(), any::<u128>(), any::<u128>()), 64),
        ) {
            let entries: Vec<_> = prefixes.into_iter().map(|(p, v)| (p, nz(v))).collect();
            let table = PrefixTable::build(&entries);
            for (pick, flip, random) in probes {
                let ip = probe(&entries, pick, flip, random);
                prop_assert_eq!(table.lookup(ip), oracle(&entries, ip), "{}", ip);
            }
        }

    }

    /// Build time and lookup cost of DIR-24-8 versus `prefix-trie` for IPv4, at 100k and 500k
    /// random prefixes. Prints numbers, asserts nothing about time. Run with
    /// `cargo test -p pipeline --release lpm::tests::measure_lpm -- --ignored --nocapture`.
    #[test]
    #[ignore]
    fn measure_lpm() {
        use std::hint::black_box;
        use std::time::Instant;

        // xorshift64*: deterministic and dependency-free.
        let mut s = 0x9e37_79b9_7f4a_7c15u64;
        let mut rnd = move || {
            s ^= s >> 12;
            s ^= s << 25;
            s ^= s >> 27;
            s.wrapping_mul(0x2545_f491_4f6c_dd1d)
        };
        for &n in &[100_000usize, 500_000] {
            for (dist, lens) in [
                ("uniform /8-/32", (8u8, 32u8)),
                ("/16-/32 (blocklist-like)", (16, 32)),
            ] {
                let entries: Vec<(u32, u8, NonZeroU8)> = (0..n)
                    .map(|_| {
                        let r = rnd();
                        let len = lens.0 + (r % u64::from(lens.1 - lens.0 + 1)) as u8;
                        (
                            (r >> 32) as u32 & mask_v4(len),
                            len,
                            nz(1 + (r >> 8) as u8 % 2),
                        )
                    })
                    .collect();
                let t0 = Instant::now();
                let dir = Dir24_8::build(&entries);
                let dir_build = t0.elapsed();
                let t0 = Instant::now();
                let mut trie: PrefixMap<(u32, u8), NonZeroU8> = PrefixMap::new();
                for &(a, l, v) in &entries {
                    trie.insert((a, l), v);
                }
                let trie_build = t0.elapsed();

                let probes: Vec<u32> = (0..2_000_000).map(|_| rnd() as u32).collect();
                let t0 = Instant::now();
                let mut hits = 0u64;
                for &a in &probes {
                    hits += u64::from(black_box(dir.lookup(black_box(a))).is_some());
                }
                let dir_ns = t0.elapsed().as_nanos() as f64 / probes.len() as f64;
                let t0 = Instant::now();
                let mut hits2 = 0u64;
                for &a in &probes {
                    hits2 += u64::from(black_box(trie.get_lpm(&(black_box(a), 32))).is_some());
                }
                let trie_ns = t0.elapsed().as_nanos() as f64 / probes.len() as f64;
                assert_eq!(hits, hits2);
                println!(
                    "{n} prefixes, {dist}: DIR-24-8 build {:?} lookup {dir_ns:.1} ns (tbl8 {} KiB) | \
                     prefix-trie build {:?} lookup {trie_ns:.1} ns (mem {} KiB) | hit rate {:.2}",
                    dir_build,
                    dir.tbl8_bytes() / 1024,
                    trie_build,
                    trie.mem_size() / 1024,
                    hits as f64 / probes.len() as f64
                );
            }
        }
    }
}
