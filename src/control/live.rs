//! The policy the operator changes while scrubd runs: dynamic block/allow entries, the rule set
//! and ACL re-read from the config file, per-class rate limits.
//!
//! Everything is compiled here, on a control thread; workers only ever receive finished
//! objects (see `dataplane::channel`). A change that fails to compile returns its errors and
//! leaves the running policy untouched.

use crate::config::Config;
use pipeline::prefix::Prefix;
use pipeline::stage::acl::{AclAction, AclBuilder, AclTable, AclWriter};
use pipeline::stage::ratelimit::{ClassChange, ClassLimit, LimitClass, RateLimitConfig};
use pipeline::stage::signature::CompiledRules;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

/// One operator-added entry: which list, and when it lapses (None: until deleted).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Dynamic {
    pub expires: Option<Instant>,
}

pub struct LivePolicy {
    pub config_path: PathBuf,
    tsc_hz: u64,
    /// Entries from the config file's [pipeline.acl] (replaced by `reload`).
    base_acl: AclBuilder,
    dynamic: BTreeMap<(AclAction, Prefix), Dynamic>,
    /// Config and dynamic entries together, and the tables published from them (changed
    /// incrementally: see `AclWriter`).
    acl: AclWriter,
    pub rules: Option<Arc<CompiledRules>>,
    pub rules_generation: u64,
    /// The rate-limit configuration in force (classes change with `ratelimit set`).
    pub ratelimit: Option<RateLimitConfig>,
}

/// What a reload produced, for the workers and the reply.
pub struct Reloaded {
    pub acl: Arc<AclTable>,
    pub acl_entries: usize,
    pub rules: Option<Arc<CompiledRules>>,
    pub rules_generation: u64,
}

impl LivePolicy {
    pub fn new(
        config_path: PathBuf,
        cfg: &Config,
        rules: Option<Arc<CompiledRules>>,
        tsc_hz: u64,
    ) -> Result<LivePolicy, String> {
        let base_acl = match &cfg.pipeline.acl {
            Some(a) => a.to_builder().map_err(|e| format!("pipeline.acl: {e}"))?,
            None => AclBuilder::default(),
        };
        let acl = AclWriter::new(base_acl.clone());
        Ok(LivePolicy {
            config_path,
            tsc_hz,
            base_acl,
            dynamic: BTreeMap::new(),
            acl,
            rules,
            rules_generation: 0,
            ratelimit: cfg.pipeline.ratelimit.clone(),
        })
    }

    /// The table the workers run (or are being given).
    #[cfg(test)]
    pub fn acl(&self) -> &Arc<AclTable> {
        self.acl.current()
    }

    /// Config and dynamic entries (a prefix on both lists counts twice).
    pub fn acl_entries(&self) -> usize {
        self.acl.len()
    }

    /// Drop a dynamic entry from the effective lists unless the config file has it too.
    fn unlist(&mut self, action: AclAction, p: &Prefix) {
        if !self.base_acl.contains(action, p) {
            self.acl.remove(action, p);
        }
    }

    /// Add (or refresh the TTL of) a dynamic entry; returns the table to publish.
    pub fn add(
        &mut self,
        action: AclAction,
        prefix: &str,
        ttl_s: Option<u64>,
        now: Instant,
    ) -> Result<Arc<AclTable>, String> {
        let p: Prefix = prefix
            .trim()
            .parse()
            .map_err(|e| format!("prefix \"{prefix}\": {e}"))?;
        let expires = expiry(ttl_s, now)?;
        self.dynamic.insert((action, p), Dynamic { expires });
        self.acl.add(action, p);
        Ok(self.acl.publish())
    }

    /// Add (or refresh) many dynamic entries at once and publish one table. All or nothing:
    /// a bad prefix is reported by its index and nothing is added. Returns the table and how
    /// many entries were not on the dynamic list before.
    pub fn add_many(
        &mut self,
        action: AclAction,
        prefixes: &[String],
        ttl_s: Option<u64>,
        now: Instant,
    ) -> Result<(Arc<AclTable>, usize), String> {
        let parsed = prefixes
            .iter()
            .enumerate()
            .map(|(i, text)| {
                text.trim()
                    .parse::<Prefix>()
                    .map_err(|e| format!("prefixes[{i}] \"{text}\": {e}; nothing was added"))
            })
            .collect::<Result<Vec<Prefix>, String>>()?;
        if parsed.is_empty() {
            return Err("prefixes: the list is empty".into());
        }
        let expires = expiry(ttl_s, now)?;
        let mut new = 0;
        for p in parsed {
            if self
                .dynamic
                .insert((action, p), Dynamic { expires })
                .is_none()
            {
                new += 1;
            }
            self.acl.add(action, p);
        }
        Ok((self.acl.publish(), new))
    }

