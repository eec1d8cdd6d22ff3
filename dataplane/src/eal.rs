//! The DPDK Environment Abstraction Layer: initialised once per process, cleaned up on drop.

use crate::error::{rte_errno_text, DpdkError};
use std::ffi::{c_char, CString};
use std::sync::atomic::{AtomicBool, Ordering};

static EAL_UP: AtomicBool = AtomicBool::new(false);

/// Proof that the EAL is initialised. Every other DPDK object borrows from it, so the EAL
/// outlives them; dropping it runs `rte_eal_cleanup`.
pub struct Eal {
    args: Vec<String>,
}

impl Eal {
    /// Initialise the EAL with `args` (without the program name, which is added here).
    pub fn init(program: &str, args: &[String]) -> Result<Eal, DpdkError> {
        if EAL_UP.swap(true, Ordering::SeqCst) {
            return Err(DpdkError::EalAlready);
        }
        let mut all = Vec::with_capacity(args.len() + 1);
        all.push(program.to_string());
        all.extend(args.iter().cloned());
        let mut cstrs = Vec::with_capacity(all.len());
        for a in &all {
            cstrs.push(CString::new(a.as_str()).map_err(|_| DpdkError::BadArg(a.clone()))?);
        }
        // EAL keeps pointers into argv for the life of the process: leak both the strings and
        // the array on purpose (a few hundred bytes, once per process).
        let ptrs: Vec<*mut c_char> = cstrs.into_iter().map(|c| c.into_raw()).collect();
        let argv: &'static mut [*mut c_char] = Box::leak(ptrs.into_boxed_slice());
        let argc = argv.len() as i32;
        // SAFETY: argv holds argc valid NUL-terminated strings that live forever; EAL may
        // permute the array, which it owns from now on.
        let rc = unsafe { dpdk_sys::rte_eal_init(argc, argv.as_mut_ptr()) };
        if rc < 0 {
            EAL_UP.store(false, Ordering::SeqCst);
            return Err(DpdkError::EalInit(rte_errno_text(), all.join(" ")));
        }
        Ok(Eal { args: all })
    }

    pub fn args(&self) -> &[String] {
        &self.args
    }

    /// TSC ticks per second as measured by EAL at start-up.
    pub fn tsc_hz(&self) -> u64 {
        // SAFETY: EAL is initialised (we hold the token); the call has no other precondition.
        unsafe { dpdk_sys::shim_rte_get_tsc_hz() }
    }

    pub fn main_lcore(&self) -> u32 {
        // SAFETY: EAL is initialised.
        unsafe { dpdk_sys::rte_get_main_lcore() }
    }

    pub fn lcore_count(&self) -> u32 {
        // SAFETY: EAL is initialised.
        unsafe { dpdk_sys::rte_lcore_count() }
    }

    pub fn lcore_enabled(&self, lcore: u32) -> bool {
        // SAFETY: EAL is initialised; any lcore id is accepted and range-checked by DPDK.
        unsafe { dpdk_sys::rte_lcore_is_enabled(lcore) != 0 }
    }

    /// Worker lcores (every enabled lcore except the main one), in id order.
    pub fn worker_lcores(&self) -> Vec<u32> {
        (0..dpdk_sys::RTE_MAX_LCORE)
            .filter(|&l| l != self.main_lcore() && self.lcore_enabled(l))
            .collect()
    }

    pub fn socket_of_lcore(&self, lcore: u32) -> i32 {
        // SAFETY: EAL is initialised.
        unsafe { dpdk_sys::rte_lcore_to_socket_id(lcore) as i32 }
    }
}

impl Drop for Eal {
    fn drop(&mut self) {
        // SAFETY: all DPDK objects borrow the Eal and are gone by now; workers were joined.
        unsafe { dpdk_sys::rte_eal_cleanup() };
    }
}

/// Current TSC value. Cheap (one `rdtsc`); read once per burst.
#[inline]
pub fn rdtsc() -> u64 {
    // SAFETY: rdtsc has no preconditions.
    unsafe { dpdk_sys::shim_rte_rdtsc() }
}
