//! Joining the gossip cluster and reading who is in it.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use chitchat::transport::UdpTransport;
use chitchat::{ChitchatConfig, ChitchatHandle, ChitchatId, FailureDetectorConfig, NodeState, spawn_chitchat};
use parking_lot::RwLock;
use serde::Serialize;

use crate::{MemberlistConfig, Ring};

const KEY_ROLES: &str = "roles";
const KEY_GRPC: &str = "grpc";
const KEY_HTTP: &str = "http";
const KEY_STATE: &str = "state";
const KEY_TOKENS: &str = "num_tokens";

/// A role of the binary (`-target`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Role {
    Distributor,
    Ingester,
    Querier,
    QueryFrontend,
    Compactor,
    MetricsGenerator,
}

impl Role {
    pub const ALL: [Role; 6] = [
        Role::Distributor,
        Role::Ingester,
        Role::Querier,
        Role::QueryFrontend,
        Role::Compactor,
        Role::MetricsGenerator,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Distributor => "distributor",
            Role::Ingester => "ingester",
            Role::Querier => "querier",
            Role::QueryFrontend => "query-frontend",
            Role::Compactor => "compactor",
            Role::MetricsGenerator => "metrics-generator",
        }
    }

    pub fn parse(s: &str) -> Option<Role> {
        Role::ALL.into_iter().find(|r| r.as_str() == s)
    }
}

/// Whether a member takes traffic. A leaving ingester gets no new writes but still answers
/// reads until it has flushed everything and left.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum MemberState {
    Joining,
    Active,
    Leaving,
}

impl MemberState {
    fn as_str(self) -> &'static str {
        match self {
            MemberState::Joining => "JOINING",
            MemberState::Active => "ACTIVE",
            MemberState::Leaving => "LEAVING",
        }
    }

    fn parse(s: &str) -> MemberState {
        match s {
            "ACTIVE" => MemberState::Active,
            "LEAVING" => MemberState::Leaving,
            _ => MemberState::Joining,
        }
    }
}

/// What this node announces about itself.
#[derive(Debug, Clone)]
pub struct NodeInfo {
    pub roles: Vec<Role>,
    /// Ports of this node's gRPC and HTTP servers; the host part is the advertised address.
    pub grpc_port: u16,
    pub http_port: u16,
    pub num_tokens: usize,
}

/// A live member as gossip last described it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Member {
    pub id: String,
    pub generation: u64,
    pub roles: Vec<Role>,
    pub grpc_addr: String,
    pub http_addr: String,
    pub state: MemberState,
    pub num_tokens: usize,
}

impl Member {
    pub fn has_role(&self, role: Role) -> bool {
        self.roles.contains(&role)
    }

    fn from_state(id: &ChitchatId, state: &NodeState) -> Option<Member> {
        let roles = state
            .get(KEY_ROLES)?
            .split(',')
            .filter_map(Role::parse)
            .collect::<Vec<_>>();
        Some(Member {
            id: id.node_id.to_string(),
            generation: id.generation_id,
            roles,
            grpc_addr: state.get(KEY_GRPC)?.to_string(),
            http_addr: state.get(KEY_HTTP).unwrap_or_default().to_string(),
            state: MemberState::parse(state.get(KEY_STATE).unwrap_or_default()),
            num_tokens: state.get(KEY_TOKENS).and_then(|n| n.parse().ok()).unwrap_or(128),
        })
    }
}

/// This node's membership: gossip runs in the background; `members` reads the latest view.
pub struct Cluster {
    handle: ChitchatHandle,
    self_id: String,
    members: Arc<RwLock<Vec<Member>>>,
    watcher: tokio::task::JoinHandle<()>,
}

