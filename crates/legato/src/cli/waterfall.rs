//! `legato trace`: a trace drawn as a waterfall. Rows in tree order (a parent before its
//! children, children by start time, indented with tree lines), then service, duration and a
//! bar on a time axis shared by all rows and scaled to the width. Error spans carry `✗` and
//! are red when colour is on.

use std::collections::HashMap;

use serde_json::Value;

use super::json::{array_of, attribute, str_of, u64_of};
use super::text::{self, BOLD, DIM, RED, Style, pad_left, pad_right};

/// One span as the waterfall needs it. Ids are kept as the server spelled them (base64 in
/// Tempo's JSON): they only link children to parents.
#[derive(Debug, Clone, PartialEq)]
pub struct Span {
    pub id: String,
    pub parent: String,
    pub service: String,
    pub name: String,
    pub start: u64,
    pub end: u64,
    pub error: bool,
}

/// The spans of a trace-by-id answer: v2 (`{"trace":{"resourceSpans":..}}`), v1
/// (`{"batches":..}`) or bare OTLP (`{"resourceSpans":..}`).
pub fn spans_from_json(body: &Value) -> Vec<Span> {
    let trace = body.get("trace").unwrap_or(body);
    let batches = trace.get("resourceSpans").or_else(|| trace.get("batches"));
    let mut spans = Vec::new();
    for batch in batches.map(array_of).unwrap_or_default() {
        let service = attribute(&batch["resource"]["attributes"], "service.name")
            .map(|v| str_of(&v["stringValue"]).to_string())
            .unwrap_or_default();
        let scopes = batch
            .get("scopeSpans")
            .or_else(|| batch.get("instrumentationLibrarySpans"));
        for scope in scopes.map(array_of).unwrap_or_default() {
            for span in array_of(&scope["spans"]) {
                let code = &span["status"]["code"];
                spans.push(Span {
                    id: str_of(&span["spanId"]).to_string(),
                    parent: str_of(&span["parentSpanId"]).to_string(),
                    service: service.clone(),
                    name: str_of(&span["name"]).to_string(),
                    start: u64_of(&span["startTimeUnixNano"]),
                    end: u64_of(&span["endTimeUnixNano"]),
                    error: code == "STATUS_CODE_ERROR" || code == 2,
                });
            }
        }
    }
    spans
}

/// One row: the span and the tree lines drawn before its name.
struct Row<'a> {
    span: &'a Span,
    prefix: String,
}

/// Spans in tree order. Roots are spans without a parent in the trace (a missing parent
/// makes a span a root, so partial traces still draw); spans caught in a parent cycle come
/// last, as roots.
fn tree_order<'a>(spans: &'a [Span]) -> Vec<Row<'a>> {
    let index: HashMap<&str, usize> = spans.iter().enumerate().map(|(i, s)| (s.id.as_str(), i)).collect();
    let mut children: Vec<Vec<usize>> = vec![Vec::new(); spans.len()];
    let mut roots = Vec::new();
    for (i, span) in spans.iter().enumerate() {
        match index.get(span.parent.as_str()) {
            Some(&p) if !span.parent.is_empty() && p != i => children[p].push(i),
            _ => roots.push(i),
        }
    }
    let by_start = |a: &usize, b: &usize| (spans[*a].start, &spans[*a].name).cmp(&(spans[*b].start, &spans[*b].name));
    roots.sort_by(by_start);
    for list in &mut children {
        list.sort_by(by_start);
    }
    let mut rows = Vec::with_capacity(spans.len());
    let mut seen = vec![false; spans.len()];
    for root in roots {
        walk(root, spans, &children, &mut seen, &mut rows);
    }
    let mut cyclic: Vec<usize> = (0..spans.len()).filter(|i| !seen[*i]).collect();
    cyclic.sort_by(by_start);
    for span in cyclic {
        walk(span, spans, &children, &mut seen, &mut rows);
    }
    rows
}

/// Appends `start` and its descendants (depth first, children in order) to `rows`.
fn walk<'a>(start: usize, spans: &'a [Span], children: &[Vec<usize>], seen: &mut [bool], rows: &mut Vec<Row<'a>>) {
    // (span, tree lines before its name, lines its children continue with)
    let mut stack = vec![(start, String::new(), String::new())];
    while let Some((i, prefix, inherited)) = stack.pop() {
        if std::mem::replace(&mut seen[i], true) {
            continue;
        }
        rows.push(Row {
            span: &spans[i],
            prefix,
        });
        let kids = &children[i];
        for (n, &child) in kids.iter().enumerate().rev() {
            let last = n + 1 == kids.len();
            let branch = if last { "└─ " } else { "├─ " };
            let below = if last { "   " } else { "│  " };
            stack.push((child, format!("{inherited}{branch}"), format!("{inherited}{below}")));
        }
    }
}

