//! Safe wrappers over DPDK for scrubd: EAL, mempools, ports and poll-mode workers.
//!
//! All `unsafe` of the project lives here and in `dpdk-sys`. Objects borrow the [`Eal`] token so
//! the EAL outlives them, and ports borrow their mempool so buffers outlive the queues.

pub mod burst;
pub mod channel;
pub mod eal;
pub mod error;
pub mod lcore;
pub mod mbuf;
pub mod mempool;
pub mod pdump;
pub mod port;
pub mod signals;
pub mod telemetry;
pub mod worker;

pub use burst::{Mbufs, Queue, BURST_CAP};
pub use eal::{rdtsc, Eal};
pub use error::DpdkError;
pub use lcore::run_on_lcores;
pub use mempool::Mempool;
pub use pdump::Pdump;
pub use port::{
    port_id_by_name, LinkStatus, Port, PortHandle, PortSetup, PortStats, RssState, StatsAcc,
};
pub use telemetry::TelemetryValue;
pub use worker::{run_workers, Control, Link, WorkerPlan, WorkerReport, MAX_BURST};
