//! OTLP/JSON decoding of an export request: any bytes give a request or a `JsonError`, never
//! a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = legato_proto::otlp_json::decode_export_request(data);
});
