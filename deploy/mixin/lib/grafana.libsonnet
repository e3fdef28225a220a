// Just enough of Grafana's dashboard JSON model (schema 39, Grafana 10 and later) in plain
// jsonnet: panels, template variables, and a layout that places panels in rows.
{
  // Every query goes to the data source the dashboard's `datasource` variable picks.
  datasource:: { type: 'prometheus', uid: '${datasource}' },

  target(expr, legend='__auto'):: {
    datasource: $.datasource,
    expr: expr,
    legendFormat: legend,
  },

  // Targets get refIds A, B, C, ... in order.
  local withRefIds(targets) = [
    targets[i] { refId: std.char(std.codepoint('A') + i) }
    for i in std.range(0, std.length(targets) - 1)
  ],

  // A panel occupies `width` of the 24 grid columns and `height` grid rows (hidden fields; the
  // layout turns them into gridPos).
  local panel(type, title, description, targets) = {
    type: type,
    title: title,
    description: description,
    datasource: $.datasource,
    targets: withRefIds(targets),
    width:: 12,
    height:: 8,
  },

  // thresholds: [[value, colour], ...] above the base colour; shown as lines on a graph.
  local thresholdSteps(thresholds, base='green') = {
    mode: 'absolute',
    steps: [{ color: base, value: null }] + [
      { color: t[1], value: t[0] }
      for t in thresholds
    ],
  },

  timeseries(title, description, targets, unit='short', thresholds=[], base='green', stack=false, min=0)::
    panel('timeseries', title, description, targets) {
      fieldConfig: {
        defaults: {
          unit: unit,
          [if min != null then 'min']: min,
          custom: {
            drawStyle: 'line',
            lineWidth: 1,
            fillOpacity: if stack then 30 else 10,
            showPoints: 'never',
            spanNulls: false,
            stacking: { mode: if stack then 'normal' else 'none', group: 'A' },
            thresholdsStyle: { mode: if thresholds == [] then 'off' else 'line' },
          },
          thresholds: thresholdSteps(thresholds, base),
        },
      },
      options: {
        legend: {
          showLegend: true,
          displayMode: 'table',
          placement: 'bottom',
          calcs: ['lastNotNull', 'max'],
        },
        tooltip: { mode: 'multi', sort: 'desc' },
      },
    },

  // The latest value of each series, coloured by thresholds; overrides set thresholds per
  // series name (a series named by its legend).
  stat(title, description, targets, unit='short', thresholds=[], overrides=[])::
    panel('stat', title, description, targets) {
      fieldConfig: {
        defaults: {
          unit: unit,
          thresholds: thresholdSteps(thresholds),
        },
        [if overrides != [] then 'overrides']: [
          {
            matcher: { id: 'byName', options: o.name },
            properties: [{ id: 'thresholds', value: thresholdSteps(o.thresholds) }],
          }
          for o in overrides
        ],
      },
      options: {
        reduceOptions: { calcs: ['lastNotNull'], fields: '', values: false },
        colorMode: 'background',
        graphMode: 'area',
        justifyMode: 'auto',
        orientation: 'auto',
        textMode: 'value_and_name',
      },
    },

  // Each series as a band of states over time; mappings: [[value, text, colour], ...].
  stateTimeline(title, description, targets, mappings)::
    panel('state-timeline', title, description, targets) {
      fieldConfig: {
        defaults: {
          color: { mode: 'thresholds' },
          thresholds: thresholdSteps([]),
          mappings: [
            {
              type: 'value',
              options: {
                [std.toString(m[0])]: { text: m[1], color: m[2], index: i }
                for i in std.range(0, std.length(mappings) - 1)
                for m in [mappings[i]]
              },
            },
          ],
        },
      },
      options: {
        showValue: 'never',
        mergeValues: true,
        rowHeight: 0.9,
        alignValue: 'left',
        legend: { showLegend: false },
        tooltip: { mode: 'single', sort: 'none' },
      },
    },

  datasourceVariable:: {
    name: 'datasource',
    label: 'Data source',
    type: 'datasource',
    query: 'prometheus',
    hide: 0,
    includeAll: false,
    multi: false,
    refresh: 1,
    regex: '',
  },

  // A variable filled from label_values(selector, label); "All" sends `.+`.
  queryVariable(name, label, selector, includeAll=true):: {
    local query = 'label_values(%s, %s)' % [selector, name],
    name: name,
    label: label,
    type: 'query',
    datasource: $.datasource,
    query: query,
    definition: query,
    hide: 0,
    includeAll: includeAll,
    [if includeAll then 'allValue']: '.+',
    multi: true,
    refresh: 2,
    regex: '',
    sort: 1,
  },

  // sections: [{ title, panels }]: a row header per section, then its panels left to right,
  // wrapping at 24 columns. Panel ids are numbered in order.
  layout(sections)::
    local placeSection(acc, section) =
      local header = {
        type: 'row',
        title: section.title,
        collapsed: false,
        gridPos: { x: 0, y: acc.y, w: 24, h: 1 },
      };
      local placed = std.foldl(
        function(st, p)
          local wrap = st.x + p.width > 24;
          local x = if wrap then 0 else st.x;
          local y = if wrap then st.y + st.rowH else st.y;
          {
            x: x + p.width,
            y: y,
            rowH: if wrap then p.height else std.max(st.rowH, p.height),
            out: st.out + [p { gridPos: { x: x, y: y, w: p.width, h: p.height } }],
          },
        section.panels,
        { x: 0, y: acc.y + 1, rowH: 0, out: [] }
      );
      { y: placed.y + placed.rowH, out: acc.out + [header] + placed.out };
    local all = std.foldl(placeSection, sections, { y: 0, out: [] }).out;
    [all[i] { id: i + 1 } for i in std.range(0, std.length(all) - 1)],

  dashboard(config, uid, title, description, variables, sections):: {
    uid: '%s-%s' % [config.dashboardUIDPrefix, uid],
    title: title,
    description: description,
    tags: config.dashboardTags,
    editable: true,
    graphTooltip: 1,
    schemaVersion: 39,
    refresh: config.dashboardRefresh,
    time: { from: config.dashboardTimeFrom, to: 'now' },
    timezone: 'browser',
    links: [
      {
        title: 'conn-hygiene dashboards',
        type: 'dashboards',
        tags: config.dashboardTags,
        asDropdown: true,
        includeVars: true,
        keepTime: true,
      },
    ],
    templating: { list: [$.datasourceVariable] + variables },
    panels: $.layout(sections),
  },
}
