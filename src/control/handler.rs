//! The commands behind the control socket. Each returns a reply payload from
//! `ctl::protocol` or an error with a code the client can act on.

use super::flowspec;
use super::live::list_name;
use super::{lock, Shared};
use ctl::protocol::{
    AggregateRow, Command, Done, ErrorBody, ErrorCode, HealthReport, ListEntry, ListReport,
    MetricsReport, PortInfo, PortsReport, RateClassRow, RatelimitReport, ReloadReport,
    StatusReport, SyncookieReport,
};
use dataplane::channel::Update;
use pipeline::stage::acl::{AclAction, AclTable};
use pipeline::stage::ratelimit::{ClassLimit, LimitClass, LimitMode};
use pipeline::stage::signature::SignatureStage;
use pipeline::stage::syncookie::Mode;
use pipeline::stage_counters::StageKind;
use serde::Serialize;
use serde_json::Value;
use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

type Reply = Result<Value, ErrorBody>;

fn err(code: ErrorCode, message: impl Into<String>) -> ErrorBody {
    ErrorBody {
        code,
        message: message.into(),
    }
}

fn ok<T: Serialize>(v: T) -> Reply {
    serde_json::to_value(v).map_err(|e| err(ErrorCode::Internal, e.to_string()))
}

fn done(message: String) -> Reply {
    ok(Done { message })
}

/// The socket server calls this on its client threads.
impl ctl::server::Handler for Shared {
    fn handle(&self, cmd: Command) -> Result<Value, ErrorBody> {
        Shared::handle(self, cmd)
    }
}

impl Shared {
    pub fn handle(&self, cmd: Command) -> Reply {
        let now = Instant::now();
        match cmd {
            Command::Status => ok(self.status()),
            Command::Stats => ok(lock(&self.agg).stats_report(now)),
            Command::Latency { reset, hgrm } => {
                ok(lock(&self.agg).latency_report(now, reset, hgrm))
            }
            Command::Metrics => ok(MetricsReport {
                text: self.metrics(now),
            }),
            Command::RulesReload => self.reload(),
            Command::BlockAdd { prefix, ttl_s } => self.list_add(AclAction::Deny, &prefix, ttl_s),
            Command::BlockAddMany { prefixes, ttl_s } => {
                self.list_add_many(AclAction::Deny, &prefixes, ttl_s)
            }
            Command::BlockDel { prefix } => self.list_del(AclAction::Deny, &prefix),
            Command::BlockList => ok(self.list(AclAction::Deny, now)),
            Command::AllowAdd { prefix, ttl_s } => self.list_add(AclAction::Allow, &prefix, ttl_s),
            Command::AllowAddMany { prefixes, ttl_s } => {
                self.list_add_many(AclAction::Allow, &prefixes, ttl_s)
            }
            Command::AllowDel { prefix } => self.list_del(AclAction::Allow, &prefix),
            Command::AllowList => ok(self.list(AclAction::Allow, now)),
            Command::RatelimitShow => ok(self.ratelimit_show()),
            Command::RatelimitSet {
                class,
                rate,
                burst,
                mode,
                off,
            } => self.ratelimit_set(&class, rate, burst, mode.as_deref(), off),
            Command::SyncookieStatus => ok(self.syncookie_status()),
            Command::SyncookieRotate => self.syncookie_rotate(),
            Command::Ports => ok(self.ports_report()),
            Command::Offenders { limit, reason } => lock(&self.agg)
                .offenders_report(limit.unwrap_or(10), reason.as_deref())
                .map_err(|e| err(ErrorCode::Invalid, e.to_string()))
                .and_then(ok),
            Command::FlowspecAnnounce { peer, route } => {
                let mut live = lock(&self.flowspec);
                let change = live
                    .announce(&peer, &route)
                    .map_err(|e| err(ErrorCode::Invalid, e))?;
                let n = self.publish_flowspec(change)?;
                done(format!(
                    "{} → active ({} rule(s)); applied on {n}/{} workers",
                    route.text(),
                    live.active(),
                    self.workers()
                ))
            }
            Command::FlowspecWithdraw { peer, route } => {
                let mut live = lock(&self.flowspec);
                let change = live
                    .withdraw(&peer, &route)
                    .map_err(|e| err(ErrorCode::Internal, e))?;
                let was = matches!(change, flowspec::Change::Publish(_));
                let n = self.publish_flowspec(change)?;
                done(if was {
                    format!(
                        "{} withdrawn ({} rule(s) left); applied on {n}/{} workers",
                        route.text(),
                        live.active(),
                        self.workers()
                    )
                } else {
                    format!("{} was not active", route.text())
                })
            }
            Command::FlowspecFlush { peer } => {
                let mut live = lock(&self.flowspec);
                let (change, removed) =
                    live.flush(&peer).map_err(|e| err(ErrorCode::Internal, e))?;
                let n = self.publish_flowspec(change)?;
                done(format!(
                    "{removed} route(s) of {peer} removed; applied on {n}/{} workers",
                    self.workers()
                ))
            }
            Command::FlowspecList => ok(lock(&self.flowspec).report(now)),
            Command::Health => ok(self.health(now)),
            Command::Shutdown => {
                self.shutdown.store(true, Ordering::Release);
                done(
                    "shutting down: workers stop, the final report follows on scrubd's stdout"
                        .into(),
                )
            }
        }
    }

