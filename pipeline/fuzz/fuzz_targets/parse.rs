//! Any byte string must parse to `Ok` or a `Malformed`, never panic, and an accepted frame's
//! offsets must stay inside it (stages index the frame with them).
#![no_main]

use libfuzzer_sys::fuzz_target;
use pipeline::wire::parse::parse;

fuzz_target!(|frame: &[u8]| {
    if let Ok(h) = parse(frame) {
        assert!(usize::from(h.l3_off) <= frame.len());
        if let Some(ip) = h.ip() {
            let end = usize::from(h.l3_off) + usize::from(ip.ip_len);
            assert!(end <= frame.len());
            assert!(ip.l4_off <= ip.payload_off);
            assert!(usize::from(ip.payload_off) + usize::from(ip.payload_len) <= end);
        }
    }
});
