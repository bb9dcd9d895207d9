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

impl TagValue {
    fn from_attr(v: &AttrValue) -> Vec<Self> {
        match v {
            AttrValue::Str(s) => vec![Self {
                type_name: "string",
                value: s.clone(),
            }],
            AttrValue::Int(i) => vec![Self {
                type_name: "int",
                value: i.to_string(),
            }],
            AttrValue::Float(f) => vec![Self {
                type_name: "float",
                value: f.to_string(),
            }],
            AttrValue::Bool(b) => vec![Self {
                type_name: "bool",
                value: b.to_string(),
            }],
            AttrValue::Array(items) => items.iter().flat_map(Self::from_attr).collect(),
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct ValueSet {
    pub values: BTreeSet<TagValue>,
    pub truncated: bool,
}

impl ValueSet {
    fn insert(&mut self, v: TagValue) {
        if self.values.len() >= MAX_VALUES_PER_TAG && !self.values.contains(&v) {
            self.truncated = true;
            return;
        }
        self.values.insert(v);
    }
}

/// scope → tag → values. Intrinsic values (span names, root names) sit under `intrinsic`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TagSummary {
    pub scopes: BTreeMap<&'static str, BTreeMap<String, ValueSet>>,
}

impl TagSummary {
    fn add(&mut self, scope: &'static str, key: &str, value: &AttrValue) {
        let tags = self.scopes.entry(scope).or_default();
        // Look up before inserting: the key is almost always known already, and allocating
        // it per attribute showed up in flush profiles.
        if !tags.contains_key(key) {
            tags.insert(key.to_string(), ValueSet::default());
        }
        let Some(set) = tags.get_mut(key) else { return };
        if set.truncated {
            return;
        }
        for v in TagValue::from_attr(value) {
            set.insert(v);
        }
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
            self.add("intrinsic", "rootName", &AttrValue::Str(root.name.clone()));
            self.add(
                "intrinsic",
                "rootServiceName",
                &AttrValue::Str(root.origin.service_name.clone()),
            );
        }
        for &i in spans {
            let s = &trace.spans[i];
            self.add("intrinsic", "name", &AttrValue::Str(s.name.clone()));
            if !s.status_message.is_empty() {
                self.add("intrinsic", "statusMessage", &AttrValue::Str(s.status_message.clone()));
            }
            for (k, v) in &s.attrs {
                self.add("span", k, v);
            }
            for (k, v) in &s.origin.resource {
                self.add("resource", k, v);
            }
            for (k, v) in &s.origin.scope_attrs {
                self.add("instrumentation", k, v);
            }
            if !s.origin.scope_name.is_empty() {
                self.add(
                    "intrinsic",
                    "instrumentation:name",
                    &AttrValue::Str(s.origin.scope_name.clone()),
                );
            }
            for e in &s.events {
                self.add("intrinsic", "event:name", &AttrValue::Str(e.name.clone()));
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
                    target.insert(v.clone());
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
