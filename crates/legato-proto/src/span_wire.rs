//! Borrowed reads of the few fields of each span that the metrics generator needs, straight
//! from an encoded `tempopb.Trace` (what the distributor hands on per trace), without
//! decoding whole spans: no allocation per span or attribute. Attribute lookups walk the
//! encoded list each time, which is cheap for the handful a processor asks for.

use std::borrow::Cow;
use std::ops::Range;

use crate::wire::{Field, Reader, Value, WireError};

/// A scalar attribute value.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum AnyRef<'a> {
    Str(&'a str),
    Bool(bool),
    Int(i64),
    Double(f64),
    /// Arrays, maps and bytes.
    Other,
}

impl<'a> AnyRef<'a> {
    /// The value as a label: strings as they are, numbers and booleans printed; `None` for
    /// arrays, maps and bytes.
    pub fn label(&self) -> Option<Cow<'a, str>> {
        match *self {
            AnyRef::Str(s) => Some(Cow::Borrowed(s)),
            AnyRef::Bool(b) => Some(Cow::Owned(b.to_string())),
            AnyRef::Int(i) => Some(Cow::Owned(i.to_string())),
            AnyRef::Double(d) => Some(Cow::Owned(d.to_string())),
            AnyRef::Other => None,
        }
    }

    pub fn as_str(&self) -> Option<&'a str> {
        match *self {
            AnyRef::Str(s) => Some(s),
            _ => None,
        }
    }
}

/// A span's or resource's attributes: keys and encoded values, listed once per span; a
/// lookup compares keys and decodes only the value asked for.
#[derive(Debug, Clone, Copy)]
pub struct Attrs<'a> {
    list: &'a [(&'a [u8], &'a [u8])],
}

impl<'a> Attrs<'a> {
    pub const EMPTY: Attrs<'static> = Attrs { list: &[] };

    pub(crate) fn new(list: &'a [(&'a [u8], &'a [u8])]) -> Self {
        Self { list }
    }

    /// The first attribute named `key`.
    pub fn get(&self, key: &str) -> Option<AnyRef<'a>> {
        self.list
            .iter()
            .find(|(k, _)| *k == key.as_bytes())
            .map(|(_, v)| any_value(v))
    }

    /// Every attribute named `key` (a list may repeat a key).
    pub fn all<'k>(&self, key: &'k str) -> impl Iterator<Item = AnyRef<'a>> + use<'a, 'k> {
        self.list
            .iter()
            .filter(move |(k, _)| *k == key.as_bytes())
            .map(|(_, v)| any_value(v))
    }

    /// A string attribute.
    pub fn str(&self, key: &str) -> Option<&'a str> {
        self.get(key).and_then(|v| v.as_str())
    }

    pub fn len(&self) -> usize {
        self.list.len()
    }

    pub fn is_empty(&self) -> bool {
        self.list.is_empty()
    }

    /// Each attribute: key, value (scalars read; arrays, maps and bytes as `Other`) and the
    /// encoded `AnyValue`.
    pub fn iter(&self) -> impl Iterator<Item = (&'a str, AnyRef<'a>, &'a [u8])> + 'a {
        self.list
            .iter()
            .map(|(k, v)| (std::str::from_utf8(k).unwrap_or_default(), any_value(v), *v))
    }
}

/// Adds a `KeyValue`'s key and encoded value to `into`.
fn push_key_value<'a>(kv: &'a [u8], into: &mut Vec<(&'a [u8], &'a [u8])>) -> Result<(), WireError> {
    let mut r = Reader::new(kv);
    let (mut k, mut v): (&[u8], &[u8]) = (&[], &[]);
    while let Some(f) = r.next_field()? {
        match (f.number, f.value) {
            (1, Value::Len(b)) => k = b,
            (2, Value::Len(b)) => v = b,
            _ => {}
        }
    }
    into.push((k, v));
    Ok(())
}

pub(crate) fn any_value(buf: &[u8]) -> AnyRef<'_> {
    let mut r = Reader::new(buf);
    let mut out = AnyRef::Other;
    while let Ok(Some(f)) = r.next_field() {
        out = match (f.number, f.value) {
            (1, Value::Len(b)) => std::str::from_utf8(b).map_or(AnyRef::Other, AnyRef::Str),
            (2, Value::Varint(b)) => AnyRef::Bool(b != 0),
            (3, Value::Varint(i)) => AnyRef::Int(i as i64),
            (4, Value::Fixed64(d)) => AnyRef::Double(f64::from_bits(d)),
            _ => AnyRef::Other,
        };
    }
    out
}

