//! bidchain-genesis: the genesis file every node of a chain starts from.
//!
//! The file is JSON, for people to read and review; its *hash* is over the canonical
//! encoding of the parsed value, so whitespace or key order in the file never changes which
//! chain it describes.

pub mod contracts;
mod wasm_build;

pub use wasm_build::{CONTRACTS, WASM_TARGET, build_contracts};

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use bidchain_runtime::bounded::BoundedString;
use bidchain_runtime::codec;
use bidchain_runtime::crypto::PublicKey;
use bidchain_runtime::hash::Hash;
use bidchain_runtime::ids::{AccountId, ChainId, Nonce, Round};
use bidchain_runtime::state::{Account, StateKey};
use bidchain_runtime::time::Timestamp;
use bidchain_runtime::tx::{MAX_CONTRACT_NAME_LEN, MAX_LABEL_LEN, Role};
use bidchain_runtime::validator::{
    MAX_VALIDATOR_NAME_LEN, MAX_VALIDATORS, Validator, ValidatorSet, ValidatorSetError,
};
use bidchain_runtime::{BlockHash, block};
use bincode::{Decode, Encode};
use serde::{Deserialize, Serialize};

/// The largest genesis file read.
pub const MAX_GENESIS_FILE_BYTES: u64 = 16 * 1024 * 1024;
/// Most initial accounts besides the validators.
pub const MAX_GENESIS_ACCOUNTS: usize = 100_000;
/// Genesis times before this (2000-01-01T00:00:00Z) are a mistake, not a chain.
const EARLIEST_GENESIS_MS: u64 = 946_684_800_000;

/// Parameters every validator must agree on.
#[derive(Clone, PartialEq, Eq, Debug, Encode, Decode, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConsensusParams {
    /// Target time between blocks.
    pub block_interval_ms: u64,
    /// Most transactions a proposer puts in one block.
    pub max_block_txs: u32,
    /// Largest encoded block a proposer builds.
    pub max_block_bytes: u32,
    /// How far a proposal's time may be from a validator's own clock (proposer-based
    /// timestamps).
    pub timestamp_precision_ms: u64,
    /// How long a proposal may take to build, travel and wait in a validator's queue, on
    /// top of the precision, before its block time counts as too old (PBTS `MSGDELAY`).
    /// It grows by a tenth each round, so a slow network still decides eventually.
    #[serde(default = "default_message_delay_ms")]
    pub message_delay_ms: u64,
}

fn default_message_delay_ms() -> u64 {
    3_000
}

impl Default for ConsensusParams {
    fn default() -> Self {
        ConsensusParams {
            block_interval_ms: 500,
            max_block_txs: 5_000,
            max_block_bytes: 4 * 1024 * 1024,
            timestamp_precision_ms: 2_000,
            message_delay_ms: default_message_delay_ms(),
        }
    }
}

#[derive(Clone, PartialEq, Eq, Debug, Encode, Decode, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GenesisValidator {
    pub name: BoundedString<MAX_VALIDATOR_NAME_LEN>,
    /// `hub` or `center`: the validator's key is also an account with this role.
    pub role: Role,
    pub public_key: PublicKey,
    /// libp2p address, e.g. `/ip4/10.0.0.5/tcp/26656`.
    pub p2p_address: BoundedString<256>,
    #[serde(default = "one")]
    pub power: u64,
}

fn one() -> u64 {
    1
}

#[derive(Clone, PartialEq, Eq, Debug, Encode, Decode, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GenesisAccount {
    pub label: BoundedString<MAX_LABEL_LEN>,
    pub role: Role,
    pub public_key: PublicKey,
}

