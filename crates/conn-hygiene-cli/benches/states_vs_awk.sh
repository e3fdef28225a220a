#!/bin/sh
# CPU time of `conn-hygiene states` against `ss -ant | awk '{++s[$1]} END {...}'` with N
# TIME_WAIT sockets present, both measured in the same run, with their ratio.
#
# Each size runs in a fresh network namespace (`unshare -n`, needs root) with loopback up,
# net.ipv4.tcp_tw_reuse=0, tcp_max_tw_buckets raised and ip_local_port_range widened; the
# sockets go to several 127.0.0.x destinations to get past the port range.
#
# Usage: benches/states_vs_awk.sh [SIZE...]     (default: 100000)
#        ROUNDS=5 sets the rounds per method (the median is printed).
set -eu

here=$(cd "$(dirname "$0")" && pwd)
crate=$(dirname "$here")
rounds=${ROUNDS:-5}
[ "$#" -gt 0 ] || set -- 100000

for tool in unshare ip sysctl ss awk; do
    command -v "$tool" >/dev/null 2>&1 || { echo "states_vs_awk: '$tool' is required" >&2; exit 1; }
done

cd "$crate"
cargo build --release -q -p conn-hygiene-cli
target=$(cargo metadata --format-version 1 --no-deps | sed -n 's/.*"target_directory":"\([^"]*\)".*/\1/p')
cli="$target/release/conn-hygiene"
[ -x "$cli" ] || { echo "states_vs_awk: no binary at $cli" >&2; exit 1; }
bench=$(cargo bench -p conn-hygiene-cli --bench states_vs_awk --no-run --message-format=json 2>/dev/null |
        grep '"kind":\["bench"\]' | grep '"name":"states_vs_awk"' |
        sed -n 's/.*"executable":"\([^"]*\)".*/\1/p' | tail -n 1)
[ -x "$bench" ] || { echo "states_vs_awk: could not build the bench" >&2; exit 1; }
echo "# kernel $(uname -r), $(nproc) CPUs, $cli"

for n in "$@"; do
    CONN_HYGIENE_BENCH_NETNS=1 unshare -n -- sh -c '
        set -e
        ip link set lo up
        sysctl -qw net.ipv4.tcp_tw_reuse=0
        sysctl -qw net.ipv4.tcp_max_tw_buckets=$(($1 + 100000))
        sysctl -qw net.ipv4.ip_local_port_range="1024 65535"
        exec "$0" --time-wait "$1" --rounds "$2" --bin "$3"
    ' "$bench" "$n" "$rounds" "$cli"
done
