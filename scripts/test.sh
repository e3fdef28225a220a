#!/usr/bin/env bash
# Runs the whole test suite the way CI does: installs the real peers the tests use (curl, nginx,
# wrk, promtool, ... through scripts/install-test-deps.sh), runs every test with cargo-nextest
# (plain `cargo test` when nextest is unavailable), then the doctests, which nextest does not
# run. Extra arguments go to `cargo nextest run` (or `cargo test`), e.g. a filter.
#
#   scripts/test.sh [ARGS...]
#
# Both test steps run even when the first fails; the exit status is non-zero if any failed.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

started=$SECONDS
log() { printf 'test.sh: %s\n' "$*" >&2; }

bash scripts/install-test-deps.sh

failed=()
if cargo nextest --version >/dev/null 2>&1; then
    log "cargo nextest run --workspace --all-features --no-fail-fast $*"
    cargo nextest run --workspace --all-features --no-fail-fast "$@" || failed+=(tests)
    log "cargo test --workspace --all-features --doc"
    cargo test --workspace --all-features --doc || failed+=(doctests)
else
    # Plain `cargo test` runs the doctests as well, so there is no separate doctest step.
    log "cargo-nextest unavailable; cargo test --workspace --all-features --no-fail-fast $*"
    cargo test --workspace --all-features --no-fail-fast "$@" || failed+=(tests)
fi

elapsed=$((SECONDS - started))
if ((${#failed[@]} > 0)); then
    echo "test.sh: FAILED (${failed[*]}) after ${elapsed}s"
    exit 1
fi
echo "test.sh: all tests passed in ${elapsed}s"
