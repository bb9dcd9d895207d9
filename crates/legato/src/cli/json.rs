//! Reading Tempo's JSON dialect (gogo jsonpb): 64-bit integers as strings, OTLP `AnyValue`
//! objects, absent fields for defaults.

use serde_json::Value;

/// An unsigned integer that may be a JSON number or a decimal string; 0 when absent.
pub fn u64_of(v: &Value) -> u64 {
    match v {
        Value::Number(n) => n
            .as_u64()
            .or_else(|| n.as_f64().map(|f| f.max(0.0) as u64))
            .unwrap_or(0),
        Value::String(s) => s.parse().unwrap_or(0),
        _ => 0,
    }
}

/// A float that may be a JSON number or a string (`"NaN"`, `"1.5"`); NaN when absent.
pub fn f64_of(v: &Value) -> f64 {
    match v {
        Value::Number(n) => n.as_f64().unwrap_or(f64::NAN),
        Value::String(s) => s.parse().unwrap_or(f64::NAN),
        _ => f64::NAN,
    }
}

/// A string field, or "" when absent.
pub fn str_of(v: &Value) -> &str {
    v.as_str().unwrap_or("")
}

/// An array field, or an empty slice when absent.
pub fn array_of(v: &Value) -> &[Value] {
    v.as_array().map(Vec::as_slice).unwrap_or(&[])
}

/// The text of an OTLP `AnyValue`: strings as they are, other scalars as their JSON text.
pub fn any_value_text(v: &Value) -> String {
    let Some(object) = v.as_object() else {
        return String::new();
    };
    match object.values().next() {
        Some(Value::String(s)) => s.clone(),
        Some(other) => other.to_string(),
        None => String::new(),
    }
}

/// Whether an `AnyValue` holds a string (labels print those quoted).
pub fn is_string_value(v: &Value) -> bool {
    v.get("stringValue").is_some()
}

/// The value of `key` in an OTLP attribute list (`[{"key":..,"value":{..}}]`).
pub fn attribute<'a>(attributes: &'a Value, key: &str) -> Option<&'a Value> {
    array_of(attributes)
        .iter()
        .find(|kv| kv["key"] == key)
        .map(|kv| &kv["value"])
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn tempo_json_scalars() {
        assert_eq!(u64_of(&json!("1700000000000000000")), 1_700_000_000_000_000_000);
        assert_eq!(u64_of(&json!(42)), 42);
        assert_eq!(u64_of(&Value::Null), 0);
        assert_eq!(f64_of(&json!(1.5)), 1.5);
        assert!(f64_of(&json!("NaN")).is_nan());
        assert_eq!(any_value_text(&json!({"stringValue": "api"})), "api");
        assert_eq!(any_value_text(&json!({"intValue": "7"})), "7");
        assert_eq!(any_value_text(&json!({"doubleValue": 0.5})), "0.5");
        assert_eq!(any_value_text(&json!({"boolValue": true})), "true");
        let attrs = json!([{"key": "service.name", "value": {"stringValue": "api"}}]);
        assert_eq!(attribute(&attrs, "service.name"), Some(&json!({"stringValue": "api"})));
    }
}
