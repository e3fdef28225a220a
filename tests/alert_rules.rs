//! The rules in `deploy/prometheus/` (rendered from the mixin in `deploy/mixin/`) load
//! (`promtool check rules`) and fire exactly when their unit tests say (`promtool test rules`:
//! for every alert, series that fire it and series that do not; for every recording rule, what
//! it records).
//!
//! Needs `promtool` (Debian package `prometheus`); without it the test fails and names the
//! install script, it never passes silently.

#[path = "support/prometheus.rs"]
mod prom;

use std::{path::PathBuf, process::Command};

fn rules_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("deploy/prometheus")
}

fn promtool(args: &[&str]) -> String {
    let tool = prom::require_tool("promtool");
    let out = Command::new(&tool)
        .args(args)
        .current_dir(rules_dir())
        .output()
        .unwrap_or_else(|e| panic!("run {}: {e}", tool.display()));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success(),
        "promtool {} failed ({}):\n{text}",
        args.join(" "),
        out.status
    );
    text
}

#[test]
fn rules_load() {
    let text = promtool(&["check", "rules", "conn-hygiene.rules.yml"]);
    assert!(text.contains("SUCCESS"), "{text}");
}

#[test]
fn rules_fire_when_their_tests_say() {
    let text = promtool(&["test", "rules", "conn-hygiene.rules.test.yml"]);
    assert!(text.contains("SUCCESS"), "{text}");
}

/// Every alert in the rules file has a test case where it fires and one where it stays quiet.
#[test]
fn every_alert_is_tested() {
    let rules = std::fs::read_to_string(rules_dir().join("conn-hygiene.rules.yml")).unwrap();
    let tests = std::fs::read_to_string(rules_dir().join("conn-hygiene.rules.test.yml")).unwrap();
    let alerts: Vec<&str> = rules
        .lines()
        .filter_map(|l| l.trim().strip_prefix("- alert: "))
        .map(|name| name.trim_matches('"'))
        .collect();
    assert!(alerts.len() >= 15, "{alerts:?}");
    for alert in alerts {
        let fired = tests
            .split("alertname: ")
            .skip(1)
            .filter(|case| case.starts_with(&format!("{alert}\n")))
            .any(|case| case.contains("exp_labels:"));
        let quiet = tests.contains(&format!("alertname: {alert}\n        exp_alerts: []"));
        assert!(fired, "no test case where {alert} fires");
        assert!(quiet, "no test case where {alert} stays quiet");
    }
}

/// Every metric the rules (and their texts) name is one the crate emits: a renamed metric
/// must not leave an alert silently watching nothing. A recorded name (`level:metric:ops`) is
/// one the file records.
#[test]
fn rules_name_only_metrics_the_crate_emits() {
    let rules = std::fs::read_to_string(rules_dir().join("conn-hygiene.rules.yml")).unwrap();
    let names =
        std::fs::read_to_string(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("src/metrics.rs"))
            .unwrap();
    let recorded: Vec<&str> = rules
        .lines()
        .filter_map(|l| l.trim().strip_prefix("record: "))
        .map(|name| name.trim_matches('"'))
        .collect();
    let mut checked = 0;
    for line in rules.lines().filter(|l| !l.trim_start().starts_with('#')) {
        let mut rest = line;
        while let Some(at) = rest.find("conn_hygiene_") {
            // The whole identifier around the match, a recorded name's colons included.
            let is_ident = |c: char| c.is_ascii_alphanumeric() || c == '_' || c == ':';
            let start = rest[..at]
                .char_indices()
                .rev()
                .find(|&(_, c)| !is_ident(c))
                .map_or(0, |(i, c)| i + c.len_utf8());
            let len = rest[start..]
                .find(|c: char| !is_ident(c))
                .unwrap_or(rest.len() - start);
            let token = &rest[start..start + len];
            rest = &rest[start + len..];
            if token.contains(':') {
                assert!(
                    recorded.contains(&token),
                    "the rules use {token}, which no rule records ({recorded:?})"
                );
            } else {
                assert!(
                    names.contains(&format!("\"{token}\"")),
                    "the rules use {token}, which src/metrics.rs does not name"
                );
            }
            checked += 1;
        }
    }
    assert!(checked >= 15, "only {checked} metric names found");
    assert!(!recorded.is_empty(), "no recording rule found");
}