/// What the generator reads of one span.
#[derive(Debug, Clone, Copy)]
pub struct SpanRef<'a> {
    pub span_id: &'a [u8],
    pub parent_span_id: &'a [u8],
    pub name: &'a str,
    /// `SpanKind` number.
    pub kind: i32,
    pub start_unix_nano: u64,
    pub end_unix_nano: u64,
    /// `StatusCode` number.
    pub status_code: i32,
    pub status_message: &'a str,
    pub attributes: Attrs<'a>,
    /// The span's encoded size (what Tempo's `traces_spanmetrics_size_total` counts).
    pub encoded_len: usize,
}

impl SpanRef<'_> {
    /// A span of `encoded_len` bytes with no fields read yet.
    pub(crate) fn empty(encoded_len: usize) -> Self {
        SpanRef {
            span_id: &[],
            parent_span_id: &[],
            name: "",
            kind: 0,
            start_unix_nano: 0,
            end_unix_nano: 0,
            status_code: 0,
            status_message: "",
            attributes: Attrs::EMPTY,
            encoded_len,
        }
    }

    pub fn seconds(&self) -> f64 {
        self.end_unix_nano.saturating_sub(self.start_unix_nano) as f64 / 1e9
    }
}

/// A span's resource: its attributes, and `service.name` read once.
#[derive(Debug, Clone, Copy)]
pub struct ResourceRef<'a> {
    pub attributes: Attrs<'a>,
    /// `service.name`, "" when missing.
    pub service_name: &'a str,
}

/// Calls `f` with each span of an encoded `tempopb.Trace` and its resource. Each message is
/// walked once; attribute lists live in two buffers reused across spans.
pub fn for_each_span(trace: &[u8], mut f: impl FnMut(&ResourceRef<'_>, &SpanRef<'_>)) -> Result<(), WireError> {
    let mut resource_attrs = Vec::new();
    let mut span_attrs = Vec::new();
    let mut r = Reader::new(trace);
    while let Some(batch) = r.next_field()? {
        let (1, Value::Len(rs)) = (batch.number, batch.value) else {
            continue;
        };
        resource_attrs.clear();
        let mut scopes = Vec::new();
        let mut rr = Reader::new(rs);
        while let Some(field) = rr.next_field()? {
            match (field.number, field.value) {
                (1, Value::Len(res)) => push_resource_attrs(res, &mut resource_attrs)?,
                (2, Value::Len(ss)) => scopes.push(ss),
                _ => {}
            }
        }
        let resource = ResourceRef {
            service_name: service_name(&resource_attrs),
            attributes: Attrs { list: &resource_attrs },
        };
        for ss in scopes {
            let mut sr = Reader::new(ss);
            while let Some(field) = sr.next_field()? {
                if let (2, Value::Len(span)) = (field.number, field.value) {
                    span_attrs.clear();
                    let mut fields = span_fields(span, &mut span_attrs, |_| {})?;
                    fields.attributes = Attrs { list: &span_attrs };
                    f(&resource, &fields);
                }
            }
        }
    }
    Ok(())
}

/// One walk over a span: its fields, its attributes into `attrs`, and each field `SpanRef`
/// does not hold (trace state, dropped counts, events, links, flags) to `other`.
fn span_fields<'a>(
    buf: &'a [u8],
    attrs: &mut Vec<(&'a [u8], &'a [u8])>,
    mut other: impl FnMut(&Field<'a>),
) -> Result<SpanRef<'a>, WireError> {
    let mut span = SpanRef::empty(buf.len());
    let mut r = Reader::new(buf);
    while let Some(field) = r.next_field()? {
        match (field.number, field.value) {
            (2, Value::Len(b)) => span.span_id = b,
            (4, Value::Len(b)) => span.parent_span_id = b,
            (5, Value::Len(b)) => span.name = std::str::from_utf8(b).unwrap_or_default(),
            (6, Value::Varint(k)) => span.kind = k as i32,
            (7, Value::Fixed64(t)) => span.start_unix_nano = t,
            (8, Value::Fixed64(t)) => span.end_unix_nano = t,
            (9, Value::Len(kv)) => push_key_value(kv, attrs)?,
            (15, Value::Len(status)) => {
                let mut s = Reader::new(status);
                while let Some(f) = s.next_field()? {
                    match (f.number, f.value) {
                        (2, Value::Len(m)) => span.status_message = std::str::from_utf8(m).unwrap_or_default(),
                        (3, Value::Varint(c)) => span.status_code = c as i32,
                        _ => {}
                    }
                }
            }
            _ => other(&field),
        }
    }
    Ok(span)
}

