//! Typed ids. Parties, units and experts are pseudonymous 32-byte hashes; the real names
//! stay off chain. Tender ids are the tender's public code (e.g. `JS-2026-0001`).

use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;

use crate::codec::{Decode, DecodeError, Encode, Reader};

macro_rules! bytes32 {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
        pub struct $name(pub [u8; 32]);

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                for byte in self.0 {
                    write!(f, "{byte:02x}")?;
                }
                Ok(())
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({self})", stringify!($name))
            }
        }

        impl $name {
            /// Parses 64 hex digits.
            pub fn from_hex(text: &str) -> Option<$name> {
                parse_hex32(text).map($name)
            }

            /// The first 8 hex digits, for people reading a log or a demo.
            pub fn short(&self) -> String {
                let mut out = alloc::format!("{self}");
                out.truncate(8);
                out
            }
        }

        impl Encode for $name {
            fn encode_to(&self, out: &mut Vec<u8>) {
                self.0.encode_to(out);
            }
        }

        impl Decode for $name {
            fn decode_from(input: &mut Reader<'_>) -> Result<Self, DecodeError> {
                Ok($name(<[u8; 32]>::decode_from(input)?))
            }
        }
    };
}

bytes32!(
    /// A SHA-256 digest (a file, a fingerprint, a commitment, a seed).
    Digest
);
bytes32!(
    /// An account's ed25519 public key: who called.
    AccountKey
);
bytes32!(
    /// A unit (company, agency) as the hash of its credit code.
    UnitId
);
bytes32!(
    /// An expert in the registry, pseudonymous.
    ExpertId
);

fn parse_hex32(text: &str) -> Option<[u8; 32]> {
    let bytes = text.as_bytes();
    if bytes.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, pair) in bytes.chunks(2).enumerate() {
        let digit = |c: u8| (c as char).to_digit(16);
        out[i] = (digit(pair[0])? * 16 + digit(pair[1])?) as u8;
    }
    Some(out)
}

/// Why a text id is not acceptable.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct IdError {
    pub what: &'static str,
    pub reason: &'static str,
}

impl fmt::Display for IdError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.what, self.reason)
    }
}

macro_rules! text_id {
    ($(#[$doc:meta])* $name:ident, $max:expr, $what:literal) => {
        $(#[$doc])*
        #[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Debug)]
        pub struct $name(String);

        impl $name {
            pub const MAX_LEN: usize = $max;

            /// 1 to MAX_LEN characters of `A-Z a-z 0-9 . _ -`, so the id is safe in a
            /// storage key, a URL and a file name.
            pub fn new(text: &str) -> Result<$name, IdError> {
                let err = |reason| IdError { what: $what, reason };
                if text.is_empty() || text.len() > $max {
                    return Err(err(concat!("must be 1 to ", stringify!($max), " characters")));
                }
                let allowed = |c: u8| c.is_ascii_alphanumeric() || matches!(c, b'.' | b'_' | b'-');
                if !text.bytes().all(allowed) {
                    return Err(err("may hold only A-Z, a-z, 0-9, '.', '_' and '-'"));
                }
                Ok($name(String::from(text)))
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl Encode for $name {
            fn encode_to(&self, out: &mut Vec<u8>) {
                self.0.encode_to(out);
            }
        }

        impl Decode for $name {
            fn decode_from(input: &mut Reader<'_>) -> Result<Self, DecodeError> {
                let text = String::decode_from(input)?;
                $name::new(&text).map_err(|e| DecodeError::Invalid { what: $what, reason: e.reason })
            }
        }
    };
}

text_id!(
    /// A tender's public code, e.g. `JS-2026-0001`.
    TenderId, 64, "tender id"
);
text_id!(
    /// A short tag: a category (`construction`), a region (`nanjing`).
    Label, 32, "label"
);
