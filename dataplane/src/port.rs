//! Ethernet ports: configuration, queues, start/stop, link and statistics.

use crate::eal::Eal;
use crate::error::{strerror, DpdkError};
use crate::mempool::Mempool;
use std::ffi::{CStr, CString};
use std::marker::PhantomData;

/// A Toeplitz key made of one repeated 16-bit pattern hashes (a,b) and (b,a) to the same value,
/// so both directions of a flow reach the same worker and per-flow state stays core-local.
const SYMMETRIC_RSS_KEY: [u8; 40] = {
    let mut k = [0u8; 40];
    let mut i = 0;
    while i < 40 {
        k[i] = if i % 2 == 0 { 0x6d } else { 0x5a };
        i += 1;
    }
    k
};

#[derive(Clone, Debug)]
pub struct PortSetup {
    pub rx_queues: u16,
    pub tx_queues: u16,
    pub rx_desc: u16,
    pub tx_desc: u16,
    pub promiscuous: bool,
    pub mtu: Option<u16>,
}

/// Whether RSS was turned on, and why not when it was not: virtual PMDs mostly lack it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RssState {
    Enabled { symmetric: bool },
    SingleQueue,
    Unsupported,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PortStats {
    pub ipackets: u64,
    pub opackets: u64,
    pub ibytes: u64,
    pub obytes: u64,
    pub imissed: u64,
    pub ierrors: u64,
    pub oerrors: u64,
    pub rx_nombuf: u64,
}

/// A port's counters summed across counter resets. Some PMDs zero their counters when the
/// link goes down: net_memif does when the peer disconnects, so a summary read after the
/// generator quit would show 0 packets. Sampled often enough while traffic runs, this keeps
/// what was counted before each reset and adds what came after.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct StatsAcc {
    base: PortStats,
    last: PortStats,
}

impl StatsAcc {
    /// Take a new reading of the PMD's counters. A counter below its previous reading was
    /// reset: the previous reading is kept in the base.
    pub fn sample(&mut self, now: &PortStats) {
        let pairs = [
            (&mut self.base.ipackets, self.last.ipackets, now.ipackets),
            (&mut self.base.opackets, self.last.opackets, now.opackets),
            (&mut self.base.ibytes, self.last.ibytes, now.ibytes),
            (&mut self.base.obytes, self.last.obytes, now.obytes),
            (&mut self.base.imissed, self.last.imissed, now.imissed),
            (&mut self.base.ierrors, self.last.ierrors, now.ierrors),
            (&mut self.base.oerrors, self.last.oerrors, now.oerrors),
            (&mut self.base.rx_nombuf, self.last.rx_nombuf, now.rx_nombuf),
        ];
        for (base, last, now) in pairs {
            if now < last {
                *base += last;
            }
        }
        self.last = now.clone();
    }

