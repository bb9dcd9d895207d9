//! Tempo's query messages (package `tempopb`), wire compatible with Tempo's `tempo.proto`.
//! Hand-written prost structs: they are few and small, and this keeps protoc out of the build.

use crate::trace::ResourceSpans;

/// `tempopb.Trace`: byte-identical to OTLP `TracesData`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Trace {
    #[prost(message, repeated, tag = "1")]
    pub resource_spans: Vec<ResourceSpans>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct TraceByIdMetrics {
    #[prost(uint64, tag = "1")]
    pub inspected_bytes: u64,
    #[prost(uint64, tag = "2")]
    pub backend_reads: u64,
    #[prost(uint64, tag = "3")]
    pub backend_bytes: u64,
}

/// `tempopb.PartialStatus`.
pub const PARTIAL_STATUS_COMPLETE: i32 = 0;
pub const PARTIAL_STATUS_PARTIAL: i32 = 1;

/// `tempopb.TraceByIDResponse`. `trace` is always `Some` so field 1 is always on the wire
/// (Grafana dereferences it).
#[derive(Clone, PartialEq, prost::Message)]
pub struct TraceByIdResponse {
    #[prost(message, optional, tag = "1")]
    pub trace: Option<Trace>,
    #[prost(message, optional, tag = "2")]
    pub metrics: Option<TraceByIdMetrics>,
    #[prost(int32, tag = "3")]
    pub status: i32,
    #[prost(string, tag = "4")]
    pub message: String,
}

#[cfg(test)]
mod tests {
    use super::*;
    use prost::Message;

    #[test]
    fn empty_trace_field_is_always_encoded() {
        let resp = TraceByIdResponse {
            trace: Some(Trace::default()),
            ..Default::default()
        };
        let bytes = resp.encode_to_vec();
        assert_eq!(&bytes[..2], &[0x0a, 0x00]);
    }
}
