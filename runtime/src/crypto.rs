//! ed25519 keys and signatures as plain byte newtypes, so they encode canonically and cross
//! module lines without exposing the dalek types.

use std::collections::HashMap;
use std::fmt;
use std::sync::{LazyLock, PoisonError, RwLock};

use bincode::{Decode, Encode};
use curve25519_dalek::constants::ED25519_BASEPOINT_POINT;
use curve25519_dalek::edwards::{CompressedEdwardsY, EdwardsPoint};
use curve25519_dalek::scalar::Scalar;
use curve25519_dalek::traits::{IsIdentity, VartimeMultiscalarMul};
use ed25519_dalek::{Signer, SigningKey};
use sha2::{Digest, Sha512};
use zeroize::Zeroizing;

use crate::serde_hex;

/// An ed25519 public key (32 bytes, compressed Edwards point).
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Encode, Decode)]
pub struct PublicKey(pub [u8; 32]);

/// An ed25519 signature (64 bytes).
#[derive(Clone, Copy, PartialEq, Eq, Encode, Decode)]
pub struct Signature(pub [u8; 64]);

serde_hex!(PublicKey);
serde_hex!(Signature);

/// Why a signature does not hold.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CryptoError {
    #[error("public key {0} is not a usable ed25519 key (not a curve point, or of small order)")]
    BadPublicKey(String),
    #[error("signature does not verify")]
    BadSignature,
    #[error("batch of {sigs} signatures for {keys} keys and {msgs} messages")]
    BatchShape {
        sigs: usize,
        keys: usize,
        msgs: usize,
    },
}

/// How many decompressed keys of signers the signature checks keep. At the bound the
/// cache starts over empty: the signers of the moment come back at once.
const MAX_CACHED_KEYS: usize = 16_384;

/// Decompressed keys of recent signers. Decompressing a key is a square root in the field,
/// and the same bidders sign again and again, each transaction checked once per node. A
/// cached key is exactly what decompression returns, so no answer depends on the cache.
/// Only keys whose signature held are kept, so keys that never signed cannot fill it
/// (keys made to sign can; the cache then only starts over sooner).
static SIGNER_POINTS: LazyLock<RwLock<HashMap<[u8; 32], EdwardsPoint>>> =
    LazyLock::new(RwLock::default);

/// A signer's key and its curve point, decompressed or found in the cache.
struct SignerKey {
    key: PublicKey,
    point: EdwardsPoint,
    cached: bool,
}

impl PublicKey {
    /// The key's point. A small-order key is refused: every message has signatures under
    /// it that anyone can make.
    fn point(&self) -> Result<SignerKey, CryptoError> {
        let cached = SIGNER_POINTS
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&self.0)
            .copied();
        if let Some(point) = cached {
            return Ok(SignerKey {
                key: *self,
                point,
                cached: true,
            });
        }
        let point = CompressedEdwardsY(self.0)
            .decompress()
            .filter(|p| !p.is_small_order())
            .ok_or_else(|| CryptoError::BadPublicKey(self.to_string()))?;
        Ok(SignerKey {
            key: *self,
            point,
            cached: false,
        })
    }

    /// Checks a signature by the cofactored equation [8](sB − kA − R) = 0, k = H(R‖A‖M):
    /// the equation [`verify_batch`] checks for each signature of a batch. So every node
    /// gives a signature the same verdict, checked alone or in any batch. (The cofactorless
    /// equation, ed25519-dalek's `verify_strict`, refuses a signature whose R has a
    /// small-order part, while its batch check, which weights each equation by a number
    /// drawn from the whole batch, passes such a signature in some batches and not in
    /// others: a signer could split the nodes.)
    pub fn verify(&self, message: &[u8], signature: &Signature) -> Result<(), CryptoError> {
        let signer = self.point()?;
        let (r, s) = signature.parts()?;
        let k = challenge(signature, self, message);
        let sb_minus_ka = EdwardsPoint::vartime_double_scalar_mul_basepoint(&k, &-signer.point, &s);
        if !(sb_minus_ka - r).mul_by_cofactor().is_identity() {
            return Err(CryptoError::BadSignature);
        }
        remember(std::slice::from_ref(&signer));
        Ok(())
    }
}

