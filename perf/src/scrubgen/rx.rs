//! The receive side: which class a frame coming back belongs to.

use super::{Class, Tag};
use etherparse::{NetSlice, SlicedPacket, TransportSlice};

/// Which generator port a frame arrived on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Port {
    /// The scrubber's inside: what it forwarded (passed).
    Inside,
    /// The scrubber's outside: what it answered itself (SYN-ACK cookies, RSTs).
    Outside,
}

/// An IP address as it appears on the wire.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Addr {
    V4([u8; 4]),
    V6([u8; 16]),
}

impl Addr {
    pub fn is_v6(&self) -> bool {
        matches!(self, Addr::V6(_))
    }

    fn key(&self) -> [u8; 16] {
        match self {
            Addr::V4(a) => {
                let mut k = [0u8; 16];
                k[10] = 0xff;
                k[11] = 0xff;
                k[12..].copy_from_slice(a);
                k
            }
            Addr::V6(a) => *a,
        }
    }
}

/// The TCP fields a client needs to answer a segment.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TcpSeen {
    pub src: Addr,
    pub dst: Addr,
    pub sport: u16,
    pub dport: u16,
    pub seq: u32,
    pub ack: u32,
    /// [`TcpSeen::SYN`], [`TcpSeen::ACK`], [`TcpSeen::RST`], [`TcpSeen::FIN`] bits.
    pub flags: u8,
}

impl TcpSeen {
    pub const FIN: u8 = 0x01;
    pub const SYN: u8 = 0x02;
    pub const RST: u8 = 0x04;
    pub const ACK: u8 = 0x10;
}

/// What [`classify`] found.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct Arrival {
    /// None: not a frame of ours (or a SYN whose side-table entry was overwritten).
    pub class: Option<Class>,
    /// The TSC at which the packet (or, for an answer, the packet answered) was built.
    pub tsc: Option<u64>,
    pub tcp: Option<TcpSeen>,
    /// A SYN or SYN-ACK whose client was not (or no longer) in the side table.
    pub untracked: bool,
}

#[derive(Clone, Copy, Default)]
struct Entry {
    key: [u8; 16],
    port: u16,
    class: u8,
    used: bool,
    tsc: u64,
}

/// Per-worker side table of the SYNs sent, keyed by the client's (address, port): SYNs carry
/// no payload for a tag, and the scrubber's SYN-ACK answer keeps only the flow. Fixed-size
/// (allocated once), in buckets of four: a SYN whose bucket is full replaces the
/// bucket's oldest entry, whose answer then counts as untracked.
pub struct FlowTable {
    slots: Vec<Entry>,
    mask: usize,
}

impl FlowTable {
    /// Entries per bucket.
    pub const WAYS: usize = 4;

    /// A table of `slots` entries, rounded up to a power of two (at least one bucket).
    pub fn new(slots: usize) -> FlowTable {
        let n = slots.clamp(Self::WAYS, 1 << 24).next_power_of_two();
        FlowTable {
            slots: vec![Entry::default(); n],
            mask: n - 1,
        }
    }

    fn index(&self, key: &[u8; 16], port: u16) -> usize {
        const K: u64 = 0x9e37_79b9_7f4a_7c15;
        let a = u64::from_le_bytes([
            key[0], key[1], key[2], key[3], key[4], key[5], key[6], key[7],
        ]);
        let b = u64::from_le_bytes([
            key[8], key[9], key[10], key[11], key[12], key[13], key[14], key[15],
        ]);
        // Multiply-xor rounds, then the product's top bits: every input bit reaches them (the
        // low bits of a product would ignore the inputs' high bits).
        let h = ((a.wrapping_mul(K) ^ b).wrapping_mul(K) ^ u64::from(port)).wrapping_mul(K);
        (h >> 40) as usize & self.mask
    }

    /// Record a SYN. Slots come in buckets of [`FlowTable::WAYS`]: the entry goes over one
    /// of the same key, else a free slot, else the bucket's oldest entry.
    pub fn insert(&mut self, addr: Addr, port: u16, class: Class, tsc: u64) {
        let key = addr.key();
        let base = self.index(&key, port) & !(Self::WAYS - 1);
        let bucket = &mut self.slots[base..base + Self::WAYS];
        let mut victim = 0;
        for (i, e) in bucket.iter().enumerate() {
            if !e.used || (e.key == key && e.port == port) {
                victim = i;
                break;
            }
            if e.tsc < bucket[victim].tsc {
                victim = i;
            }
        }
        bucket[victim] = Entry {
            key,
            port,
            class: class.id(),
            used: true,
            tsc,
        };
    }

    pub fn get(&self, addr: Addr, port: u16) -> Option<(Class, u64)> {
        let key = addr.key();
        let base = self.index(&key, port) & !(Self::WAYS - 1);
        let e = self.slots[base..base + Self::WAYS]
            .iter()
            .find(|e| e.used && e.key == key && e.port == port)?;
        Some((Class::from_id(e.class)?, e.tsc))
    }
}

