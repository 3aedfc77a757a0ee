//! The trading rules end to end, through the real wasm contracts, execution and RocksDB of
//! a node (one validator, blocks committed at chosen times; no network, so block times are
//! exact): a tender with six bids — two sharing a machine code, one after the deadline,
//! one revealing another file, one never revealing — an expert draw recomputed here
//! independently, the award and every archive kind; and a tender with two bids failing.

// Test code: a failed unwrap or panic is a failed test, which is the point.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use bidchain_cli::proof_cli::{DrawCheck, check_draw, trust_of};
use bidchain_cli::trading::{self, contract_names as names};
use bidchain_node::proofs;
use bidchain_node::testing::{TEST_GENESIS_MS, TestChain, chain_id, genesis_for};
use bidchain_runtime::BoundedString;
use bidchain_runtime::block::Block;
use bidchain_runtime::contract::{CallContext, ContractStorage};
use bidchain_runtime::crypto::Keypair;
use bidchain_runtime::execute::{BlockEnv, block_seed};
use bidchain_runtime::ids::Nonce;
use bidchain_runtime::receipt::{Receipt, TxOutcome};
use bidchain_runtime::state::{StateView, contract_key};
use bidchain_runtime::time::Timestamp;
use bidchain_runtime::tx::{NativeCall, Payload, Role, SignedTransaction, Transaction};
use bidchain_trading::archive::{self, ArchiveCall, ArchiveKind, ArchiveRecord};
use bidchain_trading::experts::{self, DrawRecord, DrawRequest, Expert, ExpertStatus, ExpertsCall};
use bidchain_trading::tender::{
    self, Bid, BidStatus, CollusionField, CollusionFlag, Tender, TenderCall, TenderParams,
    TenderStatus,
};
use bidchain_trading::{Decode, Digest, Encode, Label, TenderId};
use std::collections::BTreeMap;

const S: u64 = 1_000;

fn at(ms: u64) -> Timestamp {
    Timestamp(TEST_GENESIS_MS + ms)
}

/// Accounts with their next nonce.
struct Party {
    key: Keypair,
    nonce: u64,
}

impl Party {
    fn new(seed: u64) -> Party {
        Party {
            key: Keypair::from_seed_for_tests(seed),
            nonce: 0,
        }
    }

    fn next(&mut self) -> Nonce {
        self.nonce += 1;
        Nonce(self.nonce - 1)
    }

    fn call<C: Encode>(&mut self, contract: &str, call: &C) -> SignedTransaction {
        let nonce = self.next();
        trading::call_tx(&chain_id(), &self.key, nonce, contract, call).unwrap()
    }

    fn create(&mut self, other: &Party, role: Role) -> SignedTransaction {
        let nonce = self.next();
        Transaction {
            chain_id: chain_id(),
            sender: self.key.public(),
            nonce,
            payload: Payload::Native(NativeCall::CreateAccount {
                key: other.key.public(),
                role,
                label: BoundedString::new("party").unwrap(),
            }),
        }
        .sign(&self.key)
    }
}

struct World {
    _dir: tempfile::TempDir,
    chain: TestChain,
}

impl World {
    fn commit(&self, txs: Vec<SignedTransaction>, ms: u64) -> Vec<Receipt> {
        let n = txs.len();
        let receipts = self.chain.commit(txs, at(ms)).unwrap();
        assert_eq!(receipts.len(), n, "a transaction was left out of the block");
        receipts
    }

    fn read<T: Decode>(&self, contract: &str, key: &[u8]) -> Option<T> {
        let raw = StateView::get(self.chain.chain.storage(), &contract_key(contract, key)).unwrap();
        raw.map(|bytes| T::decode(&bytes).unwrap())
    }

    fn tender(&self, id: &TenderId) -> Tender {
        self.read(names::TENDER, &tender::keys::tender(id)).unwrap()
    }

