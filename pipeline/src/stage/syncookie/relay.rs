//! The stage's packet handling in proxy mode: answering the SYN, opening the server side on a
//! valid cookie ACK, completing it on the server's SYN-ACK, and translating everything after.
//! The table, the translation and the segment builder are in [`super::proxy`].

use super::proxy::{
    self, compose, encode_tsval, rescale, Conn, Ends, Key, Opts, Seg, Shift, State,
};
use super::{StageResult, SynCookieStage, Valid, MSS_TABLE};
use crate::wire::ethernet;
use crate::{DropReason, EmitOut, Frag, IpHeaders, Malformed, TcpInfo, Transport, Verdict};

/// Idle slots the sweep looks at per proxied packet: the table drains at this many slots
/// per packet without a timer, at a constant cost.
const SWEEP_PER_PACKET: usize = 2;

fn truncated() -> StageResult {
    StageResult::Done(Verdict::Drop(DropReason::Malformed(
        Malformed::TcpTruncated,
    )))
}

fn swap_macs(frame: &mut [u8]) {
    if frame.len() >= ethernet::HEADER_LEN {
        ethernet::Frame::new_unchecked(&mut *frame).swap_addrs();
    }
}

impl SynCookieStage {
    /// Our timestamp clock, in milliseconds: a multiply and a shift, not a division.
    fn ts_clock(&self) -> u32 {
        ((u128::from(self.last_tsc) * self.ms_per_tick_q64) >> 64) as u32
    }

    /// The cookie SYN-ACK of proxy mode: acceptable ACK, window 0 (nothing may come before
    /// the server side exists), and, when the client sent timestamps, its window scale and
    /// SACK-permitted kept in our TSval.
    pub(super) fn proxy_answer_syn(
        &mut self,
        frame: &mut [u8],
        l3_off: u16,
        ip: &IpHeaders,
        tcp: &TcpInfo,
        cookie: u32,
    ) -> StageResult {
        let o = tcp.options;
        let ws = o.window_scale.map(|w| w.min(14));
        let ts = o
            .timestamps
            .map(|(val, _)| (encode_tsval(self.ts_clock(), ws, o.sack_permitted), val));
        let opts = Opts {
            mss: Some(self.mss),
            wscale: ws.and(ts).map(|_| self.proxy_wscale),
            sack_permitted: o.sack_permitted && ts.is_some(),
            ts,
        };
        let ends = Ends::reply_to(ip, tcp);
        let seg = Seg {
            seq: cookie,
            ack: tcp.seq.wrapping_add(1),
            flags: TcpInfo::SYN | TcpInfo::ACK,
            window: 0,
            opts,
        };
        let Some(len) = compose(frame, usize::from(l3_off), &ends, &seg, self.ttl) else {
            return truncated();
        };
        swap_macs(frame);
        self.counters.syn_answered += 1;
        StageResult::Done(Verdict::Reply { len: len as u16 })
    }

    /// A client's ACK whose cookie validated: a table entry, and our SYN to the server (the
    /// client's ISN, the options the cookie kept) emitted towards it; the ACK itself is
    /// consumed ([`DropReason::AuthHandshake`]): any data on it was sent into our zero
    /// window and comes again once the window opens. `None` when the table has no room
    /// (the caller falls back).
    pub(super) fn proxy_open(
        &mut self,
        frame: &mut [u8],
        l3_off: u16,
        ip: &IpHeaders,
        tcp: &TcpInfo,
        valid: Valid,
        now: u64,
    ) -> Option<StageResult> {
        let (client_wscale, sack) = match tcp.options.timestamps {
            Some((_, ecr)) => proxy::decode_tsval(ecr),
            None => (None, false),
        };
        let (client_tsval, our_tsval) = tcp.options.timestamps.unwrap_or((0, 0));
        let conn = Conn {
            key: Key::new(ip.src, ip.dst, tcp.sport, tcp.dport),
            state: State::SynSent,
            client_isn: tcp.seq.wrapping_sub(1),
            cookie: tcp.ack.wrapping_sub(1),
            client_ts: tcp.options.timestamps.is_some(),
            our_tsval,
            client_tsval,
            client_wscale,
            sack,
            mss: MSS_TABLE[usize::from(valid.mss_index) % MSS_TABLE.len()],
            our_wscale: self.proxy_wscale,
            client_window: tcp.window,
            last: now,
            ..Conn::default()
        };
        self.proxy.as_mut()?.insert(conn, now).ok()?;
        self.counters.ack_validated += 1;
        self.counters.proxy_opened += 1;
        self.proxy_emit_syn(frame, l3_off, ip, tcp, &conn);
        Some(StageResult::Done(Verdict::Drop(DropReason::AuthHandshake)))
    }

