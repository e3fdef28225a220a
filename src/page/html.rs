//! The page as HTML: one self-contained document (inline style, charts drawn here as inline
//! SVG, no script), refreshed by the browser every few seconds.

// Each element written ends its own line, as the markup reads best.
#![allow(clippy::write_with_newline)]

use std::collections::BTreeMap;
use std::fmt::{self, Write as _};

use super::history::HistoryData;
use super::model::{PageData, UpstreamKernel, HOST_STATES_FIRST};
use crate::census::TcpState;

const STYLE: &str = "body{font:14px/1.4 system-ui,sans-serif;margin:1em 2em;color:#1d2330;background:#fafbfc}\
h1{font-size:1.4em;margin:.2em 0}h2{font-size:1.1em;margin:1.4em 0 .4em;border-bottom:1px solid #d5d9e0}\
.wide{overflow-x:auto}table{border-collapse:collapse;margin:.3em 0}th,td{padding:.2em .6em;border-bottom:1px solid #e4e7ec;text-align:right;vertical-align:top}\
th{background:#eef1f5;font-weight:600}td.l,th.l{text-align:left}code{font-size:.95em}\
.sev{font-weight:700;padding:.1em .5em;border-radius:3px}.OK{background:#d9f2df}.WARNING{background:#ffe9b3}\
.CRITICAL{background:#ffc9c4}.UNKNOWN{background:#e4e7ec}.leak{background:#ffc9c4}.muted{color:#6b7280}\
.charts{display:flex;flex-wrap:wrap;gap:1em}figure{margin:0;background:#fff;border:1px solid #e4e7ec;padding:.4em}\
figcaption{font-size:.9em;color:#374151}svg text{font:11px system-ui,sans-serif;fill:#374151}";

const PALETTE: [&str; 6] = [
    "#2563eb", "#dc2626", "#16a34a", "#9333ea", "#ea580c", "#0891b2",
];

/// Text with `&`, `<`, `>`, `"` and `'` escaped, for element content and attribute values.
struct Esc<'a>(&'a str);

impl fmt::Display for Esc<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut rest = self.0;
        while let Some(i) = rest.find(['&', '<', '>', '"', '\'']) {
            f.write_str(&rest[..i])?;
            f.write_str(match rest.as_bytes()[i] {
                b'&' => "&amp;",
                b'<' => "&lt;",
                b'>' => "&gt;",
                b'"' => "&quot;",
                _ => "&#39;",
            })?;
            rest = &rest[i + 1..];
        }
        f.write_str(rest)
    }
}

/// `Some(n)` as `n`, `None` as an em dash.
struct Opt<T>(Option<T>);

impl<T: fmt::Display> fmt::Display for Opt<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.0 {
            Some(v) => v.fmt(f),
            None => f.write_str("—"),
        }
    }
}

/// `HH:MM:SS UTC` of a Unix time.
fn utc_time(secs: f64) -> String {
    let s = secs.max(0.0) as u64 % 86_400;
    format!("{:02}:{:02}:{:02} UTC", s / 3600, s / 60 % 60, s % 60)
}

/// `closer: n, closer: n` of a map of counts, or an em dash.
fn counts(map: &BTreeMap<&'static str, u64>) -> String {
    if map.is_empty() {
        return "—".into();
    }
    let mut out = String::new();
    for (k, v) in map {
        if !out.is_empty() {
            out.push_str(", ");
        }
        let _ = write!(out, "{k}: {v}");
    }
    out
}

fn seconds(s: f64) -> String {
    if s >= 120.0 {
        format!("{:.0} min", s / 60.0)
    } else {
        format!("{s:.1} s")
    }
}

/// Renders the page.
pub(crate) fn render(page: &PageData) -> String {
    let mut out = String::with_capacity(16 * 1024);
    // Writing to a String cannot fail.
    let _ = write_page(&mut out, page);
    out
}