    /// Commits tender `id` and an account and unit for each of `bidders`, at S / 5.
    fn open_tender(&self, center: &mut Party, id: &TenderId, bidders: &[Party]) {
        let mut txs = vec![center.call(names::TENDER, &TenderCall::Create(params(id)))];
        for (i, b) in bidders.iter().enumerate() {
            txs.push(center.create(b, Role::Bidder));
            let register = TenderCall::RegisterBidder {
                bidder: trading::account_key(&b.key.public()),
                unit: trading::unit_id(&format!("unit-{i}")),
            };
            txs.push(center.call(names::TENDER, &register));
        }
        self.commit(txs, S / 5).iter().for_each(ok);
    }

    fn bid(&self, id: &TenderId, party: &Party) -> Bid {
        let key = trading::account_key(&party.key.public());
        self.read(names::TENDER, &tender::keys::bid(id, &key))
            .unwrap()
    }
}

fn ok(receipt: &Receipt) {
    assert!(
        receipt.outcome.is_ok(),
        "expected ok: {:?}",
        receipt.outcome
    );
}

/// Asserts a refusal with `code` whose reason contains `words`.
fn refused(receipt: &Receipt, code: &str, words: &str) {
    match &receipt.outcome {
        TxOutcome::Rejected { code: got, reason } => {
            assert_eq!(got.as_str(), code, "reason: {reason}");
            assert!(reason.contains(words), "{reason:?} lacks {words:?}");
        }
        TxOutcome::Ok => panic!("expected {code}, got ok"),
    }
}

fn event<'a>(receipt: &'a Receipt, kind: &str) -> BTreeMap<&'a str, &'a str> {
    let event = receipt
        .events
        .iter()
        .find(|e| e.kind.as_str() == kind)
        .unwrap_or_else(|| panic!("no {kind} event in {:?}", receipt.events));
    event
        .attributes
        .iter()
        .map(|a| (a.key.as_str(), a.value.as_str()))
        .collect()
}

fn label(text: &str) -> Label {
    Label::new(text).unwrap()
}

fn params(id: &TenderId) -> TenderParams {
    TenderParams {
        id: id.clone(),
        document_hash: trading::sha256(b"tender document"),
        category: label("construction"),
        region: label("nanjing"),
        tenderer_unit: trading::unit_id("tenderer-unit"),
        deadline_ms: TEST_GENESIS_MS + 10 * S,
        opening_ms: TEST_GENESIS_MS + 11 * S,
        decryption_window_ms: 5 * S,
        min_bidders: 3,
        expert_count: 5,
        alternates: 2,
        expert_categories: vec![label("construction")],
        remote: true,
    }
}

fn expert(name: &str, category: &str, region: &str, unit: &str) -> Expert {
    Expert {
        id: trading::expert_id(name),
        categories: vec![label(category)],
        region: label(region),
        unit: trading::unit_id(unit),
        status: ExpertStatus::Active,
    }
}

/// The registry: 8 experts who qualify and 5 who must not be drawn, one for each reason.
fn registry() -> Vec<Expert> {
    let mut experts: Vec<Expert> = (0..8)
        .map(|i| {
            expert(
                &format!("e{i}"),
                "construction",
                "suzhou",
                &format!("eu{i}"),
            )
        })
        .collect();
    experts.push(expert("bidder-unit", "construction", "suzhou", "unit-0"));
    experts.push(expert(
        "tenderer-staff",
        "construction",
        "suzhou",
        "tenderer-unit",
    ));
    experts.push(expert("local", "construction", "nanjing", "eu-local"));
    experts.push(expert("suspended", "construction", "suzhou", "eu-s"));
    experts.push(expert("medic", "medical", "suzhou", "eu-m"));
    experts
}

fn file(i: usize) -> Vec<u8> {
    format!("bid file of bidder {i}").into_bytes()
}

/// Bidder `i`'s sealed bid of `content`; bidders 0 and 1 share a machine code.
fn sealed(p: &Party, id: &TenderId, i: usize, content: &[u8]) -> tender::SealedBid {
    let machine = if i < 2 {
        "machine-shared".to_owned()
    } else {
        format!("machine-{i}")
    };
    trading::sealed_bid(
        &p.key,
        id,
        &trading::sha256(content),
        trading::sha256(&[b"encrypted:".as_slice(), content].concat()),
        trading::fingerprints(
            &machine,
            &format!("c{i}"),
            &format!("d{i}"),
            &format!("h{i}"),
        ),
    )
}

