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

use std::collections::BTreeMap;
use std::sync::Arc;

use bidchain_cli::trading::{self, contract_names as names};
use bidchain_genesis::contracts::bundled_code;
use bidchain_node::testing::{TEST_GENESIS_MS, TestChain, create_account_tx, genesis_for};
use bidchain_runtime::block::{BlockHash, CommitCertificate, CommitSig, precommit_signing_bytes};
use bidchain_runtime::bounded::BoundedVec;
use bidchain_runtime::contract::{CallContext, ContractEngine, ContractStorage};
use bidchain_runtime::crypto::{Keypair, verify_batch};
use bidchain_runtime::execute::verify_signatures;
use bidchain_runtime::hash::Hash;
use bidchain_runtime::ids::{Height, Nonce, Round};
use bidchain_runtime::merkle;
use bidchain_runtime::state::contract_key;
use bidchain_runtime::time::Timestamp;
use bidchain_runtime::tx::{Role, SignedTransaction};
use bidchain_trading::tender::{self, Tender, TenderCall, TenderParams, TenderStatus};
use bidchain_trading::{AccountKey, Encode, Label, TenderId};
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

/// The node's batch check (`verify_signatures`) by batch size, each signature by its own
/// signer as bidders' are: how much larger batches would save.
fn signature_batch_sizes(c: &mut Criterion) {
    const SIZES: [u64; 8] = [8, 16, 32, 64, 128, 256, 512, 1024];
    let signed: Vec<SignedTransaction> = (0..SIZES[SIZES.len() - 1])
        .map(|i| {
            let signer = Keypair::from_seed_for_tests(20_000 + i);
            let new = Keypair::from_seed_for_tests(30_000 + i);
            create_account_tx(&signer, 0, &new, Role::Bidder)
        })
        .collect();
    let mut group = c.benchmark_group("signature_batch");
    for size in SIZES {
        let batch = &signed[..usize::try_from(size).unwrap_or(usize::MAX)];
        group.throughput(Throughput::Elements(size));
        group.bench_function(format!("verify_{size}"), |b| {
            b.iter(|| verify_signatures(black_box(batch), &[]).unwrap_or_else(|e| panic!("{e}")))
        });
    }
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
                let dir = tempfile::tempdir().unwrap();
                let hub = Keypair::from_seed_for_tests(1);
                let chain = TestChain::open(dir.path(), genesis_for(&[1], &[]), hub).unwrap();
                (dir, chain, txs(1000))
            },
            |(dir, chain, txs)| {
                chain.commit(txs, Timestamp(TEST_GENESIS_MS + 1)).unwrap();
                drop(dir);
            },
            BatchSize::PerIteration,
        )
    });
    group.finish();
}

/// No contract storage at all.
struct NoStorage;

impl ContractStorage for NoStorage {
    fn get(&self, _contract: &str, _key: &[u8]) -> Result<Option<Vec<u8>>, String> {
        Ok(None)
    }

    fn seed_at(&self, _height: u64) -> Result<Option<[u8; 32]>, String> {
        Ok(None)
    }

    fn into_any(self: Box<Self>) -> Box<dyn std::any::Any + Send> {
        self
    }
}

/// Committed contract storage: a fixed map of state keys.
struct MapStorage(Arc<BTreeMap<Vec<u8>, Vec<u8>>>);

impl ContractStorage for MapStorage {
    fn get(&self, contract: &str, key: &[u8]) -> Result<Option<Vec<u8>>, String> {
        Ok(self.0.get(&contract_key(contract, key)).cloned())
    }

    fn seed_at(&self, _height: u64) -> Result<Option<[u8; 32]>, String> {
        Ok(None)
    }

    fn into_any(self: Box<Self>) -> Box<dyn std::any::Any + Send> {
        self
    }
}

fn context(contract: &str, caller: [u8; 32], role: i32) -> CallContext {
    CallContext {
        contract: contract.to_owned(),
        caller,
        caller_role: role,
        block_height: 1,
        block_time_ms: TEST_GENESIS_MS + 1,
        random_seed: [2; 32],
        tx_hash: [3; 32],
    }
}

/// The host's per-call overhead: a store, a pooled instance, `alloc`, an empty `call`.
fn contract_call_empty(c: &mut Criterion) {
    let engine = ContractEngine::new().unwrap();
    let code = wat::parse_str(
        r#"(module (memory (export "memory") 1)
            (func (export "alloc") (param i32) (result i32) (i32.const 0))
            (func (export "call") (param i32 i32)))"#,
    )
    .unwrap();
    let module = engine.compile(&code).unwrap();
    let context = context("empty", [1; 32], 4);
    // NoStorage has no size: boxing it does not allocate.
    c.bench_function("contract_call/empty", |b| {
        b.iter(|| {
            let called = engine.call(&module, context.clone(), Box::new(NoStorage), b"x");
            black_box(called.result.unwrap());
        });
    });
}

fn tender_params(id: &TenderId) -> TenderParams {
    let label = |t: &str| Label::new(t).unwrap();
    TenderParams {
        id: id.clone(),
        document_hash: trading::sha256(b"doc"),
        category: label("construction"),
        region: label("nanjing"),
        tenderer_unit: trading::unit_id("tenderer"),
        deadline_ms: TEST_GENESIS_MS + 3_600_000,
        opening_ms: TEST_GENESIS_MS + 3_600_000,
        decryption_window_ms: 60_000,
        min_bidders: 3,
        expert_count: 5,
        alternates: 2,
        expert_categories: vec![label("construction")],
        remote: false,
    }
}