impl Signature {
    /// R as a point and s as a scalar. s must be below the group order, or a third party
    /// could make a second valid encoding. R, like a key, may be encoded non-canonically
    /// (y ≥ p), as ZIP 215 allows: only the signer can choose R's bytes, since k is hashed
    /// over them, and every node decodes them alike.
    fn parts(&self) -> Result<(EdwardsPoint, Scalar), CryptoError> {
        let mut r = [0u8; 32];
        let mut s = [0u8; 32];
        r.copy_from_slice(&self.0[..32]);
        s.copy_from_slice(&self.0[32..]);
        let r = CompressedEdwardsY(r).decompress();
        let s = Option::<Scalar>::from(Scalar::from_canonical_bytes(s));
        r.zip(s).ok_or(CryptoError::BadSignature)
    }
}

/// k = SHA-512(R ‖ A ‖ M) as a scalar, over the bytes as signed.
fn challenge(signature: &Signature, signer: &PublicKey, message: &[u8]) -> Scalar {
    let digest = Sha512::new()
        .chain_update(&signature.0[..32])
        .chain_update(signer.0)
        .chain_update(message)
        .finalize();
    let mut wide = [0u8; 64];
    wide.copy_from_slice(&digest);
    Scalar::from_bytes_mod_order_wide(&wide)
}

/// Keeps the points of keys whose signatures held.
fn remember(signers: &[SignerKey]) {
    if signers.iter().all(|s| s.cached) {
        return;
    }
    let mut points = SIGNER_POINTS
        .write()
        .unwrap_or_else(PoisonError::into_inner);
    for signer in signers.iter().filter(|s| !s.cached) {
        if points.len() >= MAX_CACHED_KEYS {
            points.clear();
        }
        points.insert(signer.key.0, signer.point);
    }
}

/// Verifies many (key, message, signature) triples at once, about 2–3x cheaper per
/// signature than one by one. Passes whenever each signature passes [`PublicKey::verify`];
/// otherwise fails but with chance about 2^-128 per batch tried (the weights are fixed by
/// the batch, so a forger can only try batches). Find which one failed by verifying singly.
pub fn verify_batch(
    keys: &[PublicKey],
    messages: &[&[u8]],
    signatures: &[Signature],
) -> Result<(), CryptoError> {
    if keys.len() != messages.len() || keys.len() != signatures.len() {
        return Err(CryptoError::BatchShape {
            sigs: signatures.len(),
            keys: keys.len(),
            msgs: messages.len(),
        });
    }
    let signers = keys
        .iter()
        .map(PublicKey::point)
        .collect::<Result<Vec<_>, _>>()?;
    let parts = signatures
        .iter()
        .map(Signature::parts)
        .collect::<Result<Vec<_>, _>>()?;
    let challenges: Vec<Scalar> = (0..keys.len())
        .map(|i| challenge(&signatures[i], &keys[i], messages[i]))
        .collect();
    let weights = batch_weights(keys, signatures, &challenges);
    // Σ z·(sB − kA − R) over the batch, each signature's equation weighted by its z.
    let b: Scalar = parts.iter().zip(&weights).map(|((_, s), z)| z * s).sum();
    let scalars = std::iter::once(b)
        .chain(weights.iter().map(|z| -z))
        .chain(weights.iter().zip(&challenges).map(|(z, k)| -(z * k)));
    let points = std::iter::once(ED25519_BASEPOINT_POINT)
        .chain(parts.iter().map(|(r, _)| *r))
        .chain(signers.iter().map(|s| s.point));
    let sum = EdwardsPoint::vartime_multiscalar_mul(scalars, points);
    if !sum.mul_by_cofactor().is_identity() {
        return Err(CryptoError::BadSignature);
    }
    remember(&signers);
    Ok(())
}

