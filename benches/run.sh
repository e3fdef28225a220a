#!/usr/bin/env bash
# Runs every comparison of the project against its baseline in one go and writes BENCHMARKS.md:
# the machine, one summary table (what, command, baseline, ours, ratio ours/baseline, target,
# met), then each benchmark's own output verbatim. Every ratio comes from one run, baseline and
# ours measured side by side; an absolute figure alone says little on a shared machine.
#
#   server     cargo bench --bench server_overhead      hygienic axum with and without a
#                                                       recorder vs bare axum; the crate's own
#                                                       loop, same, vs bare hyper-util
#   client     cargo bench --bench client_overhead      HygienicClient vs bare hyper-util, over
#                                                       HTTP, then HTTPS (-- --tls)
#   census     census bench in a private netns, per size: netlink count vs ss|awk, the procfs
#              crate and node_exporter's tcpstat collector (CPU per scrape), same sockets
#   states     crates/conn-hygiene-cli/benches/states_vs_awk.sh 100000 (and 200000)
#   sampler    cargo bench --bench sampler_tick         the census sampler's full tick vs a full
#                                                       netlink walk, 100k and 200k TIME_WAIT
#   peers      cargo bench -p conn-hygiene-census --bench peers   a netlink walk with tcp_info
#                                                       (the sampler's) vs without
#   page       cargo bench --bench page                 the connections page's render vs /metrics
#   memory     benches/census_memory.sh SIZES           peak RSS of a census sample vs ss|awk
#   time-wait  cargo test --release --test client_time_wait   TIME_WAIT, pooled vs naive client
#
#   benches/run.sh [--only LIST] [--skip LIST] [--sizes "N N N"] [--quick] [--out FILE]
#                  [--no-wait] [--wait-max SECS] [--load-below X] [--step-timeout SECS]
#                  [--attempts N]
#
# LIST is comma-separated parts from the table above. --sizes sets the TIME_WAIT counts of the
# census and memory parts (default "10000 100000 200000"). --quick: fewer, shorter rounds.
# Output: BENCHMARKS.md for a full default run; benches/results/BENCHMARKS.md (not committed)
# for a subset, other sizes or --quick, unless --out says otherwise.
#
# The script builds everything in release first, then waits (up to --wait-max, default 1200 s)
# until the 1-minute load average is below --load-below (default 1.0) and the CPUs are less than
# 10% busy, so that the build and other work do not run alongside the measurements; the load
# averages go into the file. Each later part waits until the CPUs are that idle again. The server and client parts run again (up to
# --attempts runs in all, default 2) when other work visibly disturbed them: their per-round
# throughput ratios span more than 1.5x. Each part is bounded by --step-timeout (default 300 s);
# the server part's own bound is three times that, for its 20 rounds of six servers. A full run
# takes about 15 minutes after the wait, 24 with the server and client parts run again. A part that
# fails, times out, reports errors or prints something unreadable stops the run with its
# output, and no file is written.
#
# Needs root (private network namespaces), wrk, curl, ss, unshare, GNU time; node_exporter is
# optional (its rows then say "not available"). scripts/install-bench-deps.sh installs them.
set -euo pipefail

log() { printf 'run.sh: %s\n' "$*" >&2; }
die() { log "$*"; exit 1; }
# No silent stop: a command that fails outside a check names itself.
set -E
trap 'log "FAILED at line $LINENO: $BASH_COMMAND"' ERR

all_parts=(server client census states sampler peers page memory time-wait)
only=
skip=
sizes="10000 100000 200000"
default_sizes=$sizes
quick=0
out=
wait_quiet=1
wait_max=1200
load_below=1.0
step_timeout=300
attempts=2
while (($# > 0)); do
    case $1 in
        --only) only=$2; shift 2 ;;
        --skip) skip=$2; shift 2 ;;
        --sizes) sizes=$2; shift 2 ;;
        --quick) quick=1; shift ;;
        --out) out=$2; shift 2 ;;
        --no-wait) wait_quiet=0; shift ;;
        --wait-max) wait_max=$2; shift 2 ;;
        --load-below) load_below=$2; shift 2 ;;
        --step-timeout) step_timeout=$2; shift 2 ;;
        --attempts) attempts=$2; shift 2 ;;
        -h | --help) sed -n '2,35p' "$0"; exit 0 ;;
        *) die "unknown argument $1 (see --help)" ;;
    esac
done

for v in $sizes; do
    if ! [[ $v =~ ^[1-9][0-9]*$ ]] || ((v > 500000)); then
        die "--sizes: $v is not a whole number in 1..500000"
    fi
