//! Sources that have proved they can receive our SYN-ACKs, for a while.
//!
//! Set-associative: a keyed hash of the address picks one bucket of [`WAYS`] slots, and the
//! source can only live in that bucket. Lookups and inserts touch one bucket (O(1), two cache
//! lines), the table is allocated once, and a full bucket evicts the slot whose expiry is
//! soonest, i.e. the source seen least recently. The hash is keyed so that an attacker who
//! controls many real addresses cannot aim them all at one bucket to push a victim out.
//!
//! Expiry is sliding: every hit pushes the deadline out by the TTL again, so an active client
//! never has to re-authenticate mid-session; an idle one is forgotten TTL after its last packet.
//! Expired slots are reclaimed lazily, when a lookup or insert passes over them.

use siphasher::sip::SipHasher13;
use std::net::IpAddr;

/// Slots per bucket: four 32-byte slots fill two cache lines.
pub const WAYS: usize = 4;

#[derive(Clone, Copy, Default)]
struct Slot {
    addr: u128,
    v6: bool,
    /// TSC at which the entry stops counting; 0 marks an empty slot (a live deadline is
    /// `now + ttl` with ttl > 0, so never 0).
    expires: u64,
}

/// What [`Allowlist::insert`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Inserted {
    /// Took a free or expired slot.
    New,
    /// The source was already present; its deadline moved.
    Refreshed,
    /// The bucket was full of live entries; the one expiring soonest made room.
    Evicted,
}

pub struct Allowlist {
    slots: Vec<Slot>,
    bucket_mask: usize,
    hasher: SipHasher13,
    ttl_ticks: u64,
    occupied: usize,
}

fn key(addr: IpAddr) -> (u128, bool) {
    match addr {
        IpAddr::V4(a) => (u128::from(u32::from(a)), false),
        IpAddr::V6(a) => (u128::from(a), true),
    }
}

impl Allowlist {
    /// Room for at least `capacity` sources: rounded up to a power-of-two number of buckets.
    /// `ttl_ticks` must be non-zero (the config check guarantees it).
    pub fn new(capacity: usize, ttl_ticks: u64, hash_key: [u8; 16]) -> Self {
        let buckets = capacity.div_ceil(WAYS).max(1).next_power_of_two();
        Allowlist {
            slots: vec![Slot::default(); buckets * WAYS],
            bucket_mask: buckets - 1,
            hasher: SipHasher13::new_with_key(&hash_key),
            ttl_ticks: ttl_ticks.max(1),
            occupied: 0,
        }
    }

    pub fn capacity(&self) -> usize {
        self.slots.len()
    }

    /// Slots holding an entry, including expired ones not yet reclaimed.
    pub fn occupied(&self) -> usize {
        self.occupied
    }

    fn bucket(&mut self, addr: u128, v6: bool) -> &mut [Slot] {
        let mut m = [0u8; 17];
        m[..16].copy_from_slice(&addr.to_le_bytes());
        m[16] = u8::from(v6);
        let b = (self.hasher.hash(&m) as usize) & self.bucket_mask;
        let start = b * WAYS;
        // Always in range (b <= bucket_mask); the fallback only keeps this panic-free.
        let len = self.slots.len();
        let range = start.min(len)..(start + WAYS).min(len);
        &mut self.slots[range]
    }

    /// Whether `addr` is allowlisted at `now`; a hit extends its deadline.
    pub fn check(&mut self, addr: IpAddr, now: u64) -> bool {
        let (a, v6) = key(addr);
        let ttl = self.ttl_ticks;
        let mut reclaimed = false;
        let mut hit = false;
        for s in self.bucket(a, v6) {
            if s.expires != 0 && s.addr == a && s.v6 == v6 {
                if now < s.expires {
                    s.expires = now.saturating_add(ttl);
                    hit = true;
                } else {
                    *s = Slot::default();
                    reclaimed = true;
                }
                break;
            }
        }
        if reclaimed {
            self.occupied = self.occupied.saturating_sub(1);
        }
        hit
    }

