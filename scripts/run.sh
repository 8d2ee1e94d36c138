#!/usr/bin/env bash
# Sets up a fresh machine, builds Setpoint, and runs one member (default: member "default",
# clients on 127.0.0.1:2379, peers on 127.0.0.1:2380, data in ./default.setpoint).
# Any etcd flag may be passed through: scripts/run.sh --name n1 --data-dir /tmp/n1 ...
set -euo pipefail
here="$(cd "$(dirname "$0")/.." && pwd)"
source "$here/scripts/setup.sh"
cargo build --release --manifest-path "$here/Cargo.toml" -p setpoint-server --bin setpoint
exec "$CARGO_TARGET_DIR/release/setpoint" "$@"
