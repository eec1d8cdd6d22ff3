//! Stateless SYN authentication in front of protected destination prefixes.
//!
//! A spoofed SYN flood is cheap for the attacker because the server commits state to each SYN.
//! This stage answers SYNs to protected prefixes itself, with a SYN-ACK carrying a cookie (the
//! `cookie` submodule documents its bit layout), commits nothing, and only lets a source
//! through once it has shown, by echoing the cookie, that it really receives packets sent to its
//! address. Such sources go on a per-core allowlist; their packets continue to the later stages
//! and on to the server.
//!
//! Two ways to echo the cookie:
//!
//! * **auth mode** (default), transparent to applications. The SYN-ACK's acknowledgment number
//!   is the cookie, deliberately not the client's ISN+1. A client in SYN-SENT that gets an
//!   unacceptable ACK answers with a RST whose sequence number is that acknowledgment number
//!   (RFC 9293 §3.10.7.3) and keeps its connection attempt alive. We check the RST's sequence
//!   number as a cookie, allowlist the source and drop the RST ([`DropReason::AuthHandshake`]);
//!   the client's next SYN retransmission (Linux re-arms the SYN timer at its minimum on such an
//!   ACK) finds the source allowlisted and reaches the server. The application sees one extra
//!   round trip, no error. Our SYN-ACK's sequence number is the cookie as well: it is free to
//!   be anything here, and making it the cookie means a stack that wrongly accepts the bogus
//!   ACK and completes the handshake still authenticates through the classic path below.
//!   If the cookie happens to be an acceptable ACK for this SYN (ISN+1, or up to ISN+1+len for
//!   a SYN carrying data; about one SYN in 2^32), the client would complete the handshake
//!   instead of resetting, so that one SYN is answered classic-style ([`Counters::auth_fallback_classic`]).
//! * **classic mode**: like Linux syncookies, the SYN-ACK's sequence number is the cookie and its
//!   acknowledgment ISN+1, and the client's final ACK (ack - 1 = cookie) proves it.
//!
//! * **proxy mode**: a full SYN proxy, so the client's first connection costs no retry. The
//!   SYN-ACK is classic (acceptable ACK) with window 0; a validated final ACK opens the
//!   connection to the server on the client's behalf and the stage translates the connection
//!   from then on, with per-core state for validated connections only. See [`proxy`] for the
//!   exchange, the table and the fallbacks when it is full. Proxied sources are not
//!   allowlisted.
//!
//! In auth and classic modes a validated final ACK allowlists the source and is answered with a RST built in
//! place: the server never saw this handshake and holds no connection, so telling the client at
//! once makes it fail fast and reconnect (a new SYN, which now passes) instead of timing out
//! against a server that would itself reset every segment. RSTs are checked as cookies in both
//! modes too, so changing mode never strands a handshake in flight.
//!
//! # Direction
//! Only traffic entering from the outside is authenticated ([`Direction::Inbound`]). Traffic a
//! protected host sends out of the inside port ([`Direction::Outbound`]) always passes this
//! stage; when it opens a connection (a TCP SYN, or a UDP datagram while `non_tcp.udp` is
//! `drop`), the 5-tuple goes into a table of outbound connections, and inbound packets of that
//! connection (the SYN-ACK and everything after) pass without authentication
//! ([`Counters::outbound_return`]). The outside cannot add to that table, and an outside SYN-ACK
//! that matches no connection a protected host opened is still dropped as unauthenticated
//! (SYN-ACK reflection floods).
//!
//! # One allowlist for the box
//! The allowlist and the outbound table are shared by every worker (lock-free, see
//! [`crate::shared_set`]), so a source authenticated on one core passes on all of them from
//! its next packet on, whichever queue RSS hashes its next connection to. SYNs are answered
//! from any unicast source, so, as with any SYN cookie scheme, spoofed SYNs get one SYN-ACK
//! each (never larger than the SYN, so no amplification).

mod allowlist;
mod cookie;
pub mod proxy;
mod relay;
mod reply;
#[cfg(test)]
mod tests;

/// Public so the cookie MAC can be fuzzed on its own (pipeline/fuzz `cookie` target), apart from
/// the packet parsing in front of it; the stage remains the only user on the data path.
pub use cookie::{master_from_shared_key, CookieJar, Flow, Valid};
pub use cookie::{mss_index, MSS_TABLE};

use self::allowlist::Inserted;
pub use self::allowlist::{Allowlist, ConnKey, Outbound};
use self::reply::Segment;
use super::StageResult;
use crate::prefix::{mask_v4, mask_v6, Prefix};
use crate::wire::ip_protocol;
use crate::{
    Direction, DropReason, Frag, Headers, IpHeaders, Malformed, Meta, TcpInfo, Transport, Verdict,
};
use serde::Deserialize;
use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// How a source proves it saw our SYN-ACK; see the module docs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    #[default]
    Auth,
    Classic,
    /// Full SYN proxy: see [`proxy`].
    Proxy,
}

/// What to do with non-TCP packets to a protected prefix from a source not (yet) allowlisted.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NonTcpAction {
    #[default]
    Pass,
    /// Dropped as [`DropReason::Unauthenticated`]. Note for `icmp`: this also drops ICMP errors
    /// (path MTU discovery) and unicast neighbour discovery to the protected addresses.
    Drop,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct NonTcpPolicy {
    pub udp: NonTcpAction,
    /// ICMP and ICMPv6.
    pub icmp: NonTcpAction,
    /// Every other IP protocol.
    pub other: NonTcpAction,
}