/// A parsed genesis file. [`Genesis::validate`] must pass before it is used;
/// [`Genesis::load`] and [`Genesis::from_json`] do that.
#[derive(Clone, PartialEq, Eq, Debug, Encode, Decode, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Genesis {
    pub chain_id: ChainId,
    pub genesis_time: Timestamp,
    #[serde(default)]
    pub consensus: ConsensusParams,
    pub validators: Vec<GenesisValidator>,
    #[serde(default)]
    pub accounts: Vec<GenesisAccount>,
    /// The contracts the chain runs, each pinned to the SHA-256 of its wasm code.
    #[serde(default)]
    pub contracts: Vec<GenesisContract>,
}

/// A contract genesis pins: a node runs it only with code of exactly this hash.
#[derive(Clone, PartialEq, Eq, Debug, Encode, Decode, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GenesisContract {
    pub name: BoundedString<MAX_CONTRACT_NAME_LEN>,
    pub code_hash: Hash,
}

/// Why a genesis file is not usable.
#[derive(Debug, thiserror::Error)]
pub enum GenesisError {
    #[error("cannot read genesis file {path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("genesis file {path} is {len} bytes; the limit is {MAX_GENESIS_FILE_BYTES}")]
    TooLarge { path: String, len: u64 },
    #[error("genesis is not valid JSON for a genesis file: {0}")]
    Json(#[from] serde_json::Error),
    #[error("genesis has no validators")]
    NoValidators,
    #[error("genesis has {0} validators; at most {MAX_VALIDATORS} are allowed")]
    TooManyValidators(usize),
    #[error("genesis has {0} accounts; at most {MAX_GENESIS_ACCOUNTS} are allowed")]
    TooManyAccounts(usize),
    #[error("public key {key} is used by both {first} and {second}")]
    DuplicateKey {
        key: PublicKey,
        first: String,
        second: String,
    },
    #[error("validator name {0:?} is used twice")]
    DuplicateName(String),
    #[error("validator {name} has role {role}; validators must be the hub or a center")]
    ValidatorRole { name: String, role: Role },
    #[error(
        "validator {name}: p2p address {address:?} is not /ip4|ip6|dns|dns4|dns6/HOST/tcp/PORT"
    )]
    BadP2pAddress { name: String, address: String },
    #[error("genesis time {0} is before 2000-01-01")]
    BadTime(Timestamp),
    #[error("consensus parameter {name} = {value} {reason}")]
    BadParam {
        name: &'static str,
        value: u64,
        reason: &'static str,
    },
    #[error("validator set: {0}")]
    ValidatorSet(#[from] ValidatorSetError),
    #[error("contract {0:?} is pinned twice")]
    DuplicateContract(String),
    #[error(
        "genesis pins contract {name} to code {pinned}, but this build of bidchain carries \
         {bundled}: run the bidchain release the network agreed on"
    )]
    ContractCodeMismatch {
        name: String,
        pinned: Hash,
        bundled: String,
    },
    #[error("contract {name} does not compile: {reason}")]
    ContractInvalid { name: String, reason: String },
}

impl Genesis {
    pub fn load(path: &Path) -> Result<Genesis, GenesisError> {
        let shown = path.display().to_string();
        let io = |source| GenesisError::Io {
            path: shown.clone(),
            source,
        };
        let len = std::fs::metadata(path).map_err(io)?.len();
        if len > MAX_GENESIS_FILE_BYTES {
            return Err(GenesisError::TooLarge { path: shown, len });
        }
        let text = std::fs::read_to_string(path).map_err(io)?;
        Genesis::from_json(&text)
    }

    pub fn from_json(text: &str) -> Result<Genesis, GenesisError> {
        let genesis: Genesis = serde_json::from_str(text)?;
        genesis.validate()?;
        Ok(genesis)
    }

    pub fn to_json(&self) -> String {
        // Serialising plain data with string keys cannot fail.
        serde_json::to_string_pretty(self).unwrap_or_default()
    }

