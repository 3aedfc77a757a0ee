//! Length-bounded containers. Every variable-length field of an encoded type is one of
//! these, so decoding checks the length prefix against a named bound *before* allocating,
//! and a value that exists in memory always fits its bound.

use std::fmt;
use std::ops::Deref;

use bincode::de::{BorrowDecoder, Decoder};
use bincode::enc::Encoder;
use bincode::error::{DecodeError, EncodeError};
use bincode::{BorrowDecode, Decode, Encode};

/// Why a value does not fit its bound.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("length {len} exceeds the bound of {max}")]
pub struct BoundError {
    pub len: usize,
    pub max: usize,
}

fn check_len(len: usize, max: usize) -> Result<(), BoundError> {
    if len > max {
        Err(BoundError { len, max })
    } else {
        Ok(())
    }
}

fn decode_len<D: Decoder>(decoder: &mut D, max: usize) -> Result<usize, DecodeError> {
    let len = u64::decode(decoder)?;
    match usize::try_from(len) {
        Ok(len) if len <= max => Ok(len),
        _ => Err(DecodeError::OtherString(format!(
            "length {len} exceeds the bound of {max}"
        ))),
    }
}

fn encode_len<E: Encoder>(encoder: &mut E, len: usize) -> Result<(), EncodeError> {
    (len as u64).encode(encoder)
}

/// A `Vec<T>` of at most `MAX` elements.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct BoundedVec<T, const MAX: usize>(Vec<T>);

impl<T, const MAX: usize> BoundedVec<T, MAX> {
    pub const MAX: usize = MAX;

    pub fn new(items: Vec<T>) -> Result<Self, BoundError> {
        check_len(items.len(), MAX)?;
        Ok(BoundedVec(items))
    }

    pub fn empty() -> Self {
        BoundedVec(Vec::new())
    }

    /// Appends, refusing to grow past the bound.
    pub fn push(&mut self, item: T) -> Result<(), BoundError> {
        check_len(self.0.len() + 1, MAX)?;
        self.0.push(item);
        Ok(())
    }

    pub fn into_inner(self) -> Vec<T> {
        self.0
    }
}

impl<T, const MAX: usize> Default for BoundedVec<T, MAX> {
    fn default() -> Self {
        Self::empty()
    }
}

impl<T, const MAX: usize> Deref for BoundedVec<T, MAX> {
    type Target = [T];
    fn deref(&self) -> &[T] {
        &self.0
    }
}

impl<T: fmt::Debug, const MAX: usize> fmt::Debug for BoundedVec<T, MAX> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl<T: Encode, const MAX: usize> Encode for BoundedVec<T, MAX> {
    fn encode<E: Encoder>(&self, encoder: &mut E) -> Result<(), EncodeError> {
        encode_len(encoder, self.0.len())?;
        self.0.iter().try_for_each(|item| item.encode(encoder))
    }
}

impl<Ctx, T: Decode<Ctx>, const MAX: usize> Decode<Ctx> for BoundedVec<T, MAX> {
    fn decode<D: Decoder<Context = Ctx>>(decoder: &mut D) -> Result<Self, DecodeError> {
        let len = decode_len(decoder, MAX)?;
        decoder.claim_container_read::<T>(len)?;
        let mut items = Vec::with_capacity(len);
        for _ in 0..len {
            // The claim above counted size_of::<T>() per item; T's own decode claims its
            // bytes again as it reads them, so hand this item's share back.
            decoder.unclaim_bytes_read(std::mem::size_of::<T>());
            items.push(T::decode(decoder)?);
        }
        Ok(BoundedVec(items))
    }
}

impl<'de, Ctx, T: Decode<Ctx>, const MAX: usize> BorrowDecode<'de, Ctx> for BoundedVec<T, MAX> {
    fn borrow_decode<D: BorrowDecoder<'de, Context = Ctx>>(
        decoder: &mut D,
    ) -> Result<Self, DecodeError> {
        Decode::decode(decoder)
    }
}

impl<T: serde::Serialize, const MAX: usize> serde::Serialize for BoundedVec<T, MAX> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.0.serialize(s)
    }
}

impl<'de, T: serde::Deserialize<'de>, const MAX: usize> serde::Deserialize<'de>
    for BoundedVec<T, MAX>
{
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let items = Vec::<T>::deserialize(d)?;
        BoundedVec::new(items).map_err(serde::de::Error::custom)
    }
}

/// Bytes, at most `MAX` of them; shown and serialised as hex.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct BoundedBytes<const MAX: usize>(Vec<u8>);

impl<const MAX: usize> BoundedBytes<MAX> {
    pub fn new(bytes: Vec<u8>) -> Result<Self, BoundError> {
        check_len(bytes.len(), MAX)?;
        Ok(BoundedBytes(bytes))
    }
}

impl<const MAX: usize> Deref for BoundedBytes<MAX> {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        &self.0
    }
}

impl<const MAX: usize> fmt::Debug for BoundedBytes<MAX> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "0x{}", hex::encode(&self.0))
    }
}

impl<const MAX: usize> Encode for BoundedBytes<MAX> {
    fn encode<E: Encoder>(&self, encoder: &mut E) -> Result<(), EncodeError> {
        encode_len(encoder, self.0.len())?;
        bincode::enc::write::Writer::write(encoder.writer(), &self.0)
    }
}

fn decode_bytes<D: Decoder>(decoder: &mut D, max: usize) -> Result<Vec<u8>, DecodeError> {
    let len = decode_len(decoder, max)?;
    decoder.claim_bytes_read(len)?;
    let mut bytes = vec![0u8; len];
    bincode::de::read::Reader::read(decoder.reader(), &mut bytes)?;
    Ok(bytes)
}

