//! The canonical encoding of every call and record: fixed-width little-endian integers,
//! `u32` length prefixes, one tag byte per enum, no trailing bytes. A length is checked
//! against the bytes left before anything is allocated, so hostile input cannot make a
//! decoder allocate more than the input's size.

use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;

#[derive(Clone, PartialEq, Eq, Debug)]
pub enum DecodeError {
    UnexpectedEnd,
    TrailingBytes(usize),
    BadTag {
        what: &'static str,
        tag: u8,
    },
    TooLong {
        what: &'static str,
        len: usize,
        max: usize,
    },
    BadUtf8,
    Invalid {
        what: &'static str,
        reason: &'static str,
    },
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DecodeError::UnexpectedEnd => f.write_str("input ends early"),
            DecodeError::TrailingBytes(n) => write!(f, "{n} bytes after the value"),
            DecodeError::BadTag { what, tag } => write!(f, "{what}: unknown tag {tag}"),
            DecodeError::TooLong { what, len, max } => {
                write!(f, "{what}: length {len} is over {max}")
            }
            DecodeError::BadUtf8 => f.write_str("text is not UTF-8"),
            DecodeError::Invalid { what, reason } => write!(f, "{what}: {reason}"),
        }
    }
}

/// What [`Encode::encode`] reserves at first: most records fit. In wasm, each growth of
/// a vector is a new block and a copy; growing vectors were the largest share of a bid
/// call's wasm time in its profile.
const ENCODE_CAPACITY_BYTES: usize = 512;

pub trait Encode {
    fn encode_to(&self, out: &mut Vec<u8>);

    fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(ENCODE_CAPACITY_BYTES);
        self.encode_to(&mut out);
        out
    }
}

pub trait Decode: Sized {
    fn decode_from(input: &mut Reader<'_>) -> Result<Self, DecodeError>;

    /// Decodes exactly `bytes`: trailing bytes are an error.
    fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        let mut reader = Reader { bytes };
        let value = Self::decode_from(&mut reader)?;
        match reader.bytes.len() {
            0 => Ok(value),
            n => Err(DecodeError::TrailingBytes(n)),
        }
    }
}

#[derive(Debug)]
pub struct Reader<'a> {
    bytes: &'a [u8],
}

impl<'a> Reader<'a> {
    pub fn take(&mut self, n: usize) -> Result<&'a [u8], DecodeError> {
        if n > self.bytes.len() {
            return Err(DecodeError::UnexpectedEnd);
        }
        let (head, tail) = self.bytes.split_at(n);
        self.bytes = tail;
        Ok(head)
    }

    pub fn byte(&mut self) -> Result<u8, DecodeError> {
        Ok(self.take(1)?[0])
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], DecodeError> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.take(N)?);
        Ok(out)
    }

    /// A length prefix, no longer than the input left (every element is at least a byte).
    pub fn len(&mut self, what: &'static str, max: usize) -> Result<usize, DecodeError> {
        let len = u32::decode_from(self)? as usize;
        if len > max {
            return Err(DecodeError::TooLong { what, len, max });
        }
        if len > self.bytes.len() {
            return Err(DecodeError::UnexpectedEnd);
        }
        Ok(len)
    }
}

macro_rules! int_codec {
    ($($t:ty),*) => {$(
        impl Encode for $t {
            fn encode_to(&self, out: &mut Vec<u8>) {
                out.extend_from_slice(&self.to_le_bytes());
            }
        }
        impl Decode for $t {
            fn decode_from(input: &mut Reader<'_>) -> Result<Self, DecodeError> {
                Ok(<$t>::from_le_bytes(input.array()?))
            }
        }
    )*};
}
int_codec!(u16, u32, u64);

impl Encode for u8 {
    fn encode_to(&self, out: &mut Vec<u8>) {
        out.push(*self);
    }
}

impl Decode for u8 {
    fn decode_from(input: &mut Reader<'_>) -> Result<Self, DecodeError> {
        input.byte()
    }
}

impl Encode for bool {
    fn encode_to(&self, out: &mut Vec<u8>) {
        out.push(u8::from(*self));
    }
}

impl Decode for bool {
    fn decode_from(input: &mut Reader<'_>) -> Result<Self, DecodeError> {
        match input.byte()? {
            0 => Ok(false),
            1 => Ok(true),
            tag => Err(DecodeError::BadTag { what: "bool", tag }),
        }
    }
}

impl Encode for [u8; 32] {
    fn encode_to(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(self);
    }
}

impl Decode for [u8; 32] {
    fn decode_from(input: &mut Reader<'_>) -> Result<Self, DecodeError> {
        input.array()
    }
}

/// The longest text or list any record holds; each type bounds itself further.
pub const MAX_DECODED_LEN: usize = 64 * 1024;

fn encode_len(len: usize, out: &mut Vec<u8>) {
    // Every value this crate encodes is bounded far below u32::MAX.
    (len as u32).encode_to(out);
}

impl Encode for str {
    fn encode_to(&self, out: &mut Vec<u8>) {
        encode_len(self.len(), out);
        out.extend_from_slice(self.as_bytes());
    }
}

impl Encode for String {
    fn encode_to(&self, out: &mut Vec<u8>) {
        self.as_str().encode_to(out);
    }
}

