//! OTLP trace exports split by trace id straight from the protobuf wire format.
//!
//! The distributor's job is to regroup an export's spans by trace and hand each trace on as
//! an encoded `tempopb.Trace`. Decoding the export into structs and re-encoding every group
//! cost about half of ingest CPU (docs/benchmarks.md). This module walks the bytes instead:
//! every field is checked as strictly as a decode would (wire types, lengths, UTF-8 of string
//! fields, nesting), so nothing is accepted that a reader could not decode later, and each
//! span is copied once, as bytes, into its trace's segment.
//!
//! The schemas below follow the OTLP messages of `opentelemetry-proto` (including the newer
//! string-table indices and entity references); a field they do not know is skipped, as a
//! decoder skips it.
//!
//! The walk also notes an attribute key or string value over `max_attribute_bytes`; such an
//! export is rewritten by [`truncate_attributes`] and walked again (see `wire/truncate.rs`).
//!
//! A segment is `tempopb.Trace { repeated ResourceSpans resource_spans = 1 }`. Each
//! `ResourceSpans` and `ScopeSpans` in it keeps the original's other fields (resource, scope,
//! schema URLs, unknown fields) byte for byte, with only the spans of that trace inside.

use std::cell::Cell;
use std::collections::HashMap;
use std::ops::Range;

use bytes::Bytes;
use legato_model::{SpanId, TraceId};

use crate::push::{RejectReason, Rejection, TraceSegment};
use crate::span_wire::{Attrs, ResourceRef, SpanRef, service_name};

mod truncate;
pub use truncate::{Truncated, request_resource_spans, truncate_attributes};

/// An export that is not well-formed OTLP protobuf.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid OTLP protobuf: {0}")]
pub struct WireError(String);

/// An export regrouped by trace.
#[derive(Debug, Default)]
pub struct Split {
    /// One segment per trace, in order of first appearance.
    pub traces: Vec<TraceSegment>,
    /// Every span in the export, valid or not.
    pub spans: u64,
    /// Spans left out for invalid trace or span ids.
    pub rejected: Vec<Rejection>,
    /// Whether a resource, scope, span, event or link attribute has a key or string value
    /// longer than the walk's `max_attribute_bytes` (see [`truncate_attributes`]).
    pub attributes_over_limit: bool,
}

/// Splits an encoded `ExportTraceServiceRequest`. An attribute key or string value longer
/// than `max_attribute_bytes` (0: no limit) is only noted, in [`Split::attributes_over_limit`].
pub fn split_request(body: &[u8], max_attribute_bytes: usize) -> Result<Split, WireError> {
    Ok(walk_request(body, Walk::new(max_attribute_bytes, false))?.0)
}

/// Splits the encoded `ResourceSpans` messages of an export (see [`split_request`]).
pub fn split_resource_spans<B: AsRef<[u8]>>(
    resource_spans: &[B],
    max_attribute_bytes: usize,
) -> Result<Split, WireError> {
    let walk = Walk::new(max_attribute_bytes, false);
    Ok(walk_resource_spans(resource_spans.iter().map(AsRef::as_ref), walk)?.0)
}

/// [`split_request`], also keeping what the walk read of each accepted span for an observer
/// (the metrics generator), so that it need not walk the export a second time.
pub fn split_request_reading(body: &[u8], max_attribute_bytes: usize) -> Result<(Split, ReadSpans<'_>), WireError> {
    let (split, read) = walk_request(body, Walk::new(max_attribute_bytes, true))?;
    Ok((split, read.unwrap_or_default()))
}

/// [`split_resource_spans`], also keeping what the walk read of each accepted span.
pub fn split_resource_spans_reading<B: AsRef<[u8]>>(
    resource_spans: &[B],
    max_attribute_bytes: usize,
) -> Result<(Split, ReadSpans<'_>), WireError> {
    let walk = Walk::new(max_attribute_bytes, true);
    let (split, read) = walk_resource_spans(resource_spans.iter().map(AsRef::as_ref), walk)?;
    Ok((split, read.unwrap_or_default()))
}