    pub fn validate(&self) -> Result<(), GenesisError> {
        if self.validators.is_empty() {
            return Err(GenesisError::NoValidators);
        }
        if self.validators.len() > MAX_VALIDATORS {
            return Err(GenesisError::TooManyValidators(self.validators.len()));
        }
        if self.accounts.len() > MAX_GENESIS_ACCOUNTS {
            return Err(GenesisError::TooManyAccounts(self.accounts.len()));
        }
        if self.genesis_time.as_millis() < EARLIEST_GENESIS_MS {
            return Err(GenesisError::BadTime(self.genesis_time));
        }
        self.validate_validators()?;
        self.validate_unique_keys()?;
        let mut names = BTreeSet::new();
        for contract in &self.contracts {
            if !names.insert(contract.name.as_str()) {
                return Err(GenesisError::DuplicateContract(contract.name.to_string()));
            }
        }
        self.consensus.validate()?;
        self.validator_set()?;
        Ok(())
    }

    fn validate_validators(&self) -> Result<(), GenesisError> {
        let mut names = BTreeSet::new();
        for v in &self.validators {
            if !names.insert(v.name.as_str()) {
                return Err(GenesisError::DuplicateName(v.name.to_string()));
            }
            if !matches!(v.role, Role::Hub | Role::Center) {
                return Err(GenesisError::ValidatorRole {
                    name: v.name.to_string(),
                    role: v.role,
                });
            }
            if !is_p2p_address(&v.p2p_address) {
                return Err(GenesisError::BadP2pAddress {
                    name: v.name.to_string(),
                    address: v.p2p_address.to_string(),
                });
            }
        }
        Ok(())
    }

    fn validate_unique_keys(&self) -> Result<(), GenesisError> {
        let mut owners: BTreeMap<PublicKey, String> = BTreeMap::new();
        let all = self
            .validators
            .iter()
            .map(|v| (v.public_key, format!("validator {}", v.name)));
        let accounts = self
            .accounts
            .iter()
            .map(|a| (a.public_key, format!("account {}", a.label)));
        for (key, owner) in all.chain(accounts) {
            if let Some(first) = owners.insert(key, owner.clone()) {
                return Err(GenesisError::DuplicateKey {
                    key,
                    first,
                    second: owner,
                });
            }
        }
        Ok(())
    }

    /// The validator set in force at height 1.
    pub fn validator_set(&self) -> Result<ValidatorSet, GenesisError> {
        let validators = self
            .validators
            .iter()
            .map(|v| Validator {
                name: v.name.clone(),
                key: v.public_key,
                power: v.power,
            })
            .collect();
        Ok(ValidatorSet::new(validators)?)
    }

    /// The genesis hash: what every node of the chain must agree on before anything else.
    pub fn hash(&self) -> Hash {
        Hash::domain(b"bidchain/genesis/v1\0", &[&codec::encode(self)])
    }

    /// The `prev_block_id` of block 1.
    pub fn block_id(&self) -> BlockHash {
        BlockHash(self.hash())
    }

    /// The state at height 0: one account per validator and per listed account, and the
    /// validator set.
    pub fn initial_state(&self) -> Result<BTreeMap<Vec<u8>, Vec<u8>>, GenesisError> {
        let mut state = BTreeMap::new();
        let validators = self
            .validators
            .iter()
            .map(|v| (v.public_key, v.role, v.name.as_str()));
        let accounts = self
            .accounts
            .iter()
            .map(|a| (a.public_key, a.role, a.label.as_str()));
        for (key, role, label) in validators.chain(accounts) {
            let account = Account {
                key,
                role,
                nonce: Nonce(0),
                label: BoundedString::truncating(label),
            };
            state.insert(
                StateKey::Account(AccountId::of(&key)).to_bytes(),
                codec::encode(&account),
            );
        }
        state.insert(
            StateKey::ValidatorSet.to_bytes(),
            codec::encode(&self.validator_set()?),
        );
        Ok(state)
    }
}

