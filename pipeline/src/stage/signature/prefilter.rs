//! The multi-pattern prefilter, organised as Suricata organises its MPM: rules are grouped by
//! what a packet must be for them to match (transport, application protocol recognised in the
//! packet, destination port), each group has its own automaton over its rules' fast patterns,
//! and a packet scans only the groups it belongs to. A scan reports which patterns occur; each
//! pattern's rules are visited once per packet however often it occurs, and only those rules
//! are verified.
//!
//! The scan engine is Vectorscan (Hyperscan's portable fork) in block mode: each fast pattern a
//! literal, with `HS_FLAG_CASELESS` only on the patterns that are `nocase`. Measured against the
//! `aho-corasick` crate (overlapping DFA/NFA, the previous engine) on ET Open and the shared
//! captures with `scrubd-mpm-bench`, it scans 4-5x faster on 10,000 rules over an IMIX and
//! 11x faster on large clean payloads, and finds fewer false candidates (see NOTES.md).

use std::collections::HashMap;

use hyperscan::{BlockDatabase, Builder, Matching, Pattern, PatternFlags, Patterns, Scratch};
use rayon::prelude::*;

/// What a packet is, for grouping. A packet belongs to its transport's class and to every
/// application class it is recognised as (see [`super::buffers::App`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) enum Class {
    Tcp = 0,
    Udp = 1,
    Other = 2,
    Http = 3,
    Tls = 4,
    Dns = 5,
    /// Rules that inspect request-only buffers (http.uri, http.method, ...): a request head.
    HttpRequest = 6,
    /// Rules that inspect dns.query: a DNS query (QR clear), not any DNS message.
    DnsQuery = 7,
}

pub(crate) const CLASSES: usize = 8;

/// Groups of at most this many case-sensitive patterns are scanned with one SIMD substring
/// search per pattern (memchr's memmem) instead of an automaton.
const FEW_PATTERNS: usize = 3;

/// How a group finds which of its patterns occur.
pub(crate) enum Scanner {
    /// A Vectorscan block-mode database over the group's patterns (pattern id = index).
    Vs(BlockDatabase),
    /// One first-occurrence search per pattern.
    Few(Vec<memchr::memmem::Finder<'static>>),
}

impl std::fmt::Debug for Scanner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Scanner::Vs(_) => f.write_str("Vectorscan"),
            Scanner::Few(v) => write!(f, "memmem x{}", v.len()),
        }
    }
}

/// One worker's Vectorscan scratch space (see [`Prefilter::scratch`]).
pub(crate) struct VsScratch(Option<Scratch>);

impl VsScratch {
    pub fn get(&self) -> Option<&Scratch> {
        self.0.as_ref()
    }
}

impl std::fmt::Debug for VsScratch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.0.is_some() {
            "VsScratch"
        } else {
            "VsScratch(none)"
        })
    }
}

/// A Vectorscan scan that did not complete (no or too small scratch space, or an engine
/// error): the caller must treat every pattern of the group as possibly present.
#[derive(Debug)]
pub(crate) struct ScanFailed;

impl Scanner {
    /// Calls `f` with each pattern that occurs in `hay` (at least once per occurring pattern).
    /// `scratch` is the worker's Vectorscan scratch space ([`Prefilter::scratch`]).
    #[inline]
    pub fn for_each(
        &self,
        hay: &[u8],
        scratch: Option<&Scratch>,
        mut f: impl FnMut(usize),
    ) -> Result<(), ScanFailed> {
        match self {
            Scanner::Vs(db) => {
                let scratch = scratch.ok_or(ScanFailed)?;
                db.scan(
                    hay,
                    scratch,
                    |id: u32, _from: u64, _to: u64, _flags: u32| {
                        f(id as usize);
                        Matching::Continue
                    },
                )
                .map_err(|_| ScanFailed)
            }
            Scanner::Few(fs) => {
                for (i, fd) in fs.iter().enumerate() {
                    if fd.find(hay).is_some() {
                        f(i);
                    }
                }
                Ok(())
            }
        }
    }
}

