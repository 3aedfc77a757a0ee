//! The `tender` contract: a tender's lifecycle, the bid deadline (招标投标法 art. 28),
//! sealed bids and their reveal (电子招标投标办法 arts. 26–31), the minimum of three bids
//! (实施条例 art. 44) and the cross-bidder collusion flags (实施条例 art. 40).

#![no_std]

extern crate alloc;

use alloc::format;
use alloc::string::{String, ToString};
use alloc::vec::Vec;

use bidchain_sdk as sdk;
use bidchain_trading::tender::{
    self, Bid, BidStatus, CollusionField, CollusionFlag, MAX_BIDS_PER_TENDER, SealedBid, Tender,
    TenderCall, TenderParams, TenderStatus, keys,
};
use bidchain_trading::time::format_ms;
use bidchain_trading::{AccountKey, Decode, Digest, Refusal, TenderId, UnitId, roles};

sdk::entry!(handle);

/// Flag events one receipt carries; flags are stored either way.
const MAX_FLAG_EVENTS: usize = 20;
/// Flags one tender stores (bounded by the writes one call may make).
const MAX_FLAGS_PER_TENDER: usize = 512;

fn handle(input: &[u8]) -> Result<(), Refusal> {
    match TenderCall::decode(input)? {
        TenderCall::Create(params) => create(params),
        TenderCall::Submit { tender, bid } => submit(&tender, bid, false),
        TenderCall::Replace { tender, bid } => submit(&tender, bid, true),
        TenderCall::Withdraw { tender } => withdraw(&tender),
        TenderCall::Open { tender } => open(&tender),
        TenderCall::Reveal {
            tender,
            file_hash,
            salt,
        } => reveal(&tender, file_hash, salt),
        TenderCall::CloseReveal { tender } => close_reveal(&tender),
        TenderCall::Award { tender, winner } => award(&tender, winner),
        TenderCall::RegisterBidder { bidder, unit } => register_bidder(bidder, unit),
    }
}

fn register_bidder(bidder: AccountKey, unit: UnitId) -> Result<(), Refusal> {
    sdk::require_role(roles::CENTER, "register a bidder's unit")?;
    sdk::store(&keys::bidder_unit(&bidder), &unit);
    sdk::emit(
        "bidder_registered",
        &[("bidder", bidder.to_string()), ("unit", unit.to_string())],
    );
    Ok(())
}

fn create(params: TenderParams) -> Result<(), Refusal> {
    sdk::require_role(roles::CENTER, "create a tender")?;
    params
        .check()
        .map_err(|e| Refusal::new("invalid_tender", e))?;
    let now = sdk::block_time_ms();
    if params.deadline_ms <= now {
        return Err(Refusal::new(
            "invalid_tender",
            format!(
                "deadline {} is not after block time {}",
                format_ms(params.deadline_ms),
                format_ms(now)
            ),
        ));
    }
    let key = keys::tender(&params.id);
    if sdk::get(&key).is_some() {
        return Err(Refusal::new(
            "tender_exists",
            format!("tender {} exists", params.id),
        ));
    }
    sdk::emit(
        "tender_created",
        &[
            ("tender", params.id.to_string()),
            ("deadline", format_ms(params.deadline_ms)),
            ("opening", format_ms(params.opening_ms)),
        ],
    );
    let tender = Tender {
        params,
        center: sdk::caller(),
        status: TenderStatus::Open,
        created_ms: now,
        opened_ms: None,
        bidder_count: 0,
        winner: None,
        failure: None,
    };
    sdk::store(&key, &tender);
    Ok(())
}

fn load_tender(id: &TenderId) -> Result<Tender, Refusal> {
    sdk::load(&keys::tender(id))?
        .ok_or_else(|| Refusal::new("unknown_tender", format!("no tender {id}")))
}

fn require_status(tender: &Tender, status: TenderStatus) -> Result<(), Refusal> {
    if tender.status == status {
        return Ok(());
    }
    Err(Refusal::new(
        "wrong_status",
        format!(
            "tender {} is {}, not {}",
            tender.params.id,
            tender.status.name(),
            status.name()
        ),
    ))
}