/// A `Resource`'s attributes into `into`.
fn push_resource_attrs<'a>(resource: &'a [u8], into: &mut Vec<(&'a [u8], &'a [u8])>) -> Result<(), WireError> {
    let mut r = Reader::new(resource);
    while let Some(kv) = r.next_field()? {
        if let (1, Value::Len(kv)) = (kv.number, kv.value) {
            push_key_value(kv, into)?;
        }
    }
    Ok(())
}

/// The `service.name` string attribute of a resource's attributes, "" when missing.
pub(crate) fn service_name<'a>(attrs: &[(&'a [u8], &'a [u8])]) -> &'a str {
    attrs
        .iter()
        .find(|(key, _)| *key == b"service.name")
        .and_then(|(_, value)| any_value(value).as_str())
        .unwrap_or_default()
}

/// A trace read from its encoded `tempopb.Trace` segments for storing it: every field a block
/// keeps, borrowed from the segments' bytes, in flat tables reused from trace to trace. What a
/// flush encodes and summarises instead of decoding segments into OTLP structs.
#[derive(Debug, Default)]
pub struct WireTrace<'a> {
    pub resources: Vec<WireResource<'a>>,
    pub scopes: Vec<WireScope<'a>>,
    pub spans: Vec<WireSpan<'a>>,
    pub events: Vec<WireEvent<'a>>,
    /// Attribute lists of links, as ranges of the attribute table.
    pub links: Vec<Range<usize>>,
    attrs: Vec<(&'a [u8], &'a [u8])>,
    raw: Vec<&'a [u8]>,
    /// A span's events and links (field number, message), read after its attributes.
    pending: Vec<(u32, &'a [u8])>,
}

/// A `ResourceSpans` of a segment.
#[derive(Debug, Clone)]
pub struct WireResource<'a> {
    /// Its fields other than the scope spans (resource, schema URL), as raw fields.
    pub header: Range<usize>,
    pub attrs: Range<usize>,
    /// `service.name`, "" when missing.
    pub service_name: &'a str,
}

/// A `ScopeSpans` of a segment.
#[derive(Debug, Clone)]
pub struct WireScope<'a> {
    /// Index in `WireTrace::resources`.
    pub resource: usize,
    /// Its fields other than the spans (scope, schema URL), as raw fields.
    pub header: Range<usize>,
    /// `InstrumentationScope.name`.
    pub name: &'a str,
    pub attrs: Range<usize>,
}

/// A span of a segment.
#[derive(Debug, Clone)]
pub struct WireSpan<'a> {
    /// Index in `WireTrace::scopes`.
    pub scope: usize,
    /// Its fields; `attributes` is empty here: see `WireTrace::span_attrs`.
    pub span: SpanRef<'a>,
    pub attrs: Range<usize>,
    pub trace_state: &'a str,
    pub flags: u32,
    /// Dropped counts, events and links (fields 10-14) as raw fields.
    pub extras: Range<usize>,
    /// Whether it has events or links, or dropped anything.
    pub has_extras: bool,
    /// Ranges of `WireTrace::events` and `WireTrace::links`.
    pub events: Range<usize>,
    pub links: Range<usize>,
}

/// A span event.
#[derive(Debug, Clone)]
pub struct WireEvent<'a> {
    pub name: &'a str,
    pub attrs: Range<usize>,
}

impl<'a> WireTrace<'a> {
    /// Empties the tables, keeping their memory.
    pub fn clear(&mut self) {
        self.resources.clear();
        self.scopes.clear();
        self.spans.clear();
        self.events.clear();
        self.links.clear();
        self.attrs.clear();
        self.raw.clear();
        self.pending.clear();
    }