fn walk_request<'a>(body: &'a [u8], walk: Walk<'a>) -> Result<(Split, Option<ReadSpans<'a>>), WireError> {
    walk_resource_spans(request_resource_spans(body)?, walk)
}

fn walk_resource_spans<'a>(
    resource_spans: impl IntoIterator<Item = &'a [u8]>,
    mut walk: Walk<'a>,
) -> Result<(Split, Option<ReadSpans<'a>>), WireError> {
    for rs in resource_spans {
        walk.resource_spans(rs)?;
    }
    Ok(walk.finish())
}

/// The fields of each accepted span of an export, and of its resource, as the distributor's
/// walk read them (borrowed from the export's bytes).
#[derive(Debug, Default)]
pub struct ReadSpans<'a> {
    /// Per `ResourceSpans` of the export: its attributes (a range of `attrs`) and
    /// `service.name`.
    resources: Vec<(Range<usize>, &'a str)>,
    attrs: Vec<(&'a [u8], &'a [u8])>,
    /// Trace id, resource index, the span (attributes left empty) and its attributes.
    spans: Vec<([u8; 16], usize, SpanRef<'a>, Range<usize>)>,
}

impl ReadSpans<'_> {
    pub fn len(&self) -> usize {
        self.spans.len()
    }

    pub fn is_empty(&self) -> bool {
        self.spans.is_empty()
    }

    /// Calls `f` with each span, its trace id and its resource, in export order.
    pub fn for_each(&self, mut f: impl FnMut(&[u8; 16], &ResourceRef<'_>, &SpanRef<'_>)) {
        for (trace_id, rs, span, attrs) in &self.spans {
            let (resource_attrs, service_name) = &self.resources[*rs];
            let resource = ResourceRef {
                attributes: Attrs::new(&self.attrs[resource_attrs.clone()]),
                service_name,
            };
            let span = SpanRef {
                attributes: Attrs::new(&self.attrs[attrs.clone()]),
                ..*span
            };
            f(trace_id, &resource, &span);
        }
    }
}

/// Spans of one trace under one (resource spans, scope spans) pair of the export.
struct Group<'a> {
    rs: usize,
    ss: usize,
    spans: Vec<&'a [u8]>,
}

#[derive(Default)]
struct Walk<'a> {
    /// `max_attribute_bytes` (`usize::MAX`: no limit), and whether an attribute exceeds it.
    max_attr: usize,
    over_limit: Cell<bool>,
    /// Raw fields of each `ResourceSpans` other than its scope spans.
    rs_fields: Vec<Vec<&'a [u8]>>,
    /// Raw fields of each `ScopeSpans` other than its spans.
    ss_fields: Vec<Vec<&'a [u8]>>,
    index: HashMap<TraceId, usize>,
    traces: Vec<(TraceId, Vec<Group<'a>>, u32)>,
    spans: u64,
    bad_trace: (u64, String),
    bad_span: (u64, String),
    /// What an observer reads of each span, when asked for.
    read: Option<ReadSpans<'a>>,
}

impl<'a> Walk<'a> {
    fn new(max_attribute_bytes: usize, reading: bool) -> Self {
        Self {
            max_attr: if max_attribute_bytes == 0 {
                usize::MAX
            } else {
                max_attribute_bytes
            },
            read: reading.then(ReadSpans::default),
            ..Self::default()
        }
    }

