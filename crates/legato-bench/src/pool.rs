//! Pre-encoded export requests resent with fresh trace ids, so that at high rates the load
//! generator spends its CPU on sending, not on building and encoding protobuf, and the
//! receiver's cost is what gets measured. The data repeats every `pool` requests except for
//! the trace ids.

use bytes::Bytes;
use legato_proto::collector::{ExportTraceServiceRequest, ExportTraceServiceResponse};
use prost::Message;
use tonic::Status;
use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};

use crate::traffic::GeneratedTrace;

/// One encoded request and where each of its trace ids sits in it.
pub struct Prepared {
    bytes: Vec<u8>,
    /// Per trace: its id, its span count, and the offsets of every copy of the id.
    traces: Vec<([u8; 16], usize, Vec<usize>)>,
}

impl Prepared {
    pub fn new(req: &ExportTraceServiceRequest, traces: &[GeneratedTrace]) -> Self {
        let bytes = req.encode_to_vec();
        let traces = traces
            .iter()
            .map(|t| {
                let offsets = bytes
                    .windows(16)
                    .enumerate()
                    .filter(|(_, w)| *w == t.id)
                    .map(|(i, _)| i)
                    .collect();
                (t.id, t.spans.len(), offsets)
            })
            .collect();
        Self { bytes, traces }
    }

    /// A copy with every trace id changed by `counter` (unique per sender and send): the
    /// encoded request, and the (new id, span count) of each trace.
    pub fn instantiate(&self, counter: u64) -> (Bytes, Vec<([u8; 16], usize)>) {
        let mask = mix(counter).to_le_bytes();
        let mut bytes = self.bytes.clone();
        let mut ids = Vec::with_capacity(self.traces.len());
        for (id, spans, offsets) in &self.traces {
            let mut new = *id;
            for (b, m) in new[..8].iter_mut().zip(mask) {
                *b ^= m;
            }
            for &o in offsets {
                bytes[o..o + 16].copy_from_slice(&new);
            }
            ids.push((new, *spans));
        }
        (Bytes::from(bytes), ids)
    }
}

fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// A gRPC codec that sends already-encoded request bytes.
#[derive(Clone, Default)]
pub struct RawCodec;

pub struct RawEncoder;
pub struct RawDecoder;

impl Codec for RawCodec {
    type Encode = Bytes;
    type Decode = ExportTraceServiceResponse;
    type Encoder = RawEncoder;
    type Decoder = RawDecoder;

    fn encoder(&mut self) -> Self::Encoder {
        RawEncoder
    }

    fn decoder(&mut self) -> Self::Decoder {
        RawDecoder
    }
}

impl Encoder for RawEncoder {
    type Item = Bytes;
    type Error = Status;

    fn encode(&mut self, item: Bytes, dst: &mut EncodeBuf<'_>) -> Result<(), Status> {
        bytes::BufMut::put_slice(dst, &item);
        Ok(())
    }
}

impl Decoder for RawDecoder {
    type Item = ExportTraceServiceResponse;
    type Error = Status;

    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<Self::Item>, Status> {
        ExportTraceServiceResponse::decode(src)
            .map(Some)
            .map_err(|e| Status::internal(e.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn instantiated_requests_carry_fresh_ids_and_decode() {
        let mut g = crate::traffic::Generator::with_data(7, crate::traffic::Data::Legacy);
        let traces: Vec<GeneratedTrace> = (0..5).map(|k| g.trace(1_000 + k)).collect();
        let req = crate::traffic::batch(&g, &traces);
        let p = Prepared::new(&req, &traces);
        let (a, ids_a) = p.instantiate(1);
        let (b, ids_b) = p.instantiate(2);
        assert_ne!(ids_a, ids_b);
        for (bytes, ids) in [(a, ids_a), (b, ids_b)] {
            let decoded = ExportTraceServiceRequest::decode(bytes).unwrap();
            let mut seen: std::collections::HashMap<Vec<u8>, usize> = Default::default();
            for rs in &decoded.resource_spans {
                for ss in &rs.scope_spans {
                    for s in &ss.spans {
                        *seen.entry(s.trace_id.clone()).or_default() += 1;
                    }
                }
            }
            assert_eq!(seen.len(), ids.len());
            for (id, spans) in ids {
                assert_eq!(seen.get(id.as_slice()), Some(&spans));
            }
        }
    }
}
