//! Property tests of the canonical codec over the ledger's types: every value round-trips,
//! re-encoding is byte-identical (one encoding per value), and no byte string makes a
//! decoder panic or accept trailing or truncated input.

// Test code: a failed unwrap or panic is a failed test, which is the point.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::cast_possible_truncation
)]

use bidchain_runtime::BlockHash;
use bidchain_runtime::block::{Block, Header};
use bidchain_runtime::bounded::{BoundedString, BoundedVec};
use bidchain_runtime::codec::{self, CodecError};
use bidchain_runtime::crypto::{Keypair, PublicKey};
use bidchain_runtime::hash::Hash;
use bidchain_runtime::ids::{AccountId, ChainId, Height, Nonce};
use bidchain_runtime::time::Timestamp;
use bidchain_runtime::tx::{NativeCall, Payload, Role, SignedTransaction, Transaction};
use proptest::prelude::*;

fn arb_role() -> impl Strategy<Value = Role> {
    prop::sample::select(Role::ALL.to_vec())
}

fn arb_call() -> impl Strategy<Value = NativeCall> {
    prop_oneof![
        (any::<[u8; 32]>(), arb_role(), "[a-z0-9-]{0,64}").prop_map(|(key, role, label)| {
            NativeCall::CreateAccount {
                key: PublicKey(key),
                role,
                label: BoundedString::new(label).unwrap(),
            }
        }),
        (any::<[u8; 32]>(), arb_role()).prop_map(|(id, role)| NativeCall::SetRole {
            account: AccountId(Hash(id)),
            role,
        }),
    ]
}

fn arb_tx() -> impl Strategy<Value = SignedTransaction> {
    (any::<u64>(), any::<u64>(), "[a-z0-9._-]{1,64}", arb_call()).prop_map(
        |(seed, nonce, chain, call)| {
            let key = Keypair::from_seed_for_tests(seed);
            Transaction {
                chain_id: ChainId::new(&chain).unwrap(),
                sender: key.public(),
                nonce: Nonce(nonce),
                payload: Payload::Native(call),
            }
            .sign(&key)
        },
    )
}

fn arb_header() -> impl Strategy<Value = Header> {
    (any::<u64>(), any::<u64>(), any::<[[u8; 32]; 8]>()).prop_map(|(h, t, hs)| Header {
        chain_id: ChainId::new("prop").unwrap(),
        height: Height(h),
        time: Timestamp(t),
        prev_block_id: BlockHash(Hash(hs[0])),
        tx_root: Hash(hs[1]),
        receipts_root: Hash(hs[2]),
        state_root: Hash(hs[3]),
        validators_hash: Hash(hs[4]),
        next_validators_hash: Hash(hs[5]),
        proposer: PublicKey(hs[6]),
        last_commit_hash: Hash(hs[7]),
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    #[test]
    fn tx_round_trips_canonically(stx in arb_tx()) {
        let bytes = stx.encode();
        let back = SignedTransaction::decode(&bytes).unwrap();
        prop_assert_eq!(&back, &stx);
        prop_assert_eq!(back.encode(), bytes);
        prop_assert!(back.verify_signature().is_ok());
    }

    #[test]
    fn block_round_trips(header in arb_header(), txs in prop::collection::vec(arb_tx(), 0..8)) {
        let block = Block { header, txs: BoundedVec::new(txs).unwrap(), last_commit: None };
        let bytes = block.encode();
        prop_assert_eq!(Block::decode(&bytes).unwrap(), block);
    }

    #[test]
    fn truncated_or_extended_input_is_refused(stx in arb_tx(), cut in any::<prop::sample::Index>(), extra in 1usize..8) {
        let bytes = stx.encode();
        let cut = cut.index(bytes.len());
        prop_assert!(SignedTransaction::decode(&bytes[..cut]).is_err());
        let mut longer = bytes.clone();
        longer.extend(std::iter::repeat_n(0u8, extra));
        prop_assert_eq!(SignedTransaction::decode(&longer), Err(CodecError::TrailingBytes(extra)));
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        let _ = SignedTransaction::decode(&bytes);
        let _ = Block::decode(&bytes);
        let _ = codec::decode::<Header>(&bytes);
    }

    #[test]
    fn flipping_an_enum_tag_or_bool_is_refused_or_changes_the_value(stx in arb_tx(), pos in any::<prop::sample::Index>(), bit in 0u8..8) {
        let mut bytes = stx.encode();
        let i = pos.index(bytes.len());
        bytes[i] ^= 1 << bit;
        if let Ok(decoded) = SignedTransaction::decode(&bytes) {
            // Whatever decodes must re-encode to exactly the bytes it came from.
            prop_assert_eq!(decoded.encode(), bytes);
        }
    }
}