    /// The checking context at `depth`.
    fn ctx(&self, depth: usize) -> Ctx<'_> {
        Ctx {
            depth,
            max_attr: self.max_attr,
            over_limit: &self.over_limit,
        }
    }

    fn resource_spans(&mut self, buf: &'a [u8]) -> Result<(), WireError> {
        let rs = self.rs_fields.len();
        self.rs_fields.push(Vec::new());
        if let Some(read) = &mut self.read {
            let at = read.attrs.len();
            read.resources.push((at..at, ""));
        }
        let mut scopes = Vec::new();
        let mut r = Reader::new(buf);
        while let Some(field) = r.next_field()? {
            match (field.number, field.value) {
                (2, Value::Len(b)) => scopes.push(b),
                (2, _) => return Err(wrong_type("ResourceSpans", 2)),
                (1, Value::Len(resource)) if self.read.is_some() => {
                    self.read_resource(resource)?;
                    self.rs_fields[rs].push(field.raw);
                }
                (n, v) => {
                    check_field(n, v, resource_spans_schema, self.ctx(0))?;
                    self.rs_fields[rs].push(field.raw);
                }
            }
        }
        for ss in scopes {
            self.scope_spans(rs, ss)?;
        }
        Ok(())
    }

    fn scope_spans(&mut self, rs: usize, buf: &'a [u8]) -> Result<(), WireError> {
        let ss = self.ss_fields.len();
        self.ss_fields.push(Vec::new());
        let mut r = Reader::new(buf);
        while let Some(field) = r.next_field()? {
            match (field.number, field.value) {
                (2, Value::Len(b)) => self.span(rs, ss, b)?,
                (2, _) => return Err(wrong_type("ScopeSpans", 2)),
                (n, v) => {
                    check_field(n, v, scope_spans_schema, self.ctx(0))?;
                    self.ss_fields[ss].push(field.raw);
                }
            }
        }
        Ok(())
    }

    /// Checks a `Resource` as `check_field` would, keeping its attributes and service name
    /// for the observer (the last `resources` entry, pushed by `resource_spans`).
    fn read_resource(&mut self, buf: &'a [u8]) -> Result<(), WireError> {
        let ctx = Ctx {
            depth: 1,
            max_attr: self.max_attr,
            over_limit: &self.over_limit,
        };
        let Some(read) = &mut self.read else {
            return Ok(());
        };
        let mut r = Reader::new(buf);
        while let Some(field) = r.next_field()? {
            let checked = match (field.number, field.value) {
                (1, Value::Len(kv)) => attribute(kv, ctx).map(|kv| read.attrs.push(kv)),
                (n, v) => check_field(n, v, resource_schema, ctx),
            };
            checked.map_err(|e| WireError(format!("Resource: {}", e.0)))?;
        }
        let end = read.attrs.len();
        if let Some((attrs, service)) = read.resources.last_mut() {
            attrs.end = end;
            *service = service_name(&read.attrs[attrs.clone()]);
        }
        Ok(())
    }

    fn span(&mut self, rs: usize, ss: usize, buf: &'a [u8]) -> Result<(), WireError> {
        self.spans += 1;
        let (mut trace_id, mut span_id): (&[u8], &[u8]) = (&[], &[]);
        let ctx = Ctx {
            depth: 0,
            max_attr: self.max_attr,
            over_limit: &self.over_limit,
        };
        let mut read = self.read.as_mut().map(|read| (read, SpanRef::empty(buf.len())));
        let attrs_from = read.as_ref().map_or(0, |(read, _)| read.attrs.len());
        let mut r = Reader::new(buf);
        while let Some(field) = r.next_field()? {
            match (field.number, field.value, &mut read) {
                (1, Value::Len(b), _) => trace_id = b,
                (2, Value::Len(b), _) => span_id = b,
                (n, v, Some((read, span))) => read_span_field(n, v, span, &mut read.attrs, ctx)?,
                (n, v, None) => check_field(n, v, span_schema, ctx)?,
            }
        }
        let checked = TraceId::from_otlp(trace_id)
            .map_err(|e| (true, e.to_string()))
            .and_then(|id| {
                SpanId::from_otlp(span_id)
                    .map(|_| id)
                    .map_err(|e| (false, e.to_string()))
            });
        let id = match checked {
            Ok(id) => id,
            Err((bad_trace, message)) => {
                let bad = if bad_trace {
                    &mut self.bad_trace
                } else {
                    &mut self.bad_span
                };
                bad.0 += 1;
                bad.1 = message;
                if let Some((read, _)) = read {
                    read.attrs.truncate(attrs_from);
                }
                return Ok(());
            }
        };
        if let Some((read, mut span)) = read {
            span.span_id = span_id;
            let attrs = attrs_from..read.attrs.len();
            read.spans.push((id.0, rs, span, attrs));
        }
        let next = self.traces.len();
        let at = *self.index.entry(id).or_insert(next);
        if at == next {
            self.traces.push((id, Vec::new(), 0));
        }
        let (_, groups, count) = &mut self.traces[at];
        *count += 1;
        match groups.last_mut() {
            Some(g) if g.rs == rs && g.ss == ss => g.spans.push(buf),
            _ => groups.push(Group {
                rs,
                ss,
                spans: vec![buf],
            }),
        }
        Ok(())
    }

    fn finish(mut self) -> (Split, Option<ReadSpans<'a>>) {
        let read = self.read.take();
        let traces = self
            .traces
            .iter()
            .map(|(id, groups, spans)| TraceSegment {
                id: Bytes::copy_from_slice(&id.0),
                data: Bytes::from(self.encode(groups)),
                spans: *spans,
            })
            .collect();
        let mut rejected = Vec::new();
        for (reason, (spans, message)) in [
            (RejectReason::InvalidTraceId, self.bad_trace),
            (RejectReason::InvalidSpanId, self.bad_span),
        ] {
            if spans > 0 {
                rejected.push(Rejection { reason, spans, message });
            }
        }
        let split = Split {
            traces,
            spans: self.spans,
            rejected,
            attributes_over_limit: self.over_limit.get(),
        };
        (split, read)
    }

    /// One trace's groups as an encoded `tempopb.Trace`: consecutive groups of the same
    /// resource spans share one `ResourceSpans`.
    fn encode(&self, groups: &[Group<'_>]) -> Vec<u8> {
        let ss_len = |g: &Group<'_>| -> usize {
            raw_len(&self.ss_fields[g.ss]) + g.spans.iter().map(|s| len_field_size(s.len())).sum::<usize>()
        };
        let runs: Vec<&[Group<'_>]> = groups.chunk_by(|a, b| a.rs == b.rs).collect();
        let rs_len = |run: &[Group<'_>]| -> usize {
            raw_len(&self.rs_fields[run[0].rs]) + run.iter().map(|g| len_field_size(ss_len(g))).sum::<usize>()
        };
        let total: usize = runs.iter().map(|run| len_field_size(rs_len(run))).sum();
        let mut out = Vec::with_capacity(total);
        for run in runs {
            put_len_prefix(&mut out, 1, rs_len(run));
            for raw in &self.rs_fields[run[0].rs] {
                out.extend_from_slice(raw);
            }
            for g in run {
                put_len_prefix(&mut out, 2, ss_len(g));
                for raw in &self.ss_fields[g.ss] {
                    out.extend_from_slice(raw);
                }
                for span in &g.spans {
                    put_len_prefix(&mut out, 2, span.len());
                    out.extend_from_slice(span);
                }
            }
        }
        debug_assert_eq!(out.len(), total);
        out
    }
}

