//! Packet-buffer pools.

use crate::eal::Eal;
use crate::error::{rte_errno_text, DpdkError};
use std::ffi::CString;
use std::marker::PhantomData;

/// A pktmbuf pool. Freed on drop; must outlive every port queue set up with it.
pub struct Mempool<'eal> {
    ptr: *mut dpdk_sys::rte_mempool,
    _eal: PhantomData<&'eal Eal>,
}

// SAFETY: rte_mempool is designed for concurrent use from many lcores (per-lcore caches plus a
// lock-free ring); the pointer itself is just a handle.
unsafe impl Send for Mempool<'_> {}
// SAFETY: as above; all mempool operations are thread-safe in DPDK.
unsafe impl Sync for Mempool<'_> {}

impl<'eal> Mempool<'eal> {
    /// Create a pool of `n` mbufs with the default data room, a per-lcore cache of `cache`, on
    /// NUMA `socket` (-1 for any).
    pub fn new(
        _eal: &'eal Eal,
        name: &str,
        n: u32,
        cache: u32,
        socket: i32,
    ) -> Result<Self, DpdkError> {
        let cname = CString::new(name).map_err(|_| DpdkError::BadArg(name.into()))?;
        let data_room = (dpdk_sys::RTE_MBUF_DEFAULT_BUF_SIZE) as u16;
        // SAFETY: EAL is initialised (we borrow it); cname is a valid C string for the call.
        let ptr = unsafe {
            dpdk_sys::rte_pktmbuf_pool_create(cname.as_ptr(), n, cache, 0, data_room, socket)
        };
        if ptr.is_null() {
            return Err(DpdkError::Mempool {
                name: name.into(),
                n,
                msg: rte_errno_text(),
            });
        }
        Ok(Mempool {
            ptr,
            _eal: PhantomData,
        })
    }

    pub fn as_ptr(&self) -> *mut dpdk_sys::rte_mempool {
        self.ptr
    }

    pub fn available(&self) -> u32 {
        // SAFETY: ptr is a live mempool.
        unsafe { dpdk_sys::rte_mempool_avail_count(self.ptr) }
    }

    pub fn in_use(&self) -> u32 {
        // SAFETY: ptr is a live mempool.
        unsafe { dpdk_sys::rte_mempool_in_use_count(self.ptr) }
    }
}

impl Drop for Mempool<'_> {
    fn drop(&mut self) {
        // SAFETY: ports using this pool were stopped and closed before (they borrow it).
        unsafe { dpdk_sys::rte_mempool_free(self.ptr) };
    }
}
