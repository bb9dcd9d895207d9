//! Tag names and values seen in traces, per scope, for autocomplete (`/api/search/tags`,
//! `/api/v2/search/tag/{tag}/values`).

use std::collections::{BTreeMap, BTreeSet};

use legato_model::span::{AttrValue, TraceData};

use crate::ast::{AttributeScope, FieldExpr, Intrinsic};
use crate::value::Value;

/// Distinct values kept per tag; beyond this a tag's value list is marked truncated.
pub const MAX_VALUES_PER_TAG: usize = 1000;

pub const SCOPES: &[&str] = &["resource", "span", "event", "link", "instrumentation"];

/// Intrinsics listed by `/api/v2/search/tags` (Tempo's static list).
pub const INTRINSICS: &[&str] = &[
    "duration",
    "name",
    "status",
    "statusMessage",
    "kind",
    "rootServiceName",
    "rootName",
    "traceDuration",
    "event:name",
    "event:timeSinceStart",
    "link:spanID",
    "link:traceID",
    "instrumentation:name",
    "instrumentation:version",
    "trace:id",
    "span:id",
    "span:parentID",
    "span:status",
    "span:statusMessage",
    "span:duration",
    "span:name",
    "span:kind",
    "trace:rootName",
    "trace:rootService",
    "trace:duration",
];

/// A typed value as the v2 tag-values API shows it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct TagValue {
    pub type_name: &'static str,
    pub value: String,
}

/// Calls `f(type, text)` for a value, or for each element of an array, formatting numbers
/// into `scratch` so that nothing is allocated for a value already known.
fn visit_values(v: &AttrValue, scratch: &mut String, f: &mut impl FnMut(&'static str, &str)) {
    use std::fmt::Write as _;
    match v {
        AttrValue::Str(s) => f("string", s),
        AttrValue::Int(i) => {
            scratch.clear();
            let _ = write!(scratch, "{i}");
            f("int", scratch);
        }
        AttrValue::Float(x) => {
            scratch.clear();
            let _ = write!(scratch, "{x}");
            f("float", scratch);
        }
        AttrValue::Bool(b) => f("bool", if *b { "true" } else { "false" }),
        AttrValue::Array(items) => {
            for item in items {
                visit_values(item, scratch, f);
            }
        }
    }
}

/// Looks a `TagValue` up by borrowed parts, so checking a known value allocates nothing.
trait TagKey {
    fn parts(&self) -> (&str, &str);
}

impl TagKey for TagValue {
    fn parts(&self) -> (&str, &str) {
        (self.type_name, &self.value)
    }
}

impl TagKey for (&'static str, &str) {
    fn parts(&self) -> (&str, &str) {
        (self.0, self.1)
    }
}

impl<'a> std::borrow::Borrow<dyn TagKey + 'a> for TagValue {
    fn borrow(&self) -> &(dyn TagKey + 'a) {
        self
    }
}

impl PartialEq for dyn TagKey + '_ {
    fn eq(&self, other: &Self) -> bool {
        self.parts() == other.parts()
    }
}

impl Eq for dyn TagKey + '_ {}

impl PartialOrd for dyn TagKey + '_ {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for dyn TagKey + '_ {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.parts().cmp(&other.parts())
    }
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct ValueSet {
    pub values: BTreeSet<TagValue>,
    pub truncated: bool,
}

impl ValueSet {
    /// Adds a value given by parts; allocates only when it is new.
    fn insert_parts(&mut self, type_name: &'static str, value: &str) {
        let key: &dyn TagKey = &(type_name, value);
        if self.values.contains(key) {
            return;
        }
        if self.values.len() >= MAX_VALUES_PER_TAG {
            self.truncated = true;
            return;
        }
        self.values.insert(TagValue {
            type_name,
            value: value.to_string(),
        });
    }
}

/// scope → tag → values. Intrinsic values (span names, root names) sit under `intrinsic`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TagSummary {
    pub scopes: BTreeMap<&'static str, BTreeMap<String, ValueSet>>,
}