impl ConsensusParams {
    /// Proposer-based timestamps: a fresh proposal of `round` whose block time is `time`,
    /// received at `received` on this validator's clock, is timely when
    /// `received - precision - delay(round) <= time <= received + precision`, with
    /// `delay(round) = message_delay * (1 + round / 10)`. The allowance for an old block
    /// covers building, sending and queueing a large one; its growth per round keeps a
    /// slow network live.
    pub fn is_timely(&self, time: Timestamp, received: Timestamp, round: Round) -> bool {
        let delay_ms = self
            .message_delay_ms
            .saturating_add(self.message_delay_ms.saturating_mul(u64::from(round.0)) / 10);
        let (time, received) = (time.as_millis(), received.as_millis());
        let oldest = received.saturating_sub(self.timestamp_precision_ms.saturating_add(delay_ms));
        let newest = received.saturating_add(self.timestamp_precision_ms);
        (oldest..=newest).contains(&time)
    }

    fn validate(&self) -> Result<(), GenesisError> {
        let bad = |name, value: u64, reason| {
            Err(GenesisError::BadParam {
                name,
                value,
                reason,
            })
        };
        if !(10..=60_000).contains(&self.block_interval_ms) {
            return bad(
                "block_interval_ms",
                self.block_interval_ms,
                "must be 10..=60000",
            );
        }
        if self.max_block_txs == 0 || self.max_block_txs as usize > block::MAX_BLOCK_TXS {
            return bad(
                "max_block_txs",
                self.max_block_txs.into(),
                "must be 1..=20000",
            );
        }
        let max_bytes = block::MAX_BLOCK_BYTES as u64;
        if u64::from(self.max_block_bytes) < 1024 || u64::from(self.max_block_bytes) > max_bytes {
            return bad(
                "max_block_bytes",
                self.max_block_bytes.into(),
                "must be 1 KiB..=8 MiB",
            );
        }
        let windows = [
            ("timestamp_precision_ms", self.timestamp_precision_ms),
            ("message_delay_ms", self.message_delay_ms),
        ];
        for (name, value) in windows {
            if !(1..=600_000).contains(&value) {
                return bad(name, value, "must be 1..=600000");
            }
        }
        Ok(())
    }
}

