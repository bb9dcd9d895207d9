//! Conformance corpus: every query of `corpus/accepted.txt` must parse and every query of
//! `corpus/rejected.txt` must fail. One query per line; blank lines and `#` lines are ignored.

#![allow(clippy::unwrap_used)]

use std::path::PathBuf;

fn corpus(name: &str) -> Vec<(usize, String)> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/corpus")
        .join(name);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    text.lines()
        .enumerate()
        .filter(|(_, line)| !line.trim().is_empty() && !line.trim_start().starts_with('#'))
        .map(|(i, line)| (i + 1, line.to_string()))
        .collect()
}

#[test]
fn accepted_queries_parse() {
    let queries = corpus("accepted.txt");
    assert!(queries.len() >= 250, "only {} accepted queries", queries.len());
    let failures: Vec<String> = queries
        .iter()
        .filter_map(|(line, query)| {
            legato_traceql::parse(query)
                .err()
                .map(|e| format!("accepted.txt:{line}: {query}\n    {e}"))
        })
        .collect();
    assert!(
        failures.is_empty(),
        "{} accepted queries failed to parse:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn rejected_queries_fail() {
    let queries = corpus("rejected.txt");
    assert!(queries.len() >= 80, "only {} rejected queries", queries.len());
    let failures: Vec<String> = queries
        .iter()
        .filter_map(|(line, query)| {
            legato_traceql::parse(query)
                .ok()
                .map(|q| format!("rejected.txt:{line}: {query}\n    parsed as {q:?}"))
        })
        .collect();
    assert!(
        failures.is_empty(),
        "{} rejected queries parsed:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn rejections_carry_a_position_inside_the_query() {
    for (line, query) in corpus("rejected.txt") {
        let e = legato_traceql::parse(&query).unwrap_err();
        let max_col = query.chars().count() + 1;
        assert!(
            e.line == 1 && e.col >= 1 && e.col <= max_col,
            "rejected.txt:{line}: {query}: {e}"
        );
        assert!(!e.message.is_empty(), "rejected.txt:{line}: empty message");
    }
}
