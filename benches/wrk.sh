#!/usr/bin/env bash
# The comparison of benches/server_overhead.rs, from the shell: the six variants of
# benches/variants.sh (plain axum::serve, the hygienic listener + TrackConnection with and
# without a metrics recorder and sampler, plain hyper-util, the crate's own serve loop with and
# without them), all served by the release build of examples/axum_server.rs, each in its own
# process, loaded with `wrk -t1 -cCONNECTIONS -dSECSs --latency` in interleaved rounds (order
# rotated each round). Prints each round, then the medians and the ratios to each variant's
# baseline against the targets (throughput >= 0.98x, p99 <= 1.05x, CPU per request <= 1.03x
# with a recorder, 1.015x without). The `per round` columns give the median, lowest and
# highest of the ratios taken within each round: a wide range means a busy machine. The
# servers' CPU time per request (user + system, from /proc) is shown too: other work on the
# machine disturbs it far less than throughput and latency.
#
#   benches/wrk.sh [--rounds N] [--secs S] [--connections N] [--server-bin PATH]
#
# Defaults: 5 rounds of 5 s, 32 connections (about 110 s). The script builds the example first
# (`cargo build --release --example axum_server`) unless --server-bin names one. wrk comes from
# scripts/install-test-deps.sh.
set -euo pipefail
# shellcheck source=benches/variants.sh
. "$(dirname "${BASH_SOURCE[0]}")/variants.sh"

rounds=5
secs=5
connections=32
bin=
while (($# > 0)); do
    case $1 in
        --rounds) rounds=$2; shift 2 ;;
        --secs) secs=$2; shift 2 ;;
        --connections) connections=$2; shift 2 ;;
        --server-bin) bin=$2; shift 2 ;;
        -h | --help) sed -n '2,16p' "$0"; exit 0 ;;
        *) echo "wrk.sh: unknown argument $1" >&2; exit 2 ;;
    esac
done
for v in "$rounds" "$secs" "$connections"; do
    if ! [[ $v =~ ^[1-9][0-9]*$ ]]; then
        echo "wrk.sh: $v is not a positive whole number" >&2
        exit 2
    fi
done

# Resolved before the cd below, so that a path relative to the caller's directory works.
[[ -z $bin ]] || bin=$(realpath "$bin")
cd "$(dirname "${BASH_SOURCE[0]}")/.."
if ! command -v wrk >/dev/null 2>&1; then
    echo "wrk.sh: wrk not found; scripts/install-test-deps.sh installs it" >&2
    exit 1
fi

if [[ -z $bin ]]; then
    cargo build --release --example axum_server
    target_dir=${CARGO_TARGET_DIR:-$(cargo metadata --format-version 1 --no-deps |
        sed -n 's/.*"target_directory":"\([^"]*\)".*/\1/p')}
    bin=$target_dir/release/examples/axum_server
fi
[[ -x $bin ]] || { echo "wrk.sh: $bin was not built" >&2; exit 1; }

names=("${all_variants[@]}")
flags=()
bases=()
targets=()
for v in "${names[@]}"; do
    flags+=("$(variant_flags "$v")")
    bases+=("$(variant_baseline "$v")")
    targets+=("$(variant_cpu_target "$v")")
done
work=$(mktemp -d)
pids=()
cleanup() {
    local pid
    for pid in "${pids[@]}"; do
        kill "$pid" 2>/dev/null || true
    done
    for pid in "${pids[@]}"; do
        wait "$pid" 2>/dev/null || true
    done
    rm -rf "$work"
}
trap cleanup EXIT

# Start the servers and wait (deadline 10 s) for their `listening on ADDR` lines.
addrs=()
for i in "${!names[@]}"; do
    # shellcheck disable=SC2086 # an empty flag must vanish
    "$bin" --listen 127.0.0.1:0 ${flags[i]} >"$work/${names[i]}.out" 2>"$work/${names[i]}.err" &
    pids+=($!)
done
for i in "${!names[@]}"; do
    addr=
    for _ in $(seq 200); do
        addr=$(sed -n '1s/^listening on //p' "$work/${names[i]}.out")
        [[ -n $addr ]] && break
        if ! kill -0 "${pids[i]}" 2>/dev/null; then
            echo "wrk.sh: ${names[i]} server exited:" >&2
            cat "$work/${names[i]}.err" >&2
            exit 1
        fi
        sleep 0.05
    done
    [[ -n $addr ]] || { echo "wrk.sh: ${names[i]} server did not start" >&2; exit 1; }
    addrs+=("$addr")
done

# Turns one wrk report into "REQ_PER_SEC P99_MS ERRORS REQUESTS".
parse_wrk() {
    awk '
        function ms(t,   n, u) {
            n = t + 0; u = t; sub(/^[0-9.]+/, "", u)
            if (u == "us") return n / 1000
            if (u == "ms") return n
            if (u == "s") return n * 1000
            if (u == "m") return n * 60000
            if (u == "h") return n * 3600000
            return -1
        }
        $1 == "Requests/sec:" { rps = $2 }
        $1 == "99%" { p99 = ms($2) }
        $2 == "requests" && $3 == "in" { requests = $1 }
        $1 == "Non-2xx" { errors += $NF }
        $1 == "Socket" { for (i = 4; i <= NF; i += 2) { v = $i; sub(/,/, "", v); errors += v } }
        END {
            if (rps == "" || p99 == "" || p99 < 0 || requests == "") exit 1
            printf "%s %.3f %d %d\n", rps, p99, errors, requests
        }'
}