fn write_page(o: &mut String, p: &PageData) -> fmt::Result {
    write!(
        o,
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta http-equiv=\"refresh\" content=\"{refresh}\">\
         <meta name=\"viewport\" content=\"width=device-width,initial-scale=1\">\
         <title>connections · pid {pid}</title><style>{STYLE}</style></head><body>\n\
         <h1>Connections of pid {pid}</h1>\n<p>Status <span id=\"status\" class=\"sev {st}\">{st}</span> ",
        refresh = p.refresh_seconds,
        pid = p.pid,
        st = p.status,
    )?;
    match &p.sample {
        Some(s) => write!(
            o,
            "· census sample <span id=\"sample-seq\">{}</span> ({}) taken {} · socket table walked {}",
            s.seq,
            s.tier,
            Opt(s.taken_at.map(utc_time)),
            Opt(s.walked_at.map(utc_time)),
        )?,
        None => o.push_str("· no census sample yet"),
    }
    write!(
        o,
        " · page made {} · refreshes every {} s · <a href=\"connections.json\">JSON</a></p>\n",
        utc_time(p.generated_at),
        p.refresh_seconds
    )?;
    if let Some(reason) = p.sample.as_ref().and_then(|s| s.degraded.as_deref()) {
        write!(
            o,
            "<p class=\"sev WARNING\">Census degraded: {}</p>\n",
            Esc(reason)
        )?;
    }
    write_findings(o, p)?;
    write_charts(o, &p.history)?;
    write_host(o, p)?;
    write_listeners(o, p)?;
    write_upstreams(o, p)?;
    write_pools(o, p)?;
    write_leases(o, p)?;
    write_close_wait(o, p)?;
    o.push_str("</body></html>\n");
    Ok(())
}

fn write_findings(o: &mut String, p: &PageData) -> fmt::Result {
    o.push_str("<section id=\"findings\"><h2>Findings</h2>\n");
    let problems: Vec<_> = p.findings.iter().filter(|f| f.severity != "OK").collect();
    let ok = p.findings.len() - problems.len();
    if problems.is_empty() {
        write!(o, "<p>No problem found ({ok} checks OK).</p>")?;
    } else {
        o.push_str(
            "<table><tr><th class=\"l\">severity</th><th class=\"l\">check</th><th class=\"l\">about</th>\
             <th class=\"l\">finding</th><th class=\"l\">what to do</th></tr>\n",
        );
        for f in &problems {
            write!(
                o,
                "<tr data-check=\"{check}\"><td class=\"l\"><span class=\"sev {sev}\">{sev}</span></td>\
                 <td class=\"l\"><code>{check}</code></td><td class=\"l\">{about}</td><td class=\"l\">{msg}</td>\
                 <td class=\"l\">{rec}</td></tr>\n",
                sev = f.severity,
                check = f.check,
                about = Esc(f.subject.as_deref().unwrap_or("")),
                msg = Esc(&f.message),
                rec = Esc(&f.recommendation),
            )?;
        }
        write!(o, "</table><p class=\"muted\">{ok} other checks OK.</p>")?;
    }
    o.push_str("</section>\n");
    Ok(())
}

fn write_charts(o: &mut String, h: &HistoryData) -> fmt::Result {
    write!(
        o,
        "<section id=\"charts\"><h2>Last {} samples</h2><div class=\"charts\">\n",
        h.at.len()
    )?;
    let one = |v: &[u64]| vec![v.iter().map(|x| Some(*x)).collect::<Vec<_>>()];
    chart(o, "host TIME_WAIT", &["TIME_WAIT"], &one(&h.host_time_wait))?;
    chart(
        o,
        "host CLOSE_WAIT",
        &["CLOSE_WAIT"],
        &one(&h.host_close_wait),
    )?;
    chart(
        o,
        "leases outstanding",
        &["leases"],
        &one(&h.leases_outstanding),
    )?;
    let names: Vec<&str> = h.ports_in_use.iter().map(|s| s.name.as_str()).collect();
    let values: Vec<Vec<Option<u64>>> = h.ports_in_use.iter().map(|s| s.values.clone()).collect();
    chart(o, "local ports in use, by upstream", &names, &values)?;
    o.push_str("</div></section>\n");
    Ok(())
}

