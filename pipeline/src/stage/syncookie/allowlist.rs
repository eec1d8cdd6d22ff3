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

/// A family byte and the address's own bytes (4 or 16), as they go into [`Outbound`]'s
/// 5-tuple keys: the family byte keeps an IPv4 address from aliasing an IPv6 one. (An IPv4
/// source in the allowlist is its own tag, see [`SharedSet::hash_v4`].)
fn v4_key(a: std::net::Ipv4Addr) -> [u8; 5] {
    let o = a.octets();
    [4, o[0], o[1], o[2], o[3]]
}

fn v6_key(a: std::net::Ipv6Addr) -> [u8; 17] {
    let mut k = [6u8; 17];
    k[1..].copy_from_slice(&a.octets());
    k
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
        match addr {
            IpAddr::V4(a) => self.set.hash_v4(u32::from(a)),
            IpAddr::V6(a) => self.set.hash(&v6_key(a)),
        }
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
        let mut head = [0u8; 5];
        head[..2].copy_from_slice(&c.local_port.to_be_bytes());
        head[2..4].copy_from_slice(&c.remote_port.to_be_bytes());
        head[4] = c.proto;
        match (c.local, c.remote) {
            (IpAddr::V4(l), IpAddr::V4(r)) => {
                let mut k = [0u8; 15];
                k[..5].copy_from_slice(&head);
                k[5..10].copy_from_slice(&v4_key(l));
                k[10..].copy_from_slice(&v4_key(r));
                self.set.hash(&k)
            }
            (l, r) => {
                // IPv6, or (never on the wire) mixed families: both as 17-byte keys.
                let wide = |a: IpAddr| match a {
                    IpAddr::V4(a) => v6_key(a.to_ipv6_mapped()),
                    IpAddr::V6(a) => v6_key(a),
                };
                let mut k = [0u8; 39];
                k[..5].copy_from_slice(&head);
                k[5..22].copy_from_slice(&wide(l));
                k[22..].copy_from_slice(&wide(r));
                self.set.hash(&k)
            }
        }
    }

    /// Whether no protected host has opened a connection yet: callers skip building a key.
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.set.occupied() == 0
    }

    /// Whether the connection is known at `now`; a hit extends its deadline. Costs nothing
    /// (no hash) while no protected host has opened a connection.
    #[inline]
    pub fn check(&self, c: &ConnKey, now: u64) -> bool {
        !self.is_empty() && self.set.contains(self.hash(c), now)
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
