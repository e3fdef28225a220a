#!/usr/bin/env bash
# A soak of examples/axum_server in both serve modes: 10 minutes each (SECS to change) of mixed
# load (keep-alive and short connections, HTTP/2 streams, half-closes and resets at random
# moments, slow readers), with the server's RSS, descriptors and live connections sampled every
# second. Not part of CI. Writes target/soak/MODE.csv and prints one JSON summary per mode.
#
#   bash benches/soak.sh [SECS]
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
secs=${1:-600}
cargo build --release --example axum_server --all-features
mkdir -p target/soak
for mode in axum hyper; do
    python3 benches/soak.py --binary target/release/examples/axum_server --mode "$mode" \
        --secs "$secs" --csv "target/soak/$mode.csv"
done
