-- Drive a scrubd box with Pktgen-DPDK (tested API level: Pktgen 23.03), unattended:
-- configure, start, measure for a set time, print the port rates, quit.
--
--   pktgen -l 0-4 -n 4 -a <tx NIC> -a <rx NIC> -- -P -T -m "[1:2].0,[3:4].1" \
--          [-s 0:attack.pcap] -f perf/pktgen/scrubd.lua
--
-- Port 0 faces scrubd's outside port (we transmit the attack mix there and receive scrubd's
-- SYN-cookie answers); port 1 faces scrubd's inside port (we receive what scrubd forwards).
-- Everything below the "knobs" line can stay as it is; see perf/pktgen/README.md.

package.path = package.path .. ";?.lua;test/?.lua;app/?.lua;"
require "Pktgen"

-- knobs ------------------------------------------------------------------------------------
local tx         = "0"                -- port facing scrubd's outside
local rx         = "1"                -- port facing scrubd's inside
local rate_pct   = 10                 -- percent of the TX link speed
local seconds    = 30                 -- measurement time
local mode       = "syn-flood"        -- "syn-flood", "udp-reflection" or "pcap" (needs -s 0:file)
local dst_mac    = "02:00:00:00:00:02"-- scrubd's outside MAC (or the next hop's)
local target     = "198.51.100.1"     -- first protected address (scrubd [pipeline.syncookie])
local target_max = "198.51.100.254"
-- -------------------------------------------------------------------------------------------

local function setup_common()
    pktgen.set(tx, "rate", rate_pct)
    pktgen.set(tx, "count", 0)        -- transmit until stopped
    pktgen.set(tx, "burst", 32)
    pktgen.set_mac(tx, "dst", dst_mac)
end

-- Random-looking spoofed sources: the range walks the whole of 1.0.0.1 .. 223.255.255.254,
-- source ports 1024..65535, every protected address.
local function setup_range(proto, sport_min, sport_max, dport, size)
    pktgen.range.dst_mac(tx, "start", dst_mac)
    pktgen.range.ip_proto(tx, proto)
    pktgen.range.src_ip(tx, "start", "1.0.0.1")
    pktgen.range.src_ip(tx, "inc", "0.1.3.7")
    pktgen.range.src_ip(tx, "min", "1.0.0.1")
    pktgen.range.src_ip(tx, "max", "223.255.255.254")
    pktgen.range.dst_ip(tx, "start", target)
    pktgen.range.dst_ip(tx, "inc", "0.0.0.1")
    pktgen.range.dst_ip(tx, "min", target)
    pktgen.range.dst_ip(tx, "max", target_max)
    pktgen.range.src_port(tx, "start", sport_min)
    pktgen.range.src_port(tx, "inc", sport_min == sport_max and 0 or 1)
    pktgen.range.src_port(tx, "min", sport_min)
    pktgen.range.src_port(tx, "max", sport_max)
    pktgen.range.dst_port(tx, "start", dport)
    pktgen.range.dst_port(tx, "inc", 0)
    pktgen.range.dst_port(tx, "min", dport)
    pktgen.range.dst_port(tx, "max", dport)
    pktgen.range.pkt_size(tx, "start", size)
    pktgen.range.pkt_size(tx, "inc", 0)
    pktgen.range.pkt_size(tx, "min", size)
    pktgen.range.pkt_size(tx, "max", size)
    pktgen.set_range(tx, "on")
end

setup_common()
if mode == "syn-flood" then
    -- 64-byte TCP segments to port 443. Pktgen's range TCP flags default to ACK on some
    -- versions: check the "range" page (or the capture on the far side) and set SYN there
    -- ("range 0 tcp_flags set syn" / "range 0 tcp_flags clr ack" on the CLI) if needed.
    setup_range("tcp", 1024, 65535, 443, 64)
elseif mode == "udp-reflection" then
    -- DNS answers (source port 53) of a typical amplified size.
    setup_range("udp", 53, 53, 33434, 1200)
elseif mode == "pcap" then
    pktgen.pcap(tx, "on")             -- replays the capture given with -s 0:file.pcap
else
    error("mode: syn-flood, udp-reflection or pcap")
end

local function stats(label)
    local r = pktgen.portStats("all", "rate")
    local p = pktgen.portStats("all", "port")
    printf("%s\n", label)
    for _, port in ipairs({tonumber(tx), tonumber(rx)}) do
        local rr, pp = r[port] or {}, p[port] or {}
        printf("  port %d: rx %s pps (%s Mbit/s), tx %s pps (%s Mbit/s); totals rx %s tx %s, missed %s, errors rx %s tx %s\n",
            port, tostring(rr.pkts_rx), tostring(rr.mbits_rx), tostring(rr.pkts_tx), tostring(rr.mbits_tx),
            tostring(pp.ipackets), tostring(pp.opackets), tostring(pp.imissed), tostring(pp.ierrors),
            tostring(pp.oerrors))
    end
end

pktgen.clear("all")
pktgen.start(tx)
pktgen.delay(2000)                    -- let rates settle
for s = 1, seconds do
    pktgen.delay(1000)
    if s % 5 == 0 or s == seconds then
        stats(string.format("t=%ds mode=%s rate=%d%%", s + 2, mode, rate_pct))
    end
end
pktgen.stop(tx)
pktgen.delay(1000)                    -- let the last answers and forwards arrive
stats("final (after stop)")
pktgen.quit()