    /// Adds the spans of one encoded `tempopb.Trace`.
    pub fn read(&mut self, trace: &'a [u8]) -> Result<(), WireError> {
        let mut r = Reader::new(trace);
        while let Some(field) = r.next_field()? {
            if let (1, Value::Len(rs)) = (field.number, field.value) {
                self.resource_spans(rs)?;
            }
        }
        Ok(())
    }

    fn resource_spans(&mut self, buf: &'a [u8]) -> Result<(), WireError> {
        let index = self.resources.len();
        let (header_from, attrs_from) = (self.raw.len(), self.attrs.len());
        let mut scopes = Vec::new();
        let mut r = Reader::new(buf);
        while let Some(field) = r.next_field()? {
            match (field.number, field.value) {
                (2, Value::Len(ss)) => scopes.push(ss),
                (1, Value::Len(resource)) => {
                    self.raw.push(field.raw);
                    push_resource_attrs(resource, &mut self.attrs)?;
                }
                _ => self.raw.push(field.raw),
            }
        }
        let attrs = attrs_from..self.attrs.len();
        self.resources.push(WireResource {
            header: header_from..self.raw.len(),
            service_name: service_name(&self.attrs[attrs.clone()]),
            attrs,
        });
        for ss in scopes {
            self.scope_spans(index, ss)?;
        }
        Ok(())
    }

    fn scope_spans(&mut self, resource: usize, buf: &'a [u8]) -> Result<(), WireError> {
        let index = self.scopes.len();
        let (header_from, attrs_from) = (self.raw.len(), self.attrs.len());
        let mut name = "";
        let mut spans = Vec::new();
        let mut r = Reader::new(buf);
        while let Some(field) = r.next_field()? {
            match (field.number, field.value) {
                (2, Value::Len(span)) => spans.push(span),
                (1, Value::Len(scope)) => {
                    self.raw.push(field.raw);
                    let mut s = Reader::new(scope);
                    while let Some(f) = s.next_field()? {
                        match (f.number, f.value) {
                            (1, Value::Len(n)) => name = std::str::from_utf8(n).unwrap_or_default(),
                            (3, Value::Len(kv)) => push_key_value(kv, &mut self.attrs)?,
                            _ => {}
                        }
                    }
                }
                _ => self.raw.push(field.raw),
            }
        }
        self.scopes.push(WireScope {
            resource,
            header: header_from..self.raw.len(),
            name,
            attrs: attrs_from..self.attrs.len(),
        });
        for span in spans {
            self.span(index, span)?;
        }
        Ok(())
    }

    fn span(&mut self, scope: usize, buf: &'a [u8]) -> Result<(), WireError> {
        let (attrs_from, raw_from) = (self.attrs.len(), self.raw.len());
        let (events_from, links_from) = (self.events.len(), self.links.len());
        let (mut trace_state, mut flags, mut dropped) = ("", 0u32, false);
        let (raw, pending) = (&mut self.raw, &mut self.pending);
        let span = span_fields(buf, &mut self.attrs, |field| match (field.number, field.value) {
            (3, Value::Len(b)) => trace_state = std::str::from_utf8(b).unwrap_or_default(),
            (10 | 12 | 14, Value::Varint(n)) => {
                dropped |= n > 0;
                raw.push(field.raw);
            }
            (n @ (11 | 13), Value::Len(message)) => {
                raw.push(field.raw);
                pending.push((n, message));
            }
            (16, Value::Fixed32(f)) => flags = f,
            _ => {}
        })?;
        // The span's attributes are one run of the table; its events' and links' follow.
        let attrs = attrs_from..self.attrs.len();
        let mut pending = std::mem::take(&mut self.pending);
        for (number, message) in pending.drain(..) {
            if number == 11 {
                self.event(message)?;
            } else {
                self.link(message)?;
            }
        }
        self.pending = pending;
        let (events, links) = (events_from..self.events.len(), links_from..self.links.len());
        self.spans.push(WireSpan {
            scope,
            span,
            attrs,
            trace_state,
            flags,
            extras: raw_from..self.raw.len(),
            has_extras: dropped || !events.is_empty() || !links.is_empty(),
            events,
            links,
        });
        Ok(())
    }

