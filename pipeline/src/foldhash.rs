//! The folded multiply behind the keyed set indexes of the shared tables.
//!
//! `mum(a, b)` is the 128-bit product of two 64-bit words, its halves XORed together (the
//! mixing step of wyhash and foldhash). A table that picks a key's set with
//! `mum(x ⊕ k0, rotl(x, 32) ⊕ k1)`, the secrets `k0`, `k1` drawn at start, resists an attacker
//! who wants many keys in one set (HashDoS): which key lands where depends on the secrets through
//! a carry-propagating product, not a linear map whose collisions repeat by key difference, and
//! no packet ever reveals an index. It is one multiply where a SipHash of the same short key is
//! some 60–70 instructions, and it only *places* keys: the tables compare whole keys (or a
//! keyed 64-bit hash of them) to find them, so a collision of places costs a slot, never a
//! wrong answer.

/// The folded 64×64→128-bit product (see the module documentation).
#[inline(always)]
pub fn mum(a: u64, b: u64) -> u64 {
    let p = u128::from(a).wrapping_mul(u128::from(b));
    (p as u64) ^ ((p >> 64) as u64)
}

/// Folded into the second secret so that no secret, even a test's small one, makes the second
/// factor's high half zero.
const K1_CONSTANT: u64 = 0x243f_6a88_85a3_08d3;

/// The two secrets of a table's placement, and the placement itself.
#[derive(Clone, Copy, Debug)]
pub struct Placement {
    k0: u64,
    k1c: u64,
}

impl Placement {
    /// `k0`, `k1`: secret, drawn at start.
    pub fn new(k0: u64, k1: u64) -> Placement {
        Placement {
            k0,
            k1c: k1 ^ K1_CONSTANT,
        }
    }

    /// The place of a two-word key: `mum(lo ⊕ k0, hi ⊕ rotl(lo, 32) ⊕ k1)`. Both factors vary
    /// with `lo`, so no secret collapses every key onto one place. A one-word key is `(x, 0)`.
    #[inline(always)]
    pub fn of(&self, lo: u64, hi: u64) -> u64 {
        mum(lo ^ self.k0, hi ^ lo.rotate_left(32) ^ self.k1c)
    }
}
