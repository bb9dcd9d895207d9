//! The TraceQL parser (search and metrics queries, hints): any string gives a query or a
//! `ParseError`, never a panic or a stack overflow.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(query) = std::str::from_utf8(data) {
        let _ = legato_traceql::parse(query);
    }
});
