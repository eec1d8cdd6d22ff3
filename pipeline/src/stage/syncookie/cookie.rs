//! The cookie itself: 32 bits that let a later RST or ACK prove the sender saw our SYN-ACK,
//! without scrubd remembering anything about the SYN.
//!
//! Bit layout, most significant first:
//!
//! ```text
//!  31                              5   4    3 2     1 0
//! +---------------------------------+-----+------+-------+
//! |   MAC: top 27 bits of SipHash   | gen | time |  mss  |
//! +---------------------------------+-----+------+-------+
//! ```
//!
//! * `mss` (2 bits): index into [`MSS_TABLE`] of the client's MSS, so a stateless server could
//!   rebuild the connection (classic syncookies); scrubd only reports it, but keeps it so the
//!   cookie format is the usual one and the MAC covers it.
//! * `time` (2 bits): the time counter modulo 4. Validation accepts only the current counter and
//!   the one before; these bits say which one to recompute the MAC with, so checking a cookie costs
//!   exactly one SipHash whatever the input.
//! * `gen` (1 bit): parity of the secret generation the cookie was issued under, which picks the
//!   current or the previous secret, again without trying both.
//! * MAC (27 bits): SipHash-2-4 keyed with the generation's secret over (client address, server
//!   address, client port, server port, time counter, mss index). A blind forger succeeds with
//!   probability 2^-27 per packet even if it guesses the five metadata bits. IPv4 packs into 15
//!   bytes — the addresses, the ports, then the counter's low 22 bits and the 2-bit mss index in
//!   three bytes — so SipHash compresses two blocks instead of the three a 16- to 23-byte message
//!   takes (measured: the cookie answer and check each lose two SipHash rounds). 22 bits of a
//!   counter of `counter_period_s` (≥ 1 s) repeat after 48 days at the least (8.5 years at the
//!   default 64 s); with scheduled rotation (`rotate_every_s`, hourly by default) the secret has
//!   changed long before, and with rotation off a repeat could only re-admit the very 4-tuple
//!   whose cookie was captured. IPv6 takes (family, both 16-byte addresses, the ports, the full
//!   64-bit counter, the mss index: 46 bytes); the message lengths keep the two families apart.
//!
//! The hash is the standard SipHash-2-4 (checked against the `siphasher` crate in the tests),
//! computed by [`SipKey`] from an initial state derived once per secret generation instead of
//! per packet, over a fixed-size message so the block loop unrolls.
//!
//! Validity: a cookie validates while the time counter is the one it was issued in or the next
//! one, AND the secret it was issued under is the current or the previous one (at most one
//! rotation since). Two counter periods later, or after two rotations, it fails.

use crate::siphash::SipKey;
use siphasher::sip128::SipHasher24 as SipHasher24x128;
use std::net::IpAddr;

/// Client MSS values a cookie can encode, like Linux's table: the common Ethernet, tunnel and
/// minimum values. The client's MSS is rounded down to the nearest entry.
pub const MSS_TABLE: [u16; 4] = [536, 1300, 1440, 1460];

const MSS_BITS: u32 = 2;
const TIME_BITS: u32 = 2;
const GEN_SHIFT: u32 = MSS_BITS + TIME_BITS;
const MAC_SHIFT: u32 = GEN_SHIFT + 1;
const MAC_BITS: u32 = 32 - MAC_SHIFT;
const MSS_MASK: u32 = (1 << MSS_BITS) - 1;
const TIME_MASK: u32 = (1 << TIME_BITS) - 1;

/// Index into [`MSS_TABLE`] of the largest entry not above `mss`. A SYN without the option gets
/// the smallest entry, 536, the value RFC 9293 makes every IPv4 host accept.
pub fn mss_index(mss: Option<u16>) -> u8 {
    // The table is sorted and its first entry is the floor: count the entries above it that
    // `mss` reaches (branch-free, no loop).
    let m = mss.unwrap_or(0);
    u8::from(m >= MSS_TABLE[1]) + u8::from(m >= MSS_TABLE[2]) + u8::from(m >= MSS_TABLE[3])
}

