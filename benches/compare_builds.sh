#!/usr/bin/env bash
# Two builds of examples/axum_server against each other in the same run: has a change made the
# server cheaper or dearer per request? Each chosen variant (see benches/wrk.sh) of the BEFORE
# and AFTER builds runs in its own process, with bare axum (from AFTER) beside them; every round
# loads each server in turn with `wrk -t1 -cCONNECTIONS -dSECSs --latency`, the order rotated
# from round to round. Prints each round, then per variant the medians of CPU time per request
# (user + system of the server, from /proc), req/s and p99, and the ratios after/before and
# to bare taken within each round: median [lowest..highest].
#
#   benches/compare_builds.sh BEFORE_BIN AFTER_BIN [--variants LIST] [--rounds N] [--secs S]
#       [--connections N]
#
# Defaults: variants no-metrics,own-loop-no-metrics (a comma list of the names in
# benches/variants.sh but the baselines; a build from before --bare-hyper existed has every
# variant but that one), 10 rounds of 4 s, 32 connections. To build an earlier commit beside the current tree:
#
#   git worktree add /tmp/before REV
#   CARGO_TARGET_DIR=/tmp/before-target cargo build --release --example axum_server \
#       --manifest-path /tmp/before/Cargo.toml
#   benches/compare_builds.sh /tmp/before-target/release/examples/axum_server \
#       target/release/examples/axum_server
#
# Loopback only; wrk comes from scripts/install-test-deps.sh.
set -euo pipefail
# shellcheck source=benches/variants.sh
. "$(dirname "${BASH_SOURCE[0]}")/variants.sh"

usage() { sed -n '2,21p' "$0"; }
(($# >= 2)) || { usage >&2; exit 2; }
before=$1
after=$2
shift 2
variants=no-metrics,own-loop-no-metrics
rounds=10
secs=4
connections=32
while (($# > 0)); do
    case $1 in
        --variants) variants=$2; shift 2 ;;
        --rounds) rounds=$2; shift 2 ;;
        --secs) secs=$2; shift 2 ;;
        --connections) connections=$2; shift 2 ;;
        -h | --help) usage; exit 0 ;;
        *) echo "compare_builds.sh: unknown argument $1" >&2; exit 2 ;;
    esac
done
for v in "$rounds" "$secs" "$connections"; do
    if ! [[ $v =~ ^[1-9][0-9]*$ ]]; then
        echo "compare_builds.sh: $v is not a positive whole number" >&2
        exit 2
    fi
done
for b in "$before" "$after"; do
    [[ -x $b ]] || { echo "compare_builds.sh: $b is not an executable" >&2; exit 1; }
done
command -v wrk >/dev/null || {
    echo "compare_builds.sh: wrk not found; scripts/install-test-deps.sh installs it" >&2
    exit 1
}


names=(bare)
bins=("$after")
vflags=(--bare)
IFS=, read -ra list <<<"$variants"
for v in "${list[@]}"; do
    f=$(variant_flags "$v")
    names+=("$v@before" "$v@after")
    bins+=("$before" "$after")
    vflags+=("$f" "$f")
done

work=$(mktemp -d)
pids=()
cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    rm -rf "$work"
}
trap cleanup EXIT

addrs=()
for i in "${!names[@]}"; do
    # shellcheck disable=SC2086
    "${bins[$i]}" --listen 127.0.0.1:0 ${vflags[$i]} >"$work/out.$i" 2>"$work/err.$i" &
    pids+=($!)
    addr=
    for _ in $(seq 300); do
        addr=$(awk '/^listening on /{print $3; exit}' "$work/out.$i" 2>/dev/null)
        [[ -n $addr ]] && break
        kill -0 "${pids[$i]}" 2>/dev/null || { cat "$work/err.$i" >&2; exit 1; }
        sleep 0.1
    done
    [[ -n $addr ]] || { echo "compare_builds.sh: ${names[$i]} did not start" >&2; exit 1; }
    addrs+=("$addr")
    wrk -t1 -c"$connections" -d1s "http://$addr/" >/dev/null
done

