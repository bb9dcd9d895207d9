use bloomfilter::Bloom;
use legato_model::TraceId;

/// A bloom filter over the trace ids of one block (0.1% false positives).
pub struct TraceBloom(Bloom<[u8; 16]>);

/// Every false positive makes a trace lookup fetch and decode a page of a block that does not
/// hold the trace: at 1% and 137 blocks that was 1.4 wasted reads per lookup and half its CPU
/// (docs/benchmarks.md). 0.1% costs 14.4 bits per trace instead of 9.6 (about 0.06 bytes more
/// per span) and keeps lookups at about one read up to several hundred blocks.
const FALSE_POSITIVE_RATE: f64 = 0.001;

/// Most hash functions a filter read back may use: `build` uses about 10 at
/// `FALSE_POSITIVE_RATE` (7 in blocks written at 1%).
const MAX_HASHES: u32 = 64;

impl TraceBloom {
    pub fn build<'a>(ids: impl ExactSizeIterator<Item = &'a TraceId>) -> Self {
        let count = ids.len().max(1);
        // new_for_fp_rate only fails for zero items or an fp rate outside (0,1).
        let mut bloom = Bloom::new_for_fp_rate(count, FALSE_POSITIVE_RATE).unwrap_or_else(|_| unreachable_bloom());
        for id in ids {
            bloom.set(&id.0);
        }
        Self(bloom)
    }

    /// A filter read back from a block's `bloom` file, or None if the file is not one `build`
    /// could have written: an empty bitmap (a lookup would divide by zero and panic) or more
    /// hash functions than `MAX_HASHES` (each lookup runs all of them; a damaged header can
    /// claim 2^32).
    pub fn from_bytes(bytes: &[u8]) -> Option<Self> {
        let bloom = Bloom::from_slice(bytes).ok()?;
        (bloom.len() >= 8 && bloom.number_of_hash_functions() <= MAX_HASHES).then_some(Self(bloom))
    }

    pub fn to_bytes(&self) -> Vec<u8> {
        self.0.as_slice().to_vec()
    }

    pub fn may_contain(&self, id: &TraceId) -> bool {
        self.0.check(&id.0)
    }
}

fn unreachable_bloom() -> Bloom<[u8; 16]> {
    // A 1-byte, 1-hash filter: says "maybe" often but is never wrong.
    Bloom::new(1, 1).unwrap_or_else(|_| panic!("bloomfilter rejected a 1-byte filter"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_no_false_negatives() {
        let ids: Vec<TraceId> = (0..1000u32)
            .map(|i| {
                let mut b = [0u8; 16];
                b[..4].copy_from_slice(&i.to_be_bytes());
                TraceId(b)
            })
            .collect();
        let bloom = TraceBloom::from_bytes(&TraceBloom::build(ids.iter()).to_bytes()).unwrap();
        assert!(ids.iter().all(|id| bloom.may_contain(id)));
        let false_hits = (5000..6000u32)
            .filter(|i| {
                let mut b = [0u8; 16];
                b[..4].copy_from_slice(&i.to_be_bytes());
                bloom.may_contain(&TraceId(b))
            })
            .count();
        assert!(
            false_hits < 10,
            "{false_hits} false positives in 1000 (expected about 1)"
        );
    }
}
