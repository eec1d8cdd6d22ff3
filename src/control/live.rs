//! The policy the operator changes while scrubd runs: dynamic block/allow entries, the rule set
//! and ACL re-read from the config file, per-class rate limits.
//!
//! Everything is compiled here, on a control thread; workers only ever receive finished
//! objects (see `dataplane::channel`). A change that fails to compile returns its errors and
//! leaves the running policy untouched.

use crate::config::Config;
use pipeline::prefix::Prefix;
use pipeline::stage::acl::{AclAction, AclBuilder, AclTable};
use pipeline::stage::ratelimit::{ClassLimit, LimitClass, RateLimitConfig, RateLimiter};
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
    /// The table the workers run now, and how many entries it holds.
    pub acl: Arc<AclTable>,
    pub rules: Option<Arc<CompiledRules>>,
    pub rules_generation: u64,
    /// The rate-limit configuration in force (classes change with `ratelimit set`).
    pub ratelimit: Option<RateLimitConfig>,
}

/// What a reload produced, for the workers and the reply.
pub struct Reloaded {
    pub acl: Arc<AclTable>,
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
        let acl = Arc::new(base_acl.clone().build());
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

    fn rebuild_acl(&mut self) -> Arc<AclTable> {
        let mut b = self.base_acl.clone();
        for (action, prefix) in self.dynamic.keys() {
            b.add(*action, *prefix);
        }
        self.acl = Arc::new(b.build());
        Arc::clone(&self.acl)
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
        if ttl_s == Some(0) {
            return Err("ttl must be at least 1 second (omit it for no expiry)".into());
        }
        let expires = match ttl_s {
            Some(t) => Some(
                now.checked_add(std::time::Duration::from_secs(t))
                    .ok_or_else(|| format!("ttl {t} s is too large"))?,
            ),
            None => None,
        };
        self.dynamic.insert((action, p), Dynamic { expires });
        Ok(self.rebuild_acl())
    }

    /// Remove a dynamic entry; config-file entries are changed in the file plus `rules reload`.
    pub fn del(&mut self, action: AclAction, prefix: &str) -> Result<Arc<AclTable>, String> {
        let p: Prefix = prefix
            .trim()
            .parse()
            .map_err(|e| format!("prefix \"{prefix}\": {e}"))?;
        if self.dynamic.remove(&(action, p)).is_none() {
            let in_config = self
                .base_acl
                .list()
                .iter()
                .any(|e| e.action == action && e.prefix == p);
            return Err(if in_config {
                format!("{p} comes from the config file; edit it there and run `rules reload`")
            } else {
                format!("{p} is not on the {} list", list_name(action))
            });
        }
        Ok(self.rebuild_acl())
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
        let before = self.dynamic.len();
        self.dynamic
            .retain(|_, d| d.expires.is_none_or(|t| t > now));
        (self.dynamic.len() != before).then(|| self.rebuild_acl())
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
                Some(Arc::new(s.compile().map_err(|e| {
                    pipeline::PolicyError::Signature(e).to_string()
                })?))
            }
            None => None,
        };
        self.base_acl = base_acl;
        let acl = self.rebuild_acl();
        self.rules = rules.clone();
        self.rules_generation += 1;
        Ok(Reloaded {
            acl,
            rules,
            rules_generation: self.rules_generation,
        })
    }

    /// Validate a class change against the whole rate-limit configuration and keep it.
    pub fn set_class(
        &mut self,
        class: LimitClass,
        limit: Option<ClassLimit>,
    ) -> Result<(), String> {
        let Some(cur) = &self.ratelimit else {
            return Err(
                "rate limiting is not configured: add a [pipeline.ratelimit] section".into(),
            );
        };
        let mut next = cur.clone();
        let Some(slot) = next.classes.slot(class) else {
            return Err("`aggregate` budgets are set in the config file".into());
        };
        *slot = limit;
        RateLimiter::new(&next, self.tsc_hz).map_err(|e| e.to_string())?;
        self.ratelimit = Some(next);
        Ok(())
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
        assert_eq!(lp.acl.lookup(ip("198.51.100.7")), Some(AclAction::Deny));
        assert_eq!(lp.acl.lookup(ip("203.0.113.9")), None);
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
    fn bad_changes_leave_the_policy_alone() {
        let c = cfg("[pipeline.acl]\ndeny = [\"198.51.100.0/24\"]\n");
        let mut lp = LivePolicy::new("x.toml".into(), &c, None, 1_000_000_000).unwrap();
        let before = Arc::clone(&lp.acl);
        let e = lp.add(AclAction::Deny, "300.1.2.3/8", None, Instant::now());
        assert!(e.err().unwrap().contains("300.1.2.3/8"));
        let e = lp.del(AclAction::Deny, "198.51.100.0/24").err().unwrap();
        assert!(e.contains("config file"), "{e}");
        let e = lp.del(AclAction::Deny, "192.0.2.0/24").err().unwrap();
        assert!(e.contains("not on the block list"), "{e}");
        assert!(lp
            .add(AclAction::Deny, "192.0.2.0/24", Some(0), Instant::now())
            .is_err());
        assert!(Arc::ptr_eq(&before, &lp.acl));
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
        assert!(Arc::ptr_eq(&before, &lp.acl));
    }
}