/// Checks a span field as `check_field` would, keeping what an observer reads of it.
fn read_span_field<'a>(
    number: u32,
    value: Value<'a>,
    span: &mut SpanRef<'a>,
    attrs: &mut Vec<(&'a [u8], &'a [u8])>,
    ctx: Ctx<'_>,
) -> Result<(), WireError> {
    match (number, value) {
        (9, Value::Len(kv)) => attrs.push(attribute(kv, ctx)?),
        (4, Value::Len(b)) => span.parent_span_id = b,
        (5, Value::Len(b)) => {
            span.name = std::str::from_utf8(b).map_err(|_| WireError("field 5 is not valid UTF-8".into()))?;
        }
        (6, Value::Varint(k)) => span.kind = k as i32,
        (7, Value::Fixed64(t)) => span.start_unix_nano = t,
        (8, Value::Fixed64(t)) => span.end_unix_nano = t,
        (15, Value::Len(status)) => {
            let mut r = Reader::new(status);
            while let Some(f) = r.next_field()? {
                match (f.number, f.value) {
                    (2, Value::Len(m)) => {
                        span.status_message = std::str::from_utf8(m)
                            .map_err(|_| WireError("Status: field 2 is not valid UTF-8".into()))?;
                    }
                    (3, Value::Varint(c)) => span.status_code = c as i32,
                    (n, v) => check_field(n, v, status_schema, ctx.at(1))
                        .map_err(|e| WireError(format!("Status: {}", e.0)))?,
                }
            }
        }
        (n, v) => check_field(n, v, span_schema, ctx)?,
    }
    Ok(())
}

