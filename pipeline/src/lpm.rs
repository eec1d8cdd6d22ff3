//! The longest-prefix-match tables behind the ACL and the rate limiter.
//!
//! IPv4 uses a DIR-24-8 table ([`Dir24_8`]): one or two dependent memory reads per lookup
//! whatever the number of prefixes, which is what lets a deny list of hundreds of thousands of
//! entries cost the same per packet as a list of ten. IPv6 uses `prefix-trie`'s multibit tree
//! bitmap: a flat 2^24 table makes no sense for 128-bit keys, and IPv6 lists are short in practice.
//! Measurements that drove the choice are in the ignored `measure_lpm` test at the bottom.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::num::NonZeroU8;

use prefix_trie::PrefixMap;

use crate::prefix::{mask_v4, Prefix};

/// DIR-24-8 longest-prefix match for IPv4 with small non-zero `u8` values.
///
/// `tbl24` has one `u32` per /24: either the value of the longest prefix of length ≤ 24 covering
/// it (0 = none), or, with the top bit set, the index of a 256-entry `tbl8` group resolving the
/// last octet. Values are `u8` so a group costs 256 bytes: a list of 500k scattered /32s then
/// needs ~128 MiB of groups rather than ~512 MiB with `u32` entries.
///
/// Every page of `tbl24` is mapped when the table is made (built or cloned), on the thread that
/// makes it: a zero-allocated `tbl24` left as is has unmapped pages, and the worker would take
/// up to 16 k minor page faults on its first lookups into a newly published table. Pages no
/// prefix touches map the shared zero page (see `Dir24_8::resident`), so a table costs
/// memory only where prefixes are.
///
/// A lookup first reads `used16`, one bit per /16 saying whether any of its 256 `tbl24` slots
/// may be set. Block lists cover a sliver of the address space, so for nearly every packet the
/// bit is clear and the lookup ends in an 8 KiB bitmap that stays in L1, instead of a load from
/// a 64 MiB table on 4 KiB pages: on the data path (`scrubd-bench`, clean traffic, `perf`)
/// that load was the worker's costliest single instruction, a TLB miss per packet.
///
/// A published table is immutable. The control plane changes one it owns exclusively (a spare
/// no worker holds any more, see `stage::acl::AclWriter`) with [`PrefixTable::repair`], which
/// repaints only the slots one prefix covers, or rebuilds it in place.
pub struct Dir24_8 {
    /// Bit `i` of word `i / 64`: /16 number `i` has a non-zero `tbl24` slot. A clear bit is a
    /// promise (every slot of that /16 is 0); a set bit is only a maybe, kept exact by
    /// [`Dir24_8::resummarize`] where slots are cleared.
    used16: Box<[u64; USED16_WORDS]>,
    tbl24: Vec<u32>,
    tbl8: Vec<u8>,
    /// Groups that no `tbl24` entry points at any more, reused before `tbl8` grows.
    free8: Vec<u32>,
}

const EXT: u32 = 1 << 31;
const TBL24_LEN: usize = 1 << 24;
const USED16_WORDS: usize = (1 << 16) / 64;

/// IPv4 rules keyed by (network, length), the form repairs look prefixes up in.
type V4Rules = BTreeMap<(u32, u8), NonZeroU8>;

impl Dir24_8 {
    /// An empty table whose `tbl24` pages are all mapped: zero-allocated, then read once per
    /// 4 KiB page, so each page table entry points at the kernel's shared zero page. A reader
    /// then takes no fault anywhere, and the slots no prefix covers stay one physical page
    /// (cached, and not 64 MiB of memory); only the pages prefixes are painted into become
    /// private, when (and on the thread where) they are written.
    fn resident() -> Dir24_8 {
        let tbl24 = vec![0u32; TBL24_LEN];
        for i in (0..TBL24_LEN).step_by(1024).chain([TBL24_LEN - 1]) {
            std::hint::black_box(tbl24.get(i).copied());
        }
        Dir24_8 {
            used16: Box::new([0; USED16_WORDS]),
            tbl24,
            tbl8: Vec::new(),
            free8: Vec::new(),
        }
    }

