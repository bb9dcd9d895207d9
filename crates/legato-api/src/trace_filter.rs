//! `q` on `GET /api/v2/traces/{id}` (Tempo 3.1): return only the spans that match one
//! TraceQL spanset filter, with `match_depth` levels of their descendants and, with
//! `keep_hierarchy`, `ancestor_depth` levels of their ancestors. The response says PARTIAL
//! when spans were left out.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use legato_proto::trace::ResourceSpans;
use legato_traceql::ast::{FieldExpr, Intrinsic, SpansetExpr};
use legato_traceql::eval::Plan;

use crate::error::ApiError;
use crate::search::{parse_query, plan};

/// What `q`, `keep_hierarchy`, `match_depth` and `ancestor_depth` asked for.
pub struct SpanFilter {
    plan: Arc<Plan>,
    keep_hierarchy: bool,
    /// Levels of descendants kept below a match; `None` = all.
    match_depth: Option<usize>,
    /// Levels of ancestors kept above a match (with `keep_hierarchy`); `None` = all.
    ancestor_depth: Option<usize>,
}

/// The spans kept of a trace, and how many it had.
pub struct Filtered {
    pub batches: Vec<ResourceSpans>,
    pub kept: usize,
    pub total: usize,
}

impl Filtered {
    /// The response's message when spans were left out.
    pub fn message(&self) -> Option<String> {
        (self.kept < self.total).then(|| format!("trace filtered by q: {} of {} spans returned", self.kept, self.total))
    }
}

impl SpanFilter {
    /// The filter the request asks for; `None` without `q`. A bad value is a 400 naming it.
    pub fn from_params(params: &HashMap<String, String>) -> Result<Option<Self>, ApiError> {
        let keep_hierarchy = match params.get("keep_hierarchy").map(|v| v.trim()) {
            None | Some("") => false,
            Some(v) => v.parse::<bool>().map_err(|_| {
                ApiError::BadRequest(format!(
                    "invalid keep_hierarchy parameter {v:?}: expected true or false"
                ))
            })?,
        };
        let match_depth = depth(params, "match_depth", Some(0))?;
        let ancestor_depth = depth(params, "ancestor_depth", None)?;
        let Some(q) = params.get("q").map(|q| q.trim()).filter(|q| !q.is_empty()) else {
            return Ok(None);
        };
        let query = parse_query(q)?;
        let single_filter = query.metrics.is_none()
            && query.pipeline.stages.is_empty()
            && matches!(query.pipeline.head, SpansetExpr::Filter(_));
        if !single_filter {
            return Err(ApiError::BadRequest(format!(
                "invalid q parameter {q:?}: trace by id takes one spanset filter such as {{ span.http.status_code >= 500 }}; pipelines, spanset operators, structural operators and metrics are not supported here"
            )));
        }
        if let Some(trace_level) = legato_traceql::eval::referenced_fields(&query)
            .iter()
            .find_map(trace_level_intrinsic)
        {
            return Err(ApiError::BadRequest(format!(
                "invalid q parameter {q:?}: {trace_level} is a trace-level intrinsic; q selects spans of one trace"
            )));
        }
        Ok(Some(Self {
            plan: plan(query)?,
            keep_hierarchy,
            match_depth,
            ancestor_depth,
        }))
    }

    /// Keeps the spans of `batches` the filter selects; resources and scopes left without
    /// spans are dropped.
    pub fn apply(&self, trace_id: [u8; 16], mut batches: Vec<ResourceSpans>) -> Filtered {
        let mut trace = legato_proto::span_view::trace_data(trace_id, &batches);
        trace.link_tree();
        let total = legato_proto::span_count(&batches);
        let matched: Vec<usize> = self.plan.eval(&trace).into_iter().flat_map(|set| set.spans).collect();
        let parents: Vec<Option<usize>> = trace.spans.iter().map(|s| s.parent).collect();
        let kept: HashSet<[u8; 8]> = self
            .select(&parents, &matched)
            .into_iter()
            .map(|i| trace.spans[i].span_id)
            .collect();
        for rs in &mut batches {
            for ss in &mut rs.scope_spans {
                ss.spans
                    .retain(|s| <[u8; 8]>::try_from(s.span_id.as_slice()).is_ok_and(|id| kept.contains(&id)));
            }
            rs.scope_spans.retain(|ss| !ss.spans.is_empty());
        }
        batches.retain(|rs| !rs.scope_spans.is_empty());
        let kept = legato_proto::span_count(&batches);
        Filtered { batches, kept, total }
    }

