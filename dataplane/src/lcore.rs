//! Running arbitrary closures on worker lcores, scoped like `std::thread::scope`: every job
//! is waited for before [`run_on_lcores`] returns, so jobs may borrow the caller's ports,
//! pools and counters. scrubd's own workers use [`crate::run_workers`]; this is for other
//! DPDK applications of the workspace (the `scrubgen` generator).

use crate::eal::Eal;
use crate::error::DpdkError;
use std::ffi::c_void;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::{Arc, Mutex};

/// One job: the lcore to run on and what to run there.
pub type LcoreJob<'s, T> = (u32, Box<dyn FnOnce() -> T + Send + 's>);

type Slot<T> = Arc<Mutex<Option<Result<T, String>>>>;

struct Job<'s, T> {
    run: Box<dyn FnOnce() -> T + Send + 's>,
    result: Slot<T>,
}

extern "C" fn trampoline<T>(arg: *mut c_void) -> i32 {
    // SAFETY: arg is the Box<Job<T>> leaked by run_on_lcores for exactly this launch, taken
    // back here once; run_on_lcores waits for this lcore before any borrow in it ends.
    let job = unsafe { Box::from_raw(arg as *mut Job<'_, T>) };
    let Job { run, result } = *job;
    // A panic must not unwind across the extern "C" boundary: caught, reported as the result.
    let r = catch_unwind(AssertUnwindSafe(run)).map_err(|e| {
        e.downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| e.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "unknown panic".into())
    });
    if let Ok(mut slot) = result.lock() {
        *slot = Some(r);
    }
    0
}

/// Launch every job on its lcore, call `monitor` on the main lcore until it returns false,
/// then wait for every launched job and return their results in job order. The jobs decide
/// themselves when to end (e.g. by a flag `monitor` raises). A job on the main lcore or on a
/// disabled lcore, a failed launch or a panicking job is an error (after every launched job
/// has been waited for).
pub fn run_on_lcores<'s, T: Send + 's>(
    eal: &Eal,
    jobs: Vec<LcoreJob<'s, T>>,
    monitor: impl FnMut() -> bool,
) -> Result<Vec<T>, DpdkError> {
    run_then_stop(eal, jobs, monitor, || {})
}

/// [`run_on_lcores`] with `stop` called on the main lcore before the jobs are waited for:
/// after `monitor` returned false, or at once when a launch failed (so that the jobs already
/// launched end). scrubd's workers end by the stop flag [`crate::run_workers`] raises there.
pub(crate) fn run_then_stop<'s, T: Send + 's>(
    eal: &Eal,
    jobs: Vec<LcoreJob<'s, T>>,
    mut monitor: impl FnMut() -> bool,
    stop: impl FnOnce(),
) -> Result<Vec<T>, DpdkError> {
    let mut launched: Vec<(u32, Slot<T>)> = Vec::new();
    let mut err = None;
    for (lcore, run) in jobs {
        if lcore == eal.main_lcore() || !eal.lcore_enabled(lcore) {
            err = Some(DpdkError::LcoreNotEnabled(lcore));
            break;
        }
        let result: Slot<T> = Arc::new(Mutex::new(None));
        let job = Box::new(Job {
            run,
            result: Arc::clone(&result),
        });
        let arg = Box::into_raw(job) as *mut c_void;
        // SAFETY: trampoline::<T> matches lcore_function_t and reclaims arg, a leaked
        // Box<Job<T>>; lcore is an enabled worker lcore; the borrows in the job outlive it
        // because every launched lcore is waited for below before returning.
        let rc = unsafe { dpdk_sys::rte_eal_remote_launch(Some(trampoline::<T>), arg, lcore) };
        if rc != 0 {
            // SAFETY: the launch failed, so the trampoline never ran and arg is still ours.
            drop(unsafe { Box::from_raw(arg as *mut Job<'_, T>) });
            err = Some(DpdkError::Launch {
                lcore,
                msg: crate::error::strerror(rc),
            });
            break;
        }
        launched.push((lcore, result));
    }
    if err.is_none() {
        while monitor() {}
    }
    stop();
    let mut out = Vec::with_capacity(launched.len());
    for (lcore, result) in launched {
        // SAFETY: lcore was launched above; waiting has no other precondition.
        unsafe { dpdk_sys::rte_eal_wait_lcore(lcore) };
        match result.lock().ok().and_then(|mut s| s.take()) {
            Some(Ok(v)) => out.push(v),
            Some(Err(msg)) => {
                err.get_or_insert(DpdkError::WorkerPanicked(lcore, msg));
            }
            None => {
                err.get_or_insert(DpdkError::WorkerPanicked(lcore, "no result".into()));
            }
        }
    }
    match err {
        Some(e) => Err(e),
        None => Ok(out),
    }
}