/// The connection a cookie is bound to, always oriented from the client (the SYN's sender):
/// the SYN, the client's RST and its final ACK all travel client → server, so no reversal is
/// ever needed between issuing and checking.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Flow {
    pub client: IpAddr,
    pub server: IpAddr,
    pub client_port: u16,
    pub server_port: u16,
}

/// What a valid cookie tells us.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Valid {
    pub mss_index: u8,
    /// The time counter the cookie was issued in.
    pub counter: u64,
}

/// The current and previous secrets, derived from one master secret per generation.
///
/// Generations are derived (SipHash-2-4-128 of the generation number under the master) rather
/// than drawn from a random source, because rotation happens on the packet path where no syscall
/// is allowed, and because every core given the same master then agrees on generation N's secret.
/// Seeing cookies of one generation says nothing about another's without the master.
pub struct CookieJar {
    master: [u8; 16],
    generation: u64,
    current: SipKey,
    previous: Option<SipKey>,
}

fn derive(master: &[u8; 16], generation: u64) -> SipKey {
    let mut input = [0u8; 24];
    input[..16].copy_from_slice(b"scrubd/syncookie");
    input[16..].copy_from_slice(&generation.to_le_bytes());
    let key = SipHasher24x128::new_with_key(master)
        .hash(&input)
        .as_bytes();
    SipKey::new(&key)
}

/// The master secret from a fleet's shared key material (at least 16 bytes): SipHash-2-4-128
/// keyed with its first 16 bytes over a label and the whole material, so every byte of a
/// longer key counts and the master is never the key file's bytes themselves.
pub fn master_from_shared_key(material: &[u8]) -> [u8; 16] {
    let mut k = [0u8; 16];
    let n = material.len().min(16);
    k[..n].copy_from_slice(&material[..n]);
    let mut msg = b"scrubd/fleet-key".to_vec();
    msg.extend_from_slice(material);
    SipHasher24x128::new_with_key(&k).hash(&msg).as_bytes()
}

/// Bits of the time counter an IPv4 MAC covers (see the module docs for why that suffices).
const V4_COUNTER_BITS: u32 = 24 - MSS_BITS;
const V4_COUNTER_MASK: u32 = (1 << V4_COUNTER_BITS) - 1;

#[inline(always)]
fn mac(key: &SipKey, flow: &Flow, counter: u64, mss_index: u8) -> u32 {
    let h = match (flow.client, flow.server) {
        (IpAddr::V4(c), IpAddr::V4(s)) => {
            let mut m = [0u8; 15];
            m[0..4].copy_from_slice(&c.octets());
            m[4..8].copy_from_slice(&s.octets());
            m[8..10].copy_from_slice(&flow.client_port.to_be_bytes());
            m[10..12].copy_from_slice(&flow.server_port.to_be_bytes());
            let t = (counter as u32 & V4_COUNTER_MASK) | (u32::from(mss_index) << V4_COUNTER_BITS);
            m[12..15].copy_from_slice(&t.to_le_bytes()[..3]);
            key.hash(&m)
        }
        (c, s) => mac_long(key, c, s, flow, counter, mss_index),
    };
    (h >> (64 - MAC_BITS)) as u32
}

/// IPv6 (and the mixed pairs no parsed packet has): every address as 16 bytes.
#[inline(never)]
fn mac_long(key: &SipKey, c: IpAddr, s: IpAddr, flow: &Flow, counter: u64, mss: u8) -> u64 {
    let mut m = [0u8; 46];
    // The family byte keeps an IPv4 flow from ever hashing like an IPv6 one.
    m[0] = if c.is_ipv4() { 4 } else { 6 };
    m[1..17].copy_from_slice(&addr_bytes(c));
    m[17..33].copy_from_slice(&addr_bytes(s));
    m[33..35].copy_from_slice(&flow.client_port.to_be_bytes());
    m[35..37].copy_from_slice(&flow.server_port.to_be_bytes());
    m[37..45].copy_from_slice(&counter.to_le_bytes());
    m[45] = mss;
    key.hash(&m)
}

fn addr_bytes(a: IpAddr) -> [u8; 16] {
    match a {
        IpAddr::V4(v4) => {
            let mut b = [0u8; 16];
            b[..4].copy_from_slice(&v4.octets());
            b
        }
        IpAddr::V6(v6) => v6.octets(),
    }
}

