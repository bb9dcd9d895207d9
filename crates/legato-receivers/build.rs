//! Generates Jaeger's `CollectorService` (server side) and its model messages from
//! `proto/jaeger/`, with the protoc shipped as a crate.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../proto/jaeger");
    println!("cargo:rerun-if-changed={}", root.display());
    let mut config = tonic_prost_build::Config::new();
    config.protoc_executable(protoc_bin_vendored::protoc_bin_path()?);
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        .compile_with_config(config, &[root.join("collector.proto")], &[root])?;
    Ok(())
}
