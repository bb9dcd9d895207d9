//! A consistent-hash ring over live members: each member owns tokens derived from its name,
//! a key belongs to the first token at or after it, and its replicas are the next distinct
//! members clockwise.

use crate::Member;

/// FNV-1a, 32 bits: stable across processes and versions, which the ring needs.
pub fn fnv1a(parts: &[&[u8]]) -> u32 {
    let mut h: u32 = 0x811c_9dc5;
    for part in parts {
        for b in *part {
            h ^= u32::from(*b);
            h = h.wrapping_mul(0x0100_0193);
        }
    }
    h
}

/// The ring key of a trace: all spans of a trace go to the same ingesters.
pub fn trace_token(tenant: &str, trace_id: &[u8]) -> u32 {
    fnv1a(&[tenant.as_bytes(), b"/", trace_id])
}

/// A member's tokens, derived from its name so that a restarted pod (same StatefulSet name)
/// takes back the same ranges and every peer computes the same ring.
pub fn member_tokens(node_id: &str, n: usize) -> Vec<u32> {
    let mut state =
        u64::from(fnv1a(&[node_id.as_bytes()])) | (u64::from(fnv1a(&[b"legato", node_id.as_bytes()])) << 32);
    (0..n)
        .map(|_| {
            // splitmix64
            state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
            let mut z = state;
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            (z ^ (z >> 31)) as u32
        })
        .collect()
}

#[derive(Debug, Clone, Default)]
pub struct Ring {
    members: Vec<Member>,
    /// (token, index into members), sorted by token.
    tokens: Vec<(u32, usize)>,
    replication_factor: usize,
}

impl Ring {
    /// A ring over `members` (callers pass the live, active members of one role).
    pub fn new(mut members: Vec<Member>, replication_factor: usize) -> Self {
        members.sort_by(|a, b| a.id.cmp(&b.id));
        members.dedup_by(|a, b| a.id == b.id);
        let mut tokens: Vec<(u32, usize)> = members
            .iter()
            .enumerate()
            .flat_map(|(i, m)| {
                member_tokens(&m.id, m.num_tokens.max(1))
                    .into_iter()
                    .map(move |t| (t, i))
            })
            .collect();
        tokens.sort_unstable();
        Self {
            members,
            tokens,
            replication_factor: replication_factor.max(1),
        }
    }

    pub fn members(&self) -> &[Member] {
        &self.members
    }

    pub fn is_empty(&self) -> bool {
        self.members.is_empty()
    }

    pub fn replication_factor(&self) -> usize {
        self.replication_factor
    }

    /// The members that hold `key`: up to the replication factor, distinct, clockwise.
    pub fn replicas(&self, key: u32) -> Vec<&Member> {
        let want = self.replication_factor.min(self.members.len());
        let mut out: Vec<&Member> = Vec::with_capacity(want);
        if want == 0 {
            return out;
        }
        let start = self.tokens.partition_point(|(t, _)| *t < key);
        for step in 0..self.tokens.len() {
            let (_, idx) = self.tokens[(start + step) % self.tokens.len()];
            let m = &self.members[idx];
            if !out.iter().any(|o| o.id == m.id) {
                out.push(m);
                if out.len() == want {
                    break;
                }
            }
        }
        out
    }

    /// The single owner of `key` (replication ignored): used to share work among compactors.
    pub fn owner(&self, key: u32) -> Option<&Member> {
        let start = self.tokens.partition_point(|(t, _)| *t < key);
        self.tokens
            .get(start % self.tokens.len().max(1))
            .map(|(_, idx)| &self.members[*idx])
    }

    /// Acknowledgements a write needs: a majority of the replication factor, so that a read
    /// from any majority sees it. With fewer members than the replication factor, a majority
    /// of the members there are.
    pub fn write_quorum(&self) -> usize {
        self.replication_factor.min(self.members.len()) / 2 + 1
    }

    /// Share of the token space each member owns (as primary), for the ring page.
    pub fn ownership(&self) -> Vec<(String, f64)> {
        let mut owned = vec![0u64; self.members.len()];
        for (i, (token, idx)) in self.tokens.iter().enumerate() {
            let prev = if i == 0 {
                self.tokens.last().map_or(0, |t| t.0)
            } else {
                self.tokens[i - 1].0
            };
            owned[*idx] += u64::from(token.wrapping_sub(prev));
        }
        if self.tokens.len() == 1 {
            owned[self.tokens[0].1] = u64::from(u32::MAX) + 1;
        }
        self.members
            .iter()
            .zip(owned)
            .map(|(m, o)| (m.id.clone(), o as f64 / (f64::from(u32::MAX) + 1.0)))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{MemberState, Role};

    fn member(id: &str) -> Member {
        Member {
            id: id.into(),
            generation: 1,
            roles: vec![Role::Ingester],
            grpc_addr: format!("{id}:9095"),
            http_addr: format!("{id}:3200"),
            state: MemberState::Active,
            num_tokens: 128,
        }
    }

    #[test]
    fn replicas_are_distinct_and_stable() {
        let ring = Ring::new(vec![member("a"), member("b"), member("c"), member("d")], 3);
        for key in [0u32, 1, 77, u32::MAX / 2, u32::MAX] {
            let r = ring.replicas(key);
            assert_eq!(r.len(), 3);
            let mut ids: Vec<_> = r.iter().map(|m| m.id.clone()).collect();
            ids.sort();
            ids.dedup();
            assert_eq!(ids.len(), 3);
        }
        // Same members in another order: same answer (every peer computes the same ring).
        let other = Ring::new(vec![member("d"), member("c"), member("b"), member("a")], 3);
        for key in (0..1000u32).map(|i| i.wrapping_mul(4_294_967)) {
            let a: Vec<_> = ring.replicas(key).iter().map(|m| m.id.clone()).collect();
            let b: Vec<_> = other.replicas(key).iter().map(|m| m.id.clone()).collect();
            assert_eq!(a, b);
        }
    }

    #[test]
    fn losing_a_member_moves_only_its_keys() {
        let full = Ring::new(vec![member("a"), member("b"), member("c")], 1);
        let less = Ring::new(vec![member("a"), member("b")], 1);
        let mut moved = 0;
        for key in (0..10_000u32).map(|i| i.wrapping_mul(429_497)) {
            let before = &full.replicas(key)[0].id;
            let after = &less.replicas(key)[0].id;
            if before != "c" {
                assert_eq!(before, after, "a key not owned by the lost member moved");
            } else {
                moved += 1;
            }
        }
        // Each of three members owns roughly a third.
        assert!((2_000..4_700).contains(&moved), "{moved}");
        let shares = full.ownership();
        assert!(shares.iter().all(|(_, s)| (0.2..0.47).contains(s)), "{shares:?}");
        assert!((shares.iter().map(|(_, s)| s).sum::<f64>() - 1.0).abs() < 1e-6);
    }

    #[test]
    fn quorum_is_a_majority() {
        let three = Ring::new(vec![member("a"), member("b"), member("c")], 3);
        assert_eq!(three.write_quorum(), 2);
        let one = Ring::new(vec![member("a")], 3);
        assert_eq!(one.write_quorum(), 1);
        assert_eq!(one.replicas(5).len(), 1);
        assert!(Ring::new(vec![], 3).replicas(5).is_empty());
    }
}
