//! Sources that have proved they can receive our SYN-ACKs, for a while, and connections that
//! protected hosts opened themselves. Both are one table for the whole box, shared by every
//! worker ([`SharedSet`]): a source authenticated by one worker passes on all of them from the
//! next packet on, whichever queue RSS puts its next connection on.
//!
//! Only the SYN-cookie stage inserts, and only after a cookie validated (allowlist) or for a
//! SYN that a protected host sent out of the inside port (outbound connections), so a spoofed
//! flood from outside can neither add entries nor push real ones out faster than real
//! clients authenticate. Memory is fixed at start.

pub use crate::shared_set::Inserted;
use crate::shared_set::{Hashed, SharedSet};
use std::net::IpAddr;

/// Appends a family byte and the address's own bytes (4 or 16) at `out[at..]`, returning the
/// new end. The family byte keeps an IPv4 address from aliasing an IPv6 one; keeping IPv4 keys
/// short keeps the hash to two SipHash blocks on the common path.
fn put_addr(addr: IpAddr, out: &mut [u8; 40], at: usize) -> usize {
    match addr {
        IpAddr::V4(a) => {
            out[at] = 4;
            out[at + 1..at + 5].copy_from_slice(&a.octets());
            at + 5
        }
        IpAddr::V6(a) => {
            out[at] = 6;
            out[at + 1..at + 17].copy_from_slice(&a.octets());
            at + 17
        }
    }
}

/// Authenticated sources, with sliding expiry (see [`SharedSet`] for its granularity).
pub struct Allowlist {
    set: SharedSet,
}

impl Allowlist {
    /// Room for at least `capacity` sources: rounded up to a power-of-two number of buckets.
    pub fn new(capacity: usize, ttl_ticks: u64, hash_key: [u8; 16]) -> Self {
        Allowlist {
            set: SharedSet::new(capacity, ttl_ticks, hash_key),
        }
    }

    pub fn capacity(&self) -> usize {
        self.set.capacity()
    }

    /// Slots holding an entry, including expired ones not yet reused.
    pub fn occupied(&self) -> usize {
        self.set.occupied()
    }

    fn hash(&self, addr: IpAddr) -> Hashed {
        let mut k = [0u8; 40];
        let n = put_addr(addr, &mut k, 0);
        self.set.hash(&k[..n])
    }

    /// Whether `addr` is allowlisted at `now`; a hit extends its deadline.
    #[inline]
    pub fn check(&self, addr: IpAddr, now: u64) -> bool {
        self.set.contains(self.hash(addr), now)
    }

    pub fn insert(&self, addr: IpAddr, now: u64) -> Inserted {
        self.set.insert(self.hash(addr), now)
    }

    #[cfg(test)]
    pub(super) fn storage(&self) -> (*const u8, usize) {
        self.set.storage()
    }
}

/// One direction-independent connection key as a protected host saw it: its own address and
/// port, the remote's, and the IP protocol.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConnKey {
    pub local: IpAddr,
    pub local_port: u16,
    pub remote: IpAddr,
    pub remote_port: u16,
    pub proto: u8,
}

/// Connections a protected host opened to the outside (its SYN, or its UDP datagram, left by
/// the inside port), so their return traffic passes without authentication. Keyed by the whole
/// 5-tuple: an outside host answering one connection gains nothing for any other.
pub struct Outbound {
    set: SharedSet,
}

impl Outbound {
    pub fn new(capacity: usize, ttl_ticks: u64, hash_key: [u8; 16]) -> Self {
        Outbound {
            set: SharedSet::new(capacity, ttl_ticks, hash_key),
        }
    }

    pub fn capacity(&self) -> usize {
        self.set.capacity()
    }

    pub fn occupied(&self) -> usize {
        self.set.occupied()
    }

    fn hash(&self, c: &ConnKey) -> Hashed {
        let mut k = [0u8; 40];
        k[..2].copy_from_slice(&c.local_port.to_be_bytes());
        k[2..4].copy_from_slice(&c.remote_port.to_be_bytes());
        k[4] = c.proto;
        let n = put_addr(c.local, &mut k, 5);
        let n = put_addr(c.remote, &mut k, n);
        self.set.hash(&k[..n])
    }

    /// Whether the connection is known at `now`; a hit extends its deadline. Costs nothing
    /// (no hash) while no protected host has opened a connection.
    #[inline]
    pub fn check(&self, c: &ConnKey, now: u64) -> bool {
        self.set.occupied() != 0 && self.set.contains(self.hash(c), now)
    }

    /// Records (or refreshes) a connection. A refresh of an entry written less than 1/16 of
    /// the TTL ago writes nothing, so a host sending a stream keeps the line shared.
    pub fn record(&self, c: &ConnKey, now: u64) -> Inserted {
        let h = self.hash(c);
        if self.set.contains(h, now) {
            return Inserted::Refreshed;
        }
        self.set.insert(h, now)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{Ipv4Addr, Ipv6Addr};

    fn v4(n: u32) -> IpAddr {
        IpAddr::V4(Ipv4Addr::from(n))
    }

    #[test]
    fn families_do_not_alias() {
        let a = Allowlist::new(64, 100, [2; 16]);
        a.insert(v4(0x0a000001), 0);
        assert!(!a.check(IpAddr::V6(Ipv6Addr::from(0x0a000001u128)), 1));
        assert!(a.check(v4(0x0a000001), 1));
    }

    #[test]
    fn outbound_connections_are_keyed_by_the_whole_five_tuple() {
        let o = Outbound::new(64, 100, [3; 16]);
        let c = ConnKey {
            local: v4(0x0a4d0050),
            local_port: 40000,
            remote: v4(0xc0000201),
            remote_port: 443,
            proto: 6,
        };
        assert_eq!(o.record(&c, 0), Inserted::New);
        assert!(o.check(&c, 1));
        for other in [
            ConnKey {
                remote_port: 444,
                ..c
            },
            ConnKey {
                local_port: 40001,
                ..c
            },
            ConnKey {
                remote: v4(0xc0000202),
                ..c
            },
            ConnKey { proto: 17, ..c },
            // Swapped sides are a different key: the table is only read for inbound packets,
            // whose remote end is their source.
            ConnKey {
                local: c.remote,
                remote: c.local,
                local_port: c.remote_port,
                remote_port: c.local_port,
                proto: 6,
            },
        ] {
            assert!(!o.check(&other, 1), "{other:?}");
        }
        assert!(!o.check(&c, 200), "expires after its TTL");
        assert_eq!(o.occupied(), 1);
    }
}
