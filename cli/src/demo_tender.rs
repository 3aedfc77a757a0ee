//! The tender part of `bidchain demo`: one whole tender on the running local network, from
//! creation to award and archives, and one that fails with two bids. Every receipt and
//! record is checked; block times are the validators' clocks, so the demo waits for the
//! deadline, the opening and the end of the decryption window like a real tender would.

// The demo prints its steps for a person to follow: printing is its interface.
#![allow(clippy::print_stdout)]

use std::time::{Duration, SystemTime};

use anyhow::{Context, Result, bail, ensure};
use bidchain_node::api::TxResponse;
use bidchain_runtime::crypto::Keypair;
use bidchain_runtime::receipt::TxOutcome;
use bidchain_runtime::time::Timestamp;
use bidchain_runtime::tx::Payload;
use bidchain_trading::archive::{self, ArchiveCall, ArchiveKind, ArchiveRecord};
use bidchain_trading::experts::{self, DrawRecord, Expert, ExpertStatus, ExpertsCall};
use bidchain_trading::tender::{
    self, Bid, BidStatus, SealedBid, Tender, TenderCall, TenderParams, TenderStatus,
};
use bidchain_trading::time::format_ms;
use bidchain_trading::{Encode, ExpertId, Label, TenderId};

use crate::client::Client;
use crate::trading::{self, contract_names as names};
use crate::trading_cli::print_draw;

const INCLUDE_TIMEOUT: Duration = Duration::from_secs(30);
/// How long bidders have from the tender's creation to its deadline.
const BIDDING_MS: u64 = 6_000;
const DECRYPTION_WINDOW_MS: u64 = 4_000;

fn ok(text: &str) {
    println!("    ok  {text}");
}

/// The demo's parties on the trading side.
#[derive(Debug)]
pub struct TradingParties<'a> {
    pub hub: &'a Keypair,
    pub center: &'a Keypair,
    /// Six bidders: five bid in time, the sixth too late.
    pub bidders: &'a [Keypair],
}

/// Sends each (key, call) in order, then waits for all of them to be in blocks.
async fn send_all<C: Encode>(
    client: &Client,
    calls: &[(&Keypair, &str, C)],
) -> Result<Vec<TxResponse>> {
    let mut hashes = Vec::new();
    for (key, contract, call) in calls {
        let payload = Payload::call(contract, call.encode()).context("call too large")?;
        hashes.push(client.sign_and_submit(key, payload).await?.tx_hash);
    }
    let mut receipts = Vec::new();
    for hash in &hashes {
        receipts.push(client.wait_included(hash, INCLUDE_TIMEOUT).await?);
    }
    Ok(receipts)
}

async fn send_one<C: Encode>(
    client: &Client,
    key: &Keypair,
    contract: &str,
    call: C,
) -> Result<TxResponse> {
    let mut receipts = send_all(client, &[(key, contract, call)]).await?;
    receipts.pop().context("no receipt")
}

fn expect_ok(receipt: &TxResponse, what: &str) -> Result<()> {
    match &receipt.result {
        Some(TxOutcome::Ok) => Ok(()),
        other => bail!("{what}: expected ok, got {other:?}"),
    }
}

/// Checks a refusal with `code`; returns its reason.
fn expect_refused(receipt: &TxResponse, code: &str, what: &str) -> Result<String> {
    match &receipt.result {
        Some(TxOutcome::Rejected { code: got, reason }) if got.as_str() == code => {
            Ok(reason.to_string())
        }
        other => bail!("{what}: expected a {code} refusal, got {other:?}"),
    }
}

fn event_attr(receipt: &TxResponse, kind: &str, key: &str) -> Option<String> {
    let event = receipt.events.iter().find(|e| e.kind.as_str() == kind)?;
    let attr = event.attributes.iter().find(|a| a.key.as_str() == key)?;
    Some(attr.value.to_string())
}

fn now_ms() -> u64 {
    Timestamp::from_system(SystemTime::now()).as_millis()
}

