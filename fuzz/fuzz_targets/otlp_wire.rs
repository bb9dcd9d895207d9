//! The distributor's protobuf walk over an `ExportTraceServiceRequest`: any bytes give a split
//! or a `WireError`, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = legato_proto::wire::split_request(data);
    // The same walk entered from already-separated `ResourceSpans` messages (what the gRPC
    // path hands over): cut the input at a few points taken from its first bytes.
    if let [a, b, rest @ ..] = data {
        let (x, y) = (*a as usize % (rest.len() + 1), *b as usize % (rest.len() + 1));
        let (lo, hi) = (x.min(y), x.max(y));
        let parts = [&rest[..lo], &rest[lo..hi], &rest[hi..]];
        let _ = legato_proto::wire::split_resource_spans(&parts);
    }
});