impl TagSummary {
    /// Adds one attribute value (each element of an array) under `scope` and `key`.
    pub fn add(&mut self, scope: &'static str, key: &str, value: &AttrValue) {
        let Some(set) = self.value_set(scope, key) else { return };
        let mut scratch = String::new();
        visit_values(value, &mut scratch, &mut |t, v| set.insert_parts(t, v));
    }

    /// Adds a string value without building an `AttrValue`.
    pub fn add_str(&mut self, scope: &'static str, key: &str, value: &str) {
        if let Some(set) = self.value_set(scope, key) {
            set.insert_parts("string", value);
        }
    }

    /// The value set of a tag, `None` when it is already truncated.
    fn value_set(&mut self, scope: &'static str, key: &str) -> Option<&mut ValueSet> {
        let tags = self.scopes.entry(scope).or_default();
        // Look up before inserting: the key is almost always known already, and allocating
        // it per attribute showed up in flush profiles.
        if !tags.contains_key(key) {
            tags.insert(key.to_string(), ValueSet::default());
        }
        tags.get_mut(key).filter(|set| !set.truncated)
    }

    /// Adds the spans `spans` of `trace` (all spans when `None`).
    pub fn add_trace(&mut self, trace: &TraceData, spans: Option<&[usize]>) {
        let all: Vec<usize>;
        let spans = match spans {
            Some(s) => s,
            None => {
                all = (0..trace.spans.len()).collect();
                &all
            }
        };
        if let Some(root) = trace.root() {
            self.add_str("intrinsic", "rootName", &root.name);
            self.add_str("intrinsic", "rootServiceName", &root.origin.service_name);
        }
        // Spans of one resource and scope share their origin: add its attributes once.
        let mut last_origin: Option<&std::sync::Arc<legato_model::span::SpanOrigin>> = None;
        for &i in spans {
            let s = &trace.spans[i];
            self.add_str("intrinsic", "name", &s.name);
            if !s.status_message.is_empty() {
                self.add_str("intrinsic", "statusMessage", &s.status_message);
            }
            for (k, v) in &s.attrs {
                self.add("span", k, v);
            }
            if !last_origin.is_some_and(|o| std::sync::Arc::ptr_eq(o, &s.origin)) {
                last_origin = Some(&s.origin);
                for (k, v) in &s.origin.resource {
                    self.add("resource", k, v);
                }
                for (k, v) in &s.origin.scope_attrs {
                    self.add("instrumentation", k, v);
                }
                if !s.origin.scope_name.is_empty() {
                    self.add_str("intrinsic", "instrumentation:name", &s.origin.scope_name);
                }
            }
            for e in &s.events {
                self.add_str("intrinsic", "event:name", &e.name);
                for (k, v) in &e.attrs {
                    self.add("event", k, v);
                }
            }
            for l in &s.links {
                for (k, v) in &l.attrs {
                    self.add("link", k, v);
                }
            }
        }
    }

    pub fn merge(&mut self, other: &TagSummary) {
        for (scope, tags) in &other.scopes {
            let mine = self.scopes.entry(scope).or_default();
            for (tag, set) in tags {
                let target = mine.entry(tag.clone()).or_default();
                target.truncated |= set.truncated;
                for v in &set.values {
                    target.insert_parts(v.type_name, &v.value);
                }
            }
        }
    }

    /// Tag names of a scope (attribute scopes only; intrinsics are a static list).
    pub fn names(&self, scope: &str) -> Vec<String> {
        self.scopes
            .get(scope)
            .map(|t| t.keys().cloned().collect())
            .unwrap_or_default()
    }

