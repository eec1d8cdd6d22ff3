//! The multi-pattern prefilter, organised as Suricata organises its MPM: rules are grouped by
//! what a packet must be for them to match (transport, application protocol recognised in the
//! packet, destination port), each group has its own automaton over its rules' fast patterns,
//! and a packet scans only the groups it belongs to. A scan reports which patterns occur; each
//! pattern's rules are visited once per packet however often it occurs, and only those rules
//! are verified.

use std::collections::HashMap;

use aho_corasick::{AhoCorasick, AhoCorasickKind, MatchKind};
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

/// Groups up to this many patterns use a DFA (fastest scan, bigger and slower to build).
const DFA_MAX_PATTERNS: usize = 300;

/// Groups of at most this many case-sensitive patterns are scanned with one SIMD substring
/// search per pattern (memchr's memmem) instead of an automaton.
const FEW_PATTERNS: usize = 3;

/// How a group finds which of its patterns occur.
#[derive(Debug)]
pub(crate) enum Scanner {
    /// Overlapping Aho-Corasick (every pattern that occurs is reported); ASCII
    /// case-insensitive when any of the group's patterns is `nocase`.
    Ac(AhoCorasick),
    /// One first-occurrence search per pattern.
    Few(Vec<memchr::memmem::Finder<'static>>),
}

impl Scanner {
    /// Calls `f` with each pattern that occurs in `hay` (at least once per occurring pattern).
    #[inline]
    pub fn for_each(&self, hay: &[u8], mut f: impl FnMut(usize)) {
        match self {
            Scanner::Ac(ac) => {
                if let Ok(it) = ac.try_find_overlapping_iter(hay) {
                    for m in it {
                        f(m.pattern().as_usize());
                    }
                }
            }
            Scanner::Few(fs) => {
                for (i, fd) in fs.iter().enumerate() {
                    if fd.find(hay).is_some() {
                        f(i);
                    }
                }
            }
        }
    }
}

#[derive(Debug)]
pub(crate) struct Group {
    pub scanner: Scanner,
    /// Global id of this group's pattern 0 (pattern stamps are global).
    pub base: u32,
    starts: Vec<u32>,
    rules: Vec<u32>,
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
        // (class, port) → pattern → rules
        type Key = (Class, Option<u16>);
        type Pat = (Vec<u8>, bool);
        let mut by_key: HashMap<Key, HashMap<Pat, Vec<u32>>> = HashMap::new();
        let rules = entries.len();
        for e in entries {
            for &c in &e.classes {
                match &e.dports {
                    Some(ps) => {
                        for &p in ps {
                            by_key
                                .entry((c, Some(p)))
                                .or_default()
                                .entry((e.pattern.clone(), e.nocase))
                                .or_default()
                                .push(e.rule);
                        }
                    }
                    None => by_key
                        .entry((c, None))
                        .or_default()
                        .entry((e.pattern.clone(), e.nocase))
                        .or_default()
                        .push(e.rule),
                }
            }
        }
        type Patterns = Vec<(Pat, Vec<u32>)>;
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
                let kind = (pats.len() <= DFA_MAX_PATTERNS).then_some(AhoCorasickKind::DFA);
                AhoCorasick::builder()
                    .ascii_case_insensitive(nocase)
                    .match_kind(MatchKind::Standard)
                    .kind(kind)
                    .build(pats.iter().map(|((p, _), _)| p))
                    .map(Scanner::Ac)
                    .map_err(|e| e.to_string())
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
            for (_, rs) in &pats {
                list.extend_from_slice(rs);
                starts.push(u32::try_from(list.len()).map_err(|e| e.to_string())?);
            }
            let base = u32::try_from(pf.patterns).map_err(|e| e.to_string())?;
            pf.patterns += pats.len();
            pf.groups.push(Group {
                scanner,
                base,
                starts,
                rules: list,
            });
            let c = key.0 as usize;
            match key.1 {
                None => pf.any[c] = Some(gid),
                Some(p) => pf.by_dport[c].push((p, gid)),
            }
        }
        Ok(pf)
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
