use std::time::Duration;

use legato_storage::config_durations as dur;
use serde::{Deserialize, Serialize};

/// `memberlist`: how a node joins the gossip cluster (Tempo's key names).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct MemberlistConfig {
    /// Unique name of this node; empty = the host name (the pod name on Kubernetes).
    pub node_name: String,
    /// Addresses to listen on for gossip (UDP); empty = all interfaces. Only the first is used.
    pub bind_addr: Vec<String>,
    pub bind_port: u16,
    /// Address peers use to reach this node; empty = the first non-loopback address, or
    /// 127.0.0.1 when bound to loopback.
    pub advertise_addr: String,
    /// 0 = `bind_port`.
    pub advertise_port: u16,
    /// Seeds: `host:port` or DNS names (a headless service), re-resolved periodically.
    pub join_members: Vec<String>,
    #[serde(with = "dur")]
    pub gossip_interval: Duration,
    /// Nodes with a different label ignore each other (several clusters on one network).
    pub cluster_label: String,
}

impl Default for MemberlistConfig {
    fn default() -> Self {
        Self {
            node_name: String::new(),
            bind_addr: Vec::new(),
            bind_port: 7946,
            advertise_addr: String::new(),
            advertise_port: 0,
            join_members: Vec::new(),
            gossip_interval: Duration::from_millis(200),
            cluster_label: "legato".into(),
        }
    }
}

impl MemberlistConfig {
    pub fn validate(&self) -> Result<(), String> {
        if self.gossip_interval.is_zero() {
            return Err("memberlist.gossip_interval must be greater than 0".into());
        }
        if self.bind_port == 0 {
            return Err("memberlist.bind_port must be greater than 0".into());
        }
        for (i, seed) in self.join_members.iter().enumerate() {
            if seed.rsplit_once(':').and_then(|(_, p)| p.parse::<u16>().ok()).is_none() {
                return Err(format!("memberlist.join_members[{i}]: {seed:?} is not host:port"));
            }
        }
        Ok(())
    }
}

/// `ingester.lifecycler`: the ingester's place in the ring.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct LifecyclerConfig {
    pub ring: RingConfig,
    /// Tokens each ingester owns on the ring.
    pub num_tokens: usize,
}

impl Default for LifecyclerConfig {
    fn default() -> Self {
        Self {
            ring: RingConfig::default(),
            num_tokens: 128,
        }
    }
}

/// `ingester.lifecycler.ring`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct RingConfig {
    /// Ingesters each trace is written to. Unset: 3 in microservices mode, 1 in single binary.
    pub replication_factor: Option<usize>,
    /// Accepted for Tempo compatibility; membership is always gossip.
    pub kvstore: KvStoreConfig,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct KvStoreConfig {
    pub store: String,
}

impl Default for KvStoreConfig {
    fn default() -> Self {
        Self {
            store: "memberlist".into(),
        }
    }
}

impl LifecyclerConfig {
    pub fn validate(&self) -> Result<(), String> {
        if self.num_tokens == 0 {
            return Err("ingester.lifecycler.num_tokens must be greater than 0".into());
        }
        if self.ring.replication_factor == Some(0) {
            return Err("ingester.lifecycler.ring.replication_factor must be greater than 0".into());
        }
        if self.ring.kvstore.store != "memberlist" {
            return Err(format!(
                "ingester.lifecycler.ring.kvstore.store: {:?} is not supported (only memberlist)",
                self.ring.kvstore.store
            ));
        }
        Ok(())
    }
}
