// Small helpers shared by the alerts, the recording rules and the dashboards.
{
  // A label matcher list from matchers, empty ones left out: '{a="b",c="d"}', or '' when none
  // remain (so a bare metric name stays bare).
  matchers(list)::
    local kept = std.filter(function(m) m != '', list);
    if kept == [] then '' else '{' + std.join(',', kept) + '}',

  // 50000 -> '50k', 1000 -> '1000': how the alert texts write socket counts.
  count(n):: if n >= 10000 && n % 1000 == 0 then '%dk' % (n / 1000) else '%d' % n,

  // 0.05 -> '5%'.
  percent(ratio):: '%d%%' % std.floor(ratio * 100 + 0.5),
}