/// `bytes` as a Vectorscan expression that matches exactly those bytes: every byte written
/// `\xHH`, so no byte is a metacharacter and NUL needs no special case.
fn literal(bytes: &[u8]) -> String {
    use std::fmt::Write;
    let mut s = String::with_capacity(bytes.len() * 4);
    for b in bytes {
        let _ = write!(s, "\\x{b:02x}");
    }
    s
}

#[derive(Debug)]
pub(crate) struct Group {
    pub scanner: Scanner,
    /// Global id of this group's pattern 0 (pattern stamps are global).
    pub base: u32,
    starts: Vec<u32>,
    rules: Vec<u32>,
    /// The group's fast patterns (pattern i is `scanner`'s pattern i), each with its `nocase`:
    /// kept so that other engines can be measured on exactly these sets
    /// ([`super::CompiledRules::mpm_groups`]).
    pub patterns: Vec<(Vec<u8>, bool)>,
    /// When every pattern of the group lies within the payload's first `n` bytes whenever its
    /// rules match (absolute contents with a depth, `startswith`), `Some(n)`: the scan stops
    /// there. ET's binary-protocol rules (`content:"|04 01|"; depth:4;`) then cost a few bytes
    /// per packet instead of a pass over the whole payload.
    pub scan_end: Option<usize>,
}

impl Group {
    /// The part of `payload` this group's scan must cover.
    #[inline]
    pub fn hay<'a>(&self, payload: &'a [u8]) -> &'a [u8] {
        match self.scan_end {
            Some(e) => payload.get(..e).unwrap_or(payload),
            None => payload,
        }
    }
}

impl Group {
    pub fn rules_for(&self, pattern: usize) -> &[u32] {
        match (self.starts.get(pattern), self.starts.get(pattern + 1)) {
            (Some(&a), Some(&b)) => self.rules.get(a as usize..b as usize).unwrap_or(&[]),
            _ => &[],
        }
    }
}

/// One rule's place in the prefilter.
pub(crate) struct Entry {
    pub rule: u32,
    /// As written when `nocase` is false, else lowercased.
    pub pattern: Vec<u8>,
    /// The pattern must be found regardless of ASCII case.
    pub nocase: bool,
    pub classes: Vec<Class>,
    /// Destination ports when the rule names a few (else any port).
    pub dports: Option<Vec<u16>>,
    /// The payload offset the pattern ends by whenever the rule matches (`None`: anywhere).
    pub bound: Option<usize>,
}

#[derive(Debug, Default)]
pub(crate) struct Prefilter {
    pub groups: Vec<Group>,
    any: [Option<u32>; CLASSES],
    /// (port, group), sorted by port.
    by_dport: [Vec<(u16, u32)>; CLASSES],
    pub patterns: usize,
    pub rules: usize,
}