/// One chart: a polyline per series over the samples, scaled to the largest value.
fn chart(o: &mut String, title: &str, names: &[&str], series: &[Vec<Option<u64>>]) -> fmt::Result {
    const W: f64 = 340.0;
    const H: f64 = 110.0;
    const LEFT: f64 = 44.0;
    const TOP: f64 = 8.0;
    const BOTTOM: f64 = 18.0;
    let max = series
        .iter()
        .flatten()
        .flatten()
        .copied()
        .max()
        .unwrap_or(0)
        .max(1);
    let len = series.iter().map(Vec::len).max().unwrap_or(0);
    let last: Vec<String> = names
        .iter()
        .zip(series)
        .map(|(n, s)| format!("{n} {}", Opt(s.last().copied().flatten())))
        .collect();
    write!(
        o,
        "<figure data-chart=\"{t}\"><figcaption>{t}: {now}</figcaption>\
         <svg width=\"{w}\" height=\"{h}\" viewBox=\"0 0 {w} {h}\" role=\"img\" aria-label=\"{t}\">\
         <rect x=\"{LEFT}\" y=\"{TOP}\" width=\"{pw}\" height=\"{ph}\" fill=\"#fff\" stroke=\"#d5d9e0\"/>\
         <text x=\"{tx}\" y=\"{ty}\" text-anchor=\"end\">{max}</text>\
         <text x=\"{tx}\" y=\"{by}\" text-anchor=\"end\">0</text>",
        t = Esc(title),
        now = Esc(&if last.is_empty() { "—".to_owned() } else { last.join(", ") }),
        w = W,
        h = H,
        pw = W - LEFT - 4.0,
        ph = H - TOP - BOTTOM,
        tx = LEFT - 4.0,
        ty = TOP + 10.0,
        by = H - BOTTOM,
    )?;
    if len == 0 {
        write!(
            o,
            "<text x=\"{}\" y=\"{}\" text-anchor=\"middle\">no sample yet</text>",
            LEFT + (W - LEFT) / 2.0,
            H / 2.0
        )?;
    }
    let step = if len > 1 {
        (W - LEFT - 8.0) / (len - 1) as f64
    } else {
        0.0
    };
    for (k, s) in series.iter().enumerate() {
        let color = PALETTE[k % PALETTE.len()];
        let mut points = String::new();
        for (i, v) in s.iter().enumerate() {
            if let Some(v) = v {
                let x = LEFT + 2.0 + step * i as f64;
                let y = H - BOTTOM - (*v as f64 / max as f64) * (H - TOP - BOTTOM - 2.0);
                let _ = write!(points, "{x:.1},{y:.1} ");
            }
        }
        write!(
            o,
            "<polyline fill=\"none\" stroke=\"{color}\" stroke-width=\"2\" points=\"{}\"/>",
            points.trim_end()
        )?;
        if let Some(name) = names.get(k) {
            write!(
                o,
                "<text x=\"{}\" y=\"{}\" fill=\"{color}\">{}</text>",
                LEFT + 4.0 + 90.0 * (k % 3) as f64,
                H - 4.0,
                Esc(name)
            )?;
        }
    }
    o.push_str("</svg></figure>\n");
    Ok(())
}

fn write_host(o: &mut String, p: &PageData) -> fmt::Result {
    o.push_str(
        "<section id=\"host\"><h2>TCP sockets by state</h2><table><tr><th class=\"l\">state</th>\
         <th>host</th><th>this process</th></tr>\n",
    );
    let mut states: Vec<&str> = HOST_STATES_FIRST.iter().map(|s| s.as_str()).collect();
    for s in TcpState::ALL {
        let name = s.as_str();
        if !states.contains(&name) && (p.host.contains_key(name) || p.process.contains_key(name)) {
            states.push(name);
        }
    }
    for s in states {
        write!(
            o,
            "<tr data-state=\"{s}\"><td class=\"l\">{s}</td><td data-k=\"host\">{}</td>\
             <td data-k=\"process\">{}</td></tr>\n",
            p.host.get(s).copied().unwrap_or(0),
            p.process.get(s).copied().unwrap_or(0)
        )?;
    }
    o.push_str("</table></section>\n");
    Ok(())
}

