//! Locates the system DPDK with pkg-config, generates bindings with bindgen over a narrow
//! allowlist, and compiles the C shim that exports DPDK's static-inline fast-path functions.

use std::env;
use std::path::PathBuf;
use std::process::Command;

const INSTALL_HINT: &str =
    "install it with: apt-get install -y dpdk dpdk-dev libdpdk-dev libclang-dev pkg-config \
     (or run ./scripts/setup.sh)";

fn pkg_config(args: &[&str]) -> String {
    let out = Command::new("pkg-config")
        .args(args)
        .arg("libdpdk")
        .output();
    match out {
        Ok(o) if o.status.success() => String::from_utf8_lossy(&o.stdout).trim().to_string(),
        Ok(o) => {
            // One clear line for the operator; cargo shows the panic message.
            panic!(
                "dpdk-sys: libdpdk not found by pkg-config ({}); {INSTALL_HINT}",
                String::from_utf8_lossy(&o.stderr)
                    .lines()
                    .next()
                    .unwrap_or("no message")
            );
        }
        Err(e) => panic!("dpdk-sys: cannot run pkg-config ({e}); {INSTALL_HINT}"),
    }
}

fn main() {
    println!("cargo:rerun-if-changed=shim/shim.c");
    println!("cargo:rerun-if-changed=shim/shim.h");
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-env-changed=PKG_CONFIG_PATH");

    let version = pkg_config(&["--modversion"]);
    if !version.starts_with("22.") && !version.starts_with("23.") {
        println!("cargo:warning=dpdk-sys was written against DPDK 22.11; found {version}");
    }
    // Keep every cflag: `-include rte_config.h` and `-march` matter for the headers' inline code,
    // and the pkg-config crate would keep only -I/-D.
    let cflags: Vec<String> = pkg_config(&["--cflags"])
        .split_whitespace()
        .map(str::to_string)
        .collect();
    let libs = pkg_config(&["--libs"]);

    let mut build = cc::Build::new();
    build.file("shim/shim.c").opt_level(3).warnings(false);
    for f in &cflags {
        build.flag(f);
    }
    build.compile("scrubd_dpdk_shim");

    // Link the shared DPDK libraries; EAL loads PMDs from its plugin directory on its own.
    for tok in libs.split_whitespace() {
        if let Some(lib) = tok.strip_prefix("-l") {
            println!("cargo:rustc-link-lib=dylib={lib}");
        } else if let Some(dir) = tok.strip_prefix("-L") {
            println!("cargo:rustc-link-search=native={dir}");
        }
    }

    let bindings = bindgen::Builder::default()
        .header("shim/shim.h")
        .clang_args(cflags.iter())
        .allowlist_function("shim_.*")
        .allowlist_function("rte_eal_(init|cleanup|remote_launch|wait_lcore|mp_wait_lcore|process_type)")
        .allowlist_function("rte_(lcore_count|get_main_lcore|get_next_lcore|lcore_is_enabled|socket_id|lcore_to_socket_id|thread_register|thread_unregister)")
        .allowlist_function("rte_strerror")
        .allowlist_function("rte_eal_(get_runtime_dir|has_hugepages)")
        // Telemetry: scrubd's own commands beside DPDK's /ethdev/... on the telemetry socket.
        .allowlist_function("rte_telemetry_register_cmd|rte_tel_data_.*")
        .allowlist_type("rte_tel_value_type")
        .allowlist_var("RTE_TEL_MAX_.*")
        // pdump: the primary-side hook dpdk-dumpcap attaches to.
        .allowlist_function("rte_pdump_(init|uninit)")
        .allowlist_function("rte_eth_(dev_configure|dev_start|dev_stop|dev_close|dev_info_get|dev_count_avail|dev_get_port_by_name|dev_get_name_by_port|dev_is_valid_port|dev_socket_id|rx_queue_setup|tx_queue_setup|promiscuous_enable|promiscuous_get|link_get_nowait|stats_get|stats_reset|xstats_get|xstats_get_names|macaddr_get|dev_rss_hash_update|link_speed_to_str|dev_set_mtu)")
        .allowlist_function("rte_pktmbuf_pool_create")
        .allowlist_function("rte_mempool_(free|avail_count|in_use_count)")
        .allowlist_function("rte_ring_(create|free)")
        .allowlist_type("rte_mbuf|rte_eth_conf|rte_eth_dev_info|rte_eth_stats|rte_eth_link|rte_eth_xstat|rte_eth_xstat_name|rte_ether_addr|rte_eth_rxconf|rte_eth_txconf")
        .allowlist_var("RTE_ETH_.*|RTE_MAX_ETHPORTS|RTE_MAX_LCORE|RTE_PKTMBUF_HEADROOM|RTE_MBUF_DEFAULT_BUF_SIZE|RTE_RING_F_.*|SOCKET_ID_ANY|LCORE_ID_ANY|RTE_ETH_NAME_MAX_LEN|RTE_ETH_XSTATS_NAME_SIZE")
        .opaque_type("rte_l2tpv2_combined_msg_hdr|rte_gtp_psc_generic_hdr|rte_arp_hdr|rte_arp_ipv4")
        .derive_default(true)
        .layout_tests(false)
        .generate_comments(false)
        .parse_callbacks(Box::new(bindgen::CargoCallbacks::new()))
        .generate()
        .unwrap_or_else(|e| panic!("dpdk-sys: bindgen failed on the DPDK headers: {e}; {INSTALL_HINT}"));
    let out = PathBuf::from(env::var("OUT_DIR").expect("OUT_DIR is set by cargo"));
    bindings
        .write_to_file(out.join("bindings.rs"))
        .expect("dpdk-sys: cannot write bindings.rs");
}