/// Checks an attribute `KeyValue` of a resource, scope, span, event or link, one level
/// below `ctx`, as `check_message` would (with its error messages), noting a key or string
/// value longer than the limit; returns its key and encoded value.
fn attribute<'a>(buf: &'a [u8], ctx: Ctx<'_>) -> Result<(&'a [u8], &'a [u8]), WireError> {
    let ctx = ctx.deeper();
    let (mut key, mut value): (&[u8], &[u8]) = (&[], &[]);
    let mut r = Reader::new(buf);
    while let Some(field) = r.next_field()? {
        let checked = match (field.number, field.value) {
            (1, Value::Len(b)) => {
                key = b;
                ctx.check_string(1, b)
            }
            (2, Value::Len(b)) => {
                value = b;
                any_value(b, ctx.deeper()).map_err(|e| WireError(format!("AnyValue: {}", e.0)))
            }
            (n, v) => check_field(n, v, key_value_schema, ctx),
        };
        checked.map_err(|e| WireError(format!("KeyValue: {}", e.0)))?;
    }
    Ok((key, value))
}

/// An attribute's `AnyValue` checked as `check_message` would, noting a string value longer
/// than the limit (values nested in arrays and maps are not attributes of their own).
fn any_value(buf: &[u8], ctx: Ctx<'_>) -> Result<(), WireError> {
    let mut r = Reader::new(buf);
    while let Some(field) = r.next_field()? {
        match (field.number, field.value) {
            (1, Value::Len(b)) => ctx.check_string(1, b)?,
            (n, v) => check_field(n, v, any_value_schema, ctx)?,
        }
    }
    Ok(())
}

fn raw_len(fields: &[&[u8]]) -> usize {
    fields.iter().map(|f| f.len()).sum()
}

/// Size of a length-delimited field with a one-byte tag and a payload of `len` bytes.
fn len_field_size(len: usize) -> usize {
    1 + varint_size(len as u64) + len
}

fn varint_size(mut v: u64) -> usize {
    let mut n = 1;
    while v >= 0x80 {
        v >>= 7;
        n += 1;
    }
    n
}

fn put_len_prefix(out: &mut Vec<u8>, field: u8, len: usize) {
    out.push((field << 3) | 2);
    put_varint(out, len as u64);
}

fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

// --- reading ---------------------------------------------------------------------------

#[derive(Clone, Copy)]
pub(crate) enum Value<'a> {
    Varint(u64),
    Fixed64(u64),
    Fixed32(u32),
    Len(&'a [u8]),
}

pub(crate) struct Field<'a> {
    pub(crate) number: u32,
    pub(crate) value: Value<'a>,
    /// The whole field: tag, length and payload.
    pub(crate) raw: &'a [u8],
}

