//! docs/metrics.md lists every metric the crate emits, and nothing else.

use std::collections::BTreeSet;

/// The `conn_hygiene_*` names quoted in `text` (between the given delimiter characters).
fn names(text: &str, quote: char) -> BTreeSet<String> {
    text.split(quote)
        .skip(1)
        .step_by(2)
        .filter(|s| {
            s.starts_with("conn_hygiene_") && s.chars().all(|c| c.is_ascii_lowercase() || c == '_')
        })
        .map(str::to_owned)
        .collect()
}

#[test]
fn the_reference_table_lists_every_metric_name() {
    let root = env!("CARGO_MANIFEST_DIR");
    let source = std::fs::read_to_string(format!("{root}/src/metrics.rs")).expect("metrics.rs");
    let module = source
        .split("pub mod names {")
        .nth(1)
        .and_then(|rest| rest.split("\n}\n").next())
        .expect("the names module");
    let emitted = names(module, '"');
    assert!(emitted.len() > 40, "{emitted:?}");
    let doc = std::fs::read_to_string(format!("{root}/docs/metrics.md")).expect("docs/metrics.md");
    // The first column of each table row.
    let rows: BTreeSet<String> = doc
        .lines()
        .filter_map(|l| l.strip_prefix("| `"))
        .filter_map(|l| l.split('`').next())
        .map(str::to_owned)
        .collect();
    let missing: Vec<_> = emitted.difference(&rows).collect();
    let unknown: Vec<_> = rows.difference(&emitted).collect();
    assert!(missing.is_empty(), "not in docs/metrics.md: {missing:?}");
    assert!(
        unknown.is_empty(),
        "in docs/metrics.md but not emitted: {unknown:?}"
    );
}
