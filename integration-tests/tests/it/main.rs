//! All of this package's integration tests in one binary: each file is a module, so the
//! workspace links one test executable per package instead of one per file (disk and
//! link time on CI). nextest still runs every test in its own process.

mod auth;
mod bad_input;
mod cli;
mod cluster;
mod dashboards;
mod durability;
mod generator;
mod object_stores;
mod operations;
mod oversize;
mod response_shapes;
mod retention;
mod s3;
mod sampling;
mod sdk_export;
mod search;
mod tail_sampling;
mod tls;
mod zipkin_jaeger;
