#include "shim.h"

uint16_t shim_rte_eth_rx_burst(uint16_t port_id, uint16_t queue_id, struct rte_mbuf **rx_pkts, uint16_t nb_pkts)
{ return rte_eth_rx_burst(port_id, queue_id, rx_pkts, nb_pkts); }
uint16_t shim_rte_eth_tx_burst(uint16_t port_id, uint16_t queue_id, struct rte_mbuf **tx_pkts, uint16_t nb_pkts)
{ return rte_eth_tx_burst(port_id, queue_id, tx_pkts, nb_pkts); }
struct rte_mbuf *shim_rte_pktmbuf_alloc(struct rte_mempool *mp) { return rte_pktmbuf_alloc(mp); }
int shim_rte_pktmbuf_alloc_bulk(struct rte_mempool *mp, struct rte_mbuf **mbufs, unsigned count)
{ return rte_pktmbuf_alloc_bulk(mp, mbufs, count); }
void shim_rte_pktmbuf_free(struct rte_mbuf *m) { rte_pktmbuf_free(m); }
void shim_rte_pktmbuf_free_bulk(struct rte_mbuf **mbufs, unsigned count) { rte_pktmbuf_free_bulk(mbufs, count); }
char *shim_rte_pktmbuf_mtod(struct rte_mbuf *m) { return rte_pktmbuf_mtod(m, char *); }
uint16_t shim_rte_pktmbuf_data_len(const struct rte_mbuf *m) { return rte_pktmbuf_data_len(m); }
uint32_t shim_rte_pktmbuf_pkt_len(const struct rte_mbuf *m) { return rte_pktmbuf_pkt_len(m); }
uint16_t shim_rte_pktmbuf_nb_segs(const struct rte_mbuf *m) { return m->nb_segs; }
char *shim_rte_pktmbuf_append(struct rte_mbuf *m, uint16_t len) { return rte_pktmbuf_append(m, len); }
uint16_t shim_rte_pktmbuf_tailroom(const struct rte_mbuf *m) { return rte_pktmbuf_tailroom(m); }
uint64_t shim_rte_rdtsc(void) { return rte_rdtsc(); }
uint64_t shim_rte_get_tsc_hz(void) { return rte_get_tsc_hz(); }
unsigned shim_rte_lcore_id(void) { return rte_lcore_id(); }
int shim_rte_errno(void) { return rte_errno; }
void shim_rte_pause(void) { rte_pause(); }
unsigned shim_rte_ring_sp_enqueue_burst(struct rte_ring *r, void *const *obj_table, unsigned n, unsigned *free_space)
{ return rte_ring_sp_enqueue_burst(r, obj_table, n, free_space); }
unsigned shim_rte_ring_sc_dequeue_burst(struct rte_ring *r, void **obj_table, unsigned n, unsigned *available)
{ return rte_ring_sc_dequeue_burst(r, obj_table, n, available); }
unsigned shim_rte_ring_count(const struct rte_ring *r) { return rte_ring_count(r); }
uint64_t shim_rss_hf_ip_tcp_udp(void) { return RTE_ETH_RSS_IP | RTE_ETH_RSS_TCP | RTE_ETH_RSS_UDP; }
size_t shim_mbuf_offset_data_off(void) { return offsetof(struct rte_mbuf, data_off); }
size_t shim_mbuf_offset_data_len(void) { return offsetof(struct rte_mbuf, data_len); }
size_t shim_mbuf_offset_pkt_len(void) { return offsetof(struct rte_mbuf, pkt_len); }
size_t shim_mbuf_offset_buf_len(void) { return offsetof(struct rte_mbuf, buf_len); }
size_t shim_mbuf_offset_nb_segs(void) { return offsetof(struct rte_mbuf, nb_segs); }
size_t shim_mbuf_size(void) { return sizeof(struct rte_mbuf); }