/// The class of a frame received on `port`:
/// * a [`Tag`] ending the L4 payload gives class and TSC;
/// * a TCP segment without one: on the inside, a RST is a client's [`Class::LegitRst`], a
///   pure ACK the [`Class::AckFlood`], a SYN's class comes from `table` by its source; on the
///   outside, a SYN-ACK answers the SYN whose client (its destination) is in `table`, a RST
///   answers an ACK whose cookie validated (only the ACK flood sends ACKs without payload).
pub fn classify(frame: &[u8], port: Port, table: &FlowTable) -> Arrival {
    let Ok(s) = SlicedPacket::from_ethernet(frame) else {
        return Arrival::default();
    };
    let (src, dst) = match &s.net {
        Some(NetSlice::Ipv4(ip)) => (
            Addr::V4(ip.header().source()),
            Addr::V4(ip.header().destination()),
        ),
        Some(NetSlice::Ipv6(ip)) => (
            Addr::V6(ip.header().source()),
            Addr::V6(ip.header().destination()),
        ),
        None => return Arrival::default(),
    };
    let payload = match &s.transport {
        Some(TransportSlice::Udp(u)) => u.payload(),
        Some(TransportSlice::Tcp(t)) => t.payload(),
        Some(TransportSlice::Icmpv4(i)) => i.payload(),
        Some(TransportSlice::Icmpv6(i)) => i.payload(),
        None => &[],
    };
    let tcp = match &s.transport {
        Some(TransportSlice::Tcp(t)) => Some(TcpSeen {
            src,
            dst,
            sport: t.source_port(),
            dport: t.destination_port(),
            seq: t.sequence_number(),
            ack: t.acknowledgment_number(),
            flags: u8::from(t.fin())
                | u8::from(t.syn()) << 1
                | u8::from(t.rst()) << 2
                | u8::from(t.ack()) << 4,
        }),
        _ => None,
    };
    if let Some(tag) = Tag::read(payload) {
        return Arrival {
            class: Some(tag.class),
            tsc: Some(tag.tsc),
            tcp,
            untracked: false,
        };
    }
    let Some(t) = tcp else {
        return Arrival::default();
    };
    let has = |b: u8| t.flags & b != 0;
    let (class, tsc, untracked) = match port {
        Port::Inside if has(TcpSeen::RST) => (Some(Class::LegitRst), None, false),
        Port::Inside if has(TcpSeen::SYN) && !has(TcpSeen::ACK) => {
            match table.get(t.src, t.sport) {
                Some((c, tsc)) => (Some(c), Some(tsc), false),
                None => (None, None, true),
            }
        }
        Port::Inside if has(TcpSeen::ACK) && !has(TcpSeen::SYN) => {
            (Some(Class::AckFlood), None, false)
        }
        Port::Outside if has(TcpSeen::SYN) && has(TcpSeen::ACK) => {
            match table.get(t.dst, t.dport) {
                Some((c, tsc)) => (Some(c), Some(tsc), false),
                None => (None, None, true),
            }
        }
        Port::Outside if has(TcpSeen::RST) => (Some(Class::AckFlood), None, false),
        _ => (None, None, false),
    };
    Arrival {
        class,
        tsc,
        tcp,
        untracked,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_keeps_latest_and_rejects_other_keys() {
        let mut t = FlowTable::new(8);
        let a = Addr::V4([1, 2, 3, 4]);
        t.insert(a, 80, Class::SynFlood, 5);
        assert_eq!(t.get(a, 80), Some((Class::SynFlood, 5)));
        assert_eq!(t.get(a, 81), None);
        assert_eq!(t.get(Addr::V4([1, 2, 3, 5]), 80), None);
        t.insert(a, 80, Class::LegitSyn, 6);
        assert_eq!(t.get(a, 80), Some((Class::LegitSyn, 6)));
        // An IPv4 address and its IPv4-mapped IPv6 form are distinct on the wire, but share a
        // key here; the generator never sends the mapped form.
        assert!(Addr::V6([0; 16]).is_v6());
    }

    /// One client address with many source ports (a legitimate client's connections) spreads
    /// over the table instead of sharing a slot.
    #[test]
    fn ports_of_one_address_spread() {
        let mut t = FlowTable::new(1 << 18);
        let a = Addr::V4([100, 64, 0, 7]);
        for p in 0..2000u16 {
            t.insert(a, 1024 + p, Class::LegitSyn, u64::from(p));
        }
        let kept = (0..2000u16)
            .filter(|p| t.get(a, 1024 + p) == Some((Class::LegitSyn, u64::from(*p))))
            .count();
        assert_eq!(kept, 2000, "four ways hold every entry of a sparse table");
    }

    #[test]
    fn garbage_is_not_ours() {
        let t = FlowTable::new(8);
        assert_eq!(classify(&[0u8; 10], Port::Inside, &t), Arrival::default());
        assert_eq!(classify(&[0xffu8; 60], Port::Outside, &t).class, None);
    }
}