fn require_center(tender: &Tender, action: &str) -> Result<(), Refusal> {
    if sdk::caller() == tender.center {
        return Ok(());
    }
    Err(Refusal::new(
        "not_permitted",
        format!(
            "only the center running tender {} may {action}",
            tender.params.id
        ),
    ))
}

/// Bids, replacements and withdrawals only while block time < deadline.
fn before_deadline(tender: &Tender, what: &str) -> Result<(), Refusal> {
    let now = sdk::block_time_ms();
    let deadline = tender.params.deadline_ms;
    if now < deadline {
        return Ok(());
    }
    let relation = if now == deadline { "is at" } else { "is after" };
    Err(Refusal::new(
        "late_bid",
        format!(
            "late {what}: block time {} {relation} the deadline {} (招标投标法 art. 28)",
            format_ms(now),
            format_ms(deadline)
        ),
    ))
}

fn load_bid(id: &TenderId, bidder: &AccountKey) -> Result<Option<Bid>, Refusal> {
    sdk::load(&keys::bid(id, bidder))
}

fn submit(id: &TenderId, sealed: SealedBid, replace: bool) -> Result<(), Refusal> {
    sdk::require_role(roles::BIDDER, "bid")?;
    let mut tender = load_tender(id)?;
    require_status(&tender, TenderStatus::Open)?;
    let what = if replace { "replacement" } else { "bid" };
    before_deadline(&tender, what)?;
    let bidder = sdk::caller();
    let previous = load_bid(id, &bidder)?;
    let active = previous
        .as_ref()
        .is_some_and(|b| b.status == BidStatus::Sealed);
    if replace && !active {
        return Err(Refusal::new("no_bid", "there is no sealed bid to replace"));
    }
    if !replace && active {
        return Err(Refusal::new(
            "bid_exists",
            "this bidder already has a sealed bid: replace or withdraw it",
        ));
    }
    if previous.is_none() {
        if tender.bidder_count as usize >= MAX_BIDS_PER_TENDER {
            return Err(Refusal::new(
                "too_many_bids",
                "the tender has the most bids it takes",
            ));
        }
        sdk::store(&keys::bidder(id, tender.bidder_count), &bidder);
        tender.bidder_count += 1;
        sdk::store(&keys::tender(id), &tender);
    }
    let now = sdk::block_time_ms();
    let unit = sdk::load(&keys::bidder_unit(&bidder))?.ok_or_else(|| {
        Refusal::new(
            "unregistered_bidder",
            "this bidder has no registered unit: a center registers it first",
        )
    })?;
    let bid = Bid {
        tender: id.clone(),
        bidder,
        unit,
        status: BidStatus::Sealed,
        submitted_ms: now,
        version: previous.map_or(1, |b| b.version + 1),
        revealed_file: None,
        sealed,
    };
    // The receipt a bidder keeps (确认回执): what was sealed, when, against which deadline.
    sdk::emit(
        if replace {
            "bid_replaced"
        } else {
            "bid_submitted"
        },
        &[
            ("tender", id.to_string()),
            ("bidder", bidder.to_string()),
            ("version", bid.version.to_string()),
            ("cipher_hash", bid.sealed.cipher_hash.to_string()),
            ("block_time", format_ms(now)),
            ("deadline", format_ms(tender.params.deadline_ms)),
        ],
    );
    sdk::store(&keys::bid(id, &bidder), &bid);
    Ok(())
}

fn withdraw(id: &TenderId) -> Result<(), Refusal> {
    let tender = load_tender(id)?;
    require_status(&tender, TenderStatus::Open)?;
    before_deadline(&tender, "withdrawal")?;
    let bidder = sdk::caller();
    let mut bid = load_bid(id, &bidder)?
        .filter(|b| b.status == BidStatus::Sealed)
        .ok_or_else(|| Refusal::new("no_bid", "there is no sealed bid to withdraw"))?;
    bid.status = BidStatus::Withdrawn;
    sdk::store(&keys::bid(id, &bidder), &bid);
    sdk::emit(
        "bid_withdrawn",
        &[("tender", id.to_string()), ("bidder", bidder.to_string())],
    );
    Ok(())
}

