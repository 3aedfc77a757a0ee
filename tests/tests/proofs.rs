//! Proof bundles checked from genesis alone: an archive record proven after a
//! validator-set change, each kind of tampering refused with its own reason, a receipt
//! bundle, a bundle that still verifies once the node's database is closed, and bundles
//! taken while blocks are committed.
//! Bundles come from the node's own builder (`bidchain_node::proofs`) over RocksDB, and
//! are checked by the CLI's code (`bidchain_cli::proof_cli`).

// Test code: a failed unwrap or panic is a failed test, which is the point.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, Ordering};

use bidchain_cli::proof_cli::{FileCheck, FileTarget, trust_of};
use bidchain_cli::trading::{self, contract_names as names};
use bidchain_node::proofs;
use bidchain_node::testing::{
    TEST_GENESIS_MS, TestChain, chain_id, create_account_tx, genesis_for,
};
use bidchain_runtime::BoundedString;
use bidchain_runtime::block::CertificateError;
use bidchain_runtime::bounded::{BoundedBytes, BoundedVec};
use bidchain_runtime::codec;
use bidchain_runtime::crypto::Keypair;
use bidchain_runtime::ids::AccountId;
use bidchain_runtime::ids::Nonce;
use bidchain_runtime::proof::{Bundle, BundleError, Claim, MAX_BUNDLE_ENTRIES, Trust};
use bidchain_runtime::smt::SmtError;
use bidchain_runtime::state::{Account, StateKey, contract_key};
use bidchain_runtime::time::Timestamp;
use bidchain_runtime::tx::{NativeCall, Payload, Role, SignedTransaction, Transaction};
use bidchain_runtime::validator::{Validator, ValidatorSet};
use bidchain_trading::TenderId;
use bidchain_trading::archive::{self, ArchiveCall, ArchiveKind};
use bidchain_trading::tender::{TenderCall, TenderParams};

const DOCUMENT: &[u8] = b"tender document of JS-2026-0042, final version";

fn tx(key: &Keypair, nonce: u64, payload: Payload) -> SignedTransaction {
    Transaction {
        chain_id: chain_id(),
        sender: key.public(),
        nonce: Nonce(nonce),
        payload,
    }
    .sign(key)
}

fn call<C: bidchain_trading::Encode>(
    key: &Keypair,
    nonce: u64,
    contract: &str,
    c: &C,
) -> SignedTransaction {
    trading::call_tx(&chain_id(), key, Nonce(nonce), contract, c).unwrap()
}

fn params(id: &TenderId) -> TenderParams {
    let label = |t: &str| bidchain_trading::Label::new(t).unwrap();
    TenderParams {
        id: id.clone(),
        document_hash: trading::sha256(DOCUMENT),
        category: label("construction"),
        region: label("nanjing"),
        tenderer_unit: trading::unit_id("tenderer-unit"),
        deadline_ms: TEST_GENESIS_MS + 100_000,
        opening_ms: TEST_GENESIS_MS + 110_000,
        decryption_window_ms: 5_000,
        min_bidders: 3,
        expert_count: 5,
        alternates: 2,
        expert_categories: vec![label("construction")],
        remote: true,
    }
}