pub(crate) struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    pub(crate) fn new(buf: &'a [u8]) -> Self {
        Self { buf, pos: 0 }
    }

    fn varint(&mut self) -> Result<u64, WireError> {
        let mut v = 0u64;
        for shift in (0..64).step_by(7) {
            let Some(&b) = self.buf.get(self.pos) else {
                return Err(WireError("truncated varint".into()));
            };
            self.pos += 1;
            v |= u64::from(b & 0x7f) << shift;
            if b < 0x80 {
                return Ok(v);
            }
        }
        Err(WireError("varint longer than 10 bytes".into()))
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], WireError> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|end| *end <= self.buf.len())
            .ok_or_else(|| WireError("field runs past the end of its message".into()))?;
        let out = &self.buf[self.pos..end];
        self.pos = end;
        Ok(out)
    }

    pub(crate) fn next_field(&mut self) -> Result<Option<Field<'a>>, WireError> {
        if self.pos >= self.buf.len() {
            return Ok(None);
        }
        let start = self.pos;
        let key = u32::try_from(self.varint()?).map_err(|_| WireError("invalid field key".into()))?;
        let number = key >> 3;
        if number == 0 {
            return Err(WireError("invalid field number 0".into()));
        }
        let value = match key & 7 {
            0 => Value::Varint(self.varint()?),
            1 => {
                let b = self.take(8)?;
                Value::Fixed64(u64::from_le_bytes(b.try_into().unwrap_or_default()))
            }
            2 => {
                let len = usize::try_from(self.varint()?).map_err(|_| WireError("length too large".into()))?;
                Value::Len(self.take(len)?)
            }
            5 => {
                let b = self.take(4)?;
                Value::Fixed32(u32::from_le_bytes(b.try_into().unwrap_or_default()))
            }
            t => return Err(WireError(format!("unsupported wire type {t} for field {number}"))),
        };
        Ok(Some(Field {
            number,
            value,
            raw: &self.buf[start..self.pos],
        }))
    }
}

// --- checking --------------------------------------------------------------------------

/// What a field of a message must hold.
#[derive(Clone, Copy)]
enum Kind {
    Varint,
    Fixed64,
    Fixed32,
    Bytes,
    Str,
    Msg(&'static str, Schema),
    /// A `KeyValue` attribute of a resource, scope, span, event or link: the place where
    /// `max_attribute_bytes` applies.
    Attr,
    /// Not in the schema: skipped, as a decoder skips it.
    Unknown,
}

type Schema = fn(u32) -> Kind;

/// Nesting deeper than this (arrays and maps inside attribute values) is refused.
const MAX_DEPTH: usize = 32;

/// What a check carries down the messages: the depth, and the attribute limit with where
/// to note an attribute over it.
#[derive(Clone, Copy)]
struct Ctx<'w> {
    depth: usize,
    max_attr: usize,
    over_limit: &'w Cell<bool>,
}

impl Ctx<'_> {
    fn deeper(self) -> Self {
        self.at(self.depth + 1)
    }

    fn at(self, depth: usize) -> Self {
        Self { depth, ..self }
    }

    /// Checks an attribute's key or string value: UTF-8, and its length against the limit.
    fn check_string(self, number: u32, b: &[u8]) -> Result<(), WireError> {
        if b.len() > self.max_attr {
            self.over_limit.set(true);
        }
        std::str::from_utf8(b)
            .map(|_| ())
            .map_err(|_| WireError(format!("field {number} is not valid UTF-8")))
    }
}

fn check_message(buf: &[u8], name: &'static str, schema: Schema, ctx: Ctx<'_>) -> Result<(), WireError> {
    if ctx.depth > MAX_DEPTH {
        return Err(WireError(format!("{name} nested more than {MAX_DEPTH} levels deep")));
    }
    let mut r = Reader::new(buf);
    while let Some(field) = r.next_field()? {
        check_field(field.number, field.value, schema, ctx).map_err(|e| WireError(format!("{name}: {}", e.0)))?;
    }
    Ok(())
}