    fn status(&self) -> StatusReport {
        let live = lock(&self.live);
        StatusReport {
            version: env!("CARGO_PKG_VERSION").into(),
            pid: std::process::id(),
            config: self.config_path.display().to_string(),
            uptime_s: self.started.elapsed().as_secs_f64(),
            workers: self.workers(),
            ports: self.ports.iter().map(|p| p.name.clone()).collect(),
            stats_interval_ms: self.stats_interval_ms,
            stages: lock(&self.stages).clone(),
            rules_generation: live.rules_generation,
            rules: live.rules.as_ref().map_or(0, |r| r.len()),
            acl_entries: live.acl_entries(),
            stopping: self.stopping.load(Ordering::Acquire),
        }
    }

    fn reload(&self) -> Reply {
        let t = Instant::now();
        // The live policy stays locked while the workers switch, so a concurrent block add
        // cannot publish a table built from the old base in between.
        let mut live = lock(&self.live);
        let r = live.reload().map_err(|e| {
            log::warn!("rules reload refused, running rules unchanged: {e}");
            err(
                ErrorCode::Invalid,
                format!("reload refused, running rules unchanged: {e}"),
            )
        })?;
        let compile_ms = t.elapsed().as_secs_f64() * 1e3;
        let info: Vec<(u32, String)> = r
            .rules
            .as_ref()
            .map(|c| {
                c.rules_info()
                    .iter()
                    .map(|i| (i.sid, i.msg.clone()))
                    .collect()
            })
            .unwrap_or_default();
        lock(&self.agg).set_rules(r.rules_generation, info);
        // Each worker gets its own stage (hit counters and scratch are per core), built here;
        // the ACL and the rules switch in one step between two bursts.
        let applied = self
            .publish(|_| Update::Rules {
                acl: Some(Arc::clone(&r.acl)),
                generation: r.rules_generation,
                stage: r.rules.as_ref().map(|c| SignatureStage::new(Arc::clone(c))),
            })
            .map_err(|e| err(ErrorCode::Unavailable, e))?;
        self.set_stage("signature", r.rules.is_some());
        self.set_stage("acl", true);
        log::info!(
            "rules reloaded: generation {}, {} rule(s), {} ACL entries, compiled in {compile_ms:.1} ms, applied on {applied}/{} workers",
            r.rules_generation,
            r.rules.as_ref().map_or(0, |c| c.len()),
            r.acl_entries,
            self.workers()
        );
        ok(ReloadReport {
            rules_generation: r.rules_generation,
            rules: r.rules.as_ref().map_or(0, |c| c.len()),
            acl_entries: r.acl_entries,
            workers_applied: applied,
            compile_ms,
            rules_skipped: r
                .rules
                .as_ref()
                .map_or(0, |c| c.load_report().failures.len()),
            skipped_by_keyword: r.rules.as_ref().map_or_else(String::new, |c| {
                c.load_report()
                    .by_keyword()
                    .iter()
                    .map(|(k, n)| format!("{k}={n}"))
                    .collect::<Vec<_>>()
                    .join(" ")
            }),
        })
    }

