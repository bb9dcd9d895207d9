#!/usr/bin/env python3
"""Writes the OTLP seed inputs of the otlp_wire and otlp_json fuzz targets (a small export
with a resource, a scope, spans with every attribute value type, an event, a link and a
status), protobuf-encoded by hand so no protobuf package is needed."""
import base64, json, os, struct, sys

here = os.path.join(os.path.dirname(os.path.abspath(__file__)), "seeds")

def varint(n):
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)

def key(num, wt):
    return varint(num << 3 | wt)

def v(num, n):
    return key(num, 0) + varint(n)

def f64(num, x):
    return key(num, 1) + struct.pack("<d", x)

def fixed64(num, n):
    return key(num, 1) + struct.pack("<Q", n)

def fixed32(num, n):
    return key(num, 5) + struct.pack("<I", n)

def ln(num, payload):
    if isinstance(payload, str):
        payload = payload.encode()
    return key(num, 2) + varint(len(payload)) + payload

def anyvalue(val):
    if isinstance(val, bool):
        return v(2, int(val))
    if isinstance(val, int):
        return v(3, val & (2**64 - 1))
    if isinstance(val, float):
        return f64(4, val)
    if isinstance(val, str):
        return ln(1, val)
    if isinstance(val, bytes):
        return ln(7, val)
    if isinstance(val, list):
        return ln(5, b"".join(ln(1, anyvalue(x)) for x in val))
    if isinstance(val, dict):
        return ln(6, b"".join(ln(1, kv(k, x)) for k, x in val.items()))
    raise TypeError(val)

def kv(k, val):
    return ln(1, k) + ln(2, anyvalue(val))

ATTRS = {"http.method": "GET", "http.status_code": 200, "ratio": 0.5, "ok": True,
         "raw": b"\x01\x02", "list": ["a", 1], "map": {"k": "v"}}

def span(trace, sid, parent, name, start, end):
    s = ln(1, trace) + ln(2, sid) + ln(3, "w3c=1")
    if parent:
        s += ln(4, parent)
    s += ln(5, name) + v(6, 2) + fixed64(7, start) + fixed64(8, end)
    s += b"".join(ln(9, kv(k, x)) for k, x in ATTRS.items()) + v(10, 1)
    s += ln(11, fixed64(1, start + 10) + ln(2, "exception") + ln(3, kv("exception.message", "boom")))
    s += ln(13, ln(1, trace) + ln(2, b"\x09" * 8) + ln(4, kv("link", 1)) + fixed32(6, 1))
    s += ln(15, ln(2, "error text") + v(3, 2))
    s += fixed32(16, 0x101)
    return s

def request():
    t1, t2 = bytes(range(1, 17)), bytes(range(17, 33))
    spans = [span(t1, b"\x01" * 8, None, "GET /", 1_700_000_000_000_000_000, 1_700_000_000_500_000_000),
             span(t1, b"\x02" * 8, b"\x01" * 8, "db", 1_700_000_000_100_000_000, 1_700_000_000_200_000_000),
             span(t2, b"\x03" * 8, None, "other", 1_700_000_001_000_000_000, 1_700_000_002_000_000_000)]
    scope = ln(1, ln(1, "lib") + ln(2, "1.0") + ln(3, kv("scope.attr", "x")))
    ss = scope + b"".join(ln(2, s) for s in spans) + ln(3, "https://opentelemetry.io/schemas/1.21.0")
    resource = ln(1, ln(1, kv("service.name", "frontend")) + ln(1, kv("host.name", "h1")))
    rs = resource + ln(2, ss) + ln(3, "https://opentelemetry.io/schemas/1.21.0")
    return ln(1, rs) + ln(1, ln(1, ln(1, kv("service.name", "backend"))) + ln(2, ln(2, spans[2])))

def json_value(val):
    if isinstance(val, bool):
        return {"boolValue": val}
    if isinstance(val, int):
        return {"intValue": str(val)}
    if isinstance(val, float):
        return {"doubleValue": val}
    if isinstance(val, str):
        return {"stringValue": val}
    if isinstance(val, bytes):
        return {"bytesValue": base64.b64encode(val).decode()}
    if isinstance(val, list):
        return {"arrayValue": {"values": [json_value(x) for x in val]}}
    return {"kvlistValue": {"values": [{"key": k, "value": json_value(x)} for k, x in val.items()]}}

def json_request():
    attrs = [{"key": k, "value": json_value(x)} for k, x in ATTRS.items()]
    span = {"traceId": "0102030405060708090a0b0c0d0e0f10", "spanId": "0101010101010101",
            "parentSpanId": "0202020202020202", "traceState": "w3c=1", "name": "GET /",
            "kind": "SPAN_KIND_SERVER", "startTimeUnixNano": "1700000000000000000",
            "endTimeUnixNano": 1700000000500000000, "attributes": attrs,
            "droppedAttributesCount": 1, "flags": 257,
            "events": [{"timeUnixNano": "1700000000000000010", "name": "exception",
                        "attributes": [{"key": "exception.message", "value": {"stringValue": "boom"}}]}],
            "links": [{"traceId": "0102030405060708090a0b0c0d0e0f10", "spanId": "0909090909090909",
                       "attributes": [{"key": "link", "value": {"intValue": 1}}]}],
            "status": {"code": "STATUS_CODE_ERROR", "message": "error text"}}
    snake = {"trace_id": "1112131415161718191a1b1c1d1e1f20", "span_id": "0303030303030303",
             "name": "other", "kind": 3, "start_time_unix_nano": 1, "end_time_unix_nano": "2",
             "status": {"code": 1}}
    return {"resourceSpans": [
        {"resource": {"attributes": [{"key": "service.name", "value": {"stringValue": "frontend"}}]},
         "scopeSpans": [{"scope": {"name": "lib", "version": "1.0"}, "spans": [span],
                         "schemaUrl": "https://opentelemetry.io/schemas/1.21.0"}]},
        {"resource": {"attributes": []}, "scope_spans": [{"spans": [snake]}]}]}

with open(os.path.join(here, "otlp_wire", "export.pb"), "wb") as f:
    f.write(request())
with open(os.path.join(here, "otlp_json", "export.json"), "w") as f:
    json.dump(json_request(), f, indent=1)
with open(os.path.join(here, "otlp_json", "minimal.json"), "w") as f:
    f.write('{"resourceSpans":[{"scopeSpans":[{"spans":[{"traceId":"0102030405060708090a0b0c0d0e0f10","spanId":"0102030405060708","name":"x"}]}]}]}')