    /// Emits our SYN to the server for `c`, the link header copied from the client's packet
    /// `frame` (forwarded on, so its addresses stay as they are).
    fn proxy_emit_syn(
        &mut self,
        frame: &[u8],
        l3_off: u16,
        ip: &IpHeaders,
        tcp: &TcpInfo,
        c: &Conn,
    ) {
        let ends = Ends::of(ip, tcp);
        let seg = Seg {
            seq: c.client_isn,
            ack: 0,
            flags: TcpInfo::SYN,
            // A SYN's window is never scaled.
            window: rescale(c.client_window, c.client_wscale.unwrap_or(0), 0),
            opts: Opts {
                mss: Some(c.mss),
                wscale: c.client_wscale,
                sack_permitted: c.sack,
                ts: c.client_ts.then_some((c.client_tsval, 0)),
            },
        };
        self.emit_segment(frame, l3_off, &ends, &seg, EmitOut::Forward);
    }

    /// Builds `seg` into the emit buffer behind a copy of `frame`'s link header.
    fn emit_segment(&mut self, frame: &[u8], l3_off: u16, ends: &Ends, seg: &Seg, out: EmitOut) {
        let l3 = usize::from(l3_off);
        let ttl = self.ttl;
        let buf = self.emit.buf();
        let built = match (buf.get_mut(..l3), frame.get(..l3)) {
            (Some(dst), Some(src)) => {
                dst.copy_from_slice(src);
                compose(buf, l3, ends, seg, ttl)
            }
            _ => None,
        };
        match built {
            Some(n) => {
                self.emit.ready(n, out);
                self.counters.proxy_emitted += 1;
            }
            None => self.counters.proxy_emit_failed += 1,
        }
    }

    /// An inbound packet of a proxied connection (client → server): translated and passed
    /// on. `None`: no entry, judge it as any other packet.
    pub(super) fn proxy_from_client(
        &mut self,
        frame: &mut [u8],
        l3_off: u16,
        ip: &IpHeaders,
        now: u64,
    ) -> Option<StageResult> {
        let (Frag::None, Transport::Tcp(t)) = (ip.frag, ip.transport) else {
            return None;
        };
        if t.flags & (TcpInfo::SYN | TcpInfo::ACK) == TcpInfo::SYN {
            // A SYN is answered with a cookie whatever the table holds (no lookup for a
            // flood to pay for); the answer frees an old entry on the same ports.
            return None;
        }
        let table = self.proxy.as_mut()?;
        table.sweep(now, SWEEP_PER_PACKET);
        let key = Key::new(ip.src, ip.dst, t.sport, t.dport);
        let slot = table.find(&key, now)?;
        let c = table.get(slot);
        c.last = now;
        if c.state == State::SynSent {
            // The server side is not up yet; the client (window 0) has nothing to send but
            // probes and a repeated ACK. Each one sends our SYN again, in case it or the
            // server's answer was lost: the client's own retransmission timer paces it. A RST
            // ends it.
            if t.flags & TcpInfo::RST != 0 {
                table.remove(slot);
                self.counters.proxy_closed += 1;
            } else {
                if let Some((val, _)) = t.options.timestamps {
                    c.client_tsval = val;
                }
                let c = *c;
                self.counters.proxy_syn_resent += 1;
                self.proxy_emit_syn(frame, l3_off, ip, &t, &c);
            }
            return Some(StageResult::Done(Verdict::Drop(DropReason::AuthHandshake)));
        }
        if let Some((val, _)) = t.options.timestamps {
            c.client_tsval = val;
        }
        c.client_window = t.window;
        let w = c.window_to_server(t.window);
        let shift = Shift {
            ack: c.delta,
            sack: c.delta,
            tsecr: if c.ts { c.tsoff } else { 0 },
            window: (w != t.window).then_some(w),
            ..Shift::default()
        };
        if let Some(seg) = frame.get_mut(usize::from(ip.l4_off)..) {
            proxy::translate(seg, &shift);
        }
        self.proxy_cleanup(slot, t.flags, ip.payload_len, true);
        Some(StageResult::Continue)
    }

