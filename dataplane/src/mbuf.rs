//! Fast-path access to mbuf metadata by direct field reads.
//!
//! The C shim's accessors cost a non-inlinable call each; five per packet halved forwarding
//! speed. These read the same fields through bindgen's layout (checked against the C compiler's
//! in dpdk-sys's tests) and inline to plain loads.

use dpdk_sys::rte_mbuf;

/// The writable view of a received single-segment mbuf: its frame plus the tailroom after it.
pub struct FrameView {
    pub data: *mut u8,
    pub len: usize,
    pub room: usize,
    pub pkt_len: u32,
}

/// # Safety
/// `m` must point to a valid mbuf owned by the caller.
#[inline(always)]
pub unsafe fn view(m: *mut rte_mbuf) -> FrameView {
    // SAFETY: the caller guarantees m is a valid, owned mbuf; fields are plain loads.
    let mb = unsafe { &*m };
    let data = (mb.buf_addr as *mut u8).wrapping_add(usize::from(mb.data_off));
    let len = usize::from(mb.data_len);
    // Only a single-segment buffer can be grown in place for a reply.
    let room = if mb.nb_segs == 1 {
        usize::from(mb.buf_len).saturating_sub(usize::from(mb.data_off) + len)
    } else {
        0
    };
    FrameView {
        data,
        len,
        room,
        pkt_len: mb.pkt_len,
    }
}

/// Set the length of a single-segment mbuf. Returns false (and changes nothing) when the mbuf
/// is chained or `len` does not fit its buffer.
///
/// # Safety
/// `m` must point to a valid mbuf owned by the caller.
#[inline(always)]
pub unsafe fn set_len(m: *mut rte_mbuf, len: u16) -> bool {
    // SAFETY: the caller guarantees m is a valid, owned mbuf.
    let mb = unsafe { &mut *m };
    if mb.nb_segs != 1 || u32::from(mb.data_off) + u32::from(len) > u32::from(mb.buf_len) {
        return false;
    }
    mb.data_len = len;
    mb.pkt_len = u32::from(len);
    true
}
