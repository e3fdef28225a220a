#!/usr/bin/env bash
# Installs what benches/run.sh compares against, beyond the test peers of install-test-deps.sh:
# wrk (the load generator), GNU time (peak memory), and node_exporter (its tcpstat collector is
# one of the baselines of the census rows).
#
# Idempotent: a tool already on the PATH is left alone, and apt-get runs (update once, then one
# install) only when something is missing. The node_exporter package is not started as a
# service: benches/run.sh starts its own instance inside a private network namespace.
# Needs root, or sudo when not root. Debian/Ubuntu.
#
#   scripts/install-bench-deps.sh
set -euo pipefail

log() { printf 'install-bench-deps: %s\n' "$*" >&2; }

# command -v, also looking in the sbin directories a non-root PATH may lack.
have() {
    command -v "$1" >/dev/null 2>&1 && return 0
    local dir
    for dir in /usr/local/sbin /usr/sbin /sbin; do
        [[ -x "$dir/$1" ]] && return 0
    done
    return 1
}

# node_exporter is `prometheus-node-exporter` in Debian's package, `node_exporter` upstream.
have_node_exporter() { have prometheus-node-exporter || have node_exporter; }

as_root() {
    if [[ $(id -u) -eq 0 ]]; then
        "$@"
    elif command -v sudo >/dev/null 2>&1; then
        sudo "$@"
    else
        log "not root and no sudo: cannot run $*"
        return 1
    fi
}

missing=()
have wrk || missing+=(wrk)
[[ -x /usr/bin/time ]] || missing+=(time)
have curl || missing+=(curl)
have ss || missing+=(iproute2)
have unshare || missing+=(util-linux)
have_node_exporter || missing+=(prometheus-node-exporter)

if ((${#missing[@]} == 0)); then
    log "all present"
    exit 0
fi
if ! command -v apt-get >/dev/null 2>&1; then
    log "missing ${missing[*]} and there is no apt-get; install them by hand"
    exit 1
fi

log "installing: ${missing[*]}"
# The package's scripts must not start node_exporter as a system service (it would listen on
# :9100 in the host's namespace). policy-rc.d exiting 101 tells invoke-rc.d not to start
# anything; add one for the duration of the install unless the machine has its own.
policy_rc=/usr/sbin/policy-rc.d
added_policy=0
if [[ ! -e $policy_rc ]]; then
    as_root sh -c "printf '#!/bin/sh\nexit 101\n' > $policy_rc && chmod 755 $policy_rc"
    added_policy=1
fi
remove_policy() {
    if ((added_policy)); then
        as_root rm -f "$policy_rc"
    fi
}
trap remove_policy EXIT
as_root env DEBIAN_FRONTEND=noninteractive apt-get update -q
# --no-install-recommends: prometheus-node-exporter recommends the textfile collectors'
# scripts and their interpreters, which the benchmark does not use.
as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
    "${missing[@]}"

still_missing=()
have wrk || still_missing+=(wrk)
[[ -x /usr/bin/time ]] || still_missing+=(/usr/bin/time)
have_node_exporter || still_missing+=(node_exporter)
if ((${#still_missing[@]} > 0)); then
    log "still missing after install: ${still_missing[*]}"
    exit 1
fi
log "done"