impl Cluster {
    /// Joins (or starts) the cluster. Returns once gossip is listening; seeds may be down.
    pub async fn join(cfg: &MemberlistConfig, info: NodeInfo) -> anyhow::Result<Cluster> {
        let bind_ip: IpAddr = match cfg.bind_addr.first() {
            Some(a) if !a.is_empty() => a
                .parse()
                .with_context(|| format!("memberlist.bind_addr: {a:?} is not an IP address"))?,
            _ => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
        };
        let listen_addr = SocketAddr::new(bind_ip, cfg.bind_port);
        let advertise_ip: IpAddr = if cfg.advertise_addr.is_empty() {
            advertise_ip_for(bind_ip)
        } else {
            match cfg.advertise_addr.parse() {
                Ok(ip) => ip,
                Err(_) => tokio::net::lookup_host((cfg.advertise_addr.as_str(), 0))
                    .await
                    .ok()
                    .and_then(|mut a| a.next())
                    .map(|a| a.ip())
                    .with_context(|| format!("memberlist.advertise_addr: cannot resolve {:?}", cfg.advertise_addr))?,
            }
        };
        let advertise_port = if cfg.advertise_port == 0 {
            cfg.bind_port
        } else {
            cfg.advertise_port
        };
        let node_name = if cfg.node_name.is_empty() {
            hostname()
        } else {
            cfg.node_name.clone()
        };
        let generation = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0);
        let id = ChitchatId::new(
            node_name.clone(),
            generation,
            SocketAddr::new(advertise_ip, advertise_port),
        );
        let host = match advertise_ip {
            IpAddr::V6(v6) => format!("[{v6}]"),
            IpAddr::V4(v4) => v4.to_string(),
        };
        let roles = info.roles.iter().map(|r| r.as_str()).collect::<Vec<_>>().join(",");
        let initial = vec![
            (KEY_ROLES.to_string(), roles),
            (KEY_GRPC.to_string(), format!("{host}:{}", info.grpc_port)),
            (KEY_HTTP.to_string(), format!("{host}:{}", info.http_port)),
            (KEY_STATE.to_string(), MemberState::Joining.as_str().to_string()),
            (KEY_TOKENS.to_string(), info.num_tokens.to_string()),
        ];
        let config = ChitchatConfig {
            chitchat_id: id,
            cluster_id: cfg.cluster_label.clone(),
            gossip_interval: cfg.gossip_interval,
            listen_addr,
            seed_nodes: cfg.join_members.clone(),
            failure_detector_config: FailureDetectorConfig {
                // Declared dead after roughly 20 gossip intervals of silence.
                initial_interval: cfg.gossip_interval * 2,
                max_interval: (cfg.gossip_interval * 20).max(Duration::from_secs(2)),
                dead_node_grace_period: Duration::from_secs(3600),
                ..FailureDetectorConfig::default()
            },
            marked_for_deletion_grace_period: Duration::from_secs(3600),
            catchup_callback: None,
            extra_liveness_predicate: None,
            protocol_version: chitchat::ProtocolVersion::V0,
        };
        let handle = spawn_chitchat(config, initial, &UdpTransport)
            .await
            .with_context(|| format!("memberlist.bind_port: cannot start gossip on {listen_addr}"))?;
        let members: Arc<RwLock<Vec<Member>>> = Arc::default();
        let mut rx = handle.chitchat().lock().await.live_nodes_watcher();
        let watcher = {
            let members = members.clone();
            tokio::spawn(async move {
                loop {
                    let view: Vec<Member> = {
                        let nodes: BTreeMap<ChitchatId, NodeState> = rx.borrow_and_update().clone();
                        nodes.iter().filter_map(|(id, s)| Member::from_state(id, s)).collect()
                    };
                    *members.write() = latest_generation(view);
                    if rx.changed().await.is_err() {
                        return;
                    }
                }
            })
        };
        tracing::info!(node = %node_name, gossip = %listen_addr, advertise = %host, seeds = ?cfg.join_members, "joined gossip");
        Ok(Cluster {
            handle,
            self_id: node_name,
            members,
            watcher,
        })
    }

    pub fn self_id(&self) -> &str {
        &self.self_id
    }

    /// Live members, one per node name (the newest generation).
    pub fn members(&self) -> Vec<Member> {
        self.members.read().clone()
    }

    /// Live members with `role`, in any state.
    pub fn members_with(&self, role: Role) -> Vec<Member> {
        self.members().into_iter().filter(|m| m.has_role(role)).collect()
    }

    /// The ring of active members with `role`.
    pub fn ring(&self, role: Role, replication_factor: usize) -> Ring {
        Ring::new(
            self.members()
                .into_iter()
                .filter(|m| m.has_role(role) && m.state == MemberState::Active)
                .collect(),
            replication_factor,
        )
    }

    pub async fn set_state(&self, state: MemberState) {
        self.handle
            .with_chitchat(|c| c.self_node_state().set(KEY_STATE, state.as_str()))
            .await;
    }

    /// Announces LEAVING, gives gossip a moment to spread it, and stops.
    pub async fn leave(self, spread: Duration) {
        self.set_state(MemberState::Leaving).await;
        tokio::time::sleep(spread).await;
        self.watcher.abort();
        if let Err(e) = self.handle.shutdown().await {
            tracing::warn!(error = %e, "gossip shutdown");
        }
    }
}

