//! The SYN-cookie MAC on its own, with every input chosen by the fuzzer: flow (IPv4 or IPv6),
//! client MSS, time counters, master secret, rotations and a candidate cookie.
//!
//! Asserted, because they hold for every input: validating any cookie at any time never panics,
//! and whatever validates reports the MSS and counter bits the cookie carries; a freshly issued
//! cookie validates in its own counter window and the next one with the MSS index it was issued
//! with, also after one secret rotation; it fails one window early, two windows late, and with
//! its time bits altered (those checks do not depend on the MAC).
//!
//! Counted, not asserted: a cookie checked against a flow with one bit flipped validates only if
//! the 27-bit MAC collides (about 2^-27 per try), so such hits are reported on stderr as they
//! are found. Same for a cookie checked after two rotations.
#![no_main]

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::atomic::{AtomicU64, Ordering};

use libfuzzer_sys::arbitrary::{Result, Unstructured};
use libfuzzer_sys::fuzz_target;
use pipeline::stage::syncookie::{mss_index, CookieJar, Flow, Valid};

/// Low bits of a cookie: MSS index (2 bits) and time counter modulo 4 (2 bits); see cookie.rs.
const MSS_MASK: u32 = 0b11;
const TIME_SHIFT: u32 = 2;

static TRIES: AtomicU64 = AtomicU64::new(0);
static COLLISIONS: AtomicU64 = AtomicU64::new(0);

struct Input {
    master: [u8; 16],
    flow: Flow,
    mss: Option<u16>,
    counter: u64,
    now: u64,
    rotations: u8,
    candidate: u32,
    /// Which bit of the flow (addresses and ports as one bit string) to flip.
    flip: u16,
}

fn input(u: &mut Unstructured) -> Result<Input> {
    let v6: bool = u.arbitrary()?;
    let (client, server) = if v6 {
        (
            IpAddr::V6(Ipv6Addr::from(u.arbitrary::<u128>()?)),
            IpAddr::V6(Ipv6Addr::from(u.arbitrary::<u128>()?)),
        )
    } else {
        (
            IpAddr::V4(Ipv4Addr::from(u.arbitrary::<u32>()?)),
            IpAddr::V4(Ipv4Addr::from(u.arbitrary::<u32>()?)),
        )
    };
    Ok(Input {
        master: u.arbitrary()?,
        flow: Flow {
            client,
            server,
            client_port: u.arbitrary()?,
            server_port: u.arbitrary()?,
        },
        mss: u.arbitrary()?,
        counter: u.arbitrary()?,
        now: u.arbitrary()?,
        rotations: u.arbitrary()?,
        candidate: u.arbitrary()?,
        flip: u.arbitrary()?,
    })
}

/// `flow` with bit `bit` (modulo the flow's width) of client ‖ server ‖ client port ‖ server
/// port flipped.
fn flipped(flow: &Flow, bit: u16) -> Flow {
    let addr_bits: u16 = if flow.client.is_ipv4() { 32 } else { 128 };
    let bit = bit % (2 * addr_bits + 32);
    let flip_addr = |a: IpAddr, b: u16| match a {
        IpAddr::V4(v) => IpAddr::V4(Ipv4Addr::from(u32::from(v) ^ (1 << b))),
        IpAddr::V6(v) => IpAddr::V6(Ipv6Addr::from(u128::from(v) ^ (1 << b))),
    };
    let mut f = *flow;
    if bit < addr_bits {
        f.client = flip_addr(f.client, bit);
    } else if bit < 2 * addr_bits {
        f.server = flip_addr(f.server, bit - addr_bits);
    } else if bit < 2 * addr_bits + 16 {
        f.client_port ^= 1 << (bit - 2 * addr_bits);
    } else {
        f.server_port ^= 1 << (bit - 2 * addr_bits - 16);
    }
    f
}

/// Counts one negative check that validated anyway; reports at powers of two so a long run
/// does not flood stderr.
fn collision(what: &str) {
    let n = COLLISIONS.fetch_add(1, Ordering::Relaxed) + 1;
    if n.is_power_of_two() {
        eprintln!(
            "cookie: MAC collision #{n} ({what}) after {} negative checks",
            TRIES.load(Ordering::Relaxed)
        );
    }
}

fuzz_target!(|data: &[u8]| {
    let Ok(inp) = input(&mut Unstructured::new(data)) else {
        return;
    };
    let mut jar = CookieJar::new(inp.master);
    for _ in 0..inp.rotations % 4 {
        jar.rotate();
    }

    // Any candidate at any time: no panic, and what validates is what the cookie says.
    if let Some(v) = jar.validate(&inp.flow, inp.candidate, inp.now) {
        assert_eq!(u32::from(v.mss_index), inp.candidate & MSS_MASK);
        assert!(v.counter == inp.now || Some(v.counter) == inp.now.checked_sub(1));
        assert_eq!(
            (v.counter & 3) as u32,
            (inp.candidate >> TIME_SHIFT) & 3,
            "counter bits"
        );
    }

    let mss = mss_index(inp.mss);
    assert!(mss < 4);
    let c = jar.issue(&inp.flow, inp.counter, mss);
    assert_eq!(c & MSS_MASK, u32::from(mss));
    let valid = Some(Valid {
        mss_index: mss,
        counter: inp.counter,
    });

    // Positive path: its own window and the next.
    assert_eq!(jar.validate(&inp.flow, c, inp.counter), valid);
    if let Some(next) = inp.counter.checked_add(1) {
        assert_eq!(jar.validate(&inp.flow, c, next), valid);
    }
    // Outside the window the time bits alone rule it out, whatever the MAC.
    if let Some(later) = inp.counter.checked_add(2) {
        assert_eq!(jar.validate(&inp.flow, c, later), None, "two windows late");
    }
    if let Some(earlier) = inp.counter.checked_sub(1) {
        assert_eq!(
            jar.validate(&inp.flow, c, earlier),
            None,
            "one window early"
        );
    }
    // Time bits moved two counters away: the counter they name is in neither accepted window.
    // (Moving them by one could name the previous window, where only the MAC decides.)
    let other_time = c ^ (2 << TIME_SHIFT);
    assert_eq!(jar.validate(&inp.flow, other_time, inp.counter), None);

    // Negative paths that only the MAC decides: counted, not asserted.
    let other = flipped(&inp.flow, inp.flip);
    assert_ne!(other, inp.flow);
    TRIES.fetch_add(1, Ordering::Relaxed);
    if jar.validate(&other, c, inp.counter).is_some() {
        collision("flipped flow bit");
    }

    // One rotation later the cookie is still good; two rotations later it is not (modulo the MAC).
    jar.rotate();
    assert_eq!(
        jar.validate(&inp.flow, c, inp.counter),
        valid,
        "after one rotation"
    );
    jar.rotate();
    TRIES.fetch_add(1, Ordering::Relaxed);
    if jar.validate(&inp.flow, c, inp.counter).is_some() {
        collision("two rotations");
    }
});
