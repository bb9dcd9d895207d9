//! TraceQL: the syntax tree, the parser (with errors that give line, column and what was
//! expected), and the evaluator that runs a query over spans of one trace.
//!
//! It knows nothing about storage or HTTP: callers hand it spans through the `SpanView`
//! interface (see `eval.rs`).

pub mod ast;
pub mod eval;
pub mod metrics;
mod parser;
pub mod search;
pub mod tags;
pub mod value;

pub use parser::{ParseError, parse};