/// A restarted node comes back with a new generation; until the old one is declared dead
/// both may be live. Keep the newest.
fn latest_generation(mut view: Vec<Member>) -> Vec<Member> {
    view.sort_by(|a, b| a.id.cmp(&b.id).then(b.generation.cmp(&a.generation)));
    view.dedup_by(|later, first| later.id == first.id);
    view
}

fn hostname() -> String {
    std::env::var("HOSTNAME")
        .ok()
        .filter(|h| !h.is_empty())
        .or_else(|| {
            std::fs::read_to_string("/etc/hostname")
                .ok()
                .map(|h| h.trim().to_string())
        })
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "legato".into())
}

/// The address peers should use when none is configured: the bind address if specific,
/// else the address of the interface with the default route, else loopback.
fn advertise_ip_for(bind: IpAddr) -> IpAddr {
    if !bind.is_unspecified() {
        return bind;
    }
    std::net::UdpSocket::bind("0.0.0.0:0")
        .and_then(|s| {
            s.connect("10.255.255.255:1")?;
            s.local_addr()
        })
        .map(|a| a.ip())
        .ok()
        .filter(|ip| !ip.is_unspecified())
        .unwrap_or(IpAddr::V4(Ipv4Addr::LOCALHOST))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(port: u16, seeds: Vec<String>, name: &str) -> MemberlistConfig {
        MemberlistConfig {
            node_name: name.into(),
            bind_addr: vec!["127.0.0.1".into()],
            bind_port: port,
            join_members: seeds,
            gossip_interval: Duration::from_millis(50),
            ..MemberlistConfig::default()
        }
    }

    fn free_udp_port() -> u16 {
        std::net::UdpSocket::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port()
    }

    async fn wait_for(what: &str, mut check: impl FnMut() -> bool) {
        for _ in 0..200 {
            if check() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("timed out waiting for {what}");
    }

    #[tokio::test]
    async fn nodes_find_each_other_and_a_dead_one_leaves_the_ring() {
        let ports: Vec<u16> = (0..3).map(|_| free_udp_port()).collect();
        let seed = format!("127.0.0.1:{}", ports[0]);
        let mut nodes = Vec::new();
        for (i, port) in ports.iter().enumerate() {
            let info = NodeInfo {
                roles: vec![Role::Ingester],
                grpc_port: 9000 + i as u16,
                http_port: 8000 + i as u16,
                num_tokens: 16,
            };
            // The last node joins through a DNS name, as pods do through a headless service.
            let seeds = match i {
                0 => vec![],
                1 => vec![seed.clone()],
                _ => vec![format!("localhost:{}", ports[0])],
            };
            let node = Cluster::join(&cfg(*port, seeds, &format!("ing-{i}")), info)
                .await
                .unwrap();
            node.set_state(MemberState::Active).await;
            nodes.push(node);
        }
        wait_for("three active members everywhere", || {
            nodes.iter().all(|n| n.ring(Role::Ingester, 3).members().len() == 3)
        })
        .await;
        let m = nodes[1].members();
        assert_eq!(m.len(), 3, "{m:?}");
        assert!(m.iter().any(|m| m.grpc_addr == "127.0.0.1:9002"));

        // A leaving member drops out of the ring (no new writes) but stays a member.
        nodes[2].set_state(MemberState::Leaving).await;
        wait_for("leaving excluded", || {
            nodes[0].ring(Role::Ingester, 3).members().len() == 2
        })
        .await;
        nodes[2].set_state(MemberState::Active).await;
        wait_for("back", || nodes[0].ring(Role::Ingester, 3).members().len() == 3).await;

        // Kill one without a goodbye: the failure detector takes it out.
        let dead = nodes.pop().unwrap();
        dead.watcher.abort();
        dead.handle.abort();
        wait_for("dead member removed", || {
            nodes[0].members().len() == 2 && nodes[1].members().len() == 2
        })
        .await;
    }
}
