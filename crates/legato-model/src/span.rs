//! A flat, query-friendly view of one trace: what TraceQL evaluates and search results are
//! built from. Both live data (OTLP) and blocks (Parquet rows) convert into it.

use std::sync::Arc;

/// An attribute value. Arrays keep their elements; maps and bytes become strings.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub enum AttrValue {
    Str(String),
    Int(i64),
    Float(f64),
    Bool(bool),
    Array(Vec<AttrValue>),
}

pub type Attrs = Vec<(String, AttrValue)>;

#[derive(Debug, Clone, PartialEq, Default)]
pub struct EventData {
    pub name: String,
    pub time_unix_nano: u64,
    pub attrs: Attrs,
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct LinkData {
    pub trace_id: Vec<u8>,
    pub span_id: Vec<u8>,
    pub attrs: Attrs,
}

/// Resource and scope of a span, shared by the spans of one batch.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct SpanOrigin {
    pub service_name: String,
    pub resource: Attrs,
    pub scope_name: String,
    pub scope_version: String,
    pub scope_attrs: Attrs,
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct SpanData {
    pub span_id: [u8; 8],
    pub parent_span_id: Vec<u8>,
    /// Index of the parent in `TraceData::spans`.
    pub parent: Option<usize>,
    /// Nested-set numbers: a descends from b iff b.left < a.left && a.right < b.right.
    pub nested_left: i32,
    pub nested_right: i32,
    pub name: String,
    pub kind: i32,
    pub status_code: i32,
    pub status_message: String,
    pub start_unix_nano: u64,
    pub end_unix_nano: u64,
    pub attrs: Attrs,
    pub events: Vec<EventData>,
    pub links: Vec<LinkData>,
    pub origin: Arc<SpanOrigin>,
}

impl SpanData {
    pub fn duration_nanos(&self) -> u64 {
        self.end_unix_nano.saturating_sub(self.start_unix_nano)
    }
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct TraceData {
    pub trace_id: [u8; 16],
    pub spans: Vec<SpanData>,
}

impl TraceData {
    /// The root span: no parent in the trace, earliest first.
    pub fn root(&self) -> Option<&SpanData> {
        self.spans
            .iter()
            .filter(|s| s.parent_span_id.is_empty())
            .min_by_key(|s| s.start_unix_nano)
    }

    pub fn start_unix_nano(&self) -> u64 {
        self.spans.iter().map(|s| s.start_unix_nano).min().unwrap_or(0)
    }

    pub fn end_unix_nano(&self) -> u64 {
        self.spans.iter().map(|s| s.end_unix_nano).max().unwrap_or(0)
    }

    /// Fills `parent`, and the nested-set numbers when they are not set, from parent ids.
    pub fn link_tree(&mut self) {
        let index: std::collections::HashMap<[u8; 8], usize> =
            self.spans.iter().enumerate().map(|(i, s)| (s.span_id, i)).collect();
        for i in 0..self.spans.len() {
            let parent = self.spans[i]
                .parent_span_id
                .as_slice()
                .try_into()
                .ok()
                .and_then(|p: [u8; 8]| index.get(&p).copied())
                .filter(|p| *p != i);
            self.spans[i].parent = parent;
        }
        if self.spans.iter().all(|s| s.nested_left == 0) {
            let parents: Vec<Option<usize>> = self.spans.iter().map(|s| s.parent).collect();
            let (left, right) = nested_set(&parents);
            for (i, s) in self.spans.iter_mut().enumerate() {
                s.nested_left = left[i];
                s.nested_right = right[i];
            }
        }
    }
}

/// Nested-set numbers (pre-order entry/exit counters) for a forest given parent indices.
/// Spans caught in a parent cycle are numbered as roots.
pub fn nested_set(parents: &[Option<usize>]) -> (Vec<i32>, Vec<i32>) {
    let n = parents.len();
    let mut children: Vec<Vec<usize>> = vec![Vec::new(); n];
    let mut roots = Vec::new();
    for (i, p) in parents.iter().enumerate() {
        match p {
            Some(p) => children[*p].push(i),
            None => roots.push(i),
        }
    }
    let (mut left, mut right) = (vec![0i32; n], vec![0i32; n]);
    let mut visited = vec![false; n];
    let mut counter = 0i32;
    for start in roots.into_iter().chain(0..n) {
        if visited[start] {
            continue;
        }
        let mut stack = vec![(start, false)];
        while let Some((node, exiting)) = stack.pop() {
            if exiting {
                counter += 1;
                right[node] = counter;
                continue;
            }
            if visited[node] {
                continue;
            }
            visited[node] = true;
            counter += 1;
            left[node] = counter;
            stack.push((node, true));
            for &c in children[node].iter().rev() {
                if !visited[c] {
                    stack.push((c, false));
                }
            }
        }
    }
    (left, right)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nested_set_numbers_a_tree() {
        let (l, r) = nested_set(&[None, Some(0), Some(0), Some(1)]);
        assert_eq!((l[0], r[0]), (1, 8));
        assert!(l[3] > l[1] && r[3] < r[1]);
        assert!(l[2] > r[1]);
        let (l, r) = nested_set(&[Some(1), Some(0)]);
        assert!(l.iter().chain(&r).all(|v| *v > 0));
    }
}