    /// Remove a dynamic entry; config-file entries are changed in the file plus `rules reload`.
    pub fn del(&mut self, action: AclAction, prefix: &str) -> Result<Arc<AclTable>, String> {
        let p: Prefix = prefix
            .trim()
            .parse()
            .map_err(|e| format!("prefix \"{prefix}\": {e}"))?;
        if self.dynamic.remove(&(action, p)).is_none() {
            return Err(if self.base_acl.contains(action, &p) {
                format!("{p} comes from the config file; edit it there and run `rules reload`")
            } else {
                format!("{p} is not on the {} list", list_name(action))
            });
        }
        self.unlist(action, &p);
        Ok(self.acl.publish())
    }

    /// Entries of one list: (prefix, from config?, seconds left).
    pub fn list(&self, action: AclAction, now: Instant) -> Vec<(Prefix, bool, Option<f64>)> {
        let mut out: Vec<(Prefix, bool, Option<f64>)> = self
            .base_acl
            .list()
            .into_iter()
            .filter(|e| e.action == action)
            .map(|e| (e.prefix, true, None))
            .collect();
        for ((a, p), d) in &self.dynamic {
            if *a == action {
                let left = d
                    .expires
                    .map(|t| t.saturating_duration_since(now).as_secs_f64());
                out.push((*p, false, left));
            }
        }
        out
    }

    /// Drop lapsed entries; returns the table to publish when something lapsed.
    pub fn expire(&mut self, now: Instant) -> Option<Arc<AclTable>> {
        let lapsed: Vec<(AclAction, Prefix)> = self
            .dynamic
            .iter()
            .filter(|(_, d)| d.expires.is_some_and(|t| t <= now))
            .map(|(k, _)| *k)
            .collect();
        if lapsed.is_empty() {
            return None;
        }
        for (action, p) in &lapsed {
            self.dynamic.remove(&(*action, *p));
            self.unlist(*action, p);
        }
        Some(self.acl.publish())
    }

    /// Re-read the config file's ACL and signature rules and compile them. On any error the
    /// running policy is unchanged and the error names the file, line and field.
    pub fn reload(&mut self) -> Result<Reloaded, String> {
        let cfg = Config::load(&self.config_path).map_err(|e| e.to_string())?;
        let base_acl = match &cfg.pipeline.acl {
            Some(a) => a.to_builder().map_err(|e| format!("pipeline.acl: {e}"))?,
            None => AclBuilder::default(),
        };
        let rules = match &cfg.pipeline.signature {
            Some(s) => {
                Some(Arc::new(s.compile_for_clock(self.tsc_hz).map_err(|e| {
                    pipeline::PolicyError::Signature(e).to_string()
                })?))
            }
            None => None,
        };
        let mut lists = base_acl.clone();
        for (action, p) in self.dynamic.keys() {
            lists.add(*action, *p);
        }
        self.base_acl = base_acl;
        // Only the prefixes whose listing changed are repainted.
        self.acl.replace(lists);
        let acl = self.acl.publish();
        self.rules = rules.clone();
        self.rules_generation += 1;
        Ok(Reloaded {
            acl,
            acl_entries: self.acl.len(),
            rules,
            rules_generation: self.rules_generation,
        })
    }

    /// Validate a class change (once, here: the workers apply the result as is) and keep it
    /// for `ratelimit show`.
    pub fn set_class(
        &mut self,
        class: LimitClass,
        limit: Option<ClassLimit>,
    ) -> Result<ClassChange, String> {
        let Some(cur) = &mut self.ratelimit else {
            return Err(
                "rate limiting is not configured: add a [pipeline.ratelimit] section".into(),
            );
        };
        if class == LimitClass::Aggregate {
            return Err("`aggregate` budgets are set in the config file".into());
        }
        let change = ClassChange::new(class, limit, self.tsc_hz).map_err(|e| e.to_string())?;
        if let Some(slot) = cur.classes.slot(class) {
            *slot = limit;
        }
        Ok(change)
    }
}

fn expiry(ttl_s: Option<u64>, now: Instant) -> Result<Option<Instant>, String> {
    match ttl_s {
        Some(0) => Err("ttl must be at least 1 second (omit it for no expiry)".into()),
        Some(t) => now
            .checked_add(std::time::Duration::from_secs(t))
            .map(Some)
            .ok_or_else(|| format!("ttl {t} s is too large")),
        None => Ok(None),
    }
}

