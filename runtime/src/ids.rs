//! Typed identifiers: no bare integers or byte arrays cross module lines.

use std::fmt;

use bincode::{Decode, Encode};
use serde::{Deserialize, Serialize};

use crate::bounded::BoundedString;
use crate::crypto::PublicKey;
use crate::hash::Hash;
use crate::typed_hash;

/// A block height. Genesis state is height 0; the first block is height 1.
#[derive(
    Clone,
    Copy,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Default,
    Encode,
    Decode,
    Serialize,
    Deserialize,
)]
#[serde(transparent)]
pub struct Height(pub u64);

impl Height {
    pub const GENESIS: Height = Height(0);

    pub fn next(self) -> Height {
        Height(self.0.saturating_add(1))
    }

    /// The height before this one, or `None` at genesis.
    pub fn prev(self) -> Option<Height> {
        self.0.checked_sub(1).map(Height)
    }
}

/// A consensus round within one height.
#[derive(
    Clone,
    Copy,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Default,
    Encode,
    Decode,
    Serialize,
    Deserialize,
)]
#[serde(transparent)]
pub struct Round(pub u32);

impl Round {
    pub fn next(self) -> Round {
        Round(self.0.saturating_add(1))
    }
}

/// An account's transaction counter; a transaction must carry the sender's next nonce.
#[derive(
    Clone,
    Copy,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Default,
    Encode,
    Decode,
    Serialize,
    Deserialize,
)]
#[serde(transparent)]
pub struct Nonce(pub u64);

impl Nonce {
    pub fn next(self) -> Nonce {
        Nonce(self.0 + 1)
    }
}

macro_rules! display_inner {
    ($($ty:ty),*) => {$(
        impl fmt::Display for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::Display::fmt(&self.0, f)
            }
        }
        impl fmt::Debug for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({})", stringify!($ty), self.0)
            }
        }
    )*};
}
display_inner!(Height, Round, Nonce);

typed_hash!(
    /// A pseudonymous account id: the hash of the account's public key.
    AccountId
);

impl AccountId {
    pub fn of(key: &PublicKey) -> AccountId {
        AccountId(Hash::domain(b"bidchain/account/v1", &[&key.0]))
    }
}

/// The longest chain id.
pub const MAX_CHAIN_ID_LEN: usize = 64;

/// A chain id: 1 to 64 of `[a-z0-9._-]`. Part of every signed message, so a transaction or
/// vote of one chain is never valid on another.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Encode, Decode, Serialize)]
#[serde(transparent)]
pub struct ChainId(BoundedString<MAX_CHAIN_ID_LEN>);

/// Why a string is not a chain id.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("chain id {0:?} must be 1 to 64 characters of a-z, 0-9, '.', '_' or '-'")]
pub struct ChainIdError(pub String);

impl ChainId {
    pub fn new(id: &str) -> Result<ChainId, ChainIdError> {
        let allowed = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit() || "._-".contains(c);
        if id.is_empty() || !id.chars().all(allowed) {
            return Err(ChainIdError(id.to_owned()));
        }
        BoundedString::new(id)
            .map(ChainId)
            .map_err(|_| ChainIdError(id.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        self.0.as_str()
    }
}

impl<'de> Deserialize<'de> for ChainId {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        ChainId::new(&text).map_err(serde::de::Error::custom)
    }
}

impl fmt::Display for ChainId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Debug for ChainId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ChainId({})", self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chain_id_rules() {
        assert!(ChainId::new("bidchain-js.1").is_ok());
        assert!(ChainId::new("").is_err());
        assert!(ChainId::new("Upper").is_err());
        assert!(ChainId::new(&"a".repeat(65)).is_err());
        assert!(ChainId::new(&"a".repeat(64)).is_ok());
    }

    #[test]
    fn height_steps() {
        assert_eq!(Height::GENESIS.prev(), None);
        assert_eq!(Height(4).next(), Height(5));
    }
}
