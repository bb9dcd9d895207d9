//! All of this package's integration tests in one binary: each file is a module, so the
//! workspace links one test executable per package instead of one per file (disk and
//! link time on CI). nextest still runs every test in its own process.

mod corpus;
mod eval_corpus;
mod eval_exemplars;
mod eval_metrics;
mod eval_quantile;
mod eval_steps;
mod proptest;
mod support;
