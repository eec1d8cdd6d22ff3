//! The composed pipeline a worker runs per packet: parse once, then the stages in a fixed order.
//!
//! Order: parse → ACL → FlowSpec → SYN-cookie → rate limit → signatures. The ACL comes first so an
//! operator's allow list bypasses everything and a deny list costs one lookup; SYN
//! authentication comes before rate limiting so spoofed SYN floods are answered statelessly
//! instead of filling rate-limit tables; signatures, the most expensive stage, see only what
//! survived the cheap ones.
//!
//! # Direction
//! scrubd protects the inside from the outside. Every packet carries the side it entered from
//! ([`Direction`] in [`Meta`]):
//!
//! | stage      | inbound (from the outside port)          | outbound (from the inside port)                 |
//! |------------|------------------------------------------|-------------------------------------------------|
//! | parse      | malformed frames dropped                 | the same                                        |
//! | ACL        | allow/deny by source and destination     | skipped, unless `[pipeline.outbound] acl = true` |
//! | SYN cookie | sources to protected prefixes authenticate | never authenticates; records connections protected hosts open, so their answers pass |
//! | rate limit | per-source and aggregate limits          | skipped, unless `[pipeline.outbound] ratelimit = true` |
//! | signature  | rules run                                | skipped, unless `[pipeline.outbound] signature = true` |
//!
//! Applied outbound, a stage uses the same tables as inbound on the packet's own addresses: a
//! deny-list source entry then matches inside hosts, a destination entry outside ones.

use crate::offenders::{OffenderEntry, Offenders, MAX_CAPACITY as MAX_OFFENDERS_CAPACITY};
use crate::stage::acl::{AclConfig, AclError, AclStage, AclTable};
use crate::stage::flowspec::FlowspecStage;
use crate::stage::ratelimit::{RateLimitConfig, RateLimitError, RateLimitStage, RateLimiter};
use crate::stage::signature::{CompiledRules, SignatureConfig, SignatureError, SignatureStage};
use crate::stage::syncookie::{self, SynCookieConfig, SynCookieStage};
use crate::stage::StageResult;
use crate::stage_counters::{self, StageKind};
use crate::verdict::{DropReason, Verdict};
use crate::wire::parse::parse;
use crate::{Direction, Headers, Meta, Net};
use serde::Deserialize;
use std::borrow::Cow;
use std::sync::Arc;

/// What to do with frames that are neither IP nor ARP (LLDP, STP, MPLS, ...). ARP is always
/// forwarded: a bump in the wire that eats ARP cuts the link.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NonIpAction {
    #[default]
    Forward,
    Drop,
}

/// The `[pipeline]` section of the daemon's config. Every stage is optional: a stage that is
/// not configured is not run.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PipelineConfig {
    #[serde(default)]
    pub non_ip: NonIpAction,
    /// Counters per side of each worker's offender sketch ([`Offenders`]); 0 turns it off.
    /// The default keeps the top of any realistic attack with a few tens of KiB per worker.
    #[serde(default = "default_offenders_capacity")]
    pub offenders_capacity: usize,
    /// Record one dropped packet in this many in the offender sketch, chosen at random
    /// (each drop independently with probability 1/N), and scale exported counts by N.
    /// 1 (the default) records every drop exactly. See [`Pipeline::export_offenders`] for the
    /// error this adds.
    #[serde(default = "default_offenders_sample")]
    pub offenders_sample: u32,
    pub acl: Option<AclConfig>,
    pub syncookie: Option<SynCookieConfig>,
    pub ratelimit: Option<RateLimitConfig>,
    pub signature: Option<SignatureConfig>,
    /// Which stages also judge traffic entering from the inside port (default: none).
    #[serde(default)]
    pub outbound: OutboundStages,
}

/// `[pipeline.outbound]`: the stages that also run on traffic from the inside port. By default
/// the inside is trusted: its traffic is parsed (malformed frames are still dropped) and the
/// SYN-cookie stage records the connections it opens, nothing more. An operator who wants to
/// stop an infected inside host from attacking out turns the relevant stage on here.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OutboundStages {
    pub acl: bool,
    pub ratelimit: bool,
    pub signature: bool,
}

/// Default of [`PipelineConfig::offenders_capacity`].
pub const DEFAULT_OFFENDERS_CAPACITY: usize = 256;

fn default_offenders_capacity() -> usize {
    DEFAULT_OFFENDERS_CAPACITY
}

fn default_offenders_sample() -> u32 {
    1
}

/// Largest [`PipelineConfig::offenders_sample`]: past this the sketch sees too few packets of
/// any but the largest floods to name them.
pub const MAX_OFFENDERS_SAMPLE: u32 = 1 << 16;

