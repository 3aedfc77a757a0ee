//! Proof bundles: their size and the time to check one from genesis, for a chain whose
//! state holds one entry per transaction of a million-transaction chain, and for a chain
//! with ten validator-set changes between genesis and the record. Also the state tree's
//! cost: building it, and one block's update of it.
//!
//! PROOF_ENTRIES (default 1,000,000) sets the state size; PROOF_BLOCK_TXS (1,000) the block
//! a receipt is proven in. Writes `bench-results/proofs.json`.
//!
//! cargo bench --workspace --bench proofs

// Benchmark code: a failed unwrap is a broken benchmark, which should stop it.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::print_stdout,
    clippy::cast_possible_truncation
)]

use std::collections::BTreeMap;
use std::time::Instant;

use bidchain_node::testing::{certify, chain_id};
use bidchain_runtime::block::{Header, last_commit_hash};
use bidchain_runtime::bounded::{BoundedBytes, BoundedString, BoundedVec};
use bidchain_runtime::crypto::Keypair;
use bidchain_runtime::hash::Hash;
use bidchain_runtime::ids::Height;
use bidchain_runtime::merkle;
use bidchain_runtime::proof::{Bundle, Claim, SetChange, SignedHeader, StateEntry, Trust};
use bidchain_runtime::receipt::{Event, Receipt, TxOutcome};
use bidchain_runtime::smt::{self, Node, NodePos};
use bidchain_runtime::time::Timestamp;
use bidchain_runtime::tx::TxHash;
use bidchain_runtime::validator::{Validator, ValidatorSet};

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Validator set number `era`: 4 + era members (seeds distinct per era and member).
fn validator_set(era: u64) -> (ValidatorSet, Vec<Keypair>) {
    let keys: Vec<Keypair> = (0..4 + era)
        .map(|i| Keypair::from_seed_for_tests(1000 * (era + 1) + i))
        .collect();
    let validators = keys
        .iter()
        .enumerate()
        .map(|(i, k)| Validator {
            name: BoundedString::new(format!("v{era}-{i}")).unwrap(),
            key: k.public(),
            power: 1,
        })
        .collect();
    (ValidatorSet::new(validators).unwrap(), keys)
}

/// A header at `height` signed by every member of `set`.
fn signed(
    height: u64,
    set: &(ValidatorSet, Vec<Keypair>),
    next: &ValidatorSet,
    roots: [Hash; 3],
) -> SignedHeader {
    let header = Header {
        chain_id: chain_id(),
        height: Height(height),
        time: Timestamp(1_767_225_600_000 + height * 1000),
        prev_block_id: Default::default(),
        tx_root: roots[0],
        receipts_root: roots[1],
        state_root: roots[2],
        validators_hash: set.0.hash(),
        next_validators_hash: next.hash(),
        proposer: set.1[0].public(),
        last_commit_hash: last_commit_hash(&None),
    };
    let certificate = certify(&header, &set.0, &set.1);
    SignedHeader {
        header,
        certificate,
    }
}

/// `changes` validator-set changes at heights 10, 20, ...; returns them and the set after.
fn set_changes(changes: u64) -> (Vec<SetChange>, (ValidatorSet, Vec<Keypair>)) {
    let mut set = validator_set(0);
    let mut out = Vec::new();
    for era in 1..=changes {
        let next = validator_set(era);
        out.push(SetChange {
            signed: signed(era * 10, &set, &next.0, [Hash::ZERO; 3]),
            next_set: next.0.clone(),
        });
        set = next;
    }
    (out, set)
}

/// The state tree over `entries` archive-record-sized entries, and the time to build it.
fn state_tree(entries: usize) -> (BTreeMap<NodePos, Node>, Hash, f64) {
    let pairs: Vec<(Vec<u8>, Vec<u8>)> = (0..entries as u64)
        .map(|i| (i.to_le_bytes().to_vec(), [i.to_be_bytes(); 20].concat()))
        .collect();
    let started = Instant::now();
    let update = smt::update(
        &BTreeMap::new(),
        pairs.iter().map(|(k, v)| (&k[..], Some(&v[..]))),
    )
    .unwrap();
    let seconds = started.elapsed().as_secs_f64();
    let store: BTreeMap<NodePos, Node> = update
        .writes
        .into_iter()
        .filter_map(|(p, n)| Some((p, n?)))
        .collect();
    (store, update.root, seconds)
}

/// Median of `runs` timings of `f`, in microseconds.
fn median_us(runs: usize, mut f: impl FnMut()) -> f64 {
    let mut times: Vec<f64> = (0..runs)
        .map(|_| {
            let started = Instant::now();
            f();
            started.elapsed().as_secs_f64() * 1e6
        })
        .collect();
    times.sort_by(f64::total_cmp);
    times[runs / 2]
}

fn measure(name: &str, bundle: &Bundle, trust: &Trust) -> serde_json::Value {
    let bytes = bundle.encode();
    bundle.verify(trust).unwrap();
    let verify_us = median_us(101, || {
        Bundle::open(&bytes, trust).unwrap();
    });
    println!(
        "{name}: {} bytes, verified in {verify_us:.0} µs (decode + check)",
        bytes.len()
    );
    serde_json::json!({ "bundle_bytes": bytes.len(), "verify_us_p50": verify_us })
}

