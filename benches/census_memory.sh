#!/bin/sh
# Peak memory of one connection census sample with N TIME_WAIT sockets present, against the
# `ss -ant | awk` pipeline and the census crate's benchmark binary (whose peak is the procfs
# crate's, which reads /proc/net/tcp and tcp6 into vectors; its netlink and /proc walks stream
# through one 128 KiB buffer). Each size runs in a fresh network namespace (`unshare -n`, needs
# root); the census crate's benchmark creates the sockets (see its census_vs_awk.sh).
#
# Figures: maximum resident set (GNU time %M, KiB) of each process, and for the census sample
# also VmHWM before and after the sample inside the process (the difference is the sample's
# own peak). Memory is flat in N when these do not grow with N.
#
# Usage: benches/census_memory.sh [SIZE...]     (default: 10000 100000 200000)
set -eu

here=$(cd "$(dirname "$0")" && pwd)
root=$(dirname "$here")
[ "$#" -gt 0 ] || set -- 10000 100000 200000
for tool in unshare ip sysctl ss awk /usr/bin/time; do
    command -v "$tool" >/dev/null 2>&1 || { echo "census_memory: '$tool' is required" >&2; exit 1; }
done

exe() { # cargo's JSON messages -> the executable of target $1 of kind $2
    grep "\"kind\":\[\"$2\"\]" | grep "\"name\":\"$1\"" |
        sed -n 's/.*"executable":"\([^"]*\)".*/\1/p' | tail -n 1
}
bench=$(cd "$root" && cargo bench -p conn-hygiene-census --bench census --no-run \
        --message-format=json 2>/dev/null | exe census bench)
census=$(cd "$root" && cargo test --release --features census --test census_memory --no-run \
        --message-format=json 2>/dev/null | exe census_memory test)
[ -x "$bench" ] && [ -x "$census" ] || { echo "census_memory: build failed" >&2; exit 1; }
echo "# kernel $(uname -r), $(nproc) CPUs"
printf '%8s %10s %14s %16s %12s %14s\n' TIME_WAIT census_KiB census_delta_KiB census_bench_KiB ss_awk_KiB walk_ms

for n in "$@"; do
    CENSUS_BENCH_NETNS=1 unshare -n -- sh -c '
        set -e
        ip link set lo up
        sysctl -qw net.ipv4.tcp_tw_reuse=0
        sysctl -qw net.ipv4.tcp_max_tw_buckets=$(($1 + 100000))
        sysctl -qw net.ipv4.ip_local_port_range="1024 65535"
        bench_kib=$(/usr/bin/time -f %M "$2" --time-wait "$1" --rounds 1 2>&1 >/dev/null | tail -n 1)
        line=$(/usr/bin/time -o /tmp/census_memory.$$ -f %M "$3" --exact one_census_sample \
               --ignored --nocapture --test-threads=1 2>/dev/null | grep -o "census_memory time_wait.*")
        census_kib=$(cat /tmp/census_memory.$$)
        awk_kib=$(/usr/bin/time -f %M sh -c "ss -ant | awk '\''{++s[\$1]} END {for(k in s) print k, s[k]}'\'' >/dev/null" 2>&1 | tail -n 1)
        rm -f /tmp/census_memory.$$
        tw=$(echo "$line" | sed -n "s/.*time_wait=\([0-9]*\).*/\1/p")
        b=$(echo "$line" | sed -n "s/.*vmhwm_before_kib=\([0-9]*\).*/\1/p")
        a=$(echo "$line" | sed -n "s/.*vmhwm_after_kib=\([0-9]*\).*/\1/p")
        ms=$(echo "$line" | sed -n "s/.*walk_ms=\([0-9.]*\).*/\1/p")
        printf "%8s %10s %14s %16s %12s %14s\n" "$tw" "$census_kib" "$((a - b))" "$bench_kib" "$awk_kib" "$ms"
    ' sh "$n" "$bench" "$census"
done
