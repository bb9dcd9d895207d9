//! The TraceQL parser (search and metrics queries, hints): any string gives a query or a
//! `ParseError`, never a panic or a stack overflow.
#![no_main]

use libfuzzer_sys::fuzz_target;

/// Queries are parsed on tokio worker threads, whose stacks are 2 MiB by default: the parser's
/// nesting limit must hold within that, not just within the main thread's 8 MiB.
const WORKER_STACK: usize = 2 * 1024 * 1024;

fuzz_target!(|data: &[u8]| {
    if let Ok(query) = std::str::from_utf8(data) {
        std::thread::scope(|s| {
            std::thread::Builder::new()
                .stack_size(WORKER_STACK)
                .spawn_scoped(s, || {
                    let _ = legato_traceql::parse(query);
                })
                .expect("spawning the parser thread")
                .join()
                .expect("the parser thread panicked");
        });
    }
});
