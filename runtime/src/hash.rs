//! SHA-256 hashes and the typed hashes built on them.

use std::fmt;
use std::str::FromStr;

use bincode::{Decode, Encode};
use sha2::{Digest, Sha256};

/// A SHA-256 digest.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Encode, Decode)]
pub struct Hash(pub [u8; 32]);

impl Hash {
    pub const ZERO: Hash = Hash([0; 32]);
    pub const LEN: usize = 32;

    /// SHA-256 of `bytes`.
    pub fn digest(bytes: &[u8]) -> Hash {
        Hash(Sha256::digest(bytes).into())
    }

    /// SHA-256 over a domain tag followed by `parts`, so hashes of different kinds of object
    /// can never collide by construction.
    pub fn domain(tag: &[u8], parts: &[&[u8]]) -> Hash {
        let mut hasher = Sha256::new();
        hasher.update(tag);
        for part in parts {
            hasher.update(part);
        }
        Hash(hasher.finalize().into())
    }

    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }
}

/// Why a hex string is not a hash.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("expected {expected} hex digits, got {input:?}")]
pub struct HexError {
    pub expected: usize,
    pub input: String,
}

/// Parses exactly `N` bytes of lowercase or uppercase hex.
pub fn parse_hex_array<const N: usize>(input: &str) -> Result<[u8; N], HexError> {
    let mut out = [0u8; N];
    hex::decode_to_slice(input, &mut out).map_err(|_| HexError {
        expected: N * 2,
        input: input.chars().take(2 * N + 8).collect(),
    })?;
    Ok(out)
}

impl FromStr for Hash {
    type Err = HexError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        parse_hex_array(s).map(Hash)
    }
}

impl fmt::Display for Hash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl fmt::Debug for Hash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Hash({})", &self.to_hex()[..16])
    }
}

/// Serde as lowercase hex for fixed-size byte newtypes (JSON for people, bincode for
/// machines).
#[macro_export]
macro_rules! serde_hex {
    ($ty:ty) => {
        impl serde::Serialize for $ty {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(&hex::encode(&self.0))
            }
        }
        impl<'de> serde::Deserialize<'de> for $ty {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let text = <std::borrow::Cow<'de, str> as serde::Deserialize>::deserialize(d)?;
                $crate::hash::parse_hex_array(&text)
                    .map(Self)
                    .map_err(serde::de::Error::custom)
            }
        }
    };
}

serde_hex!(Hash);

/// Declares a typed hash: a [`Hash`] that means one kind of thing.
#[macro_export]
macro_rules! typed_hash {
    ($(#[$meta:meta])* $name:ident) => {
        $(#[$meta])*
        #[derive(
            Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default,
            bincode::Encode, bincode::Decode, serde::Serialize, serde::Deserialize,
        )]
        #[serde(transparent)]
        pub struct $name(pub $crate::hash::Hash);

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                std::fmt::Display::fmt(&self.0, f)
            }
        }
        impl std::fmt::Debug for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                write!(f, "{}({})", stringify!($name), &self.0.to_hex()[..16])
            }
        }
        impl std::str::FromStr for $name {
            type Err = $crate::hash::HexError;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                s.parse().map($name)
            }
        }
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sha256_of_empty_input() {
        assert_eq!(
            Hash::digest(b"").to_hex(),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }

    #[test]
    fn hex_round_trip_and_errors() {
        let h = Hash::digest(b"abc");
        assert_eq!(h.to_hex().parse::<Hash>(), Ok(h));
        assert!("abc".parse::<Hash>().is_err());
        let json = serde_json::to_string(&h).unwrap();
        assert_eq!(serde_json::from_str::<Hash>(&json).unwrap(), h);
    }
}