    /// Everything counted so far: the bases plus the latest reading.
    pub fn total(&self) -> PortStats {
        let (b, l) = (&self.base, &self.last);
        PortStats {
            ipackets: b.ipackets + l.ipackets,
            opackets: b.opackets + l.opackets,
            ibytes: b.ibytes + l.ibytes,
            obytes: b.obytes + l.obytes,
            imissed: b.imissed + l.imissed,
            ierrors: b.ierrors + l.ierrors,
            oerrors: b.oerrors + l.oerrors,
            rx_nombuf: b.rx_nombuf + l.rx_nombuf,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LinkStatus {
    pub up: bool,
    pub speed_mbps: u32,
    pub full_duplex: bool,
}

/// A configured and started port. Stopped and closed on drop.
pub struct Port<'a> {
    id: u16,
    name: String,
    driver: String,
    rss: RssState,
    setup: PortSetup,
    /// Whether [`Port::take_queues`] handed the queue handles out already.
    queues_taken: std::sync::atomic::AtomicBool,
    _pool: PhantomData<&'a Mempool<'a>>,
}

/// Find a port by its DPDK device name (PCI address like `0000:01:00.0`, or a vdev name like
/// `net_pcap0`).
pub fn port_id_by_name(_eal: &Eal, name: &str) -> Result<u16, DpdkError> {
    let c = CString::new(name).map_err(|_| DpdkError::BadArg(name.into()))?;
    let mut id: u16 = 0;
    // SAFETY: EAL is up; c is a valid C string; id is a valid out pointer.
    let rc = unsafe { dpdk_sys::rte_eth_dev_get_port_by_name(c.as_ptr(), &mut id) };
    if rc != 0 {
        return Err(DpdkError::NoSuchPort(name.into()));
    }
    Ok(id)
}

impl<'a> Port<'a> {
    /// Configure queues on `pool`, enable RSS where the PMD supports it, start the port.
    pub fn start(
        eal: &'a Eal,
        name: &str,
        pool: &'a Mempool<'a>,
        setup: &PortSetup,
    ) -> Result<Self, DpdkError> {
        let id = port_id_by_name(eal, name)?;
        let err = |what: &'static str, rc: i32| DpdkError::Port {
            port: id,
            name: name.into(),
            what,
            msg: strerror(rc),
            errno: rc.abs(),
        };

        let mut info = dpdk_sys::rte_eth_dev_info::default();
        // SAFETY: id was returned by DPDK for a live port; info is a valid out pointer.
        let rc = unsafe { dpdk_sys::rte_eth_dev_info_get(id, &mut info) };
        if rc != 0 {
            return Err(err("dev_info_get", rc));
        }
        let driver = if info.driver_name.is_null() {
            String::from("?")
        } else {
            // SAFETY: driver_name points to a static NUL-terminated string owned by the PMD.
            unsafe { CStr::from_ptr(info.driver_name) }
                .to_string_lossy()
                .into_owned()
        };
        for (kind, max, want) in [
            ("RX", info.max_rx_queues, setup.rx_queues),
            ("TX", info.max_tx_queues, setup.tx_queues),
        ] {
            if want > max {
                return Err(DpdkError::TooManyQueues {
                    port: id,
                    name: name.into(),
                    kind,
                    max,
                    want,
                });
            }
        }
        // Checked here rather than left to queue setup, whose EINVAL would not say which of
        // the ring size or the pool was wrong.
        for (kind, want, lim) in [
            ("RX", setup.rx_desc, &info.rx_desc_lim),
            ("TX", setup.tx_desc, &info.tx_desc_lim),
        ] {
            let align = lim.nb_align.max(1);
            if want < lim.nb_min || want > lim.nb_max || want % align != 0 {
                return Err(DpdkError::Descriptors {
                    port: id,
                    name: name.into(),
                    kind,
                    want,
                    min: lim.nb_min,
                    max: lim.nb_max,
                    align,
                });
            }
        }

        let mut conf = dpdk_sys::rte_eth_conf::default();
        // SAFETY: a constant-returning shim function.
        let want_hf = unsafe { dpdk_sys::shim_rss_hf_ip_tcp_udp() };
        let hf = want_hf & info.flow_type_rss_offloads;
        let mut key = SYMMETRIC_RSS_KEY;
        let rss = if setup.rx_queues <= 1 {
            RssState::SingleQueue
        } else if hf == 0 {
            RssState::Unsupported
        } else {
            conf.rxmode.mq_mode = dpdk_sys::rte_eth_rx_mq_mode_RTE_ETH_MQ_RX_RSS;
            conf.rx_adv_conf.rss_conf.rss_hf = hf;
            // A PMD whose key size differs from 40 keeps its own key: then symmetry is not
            // guaranteed, which the state reports.
            let symmetric = info.hash_key_size == 40;
            if symmetric {
                conf.rx_adv_conf.rss_conf.rss_key = key.as_mut_ptr();
                conf.rx_adv_conf.rss_conf.rss_key_len = 40;
            }
            RssState::Enabled { symmetric }
        };

        // SAFETY: id is valid; conf is fully initialised and outlives the call (DPDK copies it,
        // including the RSS key).
        let rc =
            unsafe { dpdk_sys::rte_eth_dev_configure(id, setup.rx_queues, setup.tx_queues, &conf) };
        if rc != 0 {
            return Err(err("dev_configure", rc));
        }
        if let Some(mtu) = setup.mtu {
            // SAFETY: id is valid and configured.
            let rc = unsafe { dpdk_sys::rte_eth_dev_set_mtu(id, mtu) };
            if rc != 0 {
                return Err(err("set_mtu", rc));
            }
        }
        // SAFETY: id is valid.
        let socket = unsafe { dpdk_sys::rte_eth_dev_socket_id(id) };
        let socket = if socket < 0 {
            dpdk_sys::SOCKET_ID_ANY
        } else {
            socket
        };
        for q in 0..setup.rx_queues {
            // SAFETY: port configured with rx_queues queues; pool is a live pktmbuf pool that
            // outlives the port (lifetime 'a); null rxconf means the PMD default.
            let rc = unsafe {
                dpdk_sys::rte_eth_rx_queue_setup(
                    id,
                    q,
                    setup.rx_desc,
                    socket as u32,
                    std::ptr::null(),
                    pool.as_ptr(),
                )
            };
            if rc != 0 {
                return Err(err("rx_queue_setup", rc));
            }
        }
        for q in 0..setup.tx_queues {
            // SAFETY: port configured with tx_queues queues; null txconf means the PMD default.
            let rc = unsafe {
                dpdk_sys::rte_eth_tx_queue_setup(
                    id,
                    q,
                    setup.tx_desc,
                    socket as u32,
                    std::ptr::null(),
                )
            };
            if rc != 0 {
                return Err(err("tx_queue_setup", rc));
            }
        }
        // SAFETY: id is valid and its queues are set up.
        let rc = unsafe { dpdk_sys::rte_eth_dev_start(id) };
        if rc != 0 {
            return Err(err("dev_start", rc));
        }
        if setup.promiscuous {
            // SAFETY: id is valid and started. Some virtual PMDs do not support it: not fatal.
            unsafe { dpdk_sys::rte_eth_promiscuous_enable(id) };
        }
        Ok(Port {
            id,
            name: name.into(),
            driver,
            rss,
            setup: setup.clone(),
            queues_taken: std::sync::atomic::AtomicBool::new(false),
            _pool: PhantomData,
        })
    }

    pub fn id(&self) -> u16 {
        self.id
    }
    pub fn name(&self) -> &str {
        &self.name
    }
    pub fn driver(&self) -> &str {
        &self.driver
    }
    pub fn rss(&self) -> &RssState {
        &self.rss
    }
    pub fn setup(&self) -> &PortSetup {
        &self.setup
    }

    /// The handles of queues `0..max(rx_queues, tx_queues)`, once per port (None afterwards):
    /// each handle is its queue's only poller. For applications that drive queues themselves;
    /// scrubd's workers use [`crate::run_workers`] instead.
    pub fn take_queues(&self) -> Option<Vec<crate::burst::Queue<'_>>> {
        if self
            .queues_taken
            .swap(true, std::sync::atomic::Ordering::SeqCst)
        {
            return None;
        }
        let n = self.setup.rx_queues.max(self.setup.tx_queues);
        Some(
            (0..n)
                .map(|q| crate::burst::Queue::new(self.id, q))
                .collect(),
        )
    }

