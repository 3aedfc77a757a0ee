//! The `archive` contract: records (tender, kind, sha256, size, time) of a tender's file
//! set (一项一档), so that anyone can later check a file against the chain.

#![no_std]

extern crate alloc;

use alloc::format;
use alloc::string::{String, ToString};
use alloc::vec::Vec;

use bidchain_sdk as sdk;
use bidchain_trading::archive::{ArchiveCall, ArchiveKind, ArchiveRecord, keys};
use bidchain_trading::contract_names::TENDER;
use bidchain_trading::tender::{self as tender_rules, Tender};
use bidchain_trading::{Decode, Digest, Refusal, TenderId, roles};

sdk::entry!(handle);

/// Files one tender's archive indexes.
const MAX_RECORDS_PER_TENDER: usize = 1_024;

fn handle(input: &[u8]) -> Result<(), Refusal> {
    match ArchiveCall::decode(input)? {
        ArchiveCall::Record {
            tender,
            kind,
            sha256,
            size_bytes,
        } => record(&tender, kind, sha256, size_bytes),
    }
}

fn record(
    id: &TenderId,
    kind: ArchiveKind,
    sha256: Digest,
    size_bytes: u64,
) -> Result<(), Refusal> {
    sdk::require_role(roles::CENTER, "record archives")?;
    let tender: Tender = sdk::load_from(TENDER, &tender_rules::keys::tender(id))?
        .ok_or_else(|| Refusal::new("unknown_tender", format!("no tender {id}")))?;
    if sdk::caller() != tender.center {
        return Err(Refusal::new(
            "not_permitted",
            format!("only the center running tender {id} may record its archives"),
        ));
    }
    let key = keys::record(id, kind, &sha256);
    if sdk::get(&key).is_some() {
        return Err(Refusal::new(
            "already_recorded",
            format!(
                "{} {sha256} of tender {id} is already recorded",
                kind.name()
            ),
        ));
    }
    let mut index: Vec<(ArchiveKind, Digest)> = sdk::load(&keys::index(id))?.unwrap_or_default();
    if index.len() >= MAX_RECORDS_PER_TENDER {
        return Err(Refusal::new(
            "too_many_records",
            format!("tender {id} has {MAX_RECORDS_PER_TENDER} records"),
        ));
    }
    index.push((kind, sha256));
    let record = ArchiveRecord {
        tender: id.clone(),
        kind,
        sha256,
        size_bytes,
        time_ms: sdk::block_time_ms(),
        height: sdk::block_height(),
        recorded_by: sdk::caller(),
        tx: sdk::tx_hash(),
    };
    sdk::store(&key, &record);
    sdk::store(&keys::index(id), &index);
    sdk::emit(
        "archive_recorded",
        &[
            ("tender", id.to_string()),
            ("kind", String::from(kind.name())),
            ("sha256", sha256.to_string()),
            ("size_bytes", size_bytes.to_string()),
        ],
    );
    Ok(())
}
