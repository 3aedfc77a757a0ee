//! The one canonical codec: bincode 2 with fixed-width little-endian integers and a hard
//! limit on the bytes a single decode may claim. Decoding rejects trailing bytes, so every
//! value has exactly one encoding and hashes/signatures over it are unambiguous.

use bincode::config::{Configuration, Fixint, Limit, LittleEndian};
use bincode::{Decode, Encode};

/// Upper bound on any single encoded value (a block is the largest). Decoding refuses larger
/// input outright and bincode refuses any length prefix that would claim more.
pub const MAX_ENCODED_BYTES: usize = 16 * 1024 * 1024;

type Canonical = Configuration<LittleEndian, Fixint, Limit<MAX_ENCODED_BYTES>>;

const fn canonical() -> Canonical {
    bincode::config::standard()
        .with_little_endian()
        .with_fixed_int_encoding()
        .with_limit::<MAX_ENCODED_BYTES>()
}

/// Why bytes could not be decoded into a value.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CodecError {
    #[error("input of {len} bytes exceeds the bound of {max} bytes")]
    TooLong { len: usize, max: usize },
    #[error("malformed encoding: {0}")]
    Malformed(String),
    #[error("{0} trailing bytes after the encoded value")]
    TrailingBytes(usize),
}

/// Encodes a value canonically.
///
/// Every encodable type in this crate bounds its lengths at construction, so encoding into
/// a `Vec` cannot fail; a failure would be a bug in this crate, not bad input.
pub fn encode<T: Encode>(value: &T) -> Vec<u8> {
    match bincode::encode_to_vec(value, canonical()) {
        Ok(bytes) => bytes,
        Err(err) => unreachable!("canonical encoding into a Vec failed: {err}"),
    }
}

/// Decodes exactly one value from `bytes`, refusing input longer than `max_len`, malformed
/// input and trailing bytes.
pub fn decode_bounded<T: Decode<()>>(bytes: &[u8], max_len: usize) -> Result<T, CodecError> {
    let max = max_len.min(MAX_ENCODED_BYTES);
    if bytes.len() > max {
        return Err(CodecError::TooLong {
            len: bytes.len(),
            max,
        });
    }
    let (value, read) = bincode::decode_from_slice::<T, _>(bytes, canonical())
        .map_err(|err| CodecError::Malformed(err.to_string()))?;
    match bytes.len() - read {
        0 => Ok(value),
        trailing => Err(CodecError::TrailingBytes(trailing)),
    }
}

/// [`decode_bounded`] with the global bound.
pub fn decode<T: Decode<()>>(bytes: &[u8]) -> Result<T, CodecError> {
    decode_bounded(bytes, MAX_ENCODED_BYTES)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn integers_are_fixed_width_little_endian() {
        assert_eq!(encode(&1u64), vec![1, 0, 0, 0, 0, 0, 0, 0]);
        assert_eq!(encode(&0x0102u16), vec![2, 1]);
    }

    #[test]
    fn trailing_bytes_are_rejected() {
        let mut bytes = encode(&7u32);
        bytes.push(0);
        assert_eq!(decode::<u32>(&bytes), Err(CodecError::TrailingBytes(1)));
    }

    #[test]
    fn non_canonical_bool_is_rejected() {
        assert!(matches!(
            decode::<bool>(&[2]),
            Err(CodecError::Malformed(_))
        ));
    }

    #[test]
    fn oversized_input_is_rejected_before_decoding() {
        let bytes = vec![0u8; 100];
        assert_eq!(
            decode_bounded::<u8>(&bytes, 10),
            Err(CodecError::TooLong { len: 100, max: 10 })
        );
    }
}