fn receipt_claim(block_txs: usize, height: u64) -> (Claim, Hash, Hash) {
    let hashes: Vec<TxHash> = (0..block_txs as u64)
        .map(|i| TxHash(Hash::digest(&i.to_le_bytes())))
        .collect();
    let receipts: Vec<Receipt> = hashes
        .iter()
        .enumerate()
        .map(|(i, h)| Receipt {
            tx_hash: *h,
            height: Height(height),
            index: i as u32,
            outcome: TxOutcome::Ok,
            events: BoundedVec::new(vec![Event::new(
                "bid_submitted",
                &[
                    ("tender", "JS-2026-0001".into()),
                    ("block_time", "2026-05-01T10:00:00Z".into()),
                ],
            )])
            .unwrap(),
            fuel_used: 120_000,
        })
        .collect();
    let txs_leaves: Vec<Hash> = hashes
        .iter()
        .map(bidchain_runtime::block::tx_leaf)
        .collect();
    let receipt_leaves: Vec<Hash> = receipts.iter().map(Receipt::leaf_hash).collect();
    let index = block_txs / 2;
    let claim = Claim::Receipt {
        receipt: receipts[index].clone(),
        tx_proof: merkle::prove(&txs_leaves, index).unwrap(),
        receipt_proof: merkle::prove(&receipt_leaves, index).unwrap(),
    };
    (
        claim,
        merkle::root(&txs_leaves),
        merkle::root(&receipt_leaves),
    )
}

fn main() {
    let entries = env_usize("PROOF_ENTRIES", 1_000_000);
    let block_txs = env_usize("PROOF_BLOCK_TXS", 1_000);
    let (store, root, build_s) = state_tree(entries);
    println!(
        "state tree of {entries} entries built in {build_s:.2} s ({} nodes)",
        store.len()
    );

    // One block's worth of changes to the big tree (a bid writes about three entries).
    let changes: Vec<(Vec<u8>, Vec<u8>)> = (0..3 * block_txs as u64)
        .map(|i| ((entries as u64 + i).to_le_bytes().to_vec(), vec![7; 160]))
        .collect();
    let update_ms = median_us(5, || {
        smt::update(&store, changes.iter().map(|(k, v)| (&k[..], Some(&v[..])))).unwrap();
    }) / 1000.0;
    println!(
        "one block's update ({} entries) of that tree: {update_ms:.1} ms",
        changes.len()
    );

    let key = 42u64.to_le_bytes().to_vec();
    let value = [42u64.to_be_bytes(); 20].concat();
    let entry = StateEntry {
        key: BoundedBytes::new(key.clone()).unwrap(),
        value: Some(BoundedBytes::new(value).unwrap()),
        proof: smt::prove(&store, &key).unwrap(),
    };
    let genesis_set = validator_set(0);
    let trust = Trust {
        chain_id: chain_id(),
        genesis_hash: Hash::digest(b"genesis"),
        validators: genesis_set.0.clone(),
    };
    let bundle = |changes: Vec<SetChange>, anchor: SignedHeader, claim: Claim| Bundle {
        chain_id: chain_id(),
        genesis_hash: trust.genesis_hash,
        set_changes: BoundedVec::new(changes).unwrap(),
        anchor,
        claim,
    };
    let state_claim = || Claim::State {
        entries: BoundedVec::new(vec![entry.clone()]).unwrap(),
    };
    let (receipt, tx_root, receipts_root) = receipt_claim(block_txs, 1000);

    let state_plain = bundle(
        vec![],
        signed(
            1000,
            &genesis_set,
            &genesis_set.0,
            [Hash::ZERO, Hash::ZERO, root],
        ),
        state_claim(),
    );
    let receipt_plain = bundle(
        vec![],
        signed(
            1000,
            &genesis_set,
            &genesis_set.0,
            [tx_root, receipts_root, Hash::ZERO],
        ),
        receipt.clone(),
    );
    let (changes10, last_set) = set_changes(10);
    let state_changed = bundle(
        changes10.clone(),
        signed(1000, &last_set, &last_set.0, [Hash::ZERO, Hash::ZERO, root]),
        state_claim(),
    );
    let receipt_changed = bundle(
        changes10,
        signed(
            1000,
            &last_set,
            &last_set.0,
            [tx_root, receipts_root, Hash::ZERO],
        ),
        receipt,
    );

    let result = serde_json::json!({
        "state_entries": entries,
        "block_txs": block_txs,
        "state_proof_depth": entry.proof.siblings.len(),
        "tree_build_s": build_s,
        "tree_nodes": store.len(),
        "block_update_entries": changes.len(),
        "block_update_ms_p50": update_ms,
        "archive_record_4_validators": measure("archive record, 4 validators, no set change", &state_plain, &trust),
        "receipt_4_validators": measure("receipt, 4 validators, no set change", &receipt_plain, &trust),
        "archive_record_10_set_changes": measure("archive record after 10 set changes (4 to 14 validators)", &state_changed, &trust),
        "receipt_10_set_changes": measure("receipt after 10 set changes", &receipt_changed, &trust),
    });
    match bidchain_benches::write_result("proofs", result) {
        Ok(path) => println!("wrote {path}"),
        Err(err) => println!("could not write the result: {err}"),
    }
}
