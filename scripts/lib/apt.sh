# Shared by the install scripts: sourced, not run. The caller defines `log`.
#
#   have CMD                 command -v, also looking in the sbin directories a non-root PATH
#                            may lack (nginx, sysctl, ip)
#   as_root CMD...           runs CMD as root (directly, or with sudo)
#   apt_install_quietly PKG...
#                            apt-get update once, then one install, with no package allowed to
#                            start a system service: the tests and benchmarks start their own
#                            instances (nginx, prometheus, node_exporter) on loopback or in
#                            private namespaces. policy-rc.d exiting 101 tells invoke-rc.d not
#                            to start anything; one is added for the install unless the
#                            machine has its own.

have() {
    command -v "$1" >/dev/null 2>&1 && return 0
    local dir
    for dir in /usr/local/sbin /usr/sbin /sbin; do
        [[ -x "$dir/$1" ]] && return 0
    done
    return 1
}

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

apt_install_quietly() {
    if ! command -v apt-get >/dev/null 2>&1; then
        log "missing $* and there is no apt-get; install them by hand"
        return 1
    fi
    log "installing: $*"
    local policy_rc=/usr/sbin/policy-rc.d added_policy=0 status=0
    if [[ ! -e $policy_rc ]]; then
        as_root sh -c "printf '#!/bin/sh\nexit 101\n' > $policy_rc && chmod 755 $policy_rc"
        added_policy=1
    fi
    # --no-install-recommends: recommended extras (textfile collector scripts, web consoles)
    # are not used here.
    as_root env DEBIAN_FRONTEND=noninteractive apt-get update -q &&
        as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q \
            --no-install-recommends "$@" || status=$?
    if ((added_policy)); then
        as_root rm -f "$policy_rc"
    fi
    return "$status"
}
