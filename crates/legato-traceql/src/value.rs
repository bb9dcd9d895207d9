//! Runtime values of TraceQL expressions and their comparison rules.

use std::cmp::Ordering;

use legato_model::span::AttrValue;

use crate::ast::{CmpOp, Static};

#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub enum Value {
    Nil,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
    /// Nanoseconds.
    Duration(i64),
    /// OTLP status code.
    Status(i32),
    /// OTLP span kind.
    Kind(i32),
    /// Several values (array attributes, events, links): a comparison holds if it holds for
    /// any element (`!=` and `!~`: for no element equal / matching).
    Many(Vec<Value>),
}

impl Value {
    pub fn from_static(s: &Static) -> Self {
        use crate::ast::{Kind, Status};
        match s {
            Static::Nil => Self::Nil,
            Static::Bool(b) => Self::Bool(*b),
            Static::Int(i) => Self::Int(*i),
            Static::Float(f) => Self::Float(*f),
            Static::String(s) => Self::Str(s.clone()),
            Static::Duration(d) => Self::Duration(*d),
            Static::Status(st) => Self::Status(match st {
                Status::Unset => 0,
                Status::Ok => 1,
                Status::Error => 2,
            }),
            Static::Kind(k) => Self::Kind(match k {
                Kind::Unspecified => 0,
                Kind::Internal => 1,
                Kind::Server => 2,
                Kind::Client => 3,
                Kind::Producer => 4,
                Kind::Consumer => 5,
            }),
        }
    }

    pub fn from_attr(v: &AttrValue) -> Self {
        match v {
            AttrValue::Str(s) => Self::Str(s.clone()),
            AttrValue::Int(i) => Self::Int(*i),
            AttrValue::Float(f) => Self::Float(*f),
            AttrValue::Bool(b) => Self::Bool(*b),
            AttrValue::Array(items) => Self::Many(items.iter().map(Self::from_attr).collect()),
        }
    }

    pub fn is_nil(&self) -> bool {
        matches!(self, Self::Nil) || matches!(self, Self::Many(v) if v.is_empty())
    }

    pub fn truthy(&self) -> bool {
        match self {
            Self::Bool(b) => *b,
            Self::Many(items) => items.iter().any(Value::truthy),
            _ => false,
        }
    }

    pub fn as_f64(&self) -> Option<f64> {
        match self {
            Self::Int(i) => Some(*i as f64),
            Self::Float(f) => Some(*f),
            Self::Duration(d) => Some(*d as f64),
            _ => None,
        }
    }

    /// Order of two single values, when they are comparable.
    fn order(&self, other: &Value) -> Option<Ordering> {
        match (self, other) {
            (Self::Str(a), Self::Str(b)) => Some(a.cmp(b)),
            (Self::Bool(a), Self::Bool(b)) => Some(a.cmp(b)),
            (Self::Status(a), Self::Status(b)) | (Self::Kind(a), Self::Kind(b)) => Some(a.cmp(b)),
            (Self::Int(a), Self::Int(b)) | (Self::Duration(a), Self::Duration(b)) => Some(a.cmp(b)),
            _ => {
                let (a, b) = (self.as_f64()?, other.as_f64()?);
                a.partial_cmp(&b)
            }
        }
    }

    pub fn compare(&self, op: CmpOp, other: &Value) -> bool {
        if let Self::Many(items) = self {
            return match op {
                CmpOp::Neq => !items.iter().any(|v| v.compare(CmpOp::Eq, other)),
                _ => items.iter().any(|v| v.compare(op, other)),
            };
        }
        if let Self::Many(items) = other {
            return match op {
                CmpOp::Neq => !items.iter().any(|v| self.compare(CmpOp::Eq, v)),
                _ => items.iter().any(|v| self.compare(op, v)),
            };
        }
        match (self, other) {
            (Self::Nil, Self::Nil) => matches!(op, CmpOp::Eq),
            (Self::Nil, _) | (_, Self::Nil) => matches!(op, CmpOp::Neq),
            _ => match self.order(other) {
                None => false,
                Some(ord) => match op {
                    CmpOp::Eq => ord == Ordering::Equal,
                    CmpOp::Neq => ord != Ordering::Equal,
                    CmpOp::Lt => ord == Ordering::Less,
                    CmpOp::Lte => ord != Ordering::Greater,
                    CmpOp::Gt => ord == Ordering::Greater,
                    CmpOp::Gte => ord != Ordering::Less,
                },
            },
        }
    }