fn bids(tender: &Tender) -> Result<Vec<Bid>, Refusal> {
    let id = &tender.params.id;
    let mut bids = Vec::with_capacity(tender.bidder_count as usize);
    for n in 0..tender.bidder_count {
        let bidder: AccountKey = sdk::load(&keys::bidder(id, n))?
            .ok_or_else(|| Refusal::new("corrupt_state", "a counted bidder is not listed"))?;
        let bid = load_bid(id, &bidder)?
            .ok_or_else(|| Refusal::new("corrupt_state", "a listed bidder has no bid"))?;
        bids.push(bid);
    }
    Ok(bids)
}

fn fail(tender: &mut Tender, valid: usize, what: &str) {
    let reason = format!(
        "only {valid} {what}, fewer than {}: the tender must be re-tendered (实施条例 art. 44)",
        tender.params.min_bidders
    );
    sdk::emit(
        "tender_failed",
        &[
            ("tender", tender.params.id.to_string()),
            ("reason", reason.clone()),
        ],
    );
    tender.status = TenderStatus::Failed;
    tender.failure = Some(reason);
}

fn open(id: &TenderId) -> Result<(), Refusal> {
    let mut tender = load_tender(id)?;
    require_center(&tender, "open it")?;
    require_status(&tender, TenderStatus::Open)?;
    let now = sdk::block_time_ms();
    if now < tender.params.opening_ms {
        return Err(Refusal::new(
            "too_early",
            format!(
                "opening time {} is not reached: block time {}",
                format_ms(tender.params.opening_ms),
                format_ms(now)
            ),
        ));
    }
    let sealed: Vec<Bid> = bids(&tender)?
        .into_iter()
        .filter(|b| b.status == BidStatus::Sealed)
        .collect();
    if (sealed.len() as u32) < tender.params.min_bidders {
        fail(&mut tender, sealed.len(), "bids at opening");
    } else {
        let mut flags = Vec::new();
        for (i, bid) in sealed.iter().enumerate() {
            flags.extend(tender::sealed_matches(bid, &sealed[..i]));
        }
        tender.status = TenderStatus::Opened;
        tender.opened_ms = Some(now);
        sdk::emit(
            "tender_opened",
            &[
                ("tender", id.to_string()),
                ("bids", sealed.len().to_string()),
                ("collusion_flags", flags.len().to_string()),
                ("reveal_until", format_ms(reveal_end(&tender))),
            ],
        );
        record_flags(id, &flags)?;
    }
    sdk::store(&keys::tender(id), &tender);
    Ok(())
}

/// Stores `flags` after the tender's earlier ones (up to [`MAX_FLAGS_PER_TENDER`]; the
/// count found is in the events either way) and emits the first of them.
fn record_flags(id: &TenderId, flags: &[CollusionFlag]) -> Result<(), Refusal> {
    let mut count: u32 = sdk::load(&keys::flag_count(id))?.unwrap_or(0);
    for flag in flags {
        if count as usize >= MAX_FLAGS_PER_TENDER {
            break;
        }
        sdk::store(&keys::flag(id, count), flag);
        count += 1;
    }
    sdk::store(&keys::flag_count(id), &count);
    for flag in flags.iter().take(MAX_FLAG_EVENTS) {
        sdk::emit(
            "collusion_flag",
            &[
                ("tender", id.to_string()),
                ("field", String::from(flag.field.name())),
                ("first", flag.first.to_string()),
                ("second", flag.second.to_string()),
                ("value", flag.value.to_string()),
            ],
        );
    }
    Ok(())
}

/// When the decryption window closes: the window runs from the actual opening, so a late
/// opening cannot shorten it.
fn reveal_end(tender: &Tender) -> u64 {
    tender.reveal_end_ms().unwrap_or(u64::MAX)
}

