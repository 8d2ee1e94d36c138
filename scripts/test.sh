#!/usr/bin/env bash
# Sets up a fresh machine and runs every test: formatting, lints, unit tests, openraft's
# storage conformance suite, and the integration tests that start real setpoint and etcd
# processes on 127.0.0.1 and drive them with etcdctl.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/setup.sh
cargo fmt --all -- --check
cargo clippy --release --workspace --all-targets -- -D warnings
cargo test --release --workspace
