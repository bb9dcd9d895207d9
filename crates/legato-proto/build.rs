//! Generates the StreamingQuerier service and its request/metrics messages from
//! `proto/tempopb.proto`, Legato's internal RPCs from `proto/internal.proto`, and the OTLP trace service with
//! undecoded resource spans from `proto/otlp_raw.proto`, with a protoc shipped as a crate (no system protoc needed).

/// A prost config using the vendored protoc.
fn config() -> Result<tonic_prost_build::Config, Box<dyn std::error::Error>> {
    let mut config = tonic_prost_build::Config::new();
    config.protoc_executable(protoc_bin_vendored::protoc_bin_path()?);
    Ok(config)
}

/// Clients and servers both.
fn builder() -> tonic_prost_build::Builder {
    tonic_prost_build::configure().build_client(true).build_server(true)
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../proto");
    println!("cargo:rerun-if-changed={}", root.display());
    builder()
        .extern_path(
            ".tempopb.common.v1.KeyValue",
            "::opentelemetry_proto::tonic::common::v1::KeyValue",
        )
        .extern_path(".tempopb.SearchResponse", "crate::tempopb::search::SearchResponse")
        .extern_path(
            ".tempopb.SearchTagsResponse",
            "crate::tempopb::search::SearchTagsResponse",
        )
        .extern_path(
            ".tempopb.SearchTagsV2Response",
            "crate::tempopb::search::SearchTagsV2Response",
        )
        .extern_path(
            ".tempopb.SearchTagValuesResponse",
            "crate::tempopb::search::SearchTagValuesResponse",
        )
        .extern_path(
            ".tempopb.SearchTagValuesV2Response",
            "crate::tempopb::search::SearchTagValuesV2Response",
        )
        .compile_with_config(config()?, &[root.join("tempopb.proto")], std::slice::from_ref(&root))?;
    builder()
        .bytes(".")
        .extern_path(".legato.internal.PushRequest", "crate::push::PushRequest")
        .extern_path(".legato.internal.TraceSegment", "crate::push::TraceSegment")
        .compile_with_config(config()?, &[root.join("internal.proto")], std::slice::from_ref(&root))?;
    builder()
        .bytes(".")
        .codec_path("crate::codec::ClientErrorCodec")
        .extern_path(
            ".opentelemetry.proto.collector.trace.v1.ExportTraceServiceResponse",
            "::opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceResponse",
        )
        .compile_with_config(config()?, &[root.join("otlp_raw.proto")], &[root])?;
    Ok(())
}
