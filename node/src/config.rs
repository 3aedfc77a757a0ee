//! A node's home directory and its config file.
//!
//! ```text
//! HOME/config.toml      this file (see NodeConfig)
//! HOME/genesis.json     the chain's genesis
//! HOME/node_key.json    the node's ed25519 key (mode 0600)
//! HOME/data/            RocksDB, and rpc.addr (the bound RPC address) while running
//! ```

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use bidchain_runtime::crypto::PublicKey;
use serde::{Deserialize, Serialize};

use crate::mempool::MempoolConfig;
use crate::priority::{DEFAULT_CONSENSUS_NICE, Nice};

/// The largest config file read.
const MAX_CONFIG_BYTES: u64 = 1024 * 1024;

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeConfig {
    /// Shown in `/status` and logs.
    pub node_name: String,
    /// Where the HTTP API listens; port 0 picks a free port (written to `data/rpc.addr`).
    pub rpc_listen: SocketAddr,
    /// Where libp2p listens, a multiaddr: `/ip4/0.0.0.0/tcp/26656`.
    #[serde(default = "default_p2p_listen")]
    pub p2p_listen: String,
    /// A non-voting observer: it follows and verifies the chain, never signs (also
    /// `bidchain node --observer`).
    #[serde(default)]
    pub observer: bool,
    /// `tracing` filter, e.g. `info` or `bidchain_node=debug,info`; `RUST_LOG` overrides.
    #[serde(default = "default_log")]
    pub log: String,
    /// Paths relative to the home directory unless absolute.
    #[serde(default = "default_data_dir")]
    pub data_dir: PathBuf,
    #[serde(default = "default_genesis_file")]
    pub genesis_file: PathBuf,
    #[serde(default = "default_key_file")]
    pub key_file: PathBuf,
    /// With no pending transactions, commit an empty block after this long anyway, so
    /// block time keeps moving; 0 disables empty blocks.
    #[serde(default = "default_empty_block_interval_ms")]
    pub empty_block_interval_ms: u64,
    /// Peers dialled besides the genesis validators (whose addresses genesis gives), and
    /// allowed to connect: a validator added after genesis, or the validators an observer
    /// follows at other addresses.
    #[serde(default)]
    pub peers: Vec<PeerConfig>,
    /// Observer nodes (by node key) allowed to connect to this one.
    #[serde(default)]
    pub observers: Vec<PublicKey>,
    #[serde(default)]
    pub mempool: MempoolConfig,
    /// The consensus thread's nice value, -20..=19 (lower runs first when the cores are
    /// busy). Below the node's own it needs `CAP_SYS_NICE` or `LimitNICE=`; refused, the
    /// node logs it and runs on at its own.
    #[serde(default = "default_consensus_nice")]
    pub consensus_nice: Nice,
}

/// A peer to dial: its node key (which is its libp2p identity) and address.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PeerConfig {
    pub key: PublicKey,
    /// A multiaddr, e.g. `/ip4/10.0.0.5/tcp/26656`.
    pub address: String,
}

fn default_p2p_listen() -> String {
    "/ip4/0.0.0.0/tcp/26656".to_owned()
}
fn default_log() -> String {
    "info".to_owned()
}
fn default_data_dir() -> PathBuf {
    "data".into()
}
fn default_genesis_file() -> PathBuf {
    "genesis.json".into()
}
fn default_key_file() -> PathBuf {
    "node_key.json".into()
}
fn default_consensus_nice() -> Nice {
    DEFAULT_CONSENSUS_NICE
}
fn default_empty_block_interval_ms() -> u64 {
    5_000
}

/// Why a config file is not usable.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("{path} is larger than {MAX_CONFIG_BYTES} bytes")]
    TooLarge { path: String },
    #[error("{path}: {source}")]
    Toml {
        path: String,
        source: toml::de::Error,
    },
}

impl NodeConfig {
    pub fn new(node_name: &str, rpc_listen: SocketAddr) -> NodeConfig {
        NodeConfig {
            node_name: node_name.to_owned(),
            rpc_listen,
            p2p_listen: default_p2p_listen(),
            observer: false,
            log: default_log(),
            data_dir: default_data_dir(),
            genesis_file: default_genesis_file(),
            key_file: default_key_file(),
            empty_block_interval_ms: default_empty_block_interval_ms(),
            peers: Vec::new(),
            observers: Vec::new(),
            mempool: MempoolConfig::default(),
            consensus_nice: default_consensus_nice(),
        }
    }

    pub fn load(home: &Path) -> Result<NodeConfig, ConfigError> {
        let path = config_path(home);
        let shown = path.display().to_string();
        let io = |source| ConfigError::Io {
            path: shown.clone(),
            source,
        };
        if std::fs::metadata(&path).map_err(io)?.len() > MAX_CONFIG_BYTES {
            return Err(ConfigError::TooLarge { path: shown });
        }
        let text = std::fs::read_to_string(&path).map_err(io)?;
        toml::from_str(&text).map_err(|source| ConfigError::Toml {
            path: shown,
            source,
        })
    }

    pub fn to_toml(&self) -> String {
        toml::to_string_pretty(self).unwrap_or_default()
    }

    pub fn resolve(&self, home: &Path, path: &Path) -> PathBuf {
        if path.is_absolute() {
            path.to_owned()
        } else {
            home.join(path)
        }
    }
}

pub fn config_path(home: &Path) -> PathBuf {
    home.join("config.toml")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_round_trips_and_unknown_keys_are_refused() {
        let mut config = NodeConfig::new("hub", "127.0.0.1:0".parse().unwrap());
        config.peers.push(PeerConfig {
            key: PublicKey([7; 32]),
            address: "/ip4/10.0.0.5/tcp/26656".to_owned(),
        });
        config.observers.push(PublicKey([9; 32]));
        let text = config.to_toml();
        let back: NodeConfig = toml::from_str(&text).unwrap();
        assert_eq!(back.node_name, "hub");
        assert_eq!(back.peers[0].key, PublicKey([7; 32]));
        assert_eq!(back.observers, vec![PublicKey([9; 32])]);
        let bad = format!("{text}\nrcp_listen = \"x\"\n");
        assert!(toml::from_str::<NodeConfig>(&bad).is_err());
        let out_of_range = text.replace("consensus_nice = -5", "consensus_nice = -21");
        assert_ne!(out_of_range, text);
        assert!(toml::from_str::<NodeConfig>(&out_of_range).is_err());
    }
}