    /// Publishes a changed FlowSpec table; returns on how many workers it applied.
    fn publish_flowspec(&self, change: flowspec::Change) -> Result<usize, ErrorBody> {
        let flowspec::Change::Publish(table) = change else {
            return Ok(self.workers());
        };
        let n = self
            .publish(|_| Update::Flowspec(Some(Arc::clone(&table))))
            .map_err(|e| err(ErrorCode::Unavailable, e))?;
        self.set_stage("flowspec", true);
        Ok(n)
    }

    /// Healthy: not stopping, every worker published stats within the stall limit (or, in
    /// the first second, none is late yet), every port's link up.
    pub fn health(&self, now: Instant) -> HealthReport {
        let limit = super::stall_after_ms(self.stats_interval_ms);
        let report = lock(&self.agg).stats_report(now);
        let uptime_ms = now.saturating_duration_since(self.started).as_secs_f64() * 1e3;
        let stalled_workers: Vec<u16> = report
            .workers
            .iter()
            .filter(|w| {
                if w.snapshots == 0 {
                    uptime_ms > limit as f64
                } else {
                    w.last_snapshot_age_ms > limit as f64
                }
            })
            .map(|w| w.worker)
            .collect();
        let ports_down: Vec<String> = self
            .ports
            .iter()
            .filter(|p| !p.handle.link().up)
            .map(|p| p.name.clone())
            .collect();
        let mut reasons = Vec::new();
        if self.stopping.load(Ordering::Acquire) || self.shutdown.load(Ordering::Acquire) {
            reasons.push("stopping".to_string());
        }
        if !stalled_workers.is_empty() {
            reasons.push(format!(
                "worker(s) {stalled_workers:?} published no stats for over {limit} ms"
            ));
        }
        if !ports_down.is_empty() {
            reasons.push(format!("link down: {}", ports_down.join(", ")));
        }
        HealthReport {
            healthy: reasons.is_empty(),
            reasons,
            workers: self.workers(),
            stalled_workers,
            ports_down,
            stall_after_ms: limit,
        }
    }

    fn set_stage(&self, name: &str, present: bool) {
        let mut s = lock(&self.stages);
        let has = s.iter().any(|x| x == name);
        if present && !has {
            s.push(name.to_string());
        } else if !present && has {
            s.retain(|x| x != name);
        }
    }

    /// Every worker switches to `table` (the ACL stage exists from then on); returns how many
    /// did within the timeout.
    fn publish_acl(&self, table: &Arc<AclTable>) -> Result<usize, ErrorBody> {
        let n = self
            .publish(|_| Update::Acl(Some(Arc::clone(table))))
            .map_err(|e| err(ErrorCode::Unavailable, e))?;
        self.set_stage("acl", true);
        Ok(n)
    }

    fn list_add(&self, action: AclAction, prefix: &str, ttl_s: Option<u64>) -> Reply {
        let mut live = lock(&self.live);
        let table = live
            .add(action, prefix, ttl_s, Instant::now())
            .map_err(|e| err(ErrorCode::Invalid, e))?;
        let n = self.publish_acl(&table)?;
        let ttl = ttl_s.map(|t| format!(" for {t} s")).unwrap_or_default();
        done(format!(
            "{} {}{ttl}: applied on {n}/{} workers",
            prefix.trim(),
            done_verb(action),
            self.workers()
        ))
    }

    /// Many prefixes in one request: validated together, published as one table.
    fn list_add_many(&self, action: AclAction, prefixes: &[String], ttl_s: Option<u64>) -> Reply {
        let mut live = lock(&self.live);
        let (table, new) = live
            .add_many(action, prefixes, ttl_s, Instant::now())
            .map_err(|e| err(ErrorCode::Invalid, e))?;
        let n = self.publish_acl(&table)?;
        let ttl = ttl_s.map(|t| format!(" for {t} s")).unwrap_or_default();
        done(format!(
            "{} prefixes {}{ttl} ({new} new): applied on {n}/{} workers",
            prefixes.len(),
            done_verb(action),
            self.workers()
        ))
    }

