//! Signed transactions: (chain id, sender, nonce, payload) signed by the sender's key.

use bincode::{Decode, Encode};
use serde::{Deserialize, Serialize};

use crate::bounded::{BoundedBytes, BoundedString};
use crate::codec::{self, CodecError};
use crate::crypto::{CryptoError, Keypair, PublicKey, Signature};
use crate::hash::Hash;
use crate::ids::{AccountId, ChainId, Nonce};
use crate::typed_hash;
use crate::validator::MAX_VALIDATOR_NAME_LEN;

/// The largest encoded transaction a node accepts.
pub const MAX_TX_BYTES: usize = 64 * 1024;
/// The longest account label (a pseudonymous, human-readable tag such as "center-nanjing").
pub const MAX_LABEL_LEN: usize = 64;

/// The longest contract name (`tender`, `experts`, `archive`).
pub const MAX_CONTRACT_NAME_LEN: usize = 32;
/// The largest contract call input (the host's own bound).
pub const MAX_CALL_INPUT_BYTES: usize = crate::contract::MAX_INPUT_BYTES;

/// Domain tag of the bytes a sender signs.
const TX_SIGN_DOMAIN: &[u8] = b"bidchain/tx/v1\0";

typed_hash!(
    /// The SHA-256 of a signed transaction's canonical encoding.
    TxHash
);

/// What an account may do. Ids stay pseudonymous; the real names stay off chain.
#[derive(
    Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug, Encode, Decode, Serialize, Deserialize,
)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// The provincial hub: administers accounts and roles.
    Hub,
    /// A city trading center: runs tenders, registers tenderers and bidders.
    Center,
    Tenderer,
    Bidder,
    Auditor,
}

impl Role {
    pub const ALL: [Role; 5] = [
        Role::Hub,
        Role::Center,
        Role::Tenderer,
        Role::Bidder,
        Role::Auditor,
    ];

    /// Whether an account with this role may create an account with `role`: the hub any,
    /// a center the parties of its tenders.
    pub fn may_create(self, role: Role) -> bool {
        match self {
            Role::Hub => true,
            Role::Center => matches!(role, Role::Tenderer | Role::Bidder),
            Role::Tenderer | Role::Bidder | Role::Auditor => false,
        }
    }

    /// The role as contracts see it (`bidchain_trading::roles`).
    pub fn contract_code(self) -> i32 {
        use bidchain_trading::roles;
        match self {
            Role::Hub => roles::HUB,
            Role::Center => roles::CENTER,
            Role::Tenderer => roles::TENDERER,
            Role::Bidder => roles::BIDDER,
            Role::Auditor => roles::AUDITOR,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Role::Hub => "hub",
            Role::Center => "center",
            Role::Tenderer => "tenderer",
            Role::Bidder => "bidder",
            Role::Auditor => "auditor",
        }
    }
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// Why a string is not a role.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("unknown role {0:?}: expected hub, center, tenderer, bidder or auditor")]
pub struct RoleError(pub String);

impl std::str::FromStr for Role {
    type Err = RoleError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Role::ALL
            .into_iter()
            .find(|role| role.name().eq_ignore_ascii_case(s))
            .ok_or_else(|| RoleError(s.to_owned()))
    }
}

/// Calls the chain itself executes (no contract involved).
#[derive(Clone, PartialEq, Eq, Debug, Encode, Decode, Serialize, Deserialize)]
pub enum NativeCall {
    /// Opens an account for `key` with `role`.
    CreateAccount {
        key: PublicKey,
        role: Role,
        label: BoundedString<MAX_LABEL_LEN>,
    },
    /// Changes an existing account's role (hub only).
    SetRole { account: AccountId, role: Role },
    /// Adds a validator, changes its power, or removes it with power 0 (hub only). It
    /// takes effect from the height after the block that holds it: that block's header
    /// carries the new set's hash as `next_validators_hash`.
    SetValidator {
        key: PublicKey,
        name: BoundedString<MAX_VALIDATOR_NAME_LEN>,
        power: u64,
    },
}

/// A call of a contract genesis pins: its name and its input (the contract's own
/// encoding, `bidchain-trading`'s for the trading contracts).
#[derive(Clone, PartialEq, Eq, Debug, Encode, Decode, Serialize, Deserialize)]
pub struct ContractCall {
    pub contract: BoundedString<MAX_CONTRACT_NAME_LEN>,
    pub input: BoundedBytes<MAX_CALL_INPUT_BYTES>,
}