fn write_listeners(o: &mut String, p: &PageData) -> fmt::Result {
    o.push_str("<section id=\"listeners\"><h2>Listeners</h2>\n");
    if p.listeners.is_empty() {
        o.push_str("<p class=\"muted\">None given to the page.</p></section>\n");
        return Ok(());
    }
    o.push_str(
        "<div class=\"wide\"><table><tr><th class=\"l\">listener</th><th class=\"l\">address</th><th>backlog<br>requested / effective</th>\
         <th>accept queue</th><th>live</th><th>new</th><th>active</th><th>idle</th><th>half closed</th>\
         <th>closing</th><th>TIME_WAIT</th><th>SYN_RECV</th><th>not accepted</th><th>CLOSE_WAIT</th>\
         <th>opened</th><th>closed</th><th>unanswered</th><th class=\"l\">closed first by</th>\
         <th class=\"l\">closed because</th></tr>\n",
    );
    for l in &p.listeners {
        let k = l.kernel.as_ref();
        let state = |s: &str| l.connections.get(s).copied().unwrap_or(0);
        write!(
            o,
            "<tr data-listener=\"{name}\"><td class=\"l\"><b>{name}</b></td><td class=\"l\">{addr}</td>\
             <td data-k=\"backlog\">{} / {}</td><td data-k=\"accept_queue\">{} / {}</td><td data-k=\"live\">{}</td>\
             <td data-k=\"new\">{}</td><td data-k=\"active\">{}</td><td data-k=\"idle\">{}</td>\
             <td data-k=\"half_closed\">{}</td><td data-k=\"closing\">{}</td><td data-k=\"time_wait\">{}</td>\
             <td data-k=\"syn_recv\">{}</td><td data-k=\"not_accepted\">{}</td><td data-k=\"close_wait\">{}</td>\
             <td data-k=\"opened\">{}</td><td data-k=\"closed\">{}</td><td data-k=\"unanswered\">{}</td>\
             <td class=\"l\" data-k=\"closed_by\">{}</td><td class=\"l\" data-k=\"closed_for\">{}</td></tr>\n",
            Opt(l.backlog_requested),
            Opt(l.backlog_effective),
            Opt(k.and_then(|k| k.accept_queue_len)),
            Opt(k.and_then(|k| k.accept_queue_max)),
            l.live,
            state("new"),
            state("active"),
            state("idle"),
            state("half_closed"),
            state("closing"),
            Opt(k.map(|k| k.time_wait)),
            Opt(k.map(|k| k.syn_recv)),
            Opt(k.map(|k| k.not_accepted)),
            Opt(k.map(|k| k.close_wait)),
            l.opened,
            l.closed,
            l.requests_unanswered,
            counts(&l.closed_by),
            counts(&l.closed_for),
            name = Esc(&l.name),
            addr = Esc(&l.addr),
        )?;
    }
    o.push_str("</table></div></section>\n");
    Ok(())
}

/// TIME_WAIT, CLOSE_WAIT and the worst port headroom cells of an upstream or a pool.
fn kernel_cells(o: &mut String, k: Option<&UpstreamKernel>) -> fmt::Result {
    let ports = k.and_then(|k| k.ports.as_ref());
    write!(
        o,
        "<td data-k=\"time_wait\">{}</td><td data-k=\"close_wait\">{}</td><td data-k=\"ports_used\">{}</td>\
         <td data-k=\"headroom\">{}</td><td data-k=\"exhaustion\">{}</td>",
        Opt(k.map(|k| k.time_wait)),
        Opt(k.map(|k| k.close_wait)),
        Opt(ports.map(|p| p.used)),
        Opt(ports.map(|p| format!("{} ({:.0} %)", p.headroom, p.headroom_ratio * 100.0))),
        Opt(ports.and_then(|p| p.seconds_to_exhaustion).map(seconds)),
    )
}

