//! The `legato-v1` span schema: one row per span, rows sorted by trace id then start time.
//!
//! Layout choices (see docs/architecture.md): resources and scopes are stored as encoded
//! protobuf in dictionary-encoded columns, so a span pays one small dictionary index for them;
//! the tree is stored as the parent's row offset within the trace plus nested-set numbers, so
//! parent span ids cost nothing and structural queries need no tree rebuild; events and links
//! ride in one optional encoded column.

use std::sync::Arc;

use arrow_schema::{DataType, Field, Fields, Schema, SchemaRef};

pub const TRACE_ID: &str = "trace_id";
pub const SPAN_ID: &str = "span_id";
pub const PARENT_INDEX: &str = "parent_index";
pub const PARENT_SPAN_ID: &str = "parent_span_id";
pub const NESTED_LEFT: &str = "nested_left";
pub const NESTED_RIGHT: &str = "nested_right";
pub const NAME: &str = "name";
pub const KIND: &str = "kind";
pub const START: &str = "start_unix_nano";
pub const DURATION: &str = "duration_nano";
pub const STATUS_CODE: &str = "status_code";
pub const STATUS_MESSAGE: &str = "status_message";
pub const TRACE_STATE: &str = "trace_state";
pub const FLAGS: &str = "flags";
pub const SERVICE_NAME: &str = "service_name";
pub const RESOURCE: &str = "resource";
pub const SCOPE: &str = "scope";
pub const ATTRS: &str = "attrs";
pub const EXTRAS: &str = "extras";

pub fn attr_fields() -> Fields {
    Fields::from(vec![
        Field::new("key", DataType::Utf8, false),
        Field::new("str", DataType::Utf8, true),
        Field::new("int", DataType::Int64, true),
        Field::new("dbl", DataType::Float64, true),
        Field::new("bool", DataType::Boolean, true),
        Field::new("raw", DataType::Binary, true),
    ])
}

pub fn attr_item_field() -> Arc<Field> {
    Arc::new(Field::new("item", DataType::Struct(attr_fields()), false))
}

pub fn schema_v1() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new(TRACE_ID, DataType::FixedSizeBinary(16), false),
        Field::new(SPAN_ID, DataType::FixedSizeBinary(8), false),
        Field::new(PARENT_INDEX, DataType::Int32, false),
        Field::new(PARENT_SPAN_ID, DataType::FixedSizeBinary(8), true),
        Field::new(NESTED_LEFT, DataType::Int32, false),
        Field::new(NESTED_RIGHT, DataType::Int32, false),
        Field::new(NAME, DataType::Utf8, false),
        Field::new(KIND, DataType::Int8, false),
        Field::new(START, DataType::Int64, false),
        Field::new(DURATION, DataType::Int64, false),
        Field::new(STATUS_CODE, DataType::Int8, false),
        Field::new(STATUS_MESSAGE, DataType::Utf8, true),
        Field::new(TRACE_STATE, DataType::Utf8, true),
        Field::new(FLAGS, DataType::UInt32, false),
        Field::new(SERVICE_NAME, DataType::Utf8, false),
        Field::new(RESOURCE, DataType::Binary, false),
        Field::new(SCOPE, DataType::Binary, false),
        Field::new(ATTRS, DataType::List(attr_item_field()), false),
        Field::new(EXTRAS, DataType::Binary, true),
    ]))
}

/// `schema_v1` with the resource and scope columns, and span attribute keys and string values,
/// as dictionaries, for scans: Parquet stores them dictionary-encoded, so each row is an index
/// rather than a copy of the bytes, and predicates test each distinct value once.
pub fn schema_v1_dictionaries() -> SchemaRef {
    let dict = |values: DataType| DataType::Dictionary(Box::new(DataType::Int32), Box::new(values));
    let attr_fields: Fields = attr_fields()
        .iter()
        .map(|f| match f.name().as_str() {
            "key" | "str" => Arc::new(Field::new(f.name(), dict(DataType::Utf8), f.is_nullable())),
            _ => f.clone(),
        })
        .collect();
    let attrs_item = Arc::new(Field::new("item", DataType::Struct(attr_fields), false));
    let fields: Vec<Field> = schema_v1()
        .fields()
        .iter()
        .map(|f| match f.name().as_str() {
            RESOURCE | SCOPE => Field::new(f.name(), dict(DataType::Binary), f.is_nullable()),
            NAME | SERVICE_NAME => Field::new(f.name(), dict(DataType::Utf8), f.is_nullable()),
            ATTRS => Field::new(f.name(), DataType::List(attrs_item.clone()), f.is_nullable()),
            _ => f.as_ref().clone(),
        })
        .collect();
    Arc::new(Schema::new(fields))
}