    fn list_del(&self, action: AclAction, prefix: &str) -> Reply {
        let mut live = lock(&self.live);
        let table = live
            .del(action, prefix)
            .map_err(|e| err(ErrorCode::Invalid, e))?;
        let n = self.publish_acl(&table)?;
        done(format!(
            "{} removed from the {} list: applied on {n}/{} workers",
            prefix.trim(),
            list_name(action),
            self.workers()
        ))
    }

    fn list(&self, action: AclAction, now: Instant) -> ListReport {
        let entries = lock(&self.live)
            .list(action, now)
            .into_iter()
            .map(|(p, from_config, left)| ListEntry {
                prefix: p.to_string(),
                source: if from_config { "config" } else { "dynamic" }.into(),
                expires_in_s: left,
            })
            .collect();
        ListReport {
            list: list_name(action).into(),
            entries,
        }
    }

    fn ratelimit_show(&self) -> RatelimitReport {
        let stages = lock(&self.agg).stage_totals();
        let live = lock(&self.live);
        let Some(cfg) = &live.ratelimit else {
            return RatelimitReport::default();
        };
        let c = &cfg.classes;
        let classes = LimitClass::ALL
            .iter()
            .filter_map(|&class| {
                let limit = c.get(class)?;
                let get = |k: &str| {
                    stages
                        .get(&format!("ratelimit.{}.{k}", class.name()))
                        .copied()
                        .unwrap_or(0)
                };
                Some(RateClassRow {
                    class: class.name().into(),
                    enabled: limit.is_some(),
                    rate: limit.map_or(0, |l| l.rate),
                    burst: limit.map_or(0, |l| l.burst),
                    mode: limit.map_or("-".into(), |l| mode_name(l.mode).into()),
                    passed: get("passed"),
                    dropped: get("dropped"),
                })
            })
            .collect();
        let aggregate = self
            .aggregate
            .as_ref()
            .map(|a| {
                a.entries()
                    .iter()
                    .enumerate()
                    .map(|(i, (p, c))| AggregateRow {
                        dst: p.to_string(),
                        rate: c.rate,
                        burst: c.burst,
                        available: a.available(i),
                    })
                    .collect()
            })
            .unwrap_or_default();
        RatelimitReport {
            enabled: true,
            table_capacity: cfg.table_capacity,
            classes,
            aggregate,
        }
    }

    fn ratelimit_set(
        &self,
        class: &str,
        rate: Option<u64>,
        burst: Option<u64>,
        mode: Option<&str>,
        off: bool,
    ) -> Reply {
        let cls = LimitClass::from_name(class)
            .filter(|c| *c != LimitClass::Aggregate)
            .ok_or_else(|| {
                let names: Vec<&str> = LimitClass::ALL
                    .iter()
                    .filter(|c| **c != LimitClass::Aggregate)
                    .map(|c| c.name())
                    .collect();
                err(
                    ErrorCode::Invalid,
                    format!("unknown class \"{class}\"; classes: {}", names.join(", ")),
                )
            })?;
        let limit = match (off, rate, burst) {
            (true, None, None) => None,
            (true, _, _) => {
                return Err(err(
                    ErrorCode::Invalid,
                    "give either --off or --rate and --burst",
                ))
            }
            (false, Some(rate), Some(burst)) => {
                let mode = match mode {
                    None | Some("token_bucket") => LimitMode::TokenBucket,
                    Some("fixed_window") => LimitMode::FixedWindow,
                    Some(m) => {
                        return Err(err(
                            ErrorCode::Invalid,
                            format!("mode \"{m}\": use token_bucket or fixed_window"),
                        ))
                    }
                };
                Some(ClassLimit { rate, burst, mode })
            }
            _ => {
                return Err(err(
                    ErrorCode::Invalid,
                    "both rate and burst are needed (or off)",
                ))
            }
        };
        let mut live = lock(&self.live);
        let change = live
            .set_class(cls, limit)
            .map_err(|e| err(ErrorCode::Invalid, e))?;
        let n = self
            .publish(|_| Update::RateClass {
                change,
                applied: false,
            })
            .map_err(|e| err(ErrorCode::Unavailable, e))?;
        let what = match limit {
            Some(l) => format!("{} pps, burst {}, {}", l.rate, l.burst, mode_name(l.mode)),
            None => "off".into(),
        };
        done(format!(
            "{}: {what}; applied on {n}/{} workers",
            cls.name(),
            self.workers()
        ))
    }

