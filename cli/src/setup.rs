//! Keys, genesis files and node home directories.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::Path;

use anyhow::{Context, Result, bail};
use bidchain_genesis::{ConsensusParams, Genesis, GenesisAccount, GenesisValidator};
use bidchain_node::config::{NodeConfig, config_path};
use bidchain_node::keyfile::write_key_file;
use bidchain_runtime::bounded::BoundedString;
use bidchain_runtime::crypto::{Keypair, PublicKey};
use bidchain_runtime::ids::ChainId;
use bidchain_runtime::time::Timestamp;

/// Parses `NAME:ROLE:PUBKEY:P2P_ADDR` (the address may itself hold colons, as IPv6 does).
pub fn parse_validator(spec: &str) -> Result<GenesisValidator> {
    let parts: Vec<&str> = spec.splitn(4, ':').collect();
    let [name, role, key, address] = parts.as_slice() else {
        bail!("validator {spec:?} is not NAME:ROLE:PUBKEY:P2P_ADDR");
    };
    Ok(GenesisValidator {
        name: BoundedString::new(*name).with_context(|| format!("validator name {name:?}"))?,
        role: role.parse()?,
        public_key: key
            .parse::<PublicKey>()
            .with_context(|| format!("validator {name} key"))?,
        p2p_address: BoundedString::new(*address).context("p2p address")?,
        power: 1,
    })
}

/// Parses `LABEL:ROLE:PUBKEY`.
pub fn parse_account(spec: &str) -> Result<GenesisAccount> {
    let parts: Vec<&str> = spec.split(':').collect();
    let [label, role, key] = parts.as_slice() else {
        bail!("account {spec:?} is not LABEL:ROLE:PUBKEY");
    };
    Ok(GenesisAccount {
        label: BoundedString::new(*label).with_context(|| format!("account label {label:?}"))?,
        role: role.parse()?,
        public_key: key
            .parse::<PublicKey>()
            .with_context(|| format!("account {label} key"))?,
    })
}

/// Builds and validates a genesis.
pub fn new_genesis(
    chain_id: &str,
    genesis_time: Timestamp,
    consensus: ConsensusParams,
    validators: Vec<GenesisValidator>,
    accounts: Vec<GenesisAccount>,
) -> Result<Genesis> {
    let genesis = Genesis {
        chain_id: ChainId::new(chain_id)?,
        genesis_time,
        consensus,
        validators,
        accounts,
        // The contracts this build carries, pinned by code hash.
        contracts: bidchain_genesis::contracts::bundled_pins(),
    };
    genesis.validate()?;
    Ok(genesis)
}

/// Creates a node home: genesis, key file and config. Refuses to touch an existing home.
pub fn init_home(home: &Path, genesis: &Genesis, key: &Keypair, config: &NodeConfig) -> Result<()> {
    if config_path(home).exists() {
        bail!(
            "{} already holds a node (config.toml exists)",
            home.display()
        );
    }
    std::fs::create_dir_all(home).with_context(|| format!("create {}", home.display()))?;
    std::fs::write(home.join(&config.genesis_file), genesis.to_json()).context("write genesis")?;
    write_key_file(&home.join(&config.key_file), key)?;
    std::fs::write(config_path(home), config.to_toml()).context("write config.toml")?;
    Ok(())
}

/// The config of a one-validator chain's node on loopback, on free ports (demo, tests).
pub fn loopback_config(name: &str) -> NodeConfig {
    let mut config = NodeConfig::new(name, SocketAddr::from((Ipv4Addr::LOCALHOST, 0)));
    config.p2p_listen = "/ip4/127.0.0.1/tcp/0".to_owned();
    config
}