fn reveal(id: &TenderId, file_hash: Digest, salt: Digest) -> Result<(), Refusal> {
    let tender = load_tender(id)?;
    require_status(&tender, TenderStatus::Opened)?;
    let now = sdk::block_time_ms();
    if now >= reveal_end(&tender) {
        return Err(Refusal::new(
            "reveal_closed",
            format!(
                "the decryption window closed at {}: block time {}",
                format_ms(reveal_end(&tender)),
                format_ms(now)
            ),
        ));
    }
    let bidder = sdk::caller();
    let mut bid = load_bid(id, &bidder)?
        .filter(|b| b.status == BidStatus::Sealed)
        .ok_or_else(|| Refusal::new("no_bid", "there is no sealed bid to reveal"))?;
    let opened = Digest(sdk::sha256(&tender::commitment_preimage(
        &bidder, &file_hash, &salt,
    )));
    bid.status = if opened == bid.sealed.commitment {
        BidStatus::Consistent
    } else {
        BidStatus::Inconsistent
    };
    bid.revealed_file = Some(file_hash);
    // Only reveals that match their seals count: anyone can claim another bidder's
    // (public) file hash with a wrong salt, which frames nobody.
    let mut new_flags = Vec::new();
    let others = bids(&tender)?.into_iter().filter(|o| o.bidder != bidder);
    for other in others.filter(|_| bid.status == BidStatus::Consistent) {
        if other.status == BidStatus::Consistent && other.revealed_file == Some(file_hash) {
            new_flags.push(CollusionFlag {
                field: CollusionField::FileHash,
                first: other.bidder,
                second: bidder,
                value: file_hash,
            });
        }
    }
    sdk::emit(
        "bid_revealed",
        &[
            ("tender", id.to_string()),
            ("bidder", bidder.to_string()),
            ("result", String::from(bid.status.name())),
        ],
    );
    record_flags(id, &new_flags)?;
    sdk::store(&keys::bid(id, &bidder), &bid);
    Ok(())
}

fn close_reveal(id: &TenderId) -> Result<(), Refusal> {
    let mut tender = load_tender(id)?;
    require_center(&tender, "close the decryption window")?;
    require_status(&tender, TenderStatus::Opened)?;
    let now = sdk::block_time_ms();
    if now < reveal_end(&tender) {
        return Err(Refusal::new(
            "too_early",
            format!(
                "the decryption window is open until {}",
                format_ms(reveal_end(&tender))
            ),
        ));
    }
    let (mut consistent, mut revoked) = (0usize, Vec::new());
    for mut bid in bids(&tender)? {
        match bid.status {
            BidStatus::Sealed => {
                // Not decrypted by the bidder in the window: revoked (电子招标投标办法 art. 31).
                bid.status = BidStatus::Revoked;
                sdk::store(&keys::bid(id, &bid.bidder), &bid);
                revoked.push(bid.bidder.short());
            }
            BidStatus::Consistent => consistent += 1,
            _ => {}
        }
    }
    // One event, however many bids: a receipt holds a bounded number of events.
    sdk::emit(
        "bids_revoked",
        &[
            ("tender", id.to_string()),
            ("count", revoked.len().to_string()),
            ("bidders", revoked.join(" ")),
        ],
    );
    if (consistent as u32) < tender.params.min_bidders {
        fail(&mut tender, consistent, "consistent bids");
    } else {
        tender.status = TenderStatus::Evaluating;
        sdk::emit(
            "evaluation_started",
            &[
                ("tender", id.to_string()),
                ("valid_bids", consistent.to_string()),
            ],
        );
    }
    sdk::store(&keys::tender(id), &tender);
    Ok(())
}

fn award(id: &TenderId, winner: AccountKey) -> Result<(), Refusal> {
    let mut tender = load_tender(id)?;
    require_center(&tender, "award it")?;
    require_status(&tender, TenderStatus::Evaluating)?;
    let valid = load_bid(id, &winner)?.is_some_and(|b| b.status == BidStatus::Consistent);
    if !valid {
        return Err(Refusal::new(
            "invalid_winner",
            format!("{winner} has no consistent bid in tender {id}"),
        ));
    }
    tender.status = TenderStatus::Awarded;
    tender.winner = Some(winner);
    sdk::store(&keys::tender(id), &tender);
    sdk::emit(
        "tender_awarded",
        &[("tender", id.to_string()), ("winner", winner.to_string())],
    );
    Ok(())
}