/// A chain where the center records the tender document, then the hub adds a second
/// validator; returns the chain, the trust of its genesis and the recording tx.
fn recorded_then_set_changed(dir: &std::path::Path) -> (TestChain, Trust, SignedTransaction) {
    let hub = Keypair::from_seed_for_tests(1);
    let center = Keypair::from_seed_for_tests(10);
    let second = Keypair::from_seed_for_tests(2);
    let genesis = genesis_for(&[1], &[]);
    let trust = trust_of(&genesis).unwrap();
    let mut chain = TestChain::open(dir, genesis, hub.clone()).unwrap();
    let at = |ms| Timestamp(TEST_GENESIS_MS + ms);
    let create = NativeCall::CreateAccount {
        key: center.public(),
        role: Role::Center,
        label: BoundedString::new("center").unwrap(),
    };
    chain
        .commit(vec![tx(&hub, 0, Payload::Native(create))], at(100))
        .unwrap();
    let id = TenderId::new("JS-2026-0042").unwrap();
    let record = call(
        &center,
        1,
        names::ARCHIVE,
        &ArchiveCall::Record {
            tender: id.clone(),
            kind: ArchiveKind::TenderDocument,
            sha256: trading::sha256(DOCUMENT),
            size_bytes: DOCUMENT.len() as u64,
        },
    );
    let txs = vec![
        call(&center, 0, names::TENDER, &TenderCall::Create(params(&id))),
        record.clone(),
    ];
    let receipts = chain.commit(txs, at(200)).unwrap();
    assert!(receipts.iter().all(|r| r.outcome.is_ok()), "{receipts:?}");
    let add = NativeCall::SetValidator {
        key: second.public(),
        name: BoundedString::new("v2").unwrap(),
        power: 1,
    };
    chain.add_validator_key(second);
    let receipts = chain
        .commit(vec![tx(&hub, 1, Payload::Native(add))], at(300))
        .unwrap();
    assert!(receipts[0].outcome.is_ok(), "{receipts:?}");
    chain.commit(vec![], at(400)).unwrap();
    (chain, trust, record)
}

fn file_bundle(chain: &TestChain, file: &[u8]) -> (FileTarget, Vec<u8>) {
    let target = FileTarget::of_bytes(file, "JS-2026-0042", "tender-document").unwrap();
    let key = archive::keys::record(&target.tender, target.kind, &target.sha256);
    let prefix = archive::keys::records_of(&target.tender, target.kind);
    let bundle = proofs::state_bundle(
        &chain.chain,
        &[contract_key(names::ARCHIVE, &key)],
        Some(&contract_key(names::ARCHIVE, &prefix)),
    )
    .unwrap();
    (target, bundle.encode())
}

/// Decodes, changes and re-encodes a bundle.
fn tampered(bytes: &[u8], change: impl FnOnce(&mut Bundle)) -> Vec<u8> {
    let mut bundle = Bundle::decode(bytes).unwrap();
    change(&mut bundle);
    bundle.encode()
}

fn refused_with(target: &FileTarget, bytes: &[u8], trust: &Trust) -> BundleError {
    match target.check(bytes, trust) {
        FileCheck::BadBundle(err) => err,
        other => panic!("a tampered bundle was not refused: {other:?}"),
    }
}

fn with_first_entry(
    bundle: &mut Bundle,
    change: impl FnOnce(&mut bidchain_runtime::proof::StateEntry),
) {
    let Claim::State { entries } = &mut bundle.claim else {
        panic!("not a state bundle")
    };
    let mut all = entries.to_vec();
    change(&mut all[0]);
    *entries = BoundedVec::new(all).unwrap();
}

