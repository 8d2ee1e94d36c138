#!/usr/bin/env bash
# Sets up a fresh machine and runs every test: formatting, lints, unit tests, openraft's
# storage conformance suite, the criterion benches once each (their test mode), and the
# integration tests that start real setpoint and etcd processes on 127.0.0.1 and drive them
# with etcdctl.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/setup.sh
cargo fmt --all -- --check
cargo clippy --release --workspace --all-targets -- -D warnings
cargo clippy --release -p setpoint-server --features failpoints --all-targets -- -D warnings
# The crash-point build, for setpoint-jepsen's crash fault, kept beside the plain binary
# (the next cargo command puts the plain one back at target/release/setpoint).
cargo build --release -p setpoint-server --features failpoints
cp "$CARGO_TARGET_DIR/release/setpoint" "$CARGO_TARGET_DIR/release/setpoint-failpoints"
log="$(mktemp)"
trap 'rm -f "$log"' EXIT
cargo test --release --workspace --lib --bins --tests --benches 2>&1 | tee "$log"
# One closing line for the whole run (cargo prints one summary per test binary).
awk '/^test result:/ { p += $4; f += $6 } END { printf "total: %d passed, %d failed\n", p, f }' "$log"
