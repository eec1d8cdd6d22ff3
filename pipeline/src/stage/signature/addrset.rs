//! Address expressions compiled to sorted interval sets, so a rule naming hundreds of
//! addresses (ET's ciarmy/compromised/drop/tor lists) is one binary search per family instead
//! of a walk over the list on every packet.

use std::net::IpAddr;

use super::expr::Expr;
use crate::prefix::Prefix;

/// Sorted, disjoint, non-adjacent inclusive intervals.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Intervals<T>(Vec<(T, T)>);

pub(crate) trait Bound: Copy + Ord {
    const MAX: Self;
    fn succ(self) -> Option<Self>;
    fn pred(self) -> Option<Self>;
}

impl Bound for u32 {
    const MAX: u32 = u32::MAX;
    fn succ(self) -> Option<u32> {
        self.checked_add(1)
    }
    fn pred(self) -> Option<u32> {
        self.checked_sub(1)
    }
}

impl Bound for u128 {
    const MAX: u128 = u128::MAX;
    fn succ(self) -> Option<u128> {
        self.checked_add(1)
    }
    fn pred(self) -> Option<u128> {
        self.checked_sub(1)
    }
}

impl<T: Bound + Default> Intervals<T> {
    fn full() -> Self {
        Intervals(vec![(T::default(), T::MAX)])
    }

    fn normalize(mut v: Vec<(T, T)>) -> Self {
        v.sort();
        let mut out: Vec<(T, T)> = Vec::with_capacity(v.len());
        for (a, b) in v {
            if let Some(last) = out.last_mut() {
                if last.1.succ().is_none_or(|n| a <= n) {
                    if b > last.1 {
                        last.1 = b;
                    }
                    continue;
                }
            }
            out.push((a, b));
        }
        Intervals(out)
    }

    fn union(&self, o: &Self) -> Self {
        Self::normalize(self.0.iter().chain(o.0.iter()).copied().collect())
    }

    fn complement(&self) -> Self {
        let mut out = Vec::new();
        let mut next = Some(T::default());
        for &(a, b) in &self.0 {
            if let (Some(n), Some(p)) = (next, a.pred()) {
                if n <= p {
                    out.push((n, p));
                }
            }
            next = b.succ();
        }
        if let Some(n) = next {
            out.push((n, T::MAX));
        }
        Intervals(out)
    }

    fn intersect(&self, o: &Self) -> Self {
        self.complement().union(&o.complement()).complement()
    }

    fn contains(&self, v: T) -> bool {
        let i = self.0.partition_point(|&(a, _)| a <= v);
        i > 0 && self.0[i - 1].1 >= v
    }
}

/// An address expression as two interval sets (IPv4, IPv6).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum AddrSet {
    Any,
    Sets {
        v4: Intervals<u32>,
        v6: Intervals<u128>,
    },
}

#[derive(Clone, Debug)]
struct Pair(Intervals<u32>, Intervals<u128>);

impl Pair {
    fn full() -> Pair {
        Pair(Intervals::full(), Intervals::full())
    }
    fn empty() -> Pair {
        Pair(Intervals::default(), Intervals::default())
    }
    fn union(&self, o: &Pair) -> Pair {
        Pair(self.0.union(&o.0), self.1.union(&o.1))
    }
    fn complement(&self) -> Pair {
        Pair(self.0.complement(), self.1.complement())
    }
    fn intersect(&self, o: &Pair) -> Pair {
        Pair(self.0.intersect(&o.0), self.1.intersect(&o.1))
    }
}

fn leaf(p: &Prefix) -> Pair {
    let len = u32::from(p.prefix_len());
    match p.addr() {
        IpAddr::V4(a) => {
            let base = u32::from(a);
            let host = if len >= 32 { 0 } else { u32::MAX >> len };
            Pair(
                Intervals(vec![(base & !host, base | host)]),
                Intervals::default(),
            )
        }
        IpAddr::V6(a) => {
            let base = u128::from(a);
            let host = if len >= 128 { 0 } else { u128::MAX >> len };
            Pair(
                Intervals::default(),
                Intervals(vec![(base & !host, base | host)]),
            )
        }
    }
}

/// The same meaning as [`Expr::matches`]: a list matches when one positive item matches (or
/// it has none) and no negated item does.
fn eval(e: &Expr<Prefix>) -> Pair {
    match e {
        Expr::Any => Pair::full(),
        Expr::Leaf(p) => leaf(p),
        Expr::Not(inner) => eval(inner).complement(),
        Expr::List(items) => {
            let mut pos: Option<Pair> = None;
            let mut neg = Pair::empty();
            for it in items {
                match it {
                    Expr::Not(inner) => neg = neg.union(&eval(inner)),
                    other => {
                        let v = eval(other);
                        pos = Some(match pos {
                            Some(p) => p.union(&v),
                            None => v,
                        });
                    }
                }
            }
            pos.unwrap_or_else(Pair::full).intersect(&neg.complement())
        }
    }
}

