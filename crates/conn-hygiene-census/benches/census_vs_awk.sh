#!/bin/sh
# CPU time of counting TCP sockets by state with N TIME_WAIT sockets present, four ways in
# the same run: our netlink walk, our /proc fallback, the procfs crate (tcp + tcp6), and
# `ss -ant | awk '{++s[$1]} END {for(k in s) print k, s[k]}'`. Prints each and its ratio to
# the awk pipeline.
#
# Each size runs in a fresh network namespace (`unshare -n`, needs root) with loopback up,
# net.ipv4.tcp_tw_reuse=0, tcp_max_tw_buckets raised and ip_local_port_range widened; the
# sockets go to several 127.0.0.x destinations to get past the port range.
#
# Usage: benches/census_vs_awk.sh [SIZE...]     (default: 10000 100000 200000)
#        ROUNDS=5 sets the rounds per method (the median is printed).
set -eu

here=$(cd "$(dirname "$0")" && pwd)
crate=$(dirname "$here")
rounds=${ROUNDS:-5}
[ "$#" -gt 0 ] || set -- 10000 100000 200000

for tool in unshare ip sysctl ss awk; do
    command -v "$tool" >/dev/null 2>&1 || { echo "census_vs_awk: '$tool' is required" >&2; exit 1; }
done

bin=$(cd "$crate" && cargo bench -p conn-hygiene-census --bench census --no-run \
        --message-format=json 2>/dev/null |
      grep '"kind":\["bench"\]' | grep '"name":"census"' |
      sed -n 's/.*"executable":"\([^"]*\)".*/\1/p' | tail -n 1)
[ -x "$bin" ] || { echo "census_vs_awk: could not build the census bench" >&2; exit 1; }
echo "# kernel $(uname -r), $(nproc) CPUs, bench binary $bin"

for n in "$@"; do
    CENSUS_BENCH_NETNS=1 unshare -n -- sh -c '
        set -e
        ip link set lo up
        sysctl -qw net.ipv4.tcp_tw_reuse=0
        sysctl -qw net.ipv4.tcp_max_tw_buckets=$(($1 + 100000))
        sysctl -qw net.ipv4.ip_local_port_range="1024 65535"
        exec "$0" --time-wait "$1" --rounds "$2"
    ' "$bin" "$n" "$rounds"
done