impl<Ctx, const MAX: usize> Decode<Ctx> for BoundedBytes<MAX> {
    fn decode<D: Decoder<Context = Ctx>>(decoder: &mut D) -> Result<Self, DecodeError> {
        decode_bytes(decoder, MAX).map(BoundedBytes)
    }
}

impl<'de, Ctx, const MAX: usize> BorrowDecode<'de, Ctx> for BoundedBytes<MAX> {
    fn borrow_decode<D: BorrowDecoder<'de, Context = Ctx>>(
        decoder: &mut D,
    ) -> Result<Self, DecodeError> {
        Decode::decode(decoder)
    }
}

impl<const MAX: usize> serde::Serialize for BoundedBytes<MAX> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&hex::encode(&self.0))
    }
}

impl<'de, const MAX: usize> serde::Deserialize<'de> for BoundedBytes<MAX> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        let bytes = hex::decode(text.as_ref()).map_err(serde::de::Error::custom)?;
        BoundedBytes::new(bytes).map_err(serde::de::Error::custom)
    }
}

/// UTF-8 text of at most `MAX` bytes.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct BoundedString<const MAX: usize>(String);

impl<const MAX: usize> BoundedString<MAX> {
    pub fn new(text: impl Into<String>) -> Result<Self, BoundError> {
        let text = text.into();
        check_len(text.len(), MAX)?;
        Ok(BoundedString(text))
    }

    /// Cuts `text` at a character boundary to fit, for human-readable reasons that must
    /// never fail to be recorded.
    pub fn truncating(text: &str) -> Self {
        BoundedString(text[..Self::fitting_len(text)].to_owned())
    }

    /// [`BoundedString::truncating`] for a string the caller owns: cut in place, not
    /// copied (a contract's decoded event values, several per transaction).
    pub fn truncated(mut text: String) -> Self {
        text.truncate(Self::fitting_len(&text));
        BoundedString(text)
    }

    /// The longest prefix of `text` that fits and ends on a character boundary.
    fn fitting_len(text: &str) -> usize {
        let mut end = text.len().min(MAX);
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        end
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl<const MAX: usize> Deref for BoundedString<MAX> {
    type Target = str;
    fn deref(&self) -> &str {
        &self.0
    }
}

impl<const MAX: usize> fmt::Debug for BoundedString<MAX> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl<const MAX: usize> fmt::Display for BoundedString<MAX> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl<const MAX: usize> Encode for BoundedString<MAX> {
    fn encode<E: Encoder>(&self, encoder: &mut E) -> Result<(), EncodeError> {
        encode_len(encoder, self.0.len())?;
        bincode::enc::write::Writer::write(encoder.writer(), self.0.as_bytes())
    }
}

impl<Ctx, const MAX: usize> Decode<Ctx> for BoundedString<MAX> {
    fn decode<D: Decoder<Context = Ctx>>(decoder: &mut D) -> Result<Self, DecodeError> {
        let bytes = decode_bytes(decoder, MAX)?;
        String::from_utf8(bytes)
            .map(BoundedString)
            .map_err(|err| DecodeError::Utf8 {
                inner: err.utf8_error(),
            })
    }
}

impl<'de, Ctx, const MAX: usize> BorrowDecode<'de, Ctx> for BoundedString<MAX> {
    fn borrow_decode<D: BorrowDecoder<'de, Context = Ctx>>(
        decoder: &mut D,
    ) -> Result<Self, DecodeError> {
        Decode::decode(decoder)
    }
}

impl<const MAX: usize> serde::Serialize for BoundedString<MAX> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

impl<'de, const MAX: usize> serde::Deserialize<'de> for BoundedString<MAX> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        BoundedString::new(text).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::{CodecError, decode, encode};

    #[test]
    fn length_prefix_over_the_bound_is_refused_before_allocating() {
        // A claimed length of u64::MAX with no payload: must fail on the bound, not OOM.
        let bytes = u64::MAX.to_le_bytes();
        let err = decode::<BoundedBytes<16>>(&bytes).unwrap_err();
        assert!(
            matches!(err, CodecError::Malformed(ref m) if m.contains("bound")),
            "{err}"
        );
        let err = decode::<BoundedVec<u64, 4>>(&5u64.to_le_bytes()).unwrap_err();
        assert!(
            matches!(err, CodecError::Malformed(ref m) if m.contains("bound")),
            "{err}"
        );
    }

    #[test]
    fn length_within_bound_but_beyond_input_is_refused() {
        let err = decode::<BoundedBytes<1000>>(&999u64.to_le_bytes()).unwrap_err();
        assert!(matches!(err, CodecError::Malformed(_)), "{err}");
    }

    #[test]
    fn invalid_utf8_is_refused() {
        let mut bytes = 2u64.to_le_bytes().to_vec();
        bytes.extend([0xff, 0xfe]);
        assert!(decode::<BoundedString<8>>(&bytes).is_err());
    }

    #[test]
    fn constructors_enforce_the_bound() {
        assert_eq!(
            BoundedVec::<u8, 2>::new(vec![1, 2, 3]),
            Err(BoundError { len: 3, max: 2 })
        );
        assert!(BoundedString::<3>::new("abcd").is_err());
        assert_eq!(BoundedString::<4>::truncating("数据").as_str(), "数");
        assert_eq!(BoundedString::<4>::truncated("数据".into()).as_str(), "数");
        assert_eq!(
            BoundedString::<4>::truncated("abcd".into()).as_str(),
            "abcd"
        );
        let v = BoundedVec::<u32, 3>::new(vec![1, 2, 3]).unwrap();
        assert_eq!(decode::<BoundedVec<u32, 3>>(&encode(&v)).unwrap(), v);
    }
}