    /// FIN/RST bookkeeping after a translated packet.
    fn proxy_cleanup(&mut self, slot: usize, flags: u8, payload: u16, from_client: bool) {
        let Some(table) = self.proxy.as_mut() else {
            return;
        };
        let c = table.get(slot);
        let done = if flags & TcpInfo::RST != 0 {
            true
        } else if flags & TcpInfo::FIN != 0 {
            if from_client {
                c.fin_client = true;
            } else {
                c.fin_server = true;
            }
            false
        } else {
            // Both sides have closed; a bare ACK after that is the last segment (its loss
            // costs the peer a retransmitted FIN that meets no entry and is dropped).
            c.fin_client && c.fin_server && flags & TcpInfo::ACK != 0 && payload == 0
        };
        if done {
            table.remove(slot);
            self.counters.proxy_closed += 1;
        }
    }

    /// An outbound packet from a protected server: completes or translates a proxied
    /// connection. `None`: not proxied, judged as usual.
    pub(super) fn proxy_from_server(
        &mut self,
        frame: &mut [u8],
        l3_off: u16,
        ip: &IpHeaders,
        now: u64,
    ) -> Option<StageResult> {
        let (Frag::None, Transport::Tcp(t)) = (ip.frag, ip.transport) else {
            return None;
        };
        if !self.is_protected(ip.src) {
            return None;
        }
        let table = self.proxy.as_mut()?;
        table.sweep(now, SWEEP_PER_PACKET);
        let key = Key::new(ip.dst, ip.src, t.dport, t.sport);
        let slot = table.find(&key, now)?;
        let c = table.get(slot);
        c.last = now;
        let synack =
            t.flags & (TcpInfo::SYN | TcpInfo::ACK | TcpInfo::RST) == TcpInfo::SYN | TcpInfo::ACK;
        if c.state == State::SynSent {
            if t.flags & TcpInfo::RST != 0 {
                return Some(self.proxy_refused(frame, l3_off, ip, &t, slot));
            }
            if !synack || t.ack != c.client_isn.wrapping_add(1) {
                self.counters.proxy_unexpected += 1;
                return Some(StageResult::Done(Verdict::Drop(DropReason::AuthHandshake)));
            }
            return Some(self.proxy_established(frame, l3_off, ip, &t, slot));
        }
        if t.flags & TcpInfo::SYN != 0 {
            // A repeated SYN-ACK: our ACK was lost. Send it again (no window update: the
            // client has had one).
            if synack && t.seq == c.cookie.wrapping_add(c.delta) {
                return Some(self.proxy_ack_server(frame, l3_off, ip, &t, slot));
            }
            self.counters.proxy_unexpected += 1;
            return Some(StageResult::Done(Verdict::Drop(DropReason::AuthHandshake)));
        }
        let w = c.window_to_client(t.window);
        let shift = Shift {
            seq: c.delta.wrapping_neg(),
            tsval: if c.ts { c.tsoff.wrapping_neg() } else { 0 },
            window: (w != t.window).then_some(w),
            ..Shift::default()
        };
        if let Some(seg) = frame.get_mut(usize::from(ip.l4_off)..) {
            proxy::translate(seg, &shift);
        }
        self.proxy_cleanup(slot, t.flags, ip.payload_len, false);
        Some(StageResult::Continue)
    }

