#!/usr/bin/env bash
# Installs the real peers the tests and benchmarks talk to, when they are missing:
# curl, nginx, wrk, ss and ip, unshare, sysctl, prometheus and promtool, nghttp; and cargo-nextest.
#
# Idempotent: a tool already on the PATH is left alone, and apt-get runs (update once, then one
# install) only when something is missing. Needs root, or sudo when not root. Debian/Ubuntu.
#
#   scripts/install-test-deps.sh
set -euo pipefail

log() { printf 'install-test-deps: %s\n' "$*" >&2; }

# command -v, also looking in the sbin directories a non-root PATH may lack (nginx, sysctl, ip).
have() {
    command -v "$1" >/dev/null 2>&1 && return 0
    local dir
    for dir in /usr/local/sbin /usr/sbin /sbin; do
        [[ -x "$dir/$1" ]] && return 0
    done
    return 1
}

# command -> Debian package that provides it.
declare -A package_of=(
    [curl]=curl
    [nginx]=nginx
    [wrk]=wrk
    [ss]=iproute2
    [ip]=iproute2
    [unshare]=util-linux
    [sysctl]=procps
    [prometheus]=prometheus
    [promtool]=prometheus
    [nghttp]=nghttp2-client
)
# A fixed order, so the log reads the same on every run.
commands=(curl nginx wrk ss ip unshare sysctl prometheus promtool nghttp)

missing=()
for cmd in "${commands[@]}"; do
    pkg=${package_of[$cmd]}
    if have "$cmd"; then
        continue
    fi
    if [[ " ${missing[*]-} " != *" $pkg "* ]]; then
        missing+=("$pkg")
    fi
done

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

if ((${#missing[@]} == 0)); then
    log "system packages: all present"
else
    if ! command -v apt-get >/dev/null 2>&1; then
        log "missing ${missing[*]} and there is no apt-get; install them by hand"
        exit 1
    fi
    log "installing: ${missing[*]}"
    # Package scripts must not start nginx or prometheus as system services: the tests start
    # their own instances on loopback ports. policy-rc.d exiting 101 tells invoke-rc.d not to
    # start anything; add one for the duration of the install unless the machine has its own.
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
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
        "${missing[@]}"
    remove_policy
    added_policy=0
    trap - EXIT
fi

# Check what the tests will look for, so a failed install shows here and not as a skipped test.
still_missing=()
for cmd in "${commands[@]}"; do
    have "$cmd" || still_missing+=("$cmd")
done
if ((${#still_missing[@]} > 0)); then
    log "still missing after install: ${still_missing[*]}"
    exit 1
fi

if cargo nextest --version >/dev/null 2>&1; then
    log "cargo-nextest: present"
elif command -v cargo >/dev/null 2>&1; then
    log "installing cargo-nextest"
    cargo install cargo-nextest --locked
else
    log "cargo not found: cannot install cargo-nextest"
    exit 1
fi
log "done"
