#!/usr/bin/env bash
# Installs what a fresh Debian machine lacks to build and test Setpoint, and picks the build
# cache. Sourced by run.sh and test.sh; safe to run again (installs only what is missing).
set -euo pipefail

missing=()
for pkg in clang libclang-dev etcd-client etcd-server; do
  dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg")
done
if ((${#missing[@]})); then
  echo "setup: installing ${missing[*]}" >&2
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -q
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q --no-install-recommends "${missing[@]}"
fi

# RocksDB's C++ takes ~15 minutes to compile on 2 cores: keep one build cache outside the
# clone, in one profile (release), shared by every checkout on this machine.
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/var/cache/setpoint-target}"
mkdir -p "$CARGO_TARGET_DIR" 2>/dev/null || export CARGO_TARGET_DIR="$HOME/.cache/setpoint-target"