/// The `[syncookie]` section of the daemon config.
///
/// ```toml
/// protected = ["10.10.10.0/24", "2001:db8::/32"]
/// mode = "auth"              # or "classic", or "proxy"
/// mss = 1460                 # MSS option in our SYN-ACKs
/// ttl = 64                   # TTL / hop limit of our replies
/// window = 0                 # TCP window of our replies
/// counter_period_s = 64      # cookie time counter period
/// allowlist_capacity = 65536 # sources, for the whole box (rounded up to whole buckets)
/// allowlist_ttl_s = 300      # idle time after which a source must authenticate again
/// outbound_capacity = 65536  # connections opened from inside, for the whole box
/// outbound_ttl_s = 300       # idle time after which such a connection is forgotten
/// rotate_every_s = 3600      # scheduled secret rotation; 0 = only on command
/// non_tcp = { udp = "pass", icmp = "pass", other = "pass" }
/// shared_key_file = "/etc/scrubd/cookie.key"  # optional: a fleet's shared key, see below
/// proxy_capacity = 65536     # mode "proxy": connections per worker
/// proxy_idle_s = 300         # mode "proxy": idle time after which a connection is forgotten
/// proxy_wscale = 7           # mode "proxy": window scale offered to clients (= the servers')
/// ```
///
/// With `shared_key_file`, every box of a fleet derives the same secrets from the key and the
/// wall clock ([`WallClock`]): generation = floor(unix time / `rotate_every_s`) and the cookie
/// time counter = floor(unix time / `counter_period_s`), so a cookie one box issues validates
/// on any other whose clock agrees. The daemon checks and reads the file (hex, at least 16
/// bytes); this stage only sees the master secret derived from it.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SynCookieConfig {
    /// Destination prefixes whose TCP clients must authenticate. Checked one by one, so meant
    /// for a handful; at most [`MAX_PROTECTED`].
    pub protected: Vec<Prefix>,
    pub mode: Mode,
    /// Our MSS option. Only a classic-mode client that completes the handshake ever sees a
    /// consequence of it (how big its first segments may be before our RST), so any sane value works.
    pub mss: u16,
    pub ttl: u8,
    /// Zero by default: every handshake we answer ends in a RST (the client's or ours), so a
    /// client has no reason to send data on it, and a zero window tells it not to.
    pub window: u16,
    /// Period of the cookie time counter; a cookie is good for one to two periods.
    pub counter_period_s: u32,
    /// Sources, for the whole box: every worker shares one allowlist.
    pub allowlist_capacity: u32,
    pub allowlist_ttl_s: u32,
    /// Connections opened by protected hosts, for the whole box (see the module docs).
    pub outbound_capacity: u32,
    /// Idle time (no inbound packet of the connection) after which it is forgotten.
    pub outbound_ttl_s: u32,
    /// 0 or at least `counter_period_s`, so scheduled rotation never shortens a cookie's life
    /// below one counter period.
    pub rotate_every_s: u32,
    pub non_tcp: NonTcpPolicy,
    /// A fleet's shared key (see the type's docs); `None`: a random secret per box.
    pub shared_key_file: Option<PathBuf>,
    /// Proxy mode: proxied connections per worker (fixed memory, about 100 bytes each).
    pub proxy_capacity: u32,
    /// Proxy mode: idle time (no packet either way) after which a connection is forgotten.
    pub proxy_idle_s: u32,
    /// Proxy mode: the window scale our SYN-ACK offers clients. Set it to the servers' own
    /// (Linux: 7 with default buffers); when a server's differs, windows are rescaled.
    pub proxy_wscale: u8,
}

/// Upper bound on `protected`: beyond this a linear scan per packet is the wrong structure.
pub const MAX_PROTECTED: usize = 64;
/// Upper bound on `allowlist_capacity` and `outbound_capacity` (16 bytes per slot: 64 MiB
/// for the box at the limit).
pub const MAX_ALLOWLIST: u32 = 1 << 22;

impl Default for SynCookieConfig {
    fn default() -> Self {
        SynCookieConfig {
            protected: Vec::new(),
            mode: Mode::Auth,
            mss: 1460,
            ttl: 64,
            window: 0,
            counter_period_s: 64,
            allowlist_capacity: 65536,
            allowlist_ttl_s: 300,
            outbound_capacity: 65536,
            outbound_ttl_s: 300,
            rotate_every_s: 3600,
            non_tcp: NonTcpPolicy::default(),
            shared_key_file: None,
            proxy_capacity: 65536,
            proxy_idle_s: 300,
            proxy_wscale: 7,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    #[error("syncookie.{field}: {problem}")]
    Invalid {
        field: &'static str,
        problem: String,
    },
}

fn invalid(field: &'static str, problem: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        field,
        problem: problem.into(),
    }
}

/// How the TSC maps onto the wall clock, measured once at start-up (the packet path makes no
/// syscalls, so it cannot ask the time): the TSC read at `unix_ns_at_start` nanoseconds after
/// the Unix epoch, and the TSC frequency. Given to a stage (with a fleet's shared key), it puts
/// the cookie time counter and the secret generation on wall-clock multiples of their periods,
/// the same instants on every box whose clock is right.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WallClock {
    pub tsc_at_start: u64,
    pub unix_ns_at_start: u64,
    pub tsc_hz: u64,
}

impl WallClock {
    /// Whether the mapping is usable: a non-zero TSC rate, and the wall clock in TSC ticks
    /// fits 64 bits (until about 2086 at 5 GHz).
    pub fn check(&self) -> Result<(), ConfigError> {
        if self.tsc_hz == 0 {
            return Err(invalid("tsc_hz", "must be non-zero"));
        }
        self.offset().map(|_| ())
    }

