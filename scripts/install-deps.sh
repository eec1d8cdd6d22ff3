#!/usr/bin/env bash
# Installs what scrubd needs from Debian's archive, only if missing. Idempotent; run as root.
set -euo pipefail
# prometheus: its promtool lints the metrics exposition in the stats tests (skipped without it).
# On a systemd host Debian enables prometheus.service (:9090); `systemctl disable --now
# prometheus` if only promtool is wanted.
# ethtool, tcpdump, curl, python3: the real-stack tests (hosts in network namespaces).
pkgs=(dpdk dpdk-dev libdpdk-dev libclang-dev pkg-config build-essential iproute2 prometheus ethtool tcpdump curl python3)
missing=()
# tests/realstack.rs also runs ping and kill (procps) inside network namespaces.
pkgs+=(iputils-ping procps)
# libvectorscan-dev: Vectorscan, the signature prefilter's multi-pattern engine (x86-64 needs
# SSE4.2; Debian's build picks the best code path at run time).
pkgs+=(libvectorscan-dev)
# tests/flowspec.rs: ExaBGP (scrubd's BGP speaker, runs `scrubctl bgp-bridge`) and gobgpd/gobgp
# (the operator's router in the test). Debian's exabgp unit is enabled but idle without a config.
pkgs+=(exabgp gobgpd)
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" != 0 ]; then
    echo "install-deps: missing packages: ${missing[*]}; run as root (sudo $0)" >&2
    exit 1
  fi
  echo "install-deps: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
if ! command -v cargo >/dev/null; then
  echo "install-deps: cargo not found: install a Rust toolchain (rustup, stable >= 1.82) first" >&2
  exit 1
fi
echo "install-deps: DPDK $(pkg-config --modversion libdpdk), $(cargo --version)"