    /// The unscoped rendering used in search results: strings, numbers, keywords, Go-style
    /// durations.
    pub fn to_attr(&self) -> Option<AttrValue> {
        Some(match self {
            Self::Nil => return None,
            Self::Bool(b) => AttrValue::Bool(*b),
            Self::Int(i) => AttrValue::Int(*i),
            Self::Float(f) => AttrValue::Float(*f),
            Self::Str(s) => AttrValue::Str(s.clone()),
            Self::Duration(d) => AttrValue::Str(go_duration(*d)),
            Self::Status(c) => AttrValue::Str(status_name(*c).into()),
            Self::Kind(k) => AttrValue::Str(kind_name(*k).into()),
            Self::Many(items) => AttrValue::Array(items.iter().filter_map(Value::to_attr).collect()),
        })
    }

    /// Type names used by `/api/v2/search/tag/{tag}/values`.
    pub fn type_name(&self) -> &'static str {
        match self {
            Self::Str(_) | Self::Nil | Self::Many(_) => "string",
            Self::Int(_) => "int",
            Self::Float(_) => "float",
            Self::Bool(_) => "bool",
            Self::Duration(_) => "duration",
            Self::Status(_) | Self::Kind(_) => "keyword",
        }
    }
}

pub fn status_name(code: i32) -> &'static str {
    match code {
        1 => "ok",
        2 => "error",
        _ => "unset",
    }
}

pub fn kind_name(kind: i32) -> &'static str {
    match kind {
        1 => "internal",
        2 => "server",
        3 => "client",
        4 => "producer",
        5 => "consumer",
        _ => "unspecified",
    }
}

/// Go's `time.Duration.String()`: `1h2m3.5s`, `150ms`, `1.5µs`, `0s`.
pub fn go_duration(nanos: i64) -> String {
    if nanos == 0 {
        return "0s".into();
    }
    let sign = if nanos < 0 { "-" } else { "" };
    let n = nanos.unsigned_abs();
    let trim = |v: f64| {
        let s = format!("{v:.9}");
        let s = s.trim_end_matches('0').trim_end_matches('.');
        s.to_string()
    };
    if n < 1_000 {
        return format!("{sign}{n}ns");
    }
    if n < 1_000_000 {
        return format!("{sign}{}µs", trim(n as f64 / 1e3));
    }
    if n < 1_000_000_000 {
        return format!("{sign}{}ms", trim(n as f64 / 1e6));
    }
    let (h, rem) = (n / 3_600_000_000_000, n % 3_600_000_000_000);
    let (m, rem) = (rem / 60_000_000_000, rem % 60_000_000_000);
    let secs = trim(rem as f64 / 1e9);
    match (h, m) {
        (0, 0) => format!("{sign}{secs}s"),
        (0, m) => format!("{sign}{m}m{secs}s"),
        (h, m) => format!("{sign}{h}h{m}m{secs}s"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_durations() {
        assert_eq!(go_duration(150_000_000), "150ms");
        assert_eq!(go_duration(1_500_000_000), "1.5s");
        assert_eq!(go_duration(3_723_000_000_000), "1h2m3s");
        assert_eq!(go_duration(1_500), "1.5µs");
        assert_eq!(go_duration(12), "12ns");
    }

    #[test]
    fn comparisons() {
        assert!(Value::Int(3).compare(CmpOp::Lt, &Value::Float(3.5)));
        assert!(Value::Duration(2_000_000).compare(CmpOp::Gt, &Value::Duration(1_000_000)));
        assert!(Value::Str("b".into()).compare(CmpOp::Gt, &Value::Str("a".into())));
        assert!(Value::Nil.compare(CmpOp::Eq, &Value::Nil));
        assert!(Value::Str("x".into()).compare(CmpOp::Neq, &Value::Nil));
        assert!(!Value::Str("x".into()).compare(CmpOp::Eq, &Value::Int(1)));
        let many = Value::Many(vec![Value::Str("a".into()), Value::Str("b".into())]);
        assert!(many.compare(CmpOp::Eq, &Value::Str("b".into())));
        assert!(!many.compare(CmpOp::Neq, &Value::Str("b".into())));
    }
}
