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

# shellcheck source=scripts/lib/apt.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib/apt.sh"

# node_exporter is `prometheus-node-exporter` in Debian's package, `node_exporter` upstream.
have_node_exporter() { have prometheus-node-exporter || have node_exporter; }

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
apt_install_quietly "${missing[@]}"

still_missing=()
have wrk || still_missing+=(wrk)
[[ -x /usr/bin/time ]] || still_missing+=(/usr/bin/time)
have_node_exporter || still_missing+=(node_exporter)
if ((${#still_missing[@]} > 0)); then
    log "still missing after install: ${still_missing[*]}"
    exit 1
fi
log "done"
