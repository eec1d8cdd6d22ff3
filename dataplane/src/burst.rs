//! Safe bursts of owned mbufs and per-queue RX/TX, for applications that build their own
//! packets (the `scrubgen` traffic generator) rather than run scrubd's worker loop.
//!
//! [`Mbufs`] owns up to [`BURST_CAP`] buffers and frees what it still holds on drop, so a
//! buffer is never leaked or freed twice; [`Queue`] is the one handle to a queue id of a port
//! (RX and TX share the id), handed out once per port by [`crate::Port::take_queues`], so two
//! lcores can never poll the same queue. Nothing here allocates, locks or makes a syscall: it is
//! meant for the per-packet path.

use crate::mempool::Mempool;
use dpdk_sys::rte_mbuf;
use std::marker::PhantomData;

/// Most buffers one [`Mbufs`] holds (the largest burst scrubd's workers request, too).
pub const BURST_CAP: usize = crate::worker::MAX_BURST;

/// An owned set of up to [`BURST_CAP`] mbufs. Buffers come from [`Mbufs::alloc`] or
/// [`Queue::rx`] and leave through [`Queue::tx`] (which takes ownership of what the PMD
/// accepted) or [`Mbufs::clear`]/drop (which free them). Bound to the pool's lifetime so no
/// buffer outlives its pool.
pub struct Mbufs<'a> {
    ptrs: [*mut rte_mbuf; BURST_CAP],
    len: usize,
    _pool: PhantomData<&'a Mempool<'a>>,
}

impl<'a> Mbufs<'a> {
    /// An empty set for buffers of `_pool` (or of ports set up with a pool of that lifetime).
    pub fn new(_pool: &'a Mempool<'a>) -> Mbufs<'a> {
        Mbufs {
            ptrs: [std::ptr::null_mut(); BURST_CAP],
            len: 0,
            _pool: PhantomData,
        }
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Room left before [`BURST_CAP`].
    pub fn room(&self) -> usize {
        BURST_CAP - self.len
    }

    /// Append `n` fresh buffers from `pool`, all or none (DPDK's bulk allocation is atomic).
    /// Returns false when the pool is short or `n` exceeds [`Mbufs::room`].
    pub fn alloc(&mut self, pool: &'a Mempool<'a>, n: usize) -> bool {
        if n == 0 {
            return true;
        }
        if n > self.room() {
            return false;
        }
        let tail = &mut self.ptrs[self.len..self.len + n];
        // SAFETY: pool is a live pktmbuf pool; tail has room for n pointers, which the call
        // fills with reset single-segment mbufs on success and leaves untouched on failure.
        let rc = unsafe {
            dpdk_sys::shim_rte_pktmbuf_alloc_bulk(pool.as_ptr(), tail.as_mut_ptr(), n as u32)
        };
        if rc != 0 {
            return false;
        }
        self.len += n;
        true
    }

    /// The frame bytes of buffer `i` (its first segment), or None past the end.
    pub fn frame(&self, i: usize) -> Option<&[u8]> {
        if i >= self.len {
            return None;
        }
        // SAFETY: ptrs[..len] are valid mbufs owned by self; the view covers the first
        // segment's data, which lives as long as the mbuf (borrowed with self).
        let v = unsafe { crate::mbuf::view(self.ptrs[i]) };
        // SAFETY: data..data+len is the initialised data of that segment.
        Some(unsafe { std::slice::from_raw_parts(v.data, v.len) })
    }

    /// Make buffer `i` a single-segment frame of `len` bytes and return them to be written.
    /// None past the end or when `len` does not fit the buffer. Bytes not written keep what the
    /// buffer held before.
    pub fn frame_mut(&mut self, i: usize, len: u16) -> Option<&mut [u8]> {
        if i >= self.len {
            return None;
        }
        let m = self.ptrs[i];
        // SAFETY: m is a valid mbuf owned by self.
        if !unsafe { crate::mbuf::set_len(m, len) } {
            return None;
        }
        // SAFETY: as above; after set_len the first segment holds len bytes within its buffer.
        let v = unsafe { crate::mbuf::view(m) };
        // SAFETY: data..data+len lies inside the mbuf's buffer, exclusively ours via &mut self.
        Some(unsafe { std::slice::from_raw_parts_mut(v.data, v.len) })
    }