#[test]
fn a_whole_tender_and_a_failed_one() {
    let dir = tempfile::tempdir().unwrap();
    let mut hub = Party::new(1);
    let genesis = genesis_for(&[1], &[]);
    let chain = TestChain::open(dir.path(), genesis, hub.key.clone()).unwrap();
    let w = World { _dir: dir, chain };
    let mut center = Party::new(10);
    let mut auditor = Party::new(11);
    let mut bidders: Vec<Party> = (0..6).map(|i| Party::new(20 + i)).collect();

    // Accounts: the hub opens the center and the auditor; the center its bidders.
    let mut txs = vec![
        hub.create(&center, Role::Center),
        hub.create(&auditor, Role::Auditor),
    ];
    w.commit(std::mem::take(&mut txs), S / 10)
        .iter()
        .for_each(ok);
    for b in &bidders {
        txs.push(center.create(b, Role::Bidder));
    }
    // Each bidder's unit, registered by the center (bids carry it; the draw recuses it).
    for (i, b) in bidders.iter().enumerate() {
        let call = TenderCall::RegisterBidder {
            bidder: trading::account_key(&b.key.public()),
            unit: trading::unit_id(&format!("unit-{i}")),
        };
        txs.push(center.call(names::TENDER, &call));
    }
    w.commit(std::mem::take(&mut txs), S / 5)
        .iter()
        .for_each(ok);

    // The registry, one expert suspended.
    let registry_now = {
        let mut all = registry();
        for e in &all {
            txs.push(hub.call(names::EXPERTS, &ExpertsCall::Register(e.clone())));
        }
        let suspended = all
            .iter_mut()
            .find(|e| e.id == trading::expert_id("suspended"))
            .unwrap();
        suspended.status = ExpertStatus::Suspended;
        let suspend = ExpertsCall::SetStatus {
            id: suspended.id,
            status: ExpertStatus::Suspended,
        };
        txs.push(hub.call(names::EXPERTS, &suspend));
        // The registry is the hub's: a center may not shape the pool it draws from.
        txs.push(center.call(names::EXPERTS, &suspend));
        txs.push(center.call(
            names::EXPERTS,
            &ExpertsCall::Register(expert("x", "c", "r", "u")),
        ));
        let receipts = w.commit(std::mem::take(&mut txs), S / 2);
        let n = receipts.len();
        receipts[..n - 2].iter().for_each(ok);
        refused(&receipts[n - 2], "not_permitted", "only a hub may");
        refused(&receipts[n - 1], "not_permitted", "only a hub may");
        all
    };

    // Tenders: T1 (six bidders) and T2 (two). A bidder cannot create one.
    let t1 = TenderId::new("JS-2026-0001").unwrap();
    let t2 = TenderId::new("JS-2026-0002").unwrap();
    let mut bad = params(&t1);
    bad.expert_count = 4;
    txs.push(center.call(names::TENDER, &TenderCall::Create(params(&t1))));
    txs.push(center.call(names::TENDER, &TenderCall::Create(params(&t2))));
    txs.push(center.call(names::TENDER, &TenderCall::Create(params(&t1))));
    txs.push(center.call(names::TENDER, &TenderCall::Create(bad)));
    txs.push(bidders[0].call(
        names::TENDER,
        &TenderCall::Create(params(&TenderId::new("X").unwrap())),
    ));
    let r = w.commit(std::mem::take(&mut txs), S);
    ok(&r[0]);
    ok(&r[1]);
    refused(&r[2], "tender_exists", "JS-2026-0001");
    refused(&r[3], "invalid_tender", "odd and at least 5");
    refused(&r[4], "not_permitted", "only a center");

    // Bids before the deadline: five on T1, two on T2; the auditor may not bid.
    for (i, b) in bidders.iter_mut().enumerate().take(5) {
        let content = if i == 2 {
            b"first draft".to_vec()
        } else {
            file(i)
        };
        let bid = sealed(b, &t1, i, &content);
        txs.push(b.call(
            names::TENDER,
            &TenderCall::Submit {
                tender: t1.clone(),
                bid,
            },
        ));
    }
    for (i, b) in bidders.iter_mut().enumerate().take(2) {
        let bid = sealed(b, &t2, i, &file(i));
        txs.push(b.call(
            names::TENDER,
            &TenderCall::Submit {
                tender: t2.clone(),
                bid,
            },
        ));
    }
    let bid = sealed(&auditor, &t1, 9, &file(9));
    txs.push(auditor.call(
        names::TENDER,
        &TenderCall::Submit {
            tender: t1.clone(),
            bid,
        },
    ));
    let r = w.commit(std::mem::take(&mut txs), 4 * S);
    r[..7].iter().for_each(ok);
    let receipt = event(&r[0], "bid_submitted");
    assert_eq!(receipt["tender"], "JS-2026-0001");
    assert_eq!(receipt["deadline"], "2026-01-01T00:00:10Z");
    assert_eq!(receipt["block_time"], "2026-01-01T00:00:04Z");
    refused(&r[7], "not_permitted", "only a bidder");

    // Bidder 2 replaces its bid; bidder 1 cannot submit a second one.
    let bid = sealed(&bidders[2], &t1, 2, &file(2));
    txs.push(bidders[2].call(
        names::TENDER,
        &TenderCall::Replace {
            tender: t1.clone(),
            bid,
        },
    ));
    let bid = sealed(&bidders[1], &t1, 1, &file(1));
    txs.push(bidders[1].call(
        names::TENDER,
        &TenderCall::Submit {
            tender: t1.clone(),
            bid,
        },
    ));
    let r = w.commit(std::mem::take(&mut txs), 9 * S);
    ok(&r[0]);
    assert_eq!(event(&r[0], "bid_replaced")["version"], "2");
    refused(&r[1], "bid_exists", "replace or withdraw");

    // After the deadline: bidder 5's bid is refused, naming both times; opening too early.
    let bid = sealed(&bidders[5], &t1, 5, &file(5));
    txs.push(bidders[5].call(
        names::TENDER,
        &TenderCall::Submit {
            tender: t1.clone(),
            bid,
        },
    ));
    txs.push(bidders[3].call(names::TENDER, &TenderCall::Withdraw { tender: t1.clone() }));
    txs.push(center.call(names::TENDER, &TenderCall::Open { tender: t1.clone() }));
    let r = w.commit(std::mem::take(&mut txs), 10 * S + 500);
    refused(
        &r[0],
        "late_bid",
        "block time 2026-01-01T00:00:10.500Z is after the deadline 2026-01-01T00:00:10Z",
    );
    refused(&r[1], "late_bid", "late withdrawal");
    refused(
        &r[2],
        "too_early",
        "opening time 2026-01-01T00:00:11Z is not reached",
    );

    // Opening: T1 opens with a machine-code flag between bidders 0 and 1; T2 fails.
    txs.push(bidders[0].call(names::TENDER, &TenderCall::Open { tender: t1.clone() }));
    txs.push(center.call(names::TENDER, &TenderCall::Open { tender: t1.clone() }));
    txs.push(center.call(names::TENDER, &TenderCall::Open { tender: t2.clone() }));
    let r = w.commit(std::mem::take(&mut txs), 11 * S);
    refused(
        &r[0],
        "not_permitted",
        "only the center running tender JS-2026-0001",
    );
    ok(&r[1]);
    ok(&r[2]);
    assert_eq!(event(&r[1], "tender_opened")["bids"], "5");
    let count: u32 = w
        .read(names::TENDER, &tender::keys::flag_count(&t1))
        .unwrap();
    let flags: Vec<CollusionFlag> = (0..count)
        .map(|i| w.read(names::TENDER, &tender::keys::flag(&t1, i)).unwrap())
        .collect();
    let keys: Vec<_> = bidders
        .iter()
        .map(|b| trading::account_key(&b.key.public()))
        .collect();
    let key = |i: usize| keys[i];
    assert_eq!(
        flags,
        vec![CollusionFlag {
            field: CollusionField::MachineCode,
            first: key(0),
            second: key(1),
            value: trading::sha256(b"machine-shared"),
        }]
    );
    assert_eq!(event(&r[1], "collusion_flag")["field"], "machine_code");
    assert_eq!(w.tender(&t2).status, TenderStatus::Failed);
    assert!(
        event(&r[2], "tender_failed")["reason"].contains("only 2 bids at opening, fewer than 3")
    );

    // Reveals: 0, 1, 2 reveal their sealed files; 3 reveals another file; 4 never does.
    for (i, bidder) in bidders.iter_mut().enumerate().take(4) {
        let content = if i == 3 {
            b"another file".to_vec()
        } else {
            file(i)
        };
        let file_hash = trading::sha256(&content);
        let salt = trading::bid_salt(&bidder.key, &t1, &file_hash);
        let call = TenderCall::Reveal {
            tender: t1.clone(),
            file_hash,
            salt,
        };
        txs.push(bidder.call(names::TENDER, &call));
    }
    // The draw is requested now and made in a later block, with that block's seed.
    txs.push(bidders[0].call(
        names::EXPERTS,
        &ExpertsCall::RequestDraw { tender: t1.clone() },
    ));
    txs.push(center.call(
        names::EXPERTS,
        &ExpertsCall::RequestDraw { tender: t1.clone() },
    ));
    txs.push(center.call(names::EXPERTS, &ExpertsCall::Draw { tender: t1.clone() }));
    txs.push(center.call(
        names::TENDER,
        &TenderCall::CloseReveal { tender: t1.clone() },
    ));
    let r = w.commit(std::mem::take(&mut txs), 12 * S);
    let request_height = w.chain.chain.tip().unwrap().height;
    r[..4].iter().for_each(ok);
    assert_eq!(event(&r[3], "bid_revealed")["result"], "inconsistent");
    refused(&r[4], "not_permitted", "only a center may");
    ok(&r[5]);
    refused(&r[6], "too_early", "later block than its request");
    refused(
        &r[7],
        "too_early",
        "decryption window is open until 2026-01-01T00:00:16Z",
    );
    // Anyone may make a requested draw: its outcome no longer depends on who sends it.
    let r = w.commit(
        vec![auditor.call(names::EXPERTS, &ExpertsCall::Draw { tender: t1.clone() })],
        13 * S,
    );
    ok(&r[0]);
    let draw_height = request_height.next();
    assert_eq!(w.chain.chain.tip().unwrap().height, draw_height);
    let statuses: Vec<BidStatus> = (0..5).map(|i| w.bid(&t1, &bidders[i]).status).collect();
    use BidStatus::*;
    assert_eq!(
        statuses,
        [Consistent, Consistent, Consistent, Inconsistent, Sealed]
    );

    // The draw, recomputed here from the block's own seed, our registry and the rules.
    let record: DrawRecord = w.read(names::EXPERTS, &experts::keys::draw(&t1)).unwrap();
    assert_eq!(record.requested_height, request_height.0);
    let block: Block = w.chain.chain.storage().block(draw_height).unwrap().unwrap();
    let env = BlockEnv {
        chain_id: chain_id(),
        height: draw_height,
        time: block.header.time,
        prev_block_id: block.header.prev_block_id,
        last_commit: block.last_commit.clone(),
    };
    assert!(block.last_commit.is_some());
    let seed = Digest(block_seed(&env).0);
    assert_eq!(record.seed, seed);
    let mut excluded: Vec<_> = std::iter::once("tenderer-unit".to_owned())
        .chain((0..5).map(|i| format!("unit-{i}")))
        .map(|u| trading::unit_id(&u))
        .collect();
    excluded.sort();
    let request = DrawRequest {
        tender: t1.clone(),
        categories: vec![label("construction")],
        count: 5,
        alternates: 2,
        excluded_units: excluded,
        excluded_region: Some(label("nanjing")),
    };
    assert_eq!(record.request, request);
    let sha = |b: &[u8]| trading::sha256(b).0;
    let drawn = experts::draw(&seed, &registry_now, &request, sha).unwrap();
    assert_eq!(
        (&record.members, &record.alternates),
        (&drawn.members, &drawn.alternates)
    );
    assert_eq!((record.members.len(), record.alternates.len()), (5, 2));
    let qualified: Vec<_> = (0..8)
        .map(|i| trading::expert_id(&format!("e{i}")))
        .collect();
    for id in record.members.iter().chain(&record.alternates) {
        assert!(qualified.contains(id), "{id} should have been excluded");
    }
    assert_eq!(
        record.registry_hash,
        experts::registry_hash(&registry_now, sha)
    );
    assert_eq!(
        record.qualified,
        experts::qualified_ids(&registry_now, &request)
    );

    // `experts verify-draw`'s check, from proof bundles and genesis alone.
    let trust = trust_of(w.chain.chain.genesis()).unwrap();
    let draw_key = contract_key(names::EXPERTS, &experts::keys::draw(&t1));
    let draw_bundle = proofs::state_bundle(&w.chain.chain, &[draw_key], None).unwrap();
    let seed_bundle = proofs::seed_bundle(&w.chain.chain, draw_height).unwrap();
    let check = check_draw(&draw_bundle.encode(), &seed_bundle.encode(), &trust, &t1);
    assert!(matches!(check, DrawCheck::Verified { .. }), "{check:?}");
    let wrong_block = proofs::seed_bundle(&w.chain.chain, request_height).unwrap();
    let check = check_draw(&draw_bundle.encode(), &wrong_block.encode(), &trust, &t1);
    assert!(
        matches!(check, DrawCheck::WrongSeedBlock { .. }),
        "{check:?}"
    );

    // Window closed: bidder 4's late reveal is refused, its bid revoked; 3 consistent bids.
    let file_hash = trading::sha256(&file(4));
    let salt = trading::bid_salt(&bidders[4].key, &t1, &file_hash);
    txs.push(bidders[4].call(
        names::TENDER,
        &TenderCall::Reveal {
            tender: t1.clone(),
            file_hash,
            salt,
        },
    ));
    txs.push(center.call(
        names::TENDER,
        &TenderCall::CloseReveal { tender: t1.clone() },
    ));
    txs.push(center.call(
        names::EXPERTS,
        &ExpertsCall::RequestDraw { tender: t1.clone() },
    ));
    let r = w.commit(std::mem::take(&mut txs), 16 * S + 1);
    refused(&r[0], "reveal_closed", "closed at 2026-01-01T00:00:16Z");
    ok(&r[1]);
    refused(&r[2], "already_drawn", "JS-2026-0001");
    assert_eq!(w.bid(&t1, &bidders[4]).status, Revoked);
    assert_eq!(event(&r[1], "evaluation_started")["valid_bids"], "3");
    assert_eq!(w.tender(&t1).status, TenderStatus::Evaluating);

    // Award: not to the inconsistent bid; then to bidder 0. Archives of every kind.
    txs.push(center.call(
        names::TENDER,
        &TenderCall::Award {
            tender: t1.clone(),
            winner: key(3),
        },
    ));
    txs.push(center.call(
        names::TENDER,
        &TenderCall::Award {
            tender: t1.clone(),
            winner: key(0),
        },
    ));
    let r = w.commit(std::mem::take(&mut txs), 17 * S);
    refused(&r[0], "invalid_winner", "no consistent bid");
    ok(&r[1]);
    let awarded = w.tender(&t1);
    assert_eq!(
        (awarded.status, awarded.winner),
        (TenderStatus::Awarded, Some(key(0)))
    );

    for kind in ArchiveKind::ALL {
        let content = format!("{} of JS-2026-0001", kind.name());
        let call = ArchiveCall::Record {
            tender: t1.clone(),
            kind,
            sha256: trading::sha256(content.as_bytes()),
            size_bytes: content.len() as u64,
        };
        txs.push(center.call(names::ARCHIVE, &call));
    }
    let dup = ArchiveCall::Record {
        tender: t1.clone(),
        kind: ArchiveKind::Contract,
        sha256: trading::sha256(b"contract of JS-2026-0001"),
        size_bytes: 1,
    };
    txs.push(center.call(names::ARCHIVE, &dup));
    let mut other = dup.clone();
    let ArchiveCall::Record { tender, .. } = &mut other;
    *tender = TenderId::new("JS-2099-9999").unwrap();
    txs.push(center.call(names::ARCHIVE, &other));
    txs.push(auditor.call(names::ARCHIVE, &dup));
    let r = w.commit(std::mem::take(&mut txs), 18 * S);
    r[..7].iter().for_each(ok);
    refused(&r[7], "already_recorded", "contract");
    refused(&r[8], "unknown_tender", "JS-2099-9999");
    refused(&r[9], "not_permitted", "only a center");
    for kind in ArchiveKind::ALL {
        let content = format!("{} of JS-2026-0001", kind.name());
        let hash = trading::sha256(content.as_bytes());
        let record: ArchiveRecord = w
            .read(names::ARCHIVE, &archive::keys::record(&t1, kind, &hash))
            .unwrap();
        assert_eq!(
            (record.kind, record.size_bytes),
            (kind, content.len() as u64)
        );
        assert_eq!(record.time_ms, TEST_GENESIS_MS + 18 * S);
        assert_eq!(record.height, w.chain.chain.tip().unwrap().height.0);
    }
}

