//! Typed errors for everything that talks to DPDK.

use thiserror::Error;

#[derive(Debug, Error)]
pub enum DpdkError {
    #[error("EAL initialisation failed: {msg} (arguments: {args})")]
    EalInit {
        msg: String,
        args: String,
        /// `rte_errno`: ENODEV for a device no driver takes, EINVAL for bad arguments, ...
        errno: i32,
    },
    #[error("EAL is already initialised in this process; DPDK allows one EAL per process")]
    EalAlready,
    #[error("EAL argument contains a NUL byte: {0:?}")]
    BadArg(String),
    #[error("cannot create mempool '{name}' ({n} mbufs): {msg}")]
    Mempool { name: String, n: u32, msg: String },
    #[error(
        "no DPDK port named '{0}': the device did not probe (see the EAL lines above; check the vdev \
         arguments, or that the NIC is bound to vfio-pci)"
    )]
    NoSuchPort(String),
    #[error("port {port} ({name}): {what} failed: {msg}")]
    Port {
        port: u16,
        name: String,
        what: &'static str,
        msg: String,
        /// The (positive) errno DPDK returned, so callers can tell a pool too small for the
        /// PMD (EINVAL/ENOMEM from queue setup or start) from other failures.
        errno: i32,
    },
    #[error(
        "port {port} ({name}) takes {min}..={max} {kind} descriptors in multiples of {align}, \
         {want} requested"
    )]
    Descriptors {
        port: u16,
        name: String,
        kind: &'static str,
        want: u16,
        min: u16,
        max: u16,
        align: u16,
    },
    #[error(
        "a live DPDK process{} already uses file prefix \"{prefix}\"; each process on a \
         machine needs its own prefix",
        pid.map(|p| format!(" (pid {p})")).unwrap_or_default()
    )]
    PrefixInUse { prefix: String, pid: Option<i32> },
    #[error("cannot reclaim the files of DPDK prefix \"{prefix}\" ({path}): {msg}")]
    Reclaim {
        prefix: String,
        path: String,
        msg: String,
    },
    #[error("port {port} ({name}) supports at most {max} {kind} queues, {want} requested")]
    TooManyQueues {
        port: u16,
        name: String,
        kind: &'static str,
        max: u16,
        want: u16,
    },
    #[error("lcore {0} is not enabled in the EAL lcore list")]
    LcoreNotEnabled(u32),
    #[error("cannot launch worker on lcore {lcore}: {msg}")]
    Launch { lcore: u32, msg: String },
    #[error("worker on lcore {0} panicked: {1}")]
    WorkerPanicked(u32, String),
    #[error("telemetry command '{cmd}': {reason}")]
    TelemetryCommand { cmd: String, reason: String },
    #[error("packet capture (pdump) unavailable: {0}")]
    PdumpUnavailable(String),
    #[error("rte_pdump_init failed: {0}")]
    PdumpInit(String),
}

/// Text for a DPDK errno (negative or positive).
pub fn strerror(errno: i32) -> String {
    let e = errno.abs();
    // SAFETY: rte_strerror returns a pointer to a static or thread-local NUL-terminated string.
    let p = unsafe { dpdk_sys::rte_strerror(e) };
    if p.is_null() {
        return format!("errno {e}");
    }
    // SAFETY: non-null, NUL-terminated, valid until the next call on this thread; copied at once.
    unsafe { std::ffi::CStr::from_ptr(p) }
        .to_string_lossy()
        .into_owned()
}

/// The calling thread's `rte_errno`, as text.
pub fn rte_errno_text() -> String {
    strerror(rte_errno())
}

/// The calling thread's `rte_errno`.
pub fn rte_errno() -> i32 {
    // SAFETY: reads the thread-local rte_errno through the shim; no preconditions.
    unsafe { dpdk_sys::shim_rte_errno() }
}
