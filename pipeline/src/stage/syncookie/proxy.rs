//! Full SYN proxy (`mode = "proxy"`): the per-core connection table, the sequence and
//! timestamp translation between the two halves of a proxied connection, and the segment
//! builder for the packets the proxy makes up (the SYN to the server, the ACK that completes
//! the server's handshake, the window update to the client).
//!
//! # The exchange (as netfilter's SYNPROXY does it)
//! ```text
//! client                      scrubd                        server
//!   SYN(isn) ------------------>
//!   <--- SYN-ACK(seq=cookie, ack=isn+1, window 0)          (no state)
//!   ACK(ack=cookie+1) --------->  cookie valid: entry
//!                                 SYN(isn, options from the cookie) ------>
//!                                 <------------- SYN-ACK(seq=s_isn, ack=isn+1)
//!                                 ACK(isn+1, s_isn+1) ---------------------> (Reply)
//!   <--- ACK(seq=cookie+1, window = server's)             (emitted)
//!   data, ack + delta  -------------------------------------------------->
//!   <--------------------------------------------------- data, seq - delta
//! ```
//! `delta` = s_isn − cookie. The client's sequence space is the server's (the server's SYN
//! carries the client's ISN), so only the server's sequence numbers move: its `seq` on the
//! way out, the client's `ack` and SACK blocks on the way in. When both sides use timestamps,
//! the server's TSval runs on its own clock, so `tsoff` = server TSval − ours is taken off its
//! TSval on the way out and added to the client's TSecr on the way in.
//!
//! The window 0 of our SYN-ACK keeps the client from sending data before the server side
//! exists; the emitted window update opens it. Data a client sends anyway (with its final
//! ACK, or as a zero-window probe) before then is dropped and, never acknowledged, re-sent by
//! the client once the window opens.
//!
//! # State and its limits
//! An entry is made only when a cookie ACK validates, so spoofed SYNs and blind ACKs never
//! create one. Each worker has its own [`Table`] (symmetric RSS brings both directions of a
//! connection to the same worker), allocated at start. A SYN whose bucket is full is answered
//! the auth way instead (`proxy_full_auth`: the client resets, is allowlisted, and its next
//! SYN reaches the server directly); a cookie ACK that meets a bucket filled since its SYN
//! gets the classic RST and allowlists the source (`proxy_full_reset`). Entries go on RST,
//! after both FINs and the last ACK, on a new SYN for the same ports, and after the idle
//! timeout (found idle by a lookup, or by the sweep that looks at two slots per proxied
//! packet, so the table drains without a timer).
//!
//! # Options
//! Only the MSS survives in the cookie itself. As Linux syncookies do, the client's window
//! scale and SACK-permitted ride in the low 6 bits of our SYN-ACK's TSval, which the client
//! echoes in the TSecr of its ACK; a client without timestamps therefore gets neither window
//! scaling nor SACK (our SYN-ACK offers none, and the SYN to the server asks for none, so both
//! halves agree). Our SYN-ACK offers the configured window scale (`proxy_wscale`), which
//! should match the servers'; when the server's differs (or it declines scaling) windows are
//! rescaled on the way through, rounding down.

use super::reply::{ipv4_header, ipv6_header};
use crate::wire::{checksum, ipv4, ipv6, tcp};
use std::net::IpAddr;

/// Slots per bucket: a lookup compares at most this many tags, one cache line of them.
pub const BUCKET: usize = 16;
/// Upper bound on `proxy_capacity` (per worker).
pub const MAX_CAPACITY: u32 = 1 << 22;

/// TSval low bits that carry the client's window scale (0xf = none) and SACK-permitted.
const TS_WSCALE_MASK: u32 = 0xf;
const TS_SACK: u32 = 1 << 4;
const TS_OPT_BITS: u32 = 6;

/// A connection, always oriented from the client (the SYN's sender).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Key {
    pub client: [u8; 16],
    pub server: [u8; 16],
    pub client_port: u16,
    pub server_port: u16,
    pub v6: bool,
}