#[test]
fn hostile_and_malformed_calls_get_receipts_and_the_chain_goes_on() {
    let dir = tempfile::tempdir().unwrap();
    let mut hub = Party::new(1);
    let chain = TestChain::open(dir.path(), genesis_for(&[1], &[]), hub.key.clone()).unwrap();
    let w = World { _dir: dir, chain };
    let garbage = Payload::call(names::TENDER, vec![0xff, 1, 2]).unwrap();
    let unknown = Payload::call("lottery", vec![]).unwrap();
    let txs: Vec<_> = [garbage, unknown]
        .into_iter()
        .map(|payload| {
            Transaction {
                chain_id: chain_id(),
                sender: hub.key.public(),
                nonce: hub.next(),
                payload,
            }
            .sign(&hub.key)
        })
        .collect();
    let r = w.commit(txs, S);
    refused(&r[0], "bad_input", "unknown tag 255");
    refused(&r[1], "unknown_contract", "lottery");
    assert!(r[0].fuel_used > 0);
    let t = TenderId::new("T").unwrap();
    let r = w.commit(
        vec![hub.call(names::TENDER, &TenderCall::Create(params(&t)))],
        2 * S,
    );
    refused(
        &r[0],
        "not_permitted",
        "a hub account may not create a tender",
    );
}