ticks=$(getconf CLK_TCK)
cpu_of() { awk '{print $14 + $15}' "/proc/$1/stat"; }
n=${#names[@]}
printf '%-6s %-22s %12s %10s %12s\n' round server 'cpu us/req' req/s 'p99 ms' | tee "$work/rows.txt"
for ((r = 1; r <= rounds; r++)); do
    for ((k = 0; k < n; k++)); do
        j=$(((k + r) % n))
        c0=$(cpu_of "${pids[$j]}")
        out=$(wrk -t1 -c"$connections" -d"${secs}s" --latency "http://${addrs[$j]}/")
        c1=$(cpu_of "${pids[$j]}")
        row=$(awk -v c=$((c1 - c0)) -v t="$ticks" -v s="$secs" -v r="$r" -v name="${names[$j]}" '
            /requests in/ { n = $1 }
            /Non-2xx|Socket errors/ { bad = 1 }
            $1 == "99%" { p = $2; if (p ~ /us$/) p = p / 1000; else if (p ~ /ms$/) p = p + 0; else p = p * 1000 }
            END { if (bad || n == 0) exit 1; printf "%-6d %-22s %12.3f %10.0f %12.3f\n", r, name, c / t * 1e6 / n, n / s, p }' <<<"$out") || {
            echo "compare_builds.sh: ${names[$j]}: errors under load" >&2
            echo "$out" >&2
            exit 1
        }
        echo "$row" | tee -a "$work/rows.txt"
    done
done

echo
awk -v variants="$variants" '
    NR == 1 { next }
    { cpu[$2, $1] = $3; rps[$2, $1] = $4; p99[$2, $1] = $5; seen[$1] = 1 }
    function median(a, k,   i, j, t) {
        for (i = 2; i <= k; i++) for (j = i; j > 1 && a[j - 1] > a[j]; j--) { t = a[j]; a[j] = a[j - 1]; a[j - 1] = t }
        return k % 2 ? a[(k + 1) / 2] : (a[k / 2] + a[k / 2 + 1]) / 2
    }
    function ratios(m, a, b,   r, k, v, lo, hi) {
        k = 0
        for (r in seen) {
            k++
            if (m == "cpu") v[k] = cpu[a, r] / cpu[b, r]
            else if (m == "rps") v[k] = rps[a, r] / rps[b, r]
            else v[k] = p99[a, r] / p99[b, r]
        }
        lo = v[1]; hi = v[1]
        for (r = 1; r <= k; r++) { if (v[r] < lo) lo = v[r]; if (v[r] > hi) hi = v[r] }
        return sprintf("%.3f [%.3f..%.3f]", median(v, k), lo, hi)
    }
    function medof(m, a,   r, k, v) {
        k = 0
        for (r in seen) { k++; v[k] = m == "cpu" ? cpu[a, r] : m == "rps" ? rps[a, r] : p99[a, r] }
        return median(v, k)
    }
    END {
        printf "%-22s %12s %10s %10s\n", "server (medians)", "cpu us/req", "req/s", "p99 ms"
        printf "%-22s %12.3f %10.0f %10.3f\n", "bare", medof("cpu", "bare"), medof("rps", "bare"), medof("p99", "bare")
        nv = split(variants, vs, ",")
        for (i = 1; i <= nv; i++) for (w = 1; w <= 2; w++) {
            s = vs[i] (w == 1 ? "@before" : "@after")
            printf "%-22s %12.3f %10.0f %10.3f\n", s, medof("cpu", s), medof("rps", s), medof("p99", s)
        }
        printf "\n%-12s %-8s %-26s %-26s %-26s\n", "variant", "", "after/before", "before/bare", "after/bare"
        for (i = 1; i <= nv; i++) {
            v = vs[i]; a = v "@after"; b = v "@before"
            for (m = 1; m <= 3; m++) {
                k = m == 1 ? "cpu" : m == 2 ? "rps" : "p99"
                label = m == 1 ? "cpu/req" : m == 2 ? "req/s" : "p99"
                printf "%-12s %-8s %-26s %-26s %-26s\n", m == 1 ? v : "", label, ratios(k, a, b), ratios(k, b, "bare"), ratios(k, a, "bare")
            }
        }
    }' "$work/rows.txt"
