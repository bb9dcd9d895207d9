//! Helpers for end-to-end tests that start the real `legato` binary.
