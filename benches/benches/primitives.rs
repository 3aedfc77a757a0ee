//! Micro-benchmarks of the ledger primitives. Criterion writes each result as JSON under
//! `target/criterion/<group>/<bench>/new/estimates.json`.
//!
//! cargo bench -p bidchain-benches --bench primitives

// Test code: a failed unwrap or panic is a failed test, which is the point.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::cast_possible_truncation
)]

use std::hint::black_box;

use bidchain_node::chain::Chain;
use bidchain_node::storage::Storage;
use bidchain_node::testing::{create_account_tx, genesis_for};
use bidchain_runtime::block::{BlockHash, CommitCertificate, CommitSig, precommit_signing_bytes};
use bidchain_runtime::bounded::BoundedVec;
use bidchain_runtime::contract::{CallContext, ContractEngine, ContractStorage};
use bidchain_runtime::crypto::{Keypair, verify_batch};
use bidchain_runtime::hash::Hash;
use bidchain_runtime::ids::{Height, Round};
use bidchain_runtime::merkle;
use bidchain_runtime::time::Timestamp;
use bidchain_runtime::tx::{Role, SignedTransaction};
use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};

fn txs(n: u64) -> Vec<SignedTransaction> {
    let hub = Keypair::from_seed_for_tests(1);
    (0..n)
        .map(|i| {
            create_account_tx(
                &hub,
                i,
                &Keypair::from_seed_for_tests(10_000 + i),
                Role::Bidder,
            )
        })
        .collect()
}

fn tx_decode_verify(c: &mut Criterion) {
    let encoded: Vec<Vec<u8>> = txs(1024).iter().map(SignedTransaction::encode).collect();
    let mut group = c.benchmark_group("tx");
    group.throughput(Throughput::Elements(1));
    group.bench_function("decode_verify_single", |b| {
        let bytes = &encoded[0];
        b.iter(|| {
            let tx = SignedTransaction::decode(black_box(bytes)).unwrap_or_else(|e| panic!("{e}"));
            tx.verify_signature().unwrap_or_else(|e| panic!("{e}"));
        })
    });
    group.throughput(Throughput::Elements(1024));
    group.bench_function("decode_verify_batch_1024", |b| {
        b.iter(|| {
            let decoded: Vec<_> = encoded
                .iter()
                .filter_map(|bytes| SignedTransaction::decode(bytes).ok())
                .collect();
            let keys: Vec<_> = decoded.iter().map(|t| t.tx.sender).collect();
            let msgs: Vec<Vec<u8>> = decoded.iter().map(|t| t.tx.signing_bytes()).collect();
            let refs: Vec<&[u8]> = msgs.iter().map(Vec::as_slice).collect();
            let sigs: Vec<_> = decoded.iter().map(|t| t.signature).collect();
            verify_batch(&keys, &refs, &sigs).unwrap_or_else(|e| panic!("{e}"));
        })
    });
    group.finish();
}

fn merkle_proof(c: &mut Criterion) {
    let leaves: Vec<Hash> = (0..65_536u64)
        .map(|i| merkle::leaf_hash(&i.to_le_bytes()))
        .collect();
    let root = merkle::root(&leaves);
    let proof = merkle::prove(&leaves, 12_345).unwrap_or_else(|e| panic!("{e}"));
    c.bench_function("merkle/verify_proof_65536_leaves", |b| {
        b.iter(|| {
            proof
                .verify(black_box(leaves[12_345]), root)
                .unwrap_or_else(|e| panic!("{e}"))
        })
    });
}

fn certificate(c: &mut Criterion) {
    for n in [4u64, 16] {
        let seeds: Vec<u64> = (1..=n).collect();
        let genesis = genesis_for(&seeds, &[]);
        let set = genesis.validator_set().unwrap_or_else(|e| panic!("{e}"));
        let id = BlockHash(Hash::digest(b"block"));
        let msg = precommit_signing_bytes(&genesis.chain_id, Height(1), Round(0), &id);
        let quorum = (2 * n / 3 + 1) as usize;
        let sigs = (0..quorum)
            .map(|i| CommitSig {
                validator_index: i as u16,
                signature: Keypair::from_seed_for_tests(seeds[i]).sign(&msg),
            })
            .collect();
        let cert = CommitCertificate {
            height: Height(1),
            round: Round(0),
            block_id: id,
            signatures: BoundedVec::new(sigs).unwrap_or_else(|e| panic!("{e}")),
        };
        c.bench_function(&format!("certificate/verify_n{n}"), |b| {
            b.iter(|| {
                cert.verify(&genesis.chain_id, Height(1), &id, &set)
                    .unwrap_or_else(|e| panic!("{e}"))
            })
        });
    }
}

/// Build (execute + roots) and commit one 1,000-transaction block to RocksDB, WAL synced.
fn block_commit(c: &mut Criterion) {
    let mut group = c.benchmark_group("block");
    group.sample_size(10);
    group.throughput(Throughput::Elements(1000));
    group.bench_function("build_and_commit_1000_txs", |b| {
        b.iter_batched(
            || {
                let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
                let genesis = genesis_for(&[1], &[]);
                let storage = Storage::open(dir.path(), &genesis).unwrap_or_else(|e| panic!("{e}"));
                (dir, Chain::new(storage, genesis), txs(1000))
            },
            |(dir, chain, txs)| {
                let time = Timestamp(bidchain_node::testing::TEST_GENESIS_MS + 1);
                let key = Keypair::from_seed_for_tests(1);
                let proposal = chain
                    .build_proposal(txs, time, key.public())
                    .unwrap_or_else(|e| panic!("{e}"));
                let header = &proposal.block.header;
                let msg = precommit_signing_bytes(
                    &header.chain_id,
                    header.height,
                    Round(0),
                    &header.id(),
                );
                let cert = CommitCertificate {
                    height: header.height,
                    round: Round(0),
                    block_id: header.id(),
                    signatures: BoundedVec::new(vec![CommitSig {
                        validator_index: 0,
                        signature: key.sign(&msg),
                    }])
                    .unwrap_or_else(|e| panic!("{e}")),
                };
                chain
                    .commit(&proposal, &cert)
                    .unwrap_or_else(|e| panic!("{e}"));
                drop(dir);
            },
            BatchSize::PerIteration,
        )
    });
    group.finish();
}

/// The host's per-call overhead: a store, a pooled instance, `alloc`, an empty `call`.
fn contract_call_empty(c: &mut Criterion) {
    struct NoStorage;
    impl ContractStorage for NoStorage {
        fn get(&self, _key: &[u8]) -> Result<Option<Vec<u8>>, String> {
            Ok(None)
        }
    }
    let engine = ContractEngine::new().unwrap();
    let module = engine
        .compile(
            br#"(module (memory (export "memory") 1)
                (func (export "alloc") (param i32) (result i32) (i32.const 0))
                (func (export "call") (param i32 i32)))"#,
        )
        .unwrap();
    let context = CallContext {
        caller: [1; 32],
        caller_role: 4,
        block_height: 1,
        block_time_ms: 1,
        random_seed: [2; 32],
    };
    // NoStorage has no size: boxing it does not allocate.
    c.bench_function("contract_call/empty", |b| {
        b.iter(|| {
            let (_, outcome) = engine.call(&module, context.clone(), Box::new(NoStorage), b"x");
            black_box(outcome.unwrap());
        });
    });
}

criterion_group!(
    benches,
    tx_decode_verify,
    merkle_proof,
    certificate,
    block_commit,
    contract_call_empty
);
criterion_main!(benches);
