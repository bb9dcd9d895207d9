//! Cluster membership and the hash rings of microservices mode.
//!
//! Membership is gossip (chitchat, Scuttlebutt reconciliation with a phi-accrual failure
//! detector), joined through seed addresses or DNS names such as a Kubernetes headless
//! service. Each node gossips a handful of keys (its roles, gRPC and HTTP addresses, state and
//! token count); tokens are derived from the node name, so every peer computes the same ring
//! without gossiping them. A node that stops heart-beating is dropped from the live set and
//! so from every ring, without manual steps.

mod config;
mod membership;
mod ring;

pub use config::{LifecyclerConfig, MemberlistConfig, RingConfig};
pub use membership::{Cluster, Member, MemberState, NodeInfo, Role};
pub use ring::{Ring, fnv1a, member_tokens, trace_token};