#[test]
fn archive_record_verifies_across_a_set_change_and_every_tampering_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (chain, trust, record_tx) = recorded_then_set_changed(dir.path());
    let (target, bytes) = file_bundle(&chain, DOCUMENT);

    match target.check(&bytes, &trust) {
        FileCheck::Verified { record, anchor } => {
            assert_eq!(record.height, 2);
            assert_eq!(
                record.tx.0,
                record_tx.hash().0.0,
                "the record names its transaction"
            );
            assert_eq!(anchor.height.0, 4);
            assert_eq!(anchor.set_changes, 1, "the change at height 3 is followed");
            let names: Vec<&str> = anchor.signers.iter().map(|s| s.name.as_str()).collect();
            assert_eq!(
                names,
                ["v1", "v2"],
                "the anchor is signed by the changed set"
            );
        }
        other => panic!("the recorded file did not verify: {other:?}"),
    }

    // One byte of the file changed: proven absent, and the recorded hash is named.
    let mut changed = DOCUMENT.to_vec();
    changed[0] ^= 1;
    let (changed_target, changed_bytes) = file_bundle(&chain, &changed);
    match changed_target.check(&changed_bytes, &trust) {
        FileCheck::NotRecorded { others, .. } => {
            assert_eq!(others.len(), 1);
            assert_eq!(others[0].sha256, trading::sha256(DOCUMENT));
        }
        other => panic!("a changed file was not refused as not recorded: {other:?}"),
    }
    // The record's bytes.
    let bad = tampered(&bytes, |b| {
        with_first_entry(b, |e| {
            let mut value = e.value.as_ref().unwrap().to_vec();
            *value.last_mut().unwrap() ^= 1;
            e.value = Some(BoundedBytes::new(value).unwrap());
        })
    });
    let err = refused_with(&target, &bad, &trust);
    assert!(
        matches!(
            err,
            BundleError::BadStateProof {
                source: SmtError::OtherValue,
                ..
            }
        ),
        "{err}"
    );

    // A Merkle sibling.
    let bad = tampered(&bytes, |b| {
        with_first_entry(b, |e| {
            let mut siblings = e.proof.siblings.to_vec();
            siblings[0].0[7] ^= 1;
            e.proof.siblings = BoundedVec::new(siblings).unwrap();
        })
    });
    let err = refused_with(&target, &bad, &trust);
    assert!(
        matches!(
            err,
            BundleError::BadStateProof {
                source: SmtError::RootMismatch { .. },
                ..
            }
        ),
        "{err}"
    );

    // The header (its state root, so the tampered proof would match it).
    let bad = tampered(&bytes, |b| b.anchor.header.state_root.0[0] ^= 1);
    let err = refused_with(&target, &bad, &trust);
    assert!(
        matches!(
            err,
            BundleError::BadCertificate {
                source: CertificateError::WrongBlock { .. },
                ..
            }
        ),
        "{err}"
    );

    // A signature.
    let bad = tampered(&bytes, |b| {
        let mut sigs = b.anchor.certificate.signatures.to_vec();
        sigs[1].signature.0[0] ^= 1;
        b.anchor.certificate.signatures = BoundedVec::new(sigs).unwrap();
    });
    let err = refused_with(&target, &bad, &trust);
    assert!(
        matches!(
            err,
            BundleError::BadCertificate {
                source: CertificateError::BadSignature(_),
                ..
            }
        ),
        "{err}"
    );

    // A validator set not reached from genesis: the change dropped...
    let bad = tampered(&bytes, |b| b.set_changes = BoundedVec::empty());
    let err = refused_with(&target, &bad, &trust);
    assert!(
        matches!(err, BundleError::UnknownValidatorSet { .. }),
        "{err}"
    );
    // ... or another set swapped in for the one the change installed.
    let stranger = ValidatorSet::new(vec![Validator {
        name: BoundedString::new("stranger").unwrap(),
        key: Keypair::from_seed_for_tests(99).public(),
        power: 1,
    }])
    .unwrap();
    let bad = tampered(&bytes, |b| {
        let mut changes = b.set_changes.to_vec();
        changes[0].next_set = stranger;
        b.set_changes = BoundedVec::new(changes).unwrap();
    });
    let err = refused_with(&target, &bad, &trust);
    assert!(
        matches!(err, BundleError::ChangeSetMismatch { .. }),
        "{err}"
    );

    // Another chain's genesis.
    let other = trust_of(&genesis_for(&[7], &[])).unwrap();
    assert!(matches!(
        refused_with(&target, &bytes, &other),
        BundleError::WrongChain { .. }
    ));

    // Every node gone: the bytes alone still verify.
    drop(chain);
    drop(dir);
    assert!(matches!(
        target.check(&bytes, &trust),
        FileCheck::Verified { .. }
    ));
}