    /// Free every buffer held.
    pub fn clear(&mut self) {
        if self.len > 0 {
            // SAFETY: ptrs[..len] are valid mbufs owned by self; they are forgotten right after.
            unsafe {
                dpdk_sys::shim_rte_pktmbuf_free_bulk(self.ptrs.as_mut_ptr(), self.len as u32)
            };
            self.len = 0;
        }
    }

    /// Free the buffers from `keep` on (e.g. allocated but not filled).
    pub fn truncate(&mut self, keep: usize) {
        if keep < self.len {
            let tail = &mut self.ptrs[keep..self.len];
            // SAFETY: the tail holds valid mbufs owned by self, forgotten right after.
            unsafe { dpdk_sys::shim_rte_pktmbuf_free_bulk(tail.as_mut_ptr(), tail.len() as u32) };
            self.len = keep;
        }
    }
}

impl Drop for Mbufs<'_> {
    fn drop(&mut self) {
        self.clear();
    }
}

/// The one handle to queue `queue` (RX and TX) of a started port. Not `Clone`: whoever holds
/// it is the only poller of that queue, which DPDK requires of its lock-free burst functions.
pub struct Queue<'p> {
    port: u16,
    queue: u16,
    _port: PhantomData<&'p ()>,
}

// SAFETY: a queue may be polled from any one thread at a time; the handle is not Clone and
// its methods take &mut self, so moving it to an lcore keeps a single user.
unsafe impl Send for Queue<'_> {}

impl<'p> Queue<'p> {
    pub(crate) fn new(port: u16, queue: u16) -> Queue<'p> {
        Queue {
            port,
            queue,
            _port: PhantomData,
        }
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn id(&self) -> u16 {
        self.queue
    }

    /// Receive up to `into.room()` (at most `max`) frames, appended to `into`. Returns how
    /// many arrived.
    pub fn rx(&mut self, into: &mut Mbufs<'_>, max: usize) -> usize {
        let n = into.room().min(max).min(usize::from(u16::MAX));
        if n == 0 {
            return 0;
        }
        let tail = &mut into.ptrs[into.len..into.len + n];
        // SAFETY: port and queue were set up when the port started (the handle borrows the
        // port); this handle is the queue's only user; tail has room for n pointers.
        let got = unsafe {
            dpdk_sys::shim_rte_eth_rx_burst(self.port, self.queue, tail.as_mut_ptr(), n as u16)
        } as usize;
        let got = got.min(n);
        into.len += got;
        got
    }

    /// Offer every buffer of `from` to the TX ring. What the PMD took leaves `from` (it owns
    /// those now); what it refused moves to the front of `from`, to be retried or cleared.
    /// Returns how many were sent.
    pub fn tx(&mut self, from: &mut Mbufs<'_>) -> usize {
        if from.len == 0 {
            return 0;
        }
        let n = from.len.min(usize::from(u16::MAX));
        // SAFETY: as in rx; ptrs[..n] are valid mbufs owned by `from`, whose ownership passes
        // to the PMD for the first `sent` of them.
        let sent = unsafe {
            dpdk_sys::shim_rte_eth_tx_burst(self.port, self.queue, from.ptrs.as_mut_ptr(), n as u16)
        } as usize;
        let sent = sent.min(n);
        from.ptrs.copy_within(sent..from.len, 0);
        from.len -= sent;
        sent
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_set_has_full_room_and_no_frames() {
        // No EAL needed: an empty set never touches DPDK.
        let m: Mbufs<'static> = Mbufs {
            ptrs: [std::ptr::null_mut(); BURST_CAP],
            len: 0,
            _pool: PhantomData,
        };
        assert!(m.is_empty());
        assert_eq!(m.room(), BURST_CAP);
        assert!(m.frame(0).is_none());
    }
}