    /// What to add (wrapping) to a TSC reading to get the wall clock in TSC ticks since the
    /// Unix epoch: one addition per packet instead of a 128-bit conversion.
    fn offset(&self) -> Result<u64, ConfigError> {
        let epoch_ticks =
            u128::from(self.unix_ns_at_start) * u128::from(self.tsc_hz) / 1_000_000_000;
        let epoch_ticks = u64::try_from(epoch_ticks).map_err(|_| {
            invalid(
                "shared_key_file",
                format!(
                    "the wall clock ({} ns) in ticks of a {} Hz TSC does not fit 64 bits",
                    self.unix_ns_at_start, self.tsc_hz
                ),
            )
        })?;
        Ok(epoch_ticks.wrapping_sub(self.tsc_at_start))
    }
}

/// The wall clock's offset from the TSC (in TSC ticks), shared by every worker's stage of a
/// box and re-measured by the control plane while it runs: the TSC rate DPDK reports is only
/// as exact as its calibration (1 ppm is 0.09 s a day), and NTP may step the clock, so a
/// mapping measured only at start-up would drift away from the other boxes'.
#[derive(Clone, Debug)]
pub struct ClockSync {
    offset: Arc<AtomicU64>,
    /// The TSC of the first measurement: where a new stage takes its first generation from.
    start_tsc: u64,
    tsc_hz: u64,
}

impl ClockSync {
    pub fn new(wall: WallClock) -> Result<ClockSync, ConfigError> {
        wall.check()?;
        Ok(ClockSync {
            offset: Arc::new(AtomicU64::new(wall.offset()?)),
            start_tsc: wall.tsc_at_start,
            tsc_hz: wall.tsc_hz,
        })
    }

    #[inline]
    fn offset(&self) -> u64 {
        self.offset.load(Ordering::Relaxed)
    }

    /// Re-measures: `tsc` was read at `unix_ns`. Every stage sees the new offset from its next
    /// packet on. Returns the correction in nanoseconds (positive: the wall clock ran ahead
    /// of the TSC's idea of it), for the operator log.
    pub fn update(&self, tsc: u64, unix_ns: u64) -> Result<i64, ConfigError> {
        let new = WallClock {
            tsc_at_start: tsc,
            unix_ns_at_start: unix_ns,
            tsc_hz: self.tsc_hz,
        }
        .offset()?;
        let old = self.offset.swap(new, Ordering::Relaxed);
        let ticks = new.wrapping_sub(old) as i64;
        Ok((i128::from(ticks) * 1_000_000_000 / i128::from(self.tsc_hz)) as i64)
    }

    /// The wall clock (ns since the Unix epoch) this mapping gives for `tsc`, to the tick.
    pub fn unix_ns(&self, tsc: u64) -> u64 {
        let ticks = tsc.wrapping_add(self.offset());
        (u128::from(ticks) * 1_000_000_000 / u128::from(self.tsc_hz)) as u64
    }
}

/// Per-stage counters, plain fields so the data path can copy them out cheaply.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counters {
    /// SYNs answered with a SYN-ACK.
    pub syn_answered: u64,
    /// Auth-mode SYNs answered classic-style because the cookie was an acceptable ACK.
    pub auth_fallback_classic: u64,
    /// Client RSTs whose cookie validated (auth mode).
    pub rst_validated: u64,
    /// Final ACKs whose cookie validated (answered with a RST).
    pub ack_validated: u64,
    pub cookie_invalid: u64,
    /// Packets dropped as [`DropReason::Unauthenticated`].
    pub unauthenticated: u64,
    /// Packets to protected prefixes the allowlist let through: TCP, and the protocols
    /// `non_tcp` drops (a protocol it passes is never looked up).
    pub allowlist_hits: u64,
    /// Live allowlist entries pushed out by a newly authenticated source.
    pub allowlist_evictions: u64,
    /// Secret rotations, scheduled and commanded.
    pub rotations: u64,
    /// Connections protected hosts opened to the outside, newly recorded.
    pub outbound_tracked: u64,
    /// Inbound packets passed as return traffic of such a connection (TCP, and the protocols
    /// `non_tcp` drops).
    pub outbound_return: u64,
    /// Proxy mode: cookie ACKs that opened a connection to the server (an entry).
    pub proxy_opened: u64,
    /// Proxy mode: server SYN-ACKs that completed a proxied connection.
    pub proxy_established: u64,
    /// Proxy mode: entries removed by FIN/RST.
    pub proxy_closed: u64,
    /// Proxy mode: entries reclaimed after `proxy_idle_s` without a packet.
    pub proxy_idle_expired: u64,
    /// Proxy mode: SYNs answered auth-style because their table bucket was full.
    pub proxy_full_auth: u64,
    /// Proxy mode: valid cookie ACKs answered with a RST (classic) because the bucket
    /// filled up after their SYN; the source is allowlisted and reconnects directly.
    pub proxy_full_reset: u64,
    /// Proxy mode: packets (SYNs to servers, window updates to clients) queued for the
    /// data path to send besides a verdict.
    pub proxy_emitted: u64,
    /// Proxy mode: such packets that could not be built or sent.
    pub proxy_emit_failed: u64,
    /// Proxy mode: SYNs sent to a server again (the client's ACK or probe came again before
    /// the server answered).
    pub proxy_syn_resent: u64,
    /// Proxy mode: server packets of a connection still waiting for its SYN-ACK that were
    /// not one (dropped as [`DropReason::AuthHandshake`]).
    pub proxy_unexpected: u64,
    /// Proxy mode: entries in use now, summed over workers (a gauge, not a count).
    pub proxy_active: u64,
    /// Proxy mode: the tables' capacity, summed over workers (a gauge).
    pub proxy_capacity: u64,
}