fn bid_call(key: &Keypair, id: &TenderId, i: u64) -> TenderCall {
    let content = format!("bid {i}").into_bytes();
    let bid = trading::sealed_bid(
        key,
        id,
        &trading::sha256(&content),
        trading::sha256(&content),
        trading::fingerprints(
            &format!("m{i}"),
            &format!("c{i}"),
            &format!("d{i}"),
            &format!("h{i}"),
        ),
    );
    TenderCall::Submit {
        tender: id.clone(),
        bid,
    }
}

/// One bid submission through the `tender` contract alone (the host and the wasm rules,
/// no signature, no state root), into a tender that already holds 100 bids.
fn contract_call_bid_submit(c: &mut Criterion) {
    let engine = ContractEngine::new().unwrap();
    let module = engine
        .compile(bundled_code(names::TENDER).unwrap())
        .unwrap();
    let id = TenderId::new("BENCH-1").unwrap();
    let tender = Tender {
        params: tender_params(&id),
        center: AccountKey([9; 32]),
        status: TenderStatus::Open,
        created_ms: TEST_GENESIS_MS,
        opened_ms: None,
        bidder_count: 100,
        winner: None,
        failure: None,
    };
    let bidder = AccountKey([200; 32]);
    let earlier = (0..100u8).map(|i| {
        let key = tender::keys::bidder(&id, u32::from(i));
        (
            contract_key(names::TENDER, &key),
            AccountKey([i; 32]).encode(),
        )
    });
    let state = Arc::new(BTreeMap::from_iter(earlier.chain([
        (
            contract_key(names::TENDER, &tender::keys::tender(&id)),
            tender.encode(),
        ),
        (
            contract_key(names::TENDER, &tender::keys::bidder_unit(&bidder)),
            trading::unit_id("bench unit").encode(),
        ),
    ])));
    let key = Keypair::from_seed_for_tests(500);
    let input = bid_call(&key, &id, 1).encode();
    let context = context(names::TENDER, bidder.0, bidchain_trading::roles::BIDDER);
    c.bench_function("contract_call/bid_submit", |b| {
        b.iter(|| {
            let storage = Box::new(MapStorage(state.clone()));
            let called = engine.call(&module, context.clone(), storage, &input);
            black_box(called.result.unwrap());
        });
    });
}

/// A block of 1,000 signed bid submissions (4 tenders × 250 bidders) executed in full:
/// signatures, envelopes, the contract calls and the state root; not committed.
fn block_of_bids(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let hub = Keypair::from_seed_for_tests(1);
    let chain = TestChain::open(dir.path(), genesis_for(&[1], &[]), hub.clone()).unwrap();
    let center = Keypair::from_seed_for_tests(2);
    let bidders: Vec<Keypair> = (0..250)
        .map(|i| Keypair::from_seed_for_tests(1_000 + i))
        .collect();
    let ids: Vec<TenderId> = (0..4)
        .map(|i| TenderId::new(&format!("BENCH-{i}")).unwrap())
        .collect();
    let chain_id = bidchain_node::testing::chain_id();
    let mut setup = vec![create_account_tx(&hub, 0, &center, Role::Center)];
    setup.extend(
        bidders
            .iter()
            .enumerate()
            .map(|(i, b)| create_account_tx(&hub, 1 + i as u64, b, Role::Bidder)),
    );
    chain.commit(setup, Timestamp(TEST_GENESIS_MS + 1)).unwrap();
    let units = bidders
        .iter()
        .enumerate()
        .map(|(i, b)| {
            let call = TenderCall::RegisterBidder {
                bidder: trading::account_key(&b.public()),
                unit: trading::unit_id(&format!("unit-{i}")),
            };
            trading::call_tx(&chain_id, &center, Nonce(i as u64), names::TENDER, &call).unwrap()
        })
        .collect();
    chain.commit(units, Timestamp(TEST_GENESIS_MS + 2)).unwrap();
    let creates = ids
        .iter()
        .enumerate()
        .map(|(i, id)| {
            trading::call_tx(
                &chain_id,
                &center,
                Nonce(250 + i as u64),
                names::TENDER,
                &TenderCall::Create(tender_params(id)),
            )
            .unwrap()
        })
        .collect();
    chain
        .commit(creates, Timestamp(TEST_GENESIS_MS + 3))
        .unwrap();
    let mut bids = Vec::new();
    for (t, id) in ids.iter().enumerate() {
        for (i, key) in bidders.iter().enumerate() {
            let call = bid_call(key, id, (t * 1000 + i) as u64);
            bids.push(
                trading::call_tx(&chain_id, key, Nonce(t as u64), names::TENDER, &call).unwrap(),
            );
        }
    }
    // Each bidder bids on the four tenders in nonce order.
    bids.sort_by_key(|tx| tx.tx.nonce);
    let mut group = c.benchmark_group("block");
    group.sample_size(10);
    group.throughput(Throughput::Elements(bids.len() as u64));
    group.bench_function("execute_1000_bid_submissions", |b| {
        b.iter(|| {
            let proposal = chain
                .chain
                .build_proposal(bids.clone(), Timestamp(TEST_GENESIS_MS + 4), hub.public())
                .unwrap();
            assert_eq!(proposal.block.txs.len(), 1000);
            assert!(proposal.executed.receipts.iter().all(|r| r.outcome.is_ok()));
            black_box(proposal);
        });
    });
    group.finish();
}

criterion_group!(
    benches,
    tx_decode_verify,
    signature_batch_sizes,
    merkle_proof,
    certificate,
    block_commit,
    contract_call_empty,
    contract_call_bid_submit,
    block_of_bids
);
criterion_main!(benches);
