//! Attribute lookups shared by the processors.

use legato_proto::common::{KeyValue, any_value};

pub(crate) use legato_proto::span_view::string_attr;

/// Any scalar attribute as a label value.
pub(crate) fn any_attr(attrs: &[KeyValue], key: &str) -> Option<String> {
    attrs
        .iter()
        .find(|kv| kv.key == key)
        .and_then(|kv| match kv.value.as_ref()?.value.as_ref()? {
            any_value::Value::StringValue(s) => Some(s.clone()),
            any_value::Value::IntValue(i) => Some(i.to_string()),
            any_value::Value::DoubleValue(d) => Some(d.to_string()),
            any_value::Value::BoolValue(b) => Some(b.to_string()),
            _ => None,
        })
}
