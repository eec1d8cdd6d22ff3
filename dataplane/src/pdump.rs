//! The primary-side hook that lets operators capture scrubd's traffic with `dpdk-dumpcap`.
//!
//! `dpdk-dumpcap` is a DPDK secondary process: it attaches to scrubd's shared memory, creates
//! its own ring and mbuf pool there, and asks scrubd (over EAL's multi-process socket) to
//! install RX/TX callbacks that copy packets into that pool. So a capture needs, in scrubd:
//! - hugepages (not `--no-huge`): the secondary must map the primary's memory;
//! - shared runtime files (not `--in-memory`, not `--no-shconf`): the secondary finds the
//!   memory config and the `mp_socket` in `/var/run/dpdk/<file-prefix>/`;
//! - this hook initialised; ports may be created before or after it, since callbacks are
//!   installed only when a capture starts;
//! - workers polling: the callbacks run inside `rx_burst`/`tx_burst`, on the worker lcores,
//!   and cost one copy per captured packet while a capture runs (nothing otherwise).
//!
//! The operator then runs `dpdk-dumpcap --file-prefix=<scrubd's prefix> -i <port name>`.
//! DPDK keeps a table of mempool drivers per process, indexed in load order, and a pool made
//! by dumpcap is used by scrubd through that index: scrubd must not link any mempool or PMD
//! library directly (only EAL's plugin directory loads them), or the indices disagree and every
//! copy fails. `dpdk-testpmd` from Debian links `librte_mempool_dpaa` and shows exactly that.

use crate::eal::Eal;
use crate::error::{rte_errno_text, DpdkError};
use std::ffi::CStr;
use std::marker::PhantomData;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};

static PDUMP_UP: AtomicBool = AtomicBool::new(false);

/// Packet capture is enabled while this lives; dropping it calls `rte_pdump_uninit`.
///
/// Drop it only after the workers stopped polling: DPDK's capture callbacks (installed while a
/// dumpcap runs) use memory that `rte_pdump_uninit` frees.
pub struct Pdump<'eal> {
    _eal: PhantomData<&'eal Eal>,
}

/// Enable captures by `dpdk-dumpcap` (see the module docs for what EAL must be given).
pub fn init(eal: &Eal) -> Result<Pdump<'_>, DpdkError> {
    // SAFETY: EAL is initialised (we borrow its token); the call only reads its config.
    if unsafe { dpdk_sys::rte_eal_has_hugepages() } == 0 {
        return Err(DpdkError::PdumpUnavailable(
            "EAL runs with --no-huge: a secondary process (dpdk-dumpcap) cannot map this \
             process's memory; run with hugepages"
                .into(),
        ));
    }
    let mp_socket = runtime_dir(eal).join("mp_socket");
    if !mp_socket.exists() {
        return Err(DpdkError::PdumpUnavailable(format!(
            "{} does not exist: EAL runs without shared runtime files (--in-memory or \
             --no-shconf), so dpdk-dumpcap cannot attach; run with hugepages and a \
             --file-prefix only",
            mp_socket.display()
        )));
    }
    if PDUMP_UP.swap(true, Ordering::SeqCst) {
        return Err(DpdkError::PdumpUnavailable(
            "already initialised in this process".into(),
        ));
    }
    // SAFETY: EAL is initialised; rte_pdump_init reserves a memzone and registers an IPC
    // handler, both released by rte_pdump_uninit in Drop.
    let rc = unsafe { dpdk_sys::rte_pdump_init() };
    if rc < 0 {
        PDUMP_UP.store(false, Ordering::SeqCst);
        return Err(DpdkError::PdumpInit(rte_errno_text()));
    }
    Ok(Pdump { _eal: PhantomData })
}

impl Drop for Pdump<'_> {
    fn drop(&mut self) {
        // SAFETY: init succeeded; the caller stopped polling (see the type's docs).
        unsafe { dpdk_sys::rte_pdump_uninit() };
        PDUMP_UP.store(false, Ordering::SeqCst);
    }
}

/// EAL's runtime directory, `/var/run/dpdk/<file-prefix>` for root.
pub fn runtime_dir(_eal: &Eal) -> PathBuf {
    // SAFETY: EAL is initialised; the runtime directory is a static NUL-terminated string.
    let p = unsafe { dpdk_sys::rte_eal_get_runtime_dir() };
    if p.is_null() {
        return PathBuf::new();
    }
    // SAFETY: non-null, NUL-terminated, owned by EAL for the process lifetime.
    PathBuf::from(unsafe { CStr::from_ptr(p) }.to_string_lossy().into_owned())
}
