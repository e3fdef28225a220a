#!/usr/bin/env bash
# Instructions per request of the pooled client, counted by valgrind (callgrind) rather than
# timed: examples/pooled_client (one worker, keep-alive) against a plain axum server
# (examples/axum_server --bare) on loopback, run for SMALL and then LARGE requests; the
# difference of the two totals over LARGE - SMALL is what one request costs the client,
# start-up and shutdown cancelled out. Two builds compare to the instruction.
#
#   benches/client_instructions.sh [--small N] [--large N] [--client-bin PATH] [--url URL]
#
# Defaults: 2000 and 12000 requests; the client built from this tree; a bare axum server
# started here unless --url names a server (an https:// one with --ca-file appended through
# CLIENT_ARGS, e.g. CLIENT_ARGS="--ca-file ca.pem"). Needs valgrind. Loopback only.
set -euo pipefail

small=2000
large=12000
bin=
url=
while (($# > 0)); do
    case $1 in
        --small) small=$2; shift 2 ;;
        --large) large=$2; shift 2 ;;
        --client-bin) bin=$2; shift 2 ;;
        --url) url=$2; shift 2 ;;
        -h | --help) sed -n '2,13p' "$0"; exit 0 ;;
        *) echo "client_instructions.sh: unknown argument $1" >&2; exit 2 ;;
    esac
done
for v in "$small" "$large"; do
    [[ $v =~ ^[1-9][0-9]*$ ]] || { echo "client_instructions.sh: $v is not a positive whole number" >&2; exit 2; }
done
((large > small)) || { echo "client_instructions.sh: --large must be more than --small" >&2; exit 2; }
command -v valgrind >/dev/null || { echo "client_instructions.sh: valgrind not found (apt-get install valgrind)" >&2; exit 1; }
cd "$(dirname "${BASH_SOURCE[0]}")/.."
if [[ -z $bin ]]; then
    cargo build --release --example pooled_client --example axum_server >&2
    bin=target/release/examples/pooled_client
fi

work=$(mktemp -d)
server=
cleanup() {
    if [[ -n $server ]]; then kill "$server" 2>/dev/null || true; fi
    rm -rf "$work"
}
trap cleanup EXIT

if [[ -z $url ]]; then
    [[ -x target/release/examples/axum_server ]] || cargo build --release --example axum_server >&2
    target/release/examples/axum_server --bare --listen 127.0.0.1:0 >"$work/server" 2>&1 &
    server=$!
    for _ in $(seq 100); do
        grep -q '^listening on ' "$work/server" 2>/dev/null && break
        sleep 0.1
    done
    addr=$(awk '/^listening on /{print $3; exit}' "$work/server")
    [[ -n $addr ]] || { echo "client_instructions.sh: the server did not start" >&2; exit 1; }
    url="http://$addr/"
fi

count() {
    # shellcheck disable=SC2086
    valgrind --tool=callgrind --callgrind-out-file="$work/cg.out" \
        "$bin" --url "$url" --requests "$1" --concurrency 1 ${CLIENT_ARGS:-} >"$work/out" 2>"$work/err"
    grep -q "\"ok\":$1," "$work/out" || { echo "client_instructions.sh: not every request succeeded" >&2; tail -3 "$work/err" >&2; exit 1; }
    awk '/^(summary|totals):/{print $2; exit}' "$work/cg.out"
}
a=$(count "$small")
b=$(count "$large")
echo "client instructions per request: $(((b - a) / (large - small))) ($url)"