    fn syncookie_status(&self) -> SyncookieReport {
        let Some(cfg) = &self.syncookie else {
            return SyncookieReport::default();
        };
        let (counters, workers) = {
            let agg = lock(&self.agg);
            let totals = agg.stage_totals();
            let counters: BTreeMap<String, u64> = pipeline::stage_counters::schema()
                .get(StageKind::SynCookie.range())
                .unwrap_or_default()
                .iter()
                .filter_map(|c| totals.get(&c.name).map(|v| (c.name.clone(), *v)))
                .collect();
            (counters, agg.syncookie_workers())
        };
        SyncookieReport {
            enabled: true,
            mode: match cfg.mode {
                Mode::Auth => "auth",
                Mode::Classic => "classic",
                Mode::Proxy => "proxy",
            }
            .into(),
            protected: cfg.protected.iter().map(|p| p.to_string()).collect(),
            rotate_every_s: cfg.rotate_every_s,
            counter_period_s: cfg.counter_period_s,
            workers,
            counters,
        }
    }

    fn syncookie_rotate(&self) -> Reply {
        if self.syncookie.is_none() {
            return Err(err(
                ErrorCode::Unavailable,
                "SYN cookies are not configured: add a [pipeline.syncookie] section",
            ));
        }
        if let Some(key) = self
            .syncookie
            .as_ref()
            .and_then(|c| c.shared_key_file.as_ref())
        {
            // One box rotating alone would leave the fleet's schedule: its cookies would stop
            // validating on the others (and theirs on it) until the next scheduled rotation.
            log::warn!(
                "`syncookie rotate` refused: secrets come from the shared key in {} and rotate \
                 with the wall clock in lockstep with the fleet",
                key.display()
            );
            return Err(err(
                ErrorCode::Unavailable,
                format!(
                    "refused: SYN-cookie secrets come from the fleet's shared key ({}) and \
                     rotate on the wall clock in lockstep with the other boxes (rotate_every_s); \
                     a rotation on command would break that. Rotate the key file on every box \
                     and restart them instead",
                    key.display()
                ),
            ));
        }
        let n = self
            .publish(|_| Update::RotateCookie { applied: false })
            .map_err(|e| err(ErrorCode::Unavailable, e))?;
        log::info!(
            "SYN-cookie secret rotated on command ({n}/{} workers)",
            self.workers()
        );
        done(format!(
            "SYN-cookie secret rotated on {n}/{} workers; cookies issued before stay valid until the next rotation",
            self.workers()
        ))
    }

    fn ports_report(&self) -> PortsReport {
        let ports = self
            .ports
            .iter()
            .map(|p| {
                let link = p.handle.link();
                let s = p.handle.stats();
                let stats = BTreeMap::from([
                    ("ipackets".to_string(), s.ipackets),
                    ("opackets".to_string(), s.opackets),
                    ("ibytes".to_string(), s.ibytes),
                    ("obytes".to_string(), s.obytes),
                    ("imissed".to_string(), s.imissed),
                    ("ierrors".to_string(), s.ierrors),
                    ("oerrors".to_string(), s.oerrors),
                    ("rx_nombuf".to_string(), s.rx_nombuf),
                ]);
                PortInfo {
                    name: p.name.clone(),
                    id: p.handle.id(),
                    device: p.device.clone(),
                    driver: p.driver.clone(),
                    link_up: link.up,
                    speed_mbps: link.speed_mbps,
                    full_duplex: link.full_duplex,
                    rx_queues: p.rx_queues,
                    tx_queues: p.tx_queues,
                    stats,
                    xstats: p.handle.xstats().into_iter().collect(),
                }
            })
            .collect();
        PortsReport { ports }
    }
}

fn mode_name(m: LimitMode) -> &'static str {
    match m {
        LimitMode::TokenBucket => "token_bucket",
        LimitMode::FixedWindow => "fixed_window",
    }
}

/// What `block`/`allow add` did, for its reply.
fn done_verb(action: AclAction) -> &'static str {
    match action {
        AclAction::Deny => "blocked",
        AclAction::Allow => "allowed",
    }
}