    /// Marks the /16s holding `tbl24` slots `slots` as possibly set.
    fn mark(&mut self, slots: std::ops::Range<usize>) {
        if slots.is_empty() {
            return;
        }
        for i16 in (slots.start >> 8)..=((slots.end - 1) >> 8) {
            if let Some(w) = self.used16.get_mut(i16 >> 6) {
                *w |= 1 << (i16 & 63);
            }
        }
    }

    /// Recomputes the bits of the /16s holding `tbl24` slots `slots` from the slots
    /// themselves, after slots there may have been cleared.
    fn resummarize(&mut self, slots: std::ops::Range<usize>) {
        if slots.is_empty() {
            return;
        }
        for i16 in (slots.start >> 8)..=((slots.end - 1) >> 8) {
            let any = self
                .tbl24
                .get(i16 << 8..(i16 + 1) << 8)
                .is_some_and(|s| s.iter().any(|&e| e != 0));
            if let Some(w) = self.used16.get_mut(i16 >> 6) {
                if any {
                    *w |= 1 << (i16 & 63);
                } else {
                    *w &= !(1 << (i16 & 63));
                }
            }
        }
    }

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
        let mut t = Dir24_8::resident();
        for (addr, len, value) in dedup {
            t.paint(addr, len, value);
        }
        t
    }

    /// Rewrites the whole table from `rules` in the memory it already has, so the pages stay
    /// resident and nothing is unmapped.
    fn rebuild(&mut self, rules: &V4Rules) {
        // Clear only what is set: a store into a zero-page-mapped slot would make its page
        // private for nothing.
        for e in self.tbl24.iter_mut().filter(|e| **e != 0) {
            *e = 0;
        }
        self.used16.fill(0);
        self.tbl8.clear();
        self.free8.clear();
        self.paint_rules(rules);
    }

    fn paint_rules(&mut self, rules: &V4Rules) {
        self.paint_sorted(rules.iter().map(|(&(a, l), v)| (a, l, v.get())).collect());
    }

    /// Paints prefixes shortest first (longer ones refine what shorter ones painted).
    fn paint_sorted(&mut self, mut list: Vec<(u32, u8, u8)>) {
        list.sort_unstable_by_key(|&(a, l, _)| (l, a));
        for (addr, len, value) in list {
            self.paint(addr, len, value);
        }
    }

    /// Paints one prefix over what is there. A prefix of length ≤ 24 overwrites its slots
    /// whole, so the caller paints every ≤ 24 prefix of a range before any longer one (no
    /// extended slot can be overwritten, and so leaked, that way).
    fn paint(&mut self, addr: u32, len: u8, value: u8) {
        let idx24 = (addr >> 8) as usize;
        if len <= 24 {
            let span = 1usize << (24 - len);
            if let Some(slots) = self.tbl24.get_mut(idx24..idx24 + span) {
                slots.fill(u32::from(value));
                self.mark(idx24..idx24 + span);
            }
            return;
        }
        let Some(&slot) = self.tbl24.get(idx24) else {
            return;
        };
        let group = if slot & EXT != 0 {
            slot & !EXT
        } else {
            // The covering ≤ 24 value (or none) becomes the group's default.
            let g = self.alloc_group(slot as u8);
            if let Some(s) = self.tbl24.get_mut(idx24) {
                *s = EXT | g;
            }
            self.mark(idx24..idx24 + 1);
            g
        };
        let start = group as usize * 256 + (addr & 0xff) as usize;
        let span = 1usize << (32 - len);
        if let Some(slots) = self.tbl8.get_mut(start..start + span) {
            slots.fill(value);
        }
    }

    fn alloc_group(&mut self, default: u8) -> u32 {
        if let Some(g) = self.free8.pop() {
            let start = g as usize * 256;
            if let Some(group) = self.tbl8.get_mut(start..start + 256) {
                group.fill(default);
            }
            return g;
        }
        let g = (self.tbl8.len() / 256) as u32;
        self.tbl8.resize(self.tbl8.len() + 256, default);
        g
    }

    /// Makes every address `addr/len` covers resolve as `rules` say, whatever the table held
    /// there before. Cost: the slots the prefix spans (2^(24−len) for len ≤ 24, one group
    /// otherwise), plus painting the rules nested inside it, plus one map lookup per distinct
    /// rule length to find the covering value.
    fn repair(&mut self, rules: &V4Rules, lens: &[u32; 33], addr: u32, len: u8) {
        let len = len.min(32);
        if len > 24 {
            self.repair_24(rules, lens, addr >> 8);
            return;
        }
        let lo = addr & mask_v4(len);
        let hi = lo | !mask_v4(len);
        let cov = covering(rules, lens, lo, len);
        let (s, span) = ((lo >> 8) as usize, 1usize << (24 - len));
        let Dir24_8 { tbl24, free8, .. } = self;
        if let Some(slots) = tbl24.get_mut(s..s + span) {
            for e in slots.iter_mut().filter(|e| **e != u32::from(cov)) {
                if *e & EXT != 0 {
                    free8.push(*e & !EXT);
                }
                *e = u32::from(cov);
            }
        }
        if cov == 0 {
            self.resummarize(s..s + span);
        } else {
            self.mark(s..s + span);
        }
        let inside: Vec<(u32, u8, u8)> = rules
            .range((lo, len + 1)..=(hi, 32))
            .filter(|(&(_, l), _)| l > len)
            .map(|(&(a, l), v)| (a, l, v.get()))
            .collect();
        self.paint_sorted(inside);
    }

    /// [`Dir24_8::repair`] of the one /24 slot `idx24`, for a prefix longer than /24.
    fn repair_24(&mut self, rules: &V4Rules, lens: &[u32; 33], idx24: u32) {
        let base = idx24 << 8;
        let cov = covering(rules, lens, base, 24);
        let inside: Vec<(u32, u8, u8)> = rules
            .range((base, 25)..=(base | 0xff, 32))
            .filter(|(&(_, l), _)| l > 24)
            .map(|(&(a, l), v)| (a, l, v.get()))
            .collect();
        let Some(&slot) = self.tbl24.get(idx24 as usize) else {
            return;
        };
        if slot & EXT != 0 {
            self.free8.push(slot & !EXT);
        }
        if let Some(s) = self
            .tbl24
            .get_mut(idx24 as usize)
            .filter(|s| **s != u32::from(cov))
        {
            // Painting the nested rules below takes a fresh group defaulting to `cov`.
            *s = u32::from(cov);
        }
        let slot = idx24 as usize;
        if cov == 0 {
            self.resummarize(slot..slot + 1);
        } else {
            self.mark(slot..slot + 1);
        }
        self.paint_sorted(inside);
    }

    /// The value of the longest prefix containing `addr`, if any.
    #[inline]
    pub fn lookup(&self, addr: u32) -> Option<NonZeroU8> {
        // `addr >> 22` < 1024 = the bitmap's length: the index needs no bounds check.
        let word = self.used16[(addr >> 22) as usize % USED16_WORDS];
        if word & (1 << ((addr >> 16) & 63)) == 0 {
            return None;
        }
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

    /// Bytes of `tbl8` groups in use; `tbl24` is a fixed 64 MiB on top.
    pub fn tbl8_bytes(&self) -> usize {
        self.tbl8.len() - self.free8.len() * 256
    }
}