fn check_field(number: u32, value: Value<'_>, schema: Schema, ctx: Ctx<'_>) -> Result<(), WireError> {
    match (schema(number), value) {
        (Kind::Unknown, _)
        | (Kind::Varint, Value::Varint(_))
        | (Kind::Fixed64, Value::Fixed64(_))
        | (Kind::Fixed32, Value::Fixed32(_))
        | (Kind::Bytes, Value::Len(_)) => Ok(()),
        (Kind::Str, Value::Len(b)) => std::str::from_utf8(b)
            .map(|_| ())
            .map_err(|_| WireError(format!("field {number} is not valid UTF-8"))),
        (Kind::Msg(name, inner), Value::Len(b)) => check_message(b, name, inner, ctx.deeper()),
        (Kind::Attr, Value::Len(b)) => attribute(b, ctx).map(|_| ()),
        _ => Err(WireError(format!("field {number} has the wrong wire type"))),
    }
}

fn wrong_type(message: &str, field: u32) -> WireError {
    WireError(format!("{message}: field {field} has the wrong wire type"))
}

fn resource_spans_schema(n: u32) -> Kind {
    match n {
        1 => Kind::Msg("Resource", resource_schema),
        3 => Kind::Str,
        _ => Kind::Unknown,
    }
}

fn scope_spans_schema(n: u32) -> Kind {
    match n {
        1 => Kind::Msg("InstrumentationScope", scope_schema),
        3 => Kind::Str,
        _ => Kind::Unknown,
    }
}

fn resource_schema(n: u32) -> Kind {
    match n {
        1 => Kind::Attr,
        2 => Kind::Varint,
        3 => Kind::Msg("EntityRef", entity_ref_schema),
        _ => Kind::Unknown,
    }
}

fn entity_ref_schema(n: u32) -> Kind {
    match n {
        1..=4 => Kind::Str,
        _ => Kind::Unknown,
    }
}

fn scope_schema(n: u32) -> Kind {
    match n {
        1 | 2 => Kind::Str,
        3 => Kind::Attr,
        4 => Kind::Varint,
        _ => Kind::Unknown,
    }
}

fn span_schema(n: u32) -> Kind {
    match n {
        1 | 2 | 4 => Kind::Bytes,
        3 | 5 => Kind::Str,
        6 | 10 | 12 | 14 => Kind::Varint,
        7 | 8 => Kind::Fixed64,
        9 => Kind::Attr,
        11 => Kind::Msg("Span.Event", event_schema),
        13 => Kind::Msg("Span.Link", link_schema),
        15 => Kind::Msg("Status", status_schema),
        16 => Kind::Fixed32,
        _ => Kind::Unknown,
    }
}

fn event_schema(n: u32) -> Kind {
    match n {
        1 => Kind::Fixed64,
        2 => Kind::Str,
        3 => Kind::Attr,
        4 => Kind::Varint,
        _ => Kind::Unknown,
    }
}

fn link_schema(n: u32) -> Kind {
    match n {
        1 | 2 => Kind::Bytes,
        3 => Kind::Str,
        4 => Kind::Attr,
        5 => Kind::Varint,
        6 => Kind::Fixed32,
        _ => Kind::Unknown,
    }
}

fn status_schema(n: u32) -> Kind {
    match n {
        2 => Kind::Str,
        3 => Kind::Varint,
        _ => Kind::Unknown,
    }
}

fn key_value_schema(n: u32) -> Kind {
    match n {
        1 => Kind::Str,
        2 => Kind::Msg("AnyValue", any_value_schema),
        3 => Kind::Varint,
        _ => Kind::Unknown,
    }
}

fn any_value_schema(n: u32) -> Kind {
    match n {
        1 => Kind::Str,
        2 | 3 => Kind::Varint,
        4 => Kind::Fixed64,
        5 => Kind::Msg("ArrayValue", array_value_schema),
        6 => Kind::Msg("KeyValueList", key_value_list_schema),
        7 => Kind::Bytes,
        8 => Kind::Varint,
        _ => Kind::Unknown,
    }
}

fn array_value_schema(n: u32) -> Kind {
    match n {
        1 => Kind::Msg("AnyValue", any_value_schema),
        _ => Kind::Unknown,
    }
}

fn key_value_list_schema(n: u32) -> Kind {
    match n {
        1 => Kind::Msg("KeyValue", key_value_schema),
        _ => Kind::Unknown,
    }
}