impl CookieJar {
    pub fn new(master: [u8; 16]) -> Self {
        CookieJar {
            current: derive(&master, 0),
            master,
            generation: 0,
            previous: None,
        }
    }

    /// A jar whose current generation is `generation` and whose previous one is
    /// `generation - 1` (none at 0): with a fleet's shared key every box builds this from the
    /// wall clock, so all of them agree on both secrets whenever they start.
    pub fn at(master: [u8; 16], generation: u64) -> Self {
        CookieJar {
            current: derive(&master, generation),
            previous: generation.checked_sub(1).map(|g| derive(&master, g)),
            master,
            generation,
        }
    }

    /// Moves to `generation` (a wall-clock slot): one step keeps the current secret as the
    /// previous one; a jump (idle for several periods) derives both afresh. Never goes back.
    pub fn set_generation(&mut self, generation: u64) {
        if generation <= self.generation {
            return;
        }
        if generation == self.generation + 1 {
            self.rotate();
        } else {
            *self = CookieJar::at(self.master, generation);
        }
    }

    /// Makes the next generation current; cookies of the now-previous one stay valid until the
    /// following rotation.
    pub fn rotate(&mut self) {
        self.generation = self.generation.wrapping_add(1);
        let next = derive(&self.master, self.generation);
        self.previous = Some(std::mem::replace(&mut self.current, next));
    }

    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// A cookie for `flow`, issued in time counter `counter` under the current secret.
    pub fn issue(&self, flow: &Flow, counter: u64, mss_index: u8) -> u32 {
        let mss = u32::from(mss_index) & MSS_MASK;
        let mac = mac(&self.current, flow, counter, mss as u8);
        (mac << MAC_SHIFT)
            | (((self.generation & 1) as u32) << GEN_SHIFT)
            | (((counter as u32) & TIME_MASK) << MSS_BITS)
            | mss
    }

