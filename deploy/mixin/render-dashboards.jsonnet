// deploy/grafana/*.json: the mixin's dashboards with the default _config, one file each, as
// JSON with two-space indentation. Rendered by scripts/render-mixin.sh (jsonnet -S -m).
local mixin = import 'mixin.libsonnet';

{
  [name]: std.manifestJsonEx(mixin.grafanaDashboards[name], '  ')
  for name in std.objectFields(mixin.grafanaDashboards)
}
