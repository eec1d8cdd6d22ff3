//! AES-128 as a keyed pseudo-random function (PRF) over fixed-size messages: the SYN cookie's
//! IPv4 MAC and the bucket hash of the shared allowlist and outbound tables.
//!
//! Why AES: both uses need outputs nobody can predict or steer without the key (a cookie
//! forger, or a HashDoS attacker aiming sources at one bucket or at an allowlisted entry's
//! tag), that is a PRF, and AES-128 is the most studied one. With the key schedule expanded
//! once per key and AES-NI (the `aes` crate detects it at run time; every x86-64 server that
//! runs DPDK has it), one 16-byte block costs ten hardware rounds, a fraction of the SipHash
//! rounds it replaces on the packet path. Without AES-NI the crate falls back to a
//! constant-time software AES: slower, equally correct.
//!
//! Messages longer than one block are chained CBC-MAC style over an encoding that puts the
//! message length in the first block. CBC-MAC is a secure PRF on any prefix-free set of
//! messages (Bellare, Kilian, Rogaway; Petrank, Rackoff), and this encoding is prefix-free: two
//! encodings that share their first block have the same length, hence the same number of
//! blocks, so neither is a proper prefix of the other.

use aes::cipher::{BlockEncrypt, KeyInit};
use aes::Aes128Enc;

/// One AES-128 key with its round keys expanded.
#[derive(Clone)]
pub struct AesPrf(Aes128Enc);

impl std::fmt::Debug for AesPrf {
    /// Never shows the key.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AesPrf(..)")
    }
}

impl AesPrf {
    pub fn new(key: &[u8; 16]) -> AesPrf {
        AesPrf(Aes128Enc::new(key.into()))
    }

    /// AES-128 of one block, as a little-endian `u128`.
    #[inline(always)]
    pub fn block(&self, m: [u8; 16]) -> u128 {
        let mut b = m.into();
        self.0.encrypt_block(&mut b);
        u128::from_le_bytes(b.into())
    }

    /// The PRF of an `N`-byte message (`N` < 256): CBC-MAC over the blocks of
    /// `m[..15] ‖ N ‖ m[15..]`, the last one zero-padded (see the module docs for why this is
    /// a PRF). A message of up to 15 bytes is one block encryption.
    #[inline(always)]
    pub fn hash<const N: usize>(&self, m: &[u8; N]) -> u128 {
        const { assert!(N < 256, "the length must fit the length byte") };
        let mut first = [0u8; 16];
        let head = N.min(15);
        first[..head].copy_from_slice(&m[..head]);
        first[15] = N as u8;
        let mut h = self.block(first);
        for chunk in m[head..].chunks(16) {
            let mut b = [0u8; 16];
            b[..chunk.len()].copy_from_slice(chunk);
            h = self.block((h ^ u128::from_le_bytes(b)).to_le_bytes());
        }
        h
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn block_is_aes128_fips197() {
        // FIPS-197 appendix C.1: AES-128, key 00..0f, plaintext 00 11 22 .. ff.
        let key: [u8; 16] = std::array::from_fn(|i| i as u8);
        let pt: [u8; 16] = std::array::from_fn(|i| (i as u8) * 0x11);
        let ct = AesPrf::new(&key).block(pt).to_le_bytes();
        assert_eq!(
            ct,
            [
                0x69, 0xc4, 0xe0, 0xd8, 0x6a, 0x7b, 0x04, 0x30, 0xd8, 0xcd, 0xb7, 0x80, 0x70, 0xb4,
                0xc5, 0x5a
            ]
        );
    }

    #[test]
    fn hash_is_cbc_mac_over_the_length_prefixed_encoding() {
        let k = AesPrf::new(b"0123456789abcdef");
        let m: [u8; 39] = std::array::from_fn(|i| (i as u8).wrapping_mul(37));
        // By hand: first block m[..15] ‖ 39, then m[15..31], then m[31..39] zero-padded.
        let mut b0 = [0u8; 16];
        b0[..15].copy_from_slice(&m[..15]);
        b0[15] = 39;
        let mut b1 = [0u8; 16];
        b1.copy_from_slice(&m[15..31]);
        let mut b2 = [0u8; 16];
        b2[..8].copy_from_slice(&m[31..]);
        let h0 = k.block(b0);
        let h1 = k.block((h0 ^ u128::from_le_bytes(b1)).to_le_bytes());
        let h2 = k.block((h1 ^ u128::from_le_bytes(b2)).to_le_bytes());
        assert_eq!(k.hash(&m), h2);
        // Short messages are one block; lengths keep equal-looking messages apart.
        let mut one = [0u8; 16];
        one[..5].copy_from_slice(&m[..5]);
        one[15] = 5;
        let five: [u8; 5] = m[..5].try_into().unwrap();
        assert_eq!(k.hash(&five), k.block(one));
        let mut padded = [0u8; 6];
        padded[..5].copy_from_slice(&five);
        assert_ne!(k.hash(&five), k.hash(&padded));
        assert_ne!(k.hash(&five), AesPrf::new(b"0123456789abcdeF").hash(&five));
    }
}
