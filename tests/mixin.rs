//! The monitoring mixin (`deploy/mixin/`, jsonnet) and the files rendered from it agree: the
//! mixin renders with `jsonnet` to exactly the committed rules file and dashboards, every alert
//! links a runbook that exists, the settings in `_config` reach every query, and the dashboards
//! use only metrics `docs/metrics.md` documents. Prometheus evaluating every expression is
//! `tests/mixin_queries.rs`.
//!
//! Needs `jsonnet` (Debian package `jsonnet`); without it the tests fail and name
//! `scripts/install-test-deps.sh`, they never pass silently.

#[path = "support/prometheus.rs"]
mod prom;

use std::{
    collections::BTreeSet,
    path::{Path, PathBuf},
    process::Command,
};

use serde_json::Value;

const DEFAULT_RUNBOOK_BASE: &str =
    "https://github.com/conn-hygiene/conn-hygiene/blob/main/docs/runbooks/";

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn check_output(cmd: &mut Command) -> String {
    let out = cmd
        .current_dir(repo())
        .output()
        .unwrap_or_else(|e| panic!("run {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed ({}):\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("UTF-8 output")
}

/// Evaluates a jsonnet expression in `deploy/mixin/` (where `mixin.libsonnet` is imported from)
/// to JSON.
fn jsonnet(expr: &str) -> Value {
    let tool = prom::require_tool("jsonnet");
    let text = check_output(Command::new(tool).args(["-J", "deploy/mixin", "-e", expr]));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("jsonnet output for {expr}: {e}"))
}

/// The files in `dir`, sorted by name.
fn files_in(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("read {}: {e}", dir.display()))
        .map(|e| {
            e.expect("dir entry")
                .file_name()
                .to_string_lossy()
                .into_owned()
        })
        .collect();
    names.sort();
    names
}

/// Fails with the first line that differs.
fn assert_same(rendered: &Path, committed: &Path) {
    let new = std::fs::read_to_string(rendered).expect("read the rendered file");
    let old = std::fs::read_to_string(committed)
        .unwrap_or_else(|e| panic!("read {}: {e}", committed.display()));
    if new == old {
        return;
    }
    let line = new
        .lines()
        .zip(old.lines())
        .position(|(a, b)| a != b)
        .unwrap_or_else(|| new.lines().count().min(old.lines().count()));
    panic!(
        "{} differs from what the mixin renders, from line {}:\n  committed: {:?}\n  rendered:  {:?}\n\
         Render it again with scripts/render-mixin.sh and commit the result.",
        committed.display(),
        line + 1,
        old.lines().nth(line),
        new.lines().nth(line)
    );
}

#[test]
fn mixin_renders_to_exactly_the_committed_files() {
    prom::require_tool("jsonnet");
    let out = prom::TempDir::new("conn-hygiene-render");
    check_output(
        Command::new("bash")
            .arg("scripts/render-mixin.sh")
            .arg("--out")
            .arg(out.path()),
    );
    assert_same(
        &out.path().join("prometheus/conn-hygiene.rules.yml"),
        &repo().join("deploy/prometheus/conn-hygiene.rules.yml"),
    );
    let rendered = files_in(&out.path().join("grafana"));
    let committed = files_in(&repo().join("deploy/grafana"));
    assert_eq!(
        rendered, committed,
        "the mixin renders these dashboards, deploy/grafana/ holds those: run scripts/render-mixin.sh"
    );
    assert!(rendered.len() >= 2, "{rendered:?}");
    for name in &rendered {
        assert_same(
            &out.path().join("grafana").join(name),
            &repo().join("deploy/grafana").join(name),
        );
        let json: Value = serde_json::from_str(
            &std::fs::read_to_string(repo().join("deploy/grafana").join(name)).unwrap(),
        )
        .unwrap_or_else(|e| panic!("{name} is not JSON: {e}"));
        assert!(
            json["uid"].is_string() && json["panels"].is_array(),
            "{name}"
        );
    }
}

#[test]
fn every_alert_links_a_runbook_that_exists() {
    let alerts = jsonnet("(import 'mixin.libsonnet').prometheusAlerts");
    let rules_file =
        std::fs::read_to_string(repo().join("deploy/prometheus/conn-hygiene.rules.yml")).unwrap();
    let runbooks = repo().join("docs/runbooks");
    let index =
        std::fs::read_to_string(runbooks.join("README.md")).expect("docs/runbooks/README.md");
    let mut names = BTreeSet::new();
    for group in alerts["groups"].as_array().expect("groups") {
        for rule in group["rules"].as_array().expect("rules") {
            let name = rule["alert"].as_str().expect("every rule here is an alert");
            let url = rule["annotations"]["runbook_url"]
                .as_str()
                .unwrap_or_else(|| panic!("{name} has no runbook_url"));
            let file = url
                .strip_prefix(DEFAULT_RUNBOOK_BASE)
                .unwrap_or_else(|| panic!("{name}: {url} is not under {DEFAULT_RUNBOOK_BASE}"));
            assert_eq!(file, format!("{name}.md"), "{name}: {url}");
            let page = std::fs::read_to_string(runbooks.join(file))
                .unwrap_or_else(|e| panic!("{name}: docs/runbooks/{file}: {e}"));
            assert!(
                page.starts_with(&format!("# {name}\n")),
                "docs/runbooks/{file}"
            );
            assert!(
                index.contains(&format!("]({file})")),
                "docs/runbooks/README.md does not link {file}"
            );
            assert!(
                rules_file.contains(&format!("runbook_url: \"{url}\"")),
                "the rendered rules file lacks {name}'s runbook_url"
            );
            names.insert(format!("{name}.md"));
        }
    }
    assert!(names.len() >= 15, "{names:?}");
    // And no page for an alert that no longer exists.
    let pages: BTreeSet<String> = files_in(&runbooks)
        .into_iter()
        .filter(|f| f != "README.md")
        .collect();
    assert_eq!(pages, names, "runbook pages and alerts differ");
}