/// `/ip4|ip6|dns|dns4|dns6/HOST/tcp/PORT`, the libp2p multiaddr forms a validator listens on.
fn is_p2p_address(address: &str) -> bool {
    let parts: Vec<&str> = address.split('/').collect();
    match parts.as_slice() {
        ["", proto, host, "tcp", port] => {
            let host_ok = match *proto {
                "ip4" => host.parse::<std::net::Ipv4Addr>().is_ok(),
                "ip6" => host.parse::<std::net::Ipv6Addr>().is_ok(),
                "dns" | "dns4" | "dns6" => !host.is_empty(),
                _ => false,
            };
            host_ok && port.parse::<u16>().is_ok_and(|p| p != 0)
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bidchain_runtime::crypto::Keypair;

    fn key(seed: u64) -> PublicKey {
        Keypair::from_seed_for_tests(seed).public()
    }

    #[test]
    fn a_block_may_be_older_than_the_precision_by_the_message_delay_which_grows_per_round() {
        let params = ConsensusParams {
            timestamp_precision_ms: 100,
            message_delay_ms: 1_000,
            ..ConsensusParams::default()
        };
        let at = |ms: u64| Timestamp::from_millis(10_000 + ms);
        let received = at(0);
        let timely = |time, round| params.is_timely(time, received, Round(round));
        assert!(timely(at(100), 0), "ahead by the precision");
        assert!(!timely(at(101), 0), "further ahead");
        assert!(
            timely(Timestamp::from_millis(10_000 - 1_100), 0),
            "old by precision + delay"
        );
        assert!(!timely(Timestamp::from_millis(10_000 - 1_101), 0));
        // Round 10 doubles the delay; being ahead is never allowed more.
        assert!(timely(Timestamp::from_millis(10_000 - 2_100), 10));
        assert!(!timely(Timestamp::from_millis(10_000 - 2_101), 10));
        assert!(!timely(at(101), 10));
    }

    fn sample() -> Genesis {
        Genesis {
            chain_id: ChainId::new("bidchain-test").unwrap(),
            genesis_time: Timestamp::parse_rfc3339("2026-11-24T00:00:00Z").unwrap(),
            consensus: ConsensusParams::default(),
            validators: vec![GenesisValidator {
                name: BoundedString::new("hub").unwrap(),
                role: Role::Hub,
                public_key: key(1),
                p2p_address: BoundedString::new("/ip4/127.0.0.1/tcp/26656").unwrap(),
                power: 1,
            }],
            accounts: vec![GenesisAccount {
                label: BoundedString::new("center-a").unwrap(),
                role: Role::Center,
                public_key: key(2),
            }],
            contracts: Vec::new(),
        }
    }

    #[test]
    fn valid_genesis_round_trips_through_json_with_the_same_hash() {
        let g = sample();
        g.validate().unwrap();
        let back = Genesis::from_json(&g.to_json()).unwrap();
        assert_eq!(back.hash(), g.hash());
        let compact = serde_json::to_string(&g).unwrap();
        assert_eq!(Genesis::from_json(&compact).unwrap().hash(), g.hash());
        assert_eq!(g.initial_state().unwrap().len(), 3);
    }

    #[test]
    fn hash_changes_with_any_field() {
        let mut g = sample();
        let h = g.hash();
        g.consensus.block_interval_ms += 1;
        assert_ne!(g.hash(), h);
    }

    fn err_of(g: Genesis) -> String {
        g.validate().unwrap_err().to_string()
    }

    #[test]
    fn each_defect_has_a_clear_error() {
        let mut g = sample();
        g.validators.clear();
        assert_eq!(err_of(g), "genesis has no validators");

        let mut g = sample();
        g.accounts[0].public_key = key(1);
        assert!(err_of(g).contains("is used by both validator hub and account center-a"));

        let mut g = sample();
        g.validators.push(g.validators[0].clone());
        g.validators[1].public_key = key(3);
        assert!(err_of(g).contains("validator name \"hub\" is used twice"));

        let mut g = sample();
        g.validators[0].role = Role::Bidder;
        assert!(err_of(g).contains("must be the hub or a center"));

        let mut g = sample();
        g.validators[0].p2p_address = BoundedString::new("127.0.0.1:26656").unwrap();
        assert!(err_of(g).contains("p2p address"));

        let mut g = sample();
        g.validators[0].power = 0;
        assert!(err_of(g).contains("zero voting power"));

        let mut g = sample();
        g.genesis_time = Timestamp(5);
        assert!(err_of(g).contains("before 2000-01-01"));

        let mut g = sample();
        g.consensus.max_block_txs = 0;
        assert!(err_of(g).contains("max_block_txs"));
    }

    #[test]
    fn malformed_json_names_the_problem() {
        let text = sample()
            .to_json()
            .replace("2026-11-24T00:00:00", "tomorrow");
        let err = Genesis::from_json(&text).unwrap_err().to_string();
        assert!(err.contains("RFC 3339"), "{err}");
        let err = Genesis::from_json("{\"chain_id\": \"Bad Id\"}")
            .unwrap_err()
            .to_string();
        assert!(err.contains("chain id"), "{err}");
        let text = sample().to_json().replace("\"accounts\"", "\"acounts\"");
        assert!(
            Genesis::from_json(&text)
                .unwrap_err()
                .to_string()
                .contains("unknown field")
        );
    }

    #[test]
    fn p2p_address_forms() {
        assert!(is_p2p_address("/ip4/10.0.0.5/tcp/26656"));
        assert!(is_p2p_address("/dns4/hub.example/tcp/26656"));
        assert!(!is_p2p_address("/ip4/10.0.0.500/tcp/26656"));
        assert!(!is_p2p_address("/ip4/10.0.0.5/udp/26656"));
        assert!(!is_p2p_address("/ip4/10.0.0.5/tcp/0"));
    }
}
