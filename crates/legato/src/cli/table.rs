//! Tables and lists: search hits (`legato search`), tag names by scope (`legato tags`) and
//! tag values (`legato values`), plus the borderless table every command prints with.

use comfy_table::{CellAlignment, ColumnConstraint, ContentArrangement, Row, Table, Width, presets};
use serde_json::Value;

use super::json::{array_of, str_of, u64_of};
use super::text::{self, BOLD, Style};

/// A borderless table (columns two spaces apart) fitted to `width`, one line per row: cells
/// too wide are cut with `…`, except in the `keep` columns (ids, times), which never are.
/// `right` lists the columns aligned right (numbers).
pub fn grid(header: &[&str], rows: Vec<Vec<String>>, right: &[usize], keep: &[usize], width: usize) -> String {
    // Columns that may be cut keep this many columns (or their widest cell, if narrower),
    // even if the table then overflows `width`: a column of `…` tells nothing.
    const MIN_CUT: usize = 10;
    let widest: Vec<usize> = (0..header.len())
        .map(|i| {
            rows.iter()
                .filter_map(|r| r.get(i))
                .map(|c| text::width(c))
                .chain([text::width(header[i])])
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut table = Table::new();
    let mut head = Row::from(header.to_vec());
    head.max_height(1);
    table
        .load_style(presets::NOTHING)
        .set_content_arrangement(ContentArrangement::Dynamic)
        .set_truncation_indicator("…")
        .set_width(u16::try_from(width).unwrap_or(u16::MAX))
        .set_header(head);
    for cells in rows {
        let mut row = Row::from(cells);
        row.max_height(1);
        table.add_row(row);
    }
    let columns = table.column_count();
    for (i, column) in table.column_iter_mut().enumerate() {
        column.set_padding((0, if i + 1 == columns { 0 } else { 2 }));
        if right.contains(&i) {
            column.set_cell_alignment(CellAlignment::Right);
        }
        if keep.contains(&i) {
            column.set_constraint(ColumnConstraint::ContentWidth);
        } else {
            let least = widest.get(i).copied().unwrap_or(0).min(MIN_CUT);
            let least = Width::Fixed(u16::try_from(least).unwrap_or(u16::MAX));
            column.set_constraint(ColumnConstraint::LowerBoundary(least));
        }
    }
    let mut out = text::trim_lines(&table.to_string());
    out.push('\n');
    out
}

/// One trace of a search answer.
#[derive(Debug, Clone, PartialEq)]
pub struct Hit {
    pub trace_id: String,
    pub root_service: String,
    pub root_name: String,
    pub start: u64,
    pub duration_ms: u64,
    /// Spans that matched, over all spansets; None for tag searches (no spansets).
    pub matched: Option<u64>,
}

/// The traces of a `/api/search` answer, newest first.
pub fn hits_from_json(body: &Value) -> Vec<Hit> {
    let mut hits: Vec<Hit> = array_of(&body["traces"])
        .iter()
        .map(|t| {
            let sets = array_of(&t["spanSets"]);
            let matched = if sets.is_empty() {
                t.get("spanSet").map(|s| u64_of(&s["matched"]))
            } else {
                Some(sets.iter().map(|s| u64_of(&s["matched"])).sum())
            };
            Hit {
                trace_id: str_of(&t["traceID"]).to_string(),
                root_service: str_of(&t["rootServiceName"]).to_string(),
                root_name: str_of(&t["rootTraceName"]).to_string(),
                start: u64_of(&t["startTimeUnixNano"]),
                duration_ms: u64_of(&t["durationMs"]),
                matched,
            }
        })
        .collect();
    hits.sort_by(|a, b| b.start.cmp(&a.start).then_with(|| a.trace_id.cmp(&b.trace_id)));
    hits
}

/// The search table and a count line.
pub fn render_search(hits: &[Hit], style: Style) -> String {
    if hits.is_empty() {
        return "no traces found\n".into();
    }
    let rows = hits
        .iter()
        .map(|h| {
            vec![
                h.trace_id.clone(),
                h.root_service.clone(),
                h.root_name.clone(),
                text::time_seconds(h.start),
                text::duration(h.duration_ms.saturating_mul(1_000_000)),
                h.matched.map_or_else(|| "-".into(), |m| m.to_string()),
            ]
        })
        .collect();
    let header = ["TRACE ID", "SERVICE", "ROOT NAME", "START", "DURATION", "MATCHED"];
    let mut out = grid(&header, rows, &[4, 5], &[0, 3, 4, 5], style.width);
    out.push_str(&format!("{}\n", text::count(hits.len() as u64, "trace")));
    out
}

/// Tag names by scope from a `/api/v2/search/tags` answer (or v1's flat `tagNames`), each
/// scope's names sorted and laid out in columns like `ls`.
pub fn render_tags(body: &Value, style: Style) -> String {
    let mut scopes: Vec<(String, Vec<String>)> = array_of(&body["scopes"])
        .iter()
        .map(|s| {
            let tags = array_of(&s["tags"]).iter().map(|t| str_of(t).to_string()).collect();
            (str_of(&s["name"]).to_string(), tags)
        })
        .collect();
    if let Some(flat) = body.get("tagNames") {
        scopes.push((
            "tags".into(),
            array_of(flat).iter().map(|t| str_of(t).to_string()).collect(),
        ));
    }
    scopes.retain(|(_, tags)| !tags.is_empty());
    if scopes.is_empty() {
        return "no tags found\n".into();
    }
    let mut out = String::new();
    for (i, (scope, mut tags)) in scopes.into_iter().enumerate() {
        if i > 0 {
            out.push('\n');
        }
        tags.sort();
        out.push_str(&style.paint(BOLD, &format!("{scope} ({})", tags.len())));
        out.push('\n');
        out.push_str(&columns(&tags, style.width));
    }
    out
}

/// `items` in as many columns as fit `width`, filled top to bottom, indented two spaces.
fn columns(items: &[String], width: usize) -> String {
    let cell = items.iter().map(|t| text::width(t)).max().unwrap_or(0) + 2;
    let per_row = (width.saturating_sub(2) / cell).max(1);
    let rows = items.len().div_ceil(per_row);
    let mut out = String::new();
    for r in 0..rows {
        let line: String = (0..per_row)
            .filter_map(|c| items.get(c * rows + r))
            .map(|t| text::pad_right(t, cell))
            .collect();
        out.push_str(&format!("  {}\n", line.trim_end()));
    }
    out
}

/// Values of a tag from a `/api/v2/search/tag/<tag>/values` answer, sorted, with their types.
pub fn render_values(body: &Value, style: Style) -> String {
    let mut values: Vec<(String, String)> = array_of(&body["tagValues"])
        .iter()
        .map(|v| match v {
            // v1 answers plain strings.
            Value::String(s) => (s.clone(), "string".into()),
            typed => (str_of(&typed["value"]).to_string(), str_of(&typed["type"]).to_string()),
        })
        .collect();
    if values.is_empty() {
        return "no values found\n".into();
    }
    values.sort();
    let count = values.len();
    let rows = values.into_iter().map(|(v, t)| vec![v, t]).collect();
    let mut out = grid(&["VALUE", "TYPE"], rows, &[], &[1], style.width);
    out.push_str(&format!("{}\n", text::count(count as u64, "value")));
    out
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn search_table() {
        let body = json!({"traces": [
            {"traceID": "2f3e0cee77ae5dc9c17ade3689eb2e54", "rootServiceName": "shop-backend",
             "rootTraceName": "update-billing", "startTimeUnixNano": "1684778327699392724", "durationMs": 557,
             "spanSets": [{"spans": [], "matched": 2}, {"spans": [], "matched": 1}]},
            {"traceID": "9a1b", "rootServiceName": "<root span not yet received>",
             "startTimeUnixNano": "1684778400000000000", "durationMs": 12, "spanSet": {"matched": 1}},
            {"traceID": "77", "rootServiceName": "cron", "rootTraceName": "nightly export of every invoice to the warehouse",
             "startTimeUnixNano": "1684770000000000000", "durationMs": 3723000}
        ], "metrics": {"inspectedTraces": 3}});
        let hits = hits_from_json(&body);
        assert_eq!(hits[0].trace_id, "9a1b", "newest first");
        insta::assert_snapshot!(render_search(&hits, Style::plain(100)));
        insta::assert_snapshot!("search_table_narrow", render_search(&hits, Style::plain(72)));
        assert_eq!(render_search(&[], Style::plain(80)), "no traces found\n");
    }

    #[test]
    fn tags_by_scope() {
        let body = json!({"scopes": [
            {"name": "resource", "tags": ["service.name", "k8s.pod.name", "host.name"]},
            {"name": "span", "tags": ["http.method", "http.status_code", "db.system", "peer.service", "http.route"]},
            {"name": "intrinsic", "tags": ["duration", "kind", "name", "status", "statusMessage", "rootName",
                "rootServiceName", "traceDuration", "event:name", "span:id", "trace:id"]},
            {"name": "event", "tags": []}
        ]});
        insta::assert_snapshot!(render_tags(&body, Style::plain(64)));
        let v1 = json!({"tagNames": ["b", "a"]});
        assert_eq!(render_tags(&v1, Style::plain(64)), "tags (2)\n  a  b\n");
    }

    #[test]
    fn values_with_types() {
        let body = json!({"tagValues": [
            {"type": "string", "value": "frontend"}, {"type": "string", "value": "cart"}, {"type": "int", "value": "200"}
        ]});
        insta::assert_snapshot!(render_values(&body, Style::plain(80)));
        assert_eq!(render_values(&json!({}), Style::plain(80)), "no values found\n");
    }
}
