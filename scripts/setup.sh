#!/usr/bin/env bash
# One command on a fresh Debian machine: install packages, reserve hugepages, build, generate
# demo traffic and run scrubd on the built-in demo config. Run as root from anywhere.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
cargo build --release --workspace
# Hugepages make the benchmarks and real deployments fast; the demo itself runs without them,
# so a kernel that refuses them is reported, not fatal.
./target/release/hugepage-setup reserve --pages "${SCRUBD_HUGEPAGES:-1024}" --allow-partial \
  || echo "setup: hugepages not reserved (the demo uses plain pages and still runs)"
./target/release/scrubd-gen --out-dir out/demo --packets 10000 --attack-every 4
./target/release/scrubd --config configs/demo.toml
echo "setup: forwarded frames are in out/demo/inside-tx.pcap and out/demo/outside-tx.pcap"
