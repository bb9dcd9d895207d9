pub mod generators;
pub mod internal;
mod metrics_fanout;
pub mod remote;
pub mod ring_page;
