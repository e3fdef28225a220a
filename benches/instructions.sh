#!/usr/bin/env bash
# Instructions per request of the server, counted by valgrind (callgrind) rather than timed: the
# same on a busy machine and on one without hardware counters, so two builds can be compared to
# the instruction. Each variant of examples/axum_server (see benches/wrk.sh) runs under callgrind
# twice, loaded with `h2load --h1 -c4` for SMALL and then LARGE requests; the difference of the
# two totals over LARGE - SMALL is what one request costs, start-up and shutdown cancelled out.
# Prints one line per variant and its ratio to its baseline (benches/variants.sh), when that ran.
#
#   benches/instructions.sh [--small N] [--large N] [--server-bin PATH] [--variants LIST]
#
# Defaults: 2000 and 12000 requests; variants bare,no-metrics,bare-hyper,own-loop-no-metrics (a
# comma list of the names in benches/variants.sh). `hygienic` and `own-loop` run the exporter and
# the census sampler, whose ticks follow wall time, which valgrind stretches: their figures move by a few hundred between
# runs; the others are steady within about 100. Needs valgrind and h2load (Debian:
# `apt-get install valgrind nghttp2-client`); builds the example first unless --server-bin names
# one. Loopback only; about 25 s per run.
set -euo pipefail
# shellcheck source=benches/variants.sh
. "$(dirname "${BASH_SOURCE[0]}")/variants.sh"

small=2000
large=12000
bin=
variants=bare,no-metrics,bare-hyper,own-loop-no-metrics
while (($# > 0)); do
    case $1 in
        --small) small=$2; shift 2 ;;
        --large) large=$2; shift 2 ;;
        --server-bin) bin=$2; shift 2 ;;
        --variants) variants=$2; shift 2 ;;
        -h | --help) sed -n '2,16p' "$0"; exit 0 ;;
        *) echo "instructions.sh: unknown argument $1" >&2; exit 2 ;;
    esac
done
for v in "$small" "$large"; do
    if ! [[ $v =~ ^[1-9][0-9]*$ ]]; then
        echo "instructions.sh: $v is not a positive whole number" >&2
        exit 2
    fi
done
if ((large <= small)); then
    echo "instructions.sh: --large must be more than --small" >&2
    exit 2
fi
for tool in valgrind h2load; do
    if ! command -v "$tool" >/dev/null; then
        echo "instructions.sh: $tool not found (apt-get install valgrind nghttp2-client)" >&2
        exit 1
    fi
done
cd "$(dirname "${BASH_SOURCE[0]}")/.."
if [[ -z $bin ]]; then
    cargo build --release --example axum_server >&2
    bin=target/release/examples/axum_server
fi

work=$(mktemp -d)
server=
cleanup() {
    if [[ -n $server ]]; then kill "$server" 2>/dev/null || true; fi
    rm -rf "$work"
}
trap cleanup EXIT


# Total instructions of one server run that answered $2 requests.
count() {
    local variant=$1 requests=$2 out="$work/cg.out" addr
    # The previous run's output goes first: the server's redirection truncates it only once the
    # background job starts, and a look before then would find the old address.
    rm -f "$work/stdout" "$work/stderr"
    # shellcheck disable=SC2046
    valgrind --tool=callgrind --callgrind-out-file="$out" \
        "$bin" --listen 127.0.0.1:0 $(variant_flags "$variant") >"$work/stdout" 2>"$work/stderr" &
    server=$!
    for _ in $(seq 600); do
        grep -q '^listening on ' "$work/stdout" 2>/dev/null && break
        kill -0 "$server" 2>/dev/null || { cat "$work/stderr" >&2; exit 1; }
        sleep 0.1
    done
    addr=$(awk '/^listening on /{print $3; exit}' "$work/stdout")
    [[ -n $addr ]] || { echo "instructions.sh: $variant did not start" >&2; exit 1; }
    h2load --h1 -c4 -n "$requests" "http://$addr/" >"$work/h2load" 2>&1
    if ! grep -q "$requests succeeded, 0 failed, 0 errored" "$work/h2load"; then
        echo "instructions.sh: $variant: not every request succeeded" >&2
        cat "$work/h2load" >&2
        exit 1
    fi
    kill -TERM "$server"
    wait "$server" || true
    server=
    awk '/^(summary|totals):/{print $2; exit}' "$out"
}

declare -A per_request
IFS=, read -ra list <<<"$variants"
for v in "${list[@]}"; do
    variant_flags "$v" >/dev/null || exit 2
done
for v in "${list[@]}"; do
    a=$(count "$v" "$small")
    b=$(count "$v" "$large")
    per_request[$v]=$(((b - a) / (large - small)))
done
printf '%-20s %14s %22s\n' variant instr/request 'vs its baseline'
for v in "${list[@]}"; do
    ratio=-
    base=$(variant_baseline "$v")
    if [[ -n $base && -n ${per_request[$base]:-} ]]; then
        ratio=$(awk -v a="${per_request[$v]}" -v b="${per_request[$base]}" 'BEGIN { printf "%.3fx", a / b }')
        ratio="$ratio ($base)"
    fi
    printf '%-20s %14s %22s\n' "$v" "${per_request[$v]}" "$ratio"
done
