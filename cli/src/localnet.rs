//! A local network: N validators and M observers as separate node processes on 127.0.0.1,
//! generated into one directory and restartable from it.
//!
//! ```text
//! DIR/genesis.json        the chain (validator 0 is the hub, the others city centers)
//! DIR/localnet.json       each node's name, role, RPC URL, p2p address, key, home and pid
//! DIR/NAME/               the node's home (config.toml, node_key.json, data/, node.log)
//! ```

use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail, ensure};
use bidchain_genesis::{ConsensusParams, Genesis, GenesisValidator};
use bidchain_node::config::NodeConfig;
use bidchain_node::keyfile::read_key_file;
use bidchain_node::mempool::MempoolConfig;
use bidchain_runtime::bounded::BoundedString;
use bidchain_runtime::crypto::{Keypair, PublicKey};
use bidchain_runtime::time::Timestamp;
use bidchain_runtime::tx::Role;
use serde::{Deserialize, Serialize};

use crate::process::NodeProcess;
use crate::setup;

/// The largest local network generated (each node is a process on this machine).
pub const MAX_LOCALNET_NODES: usize = 64;
/// The largest localnet.json read back.
const MAX_MANIFEST_BYTES: u64 = 1024 * 1024;

/// What to generate.
#[derive(Clone, Debug)]
pub struct LocalnetSpec {
    pub validators: usize,
    pub observers: usize,
    /// Node i listens for p2p on `base_port + 2i` and serves RPC on `base_port + 2i + 1`;
    /// 0 picks free ports.
    pub base_port: u16,
    pub chain_id: String,
    pub consensus: ConsensusParams,
    pub empty_block_interval_ms: u64,
    /// Every node's mempool settings.
    pub mempool: MempoolConfig,
}

impl LocalnetSpec {
    pub fn new(validators: usize, observers: usize) -> LocalnetSpec {
        LocalnetSpec {
            validators,
            observers,
            base_port: 26_600,
            chain_id: "bidchain-localnet".to_owned(),
            consensus: ConsensusParams::default(),
            empty_block_interval_ms: 1_000,
            mempool: MempoolConfig::default(),
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NodeRole {
    Validator,
    Observer,
}

/// One node of the network, as `localnet.json` lists it.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct NodeEntry {
    pub name: String,
    pub role: NodeRole,
    pub rpc_url: String,
    pub p2p_address: String,
    pub public_key: PublicKey,
    pub home: PathBuf,
    /// Set while the node runs under `bidchain localnet`.
    pub pid: Option<u32>,
}

#[derive(Debug, Serialize, Deserialize)]
struct Manifest {
    chain_id: String,
    genesis: PathBuf,
    nodes: Vec<NodeEntry>,
}

#[derive(Debug)]
pub struct Localnet {
    pub dir: PathBuf,
    pub genesis: Genesis,
    pub nodes: Vec<NodeEntry>,
}

fn manifest_path(dir: &Path) -> PathBuf {
    dir.join("localnet.json")
}

/// The ports of `count` nodes: from `base`, or free ones the OS hands out.
fn ports(base: u16, count: usize) -> Result<Vec<(u16, u16)>> {
    if base != 0 {
        let last = usize::from(base) + 2 * count;
        ensure!(
            last <= usize::from(u16::MAX),
            "ports from {base} run past 65535"
        );
        return Ok((0..count)
            .map(|i| {
                let p2p = base + 2 * u16::try_from(i).unwrap_or(0);
                (p2p, p2p + 1)
            })
            .collect());
    }
    // Held until all are chosen so no two nodes get the same port.
    let mut held = Vec::new();
    for _ in 0..2 * count {
        held.push(TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).context("find a free port")?);
    }
    let mut free = held
        .iter()
        .map(|l| l.local_addr().map(|a| a.port()))
        .collect::<std::io::Result<Vec<u16>>>()?
        .into_iter();
    Ok((0..count)
        .map(|_| (free.next().unwrap_or(0), free.next().unwrap_or(0)))
        .collect())
}

impl Localnet {
    /// Loads the network in `dir` if there is one (the same network, its data kept), or
    /// generates one from `spec`.
    pub fn create_or_load(dir: &Path, spec: &LocalnetSpec) -> Result<Localnet> {
        if manifest_path(dir).exists() {
            let net = Localnet::load(dir)?;
            let validators = net.count(NodeRole::Validator);
            let observers = net.count(NodeRole::Observer);
            ensure!(
                validators == spec.validators && observers == spec.observers,
                "{} holds a network of {validators} validators and {observers} observers, \
                 not {} and {}; use another --dir",
                dir.display(),
                spec.validators,
                spec.observers
            );
            return Ok(net);
        }
        Localnet::create(dir, spec)
    }

    pub fn load(dir: &Path) -> Result<Localnet> {
        let path = manifest_path(dir);
        let size = std::fs::metadata(&path)
            .with_context(|| format!("read {}", path.display()))?
            .len();
        ensure!(
            size <= MAX_MANIFEST_BYTES,
            "{} is too large",
            path.display()
        );
        let text =
            std::fs::read_to_string(&path).with_context(|| format!("read {}", path.display()))?;
        let manifest: Manifest =
            serde_json::from_str(&text).with_context(|| format!("parse {}", path.display()))?;
        let genesis = Genesis::load(&dir.join(&manifest.genesis))?;
        Ok(Localnet {
            dir: dir.to_owned(),
            genesis,
            nodes: manifest.nodes,
        })
    }