/// A tender takes `MAX_BIDS_PER_TENDER` bidders and refuses the next one; a bidder already
/// in it can still replace its bid at the bound.
#[test]
fn a_tender_takes_the_most_bidders_it_may_and_refuses_the_next() {
    let dir = tempfile::tempdir().unwrap();
    let mut hub = Party::new(1);
    let chain = TestChain::open(dir.path(), genesis_for(&[1], &[]), hub.key.clone()).unwrap();
    let w = World { _dir: dir, chain };
    let mut center = Party::new(10);
    w.commit(vec![hub.create(&center, Role::Center)], S / 10)
        .iter()
        .for_each(ok);
    let mut bidders: Vec<Party> = (0..=tender::MAX_BIDS_PER_TENDER as u64)
        .map(|i| Party::new(1_000 + i))
        .collect();
    let id = TenderId::new("JS-2026-0256").unwrap();
    w.open_tender(&mut center, &id, &bidders);

    let submit = |b: &mut Party, i: usize, replace: bool| {
        let (tender, bid) = (id.clone(), sealed(b, &id, i, &file(i)));
        let call = match replace {
            false => TenderCall::Submit { tender, bid },
            true => TenderCall::Replace { tender, bid },
        };
        b.call(names::TENDER, &call)
    };
    let bids = bidders
        .iter_mut()
        .enumerate()
        .map(|(i, b)| submit(b, i, false))
        .collect();
    let r = w.commit(bids, S);
    let (taken, next) = r.split_at(tender::MAX_BIDS_PER_TENDER);
    taken.iter().for_each(ok);
    refused(&next[0], "too_many_bids", "most bids");
    let count = w.tender(&id).bidder_count;
    assert_eq!(count as usize, tender::MAX_BIDS_PER_TENDER);
    let last = tender::MAX_BIDS_PER_TENDER - 1;
    let r = w.commit(vec![submit(&mut bidders[last], last, true)], 2 * S);
    ok(&r[0]);
    assert_eq!(w.bid(&id, &bidders[last]).version, 2);
}