impl Key {
    pub fn new(client: IpAddr, server: IpAddr, client_port: u16, server_port: u16) -> Key {
        let bytes = |a: IpAddr| match a {
            IpAddr::V4(v4) => {
                let mut b = [0u8; 16];
                b[..4].copy_from_slice(&v4.octets());
                b
            }
            IpAddr::V6(v6) => v6.octets(),
        };
        Key {
            client: bytes(client),
            server: bytes(server),
            client_port,
            server_port,
            v6: client.is_ipv6(),
        }
    }
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum State {
    /// Our SYN is on its way to the server.
    #[default]
    SynSent,
    /// The server answered: packets are translated both ways.
    Established,
}

/// One proxied connection (about 100 bytes).
#[derive(Clone, Copy, Debug, Default)]
pub struct Conn {
    pub key: Key,
    pub state: State,
    pub client_isn: u32,
    /// Our ISN towards the client.
    pub cookie: u32,
    /// Server ISN − cookie (valid once established).
    pub delta: u32,
    /// Both halves carry timestamps and `tsoff` applies.
    pub ts: bool,
    /// Server TSval − our TSval.
    pub tsoff: u32,
    /// The TSval of our SYN-ACK (the client echoed it).
    pub our_tsval: u32,
    /// The client's latest TSval, for the segments we make up.
    pub client_tsval: u32,
    /// The client offered timestamps (it uses them on every segment).
    pub client_ts: bool,
    /// The client's window scale, when it offered scaling (and we could keep it).
    pub client_wscale: Option<u8>,
    /// Our window scale as offered to the client.
    pub our_wscale: u8,
    /// The server's window scale; `None` when it declined (or was not asked).
    pub server_wscale: Option<u8>,
    /// The client's window in its ACK, as sent (scaled by its shift).
    pub client_window: u16,
    /// The MSS the cookie kept, for our SYN.
    pub mss: u16,
    /// The client offered SACK (kept in the TSval), for our SYN.
    pub sack: bool,
    pub fin_client: bool,
    pub fin_server: bool,
    /// TSC of the last packet either way.
    pub last: u64,
}

impl Conn {
    /// The shift the server applies to the client's windows: the client's, if the server
    /// agreed to scaling, else none.
    fn server_reads_client(&self) -> u8 {
        match (self.client_wscale, self.server_wscale) {
            (Some(c), Some(_)) => c,
            _ => 0,
        }
    }

    /// Client's window field → server's window field.
    pub fn window_to_server(&self, w: u16) -> u16 {
        rescale(
            w,
            self.client_wscale.unwrap_or(0),
            self.server_reads_client(),
        )
    }

    /// Server's window field → client's window field (not for SYN-ACKs, whose window is
    /// never scaled).
    pub fn window_to_client(&self, w: u16) -> u16 {
        let from = match (self.client_wscale, self.server_wscale) {
            (Some(_), Some(s)) => s,
            _ => 0,
        };
        rescale(w, from, self.client_shift())
    }

    /// The shift the client applies to our (the server's) windows.
    pub fn client_shift(&self) -> u8 {
        if self.client_wscale.is_some() {
            self.our_wscale
        } else {
            0
        }
    }
}

/// A window field scaled by 2^`from` re-expressed in units of 2^`to`, rounded down and
/// clamped to the field: advertising a little less than the receiver has is always safe.
pub fn rescale(w: u16, from: u8, to: u8) -> u16 {
    if from == to {
        return w;
    }
    let bytes = u64::from(w) << from.min(14);
    (bytes >> to.min(14)).min(0xffff) as u16
}

/// The connection table of one worker: fixed memory, buckets of [`BUCKET`] slots, an entry
/// only for a connection whose cookie validated.
pub struct Table {
    /// 0 = free; otherwise the key's hash with the low bit set.
    tags: Vec<u32>,
    conns: Vec<Conn>,
    buckets: usize,
    hash_key: u64,
    idle_ticks: u64,
    live: usize,
    sweep_at: usize,
    /// Entries freed for idleness, ever.
    reclaimed: u64,
}

/// Why an insert failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Full;

impl Table {
    /// Room for at least `capacity` connections (rounded up to a power-of-two number of
    /// buckets); entries idle for `idle_ticks` are reclaimed.
    pub fn new(capacity: usize, idle_ticks: u64, hash_key: u64) -> Table {
        let buckets = capacity.div_ceil(BUCKET).max(1).next_power_of_two();
        Table {
            tags: vec![0; buckets * BUCKET],
            conns: vec![Conn::default(); buckets * BUCKET],
            buckets,
            hash_key,
            idle_ticks: idle_ticks.max(1),
            live: 0,
            sweep_at: 0,
            reclaimed: 0,
        }
    }