/// Every PromQL expression of the mixin: rules, dashboard targets and variable queries.
fn all_exprs(mixin: &Value) -> Vec<String> {
    let mut exprs = Vec::new();
    for part in ["prometheusAlerts", "prometheusRules"] {
        for group in mixin[part]["groups"].as_array().expect("groups") {
            for rule in group["rules"].as_array().expect("rules") {
                exprs.push(rule["expr"].as_str().expect("expr").to_owned());
            }
        }
    }
    for dashboard in mixin["grafanaDashboards"]
        .as_object()
        .expect("dashboards")
        .values()
    {
        exprs.extend(dashboard_exprs(dashboard));
    }
    exprs
}

fn dashboard_exprs(dashboard: &Value) -> Vec<String> {
    let mut exprs = Vec::new();
    for v in dashboard["templating"]["list"]
        .as_array()
        .expect("templating")
    {
        if v["type"] == "query" {
            exprs.push(v["query"].as_str().expect("variable query").to_owned());
        }
    }
    let mut stack: Vec<&Value> = dashboard["panels"]
        .as_array()
        .expect("panels")
        .iter()
        .collect();
    while let Some(p) = stack.pop() {
        if let Some(nested) = p["panels"].as_array() {
            stack.extend(nested);
        }
        for t in p["targets"].as_array().into_iter().flatten() {
            exprs.push(t["expr"].as_str().expect("target expr").to_owned());
        }
    }
    exprs
}

#[test]
fn config_reaches_every_query_and_link() {
    let mixin = jsonnet(
        "local m = (import 'mixin.libsonnet') + { _config+:: { \
           connHygieneSelector: 'env=\"test\"', runbookURLBase: 'https://runbooks.example/', \
           thresholds+: { timeWaitWarning: 12345 } } }; \
         { prometheusAlerts: m.prometheusAlerts, prometheusRules: m.prometheusRules, \
           grafanaDashboards: m.grafanaDashboards }",
    );
    let exprs = all_exprs(&mixin);
    assert!(exprs.len() > 60, "{} expressions", exprs.len());
    for expr in &exprs {
        // Recorded series carry the selector from their rule; queries on them need not.
        let on_recorded_only = expr.contains(":rate5m") && !expr.contains("(rate(");
        assert!(
            on_recorded_only || expr.contains("env=\"test\""),
            "the selector does not reach {expr}"
        );
    }
    let alerts = &mixin["prometheusAlerts"]["groups"];
    let mut linked = 0;
    for rule in alerts
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|g| g["rules"].as_array().unwrap())
    {
        let url = rule["annotations"]["runbook_url"].as_str().unwrap();
        assert!(url.starts_with("https://runbooks.example/"), "{url}");
        linked += 1;
        if rule["alert"] == "ConnHygieneTimeWaitHigh" {
            assert!(
                rule["expr"].as_str().unwrap().ends_with("> 12345"),
                "{}",
                rule["expr"]
            );
        }
    }
    assert!(linked >= 15);
}

/// The metric names in an expression: `conn_hygiene_*` identifiers that are not part of a
/// recorded name, with a histogram's `_bucket`, `_sum` and `_count` suffix taken off; and the
/// recorded names (`level:metric:operations`).
fn metric_names(expr: &str) -> (BTreeSet<String>, BTreeSet<String>) {
    let (mut metrics, mut recorded) = (BTreeSet::new(), BTreeSet::new());
    let is_ident = |c: char| c.is_ascii_alphanumeric() || c == '_' || c == ':';
    for token in expr.split(|c: char| !is_ident(c)) {
        if token.contains(':') && token.contains("conn_hygiene_") {
            recorded.insert(token.to_owned());
        } else if token.starts_with("conn_hygiene_") {
            let base = ["_bucket", "_sum", "_count"]
                .iter()
                .find_map(|s| token.strip_suffix(s))
                .unwrap_or(token);
            metrics.insert(base.to_owned());
        }
    }
    (metrics, recorded)
}

#[test]
fn dashboards_use_only_documented_metrics_and_recorded_series() {
    let documented = std::fs::read_to_string(repo().join("docs/metrics.md")).unwrap();
    let rules =
        std::fs::read_to_string(repo().join("deploy/prometheus/conn-hygiene.rules.yml")).unwrap();
    let dir = repo().join("deploy/grafana");
    let mut seen = BTreeSet::new();
    for name in files_in(&dir) {
        let dashboard: Value =
            serde_json::from_str(&std::fs::read_to_string(dir.join(&name)).unwrap()).unwrap();
        for expr in dashboard_exprs(&dashboard) {
            let (metrics, recorded) = metric_names(&expr);
            for m in metrics {
                // A metric of that exact name, or a family a regex names by prefix.
                let documented_name = documented.contains(&format!("`{m}`"))
                    || (expr.contains("__name__=~") && documented.contains(&format!("`{m}")));
                assert!(
                    documented_name,
                    "{name}: {m} is not in docs/metrics.md ({expr})"
                );
                seen.insert(m);
            }
            for r in recorded {
                assert!(
                    rules.contains(&format!("record: \"{r}\"")),
                    "{name}: {r} is recorded by no rule in conn-hygiene.rules.yml"
                );
            }
        }
    }
    assert!(
        seen.len() >= 40,
        "only {} metrics on the dashboards: {seen:?}",
        seen.len()
    );
}
