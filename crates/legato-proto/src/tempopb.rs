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

/// `tempopb.SearchResponse` and friends: the search and tag APIs' protobuf shapes.
pub mod search {
    use crate::common::KeyValue;

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct SearchResponse {
        #[prost(message, repeated, tag = "1")]
        pub traces: Vec<TraceSearchMetadata>,
        #[prost(message, optional, tag = "2")]
        pub metrics: Option<SearchMetrics>,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct TraceSearchMetadata {
        #[prost(string, tag = "1")]
        pub trace_id: String,
        #[prost(string, tag = "2")]
        pub root_service_name: String,
        #[prost(string, tag = "3")]
        pub root_trace_name: String,
        #[prost(uint64, tag = "4")]
        pub start_time_unix_nano: u64,
        #[prost(uint32, tag = "5")]
        pub duration_ms: u32,
        #[prost(message, optional, tag = "6")]
        pub span_set: Option<SpanSet>,
        #[prost(message, repeated, tag = "7")]
        pub span_sets: Vec<SpanSet>,
        #[prost(btree_map = "string, message", tag = "8")]
        pub service_stats: std::collections::BTreeMap<String, ServiceStats>,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct ServiceStats {
        #[prost(uint32, tag = "1")]
        pub span_count: u32,
        #[prost(uint32, tag = "2")]
        pub error_count: u32,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct SpanSet {
        #[prost(message, repeated, tag = "1")]
        pub spans: Vec<Span>,
        #[prost(uint32, tag = "2")]
        pub matched: u32,
        #[prost(message, repeated, tag = "3")]
        pub attributes: Vec<KeyValue>,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Span {
        #[prost(string, tag = "1")]
        pub span_id: String,
        #[prost(string, tag = "2")]
        pub name: String,
        #[prost(uint64, tag = "3")]
        pub start_time_unix_nano: u64,
        #[prost(uint64, tag = "4")]
        pub duration_nanos: u64,
        #[prost(message, repeated, tag = "5")]
        pub attributes: Vec<KeyValue>,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct SearchMetrics {
        #[prost(uint32, tag = "1")]
        pub inspected_traces: u32,
        #[prost(uint64, tag = "2")]
        pub inspected_bytes: u64,
        #[prost(uint32, tag = "3")]
        pub total_blocks: u32,
        #[prost(uint32, tag = "4")]
        pub completed_jobs: u32,
        #[prost(uint32, tag = "5")]
        pub total_jobs: u32,
        #[prost(uint64, tag = "6")]
        pub total_block_bytes: u64,
        #[prost(uint64, tag = "7")]
        pub inspected_spans: u64,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct MetadataMetrics {
        #[prost(uint64, tag = "1")]
        pub inspected_bytes: u64,
        #[prost(uint32, tag = "2")]
        pub total_jobs: u32,
        #[prost(uint32, tag = "3")]
        pub completed_jobs: u32,
        #[prost(uint32, tag = "4")]
        pub total_blocks: u32,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct SearchTagsResponse {
        #[prost(string, repeated, tag = "1")]
        pub tag_names: Vec<String>,
        #[prost(message, optional, tag = "2")]
        pub metrics: Option<MetadataMetrics>,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct SearchTagsV2Scope {
        #[prost(string, tag = "1")]
        pub name: String,
        #[prost(string, repeated, tag = "2")]
        pub tags: Vec<String>,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct SearchTagsV2Response {
        #[prost(message, repeated, tag = "1")]
        pub scopes: Vec<SearchTagsV2Scope>,
        #[prost(message, optional, tag = "2")]
        pub metrics: Option<MetadataMetrics>,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct SearchTagValuesResponse {
        #[prost(string, repeated, tag = "1")]
        pub tag_values: Vec<String>,
        #[prost(message, optional, tag = "2")]
        pub metrics: Option<MetadataMetrics>,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct TagValue {
        #[prost(string, tag = "1")]
        pub r#type: String,
        #[prost(string, tag = "2")]
        pub value: String,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct SearchTagValuesV2Response {
        #[prost(message, repeated, tag = "1")]
        pub tag_values: Vec<TagValue>,
        #[prost(message, optional, tag = "2")]
        pub metrics: Option<MetadataMetrics>,
    }
}

/// Generated from `proto/tempopb.proto`: the StreamingQuerier service (client and server),
/// its requests, and the metrics responses.
pub mod streaming {
    #![allow(clippy::all, clippy::pedantic, missing_docs, unreachable_pub)]
    include!(concat!(env!("OUT_DIR"), "/tempopb.rs"));
}
