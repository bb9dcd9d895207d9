//! What the Jaeger and Zipkin translations share: grouping spans into resource and scope
//! spans, the special tags (`otel.status_code`, `error`, `otel.scope.*`), ids and values.

use std::collections::HashMap;

use legato_proto::collector::ExportTraceServiceRequest;
use legato_proto::common::{AnyValue, InstrumentationScope, KeyValue, any_value};
use legato_proto::resource::Resource;
use legato_proto::trace::{ResourceSpans, ScopeSpans, Span, Status, span, status};

use crate::ReceiveError;

/// Spans grouped by resource (a key the caller picks: a service or a process) and scope.
#[derive(Default)]
pub(crate) struct RequestBuilder {
    resources: Vec<ResourceSpans>,
    by_key: HashMap<String, usize>,
}

impl RequestBuilder {
    /// Adds `span` under the resource named `key`, built by `resource` the first time.
    pub(crate) fn push(
        &mut self,
        key: &str,
        resource: impl FnOnce() -> Vec<KeyValue>,
        scope: InstrumentationScope,
        span: Span,
    ) {
        let index = match self.by_key.get(key) {
            Some(&i) => i,
            None => {
                self.resources.push(ResourceSpans {
                    resource: Some(Resource {
                        attributes: resource(),
                        ..Default::default()
                    }),
                    ..Default::default()
                });
                self.by_key.insert(key.to_string(), self.resources.len() - 1);
                self.resources.len() - 1
            }
        };
        let scopes = &mut self.resources[index].scope_spans;
        let same_scope = |s: &&mut ScopeSpans| {
            s.scope
                .as_ref()
                .is_some_and(|sc| sc.name == scope.name && sc.version == scope.version)
        };
        match scopes.iter_mut().find(same_scope) {
            Some(group) => group.spans.push(span),
            None => scopes.push(ScopeSpans {
                scope: Some(scope),
                spans: vec![span],
                ..Default::default()
            }),
        }
    }

    pub(crate) fn finish(self) -> ExportTraceServiceRequest {
        ExportTraceServiceRequest {
            resource_spans: self.resources,
        }
    }
}

pub(crate) fn string_value(s: impl Into<String>) -> AnyValue {
    AnyValue {
        value: Some(any_value::Value::StringValue(s.into())),
    }
}

pub(crate) fn kv(key: impl Into<String>, value: AnyValue) -> KeyValue {
    KeyValue {
        key: key.into(),
        value: Some(value),
        ..Default::default()
    }
}

/// The attribute's value as a string, when it is one.
fn as_str(kv: &KeyValue) -> Option<&str> {
    match kv.value.as_ref()?.value.as_ref()? {
        any_value::Value::StringValue(s) => Some(s),
        _ => None,
    }
}

/// Removes the attribute `key` and returns its value.
pub(crate) fn take(attributes: &mut Vec<KeyValue>, key: &str) -> Option<AnyValue> {
    let at = attributes.iter().position(|kv| kv.key == key)?;
    attributes.remove(at).value
}

fn take_string(attributes: &mut Vec<KeyValue>, key: &str) -> Option<String> {
    let at = attributes.iter().position(|kv| kv.key == key && as_str(kv).is_some())?;
    match attributes.remove(at).value?.value? {
        any_value::Value::StringValue(s) => Some(s),
        _ => None,
    }
}

/// The span's scope from `otel.scope.name`/`version` (or the older `otel.library.*`);
/// those tags are removed.
pub(crate) fn take_scope(attributes: &mut Vec<KeyValue>) -> InstrumentationScope {
    let scope_name = take_string(attributes, "otel.scope.name");
    let library_name = take_string(attributes, "otel.library.name");
    let scope_version = take_string(attributes, "otel.scope.version");
    let library_version = take_string(attributes, "otel.library.version");
    InstrumentationScope {
        name: scope_name.or(library_name).unwrap_or_default(),
        version: scope_version.or(library_version).unwrap_or_default(),
        ..Default::default()
    }
}