    pub fn insert(&mut self, addr: IpAddr, now: u64) -> Inserted {
        let (a, v6) = key(addr);
        let expires = now.saturating_add(self.ttl_ticks);
        let mut free = None;
        let mut stale = None;
        let mut oldest = 0;
        let mut oldest_expiry = u64::MAX;
        let bucket = self.bucket(a, v6);
        for (i, s) in bucket.iter_mut().enumerate() {
            if s.expires == 0 {
                free = free.or(Some(i));
                continue;
            }
            if s.addr == a && s.v6 == v6 {
                s.expires = expires;
                return Inserted::Refreshed;
            }
            if s.expires <= now {
                stale = stale.or(Some(i));
            } else if s.expires < oldest_expiry {
                oldest_expiry = s.expires;
                oldest = i;
            }
        }
        let (slot, outcome, newly_occupied) = match (free, stale) {
            (Some(i), _) => (i, Inserted::New, true),
            (None, Some(i)) => (i, Inserted::New, false),
            (None, None) => (oldest, Inserted::Evicted, false),
        };
        if let Some(s) = bucket.get_mut(slot) {
            *s = Slot {
                addr: a,
                v6,
                expires,
            };
        }
        if newly_occupied {
            self.occupied += 1;
        }
        outcome
    }

    #[cfg(test)]
    pub(super) fn storage(&self) -> (*const u8, usize) {
        (self.slots.as_ptr().cast(), self.slots.capacity())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::net::{Ipv4Addr, Ipv6Addr};

    fn v4(n: u32) -> IpAddr {
        IpAddr::V4(Ipv4Addr::from(n))
    }

    #[test]
    fn capacity_rounds_up_to_whole_buckets() {
        assert_eq!(Allowlist::new(0, 1, [0; 16]).capacity(), WAYS);
        assert_eq!(Allowlist::new(1, 1, [0; 16]).capacity(), WAYS);
        assert_eq!(Allowlist::new(5, 1, [0; 16]).capacity(), 2 * WAYS);
        assert_eq!(Allowlist::new(1000, 1, [0; 16]).capacity(), 1024);
    }

    #[test]
    fn insert_check_and_sliding_expiry() {
        let mut a = Allowlist::new(64, 100, [1; 16]);
        let x = v4(0x0a000001);
        assert!(!a.check(x, 0));
        assert_eq!(a.insert(x, 10), Inserted::New);
        assert!(a.check(x, 109));
        // The hit at 109 moved the deadline to 209.
        assert!(a.check(x, 208));
        assert!(!a.check(x, 308));
        assert_eq!(a.occupied(), 0, "expired entry reclaimed on lookup");
        assert_eq!(a.insert(x, 400), Inserted::New);
        assert_eq!(a.insert(x, 401), Inserted::Refreshed);
        assert_eq!(a.occupied(), 1);
    }

    #[test]
    fn families_do_not_alias() {
        let mut a = Allowlist::new(64, 100, [2; 16]);
        a.insert(v4(0x0a000001), 0);
        assert!(!a.check(IpAddr::V6(Ipv6Addr::from(0x0a000001u128)), 1));
        assert!(a.check(v4(0x0a000001), 1));
    }

    #[test]
    fn full_bucket_evicts_least_recently_seen() {
        // One bucket: every source shares it.
        let mut a = Allowlist::new(WAYS, 1000, [3; 16]);
        for i in 0..WAYS as u32 {
            assert_eq!(a.insert(v4(i), u64::from(i)), Inserted::New);
        }
        // Touch source 0 so source 1 becomes the least recently seen.
        assert!(a.check(v4(0), 50));
        assert_eq!(a.insert(v4(99), 60), Inserted::Evicted);
        assert!(!a.check(v4(1), 61));
        for i in [0, 2, 3, 99] {
            assert!(a.check(v4(i), 61), "{i} should have stayed");
        }
        assert_eq!(a.occupied(), WAYS);
    }

    #[test]
    fn expired_slot_is_reused_before_evicting() {
        let mut a = Allowlist::new(WAYS, 10, [4; 16]);
        for i in 0..WAYS as u32 {
            a.insert(v4(i), if i == 2 { 0 } else { 100 });
        }
        assert_eq!(a.insert(v4(50), 105), Inserted::New);
        assert!(!a.check(v4(2), 105));
        assert!(a.check(v4(0), 105));
        assert_eq!(a.occupied(), WAYS);
    }

    proptest! {
        #[test]
        fn never_exceeds_capacity_and_recent_insert_is_found(
            cap in 1usize..64, ops in proptest::collection::vec((any::<u32>(), 0u64..50), 1..400)) {
            let mut a = Allowlist::new(cap, 1000, [5; 16]);
            let storage = a.storage();
            let mut now = 0;
            for (addr, dt) in ops {
                now += dt;
                a.insert(v4(addr), now);
                prop_assert!(a.check(v4(addr), now));
                prop_assert!(a.occupied() <= a.capacity());
            }
            prop_assert_eq!(a.storage(), storage, "the table never reallocates");
        }
    }
}