pub fn list_name(a: AclAction) -> &'static str {
    match a {
        AclAction::Allow => "allow",
        AclAction::Deny => "block",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::IpAddr;
    use std::time::Duration;

    fn cfg(extra: &str) -> Config {
        let text = format!(
            "[eal]\nlcores = \"0,1\"\nmemory = \"no-huge\"\nmemory_mb = 256\nfile_prefix = \"t\"\n\
             [dataplane]\nworkers = [1]\nburst = 32\nrx_desc = 64\ntx_desc = 64\n\
             mempool_mbufs = 4095\nmempool_cache = 32\n\
             [[port]]\nname = \"a\"\nvdev = \"net_null0\"\n[[port]]\nname = \"b\"\nvdev = \"net_null1\"\n\
             [[pair]]\noutside = \"a\"\ninside = \"b\"\n{extra}"
        );
        Config::parse(&text, "test.toml").expect("test config")
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn dynamic_entries_join_config_entries_and_expire() {
        let c = cfg("[pipeline.acl]\ndeny = [\"198.51.100.0/24\"]\n");
        let mut lp = LivePolicy::new("x.toml".into(), &c, None, 1_000_000_000).unwrap();
        let t0 = Instant::now();
        assert_eq!(lp.acl().lookup(ip("198.51.100.7")), Some(AclAction::Deny));
        assert_eq!(lp.acl().lookup(ip("203.0.113.9")), None);
        let t = lp
            .add(AclAction::Deny, "203.0.113.0/24", Some(60), t0)
            .unwrap();
        assert_eq!(t.lookup(ip("203.0.113.9")), Some(AclAction::Deny));
        let t = lp.add(AclAction::Allow, "203.0.113.9", None, t0).unwrap();
        assert_eq!(t.lookup(ip("203.0.113.9")), Some(AclAction::Allow));
        let block = lp.list(AclAction::Deny, t0);
        assert_eq!(block.len(), 2);
        assert!(block
            .iter()
            .any(|(p, cfg, left)| p.to_string() == "198.51.100.0/24" && *cfg && left.is_none()));
        assert!(block
            .iter()
            .any(|(_, cfg, left)| !*cfg && *left == Some(60.0)));
        assert!(lp.expire(t0 + Duration::from_secs(59)).is_none());
        let t = lp.expire(t0 + Duration::from_secs(61)).expect("lapsed");
        assert_eq!(t.lookup(ip("203.0.113.8")), None);
        assert_eq!(t.lookup(ip("203.0.113.9")), Some(AclAction::Allow));
        assert_eq!(lp.list(AclAction::Deny, t0).len(), 1);
    }

    #[test]
    fn bulk_add_is_all_or_nothing_and_config_entries_survive_dynamic_deletes() {
        let c = cfg("[pipeline.acl]\ndeny = [\"198.51.100.0/24\"]\n");
        let mut lp = LivePolicy::new("x.toml".into(), &c, None, 1_000_000_000).unwrap();
        let t0 = Instant::now();
        let bad: Vec<String> = vec!["192.0.2.1".into(), "192.0.2.300".into()];
        let e = lp.add_many(AclAction::Deny, &bad, None, t0).err().unwrap();
        assert!(e.starts_with("prefixes[1] \"192.0.2.300\""), "{e}");
        assert!(e.ends_with("nothing was added"), "{e}");
        assert_eq!(lp.acl().lookup(ip("192.0.2.1")), None);
        assert!(lp.add_many(AclAction::Deny, &[], None, t0).is_err());
        let list: Vec<String> = ["192.0.2.1", " 2001:db8::/48 ", "198.51.100.0/24"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let (t, new) = lp.add_many(AclAction::Deny, &list, Some(60), t0).unwrap();
        assert_eq!(new, 3, "the config entry is a new dynamic one too");
        assert_eq!(t.lookup(ip("192.0.2.1")), Some(AclAction::Deny));
        assert_eq!(t.lookup(ip("2001:db8::5")), Some(AclAction::Deny));
        assert_eq!(lp.acl_entries(), 3);
        // Deleting (or expiring) the dynamic copy leaves the config entry in force.
        let t = lp.del(AclAction::Deny, "198.51.100.0/24").unwrap();
        assert_eq!(t.lookup(ip("198.51.100.7")), Some(AclAction::Deny));
        let t = lp.expire(t0 + Duration::from_secs(61)).expect("lapsed");
        assert_eq!(t.lookup(ip("192.0.2.1")), None);
        assert_eq!(t.lookup(ip("198.51.100.7")), Some(AclAction::Deny));
        assert_eq!(lp.acl_entries(), 1);
    }

    #[test]
    fn bad_changes_leave_the_policy_alone() {
        let c = cfg("[pipeline.acl]\ndeny = [\"198.51.100.0/24\"]\n");
        let mut lp = LivePolicy::new("x.toml".into(), &c, None, 1_000_000_000).unwrap();
        let before = Arc::clone(lp.acl());
        let e = lp.add(AclAction::Deny, "300.1.2.3/8", None, Instant::now());
        assert!(e.err().unwrap().contains("300.1.2.3/8"));
        let e = lp.del(AclAction::Deny, "198.51.100.0/24").err().unwrap();
        assert!(e.contains("config file"), "{e}");
        let e = lp.del(AclAction::Deny, "192.0.2.0/24").err().unwrap();
        assert!(e.contains("not on the block list"), "{e}");
        assert!(lp
            .add(AclAction::Deny, "192.0.2.0/24", Some(0), Instant::now())
            .is_err());
        assert!(Arc::ptr_eq(&before, lp.acl()));
        let e = lp.set_class(
            LimitClass::Icmp,
            Some(ClassLimit {
                rate: 10,
                burst: 10,
                mode: Default::default(),
            }),
        );
        assert!(e.unwrap_err().contains("not configured"));
        // A reload of a missing file reports it and changes nothing.
        let e = lp.reload().err().unwrap();
        assert!(e.contains("x.toml"), "{e}");
        assert_eq!(lp.rules_generation, 0);
        assert!(Arc::ptr_eq(&before, lp.acl()));
    }
}