/// The span's status from `otel.status_code` (`OK`, `ERROR`), `otel.status_description`
/// and the `error` tag, which alone also means ERROR (a bool `true`, or a string: Zipkin
/// carries the description there). The tags that made the status are removed.
pub(crate) fn take_status(attributes: &mut Vec<KeyValue>) -> Option<Status> {
    let code = take_string(attributes, "otel.status_code").map(|c| c.to_ascii_uppercase());
    let description = take_string(attributes, "otel.status_description");
    let error = attributes.iter().find(|kv| kv.key == "error").and_then(error_tag);
    let code = match code.as_deref() {
        Some("OK") => status::StatusCode::Ok,
        Some("ERROR") => status::StatusCode::Error,
        Some(_) | None if error.is_some() => status::StatusCode::Error,
        _ => return None,
    };
    let mut message = description.unwrap_or_default();
    if code == status::StatusCode::Error
        && let Some(error_message) = error
    {
        take(attributes, "error");
        if message.is_empty() {
            message = error_message;
        }
    }
    Some(Status {
        message,
        code: code as i32,
    })
}

/// An `error` tag that marks a failure: its description (empty for a bare `true`).
fn error_tag(kv: &KeyValue) -> Option<String> {
    match kv.value.as_ref()?.value.as_ref()? {
        any_value::Value::BoolValue(true) => Some(String::new()),
        any_value::Value::StringValue(s) if s.eq_ignore_ascii_case("true") => Some(String::new()),
        any_value::Value::StringValue(s) if s.eq_ignore_ascii_case("false") => None,
        any_value::Value::StringValue(s) => Some(s.clone()),
        _ => None,
    }
}

/// A span kind from its Jaeger/OpenTracing (`span.kind`) or Zipkin (`kind`) name.
pub(crate) fn kind_from_name(name: &str) -> Option<span::SpanKind> {
    match name.to_ascii_lowercase().as_str() {
        "client" => Some(span::SpanKind::Client),
        "server" => Some(span::SpanKind::Server),
        "producer" => Some(span::SpanKind::Producer),
        "consumer" => Some(span::SpanKind::Consumer),
        "internal" => Some(span::SpanKind::Internal),
        _ => None,
    }
}

/// A hex id of up to `N` bytes, left-padded with zeros (Zipkin's 64-bit trace ids).
pub(crate) fn hex_id<const N: usize>(hex_text: &str, what: &str) -> Result<[u8; N], ReceiveError> {
    let bad = || ReceiveError::invalid(format!("{what} {hex_text:?} is not a hex id of up to {} digits", N * 2));
    if hex_text.is_empty() || hex_text.len() > N * 2 {
        return Err(bad());
    }
    let padded = format!("{hex_text:0>width$}", width = N * 2);
    let mut out = [0u8; N];
    hex::decode_to_slice(padded, &mut out).map_err(|_| bad())?;
    Ok(out)
}

/// A binary id of up to `N` bytes, right-aligned (8 bytes of a trace id are a 64-bit id).
pub(crate) fn bytes_id<const N: usize>(bytes: &[u8], what: &str) -> Result<[u8; N], ReceiveError> {
    if bytes.is_empty() || bytes.len() > N {
        return Err(ReceiveError::invalid(format!(
            "{what} has {} bytes, expected 1 to {N}",
            bytes.len()
        )));
    }
    let mut out = [0u8; N];
    out[N - bytes.len()..].copy_from_slice(bytes);
    Ok(out)
}

/// Microseconds since the epoch (Jaeger Thrift, Zipkin) as nanoseconds.
pub(crate) fn micros_to_nanos(micros: u64) -> u64 {
    micros.saturating_mul(1_000)
}

/// What the translation tests read from their output.
#[cfg(test)]
pub(crate) mod test_util {
    use legato_proto::common::any_value::Value;
    use legato_proto::trace::Span;

    use crate::ExportTraceServiceRequest;

    pub(crate) fn spans(request: &ExportTraceServiceRequest) -> Vec<&Span> {
        request
            .resource_spans
            .iter()
            .flat_map(|rs| &rs.scope_spans)
            .flat_map(|ss| &ss.spans)
            .collect()
    }

    pub(crate) fn attr<'a>(span: &'a Span, key: &str) -> Option<&'a Value> {
        span.attributes
            .iter()
            .find(|a| a.key == key)
            .and_then(|a| a.value.as_ref()?.value.as_ref())
    }
}