    /// Checks `cookie` for `flow` at time counter `now`; see the module docs for what is accepted.
    pub fn validate(&self, flow: &Flow, cookie: u32, now: u64) -> Option<Valid> {
        let mss_index = (cookie & MSS_MASK) as u8;
        let time = u64::from((cookie >> MSS_BITS) & TIME_MASK);
        let tmask = u64::from(TIME_MASK);
        let counter = if now & tmask == time {
            now
        } else {
            let prev = now.checked_sub(1)?;
            if prev & tmask != time {
                return None;
            }
            prev
        };
        let key = if u64::from((cookie >> GEN_SHIFT) & 1) == self.generation & 1 {
            &self.current
        } else {
            self.previous.as_ref()?
        };
        (mac(key, flow, counter, mss_index) == cookie >> MAC_SHIFT)
            .then_some(Valid { mss_index, counter })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::net::{Ipv4Addr, Ipv6Addr};

    fn any_addr_pair() -> impl Strategy<Value = (IpAddr, IpAddr)> {
        prop_oneof![
            (any::<u32>(), any::<u32>())
                .prop_map(|(a, b)| (IpAddr::V4(Ipv4Addr::from(a)), IpAddr::V4(Ipv4Addr::from(b)))),
            (any::<u128>(), any::<u128>())
                .prop_map(|(a, b)| (IpAddr::V6(Ipv6Addr::from(a)), IpAddr::V6(Ipv6Addr::from(b)))),
        ]
    }

    fn any_flow() -> impl Strategy<Value = Flow> {
        (any_addr_pair(), any::<u16>(), any::<u16>()).prop_map(|((c, s), cp, sp)| Flow {
            client: c,
            server: s,
            client_port: cp,
            server_port: sp,
        })
    }

    /// Flips bits of one field; `which` picks the field, `delta` (non-zero) the bits.
    fn alter(flow: &Flow, which: u8, delta: u128) -> Flow {
        let mut f = *flow;
        let flip = |a: IpAddr| match a {
            IpAddr::V4(v) => IpAddr::V4(Ipv4Addr::from(u32::from(v) ^ (delta as u32).max(1))),
            IpAddr::V6(v) => IpAddr::V6(Ipv6Addr::from(u128::from(v) ^ delta)),
        };
        match which % 4 {
            0 => f.client = flip(f.client),
            1 => f.server = flip(f.server),
            2 => f.client_port ^= (delta as u16).max(1),
            _ => f.server_port ^= (delta as u16).max(1),
        }
        f
    }

    #[test]
    fn mss_rounds_down_to_table() {
        assert_eq!(mss_index(None), 0);
        assert_eq!(mss_index(Some(0)), 0);
        assert_eq!(mss_index(Some(535)), 0);
        assert_eq!(mss_index(Some(536)), 0);
        assert_eq!(mss_index(Some(1299)), 0);
        assert_eq!(mss_index(Some(1300)), 1);
        assert_eq!(mss_index(Some(1440)), 2);
        assert_eq!(mss_index(Some(1459)), 2);
        assert_eq!(mss_index(Some(1460)), 3);
        assert_eq!(mss_index(Some(9000)), 3);
    }

    #[test]
    fn counter_zero_has_no_previous_window() {
        let jar = CookieJar::new([7; 16]);
        let f = Flow {
            client: "192.0.2.1".parse().unwrap(),
            server: "198.51.100.1".parse().unwrap(),
            client_port: 1,
            server_port: 2,
        };
        // Issued at counter 3, checked at counter 0: the time bits match "now - 1" only through
        // wrap-around, which must not be taken.
        let c = jar.issue(&f, 3, 0);
        assert_eq!(jar.validate(&f, c, 0), None);
        assert!(jar.validate(&f, jar.issue(&f, 0, 0), 0).is_some());
    }

    fn reference(key: &[u8; 16], m: &[u8]) -> u64 {
        siphasher::sip::SipHasher24::new_with_key(key).hash(m)
    }

    #[test]
    fn sipkey_matches_the_reference_vectors() {
        // The SipHash paper's key 00..0f over messages 00, 00 01, ...: the 64-byte vector table
        // of the reference implementation, checked here through the siphasher crate for the
        // lengths the cookies use and every tail length around them.
        let key: [u8; 16] = std::array::from_fn(|i| i as u8);
        let msg: [u8; 64] = std::array::from_fn(|i| i as u8);
        let k = SipKey::new(&key);
        macro_rules! check {
            ($($n:literal),*) => {$(
                let m: [u8; $n] = msg[..$n].try_into().unwrap();
                assert_eq!(k.hash(&m), reference(&key, &m), "length {}", $n);
            )*};
        }
        check!(0, 1, 7, 8, 9, 15, 16, 21, 22, 23, 24, 45, 46, 47, 63, 64);
        // The paper's own vector for the 15-byte message.
        let m15: [u8; 15] = msg[..15].try_into().unwrap();
        assert_eq!(k.hash(&m15), 0xa129_ca61_49be_45e5);
    }

    proptest! {
        #[test]
        fn sipkey_matches_siphasher(key in any::<[u8; 16]>(), m in any::<[u8; 22]>(), l in any::<[u8; 46]>()) {
            let k = SipKey::new(&key);
            prop_assert_eq!(k.hash(&m), reference(&key, &m));
            prop_assert_eq!(k.hash(&l), reference(&key, &l));
        }

        #[test]
        fn round_trip_in_issuing_and_next_window(flow in any_flow(), master in any::<[u8; 16]>(),
                                                 counter in 0u64..u64::MAX, mss in 0u8..4,
                                                 next in any::<bool>()) {
            let jar = CookieJar::new(master);
            let c = jar.issue(&flow, counter, mss);
            let now = if next { counter + 1 } else { counter };
            prop_assert_eq!(jar.validate(&flow, c, now), Some(Valid { mss_index: mss, counter }));
        }

        #[test]
        fn altered_flow_fails(flow in any_flow(), master in any::<[u8; 16]>(), counter in 0u64..1 << 40,
                              mss in 0u8..4, which in any::<u8>(), delta in 1u128..) {
            let jar = CookieJar::new(master);
            let c = jar.issue(&flow, counter, mss);
            let other = alter(&flow, which, delta);
            prop_assume!(other != flow);
            prop_assert_eq!(jar.validate(&other, c, counter), None);
        }

        #[test]
        fn altered_cookie_bits_fail(flow in any_flow(), master in any::<[u8; 16]>(),
                                    counter in 0u64..1 << 40, mss in 0u8..4, flip in 1u32..) {
            // Any change, including to the MSS, time or generation bits, must be caught.
            let jar = CookieJar::new(master);
            let c = jar.issue(&flow, counter, mss);
            prop_assert_eq!(jar.validate(&flow, c ^ flip, counter), None);
            prop_assert_eq!(jar.validate(&flow, c ^ flip, counter + 1), None);
        }

        #[test]
        fn expired_two_windows_later(flow in any_flow(), master in any::<[u8; 16]>(),
                                     counter in 0u64..1 << 40, mss in 0u8..4, later in 2u64..10) {
            let jar = CookieJar::new(master);
            let c = jar.issue(&flow, counter, mss);
            prop_assert_eq!(jar.validate(&flow, c, counter + later), None);
            // A cookie from the future is no better.
            if counter > 0 {
                prop_assert_eq!(jar.validate(&flow, c, counter - 1), None);
            }
        }

        #[test]
        fn survives_one_rotation_not_two(flow in any_flow(), master in any::<[u8; 16]>(),
                                         counter in 0u64..1 << 40, mss in 0u8..4, pre in 0u8..3) {
            let mut jar = CookieJar::new(master);
            for _ in 0..pre {
                jar.rotate();
            }
            let c = jar.issue(&flow, counter, mss);
            jar.rotate();
            prop_assert_eq!(jar.validate(&flow, c, counter).map(|v| v.mss_index), Some(mss));
            // Cookies issued under the new secret are distinct and valid too.
            prop_assert!(jar.validate(&flow, jar.issue(&flow, counter, mss), counter).is_some());
            jar.rotate();
            prop_assert_eq!(jar.validate(&flow, c, counter), None);
        }

        #[test]
        fn jar_at_a_generation_is_the_rotated_jar(flow in any_flow(), master in any::<[u8; 16]>(),
                                                  counter in 0u64..1 << 40, gen in 0u64..6,
                                                  jump in 1u64..4) {
            let mut rotated = CookieJar::new(master);
            for _ in 0..gen {
                rotated.rotate();
            }
            let at = CookieJar::at(master, gen);
            prop_assert_eq!(at.issue(&flow, counter, 1), rotated.issue(&flow, counter, 1));
            // The previous generation's cookies validate on both, or on neither at 0.
            let old = CookieJar::at(master, gen.saturating_sub(1)).issue(&flow, counter, 1);
            prop_assert_eq!(at.validate(&flow, old, counter), rotated.validate(&flow, old, counter));
            prop_assert_eq!(at.validate(&flow, old, counter).is_some(), gen > 0 || old == at.issue(&flow, counter, 1));
            // Setting a later generation, by one step or a jump, equals building it there.
            let mut moved = CookieJar::at(master, gen);
            moved.set_generation(gen + jump);
            let there = CookieJar::at(master, gen + jump);
            prop_assert_eq!(moved.generation(), gen + jump);
            let c = there.issue(&flow, counter, 2);
            prop_assert_eq!(moved.issue(&flow, counter, 2), c);
            let prev = CookieJar::at(master, gen + jump - 1).issue(&flow, counter, 2);
            prop_assert!(moved.validate(&flow, prev, counter).is_some());
            // Never backwards.
            moved.set_generation(gen);
            prop_assert_eq!(moved.generation(), gen + jump);
        }

        #[test]
        fn shared_key_material_all_counts(a in proptest::collection::vec(any::<u8>(), 16..64),
                                          i in any::<prop::sample::Index>(), flip in 1u8..) {
            let mut b = a.clone();
            b[i.index(a.len())] ^= flip;
            prop_assert_eq!(master_from_shared_key(&a), master_from_shared_key(&a.clone()));
            prop_assert_ne!(master_from_shared_key(&a), master_from_shared_key(&b));
            prop_assert_ne!(master_from_shared_key(&a).to_vec(), a[..16].to_vec());
        }

        #[test]
        fn different_masters_disagree(flow in any_flow(), a in any::<[u8; 16]>(), b in any::<[u8; 16]>(),
                                      counter in 0u64..1 << 40) {
            prop_assume!(a != b);
            let c = CookieJar::new(a).issue(&flow, counter, 0);
            prop_assert_eq!(CookieJar::new(b).validate(&flow, c, counter), None);
        }
    }
}
