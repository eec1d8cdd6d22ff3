//! The lock-free path between one worker and the control thread.
//!
//! Three bounded rings per worker, each with one producer and one consumer:
//! - `free` (control → worker): empty snapshot buffers. The control side allocates them once and
//!   recycles them, so publishing never allocates on the worker.
//! - `to_ctl` (worker → control): published snapshots and applied updates, in the worker's order.
//!   Keeping both on one ring lets the control side see "final hits of the old rule set" before
//!   the first snapshot taken with the new one.
//! - `updates` (control → worker): compiled rule sets, ACL tables, rate changes, rotations. The
//!   worker swaps the new object in at a burst boundary and sends the box back with the old
//!   object inside, so the old one is freed on the control side once no worker can still be
//!   using it (quiescent-state reclamation: the worker's ack *is* its quiescent point).
//!
//! `to_ctl` holds `pool + max_in_flight` entries and the control side never has more than
//! `max_in_flight` updates unacknowledged, so a worker's push can only fail through a bug; it is
//! still handled (the item waits in the worker's outbox) rather than assumed.

use crossbeam::queue::ArrayQueue;
use stats::Snapshot;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

/// A change the control side publishes to a worker: the pipeline's own update type, applied by
/// `Pipeline::apply` at a burst boundary and sent back holding what it replaced.
pub use pipeline::Update;

/// What a worker sends to the control thread.
pub enum ToCtl {
    Snapshot(Box<Snapshot>),
    Applied(Box<Update>),
}

struct Rings {
    free: ArrayQueue<Box<Snapshot>>,
    to_ctl: ArrayQueue<ToCtl>,
    updates: ArrayQueue<Box<Update>>,
    in_flight: AtomicUsize,
    max_in_flight: usize,
}

/// The worker's end.
pub struct WorkerEnd {
    rings: Arc<Rings>,
}

/// The control thread's end.
#[derive(Clone)]
pub struct ControlEnd {
    rings: Arc<Rings>,
}

/// Build the rings of one worker with `pool` snapshot buffers (each sized for `ports` ports,
/// `stages` stage counters and `offenders` sketch entries) already in the free ring.
pub fn channel(
    worker: u16,
    ports: usize,
    stages: usize,
    offenders: usize,
    pool: usize,
    max_in_flight: usize,
) -> (WorkerEnd, ControlEnd) {
    let pool = pool.max(2);
    let max_in_flight = max_in_flight.max(1);
    let rings = Arc::new(Rings {
        free: ArrayQueue::new(pool),
        to_ctl: ArrayQueue::new(pool + max_in_flight),
        updates: ArrayQueue::new(max_in_flight),
        in_flight: AtomicUsize::new(0),
        max_in_flight,
    });
    for _ in 0..pool {
        let mut s = Box::new(Snapshot::new(worker, ports, stages));
        // Sized here so the worker's export into it never allocates.
        s.offenders.reserve_exact(offenders);
        let _ = rings.free.push(s);
    }
    (
        WorkerEnd {
            rings: Arc::clone(&rings),
        },
        ControlEnd { rings },
    )
}

impl WorkerEnd {
    #[inline]
    pub fn take_free(&self) -> Option<Box<Snapshot>> {
        self.rings.free.pop()
    }

    /// Hand an item to the control side; gives it back if the ring is full.
    #[inline]
    pub fn send(&self, item: ToCtl) -> Result<(), ToCtl> {
        self.rings.to_ctl.push(item)
    }

    #[inline]
    pub fn next_update(&self) -> Option<Box<Update>> {
        self.rings.updates.pop()
    }
}

/// Why an update could not be queued.
#[derive(Debug, thiserror::Error)]
pub enum SendError {
    #[error("the worker has {0} updates not yet applied; try again")]
    Busy(usize),
}

impl ControlEnd {
    /// Next item from the worker, if any.
    pub fn recv(&self) -> Option<ToCtl> {
        let item = self.rings.to_ctl.pop();
        if let Some(ToCtl::Applied(_)) = &item {
            self.rings.in_flight.fetch_sub(1, Ordering::AcqRel);
        }
        item
    }

    /// Return an emptied snapshot buffer to the worker (latency histogram already reset).
    pub fn recycle(&self, snap: Box<Snapshot>) {
        // The free ring holds exactly the pool, so this cannot overflow; if it did, the buffer
        // would simply be freed here.
        let _ = self.rings.free.push(snap);
    }

    /// Queue an update for the worker. Refused while `max_in_flight` are unacknowledged, which
    /// keeps the worker's ack push from ever meeting a full ring.
    pub fn send(&self, u: Box<Update>) -> Result<(), (SendError, Box<Update>)> {
        let n = self.rings.in_flight.fetch_add(1, Ordering::AcqRel);
        if n >= self.rings.max_in_flight {
            self.rings.in_flight.fetch_sub(1, Ordering::AcqRel);
            return Err((SendError::Busy(n), u));
        }
        match self.rings.updates.push(u) {
            Ok(()) => Ok(()),
            Err(u) => {
                self.rings.in_flight.fetch_sub(1, Ordering::AcqRel);
                Err((SendError::Busy(n), u))
            }
        }
    }

    /// Updates sent but not yet acknowledged.
    pub fn in_flight(&self) -> usize {
        self.rings.in_flight.load(Ordering::Acquire)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn snapshots_round_trip_and_pool_is_bounded() {
        let (w, c) = channel(3, 2, 4, 8, 2, 1);
        let a = w.take_free().expect("pool buffer");
        let b = w.take_free().expect("pool buffer");
        assert!(w.take_free().is_none(), "pool of two");
        assert_eq!(a.worker, 3);
        assert_eq!(a.per_port.len(), 2);
        assert!(a.offenders.capacity() >= 8, "room for the sketch export");
        assert!(w.send(ToCtl::Snapshot(a)).is_ok());
        assert!(w.send(ToCtl::Snapshot(b)).is_ok());
        let mut got = 0;
        while let Some(item) = c.recv() {
            match item {
                ToCtl::Snapshot(s) => c.recycle(s),
                ToCtl::Applied(_) => panic!("no update was sent"),
            }
            got += 1;
        }
        assert_eq!(got, 2);
        assert!(w.take_free().is_some(), "recycled buffers come back");
    }

    #[test]
    fn updates_are_bounded_by_in_flight_and_acks_release_them() {
        let (w, c) = channel(0, 1, 1, 0, 2, 1);
        assert!(c
            .send(Box::new(Update::RotateCookie { applied: false }))
            .is_ok());
        assert!(
            c.send(Box::new(Update::RotateCookie { applied: false }))
                .is_err(),
            "second update refused while the first is unacknowledged"
        );
        let mut u = w.next_update().expect("queued update");
        if let Update::RotateCookie { applied } = u.as_mut() {
            *applied = true;
        }
        // The worker may fill the snapshot pool and still have room for its ack.
        for _ in 0..2 {
            let s = w.take_free().unwrap();
            assert!(w.send(ToCtl::Snapshot(s)).is_ok());
        }
        assert!(w.send(ToCtl::Applied(u)).is_ok());
        assert_eq!(c.in_flight(), 1);
        let mut acked = false;
        while let Some(item) = c.recv() {
            if let ToCtl::Applied(b) = item {
                acked = matches!(*b, Update::RotateCookie { applied: true });
            }
        }
        assert!(acked);
        assert_eq!(c.in_flight(), 0);
        assert!(c
            .send(Box::new(Update::RotateCookie { applied: false }))
            .is_ok());
    }
}