/// Sleeps until the wall clock (which proposers stamp blocks with) passes `ms`.
async fn wait_until(ms: u64, what: &str) {
    let wait = (ms + 300).saturating_sub(now_ms());
    println!(
        "    ..  waiting {:.1} s for {what} ({})",
        wait as f64 / 1000.0,
        format_ms(ms)
    );
    tokio::time::sleep(Duration::from_millis(wait)).await;
}

fn label(text: &str) -> Label {
    Label::new(text).unwrap_or_else(|_| unreachable!("demo labels are valid"))
}

fn tender_params(id: &str, now: u64) -> Result<TenderParams> {
    let deadline = now + BIDDING_MS;
    Ok(TenderParams {
        id: TenderId::new(id).map_err(|e| anyhow::anyhow!("{e}"))?,
        document_hash: trading::sha256(format!("tender document of {id}").as_bytes()),
        category: label("construction"),
        region: label("nanjing"),
        tenderer_unit: trading::unit_id("nanjing-water-authority"),
        deadline_ms: deadline,
        opening_ms: deadline + 1_000,
        decryption_window_ms: DECRYPTION_WINDOW_MS,
        min_bidders: tender::MIN_BIDDERS,
        expert_count: 5,
        alternates: 2,
        expert_categories: vec![label("construction")],
        remote: true,
    })
}

/// The demo tender's tender id.
pub const DEMO_TENDER: &str = "JS-2026-0001";

/// The demo's file of one archive kind.
pub fn archive_file(kind: ArchiveKind) -> Vec<u8> {
    format!("{} of {DEMO_TENDER}", kind.name()).into_bytes()
}

fn bid_file(i: usize) -> Vec<u8> {
    format!("bid of bidder {i}: price {} yuan", 1_000_000 + 7_919 * i).into_bytes()
}

fn seal(key: &Keypair, tender: &TenderId, i: usize, content: &[u8]) -> SealedBid {
    // Bidders 0 and 1 made their files on the same computer.
    let machine = if i < 2 {
        "PC-7F3A-shared".to_owned()
    } else {
        format!("PC-{i}")
    };
    trading::sealed_bid(
        key,
        tender,
        &trading::sha256(content),
        trading::sha256(&[b"sm4:".as_slice(), content].concat()),
        trading::fingerprints(
            &machine,
            &format!("fc-{i}"),
            &format!("dongle-{i}"),
            &format!("hw-{i}"),
        ),
    )
}

/// The registry: ten experts who may sit on the committee and four who may not.
fn registry() -> Vec<Expert> {
    let expert = |name: &str, region: &str, unit: &str, category: &str| Expert {
        id: trading::expert_id(name),
        categories: vec![label(category)],
        region: label(region),
        unit: trading::unit_id(unit),
        status: ExpertStatus::Active,
    };
    let mut all: Vec<Expert> = (0..10)
        .map(|i| {
            expert(
                &format!("expert-{i}"),
                "suzhou",
                &format!("university-{i}"),
                "construction",
            )
        })
        .collect();
    all.push(expert(
        "expert-of-bidder",
        "suzhou",
        "bidder-unit-0",
        "construction",
    ));
    all.push(expert(
        "expert-of-tenderer",
        "suzhou",
        "nanjing-water-authority",
        "construction",
    ));
    all.push(expert(
        "expert-local",
        "nanjing",
        "university-local",
        "construction",
    ));
    all.push(expert("expert-medical", "suzhou", "hospital", "medical"));
    all
}