    pub fn capacity(&self) -> usize {
        self.tags.len()
    }

    /// Entries freed because they sat idle, ever (a counter).
    pub fn reclaimed(&self) -> u64 {
        self.reclaimed
    }

    /// Entries in use (idle ones count until reclaimed by a lookup or the sweep).
    pub fn live(&self) -> usize {
        self.live
    }

    fn hash(&self, k: &Key) -> u64 {
        // A keyed multiply-xor mix: entries exist only for sources that completed a
        // handshake, so an attacker cannot aim at one bucket with spoofed packets, and the
        // key keeps even real sources from choosing colliding tuples offline.
        let words = [
            u64::from_le_bytes(k.client[..8].try_into().unwrap_or_default()),
            u64::from_le_bytes(k.client[8..].try_into().unwrap_or_default()),
            u64::from_le_bytes(k.server[..8].try_into().unwrap_or_default()),
            u64::from_le_bytes(k.server[8..].try_into().unwrap_or_default()),
            u64::from(k.client_port) | u64::from(k.server_port) << 16 | u64::from(k.v6) << 32,
        ];
        let mut h = self.hash_key;
        for w in words {
            h = (h ^ w).wrapping_mul(0x9e37_79b9_7f4a_7c15);
            h ^= h >> 29;
        }
        h
    }

    fn slots(&self, h: u64) -> std::ops::Range<usize> {
        let b = (h as usize) & (self.buckets - 1);
        b * BUCKET..(b + 1) * BUCKET
    }

    fn tag(h: u64) -> u32 {
        ((h >> 32) as u32) | 1
    }

    fn expired(&self, i: usize, now: u64) -> bool {
        now.wrapping_sub(self.conns[i].last) > self.idle_ticks
    }

    /// The slot of `k`'s connection, if live at `now` (an idle one is freed and not found).
    pub fn find(&mut self, k: &Key, now: u64) -> Option<usize> {
        let h = self.hash(k);
        let tag = Self::tag(h);
        for i in self.slots(h) {
            if self.tags[i] == tag && self.conns[i].key == *k {
                if self.expired(i, now) {
                    self.remove(i);
                    self.reclaimed += 1;
                    return None;
                }
                return Some(i);
            }
        }
        None
    }

    /// Whether an insert of `k` at `now` would find a slot.
    pub fn has_room(&self, k: &Key, now: u64) -> bool {
        self.slots(self.hash(k))
            .any(|i| self.tags[i] == 0 || self.expired(i, now))
    }

    /// For a new SYN of `k`: frees an entry `k` still has (an old connection on the same
    /// ports whose end we missed) and says whether an insert would then find a slot, with
    /// one hash and one pass over the bucket. Returns (room, whether an old entry was freed).
    pub fn prepare(&mut self, k: &Key, now: u64) -> (bool, bool) {
        let h = self.hash(k);
        let tag = Self::tag(h);
        let (mut room, mut freed) = (false, false);
        for i in self.slots(h) {
            if self.tags[i] == tag && self.conns[i].key == *k {
                self.remove(i);
                freed = true;
            }
            room |= self.tags[i] == 0 || self.expired(i, now);
        }
        (room, freed)
    }

    /// Stores `c` (keyed by `c.key`) in a free or idle slot of its bucket.
    pub fn insert(&mut self, c: Conn, now: u64) -> Result<usize, Full> {
        let h = self.hash(&c.key);
        let slot = self
            .slots(h)
            .find(|&i| self.tags[i] == 0 || self.expired(i, now))
            .ok_or(Full)?;
        if self.tags[slot] == 0 {
            self.live += 1;
        } else {
            self.reclaimed += 1;
        }
        self.tags[slot] = Self::tag(h);
        self.conns[slot] = c;
        Ok(slot)
    }