/// Widths of the columns in terminal columns.
struct Layout {
    label: usize,
    service: usize,
    duration: usize,
    bar: usize,
}

const GAP: &str = "  ";
const MIN_BAR: usize = 10;
const MIN_LABEL: usize = 12;

impl Layout {
    fn new(rows: &[Row<'_>], width: usize) -> Self {
        let widest_label = rows
            .iter()
            .map(|r| text::width(&r.prefix) + text::width(&label_name(r.span)))
            .max()
            .unwrap_or(0);
        let label = widest_label.clamp(MIN_LABEL, (width * 2 / 5).max(MIN_LABEL));
        let widest_service = rows.iter().map(|r| text::width(&r.span.service)).max().unwrap_or(0);
        let service = widest_service.clamp("service".len(), 24);
        let duration = 8;
        let fixed = label + service + duration + 3 * GAP.len();
        let mut layout = Self {
            label,
            service,
            duration,
            bar: width.saturating_sub(fixed),
        };
        if layout.bar < MIN_BAR {
            let short = MIN_BAR - layout.bar;
            layout.label = layout.label.saturating_sub(short).max(MIN_LABEL);
            layout.bar = width
                .saturating_sub(layout.label + service + duration + 3 * GAP.len())
                .max(MIN_BAR);
        }
        layout
    }
}

fn label_name(span: &Span) -> String {
    let name = if span.name.is_empty() { "<no name>" } else { &span.name };
    if span.error {
        format!("✗ {name}")
    } else {
        name.to_string()
    }
}

/// The waterfall of `spans` as text `style.width` columns wide.
pub fn render(trace_id: &str, spans: &[Span], style: Style) -> String {
    let rows = tree_order(spans);
    let start = spans.iter().map(|s| s.start).min().unwrap_or(0);
    let end = spans.iter().map(|s| s.end.max(s.start)).max().unwrap_or(0);
    let total = end.saturating_sub(start);
    let layout = Layout::new(&rows, style.width);
    let mut services: Vec<&str> = Vec::new();
    for row in &rows {
        if !services.contains(&row.span.service.as_str()) {
            services.push(&row.span.service);
        }
    }
    let mut out = title(trace_id, spans, services.len(), total, start, style);
    let header = format!(
        "{}{GAP}{}{GAP}{}{GAP}{}",
        pad_right("span", layout.label),
        pad_right("service", layout.service),
        pad_left("duration", layout.duration),
        axis(total, layout.bar),
    );
    out.push_str(&style.paint(BOLD, header.trim_end()));
    out.push('\n');
    for row in &rows {
        let span = row.span;
        let name_room = layout.label.saturating_sub(text::width(&row.prefix));
        let mut name = pad_right(&label_name(span), name_room);
        let mut bar = bar(span.start - start, span.end.max(span.start) - start, total, layout.bar);
        if span.error {
            name = style.paint(RED, &name);
            bar = style.paint(RED, &bar);
        } else {
            let palette = ["36", "32", "33", "34", "35"];
            let n = services.iter().position(|s| *s == span.service).unwrap_or(0);
            bar = style.paint(palette[n % palette.len()], &bar);
        }
        let line = format!(
            "{}{name}{GAP}{}{GAP}{}{GAP}{bar}",
            style.paint(DIM, &row.prefix),
            pad_right(&span.service, layout.service),
            pad_left(&text::duration(span.end.saturating_sub(span.start)), layout.duration),
        );
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

/// `Trace <id>` and a summary (spans, services, errors, duration, start), on one line when
/// it fits the width, else on two; then a blank line.
fn title(trace_id: &str, spans: &[Span], services: usize, total: u64, start: u64, style: Style) -> String {
    let errors = spans.iter().filter(|s| s.error).count() as u64;
    let error_text = (errors > 0).then(|| text::count(errors, "error"));
    let parts: Vec<String> = [
        Some(text::count(spans.len() as u64, "span")),
        Some(text::count(services as u64, "service")),
        error_text.clone(),
        Some(text::duration(total)),
        Some(text::time_millis(start)),
    ]
    .into_iter()
    .flatten()
    .collect();
    let summary = parts.join(" · ");
    let heading = format!("Trace {trace_id}");
    let fits = text::width(&heading) + 2 + text::width(&summary) <= style.width;
    let summary = match &error_text {
        Some(e) => summary.replacen(e, &style.paint(RED, e), 1),
        None => summary,
    };
    let between = if fits { "  " } else { "\n" };
    format!("{}{between}{summary}\n\n", style.paint(BOLD, &heading))
}

/// Cells `from..to` (nanoseconds after the trace start) of a `cells`-wide axis spanning
/// `total`: at least one cell, so instant spans still show where they happened.
fn bar(from: u64, to: u64, total: u64, cells: usize) -> String {
    let scale = |t: u64, round_up: bool| -> usize {
        if total == 0 {
            return 0;
        }
        let exact = u128::from(t) * cells as u128;
        let cell = if round_up {
            exact.div_ceil(u128::from(total))
        } else {
            exact / u128::from(total)
        };
        cell.min(cells as u128) as usize
    };
    let first = scale(from, false).min(cells.saturating_sub(1));
    let last = scale(to, true).max(first + 1).min(cells);
    format!("{}{}", " ".repeat(first), "█".repeat(last - first))
}

/// Labels over the bars: `0` at the left, the midpoint, the total at the right.
fn axis(total: u64, cells: usize) -> String {
    let mut line: Vec<char> = vec![' '; cells];
    let mut put = |at: usize, label: &str| {
        for (i, c) in label.chars().enumerate() {
            if let Some(slot) = line.get_mut(at + i) {
                *slot = c;
            }
        }
    };
    let end = text::duration(total);
    let mid = text::duration(total / 2);
    put(0, "0");
    if cells >= end.chars().count() + mid.chars().count() + 6 {
        put(cells / 2 - mid.chars().count() / 2, &mid);
    }
    if cells > end.chars().count() + 2 {
        put(cells - end.chars().count(), &end);
    }
    line.into_iter().collect()
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    const T0: u64 = 1_700_000_000_000_000_000;
    const MS: u64 = 1_000_000;

    fn span(id: &str, parent: &str, service: &str, name: &str, from_ms: u64, to_ms: u64, error: bool) -> Span {
        Span {
            id: id.into(),
            parent: parent.into(),
            service: service.into(),
            name: name.into(),
            start: T0 + from_ms * MS,
            end: T0 + to_ms * MS,
            error,
        }
    }

    /// A checkout: the frontend calls cart (which reads redis twice) and payment, whose
    /// charge fails; spans arrive out of order, as they do from several services.
    pub(crate) fn checkout() -> Vec<Span> {
        vec![
            span("c", "a", "payment", "POST /charge", 420, 1180, false),
            span("a", "", "frontend", "GET /checkout", 0, 1200, false),
            span("b", "a", "cart", "GetCart", 20, 400, false),
            span("b2", "b", "cart", "redis HGETALL", 40, 45, false),
            span("b1", "b", "cart", "redis GET", 30, 34, false),
            span("d", "c", "payment", "charge card", 450, 1150, true),
        ]
    }

    #[test]
    fn waterfall_of_a_checkout() {
        insta::assert_snapshot!(render(
            "4bf92f3577b34da6a3ce929d0e0e4736",
            &checkout(),
            Style::plain(100)
        ));
    }

    #[test]
    fn narrow_waterfall_keeps_the_bars() {
        insta::assert_snapshot!(render(
            "4bf92f3577b34da6a3ce929d0e0e4736",
            &checkout(),
            Style::plain(60)
        ));
    }

    #[test]
    fn orphans_and_cycles_still_draw_every_span() {
        let spans = vec![
            span("x", "missing", "svc", "orphan", 10, 20, false),
            span("p", "q", "svc", "loop-a", 0, 5, false),
            span("q", "p", "svc", "loop-b", 1, 2, false),
        ];
        let rows = tree_order(&spans);
        let names: Vec<&str> = rows.iter().map(|r| r.span.name.as_str()).collect();
        assert_eq!(names, ["orphan", "loop-a", "loop-b"]);
    }

    #[test]
    fn colour_marks_errors_red() {
        let text = render(
            "ab",
            &checkout(),
            Style {
                width: 100,
                color: true,
            },
        );
        assert!(text.contains("\x1b[31m✗ charge card"), "{text}");
        assert!(!render("ab", &checkout(), Style::plain(100)).contains('\x1b'));
    }

    #[test]
    fn spans_from_v1_and_v2_json() {
        let batch = json!({
            "resource": {"attributes": [{"key": "service.name", "value": {"stringValue": "api"}}]},
            "scopeSpans": [{"spans": [
                {"spanId": "AAAAAAAAAAE=", "name": "root", "startTimeUnixNano": "1000", "endTimeUnixNano": "3000", "status": {}},
                {"spanId": "AAAAAAAAAAI=", "parentSpanId": "AAAAAAAAAAE=", "name": "child",
                 "startTimeUnixNano": "1500", "endTimeUnixNano": "2000", "status": {"code": "STATUS_CODE_ERROR"}}
            ]}]
        });
        let v2 = spans_from_json(&json!({"trace": {"resourceSpans": [batch.clone()]}}));
        let v1 = spans_from_json(&json!({"batches": [batch]}));
        assert_eq!(v1, v2);
        assert_eq!(v2.len(), 2);
        assert_eq!((v2[1].service.as_str(), v2[1].error, v2[1].start), ("api", true, 1500));
        assert!(spans_from_json(&json!({"trace": {}})).is_empty());
    }
}
