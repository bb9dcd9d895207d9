//! Jaeger and Zipkin span formats translated to OTLP, following the OpenTelemetry
//! conventions for Jaeger and Zipkin (the inverse of the SDK exporters' mapping): service
//! name and process tags become the resource, `span.kind` / Zipkin `kind` the span kind,
//! `otel.status_code` / `error` the status, `otel.scope.*` / `otel.library.*` the scope,
//! logs and annotations events, references the parent and links.
//!
//! It decodes bodies (Zipkin v2 JSON and protobuf, Zipkin v1 JSON and Thrift, Jaeger Thrift
//! `Batch` in the binary and compact protocols, Jaeger's agent `emitBatch`, Jaeger's
//! protobuf model) and returns an `ExportTraceServiceRequest`; it does no IO and knows
//! nothing of tenants or ingest: the api crate hands the result to the distributor exactly
//! as an OTLP request.

mod error;
pub mod jaeger;
mod otlp;
pub mod zipkin;
pub mod zipkin_v1;

pub use error::ReceiveError;

/// The service name of spans that name none (the SDKs' fallback).
pub const UNKNOWN_SERVICE: &str = "unknown_service";
pub use legato_proto::collector::ExportTraceServiceRequest;