    /// The matched spans, their descendants to `match_depth` and, with `keep_hierarchy`,
    /// their ancestors to `ancestor_depth` (indices into `parents`).
    fn select(&self, parents: &[Option<usize>], matched: &[usize]) -> HashSet<usize> {
        let mut children: Vec<Vec<usize>> = vec![Vec::new(); parents.len()];
        for (i, p) in parents.iter().enumerate() {
            if let Some(p) = p {
                children[*p].push(i);
            }
        }
        let mut kept: HashSet<usize> = matched.iter().copied().collect();
        // Descendants, level by level (a parent cycle stops at spans already kept).
        let mut level: Vec<usize> = matched.to_vec();
        let mut depth = 0;
        while !level.is_empty() && self.match_depth.is_none_or(|max| depth < max) {
            level = level
                .iter()
                .flat_map(|i| &children[*i])
                .copied()
                .filter(|c| kept.insert(*c))
                .collect();
            depth += 1;
        }
        if self.keep_hierarchy {
            for &m in matched {
                let (mut at, mut up) = (m, 0);
                // `up` bounded by the span count: a parent cycle ends too.
                while let Some(p) = parents[at] {
                    if up >= parents.len() || self.ancestor_depth.is_some_and(|max| up >= max) {
                        break;
                    }
                    kept.insert(p);
                    at = p;
                    up += 1;
                }
            }
        }
        kept
    }
}

/// `match_depth` / `ancestor_depth`: an integer ≥ -1, where -1 means all levels.
fn depth(params: &HashMap<String, String>, key: &str, default: Option<usize>) -> Result<Option<usize>, ApiError> {
    match params.get(key).map(|v| v.trim()).filter(|v| !v.is_empty()) {
        None => Ok(default),
        Some(v) => match v.parse::<i64>() {
            Ok(-1) => Ok(None),
            Ok(n) if n >= 0 => Ok(Some(n as usize)),
            _ => Err(ApiError::BadRequest(format!(
                "invalid {key} parameter {v:?}: expected an integer >= -1 (-1 = all levels)"
            ))),
        },
    }
}

fn trace_level_intrinsic(e: &FieldExpr) -> Option<&'static str> {
    match e {
        FieldExpr::Intrinsic(Intrinsic::TraceDuration) => Some("trace:duration"),
        FieldExpr::Intrinsic(Intrinsic::RootName) => Some("trace:rootName"),
        FieldExpr::Intrinsic(Intrinsic::RootService) => Some("trace:rootService"),
        FieldExpr::Intrinsic(Intrinsic::TraceId) => Some("trace:id"),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn filter(params: &[(&str, &str)]) -> SpanFilter {
        let params = params.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        SpanFilter::from_params(&params).unwrap().unwrap()
    }

    /// 0 ─ 1 ─ 2 ─ 3, and 0 ─ 4: a chain and a sibling branch.
    const PARENTS: [Option<usize>; 5] = [None, Some(0), Some(1), Some(2), Some(0)];

    fn select(params: &[(&str, &str)], matched: &[usize]) -> Vec<usize> {
        let mut kept: Vec<usize> = filter(params).select(&PARENTS, matched).into_iter().collect();
        kept.sort();
        kept
    }

    #[test]
    fn depths_bound_descendants_and_ancestors() {
        let q = ("q", "{ }");
        assert_eq!(select(&[q], &[1]), vec![1]);
        assert_eq!(select(&[q, ("match_depth", "1")], &[1]), vec![1, 2]);
        assert_eq!(select(&[q, ("match_depth", "-1")], &[1]), vec![1, 2, 3]);
        assert_eq!(select(&[q, ("keep_hierarchy", "true")], &[3]), vec![0, 1, 2, 3]);
        assert_eq!(
            select(&[q, ("keep_hierarchy", "true"), ("ancestor_depth", "1")], &[3]),
            vec![2, 3]
        );
        assert_eq!(
            select(&[q, ("ancestor_depth", "1")], &[3]),
            vec![3],
            "ancestors only with keep_hierarchy"
        );
    }

    #[test]
    fn only_single_span_filters_are_accepted() {
        let refused = |q: &str| {
            let params = HashMap::from([("q".to_string(), q.to_string())]);
            match SpanFilter::from_params(&params) {
                Err(ApiError::BadRequest(message)) => message,
                Err(other) => panic!("{q}: {other}"),
                Ok(_) => panic!("{q} was accepted"),
            }
        };
        assert!(refused("{ .a = 1 } | count() > 1").contains("one spanset filter"));
        assert!(refused("{ .a = 1 } >> { .b = 2 }").contains("one spanset filter"));
        assert!(refused("{ } | rate()").contains("one spanset filter"));
        assert!(refused("{ trace:duration > 1s }").contains("trace:duration"));
        assert!(refused("{ .a = }").contains("invalid TraceQL"));
        let params = HashMap::from([
            ("q".to_string(), "{ }".to_string()),
            ("match_depth".to_string(), "-2".to_string()),
        ]);
        assert!(matches!(SpanFilter::from_params(&params), Err(ApiError::BadRequest(m)) if m.contains("match_depth")));
        assert!(SpanFilter::from_params(&HashMap::new()).unwrap().is_none());
    }
}