    pub fn promiscuous(&self) -> bool {
        // SAFETY: id is a valid started port.
        unsafe { dpdk_sys::rte_eth_promiscuous_get(self.id) == 1 }
    }

    pub fn link(&self) -> LinkStatus {
        self.handle().link()
    }

    pub fn stats(&self) -> PortStats {
        self.handle().stats()
    }

    /// Extended statistics as (name, value) pairs, as the PMD names them.
    pub fn xstats(&self) -> Vec<(String, u64)> {
        self.handle().xstats()
    }

    /// A copyable handle for reading this port's link and counters from control threads.
    pub fn handle(&self) -> PortHandle {
        PortHandle { id: self.id }
    }
}

/// Read-only access to a port's link state and counters from any thread (the control socket's
/// client threads). DPDK's stats and link queries validate the port id and only read the
/// PMD's counters, so they are safe next to the workers' bursts; on a port that was closed in
/// the meantime they report zeros instead of failing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PortHandle {
    id: u16,
}

impl PortHandle {
    pub fn id(&self) -> u16 {
        self.id
    }

    pub fn link(&self) -> LinkStatus {
        let mut l = dpdk_sys::rte_eth_link::default();
        // SAFETY: rte_eth_link_get_nowait validates the id; l is a valid out pointer.
        unsafe { dpdk_sys::rte_eth_link_get_nowait(self.id, &mut l) };
        LinkStatus {
            up: l.link_status() != 0,
            speed_mbps: l.link_speed,
            full_duplex: l.link_duplex() != 0,
        }
    }