fn write_upstreams(o: &mut String, p: &PageData) -> fmt::Result {
    o.push_str("<section id=\"upstreams\"><h2>Upstreams</h2>\n");
    if p.upstreams.is_empty() {
        o.push_str("<p class=\"muted\">None.</p></section>\n");
        return Ok(());
    }
    o.push_str(
        "<div class=\"wide\"><table><tr><th class=\"l\">upstream</th><th class=\"l\">authority</th><th>open</th><th>idle</th>\
         <th>leased</th><th>pending</th><th>connects</th><th>errors</th><th>retries</th><th>timeouts</th>\
         <th>leases</th><th>leaks</th><th>TIME_WAIT</th><th>CLOSE_WAIT</th><th>ports used</th>\
         <th>port headroom</th><th>exhausted in</th><th class=\"l\">closed first by</th>\
         <th class=\"l\">closed because</th></tr>\n",
    );
    for u in &p.upstreams {
        write!(
            o,
            "<tr data-upstream=\"{name}\"><td class=\"l\"><b>{name}</b></td><td class=\"l\">{auth}</td>\
             <td data-k=\"open\">{}</td><td data-k=\"idle\">{}</td><td data-k=\"leased\">{}</td>\
             <td data-k=\"pending\">{}</td><td data-k=\"connects\">{}</td><td data-k=\"connect_errors\">{}</td>\
             <td data-k=\"retries\">{}</td><td data-k=\"timeouts\">{}</td><td data-k=\"leases\">{}</td>\
             <td data-k=\"leaks\">{}</td>",
            u.open,
            u.idle,
            u.leased,
            u.pending,
            u.connects,
            u.connect_errors,
            u.retries,
            u.timeouts,
            u.leases_outstanding,
            u.leaks_detected,
            name = Esc(&u.name),
            auth = Esc(&u.authority),
        )?;
        kernel_cells(o, u.kernel.as_ref())?;
        write!(
            o,
            "<td class=\"l\" data-k=\"closed_by\">{}</td><td class=\"l\" data-k=\"closed_for\">{}</td></tr>\n",
            counts(&u.closed_by),
            counts(&u.closed_for)
        )?;
    }
    o.push_str("</table></div></section>\n");
    Ok(())
}

fn write_pools(o: &mut String, p: &PageData) -> fmt::Result {
    o.push_str("<section id=\"pools\"><h2>Pools</h2>\n");
    if p.pools.is_empty() {
        o.push_str("<p class=\"muted\">None.</p></section>\n");
        return Ok(());
    }
    o.push_str(
        "<div class=\"wide\"><table><tr><th class=\"l\">pool</th><th class=\"l\">authority</th><th>size / max</th><th>idle</th>\
         <th>checked out</th><th>waiting</th><th>timeouts</th><th>leases</th><th>leaks</th><th>TIME_WAIT</th>\
         <th>CLOSE_WAIT</th><th>ports used</th><th>port headroom</th><th>exhausted in</th></tr>\n",
    );
    for pool in &p.pools {
        write!(
            o,
            "<tr data-pool=\"{name}\"><td class=\"l\"><b>{name}</b></td><td class=\"l\">{auth}</td>\
             <td data-k=\"size\">{} / {}</td><td data-k=\"idle\">{}</td><td data-k=\"checked_out\">{}</td>\
             <td data-k=\"waiters\">{}</td><td data-k=\"timeouts\">{}</td><td data-k=\"leases\">{}</td>\
             <td data-k=\"leaks\">{}</td>",
            Opt(pool.size),
            Opt(pool.max_size),
            Opt(pool.idle),
            pool.checked_out,
            Opt(pool.waiters),
            Opt(pool.timeouts),
            pool.leases_outstanding,
            pool.leaks_detected,
            name = Esc(&pool.name),
            auth = Esc(pool.authority.as_deref().unwrap_or("—")),
        )?;
        kernel_cells(o, pool.kernel.as_ref())?;
        o.push_str("</tr>\n");
    }
    o.push_str("</table></div></section>\n");
    Ok(())
}