/// Snapshot for the control plane.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Status {
    pub mode: Mode,
    /// The cookie time counter at the TSC given to [`SynCookieStage::status`].
    pub time_counter: u64,
    /// How many times the secret has rotated since start.
    pub secret_generation: u64,
    pub allowlist_capacity: usize,
    /// Slots in use, counting expired entries not yet reclaimed.
    pub allowlist_occupied: usize,
    pub counters: Counters,
}

/// One core's SYN-cookie stage.
pub struct SynCookieStage {
    protected: Protected,
    mode: Mode,
    mss: u16,
    ttl: u8,
    window: u16,
    non_tcp: NonTcpPolicy,
    ticks_per_counter: u64,
    rotate_ticks: Option<u64>,
    /// The rotation period slot (TSC / period) of the last scheduled rotation; set by the first
    /// packet, since construction has no clock.
    rotation_slot: Option<u64>,
    /// The epoch from which [`SynCookieStage::scheduled_rotation`] has something to decide (the
    /// start of the slot after `rotation_slot`; 0 before the first packet, `u64::MAX` with no
    /// schedule): one comparison per packet instead of a division.
    rotation_due: u64,
    /// The cookie time counter's current period, [start, end) in epoch ticks, and its value:
    /// recomputed (one division) only when the epoch leaves it.
    counter_span: (u64, u64, u64),
    /// In lockstep (a fleet's shared key): the wall clock's offset from the TSC, added to the
    /// TSC for the cookie counter and the rotation slot, and the generation is the rotation
    /// slot itself rather than a count of rotations since start. `None`: TSC time, as always.
    clock: Option<ClockSync>,
    jar: CookieJar,
    allowlist: Arc<Allowlist>,
    outbound: Arc<Outbound>,
    counters: Counters,
    /// Proxy mode: this worker's connection table (symmetric RSS brings both directions of a
    /// connection to one worker).
    proxy: Option<proxy::Table>,
    proxy_wscale: u8,
    /// The TSC of the packet being judged (for helpers not handed it).
    last_tsc: u64,
    /// Milliseconds per TSC tick times 2^64: the clock of our SYN-ACKs' TSvals.
    ms_per_tick_q64: u128,
    emit: crate::Emit,
}

/// The state every worker's stage shares: the allowlist and the outbound connections. Built
/// once per policy by [`Shared::new`], handed to each worker's [`SynCookieStage::with_shared`].
#[derive(Clone)]
pub struct Shared {
    allowlist: Arc<Allowlist>,
    outbound: Arc<Outbound>,
}

impl Shared {
    /// Allocates (and touches) both tables. Call after [`SynCookieStage::new`] validated `cfg`.
    pub fn new(cfg: &SynCookieConfig, secret: [u8; 16], tsc_hz: u64) -> Shared {
        let ticks = |s: u32| tsc_hz.saturating_mul(u64::from(s));
        // Each table's bucket hash gets its own key, so its outputs reveal nothing about cookies.
        let key = |label: &[u8]| {
            siphasher::sip128::SipHasher24::new_with_key(&secret)
                .hash(label)
                .as_bytes()
        };
        Shared {
            allowlist: Arc::new(Allowlist::new(
                cfg.allowlist_capacity as usize,
                ticks(cfg.allowlist_ttl_s),
                key(b"scrubd/allowlist"),
            )),
            outbound: Arc::new(Outbound::new(
                cfg.outbound_capacity as usize,
                ticks(cfg.outbound_ttl_s),
                key(b"scrubd/outbound"),
            )),
        }
    }
}

/// The protected prefixes as (network, mask) pairs per family, so the per-packet test is a mask
/// and a compare on the address as a number, with no family match per prefix.
struct Protected {
    v4: Vec<(u32, u32)>,
    v6: Vec<(u128, u128)>,
}

impl Protected {
    fn new(prefixes: &[Prefix]) -> Protected {
        let mut p = Protected {
            v4: Vec::new(),
            v6: Vec::new(),
        };
        for x in prefixes {
            match x.addr() {
                IpAddr::V4(a) => p.v4.push((u32::from(a), mask_v4(x.prefix_len()))),
                IpAddr::V6(a) => p.v6.push((u128::from(a), mask_v6(x.prefix_len()))),
            }
        }
        p
    }

    #[inline]
    fn contains(&self, addr: IpAddr) -> bool {
        match addr {
            IpAddr::V4(a) => {
                let a = u32::from(a);
                self.v4.iter().any(|&(net, mask)| a & mask == net)
            }
            IpAddr::V6(a) => {
                let a = u128::from(a);
                self.v6.iter().any(|&(net, mask)| a & mask == net)
            }
        }
    }
}

/// Sources we never send a SYN-ACK to: replying to them would be reflecting at a broadcast or
/// multicast group, at ourselves, or at nobody.
fn unanswerable(src: IpAddr, dst: IpAddr) -> bool {
    if src == dst {
        return true;
    }
    match src {
        // On the address as a number: unspecified, multicast (224/4), loopback (127/8),
        // limited broadcast — `Ipv4Addr`'s predicates, without the octet shuffling.
        IpAddr::V4(s) => {
            let s = u32::from(s);
            s == 0 || s >> 28 == 0xe || s >> 24 == 127 || s == u32::MAX
        }
        IpAddr::V6(s) => s.is_unspecified() || s.is_multicast() || s.is_loopback(),
    }
}