    fn event(&mut self, buf: &'a [u8]) -> Result<(), WireError> {
        let (mut name, from) = ("", self.attrs.len());
        let mut r = Reader::new(buf);
        while let Some(f) = r.next_field()? {
            match (f.number, f.value) {
                (2, Value::Len(n)) => name = std::str::from_utf8(n).unwrap_or_default(),
                (3, Value::Len(kv)) => push_key_value(kv, &mut self.attrs)?,
                _ => {}
            }
        }
        self.events.push(WireEvent {
            name,
            attrs: from..self.attrs.len(),
        });
        Ok(())
    }

    fn link(&mut self, buf: &'a [u8]) -> Result<(), WireError> {
        let from = self.attrs.len();
        let mut r = Reader::new(buf);
        while let Some(f) = r.next_field()? {
            if let (4, Value::Len(kv)) = (f.number, f.value) {
                push_key_value(kv, &mut self.attrs)?;
            }
        }
        self.links.push(from..self.attrs.len());
        Ok(())
    }

    /// Attributes by their range (`attrs` of a resource, scope, span or event; a link).
    pub fn attrs(&self, range: &Range<usize>) -> Attrs<'_> {
        Attrs::new(&self.attrs[range.clone()])
    }

    /// Raw fields by their range: a resource's or scope's `header` (the message without its
    /// scope spans or spans), a span's `extras` (a `Span` with only its dropped counts, events
    /// and links), once concatenated.
    pub fn raw(&self, range: &Range<usize>) -> &[&'a [u8]] {
        &self.raw[range.clone()]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::common::{AnyValue, KeyValue, any_value};
    use crate::resource::Resource;
    use crate::trace::{ResourceSpans, ScopeSpans, Span, Status};
    use prost::Message;

    fn kv(key: &str, v: any_value::Value) -> KeyValue {
        KeyValue {
            key: key.into(),
            value: Some(AnyValue { value: Some(v) }),
            ..Default::default()
        }
    }

    #[test]
    fn reads_what_prost_decodes() {
        let span = Span {
            trace_id: vec![1; 16],
            span_id: vec![2; 8],
            parent_span_id: vec![3; 8],
            name: "GET /cart".into(),
            kind: 2,
            start_time_unix_nano: 1_000,
            end_time_unix_nano: 2_501_000,
            attributes: vec![
                kv("http.status_code", any_value::Value::IntValue(503)),
                kv("peer.service", any_value::Value::StringValue("cart".into())),
                kv("ratio", any_value::Value::DoubleValue(0.5)),
                kv("cached", any_value::Value::BoolValue(true)),
            ],
            status: Some(Status {
                message: "boom".into(),
                code: 2,
            }),
            ..Default::default()
        };
        let trace = crate::tempopb::Trace {
            resource_spans: vec![ResourceSpans {
                resource: Some(Resource {
                    attributes: vec![kv("service.name", any_value::Value::StringValue("frontend".into()))],
                    ..Default::default()
                }),
                scope_spans: vec![ScopeSpans {
                    spans: vec![span.clone(), span.clone()],
                    ..Default::default()
                }],
                ..Default::default()
            }],
        };
        let bytes = trace.encode_to_vec();
        let mut seen = 0;
        for_each_span(&bytes, |resource, s| {
            seen += 1;
            assert_eq!(resource.service_name, "frontend");
            assert_eq!(resource.attributes.str("service.name"), Some("frontend"));
            assert_eq!(
                (s.name, s.kind, s.status_code, s.status_message),
                ("GET /cart", 2, 2, "boom")
            );
            assert_eq!((s.span_id, s.parent_span_id), (&[2u8; 8][..], &[3u8; 8][..]));
            assert!((s.seconds() - 0.0025).abs() < 1e-12);
            assert_eq!(s.encoded_len, span.encoded_len());
            assert_eq!(s.attributes.get("http.status_code"), Some(AnyRef::Int(503)));
            assert_eq!(s.attributes.str("peer.service"), Some("cart"));
            assert_eq!(
                s.attributes.get("ratio").and_then(|v| v.label()).as_deref(),
                Some("0.5")
            );
            assert_eq!(s.attributes.get("cached"), Some(AnyRef::Bool(true)));
            assert_eq!(s.attributes.get("missing"), None);
        })
        .unwrap();
        assert_eq!(seen, 2);
        assert!(for_each_span(&bytes[..bytes.len() - 3], |_, _| {}).is_err());
    }
}