impl Clone for Dir24_8 {
    /// A copy with the same sharing as a built table: the slots that are set are copied, the
    /// rest stays on the zero page (a plain copy would make all 64 MiB private).
    fn clone(&self) -> Dir24_8 {
        let mut t = Dir24_8::resident();
        for (d, &s) in t
            .tbl24
            .iter_mut()
            .zip(&self.tbl24)
            .filter(|(_, s)| **s != 0)
        {
            *d = s;
        }
        t.used16.clone_from(&self.used16);
        t.tbl8.clone_from(&self.tbl8);
        t.free8.clone_from(&self.free8);
        t
    }
}

/// The value of the longest rule of length ≤ `max_len` containing `addr` (0: none), trying only
/// the lengths some rule has.
fn covering(rules: &V4Rules, lens: &[u32; 33], addr: u32, max_len: u8) -> u8 {
    (0..=max_len.min(32))
        .rev()
        .filter(|&l| lens[l as usize] > 0)
        .find_map(|l| rules.get(&(addr & mask_v4(l), l)))
        .map_or(0, |v| v.get())
}

/// The prefixes a [`PrefixTable`] is made from, kept by the control plane so a table can be
/// repaired around the prefixes that changed instead of rebuilt.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PrefixRules {
    v4: V4Rules,
    /// How many IPv4 rules have each length, so covering lookups skip absent lengths.
    v4_lens: [u32; 33],
    v6: BTreeMap<(u128, u8), NonZeroU8>,
}

