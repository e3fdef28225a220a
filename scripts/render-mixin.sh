#!/usr/bin/env bash
# Renders the monitoring mixin (deploy/mixin/, jsonnet) into the files people load without
# jsonnet: the Prometheus rules file and the Grafana dashboards.
#
#   scripts/render-mixin.sh             writes deploy/prometheus/conn-hygiene.rules.yml and
#                                       deploy/grafana/*.json (stale dashboards removed)
#   scripts/render-mixin.sh --out DIR   writes DIR/prometheus/... and DIR/grafana/... instead
#                                       (tests/mixin.rs compares those with the committed files)
#
# Needs Debian's `jsonnet` (apt-get install jsonnet; scripts/install-test-deps.sh installs it);
# installs nothing itself. The output depends only on the mixin and jsonnet, so rendering twice
# gives the same bytes.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

log() { printf 'render-mixin: %s\n' "$*" >&2; }

out=deploy
case "${1-}" in
    "") ;;
    --out)
        out=${2:?--out needs a directory}
        ;;
    *)
        log "usage: scripts/render-mixin.sh [--out DIR]"
        exit 2
        ;;
esac

if ! command -v jsonnet >/dev/null 2>&1; then
    log "jsonnet is not installed: apt-get install jsonnet (or run scripts/install-test-deps.sh)"
    exit 1
fi

mkdir -p "$out/prometheus" "$out/grafana"
# Render into a scratch directory first, so a failed render leaves the old files in place.
scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
jsonnet -S deploy/mixin/render-rules.jsonnet >"$scratch/conn-hygiene.rules.yml"
mkdir "$scratch/grafana"
jsonnet -S -m "$scratch/grafana" deploy/mixin/render-dashboards.jsonnet >/dev/null

mv "$scratch/conn-hygiene.rules.yml" "$out/prometheus/conn-hygiene.rules.yml"
rm -f "$out"/grafana/*.json
mv "$scratch"/grafana/*.json "$out/grafana/"
log "wrote $out/prometheus/conn-hygiene.rules.yml and $(cd "$out/grafana" && echo *.json | sed 's/ /, /g') in $out/grafana"