    /// Values of a tag identified by a TraceQL field (`resource.service.name`, `.x`, `name`).
    pub fn values(&self, field: &FieldExpr) -> Vec<TagValue> {
        let mut out: BTreeSet<TagValue> = BTreeSet::new();
        let mut take = |scope: &str, key: &str| {
            if let Some(set) = self.scopes.get(scope).and_then(|t| t.get(key)) {
                out.extend(set.values.iter().cloned());
            }
        };
        match field {
            FieldExpr::Attribute(a) => match a.scope {
                AttributeScope::Unscoped => {
                    for scope in SCOPES {
                        take(scope, &a.name);
                    }
                }
                AttributeScope::Span => take("span", &a.name),
                AttributeScope::Resource => take("resource", &a.name),
                AttributeScope::Event => take("event", &a.name),
                AttributeScope::Link => take("link", &a.name),
                AttributeScope::Instrumentation => take("instrumentation", &a.name),
            },
            FieldExpr::Intrinsic(i) => match i {
                Intrinsic::Name => take("intrinsic", "name"),
                Intrinsic::StatusMessage => take("intrinsic", "statusMessage"),
                Intrinsic::RootName => take("intrinsic", "rootName"),
                Intrinsic::RootService => take("intrinsic", "rootServiceName"),
                Intrinsic::EventName => take("intrinsic", "event:name"),
                Intrinsic::InstrumentationName => take("intrinsic", "instrumentation:name"),
                Intrinsic::Status => {
                    for v in ["ok", "error", "unset"] {
                        out.insert(TagValue {
                            type_name: "keyword",
                            value: v.into(),
                        });
                    }
                }
                Intrinsic::Kind => {
                    for v in ["client", "server", "producer", "consumer", "internal", "unspecified"] {
                        out.insert(TagValue {
                            type_name: "keyword",
                            value: v.into(),
                        });
                    }
                }
                _ => {}
            },
            _ => {}
        }
        out.into_iter().collect()
    }
}

/// Type name of a literal, for callers that turn `Value`s into tag values.
pub fn value_type(v: &Value) -> &'static str {
    v.type_name()
}

/// The stored form of a summary (`tags.json`): scope → tag → [[type, value], ...].
#[derive(serde::Serialize, serde::Deserialize)]
struct Stored {
    version: u32,
    scopes: BTreeMap<String, BTreeMap<String, StoredSet>>,
}

#[derive(serde::Serialize, serde::Deserialize)]
struct StoredSet {
    values: Vec<(String, String)>,
    #[serde(default)]
    truncated: bool,
}

const TYPES: &[&str] = &["string", "int", "float", "bool", "duration", "keyword"];
const SCOPE_NAMES: &[&str] = &["resource", "span", "event", "link", "instrumentation", "intrinsic"];

impl TagSummary {
    pub fn to_json(&self) -> Vec<u8> {
        let stored = Stored {
            version: 1,
            scopes: self
                .scopes
                .iter()
                .map(|(scope, tags)| {
                    let tags = tags
                        .iter()
                        .map(|(tag, set)| {
                            let values = set
                                .values
                                .iter()
                                .map(|v| (v.type_name.to_string(), v.value.clone()))
                                .collect();
                            (
                                tag.clone(),
                                StoredSet {
                                    values,
                                    truncated: set.truncated,
                                },
                            )
                        })
                        .collect();
                    (scope.to_string(), tags)
                })
                .collect(),
        };
        serde_json::to_vec(&stored).unwrap_or_default()
    }

    /// Reads `tags.json`; `None` when it is not a summary this build understands.
    pub fn from_json(bytes: &[u8]) -> Option<Self> {
        let stored: Stored = serde_json::from_slice(bytes).ok()?;
        if stored.version != 1 {
            return None;
        }
        let mut summary = TagSummary::default();
        for (scope, tags) in stored.scopes {
            let scope = *SCOPE_NAMES.iter().find(|s| **s == scope)?;
            let target = summary.scopes.entry(scope).or_default();
            for (tag, set) in tags {
                let values = set
                    .values
                    .into_iter()
                    .filter_map(|(t, v)| {
                        Some(TagValue {
                            type_name: TYPES.iter().find(|x| **x == t)?,
                            value: v,
                        })
                    })
                    .collect();
                target.insert(
                    tag,
                    ValueSet {
                        values,
                        truncated: set.truncated,
                    },
                );
            }
        }
        Some(summary)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_round_trip() {
        let mut s = TagSummary::default();
        s.add("span", "http.status_code", &AttrValue::Int(500));
        s.add("resource", "service.name", &AttrValue::Str("cart".into()));
        s.add("intrinsic", "name", &AttrValue::Str("GET /".into()));
        let back = TagSummary::from_json(&s.to_json()).unwrap();
        assert_eq!(back, s);
        assert!(TagSummary::from_json(b"{\"version\": 9, \"scopes\": {}}").is_none());
    }
}