/// Committed contract storage, as execution lends it to a call.
struct Committed(bidchain_node::storage::Storage);

impl ContractStorage for Committed {
    fn get(&self, contract: &str, key: &[u8]) -> Result<Option<Vec<u8>>, String> {
        StateView::get(&self.0, &contract_key(contract, key)).map_err(|e| e.to_string())
    }

    fn seed_at(&self, _height: u64) -> Result<Option<[u8; 32]>, String> {
        Ok(None)
    }

    fn into_any(self: Box<Self>) -> Box<dyn std::any::Any + Send> {
        self
    }
}

/// A block's calls to the real tender contract give the same outcomes and burn the same
/// fuel whether they share an instance (as execution runs them) or each has a new one,
/// around a refused call (whose instance is let go) in the middle. Whole blocks run
/// shared in the other tests here.
#[test]
fn calls_sharing_an_instance_do_what_calls_in_new_ones_do() {
    let dir = tempfile::tempdir().unwrap();
    let mut hub = Party::new(1);
    let genesis = genesis_for(&[1], &[]);
    let contracts = genesis.contracts().unwrap();
    let chain = TestChain::open(dir.path(), genesis, hub.key.clone()).unwrap();
    let w = World { _dir: dir, chain };
    let mut center = Party::new(10);
    w.commit(vec![hub.create(&center, Role::Center)], S / 10)
        .iter()
        .for_each(ok);
    let bidders: Vec<Party> = (0..6).map(|i| Party::new(2_000 + i)).collect();
    let id = TenderId::new("JS-2026-0300").unwrap();
    w.open_tender(&mut center, &id, &bidders);

    let mut calls: Vec<(&Party, Vec<u8>)> = bidders
        .iter()
        .enumerate()
        .map(|(i, b)| {
            let bid = sealed(b, &id, i, &file(i));
            let submit = TenderCall::Submit {
                tender: id.clone(),
                bid,
            };
            (b, submit.encode())
        })
        .collect();
    calls.insert(3, (&bidders[0], vec![0xff, 1, 2]));
    let module = contracts.module(names::TENDER).unwrap();
    let engine = contracts.engine();
    let mut session = engine.session();
    let mut succeeded = 0;
    for (n, (party, input)) in calls.iter().enumerate() {
        let context = CallContext {
            contract: names::TENDER.to_owned(),
            caller: party.key.public().0,
            caller_role: Role::Bidder.contract_code(),
            block_height: 3,
            block_time_ms: at(S).as_millis(),
            random_seed: [5; 32],
            tx_hash: [u8::try_from(n).unwrap(); 32],
        };
        let storage = || Box::new(Committed(w.chain.chain.storage().clone()));
        let shared = session.call(module, context.clone(), storage(), input);
        let alone = engine.call(module, context, storage(), input);
        assert_eq!(shared.result, alone.result, "call {n}");
        assert_eq!(shared.fuel_used, alone.fuel_used, "call {n}");
        // Each bid leaves its instance to the next; the garbage's is let go.
        assert_eq!(
            session.kept(),
            usize::from(shared.result.is_ok()),
            "call {n}"
        );
        succeeded += usize::from(shared.result.is_ok());
    }
    assert_eq!(
        succeeded,
        bidders.len(),
        "every bid but the garbage went in"
    );
}