/// What a transaction asks for.
#[derive(Clone, PartialEq, Eq, Debug, Encode, Decode, Serialize, Deserialize)]
pub enum Payload {
    Native(NativeCall),
    Call(ContractCall),
}

impl Payload {
    /// A call of `contract` with `input`.
    pub fn call(contract: &str, input: Vec<u8>) -> Result<Payload, crate::bounded::BoundError> {
        Ok(Payload::Call(ContractCall {
            contract: BoundedString::new(contract)?,
            input: BoundedBytes::new(input)?,
        }))
    }
}

/// The signed part of a transaction.
#[derive(Clone, PartialEq, Eq, Debug, Encode, Decode, Serialize, Deserialize)]
pub struct Transaction {
    pub chain_id: ChainId,
    pub sender: PublicKey,
    pub nonce: Nonce,
    pub payload: Payload,
}

impl Transaction {
    /// The exact bytes the sender signs: a domain tag, then the canonical encoding.
    pub fn signing_bytes(&self) -> Vec<u8> {
        let mut bytes = TX_SIGN_DOMAIN.to_vec();
        bytes.extend(codec::encode(self));
        bytes
    }

    pub fn sign(self, key: &Keypair) -> SignedTransaction {
        let signature = key.sign(&self.signing_bytes());
        SignedTransaction {
            tx: self,
            signature,
        }
    }

    pub fn sender_id(&self) -> AccountId {
        AccountId::of(&self.sender)
    }
}

/// A transaction with its sender's signature: what is submitted, gossiped and put in blocks.
#[derive(Clone, PartialEq, Eq, Debug, Encode, Decode, Serialize, Deserialize)]
pub struct SignedTransaction {
    pub tx: Transaction,
    pub signature: Signature,
}

impl SignedTransaction {
    pub fn encode(&self) -> Vec<u8> {
        codec::encode(self)
    }

    /// Decodes untrusted bytes (an RPC body, a gossip message) with the transaction bound.
    pub fn decode(bytes: &[u8]) -> Result<SignedTransaction, CodecError> {
        codec::decode_bounded(bytes, MAX_TX_BYTES)
    }

    pub fn hash(&self) -> TxHash {
        self.encoded_with_hash().1
    }

    /// The encoding and its hash, for a caller that needs both (one encoding, not two).
    pub fn encoded_with_hash(&self) -> (Vec<u8>, TxHash) {
        let bytes = self.encode();
        let hash = TxHash(Hash::digest(&bytes));
        (bytes, hash)
    }

    pub fn verify_signature(&self) -> Result<(), CryptoError> {
        self.tx
            .sender
            .verify(&self.tx.signing_bytes(), &self.signature)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn sample(nonce: u64) -> SignedTransaction {
        let key = Keypair::from_seed_for_tests(7);
        Transaction {
            chain_id: ChainId::new("test").unwrap(),
            sender: key.public(),
            nonce: Nonce(nonce),
            payload: Payload::Native(NativeCall::CreateAccount {
                key: Keypair::from_seed_for_tests(8).public(),
                role: Role::Bidder,
                label: BoundedString::new("bidder-1").unwrap(),
            }),
        }
        .sign(&key)
    }

    #[test]
    fn signature_covers_every_field() {
        let signed = sample(3);
        assert!(signed.verify_signature().is_ok());
        let mut other_nonce = signed.clone();
        other_nonce.tx.nonce = Nonce(4);
        assert!(other_nonce.verify_signature().is_err());
        let mut other_chain = signed.clone();
        other_chain.tx.chain_id = ChainId::new("other").unwrap();
        assert!(other_chain.verify_signature().is_err());
    }

    #[test]
    fn decode_refuses_oversized_and_trailing_input() {
        let signed = sample(0);
        let mut bytes = signed.encode();
        assert_eq!(SignedTransaction::decode(&bytes).unwrap(), signed);
        bytes.push(1);
        assert_eq!(
            SignedTransaction::decode(&bytes),
            Err(CodecError::TrailingBytes(1))
        );
        let huge = vec![0u8; MAX_TX_BYTES + 1];
        assert!(matches!(
            SignedTransaction::decode(&huge),
            Err(CodecError::TooLong { .. })
        ));
    }

    #[test]
    fn roles_parse_and_permissions() {
        assert_eq!("Center".parse::<Role>(), Ok(Role::Center));
        assert!("mayor".parse::<Role>().is_err());
        assert!(Role::Hub.may_create(Role::Center));
        assert!(Role::Center.may_create(Role::Bidder));
        assert!(!Role::Center.may_create(Role::Auditor));
        assert!(!Role::Bidder.may_create(Role::Bidder));
    }
}
