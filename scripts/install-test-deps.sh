#!/usr/bin/env bash
# Installs the real peers the tests and benchmarks talk to, when they are missing:
# curl, nginx, wrk, ss and ip, unshare, sysctl, prometheus and promtool, nghttp, jsonnet (renders
# the monitoring mixin, scripts/render-mixin.sh), redis-server, PostgreSQL's server (initdb,
# pg_ctl, postgres), runuser and chromium (opens the live connections page, tests/page.rs); and
# cargo-nextest.
#
# PostgreSQL's server programs are not on the PATH on Debian: they live in
# /usr/lib/postgresql/VERSION/bin, where the tests look for them (any version).
#
# Idempotent: a tool already on the PATH is left alone, and apt-get runs (update once, then one
# install) only when something is missing. Needs root, or sudo when not root. Debian/Ubuntu.
#
#   scripts/install-test-deps.sh
set -euo pipefail

log() { printf 'install-test-deps: %s\n' "$*" >&2; }
# shellcheck source=scripts/lib/apt.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib/apt.sh"

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
    [jsonnet]=jsonnet
    [redis-server]=redis-server
    [runuser]=util-linux
    [initdb]=postgresql
    [chromium]=chromium
)
# A fixed order, so the log reads the same on every run.
commands=(curl nginx wrk ss ip unshare sysctl prometheus promtool nghttp jsonnet redis-server runuser initdb chromium)

# `have`, plus PostgreSQL's server programs where Debian puts them (/usr/lib/postgresql/*/bin).
have_tool() {
    local bin
    if [[ $1 == initdb ]]; then
        for bin in /usr/lib/postgresql/*/bin/initdb; do
            [[ -x $bin && -x ${bin%/initdb}/pg_ctl && -x ${bin%/initdb}/postgres ]] && return 0
        done
    fi
    have "$1"
}

missing=()
for cmd in "${commands[@]}"; do
    pkg=${package_of[$cmd]}
    if have_tool "$cmd"; then
        continue
    fi
    if [[ " ${missing[*]-} " != *" $pkg "* ]]; then
        missing+=("$pkg")
    fi
done

if ((${#missing[@]} == 0)); then
    log "system packages: all present"
else
    apt_install_quietly "${missing[@]}"
fi

# Check what the tests will look for, so a failed install shows here and not as a skipped test.
still_missing=()
for cmd in "${commands[@]}"; do
    have_tool "$cmd" || still_missing+=("$cmd")
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