/// Runs the tender flow; `first_step` numbers its steps.
pub async fn run(client: &Client, p: &TradingParties<'_>, first_step: u32) -> Result<u32> {
    let mut n = first_step;
    let mut step = |text: &str| {
        println!("\n[{n}] {text}");
        n += 1;
    };
    step("the center records each bidder's unit (checked against its CA certificate off chain)");
    let calls: Vec<_> = p
        .bidders
        .iter()
        .enumerate()
        .map(|(i, key)| {
            let call = TenderCall::RegisterBidder {
                bidder: trading::account_key(&key.public()),
                unit: trading::unit_id(&format!("bidder-unit-{i}")),
            };
            (p.center, names::TENDER, call)
        })
        .collect();
    for r in send_all(client, &calls).await? {
        expect_ok(&r, "register bidder unit")?;
    }
    ok("6 bidder units registered; bids carry them and the expert draw recuses them");
    step("the hub registers 14 experts: 10 eligible, 4 that the draw must not pick");
    let calls: Vec<_> = registry()
        .into_iter()
        .map(|e| (p.hub, names::EXPERTS, ExpertsCall::Register(e)))
        .collect();
    for r in send_all(client, &calls).await? {
        expect_ok(&r, "register expert")?;
    }
    ok(
        "14 experts registered (one works for a bidder, one for the tenderer, one is local, one medical)",
    );

    step("the center creates tender JS-2026-0001 and JS-2026-0002; a bidder may not create one");
    let now = now_ms();
    let t1 = tender_params(DEMO_TENDER, now)?;
    let t2 = tender_params("JS-2026-0002", now)?;
    let (id1, id2) = (t1.id.clone(), t2.id.clone());
    let deadline = t1.deadline_ms;
    let r = send_all(
        client,
        &[
            (p.center, names::TENDER, TenderCall::Create(t1.clone())),
            (p.center, names::TENDER, TenderCall::Create(t2)),
            (
                &p.bidders[0],
                names::TENDER,
                TenderCall::Create(tender_params("FAKE-1", now)?),
            ),
        ],
    )
    .await?;
    expect_ok(&r[0], "create JS-2026-0001")?;
    expect_ok(&r[1], "create JS-2026-0002")?;
    let reason = expect_refused(&r[2], "not_permitted", "bidder creates a tender")?;
    ok(&format!(
        "deadline {}, opening {}",
        format_ms(deadline),
        format_ms(t1.opening_ms)
    ));
    ok(&format!("bidder refused: {reason}"));

    step(
        "five bidders seal bids on JS-2026-0001 (two made on the same computer), two on JS-2026-0002; bidder 2 replaces its bid",
    );
    let mut calls = Vec::new();
    for (i, key) in p.bidders.iter().enumerate().take(5) {
        let content = if i == 2 {
            b"first draft".to_vec()
        } else {
            bid_file(i)
        };
        calls.push((
            key,
            names::TENDER,
            TenderCall::Submit {
                tender: id1.clone(),
                bid: seal(key, &id1, i, &content),
            },
        ));
    }
    for (i, key) in p.bidders.iter().enumerate().take(2) {
        calls.push((
            key,
            names::TENDER,
            TenderCall::Submit {
                tender: id2.clone(),
                bid: seal(key, &id2, i, &bid_file(i)),
            },
        ));
    }
    calls.push((
        &p.bidders[2],
        names::TENDER,
        TenderCall::Replace {
            tender: id1.clone(),
            bid: seal(&p.bidders[2], &id1, 2, &bid_file(2)),
        },
    ));
    let r = send_all(client, &calls).await?;
    for receipt in &r {
        expect_ok(receipt, "bid")?;
    }
    let time =
        event_attr(&r[0], "bid_submitted", "block_time").context("bid receipt lacks its time")?;
    ok(&format!(
        "7 bids sealed; bidder 0's receipt: sealed at {time}, before the deadline {}",
        format_ms(deadline)
    ));
    ensure!(
        event_attr(&r[7], "bid_replaced", "version").as_deref() == Some("2"),
        "replacement is not version 2"
    );
    ok("bidder 2's replacement recorded as version 2");

    step(
        "after the deadline: bidder 5's bid is refused, the receipt naming block time and deadline",
    );
    wait_until(deadline, "the bid deadline").await;
    let late = TenderCall::Submit {
        tender: id1.clone(),
        bid: seal(&p.bidders[5], &id1, 5, &bid_file(5)),
    };
    let r = send_one(client, &p.bidders[5], names::TENDER, late).await?;
    let reason = expect_refused(&r, "late_bid", "late bid")?;
    ensure!(
        reason.contains(&format_ms(deadline)),
        "the refusal does not name the deadline: {reason}"
    );
    ok(&format!("refused: {reason}"));

    step(
        "opening: JS-2026-0001 opens with a collusion flag on the shared machine code; JS-2026-0002 fails with 2 bids",
    );
    wait_until(t1.opening_ms, "the opening time").await;
    let r = send_all(
        client,
        &[
            (
                p.center,
                names::TENDER,
                TenderCall::Open {
                    tender: id1.clone(),
                },
            ),
            (
                p.center,
                names::TENDER,
                TenderCall::Open {
                    tender: id2.clone(),
                },
            ),
        ],
    )
    .await?;
    expect_ok(&r[0], "open JS-2026-0001")?;
    expect_ok(&r[1], "open JS-2026-0002")?;
    let flags = crate::trading_cli::collusion_flags(client, &id1).await?;
    let k = |i: usize| trading::account_key(&p.bidders[i].public());
    ensure!(
        flags.len() == 1
            && flags[0].field == tender::CollusionField::MachineCode
            && (flags[0].first, flags[0].second) == (k(0), k(1)),
        "expected one machine-code flag between bidders 0 and 1, got {flags:?}"
    );
    ok(&format!(
        "flag: {} shared by bidders {} and {}",
        flags[0].field.name(),
        k(0).short(),
        k(1).short()
    ));
    let failed: Tender = client
        .contract_state(names::TENDER, &tender::keys::tender(&id2))
        .await?
        .context("JS-2026-0002 missing")?;
    ensure!(
        failed.status == TenderStatus::Failed,
        "JS-2026-0002 is {}",
        failed.status.name()
    );
    ok(&format!(
        "JS-2026-0002 failed: {}",
        failed.failure.unwrap_or_default()
    ));

    step(
        "bidders reveal: 0, 1 and 2 reveal what they sealed, 3 reveals another file, 4 stays silent; the center draws the experts",
    );
    let mut calls = Vec::new();
    for (i, key) in p.bidders.iter().enumerate().take(4) {
        let content = if i == 3 {
            b"a different file".to_vec()
        } else {
            bid_file(i)
        };
        let file_hash = trading::sha256(&content);
        let salt = trading::bid_salt(key, &id1, &file_hash);
        calls.push((
            key,
            names::TENDER,
            TenderCall::Reveal {
                tender: id1.clone(),
                file_hash,
                salt,
            },
        ));
    }
    for r in send_all(client, &calls).await? {
        expect_ok(&r, "reveal")?;
    }
    let request = ExpertsCall::RequestDraw {
        tender: id1.clone(),
    };
    let r = send_one(client, p.center, names::EXPERTS, request).await?;
    expect_ok(&r, "request draw")?;
    let seed_height = event_attr(&r, "draw_requested", "seed_height").unwrap_or_default();
    ok(&format!(
        "draw requested at height {}; it uses the seed of height {seed_height}, made from \
         validator signatures that do not exist yet",
        r.height.map_or(0, |h| h.0)
    ));
    // Anyone may make it once that block exists: the outcome no longer depends on who.
    let make = ExpertsCall::Draw {
        tender: id1.clone(),
    };
    let r = send_one(client, &p.bidders[5], names::EXPERTS, make).await?;
    expect_ok(&r, "draw")?;
    let record: DrawRecord = client
        .contract_state(names::EXPERTS, &experts::keys::draw(&id1))
        .await?
        .context("no draw recorded")?;
    print_draw(&record);
    let eligible: Vec<ExpertId> = (0..10)
        .map(|i| trading::expert_id(&format!("expert-{i}")))
        .collect();
    ensure!(
        record.members.len() == 5 && record.alternates.len() == 2,
        "committee of {} and {} alternates",
        record.members.len(),
        record.alternates.len()
    );
    ensure!(
        record
            .members
            .iter()
            .chain(&record.alternates)
            .all(|id| eligible.contains(id)),
        "the draw picked a recused, local or off-category expert"
    );
    let mut snapshot = registry();
    snapshot.sort_by_key(|e| e.id);
    let again = experts::draw(&record.seed, &snapshot, &record.request, |b| {
        trading::sha256(b).0
    })
    .map_err(|e| anyhow::anyhow!("{}", experts::too_few_message(&e)))?;
    ensure!(
        again.members == record.members && again.alternates == record.alternates,
        "recomputing the draw gives another committee"
    );
    ok(
        "5 members and 2 ranked alternates, none from a bidder's or the tenderer's unit or the tender's region; recomputed from the seed: same result",
    );
    let statuses = bid_statuses(client, &id1, p).await?;
    ok(&format!(
        "bids: {}",
        statuses
            .iter()
            .map(|s| s.name())
            .collect::<Vec<_>>()
            .join(", ")
    ));
    ensure!(
        statuses[3] == BidStatus::Inconsistent,
        "bidder 3 is {}",
        statuses[3].name()
    );

    step(
        "the decryption window closes: bidder 4's bid is revoked; 3 consistent bids remain, evaluation starts",
    );
    // The window runs from the block that opened the tender.
    let opened: Tender = client
        .contract_state(names::TENDER, &tender::keys::tender(&id1))
        .await?
        .context("tender missing")?;
    let reveal_end = opened
        .reveal_end_ms()
        .context("the tender has no opening time")?;
    wait_until(reveal_end, "the end of the decryption window").await;
    let r = send_one(
        client,
        p.center,
        names::TENDER,
        TenderCall::CloseReveal {
            tender: id1.clone(),
        },
    )
    .await?;
    expect_ok(&r, "close reveal")?;
    let statuses = bid_statuses(client, &id1, p).await?;
    use BidStatus::*;
    ensure!(
        statuses == [Consistent, Consistent, Consistent, Inconsistent, Revoked],
        "bids: {statuses:?}"
    );
    ok(&format!(
        "bids: {}",
        statuses
            .iter()
            .map(|s| s.name())
            .collect::<Vec<_>>()
            .join(", ")
    ));

    step(
        "award to bidder 0 (not to the inconsistent bid 3), then record the whole file set in the archive",
    );
    let r = send_all(
        client,
        &[
            (
                p.center,
                names::TENDER,
                TenderCall::Award {
                    tender: id1.clone(),
                    winner: k(3),
                },
            ),
            (
                p.center,
                names::TENDER,
                TenderCall::Award {
                    tender: id1.clone(),
                    winner: k(0),
                },
            ),
        ],
    )
    .await?;
    ok(&format!(
        "award to bidder 3 refused: {}",
        expect_refused(&r[0], "invalid_winner", "award to 3")?
    ));
    expect_ok(&r[1], "award")?;
    let files: Vec<(ArchiveKind, Vec<u8>)> = ArchiveKind::ALL
        .into_iter()
        .map(|kind| (kind, archive_file(kind)))
        .collect();
    let calls: Vec<_> = files
        .iter()
        .map(|(kind, bytes)| {
            let call = ArchiveCall::Record {
                tender: id1.clone(),
                kind: *kind,
                sha256: trading::sha256(bytes),
                size_bytes: bytes.len() as u64,
            };
            (p.center, names::ARCHIVE, call)
        })
        .collect();
    for r in send_all(client, &calls).await? {
        expect_ok(&r, "archive")?;
    }
    for (kind, bytes) in &files {
        let record: ArchiveRecord = client
            .contract_state(
                names::ARCHIVE,
                &archive::keys::record(&id1, *kind, &trading::sha256(bytes)),
            )
            .await?
            .with_context(|| format!("no {} record", kind.name()))?;
        ensure!(
            record.size_bytes == bytes.len() as u64,
            "{} size differs",
            kind.name()
        );
    }
    let awarded: Tender = client
        .contract_state(names::TENDER, &tender::keys::tender(&id1))
        .await?
        .context("tender missing")?;
    ensure!(
        awarded.status == TenderStatus::Awarded && awarded.winner == Some(k(0)),
        "tender is {}",
        awarded.status.name()
    );
    ok(&format!(
        "awarded; {} archive records, each file's hash found on chain",
        files.len()
    ));
    Ok(n)
}

async fn bid_statuses(
    client: &Client,
    id: &TenderId,
    p: &TradingParties<'_>,
) -> Result<Vec<BidStatus>> {
    let mut out = Vec::new();
    for key in p.bidders.iter().take(5) {
        let bid: Bid = client
            .contract_state(
                names::TENDER,
                &tender::keys::bid(id, &trading::account_key(&key.public())),
            )
            .await?
            .context("bid missing")?;
        out.push(bid.status);
    }
    Ok(out)
}