/// Whether `ack` would be accepted by a client in SYN-SENT that sent ISN `isn` and `data` bytes
/// with its SYN: ISN < ack <= ISN + 1 + data (mod 2^32).
fn acceptable_ack(ack: u32, isn: u32, data: u16) -> bool {
    let d = ack.wrapping_sub(isn);
    d >= 1 && d <= 1 + u32::from(data)
}

impl SynCookieStage {
    /// `secret` is the master secret (random, from the daemon at start-up; every core may get
    /// the same one); `tsc_hz` is the TSC frequency that turns `Meta::tsc` into time.
    /// Checks `cfg` without allocating anything (the config check before workers start).
    pub fn validate_config(cfg: &SynCookieConfig, tsc_hz: u64) -> Result<(), ConfigError> {
        Self::validate(cfg, tsc_hz).map(|_| ())
    }

    /// Checks `cfg` and derives the TSC periods: (ticks per cookie counter, rotation period).
    fn validate(cfg: &SynCookieConfig, tsc_hz: u64) -> Result<(u64, Option<u64>), ConfigError> {
        if tsc_hz == 0 {
            return Err(invalid("tsc_hz", "must be non-zero"));
        }
        if cfg.protected.len() > MAX_PROTECTED {
            return Err(invalid(
                "protected",
                format!(
                    "{} prefixes given, at most {MAX_PROTECTED}",
                    cfg.protected.len()
                ),
            ));
        }
        if cfg.mss < 536 {
            return Err(invalid(
                "mss",
                format!("{} is below 536, the minimum every host accepts", cfg.mss),
            ));
        }
        if cfg.ttl == 0 {
            return Err(invalid("ttl", "must be at least 1"));
        }
        if cfg.counter_period_s == 0 {
            return Err(invalid("counter_period_s", "must be at least 1"));
        }
        if cfg.allowlist_capacity == 0 || cfg.allowlist_capacity > MAX_ALLOWLIST {
            return Err(invalid(
                "allowlist_capacity",
                format!("{} is outside 1..={MAX_ALLOWLIST}", cfg.allowlist_capacity),
            ));
        }
        if cfg.allowlist_ttl_s == 0 {
            return Err(invalid("allowlist_ttl_s", "must be at least 1"));
        }
        if cfg.outbound_capacity == 0 || cfg.outbound_capacity > MAX_ALLOWLIST {
            return Err(invalid(
                "outbound_capacity",
                format!("{} is outside 1..={MAX_ALLOWLIST}", cfg.outbound_capacity),
            ));
        }
        if cfg.outbound_ttl_s == 0 {
            return Err(invalid("outbound_ttl_s", "must be at least 1"));
        }
        if cfg.proxy_capacity == 0 || cfg.proxy_capacity > proxy::MAX_CAPACITY {
            return Err(invalid(
                "proxy_capacity",
                format!(
                    "{} is outside 1..={}",
                    cfg.proxy_capacity,
                    proxy::MAX_CAPACITY
                ),
            ));
        }
        if cfg.proxy_idle_s == 0 {
            return Err(invalid("proxy_idle_s", "must be at least 1"));
        }
        if cfg.proxy_wscale > 14 {
            return Err(invalid(
                "proxy_wscale",
                format!(
                    "{} is above 14, the largest window scale (RFC 7323)",
                    cfg.proxy_wscale
                ),
            ));
        }
        if cfg.rotate_every_s != 0 && cfg.rotate_every_s < cfg.counter_period_s {
            return Err(invalid(
                "rotate_every_s",
                format!(
                    "{} is shorter than counter_period_s ({}); use 0 (never) or at least that",
                    cfg.rotate_every_s, cfg.counter_period_s
                ),
            ));
        }
        let ticks = |field: &'static str, secs: u32| {
            tsc_hz
                .checked_mul(u64::from(secs))
                .ok_or_else(|| invalid(field, format!("{secs} s overflows the TSC at {tsc_hz} Hz")))
        };
        let ticks_per_counter = ticks("counter_period_s", cfg.counter_period_s)?;
        ticks("allowlist_ttl_s", cfg.allowlist_ttl_s)?;
        ticks("outbound_ttl_s", cfg.outbound_ttl_s)?;
        ticks("proxy_idle_s", cfg.proxy_idle_s)?;
        let rotate_ticks = match cfg.rotate_every_s {
            0 => None,
            s => Some(ticks("rotate_every_s", s)?),
        };
        Ok((ticks_per_counter, rotate_ticks))
    }

    /// A stage with tables of its own: for a single worker and for tests. Workers of one
    /// policy share theirs through [`SynCookieStage::with_shared`].
    pub fn new(cfg: &SynCookieConfig, secret: [u8; 16], tsc_hz: u64) -> Result<Self, ConfigError> {
        Self::validate(cfg, tsc_hz)?;
        Self::with_shared(cfg, secret, tsc_hz, &Shared::new(cfg, secret, tsc_hz))
    }

    /// A worker's stage over the box's shared tables (`shared` from [`Shared::new`] with the
    /// same config and secret).
    pub fn with_shared(
        cfg: &SynCookieConfig,
        secret: [u8; 16],
        tsc_hz: u64,
        shared: &Shared,
    ) -> Result<Self, ConfigError> {
        let (ticks_per_counter, rotate_ticks) = Self::validate(cfg, tsc_hz)?;
        Ok(SynCookieStage {
            protected: Protected::new(&cfg.protected),
            mode: cfg.mode,
            mss: cfg.mss,
            ttl: cfg.ttl,
            window: cfg.window,
            non_tcp: cfg.non_tcp,
            ticks_per_counter,
            rotate_ticks,
            rotation_slot: None,
            rotation_due: if rotate_ticks.is_some() { 0 } else { u64::MAX },
            counter_span: (1, 0, 0),
            clock: None,
            jar: CookieJar::new(secret),
            allowlist: Arc::clone(&shared.allowlist),
            outbound: Arc::clone(&shared.outbound),
            counters: Counters::default(),
            proxy: (cfg.mode == Mode::Proxy).then(|| {
                let key = siphasher::sip128::SipHasher24::new_with_key(&secret)
                    .hash(b"scrubd/proxy")
                    .as_u128() as u64;
                proxy::Table::new(
                    cfg.proxy_capacity as usize,
                    tsc_hz.saturating_mul(u64::from(cfg.proxy_idle_s)),
                    key,
                )
            }),
            proxy_wscale: cfg.proxy_wscale,
            last_tsc: 0,
            ms_per_tick_q64: (1000u128 << 64) / u128::from(tsc_hz.max(1000)),
            emit: crate::Emit::default(),
        })
    }

    /// Puts this stage in lockstep with the wall clock (a fleet's shared key, `secret` being
    /// the master derived from it): the cookie counter and the generation become wall-clock
    /// slots, and the secrets are those of the current slot and the one before, as on every
    /// other box with the same key and a correct clock.
    pub fn with_wall_clock(self, wall: WallClock) -> Result<Self, ConfigError> {
        Ok(self.with_clock(ClockSync::new(wall)?))
    }

    /// [`SynCookieStage::with_wall_clock`] over a mapping shared with the other workers, which
    /// the control plane re-measures while the box runs ([`ClockSync::update`]).
    pub fn with_clock(mut self, clock: ClockSync) -> Self {
        let start = clock.start_tsc.wrapping_add(clock.offset());
        self.clock = Some(clock);
        if let Some(period) = self.rotate_ticks {
            let slot = start / period;
            self.jar.set_generation(slot);
            self.rotation_slot = Some(slot);
            // The next packet re-derives the due time from this slot.
            self.rotation_due = 0;
        }
        self
    }

    /// The time the cookie counter and the rotation slot are computed from: the TSC, or in
    /// lockstep the wall clock in TSC ticks (one relaxed load of a line written about once
    /// a minute).
    #[inline]
    fn epoch(&self, tsc: u64) -> u64 {
        match &self.clock {
            None => tsc,
            Some(c) => tsc.wrapping_add(c.offset()),
        }
    }

    /// Whether the secrets follow the wall clock (commanded rotation would break lockstep).
    pub fn lockstep(&self) -> bool {
        self.clock.is_some()
    }

    /// The counters, with the proxy table's gauges filled in.
    pub fn counters(&self) -> Counters {
        let mut c = self.counters;
        if let Some(t) = &self.proxy {
            c.proxy_active = t.live() as u64;
            c.proxy_capacity = t.capacity() as u64;
            c.proxy_idle_expired = t.reclaimed();
        }
        c
    }

    /// See [`crate::Pipeline::take_emitted`].
    #[inline]
    pub fn take_emitted(&mut self) -> Option<(&[u8], crate::EmitOut)> {
        self.emit.take()
    }

    /// See [`crate::Pipeline::emit_failed`].
    pub fn emit_failed(&mut self) {
        self.counters.proxy_emit_failed += 1;
    }

    pub fn status(&self, tsc: u64) -> Status {
        Status {
            mode: self.mode,
            time_counter: self.epoch(tsc) / self.ticks_per_counter,
            secret_generation: self.jar.generation(),
            allowlist_capacity: self.allowlist.capacity(),
            allowlist_occupied: self.allowlist.occupied(),
            counters: self.counters(),
        }
    }

    /// Rotates the secret now (the control plane's command). Cookies issued before stay valid
    /// until the next rotation; those from before the previous rotation stop validating.
    /// In lockstep (a fleet's shared key) it does nothing: one box rotating alone would stop
    /// its cookies validating on the others, so the control plane refuses the command and the
    /// stage ignores it should it arrive anyway.
    pub fn rotate(&mut self) {
        if self.lockstep() {
            return;
        }
        self.jar.rotate();
        self.counters.rotations += 1;
    }

    #[inline]
    fn is_protected(&self, addr: IpAddr) -> bool {
        self.protected.contains(addr)
    }

    /// The cookie time counter at `epoch`: the cached one while the epoch stays in its period
    /// (either way: the clock offset may be corrected backwards), else one division.
    #[inline]
    fn counter(&mut self, epoch: u64) -> u64 {
        let (start, end, counter) = self.counter_span;
        if epoch >= start && epoch < end {
            return counter;
        }
        let counter = epoch / self.ticks_per_counter;
        let start = counter * self.ticks_per_counter;
        self.counter_span = (start, start.saturating_add(self.ticks_per_counter), counter);
        counter
    }

    /// Outbound: a protected host opening a connection. Records it so the answers pass.
    fn track_outbound(&mut self, ip: &IpHeaders, now: u64) {
        if ip.frag == Frag::Later || !self.is_protected(ip.src) {
            return;
        }
        let (sport, dport, proto) = match ip.transport {
            Transport::Tcp(t) if t.flags & (TcpInfo::SYN | TcpInfo::ACK) == TcpInfo::SYN => {
                (t.sport, t.dport, ip_protocol::TCP)
            }
            // UDP answers are only ever stopped when non-TCP traffic must authenticate.
            Transport::Udp { sport, dport } if self.non_tcp.udp == NonTcpAction::Drop => {
                (sport, dport, ip_protocol::UDP)
            }
            _ => return,
        };
        let conn = ConnKey {
            local: ip.src,
            local_port: sport,
            remote: ip.dst,
            remote_port: dport,
            proto,
        };
        if matches!(
            self.outbound.record(&conn, now),
            Inserted::New | Inserted::Evicted
        ) {
            self.counters.outbound_tracked += 1;
        }
    }

    /// Inbound, unauthenticated source: whether this packet answers a connection a protected
    /// host opened. A pure SYN never does (no lookup, so SYN floods do not pay for it).
    #[inline]
    fn is_outbound_return(&self, ip: &IpHeaders, now: u64) -> bool {
        if ip.frag == Frag::Later || self.outbound.is_empty() {
            return false;
        }
        let (sport, dport, proto) = match ip.transport {
            Transport::Tcp(t) if t.flags & (TcpInfo::SYN | TcpInfo::ACK) != TcpInfo::SYN => {
                (t.sport, t.dport, ip_protocol::TCP)
            }
            // Only reached under `non_tcp.udp = "drop"`: `process` passes a protocol its policy
            // passes before any lookup.
            Transport::Udp { sport, dport } => (sport, dport, ip_protocol::UDP),
            _ => return false,
        };
        self.outbound.check(
            &ConnKey {
                local: ip.dst,
                local_port: dport,
                remote: ip.src,
                remote_port: sport,
                proto,
            },
            now,
        )
    }

    /// Called when the epoch reaches `rotation_due`, that is when the slot may have moved on.
    #[cold]
    #[inline(never)]
    fn scheduled_rotation(&mut self, epoch: u64) {
        let Some(period) = self.rotate_ticks else {
            self.rotation_due = u64::MAX;
            return;
        };
        // Rotations fall on whole multiples of the period of the TSC, which every core shares,
        // so all workers move to the next generation at the same instant (each at its first
        // packet after it) and a cookie one worker issues validates on any other. In lockstep
        // the clock is the wall clock (the TSC plus the start-up offset), and the generation is
        // the slot itself, so every box of the fleet agrees on it.
        let slot = epoch / period;
        match self.rotation_slot {
            None => self.rotation_slot = Some(slot),
            Some(last) if slot > last && self.clock.is_some() => {
                self.jar.set_generation(slot);
                self.counters.rotations += 1;
                self.rotation_slot = Some(slot);
            }
            Some(last) if slot > last => {
                // One rotation however long we were idle: cookies from before are long dead
                // by the time counter anyway.
                self.rotate();
                self.rotation_slot = Some(slot);
            }
            Some(_) => {}
        }
        let last = self.rotation_slot.unwrap_or(slot);
        self.rotation_due = last.saturating_add(1).saturating_mul(period);
    }

    fn drop(&mut self, reason: DropReason) -> StageResult {
        match reason {
            DropReason::Unauthenticated => self.counters.unauthenticated += 1,
            DropReason::CookieInvalid => self.counters.cookie_invalid += 1,
            _ => {}
        }
        StageResult::Done(Verdict::Drop(reason))
    }

    fn authenticate(&mut self, src: IpAddr, now: u64) {
        if self.allowlist.insert(src, now) == Inserted::Evicted {
            self.counters.allowlist_evictions += 1;
        }
    }

    /// Decides one packet. Rewrites `frame` only when the verdict is [`Verdict::Reply`].
    ///
    /// Inbound packets to a protected destination must come from an authenticated source (or
    /// belong to a connection a protected host opened); outbound packets always continue, and
    /// a protected host's connection attempts are recorded.
    pub fn process(&mut self, frame: &mut [u8], hdr: &Headers, meta: &Meta) -> StageResult {
        let Some(ip) = hdr.ip() else {
            return StageResult::Continue;
        };
        let now = meta.tsc;
        self.last_tsc = now;
        if meta.dir == Direction::Outbound {
            self.track_outbound(ip, now);
            if self.proxy.is_some() {
                if let Some(r) = self.proxy_from_server(frame, hdr.l3_off, ip, now) {
                    return r;
                }
            }
            return StageResult::Continue;
        }
        if !self.is_protected(ip.dst) {
            return StageResult::Continue;
        }
        let epoch = self.epoch(now);
        if epoch >= self.rotation_due {
            self.scheduled_rotation(epoch);
        }
        // A protocol this policy passes unauthenticated passes whoever sends it: no lookup
        // (UDP reflection toward a protected prefix costs the stage a few instructions, not
        // an allowlist hash per packet).
        let non_tcp = match ip.proto {
            ip_protocol::TCP => None,
            ip_protocol::UDP => Some(self.non_tcp.udp),
            ip_protocol::ICMP | ip_protocol::ICMPV6 => Some(self.non_tcp.icmp),
            _ => Some(self.non_tcp.other),
        };
        if non_tcp == Some(NonTcpAction::Pass) {
            return StageResult::Continue;
        }
        if self.proxy.is_some() {
            if let Some(r) = self.proxy_from_client(frame, hdr.l3_off, ip, now) {
                return r;
            }
        }
        if self.allowlist.check(ip.src, now) {
            self.counters.allowlist_hits += 1;
            return StageResult::Continue;
        }
        if self.is_outbound_return(ip, now) {
            self.counters.outbound_return += 1;
            return StageResult::Continue;
        }
        match non_tcp {
            None => self.unauthenticated_tcp(frame, hdr.l3_off, ip, now, epoch),
            Some(NonTcpAction::Pass) => StageResult::Continue,
            Some(NonTcpAction::Drop) => self.drop(DropReason::Unauthenticated),
        }
    }

    fn unauthenticated_tcp(
        &mut self,
        frame: &mut [u8],
        l3_off: u16,
        ip: &IpHeaders,
        now: u64,
        epoch: u64,
    ) -> StageResult {
        // A fragmented SYN or handshake segment is never legitimate; without the TCP header
        // (later fragments) there is nothing to authenticate either.
        let tcp = match (ip.frag, &ip.transport) {
            (Frag::None, Transport::Tcp(t)) => t,
            _ => return self.drop(DropReason::Unauthenticated),
        };
        let flow = Flow {
            client: ip.src,
            server: ip.dst,
            client_port: tcp.sport,
            server_port: tcp.dport,
        };
        let counter = self.counter(epoch);
        let f = tcp.flags;
        let has = |bit: u8| f & bit != 0;

        if has(TcpInfo::RST) {
            // The client's answer to our unacceptable ACK: its sequence number is our ack.
            if self.jar.validate(&flow, tcp.seq, counter).is_none() {
                return self.drop(DropReason::CookieInvalid);
            }
            self.authenticate(ip.src, now);
            self.counters.rst_validated += 1;
            return StageResult::Done(Verdict::Drop(DropReason::AuthHandshake));
        }
        if has(TcpInfo::SYN) && !has(TcpInfo::ACK) && !has(TcpInfo::FIN) {
            return self.answer_syn(frame, l3_off, ip, tcp, &flow, counter);
        }
        if has(TcpInfo::ACK) && !has(TcpInfo::SYN) {
            // The final ACK of a completed handshake acknowledges our ISN + 1.
            let Some(valid) = self.jar.validate(&flow, tcp.ack.wrapping_sub(1), counter) else {
                return self.drop(DropReason::CookieInvalid);
            };
            if self.mode == Mode::Proxy {
                if let Some(r) = self.proxy_open(frame, l3_off, ip, tcp, valid, now) {
                    return r;
                }
                // No room in the table: the classic answer below, and the source is
                // allowlisted, so its next SYN goes straight to the server.
                self.counters.proxy_full_reset += 1;
            }
            let seg = Segment {
                // RFC 9293: the reset for a segment with ACK takes its sequence number from that
                // ACK, which is exactly the client's RCV.NXT, so the client accepts it.
                seq: tcp.ack,
                ack: 0,
                flags: TcpInfo::RST,
                window: 0,
                mss: None,
            };
            let Some(len) = reply::rewrite(frame, l3_off, ip, tcp, self.ttl, &seg) else {
                return StageResult::Done(Verdict::Drop(DropReason::Malformed(
                    Malformed::TcpTruncated,
                )));
            };
            self.authenticate(ip.src, now);
            self.counters.ack_validated += 1;
            return StageResult::Done(Verdict::Reply { len });
        }
        self.drop(DropReason::Unauthenticated)
    }

    fn answer_syn(
        &mut self,
        frame: &mut [u8],
        l3_off: u16,
        ip: &IpHeaders,
        tcp: &TcpInfo,
        flow: &Flow,
        counter: u64,
    ) -> StageResult {
        if unanswerable(ip.src, ip.dst) {
            return self.drop(DropReason::Unauthenticated);
        }
        let cookie = self.jar.issue(flow, counter, mss_index(tcp.options.mss));
        let client_next = tcp.seq.wrapping_add(1);
        let mut fallback = false;
        let mut mode = self.mode;
        if mode == Mode::Proxy {
            let key = proxy::Key::new(ip.src, ip.dst, tcp.sport, tcp.dport);
            let now = self.last_tsc;
            let (room, freed) = self
                .proxy
                .as_mut()
                .map_or((false, false), |t| t.prepare(&key, now));
            if freed {
                // A new connection on the ports of an entry that outlived its own (its
                // last ACK was lost, say): the old one is forgotten.
                self.counters.proxy_closed += 1;
            }
            if room {
                return self.proxy_answer_syn(frame, l3_off, ip, tcp, cookie);
            }
            // Table full where this connection would go: authenticate it the auth way
            // (the source is then allowlisted and reaches the server directly).
            self.counters.proxy_full_auth += 1;
            mode = Mode::Auth;
        }
        let ack = match mode {
            Mode::Proxy | Mode::Classic => client_next,
            Mode::Auth if acceptable_ack(cookie, tcp.seq, ip.payload_len) => {
                fallback = true;
                client_next
            }
            Mode::Auth => cookie,
        };
        let seg = Segment {
            seq: cookie,
            ack,
            flags: TcpInfo::SYN | TcpInfo::ACK,
            window: self.window,
            mss: Some(self.mss),
        };
        let Some(len) = reply::rewrite(frame, l3_off, ip, tcp, self.ttl, &seg) else {
            return StageResult::Done(Verdict::Drop(DropReason::Malformed(
                Malformed::TcpTruncated,
            )));
        };
        self.counters.syn_answered += 1;
        if fallback {
            self.counters.auth_fallback_classic += 1;
        }
        StageResult::Done(Verdict::Reply { len })
    }
}
