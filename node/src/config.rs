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

use serde::{Deserialize, Serialize};

use crate::mempool::MempoolConfig;

/// The largest config file read.
const MAX_CONFIG_BYTES: u64 = 1024 * 1024;

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeConfig {
    /// Shown in `/status` and logs.
    pub node_name: String,
    /// Where the HTTP API listens; port 0 picks a free port (written to `data/rpc.addr`).
    pub rpc_listen: SocketAddr,
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
    #[serde(default)]
    pub mempool: MempoolConfig,
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
            log: default_log(),
            data_dir: default_data_dir(),
            genesis_file: default_genesis_file(),
            key_file: default_key_file(),
            empty_block_interval_ms: default_empty_block_interval_ms(),
            mempool: MempoolConfig::default(),
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
        let config = NodeConfig::new("hub", "127.0.0.1:0".parse().unwrap());
        let text = config.to_toml();
        let back: NodeConfig = toml::from_str(&text).unwrap();
        assert_eq!(back.node_name, "hub");
        let bad = format!("{text}\nrcp_listen = \"x\"\n");
        assert!(toml::from_str::<NodeConfig>(&bad).is_err());
    }
}