    pub fn remove(&mut self, i: usize) {
        if self.tags[i] != 0 {
            self.tags[i] = 0;
            self.live -= 1;
        }
    }

    pub fn get(&mut self, i: usize) -> &mut Conn {
        &mut self.conns[i]
    }

    /// Frees idle entries among the next `n` slots, so the table drains (and `live` falls)
    /// without traffic to the idle connections. Returns how many it freed.
    pub fn sweep(&mut self, now: u64, n: usize) -> usize {
        let mut freed = 0;
        for _ in 0..n {
            let i = self.sweep_at;
            self.sweep_at = (i + 1) & (self.tags.len() - 1);
            if self.tags[i] != 0 && self.expired(i, now) {
                self.remove(i);
                self.reclaimed += 1;
                freed += 1;
            }
        }
        freed
    }
}

/// Our SYN-ACK's TSval: the clock with the client's window scale and SACK-permitted in the
/// low bits (Linux's layout: 0xf = no window scale).
pub fn encode_tsval(clock: u32, wscale: Option<u8>, sack: bool) -> u32 {
    let ws = wscale.map_or(TS_WSCALE_MASK, |w| u32::from(w.min(14)));
    (clock & !((1 << TS_OPT_BITS) - 1)) | ws | if sack { TS_SACK } else { 0 }
}

/// What [`encode_tsval`] put in the low bits: (window scale, SACK-permitted).
pub fn decode_tsval(tsval: u32) -> (Option<u8>, bool) {
    let ws = tsval & TS_WSCALE_MASK;
    let ws = (ws <= 14).then_some(ws as u8);
    (ws, tsval & TS_SACK != 0)
}

/// TCP options of a segment we make up; laid out the way Linux lays out a SYN's, so every
/// 32-bit value sits on an even offset.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Opts {
    pub mss: Option<u16>,
    pub wscale: Option<u8>,
    pub sack_permitted: bool,
    /// (TSval, TSecr)
    pub ts: Option<(u32, u32)>,
}

impl Opts {
    fn len(&self) -> usize {
        let mut n = 0;
        if self.mss.is_some() {
            n += 4;
        }
        if self.ts.is_some() {
            n += 12; // SACK-permitted (or two NOPs) and the 10-byte option
        } else if self.sack_permitted {
            n += 4;
        }
        if self.wscale.is_some() {
            n += 4;
        }
        n
    }

    fn write(&self, out: &mut [u8]) {
        let mut at = 0;
        let mut put = |b: &[u8]| {
            out[at..at + b.len()].copy_from_slice(b);
            at += b.len();
        };
        if let Some(m) = self.mss {
            let m = m.to_be_bytes();
            put(&[tcp::option::MSS, 4, m[0], m[1]]);
        }
        match (self.ts, self.sack_permitted) {
            (Some((v, e)), sack) => {
                if sack {
                    put(&[tcp::option::SACK_PERMITTED, 2]);
                } else {
                    put(&[tcp::option::NOP, tcp::option::NOP]);
                }
                put(&[tcp::option::TIMESTAMPS, 10]);
                put(&v.to_be_bytes());
                put(&e.to_be_bytes());
            }
            (None, true) => put(&[
                tcp::option::NOP,
                tcp::option::NOP,
                tcp::option::SACK_PERMITTED,
                2,
            ]),
            (None, false) => {}
        }
        if let Some(w) = self.wscale {
            put(&[tcp::option::NOP, tcp::option::WINDOW_SCALE, 3, w]);
        }
    }
}

/// The addresses and ports of a segment we make up.
#[derive(Clone, Copy, Debug)]
pub struct Ends {
    pub src: IpAddr,
    pub dst: IpAddr,
    pub sport: u16,
    pub dport: u16,
}

