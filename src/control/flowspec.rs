//! The BGP FlowSpec routes the box runs: kept per (peer, components), compiled into one
//! [`FlowspecTable`] after every change and published to the workers like an ACL table.
//!
//! Routes come from the BGP daemon's bridge (`scrubctl bgp-bridge`) through the control
//! socket. A route scrubd cannot evaluate exactly is refused whole: counted, logged, kept in
//! a short list of recent refusals for `scrubctl flowspec list`, and answered with the reason.

use ctl::protocol::{FlowspecRefusal, FlowspecReport, FlowspecRoute, FlowspecRow};
use pipeline::stage::flowspec::{FlowAction, FlowRule, FlowspecError, FlowspecTable, MAX_RULES};
use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;
use std::time::Instant;

/// Refusals kept for `flowspec list`.
const RECENT_REFUSALS: usize = 16;

struct Active {
    rule: FlowRule,
    text: String,
    since: Instant,
    /// Arrival order, so equal-precedence rules keep it across rebuilds.
    seq: u64,
}

/// The live FlowSpec state of the control side.
pub struct FlowspecLive {
    tsc_hz: u64,
    routes: BTreeMap<(String, String), Active>,
    seq: u64,
    pub announced: u64,
    pub withdrawn: u64,
    pub refused: u64,
    recent: VecDeque<(FlowspecRefusal, Instant)>,
}

/// What a change did: a table to publish, or nothing changed.
pub enum Change {
    Publish(Arc<FlowspecTable>),
    Unchanged,
}

impl FlowspecLive {
    pub fn new(tsc_hz: u64) -> FlowspecLive {
        FlowspecLive {
            tsc_hz,
            routes: BTreeMap::new(),
            seq: 0,
            announced: 0,
            withdrawn: 0,
            refused: 0,
            recent: VecDeque::new(),
        }
    }

    pub fn active(&self) -> usize {
        self.routes.len()
    }

    fn key(peer: &str, route: &FlowspecRoute) -> (String, String) {
        (peer.trim().to_string(), route.text())
    }

    fn refuse(&mut self, peer: &str, route: &FlowspecRoute, e: &FlowspecError) -> String {
        self.refused += 1;
        let text = route.text();
        log::warn!("FlowSpec route from {peer} refused: {text}: {e}");
        if self.recent.len() == RECENT_REFUSALS {
            self.recent.pop_front();
        }
        self.recent.push_back((
            FlowspecRefusal {
                peer: peer.to_string(),
                route: text.clone(),
                reason: e.to_string(),
                age_s: 0.0,
            },
            Instant::now(),
        ));
        format!("refused, nothing applied: {text}: {e}")
    }

    /// Adds or replaces a route; refuses it whole (Err with the reason) if it cannot be
    /// evaluated or the table is full.
    pub fn announce(&mut self, peer: &str, route: &FlowspecRoute) -> Result<Change, String> {
        let parsed = FlowAction::from_communities(&route.communities)
            .and_then(|a| FlowRule::parse(&route.components, a));
        let rule = match parsed {
            Ok(r) => r,
            Err(e) => return Err(self.refuse(peer, route, &e)),
        };
        let key = Self::key(peer, route);
        if !self.routes.contains_key(&key) && self.routes.len() >= MAX_RULES {
            return Err(self.refuse(peer, route, &FlowspecError::Full));
        }
        self.seq += 1;
        let text = key.1.clone();
        log::info!(
            "FlowSpec route from {peer}: {text} → {}",
            rule.action.name()
        );
        self.routes.insert(
            key,
            Active {
                rule,
                text,
                since: Instant::now(),
                seq: self.seq,
            },
        );
        self.announced += 1;
        self.build().map(Change::Publish)
    }

    pub fn withdraw(&mut self, peer: &str, route: &FlowspecRoute) -> Result<Change, String> {
        if self.routes.remove(&Self::key(peer, route)).is_none() {
            // A refused route's withdrawal, or a duplicate: nothing runs that could change.
            return Ok(Change::Unchanged);
        }
        self.withdrawn += 1;
        log::info!("FlowSpec route from {peer} withdrawn: {}", route.text());
        self.build().map(Change::Publish)
    }

    /// Drops every route of `peer` (its session went down).
    pub fn flush(&mut self, peer: &str) -> Result<(Change, usize), String> {
        let before = self.routes.len();
        self.routes.retain(|(p, _), _| p != peer.trim());
        let n = before - self.routes.len();
        if n == 0 {
            return Ok((Change::Unchanged, 0));
        }
        self.withdrawn += n as u64;
        log::info!("FlowSpec: {n} route(s) of {peer} removed (session down)");
        Ok((Change::Publish(self.build()?), n))
    }

    fn ordered(&self) -> Vec<&Active> {
        let mut v: Vec<&Active> = self.routes.values().collect();
        v.sort_by_key(|a| a.seq);
        v
    }

    fn build(&self) -> Result<Arc<FlowspecTable>, String> {
        let rules = self.ordered().into_iter().map(|a| a.rule.clone()).collect();
        FlowspecTable::build(rules, self.tsc_hz)
            .map(Arc::new)
            .map_err(|e| e.to_string())
    }