/// One 128-bit weight per signature, derived from all that the batch checks (each key,
/// signature and challenge, which covers the message): a signer cannot pick signatures
/// whose errors cancel out, and a batch always gets the same verdict.
fn batch_weights(
    keys: &[PublicKey],
    signatures: &[Signature],
    challenges: &[Scalar],
) -> Vec<Scalar> {
    let mut seed = Sha512::new_with_prefix(b"bidchain/ed25519-batch-weights/v1");
    for ((key, signature), k) in keys.iter().zip(signatures).zip(challenges) {
        seed.update(key.0);
        seed.update(signature.0);
        seed.update(k.as_bytes());
    }
    let seed = seed.finalize();
    (0..challenges.len() as u64)
        .map(|i| {
            let block = Sha512::new()
                .chain_update(seed)
                .chain_update(i.to_le_bytes())
                .finalize();
            let mut z = [0u8; 16];
            z.copy_from_slice(&block[..16]);
            Scalar::from(u128::from_le_bytes(z))
        })
        .collect()
}

impl fmt::Display for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PublicKey({})", &hex::encode(self.0)[..16])
    }
}

impl std::str::FromStr for PublicKey {
    type Err = crate::hash::HexError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        crate::hash::parse_hex_array(s).map(PublicKey)
    }
}

impl fmt::Debug for Signature {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Signature({}..)", &hex::encode(self.0)[..16])
    }
}

/// An ed25519 signing key. Its secret never appears in `Debug` output.
#[derive(Clone)]
pub struct Keypair(SigningKey);

impl Keypair {
    pub fn generate() -> Keypair {
        // ed25519-dalek 3 takes rand_core 0.10 generators; a secret is 32 random bytes.
        let mut secret = Zeroizing::new([0u8; 32]);
        rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, secret.as_mut_slice());
        Keypair::from_secret(&secret)
    }

    /// The key of a 32-byte secret. The caller wipes its copy (see [`Zeroizing`]); the
    /// signing key made from it wipes itself when dropped.
    pub fn from_secret(secret: &[u8; 32]) -> Keypair {
        Keypair(SigningKey::from_bytes(secret))
    }

    /// A key derived from a seed: for tests and simulations only, never for real nodes.
    pub fn from_seed_for_tests(seed: u64) -> Keypair {
        let digest = crate::hash::Hash::domain(b"bidchain/test-key/v1", &[&seed.to_le_bytes()]);
        Keypair::from_secret(&digest.0)
    }

    /// A copy of the secret, wiped when dropped.
    pub fn secret_bytes(&self) -> Zeroizing<[u8; 32]> {
        Zeroizing::new(self.0.to_bytes())
    }

    pub fn public(&self) -> PublicKey {
        PublicKey(self.0.verifying_key().to_bytes())
    }

    pub fn sign(&self, message: &[u8]) -> Signature {
        Signature(self.0.sign(message).to_bytes())
    }
}

impl fmt::Debug for Keypair {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Keypair({:?})", self.public())
    }
}

#[cfg(test)]
mod tests {
    use curve25519_dalek::constants::EIGHT_TORSION;

    use super::*;

    #[test]
    fn sign_verify_and_tamper() {
        let key = Keypair::from_seed_for_tests(1);
        let sig = key.sign(b"bid");
        assert_eq!(key.public().verify(b"bid", &sig), Ok(()));
        assert_eq!(
            key.public().verify(b"bie", &sig),
            Err(CryptoError::BadSignature)
        );
        let other = Keypair::from_seed_for_tests(2).public();
        assert_eq!(other.verify(b"bid", &sig), Err(CryptoError::BadSignature));
    }

    #[test]
    fn batch_verification_agrees_with_single() {
        let keys: Vec<_> = (0..8).map(Keypair::from_seed_for_tests).collect();
        let msgs: Vec<Vec<u8>> = (0..8u8).map(|i| vec![i; 10]).collect();
        let publics: Vec<_> = keys.iter().map(Keypair::public).collect();
        let mut sigs: Vec<_> = keys.iter().zip(&msgs).map(|(k, m)| k.sign(m)).collect();
        let refs: Vec<&[u8]> = msgs.iter().map(Vec::as_slice).collect();
        assert_eq!(verify_batch(&publics, &refs, &sigs), Ok(()));
        sigs.swap(0, 1);
        assert_eq!(
            verify_batch(&publics, &refs, &sigs),
            Err(CryptoError::BadSignature)
        );
    }