impl AddrSet {
    pub fn compile(e: &Expr<Prefix>) -> AddrSet {
        if *e == Expr::Any {
            return AddrSet::Any;
        }
        let p = eval(e);
        AddrSet::Sets { v4: p.0, v6: p.1 }
    }

    pub fn matches(&self, ip: IpAddr) -> bool {
        match self {
            AddrSet::Any => true,
            AddrSet::Sets { v4, v6 } => match ip {
                IpAddr::V4(a) => v4.contains(u32::from(a)),
                IpAddr::V6(a) => v6.contains(u128::from(a)),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::expr::{parse_expr, VarValue, Vars};
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn interval_sets_agree_with_expressions() {
        let mut vars = Vars::new();
        vars.insert(
            "HOME_NET".into(),
            VarValue::Many(vec!["10.0.0.0/8".into(), "192.168.0.0/16".into()]),
        );
        vars.insert("EXTERNAL_NET".into(), VarValue::One("!$HOME_NET".into()));
        let exprs = [
            "any",
            "$HOME_NET",
            "$EXTERNAL_NET",
            "[1.2.3.4,1.2.3.5,9.9.9.0/24,!9.9.9.9]",
            "![10.0.0.0/8,!10.1.0.0/16]",
            "[$HOME_NET,!10.2.0.0/16,2001:db8::/32]",
            "[!1.1.1.1]",
            "[[1.0.0.0/8,!1.2.0.0/16],3.3.3.3]",
        ];
        let addrs = [
            "0.0.0.0",
            "1.2.3.4",
            "1.2.3.6",
            "1.2.9.9",
            "1.3.0.0",
            "3.3.3.3",
            "9.9.9.8",
            "9.9.9.9",
            "10.1.2.3",
            "10.2.0.1",
            "10.3.0.0",
            "192.168.1.1",
            "255.255.255.255",
            "2001:db8::1",
            "::",
            "ffff::1",
        ];
        for e in exprs {
            let x = parse_expr::<Prefix>(e, &vars).unwrap();
            let s = AddrSet::compile(&x);
            for a in addrs {
                let ip: IpAddr = a.parse().unwrap();
                assert_eq!(s.matches(ip), x.matches(ip), "{e} {a}");
            }
        }
    }

    proptest! {
        #[test]
        fn random_lists_agree(
            items in proptest::collection::vec((any::<u32>(), 0u8..=32, any::<bool>()), 1..12),
            probes in proptest::collection::vec(any::<u32>(), 1..40),
        ) {
            let text = format!(
                "[{}]",
                items
                    .iter()
                    .map(|(a, l, neg)| format!(
                        "{}{}/{}",
                        if *neg { "!" } else { "" },
                        std::net::Ipv4Addr::from(a & if *l == 0 { 0 } else { u32::MAX << (32 - u32::from(*l)) }),
                        l
                    ))
                    .collect::<Vec<_>>()
                    .join(",")
            );
            let x = parse_expr::<Prefix>(&text, &Vars::new()).unwrap();
            let s = AddrSet::compile(&x);
            for p in probes.iter().chain(items.iter().map(|i| &i.0)) {
                let ip = IpAddr::V4((*p).into());
                prop_assert_eq!(s.matches(ip), x.matches(ip), "{} {}", text, ip);
            }
        }
    }
}

/// IPv4 and IPv6 intervals of one set.
type Spans<'a> = (&'a [(u32, u32)], &'a [(u128, u128)]);

/// Intervals collected for an [`AddrIndex`], each with its rule.
pub(crate) type Pending = (Vec<(u32, u32, u32)>, Vec<(u128, u128, u32)>);

/// Most addresses a set may cover and still be indexed (an ET list of /32s and /24s is far
/// below; `!$HOME_NET` is far above and stays in the per-protocol lists).
const INDEX_MAX_V4: u64 = 1 << 24;
const INDEX_MAX_V6: u128 = 1 << 100;

impl AddrSet {
    /// The intervals, when the set is small enough to index rules by address.
    fn small(&self) -> Option<Spans<'_>> {
        let AddrSet::Sets { v4, v6 } = self else {
            return None;
        };
        let c4: u64 = v4.0.iter().map(|&(a, b)| u64::from(b - a) + 1).sum();
        let c6: u128 =
            v6.0.iter()
                .map(|&(a, b)| (b - a).saturating_add(1))
                .fold(0u128, u128::saturating_add);
        (c4 <= INDEX_MAX_V4 && c6 <= INDEX_MAX_V6).then_some((&v4.0[..], &v6.0[..]))
    }
}

/// Elementary address segments, each with the rules whose set covers it (CSR).
#[derive(Clone, Debug, Default)]
struct Segments<T> {
    starts: Vec<T>,
    offsets: Vec<u32>,
    rules: Vec<u32>,
}

impl<T: Bound + Default> Segments<T> {
    fn build(items: Vec<(T, T, u32)>) -> Self {
        // Sweep: +rule at start, -rule after end.
        let mut events: Vec<(T, bool, u32)> = Vec::with_capacity(items.len() * 2);
        for (a, b, r) in items {
            events.push((a, true, r));
            if let Some(n) = b.succ() {
                events.push((n, false, r));
            }
        }
        events.sort_by(|x, y| x.0.cmp(&y.0).then(x.1.cmp(&y.1)));
        let mut seg = Segments::default();
        let mut active: std::collections::BTreeMap<u32, u32> = Default::default();
        let mut i = 0;
        while i < events.len() {
            let at = events[i].0;
            while i < events.len() && events[i].0 == at {
                let (_, add, r) = events[i];
                if add {
                    *active.entry(r).or_default() += 1;
                } else if let Some(c) = active.get_mut(&r) {
                    *c -= 1;
                    if *c == 0 {
                        active.remove(&r);
                    }
                }
                i += 1;
            }
            seg.starts.push(at);
            seg.offsets
                .push(u32::try_from(seg.rules.len()).unwrap_or(u32::MAX));
            seg.rules.extend(active.keys().copied());
        }
        seg.offsets
            .push(u32::try_from(seg.rules.len()).unwrap_or(u32::MAX));
        seg
    }

    fn lookup(&self, v: T) -> &[u32] {
        let i = self.starts.partition_point(|&s| s <= v);
        if i == 0 {
            return &[];
        }
        match (self.offsets.get(i - 1), self.offsets.get(i)) {
            (Some(&a), Some(&b)) => self.rules.get(a as usize..b as usize).unwrap_or(&[]),
            _ => &[],
        }
    }
}

/// Rules indexed by the addresses their source (or destination) names: a packet finds the
/// rules naming its address by binary search, whatever the number of such rules.
#[derive(Clone, Debug, Default)]
pub(crate) struct AddrIndex {
    v4: Segments<u32>,
    v6: Segments<u128>,
    pub len: usize,
}

impl AddrIndex {
    /// Adds `rule` if `set` is small enough; false (nothing added) otherwise.
    pub fn offer(pending: &mut Pending, set: &AddrSet, rule: u32) -> bool {
        let Some((v4, v6)) = set.small() else {
            return false;
        };
        pending.0.extend(v4.iter().map(|&(a, b)| (a, b, rule)));
        pending.1.extend(v6.iter().map(|&(a, b)| (a, b, rule)));
        true
    }

    pub fn build(pending: Pending, len: usize) -> Self {
        AddrIndex {
            v4: Segments::build(pending.0),
            v6: Segments::build(pending.1),
            len,
        }
    }

    pub fn lookup(&self, ip: IpAddr) -> &[u32] {
        if self.len == 0 {
            return &[];
        }
        match ip {
            IpAddr::V4(a) => self.v4.lookup(u32::from(a)),
            IpAddr::V6(a) => self.v6.lookup(u128::from(a)),
        }
    }
}

#[cfg(test)]
mod index_tests {
    use super::super::expr::{parse_expr, Vars};
    use super::*;

    #[test]
    fn index_finds_exactly_the_rules_naming_an_address() {
        let sets = [
            "[1.2.3.4,5.6.7.0/24]",
            "[5.6.7.8,9.9.9.9]",
            "2001:db8::/64",
            "!1.2.3.4",
        ];
        let mut pending = Default::default();
        let mut taken = Vec::new();
        for (i, s) in sets.iter().enumerate() {
            let e = parse_expr::<Prefix>(s, &Vars::new()).unwrap();
            taken.push(AddrIndex::offer(
                &mut pending,
                &AddrSet::compile(&e),
                i as u32,
            ));
        }
        assert_eq!(
            taken,
            [true, true, true, false],
            "a negation covers almost everything"
        );
        let idx = AddrIndex::build(pending, 3);
        let at = |a: &str| idx.lookup(a.parse().unwrap()).to_vec();
        assert_eq!(at("1.2.3.4"), [0]);
        assert_eq!(at("5.6.7.8"), [0, 1]);
        assert_eq!(at("5.6.7.255"), [0]);
        assert_eq!(at("5.6.8.0"), Vec::<u32>::new());
        assert_eq!(at("9.9.9.9"), [1]);
        assert_eq!(at("2001:db8::5"), [2]);
        assert_eq!(at("0.0.0.0"), Vec::<u32>::new());
    }
}