    pub fn stats(&self) -> PortStats {
        let mut s = dpdk_sys::rte_eth_stats::default();
        // SAFETY: rte_eth_stats_get validates the id; s is a valid out pointer.
        unsafe { dpdk_sys::rte_eth_stats_get(self.id, &mut s) };
        PortStats {
            ipackets: s.ipackets,
            opackets: s.opackets,
            ibytes: s.ibytes,
            obytes: s.obytes,
            imissed: s.imissed,
            ierrors: s.ierrors,
            oerrors: s.oerrors,
            rx_nombuf: s.rx_nombuf,
        }
    }

    pub fn xstats(&self) -> Vec<(String, u64)> {
        // SAFETY: a null array with size 0 asks for the count.
        let n = unsafe { dpdk_sys::rte_eth_xstats_get_names(self.id, std::ptr::null_mut(), 0) };
        if n <= 0 {
            return Vec::new();
        }
        let n = n as usize;
        let mut names = vec![dpdk_sys::rte_eth_xstat_name::default(); n];
        let mut vals = vec![dpdk_sys::rte_eth_xstat::default(); n];
        // SAFETY: both arrays hold n elements, as passed.
        let got_names =
            unsafe { dpdk_sys::rte_eth_xstats_get_names(self.id, names.as_mut_ptr(), n as u32) };
        // SAFETY: as above.
        let got_vals =
            unsafe { dpdk_sys::rte_eth_xstats_get(self.id, vals.as_mut_ptr(), n as u32) };
        if got_names <= 0 || got_vals <= 0 {
            return Vec::new();
        }
        let m = (got_names as usize).min(got_vals as usize).min(n);
        vals[..m]
            .iter()
            .filter_map(|v| {
                let nm = names.get(v.id as usize)?;
                // SAFETY: the name is a fixed-size char array NUL-terminated by DPDK.
                let s = unsafe { CStr::from_ptr(nm.name.as_ptr()) }
                    .to_string_lossy()
                    .into_owned();
                Some((s, v.value))
            })
            .collect()
    }
}

impl Drop for Port<'_> {
    fn drop(&mut self) {
        // SAFETY: workers using this port were joined before the port is dropped (they are
        // launched with borrows of it); stop then close releases its queues and mbufs.
        unsafe {
            dpdk_sys::rte_eth_dev_stop(self.id);
            dpdk_sys::rte_eth_dev_close(self.id);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stats_survive_a_counter_reset() {
        let st = |i, o| PortStats {
            ipackets: i,
            opackets: o,
            ..PortStats::default()
        };
        let mut a = StatsAcc::default();
        a.sample(&st(10, 5));
        a.sample(&st(25, 9));
        // The peer disconnected: the PMD starts again from 0.
        a.sample(&st(0, 0));
        assert_eq!(a.total(), st(25, 9));
        a.sample(&st(3, 1));
        assert_eq!(a.total(), st(28, 10));
        // Only one of the counters going back is a reset of that counter alone.
        a.sample(&st(2, 4));
        assert_eq!(a.total(), st(25 + 3 + 2, 10 + 4 - 1));
    }
}