impl Decode for String {
    fn decode_from(input: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let len = input.len("text", MAX_DECODED_LEN)?;
        let bytes = input.take(len)?;
        core::str::from_utf8(bytes)
            .map(String::from)
            .map_err(|_| DecodeError::BadUtf8)
    }
}

/// Encoded as a `Vec<T>` is: what a list of borrowed values encodes to decodes as owned.
impl<T: Encode> Encode for [T] {
    fn encode_to(&self, out: &mut Vec<u8>) {
        encode_len(self.len(), out);
        for item in self {
            item.encode_to(out);
        }
    }
}

impl<T: Encode> Encode for Vec<T> {
    fn encode_to(&self, out: &mut Vec<u8>) {
        self.as_slice().encode_to(out);
    }
}

impl<T: Decode> Decode for Vec<T> {
    fn decode_from(input: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let len = input.len("list", MAX_DECODED_LEN)?;
        let mut items = Vec::with_capacity(len);
        for _ in 0..len {
            items.push(T::decode_from(input)?);
        }
        Ok(items)
    }
}

impl<T: Encode> Encode for Option<T> {
    fn encode_to(&self, out: &mut Vec<u8>) {
        match self {
            None => out.push(0),
            Some(value) => {
                out.push(1);
                value.encode_to(out);
            }
        }
    }
}

impl<T: Decode> Decode for Option<T> {
    fn decode_from(input: &mut Reader<'_>) -> Result<Self, DecodeError> {
        match input.byte()? {
            0 => Ok(None),
            1 => Ok(Some(T::decode_from(input)?)),
            tag => Err(DecodeError::BadTag {
                what: "option",
                tag,
            }),
        }
    }
}

impl<A: Encode, B: Encode> Encode for (A, B) {
    fn encode_to(&self, out: &mut Vec<u8>) {
        self.0.encode_to(out);
        self.1.encode_to(out);
    }
}

impl<A: Decode, B: Decode> Decode for (A, B) {
    fn decode_from(input: &mut Reader<'_>) -> Result<Self, DecodeError> {
        Ok((A::decode_from(input)?, B::decode_from(input)?))
    }
}

impl<A: Encode + ?Sized> Encode for &A {
    fn encode_to(&self, out: &mut Vec<u8>) {
        (*self).encode_to(out);
    }
}

/// Encode and Decode for a struct, field by field in declaration order.
#[macro_export]
macro_rules! record {
    ($name:ident { $($field:ident),* $(,)? }) => {
        impl $crate::codec::Encode for $name {
            fn encode_to(&self, out: &mut alloc::vec::Vec<u8>) {
                $( $crate::codec::Encode::encode_to(&self.$field, out); )*
            }
        }
        impl $crate::codec::Decode for $name {
            fn decode_from(
                input: &mut $crate::codec::Reader<'_>,
            ) -> Result<Self, $crate::codec::DecodeError> {
                Ok($name { $( $field: $crate::codec::Decode::decode_from(input)?, )* })
            }
        }
    };
}

/// Encode and Decode for a field-less enum, one tag byte per variant in order.
#[macro_export]
macro_rules! tagged {
    ($name:ident { $($variant:ident = $tag:literal),* $(,)? }) => {
        impl $crate::codec::Encode for $name {
            fn encode_to(&self, out: &mut alloc::vec::Vec<u8>) {
                out.push(match self { $( $name::$variant => $tag, )* });
            }
        }
        impl $crate::codec::Decode for $name {
            fn decode_from(
                input: &mut $crate::codec::Reader<'_>,
            ) -> Result<Self, $crate::codec::DecodeError> {
                match input.byte()? {
                    $( $tag => Ok($name::$variant), )*
                    tag => Err($crate::codec::DecodeError::BadTag { what: stringify!($name), tag }),
                }
            }
        }
    };
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec;

    #[test]
    fn borrowed_texts_in_a_slice_encode_as_an_owned_list() {
        let borrowed: &[(&str, String)] = &[("tender", "JS-1".into()), ("version", "2".into())];
        let owned: Vec<(String, String)> = borrowed
            .iter()
            .map(|(k, v)| (String::from(*k), v.clone()))
            .collect();
        assert_eq!(borrowed.encode(), owned.encode());
        assert_eq!(
            Vec::<(String, String)>::decode(&borrowed.encode()),
            Ok(owned)
        );
    }

    #[test]
    fn lengths_are_bounded_by_the_input() {
        // A list claiming 4 billion items in 4 bytes fails before allocating.
        let bytes = u32::MAX.encode();
        assert!(matches!(
            Vec::<u8>::decode(&bytes),
            Err(DecodeError::TooLong { .. })
        ));
        let bytes = 10u32.encode();
        assert_eq!(Vec::<u8>::decode(&bytes), Err(DecodeError::UnexpectedEnd));
        let mut bytes = vec![1u8, 2].encode();
        assert_eq!(Vec::<u8>::decode(&bytes), Ok(vec![1, 2]));
        bytes.push(0);
        assert_eq!(
            Vec::<u8>::decode(&bytes),
            Err(DecodeError::TrailingBytes(1))
        );
    }
}