done
[[ -n ${sizes// /} ]] || die "--sizes: no size given"
for v in "$wait_max" "$step_timeout"; do
    [[ $v =~ ^[0-9]+$ ]] || die "$v is not a whole number of seconds"
done
[[ $attempts =~ ^[1-5]$ ]] || die "--attempts: $attempts is not a whole number in 1..5"
[[ $load_below =~ ^[0-9]+(\.[0-9]+)?$ ]] || die "--load-below: $load_below is not a number"

# The parts to run, in the fixed order of all_parts.
selected() {
    local part=$1
    if [[ -n $only && ",$only," != *",$part,"* ]]; then return 1; fi
    if [[ ",$skip," == *",$part,"* ]]; then return 1; fi
    return 0
}
for list in "$only" "$skip"; do
    for p in ${list//,/ }; do
        [[ " ${all_parts[*]} " == *" $p "* ]] || die "unknown part '$p'; parts: ${all_parts[*]}"
    done
done
parts=()
for p in "${all_parts[@]}"; do
    if selected "$p"; then parts+=("$p"); fi
done
((${#parts[@]} > 0)) || die "no part selected"

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
if [[ -z $out ]]; then
    if ((${#parts[@]} == ${#all_parts[@]})) && [[ $sizes == "$default_sizes" ]] && ((!quick)); then
        out=$root/BENCHMARKS.md
    else
        out=$root/benches/results/BENCHMARKS.md
    fi
fi
mkdir -p "$(dirname "$out")"

((quick)) && rounds=3 || rounds=5
((quick)) && sampler_rounds=5 || sampler_rounds=15
if ((quick)); then
    server_args=(-- --rounds 3 --secs 2 --rate-rounds 2 --rate-secs 1)
    client_args=(-- --rounds 20 --secs 0.2)
    scrape_secs=2
else
    server_args=()
    client_args=()
    scrape_secs=3
fi

# ---- tools ----

need=(cargo awk sed timeout)
selected server && need+=(wrk)
for p in census states sampler memory time-wait; do
    if selected "$p"; then
        need+=(unshare ip sysctl ss)
        break
    fi
done
if selected census; then need+=(curl); fi
for tool in "${need[@]}"; do
    command -v "$tool" >/dev/null 2>&1 || die "'$tool' is required; scripts/install-bench-deps.sh installs it"
done
if selected memory && [[ ! -x /usr/bin/time ]]; then
    die "GNU time (/usr/bin/time) is required; scripts/install-bench-deps.sh installs it"
fi
[[ $(id -u) -eq 0 ]] || die "needs root: the socket benchmarks run in private network namespaces"
node_exporter=
if selected census; then
    node_exporter=$(command -v prometheus-node-exporter || command -v node_exporter || true)
    if [[ -z $node_exporter ]]; then
        log "node_exporter not found: its rows will say 'not available' (scripts/install-bench-deps.sh installs it)"
    fi
fi

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# ---- build (before the wait: compiling is load) ----

# The executable of target $1 of kind $2, from cargo's JSON messages on stdin.
exe() {
    grep "\"kind\":\[\"$2\"\]" | grep "\"name\":\"$1\"" |
        sed -n 's/.*"executable":"\([^"]*\)".*/\1/p' | tail -n 1
}
build_started=$SECONDS
log "building in release"
if selected server; then
    cargo build --release --example axum_server || die "build of the axum_server example failed"
fi
bench_targets=()
if selected server; then bench_targets+=(--bench server_overhead); fi
if selected client; then bench_targets+=(--bench client_overhead); fi
if selected sampler; then bench_targets+=(--bench sampler_tick); fi
if selected page; then bench_targets+=(--bench page); fi
if ((${#bench_targets[@]} > 0)); then
    cargo bench --no-run "${bench_targets[@]}" || die "build of the overhead benches failed"
fi
census_bin=
if selected census || selected memory; then
    census_bin=$(cargo bench -p conn-hygiene-census --bench census --no-run \
        --message-format=json-render-diagnostics | exe census bench)
    [[ -x $census_bin ]] || die "build of the census bench failed"
fi
if selected peers; then
    cargo bench -p conn-hygiene-census --bench peers --no-run || die "build of the peers bench failed"
fi
if selected states; then
    cargo build --release -p conn-hygiene-cli || die "build of conn-hygiene-cli failed"
    cargo bench -p conn-hygiene-cli --bench states_vs_awk --no-run || die "build of states_vs_awk failed"
fi
if selected memory; then
    cargo test --release --features census --test census_memory --no-run ||
        die "build of the census_memory test failed"
fi
if selected time-wait; then
    cargo test --release --test client_time_wait --no-run || die "build of client_time_wait failed"
fi
log "build done in $((SECONDS - build_started)) s"

# ---- wait for a quiet machine ----

# Two signs of other work: the 1-minute load average (slow, but it sees a whole minute), and
# the share of all CPUs busy over the last 2 s, from /proc/stat (quick: between our parts
# nothing of ours runs, so whatever is busy is someone else's). The run starts once the load
# average is below --load-below and the CPUs are less than 10% busy; each later part waits
# until the CPUs are less than 10% busy again (its own load would keep the load average up).
# All the waiting together is bounded by --wait-max; past it, parts run anyway, noted as such.
load1() { cut -d' ' -f1 /proc/loadavg; }
loadavg() { cut -d' ' -f1-3 /proc/loadavg; }
below() { awk -v a="$1" -v b="$2" 'BEGIN { exit !(a < b) }'; }
cpu_times() { awk '$1 == "cpu" { print $2 + $3 + $4 + $5 + $6 + $7 + $8 + $9, $5 + $6; exit }' /proc/stat; }
busy_pct() { # percentage of all CPUs busy over the next 2 s
    local t0 i0 t1 i1
    read -r t0 i0 < <(cpu_times)
    sleep 2
    read -r t1 i1 < <(cpu_times)
    awk -v t=$((t1 - t0)) -v i=$((i1 - i0)) 'BEGIN { printf "%d", (t > 0 ? (t - i) * 100 / t : 0) }'
}
busy_below=10
wait_deadline=$((SECONDS + wait_max))
quiet_note=
late_parts=()
# quiet NAME [load]: waits for a quiet machine before part NAME; `load` also awaits the load
# average. Sets quiet_busy to the last busy share seen.
quiet_busy=
quiet() {
    local name=$1 check_load=${2:-} load
    ((wait_quiet)) || { quiet_busy=$(busy_pct); return 0; }
    while :; do
        quiet_busy=$(busy_pct)
        load=$(load1)
        if ((quiet_busy < busy_below)) && { [[ -z $check_load ]] || below "$load" "$load_below"; }; then
            return 0
        fi
        if ((SECONDS >= wait_deadline)); then
            log "$name: still busy (CPUs ${quiet_busy}% busy, load $load) after --wait-max; running anyway"
            late_parts+=("$name")
            return 0
        fi
        log "$name: waiting for a quiet machine (CPUs ${quiet_busy}% busy, 1-minute load $load; $((wait_deadline - SECONDS)) s of waiting left)"
        sleep 8
    done
}

if ((wait_quiet)); then
    waited=$SECONDS
    quiet start load
    waited=$((SECONDS - waited))
    log "waited $waited s for a quiet machine"
else
    quiet_note="run with --no-wait: the machine's load was not awaited"
fi

start_load=$(loadavg)
start_date=$(date -u '+%Y-%m-%d %H:%M:%S UTC')
run_started=$SECONDS

# ---- running the parts ----

declare -A step_cmd step_load step_busy step_secs step_note
steps=()

# run_step NAME DISPLAY-COMMAND CMD...: stdout to $work/NAME.out, stderr to $work/NAME.err.
# Stops the run, showing both, when the command fails or outlives --step-timeout.
run_step() {
    local name=$1 display=$2
    shift 2
    [[ -n ${step_cmd[$name]:-} ]] || steps+=("$name")
    step_cmd[$name]=$display
    quiet "$name"
    step_load[$name]=$(loadavg)
    step_busy[$name]=$quiet_busy
    log "$name: $display"
    local started=$SECONDS rc=0
    local limit=$step_timeout
    [[ $name != server ]] || limit=$((step_timeout * 3))
    timeout --kill-after=10 "$limit" "$@" >"$work/$name.out" 2>"$work/$name.err" || rc=$?
    step_secs[$name]=$((SECONDS - started))
    if ((rc != 0)); then
        log "$name FAILED ($([[ $rc == 124 ]] && echo "timed out after $limit s" || echo "exit $rc")): $display"
        log "---- stdout ----"
        tail -n 40 "$work/$name.out" >&2
        log "---- stderr ----"
        tail -n 40 "$work/$name.err" >&2
        exit 1
    fi
}

# again NAME WHY: part NAME was disturbed by other work (WHY); it runs once more, and its
# section says so.
again() {
    step_note[$1]+="Attempt $attempt was disturbed by other work ($2) and was run again. "
    log "$1: disturbed by other work ($2); running it again"
}

# Fails the run when a figure could not be read from a part's output.
need_value() { # NAME LABEL VALUE
    [[ $3 =~ ^-?[0-9]+(\.[0-9]+)?(e[-+]?[0-9]+)?$ ]] && return 0
    log "$1: cannot read $2 from its output (got '${3}'):"
    cat "$work/$1.out" >&2
    exit 1
}

# Summary rows: what, size, command, baseline (name: figure), ours (name: figure), ratio,
# target, met; separated by US (0x1f), not a tab: read would merge empty tab-separated fields.
rows=$work/rows
: >"$rows"
row() { printf '%s\037%s\037%s\037%s\037%s\037%s\037%s\037%s\n' "$@" >>"$rows"; }
# " (noisy)" when a per-round range `[lo..hi]` spans more than 1.5x: something else ran.
noisy() { awk -v r="$1" 'BEGIN { gsub(/[][]/, "", r); split(r, a, /\.\./); if (a[1] > 0 && a[2] / a[1] > 1.5) print " (noisy)" }'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.3f", a / b; else print "n/a" }'; }
# verdict VALUE OP TARGET -> ok / MISS
verdict() {
    awk -v v="$1" -v op="$2" -v t="$3" 'BEGIN {
        if (v == "n/a") { print "n/a"; exit }
        ok = (op == ">=") ? v >= t : (op == "<=") ? v <= t : (op == "<") ? v < t : v == t
        print ok ? "ok" : "MISS"
    }'
}

if selected server; then
    # shellcheck source=benches/variants.sh
    . benches/variants.sh
    cmd="cargo bench --bench server_overhead${server_args[*]:+ ${server_args[*]}}"
    f=$work/server.out
    # Variant medians: name req/s p99_ms cpu_us errors.
    med() { awk -v v="$1" -v c="$2" '$1 == v && NF == 5 { print $c }' "$f"; }
    # The fixed-rate part's medians: name p50_ms p99_ms late errors cpu_us (fixed-rate).
    rate_med() { awk -v v="$1" -v c="$2" '$1 == v && $NF == "(fixed-rate)" { print $c }' "$f"; }
    # The fixed rate, from `fixed-rate latency: 38000 req/s open loop ...`.
    rate_of() { awk '/^fixed-rate latency: / { print $3 " req/s"; exit }' "$f"; }
    # The ratio table: `hygienic/bare   req/s   0.828x ...`, then `   p99   0.973x ...` and
    # `   cpu/req   1.020x ...` (cpu/req holds a slash too).
    bench_ratio() {
        awk -v v="$1" -v m="$2" '
            $1 == "p99" || $1 == "cpu/req" { metric = $1; r = $2 }
            $1 != "p99" && $1 != "cpu/req" && $1 ~ /^[a-z-]+\/[a-z-]+$/ { cur = $1; sub(/\/.*/, "", cur); metric = $2; r = $3 }
            cur == v && metric == m && r ~ /x$/ { sub(/x$/, "", r); print r; exit }' "$f"
    }
    # The same line's per-round range, `[lowest..highest]`.
    bench_range() {
        awk -v v="$1" -v m="$2" '
            $1 == "p99" || $1 == "cpu/req" { metric = $1 }
            $1 != "p99" && $1 != "cpu/req" && $1 ~ /^[a-z-]+\/[a-z-]+$/ { cur = $1; sub(/\/.*/, "", cur); metric = $2 }
            cur == v && metric == m && $NF ~ /^\[.*\]$/ { print $NF; exit }' "$f"
    }
    for ((attempt = 1; ; attempt++)); do
        run_step server "$cmd" cargo bench --bench server_overhead "${server_args[@]}"
        errors=$(awk -v names=" ${all_variants[*]} " 'index(names, " " $1 " ") && (NF == 5 || $NF == "(fixed-rate)") { e += $5 } END { print e + 0 }' "$f")
        ((errors == 0)) || { cat "$f" >&2; die "server: the load generator reported $errors errors"; }
        spread="$(noisy "$(bench_range hygienic req/s)")$(noisy "$(bench_range own-loop req/s)")"
        if [[ -z $spread ]] || ((attempt >= attempts)); then break; fi
        again server "hygienic/bare req/s per round $(bench_range hygienic req/s), own-loop/bare-hyper $(bench_range own-loop req/s)"
    done
    for v in hygienic no-metrics own-loop own-loop-no-metrics; do
        base=$(variant_baseline "$v")
        case $base in
            bare) base_name="bare axum" ;;
            *) base_name="bare hyper-util" ;;
        esac
        # The p99 of the saturating load is the queue (it repeats the throughput ratio): shown,
        # and the p99 target judged at a fixed rate below saturation (p99@rate). CPU per
        # request at that rate is shown; its targets are the saturating load's.
        for m in req/s p99 cpu/req p99@rate cpu/req@rate; do
            case $m in
                req/s) col=2 unit=" req/s" op=">=" target=0.98 ;;
                p99) col=3 unit=" ms" op="" target= ;;
                cpu/req) col=4 unit=" µs/req" op="<=" target=$(variant_cpu_target "$v") ;;
                p99@rate) col=3 unit=" ms" op="<=" target=1.05 ;;
                cpu/req@rate) col=6 unit=" µs/req" op="" target= ;;
            esac
            if [[ $m == *@rate ]]; then
                b=$(rate_med "$base" "$col") o=$(rate_med "$v" "$col")
            else
                b=$(med "$base" "$col") o=$(med "$v" "$col")
            fi
            r=$(bench_ratio "$v" "$m")
            need_value server "$base $m" "$b"
            need_value server "$v $m" "$o"
            need_value server "$v/$base $m ratio" "$r"
            range=$(bench_range "$v" "$m")
            label="server $m: $v vs $base_name"
            [[ $m == p99 ]] && label="server p99 at saturation: $v vs $base_name"
            [[ $m == p99@rate ]] && label="server p99 at a fixed rate ($(rate_of)): $v vs $base_name"
            [[ $m == cpu/req@rate ]] && label="server cpu/req at a fixed rate ($(rate_of)): $v vs $base_name"
            if [[ -n $op ]]; then
                row "$label" "" "$cmd" "$base: $b$unit" "$v: $o$unit" "$r $range" \
                    "$op ${target}x" "$(verdict "$r" "$op" "$target")$(noisy "$range")"
            else
                row "$label" "" "$cmd" "$base: $b$unit" "$v: $o$unit" "$r $range" "—" "—$(noisy "$range")"
            fi
        done
    done
fi

# client_part NAME LABEL [--tls]: the client comparison over plain HTTP or HTTPS.
client_part() {
    local name=$1 label=$2 mode=${3:-}
    local args=("${client_args[@]}")
    if [[ -n $mode ]]; then
        ((${#args[@]} > 0)) || args=(--)
        args+=("$mode")
    fi
    cmd="cargo bench --bench client_overhead${args[*]:+ ${args[*]}}"
    f=$work/$name.out
    med() { awk -v v="$1" -v c="$2" '$1 == v && NF == 5 { print $c }' "$f"; }
    # `hygienic/bare  req/s 0.968x (target ...`
    # `by-authority/bare  req/s 0.955x   per round: ...`: the client keyed by authority.
    bench_ratio() { awk -v m="$1" -v v="${2:-hygienic}/bare" '$1 == v && $2 == m { r = $3; sub(/x$/, "", r); print r; exit }' "$f"; }
    bench_range() { awk -v m="$1" -v v="${2:-hygienic}/bare" '$1 == v && $2 == m && $NF ~ /^\[.*\]$/ { print $NF; exit }' "$f"; }
    for ((attempt = 1; ; attempt++)); do
        run_step "$name" "$cmd" cargo bench --bench client_overhead "${args[@]}"
        errors=$(awk '$1 ~ /^(bare|hygienic|by-authority)$/ && NF == 5 { e += $5 } END { print e + 0 }' "$f")
        ((errors == 0)) || { cat "$f" >&2; die "$name: $errors requests failed"; }
        spread=$(noisy "$(bench_range req/s)")
        if [[ -z $spread ]] || ((attempt >= attempts)); then break; fi
        again "$name" "hygienic/bare req/s per round $(bench_range req/s)"
    done
    for m in req/s p99 cpu; do
        case $m in
            req/s) col=2 unit=" req/s" op=">=" target=0.98 ;;
            p99) col=3 unit=" ms" op="" target= ;;
            cpu) col=4 unit=" µs/req" op="" target= ;;
        esac
        b=$(med bare "$col") o=$(med hygienic "$col") r=$(bench_ratio "$m")
        need_value "$name" "bare $m" "$b"
        need_value "$name" "hygienic $m" "$o"
        need_value "$name" "hygienic/bare $m ratio" "$r"
        range=$(bench_range "$m")
        metric=$m
        [[ $m == cpu ]] && metric="cpu/req"
        if [[ -n $op ]]; then
            row "$label $metric: HygienicClient vs bare hyper-util" "" "$cmd" "bare: $b$unit" \
                "hygienic: $o$unit" "$r $range" "$op ${target}x" "$(verdict "$r" "$op" "$target")$(noisy "$range")"
        else
            row "$label $metric: HygienicClient vs bare hyper-util" "" "$cmd" "bare: $b$unit" \
                "hygienic: $o$unit" "$r $range" "—" "—$(noisy "$range")"
        fi
    done
    # The same client keyed by authority: what the crate adds, without what short keys save.
    for m in req/s cpu; do
        case $m in
            req/s) col=2 unit=" req/s" metric=$m ;;
            cpu) col=4 unit=" µs/req" metric=cpu/req ;;
        esac
        b=$(med bare "$col") o=$(med by-authority "$col") r=$(bench_ratio "$m" by-authority)
        need_value "$name" "by-authority $m" "$o"
        need_value "$name" "by-authority/bare $m ratio" "$r"
        range=$(bench_range "$m" by-authority)
        row "$label $metric: HygienicClient keyed by authority (the crate's additions alone) vs bare" "" "$cmd" \
            "bare: $b$unit" "by-authority: $o$unit" "$r $range" "—" "—$(noisy "$range")"
    done
}

if selected client; then
    client_part client client
    client_part client-tls "client (HTTPS, bare: hyper-rustls)" --tls
fi

# Runs inside a fresh network namespace (the same set-up as census_vs_awk.sh): the census
# bench creates N TIME_WAIT sockets and counts them four ways; then, on the same sockets,
# node_exporter with only the tcpstat collector is scraped for SCRAPE_SECS (at least 10
# scrapes), and its CPU time (utime + stime from /proc/PID/stat) is taken around the scrapes.
census_in_netns() { # BENCH N ROUNDS NODE_EXPORTER|"" SCRAPE_SECS LOG
    set -euo pipefail
    local bench=$1 n=$2 rounds=$3 ne=$4 scrape_secs=$5 ne_log=$6
    ip link set lo up
    sysctl -qw net.ipv4.tcp_tw_reuse=0
    sysctl -qw net.ipv4.tcp_max_tw_buckets=$((n + 100000))
    sysctl -qw net.ipv4.ip_local_port_range="1024 65535"
    CENSUS_BENCH_NETNS=1 "$bench" --time-wait "$n" --rounds "$rounds"
    if [[ -z $ne ]]; then
        echo "node_exporter tcpstat: not available"
        return 0
    fi
    local url=http://127.0.0.1:9100/metrics
    # The bench's sockets hold every port of ip_local_port_range (1024-65535), bound explicitly,
    # so a connect that needs an ephemeral port fails once the range is used up: curl binds a
    # port below it. Each curl run is one keep-alive connection, closed by curl (one more
    # TIME_WAIT per run, a handful in all).
    local ports=600-1000
    "$ne" --collector.disable-defaults --collector.tcpstat --web.disable-exporter-metrics \
        --web.listen-address=127.0.0.1:9100 >"$ne_log" 2>&1 &
    local pid=$!
    # shellcheck disable=SC2064 # the PID is fixed now
    trap "kill $pid 2>/dev/null || true; wait $pid 2>/dev/null || true" EXIT
    # Ready when it listens (deadline 10 s).
    local i
    for ((i = 0; i < 200; i++)); do
        [[ -n $(ss -Hltn 'sport = :9100') ]] && break
        kill -0 "$pid" 2>/dev/null || { cat "$ne_log" >&2; echo "node_exporter exited" >&2; return 1; }
        sleep 0.05
    done
    # Warm-up; then five scrapes on one connection time a scrape, and the measured run is sized
    # from that to last about SCRAPE_SECS, with at least 10 scrapes.
    curl -sf --local-port "$ports" -o /dev/null "$url"
    local t0 t1 k
    t0=$(date +%s%N)
    curl -sf --local-port "$ports" "$url?scrape=[1-5]" >/dev/null
    t1=$(date +%s%N)
    k=$((scrape_secs * 5000000000 / (t1 - t0 + 1)))
    ((k >= 10)) || k=10
    ((k <= 5000)) || k=5000
    ticks() { awk '{ sub(/.*\) /, ""); print $12 + $13 }' "/proc/$1/stat"; }
    local before after
    before=$(ticks "$pid")
    t0=$(date +%s%N)
    curl -sf --local-port "$ports" "$url?scrape=[1-$k]" >/dev/null
    t1=$(date +%s%N)
    after=$(ticks "$pid")
    local tw
    tw=$(curl -sf --local-port "$ports" "$url" |
        awk '$1 == "node_tcp_connection_states{state=\"time_wait\"}" { printf "%d", $2 }')
    echo "node_exporter tcpstat: scrapes=$k cpu_ticks=$((after - before)) clk_tck=$(getconf CLK_TCK) wall_ms=$(((t1 - t0) / 1000000)) time_wait=$tw"
}

if selected census; then
    for n in $sizes; do
        name=census-$n
        cmd="benches/run.sh --only census --sizes $n"
        run_step "$name" "$cmd" unshare -n -- bash -c "$(declare -f census_in_netns); census_in_netns \"\$@\"" \
            bash "$census_bin" "$n" "$rounds" "$node_exporter" "$scrape_secs" "$work/$name.node_exporter.log"
        f=$work/$name.out
        # `netlink    10000   12.0   12.0   12.4   0.29`: method TIME_WAIT cpu sys wall vs-awk
        cpu() { awk -v m="$1" '$1 == m && NF == 6 { print $3 }' "$f"; }
        tw=$(awk '$1 == "netlink" && NF == 6 { print $2 }' "$f")
        [[ $tw == "$n" ]] || { cat "$f" >&2; die "$name: the census counted '$tw' TIME_WAIT, expected $n"; }
        netlink=$(cpu netlink) proc=$(cpu proc) procfs=$(cpu procfs) awk_cpu=$(cpu 'ss|awk')
        for v in "$netlink" "$proc" "$procfs" "$awk_cpu"; do need_value "$name" "a cpu figure" "$v"; done
        r=$(ratio "$netlink" "$awk_cpu")
        row "census cpu/sample: netlink vs ss -ant | awk" "$n" "$cmd" "ss|awk: $awk_cpu ms" \
            "netlink: $netlink ms" "$r" "< 1x" "$(verdict "$r" "<" 1)"
        r=$(ratio "$proc" "$awk_cpu")
        row "census cpu/sample: /proc fallback vs ss -ant | awk" "$n" "$cmd" "ss|awk: $awk_cpu ms" \
            "proc: $proc ms" "$r" "< 1x" "$(verdict "$r" "<" 1)"
        r=$(ratio "$netlink" "$procfs")
        row "census cpu/sample: netlink vs procfs crate" "$n" "$cmd" "procfs: $procfs ms" \
            "netlink: $netlink ms" "$r" "< 1x" "$(verdict "$r" "<" 1)"
        line=$(grep '^node_exporter tcpstat: ' "$f" || true)
        if [[ $line == *"not available"* || -z $line ]]; then
            row "census cpu/sample: netlink vs node_exporter tcpstat (per scrape)" "$n" "$cmd" \
                "node_exporter: not available" "netlink: $netlink ms" "—" "< 1x" "—"
        else
            scrapes=$(sed -n 's/.*scrapes=\([0-9]*\).*/\1/p' <<<"$line")
            ticks=$(sed -n 's/.*cpu_ticks=\([0-9]*\).*/\1/p' <<<"$line")
            hz=$(sed -n 's/.*clk_tck=\([0-9]*\).*/\1/p' <<<"$line")
            ne_tw=$(sed -n 's/.*time_wait=\([0-9]*\).*/\1/p' <<<"$line")
            for v in "$scrapes" "$ticks" "$hz" "$ne_tw"; do need_value "$name" "node_exporter's figures" "$v"; done
            ne_ms=$(awk -v t="$ticks" -v hz="$hz" -v s="$scrapes" 'BEGIN { printf "%.1f", t * 1000 / hz / s }')
            r=$(ratio "$netlink" "$ne_ms")
            # It also sees the few TIME_WAIT of its own scrapes; fewer than N means some of the
            # bench's had already expired.
            note=
            ((ne_tw >= n)) || note=" (saw $ne_tw TIME_WAIT)"
            row "census cpu/sample: netlink vs node_exporter tcpstat (per scrape)" "$n" "$cmd" \
                "node_exporter: $ne_ms ms$note" "netlink: $netlink ms" "$r" "< 1x" "$(verdict "$r" "<" 1)"
        fi
    done
fi

if selected states; then
    for n in 100000 200000; do
        cmd="ROUNDS=$rounds crates/conn-hygiene-cli/benches/states_vs_awk.sh $n"
        run_step "states-$n" "$cmd" env ROUNDS="$rounds" crates/conn-hygiene-cli/benches/states_vs_awk.sh "$n"
        f=$work/states-$n.out
        ours=$(awk '/^conn-hygiene states / { print $3 }' "$f")
        walk=$(awk '/^full netlink walk / { print $5 }' "$f")
        base=$(awk '/^ss -ant | awk / { print $5 }' "$f")
        # The first ratio line is the one against the full walk (a second compares with a
        # one-pass walk).
        spread=$(sed -n 's/^ratio: conn-hygiene states uses [0-9.]*x \(\[[^]]*\]\) the CPU of a full netlink walk$/\1/p' "$f" | head -n 1)
        need_value "states-$n" "conn-hygiene states cpu" "$ours"
        need_value "states-$n" "full walk cpu" "$walk"
        need_value "states-$n" "ss|awk cpu" "$base"
        target=0.7
        ((n < 200000)) || target=0.65
        r=$(ratio "$ours" "$walk")
        row "\`conn-hygiene states\` cpu vs a full netlink walk (both as processes)" "$n" "$cmd" \
            "full walk: $walk ms" "states: $ours ms" "$r $spread" "<= ${target}x" "$(verdict "$r" "<=" "$target")"
        r=$(ratio "$ours" "$base")
        # README: "TCP sockets by state (netlink; 3x less CPU than ss | awk at 1k sockets, 20x at
        # 100k)": at 100k and more, at most a tenth.
        row "\`conn-hygiene states\` cpu vs ss -ant | awk (both as processes)" "$n" "$cmd" \
            "ss|awk: $base ms" "states: $ours ms" "$r" "<= 0.10x (README: 20x less at 100k)" "$(verdict "$r" "<=" 0.10)"
    done
fi

if selected sampler; then
    cmd="cargo bench --bench sampler_tick -- --time-wait 100000,200000 --rounds $sampler_rounds"
    run_step sampler "$cmd" cargo bench --bench sampler_tick -- --time-wait 100000,200000 \
        --rounds "$sampler_rounds"
    f=$work/sampler.out
    # Sections `# N TIME_WAIT, ...`, each with `sampler tick, every TIME_WAIT ours  12.3 ms`,
    # `full netlink walk  20.5 ms`, `ratio (WHAT): ... uses 0.726x [0.699..0.751] the CPU of a
    # full netlink walk ...` and `memory (WHAT): a tick peaks at 12 KiB above ...`.
    field() { # N AWK-PROGRAM-ON-THE-SECTION
        awk -v n="$1" '/^# [0-9]+ TIME_WAIT/ { cur = $2 } cur == n { print }' "$f" | awk "$2"
    }
    declare -A peak
    for n in 100000 200000; do
        walk=$(field "$n" '/^full netlink walk / { print $4 }')
        need_value sampler "the full walk's cpu at $n" "$walk"
        for what in "every TIME_WAIT ours" "none ours"; do
            tick=$(field "$n" "/^sampler tick, $what / { print \$(NF - 1) }")
            line=$(field "$n" "index(\$0, \"ratio ($what): \") == 1 && /full netlink walk/")
            r=$(sed -n 's/.* uses \([0-9.]*\)x \(\[[^]]*\]\).*/\1/p' <<<"$line")
            spread=$(sed -n 's/.* uses \([0-9.]*\)x \(\[[^]]*\]\).*/\2/p' <<<"$line")
            kib=$(field "$n" "index(\$0, \"memory ($what): \") == 1" |
                sed -n 's/.* peaks at \([0-9]*\) KiB .*/\1/p')
            need_value sampler "the tick's cpu ($what) at $n" "$tick"
            need_value sampler "the ratio ($what) at $n" "$r"
            need_value sampler "the tick's peak memory ($what) at $n" "$kib"
            peak[$what,$n]=$kib
            row "census sampler full tick cpu vs a full netlink walk, $what" "$n" "$cmd" \
                "full walk: $walk ms" "tick: $tick ms" "$r $spread" "<= 0.7x" "$(verdict "$r" "<=" 0.7)"
        done
    done
    for what in "every TIME_WAIT ours" "none ours"; do
        a=${peak[$what,100000]} b=${peak[$what,200000]}
        row "census sampler tick peak memory above its start, $what: 200k vs 100k TIME_WAIT" "" "$cmd" \
            "100k: $a KiB" "200k: $b KiB" "$(ratio "$b" "$a")" "flat: <= 64 KiB more" \
            "$(verdict "$((b - a))" "<=" 64)"
    done
fi

if selected peers; then
    cmd="cargo bench -p conn-hygiene-census --bench peers -- --rounds $((rounds * 6))"
    run_step peers "$cmd" cargo bench -p conn-hygiene-census --bench peers -- --rounds $((rounds * 6))
    f=$work/peers.out
    # `without tcp_info   2.705`, `with tcp_info (sampler)   3.398`,
    # `ratio with/without: median 1.195x, p10 1.092x, p90 1.379x`
    without=$(awk '/^without tcp_info / { print $NF }' "$f")
    with=$(awk '/^with tcp_info / { print $NF }' "$f")
    r=$(sed -n 's/^ratio with\/without: median \([0-9.]*\)x.*/\1/p' "$f")
    spread=$(sed -n 's/^ratio with\/without: median [0-9.]*x, p10 \([0-9.]*\)x, p90 \([0-9.]*\)x.*/[\1..\2]/p' "$f")
    sockets=$(awk '/ sockets walked, / { print $1 }' "$f")
    for v in "$without" "$with" "$r"; do need_value peers "a walk's cpu" "$v"; done
    row "netlink walk cpu with tcp_info (the sampler's) vs without (p10..p90)" "$sockets sockets" "$cmd" \
        "without: $without ms" "with: $with ms" "$r $spread" "—" "—"
fi

if selected page; then
    cmd="cargo bench --bench page"
    ((quick)) && cmd+=" -- --rounds 10"
    # shellcheck disable=SC2086 # the command's words
    run_step page "$cmd" ${cmd}
    f=$work/page.out
    # `html   5905   0.138 (0.106-0.179)   0.49x (0.42-0.74)`, `metrics  15834  0.254 (...)  1`
    field() { awk -v r="$1" -v c="$2" '$1 == r { print $c }' "$f"; }
    conns=$(sed -n 's/^page bench: \([0-9]*\) connections.*/\1/p' "$f")
    html=$(field html 3) json=$(field json 3) metrics=$(field metrics 3)
    for v in "$html" "$json" "$metrics" "$conns"; do need_value page "a render's cpu" "$v"; done
    r=$(field html 5) spread=$(field html 6)
    row "connections page: HTML render cpu vs the /metrics render" "$conns conns" "$cmd" \
        "/metrics: $metrics ms" "HTML: $html ms" "${r%x} $spread" "< 5 ms per render" \
        "$(verdict "$html" "<" 5)"
    r=$(field json 5) spread=$(field json 6)
    row "connections page: JSON render cpu vs the /metrics render" "$conns conns" "$cmd" \
        "/metrics: $metrics ms" "JSON: $json ms" "${r%x} $spread" "—" "—"
fi

if selected memory; then
    # shellcheck disable=SC2086 # sizes are words
    cmd="benches/census_memory.sh $sizes"
    # shellcheck disable=SC2086
    run_step memory "$cmd" benches/census_memory.sh $sizes
    f=$work/memory.out
    # TIME_WAIT census_KiB census_delta_KiB census_bench_KiB ss_awk_KiB walk_ms
    # One line per size, in the order given.
    k=0
    for n in $sizes; do
        k=$((k + 1))
        line=$(awk -v k="$k" 'NF == 6 && $1 ~ /^[0-9]+$/ && ++i == k' "$f")
        [[ -n $line ]] || { cat "$f" >&2; die "memory: no line for $n TIME_WAIT"; }
        read -r _ census _ procfs awk_kib _ <<<"$line"
        r=$(ratio "$census" "$awk_kib")
        row "peak RSS: census sample vs ss -ant | awk" "$n" "$cmd" "ss|awk: $awk_kib KiB" \
            "census: $census KiB" "$r" "< 1x" "$(verdict "$r" "<" 1)"
        r=$(ratio "$census" "$procfs")
        row "peak RSS: census sample vs procfs (census bench process)" "$n" "$cmd" \
            "procfs: $procfs KiB" "census: $census KiB" "$r" "< 1x" "$(verdict "$r" "<" 1)"
    done
fi

if selected time-wait; then
    cmd="cargo test --release --test client_time_wait -- --exact time_wait_by_close_order --nocapture"
    run_step time-wait "$cmd" cargo test --release --test client_time_wait -- --exact \
        time_wait_by_close_order --nocapture
    f=$work/time-wait.out
    # way requests connections client_TIME_WAIT server_TIME_WAIT server_resets
    field() { awk -v w="$1" -v c="$2" '$1 == w && NF == 6 { print $c }' "$f"; }
    requests=$(field per-request 2) naive=$(field per-request 4)
    first=$(field client-first 4) abort=$(field abort 4)
    for v in "$requests" "$naive" "$first" "$abort"; do need_value time-wait "a TIME_WAIT count" "$v"; done
    # The test's bound: at most 2 x max_idle (4) client TIME_WAIT for client-first.
    row "client TIME_WAIT left: pooled client-first vs client per request" "$requests req" "$cmd" \
        "per-request: $naive" "client-first: $first" "$(ratio "$first" "$naive")" "<= 8 (2 × max_idle)" \
        "$(verdict "$first" "<=" 8)"
    row "client TIME_WAIT left: pooled abort vs client per request" "$requests req" "$cmd" \
        "per-request: $naive" "abort: $abort" "$(ratio "$abort" "$naive")" "= 0" "$(verdict "$abort" "=" 0)"
fi

end_load=$(loadavg)
end_date=$(date -u '+%Y-%m-%d %H:%M:%S UTC')
run_secs=$((SECONDS - run_started))

# ---- BENCHMARKS.md ----

cpu_model=$(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo)
mem_total=$(awk '/^MemTotal:/ { printf "%.1f GiB", $2 / 1048576 }' /proc/meminfo)
# shellcheck disable=SC1091 # the system's file
os=$(. /etc/os-release 2>/dev/null && echo "${PRETTY_NAME:-}")
commit=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)
changed=$(git status --porcelain --untracked-files=no 2>/dev/null |
    awk '$2 != "BENCHMARKS.md" && $2 != "benches/run.sh" { print $2 }' | paste -sd' ' -)
tool_versions="$(rustc --version)"
# `wrk -v` prints its version and exits non-zero.
if selected server; then tool_versions+=", $({ wrk -v 2>&1 || true; } | awk 'NR == 1 { print $1, $2 }')"; fi
if selected census || selected memory || selected states; then tool_versions+=", $(ss -V 2>&1 | head -n 1)"; fi
if [[ -n $node_exporter ]]; then
    tool_versions+=", node_exporter $("$node_exporter" --version 2>&1 | awk 'NR == 1 { print $3 }')"
fi
# A table cell: a pipe would end it, even inside a code span.
cell() { printf '%s' "${1//|/\\|}"; }

{
    echo "# Benchmarks"
    echo
    echo "Written by \`benches/run.sh\`$( ((quick)) && echo " --quick"). Every comparison measures the baseline and"
    echo "this project side by side in the same run; the ratio is ours / baseline. For req/s a"
    echo "ratio near or above 1 is good; for latency, CPU, memory and TIME_WAIT, below 1 is."
    echo
    echo "## Machine"
    echo
    echo "| | |"
    echo "|---|---|"
    echo "| CPU | $cpu_model |"
    echo "| cores | $(nproc) |"
    echo "| memory | $mem_total |"
    echo "| kernel | $(uname -sr) $(uname -m) |"
    echo "| system | $os |"
    echo "| tools | $tool_versions |"
    echo "| source | commit $commit${changed:+, with uncommitted changes in $changed} |"
    echo "| started | $start_date |"
    echo "| finished | $end_date ($run_secs s of measurement) |"
    echo "| load average (1, 5, 15 min) at start | $start_load |"
    echo "| load average at end | $end_load (the benchmarks' own load) |"
    if ((wait_quiet)); then
        echo "| waited for a quiet machine | $waited s at the start, until the 1-minute load average was below $load_below and the CPUs less than ${busy_below}% busy; each part then waited for CPUs less than ${busy_below}% busy |"
    fi
    if ((${#late_parts[@]} > 0)); then
        echo "| note | the machine was still busy with other work when these parts ran: ${late_parts[*]} |"
    fi
    if [[ -n $quiet_note ]]; then echo "| note | $quiet_note |"; fi
    echo
    echo "## Summary"
    echo
    echo "| what | size | command | baseline | ours | ratio | target | met |"
    echo "|---|---:|---|---:|---:|---:|---|---|"
    # shellcheck disable=SC2016 # the backquotes are Markdown
    while IFS=$'\037' read -r what size command base ours r target met; do
        printf '| %s | %s | `%s` | %s | %s | %s | %s | %s |\n' "$(cell "$what")" "${size:-—}" \
            "$(cell "$command")" "$(cell "$base")" "$(cell "$ours")" "$r" "$(cell "$target")" "$met"
    done <"$rows"
    echo
    echo "Targets: server and client throughput, p99 and server CPU per request are the benches'"
    echo "own (printed in their output): the hygienic listener is compared with bare axum, the"
    echo "crate's own serve loop with a plain hyper-util loop, each with the recorder and sampler"
    echo "(CPU at most 1.03x) and without a recorder (1.015x). The server's p99 target is judged at"
    echo "a fixed rate below saturation (an open-loop load at a quarter of bare's throughput,"
    echo "latency from each request's write): under the saturating load the p99 is the queue,"
    echo "connections over throughput, and is shown without a target. CPU per request at that"
    echo "rate is shown too, without a target (the CPU targets are the saturating load's): each"
    echo "request then finds the server's caches colder, and the same work costs more of it."
    echo "\`states\` holds the README's \"20x less CPU than ss | awk at 100k\" (at most a tenth)"
    echo "and, like the sampler's tick, a bound against a full netlink walk (one dump per family,"
    echo "as \`ss\` walks); the census and memory rows ask only to beat the baseline; the TIME_WAIT"
    echo "rows are the bounds the test asserts. The sampler's tick is measured with every TIME_WAIT"
    echo "socket its own (the kernel's filter can leave none out) and with none its own (another"
    echo "service's, the filter leaves them all out)."
    echo "Server ratios are ratios of medians over the rounds, followed by the lowest and highest"
    echo "ratio within one round: a wide range means other work disturbed the run, and a range wider"
    echo "than 1.5x marks the row \"(noisy)\". Client ratios are the medians of the ratios taken"
    echo "within each of many short rounds, followed by their middle half (quartiles); a middle"
    echo "half wider than 1.5x marks the row \"(noisy)\". The bare client is hyper-util's \`Client\`"
    echo "with the pool settings the hygienic one gives it (a pool timer, so idle timeouts fire;"
    echo "max idle per host). The hygienic client keys hyper-util's pool by a four-byte key per"
    echo "upstream instead of the request's authority (same bytes on the wire; see the client"
    echo "module docs), which saves hyper-util work on every request: the HygienicClient rows are the"
    echo "client as users get it; the \"keyed by authority\" rows are the same client keyed as"
    echo "hyper-util keys alone (\`upstream_pool_keys(false)\`), the crate's additions alone."
    echo "CPU per census sample is user + system time: in-process for netlink, /proc and procfs;"
    echo "of the whole pipeline (sh, ss, awk, start-up included) for ss | awk; and of the"
    echo "node_exporter process per scrape of /metrics (collector \`tcpstat\` only, exporter metrics"
    echo "off, so HTTP and text encoding of a short page are included), on the same sockets in"
    echo "the same network namespace."
    echo
    echo "## Outputs"
    for name in "${steps[@]}"; do
        echo
        echo "### $name"
        echo
        echo "\`${step_cmd[$name]}\` — ${step_secs[$name]} s; just before: load average ${step_load[$name]}, CPUs ${step_busy[$name]}% busy"
        if [[ -n ${step_note[$name]:-} ]]; then
            echo
            echo "${step_note[$name]% }"
        fi
        if [[ $name == census-* ]]; then
            echo
            echo "Inside \`unshare -n\`, after the set-up of \`crates/conn-hygiene-census/benches/census_vs_awk.sh\`:"
            echo "\`census --time-wait ${name#census-} --rounds $rounds\`, then node_exporter scraped for ${scrape_secs} s."
        fi
        echo
        echo '```text'
        # The census benches report on stderr how long the sockets took to create.
        grep -h '^created [0-9]* TIME_WAIT' "$work/$name.err" || true
        cat "$work/$name.out"
        echo '```'
    done
} >"$out"
log "wrote $out"
column_view() { awk -F'\037' '{ printf "%-62s %8s  %-30s %-30s %8s  %s\n", $1, $2, $4, $5, $6, $8 }' "$rows"; }
column_view >&2