fn write_leases(o: &mut String, p: &PageData) -> fmt::Result {
    write!(
        o,
        "<section id=\"leases\"><h2>Leases held longer than {}</h2>\n",
        seconds(p.old_lease_after_seconds)
    )?;
    if p.old_leases.is_empty() {
        o.push_str("<p>None.</p></section>\n");
        return Ok(());
    }
    o.push_str(
        "<table><tr><th class=\"l\">pool</th><th>lease</th><th class=\"l\">taken at</th><th>age</th>\
         <th class=\"l\">state</th></tr>\n",
    );
    for l in &p.old_leases {
        let (class, state) = if l.leaked {
            (" class=\"leak\"", "leaked")
        } else if l.awaiting {
            ("", "awaiting its response")
        } else {
            ("", "held")
        };
        write!(
            o,
            "<tr{class} data-lease=\"{id}\"><td class=\"l\">{pool}</td><td>#{id}</td>\
             <td class=\"l\" data-k=\"site\"><code>{site}</code></td><td data-k=\"age\">{age}</td>\
             <td class=\"l\" data-k=\"state\">{state}</td></tr>\n",
            id = l.id,
            pool = Esc(&l.pool),
            site = Esc(&l.site),
            age = seconds(l.age_seconds),
        )?;
    }
    o.push_str("</table>");
    if p.old_leases_unlisted > 0 {
        write!(
            o,
            "<p class=\"muted\">and {} more.</p>",
            p.old_leases_unlisted
        )?;
    }
    o.push_str("</section>\n");
    Ok(())
}

fn write_close_wait(o: &mut String, p: &PageData) -> fmt::Result {
    o.push_str("<section id=\"close-wait\"><h2>Our CLOSE_WAIT sockets</h2>\n");
    if p.close_wait.is_empty() {
        o.push_str("<p>None: every peer that closed was closed in turn.</p></section>\n");
        return Ok(());
    }
    o.push_str(
        "<table><tr><th class=\"l\">ours</th><th class=\"l\">peer</th><th class=\"l\">held by</th>\
         <th>connection</th><th class=\"l\">leased at</th></tr>\n",
    );
    for c in &p.close_wait {
        let holder = match &c.owner {
            Some(name) => format!("{} {}", c.owner_kind, name),
            None => c.owner_kind.to_owned(),
        };
        write!(
            o,
            "<tr class=\"close-wait\"><td class=\"l\">{}</td><td class=\"l\">{}</td><td class=\"l\" data-k=\"holder\">{}</td>\
             <td>{}</td><td class=\"l\" data-k=\"site\"><code>{}</code></td></tr>\n",
            Esc(&c.local),
            Esc(&c.remote),
            Esc(&holder),
            Opt(c.connection_id.map(|id| format!("#{id}"))),
            Esc(c.lease_site.as_deref().unwrap_or("—")),
        )?;
    }
    o.push_str("</table>");
    if p.close_wait_unlisted > 0 {
        write!(
            o,
            "<p class=\"muted\">and {} more.</p>",
            p.close_wait_unlisted
        )?;
    }
    o.push_str("</section>\n");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_markup() {
        assert_eq!(
            Esc("<a href=\"x\">'&'</a>").to_string(),
            "&lt;a href=&quot;x&quot;&gt;&#39;&amp;&#39;&lt;/a&gt;"
        );
        assert_eq!(Esc("plain").to_string(), "plain");
    }

    #[test]
    fn times_read_as_utc() {
        assert_eq!(utc_time(3_600.0 * 25.0 + 61.0), "01:01:01 UTC");
    }
}