    #[test]
    fn cached_keys_give_the_verdicts_of_fresh_ones() {
        let keys: Vec<_> = (40..43).map(Keypair::from_seed_for_tests).collect();
        let sigs: Vec<_> = keys.iter().map(|k| k.sign(b"bid")).collect();
        // The first round decompresses each key, the second finds it cached.
        for _ in 0..2 {
            for (i, key) in keys.iter().enumerate() {
                assert_eq!(key.public().verify(b"bid", &sigs[i]), Ok(()));
                let other = &sigs[(i + 1) % sigs.len()];
                assert_eq!(
                    key.public().verify(b"bid", other),
                    Err(CryptoError::BadSignature)
                );
            }
        }
    }

    #[test]
    fn only_keys_whose_signature_held_are_kept() {
        let key = Keypair::from_seed_for_tests(90);
        let sig = key.sign(b"bid");
        let kept = || SIGNER_POINTS.read().unwrap().contains_key(&key.public().0);
        assert_eq!(
            key.public().verify(b"other", &sig),
            Err(CryptoError::BadSignature)
        );
        assert!(!kept());
        assert_eq!(key.public().verify(b"bid", &sig), Ok(()));
        assert!(kept());
    }

    #[test]
    fn invalid_point_is_a_clear_error() {
        // y = 2 does not decompress to a curve point.
        let mut bytes = [0u8; 32];
        bytes[0] = 2;
        let err = PublicKey(bytes)
            .verify(b"x", &Signature([0; 64]))
            .unwrap_err();
        assert!(matches!(err, CryptoError::BadPublicKey(_)), "{err}");
    }

    /// A signature made by hand: R sent as `big_r`, s = r + ka.
    fn signed_with_r(key: &Keypair, message: &[u8], big_r: [u8; 32], r: Scalar) -> Signature {
        let mut bytes = [0u8; 64];
        bytes[..32].copy_from_slice(&big_r);
        let k = challenge(&Signature(bytes), &key.public(), message);
        bytes[32..].copy_from_slice((r + k * key.0.to_scalar()).as_bytes());
        Signature(bytes)
    }

    /// A signature whose R has a small-order part T: valid by the cofactored equation
    /// (sB − kA − R = −T, and [8]T = 0), invalid by the cofactorless one. Only the key's
    /// owner can make it (s needs the secret scalar).
    fn with_small_order_part(key: &Keypair, message: &[u8], nonce: u64) -> Signature {
        let r = Scalar::from(u128::from(nonce) + 1_000);
        let big_r = EdwardsPoint::mul_base(&r) + EIGHT_TORSION[1];
        signed_with_r(key, message, big_r.compress().to_bytes(), r)
    }

    #[test]
    fn a_signature_gets_one_verdict_alone_and_in_every_batch() {
        let keys: Vec<_> = (60..68).map(Keypair::from_seed_for_tests).collect();
        let mut publics: Vec<_> = keys.iter().map(Keypair::public).collect();
        let mut msgs: Vec<Vec<u8>> = (0..8u8).map(|i| vec![i; 10]).collect();
        let mut sigs: Vec<_> = keys.iter().zip(&msgs).map(|(k, m)| k.sign(m)).collect();
        for i in [0, 3] {
            sigs[i] = with_small_order_part(&keys[i], &msgs[i], i as u64);
            assert_eq!(publics[i].verify(&msgs[i], &sigs[i]), Ok(()));
        }
        // Cofactorless batch weights pass such a signature about one time in eight (when
        // 8 divides its weight): these 64 batches have other weights, one verdict.
        for _ in 0..8 {
            for n in 1..=8 {
                let refs: Vec<&[u8]> = msgs[..n].iter().map(Vec::as_slice).collect();
                assert_eq!(verify_batch(&publics[..n], &refs, &sigs[..n]), Ok(()));
            }
            publics.rotate_left(1);
            msgs.rotate_left(1);
            sigs.rotate_left(1);
        }
        // A wrong s is refused both ways.
        let mut bad = sigs[0];
        bad.0[32] ^= 1;
        assert_eq!(
            publics[0].verify(&msgs[0], &bad),
            Err(CryptoError::BadSignature)
        );
        let refs: Vec<&[u8]> = msgs.iter().map(Vec::as_slice).collect();
        sigs[0] = bad;
        assert_eq!(
            verify_batch(&publics, &refs, &sigs),
            Err(CryptoError::BadSignature)
        );
    }