impl Ends {
    /// The ends of the packet `ip` and `t` describe, as it travels (for a segment sent on
    /// in its direction).
    pub fn of(ip: &crate::IpHeaders, t: &crate::TcpInfo) -> Self {
        Self {
            src: ip.src,
            dst: ip.dst,
            sport: t.sport,
            dport: t.dport,
        }
    }

    /// The ends of an answer to that packet: addresses and ports swapped.
    pub fn reply_to(ip: &crate::IpHeaders, t: &crate::TcpInfo) -> Self {
        Self {
            src: ip.dst,
            dst: ip.src,
            sport: t.dport,
            dport: t.sport,
        }
    }
}

/// The TCP fields of a segment we make up.
#[derive(Clone, Copy, Debug)]
pub struct Seg {
    pub seq: u32,
    pub ack: u32,
    pub flags: u8,
    pub window: u16,
    pub opts: Opts,
}

/// Writes an IP/TCP segment without payload at `buf[l3..]` (the link header in front is the
/// caller's), with full checksums; returns the frame length. `None` (nothing written) when
/// it does not fit or the address families differ.
pub fn compose(buf: &mut [u8], l3: usize, ends: &Ends, seg: &Seg, hop_limit: u8) -> Option<usize> {
    let tcp_len = tcp::MIN_HEADER_LEN + seg.opts.len();
    let ip_len = match ends.src {
        IpAddr::V4(_) => ipv4::MIN_HEADER_LEN,
        IpAddr::V6(_) => ipv6::HEADER_LEN,
    };
    let total = l3 + ip_len + tcp_len;
    if total > buf.len() {
        return None;
    }
    let mut th = [0u8; tcp::MAX_HEADER_LEN];
    {
        let mut t = tcp::Packet::new_unchecked(&mut th[..]);
        t.set_src_port(ends.sport);
        t.set_dst_port(ends.dport);
        t.set_seq(seg.seq);
        t.set_ack(seg.ack);
        t.set_header_len(tcp_len);
        t.set_flags(seg.flags);
        t.set_window(seg.window);
    }
    seg.opts.write(&mut th[tcp::MIN_HEADER_LEN..tcp_len]);
    // Checksums over the fixed-size arrays as 32-bit words (bytes past the header are zero
    // and add nothing; the pseudo-header carries the real length), as `reply` does.
    let tcp_sum = checksum::sum_words(0, &th);
    match (ends.src, ends.dst) {
        (IpAddr::V4(s), IpAddr::V4(d)) => {
            let (ih, pseudo) = ipv4_header(s.octets(), d.octets(), tcp_len, hop_limit);
            tcp::Packet::new_unchecked(&mut th[..])
                .set_checksum(checksum::finish(pseudo + tcp_sum));
            buf[l3..l3 + ip_len].copy_from_slice(&ih);
        }
        (IpAddr::V6(s), IpAddr::V6(d)) => {
            let (ih, pseudo) = ipv6_header(s.octets(), d.octets(), tcp_len, hop_limit);
            tcp::Packet::new_unchecked(&mut th[..])
                .set_checksum(checksum::finish(pseudo + tcp_sum));
            buf[l3..l3 + ip_len].copy_from_slice(&ih);
        }
        _ => return None,
    }
    let th = &th[..tcp_len];
    buf[l3 + ip_len..total].copy_from_slice(th);
    Some(total)
}

/// Changes to make to a segment passing through (all additions mod 2^32).
#[derive(Clone, Copy, Debug, Default)]
pub struct Shift {
    pub seq: u32,
    /// Applied only when the segment carries ACK.
    pub ack: u32,
    /// Added to both edges of every SACK block.
    pub sack: u32,
    pub tsval: u32,
    pub tsecr: u32,
    /// New window field, if it changes.
    pub window: Option<u16>,
}

/// A 32-bit field at byte offset `at` of the TCP header changed: the checksum update for it,
/// whatever the alignment (at an odd offset each 16-bit half lands byte-swapped in the sum).
fn update32_at(sum: u16, old: u32, new: u32, at: usize) -> u16 {
    if at & 1 == 0 {
        checksum::update32(sum, old, new)
    } else {
        checksum::update32(
            sum,
            old.swap_bytes().rotate_left(16),
            new.swap_bytes().rotate_left(16),
        )
    }
}