# User + system CPU time of a process and its threads, in clock ticks (fields 14 and 15 of
# /proc/PID/stat, counted after the parenthesised command name).
cpu_ticks() {
    awk '{ sub(/.*\) /, ""); print $12 + $13 }' "/proc/$1/stat"
}
clk_tck=$(getconf CLK_TCK 2>/dev/null || echo 100)

run_wrk() { # ADDR SECS
    wrk -t1 "-c$connections" "-d$2s" --latency "http://$1/"
}

echo "wrk.sh: wrk -t1 -c$connections -d${secs}s --latency; $rounds rounds, order rotated each round"
for i in "${!names[@]}"; do
    printf '  %-19s %s\n' "${names[i]}" "${addrs[i]}"
    run_wrk "${addrs[i]}" 1 >/dev/null # warm-up
done

n=${#names[@]}
for ((r = 0; r < rounds; r++)); do
    for ((k = 0; k < n; k++)); do
        i=$(((r + k) % n))
        report=$work/${names[i]}.round$r
        cpu_before=$(cpu_ticks "${pids[i]}")
        run_wrk "${addrs[i]}" "$secs" >"$report"
        cpu_after=$(cpu_ticks "${pids[i]}")
        if ! result=$(parse_wrk <"$report"); then
            echo "wrk.sh: cannot read wrk's output:" >&2
            cat "$report" >&2
            exit 1
        fi
        read -r rps p99 errors requests <<<"$result"
        cpu=$(awk -v d=$((cpu_after - cpu_before)) -v hz="$clk_tck" -v n="$requests" \
            'BEGIN { printf "%.4f", (n > 0 ? d / hz * 1e6 / n : 0) }')
        echo "$rps $p99 $errors $cpu" >>"$work/${names[i]}.results"
        note=
        ((errors > 0)) && note="  ($errors errors)"
        printf 'round %d/%d  %-19s %9.0f req/s  p99 %8.3f ms  cpu %6.2f us/req%s\n' \
            $((r + 1)) "$rounds" "${names[i]}" "$rps" "$p99" "$cpu" "$note"
    done
done

# Medians, ratios of medians, and the per-round ratios, as server_overhead.rs prints them.
results=()
for n in "${names[@]}"; do results+=("$work/$n.results"); done
awk -v t_target=0.98 -v l_target=1.05 -v bases="${bases[*]/#/=}" -v targets="${targets[*]/#/=}" '
    function median(a, n,   i, j, t) {
        for (i = 2; i <= n; i++) for (j = i; j > 1 && a[j - 1] > a[j]; j--) {
            t = a[j]; a[j] = a[j - 1]; a[j - 1] = t
        }
        return n % 2 ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2
    }
    function med(i, m,   r, a) {
        for (r = 1; r <= rounds; r++) a[r] = val[i, m, r]
        return median(a, rounds)
    }
    # One row of the ratio table: metric m of variant i against its baseline, variant b.
    function row(i, b, m, label, op, target,   ratio, r, x, lo, hi, verdict, title) {
        title = m == 1 ? name[i] "/" name[b] : ""
        for (r = 1; r <= rounds; r++) if (val[b, m, r] <= 0) {
            printf "%-31s %-10s %7s\n", title, label, "n/a"
            return
        }
        ratio = med(i, m) / med(b, m)
        lo = 1e300; hi = -1e300
        for (r = 1; r <= rounds; r++) {
            x[r] = val[i, m, r] / val[b, m, r]
            if (x[r] < lo) lo = x[r]
            if (x[r] > hi) hi = x[r]
        }
        verdict = ""
        if (op == ">=") verdict = sprintf(">= %.3fx %s", target, ratio >= target ? "ok" : "MISS")
        if (op == "<=") verdict = sprintf("<= %.3fx %s", target, ratio <= target ? "ok" : "MISS")
        printf "%-31s %-10s %6.3fx %16s   %.3f [%.3f..%.3f]\n", title, \
            label, ratio, verdict, median(x, rounds), lo, hi
    }
    FNR == 1 { v++; name[v] = FILENAME; sub(/.*\//, "", name[v]); sub(/\.results$/, "", name[v]) }
    { val[v, 1, FNR] = $1; val[v, 2, FNR] = $2; err[v] += $3; val[v, 3, FNR] = $4; rounds = FNR }
    END {
        nb = split(bases, base, " "); split(targets, cpu_target, " ")
        for (i = 1; i <= nb; i++) { sub(/^=/, "", base[i]); sub(/^=/, "", cpu_target[i]) }
        for (i = 1; i <= v; i++) index_of[name[i]] = i
        printf "\n%-19s %10s %10s %12s %7s\n", "variant", "req/s", "p99 ms", "cpu us/req", "errors"
        for (i = 1; i <= v; i++)
            printf "%-19s %10.0f %10.3f %12.2f %7d\n", name[i], med(i, 1), med(i, 2), med(i, 3), err[i]
        printf "\n%-31s %-10s %7s %16s   per round: median [lowest..highest]\n", \
            "ratio to its baseline", "", "medians", "target"
        for (i = 1; i <= v; i++) {
            if (base[i] == "") continue
            b = index_of[base[i]]
            row(i, b, 1, "req/s", ">=", t_target)
            row(i, b, 2, "p99", "<=", l_target)
            row(i, b, 3, "cpu/req", "<=", cpu_target[i])
        }
    }' "${results[@]}"