#[test]
fn receipt_bundle_proves_the_transaction_and_its_result() {
    let dir = tempfile::tempdir().unwrap();
    let (chain, trust, record_tx) = recorded_then_set_changed(dir.path());
    let bundle = proofs::receipt_bundle(&chain.chain, record_tx.hash()).unwrap();
    let bytes = bundle.encode();
    let (_, verified) = Bundle::open(&bytes, &trust).unwrap();
    assert_eq!(verified.height.0, 2);
    assert_eq!(verified.set_changes, 0, "the record precedes the change");
    let Claim::Receipt { receipt, .. } = &bundle.claim else {
        panic!("not a receipt bundle")
    };
    assert_eq!(receipt.tx_hash, record_tx.hash());
    assert!(receipt.outcome.is_ok());

    // The receipt's bytes changed, as `change` does.
    let refusal = |change: fn(&mut bidchain_runtime::receipt::Receipt)| {
        let bad = tampered(&bytes, |b| {
            if let Claim::Receipt { receipt, .. } = &mut b.claim {
                change(receipt);
            }
        });
        Bundle::open(&bad, &trust).unwrap_err()
    };
    let err = refusal(|r| r.index += 1);
    assert!(matches!(err, BundleError::WrongIndex { .. }), "{err}");
    let err = refusal(|r| r.fuel_used += 1);
    assert!(
        matches!(
            err,
            BundleError::BadMerkleProof {
                what: "receipt",
                ..
            }
        ),
        "{err}"
    );
    let never_sent = tx(
        &Keypair::from_seed_for_tests(5),
        0,
        Payload::Native(NativeCall::CreateAccount {
            key: Keypair::from_seed_for_tests(6).public(),
            role: Role::Bidder,
            label: BoundedString::new("x").unwrap(),
        }),
    );
    assert!(matches!(
        proofs::receipt_bundle(&chain.chain, never_sent.hash()),
        Err(proofs::ProofError::TxNotCommitted(_))
    ));
}

/// State bundles taken while blocks are committed back to back each verify, and each
/// proves the state of the block it names, never of a later one: a commit that overtakes
/// a bundle's snapshot makes it start over (`StateMoved`), up to its bound of attempts.
#[test]
fn state_bundles_taken_while_blocks_commit_prove_their_own_block() {
    const BLOCKS: u64 = 60;
    let dir = tempfile::tempdir().unwrap();
    let hub = Keypair::from_seed_for_tests(1);
    let genesis = genesis_for(&[1], &[]);
    let trust = trust_of(&genesis).unwrap();
    let chain = TestChain::open(dir.path(), genesis, hub.clone()).unwrap();
    // One account created per block: after block h the hub's nonce is h.
    let commit = |height: u64| {
        let new = Keypair::from_seed_for_tests(1_000 + height);
        let create = create_account_tx(&hub, height - 1, &new, Role::Bidder);
        let time = Timestamp(TEST_GENESIS_MS + height * 100);
        let receipts = chain.commit(vec![create], time).unwrap();
        assert!(receipts[0].outcome.is_ok(), "{receipts:?}");
    };
    commit(1);
    let hub_key = StateKey::Account(AccountId::of(&hub.public())).to_bytes();
    let committing = AtomicBool::new(true);
    let mut anchors = BTreeSet::new();
    std::thread::scope(|scope| {
        scope.spawn(|| {
            (2..=BLOCKS).for_each(commit);
            committing.store(false, Ordering::Release);
        });
        while committing.load(Ordering::Acquire) {
            // Listing every account widens the window between snapshot and proofs.
            let bundle =
                proofs::state_bundle(&chain.chain, std::slice::from_ref(&hub_key), Some(b"a"))
                    .unwrap_or_else(|e| panic!("{e}"));
            let verified = bundle.verify(&trust).unwrap_or_else(|e| panic!("{e}"));
            let Claim::State { entries } = &bundle.claim else {
                panic!("not a state bundle")
            };
            let value = entries[0].value.as_ref().expect("the hub has an account");
            let account: Account = codec::decode(&value[..]).unwrap();
            assert_eq!(account.nonce, Nonce(verified.height.0));
            let accounts = usize::try_from(verified.height.0 + 1).unwrap();
            assert_eq!(entries.len(), accounts.min(MAX_BUNDLE_ENTRIES));
            anchors.insert(verified.height);
        }
    });
    assert!(anchors.len() > 1, "bundles at {anchors:?} only");
}