    /// The server refused our SYN: the client learns it by a RST it accepts (sequence number
    /// = its RCV.NXT, our cookie + 1), built in place and forwarded.
    fn proxy_refused(
        &mut self,
        frame: &mut [u8],
        l3_off: u16,
        ip: &IpHeaders,
        t: &TcpInfo,
        slot: usize,
    ) -> StageResult {
        let Some(table) = self.proxy.as_mut() else {
            return StageResult::Continue;
        };
        let cookie = table.get(slot).cookie;
        table.remove(slot);
        self.counters.proxy_closed += 1;
        let ends = Ends::of(ip, t);
        let seg = Seg {
            seq: cookie.wrapping_add(1),
            ack: 0,
            flags: TcpInfo::RST,
            window: 0,
            opts: Opts::default(),
        };
        match compose(frame, usize::from(l3_off), &ends, &seg, self.ttl) {
            Some(_) => StageResult::Done(Verdict::Forward),
            None => truncated(),
        }
    }

    /// The server's SYN-ACK for a connection in SYN-SENT: record its ISN, window scale and
    /// timestamp offset, send the window update to the client (emitted) and the ACK to the
    /// server (the SYN-ACK's buffer, sent back).
    fn proxy_established(
        &mut self,
        frame: &mut [u8],
        l3_off: u16,
        ip: &IpHeaders,
        t: &TcpInfo,
        slot: usize,
    ) -> StageResult {
        let Some(table) = self.proxy.as_mut() else {
            return StageResult::Continue;
        };
        let c = table.get(slot);
        c.state = State::Established;
        c.delta = t.seq.wrapping_sub(c.cookie);
        // Scaling is on only if both offered it; we asked the server only if the client did.
        c.server_wscale = c
            .client_wscale
            .and(t.options.window_scale)
            .map(|w| w.min(14));
        if let (true, Some((val, _))) = (c.client_ts, t.options.timestamps) {
            c.ts = true;
            c.tsoff = val.wrapping_sub(c.our_tsval);
        }
        let c = *c;
        self.counters.proxy_established += 1;

        // The window update: from the server to the client, as the server's first ACK.
        let ends = Ends::of(ip, t);
        let seg = Seg {
            seq: c.cookie.wrapping_add(1),
            ack: c.client_isn.wrapping_add(1),
            flags: TcpInfo::ACK,
            // The SYN-ACK's window is unscaled; the client scales ours by our shift.
            window: rescale(t.window, 0, c.client_shift()),
            opts: Opts {
                ts: c.client_ts.then_some((c.our_tsval, c.client_tsval)),
                ..Opts::default()
            },
        };
        self.emit_segment(frame, l3_off, &ends, &seg, EmitOut::Forward);
        self.proxy_ack_server(frame, l3_off, ip, t, slot)
    }

    /// Turns the server's SYN-ACK into the ACK that completes its handshake, sent back.
    fn proxy_ack_server(
        &mut self,
        frame: &mut [u8],
        l3_off: u16,
        ip: &IpHeaders,
        t: &TcpInfo,
        slot: usize,
    ) -> StageResult {
        let Some(table) = self.proxy.as_mut() else {
            return StageResult::Continue;
        };
        let c = *table.get(slot);
        let ends = Ends::reply_to(ip, t);
        let ts = match (c.ts, t.options.timestamps) {
            (true, Some((val, _))) => Some((c.client_tsval, val)),
            _ => None,
        };
        let seg = Seg {
            seq: c.client_isn.wrapping_add(1),
            ack: t.seq.wrapping_add(1),
            flags: TcpInfo::ACK,
            window: c.window_to_server(c.client_window),
            opts: Opts {
                ts,
                ..Opts::default()
            },
        };
        let Some(len) = compose(frame, usize::from(l3_off), &ends, &seg, self.ttl) else {
            return truncated();
        };
        swap_macs(frame);
        StageResult::Done(Verdict::Reply { len: len as u16 })
    }
}