/// The same as an empty `[pipeline]` section, so code that builds a config by hand gets the
/// sketch the daemon would.
impl Default for PipelineConfig {
    fn default() -> Self {
        PipelineConfig {
            non_ip: NonIpAction::default(),
            offenders_capacity: DEFAULT_OFFENDERS_CAPACITY,
            offenders_sample: 1,
            acl: None,
            syncookie: None,
            ratelimit: None,
            signature: None,
            outbound: OutboundStages::default(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    #[error("pipeline.acl: {0}")]
    Acl(#[from] AclError),
    #[error("pipeline.{0}")]
    SynCookie(#[from] syncookie::ConfigError),
    #[error("pipeline.{0}")]
    RateLimit(#[from] RateLimitError),
    /// Rule-file errors already read `file:line:col: ...` (the README's promise), so only the
    /// config-key errors of this stage take the `pipeline.` prefix.
    #[error("{}{0}", if matches!(.0, SignatureError::Rules(_)) { "" } else { "pipeline." })]
    Signature(#[from] SignatureError),
    #[error("pipeline.offenders_capacity: {0} is above the maximum of {max}", max = MAX_OFFENDERS_CAPACITY)]
    OffendersCapacity(usize),
    #[error("pipeline.offenders_sample: {0} is outside 1..={max}", max = MAX_OFFENDERS_SAMPLE)]
    OffendersSample(u32),
}

/// Number of stage counters ([`crate::stage_counters::schema`]).
pub const STAGE_COUNTERS: usize = stage_counters::COUNT;

/// Everything compiled from a [`PipelineConfig`] once, off the fast path, and shared by the
/// workers: the ACL table and rule set behind `Arc`s, the rate limiter's shared aggregate
/// budget. Each worker then gets its own [`Pipeline`] from [`Policy::worker`].
pub struct Policy {
    non_ip: NonIpAction,
    outbound: OutboundStages,
    /// The SYN-cookie tables every worker shares.
    syncookie_shared: Option<syncookie::Shared>,
    acl: Option<Arc<AclTable>>,
    syncookie: Option<SynCookieConfig>,
    secret: [u8; 16],
    /// With a fleet's shared key: the TSC-to-wall-clock mapping that puts every worker's
    /// cookie secrets in lockstep with the other boxes.
    wall_clock: Option<syncookie::ClockSync>,
    ratelimit: Option<RateLimiter>,
    rules: Option<Arc<CompiledRules>>,
    tsc_hz: u64,
    offenders_capacity: usize,
    offenders_sample: u32,
}

impl Policy {
    /// Compile the policy. `secret` keys the SYN cookies and must be the same for every worker
    /// (a client's RST may reach another core than its SYN did); `tsc_hz` converts the TSC in
    /// [`Meta`] into time.
    pub fn build(
        cfg: &PipelineConfig,
        tsc_hz: u64,
        secret: [u8; 16],
    ) -> Result<Policy, PolicyError> {
        Self::build_with_clock(cfg, tsc_hz, secret, None)
    }

    /// [`Policy::build`] for a fleet: with `wall_clock`, `secret` is the master derived from
    /// the shared key and the SYN-cookie secrets and time counter follow the wall clock
    /// ([`syncookie::WallClock`]), so every box with the same key issues the same cookies.
    pub fn build_with_clock(
        cfg: &PipelineConfig,
        tsc_hz: u64,
        secret: [u8; 16],
        wall_clock: Option<syncookie::WallClock>,
    ) -> Result<Policy, PolicyError> {
        if cfg.offenders_capacity > MAX_OFFENDERS_CAPACITY {
            return Err(PolicyError::OffendersCapacity(cfg.offenders_capacity));
        }
        if cfg.offenders_sample == 0 || cfg.offenders_sample > MAX_OFFENDERS_SAMPLE {
            return Err(PolicyError::OffendersSample(cfg.offenders_sample));
        }
        let acl = cfg
            .acl
            .as_ref()
            .map(|a| a.build().map(Arc::new))
            .transpose()?;
        let syncookie_shared = match &cfg.syncookie {
            Some(sc) => {
                // Validate now so configuration errors surface before any worker starts.
                SynCookieStage::validate_config(sc, tsc_hz)?;
                Some(syncookie::Shared::new(sc, secret, tsc_hz))
            }
            None => None,
        };
        // One mapping for every worker, so re-measuring it moves all of them at once.
        let wall_clock = match (&cfg.syncookie, wall_clock) {
            (Some(_), Some(w)) => Some(syncookie::ClockSync::new(w)?),
            _ => None,
        };
        let ratelimit = cfg
            .ratelimit
            .as_ref()
            .map(|r| RateLimiter::new(r, tsc_hz))
            .transpose()?;
        // Threshold windows count in TSC ticks.
        let rules = cfg
            .signature
            .as_ref()
            .map(|s| s.compile_for_clock(tsc_hz).map(Arc::new))
            .transpose()?;
        Ok(Policy {
            non_ip: cfg.non_ip,
            outbound: cfg.outbound,
            syncookie_shared,
            acl,
            syncookie: cfg.syncookie.clone(),
            secret,
            wall_clock,
            ratelimit,
            rules,
            tsc_hz,
            offenders_capacity: cfg.offenders_capacity,
            offenders_sample: cfg.offenders_sample,
        })
    }

    /// A worker's own pipeline: shared tables by reference, per-core state (allowlist, rate
    /// tables, counters, offender sketch with its own hash key) fresh.
    pub fn worker(&self) -> Pipeline {
        let mut p = Pipeline {
            non_ip: self.non_ip,
            outbound: self.outbound,
            acl: self.acl.as_ref().map(|t| AclStage::new(Arc::clone(t))),
            flowspec: None,
            syncookie: self
                .syncookie
                .as_ref()
                .zip(self.syncookie_shared.as_ref())
                .and_then(|(c, shared)| {
                    // Validated in Policy::build with the same config and TSC frequency.
                    let st =
                        SynCookieStage::with_shared(c, self.secret, self.tsc_hz, shared).ok()?;
                    Some(match &self.wall_clock {
                        Some(c) => st.with_clock(c.clone()),
                        None => st,
                    })
                }),
            ratelimit: self.ratelimit.as_ref().map(RateLimiter::worker_stage),
            signature: self
                .rules
                .as_ref()
                .map(|r| SignatureStage::new(Arc::clone(r))),
            rules_generation: 0,
            offenders: (self.offenders_capacity > 0)
                .then(|| Offenders::new(self.offenders_capacity)),
            sampler: Sampler::new(self.offenders_sample),
            run: [0; 2],
        };
        p.refresh_run();
        p
    }

    /// The SYN cookies' wall-clock mapping (a fleet's shared key), for the control plane to
    /// re-measure while the box runs.
    pub fn cookie_clock(&self) -> Option<&syncookie::ClockSync> {
        self.wall_clock.as_ref()
    }

    pub fn rules(&self) -> Option<&Arc<CompiledRules>> {
        self.rules.as_ref()
    }

    /// The shared rate limiter (its aggregate budgets are read by `ratelimit show`).
    pub fn rate_limiter(&self) -> Option<&RateLimiter> {
        self.ratelimit.as_ref()
    }
}

/// One worker's instance of the pipeline. Each worker owns its own, so nothing here is shared
/// mutably or locked on the per-packet path.
pub struct Pipeline {
    non_ip: NonIpAction,
    outbound: OutboundStages,
    // The stages are private: they change only through [`Pipeline::apply`] (crate::update).
    pub(crate) acl: Option<AclStage>,
    /// BGP FlowSpec rules; created by the first `Update::Flowspec`.
    pub(crate) flowspec: Option<FlowspecStage>,
    pub(crate) syncookie: Option<SynCookieStage>,
    pub(crate) ratelimit: Option<RateLimitStage>,
    pub(crate) signature: Option<SignatureStage>,
    /// Generation of the signature rule set in force (0 = the one from start-up).
    pub(crate) rules_generation: u64,
    offenders: Option<Offenders>,
    sampler: Sampler,
    /// Which stages run, per [`Direction`] (index `dir as usize`), as [`Run`] bits: a stage's
    /// bit is set iff it exists and judges that direction. Derived from the fields above by
    /// [`Pipeline::refresh_run`] whenever a stage comes or goes, so `process` tests one bit per
    /// stage instead of re-deriving presence and direction for each packet.
    run: [u8; 2],
}

/// Bits of [`Pipeline::run`].
struct Run;

impl Run {
    const ACL: u8 = 1;
    const FLOWSPEC: u8 = 2;
    const SYNCOOKIE: u8 = 4;
    const RATELIMIT: u8 = 8;
    const SIGNATURE: u8 = 16;
}

/// Picks the dropped packets the offender sketch records: each independently with probability
/// 1/`every`, by counting down a geometrically distributed gap, so the per-drop cost of an
/// unsampled packet is one decrement. Random rather than every N-th packet, so a flood whose
/// sources repeat with period N cannot hide behind (or frame) one source.
#[derive(Clone, Debug)]
struct Sampler {
    every: u32,
    /// Drops still to skip before the next recorded one.
    skip: u64,
    /// xorshift64* state (never 0).
    rng: u64,
}

impl Sampler {
    fn new(every: u32) -> Sampler {
        // The gap sequence need not be secret from the operator, only unpredictable to senders:
        // seeded like the sketch's hash key, from the process's random source.
        use std::hash::BuildHasher;
        let seed = std::collections::hash_map::RandomState::new().hash_one(0x5eed_u32) | 1;
        let mut s = Sampler {
            every: every.max(1),
            skip: 0,
            rng: seed,
        };
        s.skip = s.gap();
        s
    }

    /// A Geometric(1/every) number of drops to skip (0 when every drop is recorded).
    fn gap(&mut self) -> u64 {
        if self.every <= 1 {
            return 0;
        }
        self.rng ^= self.rng >> 12;
        self.rng ^= self.rng << 25;
        self.rng ^= self.rng >> 27;
        let r = self.rng.wrapping_mul(0x2545_f491_4f6c_dd1d);
        // Uniform in (0, 1]: the top 53 bits plus one ulp keep ln() finite.
        let u = ((r >> 11) as f64 + 1.0) / (1u64 << 53) as f64;
        let q = 1.0 - 1.0 / f64::from(self.every);
        // Saturating float-to-int conversion; the gap is far below u64::MAX in practice.
        (u.ln() / q.ln()) as u64
    }
}

impl Pipeline {
    /// A pipeline that only parses: malformed frames are dropped, everything else forwarded.
    /// No offender sketch: the only drops it makes are malformed frames, which are not recorded.
    pub fn pass_through() -> Pipeline {
        Pipeline {
            non_ip: NonIpAction::Forward,
            outbound: OutboundStages::default(),
            acl: None,
            flowspec: None,
            syncookie: None,
            ratelimit: None,
            signature: None,
            rules_generation: 0,
            offenders: None,
            sampler: Sampler::new(1),
            // No stage: nothing to run in either direction.
            run: [0; 2],
        }
    }

    /// The SYN-cookie stage's state for the control plane, if the stage runs.
    pub fn syncookie_status(&self, tsc: u64) -> Option<crate::stage::syncookie::Status> {
        self.syncookie.as_ref().map(|s| s.status(tsc))
    }

    /// The frame a stage queued while judging the last packet, besides its verdict (see
    /// [`crate::emit`]); the data path sends it, or calls [`Pipeline::emit_failed`].
    #[inline]
    pub fn take_emitted(&mut self) -> Option<(&[u8], crate::EmitOut)> {
        self.syncookie.as_mut()?.take_emitted()
    }

    /// The data path could not send the emitted frame (no buffer, or the TX ring was full):
    /// counted by the stage that emitted it.
    pub fn emit_failed(&mut self) {
        if let Some(sc) = &mut self.syncookie {
            sc.emit_failed();
        }
    }

    /// The generation of the signature rule set in force (0 = the start-up set); hit counts
    /// are reported per generation.
    pub fn rules_generation(&self) -> u64 {
        self.rules_generation
    }

    /// This worker's offender sketch; `None` when `offenders_capacity` is 0.
    pub fn offenders(&self) -> Option<&Offenders> {
        self.offenders.as_ref()
    }

    /// Fills `out` with the sketch's entries (cleared, and left empty without a sketch). Give
    /// it a `Vec` with [`Offenders::max_entries`] capacity and the worker does not allocate.
    ///
    /// With `offenders_sample = N > 1`, counts and errors are the sketch's (over the sampled
    /// drops) times N. Besides the sketch's own over-count (`error`), a key with true count
    /// c then has an estimate whose sampling error has mean 0 and standard deviation
    /// sqrt(c·(N−1)): relative error 1/sqrt(c/N) or less, e.g. within ±1 % with 99.7 %
    /// confidence (3σ) once c ≥ 90 000·N. The sketch's guarantee (every key above
    /// recorded/capacity is present) holds for the sampled stream.
    pub fn export_offenders(&self, out: &mut Vec<OffenderEntry>) {
        match &self.offenders {
            Some(o) => o.export_into(out),
            None => out.clear(),
        }
        let n = u64::from(self.sampler.every);
        if n > 1 {
            for e in out.iter_mut() {
                e.count = e.count.saturating_mul(n);
                e.error = e.error.saturating_mul(n);
            }
        }
    }

    /// Writes every stage counter into `out`, laid out as [`stage_counters::schema`] says
    /// (absent stages write zeros). No allocation: workers call this when they publish stats.
    pub fn fill_stage_counters(&self, out: &mut [u64]) {
        let mut vals = [0u64; STAGE_COUNTERS];
        let mut put = |kind: StageKind, v: &[u64]| {
            if let Some(dst) = vals.get_mut(kind.range()) {
                dst.copy_from_slice(v);
            }
        };
        if let Some(a) = &self.acl {
            put(StageKind::Acl, &stage_counters::acl_values(&a.counters));
        }
        if let Some(sc) = &self.syncookie {
            put(
                StageKind::SynCookie,
                &stage_counters::syncookie_values(&sc.counters()),
            );
        }
        if let Some(rl) = &self.ratelimit {
            put(
                StageKind::RateLimit,
                &stage_counters::ratelimit_values(&rl.counters),
            );
        }
        if let Some(fs) = &self.flowspec {
            put(
                StageKind::Flowspec,
                &stage_counters::flowspec_values(&fs.counters),
            );
        }
        for (o, v) in out.iter_mut().zip(vals.iter()) {
            *o = *v;
        }
    }

    /// The names of [`stage_counters::schema`] in layout order, for reports that index by
    /// position (snapshot arrays).
    pub fn stage_counter_names() -> &'static [String] {
        static NAMES: std::sync::OnceLock<Vec<String>> = std::sync::OnceLock::new();
        NAMES.get_or_init(|| {
            stage_counters::schema()
                .iter()
                .map(|c| c.name.clone())
                .collect()
        })
    }

    /// Whether this pipeline runs the stage.
    pub fn has_stage(&self, kind: StageKind) -> bool {
        match kind {
            StageKind::Acl => self.acl.is_some(),
            StageKind::SynCookie => self.syncookie.is_some(),
            StageKind::RateLimit => self.ratelimit.is_some(),
            StageKind::Flowspec => self.flowspec.is_some(),
        }
    }

    /// The counters of the stages this pipeline runs as (name, value), for reports.
    pub fn stage_counters(&self) -> Vec<(Cow<'static, str>, u64)> {
        let mut vals = [0u64; STAGE_COUNTERS];
        self.fill_stage_counters(&mut vals);
        stage_counters::schema()
            .iter()
            .zip(vals)
            .filter(|(c, _)| self.has_stage(c.stage))
            .map(|(c, v)| (Cow::Owned(c.name.clone()), v))
            .collect()
    }

    /// Hits per signature rule index (empty without a signature stage).
    pub fn signature_hits(&self) -> &[u64] {
        self.signature.as_ref().map(|s| s.counters()).unwrap_or(&[])
    }

    /// Judge one frame: `buf[..len]` is the frame, the rest of `buf` is writable room after it,
    /// so a reply may be longer than the packet it answers (a SYN-ACK with options answering a
    /// bare SYN). A [`Verdict::Reply`] carries the new length, never more than `buf.len()`.
    ///
    /// Drops of IP packets are counted in the offender sketch by source and destination.
    /// Malformed frames are not: their parse failed, so whatever bytes sit where the addresses
    /// would be are untrustworthy (and a flood of garbage would churn real offenders out of
    /// the sketch); their count per sub-reason is in the verdict counters already. Non-IP
    /// drops have no addresses to record.
    #[inline]
    pub fn process(&mut self, buf: &mut [u8], len: usize, meta: &Meta) -> Verdict {
        let len = len.min(buf.len());
        // Matched by reference: moving the headers out of the `Result` would copy them.
        let parsed = parse(&buf[..len]);
        let hdr = match &parsed {
            Ok(h) => h,
            Err(m) => return Verdict::Drop(DropReason::Malformed(*m)),
        };
        match hdr.net {
            Net::Ip(_) => {}
            Net::Arp => return Verdict::Forward,
            Net::Other => {
                return match self.non_ip {
                    NonIpAction::Forward => Verdict::Forward,
                    NonIpAction::Drop => Verdict::Drop(DropReason::UnsupportedEthertype),
                }
            }
        }
        let run = self.run[meta.dir as usize];
        if run & Run::ACL != 0 {
            if let Some(acl) = &mut self.acl {
                if let StageResult::Done(v) = acl.process(hdr, meta) {
                    return self.finish(v, hdr);
                }
            }
        }
        if run & Run::FLOWSPEC != 0 {
            if let Some(fs) = &mut self.flowspec {
                if let StageResult::Done(v) = fs.process(hdr, meta) {
                    return self.finish(v, hdr);
                }
            }
        }
        if run & Run::SYNCOOKIE != 0 {
            if let Some(sc) = &mut self.syncookie {
                // The cookie stage gets the whole buffer: its replies may grow the frame.
                if let StageResult::Done(v) = sc.process(buf, hdr, meta) {
                    return self.finish(v, hdr);
                }
            }
        }
        if run & Run::RATELIMIT != 0 {
            if let Some(rl) = &mut self.ratelimit {
                if let StageResult::Done(v) = rl.process(hdr, meta) {
                    return self.finish(v, hdr);
                }
            }
        }
        if run & Run::SIGNATURE != 0 {
            if let Some(sig) = &mut self.signature {
                if let StageResult::Done(v) = sig.process(&buf[..len], hdr, meta) {
                    return self.finish(v, hdr);
                }
            }
        }
        Verdict::Forward
    }

    /// Recomputes [`Pipeline::run`] from which stages exist and `[pipeline.outbound]`. Inbound
    /// traffic meets every stage; outbound traffic meets the SYN-cookie stage (it records the
    /// connections the inside opens) and those the operator turned on for it. FlowSpec rules
    /// come from the operator's detection system: inbound only.
    pub(crate) fn refresh_run(&mut self) {
        let present = |on: bool, bit: u8| if on { bit } else { 0 };
        let inbound = present(self.acl.is_some(), Run::ACL)
            | present(self.flowspec.is_some(), Run::FLOWSPEC)
            | present(self.syncookie.is_some(), Run::SYNCOOKIE)
            | present(self.ratelimit.is_some(), Run::RATELIMIT)
            | present(self.signature.is_some(), Run::SIGNATURE);
        let o = self.outbound;
        let outbound_allowed = Run::SYNCOOKIE
            | present(o.acl, Run::ACL)
            | present(o.ratelimit, Run::RATELIMIT)
            | present(o.signature, Run::SIGNATURE);
        self.run[Direction::Inbound as usize] = inbound;
        self.run[Direction::Outbound as usize] = inbound & outbound_allowed;
    }

    /// A stage's final verdict on an IP packet; drops go to the offender sketch. Only stage
    /// decisions pass here, so a packet every stage passes pays nothing.
    #[inline(always)]
    fn finish(&mut self, v: Verdict, hdr: &Headers) -> Verdict {
        if let Verdict::Drop(reason) = v {
            if self.sampler.skip > 0 {
                self.sampler.skip -= 1;
            } else {
                self.record_drop(reason, hdr);
            }
        }
        v
    }

    /// Out of line so the sketch's code does not grow `process` for the packets it forwards.
    #[inline(never)]
    fn record_drop(&mut self, reason: DropReason, hdr: &Headers) {
        if let (Some(o), Net::Ip(ip)) = (&mut self.offenders, &hdr.net) {
            // Slots are a few dozen; the fallback only keeps a future overflow visible.
            let slot = u16::try_from(reason.slot()).unwrap_or(u16::MAX);
            o.record(Some(ip.src), Some(ip.dst), slot);
        }
        self.sampler.skip = self.sampler.gap();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::offenders::Side;
    use crate::Malformed;
    use std::net::IpAddr;

    const HZ: u64 = 1_000_000_000;

    fn policy(toml_text: &str) -> Policy {
        let cfg: PipelineConfig = toml::from_str(toml_text).expect("config parses");
        Policy::build(&cfg, HZ, [7; 16]).expect("policy builds")
    }

    fn syn(src: [u8; 4], dst: [u8; 4], sport: u16, dport: u16) -> Vec<u8> {
        let mut v = Vec::new();
        etherparse::PacketBuilder::ethernet2([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2])
            .ipv4(src, dst, 64)
            .tcp(sport, dport, 1000, 64240)
            .syn()
            .options(&[etherparse::TcpOptionElement::MaximumSegmentSize(1460)])
            .unwrap()
            .write(&mut v, &[])
            .unwrap();
        v
    }

    fn udp(src: [u8; 4], dst: [u8; 4], sport: u16, dport: u16, payload: &[u8]) -> Vec<u8> {
        let mut v = Vec::new();
        etherparse::PacketBuilder::ethernet2([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2])
            .ipv4(src, dst, 64)
            .udp(sport, dport)
            .write(&mut v, payload)
            .unwrap();
        v
    }

    fn run(p: &mut Pipeline, frame: &[u8], tsc: u64) -> (Verdict, Vec<u8>) {
        let mut buf = frame.to_vec();
        buf.resize(frame.len() + 128, 0);
        let v = p.process(
            &mut buf,
            frame.len(),
            &Meta {
                port: 0,
                tsc,
                ..Meta::default()
            },
        );
        (v, buf)
    }

    #[test]
    fn stage_counter_names_cover_every_filled_slot() {
        let names = Pipeline::stage_counter_names();
        assert_eq!(names.len(), STAGE_COUNTERS);
        let mut uniq = names.to_vec();
        uniq.sort();
        uniq.dedup();
        assert_eq!(uniq.len(), names.len(), "duplicate stage counter names");
        // A SYN to a protected address moves exactly the syn_answered slot.
        let mut p = policy("[syncookie]\nprotected = [\"10.0.0.0/8\"]\n").worker();
        let (v, _) = run(&mut p, &syn([1, 2, 3, 4], [10, 0, 0, 1], 1234, 80), 1);
        assert!(matches!(v, Verdict::Reply { .. }));
        let mut out = vec![0u64; STAGE_COUNTERS];
        p.fill_stage_counters(&mut out);
        let i = names
            .iter()
            .position(|n| n == "syncookie.syn_answered")
            .unwrap();
        assert_eq!(out[i], 1);
        assert_eq!(out.iter().sum::<u64>(), 1);
        let listed = p.stage_counters();
        assert!(listed.iter().all(|(n, _)| n.starts_with("syncookie.")));
        assert_eq!(listed.len(), StageKind::SynCookie.range().len());
    }

    #[test]
    fn empty_policy_forwards_valid_and_drops_malformed() {
        let mut p = policy("").worker();
        let f = udp([1, 1, 1, 1], [2, 2, 2, 2], 1000, 53, b"q");
        assert_eq!(run(&mut p, &f, 0).0, Verdict::Forward);
        assert_eq!(
            run(&mut p, &f[..20], 0).0,
            Verdict::Drop(DropReason::Malformed(Malformed::Ipv4Truncated))
        );
        let mut arp = vec![0xff; 12];
        arp.extend_from_slice(&[0x08, 0x06]);
        arp.extend_from_slice(&[0, 1, 8, 0, 6, 4, 0, 1]);
        arp.resize(42, 0);
        assert_eq!(run(&mut p, &arp, 0).0, Verdict::Forward);
    }

    #[test]
    fn non_ip_policy() {
        let mut lldp = vec![0x01, 0x80, 0xc2, 0, 0, 0x0e, 2, 0, 0, 0, 0, 1, 0x88, 0xcc];
        lldp.resize(60, 0);
        let mut p = policy("non_ip = \"drop\"").worker();
        assert_eq!(
            run(&mut p, &lldp, 0).0,
            Verdict::Drop(DropReason::UnsupportedEthertype)
        );
        let mut p = policy("").worker();
        assert_eq!(run(&mut p, &lldp, 0).0, Verdict::Forward);
    }

    /// The stages run in the documented order: an ACL allow bypasses the SYN-cookie stage, a
    /// deny beats everything, cookies answer before rate limits count.
    #[test]
    fn stage_order() {
        let cfg = r#"
[acl]
allow = ["192.0.2.1"]
deny = ["192.0.2.2"]
[syncookie]
protected = ["10.10.10.0/24"]
[ratelimit.classes]
tcp_syn = { rate = 1, burst = 1 }
udp_reflection = { rate = 1, burst = 1 }
"#;
        let mut p = policy(cfg).worker();
        let dst = [10, 10, 10, 10];
        assert_eq!(
            run(&mut p, &syn([192, 0, 2, 1], dst, 1, 80), 0).0,
            Verdict::Forward,
            "allow bypasses"
        );
        assert_eq!(
            run(&mut p, &syn([192, 0, 2, 2], dst, 1, 80), 0).0,
            Verdict::Drop(DropReason::AclDeny)
        );
        // Unauthenticated SYNs to the protected prefix are answered, never rate limited.
        for i in 0..5 {
            let (v, buf) = run(&mut p, &syn([198, 51, 100, 7], dst, 1000 + i, 80), 0);
            assert!(matches!(v, Verdict::Reply { .. }), "{v:?}");
            // Flags of the reply: SYN|ACK.
            assert_eq!(buf[14 + 20 + 13], 0x12);
        }
        // Unprotected destination: the SYN rate limit applies (burst 1).
        let other = [10, 20, 0, 1];
        assert_eq!(
            run(&mut p, &syn([198, 51, 100, 7], other, 1, 80), 0).0,
            Verdict::Forward
        );
        assert!(matches!(
            run(&mut p, &syn([198, 51, 100, 7], other, 2, 80), 0).0,
            Verdict::Drop(DropReason::RateLimited(_))
        ));
        assert_eq!(p.syncookie.as_ref().unwrap().counters().syn_answered, 5);
    }

    fn run_dir(p: &mut Pipeline, frame: &[u8], dir: Direction) -> Verdict {
        let mut buf = frame.to_vec();
        buf.resize(frame.len() + 128, 0);
        p.process(
            &mut buf,
            frame.len(),
            &Meta {
                port: 1,
                dir,
                tsc: 1,
            },
        )
    }

    /// A rule file in a directory of its own, removed when dropped.
    struct RulesFile {
        dir: std::path::PathBuf,
        file: std::path::PathBuf,
    }

    impl RulesFile {
        fn new(tag: &str, text: &str) -> RulesFile {
            let dir =
                std::env::temp_dir().join(format!("scrubd-pipeline-{tag}-{}", std::process::id()));
            std::fs::create_dir_all(&dir).unwrap();
            let file = dir.join("t.rules");
            std::fs::write(&file, text).unwrap();
            RulesFile { dir, file }
        }

        fn display(&self) -> std::path::Display<'_> {
            self.file.display()
        }
    }

    impl Drop for RulesFile {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }

    #[test]
    fn outbound_traffic_skips_protection_unless_configured() {
        let rules = RulesFile::new(
            "dir",
            "drop udp any any -> any any (msg:\"x\"; content:\"evil\"; sid:9;)\n",
        );
        let base = format!(
            "[acl]\ndeny = [\"10.1.0.0/16\"]\n\
             [syncookie]\nprotected = [\"10.1.0.0/16\"]\n\
             [ratelimit]\nclasses.other = {{ rate = 1, burst = 1 }}\n\
             [signature]\nrule_files = [\"{}\"]\n",
            rules.display()
        );
        // An inside host of a denied, protected prefix sends out: every stage lets it through.
        let mut p = policy(&base).worker();
        let inside = udp([10, 1, 0, 5], [192, 0, 2, 9], 4000, 5000, b"evil");
        let clean = udp([192, 0, 2, 9], [10, 2, 0, 5], 4000, 5000, b"evil");
        for _ in 0..3 {
            assert_eq!(
                run_dir(&mut p, &inside, Direction::Outbound),
                Verdict::Forward
            );
        }
        // The same packet entering from outside is denied by the ACL (source and destination
        // both match 10.1/16 here only through its source).
        assert_eq!(
            run_dir(&mut p, &inside, Direction::Inbound),
            Verdict::Drop(DropReason::AclDeny)
        );
        assert_eq!(
            run_dir(&mut p, &clean, Direction::Inbound),
            Verdict::Drop(DropReason::Signature(0))
        );
        // Each stage can be turned on for outbound traffic on its own.
        let with = |k: &str| policy(&format!("{base}[outbound]\n{k} = true\n")).worker();
        assert_eq!(
            run_dir(&mut with("acl"), &inside, Direction::Outbound),
            Verdict::Drop(DropReason::AclDeny)
        );
        let mut p = with("signature");
        assert_eq!(
            run_dir(&mut p, &clean, Direction::Outbound),
            Verdict::Drop(DropReason::Signature(0))
        );
        let mut p = with("ratelimit");
        let other = udp([192, 0, 2, 9], [10, 2, 0, 5], 4000, 5000, b"fine");
        assert_eq!(
            run_dir(&mut p, &other, Direction::Outbound),
            Verdict::Forward
        );
        assert!(matches!(
            run_dir(&mut p, &other, Direction::Outbound),
            Verdict::Drop(DropReason::RateLimited(_))
        ));
        assert!(toml::from_str::<PipelineConfig>("[outbound]\nsyncookie = true").is_err());
    }

    #[test]
    fn signature_stage_sees_payload() {
        let rules = RulesFile::new(
            "sig",
            "drop udp any any -> any 11211 (msg:\"memcached\"; content:\"|00 00 00 00 00 01 00 00|stats\"; depth:13; sid:1;)\n",
        );
        let mut p = policy(&format!(
            "[signature]\nrule_files = [\"{}\"]\n",
            rules.display()
        ))
        .worker();
        let bad = udp(
            [1, 1, 1, 1],
            [2, 2, 2, 2],
            5000,
            11211,
            b"\x00\x00\x00\x00\x00\x01\x00\x00stats\r\n",
        );
        let good = udp(
            [1, 1, 1, 1],
            [2, 2, 2, 2],
            5000,
            11211,
            b"\x00\x00\x00\x00\x00\x01\x00\x00get k\r\n",
        );
        assert_eq!(
            run(&mut p, &bad, 0).0,
            Verdict::Drop(DropReason::Signature(0))
        );
        assert_eq!(run(&mut p, &good, 0).0, Verdict::Forward);
        assert_eq!(p.signature.as_ref().unwrap().counters(), &[1]);
    }

    #[test]
    fn policy_errors_name_the_section() {
        let cfg: PipelineConfig = toml::from_str("[acl]\ndeny = [\"10.0.0.1/8\"]").unwrap();
        let e = Policy::build(&cfg, HZ, [0; 16])
            .err()
            .expect("host bits refused")
            .to_string();
        assert!(e.starts_with("pipeline.acl: "), "{e}");
        let cfg: PipelineConfig =
            toml::from_str("[ratelimit.classes]\ntcp_syn = { rate = 0, burst = 1 }").unwrap();
        let e = Policy::build(&cfg, HZ, [0; 16])
            .err()
            .expect("rate 0 refused")
            .to_string();
        assert!(
            e.starts_with("pipeline.ratelimit.classes.tcp_syn.rate"),
            "{e}"
        );
        let cfg: PipelineConfig =
            toml::from_str("[signature]\nrule_files = [\"/nonexistent.rules\"]").unwrap();
        let e = Policy::build(&cfg, HZ, [0; 16])
            .err()
            .expect("missing file")
            .to_string();
        assert!(e.contains("/nonexistent.rules"), "{e}");
        assert!(
            toml::from_str::<PipelineConfig>("[acl]\nallwo = []").is_err(),
            "unknown keys rejected"
        );
    }

    /// An attacker hidden among one-packet spoofed sources in a denied range: the sketch's top
    /// source is the attacker under the ACL slot, the victim tops the destinations, and
    /// neither forwarded nor malformed frames are recorded.
    #[test]
    fn offenders_name_the_attacker_of_a_denied_stream() {
        let mut p = policy("offenders_capacity = 16\n[acl]\ndeny = [\"100.64.0.0/10\"]\n").worker();
        assert_eq!(p.offenders().unwrap().capacity(), 16);
        let attacker = [100, 64, 0, 66];
        let victim = [10, 0, 0, 5];
        let acl = u16::try_from(DropReason::AclDeny.slot()).unwrap();
        let mut x: u32 = 7;
        for i in 0..1800u32 {
            let src = if i.is_multiple_of(6) {
                attacker
            } else {
                x = x.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
                let b = x.to_be_bytes();
                [100, 64 | (b[0] & 0x3f), b[1], b[2]]
            };
            let f = udp(src, victim, 4000, 53, b"x");
            assert_eq!(run(&mut p, &f, 0).0, Verdict::Drop(DropReason::AclDeny));
            // Clean and malformed traffic in between must leave no trace.
            let clean = udp([1, 1, 1, 1], [10, 0, 0, 9], 4000, 53, b"y");
            assert_eq!(run(&mut p, &clean, 0).0, Verdict::Forward);
            assert!(matches!(
                run(&mut p, &clean[..20], 0).0,
                Verdict::Drop(DropReason::Malformed(_))
            ));
        }
        let o = p.offenders().unwrap();
        assert_eq!(o.recorded(Side::Src), 1800);
        assert_eq!(o.recorded(Side::Dst), 1800);
        let mut out = Vec::with_capacity(o.max_entries());
        p.export_offenders(&mut out);
        let top = out[0];
        assert_eq!((top.side, top.reason), (Side::Src, acl));
        assert_eq!(top.addr, IpAddr::from(attacker));
        assert!(top.count >= 300 && top.count - top.error <= 300, "{top:?}");
        let dst: Vec<_> = out.iter().filter(|e| e.side == Side::Dst).collect();
        assert_eq!(dst.len(), 1);
        assert_eq!(
            (dst[0].addr, dst[0].reason, dst[0].count, dst[0].error),
            (IpAddr::from(victim), acl, 1800, 0)
        );
        assert!(out.iter().all(|e| e.addr != IpAddr::from([1, 1, 1, 1])));
    }

    /// Sampled accounting: about 1/N of the drops reach the sketch, the export scales counts
    /// back, and the attacker (1/6 of the drops) and the victim are still named with counts
    /// inside the stated error. Bounds are 6 standard deviations, so the test does not flake.
    #[test]
    fn sampled_offenders_estimate_within_their_bounds() {
        let n = 16u64;
        let mut p = policy(
            "offenders_capacity = 64\noffenders_sample = 16\n[acl]\ndeny = [\"100.64.0.0/10\"]\n",
        )
        .worker();
        let attacker = [100, 64, 0, 66];
        let victim = [10, 0, 0, 5];
        let total = 60_000u64;
        let mut x: u32 = 7;
        for i in 0..total {
            let src = if i % 6 == 0 {
                attacker
            } else {
                x = x.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
                let b = x.to_be_bytes();
                [100, 64 | (b[0] & 0x3f), b[1], b[2]]
            };
            let f = udp(src, victim, 4000, 53, b"x");
            assert_eq!(run(&mut p, &f, 0).0, Verdict::Drop(DropReason::AclDeny));
        }
        let sd = |c: u64| ((c * (n - 1)) as f64).sqrt();
        let within = |est: u64, c: u64, extra: u64| {
            (est as f64 - c as f64).abs() <= 6.0 * sd(c) + extra as f64
        };
        let recorded = p.offenders().unwrap().recorded(Side::Src);
        assert!(within(recorded * n, total, 0), "recorded {recorded}");
        let mut out = Vec::new();
        p.export_offenders(&mut out);
        let top = out[0];
        assert_eq!((top.side, top.addr), (Side::Src, IpAddr::from(attacker)));
        assert!(within(top.count, total / 6, top.error), "{top:?}");
        let dst: Vec<_> = out.iter().filter(|e| e.side == Side::Dst).collect();
        assert_eq!(dst.len(), 1);
        assert!(within(dst[0].count, total, 0), "{:?}", dst[0]);
        assert_eq!(dst[0].count % n, 0, "scaled by N");
        for bad in ["offenders_sample = 0", "offenders_sample = 65537"] {
            let cfg: PipelineConfig = toml::from_str(bad).unwrap();
            let e = Policy::build(&cfg, HZ, [7; 16]).err().unwrap().to_string();
            assert!(e.starts_with("pipeline.offenders_sample: "), "{e}");
        }
    }

    /// Rate-limit drops of IPv6 traffic land under the rate-limit class's slot, not the ACL's.
    #[test]
    fn offenders_separate_reasons_and_handle_ipv6() {
        let mut p = policy("[ratelimit.classes]\nother = { rate = 1, burst = 1 }\n").worker();
        let src: IpAddr = "2001:db8::66".parse().unwrap();
        let dst: IpAddr = "2001:db8:1::5".parse().unwrap();
        let mut f = Vec::new();
        etherparse::PacketBuilder::ethernet2([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2])
            .ipv6(
                "2001:db8::66"
                    .parse::<std::net::Ipv6Addr>()
                    .unwrap()
                    .octets(),
                "2001:db8:1::5"
                    .parse::<std::net::Ipv6Addr>()
                    .unwrap()
                    .octets(),
                64,
            )
            .udp(4000, 5000)
            .write(&mut f, b"z")
            .unwrap();
        let mut slot = None;
        for _ in 0..10 {
            if let Verdict::Drop(r) = run(&mut p, &f, 0).0 {
                assert!(matches!(r, DropReason::RateLimited(_)), "{r:?}");
                slot = Some(u16::try_from(r.slot()).unwrap());
            }
        }
        let slot = slot.expect("the limit binds");
        let mut out = Vec::new();
        p.export_offenders(&mut out);
        assert_eq!(out.len(), 2);
        assert_eq!(
            (out[0].side, out[0].addr, out[0].reason),
            (Side::Src, src, slot)
        );
        assert_eq!(
            (out[1].side, out[1].addr, out[1].reason),
            (Side::Dst, dst, slot)
        );
        assert_eq!(out[0].count, 9);
    }

    #[test]
    fn offenders_capacity_config() {
        let cfg: PipelineConfig = toml::from_str("").unwrap();
        assert_eq!(cfg.offenders_capacity, DEFAULT_OFFENDERS_CAPACITY);
        assert_eq!(
            PipelineConfig::default().offenders_capacity,
            DEFAULT_OFFENDERS_CAPACITY
        );
        let p = policy("").worker();
        assert_eq!(
            p.offenders().map(|o| o.capacity()),
            Some(DEFAULT_OFFENDERS_CAPACITY)
        );
        let mut p = policy("offenders_capacity = 0\n[acl]\ndeny = [\"1.1.1.1\"]").worker();
        assert!(p.offenders().is_none());
        let f = udp([1, 1, 1, 1], [2, 2, 2, 2], 1, 2, b"");
        assert_eq!(run(&mut p, &f, 0).0, Verdict::Drop(DropReason::AclDeny));
        let mut out = vec![];
        p.export_offenders(&mut out);
        assert!(out.is_empty());
        assert!(Pipeline::pass_through().offenders().is_none());
        let cfg: PipelineConfig = toml::from_str("offenders_capacity = 65537").unwrap();
        let e = Policy::build(&cfg, HZ, [0; 16])
            .err()
            .expect("too large")
            .to_string();
        assert!(e.starts_with("pipeline.offenders_capacity: 65537"), "{e}");
        let cfg: PipelineConfig = toml::from_str("offenders_capacity = 65536").unwrap();
        assert!(Policy::build(&cfg, HZ, [0; 16]).is_ok());
        assert!(toml::from_str::<PipelineConfig>("offenders_capacity = -1").is_err());
    }

    proptest::proptest! {
        /// The full pipeline never panics, whatever the bytes, and a reply always fits the buffer.
        #[test]
        fn full_pipeline_never_panics(data in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..200), room in 0usize..64) {
            let cfg: PipelineConfig = toml::from_str(r#"
[acl]
deny = ["203.0.113.0/24"]
[syncookie]
protected = ["0.0.0.0/0", "::/0"]
[ratelimit.classes]
other = { rate = 10, burst = 10 }
"#).unwrap();
            let mut p = Policy::build(&cfg, HZ, [1; 16]).unwrap().worker();
            let mut buf = data.clone();
            buf.resize(data.len() + room, 0);
            let v = p.process(&mut buf, data.len(), &Meta { port: 0, tsc: 12345, ..Meta::default() });
            if let Verdict::Reply { len } = v {
                proptest::prop_assert!(usize::from(len) <= buf.len());
            }
        }
    }
}
