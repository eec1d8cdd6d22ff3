/* Exported wrappers for DPDK functions that are static inline or macros in the headers,
 * so Rust can call them through FFI. Each is a one-line forward; keep it that way. */
#ifndef SCRUBD_SHIM_H
#define SCRUBD_SHIM_H

#include <stddef.h>
#include <stdint.h>
#include <rte_config.h>
#include <rte_eal.h>
#include <rte_errno.h>
#include <rte_lcore.h>
#include <rte_launch.h>
#include <rte_cycles.h>
#include <rte_ethdev.h>
#include <rte_mbuf.h>
#include <rte_mempool.h>
#include <rte_ring.h>
#include <rte_pause.h>
#include <rte_telemetry.h>
#include <rte_pdump.h>

uint16_t shim_rte_eth_rx_burst(uint16_t port_id, uint16_t queue_id, struct rte_mbuf **rx_pkts, uint16_t nb_pkts);
uint16_t shim_rte_eth_tx_burst(uint16_t port_id, uint16_t queue_id, struct rte_mbuf **tx_pkts, uint16_t nb_pkts);
struct rte_mbuf *shim_rte_pktmbuf_alloc(struct rte_mempool *mp);
int shim_rte_pktmbuf_alloc_bulk(struct rte_mempool *mp, struct rte_mbuf **mbufs, unsigned count);
void shim_rte_pktmbuf_free(struct rte_mbuf *m);
void shim_rte_pktmbuf_free_bulk(struct rte_mbuf **mbufs, unsigned count);
char *shim_rte_pktmbuf_mtod(struct rte_mbuf *m);
uint16_t shim_rte_pktmbuf_data_len(const struct rte_mbuf *m);
uint32_t shim_rte_pktmbuf_pkt_len(const struct rte_mbuf *m);
uint16_t shim_rte_pktmbuf_nb_segs(const struct rte_mbuf *m);
char *shim_rte_pktmbuf_append(struct rte_mbuf *m, uint16_t len);
uint16_t shim_rte_pktmbuf_tailroom(const struct rte_mbuf *m);
uint64_t shim_rte_rdtsc(void);
uint64_t shim_rte_get_tsc_hz(void);
unsigned shim_rte_lcore_id(void);
int shim_rte_errno(void);
void shim_rte_pause(void);
unsigned shim_rte_ring_sp_enqueue_burst(struct rte_ring *r, void *const *obj_table, unsigned n, unsigned *free_space);
unsigned shim_rte_ring_sc_dequeue_burst(struct rte_ring *r, void **obj_table, unsigned n, unsigned *available);
unsigned shim_rte_ring_count(const struct rte_ring *r);
/* RSS hash functions for IP/TCP/UDP: a macro built from RTE_BIT64, which bindgen cannot evaluate. */
uint64_t shim_rss_hf_ip_tcp_udp(void);
/* Offsets and size of struct rte_mbuf as the C compiler lays it out, so a test can prove the
 * Rust view (which reads these fields directly on the fast path) matches. */
size_t shim_mbuf_offset_data_off(void);
size_t shim_mbuf_offset_data_len(void);
size_t shim_mbuf_offset_pkt_len(void);
size_t shim_mbuf_offset_buf_len(void);
size_t shim_mbuf_offset_nb_segs(void);
size_t shim_mbuf_size(void);

#endif