impl Default for PrefixRules {
    fn default() -> PrefixRules {
        PrefixRules {
            v4: BTreeMap::new(),
            v4_lens: [0; 33],
            v6: BTreeMap::new(),
        }
    }
}

impl PrefixRules {
    /// Sets (Some) or clears (None) the value of `p`; returns whether anything changed.
    pub fn set(&mut self, p: Prefix, value: Option<NonZeroU8>) -> bool {
        let len = p.prefix_len();
        match p.addr() {
            IpAddr::V4(a) => {
                let key = (u32::from(a) & mask_v4(len), len);
                let old = match value {
                    Some(v) => self.v4.insert(key, v),
                    None => self.v4.remove(&key),
                };
                let slot = &mut self.v4_lens[usize::from(len.min(32))];
                match (old.is_some(), value.is_some()) {
                    (false, true) => *slot += 1,
                    (true, false) => *slot -= 1,
                    _ => {}
                }
                old != value
            }
            IpAddr::V6(a) => {
                let key = (u128::from(a), len);
                let old = match value {
                    Some(v) => self.v6.insert(key, v),
                    None => self.v6.remove(&key),
                };
                old != value
            }
        }
    }

    pub fn get(&self, p: Prefix) -> Option<NonZeroU8> {
        match p.addr() {
            IpAddr::V4(a) => self.v4.get(&(u32::from(a), p.prefix_len())).copied(),
            IpAddr::V6(a) => self.v6.get(&(u128::from(a), p.prefix_len())).copied(),
        }
    }

