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
                f.write_str(hex32(&self.0, &mut [0; 64]))
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

/// Lower-case hex digits.
const HEX_DIGITS: &[u8; 16] = b"0123456789abcdef";

/// `bytes` as 64 hex digits, written into `out`. One string for the formatter: a
/// `{:02x}` per byte went through core::fmt's padding 32 times, 13 % of a bid call's
/// wasm instructions (its three ids).
fn hex32<'a>(bytes: &[u8; 32], out: &'a mut [u8; 64]) -> &'a str {
    for (pair, byte) in out.chunks_exact_mut(2).zip(bytes) {
        pair[0] = HEX_DIGITS[usize::from(byte >> 4)];
        pair[1] = HEX_DIGITS[usize::from(byte & 0x0f)];
    }
    // Only ASCII digits were written.
    core::str::from_utf8(out).unwrap_or_default()
}

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

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::string::ToString;

    #[test]
    fn a_32_byte_id_shows_as_64_lower_case_digits_and_parses_back() {
        let mut bytes = [0u8; 32];
        for (i, b) in bytes.iter_mut().enumerate() {
            *b = (i as u8).wrapping_mul(37).wrapping_add(5);
        }
        let digest = Digest(bytes);
        let text = digest.to_string();
        let expected: String = bytes.iter().map(|b| alloc::format!("{b:02x}")).collect();
        assert_eq!(text, expected);
        assert_eq!(Digest::from_hex(&text), Some(digest));
        assert_eq!(AccountKey([0xab; 32]).short(), "abababab");
    }
}