fn get32(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_be_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

fn set32(b: &mut [u8], at: usize, v: u32) {
    if let Some(d) = b.get_mut(at..at + 4) {
        d.copy_from_slice(&v.to_be_bytes());
    }
}

/// Adds `add` to the 32-bit field at `at` and updates `sum`.
fn bump(t: &mut [u8], at: usize, add: u32, sum: &mut u16) {
    if add == 0 {
        return;
    }
    if let Some(old) = get32(t, at) {
        let new = old.wrapping_add(add);
        set32(t, at, new);
        *sum = update32_at(*sum, old, new, at);
    }
}

/// Applies `s` to the TCP header `t` (starting at its first byte) in place, keeping the
/// checksum right by incremental update (RFC 1624). Options were checked by the parser; a
/// walk that still meets something odd stops there.
pub fn translate(t: &mut [u8], s: &Shift) {
    if t.len() < tcp::MIN_HEADER_LEN {
        return;
    }
    let hlen = (usize::from(t[tcp::field::DATA_OFF] >> 4) * 4).min(t.len());
    let flags = t[tcp::field::FLAGS];
    let mut sum = u16::from_be_bytes([t[tcp::field::CHECKSUM], t[tcp::field::CHECKSUM + 1]]);
    bump(t, tcp::field::SEQ, s.seq, &mut sum);
    if flags & crate::TcpInfo::ACK != 0 {
        bump(t, tcp::field::ACK, s.ack, &mut sum);
    }
    if let Some(w) = s.window {
        let at = tcp::field::WINDOW;
        let old = u16::from_be_bytes([t[at], t[at + 1]]);
        t[at..at + 2].copy_from_slice(&w.to_be_bytes());
        sum = checksum::update16(sum, old, w);
    }
    let mut i = tcp::MIN_HEADER_LEN;
    while i < hlen {
        let kind = t[i];
        if kind == tcp::option::EOL {
            break;
        }
        if kind == tcp::option::NOP {
            i += 1;
            continue;
        }
        let Some(&len) = t.get(i + 1) else { break };
        let len = usize::from(len);
        if len < 2 || i + len > hlen {
            break;
        }
        match kind {
            tcp::option::TIMESTAMPS if len == 10 => {
                bump(t, i + 2, s.tsval, &mut sum);
                bump(t, i + 6, s.tsecr, &mut sum);
            }
            tcp::option::SACK => {
                let mut e = i + 2;
                while e + 4 <= i + len {
                    bump(t, e, s.sack, &mut sum);
                    e += 4;
                }
            }
            _ => {}
        }
        i += len;
    }
    t[tcp::field::CHECKSUM..tcp::field::CHECKSUM + 2].copy_from_slice(&sum.to_be_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::ip_protocol;
    use proptest::prelude::*;
    use std::net::{Ipv4Addr, Ipv6Addr};

    fn key(n: u8) -> Key {
        Key::new(
            IpAddr::V4(Ipv4Addr::new(192, 0, 2, n)),
            IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1)),
            40000 + u16::from(n),
            80,
        )
    }

    fn conn(k: Key, now: u64) -> Conn {
        Conn {
            key: k,
            last: now,
            ..Conn::default()
        }
    }

    #[test]
    fn table_is_fixed_and_counts_full_buckets() {
        let mut t = Table::new(16, 100, 7);
        assert_eq!(t.capacity(), BUCKET);
        for n in 0..16 {
            assert!(t.insert(conn(key(n), 0), 0).is_ok());
        }
        assert_eq!(t.live(), 16);
        assert!(!t.has_room(&key(200), 0));
        assert_eq!(t.insert(conn(key(200), 0), 0), Err(Full));
        // Idle entries make room again, and are not found.
        assert!(t.has_room(&key(200), 101));
        assert_eq!(t.find(&key(3), 101), None);
        assert_eq!(t.live(), 15);
        let i = t.find(&key(4), 50).expect("live entry found");
        t.remove(i);
        assert_eq!(t.find(&key(4), 50), None);
        assert_eq!(t.live(), 14);
        // The sweep reclaims the rest without lookups.
        assert_eq!(t.sweep(1000, BUCKET), 14);
        assert_eq!(t.live(), 0);
    }

    #[test]
    fn v4_and_v6_keys_differ() {
        let a = Key::new(
            IpAddr::V4(Ipv4Addr::new(1, 2, 3, 4)),
            IpAddr::V4(Ipv4Addr::new(5, 6, 7, 8)),
            1,
            2,
        );
        let b = Key::new(
            IpAddr::V6(Ipv6Addr::new(0x0102, 0x0304, 0, 0, 0, 0, 0, 0)),
            IpAddr::V6(Ipv6Addr::new(0x0506, 0x0708, 0, 0, 0, 0, 0, 0)),
            1,
            2,
        );
        assert_ne!(a, b);
        let mut t = Table::new(64, 100, 1);
        t.insert(conn(a, 0), 0).unwrap();
        assert_eq!(t.find(&b, 0), None);
        assert!(t.find(&a, 0).is_some());
    }

    #[test]
    fn tsval_carries_wscale_and_sack() {
        for ws in [None, Some(0), Some(7), Some(14), Some(15)] {
            for sack in [false, true] {
                let v = encode_tsval(0xdead_beef, ws, sack);
                assert_eq!(v & !0x3f, 0xdead_beef & !0x3f);
                assert_eq!(decode_tsval(v), (ws.map(|w| w.min(14)), sack));
            }
        }
    }

    #[test]
    fn rescale_rounds_down_and_clamps() {
        assert_eq!(rescale(100, 7, 7), 100);
        assert_eq!(rescale(100, 7, 9), 25);
        assert_eq!(rescale(1000, 9, 7), 4000);
        assert_eq!(rescale(0xffff, 0, 7), 511);
        assert_eq!(rescale(0xffff, 7, 0), 0xffff);
    }

    /// A TCP header with the given options and a payload, checksummed over v4 addresses.
    fn segment(opts: &[u8], flags: u8, payload: &[u8]) -> Vec<u8> {
        let hlen = 20 + opts.len();
        let mut v = vec![0u8; hlen];
        {
            let mut t = tcp::Packet::new_unchecked(&mut v[..]);
            t.set_src_port(1);
            t.set_dst_port(2);
            t.set_seq(0xffff_fff0);
            t.set_ack(0x0000_0010);
            t.set_header_len(hlen);
            t.set_flags(flags);
            t.set_window(1000);
        }
        v[20..].copy_from_slice(opts);
        v.extend_from_slice(payload);
        tcp::Packet::new_unchecked(&mut v[..]).fill_checksum_v4(SRC, DST);
        v
    }

    const SRC: [u8; 4] = [192, 0, 2, 1];
    const DST: [u8; 4] = [10, 0, 0, 1];

    proptest! {
        /// Translating by d and back by -d is the identity, across wrap-around, for every
        /// field the proxy moves, and the checksum verifies after each step, with options at
        /// even and odd offsets.
        #[test]
        fn translation_round_trips_and_keeps_checksums(
            d in any::<u32>(), tsd in any::<u32>(), w in any::<u16>(),
            a in any::<u32>(), b in any::<u32>(), odd in any::<bool>(),
            payload in proptest::collection::vec(any::<u8>(), 0..40),
        ) {
            let mut opts = Vec::new();
            if odd {
                opts.push(1);
            }
            opts.extend_from_slice(&[8, 10]);
            opts.extend_from_slice(&a.to_be_bytes());
            opts.extend_from_slice(&b.to_be_bytes());
            opts.extend_from_slice(&[5, 18]);
            for x in [a, b, a.wrapping_add(9), b.wrapping_sub(9)] {
                opts.extend_from_slice(&x.to_be_bytes());
            }
            while opts.len() % 4 != 0 {
                opts.push(0);
            }
            let orig = segment(&opts, crate::TcpInfo::ACK, &payload);
            let mut v = orig.clone();
            let fwd = Shift { seq: d, ack: d, sack: d, tsval: tsd, tsecr: tsd, window: Some(w) };
            translate(&mut v, &fwd);
            prop_assert_eq!(checksum::l4_v4(SRC, DST, ip_protocol::TCP, &v), 0);
            let t = tcp::Packet::new_unchecked(&v[..]);
            prop_assert_eq!(t.seq(), 0xffff_fff0u32.wrapping_add(d));
            prop_assert_eq!(t.ack(), 0x10u32.wrapping_add(d));
            prop_assert_eq!(t.window(), w);
            let o = t.parse_options().unwrap();
            prop_assert_eq!(o.timestamps, Some((a.wrapping_add(tsd), b.wrapping_add(tsd))));
            let sack_at = 20 + usize::from(odd) + 10 + 2;
            prop_assert_eq!(get32(&v, sack_at), Some(a.wrapping_add(d)));
            prop_assert_eq!(get32(&v, sack_at + 12), Some(b.wrapping_sub(9).wrapping_add(d)));
            let back = Shift {
                seq: d.wrapping_neg(), ack: d.wrapping_neg(), sack: d.wrapping_neg(),
                tsval: tsd.wrapping_neg(), tsecr: tsd.wrapping_neg(), window: Some(1000),
            };
            translate(&mut v, &back);
            prop_assert_eq!(&v, &orig);
        }

        /// Without ACK the acknowledgment field is left alone.
        #[test]
        fn ack_moves_only_with_the_flag(d in 1u32..) {
            let mut v = segment(&[], crate::TcpInfo::SYN, &[]);
            translate(&mut v, &Shift { ack: d, ..Shift::default() });
            prop_assert_eq!(tcp::Packet::new_unchecked(&v[..]).ack(), 0x10);
            prop_assert_eq!(checksum::l4_v4(SRC, DST, ip_protocol::TCP, &v), 0);
        }

        /// Every option combination the proxy writes parses back to itself, with valid
        /// checksums over IPv4 and IPv6.
        #[test]
        fn composed_segments_parse_back(
            mss in proptest::option::of(536u16..9000), ws in proptest::option::of(0u8..15),
            sack in any::<bool>(), ts in proptest::option::of(any::<(u32, u32)>()),
            v6 in any::<bool>(), seq in any::<u32>(), ack in any::<u32>(), win in any::<u16>(),
        ) {
            let opts = Opts { mss, wscale: ws, sack_permitted: sack, ts };
            let (src, dst) = if v6 {
                (IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1)),
                 IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 2)))
            } else {
                (IpAddr::V4(Ipv4Addr::from(SRC)), IpAddr::V4(Ipv4Addr::from(DST)))
            };
            let ends = Ends { src, dst, sport: 5, dport: 6 };
            let seg = Seg { seq, ack, flags: crate::TcpInfo::SYN, window: win, opts };
            let mut buf = [0u8; 128];
            let n = compose(&mut buf, 14, &ends, &seg, 64).unwrap();
            let ip_len = if v6 { 40 } else { 20 };
            let t = &buf[14 + ip_len..n];
            prop_assert_eq!(t.len() % 4, 0);
            let p = tcp::Packet::new_checked(t).unwrap();
            prop_assert_eq!((p.seq(), p.ack(), p.window()), (seq, ack, win));
            let o = p.parse_options().unwrap();
            prop_assert_eq!((o.mss, o.window_scale, o.sack_permitted, o.timestamps), (mss, ws, sack, ts));
            match (src, dst) {
                (IpAddr::V4(s), IpAddr::V4(d)) => {
                    prop_assert_eq!(checksum::l4_v4(s.octets(), d.octets(), ip_protocol::TCP, t), 0);
                    let ip = ipv4::Packet::new_checked(&buf[14..n]).unwrap();
                    prop_assert!(ip.verify_checksum());
                }
                (IpAddr::V6(s), IpAddr::V6(d)) => {
                    prop_assert_eq!(checksum::l4_v6(s.octets(), d.octets(), ip_protocol::TCP, t), 0);
                }
                _ => unreachable!(),
            }
        }
    }
}