    pub fn len(&self) -> usize {
        self.v4.len() + self.v6.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Both families behind one lookup: DIR-24-8 for IPv4 (only allocated once there is an IPv4
/// prefix), `prefix-trie` for IPv6.
#[derive(Clone)]
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

    /// A table holding exactly `rules`.
    pub fn from_rules(rules: &PrefixRules) -> PrefixTable {
        let mut t = PrefixTable {
            v4: None,
            v6: PrefixMap::new(),
        };
        t.rebuild(rules);
        t
    }

    /// Rewrites the table to hold exactly `rules`, reusing its IPv4 memory (allocated, and
    /// written, only when there is an IPv4 rule and none was there before).
    pub fn rebuild(&mut self, rules: &PrefixRules) {
        match &mut self.v4 {
            Some(t) => t.rebuild(&rules.v4),
            None if !rules.v4.is_empty() => {
                let mut t = Dir24_8::resident();
                t.paint_rules(&rules.v4);
                self.v4 = Some(t);
            }
            None => {}
        }
        let mut v6 = PrefixMap::new();
        for (&k, &v) in &rules.v6 {
            v6.insert(k, v);
        }
        self.v6 = v6;
    }

    /// Makes the table agree with `rules` on every address the prefixes in `changed` cover.
    /// If the table agreed with `rules` everywhere else before, it agrees everywhere after:
    /// that is how a table is brought up to date with only the prefixes that changed.
    pub fn repair(&mut self, rules: &PrefixRules, changed: &[Prefix]) {
        for p in changed {
            match p.addr() {
                IpAddr::V4(a) => {
                    if self.v4.is_none() && rules.v4.is_empty() {
                        continue;
                    }
                    // No IPv4 part yet means no IPv4 rule outside `changed`: an empty table
                    // repaired at each changed prefix is complete.
                    self.v4.get_or_insert_with(Dir24_8::resident).repair(
                        &rules.v4,
                        &rules.v4_lens,
                        u32::from(a),
                        p.prefix_len(),
                    );
                }
                IpAddr::V6(a) => {
                    let key = (u128::from(a), p.prefix_len());
                    match rules.v6.get(&key) {
                        Some(&v) => {
                            self.v6.insert(key, v);
                        }
                        None => {
                            self.v6.remove(&key);
                        }
                    }
                }
            }
        }
    }

    /// Always inlined, with the IPv6 walk out of line: the IPv4 path is a few instructions and
    /// the ACL calls it twice per packet; left to the inliner it became a call once the rate
    /// limiter also used it (ACL row 45 -> 81 Ir/pkt in `scrubd-pipeline-bench`).
    #[inline(always)]
    pub fn lookup(&self, ip: IpAddr) -> Option<NonZeroU8> {
        match ip {
            IpAddr::V4(a) => self.v4.as_ref()?.lookup(u32::from(a)),
            IpAddr::V6(a) => self.lookup_v6(u128::from(a)),
        }
    }

    #[inline(never)]
    fn lookup_v6(&self, a: u128) -> Option<NonZeroU8> {
        self.v6.get_lpm(&(a, 128)).map(|(_, v)| *v)
    }

    /// Whether every IPv4 address in the /24 slots `slots` resolves the same in both tables
    /// (their tbl8 layouts may differ).
    #[cfg(test)]
    pub(crate) fn v4_equivalent(&self, other: &PrefixTable, slots: std::ops::Range<usize>) -> bool {
        let empty = Dir24_8 {
            used16: Box::new([0; USED16_WORDS]),
            tbl24: Vec::new(),
            tbl8: Vec::new(),
            free8: Vec::new(),
        };
        let a = self.v4.as_ref().unwrap_or(&empty);
        let b = other.v4.as_ref().unwrap_or(&empty);
        slots.into_iter().all(|i| {
            let ea = a.tbl24.get(i).copied().unwrap_or(0);
            let eb = b.tbl24.get(i).copied().unwrap_or(0);
            if ea == eb && ea & EXT == 0 {
                return true;
            }
            let base = (i as u32) << 8;
            (0..256u32).all(|o| a.lookup(base | o) == b.lookup(base | o))
        })
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

    /// Reads this thread's minor and major page-fault counts (fields 10 and 12 of
    /// /proc/thread-self/stat) into a buffer allocated beforehand.
    fn thread_faults(buf: &mut String) -> (u64, u64) {
        use std::io::Read;
        buf.clear();
        std::fs::File::open("/proc/thread-self/stat")
            .and_then(|mut f| f.read_to_string(buf))
            .expect("read /proc/thread-self/stat");
        // The command name may hold spaces; fields are counted after its closing parenthesis.
        let rest = &buf[buf.rfind(')').expect("stat has a comm field") + 2..];
        let f: Vec<u64> = rest
            .split_whitespace()
            .map(|x| x.parse().unwrap_or(0))
            .collect();
        (f[7], f[9])
    }

    #[test]
    fn built_repaired_and_cloned_tables_are_resident() {
        let mut rules = PrefixRules::default();
        rules.set(p4("10.0.0.0/8"), Some(nz(1)));
        let mut t = PrefixTable::from_rules(&rules);
        let sweep = |t: &PrefixTable| {
            // One lookup per 4 KiB page of tbl24 (1024 slots of /24 = 2^18 addresses).
            let mut hits = 0u32;
            for page in 0..(1u32 << 14) {
                let ip = IpAddr::V4(Ipv4Addr::from(page << 18));
                hits += u32::from(std::hint::black_box(t.lookup(ip)).is_some());
            }
            hits
        };
        let (mut b0, mut b1) = (String::with_capacity(4096), String::with_capacity(4096));
        // Run the measuring code once on another table first: its own code and stack pages
        // fault in on first use, and must not be counted against the table under test.
        let warm = PrefixTable::from_rules(&rules);
        thread_faults(&mut b0);
        sweep(&warm);
        thread_faults(&mut b1);
        let before = thread_faults(&mut b0);
        let hits = sweep(&t);
        let after = thread_faults(&mut b1);
        assert_eq!(hits, 64, "10/8 spans 64 of the probed pages");
        // A table that is not prefaulted takes one fault per page swept: 16,384. A handful is
        // allowed for what the kernel does to this thread under a loaded parallel test run
        // (seen once: 1 fault with every other test running); the process test on the worker
        // thread (tests/acl_updates.rs) is the exact check.
        let stray = |b: (u64, u64), a: (u64, u64)| (a.0 - b.0) + (a.1 - b.1);
        assert!(
            stray(before, after) <= 4,
            "lookups into a built table fault no page in: {before:?} -> {after:?}"
        );
        let copy = t.clone();
        rules.set(p4("10.1.2.3/32"), Some(nz(2)));
        t.repair(&rules, &[p4("10.1.2.3/32")]);
        let before = thread_faults(&mut b0);
        sweep(&copy);
        sweep(&t);
        let after = thread_faults(&mut b1);
        assert!(
            stray(before, after) <= 4,
            "nor into a clone or a repaired one: {before:?} -> {after:?}"
        );
        let v4_only = Dir24_8::build(&[(0x0a00_0000, 8, nz(1))]);
        let dir_sweep = |t: &Dir24_8| {
            for page in 0..(1u32 << 14) {
                std::hint::black_box(t.lookup(page << 18));
            }
        };
        dir_sweep(&Dir24_8::build(&[]));
        let before = thread_faults(&mut b0);
        dir_sweep(&v4_only);
        let after = thread_faults(&mut b1);
        assert!(
            stray(before, after) <= 4,
            "Dir24_8::build too: {before:?} -> {after:?}"
        );
    }

    fn p4(s: &str) -> Prefix {
        s.parse().expect("test prefix")
    }

    /// The /16 summary: a clear bit means every slot of the /16 is unset, and after a
    /// repair removes the last rule of a /16 its bit is clear again (so a churning block
    /// list does not slowly turn every lookup into a `tbl24` read).
    #[test]
    fn slash16_summary_is_exact_through_repairs() {
        let used = |t: &PrefixTable, a: u32| {
            let d = t.v4.as_ref().expect("an IPv4 table");
            let i16 = (a >> 16) as usize;
            d.used16[i16 >> 6] >> (i16 & 63) & 1 == 1
        };
        let exact = |t: &PrefixTable| {
            let d = t.v4.as_ref().expect("an IPv4 table");
            (0..1usize << 16).all(|i16| {
                let any = d.tbl24[i16 << 8..(i16 + 1) << 8].iter().any(|&e| e != 0);
                any == (d.used16[i16 >> 6] >> (i16 & 63) & 1 == 1)
            })
        };
        let mut rules = PrefixRules::default();
        let mut t = PrefixTable::from_rules(&rules);
        let steps: &[(&str, Option<u8>, u32, bool)] = &[
            ("10.1.2.3/32", Some(1), 0x0a01_0000, true),
            ("10.1.200.0/24", Some(2), 0x0a01_0000, true),
            ("10.1.2.3/32", None, 0x0a01_0000, true),
            ("10.1.200.0/24", None, 0x0a01_0000, false),
            ("10.0.0.0/15", Some(3), 0x0a01_0000, true),
            ("10.1.7.0/24", Some(4), 0x0a01_0000, true),
            ("10.0.0.0/15", None, 0x0a00_0000, false),
            ("10.1.7.0/24", None, 0x0a01_0000, false),
        ];
        for &(pfx, v, probe, set) in steps {
            rules.set(p4(pfx), v.map(nz));
            t.repair(&rules, &[p4(pfx)]);
            assert_eq!(used(&t, probe), set, "after {pfx} -> {v:?}");
            assert!(exact(&t), "after {pfx} -> {v:?}");
            let fresh = PrefixTable::from_rules(&rules);
            if fresh.v4.is_some() {
                assert!(exact(&fresh));
            }
            assert_eq!(
                t.lookup(IpAddr::from([10, 1, 7, 9])),
                fresh.lookup(IpAddr::from([10, 1, 7, 9]))
            );
        }
        assert!(exact(&t.clone()));
    }

    #[test]
    fn repair_covers_nesting_and_groups() {
        let mut rules = PrefixRules::default();
        let mut t = PrefixTable::from_rules(&rules);
        let ops: &[(&str, Option<u8>)] = &[
            ("10.0.0.0/8", Some(1)),
            ("10.1.2.128/25", Some(2)),
            ("10.1.2.196/32", Some(3)),
            ("10.1.0.0/16", Some(2)),
            ("10.0.0.0/8", None),
            ("10.1.2.128/25", None),
            ("10.1.2.196/32", None),
            ("0.0.0.0/0", Some(1)),
            ("10.1.2.196/32", Some(2)),
        ];
        for &(pfx, v) in ops {
            assert!(rules.set(p4(pfx), v.map(nz)), "{pfx} changes the rules");
            t.repair(&rules, &[p4(pfx)]);
            assert!(
                t.v4_equivalent(&PrefixTable::from_rules(&rules), 0x0a_0000..0x0b_0000),
                "after {pfx} {v:?}"
            );
        }
        assert!(!rules.set(p4("0.0.0.0/0"), Some(nz(1))), "no change");
        let full = PrefixTable::from_rules(&rules);
        assert!(t.v4_equivalent(&full, 0..TBL24_LEN), "whole address space");
        assert_eq!(t.lookup(ip4("10.1.2.196")), Some(nz(2)));
        assert_eq!(t.lookup(ip4("10.1.2.195")), Some(nz(2)));
        assert_eq!(t.lookup(ip4("192.0.2.1")), Some(nz(1)));
        // The /24 holding a /32 has one group; freed groups are reused, not leaked.
        assert_eq!(t.v4.as_ref().map(Dir24_8::tbl8_bytes), Some(256));
    }

    fn ip4(s: &str) -> IpAddr {
        s.parse().expect("test address")
    }

    /// Prefixes inside 10.0.0.0/8 (nesting often), with now and then a short one covering more.
    fn arb_nested_v4() -> impl Strategy<Value = Prefix> {
        prop_oneof![
            8 => (0u32..64, any::<u32>(), 8u8..=32).prop_map(|(hi, lo, len)| {
                let a = 0x0a00_0000 | (hi << 18) | (lo & 0x3_ffff);
                Prefix::masked(IpAddr::V4(Ipv4Addr::from(a)), len)
            }),
            1 => (0u8..8).prop_map(|len| Prefix::masked(IpAddr::V4(Ipv4Addr::new(10, 0, 0, 0)), len)),
            1 => arb_v6(),
        ]
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

    }

    proptest! {
        // Each case builds two 64 MiB tables: fewer cases than the lookup tests above.
        #![proptest_config(ProptestConfig::with_cases(16))]

        /// A table repaired after each batch of random sets and clears resolves every address
        /// like a table built from scratch from the same rules.
        #[test]
        fn repair_matches_a_fresh_build(
            batches in prop::collection::vec(
                prop::collection::vec((arb_nested_v4(), prop::option::of(1u8..=3)), 1..6),
                1..30,
            ),
            probes in prop::collection::vec(any::<u128>(), 32),
        ) {
            let mut rules = PrefixRules::default();
            let mut t = PrefixTable::from_rules(&rules);
            for batch in &batches {
                let mut changed = Vec::new();
                for &(p, v) in batch {
                    if rules.set(p, v.map(nz)) {
                        changed.push(p);
                    }
                }
                t.repair(&rules, &changed);
            }
            let fresh = PrefixTable::from_rules(&rules);
            prop_assert!(t.v4_equivalent(&fresh, 0x0a_0000..0x0b_0000));
            // Outside 10/8 only the short prefixes reach: a sample of slots suffices.
            prop_assert!((0..(1usize << 24)).step_by(4099).all(|i| t.v4_equivalent(&fresh, i..i + 1)));
            for r in probes {
                let ip = IpAddr::V6(Ipv6Addr::from(r & !(u128::MAX >> 2) | (r >> 100)));
                prop_assert_eq!(t.lookup(ip), fresh.lookup(ip));
            }
            for &(a, l) in rules.v6.keys() {
                let ip = IpAddr::V6(Ipv6Addr::from(a));
                prop_assert_eq!(t.lookup(ip), fresh.lookup(ip), "{}/{}", ip, l);
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
