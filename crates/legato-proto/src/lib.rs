//! Wire types and codecs: OTLP (re-exported from `opentelemetry-proto`), Tempo's query
//! messages (`tempopb.Trace`, `TraceByIDResponse`), the OTLP/JSON request decoder, Tempo's
//! JSON response dialect, and trace combining (merge + deduplicate by span id).
//!
//! It does not do IO or know about storage; it converts and combines.

pub mod codec;
pub mod combine;
pub mod otlp_json;
pub mod push;
pub mod span_view;
pub mod span_wire;
pub mod tempo_json;
pub mod tempopb;
pub mod wire;

pub use opentelemetry_proto::tonic::collector::trace::v1 as collector;
pub use opentelemetry_proto::tonic::common::v1 as common;
pub use opentelemetry_proto::tonic::resource::v1 as resource;
pub use opentelemetry_proto::tonic::trace::v1 as trace;

/// Number of spans in a list of resource spans.
pub fn span_count(batches: &[trace::ResourceSpans]) -> usize {
    batches
        .iter()
        .flat_map(|rs| &rs.scope_spans)
        .map(|ss| ss.spans.len())
        .sum()
}

/// Generated from `proto/internal.proto`: RPCs between Legato's roles in microservices mode.
pub mod internal {
    #![allow(clippy::all, clippy::pedantic, missing_docs, unreachable_pub)]
    include!(concat!(env!("OUT_DIR"), "/legato.internal.rs"));
}

/// Generated from `proto/otlp_raw.proto`: the OTLP/gRPC trace service with each request's
/// resource spans left encoded, for the wire-level splitter (`wire`).
pub mod otlp_raw {
    #![allow(clippy::all, clippy::pedantic, missing_docs, unreachable_pub)]
    include!(concat!(env!("OUT_DIR"), "/opentelemetry.proto.collector.trace.v1.rs"));
}