    pub fn report(&self, now: Instant) -> FlowspecReport {
        // The table's order: the same stable sort over arrival order.
        let mut active: Vec<(&(String, String), &Active)> = self.routes.iter().collect();
        active.sort_by_key(|(_, a)| a.seq);
        let order = FlowspecTable::order(&active.iter().map(|(_, a)| &a.rule).collect::<Vec<_>>());
        let rules = order
            .into_iter()
            .filter_map(|i| active.get(i))
            .map(|((peer, _), a)| FlowspecRow {
                peer: peer.clone(),
                route: a.text.clone(),
                action: a.rule.action.name(),
                age_s: now.duration_since(a.since).as_secs_f64(),
            })
            .collect();
        FlowspecReport {
            rules,
            capacity: MAX_RULES,
            announced: self.announced,
            withdrawn: self.withdrawn,
            refused: self.refused,
            recent_refusals: self
                .recent
                .iter()
                .map(|(r, at)| FlowspecRefusal {
                    age_s: now.duration_since(*at).as_secs_f64(),
                    ..r.clone()
                })
                .collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn route(dst: &str, extra: &[(&str, &str)], communities: &[&str]) -> FlowspecRoute {
        let mut components = BTreeMap::from([("destination-ipv4".to_string(), vec![dst.into()])]);
        for (k, v) in extra {
            components.insert(k.to_string(), vec![v.to_string()]);
        }
        FlowspecRoute {
            components,
            communities: communities.iter().map(|s| s.to_string()).collect(),
        }
    }

    fn published(c: Result<Change, String>) -> Arc<FlowspecTable> {
        match c {
            Ok(Change::Publish(t)) => t,
            Ok(Change::Unchanged) => panic!("nothing published"),
            Err(e) => panic!("{e}"),
        }
    }

    #[test]
    fn announce_replace_withdraw_and_flush() {
        let mut f = FlowspecLive::new(1000);
        let a = route("10.0.0.0/24", &[], &["rate-limit:0"]);
        assert_eq!(published(f.announce("p1", &a)).len(), 1);
        // The same components again (another action) replace the rule.
        let a2 = route("10.0.0.0/24", &[], &["rate-limit:5000"]);
        assert_eq!(published(f.announce("p1", &a2)).len(), 1);
        // The same route from another peer is its own rule.
        assert_eq!(published(f.announce("p2", &a)).len(), 2);
        let r = f.report(Instant::now());
        assert_eq!(r.rules.len(), 2);
        assert!(r
            .rules
            .iter()
            .any(|x| x.peer == "p1" && x.action == "rate-limit 5000 B/s"));
        assert_eq!(published(f.withdraw("p1", &a)).len(), 1);
        assert!(matches!(f.withdraw("p1", &a), Ok(Change::Unchanged)));
        let (c, n) = f.flush("p2").unwrap();
        assert_eq!(n, 1);
        assert!(matches!(c, Change::Publish(t) if t.is_empty()));
        assert_eq!((f.announced, f.withdrawn, f.refused), (3, 2, 0));
    }

    #[test]
    fn refusals_are_counted_listed_and_apply_nothing() {
        let mut f = FlowspecLive::new(1000);
        published(f.announce("p", &route("10.0.0.0/24", &[], &[])));
        for (r, why) in [
            (route("10.0.1.0/24", &[("dscp", "=10")], &[]), "dscp"),
            (route("10.0.2.0/24", &[], &["redirect:65000:1"]), "redirect"),
            (route("10.0.3.1/24", &[], &[]), "host bits"),
        ] {
            let e = f.announce("p", &r).err().expect("refused");
            assert!(e.contains(why) && e.contains("nothing applied"), "{e}");
        }
        let rep = f.report(Instant::now());
        assert_eq!(
            rep.rules.len(),
            1,
            "the refused routes left the table alone"
        );
        assert_eq!(rep.refused, 3);
        assert_eq!(rep.recent_refusals.len(), 3);
        for i in 0..RECENT_REFUSALS {
            let _ = f.announce(
                "p",
                &route(&format!("10.1.{i}.0/24"), &[("dscp", "=1")], &[]),
            );
        }
        let rep = f.report(Instant::now());
        assert_eq!(rep.refused, 3 + RECENT_REFUSALS as u64);
        assert_eq!(rep.recent_refusals.len(), RECENT_REFUSALS);
        assert!(rep
            .recent_refusals
            .last()
            .unwrap()
            .route
            .contains("10.1.15.0/24"));
    }

    #[test]
    fn the_list_shows_evaluation_order() {
        let mut f = FlowspecLive::new(1000);
        published(f.announce("p", &route("10.0.0.0/8", &[], &[])));
        published(f.announce("p", &route("10.1.0.0/16", &[], &[])));
        let r = f.report(Instant::now());
        assert!(r.rules[0].route.contains("10.1.0.0/16"), "{:?}", r.rules);
    }
}