impl Prefilter {
    pub fn build(entries: Vec<Entry>) -> Result<Prefilter, String> {
        // (class, port) → pattern → its rules, and the payload offset every one of their
        // matches ends by if all have one (the widest; one unbounded rule makes it unbounded).
        type Key = (Class, Option<u16>);
        type Pat = (Vec<u8>, bool);
        type Uses = (Vec<u32>, Option<usize>);
        let mut by_key: HashMap<Key, HashMap<Pat, Uses>> = HashMap::new();
        let rules = entries.len();
        for e in entries {
            let keys: Vec<Key> = e
                .classes
                .iter()
                .flat_map(|&c| match &e.dports {
                    Some(ps) => ps.iter().map(|&p| (c, Some(p))).collect(),
                    None => vec![(c, None)],
                })
                .collect();
            for key in keys {
                let (rules, bound) = by_key
                    .entry(key)
                    .or_default()
                    .entry((e.pattern.clone(), e.nocase))
                    .or_insert((Vec::new(), e.bound));
                rules.push(e.rule);
                *bound = bound.zip(e.bound).map(|(x, y)| x.max(y));
            }
        }
        type Patterns = Vec<(Pat, Uses)>;
        let mut keys: Vec<(Key, Patterns)> = by_key
            .into_iter()
            .map(|(k, m)| {
                let mut v: Vec<_> = m.into_iter().collect();
                v.sort();
                (k, v)
            })
            .collect();
        keys.sort_by_key(|k| k.0);
        // Automata build in parallel: load time is dominated by them for big sets.
        let built: Vec<Result<Scanner, String>> = keys
            .par_iter()
            .map(|(_, pats)| {
                let nocase = pats.iter().any(|((_, nc), _)| *nc);
                if !nocase && pats.len() <= FEW_PATTERNS {
                    return Ok(Scanner::Few(
                        pats.iter()
                            .map(|((p, _), _)| memchr::memmem::Finder::new(p).into_owned())
                            .collect(),
                    ));
                }
                let mut v = Vec::with_capacity(pats.len());
                for (i, ((p, nc), _)) in pats.iter().enumerate() {
                    // Not HS_FLAG_SINGLEMATCH, although only the first occurrence matters:
                    // Vectorscan 5.4.9 (Debian 12) with it misses one-byte literals in large
                    // sets (seen on ET Open: `|d0|` in the TCP group; scrubd-mpm-bench checks
                    // every reported set against aho-corasick). Repeats are dropped by the
                    // per-packet pattern stamps instead.
                    let flags = if *nc {
                        PatternFlags::CASELESS
                    } else {
                        PatternFlags::empty()
                    };
                    let mut pat = Pattern::with_flags(literal(p), flags).map_err(|e| {
                        format!("fast pattern {:?}: {e}", String::from_utf8_lossy(p))
                    })?;
                    pat.id = Some(i);
                    v.push(pat);
                }
                Patterns(v)
                    .build::<hyperscan::BlockMode>()
                    .map(Scanner::Vs)
                    .map_err(|e| format!("Vectorscan: {e}"))
            })
            .collect();
        let mut pf = Prefilter {
            rules,
            ..Prefilter::default()
        };
        for ((key, pats), scanner) in keys.into_iter().zip(built) {
            let scanner = scanner?;
            let gid = u32::try_from(pf.groups.len()).map_err(|e| e.to_string())?;
            let mut starts = Vec::with_capacity(pats.len() + 1);
            let mut list = Vec::new();
            starts.push(0);
            for (_, (rs, _)) in &pats {
                list.extend_from_slice(rs);
                starts.push(u32::try_from(list.len()).map_err(|e| e.to_string())?);
            }
            let base = u32::try_from(pf.patterns).map_err(|e| e.to_string())?;
            let scan_end = pats
                .iter()
                .try_fold(0usize, |end, (_, (_, b))| Some(end.max((*b)?)));
            pf.patterns += pats.len();
            pf.groups.push(Group {
                scanner,
                base,
                starts,
                rules: list,
                patterns: pats.into_iter().map(|(p, _)| p).collect(),
                scan_end,
            });
            let c = key.0 as usize;
            match key.1 {
                None => pf.any[c] = Some(gid),
                Some(p) => pf.by_dport[c].push((p, gid)),
            }
        }
        Ok(pf)
    }

    /// A scratch space for Vectorscan big enough for every group's database: one per worker
    /// (a scratch serves one scan at a time), made off the packet path. `None` when no group
    /// uses Vectorscan, or when allocation failed (the scans of such a worker then report
    /// [`ScanFailed`] and their groups' rules are all verified: slower, never wrong).
    pub fn scratch(&self) -> VsScratch {
        VsScratch(self.alloc_scratch())
    }

    fn alloc_scratch(&self) -> Option<Scratch> {
        let mut s: Option<Scratch> = None;
        for g in &self.groups {
            if let Scanner::Vs(db) = &g.scanner {
                match &mut s {
                    None => s = Some(db.alloc_scratch().ok()?),
                    Some(s) => {
                        db.realloc_scratch(s).ok()?;
                    }
                }
            }
        }
        s
    }

    /// The groups a packet of class `c` to `dport` scans (at most two).
    pub fn groups(&self, c: Class, dport: Option<u16>) -> [Option<&Group>; 2] {
        let i = c as usize;
        let any = self.any[i].and_then(|g| self.groups.get(g as usize));
        let port = dport.and_then(|p| {
            let v = &self.by_dport[i];
            let k = v.binary_search_by_key(&p, |x| x.0).ok()?;
            self.groups.get(v[k].1 as usize)
        });
        [any, port]
    }

    pub fn has_class(&self, c: Class) -> bool {
        let i = c as usize;
        self.any[i].is_some() || !self.by_dport[i].is_empty()
    }
}