    #[test]
    fn small_order_keys_and_unreduced_scalars_are_refused_both_ways() {
        let weak = PublicKey(EIGHT_TORSION[2].compress().to_bytes());
        // [8](sB − kA − R) with A and R of small order and s = 0 holds for any message.
        let mut forged = [0u8; 64];
        forged[..32].copy_from_slice(EIGHT_TORSION[4].compress().as_bytes());
        let forged = Signature(forged);
        assert!(matches!(
            weak.verify(b"bid", &forged),
            Err(CryptoError::BadPublicKey(_))
        ));
        assert!(matches!(
            verify_batch(&[weak], &[b"bid".as_slice()], &[forged]),
            Err(CryptoError::BadPublicKey(_))
        ));
        // s + ℓ gives the same sB, but is a second encoding of the signature.
        let key = Keypair::from_seed_for_tests(70);
        let mut sig = key.sign(b"bid");
        let order: [u8; 32] = [
            0xed, 0xd3, 0xf5, 0x5c, 0x1a, 0x63, 0x12, 0x58, 0xd6, 0x9c, 0xf7, 0xa2, 0xde, 0xf9,
            0xde, 0x14, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x10,
        ];
        let mut carry = 0u16;
        for (byte, add) in sig.0[32..].iter_mut().zip(order) {
            let total = u16::from(*byte) + u16::from(add) + carry;
            *byte = total.to_le_bytes()[0];
            carry = total >> 8;
        }
        assert_eq!(carry, 0);
        let public = key.public();
        assert_eq!(public.verify(b"bid", &sig), Err(CryptoError::BadSignature));
        assert_eq!(
            verify_batch(&[public], &[b"bid".as_slice()], &[sig]),
            Err(CryptoError::BadSignature)
        );
    }

    /// A batch of none holds (a block without transactions), and a batch whose three lists
    /// differ in length is refused, not cut to the shortest.
    #[test]
    fn an_empty_batch_holds_and_a_ragged_one_is_refused() {
        assert_eq!(verify_batch(&[], &[], &[]), Ok(()));
        let key = Keypair::from_seed_for_tests(80);
        let sig = key.sign(b"bid");
        assert_eq!(
            verify_batch(&[key.public(), key.public()], &[b"bid".as_slice()], &[sig]),
            Err(CryptoError::BatchShape {
                sigs: 1,
                keys: 2,
                msgs: 1
            })
        );
    }

    /// R may be encoded non-canonically (y ≥ p, or x = 0 with the sign bit set), as ZIP 215
    /// allows. Here R is the identity in each of its four encodings (the first canonical,
    /// as a control), s = ka: every one is valid alone and in a batch with ordinary
    /// signatures. A decoder that refused these (a curve25519-dalek upgrade, say) would
    /// split nodes running it from the others.
    #[test]
    fn non_canonical_encodings_of_r_get_one_verdict_alone_and_batched() {
        let key = Keypair::from_seed_for_tests(81);
        let public = key.public();
        let mut p_plus_one = [0xff; 32];
        p_plus_one[0] = 0xee;
        p_plus_one[31] = 0x7f;
        let mut one = [0u8; 32];
        one[0] = 1;
        let signed = |mut r: [u8; 32], negative: bool| {
            r[31] |= u8::from(negative) << 7;
            signed_with_r(&key, b"bid", r, Scalar::ZERO)
        };
        let sigs = [
            signed(one, false),
            signed(one, true),
            signed(p_plus_one, false),
            signed(p_plus_one, true),
        ];
        let ordinary = Keypair::from_seed_for_tests(82);
        for sig in sigs {
            assert_eq!(public.verify(b"bid", &sig), Ok(()));
            let keys = [ordinary.public(), public];
            let batch = [ordinary.sign(b"bid"), sig];
            let messages = [b"bid".as_slice(); 2];
            assert_eq!(verify_batch(&keys, &messages, &batch), Ok(()));
            assert_eq!(public.verify(b"bie", &sig), Err(CryptoError::BadSignature));
        }
    }
}