    fn create(dir: &Path, spec: &LocalnetSpec) -> Result<Localnet> {
        ensure!(
            spec.validators >= 1,
            "a network needs at least one validator"
        );
        let total = spec.validators + spec.observers;
        ensure!(
            total <= MAX_LOCALNET_NODES,
            "at most {MAX_LOCALNET_NODES} nodes"
        );
        if dir.exists() && std::fs::read_dir(dir)?.next().is_some() {
            bail!(
                "{} is not empty and holds no localnet.json; give an empty or new directory",
                dir.display()
            );
        }
        std::fs::create_dir_all(dir).with_context(|| format!("create {}", dir.display()))?;
        let ports = ports(spec.base_port, total)?;
        let keys: Vec<Keypair> = (0..total).map(|_| Keypair::generate()).collect();
        let mut nodes = Vec::new();
        for (i, (key, (p2p, rpc))) in keys.iter().zip(&ports).enumerate() {
            let (name, role) = match i {
                0 => ("hub".to_owned(), NodeRole::Validator),
                i if i < spec.validators => (format!("center-{i}"), NodeRole::Validator),
                i => (
                    format!("observer-{}", i - spec.validators + 1),
                    NodeRole::Observer,
                ),
            };
            nodes.push(NodeEntry {
                home: dir.join(&name),
                name,
                role,
                rpc_url: format!("http://127.0.0.1:{rpc}"),
                p2p_address: format!("/ip4/127.0.0.1/tcp/{p2p}"),
                public_key: key.public(),
                pid: None,
            });
        }
        let genesis = localnet_genesis(spec, &nodes)?;
        std::fs::write(dir.join("genesis.json"), genesis.to_json()).context("write genesis")?;
        let observers: Vec<PublicKey> = nodes
            .iter()
            .filter(|n| n.role == NodeRole::Observer)
            .map(|n| n.public_key)
            .collect();
        for ((node, key), (_, rpc)) in nodes.iter().zip(&keys).zip(&ports) {
            let mut config =
                NodeConfig::new(&node.name, SocketAddr::from((Ipv4Addr::LOCALHOST, *rpc)));
            config.p2p_listen.clone_from(&node.p2p_address);
            config.empty_block_interval_ms = spec.empty_block_interval_ms;
            config.mempool = spec.mempool;
            config.observer = node.role == NodeRole::Observer;
            if node.role == NodeRole::Validator {
                config.observers.clone_from(&observers);
            }
            setup::init_home(&node.home, &genesis, key, &config)?;
        }
        let net = Localnet {
            dir: dir.to_owned(),
            genesis,
            nodes,
        };
        net.write_manifest()?;
        Ok(net)
    }

    pub fn count(&self, role: NodeRole) -> usize {
        self.nodes.iter().filter(|n| n.role == role).count()
    }

    /// The node's key, read from its home.
    pub fn key(&self, index: usize) -> Result<Keypair> {
        let node = self.nodes.get(index).context("no such node")?;
        let config = NodeConfig::load(&node.home)?;
        Ok(read_key_file(
            &config.resolve(&node.home, &config.key_file),
        )?)
    }

    pub fn log_path(&self, index: usize) -> Option<PathBuf> {
        self.nodes.get(index).map(|n| n.home.join("node.log"))
    }

    /// Starts node `index` as a process and waits until its API answers.
    pub async fn start_node(&mut self, bin: &Path, index: usize) -> Result<NodeProcess> {
        let node = self.nodes.get(index).context("no such node")?;
        let log = node.home.join("node.log");
        let process = NodeProcess::spawn(bin, &node.home.clone(), &log)
            .await
            .with_context(|| format!("start {}", node.name))?;
        if let Some(node) = self.nodes.get_mut(index) {
            node.pid = Some(process.pid());
        }
        Ok(process)
    }

    /// Starts every node, in order, and records their pids in localnet.json.
    pub async fn start_all(&mut self, bin: &Path) -> Result<Vec<NodeProcess>> {
        let mut processes = Vec::new();
        for index in 0..self.nodes.len() {
            processes.push(self.start_node(bin, index).await?);
        }
        self.write_manifest()?;
        Ok(processes)
    }

    pub fn clear_pids(&mut self) -> Result<()> {
        for node in &mut self.nodes {
            node.pid = None;
        }
        self.write_manifest()
    }

    fn write_manifest(&self) -> Result<()> {
        let manifest = Manifest {
            chain_id: self.genesis.chain_id.to_string(),
            genesis: "genesis.json".into(),
            nodes: self.nodes.clone(),
        };
        let text = serde_json::to_string_pretty(&manifest)?;
        std::fs::write(manifest_path(&self.dir), text).context("write localnet.json")
    }
}

fn localnet_genesis(spec: &LocalnetSpec, nodes: &[NodeEntry]) -> Result<Genesis> {
    let validators = nodes
        .iter()
        .filter(|n| n.role == NodeRole::Validator)
        .enumerate()
        .map(|(i, n)| {
            Ok(GenesisValidator {
                name: BoundedString::new(n.name.as_str())?,
                role: if i == 0 { Role::Hub } else { Role::Center },
                public_key: n.public_key,
                p2p_address: BoundedString::new(n.p2p_address.as_str())?,
                power: 1,
            })
        })
        .collect::<Result<Vec<_>>>()?;
    let now = Timestamp::from_system(std::time::SystemTime::now());
    setup::new_genesis(
        &spec.chain_id,
        Timestamp(now.as_millis().saturating_sub(1_000)),
        spec.consensus.clone(),
        validators,
        vec![],
    )
}
